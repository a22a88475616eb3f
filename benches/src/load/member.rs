//! One member's loop, the same for every target: send (saturation: up to a window
//! in flight; open loop: on a schedule), read what arrives, and hand it to the
//! target's [`Wire`], which checks it into the member's [`Tally`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::check::{Seen, Tally};
use super::process::fail;

/// How a target speaks: what one message is on the wire, and what arrives.
pub trait Wire {
    /// The buffer reads go into (and [`Wire::take`] reads from).
    fn buffer(&mut self) -> &mut BytesMut;

    /// Appends the member's message number `k` (from 0), stamped `micros` (its
    /// send time since the run's epoch), to `out`.
    fn send(&mut self, k: usize, micros: u64, out: &mut BytesMut);

    /// Takes every whole frame from the buffer: each delivery goes into `tally`,
    /// and its latency (arrival at `now`, µs since the epoch) into `latencies`.
    /// Returns how many sends were acknowledged; an error ends the run.
    fn take(
        &mut self,
        now: u64,
        tally: &mut Tally,
        latencies: &mut Histogram<u64>,
    ) -> Result<usize, String>;
}

/// One member, set up and ready to send.
pub struct Member<W> {
    /// Its name, for messages.
    pub name: String,
    /// Its connection.
    pub stream: TcpStream,
    /// How its target speaks.
    pub wire: W,
    /// What it expects to receive.
    pub tally: Tally,
}

/// When a member sends in open-loop mode: every `period` from `first`.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// When its first message is meant to go.
    pub first: Instant,
    /// The time between two of its messages.
    pub period: Duration,
}

impl Schedule {
    /// When message `k` is meant to go.
    pub fn at(&self, k: usize) -> Instant {
        self.first + self.period.mul_f64(k as f64)
    }
}

/// What every member does.
#[derive(Clone, Copy)]
pub struct Plan {
    /// How many messages it sends.
    pub messages: usize,
    /// Saturation: how many may be in flight (sent and not acknowledged).
    pub window: usize,
    /// Time stamps in messages count from here.
    pub epoch: Instant,
    /// How long nothing may arrive before the member stops ([`STALL`] in a run).
    pub stall: Duration,
}

/// What all members add to.
#[derive(Clone)]
pub struct Shared {
    /// Deliveries so far, for the progress line.
    pub progress: Arc<AtomicU64>,
    /// Latency of every delivery of another member's message, in µs.
    pub latencies: Arc<Mutex<Histogram<u64>>>,
    /// Open loop: how late each message was written against its schedule, in µs.
    /// Its latency counts from the schedule, so this part of it is the generator's
    /// own (the pacer's wake-up and the runtime's delays), not the target's.
    pub lateness: Arc<Mutex<Histogram<u64>>>,
}

/// How long a member waits for anything from the server (less up to a second)
/// before it stops and counts what it has not received as lost (in open loop, not
/// counting the wait for its next message's time); and how long a setup read waits
/// before it fails the run.
pub const STALL: Duration = Duration::from_secs(20);

/// How much a member reads at a time, at most. Kept under glibc's mmap threshold
/// (128 KiB): with 256 KiB, buffers came and went as fresh mappings, and zeroing
/// their pages took 9 % of the generator at 1 × 1,000 (2.0 → 2.9 M deliveries/s).
const READ: usize = 64 * 1024;

