//! The connection session: the server side of one connection, as a sans-IO state
//! machine in the manner of quinn-proto.
//!
//! Inputs are `handle_*` calls: [`Session::handle_input`] with received bytes (or
//! [`Session::handle_received`] after reading straight into
//! [`Session::receive_buffer`]), [`Session::handle_written`] when bytes reached the
//! socket, [`Session::handle_timeout`] when the deadline from
//! [`Session::poll_timeout`] has passed, and [`Session::reply`] / [`Session::item`] /
//! [`Session::send_event`] from the application. Outputs are polled:
//! [`Session::poll_transmit`] (bytes to write, coalesced, whole frames),
//! [`Session::poll_event`] (requests for the application, and the close) and
//! [`Session::poll_timeout`] (the next deadline).
//!
//! **The drive-loop contract:** after every input, drain every `poll_*` until it
//! returns `None`, then wait for the next input or until `poll_timeout()`. Time is
//! always a parameter (`now`, in milliseconds); the session never reads a clock.
//!
//! The session keeps the protocol's per-connection rules (SPEC.md sections 3 and 4):
//! the handshake and which commands each state allows, PING, LOGOUT, the idle timeout
//! and the login deadline, framing errors and their replies, the frame budget, that
//! every request gets exactly one final reply, in request order, with its items never
//! interleaved with another's, and that no more than `queue` bytes wait for the client
//! to read them, whoever made them (section 5.4). The application answers the requests
//! it is handed in any order; the session releases the answers in order.

mod state;

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

pub use state::SessionState;

use crate::codec::{Encode, RequestDecoder};
use crate::command::{Command, Request, Verb};
use crate::delivery::RateBudget;
use crate::error::ErrorCode;
use crate::event::{Event, Failure};
use crate::limits::Limits;
use crate::reply::{DoneVerb, Item, OkReply, ServerFrame};
use crate::types::{Features, Millis, Note, Software, Tag, UserName};

/// The payload limit before the handshake has completed (SPEC.md section 2.3).
pub const PRE_HELLO_PAYLOAD: u64 = 65_536;

/// Output is handed to the socket in pieces of about this size, each a run of whole
/// frames. When a slow consumer is dropped, only the pieces already handed out by
/// [`Session::poll_transmit`] are finished before its BYE (one, or the few that
/// baatkaro-server writes together, about this many bytes): the rest of the backlog
/// is discarded, so that the BYE fits in what the socket can still take.
pub const PIECE: usize = 64 * 1024;

/// A piece being filled that holds this many bytes or more is sealed, rather than
/// grown, when the next output does not fit in it: growing a buffer copies all of
/// it, and at saturation that copying took more than the frames' own. A session
/// whose output is all written keeps no buffer larger than this.
pub const SEAL_AT: usize = 16 * 1024;

/// Identifies a request handed to the application, for its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What the server offers: advertised in the HELLO reply and enforced here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// The server software, e.g. `baatkaro-server/0.1.0`.
    pub software: Software,
    /// The optional features offered.
    pub features: Features,
    /// Every limit.
    pub limits: Limits,
    /// How fast the client may send frames.
    pub frames: FrameBudget,
}

/// How many frames a connection may send: `burst` at once, then `rate` a second.
/// Frames beyond it wait in the socket (the session stops decoding and asks not to be
/// read until its deadline, [`Session::poll_timeout`]), so TCP slows the client down;
/// nothing is failed for it (SPEC.md section 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameBudget {
    /// Frames per second, sustained (at least 1 is assumed).
    pub rate: u64,
    /// Frames in a burst (at least 1 is assumed).
    pub burst: u64,
}

impl Default for FrameBudget {
    /// The reference server's default: 20,000 frames a second, 40,000 in a burst.
    fn default() -> Self {
        FrameBudget { rate: 20_000, burst: 40_000 }
    }
}

/// The most requests [`Session::take_requests`] leaves room for in the queue it
/// starts afresh (about 150 bytes each).
const REQUESTS_ROOM: usize = 32;

/// Something the application must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// A request the application must answer with [`Session::reply`] (after any
    /// [`Session::item`]s). It is allowed in the session's state.
    Request {
        /// Its id, for the answer.
        id: RequestId,
        /// What the client asks; never HELLO or PING, which the session answers, nor
        /// LOGOUT, except a logged-in session's LOGOUT revoke (whose OK ends it).
        command: Command,
    },
    /// The session logged in as this user (the application's own LOGIN, REGISTER or AUTH
    /// answer said so).
    LoggedIn {
        /// The user.
        user: UserName,
    },
    /// The session is over: its last bytes are in `poll_transmit`, then close the
    /// connection. `reason` is `None` after LOGOUT.
    Closed {
        /// Why, if not LOGOUT.
        reason: Option<ErrorCode>,
    },
}

