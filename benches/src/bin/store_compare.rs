//! `baatkaro-store-compare`: what storing a message costs, per message, in each
//! candidate store, at group-commit batch sizes from 1 to 10,000 (issue 17).
//!
//! Every candidate stores what a SEND stores — the event's frame with its
//! conversation, sequence number and time, and the sender's idempotency key — and
//! makes each batch durable before the next begins, as the server's store thread
//! does:
//!
//! - `sqlite`: the server's own store (`baatkaro_server::store::sqlite`), a
//!   transaction per batch with an event row and a key row per message, WAL,
//!   `synchronous=FULL`;
//! - `log`: `baatkaro-eventlog`, one record per message, one write and one
//!   `fdatasync` per batch.
//!
//! It reports, per candidate and batch size: the store thread's CPU time per
//! message (from `/proc/thread-self/schedstat`: user and kernel time, not the wait
//! for the disk), the wall time per message, and the median and p99 wall time of a
//! commit. The candidates alternate batch size by batch size and round by round,
//! so drift on a shared machine falls on both alike.
//!
//! ```sh
//! cargo build --release -p baatkaro-benches
//! target/release/baatkaro-store-compare --rounds 3 [--dir /path/on/the/disk/to/measure]
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baatkaro_eventlog::{Log, Options};
use baatkaro_proto::group::GroupId;
use baatkaro_proto::{
    Conversation, Encode, Event, IdemKey, ServerFrame, StoredEvent, Text, UserName,
};
use baatkaro_server::store::sqlite::Sqlite;
use baatkaro_server::store::{ConvKey, EventRecord, Store, Write};

const SIZES: [usize; 5] = [1, 10, 100, 1_000, 10_000];
/// Text of each message: the 128 bytes of the throughput benchmarks.
const TEXT: usize = 128;
/// Conversations the messages are spread over (as 10 groups would).
const CONVS: u64 = 10;

/// How many commits to time at batch size `b`: enough for a steady figure, few
/// enough that a round takes seconds.
fn commits_for(b: usize) -> usize {
    (300_000 / b).clamp(30, 500)
}

/// One message as each candidate receives it.
struct Msg {
    conv: ConvKey,
    conversation: Conversation,
    event: StoredEvent,
    frame: bytes::Bytes,
    key: IdemKey,
}

fn messages(n: usize, first_seq: &mut [u64]) -> Vec<Msg> {
    let from: UserName = "alice".parse().unwrap_or_else(|_| fail("name"));
    let text = Text::new(&"x".repeat(TEXT)).unwrap_or_else(|_| fail("text"));
    (0..n)
        .map(|i| {
            let g = i as u64 % CONVS;
            first_seq[g as usize] += 1;
            let seq = first_seq[g as usize];
            let conversation: Conversation =
                format!("#g{g}").parse().unwrap_or_else(|_| fail("conversation"));
            let event = StoredEvent::Message {
                conv: conversation,
                seq,
                time: 1_764_072_600_000 + seq,
                from,
                text: text.clone(),
            };
            let frame = ServerFrame::Event(Event::Stored(event.clone())).to_bytes();
            let key: IdemKey = format!("k{g}x{seq}").parse().unwrap_or_else(|_| fail("key"));
            Msg { conv: ConvKey::Group(GroupId(g + 1)), conversation, event, frame, key }
        })
        .collect()
}

/// The log's record of a message: what the server will keep per SEND.
fn log_record(m: &Msg, out: &mut Vec<u8>) {
    let conv = m.conv.to_db();
    out.clear();
    out.push(conv.len() as u8);
    out.extend_from_slice(conv.as_bytes());
    out.extend_from_slice(&m.event.seq().to_le_bytes());
    out.extend_from_slice(&m.event.time().to_le_bytes());
    out.push(5);
    out.extend_from_slice(b"alice");
    out.push(m.key.as_str().len() as u8);
    out.extend_from_slice(m.key.as_str().as_bytes());
    out.extend_from_slice(&0x9e37_79b9_7f4a_7c15u64.to_le_bytes());
    out.extend_from_slice(&m.frame);
}

/// The calling thread's CPU time so far (user and kernel), in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| fail("no /proc/thread-self/schedstat"))
}

/// What one candidate did at one batch size.
struct Figures {
    cpu_ns_per_msg: f64,
    wall_ns_per_msg: f64,
    commit_p50: Duration,
    commit_p99: Duration,
}

