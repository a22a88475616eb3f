//! The client's end of a connection, sans IO: tags requests, encodes them, and
//! routes what the server sends back — each list item and final reply to the
//! request with its tag, each untagged event to the application — and remembers
//! what a client needs to resume after a reconnect.
//!
//! The contract is the one of the server's machines: after every input
//! ([`ClientSession::request`], [`ClientSession::handle_input`] or
//! [`ClientSession::handle_frame`]), drain [`ClientSession::poll_transmit`],
//! [`ClientSession::poll_answer`] and [`ClientSession::poll_event`] until each
//! returns `None`. The session never reads a clock and never touches a socket:
//! `baatkaro-client` drives it over TCP or TLS, and the server's tests drive it
//! over their own sockets.
//!
//! ```
//! use baatkaro_proto::client::ClientSession;
//! use baatkaro_proto::{Command, OkReply, ServerFrame};
//!
//! let mut session = ClientSession::new();
//! let tag = session.request(Command::Ping);
//! let bytes: Vec<u8> = std::iter::from_fn(|| session.poll_transmit()).flatten().collect();
//! assert_eq!(bytes, format!("{tag} PING\r\n").into_bytes());
//!
//! session.handle_input(format!("* PRESENCE bob online\r\n{tag} OK PING\r\n").as_bytes());
//! assert!(session.poll_event().is_some());
//! let (answered, answer) = session.poll_answer().unwrap();
//! assert_eq!(answered, tag);
//! assert!(answer.items.is_empty() && answer.result.is_ok());
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::{
    Command, DecodeError, Event, Failure, Item, OkReply, Request, Seq, ServerFrame,
    ServerFrameDecoder, StoredEvent, Tag,
};
use crate::{Conversation, UserName};

/// The most octets of list items one answer may hold before the session gives up
/// on the server (64 MiB). A server within its advertised limits stays far below:
/// a HISTORY page fits its connection's `queue`, a FILE-GET returns what was asked.
pub const ANSWER_BYTES_MAX: usize = 64 << 20;

/// A request's answer: its list items, in order, and its final reply.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Answer {
    /// The items the server sent before its final reply.
    pub items: Vec<Item>,
    /// `OK` and what it says, or `ERR` and why.
    pub result: Result<OkReply, Failure>,
    /// The items passed [`ANSWER_BYTES_MAX`]: those after the bound were dropped,
    /// and `items` is not the whole answer. The connection goes on.
    pub truncated: bool,
}

/// Why the session stopped: the server broke the protocol.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A frame could not be read, and the stream cannot be resynchronised.
    #[error("the server sent a frame that cannot be read: {0}")]
    Undecodable(DecodeError),
}

/// A request waiting for its final reply.
#[derive(Debug)]
struct Pending {
    items: Vec<Item>,
    /// The items' size on the wire, roughly: what [`ANSWER_BYTES_MAX`] bounds.
    bytes: usize,
    truncated: bool,
}

/// One connection's client side: requests out, answers and events in.
#[derive(Debug)]
pub struct ClientSession {
    decoder: ServerFrameDecoder,
    next_tag: u64,
    pending: HashMap<Tag, Pending>,
    transmit: VecDeque<Bytes>,
    answers: VecDeque<(Tag, Answer)>,
    events: VecDeque<Event>,
    /// The newest sequence number seen of each conversation: in events, HISTORY
    /// items and SEND replies. Where a reconnect catches up from.
    seen: BTreeMap<Conversation, Seq>,
    user: Option<UserName>,
    bye: Option<Failure>,
    failed: Option<SessionError>,
}

impl Default for ClientSession {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientSession {
    /// A session for a new connection, before HELLO.
    pub fn new() -> Self {
        ClientSession {
            decoder: ServerFrameDecoder::new(crate::PAYLOAD_CEILING),
            next_tag: 1,
            pending: HashMap::new(),
            transmit: VecDeque::new(),
            answers: VecDeque::new(),
            events: VecDeque::new(),
            seen: BTreeMap::new(),
            user: None,
            bye: None,
            failed: None,
        }
    }

    /// Queues a request and returns its tag (`c1`, `c2`, …, unique in the
    /// session). Its bytes come out of [`poll_transmit`](Self::poll_transmit): the
    /// line, then a payload as it was given (a chunk's bytes are not copied).
    pub fn request(&mut self, command: Command) -> Tag {
        let tag = self.fresh_tag();
        let mut head = BytesMut::with_capacity(128);
        let payload = Request { tag, command }.encode_head(&mut head);
        self.transmit.push_back(head.freeze());
        if let Some(payload) = payload {
            if !payload.is_empty() {
                self.transmit.push_back(payload);
            }
            self.transmit.push_back(Bytes::from_static(b"\r\n"));
        }
        self.pending.insert(tag, Pending { items: Vec::new(), bytes: 0, truncated: false });
        tag
    }

