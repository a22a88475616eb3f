//! Messages and history: SEND, HISTORY, and the answers to reads.

use baatkaro_proto::delivery::{KeyDigest, SentKey, fingerprint};
use baatkaro_proto::rules::{self, Peer, Reader, SendOutcome};
use baatkaro_proto::{
    Conversation, ErrorCode, EventFrame, Failure, HistoryRange, IdemKey, Item, Millis, OkReply,
    StoredEvent, Text, UserName,
};

use super::groups::Req;
use std::sync::Arc;

use super::{Fanout, GroupRec, Hub, PendingRead, User};
use crate::output::ConnId;
use crate::store::{ConvKey, EventRecord, HistoryQuery, Read, ReadResult, StoreFault, Write};
use std::collections::HashMap;

impl Hub {
    /// Where a conversation named by `user` lives and its newest sequence number,
    /// if `user` may read it ([`rules::may_read`]).
    pub(super) fn resolve(
        &self,
        user: UserName,
        conv: Conversation,
    ) -> Result<(ConvKey, u64), ErrorCode> {
        self.resolve_by(user, conv, rules::may_read)
    }

    /// As [`Hub::resolve`], if `user` may add to it ([`rules::may_write`]).
    pub(super) fn resolve_to_write(
        &self,
        user: UserName,
        conv: Conversation,
    ) -> Result<(ConvKey, u64), ErrorCode> {
        self.resolve_by(user, conv, rules::may_write)
    }

    fn resolve_by(
        &self,
        user: UserName,
        conv: Conversation,
        rule: fn(Reader) -> Result<(), ErrorCode>,
    ) -> Result<(ConvKey, u64), ErrorCode> {
        match conv {
            Conversation::Group(g) => resolve_group(self.groups.get(&g), user, rule),
            Conversation::Direct(peer) => self.resolve_direct(user, peer, rule),
        }
    }

    /// [`Hub::resolve_by`] for a private conversation.
    fn resolve_direct(
        &self,
        user: UserName,
        peer: UserName,
        rule: fn(Reader) -> Result<(), ErrorCode>,
    ) -> Result<(ConvKey, u64), ErrorCode> {
        rule(Reader::Direct { peer: self.peer(&peer) })?;
        let key = ConvKey::direct(user, peer);
        Ok((key, self.direct.get(&key).copied().unwrap_or(0)))
    }

    /// What the other user of a private conversation is.
    fn peer(&self, name: &UserName) -> Peer {
        if self.users.contains_key(name) {
            Peer::Exists
        } else if self.tombstones.contains(name) {
            Peer::Deleted
        } else {
            Peer::Unknown
        }
    }

    /// Whether `user` may read the conversation a shared file was stored in
    /// ([`rules::may_read`], with the refusal every file command gives).
    pub(super) fn may_read_key(&self, user: &UserName, key: &ConvKey) -> bool {
        let reader = match key {
            ConvKey::Direct(a, b) => Reader::Between { party: a == user || b == user },
            ConvKey::Group(gid) => match self.group_names.get(gid).and_then(|n| self.groups.get(n))
            {
                Some(rec) if rec.group.id() == *gid => Reader::Group(rec.group.role_of(user)),
                _ => Reader::NoGroup,
            },
        };
        rules::may_read(reader).is_ok()
    }