/// One request that has no final reply on the wire yet.
#[derive(Debug)]
struct Pending {
    id: RequestId,
    tag: Tag,
    verb: Verb,
    /// Encoded items, held until the request is at the head of the queue.
    items: BytesMut,
    /// The encoded final reply, once the application gave it.
    done: Option<Bytes>,
    /// What to do once the final reply is on the wire.
    after: After,
    /// Frames the request caused for this session, sent right after its final reply.
    trailer: BytesMut,
    /// Chunk payload bytes the request carries, until its final reply is given.
    carried: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    LogIn(UserName),
    Close(Option<ErrorCode>),
}

/// The server side of one connection.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: SessionState,
    decoder: RequestDecoder,
    /// The piece of output being filled.
    out: BytesMut,
    /// Pieces of output sealed at [`PIECE`] bytes, oldest first.
    ready: VecDeque<Bytes>,
    /// Bytes in `ready`.
    ready_bytes: usize,
    /// Bytes handed out by `poll_transmit` and not yet reported written.
    in_transit: usize,
    /// What the application has to act on other than requests (a login, the close),
    /// and requests that were waiting when one came (see `requests`).
    events: VecDeque<SessionEvent>,
    /// Requests decoded and not yet taken, all of them made after every item of
    /// `events`: an event made while requests wait moves them into `events` first,
    /// so that both come out in the order they were made. Kept apart so that a
    /// shell can take a read's requests as one vector ([`Session::take_requests`])
    /// without moving each of them through the queue of events.
    requests: VecDeque<(RequestId, Command)>,
    pending: VecDeque<Pending>,
    next_id: u64,
    /// When the last frame was received: the idle timer counts frames, not bytes.
    last_input: Millis,
    /// When the last bytes were received.
    last_bytes: Millis,
    /// A LOGOUT or a failed HELLO is queued: nothing after it is read.
    closing: bool,
    /// Bytes of encoded output held in `pending` until their turn.
    held: usize,
    /// Chunk payload bytes of the requests still without a final reply.
    carried: usize,
    /// The latest time an input carried.
    now: Millis,
    /// The frames the client may still send at once.
    frames: RateBudget,
    /// The frame budget ran out: nothing is decoded before this time.
    throttled: Option<Millis>,
    /// When the connection must be logged in by (`None`: no deadline).
    login_deadline: Option<Millis>,
    /// A LOGIN, REGISTER or AUTH was handed on at this time and awaits its answer: the
    /// login deadline does not run meanwhile (the hash is the server's time).
    login_paused: Option<Millis>,
    /// A LOGOUT revoke or DELETE-ACCOUNT awaits its answer: nothing after it is read
    /// until it is known whether the session ends (a refused DELETE-ACCOUNT goes on).
    ending: bool,
}

impl Session {
    /// A new session for a connection accepted at `now`.
    pub fn new(config: SessionConfig, now: Millis) -> Self {
        let login = config.limits.login;
        let login_deadline = (login > 0).then(|| now.saturating_add(login.saturating_mul(1000)));
        let frames = RateBudget::new(config.frames.burst.max(1), now);
        Session {
            config,
            state: SessionState::Greeting,
            decoder: RequestDecoder::new(PRE_HELLO_PAYLOAD),
            out: BytesMut::new(),
            ready: VecDeque::new(),
            ready_bytes: 0,
            in_transit: 0,
            events: VecDeque::new(),
            // Room for HELLO and LOGIN sent together: grown from nothing, each queue
            // would take room for four (a few hundred bytes each) and keep it for the
            // life of a quiet connection.
            requests: VecDeque::with_capacity(2),
            pending: VecDeque::with_capacity(2),
            next_id: 0,
            last_input: now,
            last_bytes: now,
            closing: false,
            held: 0,
            carried: 0,
            now,
            frames,
            throttled: None,
            login_deadline,
            login_paused: None,
            ending: false,
        }
    }

