//! Batches written with their whole blocks by direct I/O and the rest through the
//! page cache read back as committed, whatever their sizes and wherever in a block
//! they start: across segment rolls, cuts back ([`Log::truncate`]) and reopens with
//! direct writes on or off. A segment holds exactly its batches (a reopen finds no
//! torn tail to cut), so the log's format is the same either way.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use baatkaro_eventlog::{BATCH_HEADER, Log, Options, Position, RECORD_HEADER};
use proptest::prelude::*;

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
            prop_oneof![8 => 0usize..64, 8 => 0usize..5000, 8 => 4000usize..13000, 1 => 13000usize..20000],
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

/// The segments' size.
const SEGMENT_BYTES: u64 = 64 << 10;

fn open(dir: &Path, direct: bool) -> Log {
    let (log, recovery) = Log::open(dir, Options { segment_bytes: SEGMENT_BYTES, direct }).unwrap();
    assert!(recovery.cut.is_none(), "a clean close left a tail to cut: {:?}", recovery.cut);
    if direct && common::takes_direct_io(dir) {
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
        let mut direct_now = true;
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
                    direct_now = direct;
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
        // Still writing directly if it began so: no batch was refused on the way
        // (a batch built at an address that is not aligned would be, and written
        // through the page cache from then on, unseen but for this).
        if direct_now && common::takes_direct_io(dir.path()) {
            prop_assert!(log.writes_direct(), "direct writes stopped");
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

/// Runs `f` with `dir` unreadable (mode 0o300: entries can still be removed and
/// files in it opened, but the directory itself cannot be opened, so its sync
/// fails), dropping on this thread the capabilities that let root read it anyway.
/// `None` if the directory could not be made unreadable here.
fn with_unreadable_dir<T>(dir: &Path, f: impl FnOnce() -> T) -> Option<T> {
    use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
    use std::os::unix::fs::PermissionsExt;
    let mode = |m| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).unwrap();
    let caps = capabilities(None).unwrap();
    let mut fewer = caps;
    fewer.effective -= CapabilitySet::DAC_OVERRIDE | CapabilitySet::DAC_READ_SEARCH;
    mode(0o300);
    let dropped = set_capabilities(None, fewer).is_ok();
    let out = (dropped && std::fs::File::open(dir).is_err()).then(f);
    set_capabilities(None, caps).unwrap();
    mode(0o700);
    out
}

/// A log in a new directory (`log` in a temporary one, kept while the first is
/// held), writing directly; `None`, said, on a file system without direct I/O.
fn direct_log() -> Option<(tempfile::TempDir, std::path::PathBuf, Log)> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = open(&dir, true);
    if !log.writes_direct() {
        eprintln!("no direct writes on this file system: not checked");
        return None;
    }
    Some((tmp, dir, log))
}

/// A cut back into an earlier segment that fails after the later segment is gone
/// (the directory's sync failing) leaves a log that refuses the next commit or
/// writes it where it reads back, also after a reopen: never one that says a batch
/// is durable while its whole blocks went to the removed segment's file (fails if
/// the direct writes stay on the removed segment after such a failure and the log
/// takes commits on).
#[test]
fn a_commit_after_a_failed_cut_back_is_refused_or_reads_back() {
    let Some((_tmp, dir, mut log)) = direct_log() else { return };
    let mut positions = Vec::new();
    let mut commit = |log: &mut Log, n: u64| {
        let recs = records(n, &[5000, 300]);
        positions.push(log.commit(n, 0, recs.iter().map(Vec::as_slice)).unwrap());
    };
    // Into a second segment, and two batches there, so that it was written directly.
    let mut n = 0;
    while log.segments() < 2 {
        commit(&mut log, n);
        n += 1;
    }
    commit(&mut log, n);
    commit(&mut log, n + 1);
    assert_eq!(log.segments(), 2);
    // A batch of the first segment: the cut removes the second.
    let first = log.segment_starts().nth(1).unwrap();
    let target = *positions.iter().rev().find(|p| **p < first).unwrap();
    let Some(cut) = with_unreadable_dir(&dir, || log.truncate(target)) else {
        eprintln!("could not make the directory unreadable here: not checked");
        return;
    };
    assert!(cut.is_err(), "the directory's sync was to fail");
    // A batch that fills the segment the log now ends in: no roll (which would
    // open the next segment afresh), and it ends at a block's end (the segment's
    // size is whole blocks), so that the blocks it fills are written directly.
    let room = SEGMENT_BYTES - (log.end().0 - log.segment_starts().last().unwrap().0);
    let size = room as usize - BATCH_HEADER - RECORD_HEADER;
    let recs = records(1000, &[size]);
    let Ok(at) = log.commit(1000, 0, recs.iter().map(Vec::as_slice)) else {
        return; // Refused: nothing was said to be durable.
    };
    let read = |log: &mut Log| {
        let batch = log.read_batch(at).expect("a batch said to be durable reads back");
        let got: Vec<Vec<u8>> = batch.records().map(|(_, r)| r.to_vec()).collect();
        assert_eq!(batch.number, 1000);
        assert_eq!(got, recs);
    };
    read(&mut log);
    drop(log);
    let mut log = open(&dir, true);
    read(&mut log);
}

/// A direct write fills its last block with zeros: the file runs past the log's
/// end by less than a block, to a block's end. An open takes that for what it is
/// (no torn write reported) and trims it; a segment the log moved on from is
/// trimmed to its end (else the next open would refuse the log); and the
/// background check, which read the active segment's length with the zeros,
/// passes over the trim without taking it for damage (fails without the trim at
/// the open, or with the check keeping the length it read first).
#[test]
fn the_zeros_past_the_end_are_trimmed_and_the_check_passes_over_them() {
    let Some((_tmp, dir, mut log)) = direct_log() else { return };
    let active = |log: &Log| {
        let base = log.segment_starts().last().unwrap().0;
        dir.join(format!("{base:020}.log"))
    };
    log.commit(0, 0, records(0, &[1000]).iter().map(Vec::as_slice)).unwrap();
    let len = std::fs::metadata(active(&log)).unwrap().len();
    let end = log.end().0 - log.segment_starts().last().unwrap().0;
    assert!(len > end && len % 4096 == 0, "{len} B on disk for {end} B of log");

    // The segment filled to where the next batch rolls to a new one.
    let mut n = 1;
    let room = |log: &Log| SEGMENT_BYTES - (log.end().0 - log.segment_starts().last().unwrap().0);
    while room(&log) > 2 * 3100 {
        log.commit(n, 0, records(n, &[3000]).iter().map(Vec::as_slice)).unwrap();
        n += 1;
    }
    assert_eq!(log.segments(), 1);
    // The check opens it (and reads its length, with the zeros) and reads a batch ...
    let mut check = baatkaro_eventlog::Verifier::new(&dir);
    assert_eq!(check.check(log.end(), 1).unwrap().batches, 1);
    // ... the segment is sealed and trimmed, the log going on in the next one ...
    while log.segments() < 2 {
        log.commit(n, 0, records(n, &[3000]).iter().map(Vec::as_slice)).unwrap();
        n += 1;
    }
    let sealed = dir.join(format!("{:020}.log", log.segment_starts().next().unwrap().0));
    let next = log.segment_starts().nth(1).unwrap().0;
    assert_eq!(std::fs::metadata(&sealed).unwrap().len(), next, "sealed at its end");
    // ... and the check reads on to the end of the log, past the trim.
    let mut passes = 0;
    loop {
        let checked = check.check(log.end(), 1 << 20).expect("no damage in a trimmed segment");
        if checked.pass_done {
            break;
        }
        passes += 1;
        assert!(passes < 100, "the check never finished");
    }

    // A reopen: no cut reported, the zeros trimmed.
    let end = log.end();
    drop(log);
    let log = open(&dir, true);
    assert_eq!(log.end(), end);
    let on_disk = std::fs::metadata(active(&log)).unwrap().len();
    assert_eq!(on_disk, end.0 - log.segment_starts().last().unwrap().0, "trimmed at the open");
}
