//! `baatkaro-load`: measures message throughput of a BaatKaro server, and checks it.
//!
//! Every member is one TCP connection speaking the protocol through
//! `baatkaro-proto`'s codec, and sends `--messages` in all. In saturation mode each
//! member keeps up to `--window` SENDs in flight; in open-loop mode (`--rate R`) the
//! members send R messages per second in all on a fixed schedule, and latency counts
//! from each message's intended send time (no coordinated omission). Either way every
//! member must have received every message of its group exactly once, in sequence
//! order, without a gap, or the run fails (exit 1). `--private` pairs the members
//! of each group slot instead (members 0 and 1, 2 and 3, …): each sends its messages
//! to its peer as private messages, and both see every message of the pair's
//! conversation. `--connections K --idle` instead opens K logged-in idle
//! connections and reports the server's memory per connection.
//!
//! It reports its own CPU use too: a figure taken while the generator kept its core
//! more than 85 % busy may be the generator's limit rather than the server's, and is
//! marked as a lower bound (`"lower_bound": true`). It also reports its CPU time per
//! delivery and so how many deliveries per second one core of it could take
//! (`generator_ns_per_delivery`, `generator_capacity_per_sec`). On a terminal it
//! shows a progress line on standard error while it runs.
//!
//! ```sh
//! cargo build --release -p baatkaro-server -p baatkaro-benches
//! taskset -c 1 target/release/baatkaro-load --groups 1 --members 100 --messages 1000 --pin
//! ```
//!
//! Without `--server` it starts the release server next to itself (port 0, a
//! temporary data directory, the test-only password hash, send budgets raised) and
//! reports its CPU time during the run and its peak memory. With `--server ADDR` it measures a running
//! server, which must allow the accounts it registers (`--insecure-test-hash`,
//! `--logins-per-minute`, `--limit-rate`, `--limit-burst`).

use std::fmt::Write as _;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baatkaro_proto::{
    Command, Conversation, Encode, Event, IdemKey, JoinRule, OkReply, Password, Peeked, Request,
    ServerFrame, ServerFrameDecoder, StoredEvent, Tag, Text, UserName, Versions,
};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    server: Option<String>,
    groups: usize,
    members: usize,
    size: usize,
    messages: usize,
    window: usize,
    json: bool,
    pin: bool,
    /// `--connections K --idle`: only open K logged-in idle connections.
    idle: Option<usize>,
    /// `--rate R`: open loop, R messages per second in all.
    rate: Option<usize>,
    /// `--private`: pairs exchanging private messages instead of group traffic.
    private: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: baatkaro-load [--server ADDR] [--groups G] [--members N] [--size BYTES] \
         [--messages M] [--window W | --rate R] [--private] [--json] [--pin] \
         | [--connections K --idle]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Args {
        server: None,
        groups: 1,
        members: 20,
        size: 128,
        messages: 1000,
        window: 64,
        json: false,
        pin: false,
        idle: None,
        rate: None,
        private: false,
    };
    let (mut connections, mut idle) = (None, false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| usage())
        };
        match flag.as_str() {
            "--groups" => a.groups = num(),
            "--members" => a.members = num(),
            "--size" => a.size = num(),
            "--messages" => a.messages = num(),
            "--window" => a.window = num(),
            "--server" => a.server = Some(it.next().unwrap_or_else(|| usage())),
            "--json" => a.json = true,
            "--pin" => a.pin = true,
            "--connections" => connections = Some(num()),
            "--idle" => idle = true,
            "--rate" => a.rate = Some(num()),
            "--private" => a.private = true,
            _ => usage(),
        }
    }
    match (connections, idle) {
        (Some(k), true) => a.idle = Some(k),
        (None, false) => {}
        _ => usage(),
    }
    if a.private && !a.members.is_multiple_of(2) {
        fail("--private pairs the members: --members must be even");
    }
    a
}

/// The server this run started, if any.
struct Owned {
    child: Child,
    _dir: tempfile::TempDir,
}

