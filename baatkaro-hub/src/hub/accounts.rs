//! Accounts and presence: REGISTER, LOGIN, PASSWORD, DELETE-ACCOUNT, sessions coming
//! and going.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use baatkaro_proto::credentials;
use baatkaro_proto::delivery::RateBudget;
use baatkaro_proto::group::Op;
use baatkaro_proto::rules;
use baatkaro_proto::session::RequestId;
use baatkaro_proto::throttle::AccountGuard;
use baatkaro_proto::{
    Address, DoneVerb, ErrorCode, Event, Failure, GroupName, Millis, Note, OkReply, Password,
    Presence, Role, TokenId, UserName,
};

use super::groups::Req;
use super::{Hub, User};
use crate::output::{ConnId, HashDone, HashJob, HashKind, HashOutcome, HashPurpose, Output};
use crate::store::Write;

/// Most source addresses whose LOGIN and REGISTER attempts are counted at once (and,
/// apart, whose token logins are).
const MAX_ADDRESSES: usize = 65_536;

/// Most names without an account whose login throttles are kept at once.
pub(super) const MAX_GHOSTS: usize = 65_536;

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
        match self.spend_attempt(which, ip, count, period, burst, now) {
            Ok(()) => true,
            Err(failure) => {
                self.reply(conn, id, Err(failure));
                false
            }
        }
    }

    /// Takes one attempt from `ip`'s budget of `which` (`count` per `period`
    /// milliseconds, `burst` at once), or gives the RATE_LIMITED refusal with the
    /// time until the budget has one again.
    pub(super) fn spend_attempt(
        &mut self,
        which: Attempts,
        ip: IpAddr,
        count: u64,
        period: Millis,
        burst: u64,
        now: Millis,
    ) -> Result<(), Failure> {
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
        let Some(wait) = wait else { return Ok(()) };
        // The note says which limit, for the client to tell its user.
        let note = match which {
            Attempts::Password => "password attempts from this address: over logins a minute",
            Attempts::Token => "token logins from this address: over their budget",
        };
        Err(rate_limited(wait, note))
    }

    /// The login throttle of `user`'s account, or of a name without one (kept among
    /// at most [`MAX_GHOSTS`], so that a refusal says nothing of whether the account
    /// exists).
    fn guard(&mut self, user: UserName, now: Millis) -> &mut AccountGuard {
        if self.users.contains_key(&user) {
            // Looked up again: the borrow checker cannot see that the arms differ.
            return match self.users.get_mut(&user) {
                Some(u) => &mut u.guard,
                None => unreachable!("checked above"),
            };
        }
        if self.ghosts.len() >= MAX_GHOSTS && !self.ghosts.contains_key(&user) {
            self.ghosts.retain(|_, g| !g.is_idle(now));
            if self.ghosts.len() >= MAX_GHOSTS
                && let Some(any) = self.ghosts.keys().next().copied()
            {
                // Full of live ones: one goes, so that the table never grows.
                self.ghosts.remove(&any);
            }
        }
        self.ghosts.entry(user).or_default()
    }

    /// Whether a password attempt on `user` from the connection's address may be
    /// checked now ([`AccountGuard::check`]); if not, answers RATE_LIMITED with the
    /// time until it may.
    fn guard_allows(&mut self, (conn, id): Req, user: UserName, now: Millis) -> bool {
        let Some(address) = self.conns.get(&conn).map(|c| Address::from(c.peer)) else {
            return false;
        };
        match self.guard(user, now).check(address, now) {
            Ok(()) => true,
            Err(wait) => {
                let note = "failed passwords for this account: attempts from here are slowed";
                self.reply(conn, id, Err(rate_limited(wait, note)));
                false
            }
        }
    }

    /// A password attempt on `user` from the connection's address failed.
    fn guard_failed(&mut self, conn: ConnId, user: UserName, now: Millis) {
        if let Some(address) = self.conns.get(&conn).map(|c| Address::from(c.peer)) {
            self.guard(user, now).failed(address, now);
        }
    }

    /// `user` logged in from the connection's address (a password, a token, a new
    /// account): the address keeps a budget of its own for the account from now on,
    /// written down so that a restart keeps it.
    pub(super) fn guard_succeeded(&mut self, conn: ConnId, user: UserName, now: Millis) {
        if let Some(address) = self.conns.get(&conn).map(|c| Address::from(c.peer)) {
            self.address_succeeded(address, user, now);
        }
    }

    /// `user` logged in from `address`: as [`Hub::guard_succeeded`], for a login
    /// that is no connection's (a download over HTTP with a token).
    pub(super) fn address_succeeded(&mut self, address: Address, user: UserName, now: Millis) {
        // A damaged store takes no writes: the address keeps its budget until the
        // server stops, not across a restart (SPEC.md 8).
        let damaged = self.damaged;
        let Some(u) = self.users.get_mut(&user) else { return };
        let (record, pushed) = u.guard.succeeded(address, now);
        if damaged {
            return;
        }
        if record {
            self.write(Write::KnownAddress { user, address, time: now });
        }
        if let Some(address) = pushed {
            self.write(Write::KnownAddressGone { user, address });
        }
    }

    pub(super) fn register(
        &mut self,
        conn: ConnId,
        id: RequestId,
        user: UserName,
        password: Password,
        now: Millis,
    ) {
        // A deleted account's name counts: it stays taken for good.
        let accounts = (self.users.len() + self.tombstones.len()) as u64;
        if !self.cfg.registration_open || accounts >= self.cfg.max_accounts {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::RegistrationClosed)));
        }
        if self.users.contains_key(&user) || self.tombstones.contains(&user) {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::UserExists)));
        }
        if let Err(code) =
            credentials::new_password(password.expose().len(), self.cfg.limits.password)
        {
            return self.reply(conn, id, Err(Failure::new(code)));
        }
        if !self.attempt(conn, id, now) {
            return;
        }
        let kind = HashKind::Hash { password };
        let job = HashJob { req: (conn, id), user, kind, purpose: HashPurpose::Register };
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
        self.check_password((conn, id), user, password, HashPurpose::Login, now);
    }

    /// Asks for `password` to be checked against `user`'s (against a decoy for a name
    /// without an account, so that the time says nothing), if the account's login
    /// throttle lets an attempt from this address through now.
    fn check_password(
        &mut self,
        req: Req,
        user: UserName,
        password: Password,
        purpose: HashPurpose,
        now: Millis,
    ) {
        if !self.guard_allows(req, user, now) {
            return;
        }
        let stored = self.users.get(&user).map(|u| u.hash.clone());
        let job = HashJob { req, user, kind: HashKind::Verify { password, stored }, purpose };
        self.outputs.push_back(Output::Hash(job));
    }

    pub(super) fn on_hashed(
        &mut self,
        HashDone { req: (conn, id), user, outcome, purpose }: HashDone,
        now: Millis,
    ) {
        let Some(rec) = self.conns.get(&conn) else {
            return; // It hung up while we hashed.
        };
        if rec.revoked {
            // Its password changed, or its account went, while this was hashed.
            return self.refuse_revoked(conn, id);
        }
        match &outcome {
            HashOutcome::Checked(false) => self.guard_failed(conn, user, now),
            HashOutcome::Checked(true) => self.guard_succeeded(conn, user, now),
            HashOutcome::Hashed(_) => {}
        }
        match (purpose, outcome) {
            (_, HashOutcome::Checked(false)) => {
                self.reply(conn, id, Err(Failure::new(ErrorCode::AuthFailed)));
            }
            (_, HashOutcome::Hashed(Err(e))) => {
                tracing::error!(error = %e, "password hashing failed");
                self.reply(conn, id, Err(Failure::new(ErrorCode::Internal)));
            }
            (HashPurpose::Login, HashOutcome::Checked(true)) => {
                if self.is_locked(&user) {
                    return self.reply(conn, id, Err(Failure::new(ErrorCode::AccountLocked)));
                }
                if self.attach(conn, id, user) {
                    self.reply(conn, id, Ok(OkReply::Login { user }));
                }
            }
            (HashPurpose::Register, HashOutcome::Hashed(Ok(hash))) => {
                // Someone may have taken the name while this one was hashed.
                if self.users.contains_key(&user) || self.tombstones.contains(&user) {
                    return self.reply(conn, id, Err(Failure::new(ErrorCode::UserExists)));
                }
                self.write(Write::User { name: user, hash: hash.clone(), created: now });
                let burst = self.cfg.limits.burst;
                self.users.insert(user, User::new(Arc::from(hash), burst, now));
                // A name without an account had a throttle of its own: now it has one.
                self.ghosts.remove(&user);
                self.guard_succeeded(conn, user, now);
                if self.attach(conn, id, user) {
                    self.reply(conn, id, Ok(OkReply::Register { user }));
                }
            }
            (HashPurpose::CheckOld { new }, HashOutcome::Checked(true)) => {
                let kind = HashKind::Hash { password: new };
                let job = HashJob { req: (conn, id), user, kind, purpose: HashPurpose::HashNew };
                self.outputs.push_back(Output::Hash(job));
            }
            (HashPurpose::HashNew, HashOutcome::Hashed(Ok(hash))) => {
                self.set_password((conn, id), user, hash);
            }
            (HashPurpose::DeleteAccount, HashOutcome::Checked(true)) => {
                self.remove_account(conn, user, now);
                self.reply(conn, id, Ok(OkReply::Done { verb: DoneVerb::DeleteAccount }));
            }
            (purpose, outcome) => {
                tracing::error!(?purpose, ?outcome, "a password job came back mismatched");
                self.reply(conn, id, Err(Failure::new(ErrorCode::Internal)));
            }
        }
    }

    /// Whether the operator locked `user`'s account.
    pub(super) fn is_locked(&self, user: &UserName) -> bool {
        self.users.get(user).is_some_and(|u| u.locked)
    }

    /// PASSWORD: the new password must be long enough; the old one is checked (a
    /// password attempt, as a LOGIN is), then the new one hashed.
    pub(super) fn change_password(
        &mut self,
        (conn, id): Req,
        user: UserName,
        old: Password,
        new: Password,
        now: Millis,
    ) {
        if let Err(code) = credentials::new_password(new.expose().len(), self.cfg.limits.password) {
            return self.reply(conn, id, Err(Failure::new(code)));
        }
        if !self.attempt(conn, id, now) {
            return;
        }
        self.check_password((conn, id), user, old, HashPurpose::CheckOld { new }, now);
    }

    /// PASSWORD, once the new password is hashed: it replaces the old, every other
    /// token of the account is revoked (the session's own, if it logged in with one,
    /// is kept) and every other session ends with BYE REVOKED.
    fn set_password(&mut self, (conn, id): Req, user: UserName, hash: String) {
        let keep = self.conns.get(&conn).and_then(|c| c.token);
        let Some(u) = self.users.get_mut(&user) else {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::Revoked)));
        };
        u.hash = Arc::from(hash.as_str());
        let others: Vec<TokenId> =
            u.tokens.iter().map(|t| t.id).filter(|t| Some(*t) != keep).collect();
        self.write(Write::Password { user, hash });
        for token in others {
            self.drop_token(user, token);
        }
        self.reply(conn, id, Ok(OkReply::Done { verb: DoneVerb::Password }));
        self.end_sessions(user, Some(conn), |_| true);
    }

    /// DELETE-ACCOUNT: the password is checked (a password attempt) before anything
    /// goes.
    pub(super) fn delete_account(
        &mut self,
        (conn, id): Req,
        user: UserName,
        password: Password,
        now: Millis,
    ) {
        if !self.attempt(conn, id, now) {
            return;
        }
        self.check_password((conn, id), user, password, HashPurpose::DeleteAccount, now);
    }

    /// Deletes `user`'s account (SPEC.md 4.8), whose session `conn` asked: its other
    /// sessions end; those who share a group hear it go offline; each group it owns
    /// passes to its successor ([`rules::successor`]: OFFERED, then OWNER) or, with
    /// nobody else in it, goes with it; it leaves every group (LEFT), withdraws its
    /// requests and declines its invites; its tokens, its unfinished uploads and its
    /// hold on content go. What it sent stays in the conversations' history, files
    /// included, and its name is never given out again.
    fn remove_account(&mut self, conn: ConnId, user: UserName, now: Millis) {
        self.end_sessions(user, Some(conn), |_| true);
        // This session ends with its reply: it hears nothing of what follows.
        if let Some(u) = self.users.get_mut(&user) {
            u.sessions.remove(conn);
        }
        if let Some(rec) = self.conns.get_mut(&conn) {
            rec.user = None;
            rec.deleted = Some(Box::new(user));
        }
        self.sessions_epoch += 1;
        self.presence(user, Presence::Offline);
        let relations: Vec<GroupName> = self
            .users
            .get(&user)
            .map(|u| u.relations.iter().copied().collect())
            .unwrap_or_default();
        for name in relations {
            let Some(rec) = self.groups.get(&name) else { continue };
            let role = rec.group.role_of(&user);
            let mut ops = Vec::new();
            if role == Some(Role::Owner)
                && let Some(next) = rules::successor(rec.group.members(), user)
            {
                // An offer already made to the successor stands (TRANSFER would be
                // NO_CHANGE): it is taken up as it is.
                ops.push((user, Op::Offer { user: next }));
                ops.push((next, Op::TakeOwnership));
            }
            if role.is_some() || rec.group.request_of(&user, now).is_some() {
                ops.push((user, Op::Leave));
            } else if rec.group.invite_of(&user, now).is_some() {
                ops.push((user, Op::Decline));
            }
            for (actor, op) in ops {
                match self.apply_op(actor, name, op.clone(), now) {
                    Ok((_, wire)) => {
                        for (frame, to) in wire {
                            self.frame_to_users(frame, to, None);
                        }
                    }
                    Err(ErrorCode::NoChange) if matches!(op, Op::Offer { .. }) => {}
                    Err(code) => {
                        tracing::error!(%user, group = %name, ?code, "leaving a group failed");
                    }
                }
            }
        }
        self.drop_uploads_of(user);
        let peers: Vec<UserName> =
            self.users.get(&user).map(|u| u.peers.iter().copied().collect()).unwrap_or_default();
        self.forget_markers_of_user(user, &peers);
        self.write(Write::UserDeleted { user, time: now });
        self.users.remove(&user);
        self.tombstones.insert(user);
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
        self.counting.remove(&conn);
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
        u.sessions.remove(conn);
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

/// A RATE_LIMITED refusal with the time until the limit lets the next attempt through
/// and a note that names the limit.
fn rate_limited(wait: Millis, note: &str) -> Failure {
    Failure {
        retry_after: Some(wait),
        note: Note::new(note).ok(),
        ..Failure::new(ErrorCode::RateLimited)
    }
}
