//! Commits paced when the server is saturated.
//!
//! The hub hands its open batch to the store as soon as the batch before it has
//! committed (group commit), so at light load a message waits for one sync and no
//! more. Under a saturating load that makes a commit every sync's time (about
//! 1.2 ms on the benchmark machine), and each commit has a cost that does not depend
//! on its size: the log's write and sync and the device's requests for them, the
//! store thread's hand-offs and waits (about ten context switches a commit), the
//! hub's work for each batch. Halving the commits at 10 groups × 10 (811 → 425 a
//! second) took about 9 % off the server's CPU for the same run (BENCHMARKS.md,
//! "Commits paced at saturation").
//!
//! So once a batch of at least [`PACE_FROM`] writes has gone to the store, the next
//! one waits until a cycle after it went ([`MIN_CYCLE`] unless the operator set
//! `commit_cycle_us`; 0 never paces), gathering what arrives meanwhile,
//! even if the first has committed sooner. Holding it is worth it only while the
//! runtime has other work to do, so the runtime must say when it has none: its
//! park hooks, installed by [`RuntimeIdle::install`] and handed to the server
//! ([`crate::server::Server::paced`]; the server binary does both; a server
//! without them never paces). A batch held goes at once when the last busy
//! worker is about to go idle: the clients are then waiting for acknowledgements
//! rather than sending (as with a few clients each with a few messages in flight),
//! and waiting would only lower the throughput. (Not when one worker of several
//! goes idle: a server pinned to one core after it started, as the benchmarks'
//! generator does, has a worker for each core of the machine on that one core, and
//! one of them idle says nothing about the core.) A batch that fills up goes at
//! once too ([`baatkaro_hub::Hub::hold_commits`]). So a message, or a history read
//! (reads go with a batch), waits about `MIN_CYCLE` longer at most (up to a
//! millisecond more when the timer, on tokio's millisecond ticks, is what ends the
//! hold), and only while the server has more work than its commits can take one by
//! one. Acknowledgements are never held: a batch's replies and deliveries go as
//! soon as it is durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a runtime's park hooks tell a server: installed on the runtime with
/// [`RuntimeIdle::install`], handed to the server with
/// [`crate::server::Server::paced`].
#[derive(Debug)]
pub struct RuntimeIdle {
    /// Set once a worker has parked: the hooks are on the runtime.
    hooked: AtomicBool,
    /// Workers parked now.
    parked: AtomicUsize,
    /// The runtime's workers (0 until the hub's task says: then any park counts as
    /// the last).
    workers: AtomicUsize,
    /// Set while the hub holds back a batch that could go to the store.
    holding: AtomicBool,
    /// Woken when the last busy worker is about to park while a batch is held.
    idle: Notify,
}

impl RuntimeIdle {
    /// Installs the park hooks on a runtime being built: its workers then say when
    /// they go idle and come back. Give what it returns to the one server that runs
    /// on this runtime ([`crate::server::Server::paced`]). It replaces the builder's
    /// park and unpark hooks; a hook set on the builder after it replaces this one,
    /// and the server then never paces (or, the unpark hook alone replaced, lets
    /// every held batch go at the next park).
    pub fn install(builder: &mut tokio::runtime::Builder) -> Arc<RuntimeIdle> {
        let idle = Arc::new(RuntimeIdle {
            hooked: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
            workers: AtomicUsize::new(0),
            holding: AtomicBool::new(false),
            idle: Notify::new(),
        });
        let (park, unpark) = (idle.clone(), idle.clone());
        builder.on_thread_park(move || park.parked()).on_thread_unpark(move || unpark.unparked());
        idle
    }

    /// A worker is about to go idle: the last busy one lets a held batch go, since
    /// holding it now would only leave the runtime idle. (The hub's task, woken
    /// here, is queued for the runtime, which runs it rather than sleep.)
    ///
    /// Sequentially consistent, so that the last worker to park sees a hold set by
    /// a task that ran on another worker.
    fn parked(&self) {
        if !self.hooked.load(Ordering::Relaxed) {
            self.hooked.store(true, Ordering::Relaxed);
        }
        let parked = self.parked.fetch_add(1, Ordering::SeqCst) + 1;
        if self.holding.load(Ordering::SeqCst) && parked >= self.workers.load(Ordering::SeqCst) {
            self.idle.notify_waiters();
        }
    }

    /// The worker is busy again (tokio pairs every park hook with this one).
    fn unparked(&self) {
        // Saturating, should the count ever miss a park.
        let _ = self.parked.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Whether commits may be paced: a worker has parked, so the hooks are there
    /// (a server given this for a runtime without them never paces).
    pub(crate) fn hooked(&self) -> bool {
        self.hooked.load(Ordering::Relaxed)
    }

    /// Tells the hooks how many workers the runtime has.
    pub(crate) fn set_workers(&self, workers: usize) {
        self.workers.store(workers, Ordering::SeqCst);
    }

    /// Says whether the hub holds a batch back now.
    pub(crate) fn set_holding(&self, holding: bool) {
        self.holding.store(holding, Ordering::SeqCst);
    }

    /// Completes when the last busy worker is about to park (while
    /// [`RuntimeIdle::set_holding`] says a batch is held).
    pub(crate) async fn idle(&self) {
        self.idle.notified().await;
    }
}

/// Writes in a batch from which the next batch is paced (a SEND is two: its event
/// and its key). Well above what a light load gathers during one sync (1,000
/// messages a second: two or four writes; the open loop at 2.5 M deliveries a
/// second into a group of 100: about sixty, and 256 only behind a sync that took
/// 5 ms), well below what a saturating load does (a thousand to two thousand).
pub const PACE_FROM: usize = 256;

/// The least time from one paced batch to the store to the next, by default
/// (`commit_cycle_us`). Measured at 10 groups × 10 on the benchmark machine against
/// cycles of 0, 1.5 and 4 ms (BENCHMARKS.md, "Commits paced at saturation").
pub const MIN_CYCLE: Duration = Duration::from_micros(2_500);

/// When the open batch may go to the store.
#[derive(Debug)]
pub(crate) struct Pace {
    /// Not before this, if the last batch was large.
    until: Option<Instant>,
    /// The least time from a large batch to the next; zero never holds one.
    cycle: Duration,
}

impl Pace {
    /// Pacing in cycles of `cycle` ([`MIN_CYCLE`] by default); a zero cycle never
    /// holds a batch.
    pub(crate) fn new(cycle: Duration) -> Pace {
        Pace { until: None, cycle }
    }

