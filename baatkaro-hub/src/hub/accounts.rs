//! Accounts and presence: REGISTER, LOGIN, sessions coming and going.

use std::collections::BTreeSet;
use std::sync::Arc;

use baatkaro_proto::delivery::RateBudget;
use baatkaro_proto::session::RequestId;
use baatkaro_proto::{ErrorCode, Event, Failure, Millis, OkReply, Password, Presence, UserName};

use super::{Hub, User};
use crate::output::{ConnId, HashDone, HashJob, HashKind, HashOutcome, Output};
use crate::store::Write;

/// Most source addresses whose LOGIN and REGISTER attempts are counted at once (and,
/// apart, whose token logins are).
const MAX_ADDRESSES: usize = 65_536;

/// Which of an address's budgets an attempt takes from.
#[derive(Clone, Copy, Debug)]
pub(super) enum Attempts {
    /// Password attempts: LOGIN and REGISTER.
    Password,
    /// Token logins: AUTH.
    Token,
}

impl Hub {
    /// Takes one password attempt from the connection's address, or answers
    /// RATE_LIMITED.
    fn attempt(&mut self, conn: ConnId, id: RequestId, now: Millis) -> bool {
        let per_minute = self.cfg.logins_per_minute;
        self.take_attempt(Attempts::Password, conn, id, per_minute, 60_000, per_minute, now)
    }

    /// Takes one attempt from the connection's address in one of its budgets
    /// (`count` per `period` milliseconds, `burst` at once), or answers RATE_LIMITED
    /// with the time until the budget has one again.
    #[allow(clippy::too_many_arguments, reason = "a budget's three numbers and a request")]
    pub(super) fn take_attempt(
        &mut self,
        which: Attempts,
        conn: ConnId,
        id: RequestId,
        count: u64,
        period: Millis,
        burst: u64,
        now: Millis,
    ) -> bool {
        let Some(ip) = self.conns.get(&conn).map(|c| c.peer) else { return false };
        let table = match which {
            Attempts::Password => &mut self.attempts,
            Attempts::Token => &mut self.token_attempts,
        };
        let wait = if table.len() >= MAX_ADDRESSES && !table.contains_key(&ip) {
            // Many addresses at once: forget the quiet ones, and if all are busy, make
            // the newcomer wait rather than grow the table.
            table.retain(|_, (_, last)| now.saturating_sub(*last) < 60_000);
            (table.len() >= MAX_ADDRESSES).then_some(60_000)
        } else {
            None
        };
        let wait = wait.or_else(|| {
            let (budget, last) =
                table.entry(ip).or_insert_with(|| (RateBudget::new(burst, now), now));
            *last = now;
            budget.try_take_per(now, count, period, burst).err()
        });
        let Some(wait) = wait else { return true };
        let failure = Failure { retry_after: Some(wait), ..Failure::new(ErrorCode::RateLimited) };
        self.reply(conn, id, Err(failure));
        false
    }

