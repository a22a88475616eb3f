//! The send budget: a token bucket of `burst` sends that refills at `rate` per second.

use crate::types::Millis;

/// One user's send budget. Starts full.
///
/// Tokens are counted in thousandths so that a refill of `rate` per second is exact
/// per millisecond for every `rate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateBudget {
    milli_tokens: u64,
    last: Millis,
}

impl RateBudget {
    /// A full budget of `burst` sends at `now`.
    pub fn new(burst: u64, now: Millis) -> Self {
        RateBudget { milli_tokens: burst.saturating_mul(1000), last: now }
    }

    /// Takes one send from the budget at `now`, or says in how many milliseconds the
    /// next one is allowed (the `retry=` of `RATE_LIMITED`). `rate` is sends per
    /// second (at least 1 is assumed), `burst` the bucket's size.
    pub fn try_take(&mut self, now: Millis, rate: u64, burst: u64) -> Result<(), u64> {
        self.try_take_per(now, rate, 1000, burst)
    }

    /// As [`RateBudget::try_take`], for a rate of `count` per `period` milliseconds
    /// (logins per minute, say).
    pub fn try_take_per(
        &mut self,
        now: Millis,
        count: u64,
        period: Millis,
        burst: u64,
    ) -> Result<(), u64> {
        self.check_per(now, count, period, burst)?;
        self.milli_tokens -= 1000;
        Ok(())
    }

    /// Whether one token is there at `now` (refilling first), without taking it; if
    /// not, in how many milliseconds it will be. For a caller that learns only later
    /// whether it has something to spend the token on ([`RateBudget::take`]).
    pub fn check(&mut self, now: Millis, rate: u64, burst: u64) -> Result<(), u64> {
        self.check_per(now, rate, 1000, burst)
    }

    /// Takes the token that [`RateBudget::check`] found (nothing if there is none).
    pub fn take(&mut self) {
        self.milli_tokens = self.milli_tokens.saturating_sub(1000);
    }

    fn check_per(
        &mut self,
        now: Millis,
        count: u64,
        period: Millis,
        burst: u64,
    ) -> Result<(), u64> {
        let (count, period) = (u128::from(count.max(1)), u128::from(period.max(1)));
        let elapsed = u128::from(now.saturating_sub(self.last));
        self.last = self.last.max(now);
        // Most checks at load come within the millisecond of the last: no refill,
        // and no 128-bit division to learn it.
        let refill = if elapsed == 0 { 0 } else { elapsed * count * 1000 / period };
        let full = u128::from(burst) * 1000;
        let tokens = (u128::from(self.milli_tokens) + refill).min(full);
        // tokens <= burst * 1000, which fits in u64 as `new` made it.
        self.milli_tokens = u64::try_from(tokens).unwrap_or(u64::MAX);
        if self.milli_tokens >= 1000 {
            return Ok(());
        }
        let missing = 1000 - u128::from(self.milli_tokens);
        let wait = (missing * period).div_ceil(count * 1000);
        Err(u64::try_from(wait).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let mut b = RateBudget::new(3, 0);
        assert!(b.try_take(0, 4, 3).is_ok());
        assert!(b.try_take(0, 4, 3).is_ok());
        assert!(b.try_take(0, 4, 3).is_ok());
        // 4 per second: the next token arrives in 250 ms.
        assert_eq!(b.try_take(0, 4, 3), Err(250));
        assert_eq!(b.try_take(100, 4, 3), Err(150));
        assert!(b.try_take(250, 4, 3).is_ok());
        // A long pause refills no more than the burst.
        for _ in 0..3 {
            assert!(b.try_take(1_000_000, 4, 3).is_ok());
        }
        assert!(b.try_take(1_000_000, 4, 3).is_err());
    }

    #[test]
    fn a_rate_per_minute() {
        let mut b = RateBudget::new(2, 0);
        assert!(b.try_take_per(0, 6, 60_000, 2).is_ok());
        assert!(b.try_take_per(0, 6, 60_000, 2).is_ok());
        // Six a minute: one every ten seconds.
        assert_eq!(b.try_take_per(0, 6, 60_000, 2), Err(10_000));
        assert_eq!(b.try_take_per(4_000, 6, 60_000, 2), Err(6_000));
        assert!(b.try_take_per(10_000, 6, 60_000, 2).is_ok());
    }

    #[test]
    fn a_checked_token_is_spent_only_when_taken() {
        let mut b = RateBudget::new(1, 0);
        assert!(b.check(0, 10, 1).is_ok());
        assert!(b.check(0, 10, 1).is_ok(), "checking takes nothing");
        b.take();
        assert_eq!(b.check(0, 10, 1), Err(100));
        assert_eq!(b.check(40, 10, 1), Err(60));
        assert!(b.check(100, 10, 1).is_ok());
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut b = RateBudget::new(1, 1000);
        assert!(b.try_take(1000, 1, 1).is_ok());
        assert!(b.try_take(10, 1, 1).is_err());
        assert!(b.try_take(1999, 1, 1).is_err());
        assert!(b.try_take(2000, 1, 1).is_ok());
    }
}