    /// The session's state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<UserName> {
        match self.state {
            SessionState::LoggedIn(user) => Some(user),
            _ => None,
        }
    }

    /// Whether the session is over: nothing more is read, and once
    /// [`Session::poll_transmit`] returns `None` the connection can be closed.
    pub fn is_closed(&self) -> bool {
        self.state == SessionState::Closed
    }

    /// Whether the session takes more input: false once it is closed, while a LOGIN,
    /// REGISTER or AUTH awaits its answer (or a LOGOUT revoke or DELETE-ACCOUNT, which
    /// may end the session), while `inflight` requests await their replies,
    /// while those without a final reply carry `queue` bytes of chunk payload or more,
    /// while half of `queue` or more waits for the client to read it, and while the
    /// frame budget is spent (stop reading the socket then; TCP slows the client
    /// down, and what it sends waits in the socket, not in the server).
    pub fn wants_input(&self) -> bool {
        self.state != SessionState::Closed
            && !self.closing
            && self.throttled.is_none()
            && self.login_paused.is_none()
            && !self.ending
            && (self.pending.len() as u64) < self.config.limits.inflight
            && (self.carried as u64) < self.config.limits.queue
            && (self.queued() as u64) < self.config.limits.queue / 2
    }

    /// How many bytes of output are on their way to the client: queued or handed
    /// out and not yet written, not counting replies held back for the reply order.
    pub fn unsent(&self) -> usize {
        self.out.len() + self.ready_bytes + self.in_transit
    }

    /// Bytes of memory the session holds for output it has not handed out yet: the
    /// piece being filled, with its spare room, and the sealed pieces (for memory
    /// accounting; what [`Session::poll_transmit`] handed out is the caller's). While
    /// a piece is out, the piece being filled may be the rest of its buffer, whose
    /// room is all it sees of that buffer: the buffer is let go of, or seen whole,
    /// once all is written ([`Session::handle_written`]).
    pub fn output_memory(&self) -> usize {
        self.out.capacity() + self.ready_bytes
    }

    /// Whether a long reply streamed piece by piece (a download's chunks) may add its
    /// next piece now: `id` is the next request to be answered (so its pieces are not
    /// held behind earlier replies), and less than half of `queue` is on its way to
    /// the client (replies held behind it do not count: they wait for it). With
    /// pieces of at most half the queue, a download never makes its own reader a slow
    /// consumer.
    pub fn may_stream(&self, id: RequestId) -> bool {
        self.is_next(id) && (self.unsent() as u64) < self.config.limits.queue / 2
    }

    /// How many bytes of output wait for the client: queued, held back for the reply
    /// order, or handed out by [`Session::poll_transmit`] and not yet reported
    /// written. Past `queue` the session closes as a slow consumer.
    pub fn queued(&self) -> usize {
        self.out.len() + self.ready_bytes + self.in_transit + self.held
    }

    /// Whether `id` is the oldest request still without its final reply: what it
    /// adds now goes out at once instead of being held for the reply order. A server
    /// streaming a long reply (a download) waits for this, so that it never holds
    /// more than its share of output.
    pub fn is_next(&self, id: RequestId) -> bool {
        self.pending.front().is_some_and(|p| p.id == id)
    }

    /// Whether [`Session::poll_event`] has something: answers can let frames that
    /// waited in the decoder through, so whoever answers learns that the connection's
    /// driver has requests to pick up.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || !self.requests.is_empty()
    }

    /// Bytes received from the client at `now`.
    pub fn handle_input(&mut self, bytes: &[u8], now: Millis) {
        if self.state == SessionState::Closed {
            return;
        }
        self.decoder.push(bytes);
        self.handle_received(now);
    }

    /// The receive buffer, for reading the socket straight into it (append only;
    /// then call [`Session::handle_received`]). Read into it only while
    /// [`Session::wants_input`], and reserve room first: the session holds no more
    /// than one line, or one line and one payload, beyond what it was given.
    pub fn receive_buffer(&mut self) -> &mut BytesMut {
        self.decoder.buffer_mut()
    }

    /// Lets go of a receive buffer far larger than reads of `room` need, between
    /// frames ([`Decoder::release`](crate::Decoder::release)): for a connection gone
    /// quiet after large reads, before the next reservation. Whether it let go.
    pub fn release_receive_buffer(&mut self, room: usize) -> bool {
        self.decoder.release(room)
    }

    /// Bytes were appended to [`Session::receive_buffer`] at `now`.
    pub fn handle_received(&mut self, now: Millis) {
        self.advance(now);
        if self.state == SessionState::Closed {
            return;
        }
        self.last_bytes = now;
        self.decode();
    }

    /// `n` bytes of what [`Session::poll_transmit`] handed out reached the socket.
    ///
    /// Let go of what was written first: the piece being filled is cut from the
    /// same buffer as the pieces handed out, and while one of them is still held the
    /// session cannot tell how large that buffer is, nor let go of it.
    pub fn handle_written(&mut self, n: usize) {
        self.in_transit = self.in_transit.saturating_sub(n);
        // Everything is written: a connection gone quiet after a burst does not keep
        // a burst's buffer. What is left of a buffer after a piece was cut from it
        // reports only its own room (none, when a reservation was filled exactly),
        // however large the buffer it keeps alive: taking the buffer back whole,
        // without allocating, shows whether it holds more than SEAL_AT.
        if self.unsent() == 0 && self.out.try_reclaim(SEAL_AT + 1) {
            self.out = BytesMut::new();
        }
        // Frames that waited in the decoder while the output was large can go on.
        if self.state != SessionState::Closed && self.decoder.buffered() > 0 {
            self.decode();
        }
    }

    /// The deadline from [`Session::poll_timeout`] has passed (or may have: a call
    /// before it does nothing).
    pub fn handle_timeout(&mut self, now: Millis) {
        self.advance(now);
        if self.state == SessionState::Closed {
            return;
        }
        if self.login_expired() {
            return self.bye(Failure::new(ErrorCode::LoginTimeout), ErrorCode::LoginTimeout);
        }
        if now >= self.idle_deadline() {
            return self.bye(Failure::new(ErrorCode::IdleTimeout), ErrorCode::IdleTimeout);
        }
        if self.throttled.is_some_and(|until| now >= until) {
            self.throttled = None;
            self.decode();
        }
    }

    /// Closes the session for a reason of the server's (shutting down, say): a BYE
    /// with this failure is the last frame, after what is queued already. Unless
    /// the reason is `SLOW_CONSUMER` (the server found the connection's backlog too
    /// large somewhere the session does not see, such as what waits to be applied
    /// to it): then, as when the session finds it so itself, the backlog not yet
    /// handed out ([`Session::poll_transmit`]) is dropped and the BYE comes right
    /// after what is being written (SPEC.md section 5.4).
    pub fn close(&mut self, failure: Failure) {
        if self.state != SessionState::Closed {
            let code = failure.code;
            if code == ErrorCode::SlowConsumer {
                self.drop_backlog();
            }
            self.bye(failure, code);
        }
    }

    /// Adds an item to a request's reply. Items of a request that is not yet at the
    /// head of the reply order are held back, so replies never interleave.
    pub fn item(&mut self, id: RequestId, item: &Item) {
        if let Some(p) = self.pending.iter_mut().find(|p| p.id == id && p.done.is_none()) {
            let before = p.items.len();
            ServerFrame::Item { tag: p.tag, item: item.clone() }.encode(&mut p.items);
            self.held += p.items.len() - before;
            self.flush();
        }
    }

    /// Answers a request at `now`: its final reply. A successful LOGIN, REGISTER or AUTH
    /// logs the session in; a failure whose code closes the connection (SPEC.md
    /// Appendix C) is the last frame, as its tagged ERR. Unknown or already answered
    /// ids are ignored.
    pub fn reply(&mut self, id: RequestId, result: Result<OkReply, Failure>, now: Millis) {
        self.advance(now);
        let at_head = self.pending.front().is_some_and(|p| p.id == id);
        let Some(p) = self.pending.iter_mut().find(|p| p.id == id && p.done.is_none()) else {
            return;
        };
        if is_login(p.verb)
            && let Some(since) = self.login_paused.take()
        {
            // The server's time spent on this connection's credentials is not the
            // client's: the deadline moves by it.
            let paused = now.saturating_sub(since);
            self.login_deadline = self.login_deadline.map(|d| d.saturating_add(paused));
        }
        if let Ok(OkReply::Login { user } | OkReply::Register { user } | OkReply::Auth { user }) =
            &result
            && is_login(p.verb)
        {
            p.after = After::LogIn(*user);
        }
        if ends_session(p.verb) {
            self.ending = false;
            if result.is_ok() {
                // LOGOUT revoke or DELETE-ACCOUNT, which the application answered: the
                // session ends with its reply.
                p.after = After::Close(None);
                self.closing = true;
            }
        }
        if let Err(failure) = &result
            && failure.code.is_fatal()
        {
            p.after = After::Close(Some(failure.code));
            self.closing = true;
        }
        let frame = match result {
            Ok(reply) => ServerFrame::Ok { tag: p.tag, reply },
            Err(failure) => ServerFrame::Err { tag: p.tag, failure },
        };
        let done = if at_head {
            // Next on the wire: written to the output now, its items first, with no
            // buffer of its own (a pipelining client's replies are almost all so).
            self.held = self.held.saturating_sub(p.items.len());
            let n = p.items.len() + frame.size_hint();
            room(&mut self.out, &mut self.ready, &mut self.ready_bytes, n);
            // Copied and cleared, not split off: splitting a buffer allocates a
            // shared handle for it, even an empty one, once per reply.
            self.out.extend_from_slice(&p.items);
            p.items.clear();
            frame.encode(&mut self.out);
            Bytes::new()
        } else {
            let done = frame.to_bytes();
            self.held += done.len();
            done
        };
        p.done = Some(done);
        self.carried = self.carried.saturating_sub(std::mem::take(&mut p.carried));
        self.flush();
        // Answers free room in flight: frames that waited in the decoder can go on.
        // Only if some wait: with none, decoding finds nothing but costs a budget
        // check, a look at the decoder and a flush (a tenth of a SEND's own time).
        if self.decoder.buffered() > 0 {
            self.decode();
        }
    }

    /// Sends a frame that request `id` caused to this session (its own message, the
    /// group event of its operation) right after the request's final reply, as SPEC.md
    /// section 5.1 requires; at once if that reply is already on the wire.
    pub fn send_encoded_after(&mut self, id: RequestId, frame: &[u8]) {
        if self.state == SessionState::Closed {
            return;
        }
        match self.pending.iter_mut().find(|p| p.id == id) {
            Some(p) => {
                p.trailer.extend_from_slice(frame);
                self.held += frame.len();
            }
            None => {
                self.room(frame.len());
                self.out.extend_from_slice(frame);
            }
        }
        // Nothing it did finishes a reply (a trailer waits for its request's, which
        // would be out already were it done and at the head): only the output's
        // checks are due, not a flush.
        self.after_output();
    }

    /// Sends an untagged event now (events may come between any two frames).
    pub fn send_event(&mut self, event: &Event) {
        if self.state != SessionState::Closed {
            ServerFrame::Event(event.clone()).encode(&mut self.out);
            self.after_output();
        }
    }

    /// Makes room for about `bytes` more output (at most [`PIECE`] beyond the piece
    /// being filled) in one allocation: whoever knows what a batch of frames adds up
    /// to says so before sending them, and the buffer does not grow, copying, frame
    /// by frame.
    ///
    /// Nor does it grow, copying, batch by batch: a piece being filled that lacks
    /// the room is sealed as it is, and the next starts in a buffer of its own
    /// with room for the batch and for twice as much as that piece held (so pieces
    /// stay few). `BytesMut` would grow it in place with `realloc`, copying all its
    /// bytes, and those of the pieces already cut from the same buffer: at 10 groups
    /// × 10 that copying was 2 % of the server's instructions.
    ///
    /// Unless the piece holds fewer bytes than the room left beside it (a batch
    /// reserved more than it brought: the server reserves a line for each reply,
    /// ten times a short one): then those few bytes, fewer than `bytes`, are copied
    /// to the new buffer instead. Sealed, each would keep alive a buffer many times
    /// its size while counted at its size against the queue, and make a slice of a
    /// write — a reply each, for a client that stopped reading at light load. So a
    /// piece sealed here holds at least half the room its buffer gave it.
    pub fn reserve_output(&mut self, bytes: usize) {
        if self.state == SessionState::Closed {
            return;
        }
        let bytes = bytes.min(PIECE);
        self.room(bytes);
        // Taking the buffer back costs nothing when what was cut from it is gone.
        let spare = self.out.capacity() - self.out.len();
        if spare < bytes && !self.out.try_reclaim(bytes) {
            let held = self.out.len();
            let mut next = BytesMut::with_capacity(bytes + 2 * held);
            if held < spare {
                next.extend_from_slice(&self.out);
            } else {
                hand_over(&mut self.out, &mut self.ready, &mut self.ready_bytes);
            }
            self.out = next;
        }
    }

    /// Appends an event already encoded (for fan-out: encode once, send to many).
    pub fn send_encoded(&mut self, frame: &[u8]) {
        if self.state != SessionState::Closed {
            self.room(frame.len());
            self.out.extend_from_slice(frame);
            self.after_output();
        }
    }

    /// The next piece of output to write to the socket: whole frames, coalesced, about
    /// [`PIECE`] bytes (more for a larger frame). Its bytes still count as queued
    /// until [`Session::handle_written`] says they were written.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let piece = match self.ready.pop_front() {
            Some(piece) => {
                self.ready_bytes -= piece.len();
                piece
            }
            None if !self.out.is_empty() => self.out.split().freeze(),
            None => return None,
        };
        self.in_transit += piece.len();
        Some(piece)
    }

    /// The next thing for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front().or_else(|| {
            self.requests.pop_front().map(|(id, command)| SessionEvent::Request { id, command })
        })
    }

    /// How many events [`Session::poll_event`] has ready, requests included.
    #[must_use]
    pub fn events_waiting(&self) -> usize {
        self.events.len() + self.requests.len()
    }

    /// The requests [`Session::poll_event`] would return next, up to `max` of them,
    /// in order, as one vector; empty when something else comes first (then
    /// `poll_event` has it). A shell that hands requests on in batches takes them
    /// so: taken whole, the queue's storage becomes the vector, and no request is
    /// moved on the way (a request is about 150 bytes, and each move of it was a
    /// copy in every SEND's profile).
    #[must_use]
    pub fn take_requests(&mut self, max: usize) -> Vec<(RequestId, Command)> {
        // Nothing to take (the shell takes until nothing comes): the queue keeps
        // the room it has for the next read's requests.
        if !self.events.is_empty() || self.requests.is_empty() {
            return Vec::new();
        }
        if self.requests.len() <= max {
            // The next read is likely to bring as many: room for them now, so that
            // the queue does not grow by copying (up to REQUESTS_ROOM, so that a
            // connection that once pipelined a burst does not keep room for it).
            let room = VecDeque::with_capacity(self.requests.len().min(REQUESTS_ROOM));
            // A queue only pushed to starts at its storage's start, which is what
            // lets the conversion keep every element in place.
            return Vec::from(std::mem::replace(&mut self.requests, room));
        }
        self.requests.drain(..max).collect()
    }

    /// Queues `event` behind the requests already waiting.
    fn push_event(&mut self, event: SessionEvent) {
        let waiting = self.requests.drain(..);
        self.events.extend(waiting.map(|(id, command)| SessionEvent::Request { id, command }));
        self.events.push_back(event);
    }

    /// When [`Session::handle_timeout`] must be called next: the idle deadline, the
    /// login deadline while not logged in, or the end of a frame-budget wait.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.state == SessionState::Closed {
            return None;
        }
        let login = self.login_deadline.filter(|_| self.login_runs());
        [Some(self.idle_deadline()), login, self.throttled].into_iter().flatten().min()
    }

    /// Whether the login deadline counts now: not logged in, and no password of its
    /// own being checked.
    fn login_runs(&self) -> bool {
        matches!(self.state, SessionState::Greeting | SessionState::Authenticating)
            && self.login_paused.is_none()
    }

    fn login_expired(&self) -> bool {
        self.login_runs() && self.login_deadline.is_some_and(|d| self.now >= d)
    }

    /// Time moves on (never back).
    fn advance(&mut self, now: Millis) {
        self.now = self.now.max(now);
    }

    /// Whether a LOGIN, REGISTER or AUTH is waiting for the application's answer.
    fn logging_in(&self) -> bool {
        self.login_paused.is_some()
    }

    fn idle_deadline(&self) -> Millis {
        self.last_input.saturating_add(self.config.limits.idle.saturating_mul(1000))
    }

    /// Decodes buffered frames while the in-flight budget allows.
    ///
    /// Also waits while a LOGIN, REGISTER or AUTH awaits its answer: the state the next
    /// request is judged in depends on it.
    fn decode(&mut self) {
        let FrameBudget { rate, burst } = self.config.frames;
        while self.wants_input() && !self.logging_in() {
            // One token a frame, taken once a frame is there (SPEC.md section 3).
            if let Err(wait) = self.frames.check(self.now, rate, burst.max(1)) {
                if self.decoder.buffered() > 0 {
                    self.throttled = Some(self.now.saturating_add(wait));
                }
                break;
            }
            let Some(frame) = self.decoder.next_frame() else { break };
            self.frames.take();
            // The idle timer counts whole frames: a frame trickled forever is idle.
            self.last_input = self.last_bytes;
            match frame {
                Ok(request) => self.request(request),
                Err(e) if e.is_fatal() => {
                    let failure =
                        Failure { code: e.code, retry_after: None, note: Note::lossy(&e.detail) };
                    // Replies already given go out first; only unanswered ones are lost.
                    self.flush();
                    self.bye(failure, e.code);
                }
                Err(e) => {
                    let failure =
                        Failure { code: e.code, retry_after: None, note: Note::lossy(&e.detail) };
                    match e.tag {
                        Some(tag) => self.answer_now(tag, Verb::Ping, Err(failure), After::Nothing),
                        None => ServerFrame::Event(Event::Error(failure)).encode(&mut self.out),
                    }
                }
            }
            // Answers the session made itself leave at once: they neither fill the
            // in-flight budget nor wait unbounded, and each counts against `queue`.
            self.flush();
        }
        self.flush();
    }

    /// Routes one decoded request: answered here, refused for the state, or handed on.
    fn request(&mut self, Request { tag, command }: Request) {
        let verb = command.verb();
        if let Some(code) = self.state.refusal(verb) {
            return self.answer_now(tag, verb, Err(Failure::new(code)), After::Nothing);
        }
        match command {
            Command::Hello { versions, .. } => {
                if versions.as_slice().contains(&crate::PROTOCOL_VERSION) {
                    self.state = SessionState::Authenticating;
                    self.decoder.set_max_payload(self.config.limits.payload);
                    let reply = OkReply::Hello {
                        version: crate::PROTOCOL_VERSION,
                        server: self.config.software,
                        features: self.config.features.clone(),
                        limits: Box::new(self.config.limits.clone()),
                    };
                    self.answer_now(tag, verb, Ok(reply), After::Nothing);
                } else {
                    let code = ErrorCode::UnsupportedVersion;
                    // The note says what would have worked (SPEC.md section 4.2).
                    let note = Note::new(&format!(
                        "this server speaks version {}",
                        crate::PROTOCOL_VERSION
                    ))
                    .ok();
                    let failure = Failure { note, ..Failure::new(code) };
                    self.answer_now(tag, verb, Err(failure), After::Close(Some(code)));
                }
            }
            Command::Ping => self.answer_now(
                tag,
                verb,
                Ok(OkReply::Done { verb: DoneVerb::Ping }),
                After::Nothing,
            ),
            // Only a logged-in session has a token to revoke: the application does
            // that, and answers. Any other LOGOUT is the session's own.
            Command::Logout { revoke } if !revoke || self.user().is_none() => self.answer_now(
                tag,
                verb,
                Ok(OkReply::Done { verb: DoneVerb::Logout }),
                After::Close(None),
            ),
            command => {
                let id = RequestId(self.next_id);
                self.next_id += 1;
                if is_login(verb) {
                    self.login_paused = Some(self.now);
                }
                if ends_session(verb) {
                    // Nothing after a LOGOUT or DELETE-ACCOUNT is read while it awaits
                    // its answer: if it ends the session, what came after it is not
                    // served, as when the session answers a LOGOUT itself.
                    self.ending = true;
                }
                // The application holds a chunk until it answers: count it as in flight.
                let carried = match &command {
                    Command::FileChunk { data, .. } => data.len(),
                    _ => 0,
                };
                self.carried = self.carried.saturating_add(carried);
                self.pending.push_back(Pending {
                    id,
                    tag,
                    verb,
                    items: BytesMut::new(),
                    done: None,
                    after: After::Nothing,
                    trailer: BytesMut::new(),
                    carried,
                });
                self.requests.push_back((id, command));
            }
        }
    }

    /// Queues a reply the session gives itself, in its place in the reply order.
    fn answer_now(&mut self, tag: Tag, verb: Verb, result: Result<OkReply, Failure>, after: After) {
        if matches!(after, After::Close(_)) {
            self.closing = true;
        }
        let frame = match result {
            Ok(reply) => ServerFrame::Ok { tag, reply },
            Err(failure) => ServerFrame::Err { tag, failure },
        };
        let id = RequestId(u64::MAX);
        let done = frame.to_bytes();
        self.held += done.len();
        self.pending.push_back(Pending {
            id,
            tag,
            verb,
            items: BytesMut::new(),
            done: Some(done),
            after,
            trailer: BytesMut::new(),
            carried: 0,
        });
    }

    /// Moves finished replies at the head of the order, and the head's items, to the
    /// output, and acts on what they finish (log in, close).
    fn flush(&mut self) {
        // The usual case after a request is handed on: its head has nothing yet.
        if self.pending.front().is_some_and(|p| p.done.is_none() && p.items.is_empty()) {
            return self.after_output();
        }
        while let Some(head) = self.pending.front_mut() {
            self.held = self.held.saturating_sub(head.items.len());
            let done = head.done.as_ref().map_or(0, |d| d.len() + head.trailer.len());
            let n = head.items.len() + done;
            room(&mut self.out, &mut self.ready, &mut self.ready_bytes, n);
            // Copied and cleared, as in `reply`: no shared handle allocated.
            self.out.extend_from_slice(&head.items);
            head.items.clear();
            let Some(done) = head.done.take() else { break };
            self.held = self.held.saturating_sub(done.len() + head.trailer.len());
            self.out.extend_from_slice(&done);
            self.out.extend_from_slice(&head.trailer);
            let after = head.after;
            self.pending.pop_front();
            match after {
                After::Nothing => {}
                After::LogIn(user) => {
                    self.state = SessionState::LoggedIn(user);
                    self.push_event(SessionEvent::LoggedIn { user });
                }
                After::Close(reason) => {
                    self.finish(reason);
                    return;
                }
            }
        }
        self.after_output();
    }

    /// Makes room for `n` more bytes of output (see [`room`]).
    #[inline]
    fn room(&mut self, n: usize) {
        room(&mut self.out, &mut self.ready, &mut self.ready_bytes, n);
    }

    /// After output was added: seals a full piece, and closes the session as a slow
    /// consumer once more than `queue` bytes wait for the client (SPEC.md section
    /// 5.4) — replies the session makes itself count as much as events.
    #[inline]
    fn after_output(&mut self) {
        // One test for both rare cases, as this runs once per frame sent.
        if self.out.len() >= PIECE || self.queued() as u64 > self.config.limits.queue {
            self.piece_full_or_backlog();
        }
    }

    /// [`Session::after_output`]'s rare cases.
    #[cold]
    fn piece_full_or_backlog(&mut self) {
        if self.out.len() >= PIECE {
            hand_over(&mut self.out, &mut self.ready, &mut self.ready_bytes);
        }
        if self.state != SessionState::Closed && self.queued() as u64 > self.config.limits.queue {
            self.drop_backlog();
            self.bye(Failure::new(ErrorCode::SlowConsumer), ErrorCode::SlowConsumer);
        }
    }

    /// Drops the output not yet handed out, so that a slow consumer's BYE comes
    /// right after the pieces handed out (the client catches up by sequence number).
    fn drop_backlog(&mut self) {
        self.out.clear();
        self.ready.clear();
        self.ready_bytes = 0;
    }

    fn bye(&mut self, failure: Failure, code: ErrorCode) {
        ServerFrame::Event(Event::Bye(failure)).encode(&mut self.out);
        self.finish(Some(code));
    }

    fn finish(&mut self, reason: Option<ErrorCode>) {
        self.state = SessionState::Closed;
        self.pending.clear();
        self.held = 0;
        self.push_event(SessionEvent::Closed { reason });
    }
}