    pub(super) fn send(
        &mut self,
        (conn, id): Req,
        user: UserName,
        to: Conversation,
        (key, digest): (IdemKey, Option<KeyDigest>),
        text: Text,
        now: Millis,
    ) {
        let window = self.cfg.limits.keys.saturating_mul(1000);
        let fp = fingerprint(&to, text.as_bytes());
        let digest = digest.unwrap_or_else(|| KeyDigest::of(&key, &self.digest_seed));
        // A group is looked up once, for its rule and then its next number and
        // readers: hashing its name is a tenth of a SEND's own work.
        let (group, resolved) = match to {
            Conversation::Group(g) => {
                let rec = self.groups.get_mut(&g);
                let resolved = resolve_group(rec.as_deref(), user, rules::may_write);
                (rec, resolved)
            }
            Conversation::Direct(peer) => (None, self.resolve_direct(user, peer, rules::may_write)),
        };
        let Some(u) = self.users.get_mut(&user) else { return };
        let key_check = u.keys.check(digest, (&to, text.as_bytes()), fp, now, window);
        let reader = resolved.map(|_| ());
        match self.rules.send(key_check, reader, text.len(), &mut u.budget, now) {
            Err(failure) => return self.reply(conn, id, Err(failure)),
            Ok(SendOutcome::Retry { seq, time }) => {
                return self.reply(conn, id, Ok(OkReply::Send { conv: to, seq, time }));
            }
            Ok(SendOutcome::Store) => {}
        }
        let Ok((conv, latest)) = resolved else { return };
        let seq = latest + 1;
        let kept = self.cfg.limits.key_count;
        u.keys.remember(digest, SentKey { conv: to, fingerprint: fp, seq, time: now }, kept);
        let readers = group.map(|rec| {
            rec.latest = seq;
            group_readers(rec, &self.users, self.sessions_epoch)
        });
        self.reply(conn, id, Ok(OkReply::Send { conv: to, seq, time: now }));
        match readers {
            // The text moves into the group's one event: a clone and its drop are two
            // atomic updates of the receive buffer's count, which a profile showed.
            Some(readers) => {
                let event = StoredEvent::Message { conv: to, seq, time: now, from: user, text };
                self.emit_group(conv, event, readers, Some((conn, id)));
            }
            None => {
                let message = |conv, seq| StoredEvent::Message {
                    conv,
                    seq,
                    time: now,
                    from: user,
                    text: text.clone(),
                };
                self.store_event(user, to, conv, message, Some((conn, id)));
            }
        }
        self.write(Write::SendKey { user, key, conv: to, fingerprint: fp, seq, time: now });
    }

    /// Stores an event in a conversation with its next sequence number and delivers
    /// it to the conversation's readers: `make` builds it as a reader who names the
    /// conversation so sees it. `user` names the conversation `to`. The number.
    pub(super) fn store_event(
        &mut self,
        user: UserName,
        to: Conversation,
        key: ConvKey,
        make: impl Fn(Conversation, u64) -> StoredEvent,
        cause: Option<(crate::output::ConnId, baatkaro_proto::session::RequestId)>,
    ) -> u64 {
        match (to, key) {
            (Conversation::Group(g), _) => {
                let Some(rec) = self.groups.get_mut(&g) else { return 0 };
                rec.latest += 1;
                let seq = rec.latest;
                let readers = group_readers(rec, &self.users, self.sessions_epoch);
                self.emit_group(key, make(to, seq), readers, cause);
                seq
            }
            (Conversation::Direct(peer), ConvKey::Direct(_, second)) => {
                let latest = self.direct.entry(key).or_insert(0);
                *latest += 1;
                let seq = *latest;
                for (me, them) in [(user, peer), (peer, user)] {
                    if let Some(u) = self.users.get_mut(&me) {
                        u.peers.insert(them);
                    }
                }
                // Each side reads it named after the other; the key's first user's
                // frame is the one stored.
                let mine = make(Conversation::Direct(peer), seq);
                let my_frame = self.arena.encode(&EventFrame(&mine));
                let theirs = (peer != user).then(|| {
                    let e = make(Conversation::Direct(user), seq);
                    let f = self.arena.encode(&EventFrame(&e));
                    (e, f)
                });
                let (event, frame) = match &theirs {
                    Some((e, f)) if user == second => (e, f),
                    _ => (&mine, &my_frame),
                };
                self.write(Write::Event(EventRecord::new(key, event, frame.clone())));
                self.frame_to_user(my_frame, user, cause);
                if let Some((_, f)) = theirs {
                    self.frame_to_user(f, peer, cause);
                }
                seq
            }
            (Conversation::Direct(_), ConvKey::Group(_)) => 0,
        }
    }

    /// Stores a group's event (its number already taken) and sends it to `readers`:
    /// encoded once, the same bytes stored and fanned out.
    fn emit_group(
        &mut self,
        key: ConvKey,
        event: StoredEvent,
        readers: Arc<[ConnId]>,
        cause: Option<(ConnId, baatkaro_proto::session::RequestId)>,
    ) {
        let frame = self.arena.encode(&EventFrame(&event));
        self.write(Write::Event(EventRecord::new(key, &event, frame.clone())));
        if !readers.is_empty() {
            self.frame_to(readers, frame, cause);
        }
    }