    fn fresh_tag(&mut self) -> Tag {
        let n = self.next_tag;
        self.next_tag += 1;
        // `c` and decimal digits: always a valid tag, at most 21 octets.
        Tag::new(&format!("c{n}")).unwrap_or_else(|_| unreachable!("a valid tag"))
    }

    /// Bytes the server read: decodes every whole frame and routes it. A frame of
    /// a later edition that names a request fails that request; an unknown event
    /// is skipped (SPEC.md 10). After a frame that cannot be resynchronised the
    /// session is [`failed`](Self::failed) and ignores further input.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.decoder.push(bytes);
        while let Some(frame) = self.decoder.next_frame() {
            match frame {
                Ok(frame) => self.handle_frame(frame),
                Err(e) if !e.is_fatal() => {
                    if let Some(tag) = e.tag {
                        self.finish(tag, Err(Failure::new(e.code)));
                    }
                }
                Err(e) => {
                    self.fail(SessionError::Undecodable(e));
                    return;
                }
            }
            if self.failed.is_some() {
                return;
            }
        }
    }

    /// One decoded frame (for a caller that decodes itself).
    pub fn handle_frame(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Item { tag, item } => {
                if let Item::Stored(e) = &item {
                    self.saw(e);
                }
                let Some(p) = self.pending.get_mut(&tag) else { return };
                p.bytes = p.bytes.saturating_add(item_size(&item));
                // Past the bound the items are dropped, not the connection: the
                // request fails alone, and nothing is asked again.
                if p.bytes > ANSWER_BYTES_MAX {
                    p.truncated = true;
                } else {
                    p.items.push(item);
                }
            }
            ServerFrame::Ok { tag, reply } => {
                match &reply {
                    OkReply::Login { user }
                    | OkReply::Register { user }
                    | OkReply::Auth { user } => {
                        self.user = Some(*user);
                    }
                    OkReply::Send { conv, seq, .. } => self.saw_seq(*conv, *seq),
                    _ => {}
                }
                self.finish(tag, Ok(reply));
            }
            ServerFrame::Err { tag, failure } => self.finish(tag, Err(failure)),
            ServerFrame::Event(event) => {
                match &event {
                    Event::Stored(e) => self.saw(e),
                    Event::Bye(f) => self.bye = Some(f.clone()),
                    _ => {}
                }
                self.events.push_back(event);
            }
        }
    }

    fn finish(&mut self, tag: Tag, result: Result<OkReply, Failure>) {
        // A reply to a tag never sent (or answered already) is dropped: it can
        // only be the server's mistake, and it names no one waiting.
        if let Some(p) = self.pending.remove(&tag) {
            self.answers
                .push_back((tag, Answer { items: p.items, result, truncated: p.truncated }));
        }
    }

    fn saw(&mut self, e: &StoredEvent) {
        self.saw_seq(e.conv(), e.seq());
    }

    fn saw_seq(&mut self, conv: Conversation, seq: Seq) {
        let newest = self.seen.entry(conv).or_insert(0);
        *newest = (*newest).max(seq);
    }

    fn fail(&mut self, why: SessionError) {
        // Whatever was half received is of no use.
        self.failed = Some(why);
        self.pending.clear();
    }

    /// The next bytes to write, in order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The next request answered: its tag and answer.
    #[must_use]
    pub fn poll_answer(&mut self) -> Option<(Tag, Answer)> {
        self.answers.pop_front()
    }

    /// The next untagged event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The connection ended: every request still waiting is forgotten, and its tag
    /// returned (in no order), so that its caller can be told. Whether the server
    /// carried it out is unknown; an idempotent one may be sent again on a new
    /// connection ([`Command::is_idempotent`]).
    pub fn close(&mut self) -> Vec<Tag> {
        self.pending.drain().map(|(tag, _)| tag).collect()
    }

    /// How many events wait for [`poll_event`](Self::poll_event): a caller that
    /// holds them back for a while (while it catches up) bounds them with this.
    pub fn events_waiting(&self) -> usize {
        self.events.len()
    }

    /// Whether a request with this tag still waits for its final reply.
    pub fn is_pending(&self, tag: Tag) -> bool {
        self.pending.contains_key(&tag)
    }

    /// The newest sequence number seen of each conversation, in events, HISTORY
    /// items and SEND replies: where catching up after a reconnect starts.
    pub fn seen(&self) -> &BTreeMap<Conversation, Seq> {
        &self.seen
    }

    /// Who the session logged in as (REGISTER, LOGIN or AUTH answered OK).
    pub fn user(&self) -> Option<UserName> {
        self.user
    }

    /// The server's BYE, once it sent one: why it is closing the connection.
    pub fn bye(&self) -> Option<&Failure> {
        self.bye.as_ref()
    }

    /// Why the session gave up on the server, if it did.
    pub fn failed(&self) -> Option<&SessionError> {
        self.failed.as_ref()
    }
}

