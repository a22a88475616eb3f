//! The log as a crash leaves it: torn tails cut, damage refused, every committed
//! batch read back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use baatkaro_eventlog::{
    BATCH_HEADER, Log, LogError, Options, Position, RECORD_HEADER, SEGMENT_HEADER, Verifier,
};
use common::segments;
use proptest::prelude::*;

fn small() -> Options {
    Options { segment_bytes: 4096, ..Options::default() }
}

fn record(batch: u64, k: usize) -> Vec<u8> {
    format!("batch {batch} record {k} {}", "x".repeat((batch as usize * 7 + k * 13) % 200))
        .into_bytes()
}

/// Commits batches `from..to`, each of `per` records; returns their positions.
fn commit_range(log: &mut Log, from: u64, to: u64, per: usize) -> Vec<Position> {
    (from..to)
        .map(|n| {
            let recs: Vec<Vec<u8>> = (0..per).map(|k| record(n, k)).collect();
            log.commit(n, n as u32, recs.iter().map(Vec::as_slice)).unwrap()
        })
        .collect()
}

/// Every batch from the start, as (number, records).
fn all(log: &mut Log) -> Vec<(u64, Vec<Vec<u8>>)> {
    let start = log.start();
    log.scan(start)
        .map(|b| {
            let b = b.unwrap();
            (b.number, b.records().map(|(_, r)| r.to_vec()).collect())
        })
        .collect()
}

fn expected(from: u64, to: u64, per: usize) -> Vec<(u64, Vec<Vec<u8>>)> {
    (from..to).map(|n| (n, (0..per).map(|k| record(n, k)).collect())).collect()
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
}

#[test]
fn batches_read_back_across_segments_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, rec) = Log::open(dir.path(), small()).unwrap();
    assert!(rec.cut.is_none() && rec.last_number.is_none());
    let positions = commit_range(&mut log, 1, 60, 3);
    assert!(log.segments() > 3, "small segments roll: {}", log.segments());
    assert_eq!(all(&mut log), expected(1, 60, 3));

    // Each record's position reads it back alone, and matches the stated layout.
    let b = log.read_batch(positions[10]).unwrap();
    let mut at = positions[10].0 + BATCH_HEADER as u64;
    for (k, (pos, data)) in b.records().enumerate() {
        assert_eq!(pos, Position(at));
        assert_eq!(data, record(11, k));
        assert_eq!(log.read_record(pos).unwrap(), record(11, k));
        at += (RECORD_HEADER + data.len()) as u64;
    }
    // The records of the batch read in one span, and a span that cuts a record.
    let first = Position(positions[10].0 + BATCH_HEADER as u64);
    let span = log.read_span(first, at - first.0).unwrap();
    let got: Vec<Vec<u8>> = span.records().map(|(_, r)| r.to_vec()).collect();
    assert_eq!(got, (0..3).map(|k| record(11, k)).collect::<Vec<_>>());
    assert!(log.read_span(first, at - first.0 - 1).is_err());

    let end = log.end();
    drop(log);
    let (mut log, rec) = Log::open(dir.path(), small()).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(rec.last_number, Some(59));
    assert_eq!(log.end(), end);
    assert_eq!(all(&mut log), expected(1, 60, 3));
    commit_range(&mut log, 60, 65, 3);
    assert_eq!(all(&mut log), expected(1, 65, 3));
}

#[test]
fn a_torn_last_write_is_cut_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
    let positions = commit_range(&mut log, 1, 5, 4);
    // The log's end (its file may run on, by the zeros a direct write left).
    let len = log.end().0;
    drop(log);
    let active = segments(dir.path()).pop().unwrap();
    // The last batch half written, as a power cut during its write leaves it.
    let half = (positions[3].0 + len) / 2;
    OpenOptions::new().write(true).open(&active).unwrap().set_len(half).unwrap();

    let (mut log, rec) = Log::open(dir.path(), Options::default()).unwrap();
    let cut = rec.cut.expect("a cut");
    assert_eq!(cut.at, positions[3]);
    assert_eq!(cut.bytes, half - positions[3].0);
    assert_eq!(rec.last_number, Some(3));
    assert_eq!(all(&mut log), expected(1, 4, 4));
    assert_eq!(fs::metadata(&active).unwrap().len(), positions[3].0, "the cut is on disk");
    commit_range(&mut log, 4, 6, 4);
    drop(log);
    let (mut log, rec) = Log::open(dir.path(), Options::default()).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(all(&mut log), expected(1, 6, 4));
}

