//! Idempotency keys kept in blocks, in the key log beside the database (schema 12,
//! store/key_log.rs; SQLite rows of blocks in schema 11, store/key_blocks.rs):
//! what a start reads back is what a model of the keys says, across flushes,
//! expiry cuts, restarts, crashes between the key log and the database, and
//! stores taken back to blocks and rows; damage is found, and a key log that lost
//! what the database says it holds is refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use baatkaro_proto::{Conversation, IdemKey, UserName};
use baatkaro_server::store::sqlite::{DB_FILE, SCHEMA_VERSION, Sqlite};
use baatkaro_server::store::verify::Checker;
use baatkaro_server::store::{Store, StoreError, Write};
use common::{assert_same_files, conv, files_under, user};
use proptest::prelude::*;

/// A key as a snapshot holds it.
type Key = (UserName, IdemKey, Conversation, u64, u64, u64);

const T0: u64 = 1_764_072_000_000;

/// Key `n` of user `u`, sent at `time`: its sequence number and fingerprint are `n`.
fn key(u: u8, n: u64, time: u64) -> Write {
    Write::SendKey {
        user: user(&format!("u{u}")),
        key: format!("k{n}").parse().unwrap(),
        conv: conv(&format!("@u{}", (u + 1) % 3)),
        fingerprint: n,
        seq: n,
        time,
    }
}

fn as_row(w: &Write) -> Key {
    let Write::SendKey { user, key, conv, fingerprint, seq, time } = w else { unreachable!() };
    (*user, *key, *conv, *fingerprint, *seq, *time)
}

fn open(dir: &Path) -> Sqlite {
    let mut s = Sqlite::open(dir).unwrap();
    s.load(0, 0).unwrap();
    s
}

/// Eighteen keys of one user, ten seconds apart, in one block (the expiry makes
/// the index flush).
fn one_block(dir: &Path) -> Sqlite {
    let mut store = open(dir);
    for i in 0..18 {
        store.commit(&[key(0, i, T0 + i * 10_000)], 1, 0).unwrap();
    }
    store.commit(&[Write::KeysExpired { before: 0 }], 1, 0).unwrap();
    store
}

fn times(keys: &[Key]) -> Vec<u64> {
    keys.iter().map(|k| k.5).collect()
}

/// The key log's segment files, in order.
fn key_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    segments_in(&dir.join("keys"))
}

/// The segment files of the log in `dir` (the key log's or the event log's).
fn segments_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// The bytes the key log's segments hold: each up to its last byte that is not
/// zero (a segment may be a file written with zeros ahead, longer than its data).
fn key_log_bytes(dir: &Path) -> u64 {
    key_segments(dir).iter().map(|p| used(p)).sum()
}

/// Where a segment's last batch ends: past it the file may hold zeros (a direct
/// write fills its last block).
fn batches_end(bytes: &[u8]) -> usize {
    let mut at = 32;
    while at + 32 <= bytes.len() && bytes[at..at + 4] == *b"BKev" {
        at += 32 + u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    at
}

fn used(segment: &Path) -> u64 {
    let bytes = std::fs::read(segment).unwrap();
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i as u64 + 1)
}