/// Times `commits` commits of batches of `b` messages with `commit`.
fn measure(b: usize, commits: usize, mut commit: impl FnMut(&[Msg])) -> Figures {
    let mut seqs = vec![0u64; CONVS as usize];
    let batches: Vec<Vec<Msg>> = (0..commits).map(|_| messages(b, &mut seqs)).collect();
    let mut times = Vec::with_capacity(commits);
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    for batch in &batches {
        let t = Instant::now();
        commit(batch);
        times.push(t.elapsed());
    }
    let wall = t0.elapsed();
    let cpu = thread_cpu_ns() - cpu0;
    times.sort_unstable();
    let n = (b * commits) as f64;
    Figures {
        cpu_ns_per_msg: cpu as f64 / n,
        wall_ns_per_msg: wall.as_nanos() as f64 / n,
        commit_p50: times[times.len() / 2],
        commit_p99: times[(times.len() * 99 / 100).min(times.len() - 1)],
    }
}

fn run_sqlite(dir: &Path, b: usize) -> Figures {
    let mut store = Sqlite::open(dir).unwrap_or_else(|e| fail(&format!("sqlite: {e}")));
    let from: UserName = "alice".parse().unwrap_or_else(|_| fail("name"));
    let mut writes = Vec::with_capacity(2 * b);
    measure(b, commits_for(b), |batch| {
        writes.clear();
        for m in batch {
            writes.push(Write::Event(EventRecord::new(m.conv, &m.event, m.frame.clone())));
            writes.push(Write::SendKey {
                user: from,
                key: m.key,
                conv: m.conversation,
                fingerprint: 0x9e37_79b9_7f4a_7c15,
                seq: m.event.seq(),
                time: m.event.time(),
            });
        }
        store
            .commit(&writes, CONVS + 1, 0)
            .unwrap_or_else(|e| fail(&format!("sqlite commit: {e}")));
    })
}

fn run_log(dir: &Path, b: usize) -> Figures {
    let (mut log, _) = Log::open(&dir.join("events"), Options::default())
        .unwrap_or_else(|e| fail(&format!("log: {e}")));
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut number = 0;
    measure(b, commits_for(b), |batch| {
        records.resize_with(batch.len(), Vec::new);
        for (m, r) in batch.iter().zip(records.iter_mut()) {
            log_record(m, r);
        }
        number += 1;
        log.commit(number, 0, records.iter().map(Vec::as_slice))
            .unwrap_or_else(|e| fail(&format!("log commit: {e}")));
    })
}

fn fail(what: &str) -> ! {
    eprintln!("baatkaro-store-compare: {what}");
    std::process::exit(1)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let mut rounds = 3;
    let mut base: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds =
                    args.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| fail("--rounds N"))
            }
            "--dir" => base = args.next().map(PathBuf::from),
            _ => fail("usage: baatkaro-store-compare [--rounds N] [--dir DIR]"),
        }
    }
    type Runner = fn(&Path, usize) -> Figures;
    let candidates: [(&str, Runner); 2] = [("sqlite", run_sqlite), ("log", run_log)];
    // results[candidate][size] = one Figures per round.
    let mut results: Vec<Vec<Vec<Figures>>> =
        candidates.iter().map(|_| SIZES.iter().map(|_| Vec::new()).collect()).collect();
    for round in 0..rounds {
        for (s, &b) in SIZES.iter().enumerate() {
            // Alternate which candidate goes first, round by round.
            for k in 0..candidates.len() {
                let c = (k + round) % candidates.len();
                let dir = match &base {
                    Some(d) => tempfile::tempdir_in(d),
                    None => tempfile::tempdir(),
                }
                .unwrap_or_else(|e| fail(&format!("temporary directory: {e}")));
                let f = (candidates[c].1)(dir.path(), b);
                eprintln!(
                    "round {} {:>6} batch {:>5}: {:>8.0} ns CPU/msg {:>9.0} ns wall/msg, commit p50 {:?}",
                    round + 1,
                    candidates[c].0,
                    b,
                    f.cpu_ns_per_msg,
                    f.wall_ns_per_msg,
                    f.commit_p50
                );
                results[c][s].push(f);
            }
        }
    }
    println!("| store | batch | CPU ns/msg | wall ns/msg | messages/s | commit p50 | commit p99 |");
    println!("|---|---|---|---|---|---|---|");
    for (c, (name, _)) in candidates.iter().enumerate() {
        for (s, b) in SIZES.iter().enumerate() {
            let r = &results[c][s];
            let cpu = median(r.iter().map(|f| f.cpu_ns_per_msg).collect());
            let wall = median(r.iter().map(|f| f.wall_ns_per_msg).collect());
            let p50 = median(r.iter().map(|f| f.commit_p50.as_secs_f64() * 1e6).collect());
            let p99 = median(r.iter().map(|f| f.commit_p99.as_secs_f64() * 1e6).collect());
            println!(
                "| {name} | {b} | {cpu:.0} | {wall:.0} | {:.0} | {p50:.0} µs | {p99:.0} µs |",
                1e9 / wall
            );
        }
    }
}