#[test]
fn zeros_past_the_end_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
    commit_range(&mut log, 1, 4, 2);
    let end = log.end();
    drop(log);
    let active = segments(dir.path()).pop().unwrap();
    OpenOptions::new().write(true).open(&active).unwrap().set_len(end.0 + 10_000).unwrap();
    let (mut log, rec) = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(rec.cut.map(|c| (c.at, c.bytes)), Some((end, 10_000)));
    assert_eq!(all(&mut log), expected(1, 4, 2));
}

#[test]
fn damage_before_a_good_batch_is_refused_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
    let positions = commit_range(&mut log, 1, 5, 2);
    drop(log);
    let active = segments(dir.path()).pop().unwrap();
    flip(&active, positions[1].0 + BATCH_HEADER as u64 + 12);
    let err = Log::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, LogError::Damaged(_)), "{err}");
    assert!(err.to_string().contains("fails its checksum"), "{err}");
    // Nothing was cut: the file is as the damage left it.
    assert!(fs::metadata(&active).unwrap().len() > positions[3].0);
}

#[test]
fn a_forged_batch_inside_a_message_does_not_make_a_torn_tail_look_like_damage() {
    // Another log's whole segment — valid batches, but under another seed — sent
    // as a message's bytes, then the batch holding it torn.
    let other = tempfile::tempdir().unwrap();
    let (mut o, _) = Log::open(other.path(), Options::default()).unwrap();
    commit_range(&mut o, 1, 3, 2);
    drop(o);
    let forged = fs::read(segments(other.path()).pop().unwrap()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
    commit_range(&mut log, 1, 3, 2);
    let last = log.commit(3, 0, [forged.as_slice(), b"after"]).unwrap();
    let end = log.end();
    drop(log);
    let active = segments(dir.path()).pop().unwrap();
    OpenOptions::new().write(true).open(&active).unwrap().set_len(end.0 - 3).unwrap();
    let (mut log, rec) = Log::open(dir.path(), Options::default()).unwrap();
    assert_eq!(rec.cut.map(|c| c.at), Some(last));
    assert_eq!(all(&mut log), expected(1, 3, 2));
}

#[test]
fn damage_in_a_sealed_segment_is_found_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let positions = commit_range(&mut log, 1, 40, 3);
    drop(log);
    let first = &segments(dir.path())[0];
    flip(first, positions[1].0 + BATCH_HEADER as u64 + 3);
    let (mut log, rec) = Log::open(dir.path(), small()).unwrap();
    assert!(rec.cut.is_none(), "only the last segment is scanned at open");
    let start = log.start();
    let results: Vec<_> = log.scan(start).collect();
    assert_eq!(results.len(), 2, "the scan stops at the damage");
    assert!(matches!(&results[1], Err(LogError::Damaged(m)) if m.contains("checksum")));
    // A record of the damaged batch, read alone, fails too.
    let record_at = Position(positions[1].0 + BATCH_HEADER as u64);
    assert!(matches!(log.read_record(record_at), Err(LogError::Damaged(_))));
}

#[test]
fn a_missing_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    commit_range(&mut log, 1, 40, 3);
    drop(log);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    fs::remove_file(&segs[1]).unwrap();
    let err = Log::open(dir.path(), small()).unwrap_err();
    assert!(err.to_string().contains("a segment is missing"), "{err}");
}

#[test]
fn a_segment_whose_creation_was_cut_short_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
    commit_range(&mut log, 1, 4, 2);
    let end = log.end();
    drop(log);
    let torn = dir.path().join(format!("{:020}.log", end.0));
    fs::write(&torn, b"BKlog\0").unwrap();
    let (mut log, rec) = Log::open(dir.path(), Options::default()).unwrap();
    assert!(!torn.exists());
    assert!(rec.cut.is_some());
    assert_eq!(rec.last_number, Some(3));
    assert_eq!(all(&mut log), expected(1, 4, 2));
}

#[test]
fn truncate_cuts_back_across_segments_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let positions = commit_range(&mut log, 1, 40, 3);
    let segs = log.segments();
    log.truncate(positions[5]).unwrap();
    assert!(log.segments() < segs);
    assert_eq!(log.end(), positions[5]);
    assert_eq!(all(&mut log), expected(1, 6, 3));
    commit_range(&mut log, 6, 9, 3);
    drop(log);
    let (mut log, rec) = Log::open(dir.path(), small()).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(all(&mut log), expected(1, 9, 3));
    assert!(log.truncate(Position(log.end().0 + 1)).is_err());
}