#[test]
fn damage_in_the_key_log_is_found_by_the_check_and_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    drop(one_block(dir.path()));
    let path = dir.path().join(DB_FILE);
    Checker::open(&path).unwrap().check(u64::MAX).unwrap();
    // A flipped bit in the last key's sequence number (its record ends with
    // fingerprint, sequence number and time, eight bytes each), the last bytes of
    // the log's only batch.
    let seg = key_segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = batches_end(&bytes) - 16;
    bytes[at] ^= 0x04;
    std::fs::write(&seg, bytes).unwrap();
    let found = Checker::open(&path).unwrap().check(u64::MAX);
    assert!(matches!(found, Err(StoreError::Corrupt(_))), "the check: {found:?}");
    // Not taken for a torn write and cut: the database says the log holds it.
    let loaded = Sqlite::open(dir.path()).and_then(|mut s| s.load(0, 0));
    match loaded {
        Err(StoreError::Corrupt(_)) => {}
        Ok(snap) => panic!(
            "a damaged key log loaded, its last key now sequence number {}",
            snap.keys.last().map_or(0, |k| k.4)
        ),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_key_log_that_lost_what_the_database_says_it_holds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(one_block(dir.path()));
    // Deleted, or put back from an older copy: the database says it held keys.
    std::fs::remove_dir_all(dir.path().join("keys")).unwrap();
    match Sqlite::open(dir.path()).and_then(|mut s| s.load(0, 0)) {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("key log"), "{why}"),
        Ok(_) => panic!("a store whose key log is gone started"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_store_taken_back_to_rows_keeps_expired_keys_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = one_block(dir.path());
    store.commit(&[Write::KeysExpired { before: T0 + 50_000 }], 1, 0).unwrap();
    assert_eq!(times(&store.load(0, 0).unwrap().keys).len(), 13);
    drop(store);
    Sqlite::downgrade_for_tests(dir.path(), 10).unwrap();
    let want: Vec<u64> = (5..18).map(|i| T0 + i * 10_000).collect();
    let mut old = Sqlite::open_at(dir.path(), 10).unwrap();
    assert_eq!(times(&old.load(0, 0).unwrap().keys), want, "as rows");
    drop(old);
    assert_eq!(times(&open(dir.path()).load(0, 0).unwrap().keys), want, "moved back to blocks");
}

#[test]
fn a_store_taken_back_twice_keeps_its_keys_and_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    drop(one_block(dir.path()));
    let want: Vec<u64> = (0..18).map(|i| T0 + i * 10_000).collect();
    // To schema 10 (rows), then from there to 9 (no event log): the second step
    // opens the store, which moves the rows into blocks again.
    Sqlite::downgrade_for_tests(dir.path(), 10).unwrap();
    Sqlite::downgrade_for_tests(dir.path(), 9).unwrap();
    let mut old = Sqlite::open_at(dir.path(), 9).unwrap();
    assert_eq!(times(&old.load(0, 0).unwrap().keys), want, "schema 9");
    drop(old);
    let mut store = Sqlite::open(dir.path()).unwrap();
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want, "migrated again");
}

#[test]
fn a_later_start_with_an_earlier_cut_brings_no_expired_key_back() {
    // A start leaves out the keys before its `keys_since`: a later start whose cut
    // is earlier (a longer `keys` window, a clock set back) must not find them
    // again, as it did not when they were rows.
    let dir = tempfile::tempdir().unwrap();
    let mut store = one_block(dir.path());
    let want: Vec<u64> = (5..18).map(|i| T0 + i * 10_000).collect();
    assert_eq!(times(&store.load(T0 + 50_000, 0).unwrap().keys), want);
    assert!(key_log_bytes(dir.path()) > 32, "the key log holds newer keys");
    drop(store);
    let mut store = Sqlite::open(dir.path()).unwrap();
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want, "the block's keys");
    // So for keys read back from the event log at a start, not yet in a block.
    for i in 18..20 {
        store.commit(&[key(0, i, T0 + i * 10_000)], 1, 0).unwrap();
    }
    drop(store);
    let mut store = Sqlite::open(dir.path()).unwrap();
    let want = [T0 + 190_000];
    assert_eq!(times(&store.load(T0 + 190_000, 0).unwrap().keys), want);
    store.checkpoint().unwrap();
    drop(store);
    let mut store = Sqlite::open(dir.path()).unwrap();
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want, "the log's keys");
}

/// What happens to the store between two comparisons.
#[derive(Clone, Debug)]
enum Op {
    /// Keys of these users, each `step` ms after the one before; `flush` adds a
    /// write for the database, which makes the index flush.
    Sends { users: Vec<u8>, step: u64, flush: bool },
    /// Many keys at once: more than a flush holds.
    Many { users: u8 },
    /// `KeysExpired` at `back` ms before the newest key's time.
    Expire { back: u64 },
    /// A load in place, with its cut `back` ms before now.
    Load { back: u64, limit: u64 },
    /// Closed (no checkpoint: as a kill between two commits) and opened again.
    Restart { back: u64, limit: u64 },
    /// A batch with keys and an expiry whose database transaction never commits:
    /// its event log batch is there, the database as before it.
    CrashMidFlush { users: Vec<u8>, back: u64 },
    /// Taken back to schema 10 (keys as rows), loaded and written there, and
    /// opened again with this build.
    Rows { back: u64, limit: u64, users: Vec<u8> },
}

fn users() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..3, 1..30)
}

