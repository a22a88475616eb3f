//! The one place the server reads the clock: the proto crate takes time as a
//! parameter, and this is where it comes from.
//!
//! Two clocks: [`now`], the wall clock, for what is stored and shown (an event's
//! time, when a key or an upload expires); and [`monotonic`], which never jumps, for
//! the connections' timers (idle, login, frame budget), so that a clock step does not
//! close every connection at once.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The moment [`monotonic`] counts from.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds on a clock that never goes back or jumps, since the first call in
/// this process (plus one, so that it is never 0).
pub fn monotonic() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// The tokio instant of a [`monotonic`] time.
pub fn instant_of_monotonic(at: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(epoch() + Duration::from_millis(at.saturating_sub(1)))
}

/// Milliseconds since the Unix epoch (0 if the clock is set before 1970).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_never_goes_back_and_maps_to_tokio_instants() {
        let a = monotonic();
        let b = monotonic();
        assert!(a >= 1 && b >= a);
        let at = instant_of_monotonic(b + 1_000);
        let ahead = at.saturating_duration_since(tokio::time::Instant::now());
        assert!(ahead <= Duration::from_millis(1_000) && ahead >= Duration::from_millis(900));
    }
}
