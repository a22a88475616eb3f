//! Segments written with zeros ahead ([`Log::wait_prepared`]): commits into their
//! room, rolls between them, and what a crash leaves of either.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use baatkaro_eventlog::{BATCH_HEADER, Log, LogError, Options, Position, SEGMENT_HEADER, Verifier};
use proptest::prelude::*;

const MIB: u64 = 1 << 20;

fn options() -> Options {
    Options { segment_bytes: 4 * MIB }
}

/// The segment files of `dir`, in order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn base_of(path: &Path) -> u64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

fn len_of(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// Batch `n`'s one record: `len` bytes, none of them zero.
fn data(n: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| 1 + ((n as usize * 31 + i * 7) % 251) as u8).collect()
}

/// Every batch from the start, as (number, record length), each record checked
/// against what batch `number` was committed with.
fn all(log: &mut Log) -> Vec<(u64, usize)> {
    let start = log.start();
    log.scan(start)
        .map(|b| {
            let b = b.unwrap();
            let recs: Vec<&[u8]> = b.records().map(|(_, r)| r).collect();
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0], data(b.number, recs[0].len()), "batch {}", b.number);
            (b.number, recs[0].len())
        })
        .collect()
}

/// A log that committed batches `1..=n` of 8000 bytes each.
struct Written {
    ends: Vec<u64>,
}

impl Written {
    fn commit(&mut self, log: &mut Log, len: usize) -> Position {
        let n = self.ends.len() as u64 + 1;
        let at = log.commit(n, 0, [data(n, len).as_slice()]).unwrap();
        self.ends.push(log.end().0);
        at
    }

    /// Commits until the log rolls into a prepared segment (waiting for each
    /// preparation, so that the roll takes it); returns the new segment's base.
    fn until_prepared_roll(&mut self, log: &mut Log) -> u64 {
        let segs = log.segments();
        for _ in 0..10_000 {
            let at = self.commit(log, 8000);
            if log.segments() > segs {
                return at.0 - SEGMENT_HEADER;
            }
            log.wait_prepared();
        }
        panic!("no roll");
    }

    fn expected(&self, upto: usize) -> Vec<(u64, usize)> {
        (1..=upto as u64).map(|n| (n, 8000)).collect()
    }
}

#[test]
fn commits_go_into_a_prepared_segment_and_its_room_is_kept_at_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), options()).unwrap();
    let mut w = Written { ends: Vec::new() };
    let base = w.until_prepared_roll(&mut log);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2);
    // The first segment grew; it is sealed at its length, the next one's base.
    assert_eq!(len_of(&segs[0]), base);
    // The second was written ahead: 1 MiB (twice the first, at least 1 MiB).
    assert_eq!(len_of(&segs[1]), MIB);
    for _ in 0..10 {
        w.commit(&mut log, 8000);
    }
    assert_eq!(len_of(&segs[1]), MIB, "commits went into the room");
    let end = log.end();
    drop(log);
    assert!(!dir.path().join("prepare.tmp").exists(), "nothing left being prepared");

    let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(rec.last_number, Some(w.ends.len() as u64));
    assert_eq!(log.end(), end);
    assert_eq!(len_of(&segs[1]), MIB, "the room is kept");
    assert_eq!(all(&mut log), w.expected(w.ends.len()));
    w.commit(&mut log, 8000);
    drop(log);
    let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(all(&mut log), w.expected(w.ends.len()));
}

#[test]
fn rolls_across_growing_sizes_reopen_after_each() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), options()).unwrap();
    let mut w = Written { ends: Vec::new() };
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let base = w.until_prepared_roll(&mut log);
        let segs = segments(dir.path());
        sizes.push(len_of(segs.last().unwrap()));
        // Every sealed segment ends where the next begins: no room left in them.
        for pair in segs.windows(2) {
            assert_eq!(base_of(&pair[0]) + len_of(&pair[0]), base_of(&pair[1]));
        }
        assert_eq!(base_of(segs.last().unwrap()), base);
        drop(log);
        let (again, rec) = Log::open(dir.path(), options()).unwrap();
        log = again;
        assert!(rec.cut.is_none());
        assert_eq!(rec.last_number, Some(w.ends.len() as u64));
        assert_eq!(log.end().0, *w.ends.last().unwrap());
        assert_eq!(all(&mut log), w.expected(w.ends.len()));
    }
    assert_eq!(sizes, [MIB, 2 * MIB, 4 * MIB, 4 * MIB], "doubling up to segment_bytes");
}