#[test]
fn remove_before_lets_whole_old_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let positions = commit_range(&mut log, 1, 40, 3);
    let before = segments(dir.path()).len();
    let removed = log.remove_before(positions[20]).unwrap();
    assert!(removed > 0);
    assert_eq!(segments(dir.path()).len(), before - removed);
    let kept = all(&mut log);
    assert_eq!(kept.last().map(|b| b.0), Some(39));
    assert!(kept[0].0 <= 21, "batch 21 is kept: {}", kept[0].0);
    assert!(matches!(log.read_batch(positions[0]), Err(LogError::NoSuchPosition(_))));
    drop(log);
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(all(&mut log), kept);
}

#[test]
fn segment_starts_place_every_batch_and_remove_before_one_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.segment_starts().collect::<Vec<_>>(), [Position(0)]);
    let positions = commit_range(&mut log, 1, 40, 3);
    let starts: Vec<Position> = log.segment_starts().collect();
    assert_eq!(starts.len(), segments(dir.path()).len());
    assert!(starts.windows(2).all(|w| w[0] < w[1]));
    // Every batch lies after its segment's start and before the next one's.
    for p in &positions {
        let i = starts.partition_point(|s| s <= p) - 1;
        assert!(p.0 >= starts[i].0 + SEGMENT_HEADER);
        assert!(starts.get(i + 1).is_none_or(|next| p < next));
    }
    // Removing before the third segment's start leaves it first, its batches whole.
    assert_eq!(log.remove_before(starts[2]).unwrap(), 2);
    assert_eq!(log.segment_starts().collect::<Vec<_>>(), starts[2..]);
    assert_eq!(log.start(), Position(starts[2].0 + SEGMENT_HEADER));
    drop(log);
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.segment_starts().collect::<Vec<_>>(), starts[2..]);
}

#[test]
fn a_batch_larger_than_a_segment_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    commit_range(&mut log, 1, 2, 1);
    let end = log.end();
    let big = vec![7u8; 5000];
    assert!(matches!(log.commit(2, 0, [big.as_slice()]), Err(LogError::TooLarge(_))));
    assert_eq!(log.end(), end);
    commit_range(&mut log, 2, 3, 1);
    assert_eq!(all(&mut log), expected(1, 3, 1));
}

#[test]
fn positions_outside_the_log_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
    let p = commit_range(&mut log, 1, 3, 1);
    assert!(matches!(log.read_batch(log.end()), Err(LogError::NoSuchPosition(_))));
    assert!(matches!(log.read_record(Position(3)), Err(LogError::NoSuchPosition(_))));
    // Not where a batch starts: reported as damage at that place, never a panic.
    assert!(log.read_batch(Position(p[0].0 + 1)).is_err());
    assert!(log.read_record(Position(p[1].0 + 3)).is_err());
    assert_eq!(SEGMENT_HEADER, p[0].0);
}

#[test]
fn the_verifier_checks_every_batch_in_slices_and_finds_damage_nobody_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let positions = commit_range(&mut log, 1, 40, 3);
    let end = log.end();
    let mut v = Verifier::new(dir.path());
    assert!(v.size().unwrap() >= end.0 - SEGMENT_HEADER);
    let (mut batches, mut calls) = (0, 0);
    loop {
        let c = v.check(end, 500).unwrap();
        batches += c.batches;
        calls += 1;
        assert!(calls < 1000);
        if c.pass_done {
            break;
        }
    }
    assert_eq!(batches, 39);
    assert!(calls > 5, "a small budget checks in slices: {calls}");

    // A second pass starts over; segments removed meanwhile are passed over.
    let removed = log.remove_before(positions[20]).unwrap();
    assert!(removed > 0);
    let c = v.check(end, u64::MAX).unwrap();
    assert!(c.pass_done);
    assert!(c.batches >= 19 && c.batches < 39, "{}", c.batches);

    // Damage past the end it is given is not its business; before it, it is found.
    let last = segments(dir.path()).pop().unwrap();
    let p = *positions.last().unwrap();
    let base: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    flip(&last, p.0 - base + BATCH_HEADER as u64 + 2);
    assert!(v.check(p, u64::MAX).unwrap().pass_done);
    let err = v.check(end, u64::MAX).unwrap_err();
    assert!(matches!(err, LogError::Damaged(ref m) if m.contains("checksum")), "{err}");
}

