//! The open loop's clock: a task that wakes each member when its next message is
//! due, to within tens of microseconds, from a kernel timer the runtime watches.
//!
//! A member that slept on tokio's timer woke on the next whole millisecond: every
//! message went up to a millisecond after its time, half a millisecond at the
//! median, and since a message's latency counts from its time (so that a target
//! that stalls cannot hide it), that delay was in every latency measured, for
//! every target: as much as Redis's whole median at light load. A `timerfd` is
//! armed for each next time instead, with the kernel's high-resolution timers, and
//! waited on like a socket: no thread of its own to switch to (a pacing thread cost
//! the generator a fifth of its core at 25,000 messages a second), and members are
//! woken from the runtime's own thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, timerfd_create, timerfd_settime,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use super::member::Schedule;

/// Wakes member `i` (through `wakes[i]`) at each of its `messages` times on
/// `schedules[i]`; runs until the last one. For a spawned task, aborted if the
/// run ends first.
pub async fn pace(schedules: Vec<Schedule>, messages: usize, wakes: Vec<Arc<Notify>>) {
    if let Err(e) = pace_with(&schedules, messages, |i| wakes[i].notify_one()).await {
        super::process::fail(&format!("the open loop's timer: {e}"));
    }
}

/// Calls `wake(i)` at each of the `messages` times of member `i` on
/// `schedules[i]`, never before it. The members' schedules are staggered within
/// one period, so going through every member's first message, then every
/// member's second, and so on, goes through the times in order; a time already
/// past when its turn comes (the runtime was busy) is woken at once.
async fn pace_with(
    schedules: &[Schedule],
    messages: usize,
    mut wake: impl FnMut(usize),
) -> std::io::Result<()> {
    let timer =
        timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)?;
    // Deprecated for types whose descriptor could change or close while registered
    // (the safe replacement is `unsafe`, which the workspace forbids); an owned
    // descriptor, moved in and never given out, is neither.
    #[allow(deprecated)]
    let timer = AsyncFd::new(timer)?;
    for k in 0..messages {
        for (i, schedule) in schedules.iter().enumerate() {
            let at = schedule.at(k);
            loop {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                let once = Itimerspec {
                    it_interval: Duration::ZERO.try_into().unwrap_or_default(),
                    it_value: left.try_into().unwrap_or_default(),
                };
                timerfd_settime(timer.get_ref(), TimerfdTimerFlags::empty(), &once)?;
                let mut ready = timer.readable().await?;
                // Takes the expiry count, so that the timer is not readable again
                // until it next expires.
                let mut count = [0u8; 8];
                match rustix::io::read(timer.get_ref(), &mut count) {
                    Ok(_) | Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                    Err(e) => return Err(e.into()),
                }
            }
            wake(i);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut woken = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Bounded: the last time is 40 ms away.
        rt.block_on(pace_with(&schedules, MESSAGES, |i| woken.push((i, Instant::now())))).unwrap();
        assert_eq!(woken.len(), 3 * MESSAGES);
        for (i, schedule) in schedules.iter().enumerate() {
            let times: Vec<_> = woken.iter().filter(|(m, _)| *m == i).map(|(_, t)| *t).collect();
            assert_eq!(times.len(), MESSAGES);
            for (k, t) in times.iter().enumerate() {
                assert!(*t >= schedule.at(k), "member {i} woken before message {k}'s time");
            }
        }
    }
}