/// A log whose active segment is a prepared one holding batches, and its last
/// batch's position and end; the log closed.
fn prepared_with_batches(dir: &Path) -> (Written, Position, u64) {
    let (mut log, _) = Log::open(dir, options()).unwrap();
    let mut w = Written { ends: Vec::new() };
    w.until_prepared_roll(&mut log);
    for _ in 0..3 {
        w.commit(&mut log, 8000);
    }
    let last = w.commit(&mut log, 8000);
    let end = log.end().0;
    drop(log);
    (w, last, end)
}

/// Keeps of the bytes `from..to` of `path` only those `keep` says, zeros elsewhere.
fn tear(path: &Path, base: u64, from: u64, to: u64, keep: impl Fn(u64) -> bool) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut bytes = vec![0u8; (to - from) as usize];
    f.read_exact_at(&mut bytes, from - base).unwrap();
    for (i, b) in bytes.iter_mut().enumerate() {
        if !keep(from + i as u64) {
            *b = 0;
        }
    }
    f.write_all_at(&bytes, from - base).unwrap();
}

/// Whether the byte at a position survived a crash in the batch at another.
type Keep = fn(u64, u64) -> bool;

#[test]
fn a_torn_write_in_room_is_cut_and_the_room_kept() {
    // What of the last batch reached the disk: part of its header; not its first
    // sector but later ones; its header and part of its body.
    let cases: [(&str, Keep); 3] = [
        ("part of the header", |at, p| at < p + 10),
        ("the first sector lost, later ones written", |at, p| at >= (p / 4096 + 1) * 4096),
        ("the header and part of the body", |at, p| at < p + BATCH_HEADER as u64 + 3000),
    ];
    for (what, keep) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, last, end) = prepared_with_batches(dir.path());
        let active = segments(dir.path()).pop().unwrap();
        let base = base_of(&active);
        tear(&active, base, last.0, end, |at| keep(at, last.0));
        let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
        let cut = rec.cut.unwrap_or_else(|| panic!("{what}: no cut"));
        assert_eq!(cut.at, last, "{what}");
        assert!(cut.bytes > 0 && cut.bytes <= end - last.0, "{what}: {}", cut.bytes);
        let n = w.ends.len();
        assert_eq!(rec.last_number, Some(n as u64 - 1), "{what}");
        assert_eq!(log.end(), last, "{what}");
        assert_eq!(all(&mut log), w.expected(n - 1), "{what}");
        assert_eq!(len_of(&active), MIB, "{what}: the room is kept");
        let mut torn = vec![0u8; (end - last.0) as usize];
        fs::File::open(&active).unwrap().read_exact_at(&mut torn, last.0 - base).unwrap();
        assert!(torn.iter().all(|&b| b == 0), "{what}: zeros over the torn write");

        // The log goes on from there, and that survives a reopen.
        w.ends.pop();
        w.commit(&mut log, 8000);
        w.commit(&mut log, 8000);
        drop(log);
        let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
        assert!(rec.cut.is_none(), "{what}");
        assert_eq!(all(&mut log), w.expected(w.ends.len()), "{what}");
        assert_eq!(len_of(&active), MIB, "{what}");
    }
}

#[test]
fn zeros_followed_by_a_good_batch_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (w, last, _) = prepared_with_batches(dir.path());
    let active = segments(dir.path()).pop().unwrap();
    let base = base_of(&active);
    // The batch before the last, acknowledged, gone to zeros; the last intact.
    let before = w.ends[w.ends.len() - 3];
    tear(&active, base, before, last.0, |_| false);
    let err = Log::open(dir.path(), options()).unwrap_err();
    assert!(matches!(err, LogError::Damaged(_)), "{err}");
    assert_eq!(len_of(&active), MIB, "nothing was cut");
}

