//! A deterministic in-memory simulation of a BaatKaro server built from the sans-IO
//! parts: several [`Session`]s (one per client connection) and [`Group`]s, driven by
//! a hand-advanced clock (a plain `u64` of milliseconds; nothing sleeps or reads a
//! clock).
//!
//! The test server (`Sim`) is scaffolding, written from SPEC.md sections 3–6 and the
//! session's drive-loop contract, not from the session's code: after every input it
//! drains `poll_transmit` and `poll_event` of every session until all are quiet, and it
//! answers the requests the sessions hand it (LOGIN/REGISTER against a fixed user list,
//! the group commands through `Group::apply`, MEMBERS as items, SEND with a per-group
//! gapless sequence). Each connection's "client" decodes what its session wrote with a
//! `ServerFrameDecoder` and keeps the frames; tests compare short transcripts
//! (`brief`) against what SPEC.md says a client must see.
//!
//! A connection can be switched to manual mode: its requests are then held instead of
//! answered, and the test answers them in any order it likes.

// Test code: a failed unwrap or assertion is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use baatkaro_proto::group::{Ctx, Group, GroupEvent, GroupId, GroupRules, Op};
use baatkaro_proto::session::{
    FrameBudget, RequestId, Session, SessionConfig, SessionEvent, SessionState,
};
use baatkaro_proto::{
    Command, Conversation, DoneVerb, Encode, ErrorCode, Event, Failure, Feature, Features,
    GroupName, IdemKey, InviteOutcome, Item, JoinOutcome, JoinRule, Limits, ListVerb, Millis,
    OkReply, PAYLOAD_CEILING, Password, Presence, Request, Role, Seq, ServerFrame,
    ServerFrameDecoder, Software, StoredEvent, Tag, Text, UserName, Verb, Versions,
};
use bytes::Bytes;

/// The hand clock starts here (a real-looking time, so "time 0" bugs cannot hide).
const T0: Millis = 1_764_072_000_000;

/// Every user the test server knows, with their password.
const USERS: [(&str, &str); 4] =
    [("alice", "pw-alice"), ("bob", "pw-bob"), ("carol", "pw-carol"), ("dave", "pw-dave")];

// ---------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------