fn back() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0u64..200_000, Just(u64::MAX)]
}

fn limit() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..4, Just(20)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (users(), 0u64..5_000, any::<bool>())
            .prop_map(|(users, step, flush)| Op::Sends { users, step, flush }),
        1 => (1u8..=3).prop_map(|users| Op::Many { users }),
        3 => back().prop_map(|back| Op::Expire { back }),
        2 => (back(), limit()).prop_map(|(back, limit)| Op::Load { back, limit }),
        2 => (back(), limit()).prop_map(|(back, limit)| Op::Restart { back, limit }),
        1 => (users(), back()).prop_map(|(users, back)| Op::CrashMidFlush { users, back }),
        1 => (back(), limit(), users()).prop_map(|(back, limit, users)| Op::Rows { back, limit, users }),
    ]
}

/// What the store should hold: every key written, in order, and the cut before
/// which keys are gone (the latest expiry or start's).
#[derive(Clone, Default)]
struct Model {
    keys: Vec<Write>,
    cut: u64,
    now: u64,
    next: u64,
    /// The latest start's `keys_since`: starts never cut earlier than the one
    /// before (a clock that goes forward, the same `keys` window), as keys still
    /// only in the event log are expired by a start only when they reach a block.
    since: u64,
}

impl Model {
    /// The next keys of `users`, `step` ms apart, written into the model.
    fn sends(&mut self, users: &[u8], step: u64) -> Vec<Write> {
        let mut out = Vec::new();
        for &u in users {
            self.now += step;
            self.next += 1;
            out.push(key(u, self.next, self.now));
        }
        self.keys.extend(out.iter().cloned());
        out
    }

    /// What a start at `since` with `limit` keys per user reads, and the cut moved.
    fn load(&mut self, since: u64, limit: u64) -> Vec<Key> {
        self.cut = self.cut.max(since);
        let kept: Vec<Key> = self.keys.iter().map(as_row).filter(|k| k.5 >= self.cut).collect();
        let mut seen = std::collections::HashMap::new();
        let mut keep = vec![false; kept.len()];
        for (i, k) in kept.iter().enumerate().rev() {
            let n = seen.entry(k.0).or_insert(0u64);
            *n += 1;
            keep[i] = limit == 0 || *n <= limit;
        }
        kept.into_iter().zip(keep).filter(|(_, k)| *k).map(|(k, _)| k).collect()
    }

    fn before(&self, back: u64) -> u64 {
        self.now.saturating_sub(back)
    }

    /// A start's `keys_since`, `back` ms before now, or the last one's.
    fn since(&mut self, back: u64) -> u64 {
        self.since = self.since.max(self.now.saturating_sub(back));
        self.since
    }
}

fn database_files(dir: &Path) -> Vec<(std::path::PathBuf, Option<Vec<u8>>)> {
    ["baatkaro.db", "baatkaro.db-wal", "baatkaro.db-shm"]
        .iter()
        .map(|f| dir.join(f))
        .map(|p| (p.clone(), std::fs::read(&p).ok()))
        .collect()
}