#[test]
fn a_crash_in_a_roll_leaves_states_that_open() {
    // After the roll, before the batch that needed it: the new segment is its
    // header and zeros. The last batch is the previous segment's.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), options()).unwrap();
    let mut w = Written { ends: Vec::new() };
    let base = w.until_prepared_roll(&mut log);
    drop(log);
    let active = segments(dir.path()).pop().unwrap();
    tear(&active, base, base + SEGMENT_HEADER, *w.ends.last().unwrap(), |_| false);
    let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
    assert!(rec.cut.is_none());
    let n = w.ends.len();
    assert_eq!(rec.last_number, Some(n as u64 - 1));
    assert_eq!(log.end(), Position(base + SEGMENT_HEADER));
    assert_eq!(all(&mut log), w.expected(n - 1));
    w.ends.pop();
    w.commit(&mut log, 8000);
    drop(log);

    // Sealed, the next file prepared (its header perhaps written) but not yet
    // renamed: the file is removed, the log goes on.
    let tmp = dir.path().join("prepare.tmp");
    fs::write(&tmp, vec![0u8; 8192]).unwrap();
    let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
    assert!(!tmp.exists(), "the leftover is removed");
    assert!(rec.cut.is_none());
    assert_eq!(all(&mut log), w.expected(w.ends.len()));
    w.commit(&mut log, 8000);
    drop(log);
    let (mut log, _) = Log::open(dir.path(), options()).unwrap();
    assert_eq!(all(&mut log), w.expected(w.ends.len()));
}

#[test]
fn a_log_of_growing_segments_opens_and_goes_on_into_prepared_ones() {
    // Small segments never prepare (a segment holds less than a quarter MiB): every
    // file is as the log wrote them before it prepared any, its length its last
    // batch's end.
    let dir = tempfile::tempdir().unwrap();
    let small = Options { segment_bytes: 64 << 10 };
    let (mut log, _) = Log::open(dir.path(), small).unwrap();
    let mut w = Written { ends: Vec::new() };
    for _ in 0..40 {
        w.commit(&mut log, 8000);
        assert!(!log.wait_prepared());
    }
    drop(log);
    let segs = segments(dir.path());
    assert!(segs.len() > 4);
    assert_eq!(base_of(segs.last().unwrap()) + len_of(segs.last().unwrap()), w.ends[39]);

    let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(all(&mut log), w.expected(40));
    w.until_prepared_roll(&mut log);
    drop(log);
    let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(all(&mut log), w.expected(w.ends.len()));
}

#[test]
fn when_preparing_fails_the_log_goes_on_in_growing_segments_and_seals_the_one_with_room() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { segment_bytes: MIB };
    let (mut log, _) = Log::open(dir.path(), opts).unwrap();
    let mut w = Written { ends: Vec::new() };
    w.until_prepared_roll(&mut log);
    let with_room = segments(dir.path()).pop().unwrap();
    assert_eq!(len_of(&with_room), MIB);
    // No file can be made under the name the next one is prepared in (as on a
    // full disk): the next segment is made when it must be, growing, and the one
    // with room is sealed first, at its length.
    fs::create_dir(dir.path().join("prepare.tmp")).unwrap();
    for _ in 0..200 {
        w.commit(&mut log, 8000);
        assert!(!log.wait_prepared());
    }
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{}", segs.len());
    for pair in segs.windows(2) {
        assert_eq!(base_of(&pair[0]) + len_of(&pair[0]), base_of(&pair[1]));
    }
    assert_eq!(base_of(segs.last().unwrap()) + len_of(segs.last().unwrap()), log.end().0);
    drop(log);
    fs::remove_dir(dir.path().join("prepare.tmp")).unwrap();
    let (mut log, rec) = Log::open(dir.path(), opts).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(all(&mut log), w.expected(w.ends.len()));
}

#[test]
fn closing_the_log_stops_the_preparing_and_removes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), options()).unwrap();
    let mut w = Written { ends: Vec::new() };
    // Past a quarter MiB the next file is being prepared, or is ready, or (if it
    // was ready in time) taken: any way, closing the log leaves nothing of it.
    for _ in 0..40 {
        w.commit(&mut log, 8000);
    }
    drop(log);
    assert!(!dir.path().join("prepare.tmp").exists());
    let (mut log, rec) = Log::open(dir.path(), options()).unwrap();
    assert!(rec.cut.is_none());
    assert_eq!(all(&mut log), w.expected(40));
}

