//! The run, the same for every target: the members set up by the target send and
//! check concurrently on one thread, while the generator's own CPU and the server's
//! CPU and memory are measured.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Notify;

use super::check::Seen;
use super::member::{Member, Plan, STALL, Schedule, Shared, Wire, run_member, show_progress};
use super::pacer::pace;
use super::process::{fail, own_cpu, quarters, sample_rss, usage_of};

/// The run's shape, from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// How many groups (channels).
    pub groups: usize,
    /// Members per group.
    pub members: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages each member sends.
    pub messages: usize,
    /// Saturation: sends in flight per member.
    pub window: usize,
    /// Open loop: messages per second in all.
    pub rate: Option<usize>,
    /// Pairs exchanging private messages instead of group traffic.
    pub private: bool,
    /// Report as one line of JSON.
    pub json: bool,
    /// Pin a server the generator starts to core 0.
    pub pin: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            groups: 1,
            members: 20,
            size: 128,
            messages: 1000,
            window: 64,
            rate: None,
            private: false,
            json: false,
            pin: false,
        }
    }
}

/// What a run measured.
pub struct Outcome {
    /// What each member saw.
    pub seen: Vec<Seen>,
    /// Latencies of deliveries of other members' messages, in µs.
    pub latencies: Histogram<u64>,
    /// Open loop: how late the generator wrote each message against its schedule,
    /// in µs (part of every latency above).
    pub lateness: Histogram<u64>,
    /// From the first send to the last member's end.
    pub elapsed: Duration,
    /// The generator's CPU over the run, in per cent of one core.
    pub generator_cpu: Option<f64>,
    /// The server's CPU seconds over the run and its peak RSS, if it is known.
    pub server: Option<(f64, u64)>,
    /// The server's RSS at a quarter, half, three quarters and the end of the run.
    pub rss_quarters: Option<[u64; 4]>,
}

/// Runs `members` (set up by a target, against a server whose process is
/// `server_pid` if known) to the end; message time stamps count from `epoch`.
pub async fn drive<W: Wire + Send + 'static>(
    members: Vec<Member<W>>,
    opts: &Options,
    epoch: Instant,
    server_pid: Option<u32>,
) -> Outcome {
    let start = Instant::now();
    let cpu_at_start = own_cpu();
    // The server's CPU counts from here: setting up (accounts, joins,
    // subscriptions) is not part of the figure.
    let server_cpu_at_start = server_pid.and_then(usage_of).map(|(c, _)| c);
    let everyone = members.len();
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let expected = members.iter().map(|m| m.tally.expected_deliveries()).sum();
        tokio::spawn(show_progress(progress.clone(), done.clone(), expected));
    }
    let hist = Histogram::new(3).unwrap_or_else(|e| fail(&e.to_string()));
    let lateness = Histogram::new(3).unwrap_or_else(|e| fail(&e.to_string()));
    let shared = Shared {
        progress,
        latencies: Arc::new(Mutex::new(hist)),
        lateness: Arc::new(Mutex::new(lateness)),
    };
    let rss_samples = server_pid.map(|pid| tokio::spawn(sample_rss(pid, done.clone())));
    let plan = Plan { messages: opts.messages, window: opts.window, epoch, stall: STALL };
    // Open loop: the aggregate rate, members evenly staggered, woken by the pacer.
    let schedules: Option<Vec<Schedule>> = opts.rate.map(|rate| {
        let period = Duration::from_secs_f64(everyone as f64 / rate as f64);
        (0..everyone)
            .map(|i| Schedule { first: start + period.mul_f64(i as f64 / everyone as f64), period })
            .collect()
    });
    let wakes: Vec<Arc<Notify>> = (0..everyone).map(|_| Arc::new(Notify::new())).collect();
    let pacer = schedules.clone().map(|s| tokio::spawn(pace(s, opts.messages, wakes.clone())));
    let tasks: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let schedule = schedules.as_ref().map(|s| s[i]);
            let pace = pacer.as_ref().map(|_| wakes[i].clone());
            tokio::spawn(run_member(m, plan, schedule, pace, shared.clone()))
        })
        .collect();
    let mut seen = Vec::with_capacity(tasks.len());
    for t in tasks {
        seen.push(t.await.unwrap_or_else(|e| fail(&e.to_string())));
    }
    done.store(true, Ordering::Relaxed);
    if let Some(pacer) = pacer {
        pacer.abort();
    }
    let elapsed = start.elapsed();
    let server = server_pid
        .and_then(usage_of)
        .map(|(cpu, rss)| (cpu - server_cpu_at_start.unwrap_or(0.0), rss));
    let rss_over_run = match rss_samples {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let cpu = own_cpu().zip(cpu_at_start).map(|(end, start)| end - start);
    let take = |h: &Mutex<Histogram<u64>>| {
        std::mem::replace(
            &mut *h.lock().unwrap_or_else(|e| e.into_inner()),
            Histogram::new(1).unwrap_or_else(|e| fail(&e.to_string())),
        )
    };
    let (latencies, lateness) = (take(&shared.latencies), take(&shared.lateness));
    Outcome {
        seen,
        latencies,
        lateness,
        elapsed,
        generator_cpu: cpu.map(|c| 100.0 * c / elapsed.as_secs_f64()),
        server,
        rss_quarters: quarters(&rss_over_run),
    }
}