    pub(super) fn register(
        &mut self,
        conn: ConnId,
        id: RequestId,
        user: UserName,
        password: Password,
        now: Millis,
    ) {
        if !self.cfg.registration_open || self.users.len() as u64 >= self.cfg.max_accounts {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::RegistrationClosed)));
        }
        if self.users.contains_key(&user) {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::UserExists)));
        }
        if !self.attempt(conn, id, now) {
            return;
        }
        let job = HashJob { req: (conn, id), user, kind: HashKind::Hash { password } };
        self.outputs.push_back(Output::Hash(job));
    }

    pub(super) fn login(
        &mut self,
        conn: ConnId,
        id: RequestId,
        user: UserName,
        password: Password,
        now: Millis,
    ) {
        if !self.attempt(conn, id, now) {
            return;
        }
        let stored = self.users.get(&user).map(|u| u.hash.clone());
        let job = HashJob { req: (conn, id), user, kind: HashKind::Verify { password, stored } };
        self.outputs.push_back(Output::Hash(job));
    }

    pub(super) fn on_hashed(
        &mut self,
        HashDone { req: (conn, id), user, outcome }: HashDone,
        now: Millis,
    ) {
        if !self.conns.contains_key(&conn) {
            return; // It hung up while we hashed.
        }
        match outcome {
            HashOutcome::Checked(false) => {
                let failure = Failure::new(ErrorCode::AuthFailed);
                self.reply(conn, id, Err(failure));
            }
            HashOutcome::Checked(true) => {
                if self.attach(conn, id, user) {
                    self.reply(conn, id, Ok(OkReply::Login { user }));
                }
            }
            HashOutcome::Hashed(Err(e)) => {
                tracing::error!(error = %e, "password hashing failed");
                self.reply(conn, id, Err(Failure::new(ErrorCode::Internal)));
            }
            HashOutcome::Hashed(Ok(hash)) => {
                // Someone may have taken the name while this one was hashed.
                if self.users.contains_key(&user) {
                    return self.reply(conn, id, Err(Failure::new(ErrorCode::UserExists)));
                }
                self.write(Write::User { name: user, hash: hash.clone(), created: now });
                let burst = self.cfg.limits.burst;
                self.users.insert(user, User::new(Arc::from(hash), burst, now));
                if self.attach(conn, id, user) {
                    self.reply(conn, id, Ok(OkReply::Register { user }));
                }
            }
        }
    }

    /// Logs a connection in as `user`, within the `sessions` limit; tells those who
    /// share a group when this is the user's first session.
    pub(super) fn attach(&mut self, conn: ConnId, id: RequestId, user: UserName) -> bool {
        let Some(u) = self.users.get_mut(&user) else { return false };
        if u.sessions.len() as u64 >= self.cfg.limits.sessions {
            let failure =
                Failure { retry_after: Some(1000), ..Failure::new(ErrorCode::TooManyConnections) };
            self.reply(conn, id, Err(failure));
            return false;
        }
        u.sessions.push(conn);
        self.sessions_epoch += 1;
        let first = u.sessions.len() == 1;
        if let Some(rec) = self.conns.get_mut(&conn) {
            rec.user = Some(user);
        }
        if first {
            self.presence(user, Presence::Online);
        }
        true
    }

    pub(super) fn on_disconnect(&mut self, conn: ConnId) {
        self.reading.remove(&conn);
        let Some(rec) = self.conns.remove(&conn) else { return };
        let Some(user) = rec.user else { return };
        self.detach(conn, user);
    }

    /// A session of `user` ends (it went, or its credentials were revoked): its
    /// uploads are saved, and if it was the user's last, those who share a group
    /// hear that the user went offline.
    pub(super) fn detach(&mut self, conn: ConnId, user: UserName) {
        self.save_uploads(Some(user));
        let Some(u) = self.users.get_mut(&user) else { return };
        u.sessions.retain(|c| *c != conn);
        self.sessions_epoch += 1;
        if u.sessions.is_empty() {
            self.presence(user, Presence::Offline);
            self.drop_parked(user);
        }
    }

    /// Tells everyone who shares a group with `user` that they came or went.
    fn presence(&mut self, user: UserName, presence: Presence) {
        let others: BTreeSet<UserName> =
            self.co_members(user).into_iter().filter(|u| *u != user).collect();
        self.event_to_users(Event::Presence { user, presence }, others, None);
    }

    /// Everyone who is a member of a group `user` is a member of, `user` included
    /// if they are in any group.
    pub(super) fn co_members(&self, user: UserName) -> BTreeSet<UserName> {
        let Some(u) = self.users.get(&user) else { return BTreeSet::new() };
        u.relations
            .iter()
            .filter_map(|g| self.groups.get(g))
            .filter(|rec| rec.group.role_of(&user).is_some())
            .flat_map(|rec| rec.group.members().map(|(m, _)| m))
            .collect()
    }

    /// Whether `user` has a session now.
    pub(super) fn is_online(&self, user: &UserName) -> bool {
        self.users.get(user).is_some_and(|u| !u.sessions.is_empty())
    }
}