#[test]
fn the_verifier_reads_a_prepared_segment_and_on_past_where_it_was_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), options()).unwrap();
    let mut w = Written { ends: Vec::new() };
    let second = w.until_prepared_roll(&mut log);
    for _ in 0..3 {
        w.commit(&mut log, 8000);
    }
    // Checked up to the second segment's first batch: the verifier holds that
    // segment open, as long as its file was, room and all.
    let mut v = Verifier::new(dir.path());
    let budget = second - SEGMENT_HEADER + 8040;
    let c = v.check(log.end(), budget).unwrap();
    assert!(!c.pass_done);
    assert_eq!(c.bytes, budget);
    // Then the log rolls past it: sealed shorter than the file the verifier opened.
    let third = w.until_prepared_roll(&mut log);
    let sealed = &segments(dir.path())[1];
    assert_eq!(base_of(sealed) + len_of(sealed), third);
    assert!(len_of(sealed) < MIB - 32, "room was left unused");
    let c2 = v.check(log.end(), u64::MAX).unwrap();
    assert!(c2.pass_done);
    assert_eq!(c.batches + c2.batches, w.ends.len() as u64, "every batch, no more");
    assert!(v.size().unwrap() >= log.end().0 + MIB, "room written ahead is disk use");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Commits of random sizes, prepared files taken or not, then a crash that
    /// leaves any subset of the last write's sectors (or, in a file it grew, cuts
    /// it short), and a reopen: every batch before the last is there, the last is
    /// there whole or not at all, and the log goes on.
    #[test]
    fn a_crash_in_the_last_write_keeps_every_acknowledged_batch(
        commits in prop::collection::vec((1usize..40_000, any::<bool>()), 20..120),
        sectors in prop::collection::vec(any::<bool>(), 0..80),
        cut_at in 0.0f64..1.0,
        shorten in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options { segment_bytes: 2 * MIB };
        let (mut log, _) = Log::open(dir.path(), opts).unwrap();
        let mut sizes = Vec::new();
        let mut last = Position(0);
        for (i, (len, wait)) in commits.iter().enumerate() {
            let n = i as u64 + 1;
            last = log.commit(n, 0, [data(n, *len).as_slice()]).unwrap();
            sizes.push((n, *len));
            if *wait {
                log.wait_prepared();
            }
        }
        let end = log.end().0;
        drop(log);
        let active = segments(dir.path()).pop().unwrap();
        let base = base_of(&active);
        if shorten && len_of(&active) == end - base {
            // A write that grew the file: the size may have reached the disk
            // with only part of it.
            let keep = last.0 + ((end - last.0) as f64 * cut_at) as u64;
            OpenOptions::new().write(true).open(&active).unwrap().set_len(keep - base).unwrap();
        } else {
            // Any subset of its 512-byte sectors (on the file's own alignment).
            let first = (last.0 - base) / 512;
            tear(&active, base, last.0, end, |at| {
                sectors.get(((at - base) / 512 - first) as usize).copied().unwrap_or(false)
            });
        }
        let (mut log, rec) = Log::open(dir.path(), opts).unwrap();
        let got = all(&mut log);
        let n = sizes.len();
        prop_assert!(got.len() == n || got.len() == n - 1, "{} of {}", got.len(), n);
        prop_assert_eq!(&got[..], &sizes[..got.len()]);
        prop_assert_eq!(rec.last_number, Some(got.len() as u64));
        if got.len() < n {
            prop_assert_eq!(log.end(), last);
        }
        let next = got.len() as u64 + 1;
        log.commit(next, 0, [data(next, 5000).as_slice()]).unwrap();
        drop(log);
        let (mut log, rec) = Log::open(dir.path(), opts).unwrap();
        prop_assert!(rec.cut.is_none());
        let again = all(&mut log);
        prop_assert_eq!(again.len(), got.len() + 1);
        prop_assert_eq!(again[got.len()], (next, 5000));
    }
}
