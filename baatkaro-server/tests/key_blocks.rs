//! Idempotency keys kept in blocks (schema 11, store/key_blocks.rs): what a start
//! reads back is what a model of the keys says, across flushes, expiry cuts,
//! restarts, crashes between the event log and the database, and stores taken
//! back to rows; a damaged block is found whatever expiry did to it since.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use baatkaro_proto::{Conversation, IdemKey, UserName};
use baatkaro_server::store::sqlite::{DB_FILE, Sqlite};
use baatkaro_server::store::verify::Checker;
use baatkaro_server::store::{Store, StoreError, Write};
use common::{conv, user};
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

fn blocks(dir: &Path) -> i64 {
    rusqlite::Connection::open(dir.join(DB_FILE))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM key_blocks", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_damaged_block_still_fails_its_checksum_after_an_expiry_cut_through_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(one_block(dir.path()));
    // A flipped bit in the last key's sequence number (its record ends with
    // fingerprint, sequence number and time, eight bytes each).
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let mut keys: Vec<u8> = db.query_row("SELECT keys FROM key_blocks", [], |r| r.get(0)).unwrap();
    let at = keys.len() - 16;
    keys[at] ^= 0x04;
    db.execute("UPDATE key_blocks SET keys = ?", [&keys]).unwrap();
    drop(db);
    let path = dir.path().join(DB_FILE);
    assert!(Checker::open(&path).unwrap().check(u64::MAX).is_err(), "found before the cut");

    // An expiry cut through the block raises its floor, and with it rewrites its
    // checksum: the damage must still show.
    let mut store = Sqlite::open(dir.path()).unwrap();
    store.commit(&[Write::KeysExpired { before: T0 + 50_000 }], 1, 0).unwrap();
    drop(store);
    let found = Checker::open(&path).unwrap().check(u64::MAX);
    assert!(
        matches!(&found, Err(StoreError::Corrupt(why)) if why.contains("key_blocks")),
        "the check after the cut: {found:?}"
    );
    let loaded = Sqlite::open(dir.path()).unwrap().load(0, 0);
    match loaded {
        Err(StoreError::Corrupt(_)) => {}
        Ok(snap) => panic!(
            "a damaged block loaded after an expiry, its last key now sequence number {}",
            snap.keys.last().map_or(0, |k| k.4)
        ),
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
    assert_eq!(blocks(dir.path()), 1, "the block holds newer keys");
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

fn run(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let mut m = Model { now: T0, ..Model::default() };
    let mut store = open(dir);
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
                store = Sqlite::open(dir).unwrap();
                let since = m.since(*back);
                let got = store.load(since, *limit).unwrap().keys;
                check(got, m.load(since, *limit));
            }
            Op::CrashMidFlush { users, back } => {
                drop(store);
                let files = database_files(dir);
                let before = m.clone();
                store = Sqlite::open(dir).unwrap();
                let got = store.load(m.since, 0).unwrap().keys;
                check(got, m.load(m.since, 0));
                let mut writes = m.sends(users, 1);
                writes.push(Write::KeysExpired { before: m.before(*back) });
                store.commit(&writes, 1, 0).unwrap();
                drop(store);
                put_back(files);
                m = Model { now: m.now, next: m.next, ..before };
                store = Sqlite::open(dir).unwrap();
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
                store = Sqlite::open(dir).unwrap();
                let got = store.load(since, *limit).unwrap().keys;
                check(got, m.load(since, *limit));
            }
        }
    }
    drop(store);
    let got = Sqlite::open(dir).unwrap().load(m.since, 0).unwrap().keys;
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