/// Runs one member to the end: every message sent and acknowledged, and every
/// expected delivery received (or nothing arrived for 20 seconds).
pub async fn run_member<W: Wire>(
    member: Member<W>,
    plan: Plan,
    schedule: Option<Schedule>,
    pace: Option<Arc<Notify>>,
    shared: Shared,
) -> Seen {
    let Member { name, mut stream, mut wire, mut tally } = member;
    let Plan { messages, window, epoch, stall: stall_after } = plan;
    let (mut rd, mut wr) = stream.split();
    let expected = tally.expected_deliveries();
    let (mut sent, mut acked) = (0usize, 0usize);
    let mut out = BytesMut::new();
    // Open loop: when each message in `out` was meant to go.
    let mut scheduled = Vec::new();
    // One timer for the whole run, pushed back at most once a second: arming a
    // fresh one for every read was a timer insertion and removal per read.
    let stall = tokio::time::sleep(stall_after);
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
            // The message carries the time it was meant to go (open loop) or went
            // (saturation): latency counts from there, so a server that stalls
            // cannot hide it by delaying the sends (no coordinated omission).
            let meant = schedule.map_or_else(Instant::now, |sch| sch.at(sent));
            let micros = meant.saturating_duration_since(epoch).as_micros();
            wire.send(sent, u64::try_from(micros).unwrap_or(u64::MAX), &mut out);
            if schedule.is_some() {
                scheduled.push(meant);
            }
            sent += 1;
        }
        if !out.is_empty() {
            tally.add_bytes(out.len());
            if wr.write_all(&out).await.is_err() {
                fail(&format!("{name}: a connection broke"));
            }
            out.clear();
            if !scheduled.is_empty() {
                let written = Instant::now();
                let mut late = shared.lateness.lock().unwrap_or_else(|e| e.into_inner());
                for meant in scheduled.drain(..) {
                    let _ =
                        late.record(written.saturating_duration_since(meant).as_micros() as u64);
                }
            }
        }
        if tally.seen().delivered >= expected && acked >= messages {
            break;
        }
        let next = schedule.filter(|_| sent < messages).map(|sch| sch.at(sent));
        let n = tokio::select! {
            // Straight into the target's buffer: no copy on the way in.
            n = async {
                let into = wire.buffer();
                into.reserve(READ);
                rd.read_buf(into).await
            } => n.unwrap_or(0),
            // The pacer's wake-up when there is one (see pacer.rs), else the timer.
            () = async {
                match (next, &pace) {
                    (Some(_), Some(pace)) => pace.notified().await,
                    (Some(at), None) => tokio::time::sleep_until(at.into()).await,
                    (None, _) => std::future::pending().await,
                }
            } => continue,
            // A delivery that never comes must end the run as a loss, not hang it.
            // Open loop: waiting for the next message's time is not a stall; the
            // wait for what comes back counts from that time.
            () = &mut stall => match next.map(|at| at + stall_after) {
                Some(until) if until > Instant::now() => {
                    stall.as_mut().reset(until.into());
                    continue;
                }
                _ => {
                    let secs = stall_after.as_secs().saturating_sub(1);
                    eprintln!("baatkaro-load: {name}: nothing arrived for {secs}s");
                    break;
                }
            }
        };
        if n == 0 {
            fail(&format!("{name}: the server closed the connection"));
        }
        tally.add_bytes(n);
        let before = tally.seen().delivered;
        // One clock read per read: every message in it arrived now.
        let arrived = Instant::now();
        let now = arrived.duration_since(epoch).as_micros() as u64;
        if arrived.duration_since(armed_at) >= Duration::from_secs(1) {
            stall.as_mut().reset((arrived + stall_after).into());
            armed_at = arrived;
        }
        // The run's one histogram, locked once per read (nothing else runs on this
        // thread meanwhile): one per member was 1,000 histograms of tens of KiB each
        // at 1 × 1,000, and every delivery recorded into one that was out of cache.
        let mut latencies = shared.latencies.lock().unwrap_or_else(|e| e.into_inner());
        match wire.take(now, &mut tally, &mut latencies) {
            Ok(n) => acked += n,
            Err(why) => fail(&format!("{name}: {why}")),
        }
        // A server that acknowledges what was never sent is broken (and `sent -
        // acked` above must not wrap).
        if acked > sent {
            fail(&format!("{name}: {acked} acknowledgements of {sent} sends"));
        }
        drop(latencies);
        // Once per read, not per delivery: the counter is shared.
        shared.progress.fetch_add(tally.seen().delivered - before, Ordering::Relaxed);
    }
    tally.finish().unwrap_or_else(|why| fail(&format!("{name}: {why}")))
}