fn user(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

fn group(s: &str) -> GroupName {
    GroupName::new(s).unwrap()
}

fn text(s: &str) -> Text {
    Text::new(s).unwrap()
}

fn req(tag: &str, command: Command) -> Request {
    Request { tag: Tag::new(tag).unwrap(), command }
}

fn hello(versions: &[u16]) -> Command {
    Command::Hello { versions: Versions::new(versions.to_vec()).unwrap(), client: None }
}

fn login(name: &str, password: &str) -> Command {
    Command::Login { user: user(name), password: Password::new(password).unwrap() }
}

fn send(to: &str, key: &str, body: &str) -> Command {
    Command::Send {
        to: Conversation::Group(group(to)),
        key: IdemKey::new(key).unwrap(),
        text: text(body),
    }
}

fn limits() -> Limits {
    Limits { payload: 4096, chunk: 4096, idle: 30, inflight: 64, ..Limits::default() }
}

fn config(limits: Limits) -> SessionConfig {
    SessionConfig {
        software: Software::new("sim-server/0.0.1").unwrap(),
        features: Features::new(vec![Feature::new("files").unwrap()]).unwrap(),
        limits,
        frames: FrameBudget::default(),
    }
}

fn fail(code: ErrorCode) -> Failure {
    Failure::new(code)
}

fn done(verb: DoneVerb) -> OkReply {
    OkReply::Done { verb }
}

/// A frame as a short line for comparisons: error notes are left out, and a payload
/// follows its line after a space.
fn brief(frame: &ServerFrame) -> String {
    match frame {
        ServerFrame::Err { tag, failure } => format!("{tag} ERR {}", failure.code.as_str()),
        ServerFrame::Event(Event::Error(f)) => format!("* ERR {}", f.code.as_str()),
        ServerFrame::Event(Event::Bye(f)) => format!("* BYE {}", f.code.as_str()),
        other => String::from_utf8_lossy(&other.to_bytes()).trim_end().replace("\r\n", " "),
    }
}

fn tag_of(frame: &ServerFrame) -> Option<String> {
    match frame {
        ServerFrame::Ok { tag, .. }
        | ServerFrame::Err { tag, .. }
        | ServerFrame::Item { tag, .. } => Some(tag.to_string()),
        ServerFrame::Event(_) => None,
    }
}

/// SPEC.md section 3: every request gets exactly one final reply, in request order,
/// after its items, and the items and final reply of one request are never
/// interleaved with another's (events may come anywhere). `tags` are the requests'
/// tags in the order they were sent.
fn assert_replies_in_order(frames: &[ServerFrame], tags: &[&str]) {
    let tagged: Vec<&ServerFrame> = frames.iter().filter(|f| tag_of(f).is_some()).collect();
    let mut next = 0;
    let mut open: Option<String> = None;
    for frame in tagged {
        let tag = tag_of(frame).unwrap();
        if let Some(current) = &open {
            assert_eq!(&tag, current, "frames of two requests interleave: {}", brief(frame));
        } else {
            assert!(next < tags.len(), "a frame for no outstanding request: {}", brief(frame));
            assert_eq!(tag, tags[next], "replies out of request order at {}", brief(frame));
        }
        match frame {
            ServerFrame::Item { .. } => open = Some(tag),
            _ => {
                open = None;
                next += 1;
            }
        }
    }
    assert!(open.is_none(), "items without their final reply");
    assert_eq!(next, tags.len(), "{} final replies for {} requests", next, tags.len());
}

/// Splits `brief` lines into tagged frames and untagged events, each in order.
fn split_untagged(lines: Vec<String>) -> (Vec<String>, Vec<String>) {
    lines.into_iter().partition(|l| !l.starts_with("* "))
}

/// The sequence numbers of the stored events of `#name` among `frames`, in arrival order.
fn seqs(frames: &[ServerFrame], name: &str) -> Vec<Seq> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Event(Event::Stored(e))
                if e.conv() == Conversation::Group(group(name)) =>
            {
                Some(e.seq())
            }
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// The test server
// ---------------------------------------------------------------------------------

/// One connection: the server's session and the client's view of the bytes.
struct Conn {
    session: Session,
    /// The client's decoder of what the session wrote.
    decoder: ServerFrameDecoder,
    /// Every frame the client received.
    frames: Vec<ServerFrame>,
    /// How many of `frames` `Sim::take` has returned.
    seen: usize,
    /// Answer requests at once (true) or hold them for the test (false).
    auto: bool,
    /// Requests held in manual mode, in the order the session handed them out.
    held: Vec<(RequestId, Command)>,
    /// Every command the session handed to the application.
    handed: Vec<Command>,
    /// The user of the last `LoggedIn` event.
    logged_in: Option<UserName>,
    /// `Some(reason)` once the session reported `Closed`.
    closed: Option<Option<ErrorCode>>,
}

/// A hosted group and its conversation's newest sequence number.
struct Hosted {
    group: Group,
    seq: Seq,
}

struct Sim {
    now: Millis,
    config: SessionConfig,
    rules: GroupRules,
    passwords: BTreeMap<UserName, Bytes>,
    groups: BTreeMap<GroupName, Hosted>,
    next_group: u64,
    conns: Vec<Conn>,
}

impl Sim {
    fn new(limits: Limits) -> Sim {
        Sim {
            now: T0,
            rules: GroupRules::from_limits(&limits),
            config: config(limits),
            passwords: USERS
                .iter()
                .map(|(u, p)| (user(u), Bytes::copy_from_slice(p.as_bytes())))
                .collect(),
            groups: BTreeMap::new(),
            next_group: 1,
            conns: Vec::new(),
        }
    }

    /// A new connection at the current time.
    fn connect(&mut self) -> usize {
        self.conns.push(Conn {
            session: Session::new(self.config.clone(), self.now),
            decoder: ServerFrameDecoder::new(PAYLOAD_CEILING),
            frames: Vec::new(),
            seen: 0,
            auto: true,
            held: Vec::new(),
            handed: Vec::new(),
            logged_in: None,
            closed: None,
        });
        self.conns.len() - 1
    }

    /// A connection that has done HELLO and LOGIN as `name`; its transcript so far is
    /// checked and consumed.
    fn logged_in(&mut self, name: &str) -> usize {
        let c = self.connect();
        let password = USERS.iter().find(|(u, _)| *u == name).unwrap().1;
        self.send(c, &[req("h", hello(&[1])), req("l", login(name, password))]);
        let got = self.take(c);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1], format!("l OK LOGIN {name}"));
        assert_eq!(self.conns[c].logged_in, Some(user(name)));
        c
    }

    /// The client writes these requests in one write.
    fn send(&mut self, c: usize, requests: &[Request]) {
        let mut bytes = Vec::new();
        for r in requests {
            bytes.extend_from_slice(&r.to_bytes());
        }
        self.send_raw(c, &bytes);
    }

    /// The client writes these bytes in one write.
    fn send_raw(&mut self, c: usize, bytes: &[u8]) {
        self.conns[c].session.handle_input(bytes, self.now);
        self.pump();
    }

    /// Advances the hand clock to `to`, calling `handle_timeout` on every session
    /// whose deadline comes first, at its deadline, in deadline order.
    fn advance(&mut self, to: Millis) {
        assert!(to >= self.now, "the clock never goes back");
        for _ in 0..10_000 {
            let due = (0..self.conns.len())
                .filter_map(|c| self.conns[c].session.poll_timeout().map(|t| (t, c)))
                .filter(|(t, _)| *t <= to)
                .min();
            let Some((deadline, c)) = due else {
                self.now = to;
                return;
            };
            self.now = self.now.max(deadline);
            self.conns[c].session.handle_timeout(self.now);
            self.pump();
        }
        panic!("timeouts did not settle");
    }

    /// The drive loop: drains every session's transmits and events until all are quiet.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            for c in 0..self.conns.len() {
                progress |= self.transmit(c);
                while let Some(event) = self.conns[c].session.poll_event() {
                    progress = true;
                    match event {
                        SessionEvent::Request { id, command } => {
                            assert!(self.conns[c].closed.is_none(), "a request after Closed");
                            self.conns[c].handed.push(command.clone());
                            if self.conns[c].auto {
                                self.handle(c, id, command);
                            } else {
                                self.conns[c].held.push((id, command));
                            }
                        }
                        SessionEvent::LoggedIn { user } => self.conns[c].logged_in = Some(user),
                        SessionEvent::Closed { reason } => {
                            // Its last bytes are already queued: take them, then nothing more.
                            self.transmit(c);
                            assert!(self.conns[c].closed.is_none(), "Closed twice");
                            self.conns[c].closed = Some(reason);
                        }
                    }
                }
            }
            if !progress {
                return;
            }
        }
        panic!("the drive loop did not settle");
    }

    /// Moves what session `c` wrote to its client; true if there was anything.
    fn transmit(&mut self, c: usize) -> bool {
        let conn = &mut self.conns[c];
        let mut any = false;
        while let Some(bytes) = conn.session.poll_transmit() {
            conn.session.handle_written(bytes.len());
            assert!(conn.closed.is_none(), "bytes sent after Closed: {bytes:?}");
            any = true;
            conn.decoder.push(&bytes);
            for frame in conn.decoder.by_ref() {
                conn.frames.push(frame.expect("the client decodes every server frame"));
            }
        }
        any
    }

    /// The frames client `c` received since the last call.
    fn take_frames(&mut self, c: usize) -> Vec<ServerFrame> {
        let conn = &mut self.conns[c];
        let new = conn.frames[conn.seen..].to_vec();
        conn.seen = conn.frames.len();
        new
    }

    /// Like `take_frames`, as `brief` lines.
    fn take(&mut self, c: usize) -> Vec<String> {
        self.take_frames(c).iter().map(brief).collect()
    }

    /// Answers a held request (manual mode) the way auto mode would.
    fn answer(&mut self, c: usize, id: RequestId) {
        let i = self.conns[c].held.iter().position(|(h, _)| *h == id).expect("a held request");
        let (id, command) = self.conns[c].held.remove(i);
        self.handle(c, id, command);
        self.pump();
    }

    fn held_ids(&self, c: usize) -> Vec<RequestId> {
        self.conns[c].held.iter().map(|(id, _)| *id).collect()
    }

    /// The application: answers one request, then sends the events it caused (after
    /// the final reply, SPEC.md section 6).
    fn handle(&mut self, c: usize, id: RequestId, command: Command) {
        let mut fanout = Vec::new();
        let result = self.execute(c, id, command, &mut fanout);
        self.conns[c].session.reply(id, result, self.now);
        for (users, frame) in fanout {
            for u in users {
                for (i, conn) in self.conns.iter_mut().enumerate() {
                    if conn.session.user() == Some(u) {
                        // The causing session gets the event behind its own reply.
                        if i == c {
                            conn.session.send_encoded_after(id, &frame);
                        } else {
                            conn.session.send_encoded(&frame);
                        }
                    }
                }
            }
        }
    }

    /// The request's result; items go straight to the session, events into `fanout`
    /// as (recipients, encoded frame).
    fn execute(
        &mut self,
        c: usize,
        id: RequestId,
        command: Command,
        fanout: &mut Vec<(Vec<UserName>, Bytes)>,
    ) -> Result<OkReply, Failure> {
        // Who the connection is, as the application learnt it from `LoggedIn`.
        let actor = self.conns[c].logged_in;
        if self.conns[c].session.state() != SessionState::Closed {
            assert_eq!(actor, self.conns[c].session.user(), "LoggedIn and the state agree");
        }
        let me = || actor.expect("the session hands over group commands only when logged in");
        match command {
            Command::Login { user, password } => match self.passwords.get(&user) {
                Some(p) if p.as_ref() == password.expose() => Ok(OkReply::Login { user }),
                _ => Err(fail(ErrorCode::AuthFailed)),
            },
            Command::Register { user, password } => {
                if self.passwords.contains_key(&user) {
                    return Err(fail(ErrorCode::UserExists));
                }
                self.passwords.insert(user, Bytes::copy_from_slice(password.expose()));
                Ok(OkReply::Register { user })
            }
            Command::Create { group, rule } => {
                if self.groups.contains_key(&group) {
                    return Err(fail(ErrorCode::GroupExists));
                }
                let counts = self.group_counts();
                let ctx = Ctx {
                    now: self.now,
                    rules: &self.rules,
                    groups_of: &|u| counts.get(u).copied().unwrap_or(0),
                };
                let id = GroupId(self.next_group);
                let rule = rule.unwrap_or(JoinRule::Approval);
                let (created, _) =
                    Group::create(id, group, me(), rule, &ctx).map_err(|d| fail(d.code()))?;
                self.next_group += 1;
                self.groups.insert(group, Hosted { group: created, seq: 0 });
                Ok(done(DoneVerb::Create))
            }
            Command::Join { group, reason } => {
                let events = self.apply(me(), group, Op::Join { reason }, fanout)?;
                let joined = events.iter().any(|e| matches!(e, GroupEvent::Joined { .. }));
                let outcome = if joined { JoinOutcome::Joined } else { JoinOutcome::Pending };
                Ok(OkReply::Join { group, outcome })
            }
            Command::Invite { group, user } => {
                if !self.groups.contains_key(&group) {
                    return Err(fail(ErrorCode::NoSuchGroup));
                }
                if !self.passwords.contains_key(&user) {
                    return Err(fail(ErrorCode::NoSuchUser));
                }
                let events = self.apply(me(), group, Op::Invite { user }, fanout)?;
                let joined = events.iter().any(|e| matches!(e, GroupEvent::Joined { .. }));
                let outcome = if joined { InviteOutcome::Joined } else { InviteOutcome::Invited };
                Ok(OkReply::Invite { group, user, outcome })
            }
            Command::Approve { group, user } => self
                .apply(me(), group, Op::Approve { user }, fanout)
                .map(|_| done(DoneVerb::Approve)),
            Command::Reject { group, user } => {
                self.apply(me(), group, Op::Reject { user }, fanout).map(|_| done(DoneVerb::Reject))
            }
            Command::Accept { group } => {
                self.apply(me(), group, Op::Accept, fanout).map(|_| done(DoneVerb::Accept))
            }
            Command::Leave { group } => {
                self.apply(me(), group, Op::Leave, fanout).map(|_| done(DoneVerb::Leave))
            }
            Command::Kick { group, user, ban } => self
                .apply(me(), group, Op::Kick { user, ban }, fanout)
                .map(|_| done(DoneVerb::Kick)),
            Command::Promote { group, user } => self
                .apply(me(), group, Op::Promote { user }, fanout)
                .map(|_| done(DoneVerb::Promote)),
            Command::Transfer { group, user } => self
                .apply(me(), group, Op::Offer { user }, fanout)
                .map(|_| done(DoneVerb::Transfer)),
            Command::TransferAccept { group } => self
                .apply(me(), group, Op::TakeOwnership, fanout)
                .map(|_| done(DoneVerb::TransferAccept)),
            Command::Delete { group } => {
                self.apply(me(), group, Op::Delete, fanout).map(|_| done(DoneVerb::Delete))
            }
            Command::Members { group } => {
                let hosted = self.groups.get(&group).ok_or(fail(ErrorCode::NoSuchGroup))?;
                hosted.group.role_of(&me()).ok_or(fail(ErrorCode::NotMember))?;
                let rank = |r: Role| match r {
                    Role::Owner => 0,
                    Role::Admin => 1,
                    Role::Member => 2,
                };
                let mut members: Vec<(UserName, Role)> = hosted.group.members().collect();
                members.sort_by_key(|(u, r)| (rank(*r), *u));
                for (user, role) in &members {
                    let online = self.conns.iter().any(|k| k.session.user() == Some(*user));
                    let presence = if online { Presence::Online } else { Presence::Offline };
                    let item = Item::Member { group, user: *user, role: *role, presence };
                    self.conns[c].session.item(id, &item);
                }
                Ok(OkReply::Listed { verb: ListVerb::Members, count: members.len() as u64 })
            }
            Command::Send { to: conv @ Conversation::Group(name), key: _, text } => {
                let hosted = self.groups.get_mut(&name).ok_or(fail(ErrorCode::NoSuchGroup))?;
                hosted.group.role_of(&me()).ok_or(fail(ErrorCode::NotMember))?;
                hosted.seq += 1;
                let (seq, time) = (hosted.seq, self.now);
                let msg = StoredEvent::Message { conv, seq, time, from: me(), text };
                let readers = hosted.group.members().map(|(u, _)| u).collect();
                fanout.push((readers, ServerFrame::Event(Event::Stored(msg)).to_bytes()));
                Ok(OkReply::Send { conv, seq, time })
            }
            other => panic!("the test server does not implement {other:?}"),
        }
    }

    /// Applies a group operation; queues the wire events it causes, stored ones with
    /// the conversation's next sequence numbers.
    fn apply(
        &mut self,
        actor: UserName,
        name: GroupName,
        op: Op,
        fanout: &mut Vec<(Vec<UserName>, Bytes)>,
    ) -> Result<Vec<GroupEvent>, Failure> {
        let counts = self.group_counts();
        let now = self.now;
        let hosted = self.groups.get_mut(&name).ok_or(fail(ErrorCode::NoSuchGroup))?;
        let ctx =
            Ctx { now, rules: &self.rules, groups_of: &|u| counts.get(u).copied().unwrap_or(0) };
        let events = hosted.group.apply(actor, op, &ctx).map_err(|d| fail(d.code()))?;
        for event in &events {
            let seq = if event.is_stored() {
                hosted.seq += 1;
                hosted.seq
            } else {
                0
            };
            let wire = event.to_wire(name, seq, now);
            assert_eq!(event.is_stored(), matches!(wire, Some(Event::Stored(_))), "{event:?}");
            if let Some(wire) = wire {
                let users = hosted.group.recipients(event.recipients()).collect();
                fanout.push((users, ServerFrame::Event(wire).to_bytes()));
            }
        }
        if hosted.group.is_deleted() {
            self.groups.remove(&name);
        }
        Ok(events)
    }

    /// How many groups each user is a member of or has a live request in.
    fn group_counts(&self) -> BTreeMap<UserName, u64> {
        let mut counts = BTreeMap::new();
        for hosted in self.groups.values() {
            let members = hosted.group.members().map(|(u, _)| u);
            for u in members.chain(hosted.group.requests(self.now).map(|(u, _)| u)) {
                *counts.entry(u).or_default() += 1;
            }
        }
        counts
    }
}

