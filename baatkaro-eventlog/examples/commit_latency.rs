//! What one durable commit of an 8 KiB batch costs: commits `--commits` batches
//! (default 4000, 32 MiB) into a fresh log and prints the median and p99 wall time
//! of a commit, in microseconds. Not a test: speed is measured, never asserted.
//!
//! ```sh
//! cargo run --release -p baatkaro-eventlog --example commit_latency -- \
//!     [--commits N] [--dir /a/dir/on/the/disk/to/measure]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use baatkaro_eventlog::{Log, Options};

fn main() {
    let mut commits = 4000usize;
    let mut parent = std::env::temp_dir();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--commits" => commits = args.next().and_then(|n| n.parse().ok()).expect("a number"),
            "--dir" => parent = args.next().expect("a directory").into(),
            other => panic!("unknown argument {other}"),
        }
    }
    let dir = tempfile::tempdir_in(&parent).unwrap();
    let (mut log, _) = Log::open(dir.path(), Options::default()).unwrap();
    // One record of 8 KiB less the batch and record headers: 8 KiB written a commit.
    let data = vec![0x5au8; 8192 - 32 - 8];
    let mut times = Vec::with_capacity(commits);
    let started = Instant::now();
    for n in 0..commits {
        let t = Instant::now();
        log.commit(n as u64 + 1, 0, [data.as_slice()]).unwrap();
        times.push(t.elapsed().as_nanos() as u64);
    }
    let total = started.elapsed();
    times.sort_unstable();
    let pct = |p: usize| times[(times.len() - 1) * p / 100] as f64 / 1000.0;
    println!(
        "commits {commits} of 8 KiB: median {:.0} us, p90 {:.0} us, p99 {:.0} us, {:.0} commits/s, {} segments",
        pct(50),
        pct(90),
        pct(99),
        commits as f64 / total.as_secs_f64(),
        log.segments()
    );
}
