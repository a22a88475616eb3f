//! What the log writes does not stay in the page cache: written directly (the
//! default), nothing of it but the partial last block enters it; written through
//! it, only the last [`CACHED_TAIL`] bytes (and less than a step more) stay, and
//! none of a sealed segment. A background check leaves no more than that cached
//! either; and what left the cache, or never entered it, reads back whole, from
//! the disk.
//!
//! Residency is read with `fincore` (Debian's util-linux-extra, which `test.sh`
//! installs). On a tmpfs, whose pages are the files themselves, nothing can leave
//! the cache: there the test says so and checks only the reading back.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{segments, takes_direct_io};

use std::path::Path;
use std::process::Command;

use baatkaro_eventlog::{CACHED_TAIL, Log, Options, UNCACHE_STEP, Verifier};

/// Bytes of `path` in the page cache.
fn resident(path: &Path) -> u64 {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("fincore (Debian's util-linux-extra; test.sh installs it)");
    assert!(out.status.success(), "fincore: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
}

// `f_type`'s type differs between architectures (i64 here, u32 or i32 elsewhere).
#[allow(clippy::useless_conversion)]
fn on_tmpfs(path: &Path) -> bool {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    i64::from(rustix::fs::statfs(path).unwrap().f_type) == TMPFS_MAGIC
}

/// Batch `n`: 16 records of 4 KiB, each saying which it is.
fn batch(n: u64) -> Vec<Vec<u8>> {
    (0..16u64)
        .map(|k| {
            let mut r = format!("batch {n} record {k} ").into_bytes();
            r.resize(4096, b'a' + ((n + k) % 26) as u8);
            r
        })
        .collect()
}

#[test]
fn written_directly_nothing_but_the_last_block_is_cached_and_all_reads_back() {
    only_the_end_of_the_log_stays_cached_and_the_rest_reads_back(true);
}

#[test]
fn written_through_the_cache_only_the_end_stays_cached_and_all_reads_back() {
    only_the_end_of_the_log_stays_cached_and_the_rest_reads_back(false);
}

fn only_the_end_of_the_log_stays_cached_and_the_rest_reads_back(direct: bool) {
    let dir = tempfile::tempdir().unwrap();
    // Three segments: two sealed, the active one well past the cached tail.
    let segment_bytes = 4 * CACHED_TAIL;
    let batches = 10 * CACHED_TAIL / (16 * 4096);
    let options = Options { segment_bytes, direct };
    let (mut log, _) = Log::open(dir.path(), options).unwrap();
    let tmpfs = on_tmpfs(dir.path());
    if direct && takes_direct_io(dir.path()) {
        assert!(log.writes_direct(), "direct writes on a file system that has them");
    }
    let direct = log.writes_direct();
    for n in 0..batches {
        log.commit(n, 0, batch(n).iter().map(Vec::as_slice)).unwrap();
    }
    let files = segments(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    let active = files.last().unwrap();
    let len = std::fs::metadata(active).unwrap().len();
    assert!(len > CACHED_TAIL + 2 * UNCACHE_STEP, "the active segment holds {len} B");

    // Written directly: the last partial block, written through the cache. Else
    // the last CACHED_TAIL bytes, what was written since the last drop (under a
    // step, or one batch more), and the partial page the drop keeps.
    let most_written = if direct { 4096 } else { CACHED_TAIL + UNCACHE_STEP + 16 * 4200 + 4096 };
    let after_a_check = CACHED_TAIL + UNCACHE_STEP + 16 * 4200 + 4096;
    let only_the_tail_cached = |after: &str, most: u64| {
        if tmpfs {
            eprintln!("the log is on a tmpfs: its pages cannot leave the cache; not checked");
            return;
        }
        for sealed in &files[..2] {
            assert_eq!(resident(sealed), 0, "{} stayed cached {after}", sealed.display());
        }
        let cached = resident(active);
        assert!(cached <= most, "{cached} B of {len} stayed cached {after} (at most {most})");
    };
    only_the_tail_cached("after the writes", most_written);

    // A whole pass of the background check reads every batch, and drops them.
    let mut check = Verifier::new(dir.path());
    let end = log.end();
    let mut passes = 0;
    while !check.check(end, 1 << 20).unwrap().pass_done {
        passes += 1;
        assert!(passes < 1000, "the check never finished its pass");
    }
    only_the_tail_cached("after a check", after_a_check);
    // And the check leaves the log's end cached for catch-ups, as the writer left
    // it or as the check read it (about CACHED_TAIL of it, unless the machine's
    // memory is short).
    if !tmpfs {
        let cached = resident(active);
        assert!(cached >= CACHED_TAIL / 2, "the check dropped the cached end: {cached} B left");
    }

    // Everything reads back, from the cache or the disk, before and after a reopen.
    for round in 0..2 {
        let start = log.start();
        let mut n = 0;
        for b in log.scan(start) {
            let b = b.unwrap();
            assert_eq!(b.number, n, "round {round}");
            let got: Vec<Vec<u8>> = b.records().map(|(_, r)| r.to_vec()).collect();
            assert_eq!(got, batch(n), "round {round}, batch {n}");
            n += 1;
        }
        assert_eq!(n, batches, "round {round}");
        drop(log);
        log = Log::open(dir.path(), options).unwrap().0;
    }
}