// ---------------------------------------------------------------------------------
// 1. Handshake and state rules (SPEC.md 4.1, 4.2, 4.4)
// ---------------------------------------------------------------------------------

#[test]
fn handshake_and_state_rules() {
    let mut sim = Sim::new(limits());
    let c = sim.connect();

    // Greeting: only HELLO and PING.
    sim.send(
        c,
        &[
            req("a1", login("alice", "pw-alice")),
            req("a2", Command::Ping),
            req("a3", Command::Logout),
            req("a4", Command::Create { group: group("rust"), rule: None }),
        ],
    );
    assert_eq!(
        sim.take(c),
        ["a1 ERR HELLO_REQUIRED", "a2 OK PING", "a3 ERR HELLO_REQUIRED", "a4 ERR HELLO_REQUIRED"]
    );
    assert_eq!(sim.conns[c].session.state(), SessionState::Greeting);

    // HELLO 1: the reply carries the configured software, features and every limit.
    sim.send(c, &[req("h1", hello(&[2, 1]))]);
    let frames = sim.take_frames(c);
    let [ServerFrame::Ok { tag, reply: OkReply::Hello { version, server, features, limits: got } }] =
        &frames[..]
    else {
        panic!("expected one OK HELLO, got {frames:?}");
    };
    assert_eq!(tag.as_str(), "h1");
    assert_eq!(*version, 1);
    assert_eq!(*server, sim.config.software);
    assert_eq!(*features, sim.config.features);
    assert_eq!(*got, limits());
    assert_eq!(sim.conns[c].session.state(), SessionState::Authenticating);

    // A second HELLO; a group command before login; a failed LOGIN.
    sim.send(
        c,
        &[
            req("h2", hello(&[1])),
            req("c1", Command::Create { group: group("rust"), rule: None }),
            req("c2", send("rust", "k1", "hi")),
            req("l1", login("alice", "wrong")),
            req("l2", login("mallory", "guess")),
        ],
    );
    assert_eq!(
        sim.take(c),
        [
            "h2 ERR WRONG_STATE",
            "c1 ERR AUTH_REQUIRED",
            "c2 ERR AUTH_REQUIRED",
            "l1 ERR AUTH_FAILED",
            "l2 ERR AUTH_FAILED"
        ]
    );
    assert_eq!(sim.conns[c].session.state(), SessionState::Authenticating);
    assert_eq!(sim.conns[c].logged_in, None);

    // The payload limit is 65,536 before the handshake and the advertised one after
    // (SPEC.md 2.3); framing is checked before the state (section 8).
    let join = |tag: &str, len: usize| {
        let mut bytes = format!("{tag} JOIN rust {{{len}}}\r\n").into_bytes();
        bytes.extend(std::iter::repeat_n(b'r', len));
        bytes.extend_from_slice(b"\r\n");
        bytes
    };
    let d = sim.connect();
    sim.send_raw(d, &join("x1", 5000));
    sim.send_raw(d, &join("x2", 65_537));
    assert_eq!(sim.take(d), ["x1 ERR HELLO_REQUIRED", "x2 ERR PAYLOAD_TOO_LARGE"]);
    sim.send_raw(c, &join("x3", 5000));
    assert_eq!(sim.take(c), ["x3 ERR PAYLOAD_TOO_LARGE"]);

    // LOGIN works.
    sim.send(c, &[req("l3", login("alice", "pw-alice"))]);
    assert_eq!(sim.take(c), ["l3 OK LOGIN alice"]);
    assert_eq!(sim.conns[c].session.state(), SessionState::LoggedIn(user("alice")));
    assert_eq!(sim.conns[c].session.user(), Some(user("alice")));
    assert_eq!(sim.conns[c].logged_in, Some(user("alice")));

    // Logged in: no more HELLO, LOGIN or REGISTER; group commands go through.
    sim.send(
        c,
        &[
            req("l4", login("alice", "pw-alice")),
            req(
                "l5",
                Command::Register { user: user("zed"), password: Password::new("x").unwrap() },
            ),
            req("h3", hello(&[1])),
            req("c3", Command::Create { group: group("rust"), rule: None }),
        ],
    );
    assert_eq!(
        sim.take(c),
        ["l4 ERR WRONG_STATE", "l5 ERR WRONG_STATE", "h3 ERR WRONG_STATE", "c3 OK CREATE"]
    );

    // The application saw exactly the three LOGINs and the CREATE: everything else the
    // session answered itself.
    let handed: Vec<_> = sim.conns[c].handed.iter().map(|c| c.verb()).collect();
    assert_eq!(handed, [Verb::Login, Verb::Login, Verb::Login, Verb::Create]);
    assert_eq!(sim.conns[c].closed, None);
}

