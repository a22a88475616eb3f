//! What the load generator spends reading deliveries: 1,000 `MSG` events of 128
//! bytes of text, read by the general decoder (`next_peeked`, every field
//! validated) and by the generator's reader (`load::frames`, fields compared with
//! what the member expects), each from one buffer as a socket read would leave it.
//!
//! `cargo bench -p baatkaro-benches --bench generator`.

#![allow(missing_docs)]

use baatkaro_benches::load::frames::{Reader, Seen};
use baatkaro_benches::{msg_event, stream};
use baatkaro_proto::{Peeked, ServerFrame, ServerFrameDecoder};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const BATCH: usize = 1000;

fn read(c: &mut Criterion) {
    let events: Vec<ServerFrame> = (0..BATCH as u64).map(|i| msg_event(128, i + 1)).collect();
    let bytes = stream(&events);
    let mut g = c.benchmark_group("generator_read");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_with_input(BenchmarkId::new("decoder", "128B"), &bytes, |b, bytes| {
        // One decoder for every iteration, as for a connection: its buffer is warm.
        let mut d = ServerFrameDecoder::new(1 << 20);
        b.iter(|| {
            d.push(bytes);
            let mut seqs = 0;
            while let Some(item) = d.next_peeked() {
                if let Ok(Peeked::Msg(m)) = item {
                    seqs += black_box(m.seq());
                }
            }
            assert!(seqs > 0);
        })
    });
    g.bench_with_input(BenchmarkId::new("reader", "128B"), &bytes, |b, bytes| {
        let mut r = Reader::new(1 << 20);
        b.iter(|| {
            r.buffer().extend_from_slice(bytes);
            let mut seqs = 0;
            let expected =
                |from: &[u8], text: &[u8]| (from == b"alice" && !text.is_empty()).then_some(0);
            let _ = r.drain(b"#general", expected, |seen| {
                if let Seen::Msg { seq, .. } = seen {
                    seqs += black_box(seq);
                }
                Ok::<(), ()>(())
            });
            assert!(seqs > 0);
        })
    });
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
