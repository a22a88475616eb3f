//! File sharing over real TCP: round trips, resuming, verification, names, limits,
//! who may download, and chat that keeps flowing during a large upload.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_proto::{
    Command, ErrorCode, Event, FileId, Item, JoinRule, OfferName, OfferStatus, OkReply, Sha256,
    StoredEvent,
};
use bytes::Bytes;
use common::{Client, TestServer, config, conv};
use sha2::Digest;

fn g(s: &str) -> baatkaro_proto::GroupName {
    s.parse().unwrap()
}

fn sha(data: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(data).into())
}

/// Deterministic bytes that are not all alike.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn offer(c: &mut Client, to: &str, data: &[u8], name: &str) -> (FileId, OfferStatus) {
    let cmd = Command::FileOffer {
        to: conv(to),
        size: data.len() as u64,
        sha256: sha(data),
        name: OfferName::new(name).unwrap(),
    };
    match c.ok(cmd).await.1 {
        OkReply::FileOffer { file, status } => (file, status),
        other => panic!("{other:?}"),
    }
}

async fn chunk(c: &mut Client, file: FileId, data: &[u8], offset: usize, len: usize) -> u64 {
    let cmd = Command::FileChunk {
        file,
        offset: offset as u64,
        data: Bytes::copy_from_slice(&data[offset..offset + len]),
    };
    match c.ok(cmd).await.1 {
        OkReply::FileChunk { received, .. } => received,
        other => panic!("{other:?}"),
    }
}

async fn download(c: &mut Client, file: FileId) -> Vec<u8> {
    let (items, reply) = c.ok(Command::FileGet { file, offset: 0, length: 0 }).await;
    let mut out = Vec::new();
    for i in items {
        let Item::Chunk { offset, data, .. } = i else { panic!("{i:?}") };
        assert_eq!(offset as usize, out.len(), "chunks in order");
        out.extend_from_slice(&data);
    }
    assert!(matches!(reply, OkReply::FileGet { length, .. } if length as usize == out.len()));
    out
}

