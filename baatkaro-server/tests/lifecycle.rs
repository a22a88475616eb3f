//! The server's life: the lock on its data directory, old and corrupt databases,
//! graceful shutdown, and the real binary started and stopped by a signal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use baatkaro_proto::{Command, ErrorCode, Event, Failure, ServerFrame};
use baatkaro_server::server::{Server, StartError};
use baatkaro_server::store::StoreError;
use baatkaro_server::store::sqlite::{DB_FILE, SCHEMA_VERSION, Sqlite};
use common::{Client, TestServer, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    match Server::open(config(dir.path())).await {
        Err(StartError::Store(StoreError::Locked(path))) => assert_eq!(path, dir.path()),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a second server started on a locked data directory"),
    }
    server.stop().await;
    // Once the first has stopped, the directory is free again.
    TestServer::start(config(dir.path())).await.stop().await;
}

/// A process spawned while a store closes holds a copy of its lock until it
/// execs; reopening at that moment must still succeed (the CLI tests restart a
/// server in a process that spawns clients all the time).
#[test]
fn a_store_reopens_at_once_while_the_process_spawns_children() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let spawners: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Bounded by the loop below setting `stop`, and by a count.
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = Process::new("true").output();
                }
            })
        })
        .collect();
    let mut store = Some(Sqlite::open(dir.path()).unwrap());
    for i in 0..100 {
        drop(store.take());
        match Sqlite::open(dir.path()) {
            Ok(s) => store = Some(s),
            Err(e) => panic!("reopen {i}: {e}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in spawners {
        s.join().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
    match Server::open(config(dir.path())).await {
        Err(e @ StartError::Store(StoreError::Corrupt(_))) => {
            assert!(e.to_string().contains("not a BaatKaro database"), "{e}");
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a corrupt database opened"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_an_older_version_opens_and_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    // A database as the first schema version left it, with an account in it.
    {
        let server = TestServer::start(config(dir.path())).await;
        Client::register(server.addr, "alice").await;
        server.stop().await;
        assert_eq!(downgrade(dir.path()), 1);
    }
    let server = TestServer::start(config(dir.path())).await;
    Client::login(server.addr, "alice").await;
    server.stop().await;
    let store = Sqlite::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_survive_the_move_to_appended_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = {
        let server = TestServer::start(config(dir.path())).await;
        let mut alice = Client::register(server.addr, "alice").await;
        let first = alice.say("@alice", "k1", "one").await;
        let second = alice.say("@alice", "k2", "two").await;
        server.stop().await;
        (first, second)
    };
    // As version 3 kept them: one row per (user, key) in `send_keys`.
    Sqlite::downgrade_for_tests(dir.path(), 3).unwrap();
    assert_eq!(Sqlite::open_at(dir.path(), 3).unwrap().schema_version().unwrap(), 3);
    for _restart in 0..2 {
        let server = TestServer::start(config(dir.path())).await;
        let mut alice = Client::login(server.addr, "alice").await;
        // A retry under a key from before the upgrade is the same send.
        assert_eq!(alice.say("@alice", "k1", "one").await, first);
        assert_eq!(alice.say("@alice", "k2", "two").await, second);
        server.stop().await;
    }
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::login(server.addr, "alice").await;
    assert_eq!(alice.say("@alice", "k3", "three").await, second + 1);
    server.stop().await;
    assert_eq!(Sqlite::open(dir.path()).unwrap().schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn expired_idempotency_keys_are_deleted_from_the_store_as_they_expire() {
    use baatkaro_server::store::{Store, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut store = Sqlite::open(dir.path()).unwrap();
    store.load(0, 0).unwrap();
    let t0 = 1_764_072_000_000u64;
    let key_at = |i: u64, time: u64| Write::SendKey {
        user: "alice".parse().unwrap(),
        key: format!("k{i}").parse().unwrap(),
        conv: "@alice".parse().unwrap(),
        fingerprint: i,
        seq: i + 1,
        time,
    };
    let key = |i: u64| key_at(i, t0 + i * 10_000);
    // Three minutes of keys, one batch every ten seconds.
    for i in 0..18 {
        store.commit(&[key(i)], 1, 0).unwrap();
    }
    let kept = |store: &mut Sqlite| {
        let mut times: Vec<u64> = store.load(0, 0).unwrap().keys.iter().map(|k| k.5).collect();
        times.sort();
        times
    };
    // Expired keys stay on disk until the key log's segment that holds them has
    // only expired keys: tests/key_blocks.rs checks that those segments go. Here,
    // what a load reads back.
    // A key expires exactly at the cut, whatever block it is in.
    store.commit(&[Write::KeysExpired { before: t0 + 50_000 }], 1, 0).unwrap();
    assert_eq!(kept(&mut store), (5..18).map(|i| t0 + i * 10_000).collect::<Vec<_>>());
    // Loading keeps the cut.
    assert_eq!(kept(&mut store).len(), 13);
    store.commit(&[Write::KeysExpired { before: t0 + 120_000 }], 1, 0).unwrap();
    assert_eq!(kept(&mut store).len(), 6);
    // Past its newest key, every key goes.
    store.commit(&[Write::KeysExpired { before: t0 + 170_001 }], 1, 0).unwrap();
    assert!(kept(&mut store).is_empty());

    // Keys written after a cut are not below it.
    for i in 18..36 {
        store.commit(&[key(i)], 1, 0).unwrap();
    }
    store.commit(&[Write::KeysExpired { before: t0 + 240_001 }], 1, 0).unwrap();
    let times = kept(&mut store);
    assert_eq!(times.len(), 11, "{times:?}");
    assert_eq!(times[0], t0 + 250_000);

    // A cut past every key takes them all; a later cut applies to later keys by
    // their own times, whatever the cut before it was.
    store.commit(&[Write::KeysExpired { before: u64::MAX }], 1, 0).unwrap();
    assert!(kept(&mut store).is_empty());
    let users = (0..5).map(|i| Write::User {
        name: format!("user{i}").parse().unwrap(),
        hash: "x".into(),
        created: t0,
    });
    store.commit(&users.collect::<Vec<_>>(), 1, 0).unwrap();
    let late = |i: u64| key_at(100 + i, t0 + 1_000_000 + i * 120_000);
    let bob = Write::User { name: "bob".parse().unwrap(), hash: "x".into(), created: t0 };
    store.commit(&[late(0), bob], 1, 0).unwrap();
    store.commit(&[late(1)], 1, 0).unwrap();
    store.commit(&[Write::KeysExpired { before: t0 + 1_000_001 }], 1, 0).unwrap();
    assert_eq!(kept(&mut store), [t0 + 1_120_000]);
    // A start with a later `keys_since` leaves out what is older.
    assert!(store.load(t0 + 1_120_001, 0).unwrap().keys.is_empty());
}

/// Takes a current database back to schema version 1 (what version 2 added is an
/// index), the way an older server would have left it.
fn downgrade(dir: &std::path::Path) -> i64 {
    Sqlite::downgrade_for_tests(dir, 1).unwrap();
    let store = Sqlite::open_at(dir, 1).unwrap();
    store.schema_version().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_every_client_and_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let seq = alice.say("@alice", "k", "note to self").await;
    server.stop().await;
    let frames = alice.until_closed().await;
    assert!(
        matches!(
            frames.last(),
            Some(ServerFrame::Event(Event::Bye(Failure {
                code: ErrorCode::ShuttingDown,
                retry_after: Some(_),
                ..
            })))
        ),
        "{frames:?}"
    );
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::login(server.addr, "alice").await;
    let (events, latest, _) = alice.history("@alice", 0, 10).await;
    assert_eq!((events.len(), latest), (1, seq));
    alice.ok(Command::Groups).await;
    server.stop().await;
}

/// Starts the real binary and returns it with the address it listens on.
fn spawn_binary(
    args: &[&str],
) -> (std::process::Child, Option<String>, BufReader<std::process::ChildStderr>) {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_baatkaro-server"));
    cmd.args(args);
    let started = start(cmd);
    (started.child, started.addr, started.stderr)
}

/// A server process as [`start`] left it.
struct Started {
    child: std::process::Child,
    /// The address it said it listens on, if it got that far.
    addr: Option<String>,
    /// What it logged until then.
    log: Vec<String>,
    stderr: BufReader<std::process::ChildStderr>,
}

/// Runs `cmd` (the binary, or a wrapper that runs it) with its standard error
/// piped, and reads that until it says where it listens, or ends.
fn start(mut cmd: Process) -> Started {
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = Vec::new();
    // Bounded: the server logs a handful of lines before it listens, or exits.
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(at) = line.find("listening on ") {
            let addr = line[at + "listening on ".len()..].trim().to_string();
            log.push(line);
            return Started { child, addr: Some(addr), log, stderr };
        }
        log.push(line);
    }
    Started { child, addr: None, log, stderr }
}

/// Reads the rest of a server's log on a thread (so that it never blocks on a
/// full pipe); the lines arrive once it closes its standard error.
fn drain(stderr: BufReader<std::process::ChildStderr>) -> mpsc::Receiver<Vec<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(stderr.lines().map_while(Result::ok).collect());
    });
    rx
}

/// Sends SIGTERM to a process.
fn terminate(pid: u32) {
    let status = Process::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits for a process to exit, at most [`common::WAIT`] (then kills it and
/// fails).
fn exit_status(mut child: std::process::Child) -> std::process::ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(common::WAIT) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            let _ = Process::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("the server did not exit within {:?}", common::WAIT);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_refuses_a_second_instance_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, addr, mut stderr) = spawn_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--web-listen",
        "127.0.0.1:0",
        "--data-dir",
        data,
        "--insecure-test-hash",
    ]);
    let addr = addr.expect("the server says where it listens");
    let mut alice = Client::register(addr.parse::<std::net::SocketAddr>().unwrap(), "alice").await;

    // It serves the web client too, and says where.
    let page = (0..10)
        .find_map(|_| {
            let mut line = String::new();
            stderr.read_line(&mut line).unwrap();
            let at = line.find("web client at http://")? + "web client at http://".len();
            Some(line[at..].trim().trim_end_matches('/').to_string())
        })
        .expect("the server says where the web client is");
    let mut http = tokio::net::TcpStream::connect(&page).await.unwrap();
    let get = format!("GET / HTTP/1.1\r\nHost: {page}\r\nConnection: close\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut http, get.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut http, &mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK") && response.contains("app.js"), "{response}");

    // A second server on the same directory exits at once, saying why.
    let second = Process::new(env!("CARGO_BIN_EXE_baatkaro-server"))
        .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir", data])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(said.contains("in use by another baatkaro-server"), "{said}");

    let status = Process::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let frames = alice.until_closed().await;
    assert!(
        matches!(
            frames.last(),
            Some(ServerFrame::Event(Event::Bye(Failure { code: ErrorCode::ShuttingDown, .. })))
        ),
        "{frames:?}"
    );
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn the_binary_documents_every_limit_and_refuses_bad_values() {
    let help = Process::new(env!("CARGO_BIN_EXE_baatkaro-server")).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for key in baatkaro_proto::Limits::KEYS {
        // A key that is a setting of its own has that setting's flag instead.
        let flag = match baatkaro_server::config::SET_ELSEWHERE.iter().find(|(k, _)| k == key) {
            Some((_, setting)) => format!("--{} ", setting.replace('_', "-")),
            None => format!("--limit-{key} "),
        };
        assert!(help.contains(&flag), "{flag} missing from --help");
    }
    for flag in ["--listen", "--data-dir", "--config", "--registration", "--log"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let bad = Process::new(env!("CARGO_BIN_EXE_baatkaro-server"))
        .args(["--limit-line", "2048"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("limit line"), "{bad:?}");
}

/// SPEC.md 5.2 (`key-count`): a start loads only each user's newest keys, so the
/// memory they take does not grow with the week's traffic; the newest row of a key
/// still wins.
#[test]
fn a_start_loads_only_each_users_newest_idempotency_keys() {
    use baatkaro_server::store::{Store, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut store = Sqlite::open(dir.path()).unwrap();
    store.load(0, 0).unwrap();
    let t0 = 1_764_072_000_000u64;
    let key = |who: &str, i: u64| Write::SendKey {
        user: who.parse().unwrap(),
        key: format!("k{i}").parse().unwrap(),
        conv: "@alice".parse().unwrap(),
        fingerprint: i,
        seq: i + 1,
        time: t0 + i,
    };
    let writes: Vec<Write> =
        (0..50).flat_map(|i| [key("alice", i), key("bob", i)]).chain([key("carol", 7)]).collect();
    store.commit(&writes, 1, 0).unwrap();
    let keys = store.load(0, 10).unwrap().keys;
    let of = |who: &str| -> Vec<u64> {
        keys.iter().filter(|k| k.0.as_str() == who).map(|k| k.4).collect()
    };
    assert_eq!(of("alice"), (41..=50).collect::<Vec<_>>(), "the newest ten, oldest first");
    assert_eq!(of("bob"), (41..=50).collect::<Vec<_>>());
    assert_eq!(of("carol"), [8]);
    assert_eq!(store.load(0, 0).unwrap().keys.len(), 101, "0: every key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fits_max_connections_to_its_file_limit_and_refuses_the_rest_at_once() {
    use baatkaro_server::rlimit::RESERVE;
    const FILES: u64 = 160;
    let fitted = (FILES - RESERVE) as usize;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let prlimit = Process::new("prlimit").arg("--version").output();
    assert!(prlimit.is_ok(), "this test needs prlimit (util-linux): {prlimit:?}");
    // prlimit sets the limits, then execs the server: the same process.
    let mut cmd = Process::new("prlimit");
    cmd.arg(format!("--nofile={FILES}:{FILES}"))
        .arg(env!("CARGO_BIN_EXE_baatkaro-server"))
        .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir", data, "--insecure-test-hash"])
        .args(["--max-per-address", "1000"]);
    let Started { child, addr, log, stderr } = start(cmd);
    let addr: std::net::SocketAddr = addr.unwrap_or_else(|| panic!("{log:?}")).parse().unwrap();
    let rest = drain(stderr);
    let lowered = format!("max_connections lowered from 10000 to {fitted}");
    assert!(log.iter().any(|l| l.contains(&lowered) && l.contains(&FILES.to_string())), "{log:?}");

    let mut clients = Vec::new();
    for _ in 0..fitted {
        let mut c = Client::connect(addr).await;
        c.hello().await;
        clients.push(c);
    }
    let mut over = Client::connect(addr).await;
    let frames = tokio::time::timeout(Duration::from_secs(5), over.until_closed())
        .await
        .expect("the connection over the limit is answered at once");
    assert!(
        matches!(
            &frames[..],
            [ServerFrame::Event(Event::Bye(Failure {
                code: ErrorCode::TooManyConnections,
                retry_after: Some(1000),
                ..
            }))]
        ),
        "{frames:?}"
    );

    terminate(child.id());
    let exit = tokio::task::spawn_blocking(move || exit_status(child)).await.unwrap();
    assert!(exit.success(), "{exit:?}: {:?}", rest.recv_timeout(common::WAIT));
    drop(clients);
}

/// Whether process `pid` has a handler for SIGTERM, from the `SigCgt` mask in
/// /proc (bit 14 for signal 15).
fn catches_sigterm(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (15 - 1)) != 0)
}

#[test]
fn sigterm_as_soon_as_the_binary_handles_it_stops_it_with_status_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let child = Process::new(env!("CARGO_BIN_EXE_baatkaro-server"))
        .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir", data, "--insecure-test-hash"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let since = Instant::now();
    while !catches_sigterm(child.id()) {
        assert!(since.elapsed() < common::WAIT, "the server never handled SIGTERM");
        std::thread::yield_now();
    }
    terminate(child.id());
    let exit = exit_status(child);
    assert!(exit.success(), "{exit:?}");
    let store = Sqlite::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn sigterm_while_the_store_opens_stops_the_binary_with_status_0_and_a_usable_database() {
    use baatkaro_server::store::{Store, Write};
    // A database as an older server left it (schema 3), holding many idempotency
    // keys, which opening migrates to the newer table (schema 4): opening takes a
    // while, and the signal comes meanwhile.
    const KEYS: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Sqlite::open(dir.path()).unwrap();
        store.load(0, 0).unwrap();
        let now = baatkaro_server::clock::now();
        let keys: Vec<Write> = (0..KEYS as u64)
            .map(|i| Write::SendKey {
                user: "alice".parse().unwrap(),
                key: format!("k{i}").parse().unwrap(),
                conv: "@alice".parse().unwrap(),
                fingerprint: i,
                seq: i + 1,
                time: now,
            })
            .collect();
        store.commit(&keys, 1, 0).unwrap();
    }
    Sqlite::downgrade_for_tests(dir.path(), 3).unwrap();

    let data = dir.path().to_str().unwrap();
    let mut child = Process::new(env!("CARGO_BIN_EXE_baatkaro-server"))
        .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir", data, "--insecure-test-hash"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = Vec::new();
    // Bounded: the line comes among the first few, or the server has exited.
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 || line.contains("opening the store") {
            log.push(line);
            break;
        }
        log.push(line);
    }
    assert!(log.last().is_some_and(|l| l.contains("opening the store")), "{log:?}");
    terminate(child.id());
    let rest = drain(stderr);
    let exit = exit_status(child);
    let rest = rest.recv_timeout(common::WAIT).unwrap();
    assert!(exit.success(), "{exit:?}: {log:?} {rest:?}");
    assert!(!rest.iter().any(|l| l.contains("listening on")), "stopped before serving: {rest:?}");

    // The migration finished, and every key is there.
    let mut store = Sqlite::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(store.load(0, 0).unwrap().keys.len(), KEYS);
}

/// A store whose load panics: a bug in a store, as the server meets it.
struct PanicsAtLoad;

impl baatkaro_server::store::Store for PanicsAtLoad {
    fn load(&mut self, _: u64, _: u64) -> Result<baatkaro_server::store::Snapshot, StoreError> {
        panic!("a store bug at load (this panic is the test's)")
    }
    fn commit(
        &mut self,
        _: &[baatkaro_server::store::Write],
        _: u64,
        _: u64,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    fn history(
        &mut self,
        _: &baatkaro_server::store::HistoryQuery,
    ) -> Result<baatkaro_server::store::HistoryPage, StoreError> {
        Err(StoreError::Corrupt("not kept".into()))
    }
    fn unread(&mut self, _: &baatkaro_server::store::UnreadQuery) -> Result<Vec<u64>, StoreError> {
        Err(StoreError::Corrupt("not kept".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_thread_that_dies_in_its_load_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    // Bounded: the start used to wait for the store thread's answer forever.
    let started = tokio::time::timeout(
        Duration::from_secs(60),
        Server::with_store(common::config(dir.path()), PanicsAtLoad),
    )
    .await
    .expect("the start returned");
    match started {
        Err(StartError::Other(why)) => assert!(why.contains("store thread"), "{why}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a server started without its store's snapshot"),
    }
}
