//! The SHA-256 of an upload, computed while its chunks arrive, so that a commit
//! need not read the file back.
//!
//! Chunks are written side by side on blocking threads and finish in any order;
//! the hash needs them in offset order. Each chunk's disk job calls
//! [`RunningHash::add`] once its bytes are written: the next chunk in order is
//! hashed at once, by that job (outside the lock), together with any later chunks
//! parked meanwhile; a chunk ahead of the next one is parked. So the hash keeps up
//! with the writes, and a chunk's answer (sent when its job ends) paces the
//! uploader to the hash as well as to the disk.
//!
//! The running hash gives up, and the commit reads the file back instead, when the
//! chunks stop describing the content in order: a chunk sent again over bytes
//! already hashed, more parked than [`PARKED_MAX`] bytes, a chunk whose write failed
//! (it may have changed bytes already hashed), or parked chunks left behind by an
//! uploader who went away.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use sha2::Digest;

/// Bytes of chunks ahead of the next one kept for hashing; past this the running
/// hash is given up. Twice the reference client's window: parked chunks have been
/// answered, so only this bounds them.
pub(crate) const PARKED_MAX: usize = 8 << 20;

/// A running SHA-256 fed by the chunks of one upload from any thread.
#[derive(Debug, Default)]
pub(crate) struct RunningHash {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The hash of the bytes before `next`; `None` while a job hashes outside the
    /// lock, or for good once given up.
    sha: Option<sha2::Sha256>,
    /// Where the next chunk to hash starts.
    next: u64,
    /// A job is hashing now: it takes the parked chunks as it reaches them.
    busy: bool,
    /// Given up: the commit reads the file back.
    gave_up: bool,
    /// Chunks written ahead of `next`, by offset.
    parked: BTreeMap<u64, Bytes>,
    parked_bytes: usize,
}

impl State {
    fn give_up(&mut self) {
        self.gave_up = true;
        self.sha = None;
        self.parked = BTreeMap::new();
        self.parked_bytes = 0;
    }
}