#[test]
fn unsupported_version_is_a_tagged_err_then_close_without_bye() {
    let mut sim = Sim::new(limits());
    let c = sim.connect();
    sim.send(c, &[req("b1", hello(&[7, 8]))]);
    assert_eq!(sim.take(c), ["b1 ERR UNSUPPORTED_VERSION"]);
    assert_eq!(sim.conns[c].closed, Some(Some(ErrorCode::UnsupportedVersion)));
    assert_eq!(sim.conns[c].session.state(), SessionState::Closed);
    assert_eq!(sim.conns[c].session.poll_timeout(), None);
    assert!(!sim.conns[c].session.wants_input());

    // Nothing more is read or sent.
    sim.send(c, &[req("b2", hello(&[1])), req("b3", Command::Ping)]);
    sim.advance(T0 + 3_600_000);
    assert!(sim.take(c).is_empty());
    assert!(sim.conns[c].handed.is_empty());
}

/// SPEC.md section 3: "The server processes the requests of one connection in the
/// order they arrive"; section 4.1: LOGIN moves the connection to the logged-in state.
/// So a command pipelined right behind a successful LOGIN is judged in the logged-in
/// state: the session decodes nothing more while a LOGIN awaits the application.
#[test]
fn pipelined_command_after_login_is_judged_logged_in() {
    let mut sim = Sim::new(limits());
    let c = sim.connect();
    sim.send(
        c,
        &[
            req("h1", hello(&[1])),
            req("l1", login("alice", "pw-alice")),
            req("c1", Command::Create { group: group("rust"), rule: None }),
        ],
    );
    let got = sim.take(c);
    assert_eq!(got[1..], ["l1 OK LOGIN alice", "c1 OK CREATE"], "full transcript: {got:?}");
}

// ---------------------------------------------------------------------------------
// 2. Pipelining: replies in request order (SPEC.md section 3)
// ---------------------------------------------------------------------------------

/// alice owns the open group `rust` with bob and carol as members; all three online.
fn three_in_rust(sim: &mut Sim) -> [usize; 3] {
    let a = sim.logged_in("alice");
    let b = sim.logged_in("bob");
    let c = sim.logged_in("carol");
    sim.send(a, &[req("s1", Command::Create { group: group("rust"), rule: Some(JoinRule::Open) })]);
    sim.send(b, &[req("s2", Command::Join { group: group("rust"), reason: None })]);
    sim.send(c, &[req("s3", Command::Join { group: group("rust"), reason: None })]);
    for k in [a, b, c] {
        sim.take(k);
    }
    [a, b, c]
}

