//! Session tokens (SPEC.md 4.7): AUTH, TOKEN, TOKENS, REVOKE and LOGOUT revoke.
//!
//! The rules are `baatkaro_proto::credentials`'; kept here is each token's record
//! with the SHA-256 of its secret, never the secret itself, and which sessions each
//! token logged in, so that a revocation ends them at once.

use std::net::IpAddr;

use baatkaro_proto::credentials::{self, TokenFacts};
use baatkaro_proto::session::RequestId;
use baatkaro_proto::{
    Address, DoneVerb, ErrorCode, Failure, Item, ListVerb, Millis, Note, OkReply, Text, TokenId,
    TokenSecret, UserName,
};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::groups::Req;
use super::{Hub, Out};
use crate::output::ConnId;
use crate::store::{TokenRecord, Write};

/// Where the hub gets the secrets it hands out. The server passes the operating
/// system's random number generator; a test may pass its own. (The hub reads no
/// clock and no device itself: like the time, unpredictability is an input.)
pub trait Entropy: Send + std::fmt::Debug {
    /// Fills `buf` with unpredictable bytes, or says why it cannot.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String>;
}

/// A session token as the hub holds it.
#[derive(Debug)]
pub(super) struct Token {
    pub(super) id: TokenId,
    /// The SHA-256 of its secret.
    digest: [u8; 32],
    label: Text,
    created: Millis,
    /// When it last logged a session in.
    pub(super) used: Millis,
    /// Where from.
    address: Address,
    /// The last use the store holds.
    recorded: (Millis, Address),
}

impl Token {
    /// A token as the store kept it.
    pub(super) fn from_record(r: TokenRecord) -> Self {
        Token {
            id: r.id,
            digest: r.digest,
            label: r.label,
            created: r.created,
            used: r.used,
            address: r.address,
            recorded: (r.used, r.address),
        }
    }

    fn record(&self, user: UserName) -> TokenRecord {
        TokenRecord {
            id: self.id,
            user,
            digest: self.digest,
            label: self.label.clone(),
            created: self.created,
            used: self.used,
            address: self.address,
        }
    }

    fn facts(&self) -> TokenFacts {
        TokenFacts { id: self.id, used: self.used }
    }
}

/// The SHA-256 of a secret: what is kept and compared.
fn digest(secret: &TokenSecret) -> [u8; 32] {
    sha2::Sha256::digest(secret.0).into()
}

impl Hub {
    /// The address a connection came from, as tokens record it.
    fn address_of(&self, conn: ConnId) -> Option<Address> {
        self.conns.get(&conn).map(|c| Address::from(c.peer))
    }

    /// AUTH: logs a connection in with a token, within the address's budget of token
    /// logins (not its password attempts'), with no password hash.
    pub(super) fn auth(
        &mut self,
        (conn, id): Req,
        user: UserName,
        token: TokenId,
        secret: TokenSecret,
        now: Millis,
    ) {
        let Some(peer) = self.conns.get(&conn).map(|c| c.peer) else { return };
        if let Err(failure) = self.check_token(peer, user, token, &secret, now) {
            return self.reply(conn, id, Err(failure));
        }
        if !self.attach(conn, id, user) {
            return;
        }
        if let Some(rec) = self.conns.get_mut(&conn) {
            rec.token = Some(token);
        }
        self.token_used(peer, user, token, now);
        self.reply(conn, id, Ok(OkReply::Auth { user }));
    }

    /// Checks a token presented from `peer` as AUTH does, for a session or a
    /// download over HTTP alike: one token login from the address's budget
    /// (RATE_LIMITED past it), then the token (AUTH_FAILED for an unknown user, a
    /// token the user does not hold, a wrong secret, a revoked or expired token,
    /// with a note that does not say which), then the account (ACCOUNT_LOCKED).
    pub(super) fn check_token(
        &mut self,
        peer: IpAddr,
        user: UserName,
        token: TokenId,
        secret: &TokenSecret,
        now: Millis,
    ) -> Result<(), Failure> {
        let (rate, burst) = credentials::auth_budget(self.cfg.logins_per_minute);
        self.spend_attempt(super::Attempts::Token, peer, rate, 1_000, burst, now)?;
        let given = digest(secret);
        // The digests are compared in constant time: how long a wrong secret takes
        // says nothing of how much of it was right.
        let found = self
            .users
            .get(&user)
            .and_then(|u| u.tokens.iter().find(|t| t.id == token))
            .map(|t| (t.used, bool::from(t.digest.ct_eq(&given))));
        if let Err(code) = self.token_rules.authenticate(found, now) {
            // The note says what a token refusal may be, and not which it was.
            let note = Note::new("token refused: unknown, revoked or expired").ok();
            return Err(Failure { note, ..Failure::new(code) });
        }
        if self.is_locked(&user) {
            return Err(Failure::new(ErrorCode::AccountLocked));
        }
        Ok(())
    }

    /// A token checked by [`Hub::check_token`] logged in from `peer`: the address
    /// becomes one the account knows (SPEC.md 11.5), and the token's last use and
    /// address move on, written to the store when [`credentials::record_use`] says.
    pub(super) fn token_used(&mut self, peer: IpAddr, user: UserName, token: TokenId, now: Millis) {
        let address = Address::from(peer);
        self.address_succeeded(address, user, now);
        let mut write = None;
        if let Some(t) =
            self.users.get_mut(&user).and_then(|u| u.tokens.iter_mut().find(|t| t.id == token))
        {
            t.used = now;
            t.address = address;
            // A damaged store takes no writes: the use is not recorded (SPEC.md 8).
            if !self.damaged && credentials::record_use(t.recorded, now, address) {
                t.recorded = (now, address);
                write = Some(Write::Token(Box::new(t.record(user))));
            }
        }
        if let Some(w) = write {
            self.write(w);
        }
    }