    pub(super) fn history(
        &mut self,
        (conn, id): Req,
        user: UserName,
        conv: Conversation,
        range: HistoryRange,
        limit: u32,
    ) {
        let (key, latest) = match self.resolve(user, conv) {
            Ok(found) => found,
            Err(code) => return self.reply(conn, id, Err(Failure::new(code))),
        };
        let page = u32::try_from(self.cfg.limits.page).unwrap_or(u32::MAX);
        // Half the queue for all of the connection's pages under way: a page never
        // makes its own reader a slow consumer, and reads pipelined behind it get
        // what is left (one event at least) instead of a page each.
        let used = self.reading.entry(conn).or_default();
        let budget = (self.cfg.limits.queue / 2).saturating_sub(*used);
        *used += budget;
        let query = HistoryQuery {
            conv: key,
            after: match range {
                HistoryRange::After(n) => Some(n),
                HistoryRange::Last => None,
            },
            limit: limit.min(page),
            upto: latest,
            max_bytes: budget,
        };
        let token = self.next_token;
        self.next_token += 1;
        self.reads.insert(token, PendingRead::History { conn, id, conv, latest, budget });
        self.open.reads.push((token, Read::History(query)));
    }

    /// A read of the store came back: its request is answered.
    pub(super) fn read_done(&mut self, token: u64, result: Result<ReadResult, StoreFault>) {
        let Some(pending) = self.reads.remove(&token) else { return };
        let (conn, id) = pending.request();
        let counted = matches!(pending, PendingRead::Unread { .. });
        if let PendingRead::History { budget, .. } = &pending
            && let Some(used) = self.reading.get_mut(&conn)
        {
            *used = used.saturating_sub(*budget);
        }
        let out = match (pending, result) {
            (_, Err(e)) => {
                tracing::error!(error = %e, "a read of the store failed");
                let failure = match e {
                    StoreFault::Damaged(_) => {
                        self.damaged = true;
                        super::damaged_failure()
                    }
                    other => Failure::new(other.code()),
                };
                super::Out::Reply { conn, id, result: Err(failure) }
            }
            (PendingRead::History { conv, latest, .. }, Ok(ReadResult::History(page))) => {
                let items =
                    page.events.into_iter().map(|e| Item::Stored(e.renamed(conv))).collect();
                let oldest = page.oldest.unwrap_or(latest + 1);
                let result = Ok(OkReply::History { conv, latest, oldest });
                super::Out::List { conn, id, items, result }
            }
            (PendingRead::Unread { items, counted, .. }, Ok(ReadResult::Unread(counts))) => {
                super::markers::with_counts(conn, id, items, &counted, &counts)
            }
            // The store answers each read with its own kind.
            _ => super::Out::Reply { conn, id, result: Err(Failure::new(ErrorCode::Internal)) },
        };
        self.deliver(out);
        if counted {
            self.next_count(conn);
        }
    }
}

/// [`Hub::resolve_by`] for a group (`rec`, if it exists).
fn resolve_group(
    rec: Option<&GroupRec>,
    user: UserName,
    rule: fn(Reader) -> Result<(), ErrorCode>,
) -> Result<(ConvKey, u64), ErrorCode> {
    rule(match rec {
        None => Reader::NoGroup,
        Some(rec) => Reader::Group(rec.group.role_of(&user)),
    })?;
    let rec = rec.ok_or(ErrorCode::NoSuchGroup)?;
    Ok((ConvKey::Group(rec.group.id()), rec.latest))
}

/// The sessions of a group's members: remembered in the group while the sessions
/// epoch stays `epoch` (and its membership the same), else found again and kept.
fn group_readers(rec: &mut GroupRec, users: &HashMap<UserName, User>, epoch: u64) -> Arc<[ConnId]> {
    match &rec.fanout {
        Some(f) if f.epoch == epoch => f.to.clone(),
        _ => {
            let to: Arc<[ConnId]> = rec
                .group
                .members()
                .filter_map(|(m, _)| users.get(&m))
                .flat_map(|u| u.sessions.iter())
                .collect();
            rec.fanout = Some(Fanout { epoch, to: to.clone() });
            to
        }
    }
}