impl RunningHash {
    /// A hash of nothing yet.
    pub(crate) fn new() -> RunningHash {
        RunningHash {
            state: Mutex::new(State { sha: Some(sha2::Sha256::new()), ..State::default() }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while hashing leaves at worst a hash that is given up below.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a chunk whose bytes are now written at `offset`: hashes it (and the
    /// parked chunks that follow it) if it is next, parks it if it is ahead.
    pub(crate) fn add(&self, offset: u64, data: Bytes) {
        let mut st = self.lock();
        if st.gave_up {
            return;
        }
        if offset < st.next || st.parked.contains_key(&offset) {
            // Bytes sent again: the hash so far may no longer describe the file.
            return st.give_up();
        }
        if st.busy || offset > st.next {
            st.parked_bytes = st.parked_bytes.saturating_add(data.len());
            if st.parked_bytes > PARKED_MAX {
                return st.give_up();
            }
            st.parked.insert(offset, data);
            return;
        }
        let Some(mut sha) = st.sha.take() else { return st.give_up() };
        st.busy = true;
        let mut data = data;
        loop {
            drop(st);
            sha.update(&data);
            st = self.lock();
            st.next += data.len() as u64;
            if st.gave_up {
                return;
            }
            let next = st.next;
            match st.parked.remove(&next) {
                Some(more) => {
                    st.parked_bytes -= more.len();
                    data = more;
                }
                None => break,
            }
        }
        // A parked chunk that starts inside what was just hashed overlaps it.
        if st.parked.keys().next().is_some_and(|&first| first < st.next) {
            return st.give_up();
        }
        st.busy = false;
        st.sha = Some(sha);
    }

    /// Gives the running hash up for good: the commit reads the file back.
    pub(crate) fn give_up(&self) {
        self.lock().give_up();
    }

    /// Gives the running hash up if it holds parked chunks, whose memory nothing
    /// else would free until the upload ends (its uploader went away, say).
    pub(crate) fn drop_parked(&self) {
        let mut st = self.lock();
        if !st.parked.is_empty() {
            st.give_up();
        }
    }

    /// The digest, if every one of `size` bytes was hashed in order and nothing
    /// made the hash give up.
    pub(crate) fn digest(&self, size: u64) -> Option<[u8; 32]> {
        let st = self.lock();
        let complete = !st.busy && st.next == size && st.parked.is_empty();
        st.sha.clone().filter(|_| complete).map(|sha| sha.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn sha(data: &[u8]) -> [u8; 32] {
        sha2::Sha256::digest(data).into()
    }

    /// The chunks of `data`, `chunk` bytes each.
    fn chunks(data: &[u8], chunk: usize) -> Vec<(u64, Bytes)> {
        data.chunks(chunk)
            .enumerate()
            .map(|(k, c)| ((k * chunk) as u64, Bytes::copy_from_slice(c)))
            .collect()
    }

    #[test]
    fn in_order_chunks_give_the_content_hash() {
        let data = content(10_000);
        let h = RunningHash::new();
        for (offset, c) in chunks(&data, 999) {
            h.add(offset, c);
        }
        assert_eq!(h.digest(data.len() as u64), Some(sha(&data)));
        // Not for another size.
        assert_eq!(h.digest(data.len() as u64 + 1), None);
    }

    #[test]
    fn an_empty_upload_has_the_empty_hash() {
        assert_eq!(RunningHash::new().digest(0), Some(sha(b"")));
    }

    #[test]
    fn a_missing_chunk_leaves_no_digest() {
        let data = content(4_000);
        let h = RunningHash::new();
        for (offset, c) in chunks(&data, 1_000).into_iter().filter(|(o, _)| *o != 1_000) {
            h.add(offset, c);
        }
        assert_eq!(h.digest(data.len() as u64), None);
    }

    #[test]
    fn bytes_sent_again_give_the_hash_up() {
        let data = content(3_000);
        let pieces = chunks(&data, 1_000);
        let h = RunningHash::new();
        for (offset, c) in &pieces {
            h.add(*offset, c.clone());
        }
        // The same chunk again, even with the same bytes: given up for good.
        h.add(1_000, pieces[1].1.clone());
        assert_eq!(h.digest(data.len() as u64), None);
        // A chunk overlapping the next one, parked and then passed over.
        let h = RunningHash::new();
        h.add(500, Bytes::copy_from_slice(&data[500..1_500]));
        h.add(0, Bytes::copy_from_slice(&data[..1_000]));
        h.add(1_000, Bytes::copy_from_slice(&data[1_000..]));
        assert_eq!(h.digest(data.len() as u64), None);
    }

    #[test]
    fn giving_up_or_dropping_parked_chunks_leaves_no_digest() {
        let data = content(3_000);
        let pieces = chunks(&data, 1_000);
        let h = RunningHash::new();
        h.add(0, pieces[0].1.clone());
        // Nothing parked: kept.
        h.drop_parked();
        h.add(2_000, pieces[2].1.clone());
        h.drop_parked();
        assert!(h.lock().parked.is_empty());
        h.add(1_000, pieces[1].1.clone());
        assert_eq!(h.digest(3_000), None);
        let h = RunningHash::new();
        for (offset, c) in &pieces {
            h.add(*offset, c.clone());
        }
        h.give_up();
        assert_eq!(h.digest(3_000), None);
    }

    #[test]
    fn too_much_parked_gives_the_hash_up() {
        let h = RunningHash::new();
        let big = Bytes::from(vec![1u8; PARKED_MAX / 2 + 1]);
        h.add(1, big.clone());
        assert!(!h.lock().gave_up);
        h.add(1 + big.len() as u64, big);
        assert!(h.lock().gave_up);
    }

    #[test]
    fn chunks_from_many_threads_in_any_order_give_the_content_hash() {
        let data = content(1 << 20);
        let mut pieces = chunks(&data, 4096);
        // A fixed interleaving that is far from offset order.
        pieces.sort_by_key(|(o, _)| (o / 4096 * 37) % 256);
        let h = Arc::new(RunningHash::new());
        let per_thread = pieces.len().div_ceil(4);
        let threads: Vec<_> = pieces
            .chunks(per_thread)
            .map(|part| {
                let (h, part) = (h.clone(), part.to_vec());
                std::thread::spawn(move || part.into_iter().for_each(|(o, c)| h.add(o, c)))
            })
            .collect();
        for t in threads {
            t.join().expect("no panic");
        }
        assert_eq!(h.digest(data.len() as u64), Some(sha(&data)));
    }

    proptest! {
        /// Chunks of any size in any order: the digest is the content's exactly
        /// when nothing was parked past the limit (never, at these sizes).
        #[test]
        fn any_order_of_chunks_gives_the_content_hash(
            len in 0usize..5_000,
            chunk in 1usize..700,
            order in any::<proptest::sample::Index>(),
            swaps in proptest::collection::vec((any::<proptest::sample::Index>(), any::<proptest::sample::Index>()), 0..20),
        ) {
            let data = content(len);
            let mut pieces = chunks(&data, chunk);
            if !pieces.is_empty() {
                let n = pieces.len();
                pieces.rotate_left(order.index(n));
                for (a, b) in swaps {
                    pieces.swap(a.index(n), b.index(n));
                }
            }
            let h = RunningHash::new();
            for (offset, c) in pieces {
                h.add(offset, c);
            }
            prop_assert_eq!(h.digest(len as u64), Some(sha(&data)));
        }
    }
}