#[test]
fn the_verifier_reads_on_in_a_segment_that_grew_and_never_into_one_being_made() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) =
        Log::open(dir.path(), Options { segment_bytes: 1 << 20, ..Options::default() }).unwrap();
    commit_range(&mut log, 1, 4, 2);
    let mut v = Verifier::new(dir.path());
    // One batch checked: the verifier holds the active segment, as long as it was.
    let c = v.check(log.end(), 1).unwrap();
    assert_eq!((c.batches, c.pass_done), (1, false));
    // The writer goes on in that segment, and its flush indexes up to its end; then
    // it begins the next segment, whose file exists before its header is written.
    commit_range(&mut log, 4, 10, 2);
    let end = log.end();
    fs::File::create(dir.path().join(format!("{:020}.log", end.0))).unwrap();
    let c = v.check(end, u64::MAX).unwrap();
    assert!(c.pass_done);
    assert_eq!(c.batches, 8, "every batch up to the end it was given, and no more");
}

#[test]
fn a_torn_tail_crafted_to_look_like_many_batches_is_refused_quickly_not_searched_for_hours() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
    commit_range(&mut log, 1, 3, 2);
    // A message of 4 MiB that repeats a batch header's first bytes, each declaring a
    // body of 2 MiB: hundreds of thousands of candidates to checksum.
    let mut text = Vec::with_capacity(4 << 20);
    while text.len() < 4 << 20 {
        text.extend_from_slice(b"BKev");
        text.extend_from_slice(&(2u32 << 20).to_le_bytes());
    }
    log.commit(3, 0, [text.as_slice()]).unwrap();
    let end = log.end();
    drop(log);
    let active = segments(dir.path()).pop().unwrap();
    OpenOptions::new().write(true).open(&active).unwrap().set_len(end.0 - 1).unwrap();
    let started = std::time::Instant::now();
    let err = Log::open(dir.path(), Options::default()).unwrap_err();
    assert!(err.to_string().contains("could not be told from damage"), "{err}");
    // Bounded work, not a speed: minutes would mean the budget is gone.
    assert!(started.elapsed() < std::time::Duration::from_secs(120));
}

#[test]
fn the_verifier_passes_over_a_name_that_is_no_segment_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    commit_range(&mut log, 1, 40, 3);
    let end = log.end();
    let segs = segments(dir.path());
    let base: u64 = segs[1].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("nowhere"),
        dir.path().join(format!("{:020}.log", base + 100)),
    )
    .unwrap();
    let mut v = Verifier::new(dir.path());
    let done = (0..1000).any(|_| v.check(end, 4096).unwrap().pass_done);
    assert!(done, "the check ends its pass");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A crash at any byte of the log's last writes leaves, after open, exactly the
    /// batches wholly written before it: never damage, never a partial batch.
    #[test]
    fn a_cut_anywhere_recovers_a_prefix(
        sizes in prop::collection::vec(1usize..5, 1..12),
        cut_at in 0.0f64..1.0,
        zero_fill in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
        let mut ends = Vec::new();
        for (i, per) in sizes.iter().enumerate() {
            let recs: Vec<Vec<u8>> = (0..*per).map(|k| record(i as u64 + 1, k)).collect();
            log.commit(i as u64 + 1, 0, recs.iter().map(Vec::as_slice)).unwrap();
            ends.push(log.end().0);
        }
        let full = log.end().0;
        drop(log);
        let cut = SEGMENT_HEADER + ((full - SEGMENT_HEADER) as f64 * cut_at) as u64;
        let active = segments(dir.path()).pop().unwrap();
        let f = OpenOptions::new().write(true).open(&active).unwrap();
        f.set_len(cut).unwrap();
        if zero_fill {
            f.set_len(full).unwrap();
        }
        drop(f);
        let (mut log, rec) = Log::open(dir.path(), Options::default()).unwrap();
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        prop_assert_eq!(rec.last_number, (whole > 0).then_some(whole as u64));
        let got = all(&mut log);
        prop_assert_eq!(got.len(), whole);
        for (i, (n, recs)) in got.iter().enumerate() {
            prop_assert_eq!(*n, i as u64 + 1);
            prop_assert_eq!(recs.len(), sizes[i]);
        }
    }
}

