//! Idempotency keys kept in blocks (schema 11, store/key_blocks.rs): taken back
//! to rows, expired keys stay expired and the keys survive a second step back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use baatkaro_proto::{Conversation, IdemKey, UserName};
use baatkaro_server::store::sqlite::Sqlite;
use baatkaro_server::store::{Store, Write};
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