fn put_back(files: Vec<(std::path::PathBuf, Option<Vec<u8>>)>) {
    for (path, bytes) in files {
        match bytes {
            Some(b) => std::fs::write(&path, b).unwrap(),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// Opens the store in `dir` with the smallest segments (1 MiB: key log batches
/// of at most a quarter of that), so that a few flushes fill a segment of the
/// key log and expiry removes whole ones.
fn open_small(dir: &Path) -> Sqlite {
    Sqlite::open_sized(dir, false, baatkaro_server::store::MIN_SEGMENT_BYTES).unwrap()
}

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut m = Model { now: T0, ..Model::default() };
    let mut store = open_small(dir);
    store.load(0, 0).unwrap();
    // Users exist, so that the hub would take their keys.
    let accounts: Vec<Write> = (0..3)
        .map(|u| Write::User { name: user(&format!("u{u}")), hash: "x".into(), created: 1 })
        .collect();
    store.commit(&accounts, 1, 0).unwrap();
    for (step, op) in ops.iter().enumerate() {
        let check = |got: Vec<Key>, want: Vec<Key>| {
            assert_eq!(times(&got), times(&want), "step {step}: {op:?}");
            assert_eq!(got, want, "step {step}: {op:?}");
        };
        match op {
            Op::Sends { users, step, flush } => {
                let mut writes = m.sends(users, *step);
                if *flush {
                    writes.push(Write::KeysExpired { before: 0 });
                }
                store.commit(&writes, 1, 0).unwrap();
            }
            Op::Many { users } => {
                let us: Vec<u8> = (0..9000).map(|i| (i % u32::from(*users)) as u8).collect();
                let writes = m.sends(&us, 1);
                store.commit(&writes, 1, 0).unwrap();
            }
            Op::Expire { back } => {
                let before = m.before(*back);
                store.commit(&[Write::KeysExpired { before }], 1, 0).unwrap();
                m.cut = m.cut.max(before);
            }
            Op::Load { back, limit } => {
                let since = m.since(*back);
                let got = store.load(since, *limit).unwrap().keys;
                check(got, m.load(since, *limit));
            }
            Op::Restart { back, limit } => {
                drop(store);
                store = open_small(dir);
                let since = m.since(*back);
                let got = store.load(since, *limit).unwrap().keys;
                check(got, m.load(since, *limit));
            }
            Op::CrashMidFlush { users, back } => {
                drop(store);
                let files = database_files(dir);
                // The logs' segments: those an expiry (the key log's) or a flush
                // that leaves them unused (the event log's) removes only once the
                // database committed it, which here it never did.
                let segments: Vec<_> = key_segments(dir)
                    .into_iter()
                    .chain(segments_in(&dir.join("events")))
                    .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
                    .collect();
                let before = m.clone();
                store = open_small(dir);
                let got = store.load(m.since, 0).unwrap().keys;
                check(got, m.load(m.since, 0));
                let mut writes = m.sends(users, 1);
                writes.push(Write::KeysExpired { before: m.before(*back) });
                store.commit(&writes, 1, 0).unwrap();
                drop(store);
                put_back(files);
                for (path, bytes) in segments {
                    if !path.exists() {
                        std::fs::write(path, bytes).unwrap();
                    }
                }
                m = Model { now: m.now, next: m.next, ..before };
                store = open_small(dir);
                let got = store.load(m.since, 0).unwrap().keys;
                check(got, m.load(m.since, 0));
            }
            Op::Rows { back, limit, users } => {
                drop(store);
                Sqlite::downgrade_for_tests(dir, 10).unwrap();
                let mut old = Sqlite::open_at(dir, 10).unwrap();
                let since = m.since(*back);
                let got = old.load(since, *limit).unwrap().keys;
                check(got, m.load(since, *limit));
                // Rows written there, half flushed.
                let writes = m.sends(users, 1);
                let (a, b) = writes.split_at(writes.len() / 2);
                old.commit(a, 1, 0).unwrap();
                old.commit(&[Write::KeysExpired { before: 0 }], 1, 0).unwrap();
                old.commit(b, 1, 0).unwrap();
                drop(old);
                store = open_small(dir);
                let got = store.load(since, *limit).unwrap().keys;
                check(got, m.load(since, *limit));
            }
        }
    }
    drop(store);
    let got = open_small(dir).load(m.since, 0).unwrap().keys;
    assert_eq!(got, m.load(m.since, 0), "at the end");
    Checker::open(&dir.join(DB_FILE)).unwrap().check(u64::MAX).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_start_reads_back_the_keys_a_model_keeps(ops in prop::collection::vec(op(), 1..14)) {
        run(&ops);
    }
}

/// Keys `from..to` of user 0, ten seconds apart from T0.
fn keys(from: u64, to: u64) -> Vec<Write> {
    (from..to).map(|i| key(0, i, T0 + i * 10_000)).collect()
}

fn flush() -> Write {
    Write::KeysExpired { before: 0 }
}

#[test]
fn a_crash_after_the_key_log_and_before_the_database_keeps_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    drop(one_block(dir.path()));
    let before = database_files(dir.path());
    let logged = key_log_bytes(dir.path());
    let mut store = open(dir.path());
    for k in keys(18, 24) {
        store.commit(&[k], 1, 0).unwrap();
    }
    // The flush: the key log's batch, then the database's transaction.
    store.commit(&[flush()], 1, 0).unwrap();
    drop(store);
    assert!(key_log_bytes(dir.path()) > logged, "the flush wrote the key log");
    // The crash: the database never committed the flush.
    put_back(before);

    let want: Vec<u64> = (0..24).map(|i| T0 + i * 10_000).collect();
    let mut store = Sqlite::open(dir.path()).unwrap();
    assert_eq!(key_log_bytes(dir.path()), logged, "the key log is cut back at open");
    // Keys 18..24 come back once, from the event log, not also from the key log.
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want);
    store.checkpoint().unwrap();
    drop(store);
    assert_eq!(times(&open(dir.path()).load(0, 0).unwrap().keys), want, "flushed again");
}

