//! Idempotency keys kept in blocks (schema 11, store/key_blocks.rs): taken back
//! to rows, expired keys stay expired and the keys survive a second step back; a
//! damaged block is found whatever expiry did to it since; a start's cut holds
//! for the starts after it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use baatkaro_proto::{Conversation, IdemKey, UserName};
use baatkaro_server::store::sqlite::{DB_FILE, Sqlite};
use baatkaro_server::store::verify::Checker;
use baatkaro_server::store::{Store, StoreError, Write};
use common::{conv, user};

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