fn pipeline() -> Vec<Request> {
    vec![
        req("a1", Command::Ping),
        req("a2", Command::Members { group: group("rust") }),
        req("a3", Command::Create { group: group("go"), rule: None }),
        req("a4", Command::Ping),
        req("a5", Command::Create { group: group("rust"), rule: None }),
        req("a6", Command::Members { group: group("rust") }),
        req("a7", Command::Ping),
    ]
}

const PIPELINE_TAGS: [&str; 7] = ["a1", "a2", "a3", "a4", "a5", "a6", "a7"];

fn members_of_rust(tag: &str) -> Vec<String> {
    vec![
        format!("{tag} MEMBER rust alice owner online"),
        format!("{tag} MEMBER rust bob member online"),
        format!("{tag} MEMBER rust carol member online"),
        format!("{tag} OK MEMBERS 3"),
    ]
}

#[test]
fn pipelined_requests_answered_out_of_order_reply_in_request_order() {
    let mut sim = Sim::new(limits());
    let [a, ..] = three_in_rust(&mut sim);
    sim.conns[a].auto = false;

    let start = sim.conns[a].frames.len();
    sim.send(a, &pipeline());
    // PING needs no application; everything behind the unanswered MEMBERS waits.
    assert_eq!(sim.take(a), ["a1 OK PING"]);
    let ids = sim.held_ids(a);
    assert_eq!(ids.len(), 4, "MEMBERS, CREATE, CREATE, MEMBERS go to the application");

    // Answer from the back: nothing may overtake the head.
    for &id in ids[1..].iter().rev() {
        sim.answer(a, id);
        assert!(sim.take(a).is_empty(), "a reply overtook the unanswered a2");
    }

    // The head streams its items as they come.
    let head = ids[0];
    sim.conns[a].held.clear();
    let item = |name: &str, role| Item::Member {
        group: group("rust"),
        user: user(name),
        role,
        presence: Presence::Online,
    };
    sim.conns[a].session.item(head, &item("alice", Role::Owner));
    sim.pump();
    assert_eq!(sim.take(a), ["a2 MEMBER rust alice owner online"]);
    sim.conns[a].session.item(head, &item("bob", Role::Member));
    sim.conns[a].session.item(head, &item("carol", Role::Member));
    sim.conns[a].session.reply(
        head,
        Ok(OkReply::Listed { verb: ListVerb::Members, count: 3 }),
        sim.now,
    );
    sim.pump();

    let mut expected = members_of_rust("a2");
    expected.extend(["a3 OK CREATE".into(), "a4 OK PING".into(), "a5 ERR GROUP_EXISTS".into()]);
    expected.extend(members_of_rust("a6"));
    expected.push("a7 OK PING".into());
    assert_eq!(sim.take(a)[..], expected[1..]);
    assert_replies_in_order(&sim.conns[a].frames[start..], &PIPELINE_TAGS);

    // A second answer to an answered request, or an item after its reply, is ignored.
    sim.conns[a].session.reply(head, Ok(done(DoneVerb::Ping)), sim.now);
    sim.conns[a].session.item(head, &item("dave", Role::Member));
    sim.pump();
    assert!(sim.take(a).is_empty());
}

#[test]
fn pipelined_requests_fed_one_byte_at_a_time_reply_in_request_order() {
    let mut sim = Sim::new(limits());
    let [a, ..] = three_in_rust(&mut sim);
    let bytes: Vec<u8> = pipeline().iter().flat_map(|r| r.to_bytes().to_vec()).collect();
    for byte in bytes {
        sim.send_raw(a, &[byte]);
    }
    let mut expected = vec!["a1 OK PING".to_string()];
    expected.extend(members_of_rust("a2"));
    expected.extend(["a3 OK CREATE".into(), "a4 OK PING".into(), "a5 ERR GROUP_EXISTS".into()]);
    expected.extend(members_of_rust("a6"));
    expected.push("a7 OK PING".into());
    assert_eq!(sim.take(a), expected);
}

/// SPEC.md 5.1: "the causing session receives the event after its request's final
/// reply"; section 6: "The events a command causes go to the recipients listed, to
/// each session after the final reply of the request that caused them."
///
/// When the application answers a SEND while an earlier request of the same
/// connection is still unanswered, the session holds the SEND's reply back, and the
/// MSG the application queues with `send_encoded_after` follows that reply.
#[test]
fn event_caused_by_a_held_reply_comes_after_it() {
    let mut sim = Sim::new(limits());
    let [a, b, _] = three_in_rust(&mut sim);
    sim.conns[a].auto = false;
    sim.send(
        a,
        &[
            req("m1", Command::Members { group: group("rust") }),
            req("s1", send("rust", "k1", "hi")),
        ],
    );
    let ids = sim.held_ids(a);
    sim.answer(a, ids[1]); // the SEND first
    sim.answer(a, ids[0]);
    let time = sim.now;
    let msg = format!("* MSG #rust 3 {time} alice {{2}} hi");
    assert_eq!(sim.take(b), [msg.as_str()]);
    let mut expected = members_of_rust("m1");
    expected.push(format!("s1 OK SEND #rust 3 {time}"));
    expected.push(msg);
    assert_eq!(sim.take(a), expected);
}

/// Moves the hand clock one second on; the new time.
fn tick(sim: &mut Sim) -> Millis {
    let to = sim.now + 1_000;
    sim.advance(to);
    sim.now
}

// ---------------------------------------------------------------------------------
// 3. A group story across three users and four sessions (SPEC.md 5.1, 6.1–6.4, 6.6)
// ---------------------------------------------------------------------------------