/// Shows deliveries so far, once a second, on one line of standard error.
pub async fn show_progress(delivered: Arc<AtomicU64>, done: Arc<AtomicBool>, expected: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::check::Tally;
    use crate::load::pacer::pace;
    use crate::load::run::{Options, drive};
    use bytes::{Buf, BufMut};
    use std::sync::atomic::AtomicUsize;

    /// A target that echoes: each message (its number and stamp) comes back as
    /// the member's own delivery and acknowledgement. Counts messages put on the
    /// wire before the time they carry.
    struct Echo {
        buf: BytesMut,
        epoch: Instant,
        early: Arc<AtomicUsize>,
    }

    impl Wire for Echo {
        fn buffer(&mut self) -> &mut BytesMut {
            &mut self.buf
        }

        fn send(&mut self, k: usize, micros: u64, out: &mut BytesMut) {
            if Instant::now() < self.epoch + Duration::from_micros(micros) {
                self.early.fetch_add(1, Ordering::Relaxed);
            }
            out.put_u64(k as u64);
            out.put_u64(micros);
        }

        fn take(
            &mut self,
            _: u64,
            tally: &mut Tally,
            _: &mut Histogram<u64>,
        ) -> Result<usize, String> {
            let mut n = 0;
            while self.buf.len() >= 16 {
                self.buf.advance(16);
                tally.delivered(Some(0));
                n += 1;
            }
            Ok(n)
        }
    }

    /// A loopback server echoing every connection; its address.
    async fn echo_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn member(
        addr: std::net::SocketAddr,
        i: usize,
        epoch: Instant,
        messages: usize,
    ) -> (Member<Echo>, Arc<AtomicUsize>) {
        let early = Arc::new(AtomicUsize::new(0));
        let member = Member {
            name: format!("m{i}"),
            stream: TcpStream::connect(addr).await.unwrap(),
            wire: Echo { buf: BytesMut::new(), epoch, early: early.clone() },
            tally: Tally::new(1, 0..1, Some(0), messages),
        };
        (member, early)
    }

    fn shared() -> Shared {
        let hist = || Arc::new(Mutex::new(Histogram::new(3).unwrap()));
        Shared { progress: Arc::new(AtomicU64::new(0)), latencies: hist(), lateness: hist() }
    }

    /// An open-loop member whose messages are further apart than the stall time
    /// waits for its next time, however long: the wait for what comes back counts
    /// from there. It used to stop at the stall time and count its own unsent
    /// messages as lost (at `--rate R` with members / R over 20 s, members
    /// staggered past 20 s stopped before their first message).
    #[test]
    fn an_open_loop_member_waits_for_its_next_time_longer_than_the_stall_time() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let seen = rt.block_on(async {
            let addr = echo_server().await;
            let epoch = Instant::now();
            let (m, early) = member(addr, 0, epoch, 2).await;
            let stall = Duration::from_millis(300);
            // The second message is due three stall times after the first.
            let schedule = Schedule { first: Instant::now(), period: 3 * stall };
            let wake = Arc::new(Notify::new());
            let pacer = tokio::spawn(pace(vec![schedule], 2, vec![wake.clone()]));
            let plan = Plan { messages: 2, window: 1, epoch, stall };
            let seen = run_member(m, plan, Some(schedule), Some(wake), shared()).await;
            pacer.abort();
            assert_eq!(early.load(Ordering::Relaxed), 0);
            seen
        });
        assert_eq!((seen.delivered, seen.lost), (2, 0), "{seen:?}");
    }

    /// Over loopback, a paced run sends every message, none before its time, and
    /// records how late each went (and saturation records none).
    #[test]
    fn open_loop_messages_go_at_or_after_their_times_and_each_lateness_is_recorded() {
        const MEMBERS: usize = 4;
        const MESSAGES: usize = 100;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for rate in [Some(20_000), None] {
            let (outcome, early) = rt.block_on(async {
                let addr = echo_server().await;
                let epoch = Instant::now();
                let (mut members, mut early) = (Vec::new(), Vec::new());
                for i in 0..MEMBERS {
                    let (m, e) = member(addr, i, epoch, MESSAGES).await;
                    members.push(m);
                    early.push(e);
                }
                let opts = Options { messages: MESSAGES, rate, ..Options::default() };
                let outcome = drive(members, &opts, epoch, None).await;
                (outcome, early.iter().map(|e| e.load(Ordering::Relaxed)).sum::<usize>())
            });
            let lost: u64 = outcome.seen.iter().map(|s| s.lost).sum();
            assert_eq!(lost, 0, "{rate:?}");
            let late = if rate.is_some() { (MEMBERS * MESSAGES) as u64 } else { 0 };
            assert_eq!(outcome.lateness.len(), late, "{rate:?}");
            if rate.is_some() {
                assert_eq!(early, 0, "messages written before their time");
            }
        }
    }
}
