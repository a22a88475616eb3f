//! The open loop's clock: one thread that wakes each member when its next message
//! is due, to within tens of microseconds.
//!
//! A member that slept on tokio's timer woke on the next whole millisecond: every
//! message went up to a millisecond after its time, half a millisecond at the
//! median, and since a message's latency counts from its time (so that a target
//! that stalls cannot hide it), that delay was in every latency measured, for
//! every target: as much as Redis's whole median at light load. A thread sleeping
//! with the kernel's high-resolution timers (and no timer slack) is not bound to
//! the millisecond.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::member::Schedule;

/// The longest the pacer sleeps at once, so that it sees a stop soon.
const NAP: Duration = Duration::from_millis(50);

/// The pacing thread; stopped and joined when dropped.
pub struct Pacer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Pacer {
    /// Wakes member `i` (through `wakes[i]`) at each of its `messages` times on
    /// `schedules[i]`.
    pub fn start(schedules: Vec<Schedule>, messages: usize, wakes: Vec<Arc<Notify>>) -> Pacer {
        Pacer::with(schedules, messages, move |i| wakes[i].notify_one())
    }

    /// Calls `wake(i)` at each of the `messages` times of member `i` on
    /// `schedules[i]`. The members' schedules are staggered within one period, so
    /// going through every member's first message, then every member's second,
    /// and so on, goes through the times in order.
    fn with(
        schedules: Vec<Schedule>,
        messages: usize,
        wake: impl Fn(usize) + Send + 'static,
    ) -> Pacer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                // The kernel may otherwise let a sleep run 50 µs long to merge wake-ups.
                let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
                for k in 0..messages {
                    for (i, schedule) in schedules.iter().enumerate() {
                        if !sleep_until(schedule.at(k), &stopped) {
                            return;
                        }
                        wake(i);
                    }
                }
            })
            .ok();
        Pacer { stop, thread }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps until `at`, in naps of at most [`NAP`]; false if told to stop meanwhile.
fn sleep_until(at: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(NAP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Each member is woken once for each of its messages, in order, and never
    /// before the message's time.
    #[test]
    fn members_are_woken_for_each_message_and_never_before_its_time() {
        const MESSAGES: usize = 20;
        let start = Instant::now();
        let period = Duration::from_millis(2);
        let schedules: Vec<_> = (0..3)
            .map(|i| Schedule { first: start + period.mul_f64(f64::from(i) / 3.0), period })
            .collect();
        let woken = Arc::new(Mutex::new(Vec::new()));
        let log = woken.clone();
        let mut pacer = Pacer::with(schedules.clone(), MESSAGES, move |i| {
            log.lock().unwrap().push((i, Instant::now()));
        });
        // Bounded: the last time is 40 ms away.
        let _ = pacer.thread.take().map(JoinHandle::join);
        let woken = woken.lock().unwrap();
        assert_eq!(woken.len(), 3 * MESSAGES);
        for (i, schedule) in schedules.iter().enumerate() {
            let times: Vec<_> = woken.iter().filter(|(m, _)| *m == i).map(|(_, t)| *t).collect();
            assert_eq!(times.len(), MESSAGES);
            for (k, t) in times.iter().enumerate() {
                assert!(*t >= schedule.at(k), "member {i} woken before message {k}'s time");
            }
        }
    }

    /// A pacer dropped before its last message stops at once.
    #[test]
    fn a_dropped_pacer_stops() {
        let schedule = Schedule { first: Instant::now(), period: Duration::from_secs(3600) };
        let pacer = Pacer::with(vec![schedule], 10, |_| {});
        let dropped = Instant::now();
        drop(pacer);
        assert!(dropped.elapsed() < Duration::from_secs(60), "waited for the next message");
    }
}
