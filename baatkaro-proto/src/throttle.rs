//! Login throttling per account (SPEC.md 11.5): growing delays after failed
//! passwords, so that guessing one account's password from many addresses is slowed,
//! without locking its owner out.
//!
//! Every account has a backoff shared by the addresses that never logged in to it,
//! and one of its own for each address that did (its newest [`KNOWN_ADDRESSES`]).
//! A password attempt is judged by the backoff of its address: once that backoff has
//! counted [`FREE_FAILURES`] failures in a row, each further attempt waits
//! [`delay`] after the last failure, doubling from [`FIRST_DELAY`] to at most
//! [`MAX_DELAY`]; an attempt that comes too early is refused with the time left, and
//! neither checked nor counted. A success clears the backoff it was judged by and
//! makes its address known. Token logins are never judged here: a valid token is
//! never slowed by others' failures.
//!
//! Pure data and rules, as the rest of this crate: the server keeps one
//! [`AccountGuard`] per account and asks it.

use crate::types::{Address, Millis};

/// Failures a backoff takes before it slows attempts.
pub const FREE_FAILURES: u32 = 5;

/// The wait after the first failure past the free ones.
pub const FIRST_DELAY: Millis = 1_000;

/// The longest wait between two attempts judged by one backoff.
pub const MAX_DELAY: Millis = 15 * 60 * 1_000;

/// A backoff with no failure for this long starts over.
pub const FORGET_AFTER: Millis = 24 * 3_600 * 1_000;

/// Addresses an account remembers as having logged in to it: the newest this many.
pub const KNOWN_ADDRESSES: usize = 16;

/// A known address's last successful login is written down again when it is this
/// old, so that a restart keeps the newest addresses.
pub const KNOWN_RECORDED_EVERY: Millis = 3_600 * 1_000;

/// The wait after `failures` failures in a row: none before [`FREE_FAILURES`], then
/// [`FIRST_DELAY`], doubling with each further one, up to [`MAX_DELAY`].
pub fn delay(failures: u32) -> Millis {
    match failures.checked_sub(FREE_FAILURES) {
        None => 0,
        Some(past) => FIRST_DELAY.checked_shl(past).unwrap_or(MAX_DELAY).min(MAX_DELAY),
    }
}

/// Failures in a row, and when the last one was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    last: Millis,
}

impl Backoff {
    /// Whether an attempt may be checked at `now`, or the milliseconds to wait.
    pub fn check(&self, now: Millis) -> Result<(), Millis> {
        if self.is_stale(now) {
            return Ok(());
        }
        let ready = self.last.saturating_add(delay(self.failures));
        if now >= ready { Ok(()) } else { Err(ready - now) }
    }

    /// An attempt it judged failed at `now`.
    pub fn failed(&mut self, now: Millis) {
        if self.is_stale(now) {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.last = self.last.max(now);
    }

    /// Whether it has counted nothing for [`FORGET_AFTER`]: as good as new.
    pub fn is_stale(&self, now: Millis) -> bool {
        self.failures == 0 || now.saturating_sub(self.last) >= FORGET_AFTER
    }
}

/// An address that logged in to the account, with its own backoff.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    address: Address,
    /// Its last successful login.
    since: Millis,
    /// When that was last written down.
    recorded: Millis,
    backoff: Backoff,
}

/// One account's login throttle: the strangers' backoff and the known addresses'.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountGuard {
    strangers: Backoff,
    known: Vec<Known>,
}

impl AccountGuard {
    /// A guard that knows these addresses (with their last successful logins), as
    /// the store kept them.
    pub fn with_known(known: impl IntoIterator<Item = (Address, Millis)>) -> Self {
        let mut guard = AccountGuard::default();
        for (address, since) in known {
            guard.known.push(Known {
                address,
                since,
                recorded: since,
                backoff: Backoff::default(),
            });
        }
        guard.known.sort_by_key(|k| std::cmp::Reverse(k.since));
        guard.known.truncate(KNOWN_ADDRESSES);
        guard
    }

    fn backoff(&self, address: Address) -> &Backoff {
        self.known.iter().find(|k| k.address == address).map_or(&self.strangers, |k| &k.backoff)
    }

    fn backoff_mut(&mut self, address: Address) -> &mut Backoff {
        match self.known.iter_mut().find(|k| k.address == address) {
            Some(k) => &mut k.backoff,
            None => &mut self.strangers,
        }
    }

    /// Whether `address` logged in to the account before.
    pub fn knows(&self, address: Address) -> bool {
        self.known.iter().any(|k| k.address == address)
    }

    /// Whether a password attempt from `address` may be checked at `now`, or the
    /// milliseconds until it may: judged by the address's own backoff if it is
    /// known, else by the strangers'.
    pub fn check(&self, address: Address, now: Millis) -> Result<(), Millis> {
        self.backoff(address).check(now)
    }

    /// A password attempt from `address` failed at `now`.
    pub fn failed(&mut self, address: Address, now: Millis) {
        self.backoff_mut(address).failed(now);
    }