/// An item's size for [`ANSWER_BYTES_MAX`]: its payload, which is what can be
/// large, and a line's worth for the rest.
fn item_size(item: &Item) -> usize {
    const LINE: usize = 128;
    LINE + match item {
        Item::Chunk { data, .. } => data.len(),
        Item::Stored(StoredEvent::Message { text, .. }) => text.as_str().len(),
        Item::Request { reason: Some(r), .. } => r.as_str().len(),
        Item::Token { label, .. } => label.as_str().len(),
        _ => 0,
    }
}

/// How long a client waits before its next attempt to reconnect (SPEC.md 9), in
/// milliseconds: about one second at the first attempt (`attempt` 0), doubling
/// each time up to about a minute, spread by `jitter` (0 to 1,000, from the
/// caller's randomness: 0 waits the least, 1,000 half as long again), and never
/// less than the `retry=` of the server's last BYE — up to [`RETRY_HINT_MAX`], so
/// that a hostile hint cannot put a client to sleep for good.
pub fn reconnect_delay(attempt: u32, server_retry: Option<u64>, jitter: u64) -> u64 {
    const FIRST: u64 = 1_000;
    const CAP: u64 = 60_000;
    let base = FIRST.saturating_mul(1u64 << attempt.min(16)).min(CAP);
    let spread = base / 2 * jitter.min(1_000) / 1_000;
    (base + spread).max(server_retry.unwrap_or(0).min(RETRY_HINT_MAX))
}