/// A sealed segment that lost its last batch (its file ends at a batch's start,
/// short of the next segment's base), and an active segment shorter than the end
/// the check is given, are damage an open refuses: the background check must not
/// take them for a segment's end and pass on.
#[test]
fn the_verifier_finds_a_segment_that_ends_short() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let positions = commit_range(&mut log, 1, 40, 3);
    let end = log.end();
    drop(log);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    let first_next: u64 = segs[1].file_stem().unwrap().to_str().unwrap().parse().unwrap();
    // The last batch of the first segment, gone.
    let last_in_first = positions.iter().rev().find(|p| p.0 < first_next).unwrap().0;
    OpenOptions::new().write(true).open(&segs[0]).unwrap().set_len(last_in_first).unwrap();
    let err = Verifier::new(dir.path()).check(end, u64::MAX);
    assert!(matches!(err, Err(LogError::Damaged(_))), "sealed short: {err:?}");
    assert!(matches!(Log::open(dir.path(), small()), Err(LogError::Damaged(_))));
}

#[test]
fn the_verifier_finds_an_active_segment_shorter_than_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), small()).unwrap();
    let positions = commit_range(&mut log, 1, 40, 3);
    let end = log.end();
    drop(log);
    let active = segments(dir.path()).pop().unwrap();
    let base: u64 = active.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let last = positions.last().unwrap().0;
    assert!(last > base + SEGMENT_HEADER);
    OpenOptions::new().write(true).open(&active).unwrap().set_len(last - base).unwrap();
    let err = Verifier::new(dir.path()).check(end, u64::MAX);
    assert!(matches!(err, Err(LogError::Damaged(_))), "active short of its end: {err:?}");
}

/// The block size a direct write moves (the log's `blocks::BLOCK`): a power cut
/// during a commit leaves each block of its write old or new, in any mix.
const BLOCK: u64 = 4096;

/// Records of these sizes for batch `n`: each says whose it is, then filler that
/// is never zero (so an old block never reads the same as a new one).
fn sized(n: u64, sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes
        .iter()
        .enumerate()
        .map(|(k, &size)| {
            let mut r = format!("{n}/{k}:").into_bytes();
            let fill = (0..size.saturating_sub(r.len())).map(|i| b'a' + ((i + k) % 26) as u8);
            r.extend(fill);
            r
        })
        .collect()
}

/// A log closed after its last commit, with what is needed to tear that commit:
/// each batch as committed, and the bytes of the segment file holding the last
/// one before and after its write.
struct Written {
    dir: tempfile::TempDir,
    options: Options,
    /// Position, number and records of every batch, the last included.
    batches: Vec<(Position, u64, Vec<Vec<u8>>)>,
    /// The segment file holding the last batch, and its base.
    segment: std::path::PathBuf,
    base: u64,
    /// That file's bytes before the last commit (its header alone if the commit
    /// began the segment), and after it, the log closed.
    before: Vec<u8>,
    after: Vec<u8>,
}

impl Written {
    /// Commits a batch of records of each of these sizes, numbered from 1, and
    /// closes the log.
    fn new(options: Options, batches: &[Vec<usize>]) -> Written {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), options).unwrap();
        let mut committed = Vec::new();
        let mut before = (std::path::PathBuf::new(), Vec::new());
        for (i, sizes) in batches.iter().enumerate() {
            let n = i as u64 + 1;
            if i + 1 == batches.len() {
                let path = segments(dir.path()).pop().unwrap();
                before = (path.clone(), fs::read(&path).unwrap());
            }
            let recs = sized(n, sizes);
            let at = log.commit(n, n as u32, recs.iter().map(Vec::as_slice)).unwrap();
            committed.push((at, n, recs));
        }
        drop(log);
        let segment = segments(dir.path()).pop().unwrap();
        let base: u64 = segment.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let after = fs::read(&segment).unwrap();
        let before = if before.0 == segment {
            before.1
        } else {
            // The commit rolled: the new segment held its header alone.
            after[..SEGMENT_HEADER as usize].to_vec()
        };
        let last = committed.last().unwrap().0.0;
        assert!(last >= base + SEGMENT_HEADER, "the last batch is in the last segment");
        Written { dir, options, batches: committed, segment, base, before, after }
    }

    /// The last batch's offset in its file, and where it ends there.
    fn last_range(&self) -> (u64, u64) {
        let n = self.batches.len() - 1;
        let start = self.batches[n].0.0 - self.base;
        let end = self.after.len().min((start + self.last_len()) as usize);
        (start, end as u64)
    }

    /// Bytes of the last batch, its header included.
    fn last_len(&self) -> u64 {
        let recs = &self.batches.last().unwrap().2;
        (BATCH_HEADER + recs.iter().map(|r| RECORD_HEADER + r.len()).sum::<usize>()) as u64
    }

    /// The bytes the file held at `range` before the last commit: zeros past
    /// where it ended then.
    fn old(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        range.map(|i| self.before.get(i).copied().unwrap_or(0)).collect()
    }
}