#[test]
fn group_story_across_sessions() {
    let mut sim = Sim::new(limits());
    let a1 = sim.logged_in("alice");
    let a2 = sim.logged_in("alice"); // alice's second session gets all her events too
    let b = sim.logged_in("bob");
    let c = sim.logged_in("carol");
    let all = [a1, a2, b, c];

    // alice creates an approval group: no events.
    tick(&mut sim);
    sim.send(a1, &[req("c1", Command::Create { group: group("rust"), rule: None })]);
    assert_eq!(sim.take(a1), ["c1 OK CREATE"]);
    for k in [a2, b, c] {
        assert!(sim.take(k).is_empty());
    }

    // bob asks to join with a reason: REQUESTED to the owner's sessions only.
    let t = tick(&mut sim);
    let reason = "I write Rust for a bank";
    sim.send(b, &[req("j1", Command::Join { group: group("rust"), reason: Some(text(reason)) })]);
    assert_eq!(sim.take(b), ["j1 OK JOIN rust pending"]);
    let requested = format!("* REQUESTED rust bob {t} {{23}} {reason}");
    assert_eq!(sim.take(a1), [requested.as_str()]);
    assert_eq!(sim.take(a2), [requested]);
    assert!(sim.take(c).is_empty());

    // alice approves: APPROVED to bob, then JOINED (seq 1) to every member's sessions,
    // the approver's after her reply.
    let t = tick(&mut sim);
    sim.send(a1, &[req("r1", Command::Approve { group: group("rust"), user: user("bob") })]);
    let joined = format!("* JOINED #rust 1 {t} bob alice");
    assert_eq!(sim.take(a1), ["r1 OK APPROVE".to_string(), joined.clone()]);
    assert_eq!(sim.take(a2), [joined.as_str()]);
    assert_eq!(sim.take(b), ["* APPROVED rust alice".to_string(), joined]);
    assert!(sim.take(c).is_empty());

    // Messages from three sessions: seq 2, 3, 4, each to every member session once.
    let mut sent = Vec::new();
    for (k, tag, body) in [(a1, "m1", "hello"), (b, "m2", "hi alice"), (a2, "m3", "from my phone")]
    {
        let t = tick(&mut sim);
        sim.send(k, &[req(tag, send("rust", tag, body))]);
        let seq = 2 + sent.len() as u64;
        let from = if k == b { "bob" } else { "alice" };
        let msg = format!("* MSG #rust {seq} {t} {from} {{{}}} {body}", body.len());
        assert_eq!(sim.take(k), [format!("{tag} OK SEND #rust {seq} {t}"), msg.clone()]);
        for other in [a1, a2, b].into_iter().filter(|o| *o != k) {
            assert_eq!(sim.take(other), [msg.as_str()]);
        }
        assert!(sim.take(c).is_empty(), "carol is no member yet");
        sent.push(msg);
    }

    // carol is invited and accepts: INVITED to her, JOINED (seq 5, by herself) to all.
    let t = tick(&mut sim);
    sim.send(a1, &[req("i1", Command::Invite { group: group("rust"), user: user("carol") })]);
    assert_eq!(sim.take(a1), ["i1 OK INVITE rust carol invited"]);
    assert_eq!(sim.take(c), [format!("* INVITED rust alice {t}")]);
    let t = tick(&mut sim);
    sim.send(c, &[req("i2", Command::Accept { group: group("rust") })]);
    let joined = format!("* JOINED #rust 5 {t} carol carol");
    assert_eq!(sim.take(c), ["i2 OK ACCEPT".to_string(), joined.clone()]);
    for k in [a1, a2, b] {
        assert_eq!(sim.take(k), [joined.as_str()]);
    }

    // carol writes (seq 6), then alice kicks her: KICKED (seq 7) to the members and carol.
    let t = tick(&mut sim);
    sim.send(c, &[req("m4", send("rust", "m4", "thanks"))]);
    let msg = format!("* MSG #rust 6 {t} carol {{6}} thanks");
    assert_eq!(sim.take(c), [format!("m4 OK SEND #rust 6 {t}"), msg.clone()]);
    for k in [a1, a2, b] {
        assert_eq!(sim.take(k), [msg.as_str()]);
    }
    let t = tick(&mut sim);
    sim.send(
        a2,
        &[req("k1", Command::Kick { group: group("rust"), user: user("carol"), ban: false })],
    );
    let kicked = format!("* KICKED #rust 7 {t} carol alice");
    assert_eq!(sim.take(a2), ["k1 OK KICK".to_string(), kicked.clone()]);
    for k in [a1, b, c] {
        assert_eq!(sim.take(k), [kicked.as_str()]);
    }
    sim.send(c, &[req("m5", send("rust", "m5", "wait"))]);
    assert_eq!(sim.take(c), ["m5 ERR NOT_MEMBER"]);

    // Ownership in two steps: OFFERED (seq 8), then OWNER (seq 9); then alice, now an
    // admin, may leave: LEFT (seq 10) to bob and to both of alice's sessions.
    let t = tick(&mut sim);
    sim.send(a1, &[req("t0", Command::Leave { group: group("rust") })]);
    assert_eq!(sim.take(a1), ["t0 ERR OWNER_MUST_TRANSFER"]);
    sim.send(a1, &[req("t1", Command::Transfer { group: group("rust"), user: user("bob") })]);
    let offered = format!("* OFFERED #rust 8 {t} bob alice");
    assert_eq!(sim.take(a1), ["t1 OK TRANSFER".to_string(), offered.clone()]);
    assert_eq!(sim.take(a2), [offered.as_str()]);
    assert_eq!(sim.take(b), [offered]);
    let t = tick(&mut sim);
    sim.send(b, &[req("t2", Command::TransferAccept { group: group("rust") })]);
    let owner = format!("* OWNER #rust 9 {t} bob alice");
    assert_eq!(sim.take(b), ["t2 OK TRANSFER-ACCEPT".to_string(), owner.clone()]);
    assert_eq!(sim.take(a1), [owner.as_str()]);
    assert_eq!(sim.take(a2), [owner]);
    assert_eq!(sim.groups[&group("rust")].group.owner(), user("bob"));
    assert_eq!(sim.groups[&group("rust")].group.role_of(&user("alice")), Some(Role::Admin));
    let t = tick(&mut sim);
    sim.send(a1, &[req("t3", Command::Leave { group: group("rust") })]);
    let left = format!("* LEFT #rust 10 {t} alice");
    assert_eq!(sim.take(a1), ["t3 OK LEAVE".to_string(), left.clone()]);
    assert_eq!(sim.take(a2), [left.as_str()]);
    assert_eq!(sim.take(b), [left]);

    // bob, the last member, deletes the group: DELETED to him.
    sim.send(b, &[req("d1", Command::Delete { group: group("rust") })]);
    assert_eq!(sim.take(b), ["d1 OK DELETE", "* DELETED rust bob"]);
    assert!(sim.take(c).is_empty() && sim.take(a1).is_empty());

    // Over the whole story: each session saw the group's stored events exactly once,
    // in order, gapless while it could read the conversation.
    let whole: Vec<Seq> = (1..=10).collect();
    for k in [a1, a2, b] {
        assert_eq!(seqs(&sim.conns[k].frames, "rust"), whole, "session {k}");
    }
    assert_eq!(seqs(&sim.conns[c].frames, "rust"), [5, 6, 7]);
    // And every request got its one final reply, in order (tags were unique per session).
    for k in all {
        assert_eq!(sim.conns[k].closed, None);
        let frames = &sim.conns[k].frames;
        let tags: Vec<String> = frames
            .iter()
            .filter(|f| matches!(f, ServerFrame::Ok { .. } | ServerFrame::Err { .. }))
            .map(|f| tag_of(f).unwrap())
            .collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        assert_replies_in_order(frames, &tags);
    }
}

// ---------------------------------------------------------------------------------
// 4. Idle timeout with the hand clock (SPEC.md 4.1, 7.8)
// ---------------------------------------------------------------------------------

