//! Read markers (SPEC.md 6.8): READ moves a user's marker of a conversation, their
//! other sessions hear of it, and `CONVERSATIONS read` answers each marker with the
//! count of unread events after it, counted by the store. The rules — who may READ,
//! where a marker moves, what is unread and how far the count looks — are
//! [`baatkaro_proto::rules`]'.

use std::sync::Arc;

use baatkaro_proto::rules::{self, ReadOutcome};
use baatkaro_proto::session::RequestId;
use baatkaro_proto::{
    Conversation, ErrorCode, Event, Failure, Item, ListVerb, Millis, OkReply, Seq, ServerFrame,
    UserName,
};

use super::groups::Req;
use super::{Hub, Out, PendingRead};
use crate::output::ConnId;
use crate::store::{ConvKey, Read, UnreadQuery, UnreadRange, Write};

impl Hub {
    /// `user`'s read marker of a conversation (0: none).
    pub(super) fn marker(&self, user: &UserName, conv: &ConvKey) -> Seq {
        self.markers.get(conv).and_then(|m| m.get(user)).copied().unwrap_or(0)
    }

    /// READ: moves the marker if it goes forward, stores it, and tells the user's
    /// other sessions; the reply says where the marker is.
    pub(super) fn read(
        &mut self,
        (conn, id): Req,
        user: UserName,
        conv: Conversation,
        asked: Seq,
        now: Millis,
    ) {
        let resolved = self.resolve(user, conv);
        let (marker, latest) = match &resolved {
            Ok((key, latest)) => (self.marker(&user, key), *latest),
            Err(_) => (0, 0),
        };
        let Some(u) = self.users.get_mut(&user) else { return };
        let reader = resolved.map(|(key, _)| key);
        let checked = reader.map(|_| ());
        let outcome = match self.rules.read(checked, marker, asked, latest, &mut u.budget, now) {
            Ok(outcome) => outcome,
            Err(failure) => return self.reply(conn, id, Err(failure)),
        };
        self.reply(conn, id, Ok(OkReply::Read { conv, seq: outcome.marker() }));
        let (ReadOutcome::Moves(seq), Ok(key)) = (outcome, reader) else { return };
        self.markers.entry(key).or_default().insert(user, seq);
        self.write(Write::ReadMarker { user, conv: key, seq });
        // Every other session of the user, so that each device agrees; not the one
        // that sent it, whose reply says as much.
        let others: Arc<[ConnId]> = self
            .users
            .get(&user)
            .map(|u| u.sessions.iter().filter(|c| *c != conn).collect())
            .unwrap_or_default();
        if !others.is_empty() {
            let frame = self.arena.encode(&ServerFrame::Event(Event::ReadMarker { conv, seq }));
            self.frame_to(others, frame, None);
        }
    }

    /// `CONVERSATIONS read`: the items of CONVERSATIONS with each marker, and the
    /// unread counts, which the store makes once the open batch is durable (so that
    /// they see every event numbered before). A connection has one count at the
    /// store at a time; the next waits its turn (the session keeps the replies in
    /// order whenever they come).
    pub(super) fn list_conversations_marked(&mut self, (conn, id): Req, user: UserName) {
        if let Some(waiting) = self.counting.get_mut(&conn) {
            waiting.push_back((id, user));
            return;
        }
        self.count_unread((conn, id), user);
    }

    /// Makes the items of a `CONVERSATIONS read` and asks the store for its counts,
    /// or answers at once when nothing follows any marker.
    fn count_unread(&mut self, (conn, id): Req, user: UserName) {
        let mut items = Vec::new();
        let mut counted = Vec::new();
        let mut convs = Vec::new();
        for (conv, key, latest) in self.conversations_of(user) {
            let read = self.marker(&user, &key);
            if let Some((after, upto)) = rules::unread_range(read, latest) {
                counted.push(items.len());
                convs.push(UnreadRange { conv: key, after, upto });
            }
            items.push(Item::ConversationMarked { conv, latest, read, unread: 0 });
        }
        if convs.is_empty() {
            return self.list(conn, id, ListVerb::Conversations, items);
        }
        let token = self.next_token;
        self.next_token += 1;
        self.counting.entry(conn).or_default();
        self.reads.insert(token, PendingRead::Unread { conn, id, items, counted });
        self.open.reads.push((token, Read::Unread(UnreadQuery { reader: user, convs })));
    }

    /// A connection's count came back: the next ones it sent take their turn, until
    /// one goes to the store.
    pub(super) fn next_count(&mut self, conn: ConnId) {
        let Some(mut waiting) = self.counting.remove(&conn) else { return };
        while let Some((id, user)) = waiting.pop_front() {
            self.count_unread((conn, id), user);
            if let Some(queue) = self.counting.get_mut(&conn) {
                // It went to the store: the rest wait behind it.
                queue.extend(waiting);
                return;
            }
            // Answered at once (nothing to count): the next takes its turn.
        }
    }

    /// A user is no longer a member of a group: their marker of it goes.
    pub(super) fn forget_marker(&mut self, user: UserName, conv: ConvKey) {
        let Some(readers) = self.markers.get_mut(&conv) else { return };
        let had = readers.remove(&user).is_some();
        if readers.is_empty() {
            self.markers.remove(&conv);
        }
        if had {
            self.write(Write::ReadMarkerGone { user, conv });
        }
    }

    /// A group is deleted: its markers go from memory (the store deletes them with
    /// the group).
    pub(super) fn forget_markers_of_conv(&mut self, conv: &ConvKey) {
        self.markers.remove(conv);
    }

    /// An account is deleted: its markers go from memory (the store deletes them
    /// with the account). Its groups' markers went as it left them.
    pub(super) fn forget_markers_of_user(&mut self, user: UserName, peers: &[UserName]) {
        for peer in peers {
            let key = ConvKey::direct(user, *peer);
            if let Some(readers) = self.markers.get_mut(&key) {
                readers.remove(&user);
                if readers.is_empty() {
                    self.markers.remove(&key);
                }
            }
        }
    }
}

/// The reply to a `CONVERSATIONS read` once the store counted: each count goes into
/// its item, in the order of the query's ranges.
pub(super) fn with_counts(
    conn: ConnId,
    id: RequestId,
    mut items: Vec<Item>,
    counted: &[usize],
    counts: &[u64],
) -> Out {
    if counted.len() != counts.len() {
        let result = Err(Failure::new(ErrorCode::Internal));
        return Out::Reply { conn, id, result };
    }
    for (&i, &n) in counted.iter().zip(counts) {
        if let Some(Item::ConversationMarked { unread, .. }) = items.get_mut(i) {
            *unread = n;
        }
    }
    let result = Ok(OkReply::Listed { verb: ListVerb::Conversations, count: items.len() as u64 });
    Out::List { conn, id, items, result }
}
