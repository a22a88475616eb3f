//! Crashes: the server killed outright (SIGKILL) in the middle of a stream of
//! sends keeps every acknowledged message, with the sequence number it was
//! acknowledged with; a crash between the event log and the database recovers to
//! one state; a store from before the event log opens with its history.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use baatkaro_proto::group::GroupId;
use baatkaro_proto::{
    Command, Encode, Event, FileId, JoinRule, OfferStatus, OkReply, ServerFrame, StoredEvent, Text,
};
use baatkaro_server::store::sqlite::Sqlite;
use baatkaro_server::store::{ConvKey, EventRecord, HistoryQuery, Store, Write};
use common::process::{Running, serve, server_bin};
use common::{Client, assert_same_files, body, conv, files_under, user};
use tokio::sync::watch;

/// What was acknowledged: per conversation, the key's sequence number and text.
type Acked = Arc<Mutex<HashMap<(String, String), (u64, String)>>>;

const FAST: [&str; 8] = [
    "--limit-rate",
    "1000000",
    "--limit-burst",
    "1000000",
    "--limit-password",
    "1",
    "--logins-per-minute",
    "100000",
];

/// Sends into `to` until the connection dies, recording every acknowledgement.
async fn send_until_killed(
    mut c: Client,
    to: &'static str,
    round: usize,
    acked: Acked,
    count: watch::Sender<usize>,
) {
    for i in 0..100_000 {
        let key = format!("r{round}-{}-{i}", &to[1..]);
        let text = format!("{key} {}", "x".repeat(i % 90));
        let command = Command::Send {
            to: conv(to),
            key: key.parse().unwrap(),
            text: Text::new(&text).unwrap(),
        };
        // The server is killed under this loop: the connection closing makes the
        // client panic, which ends this task; what was acknowledged is recorded.
        let Ok(OkReply::Send { seq, .. }) = c.call(command).await.1 else { return };
        acked.lock().unwrap().insert((to.to_string(), key), (seq, text));
        count.send_modify(|n| *n += 1);
    }
}

/// Every event of `to` as `c` reads it, checking that the numbers have no gap.
async fn all_events(c: &mut Client, to: &str) -> Vec<StoredEvent> {
    let mut events: Vec<StoredEvent> = Vec::new();
    for _page in 0..1000 {
        let after = events.last().map_or(0, |e| e.seq());
        let (page, latest, _) = c.history(to, after, 500).await;
        events.extend(page);
        if events.last().map_or(0, |e| e.seq()) >= latest {
            break;
        }
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq(), i as u64 + 1, "{to}: the sequence numbers have a gap");
    }
    events
}

/// Checks that everything acknowledged is stored with its number and text, and
/// that sending it again is the same send.
async fn check(addr: SocketAddr, acked: &Acked) {
    let acked = acked.lock().unwrap().clone();
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    for (to, c) in [("#crash", &mut alice), ("@alice", &mut bob)] {
        let events = all_events(c, to).await;
        let mut checked = 0;
        for ((conv_name, key), (seq, text)) in &acked {
            if conv_name != to {
                continue;
            }
            let e = &events[*seq as usize - 1];
            assert_eq!(body(e), Some(text.as_str()), "{to} {key}: acknowledged as {seq}");
            checked += 1;
        }
        // A retry after the crash is recognised as the same send.
        if let Some(((_, key), (seq, text))) = acked.iter().find(|((c, _), _)| c == to) {
            assert_eq!(c.say(to, key, text).await, *seq, "{key} sent again");
        }
        assert!(checked > 0 || acked.is_empty(), "{to}: nothing acknowledged was checked");
    }
}

