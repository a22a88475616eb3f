//! Batches written with their whole blocks by direct I/O and the rest through the
//! page cache read back as committed, whatever their sizes and wherever in a block
//! they start: across segment rolls, cuts back ([`Log::truncate`]) and reopens with
//! direct writes on or off. A segment holds exactly its batches (a reopen finds no
//! torn tail to cut), so the log's format is the same either way.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use baatkaro_eventlog::{Log, Options, Position};
use proptest::prelude::*;

/// Whether `path` is on a file system known to take direct I/O (ext4, XFS), where
/// a log asked for direct writes must be making them.
#[allow(clippy::useless_conversion)]
fn takes_direct_io(path: &Path) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    let kind = i64::from(rustix::fs::statfs(path).unwrap().f_type);
    kind == EXT4 || kind == XFS
}

#[derive(Clone, Debug)]
enum Op {
    /// A batch of records of these sizes.
    Commit(Vec<usize>),
    /// Closed and opened again, writing directly or not from then on.
    Reopen(bool),
    /// Cut back to the start of the batch this far from the end (modulo how many
    /// there are).
    Truncate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec(
            prop_oneof![0usize..64, 0usize..5000, 4000usize..13000],
            1..4,
        )
        .prop_map(Op::Commit),
        1 => any::<bool>().prop_map(Op::Reopen),
        1 => (0usize..4).prop_map(Op::Truncate),
    ]
}

/// The records of batch `n`: each says whose it is, then filler.
fn records(n: u64, sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(k, &size)| {
            let mut r = format!("{n}/{k}:").into_bytes();
            r.resize(size.max(r.len()), b'a' + ((n as usize + k) % 26) as u8);
            r
        })
        .collect()
}

fn open(dir: &Path, direct: bool) -> Log {
    let (log, recovery) = Log::open(dir, Options { segment_bytes: 64 << 10, direct }).unwrap();
    assert!(recovery.cut.is_none(), "a clean close left a tail to cut: {:?}", recovery.cut);
    if direct && takes_direct_io(dir) {
        assert!(log.writes_direct(), "asked for direct writes on a file system with them");
    }
    log
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn batches_written_partly_direct_read_back_as_committed(
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path(), true);
        // What the log holds: each batch's number, position and records.
        let mut model: Vec<(u64, Position, Vec<Vec<u8>>)> = Vec::new();
        let mut next = 0u64;
        for op in ops {
            match op {
                Op::Commit(sizes) => {
                    let recs = records(next, &sizes);
                    let at = log.commit(next, 0, recs.iter().map(Vec::as_slice)).unwrap();
                    model.push((next, at, recs));
                    next += 1;
                }
                Op::Reopen(direct) => {
                    drop(log);
                    log = open(dir.path(), direct);
                }
                Op::Truncate(back) => {
                    if !model.is_empty() {
                        let keep = model.len() - 1 - back % model.len();
                        log.truncate(model[keep].1).unwrap();
                        model.truncate(keep);
                    }
                }
            }
        }
        for round in 0..2 {
            let start = log.start();
            let got: Vec<(u64, Position, Vec<Vec<u8>>)> = log
                .scan(start)
                .map(|b| {
                    let b = b.unwrap();
                    (b.number, b.position, b.records().map(|(_, r)| r.to_vec()).collect())
                })
                .collect();
            prop_assert_eq!(&got, &model, "round {}", round);
            drop(log);
            log = open(dir.path(), round == 0);
        }
    }
}