/// The longest a server's `retry=` hint makes a reconnecting client wait: an hour.
pub const RETRY_HINT_MAX: u64 = 3_600_000;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{ErrorCode, Text};

    fn bytes(session: &mut ClientSession) -> Vec<u8> {
        std::iter::from_fn(|| session.poll_transmit()).flatten().collect()
    }

    #[test]
    fn items_go_to_their_request_and_events_to_the_application() {
        let mut s = ClientSession::new();
        let a = s.request(Command::Groups);
        let b = s.request(Command::Ping);
        assert_eq!(bytes(&mut s), b"c1 GROUPS\r\nc2 PING\r\n");
        s.handle_input(b"c1 GROUP rust owner approval 3 42\r\n* PRESENCE bob online\r\n");
        s.handle_input(b"c1 OK GROUPS 1\r\nc2 ERR RATE_LIMITED retry=5\r\n");
        let (tag, answer) = s.poll_answer().unwrap();
        assert_eq!((tag, answer.items.len()), (a, 1));
        assert_eq!(
            answer.result.unwrap(),
            OkReply::Listed { verb: crate::ListVerb::Groups, count: 1 }
        );
        let (tag, answer) = s.poll_answer().unwrap();
        assert_eq!(tag, b);
        assert_eq!(answer.result.unwrap_err().code, ErrorCode::RateLimited);
        assert!(matches!(s.poll_event(), Some(Event::Presence { .. })));
        assert_eq!((s.poll_answer(), s.poll_event()), (None, None));
    }

    #[test]
    fn a_payload_is_written_after_its_line() {
        let mut s = ClientSession::new();
        let key = "k-1".parse().unwrap();
        let to = "#rust".parse().unwrap();
        s.request(Command::Send { to, key, text: Text::new("hi").unwrap() });
        assert_eq!(bytes(&mut s), b"c1 SEND #rust k-1 {2}\r\nhi\r\n");
    }

    #[test]
    fn it_remembers_the_newest_seq_of_each_conversation_and_who_logged_in() {
        let mut s = ClientSession::new();
        let login = s.request(Command::Login {
            user: "alice".parse().unwrap(),
            password: crate::Password::new("pw-alice-1").unwrap(),
        });
        s.handle_input(format!("{login} OK LOGIN alice\r\n").as_bytes());
        s.handle_input(b"* MSG #rust 7 1764072100000 bob {2}\r\nhi\r\n");
        s.handle_input(b"* MSG #rust 5 1764072100000 bob {2}\r\nhi\r\n");
        let h = s.request(Command::Conversations);
        s.handle_input(format!("{h} OK CONVERSATIONS 0\r\n").as_bytes());
        let send = s.request(Command::Send {
            to: "@bob".parse().unwrap(),
            key: "k".parse().unwrap(),
            text: Text::new("x").unwrap(),
        });
        s.handle_input(format!("{send} OK SEND @bob 3 5\r\n").as_bytes());
        assert_eq!(s.user(), Some("alice".parse().unwrap()));
        let seen: Vec<_> = s.seen().iter().map(|(c, n)| (c.to_string(), *n)).collect();
        assert_eq!(seen, [("#rust".to_string(), 7), ("@bob".to_string(), 3)]);
    }

    #[test]
    fn garbage_fails_the_session_and_forgets_every_request() {
        let mut s = ClientSession::new();
        let tag = s.request(Command::Groups);
        // A payload not followed by CRLF: nothing after it can be trusted.
        s.handle_input(b"* MSG #rust 1 1764072100000 bob {2}\r\nhiXX");
        assert!(matches!(s.failed(), Some(SessionError::Undecodable(_))));
        assert!(!s.is_pending(tag));
        assert_eq!(s.poll_answer(), None);
    }

    #[test]
    fn an_answer_past_its_bound_is_cut_and_marked_and_the_session_goes_on() {
        let mut s = ClientSession::new();
        let tag = s.request(Command::FileGet { file: "f1".parse().unwrap(), offset: 0, length: 0 });
        let chunk = vec![b'a'; 1 << 20];
        for i in 0..64u64 {
            let head = format!("{tag} CHUNK f1 {} {{{}}}\r\n", i << 20, chunk.len());
            s.handle_input(head.as_bytes());
            s.handle_input(&chunk);
            s.handle_input(b"\r\n");
        }
        s.handle_input(format!("{tag} OK FILE-GET f1 0 {}\r\n", 64u64 << 20).as_bytes());
        let (_, answer) = s.poll_answer().unwrap();
        assert!(answer.truncated && answer.items.len() < 64, "{}", answer.items.len());
        assert_eq!(s.failed(), None);
        let ping = s.request(Command::Ping);
        s.handle_input(format!("{ping} OK PING\r\n").as_bytes());
        assert!(!s.poll_answer().unwrap().1.truncated);
    }

    #[test]
    fn only_what_is_safe_to_repeat_is_idempotent() {
        let file = "f1".parse().unwrap();
        let to = "#rust".parse().unwrap();
        let text = Text::new("x").unwrap();
        assert!(Command::Send { to, key: "k".parse().unwrap(), text }.is_idempotent());
        assert!(Command::FileCommit { file }.is_idempotent());
        assert!(Command::Read { conv: to, seq: 3 }.is_idempotent());
        let offer = Command::FileOffer {
            to,
            size: 1,
            sha256: crate::Sha256([0; 32]),
            name: crate::OfferName::new("a.txt").unwrap(),
        };
        assert!(!offer.is_idempotent(), "a second offer shares the file again");
        let kick = Command::Kick {
            group: "rust".parse().unwrap(),
            user: "bob".parse().unwrap(),
            ban: false,
        };
        assert!(!kick.is_idempotent());
        assert!(!Command::Logout { revoke: false }.is_idempotent());
    }

    #[test]
    fn close_names_what_was_left_unanswered() {
        let mut s = ClientSession::new();
        let a = s.request(Command::Groups);
        let b = s.request(Command::Ping);
        s.handle_input(format!("{b} OK PING\r\n").as_bytes());
        assert_eq!(s.close(), vec![a]);
    }

    #[test]
    fn reconnecting_backs_off_from_a_second_to_a_minute_and_honours_the_server() {
        assert_eq!(reconnect_delay(0, None, 0), 1_000);
        assert_eq!(reconnect_delay(0, None, 1_000), 1_500);
        assert_eq!(reconnect_delay(1, None, 0), 2_000);
        assert_eq!(reconnect_delay(5, None, 0), 32_000);
        assert_eq!(reconnect_delay(6, None, 0), 60_000);
        assert_eq!(reconnect_delay(u32::MAX, None, 1_000), 90_000);
        assert_eq!(reconnect_delay(0, Some(5_000), 0), 5_000);
        assert_eq!(reconnect_delay(3, Some(5_000), 0), 8_000);
        assert_eq!(reconnect_delay(0, Some(u64::MAX), 0), RETRY_HINT_MAX);
    }
}