#[test]
fn a_failed_key_log_write_loses_no_acknowledged_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_small(dir.path());
    store.load(0, 0).unwrap();
    // Flushes of 2,000 keys (about 80 KB each) until the key log's newest segment
    // (1 MiB at most) has less room left than the failing flush below takes.
    let mut n = 0;
    while used(key_segments(dir.path()).last().unwrap()) < 800 << 10 {
        let mut writes = keys(n, n + 2000);
        writes.push(flush());
        store.commit(&writes, 1, 0).unwrap();
        n += 2000;
        assert!(n < 200_000, "the key log does not grow");
    }
    // Acknowledged sends whose keys are in the event log only, not yet flushed.
    let acked = keys(n, n + 100);
    store.commit(&acked, 1, 0).unwrap();
    n += 100;
    // The key log's directory moved away: its next segment cannot be made, and the
    // flush that needs it fails.
    let (keys_dir, away) = (dir.path().join("keys"), dir.path().join("keys-away"));
    std::fs::rename(&keys_dir, &away).unwrap();
    let mut writes = keys(n, n + 9000);
    writes.push(flush());
    assert!(store.commit(&writes, 1, 0).is_err(), "the flush needed a new key log segment");
    std::fs::rename(&away, &keys_dir).unwrap();
    drop(store);

    let mut store = open_small(dir.path());
    let got = times(&store.load(0, 0).unwrap().keys);
    let want: Vec<u64> = (0..n).map(|i| T0 + i * 10_000).collect();
    assert_eq!(got, want, "every acknowledged key, once; none of the failed batch");
}

#[test]
fn expiry_removes_whole_key_log_segments_and_no_later_start_brings_keys_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open_small(dir.path());
    store.load(0, 0).unwrap();
    // At least 60,000 keys (about 2.4 MB): the oldest 30,000 fill more than the
    // first segment.
    let mut n = 0;
    while key_segments(dir.path()).len() < 4 || n < 60_000 {
        let mut writes = keys(n, n + 2000);
        writes.push(flush());
        store.commit(&writes, 1, 0).unwrap();
        n += 2000;
        assert!(n < 200_000, "the key log does not roll");
    }
    let first = key_segments(dir.path());
    // A cut at the middle key: the segments wholly before it go, the one it falls
    // in stays with keys on both sides of it.
    let cut = T0 + (n / 2) * 10_000;
    store.commit(&[Write::KeysExpired { before: cut }], 1, 0).unwrap();
    let left = key_segments(dir.path());
    assert!(left.len() < first.len(), "{} -> {}", first.len(), left.len());
    assert!(!left.contains(&first[0]));
    let want: Vec<u64> = (n / 2..n).map(|i| T0 + i * 10_000).collect();
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want);
    drop(store);
    // A later start with an earlier cut: the straddling segment's older keys stay
    // expired.
    let mut store = open_small(dir.path());
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want);
    // A start's own cut removes segments too.
    let later = T0 + (n - 10) * 10_000;
    assert_eq!(store.load(later, 0).unwrap().keys.len(), 10);
    assert_eq!(key_segments(dir.path()).len(), 1);
    drop(store);
    assert_eq!(open_small(dir.path()).load(0, 0).unwrap().keys.len(), 10);
    Checker::open(&dir.path().join(DB_FILE)).unwrap().check(u64::MAX).unwrap();
}

