//! Codec throughput: decode and encode of group messages (64 B and 256 B of text)
//! in both directions, and of 64 KiB file chunks.
//!
//! `cargo bench -p baatkaro-benches --bench codec`. Small frames report frames per
//! second (elements); chunks report bytes per second. Each iteration decodes or
//! encodes a batch, pushing the bytes into a fresh decoder as a socket read would.

#![allow(missing_docs)]

use baatkaro_benches::{chunk_frame, msg_event, send_frame, stream};
use baatkaro_proto::{Decode, Decoder, Encode, Request, ServerFrame};
use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const BATCH: usize = 1000;
const CHUNKS: usize = 16;
const CHUNK: usize = 64 * 1024;

/// Decodes every frame of `bytes`, returning how many there were.
fn decode_stream<F: Decode>(bytes: &[u8], max_payload: u64) -> usize {
    let mut decoder = Decoder::<F>::new(max_payload);
    decoder.push(bytes);
    let mut n = 0;
    for frame in decoder {
        black_box(frame.is_ok());
        n += 1;
    }
    n
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for size in [64usize, 256] {
        let sends: Vec<Request> = (0..BATCH as u64).map(|i| send_frame(size, i)).collect();
        let events: Vec<ServerFrame> = (0..BATCH as u64).map(|i| msg_event(size, i + 1)).collect();
        let (sends, events) = (stream(&sends), stream(&events));
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("send", format!("{size}B")), &sends, |b, bytes| {
            b.iter(|| assert_eq!(decode_stream::<Request>(bytes, 1 << 20), BATCH))
        });
        g.bench_with_input(
            BenchmarkId::new("msg_event", format!("{size}B")),
            &events,
            |b, bytes| b.iter(|| assert_eq!(decode_stream::<ServerFrame>(bytes, 1 << 20), BATCH)),
        );
    }
    let chunks: Vec<Request> =
        (0..CHUNKS).map(|i| chunk_frame(CHUNK, (i * CHUNK) as u64)).collect();
    let chunks = stream(&chunks);
    g.throughput(Throughput::Bytes((CHUNKS * CHUNK) as u64));
    g.bench_with_input(BenchmarkId::new("file_chunk", "64KiB"), &chunks, |b, bytes| {
        b.iter(|| assert_eq!(decode_stream::<Request>(bytes, 1 << 20), CHUNKS))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let mut out = BytesMut::with_capacity(4 << 20);
    for size in [64usize, 256] {
        let sends: Vec<Request> = (0..BATCH as u64).map(|i| send_frame(size, i)).collect();
        let events: Vec<ServerFrame> = (0..BATCH as u64).map(|i| msg_event(size, i + 1)).collect();
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(BenchmarkId::new("send", format!("{size}B")), |b| {
            b.iter(|| {
                out.clear();
                sends.iter().for_each(|f| f.encode(&mut out));
                black_box(out.len())
            })
        });
        g.bench_function(BenchmarkId::new("msg_event", format!("{size}B")), |b| {
            b.iter(|| {
                out.clear();
                events.iter().for_each(|f| f.encode(&mut out));
                black_box(out.len())
            })
        });
    }
    let chunks: Vec<Request> =
        (0..CHUNKS).map(|i| chunk_frame(CHUNK, (i * CHUNK) as u64)).collect();
    g.throughput(Throughput::Bytes((CHUNKS * CHUNK) as u64));
    g.bench_function(BenchmarkId::new("file_chunk", "64KiB"), |b| {
        b.iter(|| {
            out.clear();
            chunks.iter().for_each(|f| f.encode(&mut out));
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