fn start_server(pin: bool) -> (Owned, String) {
    let bin = std::env::current_exe().unwrap_or_default().with_file_name("baatkaro-server");
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let data = dir.path().join("data");
    let mut args: Vec<&std::ffi::OsStr> = [
        "--insecure-test-hash",
        "--log",
        "warn,baatkaro_server::server=info",
        "--logins-per-minute",
        "1000000",
        "--max-per-address",
        "100000",
        "--max-connections",
        "100000",
        "--limit-rate",
        "1000000",
        "--limit-burst",
        "1000000",
        "--limit-queue",
        "67108864",
        "--data-dir",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    args.push(data.as_os_str());
    let (child, addr) =
        baatkaro_benches::spawn_server(&bin, &args, pin).unwrap_or_else(|e| fail(&e));
    (Owned { child, _dir: dir }, addr)
}

fn fail(why: &str) -> ! {
    eprintln!("baatkaro-load: {why}");
    std::process::exit(1)
}

/// How many digits a message's time stamp has: two words of eight.
const STAMP_DIGITS: usize = 16;

/// The send time (µs since the run's epoch) that a message's text starts with:
/// [`STAMP_DIGITS`] digits, read a word of eight at a time.
fn stamp_of(text: &[u8]) -> Option<u64> {
    let digits = text.get(..STAMP_DIGITS)?;
    let (hi, lo) = digits.split_at(8);
    Some(eight_digits(hi)? * 100_000_000 + eight_digits(lo)?)
}

/// Writes `value` into `digits` as decimal digits with leading zeros (the low
/// digits only, if it has more).
fn write_stamp(digits: &mut [u8], mut value: u128) {
    for d in digits.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The value of eight ASCII digits, if they are digits.
fn eight_digits(digits: &[u8]) -> Option<u64> {
    const THREES: u64 = u64::from_ne_bytes([0x30; 8]);
    const HIGH_NIBBLES: u64 = u64::from_ne_bytes([0xf0; 8]);
    const SIXES: u64 = u64::from_ne_bytes([0x06; 8]);
    let word = u64::from_le_bytes(digits.try_into().ok()?);
    // Digits are the bytes whose high nibble is 3 and stays 3 when 6 is added.
    let digits_only =
        (word & HIGH_NIBBLES) == THREES && (word.wrapping_add(SIXES) & HIGH_NIBBLES) == THREES;
    let v = word.wrapping_sub(THREES);
    // Pairs of digits, then the four pairs weighted 10^6, 10^4, 10^2, 1.
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let pairs = 0x0000_00ff_0000_00ff;
    let value = ((v & pairs).wrapping_mul(100 + (1_000_000 << 32)))
        .wrapping_add(((v >> 16) & pairs).wrapping_mul(1 + (10_000 << 32)))
        >> 32;
    digits_only.then_some(value)
}

/// How long a member waits for anything from the server (less up to a second)
/// before it stops and counts what it has not received as lost.
const STALL: Duration = Duration::from_secs(20);

/// How much a member reads at a time, at most. Kept under glibc's mmap threshold
/// (128 KiB): with 256 KiB, buffers came and went as fresh mappings, and zeroing
/// their pages took 9 % of the generator at 1 × 1,000 (2.0 → 2.9 M deliveries/s).
const READ: usize = 64 * 1024;

/// Above this share of its core the generator may be what limits a figure.
const GENERATOR_BUSY: f64 = 85.0;

/// This process's CPU seconds so far.
fn own_cpu() -> Option<f64> {
    usage_of(std::process::id()).map(|(cpu, _)| cpu)
}

/// Shows deliveries so far, once a second, on one line of standard error.
async fn show_progress(delivered: Arc<AtomicU64>, done: Arc<AtomicBool>, expected: u64) {
    let mut last = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !done.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = delivered.load(Ordering::Relaxed);
        eprint!("\r{now} of {expected} deliveries, {} per second   ", now - last);
        last = now;
    }
}

/// The resident memory of process `pid`, in bytes.
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?;
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Samples the server's resident memory every 100 ms until the run is done, so
/// that a report can say whether it stayed flat.
async fn sample_rss(pid: u32, done: Arc<AtomicBool>) -> Vec<u64> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // Bounded by the run: `done` is set when every member has finished.
    while !done.load(Ordering::Relaxed) {
        tick.tick().await;
        samples.extend(rss_of(pid));
    }
    samples
}

/// The samples at a quarter, half and three quarters of the run, and the last.
fn quarters(samples: &[u64]) -> Option<[u64; 4]> {
    let n = samples.len();
    let at = |num: usize| samples.get((n * num / 4).min(n.saturating_sub(1))).copied();
    Some([at(1)?, at(2)?, at(3)?, *samples.last()?])
}