/// Every batch of `log`, read from its start, is exactly one of `batches`, in
/// order: position, number, flags and records, each record also read alone at the
/// position its batch gives it, which the layout [`Log::commit`] states.
fn reads_back(log: &mut Log, batches: &[(Position, u64, Vec<Vec<u8>>)]) {
    let start = log.start();
    let got: Vec<_> = log.scan(start).map(Result::unwrap).collect();
    assert_eq!(got.len(), batches.len(), "how many batches read back");
    for (b, (at, n, recs)) in got.iter().zip(batches) {
        assert_eq!((b.position, b.number, b.flags), (*at, *n, *n as u32), "batch {n}");
        let read: Vec<(Position, Vec<u8>)> = b.records().map(|(p, r)| (p, r.to_vec())).collect();
        assert_eq!(read.len(), recs.len(), "records of batch {n}");
        let mut pos = at.0 + BATCH_HEADER as u64;
        for ((p, data), rec) in read.iter().zip(recs) {
            assert_eq!(*p, Position(pos), "a record's position in batch {n}");
            assert!(data == rec, "a record of batch {n} read back changed");
            assert!(log.read_record(*p).unwrap() == *rec, "a record of batch {n} read alone");
            pos += (RECORD_HEADER + rec.len()) as u64;
        }
        assert_eq!(b.next(), Position(pos), "where batch {n} ends");
    }
}

