//! The server a run measures, seen from outside: the process the generator started
//! (and stops, even when the run fails), and its CPU time and memory from /proc.

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

/// The server process this run started, if any, so that [`fail`] can stop it.
static STARTED: AtomicI32 = AtomicI32::new(0);

/// A server this run started, with the temporary directory it keeps its data in.
pub struct Owned {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Owned {
    /// Takes charge of a started server: it is stopped when the run ends, or fails.
    pub fn new(child: Child, dir: tempfile::TempDir) -> Self {
        STARTED.store(i32::try_from(child.id()).unwrap_or(0), Ordering::Relaxed);
        Owned { child, _dir: dir }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it and waits for it to go.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = STARTED.compare_exchange(
            i32::try_from(self.child.id()).unwrap_or(0),
            0,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Says why the run failed, stops the server it started, and exits with 1.
pub fn fail(why: &str) -> ! {
    eprintln!("baatkaro-load: {why}");
    let pid = STARTED.swap(0, Ordering::Relaxed);
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    std::process::exit(1)
}

/// This process's CPU seconds so far.
pub fn own_cpu() -> Option<f64> {
    usage_of(std::process::id()).map(|(cpu, _)| cpu)
}

/// The resident memory of process `pid`, in bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|kb| kb * 1024)
}

/// A `kB` field of /proc/PID/status.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()
}

/// CPU seconds (all threads, user and system) and peak RSS of a process.
pub fn usage_of(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let hwm = status_kib(pid, "VmHWM:")?;
    // Clock ticks are 100 per second on Linux.
    Some((ticks / 100.0, hwm * 1024))
}

/// Samples the server's resident memory every 100 ms until the run is done, so
/// that a report can say whether it stayed flat.
pub async fn sample_rss(pid: u32, done: Arc<AtomicBool>) -> Vec<u64> {
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
pub fn quarters(samples: &[u64]) -> Option<[u64; 4]> {
    let n = samples.len();
    let at = |num: usize| samples.get((n * num / 4).min(n.saturating_sub(1))).copied();
    Some([at(1)?, at(2)?, at(3)?, *samples.last()?])
}