#[test]
fn idle_timeout_closes_with_bye_and_input_moves_the_deadline() {
    let idle_ms = 10_000;
    let mut sim = Sim::new(Limits { idle: 10, ..limits() });
    let c = sim.connect();
    assert_eq!(sim.conns[c].session.poll_timeout(), Some(T0 + idle_ms));

    // A frame just before the deadline moves it.
    sim.advance(T0 + idle_ms - 1);
    assert!(sim.take(c).is_empty());
    sim.send(c, &[req("p1", Command::Ping)]);
    assert_eq!(sim.take(c), ["p1 OK PING"]);
    let deadline = T0 + 2 * idle_ms - 1;
    assert_eq!(sim.conns[c].session.poll_timeout(), Some(deadline));

    // A second connection, logged in, later: its own deadline.
    sim.advance(T0 + idle_ms + 500);
    let d = sim.logged_in("bob");
    assert_eq!(sim.conns[d].session.poll_timeout(), Some(T0 + 2 * idle_ms + 500));

    // An early call does nothing.
    sim.conns[c].session.handle_timeout(deadline - 1);
    sim.pump();
    assert!(sim.take(c).is_empty());
    assert_eq!(sim.conns[c].closed, None);

    // The deadline passes: BYE IDLE_TIMEOUT is the last frame.
    sim.advance(deadline);
    assert_eq!(sim.take(c), ["* BYE IDLE_TIMEOUT"]);
    assert_eq!(sim.conns[c].closed, Some(Some(ErrorCode::IdleTimeout)));
    assert_eq!(sim.conns[c].session.state(), SessionState::Closed);
    assert_eq!(sim.conns[c].session.poll_timeout(), None);
    assert_eq!(sim.conns[d].closed, None, "the other connection is not idle yet");

    // After the close nothing is read or sent.
    sim.send(c, &[req("p2", Command::Ping)]);
    assert!(sim.take(c).is_empty());

    sim.advance(T0 + 2 * idle_ms + 500);
    assert_eq!(sim.take(d), ["* BYE IDLE_TIMEOUT"]);
    assert_eq!(sim.conns[d].closed, Some(Some(ErrorCode::IdleTimeout)));
    assert_eq!(sim.conns[d].session.user(), None);

    // The server closing on its own (shutting down) ends the same way.
    let e = sim.logged_in("carol");
    let retry = Failure { retry_after: Some(5000), ..fail(ErrorCode::ShuttingDown) };
    sim.conns[e].session.close(retry);
    sim.pump();
    let frames = sim.take_frames(e);
    let [ServerFrame::Event(Event::Bye(f))] = &frames[..] else { panic!("{frames:?}") };
    assert_eq!((f.code, f.retry_after), (ErrorCode::ShuttingDown, Some(5000)));
    assert_eq!(sim.conns[e].closed, Some(Some(ErrorCode::ShuttingDown)));
}

/// SPEC.md 4.1: "The server closes a connection from which it has received no frame
/// for `idle` seconds" (Appendix B: "seconds without a frame"): bytes of a frame that
/// never completes do not keep the connection open.
#[test]
fn idle_timer_counts_frames_not_bytes() {
    let mut sim = Sim::new(Limits { idle: 10, ..limits() });
    let c = sim.connect();
    sim.advance(T0 + 9_000);
    sim.send_raw(c, b"p1 PI"); // not a frame
    sim.advance(T0 + 10_000);
    assert_eq!(sim.take(c), ["* BYE IDLE_TIMEOUT"]);
}

// ---------------------------------------------------------------------------------
// 5. In-flight backpressure (SPEC.md section 3, Appendix B `inflight`)
// ---------------------------------------------------------------------------------