    /// A login from `address` succeeded at `now` (a password or a token): its backoff
    /// is cleared and the address is known, the least recently successful of
    /// [`KNOWN_ADDRESSES`] making room. Returns whether to write it down (a new
    /// address, or [`KNOWN_RECORDED_EVERY`] since it last was) and the address it
    /// pushed out, if any.
    pub fn succeeded(&mut self, address: Address, now: Millis) -> (bool, Option<Address>) {
        if let Some(k) = self.known.iter_mut().find(|k| k.address == address) {
            k.backoff = Backoff::default();
            k.since = k.since.max(now);
            let record = now.saturating_sub(k.recorded) >= KNOWN_RECORDED_EVERY;
            if record {
                k.recorded = now;
            }
            return (record, None);
        }
        // A stranger that knew the password: what strangers failed is no sign of
        // an attack on the owner any more than before; the owner's address is now
        // known, with a clean backoff of its own.
        let mut pushed = None;
        if self.known.len() >= KNOWN_ADDRESSES
            && let Some(oldest) = self.known.iter().enumerate().min_by_key(|(_, k)| k.since)
        {
            let at = oldest.0;
            pushed = Some(self.known.swap_remove(at).address);
        }
        self.known.push(Known { address, since: now, recorded: now, backoff: Backoff::default() });
        (true, pushed)
    }

    /// Whether the guard holds nothing worth keeping at `now` (no known address, and
    /// the strangers' backoff is as good as new): a server may forget it.
    pub fn is_idle(&self, now: Millis) -> bool {
        self.known.is_empty() && self.strangers.is_stale(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Address {
        s.parse().unwrap()
    }

    #[test]
    fn delays_grow_after_the_free_failures_and_are_capped() {
        assert_eq!((0..FREE_FAILURES).map(delay).collect::<Vec<_>>(), [0, 0, 0, 0, 0]);
        assert_eq!(delay(FREE_FAILURES), FIRST_DELAY);
        assert_eq!(delay(FREE_FAILURES + 1), 2_000);
        assert_eq!(delay(FREE_FAILURES + 3), 8_000);
        assert_eq!(delay(FREE_FAILURES + 20), MAX_DELAY);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn a_backoff_refuses_until_its_delay_passed_and_forgets_in_a_day() {
        let mut b = Backoff::default();
        for t in 0..FREE_FAILURES as u64 {
            assert_eq!(b.check(t), Ok(()));
            b.failed(t);
        }
        // Five failures, the last at 4: the sixth attempt waits a second.
        assert_eq!(b.check(5), Err(999));
        assert_eq!(b.check(1_004), Ok(()));
        b.failed(1_004);
        assert_eq!(b.check(1_005), Err(1_999));
        assert_eq!(b.check(1_004 + FORGET_AFTER), Ok(()));
        b.failed(1_004 + FORGET_AFTER);
        assert_eq!(b.check(1_004 + FORGET_AFTER), Ok(()), "started over at one failure");
    }

    /// Strangers' failures slow strangers only: an address that logged in before is
    /// judged by its own backoff, and a token login (never judged here) nothing.
    #[test]
    fn strangers_failures_do_not_slow_a_known_address() {
        let (home, far, other) = (addr("192.0.2.1"), addr("198.51.100.7"), addr("203.0.113.9"));
        let mut g = AccountGuard::default();
        assert_eq!(g.succeeded(home, 0), (true, None));
        for t in 1..=20 {
            if g.check(far, t).is_ok() {
                g.failed(far, t);
            }
        }
        assert!(g.check(far, 30).is_err(), "strangers are slowed");
        assert!(g.check(other, 30).is_err(), "every stranger");
        assert_eq!(g.check(home, 30), Ok(()), "the owner's address is not");
        // The owner's own failures slow the owner's address only.
        for t in 31..31 + u64::from(FREE_FAILURES) {
            g.failed(home, t);
        }
        assert!(g.check(home, 36).is_err());
        assert_eq!(g.succeeded(home, 500), (false, None));
        assert_eq!(g.check(home, 500), Ok(()), "a success clears it");
        assert!(g.check(far, 500).is_err(), "and not the strangers'");
    }

    #[test]
    fn an_account_knows_its_newest_addresses() {
        let mut g = AccountGuard::with_known([(addr("10.0.0.1"), 5), (addr("10.0.0.2"), 9)]);
        assert!(g.knows(addr("10.0.0.1")));
        for i in 0..KNOWN_ADDRESSES as u64 - 2 {
            let (record, pushed) = g.succeeded(addr(&format!("10.1.0.{i}")), 100 + i);
            assert!(record && pushed.is_none());
        }
        let (_, pushed) = g.succeeded(addr("10.2.0.1"), 1_000);
        assert_eq!(pushed, Some(addr("10.0.0.1")), "the least recently successful goes");
        assert!(g.knows(addr("10.0.0.2")) && !g.knows(addr("10.0.0.1")));
        // A known address is written down again only an hour after it last was.
        assert_eq!(g.succeeded(addr("10.0.0.2"), 1_000), (false, None));
        assert_eq!(g.succeeded(addr("10.0.0.2"), 9 + KNOWN_RECORDED_EVERY), (true, None));
        assert!(!g.is_idle(0));
        assert!(AccountGuard::default().is_idle(0));
    }
}