/// Opens the log of `w` whose last batch was torn, leaving its file `len` bytes
/// long, and checks that the open cut exactly that batch, durably, and that the
/// log goes on after it, across another open.
fn recovers_all_but_the_last(w: &Written, len: u64) {
    let (lost_at, lost_n, lost) = w.batches.last().unwrap().clone();
    let kept = &w.batches[..w.batches.len() - 1];
    let (mut log, rec) = Log::open(w.dir.path(), w.options).expect("a torn last write opens");
    let cut = rec.cut.expect("the torn batch is cut, and the cut reported");
    assert_eq!(cut.at, lost_at, "cut where the torn batch began ({})", cut.reason);
    assert_eq!(cut.bytes, len - (lost_at.0 - w.base), "every byte from there cut");
    assert_eq!(cut.segment, w.segment);
    assert_eq!(rec.last_number, kept.last().map(|b| b.1), "the last whole batch");
    assert_eq!(log.end(), lost_at);
    assert_eq!(fs::metadata(&w.segment).unwrap().len(), lost_at.0 - w.base, "the cut is on disk");
    reads_back(&mut log, kept);
    // Nothing of the torn batch reads back, as a batch or as a record.
    assert!(matches!(log.read_batch(lost_at), Err(LogError::NoSuchPosition(_))));
    assert!(log.read_record(Position(lost_at.0 + BATCH_HEADER as u64)).is_err());

    // Its number again (it was never acknowledged), other records in its place.
    let again = sized(lost_n + 100, &[lost[0].len(), 10]);
    let at = log.commit(lost_n, lost_n as u32, again.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(at, lost_at, "the next batch goes where the torn one was");
    let mut now = kept.to_vec();
    now.push((at, lost_n, again));
    reads_back(&mut log, &now);
    let end = log.end();
    drop(log);
    let (mut log, rec) = Log::open(w.dir.path(), w.options).unwrap();
    assert!(rec.cut.is_none(), "nothing more to cut: {:?}", rec.cut);
    assert_eq!(rec.last_number, Some(lost_n));
    assert_eq!(log.end(), end);
    reads_back(&mut log, &now);
}

/// A power cut during the last commit that left a hole in its batch — one block
/// of it never written while the blocks after it were — cuts that batch whole and
/// nothing before it: (1) a 4 KiB block strictly inside the batch reads as zeros,
/// the batch's bytes after it intact; (2) the block where the batch begins holds
/// what it held before the write (the previous batch's end, then zeros), the rest
/// of the batch intact. The open reports the cut at the batch's start and of every
/// byte from there, the file is that long after it, every earlier batch reads back
/// at its position with its records, none of the torn one does, and the log takes
/// and keeps the next batch there. Fails if recovery keeps a batch with a hole,
/// refuses the torn tail as damage, or cuts anything before it.
#[test]
fn a_hole_in_the_last_batch_cuts_it_whole_and_nothing_before() {
    let batches = [vec![300, 40], vec![5000, 3000, 20], vec![700], vec![6000, 9000, 4100, 12]];
    for stale_start in [false, true] {
        let w = Written::new(Options::default(), &batches);
        let (start, end) = w.last_range();
        assert!(start % BLOCK != 0, "the batch begins inside a block");
        let hole = if stale_start {
            start - start % BLOCK
        } else {
            // The second block wholly inside the batch: bytes of it on either side.
            start.next_multiple_of(BLOCK) + BLOCK
        };
        assert!(hole + BLOCK < end, "batch bytes after the hole");
        let mut bytes = w.after.clone();
        let range = hole as usize..(hole + BLOCK) as usize;
        let torn = if stale_start { w.old(range.clone()) } else { vec![0; BLOCK as usize] };
        // The previous batch's end, in the block, is the same bytes either way.
        let kept = start.saturating_sub(hole) as usize;
        assert!(torn[..kept] == bytes[hole as usize..hole as usize + kept]);
        bytes[range].copy_from_slice(&torn);
        assert!(bytes != w.after, "the hole changed the file");
        fs::write(&w.segment, &bytes).unwrap();
        recovers_all_but_the_last(&w, bytes.len() as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever mix of its blocks a power cut left of the last write — each block
    /// of the batch new or as it was before (zeros past the old end), at least one
    /// old one before a new one, the blocks never written at its end zeros or past
    /// the file's end — the open cuts exactly that batch and keeps every one
    /// before it, with direct writes or not, in a segment of its own or not.
    /// Fails if recovery keeps a batch with a hole, refuses a torn tail, or cuts
    /// an acknowledged batch.
    #[test]
    fn any_mix_of_old_and_new_blocks_in_the_last_write_cuts_only_it(
        earlier in prop::collection::vec(prop::collection::vec(1usize..7000, 1..4), 0..5),
        last in prop::collection::vec(3000usize..9000, 2..5),
        mix in prop::collection::vec(any::<bool>(), 16),
        hole in 0usize..16,
        after_hole in 0usize..16,
        past_the_end in any::<bool>(),
        direct in any::<bool>(),
        small_segments in any::<bool>(),
    ) {
        let segment_bytes = if small_segments { 64 << 10 } else { 64 << 20 };
        let mut batches = earlier;
        batches.push(last);
        let w = Written::new(Options { segment_bytes, direct }, &batches);
        let (start, end) = w.last_range();
        let first = start / BLOCK;
        let blocks = (end - 1) / BLOCK - first + 1;
        prop_assert!(blocks >= 2);
        // Which blocks of the batch are old: at least one before a new one.
        let mut old: Vec<bool> = (0..blocks as usize).map(|i| mix[i % mix.len()]).collect();
        let h = hole % (blocks as usize - 1);
        let new = h + 1 + after_hole % (blocks as usize - 1 - h);
        old[h] = true;
        old[new] = false;
        let mut bytes = w.after.clone();
        for (i, _) in old.iter().enumerate().filter(|(_, o)| **o) {
            let from = ((first + i as u64) * BLOCK) as usize;
            let to = (from + BLOCK as usize).min(bytes.len());
            bytes[from..to].copy_from_slice(&w.old(from..to));
        }
        if past_the_end {
            // Blocks never written at the end of the write: past the file's end.
            let last_new = old.iter().rposition(|o| !o).unwrap() as u64;
            let len = ((first + last_new + 1) * BLOCK).max(w.before.len() as u64);
            bytes.truncate(len.min(bytes.len() as u64) as usize);
        }
        prop_assert!(bytes != w.after, "the hole changed the file");
        fs::write(&w.segment, &bytes).unwrap();
        recovers_all_but_the_last(&w, bytes.len() as u64);
    }
}