/// SplitMix64: the next of a seeded sequence of numbers (for kill points a failed
/// run can replay, not for anything secret).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where each round's kill comes: after how many acknowledgements (from 40, 260
/// and 900 on, so that at least 1,200 are checked in all), then after 0, 1 or 2 ms
/// more (tokio's timer counts whole milliseconds), so that it lands at different
/// points of the sends in flight — in a socket, in the hub, in the log's write or
/// its sync. Drawn from `BAATKARO_CRASH_SEED` when set
/// (to replay a failed run), from the clock otherwise; the seed is printed, and
/// shown with a failure.
fn kill_points() -> [(usize, std::time::Duration); 3] {
    let seed = std::env::var("BAATKARO_CRASH_SEED").ok().and_then(|s| s.parse().ok());
    let seed = seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| d.as_nanos() as u64)
    });
    eprintln!("kill points from BAATKARO_CRASH_SEED={seed}");
    let mut state = seed;
    [(40u64, 120u64), (260, 600), (900, 1400)].map(|(low, high)| {
        let count = (low + splitmix(&mut state) % (high - low)) as usize;
        let micros = splitmix(&mut state) % 2_000;
        (count, std::time::Duration::from_micros(micros))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_sends_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    // The kill comes at a different point each round, with the two senders' sends
    // in flight.
    for (round, (kill_after, then)) in kill_points().into_iter().enumerate() {
        let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
        let addr = addr.expect("it starts");
        let (alice, mut bob) = if round == 0 {
            let mut alice = Client::register(addr, "alice").await;
            let bob = Client::register(addr, "bob").await;
            let create =
                Command::Create { group: "crash".parse().unwrap(), rule: Some(JoinRule::Open) };
            alice.ok(create).await;
            (alice, bob)
        } else {
            check(addr, &acked).await;
            (Client::login(addr, "alice").await, Client::login(addr, "bob").await)
        };
        if round == 0 {
            bob.ok(Command::Join { group: "crash".parse().unwrap(), reason: None }).await;
        }
        let (count, mut seen) = watch::channel(0usize);
        let a =
            tokio::spawn(send_until_killed(alice, "#crash", round, acked.clone(), count.clone()));
        let b = tokio::spawn(send_until_killed(bob, "@alice", round, acked.clone(), count));
        tokio::time::timeout(common::WAIT, seen.wait_for(|n| *n >= kill_after))
            .await
            .expect("the sends go on")
            .unwrap();
        // Not a wait for anything: where in the sends under way the kill lands.
        tokio::time::sleep(then).await;
        kill(&mut running);
        for task in [a, b] {
            let _ = tokio::time::timeout(common::WAIT, task).await.expect("the senders stop");
        }
    }
    let (_running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    check(addr.expect("it starts"), &acked).await;
    assert!(acked.lock().unwrap().len() >= 1200);
}

/// SIGKILL: no shutdown, no checkpoint.
fn kill(running: &mut Running) {
    let mut child = running.0.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

fn message(seq: u64, text: &str) -> Write {
    let event = StoredEvent::Message {
        conv: conv("#crash"),
        seq,
        time: 1_764_072_600_000 + seq,
        from: user("alice"),
        text: Text::new(text).unwrap(),
    };
    let frame = ServerFrame::Event(Event::Stored(event.clone())).to_bytes();
    Write::Event(EventRecord::new(ConvKey::Group(GroupId(1)), &event, frame))
}

fn newest(store: &mut Sqlite, upto: u64) -> Vec<u64> {
    let q = HistoryQuery {
        conv: ConvKey::Group(GroupId(1)),
        after: None,
        limit: 100,
        upto,
        max_bytes: u64::MAX,
    };
    store.history(&q).unwrap().events.iter().map(StoredEvent::seq).collect()
}

/// The database's files as they are now, and put back later: what a crash after
/// the event log's write and before the database's commit leaves.
struct DatabaseAsOf(Vec<(std::path::PathBuf, Option<Vec<u8>>)>);

impl DatabaseAsOf {
    fn now(dir: &Path) -> Self {
        let files = ["baatkaro.db", "baatkaro.db-wal", "baatkaro.db-shm"];
        DatabaseAsOf(
            files
                .iter()
                .map(|f| dir.join(f))
                .map(|p| (p.clone(), std::fs::read(&p).ok()))
                .collect(),
        )
    }

    fn put_back(self) {
        for (path, bytes) in self.0 {
            match bytes {
                Some(b) => std::fs::write(&path, b).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

/// A store in `dir` with group 1 and its messages 1 and 2 (in the log, not yet
/// indexed in the database).
fn with_two_messages(dir: &Path) -> Sqlite {
    let mut store = Sqlite::open(dir).unwrap();
    store.load(0, 0).unwrap();
    // Sends alone go to the event log only; the group's creation goes to both.
    store
        .commit(&[Write::GroupCreated { id: GroupId(1), name: "crash".parse().unwrap() }], 2, 0)
        .unwrap();
    store.commit(&[message(1, "one"), message(2, "two")], 2, 0).unwrap();
    store
}

#[test]
fn a_crash_between_the_event_log_and_the_database_recovers_to_one_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_two_messages(dir.path());
    drop(store);
    let before = DatabaseAsOf::now(dir.path());
    let mut store = Sqlite::open(dir.path()).unwrap();
    store.load(0, 0).unwrap();
    // A batch of both halves: a new account and a message.
    let carol = Write::User { name: user("carol"), hash: "x".into(), created: 1 };
    store.commit(&[carol, message(3, "three")], 2, 0).unwrap();
    assert_eq!(newest(&mut store, 3), [1, 2, 3]);
    drop(store);
    // The crash: the log has the batch, the database never committed it.
    before.put_back();

    let mut store = Sqlite::open(dir.path()).unwrap();
    let snap = store.load(0, 0).unwrap();
    assert!(!snap.users.iter().any(|(u, _)| u.as_str() == "carol"), "the account is not there");
    let latest = snap.latest.iter().find(|(k, _)| *k == ConvKey::Group(GroupId(1))).map(|l| l.1);
    assert_eq!(latest, Some(2), "nor its message: the log was cut back to the batch");
    assert_eq!(newest(&mut store, 3), [1, 2]);
    // The sends before it, in the log alone, are kept; and the store goes on.
    store.commit(&[message(3, "three again")], 2, 0).unwrap();
    drop(store);
    let mut store = Sqlite::open(dir.path()).unwrap();
    store.load(0, 0).unwrap();
    assert_eq!(newest(&mut store, 3), [1, 2, 3]);
}

/// A store found damaged writes nothing again (SPEC.md: STORE_DAMAGED), not even
/// when it loads after the crash above: the batch whose metadata never committed
/// is left unread rather than cut from the log, and a commit is refused.
#[test]
fn a_damaged_store_loads_without_cutting_or_writing() {
    let dir = tempfile::tempdir().unwrap();
    drop(with_two_messages(dir.path()));
    let before = DatabaseAsOf::now(dir.path());
    let mut store = Sqlite::open(dir.path()).unwrap();
    store.load(0, 0).unwrap();
    let carol = Write::User { name: user("carol"), hash: "x".into(), created: 1 };
    store.commit(&[carol, message(3, "three")], 2, 0).unwrap();
    drop(store);
    before.put_back();

    let mut store = Sqlite::open(dir.path()).unwrap();
    store.stop_writing();
    let files = files_under(dir.path());
    for round in 0..2 {
        let snap = store.load(0, 0).unwrap();
        assert!(!snap.users.iter().any(|(u, _)| u.as_str() == "carol"), "round {round}");
        let latest =
            snap.latest.iter().find(|(k, _)| *k == ConvKey::Group(GroupId(1))).map(|l| l.1);
        assert_eq!(latest, Some(2), "round {round}: the batch is not read");
        assert_eq!(newest(&mut store, 3), [1, 2], "round {round}");
    }
    assert!(store.commit(&[message(3, "three again")], 2, 0).is_err(), "a commit is refused");
    store.checkpoint().unwrap();
    drop(store);
    assert_same_files(&files, &files_under(dir.path()));
    // Repaired (here: opened as usual), the store cuts the batch and goes on.
    let mut store = Sqlite::open(dir.path()).unwrap();
    store.load(0, 0).unwrap();
    store.commit(&[message(3, "three again")], 2, 0).unwrap();
    assert_eq!(newest(&mut store, 3), [1, 2, 3]);
}

#[test]
fn a_store_from_before_the_event_log_opens_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Sqlite::open(dir.path()).unwrap();
    store.load(0, 0).unwrap();
    store
        .commit(&[Write::GroupCreated { id: GroupId(1), name: "crash".parse().unwrap() }], 2, 0)
        .unwrap();
    let writes: Vec<Write> = (1..=300).map(|s| message(s, &format!("old {s}"))).collect();
    store.commit(&writes, 2, 0).unwrap();
    drop(store);
    // As schema 9 kept them: every event a row of table `events`, no log.
    Sqlite::downgrade_for_tests(dir.path(), 9).unwrap();
    assert!(!dir.path().join("events").exists());
    let rows: i64 = rusqlite::Connection::open(dir.path().join("baatkaro.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 300);

    let mut store = Sqlite::open(dir.path()).unwrap();
    store.load(0, 0).unwrap();
    assert_eq!(newest(&mut store, 300), (201..=300).collect::<Vec<_>>());
    let q = HistoryQuery {
        conv: ConvKey::Group(GroupId(1)),
        after: Some(0),
        limit: 2,
        upto: 300,
        max_bytes: u64::MAX,
    };
    let page = store.history(&q).unwrap();
    assert_eq!(
        page.events.iter().map(|e| body(e).unwrap()).collect::<Vec<_>>(),
        ["old 1", "old 2"]
    );
    assert_eq!(page.oldest, Some(1));
    store.commit(&[message(301, "new")], 2, 0).unwrap();
    assert_eq!(newest(&mut store, 301).last(), Some(&301));
    drop(store);
    let rows: i64 = rusqlite::Connection::open(dir.path().join("baatkaro.db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "moved to the log");
}

/// A send's idempotency key, as the hub writes it beside the event.
fn key_of(seq: u64) -> Write {
    Write::SendKey {
        user: user("alice"),
        key: format!("k{seq}").parse().unwrap(),
        conv: conv("#crash"),
        fingerprint: seq,
        seq,
        time: 1_764_072_600_000 + seq,
    }
}

/// Every batch in the event log, oldest first: its length, header included, and
/// its flags (the batch format is baatkaro-eventlog's frame.rs).
fn batches(dir: &Path) -> Vec<(u64, u32)> {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let mut found = Vec::new();
    for seg in segs {
        let bytes = std::fs::read(seg).unwrap();
        let mut at = 32usize;
        // To the last batch: what follows it in the active segment may be zeros
        // (a direct write fills its last block), which hold no batch.
        while at + 32 <= bytes.len() && bytes[at..at + 4] == *b"BKev" {
            let body = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
            let flags = u32::from_le_bytes(bytes[at + 20..at + 24].try_into().unwrap());
            found.push((32 + body as u64, flags));
            at += 32 + body;
        }
    }
    found
}

/// Cuts the last batch off the end of the event log, as a kill between two of
/// its writes leaves it. Returns how many bytes went (none if the last segment
/// holds no batch).
fn cut_last_batch(dir: &Path) -> u64 {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    let last = segs.last().unwrap();
    let bytes = std::fs::read(last).unwrap();
    let (mut at, mut start) = (32usize, None);
    while at + 32 <= bytes.len() && bytes[at..at + 4] == *b"BKev" {
        start = Some(at);
        let body = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        at += 32 + body;
    }
    let Some(start) = start else { return 0 };
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(start as u64).unwrap();
    (bytes.len() - start) as u64
}

#[test]
fn a_kill_between_the_parts_of_a_large_batch_keeps_no_event_without_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let small = baatkaro_server::store::MIN_SEGMENT_BYTES;
    let mut store = Sqlite::open_sized(dir.path(), false, small).unwrap();
    store.load(0, 0).unwrap();
    store
        .commit(&[Write::GroupCreated { id: GroupId(1), name: "crash".parse().unwrap() }], 2, 0)
        .unwrap();
    // One group commit larger than half a segment goes to the log in parts: every
    // send with its key, as the hub hands them over.
    let text = "y".repeat(300);
    let n = 3000;
    let writes: Vec<Write> =
        (1..=n).flat_map(|s| [message(s, &format!("{s} {text}")), key_of(s)]).collect();
    store.commit(&writes, 2, 0).unwrap();
    drop(store);
    // Its parts (the group's creation went to the database alone): each at most
    // half a segment, all but the last flagged as followed by more.
    let parts = batches(dir.path());
    assert!(parts.len() >= 2, "{parts:?}");
    for (k, &(len, flags)) in parts.iter().enumerate() {
        assert!(len <= small / 2, "part {k} is {len} bytes");
        assert_eq!(flags & 2 != 0, k + 1 < parts.len(), "part {k}'s flags {flags}");
    }
    // Killed after the first part's write and before the last one's: the batch was
    // never acknowledged.
    assert!(cut_last_batch(dir.path()) > 0);

    let mut store = Sqlite::open_sized(dir.path(), false, small).unwrap();
    let snap = store.load(0, 0).unwrap();
    let latest = snap.latest.iter().find(|(k, _)| *k == ConvKey::Group(GroupId(1))).map(|l| l.1);
    // A message kept without its key would be stored again, under a new number,
    // when its sender sends it again with the same key.
    for seq in 1..=latest.unwrap_or(0) {
        assert!(
            snap.keys.iter().any(|k| k.4 == seq),
            "message {seq} of an unacknowledged batch was kept without its key \
             (latest {latest:?}, {} keys)",
            snap.keys.len()
        );
    }
    // Sent again, whole this time: every part is read back at the next start.
    let from = latest.unwrap_or(0) + 1;
    let writes: Vec<Write> =
        (from..=n).flat_map(|s| [message(s, &format!("{s} {text}")), key_of(s)]).collect();
    store.commit(&writes, 2, 0).unwrap();
    drop(store);
    let mut store = Sqlite::open_sized(dir.path(), false, small).unwrap();
    let snap = store.load(0, 0).unwrap();
    let latest = snap.latest.iter().find(|(k, _)| *k == ConvKey::Group(GroupId(1))).map(|l| l.1);
    assert_eq!(latest, Some(n));
    assert_eq!(snap.keys.len() as u64, n - from + 1);
    assert_eq!(newest(&mut store, n).len(), 100);
}

/// The length of the event log's newest segment.
fn last_segment_len(dir: &Path) -> u64 {
    let mut segs: Vec<_> = std::fs::read_dir(dir.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segs.sort();
    std::fs::metadata(segs.last().unwrap()).unwrap().len()
}

/// A group commit that failed after its first part was written was never
/// acknowledged: no commit after it (a checkpoint's, another batch's) makes that
/// part permanent before the store is loaded again, which cuts it.
#[test]
fn a_group_commit_failed_between_its_parts_is_not_kept_by_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let small = baatkaro_server::store::MIN_SEGMENT_BYTES;
    let mut store = Sqlite::open_sized(dir.path(), false, small).unwrap();
    store.load(0, 0).unwrap();
    store
        .commit(&[Write::GroupCreated { id: GroupId(1), name: "crash".parse().unwrap() }], 2, 0)
        .unwrap();
    let text = "z".repeat(1000);
    let sends = |seqs: std::ops::RangeInclusive<u64>| -> Vec<Write> {
        seqs.flat_map(|s| [message(s, &format!("{s} {text}")), key_of(s)]).collect()
    };
    store.commit(&sends(1..=400), 2, 0).unwrap();
    // The next batch's first part (half a segment) fits in this segment, its
    // second does not.
    let active = last_segment_len(dir.path());
    assert!((300_000..=500_000).contains(&active), "{active}");
    // The log's directory moved away: the open segment is still written, but the
    // next one cannot be made.
    let (events, away) = (dir.path().join("events"), dir.path().join("events-away"));
    std::fs::rename(&events, &away).unwrap();
    assert!(store.commit(&sends(401..=1100), 2, 0).is_err());
    std::fs::rename(&away, &events).unwrap();
    assert!(last_segment_len(dir.path()) > active, "its first part was written");
    // Commits for the database alone, before the store is loaded again.
    let _ = store.checkpoint();
    let group = Write::GroupCreated { id: GroupId(2), name: "later".parse().unwrap() };
    let _ = store.commit(&[group], 3, 0);
    drop(store);

    let mut store = Sqlite::open_sized(dir.path(), false, small).unwrap();
    let snap = store.load(0, 0).unwrap();
    let latest = snap.latest.iter().find(|(k, _)| *k == ConvKey::Group(GroupId(1))).map(|l| l.1);
    assert_eq!(latest, Some(400), "only the acknowledged batch is kept");
    assert_eq!(snap.keys.len(), 400);
    assert_eq!(newest(&mut store, u64::MAX).last(), Some(&400));
}

#[test]
fn a_log_that_lost_what_the_database_indexes_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = with_two_messages(dir.path());
    store.checkpoint().unwrap(); // as at a clean stop: both are indexed
    drop(store);
    // A disk that lost synced writes, or a log put back from an older copy.
    while cut_last_batch(dir.path()) > 0 {}
    let mut store = Sqlite::open(dir.path()).unwrap();
    match store.load(0, 0) {
        Err(baatkaro_server::store::StoreError::Corrupt(why)) => {
            assert!(why.contains("indexed up to"), "{why}")
        }
        other => panic!("a start over a log missing acknowledged events: {:?}", other.map(|_| ())),
    }
}

/// The members of `#crash` as `c` lists them (MEMBERS), by name.
async fn members(c: &mut Client) -> Vec<String> {
    let (items, _) = c.ok(Command::Members { group: "crash".parse().unwrap() }).await;
    items
        .iter()
        .map(|i| match i {
            baatkaro_proto::Item::Member { user, .. } => user.to_string(),
            other => panic!("MEMBERS: {other:?}"),
        })
        .collect()
}

/// What each stored event of a group's history is: `msg TEXT`, `joined USER`,
/// `file ID`.
fn kinds(events: &[StoredEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            StoredEvent::Message { text, .. } => format!("msg {}", text.as_str()),
            StoredEvent::Joined { user, .. } => format!("joined {user}"),
            StoredEvent::File { file, .. } => format!("file {file}"),
            other => format!("{other:?}"),
        })
        .collect()
}

/// A JOIN of an open group is one batch of both halves: its membership (a row of
/// the group's log, in the database) and its JOINED event (in the event log), so
/// the batch is flagged FLAG_META in the log (events.rs, "Order of commit"). Killed
/// after that batch reached the log and before the database committed it (the
/// database put back as it was before the JOIN), the server starts with neither:
/// the log is cut back to the batch, so bob is not a member, no JOINED is in the
/// history, and the group's numbers go on from where they were, without a gap. The
/// messages before it, in the log alone, are kept with their idempotency keys; bob
/// joins again, under the number the lost JOINED had, reads a gapless history and
/// sends, and all of it is there at the next start.
///
/// It fails if a start keeps the JOINED event of a batch whose membership never
/// committed (the event without the member: a number bob never joined under, and
/// a second JOINED of his after it), or loses the sends before it, or their keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_joins_event_and_its_membership_recovers_to_neither() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let addr = addr.expect("it starts");
    let mut alice = Client::register(addr, "alice").await;
    let mut bob = Client::register(addr, "bob").await;
    alice.ok(Command::Create { group: "crash".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    // Sends go to the event log alone: past where the database indexes it.
    for (i, text) in ["one", "two", "three"].into_iter().enumerate() {
        assert_eq!(alice.say("#crash", &format!("m{}", i + 1), text).await, i as u64 + 1);
    }
    // Every batch so far is durable (each was answered); the server is idle.
    let before = DatabaseAsOf::now(dir.path());
    let logged = batches(dir.path()).len();

    let join = Command::Join { group: "crash".parse().unwrap(), reason: None };
    assert_eq!(
        bob.ok(join.clone()).await.1,
        OkReply::Join {
            group: "crash".parse().unwrap(),
            outcome: baatkaro_proto::JoinOutcome::Joined
        }
    );
    assert!(
        matches!(bob.stored().await, StoredEvent::Joined { seq: 4, .. }),
        "the JOINED event is numbered 4"
    );
    kill(&mut running);
    let after = batches(dir.path());
    assert_eq!(after.len(), logged + 1, "the JOIN is one batch in the log: {after:?}");
    assert_eq!(after.last().unwrap().1 & 1, 1, "flagged as having metadata: {after:?}");
    // The crash: the log has the JOIN's batch, the database never committed it.
    before.put_back();

    let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let addr = addr.expect("it starts after the crash");
    let mut alice = Client::login(addr, "alice").await;
    let mut bob = Client::login(addr, "bob").await;
    assert_eq!(members(&mut alice).await, ["alice"], "bob's membership never committed");
    let events = all_events(&mut alice, "#crash").await;
    assert_eq!(
        kinds(&events),
        ["msg one", "msg two", "msg three"],
        "the JOINED event of a membership that never committed is kept (or a send is lost)"
    );
    let (_, latest, _) = alice.history("#crash", 0, 1).await;
    assert_eq!(latest, 3, "the group's newest number is the last send's");
    bob.err(
        Command::History {
            conv: conv("#crash"),
            range: baatkaro_proto::HistoryRange::After(0),
            limit: 10,
        },
        baatkaro_proto::ErrorCode::NotMember,
    )
    .await;
    // The sends' keys came back with them: a retry is the same send.
    assert_eq!(alice.say("#crash", "m3", "three").await, 3, "m3 sent again");

    // bob joins again, under the number the lost JOINED had, and sends.
    bob.ok(join).await;
    assert!(
        matches!(bob.stored().await, StoredEvent::Joined { seq: 4, .. }),
        "the JOINED event is numbered 4 again"
    );
    assert_eq!(members(&mut alice).await, ["alice", "bob"]);
    assert_eq!(bob.say("#crash", "b1", "hello").await, 5);
    let expected = ["msg one", "msg two", "msg three", "joined bob", "msg hello"];
    assert_eq!(kinds(&all_events(&mut bob, "#crash").await), expected);
    kill(&mut running);

    // What came after the crash is as durable as the rest.
    let (_running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let addr = addr.expect("it starts again");
    let mut bob = Client::login(addr, "bob").await;
    assert_eq!(kinds(&all_events(&mut bob, "#crash").await), expected);
    let mut alice = Client::login(addr, "alice").await;
    assert_eq!(members(&mut alice).await, ["alice", "bob"]);
    assert_eq!(alice.say("#crash", "m6", "six").await, 6);
}

/// Deterministic bytes that are not all alike, and their SHA-256.
fn file_content(len: usize) -> (Vec<u8>, baatkaro_proto::Sha256) {
    use sha2::Digest;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let sha = baatkaro_proto::Sha256(sha2::Sha256::digest(&data).into());
    (data, sha)
}

/// FILE-OFFER of `data` to `#crash` as `notes.bin`: the file id and the status.
async fn offer_file(c: &mut Client, data: &[u8]) -> (FileId, OfferStatus) {
    offer_in(c, "#crash", data).await
}

/// FILE-OFFER to `to` as `notes.bin` of `data.len()` bytes whose SHA-256 is said to
/// be that of [`file_content`] of that length (a lie if `data` is other bytes).
async fn offer_in(c: &mut Client, to: &str, data: &[u8]) -> (FileId, OfferStatus) {
    let (_, sha256) = file_content(data.len());
    let cmd = Command::FileOffer {
        to: conv(to),
        size: data.len() as u64,
        sha256,
        name: baatkaro_proto::OfferName::new("notes.bin").unwrap(),
    };
    match c.ok(cmd).await.1 {
        OkReply::FileOffer { file, status } => (file, status),
        other => panic!("FILE-OFFER: {other:?}"),
    }
}

/// FILE-CHUNK of all of `data` at once: the bytes held after it.
async fn upload_all(c: &mut Client, file: FileId, data: &[u8]) -> u64 {
    let cmd = Command::FileChunk { file, offset: 0, data: bytes::Bytes::copy_from_slice(data) };
    match c.ok(cmd).await.1 {
        OkReply::FileChunk { received, .. } => received,
        other => panic!("FILE-CHUNK: {other:?}"),
    }
}

/// FILE-GET of the whole of `file`: its bytes, the chunks checked to come in order.
async fn download(c: &mut Client, file: FileId) -> Vec<u8> {
    let (items, _) = c.ok(Command::FileGet { file, offset: 0, length: 0 }).await;
    let mut got = Vec::new();
    for i in items {
        let baatkaro_proto::Item::Chunk { offset, data, .. } = i else { panic!("{i:?}") };
        assert_eq!(offset as usize, got.len(), "chunks in order");
        got.extend_from_slice(&data);
    }
    got
}

/// The FILE items of FILES `#crash`: each file's id and sequence number.
async fn shared_files(c: &mut Client) -> Vec<(FileId, u64)> {
    let (items, _) = c.ok(Command::Files { conv: conv("#crash") }).await;
    items
        .iter()
        .map(|i| match i {
            baatkaro_proto::Item::Stored(StoredEvent::File { file, seq, .. }) => (*file, *seq),
            other => panic!("FILES: {other:?}"),
        })
        .collect()
}

/// A FILE-COMMIT is one batch of both halves: the shared file's row (and its
/// uploader's content, and the upload's end) in the database, its FILE event in
/// the event log, so the batch is flagged FLAG_META in the log (events.rs, "Order
/// of commit"). Killed after that batch reached the log and before the database
/// committed it (the database put back as it was before the commit), the server
/// starts with neither: no FILE event in the history, no file in FILES, the
/// group's numbers going on gaplessly from the send before it. The upload is
/// still open, holding what its last save said (nothing: its ranges are saved
/// only every 64 MiB and when its connection goes), and its content is sent
/// again and committed, under the number the lost FILE event had; the file
/// downloads whole, and all of it is there at the next start.
///
/// It fails if a start keeps the FILE event of a batch whose file row never
/// committed (an event naming a file no one can list or fetch), or if the
/// upload cannot be finished after the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_files_event_and_its_row_recovers_to_neither() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let addr = addr.expect("it starts");
    let mut alice = Client::register(addr, "alice").await;
    alice.ok(Command::Create { group: "crash".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    assert_eq!(alice.say("#crash", "m1", "one").await, 1);
    let (data, _) = file_content(100_000);
    let (file, status) = offer_file(&mut alice, &data).await;
    assert_eq!(status, OfferStatus::Need);
    assert_eq!(upload_all(&mut alice, file, &data).await, data.len() as u64);
    // Every batch so far is durable (each was answered); the server is idle.
    let before = DatabaseAsOf::now(dir.path());
    let logged = batches(dir.path()).len();

    let (_, reply) = alice.ok(Command::FileCommit { file }).await;
    assert_eq!(reply, OkReply::FileCommit { file, conv: conv("#crash"), seq: 2 });
    kill(&mut running);
    let after = batches(dir.path());
    assert_eq!(after.len(), logged + 1, "the FILE-COMMIT is one batch in the log: {after:?}");
    assert_eq!(after.last().unwrap().1 & 1, 1, "flagged as having metadata: {after:?}");
    // The crash: the log has the commit's batch, the database never committed it.
    before.put_back();

    let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let addr = addr.expect("it starts after the crash");
    let mut alice = Client::login(addr, "alice").await;
    assert_eq!(shared_files(&mut alice).await, [], "the file's row never committed");
    let events = all_events(&mut alice, "#crash").await;
    assert_eq!(
        kinds(&events),
        ["msg one"],
        "the FILE event of a file whose row never committed is kept (or a send is lost)"
    );
    let (_, latest, _) = alice.history("#crash", 0, 1).await;
    assert_eq!(latest, 1, "the group's newest number is the send's");
    // The upload is open again, as its last save left it: the same offer finds it.
    let (_, r) = alice.ok(Command::FileStatus { file }).await;
    assert_eq!(r, OkReply::FileStatus { file, size: data.len() as u64, received: 0 });
    assert_eq!(offer_file(&mut alice, &data).await, (file, OfferStatus::Need));
    assert_eq!(upload_all(&mut alice, file, &data).await, data.len() as u64);
    let (_, reply) = alice.ok(Command::FileCommit { file }).await;
    assert_eq!(reply, OkReply::FileCommit { file, conv: conv("#crash"), seq: 2 });
    assert_eq!(shared_files(&mut alice).await, [(file, 2)]);
    assert_eq!(alice.say("#crash", "m3", "three").await, 3);
    kill(&mut running);

    // What came after the crash is as durable as the rest.
    let (_running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let mut alice = Client::login(addr.expect("it starts again"), "alice").await;
    let events = all_events(&mut alice, "#crash").await;
    assert!(
        matches!(&events[..], [_, StoredEvent::File { file: f, seq: 2, .. }, _] if *f == file),
        "{events:?}"
    );
    assert_eq!(shared_files(&mut alice).await, [(file, 2)]);
    assert!(download(&mut alice, file).await == data, "the download is byte-identical");
}

/// Uploads `data` to `#crash` ([`offer_file`]), then drops the connection so that
/// its ranges are saved as all held; alice again, on a new connection.
async fn upload_held(addr: SocketAddr, mut alice: Client, data: &[u8]) -> (Client, FileId) {
    let (file, status) = offer_file(&mut alice, data).await;
    assert_eq!(status, OfferStatus::Need);
    assert_eq!(upload_all(&mut alice, file, data).await, data.len() as u64);
    drop(alice);
    let mut alice = Client::login(addr, "alice").await;
    let (_, r) = alice.ok(Command::FileStatus { file }).await;
    let held = OkReply::FileStatus { file, size: data.len() as u64, received: data.len() as u64 };
    assert_eq!(r, held, "the upload's bytes were saved as held");
    (alice, file)
}

/// An upload whose every byte was saved as held (its connection closed after the
/// last chunk) and whose FILE-COMMIT crashed after the content was moved among the
/// finished files but before the commit was stored: after the restart its own bytes
/// are gone though the saved ranges say they are held. The commit must not fail
/// forever (it answered INTERNAL every time, the upload stuck until it expired):
/// it is answered UPLOAD_INCOMPLETE, FILE-STATUS then says nothing is held (also
/// after another restart), and the bytes sent again commit, the download
/// byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_whose_bytes_a_crash_took_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let addr = addr.expect("it starts");
    let mut alice = Client::register(addr, "alice").await;
    alice.ok(Command::Create { group: "crash".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    let (data, _) = file_content(100_000);
    let (mut alice, file) = upload_held(addr, alice, &data).await;
    let before = DatabaseAsOf::now(dir.path());
    let (_, reply) = alice.ok(Command::FileCommit { file }).await;
    assert_eq!(reply, OkReply::FileCommit { file, conv: conv("#crash"), seq: 1 });
    kill(&mut running);
    // The crash: the content was moved and the log has the batch; the database
    // never committed it.
    before.put_back();

    let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let mut alice = Client::login(addr.expect("it starts after the crash"), "alice").await;
    assert_eq!(shared_files(&mut alice).await, [], "the file's row never committed");
    alice.err(Command::FileCommit { file }, baatkaro_proto::ErrorCode::UploadIncomplete).await;
    let nothing = OkReply::FileStatus { file, size: data.len() as u64, received: 0 };
    assert_eq!(alice.ok(Command::FileStatus { file }).await.1, nothing, "the bytes are gone");
    kill(&mut running);

    let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let mut alice = Client::login(addr.expect("it starts again"), "alice").await;
    assert_eq!(alice.ok(Command::FileStatus { file }).await.1, nothing, "and stay gone");
    assert_eq!(upload_all(&mut alice, file, &data).await, data.len() as u64);
    let (_, reply) = alice.ok(Command::FileCommit { file }).await;
    assert_eq!(reply, OkReply::FileCommit { file, conv: conv("#crash"), seq: 1 });
    assert_eq!(alice.say("#crash", "m2", "two").await, 2);
    kill(&mut running);

    let (_running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let mut alice = Client::login(addr.expect("it starts a third time"), "alice").await;
    assert_eq!(shared_files(&mut alice).await, [(file, 1)]);
    assert!(download(&mut alice, file).await == data, "the download is byte-identical");
}

/// Knowing a file's SHA-256 is never enough to obtain it (SPEC.md 11.6), a crash
/// included: alice offers other bytes under the hash and size of a file bob shared,
/// uploads them, and her FILE-COMMIT is refused with HASH_MISMATCH, its bytes
/// deleted; a crash before the upload's end was stored brings the upload back with
/// its ranges saved as held. Her next FILE-COMMIT must not share bob's file (a
/// commit that took the finished file of that hash for her missing bytes would), and
/// she never reads it: the upload's bytes are gone, so she is told to send them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_a_hash_mismatch_never_shares_the_file_of_that_hash() {
    let dir = tempfile::tempdir().unwrap();
    let (mut running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let addr = addr.expect("it starts");
    let mut bob = Client::register(addr, "bob").await;
    bob.ok(Command::Create { group: "secret".parse().unwrap(), rule: None }).await;
    let (secret, _) = file_content(100_000);
    let (bobs, _) = offer_in(&mut bob, "#secret", &secret).await;
    assert_eq!(upload_all(&mut bob, bobs, &secret).await, secret.len() as u64);
    bob.ok(Command::FileCommit { file: bobs }).await;
    let mut alice = Client::register(addr, "alice").await;
    alice.ok(Command::Create { group: "crash".parse().unwrap(), rule: Some(JoinRule::Open) }).await;
    let other: Vec<u8> = secret.iter().map(|b| b ^ 0x5a).collect();
    let (mut alice, file) = upload_held(addr, alice, &other).await;
    let before = DatabaseAsOf::now(dir.path());
    alice.err(Command::FileCommit { file }, baatkaro_proto::ErrorCode::HashMismatch).await;
    kill(&mut running);
    // The crash: the mismatch's bytes were deleted, its end never stored.
    before.put_back();

    let (_running, _log, addr) = serve(server_bin(dir.path(), &FAST));
    let mut alice = Client::login(addr.expect("it starts after the crash"), "alice").await;
    let answer = alice.call(Command::FileCommit { file }).await.1;
    assert_eq!(
        answer.map_err(|f| f.code),
        Err(baatkaro_proto::ErrorCode::UploadIncomplete),
        "the commit of bytes the server no longer has must not succeed"
    );
    assert_eq!(shared_files(&mut alice).await, [], "nothing shared in #crash");
    alice
        .err(Command::FileGet { file, offset: 0, length: 0 }, baatkaro_proto::ErrorCode::NoSuchFile)
        .await;
}
