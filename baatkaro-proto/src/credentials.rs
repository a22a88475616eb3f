//! The rules of an account's credentials (SPEC.md section 4.7): how long an unused
//! session token lives, which token a user lets go of when they hold as many as
//! allowed, how long a device label may be, when a token authenticates, how often
//! its use is written down, and the budget of token logins per address.
//!
//! Each rule is a pure function of facts a server has gathered, as in
//! [`crate::rules`]; [`TokenRules`] holds the limits they enforce.

use crate::error::ErrorCode;
use crate::limits::Limits;
use crate::types::{Address, Millis, TokenId};

/// The longest device label a token may carry, in octets.
pub const LABEL_MAX: usize = 64;

/// A token's last use is written to the store when it moved on by this much (or
/// came from another address): a script that logs in a thousand times a minute
/// costs a write a minute, and a restart loses at most this much of the time.
pub const USE_RECORDED_EVERY: Millis = 60_000;

/// What a server knows of one token it holds, for the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenFacts {
    /// Its number.
    pub id: TokenId,
    /// When it last logged a session in (its making counts as a use).
    pub used: Millis,
}

/// The limits the token rules enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRules {
    /// Most tokens per user (`tokens`).
    max: u64,
    /// Milliseconds a token lives unused.
    idle: Millis,
}

impl TokenRules {
    /// The rules of a server with these limits, whose tokens expire after `idle_secs`
    /// seconds unused.
    pub fn new(limits: &Limits, idle_secs: u64) -> Self {
        TokenRules { max: limits.tokens, idle: idle_secs.saturating_mul(1000) }
    }

    /// When a token last used at `used` stops working, unless it is used before.
    pub fn expires(&self, used: Millis) -> Millis {
        used.saturating_add(self.idle)
    }

    /// Whether a token last used at `used` still works at `now`.
    pub fn is_live(&self, used: Millis, now: Millis) -> bool {
        now < self.expires(used)
    }

    /// TOKEN: the device label must fit [`LABEL_MAX`], and a user who holds `max`
    /// tokens already lets go of the one used least recently (the lowest number among
    /// equals), which is returned. Expired tokens are let go of first.
    pub fn mint(
        &self,
        label_len: usize,
        held: &[TokenFacts],
        now: Millis,
    ) -> Result<Vec<TokenId>, ErrorCode> {
        if label_len > LABEL_MAX {
            return Err(ErrorCode::TextTooLong);
        }
        let mut gone: Vec<TokenId> =
            held.iter().filter(|t| !self.is_live(t.used, now)).map(|t| t.id).collect();
        let mut live: Vec<TokenFacts> =
            held.iter().filter(|t| self.is_live(t.used, now)).copied().collect();
        live.sort_by_key(|t| (t.used, t.id));
        let keep = usize::try_from(self.max.saturating_sub(1)).unwrap_or(usize::MAX);
        let over = live.len().saturating_sub(keep);
        gone.extend(live.iter().take(over).map(|t| t.id));
        Ok(gone)
    }

    /// AUTH: a token authenticates if the user holds one of that number, it has not
    /// expired, and its secret matches (`found` is `(last used, secret matches)`).
    /// Every other case is the same `AUTH_FAILED`, so a refusal says nothing of which
    /// part was wrong.
    pub fn authenticate(
        &self,
        found: Option<(Millis, bool)>,
        now: Millis,
    ) -> Result<(), ErrorCode> {
        match found {
            Some((used, true)) if self.is_live(used, now) => Ok(()),
            _ => Err(ErrorCode::AuthFailed),
        }
    }
}

/// REGISTER and PASSWORD: a new password has at least `min` octets (the `password`
/// limit); a shorter one is refused with `PASSWORD_TOO_SHORT`. Passwords set before
/// a limit was raised still log in.
pub fn new_password(len: usize, min: u64) -> Result<(), ErrorCode> {
    if (len as u64) < min { Err(ErrorCode::PasswordTooShort) } else { Ok(()) }
}

/// Whether a token's use at `now` from `address` is written to the store, given the
/// use the store holds: when it came from another address, or [`USE_RECORDED_EVERY`]
/// after the recorded one.
pub fn record_use(recorded: (Millis, Address), now: Millis, address: Address) -> bool {
    recorded.1 != address || now.saturating_sub(recorded.0) >= USE_RECORDED_EVERY
}

/// The budget of token logins (AUTH) from one address, separate from the password
/// attempts' `logins` per minute: `logins` a second, and up to sixty times `logins`
/// at once (a minute's worth of seconds). A token login costs a SHA-256, not a
/// password hash, and a script of one-shot commands logs in at every command.
/// Returns `(per second, burst)`.
pub fn auth_budget(logins_per_minute: u64) -> (u64, u64) {
    (logins_per_minute.max(1), logins_per_minute.max(1).saturating_mul(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(max: u64) -> TokenRules {
        TokenRules::new(&Limits { tokens: max, ..Limits::default() }, 100)
    }

    fn t(id: TokenId, used: Millis) -> TokenFacts {
        TokenFacts { id, used }
    }

    #[test]
    fn tokens_expire_after_the_idle_time_unused() {
        let r = rules(4);
        assert_eq!(r.expires(1_000), 101_000);
        assert!(r.is_live(1_000, 100_999));
        assert!(!r.is_live(1_000, 101_000));
        assert_eq!(r.authenticate(Some((1_000, true)), 100_999), Ok(()));
        assert_eq!(r.authenticate(Some((1_000, true)), 101_000), Err(ErrorCode::AuthFailed));
        assert_eq!(r.authenticate(Some((1_000, false)), 2_000), Err(ErrorCode::AuthFailed));
        assert_eq!(r.authenticate(None, 2_000), Err(ErrorCode::AuthFailed));
    }

    #[test]
    fn minting_past_the_bound_lets_go_of_the_least_recently_used() {
        let r = rules(3);
        let held = [t(1, 50), t(2, 10), t(3, 10)];
        // Two tokens used at 10: the lower number goes.
        assert_eq!(r.mint(5, &held, 60), Ok(vec![2]));
        assert_eq!(r.mint(5, &held[..2], 60), Ok(vec![]));
        // Expired ones go first, and then nothing else needs to.
        assert_eq!(r.mint(5, &held, 100_020), Ok(vec![2, 3]));
        assert_eq!(rules(1).mint(5, &held, 60), Ok(vec![2, 3, 1]));
        assert_eq!(r.mint(LABEL_MAX + 1, &[], 0), Err(ErrorCode::TextTooLong));
        assert_eq!(r.mint(LABEL_MAX, &[], 0), Ok(vec![]));
    }

    #[test]
    fn a_use_is_recorded_once_a_minute_or_from_a_new_address() {
        let here: Address = "127.0.0.1".parse().unwrap();
        let there: Address = "::1".parse().unwrap();
        assert!(!record_use((1_000, here), 1_000 + USE_RECORDED_EVERY - 1, here));
        assert!(record_use((1_000, here), 1_000 + USE_RECORDED_EVERY, here));
        assert!(record_use((1_000, here), 1_001, there));
    }

    #[test]
    fn new_passwords_have_the_minimum_length() {
        assert_eq!(new_password(7, 8), Err(ErrorCode::PasswordTooShort));
        assert_eq!(new_password(8, 8), Ok(()));
        assert_eq!(new_password(1, 1), Ok(()));
    }

    #[test]
    fn token_logins_have_a_budget_of_their_own() {
        assert_eq!(auth_budget(60), (60, 3_600));
        assert_eq!(auth_budget(0), (1, 60));
    }
}