#[test]
fn blocks_of_schema_11_move_into_the_key_log_with_their_floors() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = Sqlite::open_at(dir.path(), 11).unwrap();
    old.load(0, 0).unwrap();
    let mut writes = keys(0, 18);
    writes.push(flush());
    old.commit(&writes, 1, 0).unwrap();
    // A cut through the block: its floor is raised, its older keys stay in it.
    old.commit(&[Write::KeysExpired { before: T0 + 50_000 }], 1, 0).unwrap();
    let mut writes = keys(18, 30);
    writes.push(flush());
    old.commit(&writes, 1, 0).unwrap();
    // And keys in the event log only.
    old.commit(&keys(30, 32), 1, 0).unwrap();
    drop(old);
    let db = || rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let count = |sql: &str| -> i64 { db().query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM key_blocks"), 2);

    let want: Vec<u64> = (5..32).map(|i| T0 + i * 10_000).collect();
    for round in 0..2 {
        let mut store = Sqlite::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(count("SELECT COUNT(*) FROM key_blocks"), 0, "round {round}");
        assert_eq!(times(&store.load(0, 0).unwrap().keys), want, "round {round}");
    }
    assert!(key_log_bytes(dir.path()) > 32);
    Checker::open(&dir.path().join(DB_FILE)).unwrap().check(u64::MAX).unwrap();
}

#[test]
fn rows_of_schema_10_move_into_the_key_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut old = Sqlite::open_at(dir.path(), 10).unwrap();
    old.load(0, 0).unwrap();
    let mut writes = keys(0, 18);
    writes.push(flush());
    old.commit(&writes, 1, 0).unwrap();
    old.commit(&keys(18, 20), 1, 0).unwrap();
    drop(old);
    let want: Vec<u64> = (0..20).map(|i| T0 + i * 10_000).collect();
    let mut store = Sqlite::open(dir.path()).unwrap();
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want);
    store.checkpoint().unwrap();
    drop(store);
    assert_eq!(times(&open(dir.path()).load(0, 0).unwrap().keys), want, "after a restart");
}

/// Fills the key log's newest segment with flushes of 2,000 keys of user 0 from
/// key `n` on until it has less room left than 9,000 more keys take; returns the
/// next key's number.
fn fill_a_segment(store: &mut Sqlite, dir: &Path, mut n: u64) -> u64 {
    while used(key_segments(dir).last().unwrap()) < 800 << 10 {
        let mut writes = keys(n, n + 2000);
        writes.push(flush());
        store.commit(&writes, 1, 0).unwrap();
        n += 2000;
        assert!(n < 200_000, "the key log does not grow");
    }
    n
}

/// A crash during a flush whose key log batch began a new segment, the database's
/// transaction not committed; `written`: whether that batch reached the disk (or
/// only the new segment's header did). Each acknowledged key comes back once, the
/// check passes, and the store goes on from there.
fn crash_in_a_flush_that_began_a_segment(written: bool) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut store = open_small(dir);
    store.load(0, 0).unwrap();
    let mut n = fill_a_segment(&mut store, dir, 0);
    let segments = key_segments(dir).len();
    // Acknowledged: in the event log, not yet flushed.
    store.commit(&keys(n, n + 9000), 1, 0).unwrap();
    n += 9000;
    let before = database_files(dir);
    store.commit(&[flush()], 1, 0).unwrap();
    drop(store);
    let new = key_segments(dir);
    assert_eq!(new.len(), segments + 1, "the flush began a key log segment");
    put_back(before);
    if !written {
        let f = std::fs::OpenOptions::new().write(true).open(new.last().unwrap()).unwrap();
        f.set_len(baatkaro_eventlog::SEGMENT_HEADER).unwrap();
    }
    // What lies past `keys_logged` is no damage: a restart cuts it.
    Checker::open(&dir.join(DB_FILE)).unwrap().check(u64::MAX).unwrap();

    let want: Vec<u64> = (0..n).map(|i| T0 + i * 10_000).collect();
    let mut store = open_small(dir);
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want, "after the crash");
    // Written again, then more, through a cut and restarts.
    store.commit(&keys(n, n + 10), 1, 0).unwrap();
    store.commit(&[flush()], 1, 0).unwrap();
    let cut = T0 + 10 * 10_000;
    store.commit(&[Write::KeysExpired { before: cut }], 1, 0).unwrap();
    let want: Vec<u64> = (10..n + 10).map(|i| T0 + i * 10_000).collect();
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want, "in place");
    drop(store);
    for round in 0..2 {
        let mut store = open_small(dir);
        assert_eq!(times(&store.load(0, 0).unwrap().keys), want, "restart {round}");
    }
    Checker::open(&dir.join(DB_FILE)).unwrap().check(u64::MAX).unwrap();
}