    /// TOKEN: makes a token for `user`, letting go of the least recently used one if
    /// they hold as many as allowed. The secret goes out once the token is durable.
    pub(super) fn mint_token(&mut self, (conn, id): Req, user: UserName, label: Text, now: Millis) {
        let Some(address) = self.address_of(conn) else { return };
        let Some(u) = self.users.get(&user) else {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::Internal)));
        };
        let held: Vec<TokenFacts> = u.tokens.iter().map(Token::facts).collect();
        let gone = match self.token_rules.mint(label.len(), &held, now) {
            Ok(gone) => gone,
            Err(code) => return self.reply(conn, id, Err(Failure::new(code))),
        };
        let mut bytes = [0u8; 32];
        if let Err(e) = self.entropy.fill(&mut bytes) {
            tracing::error!(error = %e, "no randomness for a session token");
            return self.reply(conn, id, Err(Failure::new(ErrorCode::Internal)));
        }
        let secret = TokenSecret(bytes);
        let token = Token {
            id: self.next_token_id,
            digest: digest(&secret),
            label,
            created: now,
            used: now,
            address,
            recorded: (now, address),
        };
        self.next_token_id += 1;
        for gone in gone {
            self.drop_token(user, gone);
        }
        self.write(Write::Token(Box::new(token.record(user))));
        let reply = OkReply::Token { token: token.id, secret };
        if let Some(u) = self.users.get_mut(&user) {
            u.tokens.push(token);
        }
        self.reply(conn, id, Ok(reply));
    }

    /// TOKENS: the user's tokens, by number.
    pub(super) fn list_tokens(&mut self, (conn, id): Req, user: UserName) {
        let mut items: Vec<(TokenId, Item)> = self
            .users
            .get(&user)
            .map(|u| {
                u.tokens
                    .iter()
                    .map(|t| {
                        let item = Item::Token {
                            token: t.id,
                            created: t.created,
                            used: t.used,
                            expires: self.token_rules.expires(t.used),
                            address: t.address,
                            label: t.label.clone(),
                        };
                        (t.id, item)
                    })
                    .collect()
            })
            .unwrap_or_default();
        items.sort_by_key(|(id, _)| *id);
        self.list(conn, id, ListVerb::Tokens, items.into_iter().map(|(_, i)| i).collect());
    }

    /// REVOKE: the token stops working at once, and every session it logged in
    /// ends after the reply (the sender's own too, if it is one of them).
    pub(super) fn revoke(&mut self, (conn, id): Req, user: UserName, token: TokenId) {
        let held = self.users.get(&user).is_some_and(|u| u.tokens.iter().any(|t| t.id == token));
        if !held {
            return self.reply(conn, id, Err(Failure::new(ErrorCode::NoSuchToken)));
        }
        self.drop_token(user, token);
        self.reply(conn, id, Ok(OkReply::Done { verb: DoneVerb::Revoke }));
        self.end_sessions(user, None, |t| t == Some(token));
    }

    /// LOGOUT revoke: the session's own token (if it logged in with one) is revoked,
    /// and the other sessions it logged in end; this one ends with its reply.
    pub(super) fn logout_revoke(&mut self, (conn, id): Req, user: UserName) {
        if let Some(token) = self.conns.get(&conn).and_then(|c| c.token) {
            self.drop_token(user, token);
            self.end_sessions(user, Some(conn), |t| t == Some(token));
        }
        self.reply(conn, id, Ok(OkReply::Done { verb: DoneVerb::Logout }));
    }

    /// Forgets a token of `user`, in memory and in the store.
    pub(super) fn drop_token(&mut self, user: UserName, token: TokenId) {
        if let Some(u) = self.users.get_mut(&user) {
            u.tokens.retain(|t| t.id != token);
        }
        self.write(Write::TokenGone { id: token });
    }

    /// Ends the sessions of `user` (but `except`) whose token `which` picks: they
    /// are logged out at once, so that nothing more they send is served, and closed
    /// with `BYE REVOKED` after what is staged before (their own replies included).
    pub(super) fn end_sessions(
        &mut self,
        user: UserName,
        except: Option<ConnId>,
        which: impl Fn(Option<TokenId>) -> bool,
    ) {
        let Some(u) = self.users.get(&user) else { return };
        let ending: Vec<ConnId> = u
            .sessions
            .iter()
            .filter(|c| Some(*c) != except)
            .filter(|c| self.conns.get(c).is_some_and(|rec| which(rec.token)))
            .collect();
        for conn in ending {
            if let Some(rec) = self.conns.get_mut(&conn) {
                rec.user = None;
                rec.token = None;
                rec.revoked = true;
            }
            self.detach(conn, user);
            self.open_outs.push(Out::Close { conn, failure: Failure::new(ErrorCode::Revoked) });
        }
    }

    /// Lets go of the tokens that have not been used for the idle time.
    pub(super) fn expire_tokens(&mut self, now: Millis) {
        let rules = self.token_rules;
        let expired: Vec<(UserName, TokenId)> = self
            .users
            .iter()
            .flat_map(|(name, u)| {
                u.tokens.iter().filter(|t| !rules.is_live(t.used, now)).map(|t| (*name, t.id))
            })
            .collect();
        for (user, token) in expired {
            self.drop_token(user, token);
        }
    }

    /// Answers a request from a session whose credentials were revoked: nothing it
    /// sends after the revocation is served. At once, not behind the revocation's
    /// commit: the refusal changes nothing, and the session keeps its replies in
    /// order itself.
    pub(super) fn refuse_revoked(&mut self, conn: ConnId, id: RequestId) {
        self.deliver(Out::Reply { conn, id, result: Err(Failure::new(ErrorCode::Revoked)) });
    }
}