#[test]
fn inflight_budget_holds_requests_back_without_losing_or_reordering() {
    let mut sim = Sim::new(Limits { inflight: 2, ..limits() });
    let a = sim.logged_in("alice");
    sim.conns[a].auto = false;
    let names = ["g1", "g2", "g3", "g4"];
    let mut requests: Vec<Request> = names
        .iter()
        .map(|n| req(&format!("c{}", &n[1..]), Command::Create { group: group(n), rule: None }))
        .collect();
    requests.push(req("p5", Command::Ping));

    // Only two are handed out; the session stops taking input.
    sim.conns[a].handed.clear(); // the LOGIN
    sim.send(a, &requests);
    assert_eq!(sim.conns[a].handed.len(), 2);
    assert!(!sim.conns[a].session.wants_input());
    assert!(sim.take(a).is_empty());

    // Answering the head releases the next one, and only it.
    let ids = sim.held_ids(a);
    sim.answer(a, ids[0]);
    assert_eq!(sim.take(a), ["c1 OK CREATE"]);
    assert_eq!(sim.conns[a].handed.len(), 3);
    assert_eq!(sim.conns[a].held.len(), 2);
    assert!(!sim.conns[a].session.wants_input());

    // Answer the rest newest first: never more than two outstanding, nothing lost.
    for _ in 0..10 {
        let Some(&(id, _)) = sim.conns[a].held.last() else { break };
        sim.answer(a, id);
        assert!(sim.conns[a].held.len() <= 2);
    }
    assert!(sim.conns[a].held.is_empty());
    assert_eq!(sim.take(a), ["c2 OK CREATE", "c3 OK CREATE", "c4 OK CREATE", "p5 OK PING"]);
    let created: Vec<GroupName> = sim.conns[a]
        .handed
        .iter()
        .map(|c| match c {
            Command::Create { group, .. } => *group,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(created, names.map(group));
    assert!(sim.conns[a].session.wants_input());
    assert_replies_in_order(&sim.conns[a].frames[2..], &["c1", "c2", "c3", "c4", "p5"]);
}

// ---------------------------------------------------------------------------------
// 6. Framing errors (SPEC.md 2.1–2.3, 7.8, 8)
// ---------------------------------------------------------------------------------

#[test]
fn framing_errors_are_answered_in_place_and_the_session_goes_on() {
    let mut sim = Sim::new(limits()); // payload limit 4096
    let [a, ..] = three_in_rust(&mut sim);
    let handed = sim.conns[a].handed.len();
    let mut input = Vec::new();
    input.extend_from_slice(b"f1 PING\r\n");
    input.extend_from_slice(b"f2 ");
    input.extend_from_slice(&[b'x'; 1100]);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(b"f3 PING\n");
    input.extend_from_slice(b"f4 FROB rust\r\n");
    input.extend_from_slice(b"!! PING\r\n");
    input.extend_from_slice(b"f5 SEND #rust k1 {5000}\r\n");
    input.extend_from_slice(&[b'y'; 5000]);
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(b"f6 PING {x}\r\n");
    input.extend_from_slice(b"f7 KICK rust\r\n");
    input.extend_from_slice(b"\r\n");
    input.extend_from_slice(b"f8 PING\r\n");
    sim.send_raw(a, &input);
    let (tagged, untagged) = split_untagged(sim.take(a));
    assert_eq!(
        tagged,
        [
            "f1 OK PING",
            "f2 ERR LINE_TOO_LONG",
            "f3 ERR BAD_LINE_END",
            "f4 ERR UNKNOWN_COMMAND",
            "f5 ERR PAYLOAD_TOO_LARGE",
            "f6 ERR SYNTAX",
            "f7 ERR SYNTAX",
            "f8 OK PING",
        ]
    );
    // The unreadable tag's error is an event (SPEC.md 3, 7.8: events may come between
    // any two frames): it must come once, anywhere. (The session writes it at once,
    // ahead of the replies to f1..f4 of the same write.)
    assert_eq!(untagged, ["* ERR BAD_TAG"]);
    assert_eq!(sim.conns[a].handed.len(), handed, "no bad frame reaches the application");
    assert_eq!(sim.conns[a].closed, None);

    // Behind an unanswered request, the tagged errors wait their turn.
    sim.conns[a].auto = false;
    sim.send_raw(a, b"g1 MEMBERS rust\r\ng2 FROB\r\n!! X\r\ng3 PING\n\r\ng4 PING\r\n");
    let (before, mut untagged) = split_untagged(sim.take(a));
    assert!(before.is_empty(), "a reply overtook g1: {before:?}");
    let id = sim.held_ids(a)[0];
    sim.answer(a, id);
    let (after, more) = split_untagged(sim.take(a));
    untagged.extend(more);
    let mut expected = members_of_rust("g1");
    expected.extend(["g2 ERR UNKNOWN_COMMAND".into(), "g3 ERR BAD_LINE_END".into()]);
    expected.push("g4 OK PING".into());
    assert_eq!(after, expected);
    assert_eq!(untagged, ["* ERR BAD_TAG"]);
    sim.conns[a].auto = true;

    // Replies that SPEC.md 2.3 wants "at once": an oversized payload is refused from its
    // line, before any of it arrives; a long line as soon as 1,024 octets are in, once.
    sim.send_raw(a, b"h1 SEND #rust k2 {5000}\r\n");
    assert_eq!(sim.take(a), ["h1 ERR PAYLOAD_TOO_LARGE"]);
    sim.send_raw(a, &[b'z'; 3000]);
    sim.send_raw(a, &[b'z'; 2000]);
    sim.send_raw(a, b"\r\nh2 PING\r\n");
    assert_eq!(sim.take(a), ["h2 OK PING"]);
    sim.send_raw(a, b"h3 ");
    sim.send_raw(a, &[b'x'; 1021]);
    assert_eq!(sim.take(a), ["h3 ERR LINE_TOO_LONG"]);
    sim.send_raw(a, &[b'x'; 2000]);
    sim.send_raw(a, b"x\r\nh4 PING\r\n");
    assert_eq!(sim.take(a), ["h4 OK PING"]);
    // A bad line end discards the payload the line declares too.
    sim.send_raw(a, b"h5 SEND #rust k3 {3}\nabc\r\nh6 PING\r\n");
    assert_eq!(sim.take(a), ["h5 ERR BAD_LINE_END", "h6 OK PING"]);
    assert_eq!(sim.conns[a].handed.len(), handed + 1, "only g1 reached the application");

    // A payload not followed by CRLF: BYE and close; that request gets no reply.
    sim.send_raw(a, b"x1 JOIN rust {3}\r\nabcXY");
    assert_eq!(sim.take(a), ["* BYE BAD_PAYLOAD_END"]);
    assert_eq!(sim.conns[a].closed, Some(Some(ErrorCode::BadPayloadEnd)));
    assert_eq!(sim.conns[a].handed.len(), handed + 1, "only g1 reached the application");
    sim.send_raw(a, b"\r\nx2 PING\r\n");
    assert!(sim.take(a).is_empty());
}

/// SPEC.md 2.3: on BAD_PAYLOAD_END "the request whose payload it was gets no final
/// reply" — only that one; section 3: every request gets exactly one final reply. A
/// PING in the same write, before the bad payload, still gets its reply before
/// `* BYE BAD_PAYLOAD_END`.
#[test]
fn replies_queued_before_a_bad_payload_end_are_sent() {
    let mut sim = Sim::new(limits());
    let c = sim.connect();
    sim.send_raw(c, b"p1 PING\r\nx1 PING {1}\r\nXYZ");
    assert_eq!(sim.take(c), ["p1 OK PING", "* BYE BAD_PAYLOAD_END"]);
}

// ---------------------------------------------------------------------------------
// 7. LOGOUT (SPEC.md 4.5, 7.8)
// ---------------------------------------------------------------------------------

#[test]
fn logout_replies_then_closes_without_bye() {
    let mut sim = Sim::new(limits());
    let [a, b, _] = three_in_rust(&mut sim);

    // Behind an unanswered request, LOGOUT waits its turn, then closes.
    sim.conns[a].auto = false;
    sim.send(a, &[req("o0", Command::Members { group: group("rust") })]);
    sim.send(a, &[req("o1", Command::Logout)]);
    assert!(sim.take(a).is_empty());
    assert_eq!(sim.conns[a].closed, None);
    let id = sim.held_ids(a)[0];
    sim.answer(a, id);
    let mut expected = members_of_rust("o0");
    expected.push("o1 OK LOGOUT".into());
    assert_eq!(sim.take(a), expected);
    assert_eq!(sim.conns[a].closed, Some(None));
    assert_eq!(sim.conns[a].session.state(), SessionState::Closed);
    assert_eq!(sim.conns[a].session.user(), None);
    assert_eq!(sim.conns[a].session.poll_timeout(), None);
    assert!(!sim.conns[a].session.wants_input());

    // Nothing is sent after: not fan-out, not events, not replies, not timeouts.
    sim.send(b, &[req("m1", send("rust", "m1", "bye alice"))]);
    assert_eq!(sim.take(b).len(), 2);
    let session = &mut sim.conns[a].session;
    session.send_event(&Event::Presence { user: user("bob"), presence: Presence::Online });
    session.send_encoded(b"* PRESENCE bob online\r\n");
    session.close(fail(ErrorCode::ShuttingDown));
    session.handle_input(b"p1 PING\r\n", T0 + 1);
    session.handle_timeout(u64::MAX);
    assert_eq!(session.poll_event(), None);
    sim.pump();
    assert!(sim.take(a).is_empty());

    // LOGOUT while authenticating works too.
    let c = sim.connect();
    sim.send(c, &[req("h1", hello(&[1])), req("o2", Command::Logout)]);
    let got = sim.take(c);
    assert_eq!(got[1..], ["o2 OK LOGOUT"]);
    assert_eq!(sim.conns[c].closed, Some(None));
}

/// SPEC.md section 3 (requests processed in the order they arrive) and 4.5 (LOGOUT:
/// "The server replies `OK LOGOUT` and closes the connection"): a request that comes
/// after LOGOUT (or after a failed HELLO) is never decoded, let alone handed to the
/// application.
#[test]
fn requests_after_logout_are_not_processed() {
    let mut sim = Sim::new(limits());
    let a = sim.logged_in("alice");
    sim.send(
        a,
        &[
            req("o1", Command::Logout),
            req("o2", Command::Create { group: group("go"), rule: None }),
        ],
    );
    assert_eq!(sim.take(a), ["o1 OK LOGOUT"]);
    assert_eq!(sim.conns[a].closed, Some(None));
    assert!(sim.conns[a].handed.len() == 1, "handed {:?}", sim.conns[a].handed);
    assert!(!sim.groups.contains_key(&group("go")));
}