#[test]
fn a_crash_in_a_flush_that_began_a_key_log_segment_keeps_each_key_once() {
    crash_in_a_flush_that_began_a_segment(true);
}

#[test]
fn a_crash_after_a_key_log_segment_was_begun_and_before_its_batch_keeps_each_key_once() {
    crash_in_a_flush_that_began_a_segment(false);
}

#[test]
fn a_crash_between_an_expiry_and_the_removal_of_its_segments_is_made_good_at_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut store = open_small(dir);
    store.load(0, 0).unwrap();
    let mut n = 0;
    while key_segments(dir).len() < 4 {
        let mut writes = keys(n, n + 2000);
        writes.push(flush());
        store.commit(&writes, 1, 0).unwrap();
        n += 2000;
        assert!(n < 200_000, "the key log does not roll");
    }
    let copies: Vec<_> =
        key_segments(dir).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    let cut = T0 + (n / 2) * 10_000;
    store.commit(&[Write::KeysExpired { before: cut }], 1, 0).unwrap();
    let left = key_segments(dir);
    assert!(left.len() < copies.len());
    drop(store);
    // The removal never reached the disk.
    for (path, bytes) in &copies {
        if !path.exists() {
            std::fs::write(path, bytes).unwrap();
        }
    }
    let want: Vec<u64> = (n / 2..n).map(|i| T0 + i * 10_000).collect();
    let mut store = open_small(dir);
    assert_eq!(times(&store.load(0, 0).unwrap().keys), want);
    assert_eq!(key_segments(dir), left, "the start removed them again");
    drop(store);
    Checker::open(&dir.join(DB_FILE)).unwrap().check(u64::MAX).unwrap();
}

#[test]
fn an_expiry_before_any_load_removes_no_segment_with_live_keys() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut store = open_small(dir);
    store.load(0, 0).unwrap();
    let mut n = 0;
    while key_segments(dir).len() < 3 {
        let mut writes = keys(n, n + 2000);
        writes.push(flush());
        store.commit(&writes, 1, 0).unwrap();
        n += 2000;
        assert!(n < 200_000, "the key log does not roll");
    }
    drop(store);
    // Opened and cut through its first keys before anything was loaded (the store
    // thread's first job is a load, but nothing in `Store` says so).
    let mut store = open_small(dir);
    let cut = T0 + 10 * 10_000;
    store.commit(&[Write::KeysExpired { before: cut }], 1, 0).unwrap();
    let got = times(&store.load(0, 0).unwrap().keys);
    // Compared by count and ends: a failure here lists tens of thousands of keys.
    assert_eq!((got.len() as u64, got.first()), (n - 10, Some(&cut)), "keys read back");
    assert_eq!(got, (10..n).map(|i| T0 + i * 10_000).collect::<Vec<_>>());
}

#[test]
fn a_start_whose_cut_fails_keeps_the_cuts_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = one_block(dir.path());
    store.commit(&[Write::KeysExpired { before: T0 + 50_000 }], 1, 0).unwrap();
    drop(store);
    let db = || rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    // The start's cut fails as it is written (a full disk, an I/O error): here a
    // trigger refuses the new row of `key_floors`.
    db().execute_batch(
        "CREATE TRIGGER refuse_cut BEFORE INSERT ON key_floors
         BEGIN SELECT RAISE(ABORT, 'a write that fails'); END;",
    )
    .unwrap();
    let failed = Sqlite::open(dir.path()).and_then(|mut s| s.load(T0 + 60_000, 0));
    assert!(failed.is_err(), "the trigger refused the cut");
    db().execute_batch("DROP TRIGGER refuse_cut").unwrap();
    // A later start with an earlier cut (a clock set back): the cut before the
    // failed one still holds, its keys stay expired.
    let want: Vec<u64> = (5..18).map(|i| T0 + i * 10_000).collect();
    assert_eq!(times(&open(dir.path()).load(0, 0).unwrap().keys), want);
}

/// `meta.keys_first`, as the store recorded it.
fn keys_first(dir: &Path) -> Option<i64> {
    let db = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    db.query_row("SELECT value FROM meta WHERE key = 'keys_first'", [], |r| r.get(0)).ok()
}