    /// A batch of `writes` went to the store at `now`.
    pub(crate) fn sent(&mut self, writes: usize, now: Instant) {
        self.until = (writes >= PACE_FROM && !self.cycle.is_zero()).then(|| now + self.cycle);
    }

    /// Whether the open batch waits at `now`. Once its time has come the pace
    /// forgets it, so that the clock is read only within a paced cycle.
    pub(crate) fn holds(&mut self, now: impl FnOnce() -> Instant) -> bool {
        let Some(until) = self.until else { return false };
        if now() < until {
            return true;
        }
        self.until = None;
        false
    }

    /// When a held batch may go: the time for the shell's timer.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// Lets the batch held go now (the server would be idle otherwise).
    pub(crate) fn release(&mut self) {
        self.until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime whose last busy worker parks, with the hooks installed, wakes what
    /// waits on [`RuntimeIdle::idle`] while a batch is held: the shell's way to let
    /// a held batch go rather than leave the runtime idle (fails if the hook does
    /// not notify); and a worker that is not the last busy one does not (fails if
    /// any park notifies). Each try sets the flag again, in case the worker parked
    /// before it was set.
    #[test]
    fn the_last_busy_worker_about_to_park_wakes_the_hub_holding_a_batch() {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        let hooks = RuntimeIdle::install(builder.worker_threads(1));
        // (The workers start, and may park, as the runtime is built.)
        assert!(!hooks.hooked(), "not before a worker parked");
        let rt = builder.enable_all().build().unwrap();
        rt.block_on(async {
            hooks.set_workers(1);
            let mut woken = false;
            for _ in 0..20 {
                let h = hooks.clone();
                let waiting = tokio::spawn(async move { h.idle().await });
                hooks.set_holding(true);
                // Nothing else to run: the worker parks, and the hook wakes it.
                if tokio::time::timeout(Duration::from_millis(200), waiting).await.is_ok() {
                    woken = true;
                    break;
                }
            }
            assert!(woken, "the only worker parked and the hub holding was never woken");
            assert!(hooks.hooked(), "the hooks are seen to be there");

            // Said to have two workers, the one parking is not the last.
            hooks.set_workers(2);
            let h = hooks.clone();
            let waiting = tokio::spawn(async move { h.idle().await });
            hooks.set_holding(true);
            let metrics = tokio::runtime::Handle::current().metrics();
            let parks = metrics.worker_park_count(0);
            // Each task spawned from this thread unparks the worker, which parks
            // again (calling the hook) once the task has run.
            for _ in 0..1_000 {
                if metrics.worker_park_count(0) >= parks + 3 {
                    break;
                }
                tokio::spawn(async {}).await.unwrap();
            }
            assert!(metrics.worker_park_count(0) >= parks + 3, "the worker never parked");
            assert!(!waiting.is_finished(), "woken by a park that was not the last worker's");
            waiting.abort();
        });
    }

    #[test]
    fn only_a_large_batch_paces_the_next_and_only_for_the_cycle() {
        let t0 = Instant::now();
        let mut pace = Pace::new(MIN_CYCLE);
        let read = |at: Instant| move || at;
        // Nothing sent yet, or a small batch: never held, and the clock is not read.
        assert!(!pace.holds(|| unreachable!("the clock is read with nothing to pace")));
        pace.sent(PACE_FROM - 1, t0);
        assert!(!pace.holds(|| unreachable!("the clock is read after a small batch")));
        assert_eq!(pace.until(), None);
        // A large one: the next waits out the cycle from when it went, then goes.
        pace.sent(PACE_FROM, t0);
        assert_eq!(pace.until(), Some(t0 + MIN_CYCLE));
        assert!(pace.holds(read(t0)));
        assert!(pace.holds(read(t0 + MIN_CYCLE - Duration::from_micros(1))));
        assert!(!pace.holds(read(t0 + MIN_CYCLE)));
        assert_eq!(pace.until(), None, "forgotten once its time came");
        assert!(!pace.holds(|| unreachable!("the clock is read after the hold ended")));
        // A small batch after a large one ends the pacing.
        pace.sent(10_000, t0);
        pace.sent(1, t0);
        assert!(!pace.holds(read(t0)));
    }

    /// The operator's cycle is the one kept, and a zero cycle (`commit_cycle_us =
    /// 0`) never holds a batch, however large.
    #[test]
    fn the_cycle_is_the_operators_and_zero_never_paces() {
        let t0 = Instant::now();
        let cycle = Duration::from_micros(700);
        let mut pace = Pace::new(cycle);
        pace.sent(PACE_FROM, t0);
        assert_eq!(pace.until(), Some(t0 + cycle));
        assert!(pace.holds(|| t0 + cycle - Duration::from_micros(1)));
        assert!(!pace.holds(|| t0 + cycle));
        let mut never = Pace::new(Duration::ZERO);
        never.sent(1_000_000, t0);
        assert_eq!(never.until(), None);
        assert!(!never.holds(|| unreachable!("the clock is read with pacing off")));
    }
}
