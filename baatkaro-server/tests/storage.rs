//! A store that fails loudly, and a full disk that does not stop chat: damage in
//! the middle of a large history found at start, by a read and by the background
//! check (and nothing written to the damaged file after, nor to any file of the data
//! directory through a clean stop); a data directory whose
//! database went, or is another's, refused; uploads that stop at the disk's reserve
//! while messages go on, also after a restart on a full disk; messages that fill the
//! disk themselves refused as STORAGE_FULL, none acknowledged lost; a cancelled
//! upload's bytes deleted at once.
//!
//! The full disk is a small tmpfs that the test mounts in a mount namespace of its
//! own (`unshare -m`), entered with `nsenter` to run the server and seen from
//! outside through `/proc/PID/root`; the machine's own mounts are untouched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc;

use baatkaro_proto::group::GroupId;
use baatkaro_proto::{
    Command, Encode, ErrorCode, Event, HistoryRange, JoinRule, OkReply, ServerFrame, Sha256,
    StoredEvent, Text,
};
use baatkaro_server::server::{Server, StartError};
use baatkaro_server::store::sqlite::{DB_FILE, Sqlite};
use baatkaro_server::store::{
    ConvKey, EventRecord, MIN_SEGMENT_BYTES, Store, StoreError, Write as StoreWrite,
};
use bytes::Bytes;
use common::process::{Log, Running, serve, server_bin};
use common::{Client, TestServer, config, conv, user};
use sha2::Digest;

/// The text of the event whose record the damage tests alter: unique in the file.
const MARKER: &str = "marker-7f3a9c-in-the-middle-of-history";

/// The idempotency key of that event.
const MARKER_KEY: &str = "markerkey7f3a9c";

/// The name of the account in the middle of the database's accounts: unique in
/// the database (idempotency keys are in the key log, not in the database).
const MARKER_USER: &str = "markeruser7f3a9c";

/// Accounts of the large history, besides alice: the bulk of the database.
const ACCOUNTS: u64 = 6_000;

/// Messages of the large history.
const EVENTS: u64 = 20_000;

/// A data directory with alice (owner of `rust`) and a history of [`EVENTS`]
/// messages in `rust`, the one in the middle holding [`MARKER`]. The sequence
/// numbers of the first message, of the marked one and of the last.
async fn large_history(dir: &Path) -> (u64, u64, u64) {
    let server = TestServer::start(config(dir)).await;
    let mut alice = Client::register(server.addr, "alice").await;
    alice.ok(Command::Create { group: "rust".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    server.stop().await;
    // Written through the store itself, as a server would have, many to a commit.
    // Small segments: the marked message lies in one that is closed, which a start
    // does not read back.
    let mut store = Sqlite::open_sized(dir, false, MIN_SEGMENT_BYTES).unwrap();
    let latest = store
        .load(0, 0)
        .unwrap()
        .latest
        .iter()
        .find(|(k, _)| *k == ConvKey::Group(GroupId(1)))
        .map_or(0, |(_, s)| *s);
    let (first, marked) = (latest + 1, latest + EVENTS / 2);
    let mut writes = Vec::new();
    for seq in first..first + EVENTS {
        let text = if seq == marked {
            MARKER.to_string()
        } else {
            format!("message {seq} of a long history, {}", "padding ".repeat(8))
        };
        let event = StoredEvent::Message {
            conv: conv("#rust"),
            seq,
            time: 1_764_072_600_000 + seq,
            from: user("alice"),
            text: Text::new(&text).unwrap(),
        };
        let frame = ServerFrame::Event(Event::Stored(event.clone())).to_bytes();
        writes.push(StoreWrite::Event(EventRecord::new(ConvKey::Group(GroupId(1)), &event, frame)));
        // Every SEND keeps its idempotency key, in the database.
        let key = if seq == marked { MARKER_KEY.to_string() } else { format!("k{seq}") };
        writes.push(StoreWrite::SendKey {
            user: user("alice"),
            key: key.parse().unwrap(),
            conv: conv("#rust"),
            fingerprint: seq,
            seq,
            time: 1_764_072_600_000 + seq,
        });
        if writes.len() == 5_000 {
            store.commit(&writes, 2, 0).unwrap();
            writes.clear();
        }
    }
    store.commit(&writes, 2, 0).unwrap();
    let accounts: Vec<StoreWrite> = (0..ACCOUNTS)
        .map(|i| StoreWrite::User {
            name: user(&if i == ACCOUNTS / 2 { MARKER_USER.to_string() } else { format!("u{i}") }),
            hash: format!("{i:0>96}"),
            created: 1,
        })
        .collect();
    store.commit(&accounts, 2, 0).unwrap();
    // As a clean shutdown leaves it: the log's index written to the database.
    store.checkpoint().unwrap();
    drop(store);
    (first, marked, first + EVENTS - 1)
}

/// The event log's segments, in order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> =
        std::fs::read_dir(dir.join("events")).unwrap().map(|e| e.unwrap().path()).collect();
    segments.sort();
    segments
}

/// The segment that holds [`MARKER`]: a closed one, not the last.
fn segment(dir: &Path) -> PathBuf {
    let all = segments(dir);
    let holding: Vec<usize> = (0..all.len())
        .filter(|&i| {
            let bytes = std::fs::read(&all[i]).unwrap();
            bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
        })
        .collect();
    assert_eq!(holding.len(), 1, "{all:?}");
    assert!(holding[0] + 1 < all.len(), "the marker is in a closed segment: {all:?}");
    all[holding[0]].clone()
}

/// Where `marker` is in `file`.
fn offsets_in(file: &Path, marker: &str) -> (Vec<u8>, Vec<usize>) {
    let bytes = std::fs::read(file).unwrap();
    let found: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, w)| *w == marker.as_bytes())
        .map(|(at, _)| at)
        .collect();
    assert!(!found.is_empty());
    (bytes, found)
}

