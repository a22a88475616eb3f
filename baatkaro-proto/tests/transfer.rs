//! Property tests of the upload state: chunks of any size, in any order, repeated
//! or overlapping, leave exactly the union of their bytes held.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baatkaro_proto::transfer::{Ranges, check_chunk, chunks, download_range};
use proptest::prelude::*;

/// A file size and chunks within it, in the order they arrive.
fn upload() -> impl Strategy<Value = (u64, Vec<(u64, u64)>)> {
    (1u64..600).prop_flat_map(|size| {
        let chunk = (0..size).prop_flat_map(move |o| (Just(o), 0..=size - o));
        (Just(size), prop::collection::vec(chunk, 0..40))
    })
}

proptest! {
    #[test]
    fn held_bytes_are_the_union_of_the_chunks((size, chunks) in upload()) {
        let mut model = vec![false; size as usize];
        let mut r = Ranges::new();
        for (o, l) in &chunks {
            prop_assert!(check_chunk(size, *o, *l).is_ok());
            r.insert(*o, *l);
            for b in &mut model[*o as usize..(*o + *l) as usize] {
                *b = true;
            }
            prop_assert_eq!(r.held(), model.iter().filter(|b| **b).count() as u64);
        }
        // Spans are sorted, disjoint and never touch.
        let spans: Vec<_> = r.iter().collect();
        for w in spans.windows(2) {
            prop_assert!(w[0].0 + w[0].1 < w[1].0, "{:?}", spans);
        }
        // Held and missing together are the whole file, without overlap.
        let mut seen = vec![0u8; size as usize];
        for (o, l) in spans.iter().copied().chain(r.missing(size)) {
            for b in &mut seen[o as usize..(o + l) as usize] {
                *b += 1;
            }
        }
        prop_assert!(seen.iter().all(|n| *n == 1));
        prop_assert_eq!(r.covers(size), model.iter().all(|b| *b));
        prop_assert_eq!(Ranges::from_text(&r.to_text()), Some(r));
    }

    #[test]
    fn sending_the_missing_ranges_completes_any_upload((size, chunks) in upload()) {
        let mut r = Ranges::new();
        for (o, l) in chunks {
            r.insert(o, l);
        }
        for (o, l) in r.missing(size) {
            r.insert(o, l);
        }
        prop_assert!(r.covers(size));
        prop_assert_eq!(r.held(), size);
    }

    #[test]
    fn download_chunks_tile_the_range(size in 0u64..5000, offset in 0u64..5000, length in 0u64..5000, chunk in 1u64..700) {
        match download_range(size, offset, length) {
            Ok((o, l)) => {
                prop_assert!(o + l <= size);
                let cut: Vec<_> = chunks(o, l, chunk).collect();
                let mut at = o;
                for (co, cl) in &cut {
                    prop_assert_eq!(*co, at);
                    prop_assert!(*cl >= 1 && *cl <= chunk);
                    at += cl;
                }
                prop_assert_eq!(at, o + l);
            }
            Err(_) => prop_assert!(offset > size || (length > 0 && offset + length > size)),
        }
    }
}