/// CPU seconds and peak RSS of a process, from /proc.
fn usage_of(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()?;
    // Clock ticks are 100 per second on Linux.
    Some((ticks / 100.0, hwm * 1024))
}

fn req(tag: &str, command: Command) -> Vec<u8> {
    let tag = Tag::new(tag).unwrap_or_else(|_| fail("bad tag"));
    Request { tag, command }.to_bytes().to_vec()
}

/// HELLO, then REGISTER as `user` (tagged `h` and `r`): how every connection starts.
fn hello_and_register(user: UserName) -> Vec<u8> {
    let versions = Versions::new(vec![1]).unwrap_or_else(|_| fail("v"));
    let mut bytes = req("h", Command::Hello { versions, client: None });
    let password = Password::new("load-password").unwrap_or_else(|_| fail("pw"));
    bytes.extend(req("r", Command::Register { user, password }));
    bytes
}

/// Reads until the final reply with `tag`; fails on an error reply.
async fn until_reply(s: &mut TcpStream, d: &mut ServerFrameDecoder, tag: &str) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(f) = d.next_frame() {
            match f {
                Ok(ServerFrame::Ok { tag: t, .. }) if t.as_str() == tag => return,
                Ok(ServerFrame::Err { tag: t, failure }) if t.as_str() == tag => {
                    fail(&format!("{tag}: {}", failure.code))
                }
                Ok(_) => {}
                Err(e) => fail(&format!("bad frame: {e}")),
            }
        }
        let n = s.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            fail("the server closed a connection during setup");
        }
        d.push(&buf[..n]);
    }
}

/// What one member saw.
#[derive(Default)]
struct Seen {
    delivered: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    bytes: u64,
}

/// When a member sends in open-loop mode: every `period` from `first`.
#[derive(Clone, Copy)]
struct Schedule {
    first: Instant,
    period: std::time::Duration,
}

impl Schedule {
    /// When message `k` is meant to go.
    fn at(&self, k: usize) -> Instant {
        self.first + self.period.mul_f64(k as f64)
    }
}

/// Who a member is and what it talks in.
struct Role {
    name: String,
    conv: Conversation,
    senders: Senders,
}

/// Who may send into a member's conversation: the members whose places among the
/// group slot's `names` (shared by all of them) are `expected` — all of them in a
/// group, the two of a pair.
struct Senders {
    names: Arc<[UserName]>,
    expected: std::ops::Range<usize>,
}

impl Senders {
    /// The place of `name` among `names`, whose names end in `-{place}`: the digits
    /// at its end, then one comparison of two inline names. A hash table of names
    /// cost the generator 7 % of its time.
    fn index_of(&self, bytes: &[u8]) -> Option<usize> {
        let dash = bytes.iter().rposition(|&b| b == b'-')?;
        let i = bytes[dash + 1..].iter().try_fold(0usize, |acc, &d| {
            d.is_ascii_digit().then(|| acc.saturating_mul(10).saturating_add(usize::from(d - b'0')))
        })?;
        (self.names.get(i)?.as_bytes() == bytes).then_some(i)
    }
}

/// What all members add to.
#[derive(Clone)]
struct Shared {
    /// Deliveries so far, for the progress line.
    progress: Arc<AtomicU64>,
    /// Latency of every delivery of another member's message, in µs.
    latencies: Arc<Mutex<Histogram<u64>>>,
}

/// What every member does: the run's shape.
#[derive(Clone, Copy)]
struct Plan {
    members: usize,
    messages: usize,
    window: usize,
    size: usize,
    /// Time stamps in texts count from here.
    epoch: Instant,
}