fn refused_for_a_missing_segment(dir: &Path) {
    match Sqlite::open_sized(dir, false, baatkaro_server::store::MIN_SEGMENT_BYTES)
        .and_then(|mut s| s.load(0, 0))
    {
        Err(StoreError::Corrupt(why)) => assert!(why.contains("is missing"), "{why}"),
        Ok(snap) => {
            panic!("started without the key log's oldest segment: {} keys", snap.keys.len())
        }
        Err(e) => panic!("{e}"),
    }
}

/// Only an expiry removes key log segments, and the database records where the
/// log then begins: a segment found missing otherwise (deleted, or a copy put
/// back without it) would silently forget keys, and a resend after the restart
/// would be stored twice. The store refuses to start instead. A store from before
/// the beginning was recorded is taken as it is, and checked from then on.
/// A store whose key log lost its first segments to an expiry: eight flushes of
/// 20,000 keys (about half a MB each), a round's keys an hour after the one
/// before, the first four rounds expired. The segments before and after.
fn expired_store(dir: &Path) -> (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) {
    let mut store = open_small(dir);
    store.load(0, 0).unwrap();
    let hour = 3_600_000;
    for round in 0..8u64 {
        let mut writes: Vec<Write> =
            (0..20_000).map(|i| key(0, round * 20_000 + i, T0 + round * hour + i)).collect();
        writes.push(flush());
        store.commit(&writes, 1, 0).unwrap();
    }
    let all = key_segments(dir);
    assert!(all.len() >= 3, "{all:?}");
    // The segments holding only the first four rounds' keys go.
    store.commit(&[Write::KeysExpired { before: T0 + 4 * hour }], 1, 0).unwrap();
    drop(store);
    let left = key_segments(dir);
    assert!(left.len() < all.len() && left.len() >= 2, "{all:?} -> {left:?}");
    (all, left)
}

#[test]
fn a_key_log_missing_its_oldest_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, left) = expired_store(dir.path());
    assert!(keys_first(dir.path()).is_some_and(|f| f > 0), "the new beginning is recorded");
    // Opened again as the expiry left it: no false alarm, and the keys kept.
    let kept = open_small(dir.path()).load(0, 0).unwrap().keys;
    assert_eq!(kept.len(), 80_000);
    // A store from before the beginning was recorded starts as it is...
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    db.execute("DELETE FROM meta WHERE key = 'keys_first'", []).unwrap();
    drop(db);
    assert_eq!(open_small(dir.path()).load(0, 0).unwrap().keys.len(), 80_000);
    assert!(keys_first(dir.path()).is_some(), "and records it");
    // ...and losing the oldest segment left is found from then on.
    std::fs::remove_file(&left[0]).unwrap();
    refused_for_a_missing_segment(dir.path());
}

/// A build from before schema 13 does not know `keys_first`: an expiry of its own
/// removes segments without moving it. Its store is taken as its key log begins
/// (the schema step forgets `keys_first`), not refused as missing a segment.
#[test]
fn a_key_log_an_older_build_expired_is_taken_as_it_begins() {
    let dir = tempfile::tempdir().unwrap();
    let (_, left) = expired_store(dir.path());
    let recorded = keys_first(dir.path()).unwrap();
    // As schema 12 left it, after its own expiry of the oldest segment left.
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    db.pragma_update(None, "user_version", 12).unwrap();
    drop(db);
    std::fs::remove_file(&left[0]).unwrap();
    let mut store = open_small(dir.path());
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let kept = store.load(0, 0).unwrap().keys.len();
    assert!(kept > 0 && kept < 80_000, "{kept} keys");
    assert!(keys_first(dir.path()).is_some_and(|f| f > recorded), "the new beginning recorded");
}

/// A store found damaged writes nothing again (SPEC.md: STORE_DAMAGED): a load
/// leaves out the keys a start's expiry would cut, and neither records the cut nor
/// removes the segments it empties (fails with either done).
#[test]
fn a_damaged_store_expires_keys_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let _ = expired_store(dir.path());
    let hour = 3_600_000;
    let mut store = open_small(dir.path());
    store.stop_writing();
    let files = files_under(dir.path());
    let keys = store.load(T0 + 6 * hour, 0).unwrap().keys;
    assert_eq!(keys.len(), 40_000, "only the last two rounds' keys");
    assert!(keys.iter().all(|k| k.5 >= T0 + 6 * hour));
    drop(store);
    assert_same_files(&files, &files_under(dir.path()));
}