/// Makes room for `n` more bytes in `out`, the piece being filled: one of
/// [`SEAL_AT`] bytes or more without that room is sealed as it is (moved to `ready`,
/// whose byte count is `ready_bytes`), and the next starts with room for as much
/// again, so that neither is grown by copying. (A function of the fields, not a
/// method, so that a caller may hold a pending request meanwhile.)
#[inline]
fn room(out: &mut BytesMut, ready: &mut VecDeque<Bytes>, ready_bytes: &mut usize, n: usize) {
    if out.capacity() - out.len() < n && out.len() >= SEAL_AT {
        seal(out, ready, ready_bytes, n);
    }
}

/// [`room`]'s rare case: seals `out` and gives the next piece room for `n` bytes at
/// least.
#[cold]
fn seal(out: &mut BytesMut, ready: &mut VecDeque<Bytes>, ready_bytes: &mut usize, n: usize) {
    hand_over(out, ready, ready_bytes);
    out.reserve(n.max(2 * SEAL_AT));
}

/// Moves the bytes of `out`, if it holds any, to the end of `ready` as a sealed
/// piece.
fn hand_over(out: &mut BytesMut, ready: &mut VecDeque<Bytes>, ready_bytes: &mut usize) {
    if !out.is_empty() {
        let piece = out.split().freeze();
        *ready_bytes += piece.len();
        ready.push_back(piece);
    }
}

/// Whether a request ends the session when it succeeds: LOGOUT, and DELETE-ACCOUNT
/// (whose account is gone).
fn ends_session(verb: Verb) -> bool {
    matches!(verb, Verb::Logout | Verb::DeleteAccount)
}

/// Whether a request logs the session in when it succeeds: LOGIN, REGISTER and AUTH.
/// The login deadline stops while one awaits its answer (SPEC.md section 4.1).
fn is_login(verb: Verb) -> bool {
    matches!(verb, Verb::Login | Verb::Register | Verb::Auth)
}