async fn room(addr: std::net::SocketAddr) -> (Client, Client) {
    let mut alice = Client::register(addr, "alice").await;
    alice.ok(Command::Create { group: g("rust"), rule: Some(JoinRule::Open) }).await;
    let mut bob = Client::register(addr, "bob").await;
    bob.ok(Command::Join { group: g("rust"), reason: None }).await;
    (alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_round_trips_byte_for_byte_and_members_who_were_away_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (mut alice, bob) = room(server.addr).await;
    drop(bob);
    let data = content(1_000_000, 1);
    let (file, status) = offer(&mut alice, "#rust", &data, "data.bin").await;
    assert_eq!(status, OfferStatus::Need);
    // Chunks out of order, one of them twice.
    let chunk_size = 256 * 1024;
    let mut offsets: Vec<usize> = (0..data.len()).step_by(chunk_size).collect();
    offsets.reverse();
    for o in offsets.iter().chain([&0]) {
        chunk(&mut alice, file, &data, *o, chunk_size.min(data.len() - o)).await;
    }
    let (_, r) = alice.ok(Command::FileCommit { file }).await;
    let OkReply::FileCommit { seq, .. } = r else { panic!("{r:?}") };
    // A commit retried after a lost reply shares the file once.
    let (_, again) = alice.ok(Command::FileCommit { file }).await;
    assert_eq!(again, r);
    // bob was offline: he sees the FILE event in history and in FILES, and downloads.
    let mut bob = Client::login(server.addr, "bob").await;
    let (events, _, _) = bob.history("#rust", seq - 1, 10).await;
    assert!(
        matches!(&events[..], [StoredEvent::File { file: f, size: 1_000_000, .. }] if *f == file),
        "{events:?}"
    );
    let (items, _) = bob.ok(Command::Files { conv: conv("#rust") }).await;
    assert_eq!(items.len(), 1);
    let got = download(&mut bob, file).await;
    assert!(got == data, "the download is byte-identical");
    // A range, and one past the end.
    let (items, _) = bob.ok(Command::FileGet { file, offset: 999_990, length: 10 }).await;
    let tail = &data[999_990..];
    assert!(matches!(&items[..], [Item::Chunk { data: got, .. }] if got[..] == *tail));
    bob.err(Command::FileGet { file, offset: 999_990, length: 11 }, ErrorCode::BadRange).await;
    // The same content from the same user is shared at once; the same hash from
    // someone who never uploaded it is not (knowing a hash proves nothing).
    let (_, status) = offer(&mut alice, "#rust", &data, "again.bin").await;
    assert!(matches!(status, OfferStatus::Done(s) if s == seq + 1), "{status:?}");
    let (_, status) = offer(&mut bob, "#rust", &data, "mine.bin").await;
    assert_eq!(status, OfferStatus::Need);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_after_a_cut_connection_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (mut alice, _bob) = room(server.addr).await;
    let data = content(300_000, 2);
    let (file, _) = offer(&mut alice, "#rust", &data, "notes.txt").await;
    chunk(&mut alice, file, &data, 0, 100_000).await;
    drop(alice); // the connection is cut

    let mut alice = Client::login(server.addr, "alice").await;
    let (again, _) = offer(&mut alice, "#rust", &data, "notes.txt").await;
    assert_eq!(again, file, "the same offer resumes the same upload");
    chunk(&mut alice, file, &data, 200_000, 50_000).await;
    drop(alice);
    server.stop().await;

    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::login(server.addr, "alice").await;
    let (items, r) = alice.ok(Command::FileStatus { file }).await;
    assert_eq!(r, OkReply::FileStatus { file, size: 300_000, received: 150_000 });
    let held: Vec<_> =
        items
            .iter()
            .map(|i| {
                if let Item::Have { offset, length, .. } = i {
                    (*offset, *length)
                } else {
                    panic!()
                }
            })
            .collect();
    assert_eq!(held, [(0, 100_000), (200_000, 50_000)]);
    alice.err(Command::FileCommit { file }, ErrorCode::UploadIncomplete).await;
    // Only the missing ranges are sent.
    chunk(&mut alice, file, &data, 100_000, 100_000).await;
    assert_eq!(chunk(&mut alice, file, &data, 250_000, 50_000).await, 300_000);
    alice.ok(Command::FileCommit { file }).await;
    assert!(download(&mut alice, file).await == data);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_mismatch_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (mut alice, mut bob) = room(server.addr).await;
    let data = content(5000, 3);
    let (file, _) = offer(&mut alice, "#rust", &data, "x.bin").await;
    let mut wrong = data.clone();
    wrong[4000] ^= 1;
    chunk(&mut alice, file, &wrong, 0, 5000).await;
    alice.err(Command::FileCommit { file }, ErrorCode::HashMismatch).await;
    // The upload is gone, and nothing was shared.
    alice.err(Command::FileStatus { file }, ErrorCode::NoSuchFile).await;
    let (items, _) = bob.ok(Command::Files { conv: conv("#rust") }).await;
    assert!(items.is_empty());
    bob.err(Command::FileGet { file, offset: 0, length: 0 }, ErrorCode::NoSuchFile).await;
    assert_eq!(std::fs::read_dir(dir.path().join("files")).unwrap().count(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_look_like_paths_or_hidden_files_and_limits_are_refused_before_data_moves() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.file = 1000;
    cfg.limits.quota = 1500;
    cfg.limits.uploads = 2;
    let server = TestServer::start(cfg).await;
    let (mut alice, _bob) = room(server.addr).await;
    let hash = "ed35e535b5b4dae70e45fc0e5cb0225aeaff4c960ab9f7b2bb580ee68ea7db10";
    // A name with a leading dot would be a hidden file, or a shell's start-up file,
    // where a client saves it (SPEC.md 6.7).
    let names: [&[u8]; 10] = [
        b"../etc/passwd",
        b"/etc/passwd",
        b"a/b",
        b"..",
        b".",
        b"a\\b",
        b"x\0y",
        b".bashrc",
        b"...",
        b".ssh",
    ];
    for name in names {
        let mut frame =
            format!("n1 FILE-OFFER #rust 10 {hash} {{{}}}\r\n", name.len()).into_bytes();
        frame.extend_from_slice(name);
        frame.extend_from_slice(b"\r\n");
        alice.send_raw(&frame).await;
        let answer = alice.answer(baatkaro_proto::Tag::new("n1").unwrap()).await;
        let Err(f) = answer.1 else { panic!("{name:?} was accepted") };
        assert_eq!(f.code, ErrorCode::BadFileName, "{:?}", String::from_utf8_lossy(name));
    }
    let big = content(1001, 4);
    let cmd = |size: u64, seed| Command::FileOffer {
        to: conv("#rust"),
        size,
        sha256: sha(&content(size as usize, seed)),
        name: OfferName::new("f").unwrap(),
    };
    alice.err(cmd(big.len() as u64, 4), ErrorCode::FileTooLarge).await;
    alice.ok(cmd(1000, 5)).await;
    alice.err(cmd(600, 6), ErrorCode::QuotaExceeded).await;
    alice.ok(cmd(100, 7)).await;
    alice.err(cmd(10, 8), ErrorCode::TooManyUploads).await;
    // A non-member may not offer to the group, nor to a user who does not exist.
    let mut carol = Client::register(server.addr, "carol").await;
    carol.err(cmd(10, 9), ErrorCode::NotMember).await;
    let to_nobody = Command::FileOffer {
        to: conv("@nobody"),
        size: 1,
        sha256: sha(b"x"),
        name: OfferName::new("f").unwrap(),
    };
    carol.err(to_nobody, ErrorCode::NoSuchUser).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_readers_of_the_conversation_may_download() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (mut alice, mut bob) = room(server.addr).await;
    let mut carol = Client::register(server.addr, "carol").await;
    // To the group, and privately to bob (other content: the same would be shared
    // at once, as alice holds it already).
    for (to, seed) in [("#rust", 5), ("@bob", 6)] {
        let data = content(777, seed);
        let (file, status) = offer(&mut alice, to, &data, "p.bin").await;
        assert_eq!(status, OfferStatus::Need);
        chunk(&mut alice, file, &data, 0, 777).await;
        alice.ok(Command::FileCommit { file }).await;
        assert!(download(&mut bob, file).await == data);
        carol.err(Command::FileGet { file, offset: 0, length: 0 }, ErrorCode::NoSuchFile).await;
    }
    carol.err(Command::Files { conv: conv("#rust") }, ErrorCode::NotMember).await;
    // bob hears of the private file as a FILE event in @alice.
    let mut saw = false;
    while let Some(e) = bob.events.pop_front() {
        saw |= matches!(e, Event::Stored(StoredEvent::File { conv: c, .. }) if c == conv("@alice"));
    }
    assert!(saw, "bob got the FILE event of the private share");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_keep_flowing_during_a_large_upload() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (mut alice, mut bob) = room(server.addr).await;
    let mut carol = Client::register(server.addr, "carol").await;
    carol.ok(Command::Join { group: g("rust"), reason: None }).await;
    const SIZE: usize = 100 * 1024 * 1024;
    const CHUNK: usize = 1024 * 1024;
    let data = content(SIZE, 6);
    let (file, _) = offer(&mut alice, "#rust", &data, "big.bin").await;
    let (mid_tx, mid_rx) = tokio::sync::oneshot::channel();
    let uploader = tokio::spawn(async move {
        let mut mid = Some(mid_tx);
        for (i, o) in (0..SIZE).step_by(CHUNK).enumerate() {
            let cmd = Command::FileChunk {
                file,
                offset: o as u64,
                data: Bytes::copy_from_slice(&data[o..o + CHUNK]),
            };
            alice.send(cmd).await;
            if i == 10 {
                let _ = mid.take().map(|m| m.send(()));
            }
        }
        // Collect every chunk's answer, then commit.
        let mut answered = 0;
        while answered < SIZE / CHUNK {
            match alice.frame().await.unwrap() {
                baatkaro_proto::ServerFrame::Ok { .. } => answered += 1,
                baatkaro_proto::ServerFrame::Err { failure, .. } => panic!("{failure:?}"),
                _ => {}
            }
        }
        alice.ok(Command::FileCommit { file }).await;
        alice
    });
    // Once the upload is under way, bob says something; carol hears it before the
    // file is shared.
    mid_rx.await.unwrap();
    bob.say("#rust", "b1", "still talking").await;
    let mut order = Vec::new();
    while order.len() < 2 {
        match carol.stored().await {
            StoredEvent::Message { .. } => order.push("message"),
            StoredEvent::File { .. } => order.push("file"),
            _ => {}
        }
    }
    assert_eq!(order, ["message", "file"]);
    let _alice = tokio::time::timeout(common::WAIT, uploader).await.unwrap().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_downloads_on_a_small_queue_all_complete_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.queue = 64 * 1024;
    cfg.limits.chunk = 16 * 1024;
    let server = TestServer::start(cfg).await;
    let (mut alice, mut bob) = room(server.addr).await;
    let data = content(300_000, 9);
    let (file, _) = offer(&mut alice, "#rust", &data, "p.bin").await;
    chunk(&mut alice, file, &data, 0, 300_000).await;
    alice.ok(Command::FileCommit { file }).await;
    // Four ranges asked for at once, each far larger than the queue: each waits its
    // turn instead of holding its chunks behind the others (which would deadlock).
    let ranges = [(0u64, 100_000u64), (100_000, 100_000), (200_000, 50_000), (250_000, 50_000)];
    let mut tags = Vec::new();
    for (offset, length) in ranges {
        tags.push(bob.send(Command::FileGet { file, offset, length }).await);
    }
    let mut got = Vec::new();
    for tag in tags {
        let (items, r) = bob.answer(tag).await;
        assert!(r.is_ok(), "{r:?}");
        for i in items {
            let Item::Chunk { offset, data, .. } = i else { panic!() };
            assert_eq!(offset as usize, got.len());
            got.extend_from_slice(&data);
        }
    }
    assert!(got == data);
    server.stop().await;
}

/// Tiny chunks scattered over a file stop at 1,024 separate held ranges (SPEC.md
/// 6.7); chunks that join what is held go on, and the upload still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scattered_chunks_stop_at_the_range_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let (mut alice, _bob) = room(server.addr).await;
    let spans = baatkaro_proto::transfer::MAX_SPANS;
    let data: Vec<u8> = (0..4 * spans).map(|i| i as u8).collect();
    let (file, _) = offer(&mut alice, "#rust", &data, "scattered.bin").await;
    for i in 0..spans {
        chunk(&mut alice, file, &data, 2 * i, 1).await;
    }
    let lonely = Command::FileChunk {
        file,
        offset: (2 * spans + 1) as u64,
        data: Bytes::copy_from_slice(&data[2 * spans + 1..2 * spans + 2]),
    };
    alice.err(lonely, ErrorCode::BadRange).await;
    // Filling from the start merges everything into one range.
    chunk(&mut alice, file, &data, 0, data.len()).await;
    match alice.ok(Command::FileCommit { file }).await.1 {
        OkReply::FileCommit { .. } => {}
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

/// Uploads `data` to `#rust` in chunks of `size` bytes, last chunk first.
async fn upload(c: &mut Client, data: &[u8], name: &str, size: usize) -> FileId {
    let (file, _) = offer(c, "#rust", data, name).await;
    let mut offsets: Vec<usize> = (0..data.len()).step_by(size).collect();
    offsets.reverse();
    for o in offsets {
        chunk(c, file, data, o, size.min(data.len() - o)).await;
    }
    assert!(matches!(c.ok(Command::FileCommit { file }).await.1, OkReply::FileCommit { .. }));
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_written_by_direct_io_or_through_the_page_cache_read_back_either_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Whole 4 KiB blocks, blocks and a bit, and an unaligned tail.
    let a = content(3 * 262_144 + 1_000, 7);
    let b = content(5 * 4_096 * 10 + 123, 8);
    let mut files = Vec::new();
    for (direct, data, size) in [(false, &a, 262_144), (true, &b, 4_096 * 10 + 1)] {
        cfg.direct_io = direct;
        let server = TestServer::start(cfg.clone()).await;
        let mut alice = if files.is_empty() {
            room(server.addr).await.0
        } else {
            Client::login(server.addr, "alice").await
        };
        files.push((upload(&mut alice, data, "x.bin", size).await, data.clone()));
        server.stop().await;
    }
    // Each server reads what the other way wrote.
    for direct in [true, false] {
        cfg.direct_io = direct;
        let server = TestServer::start(cfg.clone()).await;
        let mut bob = Client::login(server.addr, "bob").await;
        for (file, data) in &files {
            assert!(download(&mut bob, *file).await == *data, "direct_io {direct}");
        }
        server.stop().await;
    }
}

/// Chunks pipelined past `queue` bytes in flight: the server stops reading the
/// connection while their payloads wait for answers, and takes it up again as the
/// answers free room (not at the next timeout), so the upload completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_pipelined_past_the_queue_limit_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.queue = 64 * 1024;
    cfg.limits.chunk = 16 * 1024;
    let server = TestServer::start(cfg).await;
    let (mut alice, _bob) = room(server.addr).await;
    let data = content(40 * 16 * 1024, 11);
    let (file, _) = offer(&mut alice, "#rust", &data, "many.bin").await;
    let mut tags = Vec::new();
    for offset in (0..data.len()).step_by(16 * 1024) {
        let data = Bytes::copy_from_slice(&data[offset..offset + 16 * 1024]);
        tags.push(alice.send(Command::FileChunk { file, offset: offset as u64, data }).await);
    }
    // Writes finish in any order: the answer to the one that finished last says all.
    let mut most = 0;
    for tag in tags {
        let (_, r) = alice.answer(tag).await;
        let Ok(OkReply::FileChunk { received, .. }) = r else { panic!("{r:?}") };
        most = most.max(received);
    }
    assert_eq!(most, data.len() as u64);
    assert!(matches!(alice.ok(Command::FileCommit { file }).await.1, OkReply::FileCommit { .. }));
    assert!(download(&mut alice, file).await == data);
    server.stop().await;
}