/// One member: sends its messages to `conv` and checks what arrives. `plan.members`
/// is how many send into that conversation (the group's size, or 2 for a pair).
async fn member(
    mut s: TcpStream,
    mut d: ServerFrameDecoder,
    role: Role,
    plan: Plan,
    schedule: Option<Schedule>,
    shared: Shared,
) -> Seen {
    let Plan { members, messages, window, size, epoch } = plan;
    let Role { name, conv, senders } = role;
    let (mut rd, mut wr) = s.split();
    let expected = (members * messages) as u64;
    let mut seen = Seen::default();
    // Deliveries counted per sender, by the sender's place among the names.
    let mut per_sender = vec![0u64; senders.names.len()];
    let me = senders.index_of(name.as_bytes());
    let mut strangers = 0u64;
    let mut last_seq: Option<u64> = None;
    let (mut sent, mut acked) = (0usize, 0usize);
    let mut out = BytesMut::new();
    let tag = Tag::new("s").unwrap_or_else(|_| fail("bad tag"));
    // Each text is this one with its time stamp written over the start.
    let mut body = vec![b'x'; size.max(STAMP_DIGITS)];
    let mut key = String::new();
    // One timer for the whole run, pushed back at most once a second: arming a
    // fresh one for every read was a timer insertion and removal per read.
    let stall = tokio::time::sleep(STALL);
    tokio::pin!(stall);
    let mut armed_at = Instant::now();
    loop {
        loop {
            // Saturation: up to `window` in flight. Open loop: every message whose
            // time has come, whatever is in flight.
            let due = match schedule {
                None => sent - acked < window,
                Some(sch) => sch.at(sent) <= Instant::now(),
            };
            if sent >= messages || !due {
                break;
            }
            // The text starts with the time the message was meant to go (open loop)
            // or went (saturation): latency counts from there, so a server that
            // stalls cannot hide it by delaying the sends (no coordinated omission).
            let meant = schedule.map_or_else(Instant::now, |sch| sch.at(sent));
            let micros = meant.saturating_duration_since(epoch).as_micros();
            write_stamp(&mut body[..STAMP_DIGITS], micros);
            let text = Text::from_bytes(Bytes::copy_from_slice(&body))
                .unwrap_or_else(|_| fail("bad text"));
            key.clear();
            let _ = write!(key, "{name}-{sent}");
            let key = IdemKey::new(&key).unwrap_or_else(|_| fail("bad key"));
            Request { tag, command: Command::Send { to: conv, key, text } }.encode(&mut out);
            sent += 1;
        }
        if !out.is_empty() {
            seen.bytes += out.len() as u64;
            if wr.write_all(&out).await.is_err() {
                fail("a connection broke");
            }
            out.clear();
        }
        if seen.delivered >= expected && acked >= messages {
            break;
        }
        let next = schedule.filter(|_| sent < messages).map(|sch| sch.at(sent));
        let n = tokio::select! {
            // Straight into the decoder's buffer: no copy on the way in.
            n = async {
                let into = d.buffer_mut();
                into.reserve(READ);
                rd.read_buf(into).await
            } => n.unwrap_or(0),
            () = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => continue,
            // A delivery that never comes must end the run as a loss, not hang it.
            () = &mut stall => {
                eprintln!("baatkaro-load: {name}: nothing arrived for {}s", STALL.as_secs() - 1);
                break;
            }
        };
        if n == 0 {
            fail(&format!("{name}: the server closed the connection"));
        }
        seen.bytes += n as u64;
        let before = seen.delivered;
        // One clock read per read: every message in it arrived now.
        let arrived = Instant::now();
        let now = arrived.duration_since(epoch).as_micros() as u64;
        if arrived.duration_since(armed_at) >= Duration::from_secs(1) {
            stall.as_mut().reset((arrived + STALL).into());
            armed_at = arrived;
        }
        // The run's one histogram, locked once per read (nothing else runs on this
        // thread meanwhile): one per member was 1,000 histograms of tens of KiB each
        // at 1 × 1,000, and every delivery recorded into one that was out of cache.
        let mut latencies = shared.latencies.lock().unwrap_or_else(|e| e.into_inner());
        // Messages are read borrowed from the decoder's buffer (checked as fully as
        // decoded ones, but not copied into frames): building a frame per delivery
        // was most of the generator's time. Other frames are matched where the
        // decoder returns them rather than bound first: a frame is a few hundred
        // bytes, and binding it was a memcpy.
        let mut delivered = |seq: u64, from: &[u8], text: &[u8]| {
            seen.delivered += 1;
            match last_seq {
                Some(l) if seq <= l => seen.duplicated += 1,
                Some(l) if seq != l + 1 => seen.reordered += 1,
                _ => {}
            }
            last_seq = Some(last_seq.map_or(seq, |l| l.max(seq)));
            let sender = senders.index_of(from);
            match sender {
                Some(i) => per_sender[i] += 1,
                None => strangers += 1,
            }
            if sender != me
                && let Some(sent_at) = stamp_of(text)
            {
                let _ = latencies.record(now.saturating_sub(sent_at));
            }
        };
        loop {
            match d.next_peeked() {
                None => break,
                Some(Ok(Peeked::Msg(m))) => delivered(m.seq(), m.from_bytes(), m.text_bytes()),
                // The decoder reads an unusual spelling of a message whole.
                Some(Ok(Peeked::Frame(ServerFrame::Event(Event::Stored(
                    StoredEvent::Message { seq, from, text, .. },
                ))))) => delivered(seq, from.as_bytes(), text.as_bytes()),
                Some(Ok(Peeked::Frame(ServerFrame::Ok {
                    reply: OkReply::Send { .. }, ..
                }))) => acked += 1,
                Some(Ok(Peeked::Frame(ServerFrame::Err { failure, .. }))) => {
                    fail(&format!("{name}: {}", failure.code))
                }
                Some(Ok(Peeked::Frame(ServerFrame::Event(Event::Bye(f))))) => {
                    fail(&format!("{name}: BYE {}", f.code))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => fail(&format!("bad frame: {e}")),
            }
        }
        drop(latencies);
        // Once per read, not per delivery: the counter is shared.
        shared.progress.fetch_add(seen.delivered - before, Ordering::Relaxed);
    }
    let expected_senders = per_sender.get(senders.expected.clone()).unwrap_or_default();
    for &count in expected_senders {
        seen.lost += (messages as u64).saturating_sub(count);
    }
    let outsiders =
        per_sender.iter().sum::<u64>() - expected_senders.iter().sum::<u64>() + strangers;
    if outsiders > 0 {
        fail(&format!("{name}: {outsiders} messages from outside the conversation"));
    }
    seen
}

/// Opens `k` logged-in connections that then say nothing, and reports the
/// server's memory per connection.
fn idle_run(rt: &tokio::runtime::Runtime, addr: &str, k: usize, owned: Option<Owned>, json: bool) {
    let pid = owned.as_ref().map(|o| o.child.id());
    let rss = || rss_of(pid?);
    let before = rss();
    let run = format!("{:x}", std::process::id());
    let conns = rt.block_on(async {
        let mut conns = Vec::with_capacity(k);
        for i in 0..k {
            let mut s =
                TcpStream::connect(addr).await.unwrap_or_else(|e| fail(&format!("{addr}: {e}")));
            let mut d = ServerFrameDecoder::new(1 << 20);
            let user = format!("i{run}-{i}").parse().unwrap_or_else(|_| fail("bad user name"));
            if s.write_all(&hello_and_register(user)).await.is_err() {
                fail("setup write failed");
            }
            until_reply(&mut s, &mut d, "r").await;
            conns.push(s);
        }
        conns
    });
    let after = rss();
    let per = match (before, after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) / k as u64),
        _ => None,
    };
    if json {
        println!(
            "{{\"connections\":{k},\"server_rss_bytes\":{},\"rss_per_connection_bytes\":{}}}",
            after.map_or("null".into(), |r| r.to_string()),
            per.map_or("null".into(), |p| p.to_string())
        );
    } else {
        println!("{k} idle logged-in connections");
        if let (Some(a), Some(p)) = (after, per) {
            println!("server RSS {} MiB, {p} bytes per connection", a >> 20);
        }
    }
    drop(conns);
    if let Some(mut o) = owned {
        let _ = o.child.kill();
        let _ = o.child.wait();
    }
}