/// Alters one letter of the marked message's text in the event log: the record's
/// content, not the batch's header around it. The database sees nothing.
fn damage_a_record(dir: &Path) {
    let file = segment(dir);
    let (mut bytes, found) = offsets_in(&file, MARKER);
    assert_eq!(found.len(), 1);
    bytes[found[0] + 2] = b'Q'; // "maQker…"
    std::fs::write(&file, &bytes).unwrap();
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "the database is untouched");
}

/// Overwrites the header of the b-tree page that holds the marked account (and of
/// its index's page). A page that split keeps stale copies of records in its free
/// space, so the name may be there more than once; one of them is the live record.
fn damage_a_page_header(dir: &Path) {
    assert!(!dir.join("baatkaro.db-wal").exists(), "the store closed cleanly");
    let (mut bytes, found) = offsets_in(&dir.join(DB_FILE), MARKER_USER);
    let size = bytes.len();
    for at in &found {
        // The table's row near the middle, its index entry further up (shorter
        // entries, fewer pages): both well inside the file.
        assert!(*at > size / 8 && *at < size * 7 / 8, "well inside the file: {found:?} of {size}");
    }
    let page_size = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    for at in found {
        let page = at / page_size * page_size;
        assert!(page > 0, "not the first page");
        bytes[page..page + 8].fill(0xff);
    }
    std::fs::write(dir.join(DB_FILE), &bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_inside_a_record_in_the_middle_of_history_is_found_at_start() {
    let dir = tempfile::tempdir().unwrap();
    large_history(dir.path()).await;
    damage_a_record(dir.path());
    match Server::open(config(dir.path())).await {
        Err(e @ StartError::Damaged { .. }) => {
            let said = e.to_string();
            assert!(said.contains(".log at offset"), "names the place: {said}");
            assert!(said.contains("fails its checksum") && said.contains("--fresh"), "{said}");
            assert!(!said.contains("maQker") && !said.contains("in-the-middle"), "{said}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a damaged database was served"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_to_a_b_tree_page_in_the_middle_is_found_at_start() {
    let dir = tempfile::tempdir().unwrap();
    large_history(dir.path()).await;
    damage_a_page_header(dir.path());
    match Server::open(config(dir.path())).await {
        Err(e @ StartError::Damaged { .. }) => {
            let said = e.to_string();
            assert!(said.contains("quick_check") || said.contains("malformed"), "{said}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a damaged database was served"),
    }
}

/// Stops a server process with SIGTERM and waits (bounded) for it.
fn terminate(mut running: Running) -> std::process::ExitStatus {
    let child = running.0.take().unwrap();
    let pid = child.id().to_string();
    assert!(Process::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    wait(child)
}

fn wait(mut child: Child) -> std::process::ExitStatus {
    let (tx, rx) = mpsc::channel();
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(common::WAIT)
        .unwrap_or_else(|_| {
            let _ = Process::new("kill").args(["-KILL", &pid]).status();
            panic!("the server did not exit in time");
        })
        .unwrap()
}

/// How many bytes the event log holds.
fn events_stored(dir: &Path) -> u64 {
    segments(dir).iter().map(|s| std::fs::metadata(s).unwrap().len()).sum()
}

fn failure_of(answer: common::Answer) -> baatkaro_proto::Failure {
    match answer.1 {
        Err(f) => f,
        Ok(r) => panic!("expected a failure, got {r:?}"),
    }
}

fn history_after(seq: u64) -> Command {
    Command::History { conv: conv("#rust"), range: HistoryRange::After(seq), limit: 10 }
}

fn send(key: &str, text: &str) -> Command {
    Command::Send { to: conv("#rust"), key: key.parse().unwrap(), text: Text::new(text).unwrap() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_finds_damage_stops_every_write_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_, marked, last) = large_history(dir.path()).await;
    damage_a_record(dir.path());
    // No check at start nor in the background: only a read can find it.
    let (child, mut log, addr) =
        serve(server_bin(dir.path(), &["--verify-at-start", "0", "--verify-rate", "0"]));
    let mut alice = Client::login(addr.expect("it starts"), "alice").await;
    alice.ok(send("k1", "before anyone read the damage")).await;
    let before = events_stored(dir.path());

    let f = failure_of(alice.call(history_after(marked - 1)).await);
    assert_eq!((f.code, f.retry_after), (ErrorCode::StoreDamaged, Some(60_000)));
    let line = log.wait_for("THE DATABASE IS DAMAGED").unwrap();
    assert!(line.contains(".log at offset") && line.contains("fails its checksum"), "{line}");

    // Nothing more is written; what only reads still works.
    let f = failure_of(alice.call(send("k2", "after")).await);
    assert_eq!(f.code, ErrorCode::StoreDamaged);
    let f =
        failure_of(alice.call(Command::Create { group: "go".parse().unwrap(), rule: None }).await);
    assert_eq!(f.code, ErrorCode::StoreDamaged);
    let (items, _) = alice.ok(history_after(last)).await;
    assert_eq!(items.len(), 1, "the intact newest message reads");
    alice.ok(Command::Groups).await;
    assert_eq!(events_stored(dir.path()), before, "no event went into the damaged file");

    assert!(terminate(child).success());
    let said = log.rest().join("\n");
    assert!(!said.contains("maQker") && !said.contains("in-the-middle"), "raw bytes logged");

    // A start refuses it, saying why, with a non-zero status.
    let out = server_bin(dir.path(), &[]).output().unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("is damaged") && said.contains("fails its checksum"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_check_finds_damage_that_nobody_reads() {
    let dir = tempfile::tempdir().unwrap();
    large_history(dir.path()).await;
    damage_a_record(dir.path());
    let (child, mut log, addr) =
        serve(server_bin(dir.path(), &["--verify-at-start", "0", "--verify-rate", "1000000000"]));
    let mut alice = Client::login(addr.expect("it starts"), "alice").await;
    let line = log.wait_for("THE DATABASE IS DAMAGED").unwrap();
    assert!(line.contains(".log at offset") && line.contains("fails its checksum"), "{line}");
    let f = failure_of(alice.call(send("k1", "after the check")).await);
    assert_eq!(f.code, ErrorCode::StoreDamaged);
    assert!(terminate(child).success());
}

/// A server that finds its store damaged while it runs writes nothing more to its
/// data directory (SPEC.md: STORE_DAMAGED), not even at a clean stop, when an
/// undamaged store's database copies its log (`-wal`) into itself: every file is
/// byte for byte what it was when the damage was reported. Fails without the store
/// thread's `Store::stop_writing` (the close copies the log in, and deletes it):
/// told before its next job (the round with reads of the store after the damage)
/// or, with no job since, at its end (the round without).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_found_while_running_leaves_every_file_as_it_was_through_a_clean_stop() {
    for store_read_after in [false, true] {
        damage_found_while_running(store_read_after).await;
    }
}

/// One round of the test above: `store_read_after`, whether HISTORY (a job of the
/// store thread) is asked after the damage was reported.
async fn damage_found_while_running(store_read_after: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.event_segment_bytes = MIN_SEGMENT_BYTES;
    let server = TestServer::start(cfg).await;
    let mut alice = Client::register(server.addr, "alice").await;
    alice.ok(Command::Create { group: "rust".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    // bob's password is shorter than the binary allows: registered here.
    let mut bob = Client::register(server.addr, "bob").await;
    bob.ok(Command::Join { group: "rust".parse().unwrap(), reason: None }).await;
    let marked = alice.say("#rust", MARKER_KEY, MARKER).await;
    // More than a segment after it: the marked message lies in a closed segment,
    // which a start does not read back.
    let long = "n".repeat(15_000);
    let mut last = marked;
    for i in 0..80 {
        last = alice.say("#rust", &format!("f{i}"), &long).await;
    }
    drop((alice, bob));
    server.stop().await;
    damage_a_record(dir.path());

    // No check at start nor in the background: the read below finds the damage.
    let (child, mut log, addr) =
        serve(server_bin(dir.path(), &["--verify-at-start", "0", "--verify-rate", "0"]));
    let addr = addr.expect("it starts");
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    let newest = alice.say("#rust", "k1", "before anyone read the damage").await;
    alice.ok(Command::Create { group: "go".parse().unwrap(), rule: Some(JoinRule::Open) }).await;

    let f = failure_of(alice.call(history_after(marked - 1)).await);
    assert_eq!((f.code, f.retry_after), (ErrorCode::StoreDamaged, Some(60_000)));
    log.wait_for("THE DATABASE IS DAMAGED").unwrap();
    let files = common::files_under(dir.path());
    // What a close of an undamaged store would copy into the database is there.
    let wal = files.iter().find(|(p, _)| p.ends_with("baatkaro.db-wal"));
    assert!(wal.is_some_and(|(_, bytes)| !bytes.is_empty()), "{:?}", files.keys());

    // Every write is refused, by either session; what only reads is served.
    let f = failure_of(alice.call(send("k2", "after")).await);
    assert_eq!(f.code, ErrorCode::StoreDamaged);
    let f = failure_of(bob.call(send("k3", "after")).await);
    assert_eq!(f.code, ErrorCode::StoreDamaged);
    let f =
        failure_of(bob.call(Command::Join { group: "go".parse().unwrap(), reason: None }).await);
    assert_eq!(f.code, ErrorCode::StoreDamaged);
    let f =
        failure_of(alice.call(Command::Create { group: "zig".parse().unwrap(), rule: None }).await);
    assert_eq!(f.code, ErrorCode::StoreDamaged);
    let f = failure_of(alice.call(Command::Read { conv: conv("#rust"), seq: newest }).await);
    assert_eq!(f.code, ErrorCode::StoreDamaged);
    if store_read_after {
        let (events, latest, _) = bob.history("#rust", newest - 1, 10).await;
        assert_eq!(latest, newest);
        let bodies: Vec<_> = events.iter().map(|e| common::body(e)).collect();
        assert_eq!(bodies, [Some("before anyone read the damage")], "the intact newest reads");
        let (events, _, _) = bob.history("#rust", last - 1, 1).await;
        assert_eq!(events.len(), 1, "so does a message of the closed segments");
    }
    alice.ok(Command::Groups).await;
    // A login records nothing, and is served.
    Client::login(addr, "bob").await;

    // A clean stop, which closes the store: a kill would close nothing, and so
    // would show nothing.
    assert!(terminate(child).success());
    log.rest();
    let round = format!("HISTORY after the damage: {store_read_after}");
    let after = common::files_under(dir.path());
    assert_eq!(files.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>(), "{round}");
    common::assert_same_files(&files, &after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_whose_database_went_is_refused_until_told_to_start_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    Client::register(server.addr, "alice").await;
    server.stop().await;
    std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();

    match Server::open(config(dir.path())).await {
        Err(StartError::Store(e @ StoreError::NoDatabase { .. })) => {
            assert!(e.to_string().contains("--fresh"), "{e}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("started afresh without a word"),
    }
    assert!(!dir.path().join(DB_FILE).exists(), "no empty database is left behind");
    // The binary says the same and exits non-zero.
    let out = server_bin(dir.path(), &[]).output().unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no database") && said.contains("--fresh"), "{said}");

    // Told to, it starts a new store: the old names are free again.
    let mut cfg = config(dir.path());
    cfg.fresh = true;
    let server = TestServer::start(cfg.clone()).await;
    let mut c = Client::connect(server.addr).await;
    c.hello().await;
    let login = Command::Login { user: user("alice"), password: common::password("alice") };
    assert_eq!(failure_of(c.call(login).await).code, ErrorCode::AuthFailed);
    Client::register(server.addr, "alice").await;
    server.stop().await;
    // And --fresh never replaces a database.
    match Server::open(cfg).await {
        Err(StartError::Store(StoreError::FreshOverDatabase(_))) => {}
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("--fresh over a database"),
    }
    // A brand-new, empty directory needs no flag (the quick start).
    let empty = tempfile::tempdir().unwrap();
    TestServer::start(config(&empty.path().join("new"))).await.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_another_store_is_refused_until_its_identity_is_adopted() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (dir, name) in [(a.path(), "alice"), (b.path(), "bob")] {
        let server = TestServer::start(config(dir)).await;
        Client::register(server.addr, name).await;
        server.stop().await;
    }
    std::fs::copy(a.path().join(DB_FILE), b.path().join(DB_FILE)).unwrap();
    match Server::open(config(b.path())).await {
        Err(StartError::Store(e @ StoreError::IdentityMismatch { .. })) => {
            let said = e.to_string();
            assert!(said.contains("baatkaro.id") && said.contains("--fresh"), "{said}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("another store's database was served"),
    }
    // The operator says this database is the one: its identity is written again.
    std::fs::remove_file(b.path().join("baatkaro.id")).unwrap();
    let server = TestServer::start(config(b.path())).await;
    Client::login(server.addr, "alice").await;
    server.stop().await;
    assert_eq!(
        std::fs::read(a.path().join("baatkaro.id")).unwrap(),
        std::fs::read(b.path().join("baatkaro.id")).unwrap()
    );
}

fn sha(data: &[u8]) -> Sha256 {
    Sha256(sha2::Sha256::digest(data).into())
}

fn offer(data: &[u8]) -> Command {
    Command::FileOffer {
        to: conv("#rust"),
        size: data.len() as u64,
        sha256: sha(data),
        name: baatkaro_proto::OfferName::new("big.bin").unwrap(),
    }
}

fn chunk(file: baatkaro_proto::FileId, data: &[u8], offset: usize, len: usize) -> Command {
    Command::FileChunk {
        file,
        offset: offset as u64,
        data: Bytes::copy_from_slice(&data[offset..(offset + len).min(data.len())]),
    }
}

async fn offered(c: &mut Client, data: &[u8]) -> baatkaro_proto::FileId {
    match c.ok(offer(data)).await.1 {
        OkReply::FileOffer { file, .. } => file,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_gone_with_its_bytes_when_the_reply_comes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    alice.ok(Command::Create { group: "rust".parse().unwrap(), rule: None }).await;
    let data = vec![7u8; 3 << 20];
    let file = offered(&mut alice, &data).await;
    // Chunks pipelined, then the cancel behind them: judged after they are written.
    let mut tags = Vec::new();
    for i in 0..2 {
        tags.push(alice.send(chunk(file, &data, i << 20, 1 << 20)).await);
    }
    let cancel = alice.send(Command::FileCancel { file }).await;
    for tag in tags {
        assert!(alice.answer(tag).await.1.is_ok(), "the chunks before the cancel are stored");
    }
    let partial = dir.path().join("partial").join(file.as_str());
    let (_, r) = alice.answer(cancel).await;
    assert_eq!(r, Ok(OkReply::Done { verb: baatkaro_proto::DoneVerb::FileCancel }));
    assert!(!partial.exists(), "the bytes are deleted by the time the reply comes");
    for c in [Command::FileStatus { file }, chunk(file, &data, 2 << 20, 1 << 20)] {
        assert_eq!(failure_of(alice.call(c).await).code, ErrorCode::NoSuchFile);
    }
    assert_eq!(
        failure_of(alice.call(Command::FileCancel { file }).await).code,
        ErrorCode::NoSuchFile
    );
    // Nor does it come back after a restart.
    drop(alice);
    server.stop().await;
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::login(server.addr, "alice").await;
    assert_eq!(
        failure_of(alice.call(Command::FileStatus { file }).await).code,
        ErrorCode::NoSuchFile
    );
    // A failed hash check deletes at once too.
    let mut bad = offered(&mut alice, &[1, 2, 3]).await;
    alice.ok(chunk(bad, &[9, 9, 9], 0, 3)).await;
    assert_eq!(
        failure_of(alice.call(Command::FileCommit { file: bad }).await).code,
        ErrorCode::HashMismatch
    );
    assert!(!dir.path().join("partial").join(bad.as_str()).exists());
    bad = offered(&mut alice, &[4, 5]).await;
    alice.ok(Command::FileCancel { file: bad }).await;
    assert_eq!(std::fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);
    server.stop().await;
}

/// A tmpfs of a given size, mounted in a mount namespace of its own, kept alive by
/// a process that waits on its standard input.
struct Tmpfs {
    holder: Child,
    /// The mount point, as the namespace sees it.
    inside: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("disk");
        std::fs::create_dir(&inside).unwrap();
        let script = format!(
            "mount -t tmpfs -o size={size} tmpfs '{}' && echo mounted && exec cat",
            inside.display()
        );
        let mut holder = Process::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare (util-linux) runs");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            "mounted",
            "the test mounts a tmpfs in its own namespace (as root)"
        );
        Tmpfs { holder, inside, _dir: dir }
    }

    /// `program` run inside the namespace.
    fn command(&self, program: &Path) -> Process {
        let mut cmd = Process::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", self.holder.id())).arg("--").arg(program);
        cmd
    }

    /// A path on the tmpfs, as this process can reach it.
    fn outside(&self, rel: &str) -> PathBuf {
        let root = PathBuf::from(format!("/proc/{}/root", self.holder.id()));
        root.join(self.inside.strip_prefix("/").unwrap()).join(rel)
    }

    /// A file `filler` takes the rest of the tmpfs, to its last 64 KiB at most.
    fn fill(&self) {
        let mut filler = std::fs::File::create(self.outside("filler")).unwrap();
        let piece = vec![1u8; 64 << 10];
        for _ in 0..1024 {
            if filler.write_all(&piece).is_err() {
                break;
            }
        }
        let _ = filler.sync_all();
        assert!(self.free() < 64 << 10, "the disk is full: {}", self.free());
    }

    fn free(&self) -> u64 {
        baatkaro_server::space::free_space(&self.outside("")).unwrap().0
    }

    /// The server binary with its data on the tmpfs.
    fn server(&self, extra: &[&str]) -> (Running, Log, Option<std::net::SocketAddr>) {
        let mut cmd = self.command(Path::new(env!("CARGO_BIN_EXE_baatkaro-server")));
        cmd.args(["--listen", "127.0.0.1:0", "--no-web", "--insecure-test-hash", "--data-dir"]);
        cmd.arg(self.inside.join("data")).args(extra);
        serve(cmd)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Its end of standard input closes: `cat` ends, and the namespace with it.
        drop(self.holder.stdin.take());
        let _ = self.holder.wait();
    }
}

const MIB: usize = 1 << 20;

/// Sends 1 MiB chunks of `data` until the server refuses one with STORAGE_FULL;
/// how many it took.
async fn upload_until_full(alice: &mut Client, file: baatkaro_proto::FileId, data: &[u8]) -> usize {
    for i in 0..data.len() / MIB {
        match alice.call(chunk(file, data, i * MIB, MIB)).await.1 {
            Ok(_) => {}
            Err(f) => {
                assert_eq!(f.code, ErrorCode::StorageFull);
                assert_eq!(f.retry_after, Some(baatkaro_proto::storage::FULL_RETRY_MS));
                return i;
            }
        }
    }
    panic!("the whole file fitted: the disk never filled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_of_files_keeps_send_working_also_after_a_restart() {
    let disk = Tmpfs::mount("32m");
    let flags = ["--upload-reserve", "8388608", "--store-reserve", "4194304"];
    let (child, _log, addr) = disk.server(&flags);
    let addr = addr.expect("it starts on the tmpfs");
    let mut alice = Client::register(addr, "alice").await;
    alice.ok(Command::Create { group: "rust".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    assert_eq!(std::fs::metadata(disk.outside("data/baatkaro.reserve")).unwrap().len(), 4 << 20);

    // Files fill the disk up to the reserve, and stop there.
    let data: Vec<u8> = (0..48 * MIB).map(|i| (i % 251) as u8).collect();
    let file = offered(&mut alice, &data).await;
    let sent = upload_until_full(&mut alice, file, &data).await;
    assert!(sent >= 8, "uploads used the disk up to the reserve ({sent} MiB)");
    assert!(disk.free() < (8 + 1) << 20, "the disk is down to its reserve: {}", disk.free());
    for i in 0..20 {
        alice.ok(send(&format!("k{i}"), "the disk is full of files, and chat goes on")).await;
    }

    // Cancelled, the upload's bytes are freed at once; a second one fills it again.
    let free = disk.free();
    alice.ok(Command::FileCancel { file }).await;
    assert!(disk.free() >= free + ((sent - 1) * MIB) as u64, "freed at once");
    let file = offered(&mut alice, &data).await;
    upload_until_full(&mut alice, file, &data).await;
    drop(alice);
    assert!(terminate(child).success());

    // Something else takes the rest of the disk, to the last byte.
    disk.fill();

    // The server starts, using the space it held for the database, and SEND works.
    let (child, log, addr) = disk.server(&flags);
    let addr = addr.unwrap_or_else(|| panic!("it starts on a full disk: {:?}", log.seen));
    assert!(log.seen.iter().any(|l| l.contains("let go of the space held for the database")));
    let mut alice = Client::login(addr, "alice").await;
    for i in 20..40 {
        alice.ok(send(&format!("k{i}"), "a full disk, after a restart")).await;
    }
    let (items, _) = alice.ok(history_after(0)).await;
    assert!(items.len() >= 10);
    drop(alice);
    assert!(terminate(child).success());
    let _ = log.rest();
}

/// The longest message text the server takes (`[limits]` `message`, SPEC.md 6.3).
const MESSAGE_BYTES: usize = 16 * 1024;

/// The text of the `n`th message of the full-disk test: [`MESSAGE_BYTES`] long,
/// each one different from the first bytes on.
fn long_text(n: usize) -> String {
    let mut text = format!("message {n:05} fills the disk: ");
    let pattern = format!("{n:05}abcdefghijklmnopqrstuvwxyz-");
    while text.len() < MESSAGE_BYTES {
        text.push_str(&pattern);
    }
    text.truncate(MESSAGE_BYTES);
    text
}

/// The sequence numbers of messages.
fn numbers(messages: &[(u64, String)]) -> Vec<u64> {
    messages.iter().map(|(seq, _)| *seq).collect()
}

/// HISTORY of `#rust` after `after`, page by page, to its end: each message's
/// sequence number and text.
async fn messages_after(alice: &mut Client, after: u64) -> Vec<(u64, String)> {
    let (mut all, mut from) = (Vec::new(), after);
    for _ in 0..1_000 {
        let (events, latest, _) = alice.history("#rust", from, 50).await;
        for e in &events {
            match e {
                StoredEvent::Message { seq, text, .. } => all.push((*seq, text.to_string())),
                other => panic!("not a message: {other:?}"),
            }
        }
        match all.last() {
            Some(&(seq, _)) if seq < latest && !events.is_empty() => from = seq,
            _ => return all,
        }
    }
    panic!("the history never ended");
}

/// Messages that fill the disk themselves are refused with the typed STORAGE_FULL
/// (with `retry=`, SPEC.md 8), and nothing else goes wrong: the server stays up and
/// answers reads, every acknowledged SEND is in the history under the sequence
/// number its reply gave, one after the other with no gap, and no refused message
/// is stored or delivered; once there is room again the next SEND takes the next
/// number, a refused send retried with its key is stored once, and a restart reads
/// back the same history. The disk is a 32 MiB tmpfs that something else filled to
/// the last byte, so the server starts by letting go of its reserve; then 16 KiB
/// messages, four at a time, fill what the reserve left.
///
/// Fails if the disk never fills within the bounds (a silent failure), if a refusal
/// carries another code (INTERNAL: `LogError::Full` mapped to anything but
/// `StoreError::Full`) or no `retry=`, if the server stops, closes the connection
/// or panics, if a SEND is acknowledged that the log never took (a number given
/// twice, or the history, or the restart's, lacks it), or if a refused SEND left a
/// number used, an event delivered or its key remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_that_fill_the_disk_are_refused_as_storage_full_and_none_acknowledged_is_lost() {
    let started = std::time::Instant::now();
    let disk = Tmpfs::mount("32m");
    let flags = ["--store-reserve", "2097152"];
    let (child, _log, addr) = disk.server(&flags);
    let addr = addr.expect("it starts on the tmpfs");
    let mut alice = Client::register(addr, "alice").await;
    alice.ok(Command::Create { group: "rust".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    assert_eq!(std::fs::metadata(disk.outside("data/baatkaro.reserve")).unwrap().len(), 2 << 20);
    drop(alice);
    assert!(terminate(child).success());

    // Something else takes the rest of the disk, to the last byte.
    disk.fill();

    // The server starts on it, letting go of its reserve: the room left for messages.
    let (child, mut log, addr) = disk.server(&flags);
    let addr = addr.unwrap_or_else(|| panic!("it starts on a full disk: {:?}", log.seen));
    log.wait_for("let go of the space held for the database").unwrap();
    assert!(!disk.outside("data/baatkaro.reserve").exists());
    let mut alice = Client::login(addr, "alice").await;
    let (_, before, _) = alice.history("#rust", 0, 1).await;

    // Messages four at a time, until some are refused: the disk holds far fewer
    // than the bound, and the deadline is far from how long they take.
    let deadline = started + std::time::Duration::from_secs(120);
    // Each acknowledged send's number and text; each refused one's key and text.
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut n = 0;
    while refused.is_empty() {
        assert!(n < 4_000, "4,000 messages of 16 KiB fitted on a 32 MiB disk: it never filled");
        assert!(std::time::Instant::now() < deadline, "the disk did not fill in time ({n} sent)");
        let mut tags = Vec::new();
        for _ in 0..4 {
            let (key, text) = (format!("full{n}"), long_text(n));
            tags.push((alice.send(send(&key, &text)).await, key, text));
            n += 1;
        }
        for (tag, key, text) in tags {
            match alice.answer(tag).await.1 {
                Ok(OkReply::Send { seq, .. }) => {
                    let next = before + acked.len() as u64 + 1;
                    assert_eq!(seq, next, "send {key}: the next number, given once");
                    acked.push((seq, text));
                }
                Ok(other) => panic!("{other:?}"),
                Err(f) => {
                    assert_eq!(f.code, ErrorCode::StorageFull, "send {key} refused: {f:?}");
                    assert!(f.retry_after.is_some_and(|ms| ms > 0), "with retry=: {f:?}");
                    refused.push((key, text));
                }
            }
        }
    }
    assert!(acked.len() >= 16, "the reserve held room for messages: {} stored", acked.len());
    assert!(disk.free() < 4 * MESSAGE_BYTES as u64, "the disk was full: {}", disk.free());

    // Each acknowledged SEND took the next number (above), and is in the history
    // under it.
    let history = messages_after(&mut alice, before).await;
    let said = format!("{:?} of {:?}", numbers(&history), numbers(&acked));
    assert!(history == acked, "the history is every acknowledged send, and nothing else: {said}");
    // A new session is served too.
    Client::login(addr, "alice").await;
    // Nothing refused was delivered either: the MSGs seen are the acknowledged ones
    // (each delivered after its reply, before the PING's).
    alice.ok(Command::Ping).await;
    let delivered: Vec<(u64, String)> = alice
        .events
        .drain(..)
        .filter_map(|e| match e {
            Event::Stored(StoredEvent::Message { seq, text, .. }) => Some((seq, text.to_string())),
            _ => None,
        })
        .collect();
    assert!(delivered == acked, "delivered {:?}", numbers(&delivered));

    // Room again: the next SEND takes the next number, and a refused one retried
    // with its key is stored once.
    std::fs::remove_file(disk.outside("filler")).unwrap();
    let last = acked.last().unwrap().0;
    let next = alice.say("#rust", "afterfree", "there is room again").await;
    assert_eq!(next, last + 1, "no gap, no number used twice");
    acked.push((next, "there is room again".to_string()));
    let (key, text) = refused[0].clone();
    let retried = alice.say("#rust", &key, &text).await;
    assert_eq!(retried, next + 1, "the refused send is stored now, with the next number");
    assert_eq!(alice.say("#rust", &key, &text).await, retried, "and only once");
    acked.push((retried, text));
    let history = messages_after(&mut alice, before).await;
    assert!(history == acked, "the history with room: {:?}", numbers(&history));
    drop(alice);
    assert!(terminate(child).success());
    let said = log.rest().join("\n");
    assert!(!said.contains("panicked"), "{said}");

    // The same history after a restart.
    let (child, _log, addr) = disk.server(&flags);
    let mut alice = Client::login(addr.expect("it starts again"), "alice").await;
    let history = messages_after(&mut alice, before).await;
    let gapless: Vec<u64> = (before + 1..=retried).collect();
    assert_eq!(numbers(&history), gapless, "gapless after a restart");
    assert!(history == acked, "every acknowledged send, after a restart");
    drop(alice);
    assert!(terminate(child).success());
}