fn main() {
    let a = args();
    let (owned, addr) = match &a.server {
        Some(addr) => (None, addr.clone()),
        None => {
            let (o, addr) = start_server(a.pin);
            (Some(o), addr)
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    if let Some(k) = a.idle {
        return idle_run(&rt, &addr, k, owned, a.json);
    }
    let epoch = Instant::now();
    let server_pid = owned.as_ref().map(|o| o.child.id());
    let (seen, hist, elapsed, generator_cpu, server_cpu_at_start, rss_quarters) =
        rt.block_on(async {
            // Set up: every member registers and joins its group (member 0 creates it).
            let mut conns = Vec::new();
            let run = format!("{:x}", std::process::id());
            for g in 0..a.groups {
                let group: baatkaro_proto::GroupName =
                    format!("load{run}-{g}").parse().unwrap_or_else(|_| fail("bad group name"));
                let names: Arc<[UserName]> = (0..a.members)
                    .map(|k| format!("l{run}-{g}-{k}").parse().unwrap_or_else(|_| fail("bad name")))
                    .collect();
                for i in 0..a.members {
                    let name = names[i].to_string();
                    let mut s = TcpStream::connect(&addr)
                        .await
                        .unwrap_or_else(|e| fail(&format!("{addr}: {e}")));
                    let _ = s.set_nodelay(true);
                    let mut d = ServerFrameDecoder::new(1 << 24);
                    let mut hello = hello_and_register(names[i]);
                    // A pair needs no group: each writes to the other.
                    let (conv, last) = if a.private {
                        let peer = *names.get(i ^ 1).unwrap_or_else(|| fail("odd member count"));
                        (Conversation::Direct(peer), "r")
                    } else {
                        hello.extend(if i == 0 {
                            req("g", Command::Create { group, rule: Some(JoinRule::Open) })
                        } else {
                            req("g", Command::Join { group, reason: None })
                        });
                        (Conversation::Group(group), "g")
                    };
                    if s.write_all(&hello).await.is_err() {
                        fail("setup write failed");
                    }
                    until_reply(&mut s, &mut d, last).await;
                    // A pair is two neighbours: 2k and 2k + 1.
                    let expected = if a.private { (i & !1)..(i & !1) + 2 } else { 0..a.members };
                    let senders = Senders { names: names.clone(), expected };
                    conns.push((s, d, Role { name, conv, senders }));
                }
            }
            let start = Instant::now();
            let cpu_at_start = own_cpu();
            // The server's CPU counts from here: setting up (accounts, joins) is not
            // part of the figure.
            let server_cpu_at_start = server_pid.and_then(usage_of).map(|(c, _)| c);
            let everyone = conns.len();
            let progress = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicBool::new(false));
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let expected =
                    (everyone * a.messages * if a.private { 2 } else { a.members }) as u64;
                tokio::spawn(show_progress(progress.clone(), done.clone(), expected));
            }
            let hist = Histogram::new(3).unwrap_or_else(|e| fail(&e.to_string()));
            let shared =
                Shared { progress: progress.clone(), latencies: Arc::new(Mutex::new(hist)) };
            let rss_samples = server_pid.map(|pid| tokio::spawn(sample_rss(pid, done.clone())));
            let tasks: Vec<_> = conns
                .into_iter()
                .enumerate()
                .map(|(i, (s, d, role))| {
                    // Open loop: the aggregate rate, members evenly staggered.
                    let schedule = a.rate.map(|rate| {
                        let period =
                            std::time::Duration::from_secs_f64(everyone as f64 / rate as f64);
                        Schedule {
                            first: start + period.mul_f64(i as f64 / everyone as f64),
                            period,
                        }
                    });
                    let plan = Plan {
                        members: if a.private { 2 } else { a.members },
                        messages: a.messages,
                        window: a.window,
                        size: a.size,
                        epoch,
                    };
                    tokio::spawn(member(s, d, role, plan, schedule, shared.clone()))
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.unwrap_or_else(|e| fail(&e.to_string())));
            }
            done.store(true, Ordering::Relaxed);
            let elapsed = start.elapsed();
            let rss_over_run = match rss_samples {
                Some(t) => t.await.unwrap_or_default(),
                None => Vec::new(),
            };
            let cpu = own_cpu().zip(cpu_at_start).map(|(end, start)| end - start);
            let generator = cpu.map(|c| 100.0 * c / elapsed.as_secs_f64());
            let hist = std::mem::replace(
                &mut *shared.latencies.lock().unwrap_or_else(|e| e.into_inner()),
                Histogram::new(1).unwrap_or_else(|e| fail(&e.to_string())),
            );
            (all, hist, elapsed, generator, server_cpu_at_start, quarters(&rss_over_run))
        });
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r\x1b[2K"); // The progress line goes.
    }
    let secs = elapsed.as_secs_f64();
    let delivered: u64 = seen.iter().map(|s| s.delivered).sum();
    let lost: u64 = seen.iter().map(|s| s.lost).sum();
    let duplicated: u64 = seen.iter().map(|s| s.duplicated).sum();
    let reordered: u64 = seen.iter().map(|s| s.reordered).sum();
    let bytes: u64 = seen.iter().map(|s| s.bytes).sum();
    let sent = (a.groups * a.members * a.messages) as f64;
    let server = server_pid.and_then(usage_of);
    let (cpu, rss) = server
        .map_or((None, None), |(c, r)| (Some(c - server_cpu_at_start.unwrap_or(0.0)), Some(r)));
    let q = |p: f64| hist.value_at_quantile(p);
    let lower_bound = generator_cpu.is_some_and(|c| c > GENERATOR_BUSY);
    // What the generator spends per delivery, and so what one core of it could
    // drive: the figure that says whether it or the server limits a run.
    let ns_per_delivery =
        generator_cpu.filter(|_| delivered > 0).map(|c| c / 100.0 * secs * 1e9 / delivered as f64);
    let capacity = ns_per_delivery.filter(|ns| *ns > 0.0).map(|ns| 1e9 / ns);
    if a.json {
        println!(
            "{{\"deliveries_per_sec\":{:.0},\"sent_per_sec\":{:.0},\"lost\":{lost},\"duplicated\":{duplicated},\"reordered\":{reordered},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"server_cpu_s\":{},\"server_rss_bytes\":{},\"server_rss_quarters\":{},\"generator_cpu_pct\":{},\"generator_ns_per_delivery\":{},\"generator_capacity_per_sec\":{},\"lower_bound\":{lower_bound},\"delivered\":{delivered},\"bytes\":{bytes},\"seconds\":{secs:.3}}}",
            delivered as f64 / secs,
            sent / secs,
            q(0.5),
            q(0.99),
            q(0.999),
            hist.max(),
            cpu.map_or("null".into(), |c| format!("{c:.2}")),
            rss.map_or("null".into(), |r| r.to_string()),
            rss_quarters
                .map_or("null".into(), |q| format!("[{},{},{},{}]", q[0], q[1], q[2], q[3])),
            generator_cpu.map_or("null".into(), |c| format!("{c:.0}")),
            ns_per_delivery.map_or("null".into(), |ns| format!("{ns:.0}")),
            capacity.map_or("null".into(), |c| format!("{c:.0}")),
        );
    } else {
        println!(
            "groups {} x members {}, {} messages of {} B each, {}",
            a.groups,
            a.members,
            a.messages,
            a.size,
            match a.rate {
                Some(r) => format!("open loop at {r} messages/s in all"),
                None => format!("saturation with {} in flight per member", a.window),
            } + if a.private { ", private messages between pairs" } else { "" }
        );
        println!("deliveries  {delivered} in {secs:.2} s = {:.0}/s", delivered as f64 / secs);
        println!("sent        {sent:.0} = {:.0}/s", sent / secs);
        println!(
            "latency     p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            q(0.5),
            q(0.99),
            q(0.999),
            hist.max()
        );
        println!("wire        {:.1} MB", bytes as f64 / 1e6);
        if let (Some(c), Some(r)) = (cpu, rss) {
            println!("server      {c:.2} s CPU during the run, peak RSS {} MiB", r >> 20);
        }
        if let Some(q) = rss_quarters {
            let mib = q.map(|b| b >> 20);
            println!(
                "server RSS  {} / {} / {} / {} MiB at a quarter, half, three quarters, the end",
                mib[0], mib[1], mib[2], mib[3]
            );
        }
        if let Some(c) = generator_cpu {
            let mark = if lower_bound { " (over 85 %: the figures are lower bounds)" } else { "" };
            println!("generator   {c:.0} % of its core{mark}");
        }
        if let (Some(ns), Some(cap)) = (ns_per_delivery, capacity) {
            println!(
                "            {ns:.0} ns per delivery: one core could take {cap:.0} deliveries/s"
            );
        }
        println!("checks      lost {lost}, duplicated {duplicated}, reordered {reordered}");
    }
    if let Some(mut o) = owned {
        let _ = o.child.kill();
        let _ = o.child.wait();
    }
    if lost + duplicated + reordered > 0 {
        std::process::exit(1);
    }
}
