//! A deterministic in-memory simulation of a whole BaatKaro server: the real hub core
//! ([`Hub`]) and one real [`Session`] per client connection, driven by a hand-advanced
//! clock (a plain `u64` of milliseconds; nothing sleeps or reads a clock).
//!
//! The test shell (`Sim`) holds no rule of the product: it only carries out what the
//! hub asks, as the server's shell does, with stand-ins for the world — an in-memory
//! store (commits succeed; history pages are read back from the committed events), a
//! password "hash" that is the password itself, and no disk. After every input it
//! drains every session's `poll_transmit` and `poll_event` and the hub's
//! `poll_output` until all are quiet. Each connection's "client" decodes what its
//! session wrote with a `ServerFrameDecoder`; tests compare short transcripts
//! (`brief`) against what SPEC.md says a client must see.
//!
//! Commits can be held (`hold`), to see what waits on them, then released one batch
//! at a time, in the order the hub sent them.

// Test code: a failed unwrap or assertion is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};

use baatkaro_hub::store::{
    Batch, ConvKey, EventRecord, HistoryPage, HistoryQuery, Read, ReadResult, Snapshot, Write,
};
use baatkaro_hub::{
    ConnId, Delivery, DiskJob, FileAccess, FileGrant, HashDone, HashKind, HashOutcome, Hub,
    HubConfig, IN_FLIGHT, Output,
};
use baatkaro_proto::rules;
use baatkaro_proto::session::{
    FrameBudget, RequestId, Session, SessionConfig, SessionEvent, SessionState,
};
use baatkaro_proto::{
    Command, Conversation, Encode, ErrorCode, Event, Failure, Feature, Features, FileId, FileName,
    GroupName, HistoryRange, IdemKey, JoinRule, Limits, Millis, OkReply, PAYLOAD_CEILING, Password,
    Presence, Request, Seq, ServerFrame, ServerFrameDecoder, Software, StoredEvent, Tag, Text,
    TokenId, TokenSecret, UserName, Verb, Versions, decode_one,
};

/// Token secrets for the simulation: predictable, different each time.
#[derive(Debug)]
struct Counting(u8);

impl baatkaro_hub::Entropy for Counting {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.0 = self.0.wrapping_add(1);
        buf.fill(self.0);
        Ok(())
    }
}

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

fn history(to: &str) -> Command {
    Command::History {
        conv: Conversation::Group(group(to)),
        range: baatkaro_proto::HistoryRange::Last,
        limit: 10,
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
    /// Every command the session handed to the hub.
    handed: Vec<Command>,
    /// The user of the last `LoggedIn` event.
    logged_in: Option<UserName>,
    /// `Some(reason)` once the session reported `Closed`.
    closed: Option<Option<ErrorCode>>,
}

/// The committed events, as the store keeps them, for history reads.
#[derive(Default)]
struct MemStore {
    events: BTreeMap<ConvKey, Vec<EventRecord>>,
}

impl MemStore {
    fn commit(&mut self, writes: &[Write]) {
        for w in writes {
            if let Write::Event(record) = w {
                self.events.entry(record.conv).or_default().push(record.clone());
            }
        }
    }

    fn read(&self, read: &Read) -> ReadResult {
        match read {
            Read::History(q) => ReadResult::History(self.history(q)),
            Read::Unread(q) => ReadResult::Unread(
                q.convs
                    .iter()
                    .map(|r| {
                        let all = self.events.get(&r.conv).map(Vec::as_slice).unwrap_or_default();
                        all.iter()
                            .filter(|e| e.seq > r.after && e.seq <= r.upto)
                            .filter(|e| rules::counts_as_unread(&stored(e), &q.reader))
                            .count() as u64
                    })
                    .collect(),
            ),
        }
    }

    fn history(&self, q: &HistoryQuery) -> HistoryPage {
        let all = self.events.get(&q.conv).map(Vec::as_slice).unwrap_or_default();
        let upto: Vec<&EventRecord> = all.iter().filter(|e| e.seq <= q.upto).collect();
        let limit = q.limit as usize;
        let chosen: Vec<&EventRecord> = match q.after {
            Some(after) => upto.into_iter().filter(|e| e.seq > after).take(limit).collect(),
            None => {
                let skip = upto.len().saturating_sub(limit);
                upto.into_iter().skip(skip).collect()
            }
        };
        let events = chosen.iter().map(|e| stored(e)).collect();
        HistoryPage { events, oldest: all.first().map(|e| e.seq) }
    }
}

/// The stored event a record holds.
fn stored(e: &EventRecord) -> StoredEvent {
    match decode_one::<ServerFrame>(&e.frame, PAYLOAD_CEILING) {
        Ok(ServerFrame::Event(Event::Stored(event))) => event,
        other => panic!("a stored frame that is no stored event: {other:?}"),
    }
}

struct Sim {
    now: Millis,
    config: SessionConfig,
    hub: Hub,
    store: MemStore,
    conns: Vec<Conn>,
    /// Hold commits (true) or complete them at once.
    hold: bool,
    /// Batches sent to the store and not yet completed, oldest first.
    held: VecDeque<Batch>,
    /// Copies of the last few write vectors handed back to the hub (it may keep
    /// several, and reuse any).
    handed_back: VecDeque<Vec<Write>>,
    /// Password jobs the hub asked for.
    hashes: usize,
}

impl Sim {
    fn new(limits: Limits) -> Sim {
        let cfg = HubConfig { logins_per_minute: 1_000, ..HubConfig::new(limits) };
        Sim::with(cfg)
    }

    /// A simulation of a hub with this configuration.
    fn with(cfg: HubConfig) -> Sim {
        Sim::with_snapshot(cfg, |_| {})
    }

    /// A simulation of a hub with this configuration, whose store holds what `edit`
    /// makes of the usual users.
    fn with_snapshot(cfg: HubConfig, edit: impl FnOnce(&mut Snapshot)) -> Sim {
        // The users exist from the start; the "hash" is the password itself.
        let users = USERS.iter().map(|(u, p)| (user(u), format!("plain:{p}"))).collect();
        let mut snapshot = Snapshot { users, next_group_id: 1, ..Snapshot::default() };
        edit(&mut snapshot);
        let limits = cfg.limits.clone();
        Sim {
            hashes: 0,
            now: T0,
            hub: Hub::new(cfg, snapshot, T0, 7, Box::new(Counting(0))).unwrap(),
            config: config(limits),
            store: MemStore::default(),
            conns: Vec::new(),
            hold: false,
            held: VecDeque::new(),
            handed_back: VecDeque::new(),
        }
    }

    /// A new connection at the current time.
    fn connect(&mut self) -> usize {
        self.connect_from(std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// A new connection from `peer` at the current time.
    fn connect_from(&mut self, peer: std::net::IpAddr) -> usize {
        self.conns.push(Conn {
            session: Session::new(self.config.clone(), self.now),
            decoder: ServerFrameDecoder::new(PAYLOAD_CEILING),
            frames: Vec::new(),
            seen: 0,
            handed: Vec::new(),
            logged_in: None,
            closed: None,
        });
        let c = self.conns.len() - 1;
        self.hub.handle_connected(c as ConnId, peer);
        c
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

    /// The client writes these requests in one write, and its session decodes
    /// them: what the session hands on, not yet handed to the hub (the caller
    /// hands them in together, as the server does a read's).
    fn decoded(&mut self, c: usize, requests: &[Request]) -> Vec<(RequestId, Command)> {
        let mut bytes = Vec::new();
        for r in requests {
            bytes.extend_from_slice(&r.to_bytes());
        }
        self.conns[c].session.handle_input(&bytes, self.now);
        let mut decoded = Vec::new();
        while let Some(event) = self.conns[c].session.poll_event() {
            if let SessionEvent::Request { id, command } = event {
                decoded.push((id, command));
            }
        }
        decoded
    }

    /// The client writes these bytes in one write.
    fn send_raw(&mut self, c: usize, bytes: &[u8]) {
        self.conns[c].session.handle_input(bytes, self.now);
        self.pump();
    }

    /// Advances the hand clock to `to`, calling `handle_timeout` on every session
    /// and the hub whose deadline comes first, at its deadline, in deadline order.
    fn advance(&mut self, to: Millis) {
        assert!(to >= self.now, "the clock never goes back");
        for _ in 0..10_000 {
            // usize::MAX stands for the hub.
            let due = (0..self.conns.len())
                .filter_map(|c| self.conns[c].session.poll_timeout().map(|t| (t, c)))
                .chain(self.hub.poll_timeout().map(|t| (t, usize::MAX)))
                .filter(|(t, _)| *t <= to)
                .min();
            let Some((deadline, c)) = due else {
                self.now = to;
                return;
            };
            self.now = self.now.max(deadline);
            if c == usize::MAX {
                self.hub.handle_timeout(self.now);
            } else {
                self.conns[c].session.handle_timeout(self.now);
            }
            self.pump();
        }
        panic!("timeouts did not settle");
    }

    /// The drive loop: drains every session's transmits and events, and the hub's
    /// outputs, until all are quiet.
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
                            self.hub.handle_request(c as ConnId, id, command, self.now);
                            // Each request is a turn of its own.
                            progress |= self.carry_out();
                        }
                        SessionEvent::LoggedIn { user } => self.conns[c].logged_in = Some(user),
                        SessionEvent::Closed { reason } => {
                            // Its last bytes are already queued: take them, then nothing more.
                            self.transmit(c);
                            assert!(self.conns[c].closed.is_none(), "Closed twice");
                            self.conns[c].closed = Some(reason);
                            self.hub.handle_disconnected(c as ConnId);
                        }
                    }
                }
            }
            progress |= self.carry_out();
            if !progress {
                return;
            }
        }
        panic!("the drive loop did not settle");
    }

    /// Carries out the hub's outputs; true if there were any.
    fn carry_out(&mut self) -> bool {
        let mut any = false;
        while let Some(output) = self.hub.poll_output() {
            any = true;
            match output {
                Output::Deliver { conn, batch, share } => {
                    let session = &mut self.conns[conn as usize].session;
                    for delivery in batch.share(&share) {
                        match delivery {
                            Delivery::Reply { id, result } => {
                                let result = batch.result(*result).expect("a routed result");
                                session.reply(*id, result.clone(), self.now)
                            }
                            Delivery::List(list) => {
                                let list = batch.list(*list).expect("a routed list");
                                for item in &list.items {
                                    session.item(list.id, item);
                                }
                                session.reply(list.id, list.result.clone(), self.now);
                            }
                            Delivery::Close(failure) => {
                                session.close(batch.close(*failure).expect("a goodbye").clone())
                            }
                            Delivery::Frame { index, after } => {
                                let bytes = batch.frame(*index).expect("a routed frame");
                                match after {
                                    Some(id) => session.send_encoded_after(*id, bytes),
                                    None => session.send_encoded(bytes),
                                }
                            }
                        }
                    }
                }
                Output::Close { conn, failure } => self.conns[conn as usize].session.close(failure),
                Output::Commit(batch) => {
                    // A write vector handed back is emptied before it is reused: else
                    // the next batch would commit the last one's writes again.
                    for old in &self.handed_back {
                        assert!(
                            !batch.writes.starts_with(old),
                            "a batch begins with the {} writes of one committed before",
                            old.len()
                        );
                    }
                    self.held.push_back(batch);
                    if !self.hold {
                        self.release();
                    }
                }
                Output::Hash(job) => {
                    self.hashes += 1;
                    let outcome = match job.kind {
                        HashKind::Hash { password } => HashOutcome::Hashed(Ok(format!(
                            "plain:{}",
                            String::from_utf8_lossy(password.expose())
                        ))),
                        HashKind::Verify { password, stored } => {
                            HashOutcome::Checked(stored.is_some_and(|s| {
                                s.strip_prefix("plain:").map(str::as_bytes)
                                    == Some(password.expose())
                            }))
                        }
                    };
                    let done =
                        HashDone { req: job.req, user: job.user, outcome, purpose: job.purpose };
                    self.hub.handle_hashed(done, self.now);
                }
                // A new upload's running hash, and letting go of it: nothing to do
                // without a disk.
                Output::Disk(
                    DiskJob::Begin { .. }
                    | DiskJob::Release { .. }
                    | DiskJob::Drop { .. }
                    | DiskJob::ForgetHashes,
                ) => {}
                other => panic!("the simulation has no disk or reload: {other:?}"),
            }
        }
        any
    }

    /// Completes the oldest batch at the store: it commits, then its reads run.
    fn release(&mut self) {
        let batch = self.held.pop_front().expect("a batch at the store");
        self.store.commit(&batch.writes);
        let reads = batch.reads.iter().map(|(t, q)| (*t, Ok(self.store.read(q)))).collect();
        // The writes are handed back whole, as the store thread does: the hub
        // empties them for the next batch.
        if !batch.writes.is_empty() {
            if self.handed_back.len() == 8 {
                self.handed_back.pop_front();
            }
            self.handed_back.push_back(batch.writes.clone());
        }
        self.hub.handle_committed(batch.id, Ok(()), reads, batch.writes, self.now);
    }

    /// Holds commits from now on.
    fn hold(&mut self) {
        self.hold = true;
    }

    /// Completes the oldest held batch, and lets everything flow.
    fn release_one(&mut self) {
        self.release();
        self.pump();
    }

    /// Completes every held batch, and commits at once from now on.
    fn release_all(&mut self) {
        self.hold = false;
        for _ in 0..10_000 {
            if self.held.is_empty() {
                break;
            }
            self.release();
            self.pump();
        }
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
            req("a3", Command::Logout { revoke: false }),
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
    assert_eq!(**got, limits());
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

/// Requests handed on together (one read's) are taken only while the hub accepts:
/// once the open batch's events reach its share of `queue` while the store has all
/// the batches it takes ([`IN_FLIGHT`]), the rest wait, in order, and are taken as
/// batches commit; each is answered in request order (fails if `handle_requests`
/// takes them all at once).
#[test]
fn requests_handed_on_together_are_taken_only_while_the_hub_accepts() {
    // A quarter of the queue is 4 KiB: three of these messages fill an open batch.
    let mut sim = Sim::new(Limits { queue: 16 * 1024, ..limits() });
    let [a, _, _] = three_in_rust(&mut sim);
    sim.hold();
    sim.send(a, &[req("f1", send("rust", "f1", "one")), req("f2", send("rust", "f2", "two"))]);
    assert_eq!(sim.held.len(), IN_FLIGHT, "the store has all the batches it takes");
    let body = "z".repeat(2000);
    let tags: Vec<String> = (0..8).map(|i| format!("b{i}")).collect();
    let burst: Vec<Request> = tags.iter().map(|t| req(t, send("rust", t, &body))).collect();
    let requests = sim.decoded(a, &burst);
    assert_eq!(requests.len(), 8);
    let mut left = requests.into_iter();
    let mut takes = Vec::new();
    for _ in 0..16 {
        let taken = sim.hub.handle_requests(a as ConnId, &mut left, sim.now);
        takes.push(taken);
        if left.len() == 0 {
            break;
        }
        assert!(!sim.hub.accepting(), "requests left while the hub accepts");
        assert_eq!(sim.hub.handle_requests(a as ConnId, &mut left, sim.now), 0);
        sim.release_one();
    }
    assert_eq!(takes.iter().sum::<usize>(), 8);
    // An event is just under 2 KiB: the third reaches the share.
    assert!(takes.iter().all(|&n| n <= 3), "more than a batch's share taken at once: {takes:?}");
    sim.release_all();
    let frames = sim.take_frames(a);
    let mut want = vec!["f1", "f2"];
    want.extend(tags.iter().map(String::as_str));
    assert_replies_in_order(&frames, &want);
    let seqs = seqs(&frames, "rust");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gapless and in order: {seqs:?}");
    assert_eq!(seqs.len(), 10);
}

/// The shell's hold on commits (commits paced at saturation): while it holds, the
/// open batch stays in the hub even with the store free, and the hub says so
/// (`holds_batch`); once it lets go, the batch goes and its replies come. A batch
/// that fills up goes while held, so a hold never stops the hub taking requests
/// (fails if the hold is ignored, if it keeps a full batch back, or if
/// `holds_batch` does not tell a held batch from one waiting on the store).
#[test]
fn a_held_batch_waits_for_the_shell_unless_it_is_full() {
    // A quarter of the queue is 4 KiB: three 1,500-byte messages fill a batch, two
    // do not (about 1,540 bytes an event).
    let mut sim = Sim::new(Limits { queue: 16 * 1024, ..limits() });
    let [a, b, _] = three_in_rust(&mut sim);
    // The store keeps what it is given until told: what the hub sends is seen.
    sim.hold();
    assert!(!sim.hub.holds_batch(), "nothing to hold");
    sim.hub.hold_commits(true);
    sim.send(a, &[req("h1", send("rust", "h1", "one")), req("h2", send("rust", "h2", "two"))]);
    assert!(sim.held.is_empty(), "a batch went to the store while held");
    assert!(sim.hub.holds_batch());
    assert!(sim.hub.accepting());
    sim.hub.hold_commits(false);
    assert!(!sim.hub.holds_batch());
    sim.pump();
    assert_eq!(sim.held.len(), 1, "let go, the batch goes");
    assert!(sim.take(a).is_empty(), "a reply before the batch committed");
    sim.release_one();
    assert_replies_in_order(&sim.take_frames(a), &["h1", "h2"]);
    assert_eq!(seqs(&sim.take_frames(b), "rust").len(), 2, "delivered once committed");

    // Held, and filling up: the batch goes when it is full, not before.
    sim.hub.hold_commits(true);
    let body = "z".repeat(1500);
    sim.send(a, &[req("f1", send("rust", "f1", &body)), req("f2", send("rust", "f2", &body))]);
    assert!(sim.held.is_empty() && sim.hub.holds_batch(), "two of three: still held");
    sim.send(a, &[req("f3", send("rust", "f3", &body))]);
    assert_eq!(sim.held.len(), 1, "a full batch goes while held");
    // With a batch at the store, the next waits on the store, not on the shell's
    // hold (`holds_batch` says no).
    sim.send(a, &[req("g1", send("rust", "g1", "one"))]);
    assert_eq!(sim.held.len(), IN_FLIGHT);
    assert!(!sim.hub.holds_batch(), "waiting on the store is not the shell's hold");
    sim.hub.hold_commits(false);
    sim.release_all();
    assert_replies_in_order(&sim.take_frames(a), &["f1", "f2", "f3", "g1"]);
}

/// SPEC.md 5.2 for SENDs handed on together: the hub digests their keys ahead of
/// handling them (to warm their index slots), and each SEND is judged by its own
/// key. A retry within the batch gets the first send's number, a key reused for
/// another text is a conflict, and other requests between them change nothing
/// (fails if a SEND is given another request's digest).
#[test]
fn sends_handed_on_together_are_each_judged_by_their_own_key() {
    let mut sim = Sim::new(limits());
    let [a, _, _] = three_in_rust(&mut sim);
    let batch = [
        req("p1", Command::Ping),
        req("s1", send("rust", "k1", "one")),
        req("m1", Command::Members { group: group("rust") }),
        req("s2", send("rust", "k2", "two")),
        req("s3", send("rust", "k1", "one")),
        req("p2", Command::Ping),
        req("s4", send("rust", "k2", "not two")),
        req("s5", send("rust", "k3", "three")),
    ];
    let mut left = sim.decoded(a, &batch).into_iter();
    for _ in 0..batch.len() {
        sim.hub.handle_requests(a as ConnId, &mut left, sim.now);
        sim.pump();
        if left.len() == 0 {
            break;
        }
    }
    assert_eq!(left.len(), 0, "every request taken");
    let frames = sim.take_frames(a);
    let replies: std::collections::HashMap<String, String> = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::Ok { .. } | ServerFrame::Err { .. }))
        .map(|f| {
            let line = brief(f);
            let (tag, rest) = line.split_once(' ').unwrap();
            (tag.to_string(), rest.to_string())
        })
        .collect();
    let seq = |tag: &str| -> Seq {
        let rest = replies[tag].strip_prefix("OK SEND #rust ").expect(&replies[tag]);
        rest.split(' ').next().unwrap().parse().unwrap()
    };
    // The two JOINs are 1 and 2.
    assert_eq!([seq("s1"), seq("s2"), seq("s5")], [3, 4, 5], "{replies:?}");
    assert_eq!(replies["s3"], replies["s1"], "a retry gets the first send's number and time");
    assert_eq!(replies["s4"], "ERR KEY_CONFLICT");
    assert_eq!(seqs(&frames, "rust"), [3, 4, 5], "stored once each");
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

/// SPEC.md section 3: replies in request order. The hub answers a HISTORY only once
/// the store has read its page, after the batch it came in commits; requests behind
/// it are answered first (their replies ride on the same batch), and the session
/// holds them back until the HISTORY's reply is out.
#[test]
fn pipelined_requests_answered_out_of_order_reply_in_request_order() {
    let mut sim = Sim::new(limits());
    let [a, ..] = three_in_rust(&mut sim);
    sim.hold();
    let start = sim.conns[a].frames.len();
    let mut requests = pipeline();
    requests[1] = req("a2", history("rust"));
    sim.send(a, &requests);
    // PING needs no hub; everything behind the unanswered HISTORY waits.
    assert_eq!(sim.take(a), ["a1 OK PING"]);
    assert_eq!(sim.held.len(), 1, "the HISTORY's batch is at the store, the CREATE waits");
    // The first batch (the HISTORY's read) completes: its page, then the rest as far as
    // the CREATE, whose batch is now at the store.
    sim.release_one();
    let got = sim.take(a);
    assert_eq!(got.len(), 3, "the page and nothing of a3's batch: {got:?}");
    assert!(got[0].starts_with("a2 JOINED #rust 1") && got[1].starts_with("a2 JOINED #rust 2"));
    assert_eq!(got[2], "a2 OK HISTORY #rust 2 1");
    sim.release_all();
    let mut expected = vec!["a3 OK CREATE".to_string(), "a4 OK PING".into()];
    expected.push("a5 ERR GROUP_EXISTS".into());
    expected.extend(members_of_rust("a6"));
    expected.push("a7 OK PING".into());
    assert_eq!(sim.take(a), expected);
    assert_replies_in_order(&sim.conns[a].frames[start..], &PIPELINE_TAGS);
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
/// A HISTORY and a SEND pipelined in one write land in one batch: at its commit the
/// hub answers the SEND (and fans out its MSG) before the HISTORY's page is read. The
/// session holds the SEND's reply behind the HISTORY's, and the MSG behind the SEND's
/// reply; bob, who asked nothing, gets the MSG at once.
#[test]
fn event_caused_by_a_held_reply_comes_after_it() {
    let mut sim = Sim::new(limits());
    let [a, b, _] = three_in_rust(&mut sim);
    sim.hold();
    sim.send(a, &[req("h1", history("rust")), req("s1", send("rust", "k1", "hi"))]);
    assert!(sim.take(a).is_empty() && sim.take(b).is_empty(), "nothing before the commit");
    sim.release_all();
    let time = sim.now;
    let msg = format!("* MSG #rust 3 {time} alice {{2}} hi");
    assert_eq!(sim.take(b), [msg.as_str()]);
    let got = sim.take(a);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(got[0].starts_with("h1 JOINED #rust 1") && got[1].starts_with("h1 JOINED #rust 2"));
    assert_eq!(got[2], "h1 OK HISTORY #rust 2 1");
    assert_eq!(got[3..], [format!("s1 OK SEND #rust 3 {time}"), msg]);
}

/// The event a request caused waits for that request's reply only in the session
/// that sent it. bob has HISTORY requests waiting whose ids (each session numbers
/// its own) include the one alice's SEND has: the MSG still reaches him before any
/// of their replies (fails if the hub marks every reader's copy as following the
/// request, not only the sender's).
#[test]
fn event_waits_for_its_cause_only_in_the_sending_session() {
    let mut sim = Sim::new(limits());
    let [a, b, _] = three_in_rust(&mut sim);
    sim.hold();
    sim.send(a, &[req("h1", history("rust")), req("s1", send("rust", "k1", "hi"))]);
    let reads: Vec<Request> = (0..8).map(|i| req(&format!("r{i}"), history("rust"))).collect();
    sim.send(b, &reads);
    sim.release_all();
    let msg = format!("* MSG #rust 3 {} alice {{2}} hi", sim.now);
    let got = sim.take(b);
    assert_eq!(got.first(), Some(&msg), "{got:?}");
    assert_eq!(got.iter().filter(|l| l.contains(" OK HISTORY ")).count(), 8, "{got:?}");
}

/// A batch routes each list of recipients once, however many of its messages share
/// it: messages to one group gathered in one batch, between which the group's
/// sessions change (a second session of bob's logs in, carol logs out), each reach
/// the sessions online when it was sent, once and in order (fails if two lists of
/// the batch are taken for one, e.g. the first and last, which are as long).
#[test]
fn one_batch_fans_out_each_message_to_the_sessions_it_was_sent_to() {
    let mut sim = Sim::new(limits());
    let [a, b, c] = three_in_rust(&mut sim);
    sim.hold();
    // The store has all the batches it takes: what follows gathers in the open one.
    sim.send(a, &[req("f1", send("rust", "f1", "one"))]);
    sim.send(a, &[req("f2", send("rust", "f2", "two"))]);
    assert_eq!(sim.held.len(), IN_FLIGHT);
    sim.send(a, &[req("m1", send("rust", "m1", "to alice bob carol"))]);
    let b2 = sim.connect();
    sim.send(b2, &[req("h", hello(&[1])), req("l", login("bob", "pw-bob"))]);
    sim.send(a, &[req("m2", send("rust", "m2", "to all four"))]);
    sim.send(c, &[req("o", Command::Logout { revoke: false })]);
    assert_eq!(sim.conns[c].closed, Some(None));
    sim.send(a, &[req("m3", send("rust", "m3", "to alice bob bob"))]);
    assert_eq!(sim.held.len(), IN_FLIGHT, "m1 to m3 wait in the open batch");
    sim.release_all();
    // rust: two joins, f1, f2, then m1 to m3 (5 to 7).
    assert_eq!(seqs(&sim.take_frames(a), "rust"), [3, 4, 5, 6, 7]);
    assert_eq!(seqs(&sim.take_frames(b), "rust"), [3, 4, 5, 6, 7]);
    let got = sim.take_frames(b2);
    assert_eq!(seqs(&got, "rust"), [6, 7], "{:?}", got.iter().map(brief).collect::<Vec<_>>());
    assert_eq!(sim.conns[b2].logged_in, Some(user("bob")));
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

/// A private message reaches every session of its two users, including those that
/// logged in after the users last spoke, and no session that has gone or belongs to
/// someone else (the hub hands each user's list of sessions out shared).
#[test]
fn private_messages_reach_every_session_of_both_users_and_no_other() {
    let mut sim = Sim::new(limits());
    let dm = |to: &str, key: &str, body: &str| Command::Send {
        to: Conversation::Direct(user(to)),
        key: IdemKey::new(key).unwrap(),
        text: text(body),
    };
    // The private messages a connection received: (conversation, text).
    let messages = |sim: &mut Sim, c: usize| -> Vec<(String, String)> {
        sim.take_frames(c)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Event(Event::Stored(StoredEvent::Message { conv, text, .. })) => {
                    Some((conv.to_string(), text.as_str().to_string()))
                }
                _ => None,
            })
            .collect()
    };
    let (a1, a2, b1, c) = (
        sim.logged_in("alice"),
        sim.logged_in("alice"),
        sim.logged_in("bob"),
        sim.logged_in("carol"),
    );
    sim.send(a1, &[req("s1", dm("bob", "k1", "one"))]);
    let one = |conv: &str| vec![(conv.to_string(), "one".to_string())];
    assert_eq!(messages(&mut sim, a1), one("@bob"));
    assert_eq!(messages(&mut sim, a2), one("@bob"));
    assert_eq!(messages(&mut sim, b1), one("@alice"));
    assert_eq!(messages(&mut sim, c), vec![]);
    // One of alice's sessions goes, a second of bob's comes.
    sim.send(a2, &[req("o", Command::Logout { revoke: false })]);
    let b2 = sim.logged_in("bob");
    sim.send(b2, &[req("s2", dm("alice", "k2", "two"))]);
    let two = |conv: &str| vec![(conv.to_string(), "two".to_string())];
    assert_eq!(messages(&mut sim, a1), two("@bob"));
    assert_eq!(messages(&mut sim, a2), vec![]);
    assert_eq!(messages(&mut sim, b1), two("@alice"));
    assert_eq!(messages(&mut sim, b2), two("@alice"));
    assert_eq!(messages(&mut sim, c), vec![]);
    // A message to oneself reaches each of one's sessions once.
    sim.send(b1, &[req("s3", dm("bob", "k3", "three"))]);
    let three = vec![("@bob".to_string(), "three".to_string())];
    assert_eq!(messages(&mut sim, b1), three);
    assert_eq!(messages(&mut sim, b2), three);
    assert_eq!(messages(&mut sim, a1), vec![]);
}

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
    sim.send(b, &[req("mm", Command::Members { group: group("rust") })]);
    let members = sim.take(b);
    assert_eq!(
        members[..2],
        ["mm MEMBER rust bob owner online", "mm MEMBER rust alice admin online"]
    );
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
    sim.hold();
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

    // The first commit answers the head, which releases the next request, and only it.
    sim.release_one();
    assert_eq!(sim.take(a), ["c1 OK CREATE"]);
    assert_eq!(sim.conns[a].handed.len(), 3);
    assert!(!sim.conns[a].session.wants_input());

    // The rest: never more than two outstanding, nothing lost or reordered.
    sim.release_all();
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
    sim.hold();
    sim.send_raw(a, b"g1 CREATE go\r\ng2 FROB\r\n!! X\r\ng3 PING\n\r\ng4 PING\r\n");
    let (before, mut untagged) = split_untagged(sim.take(a));
    assert!(before.is_empty(), "a reply overtook g1: {before:?}");
    sim.release_all();
    let (after, more) = split_untagged(sim.take(a));
    untagged.extend(more);
    let expected = ["g1 OK CREATE", "g2 ERR UNKNOWN_COMMAND", "g3 ERR BAD_LINE_END", "g4 OK PING"];
    assert_eq!(after, expected);
    assert_eq!(untagged, ["* ERR BAD_TAG"]);

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
    sim.hold();
    sim.send(a, &[req("o0", Command::Create { group: group("go"), rule: None })]);
    sim.send(a, &[req("o1", Command::Logout { revoke: false })]);
    assert!(sim.take(a).is_empty());
    assert_eq!(sim.conns[a].closed, None);
    sim.release_all();
    assert_eq!(sim.take(a), ["o0 OK CREATE", "o1 OK LOGOUT"]);
    assert_eq!(sim.conns[a].closed, Some(None));
    assert_eq!(sim.conns[a].session.state(), SessionState::Closed);
    assert_eq!(sim.conns[a].session.user(), None);
    assert_eq!(sim.conns[a].session.poll_timeout(), None);
    assert!(!sim.conns[a].session.wants_input());

    // Nothing is sent after: not fan-out, not events, not replies, not timeouts.
    sim.send(b, &[req("m1", send("rust", "m1", "bye alice"))]);
    let got = sim.take(b);
    // alice's only session ended: her co-members hear it (SPEC.md 4.5).
    assert_eq!(got[0], "* PRESENCE alice offline");
    assert_eq!(got.len(), 3, "{got:?}");
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
    sim.send(c, &[req("h1", hello(&[1])), req("o2", Command::Logout { revoke: false })]);
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
            req("o1", Command::Logout { revoke: false }),
            req("o2", Command::Create { group: group("go"), rule: None }),
        ],
    );
    assert_eq!(sim.take(a), ["o1 OK LOGOUT"]);
    assert_eq!(sim.conns[a].closed, Some(None));
    assert!(sim.conns[a].handed.len() == 1, "handed {:?}", sim.conns[a].handed);
    // The CREATE after the LOGOUT never happened: bob may create `go`.
    let b = sim.logged_in("bob");
    sim.send(b, &[req("c1", Command::Create { group: group("go"), rule: None })]);
    assert_eq!(sim.take(b), ["c1 OK CREATE"]);
}

// ---------------------------------------------------------------------------------
// 8. The product's rules, through the real hub (baatkaro_proto::rules)
// ---------------------------------------------------------------------------------

/// alice owns the approval group `rust`; carol is a member; dave has asked to join.
fn rust_with_a_request(sim: &mut Sim) -> [usize; 4] {
    let [a, b, c, d] = ["alice", "bob", "carol", "dave"].map(|u| sim.logged_in(u));
    sim.send(a, &[req("s1", Command::Create { group: group("rust"), rule: None })]);
    sim.send(c, &[req("s2", Command::Join { group: group("rust"), reason: None })]);
    sim.send(a, &[req("s3", Command::Approve { group: group("rust"), user: user("carol") })]);
    let reason = Some(text("rustacean"));
    sim.send(d, &[req("s4", Command::Join { group: group("rust"), reason })]);
    for k in [a, b, c, d] {
        sim.take(k);
    }
    [a, b, c, d]
}

/// SPEC.md 6.2: only the owner and admins may list a group's join requests; a member
/// is refused with NOT_PERMITTED, anyone else with NOT_MEMBER.
#[test]
fn only_owners_and_admins_may_list_requests() {
    let mut sim = Sim::new(limits());
    let [a, b, c, _] = rust_with_a_request(&mut sim);
    let requests = |tag: &str| req(tag, Command::Requests { group: group("rust") });
    sim.send(c, &[requests("r1")]);
    assert_eq!(sim.take(c), ["r1 ERR NOT_PERMITTED"]);
    sim.send(b, &[requests("r2")]);
    assert_eq!(sim.take(b), ["r2 ERR NOT_MEMBER"]);
    let t = T0;
    sim.send(a, &[requests("r3")]);
    assert_eq!(
        sim.take(a),
        [format!("r3 REQUEST rust dave {t} {{9}} rustacean"), "r3 OK REQUESTS 1".into()]
    );
    sim.send(a, &[req("p1", Command::Promote { group: group("rust"), user: user("carol") })]);
    sim.take(c);
    sim.send(c, &[requests("r4")]);
    assert_eq!(sim.take(c).last().map(String::as_str), Some("r4 OK REQUESTS 1"));
}

/// SPEC.md 6.2 and Appendix B: a join request's reason is at most `reason` octets;
/// a longer one is refused with TEXT_TOO_LONG and nothing is recorded.
#[test]
fn a_join_reason_over_the_limit_is_refused() {
    let mut sim = Sim::new(Limits { reason: 10, ..limits() });
    let [a, b, ..] = [sim.logged_in("alice"), sim.logged_in("bob")];
    sim.send(a, &[req("c1", Command::Create { group: group("rust"), rule: None })]);
    sim.take(a);
    let join = |tag: &str, why: &str| {
        req(tag, Command::Join { group: group("rust"), reason: Some(text(why)) })
    };
    sim.send(b, &[join("j1", "12345678901")]);
    assert_eq!(sim.take(b), ["j1 ERR TEXT_TOO_LONG"]);
    assert!(sim.take(a).is_empty(), "no REQUESTED for a refused join");
    sim.send(b, &[join("j2", "1234567890")]);
    assert_eq!(sim.take(b), ["j2 OK JOIN rust pending"]);
    assert_eq!(sim.take(a).len(), 1, "REQUESTED");
}

/// SPEC.md 6.3: inviting someone who has no account is refused with NO_SUCH_USER,
/// and nobody is told anything.
#[test]
fn inviting_an_unknown_user_is_refused() {
    let mut sim = Sim::new(limits());
    let [a, b, c, d] = rust_with_a_request(&mut sim);
    let invite =
        |tag: &str, who: &str| req(tag, Command::Invite { group: group("rust"), user: user(who) });
    sim.send(a, &[invite("i1", "zed")]);
    assert_eq!(sim.take(a), ["i1 ERR NO_SUCH_USER"]);
    for k in [b, c, d] {
        assert!(sim.take(k).is_empty());
    }
    sim.send(a, &[invite("i2", "bob")]);
    assert_eq!(sim.take(a), ["i2 OK INVITE rust bob invited"]);
}

/// SPEC.md Appendix B (`rate`: "sustained sends (SEND, FILE-OFFER)"): a FILE-OFFER
/// takes from the same budget as SEND.
#[test]
fn file_offers_count_against_the_send_budget() {
    let mut sim = Sim::new(Limits { rate: 1, burst: 2, ..limits() });
    let [a, ..] = three_in_rust(&mut sim);
    let offer = |tag: &str, digit: char| {
        let sha =
            baatkaro_proto::Sha256::from_hex(digit.to_string().repeat(64).as_bytes()).unwrap();
        req(
            tag,
            Command::FileOffer {
                to: Conversation::Group(group("rust")),
                size: 10,
                sha256: sha,
                name: baatkaro_proto::OfferName::new("notes.txt").unwrap(),
            },
        )
    };
    sim.send(a, &[offer("f1", '1'), offer("f2", '2')]);
    let got = sim.take(a);
    assert!(got.iter().all(|l| l.contains("OK FILE-OFFER")), "{got:?}");
    sim.send(a, &[req("m1", send("rust", "m1", "one too many"))]);
    assert_eq!(sim.take(a), ["m1 ERR RATE_LIMITED"]);
}

/// SPEC.md 5.2 and 11.2: the hub holds at most `key-count` idempotency keys per user,
/// however many messages the user stores; a retry among the newest is recognised, an
/// older one is a new send.
#[test]
fn idempotency_keys_held_stay_within_their_count() {
    let mut sim =
        Sim::new(Limits { key_count: 100, rate: 1_000_000, burst: 1_000_000, ..limits() });
    let [a, b, _] = three_in_rust(&mut sim);
    for i in 0..1_000 {
        sim.send(a, &[req("m", send("rust", &format!("k{i}"), "hi"))]);
        sim.send(b, &[req("m", send("rust", &format!("k{i}"), "hi"))]);
        assert!(sim.hub.keys_held() <= 200, "{} keys held", sim.hub.keys_held());
    }
    assert_eq!(sim.hub.keys_held(), 200);
    sim.take(a);
    // The newest is a retry: its original number, nothing stored.
    sim.send(a, &[req("r1", send("rust", "k999", "hi"))]);
    let got = sim.take(a);
    assert_eq!(got.len(), 1, "a retry stores and delivers nothing: {got:?}");
    assert!(got[0].starts_with("r1 OK SEND #rust 2001 "), "{got:?}");
    // The oldest was forgotten: stored again.
    sim.send(a, &[req("r2", send("rust", "k0", "hi"))]);
    assert!(sim.take(a)[0].starts_with("r2 OK SEND #rust 2003 "));
}

// ---------------------------------------------------------------------------------
// Session tokens (SPEC.md 4.7)
// ---------------------------------------------------------------------------------

fn auth(name: &str, token: TokenId, secret: TokenSecret) -> Command {
    Command::Auth { user: user(name), token, secret }
}

impl Sim {
    /// Session `c` makes a token labelled `label`: its number and secret.
    fn mint(&mut self, c: usize, label: &str) -> (TokenId, TokenSecret) {
        self.send(c, &[req("t", Command::Token { label: text(label) })]);
        let frames = self.take_frames(c);
        match &frames[..] {
            [ServerFrame::Ok { reply: OkReply::Token { token, secret }, .. }] => (*token, *secret),
            other => panic!("TOKEN answered {other:?}"),
        }
    }

    /// A connection that has done HELLO and AUTH as `name` with this token.
    fn token_session(&mut self, name: &str, token: TokenId, secret: TokenSecret) -> usize {
        let c = self.connect();
        self.send(c, &[req("h", hello(&[1])), req("a", auth(name, token, secret))]);
        let got = self.take(c);
        assert_eq!(got.last().map(String::as_str), Some(&*format!("a OK AUTH {name}")), "{got:?}");
        c
    }

    /// Session `c`'s TOKENS, as (number, used, expires, label).
    fn tokens(&mut self, c: usize) -> Vec<(TokenId, Millis, Millis, String)> {
        self.send(c, &[req("ts", Command::Tokens)]);
        self.take_frames(c)
            .into_iter()
            .filter_map(|f| match f {
                ServerFrame::Item {
                    item: baatkaro_proto::Item::Token { token, used, expires, label, .. },
                    ..
                } => Some((token, used, expires, label.to_string())),
                _ => None,
            })
            .collect()
    }
}

/// A token logs a session in without a password (no password job at all), for the
/// user it belongs to and with its own secret only; it expires once unused for the
/// idle time, and every use moves that on.
#[test]
fn a_token_logs_in_without_a_password_until_it_is_unused_for_the_idle_time() {
    let cfg = HubConfig { token_idle_secs: 3_600, ..HubConfig::new(limits()) };
    let mut sim = Sim::with(cfg);
    let a = sim.logged_in("alice");
    let (id, secret) = sim.mint(a, "laptop");
    assert_eq!(id, 1);
    let hashes = sim.hashes;
    let b = sim.token_session("alice", id, secret);
    assert_eq!(sim.conns[b].logged_in, Some(user("alice")));
    assert_eq!(sim.hashes, hashes, "a token login hashes no password");

    let c = sim.connect();
    sim.send(c, &[req("h", hello(&[1]))]);
    sim.take(c);
    let mut wrong = secret;
    wrong.0[31] ^= 1;
    sim.send(
        c,
        &[
            req("w1", auth("alice", id, wrong)),
            req("w2", auth("bob", id, secret)),
            req("w3", auth("alice", id + 1, secret)),
        ],
    );
    assert_eq!(sim.take(c), ["w1 ERR AUTH_FAILED", "w2 ERR AUTH_FAILED", "w3 ERR AUTH_FAILED"]);

    // Used 50 minutes later (on new connections: these went idle), it lives an hour
    // from then.
    sim.advance(T0 + 3_000_000);
    let b = sim.token_session("alice", id, secret);
    let listed = sim.tokens(b);
    assert_eq!(listed, [(1, T0 + 3_000_000, T0 + 3_000_000 + 3_600_000, "laptop".into())]);
    sim.advance(T0 + 3_000_000 + 3_599_999);
    sim.token_session("alice", id, secret);
    // An hour without a use: refused, and gone from the list at the next sweep.
    sim.advance(T0 + 3_000_000 + 3_599_999 + 3_600_000);
    let d = sim.connect();
    sim.send(d, &[req("h", hello(&[1])), req("x2", auth("alice", id, secret))]);
    assert_eq!(sim.take(d)[1], "x2 ERR AUTH_FAILED");
    sim.advance(sim.now + 60_000);
    let a = sim.logged_in("alice");
    assert!(sim.tokens(a).is_empty());
}

/// REVOKE takes effect at once: what a session that logged in with the token sends
/// after it is refused even before the revocation is durable, and once it is, the
/// REVOKE is answered and every such session is closed with BYE REVOKED. Sessions
/// that logged in otherwise go on.
#[test]
fn a_revoked_token_ends_its_sessions_at_once() {
    let mut sim = Sim::new(limits());
    let a = sim.logged_in("alice");
    let other = sim.logged_in("alice");
    let (id, secret) = sim.mint(a, "phone");
    let b = sim.token_session("alice", id, secret);
    let c = sim.token_session("alice", id, secret);
    sim.hold();
    sim.send(a, &[req("r1", Command::Revoke { token: id })]);
    assert!(sim.take(a).is_empty(), "the reply waits for the commit");
    sim.send(b, &[req("g1", Command::Groups)]);
    assert_eq!(sim.take(b), ["g1 ERR REVOKED"]);
    assert_eq!(sim.conns[b].closed, Some(Some(ErrorCode::Revoked)));
    sim.release_all();
    assert_eq!(sim.take(a), ["r1 OK REVOKE"]);
    assert_eq!(sim.take(c), ["* BYE REVOKED"]);
    assert_eq!(sim.conns[c].closed, Some(Some(ErrorCode::Revoked)));
    sim.send(other, &[req("g2", Command::Groups)]);
    assert_eq!(sim.take(other), ["g2 OK GROUPS 0"]);
    let d = sim.connect();
    sim.send(d, &[req("h", hello(&[1])), req("x", auth("alice", id, secret))]);
    assert_eq!(sim.take(d)[1], "x ERR AUTH_FAILED");
    // Nobody revokes a token that is not theirs, or one that is gone.
    let bob = sim.logged_in("bob");
    let (bobs, _) = sim.mint(bob, "desk");
    sim.send(
        a,
        &[req("r2", Command::Revoke { token: id }), req("r3", Command::Revoke { token: bobs })],
    );
    assert_eq!(sim.take(a), ["r2 ERR NO_SUCH_TOKEN", "r3 ERR NO_SUCH_TOKEN"]);
    assert_eq!(sim.tokens(bob).len(), 1);
}

/// A user's sessions as the hub counts them, across every way one comes or goes:
/// co-members hear ONLINE at the first and OFFLINE after the last (LOGOUT, a dropped
/// connection, a revoked token), never in between, and the `sessions` limit counts
/// exactly the sessions there are, so a place freed by any of them is taken again.
#[test]
fn presence_and_the_sessions_limit_follow_every_session_that_comes_and_goes() {
    let mut sim = Sim::new(Limits { sessions: 2, ..limits() });
    let [a1, b, _] = three_in_rust(&mut sim);
    let presence = |sim: &mut Sim| -> Vec<String> {
        sim.take(b).into_iter().filter(|l| l.starts_with("* PRESENCE")).collect()
    };
    let (token, secret) = sim.mint(a1, "phone");
    let over = |sim: &mut Sim| {
        let c = sim.connect();
        sim.send(c, &[req("h", hello(&[1])), req("l", login("alice", "pw-alice"))]);
        let got = sim.take(c);
        assert!(got[1].starts_with("l ERR TOO_MANY_CONNECTIONS"), "{got:?}");
    };
    // A second session: no news; a third is over the limit.
    let a2 = sim.token_session("alice", token, secret);
    assert!(presence(&mut sim).is_empty());
    over(&mut sim);
    // The token is revoked: its session ends, alice is still online, and its place
    // is free again (once, not twice).
    sim.send(a1, &[req("r", Command::Revoke { token })]);
    assert_eq!(sim.take(a2), ["* BYE REVOKED"]);
    assert!(presence(&mut sim).is_empty());
    let a3 = sim.logged_in("alice");
    over(&mut sim);
    // LOGOUT frees a place, and so does a connection that drops.
    sim.send(a3, &[req("o", Command::Logout { revoke: false })]);
    assert!(presence(&mut sim).is_empty());
    let a4 = sim.logged_in("alice");
    over(&mut sim);
    sim.hub.handle_disconnected(a4 as ConnId);
    assert!(presence(&mut sim).is_empty());
    // The last session goes: OFFLINE, once; the next to come: ONLINE, once.
    sim.send(a1, &[req("o", Command::Logout { revoke: false })]);
    assert_eq!(presence(&mut sim), ["* PRESENCE alice offline"]);
    let a5 = sim.logged_in("alice");
    assert_eq!(presence(&mut sim), ["* PRESENCE alice online"]);
    let a6 = sim.logged_in("alice");
    over(&mut sim);
    // Both of alice's sessions hear bob's message, once each.
    sim.send(b, &[req("m", send("rust", "m", "still there?"))]);
    for a in [a5, a6] {
        let got = sim.take(a);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("* MSG #rust"), "{got:?}");
    }
    sim.hub.handle_disconnected(a5 as ConnId);
    assert!(presence(&mut sim).is_empty());
    sim.hub.handle_disconnected(a6 as ConnId);
    sim.pump();
    assert_eq!(presence(&mut sim), ["* PRESENCE alice offline"]);
}

/// LOGOUT revoke revokes the session's own token: the other sessions it logged in
/// end too, and it works no more.
#[test]
fn logout_revoke_revokes_the_sessions_own_token() {
    let mut sim = Sim::new(limits());
    let a = sim.logged_in("alice");
    let (id, secret) = sim.mint(a, "phone");
    let b = sim.token_session("alice", id, secret);
    let c = sim.token_session("alice", id, secret);
    sim.send(b, &[req("o", Command::Logout { revoke: true })]);
    assert_eq!(sim.take(b), ["o OK LOGOUT"]);
    assert_eq!(sim.conns[b].closed, Some(None));
    assert_eq!(sim.take(c), ["* BYE REVOKED"]);
    assert!(sim.tokens(a).is_empty());
    // A session that logged in with its password has no token to revoke.
    sim.send(a, &[req("o", Command::Logout { revoke: true })]);
    assert_eq!(sim.take(a), ["o OK LOGOUT"]);
}

/// A user holds at most `tokens` tokens: one more lets go of the least recently
/// used, which works no more.
#[test]
fn one_token_past_the_bound_lets_go_of_the_least_recently_used() {
    let mut sim = Sim::new(Limits { tokens: 2, ..limits() });
    let a = sim.logged_in("alice");
    let (one, s1) = sim.mint(a, "one");
    sim.advance(T0 + 1_000);
    let (two, s2) = sim.mint(a, "two");
    sim.advance(T0 + 2_000);
    // One is used after two was made: two is now the least recently used.
    sim.token_session("alice", one, s1);
    let (three, _) = sim.mint(a, "three");
    let listed: Vec<TokenId> = sim.tokens(a).iter().map(|t| t.0).collect();
    assert_eq!(listed, [one, three]);
    let d = sim.connect();
    sim.send(d, &[req("h", hello(&[1])), req("x", auth("alice", two, s2))]);
    assert_eq!(sim.take(d)[1], "x ERR AUTH_FAILED");
}

/// Token logins have a budget of their own per address: an address that spent its
/// password attempts still logs in with a token, and token logins past their own
/// budget get RATE_LIMITED with the time until the next one.
#[test]
fn token_logins_spend_no_password_attempts_and_have_their_own_budget() {
    let cfg = HubConfig { logins_per_minute: 2, ..HubConfig::new(limits()) };
    let mut sim = Sim::with(cfg);
    let a = sim.logged_in("alice");
    let (id, secret) = sim.mint(a, "script");
    let c = sim.connect();
    sim.send(c, &[req("h", hello(&[1])), req("l1", login("alice", "nope"))]);
    sim.send(c, &[req("l2", login("alice", "nope"))]);
    let got = sim.take(c);
    assert_eq!(got[1..], ["l1 ERR AUTH_FAILED", "l2 ERR RATE_LIMITED"], "2 password attempts");
    // 2 a second, 120 at once: the burst, then one every 500 ms.
    for i in 0..120 {
        let d = sim.connect();
        sim.send(d, &[req("h", hello(&[1])), req("a", auth("alice", id, secret))]);
        assert_eq!(sim.take(d)[1], "a OK AUTH alice", "token login {i}");
        sim.send(d, &[req("o", Command::Logout { revoke: false })]);
    }
    let d = sim.connect();
    sim.send(d, &[req("h", hello(&[1])), req("a", auth("alice", id, secret))]);
    let frames = sim.take_frames(d);
    let ServerFrame::Err { failure, .. } = &frames[1] else { panic!("{frames:?}") };
    assert_eq!((failure.code, failure.retry_after), (ErrorCode::RateLimited, Some(500)));
    sim.advance(sim.now + 500);
    sim.send(d, &[req("b", auth("alice", id, secret))]);
    assert_eq!(sim.take(d), ["b OK AUTH alice"]);
}

// ---------------------------------------------------------------------------------
// Downloads over HTTP (SPEC.md 12.4)
// ---------------------------------------------------------------------------------

/// The content the downloads share: `hello,moon`, whose SHA-256 SPEC.md 6.7 shows.
const MOON: &[u8] = b"hello,moon";

fn moon_sha() -> baatkaro_proto::Sha256 {
    use sha2::Digest;
    baatkaro_proto::Sha256(sha2::Sha256::digest(MOON).into())
}

/// The secret of dave's token in [`download_sim`]'s store.
const DAVE_SECRET: TokenSecret = TokenSecret([0xda; 32]);

/// A simulation where alice holds [`MOON`] already (so a FILE-OFFER of it shares it
/// at once: the simulation has no disk), and dave's account is locked but holds
/// token 50 with [`DAVE_SECRET`].
fn download_sim(cfg: HubConfig) -> Sim {
    use sha2::Digest;
    Sim::with_snapshot(cfg, |s| {
        s.contents.push((user("alice"), moon_sha(), MOON.len() as u64));
        s.locked.push(user("dave"));
        s.tokens.push(baatkaro_hub::store::TokenRecord {
            id: 50,
            user: user("dave"),
            digest: sha2::Sha256::digest(DAVE_SECRET.0).into(),
            label: text("old laptop"),
            created: T0,
            used: T0,
            address: "127.0.0.1".parse().unwrap(),
        });
    })
}

impl Sim {
    /// Session `c` shares [`MOON`] in `to` as `notes.txt`, at once: its file id.
    fn share_moon(&mut self, c: usize, to: Conversation) -> FileId {
        let name = baatkaro_proto::OfferName::new("notes.txt").unwrap();
        let offer = Command::FileOffer { to, size: MOON.len() as u64, sha256: moon_sha(), name };
        self.send(c, &[req("f", offer)]);
        // The reply, among events (the FILE event the sender gets too).
        let frames = self.take_frames(c);
        let reply = frames.iter().find_map(|f| match f {
            ServerFrame::Ok { reply: OkReply::FileOffer { file, status }, .. } => {
                Some((file, status))
            }
            _ => None,
        });
        match reply {
            Some((file, baatkaro_proto::OfferStatus::Done(_))) => *file,
            _ => panic!("FILE-OFFER answered {frames:?}"),
        }
    }

    /// A download over HTTP of `file` from `peer` with `name`'s token, at the
    /// current time; then the hub's outputs are carried out, as the shell does.
    fn download(
        &mut self,
        peer: [u8; 4],
        name: &str,
        (token, secret): (TokenId, TokenSecret),
        file: FileId,
    ) -> Result<FileGrant, ErrorCode> {
        let access = FileAccess { peer: peer.into(), user: user(name), token, secret, file };
        let answer = self.hub.handle_file_access(access, self.now);
        self.pump();
        answer.map_err(|f| f.code)
    }
}

/// A token that AUTH would take may download a file its user may FILE-GET, and
/// gets its size, hash and name; every token AUTH would refuse is refused the same
/// (AUTH_FAILED, whichever part was wrong), a locked account is refused once its
/// token is right, and who may not read the file hears of no file at all.
#[test]
fn a_download_over_http_checks_its_token_as_auth_does_and_its_reader_as_file_get_does() {
    let cfg = HubConfig { token_idle_secs: 3_600, ..HubConfig::new(limits()) };
    let mut sim = download_sim(cfg);
    let [a, b, c] = three_in_rust(&mut sim);
    let file = sim.share_moon(a, Conversation::Group(group("rust")));
    // Their FILE events.
    sim.take(b);
    sim.take(c);
    let bob = sim.mint(b, "browser");
    let local = [127, 0, 0, 1];
    let moon =
        FileGrant { size: 10, sha256: moon_sha(), name: FileName::new("notes.txt").unwrap() };
    assert_eq!(sim.download(local, "bob", bob, file), Ok(moon.clone()));

    let mut wrong = bob;
    wrong.1.0[31] ^= 1;
    assert_eq!(sim.download(local, "bob", wrong, file), Err(ErrorCode::AuthFailed));
    assert_eq!(sim.download(local, "alice", bob, file), Err(ErrorCode::AuthFailed));
    assert_eq!(sim.download(local, "bob", (bob.0 + 1, bob.1), file), Err(ErrorCode::AuthFailed));
    assert_eq!(sim.download(local, "dave", (50, DAVE_SECRET), file), Err(ErrorCode::AccountLocked));
    assert_eq!(sim.download(local, "dave", (50, bob.1), file), Err(ErrorCode::AuthFailed));

    // Only the readers of the conversation it was shared in: carol leaves rust, and
    // the file is as unknown to her as one that does not exist.
    let carol = sim.mint(c, "browser");
    assert_eq!(sim.download(local, "carol", carol, file), Ok(moon.clone()));
    sim.send(c, &[req("l", Command::Leave { group: group("rust") })]);
    sim.take(c);
    assert_eq!(sim.download(local, "carol", carol, file), Err(ErrorCode::NoSuchFile));
    let nothing = FileId::new("fNothing").unwrap();
    assert_eq!(sim.download(local, "bob", bob, nothing), Err(ErrorCode::NoSuchFile));
    // A private file: its two readers only.
    let private = sim.share_moon(a, Conversation::Direct(user("carol")));
    assert_eq!(sim.download(local, "carol", carol, private), Ok(moon.clone()));
    assert_eq!(sim.download(local, "bob", bob, private), Err(ErrorCode::NoSuchFile));

    // Revoked: refused at once, before the revocation is durable.
    sim.hold();
    sim.send(b, &[req("r", Command::Revoke { token: bob.0 })]);
    assert_eq!(sim.download(local, "bob", bob, file), Err(ErrorCode::AuthFailed));
    sim.release_all();

    // Expired once unused for the idle time; each download is a use that moves it on.
    let alice = sim.mint(a, "browser");
    sim.advance(sim.now + 3_000_000);
    assert!(sim.download(local, "alice", alice, file).is_ok());
    sim.advance(sim.now + 3_599_999);
    assert!(sim.download(local, "alice", alice, file).is_ok());
    sim.advance(sim.now + 3_600_000);
    assert_eq!(sim.download(local, "alice", alice, file), Err(ErrorCode::AuthFailed));
}

/// A server that stops takes no more downloads, however good their token.
#[test]
fn a_stopping_server_takes_no_downloads() {
    let mut sim = download_sim(HubConfig::new(limits()));
    let a = sim.logged_in("alice");
    let file = sim.share_moon(a, Conversation::Direct(user("bob")));
    let token = sim.mint(a, "browser");
    assert!(sim.download([127, 0, 0, 1], "alice", token, file).is_ok());
    sim.hub.handle_shutdown();
    let access = FileAccess {
        peer: [127, 0, 0, 1].into(),
        user: user("alice"),
        token: token.0,
        secret: token.1,
        file,
    };
    let refusal = sim.hub.handle_file_access(access, sim.now).unwrap_err();
    assert_eq!((refusal.code, refusal.retry_after), (ErrorCode::ShuttingDown, Some(5_000)));
}

/// A download is a use of its token, recorded as AUTH records one: TOKENS shows
/// when and from where it was last used, and the store is told.
#[test]
fn a_download_is_a_use_of_its_token() {
    let mut sim = download_sim(HubConfig::new(limits()));
    let a = sim.logged_in("alice");
    let file = sim.share_moon(a, Conversation::Direct(user("bob")));
    let token = sim.mint(a, "browser");
    // Within the sessions' idle time.
    sim.advance(T0 + 20_000);
    sim.hold();
    assert!(sim.download([127, 0, 0, 9], "alice", token, file).is_ok());
    let writes: Vec<&Write> = sim.held.iter().flat_map(|b| &b.writes).collect();
    assert!(
        writes.iter().any(|w| matches!(w, Write::Token(r)
            if r.id == token.0 && r.used == T0 + 20_000 && r.address.to_string() == "127.0.0.9")),
        "the use is written: {writes:?}"
    );
    assert!(
        writes.iter().any(|w| matches!(w, Write::KnownAddress { address, .. }
            if address.to_string() == "127.0.0.9")),
        "the address is one the account knows: {writes:?}"
    );
    sim.release_all();
    sim.send(a, &[req("ts", Command::Tokens)]);
    let listed: Vec<(Millis, String)> = sim
        .take_frames(a)
        .into_iter()
        .filter_map(|f| match f {
            ServerFrame::Item {
                item: baatkaro_proto::Item::Token { used, address, .. }, ..
            } => Some((used, address.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(listed, [(T0 + 20_000, "127.0.0.9".to_string())]);
}

/// Downloads spend the address's budget of token logins, the one AUTH spends:
/// guesses over HTTP come no faster than over AUTH, and an address that spent it on
/// either is refused on both, with the time until the next one; another address
/// is not slowed.
#[test]
fn downloads_and_auth_share_the_address_s_budget_of_token_logins() {
    // One a second, sixty at once.
    let cfg = HubConfig { logins_per_minute: 1, ..HubConfig::new(limits()) };
    let mut sim = download_sim(cfg);
    let a = sim.logged_in("alice");
    let file = sim.share_moon(a, Conversation::Direct(user("bob")));
    let (token, secret) = sim.mint(a, "browser");
    let guesser = [10, 0, 0, 7];
    for i in 0..60u8 {
        // Never the secret the simulation made (32 equal bytes).
        let mut guess = TokenSecret([0xff; 32]);
        guess.0[0] = i;
        assert_eq!(
            sim.download(guesser, "alice", (token, guess), file),
            Err(ErrorCode::AuthFailed)
        );
    }
    let access = FileAccess { peer: guesser.into(), user: user("alice"), token, secret, file };
    let refusal = sim.hub.handle_file_access(access, sim.now).unwrap_err();
    assert_eq!((refusal.code, refusal.retry_after), (ErrorCode::RateLimited, Some(1_000)));
    // AUTH from the same address finds the budget spent too.
    let c = sim.connect_from([10, 0, 0, 7].into());
    sim.send(c, &[req("h", hello(&[1])), req("x", auth("alice", token, secret))]);
    assert_eq!(sim.take(c)[1], "x ERR RATE_LIMITED");
    // Another address is not slowed; the guesser gets one more a second later.
    assert!(sim.download([10, 0, 0, 8], "alice", (token, secret), file).is_ok());
    sim.advance(sim.now + 1_000);
    assert!(sim.download(guesser, "alice", (token, secret), file).is_ok());
}

// ---------------------------------------------------------------------------------
// The account's life (SPEC.md 4.8)
// ---------------------------------------------------------------------------------

fn change_password(old: &str, new: &str) -> Command {
    Command::Password { old: Password::new(old).unwrap(), new: Password::new(new).unwrap() }
}

fn delete_account(password: &str) -> Command {
    Command::DeleteAccount { password: Password::new(password).unwrap() }
}

/// PASSWORD asks for the old password and a long enough new one; once changed, every
/// other session ends and every token but the session's own is revoked, and only the
/// new password logs in.
#[test]
fn a_password_change_ends_the_other_sessions_and_tokens() {
    let mut sim = Sim::new(Limits { password: 8, ..limits() });
    let a = sim.logged_in("alice");
    let (kept, kept_secret) = sim.mint(a, "laptop");
    let (other, other_secret) = sim.mint(a, "phone");
    let by_token = sim.token_session("alice", kept, kept_secret);
    let phone = sim.token_session("alice", other, other_secret);
    let bob = sim.logged_in("bob");
    sim.send(
        by_token,
        &[
            req("p1", change_password("pw-alice", "short")),
            req("p2", change_password("wrong-one", "long-enough")),
            req("p3", change_password("pw-alice", "long-enough")),
        ],
    );
    assert_eq!(
        sim.take(by_token),
        ["p1 ERR PASSWORD_TOO_SHORT", "p2 ERR AUTH_FAILED", "p3 OK PASSWORD"]
    );
    for c in [a, phone] {
        assert_eq!(sim.take(c), ["* BYE REVOKED"]);
        assert_eq!(sim.conns[c].closed, Some(Some(ErrorCode::Revoked)));
    }
    assert!(sim.take(bob).is_empty(), "other users are not touched");
    let listed: Vec<TokenId> = sim.tokens(by_token).iter().map(|t| t.0).collect();
    assert_eq!(listed, [kept], "the session's own token is kept");
    let c = sim.connect();
    sim.send(
        c,
        &[
            req("h", hello(&[1])),
            req("x1", auth("alice", other, other_secret)),
            req("x2", login("alice", "pw-alice")),
            req("x3", login("alice", "long-enough")),
        ],
    );
    assert_eq!(sim.take(c)[1..], ["x1 ERR AUTH_FAILED", "x2 ERR AUTH_FAILED", "x3 OK LOGIN alice"]);
}

/// DELETE-ACCOUNT: a group the account owns passes to its first admin by name (else
/// its first member), a group of its own goes, it leaves every group and withdraws
/// its requests; its other sessions and its tokens end; its private conversations
/// stay readable but take nothing more; its name is never given out again.
#[test]
fn a_deleted_account_hands_its_groups_on_and_its_name_stays_taken() {
    let mut sim = Sim::new(limits());
    let [a, b, c] = three_in_rust(&mut sim);
    let d = sim.logged_in("dave");
    let rust = Conversation::Group(group("rust"));
    let alice_dm = Conversation::Direct(user("alice"));
    let g = |name: &str| group(name);
    // alice owns rust (bob and carol members, carol an admin), owns mine alone, is a
    // member of dave's go, has asked to join dave's den and is invited to dave's lab.
    sim.send(a, &[req("p", Command::Promote { group: g("rust"), user: user("carol") })]);
    sim.send(a, &[req("m", Command::Create { group: g("mine"), rule: None })]);
    for (name, rule) in
        [("go", JoinRule::Open), ("den", JoinRule::Approval), ("lab", JoinRule::Invite)]
    {
        sim.send(d, &[req("c", Command::Create { group: g(name), rule: Some(rule) })]);
    }
    sim.send(a, &[req("j1", Command::Join { group: g("go"), reason: None })]);
    sim.send(a, &[req("j2", Command::Join { group: g("den"), reason: None })]);
    sim.send(d, &[req("i", Command::Invite { group: g("lab"), user: user("alice") })]);
    let dm = |to: Conversation, key: &str| Command::Send {
        to,
        key: IdemKey::new(key).unwrap(),
        text: text("hi"),
    };
    sim.send(b, &[req("dm", dm(alice_dm, "k1"))]);
    sim.take(a);
    let (token, secret) = sim.mint(a, "laptop");
    let second = sim.logged_in("alice");
    for k in [a, b, c, d] {
        sim.take(k);
    }

    sim.send(a, &[req("x1", delete_account("wrong")), req("x2", delete_account("pw-alice"))]);
    assert_eq!(sim.take(a), ["x1 ERR AUTH_FAILED", "x2 OK DELETE-ACCOUNT"]);
    assert_eq!(sim.conns[a].closed, Some(None));
    assert_eq!(sim.take(second), ["* BYE REVOKED"]);
    let seen = sim.take(c);
    let stored: Vec<&String> = seen.iter().filter(|l| !l.starts_with("* PRESENCE")).collect();
    assert_eq!(stored.len(), 3, "{seen:?}");
    assert!(stored[0].starts_with("* OFFERED #rust 4 ") && stored[0].ends_with(" carol alice"));
    assert!(stored[1].starts_with("* OWNER #rust 5 ") && stored[1].ends_with(" carol alice"));
    assert!(stored[2].starts_with("* LEFT #rust 6 ") && stored[2].ends_with(" alice"));
    assert!(seen.contains(&"* PRESENCE alice offline".to_string()), "{seen:?}");
    let seen = sim.take(d);
    assert!(seen.iter().any(|l| l.starts_with("* LEFT #go 2 ")), "{seen:?}");
    let seen = sim.take(b);
    assert!(seen.iter().any(|l| l.starts_with("* LEFT #rust 6 ")), "{seen:?}");

    sim.send(
        d,
        &[
            req("l1", Command::Members { group: g("rust") }),
            req("l2", Command::Groups),
            req("l3", Command::Requests { group: g("den") }),
        ],
    );
    let got = sim.take(d);
    assert_eq!(got[0], "l1 ERR NOT_MEMBER");
    assert!(got.contains(&"l3 OK REQUESTS 0".to_string()), "alice's request withdrawn: {got:?}");
    sim.send(c, &[req("l4", Command::Members { group: g("rust") })]);
    assert_eq!(
        sim.take(c),
        [
            "l4 MEMBER rust carol owner online",
            "l4 MEMBER rust bob member online",
            "l4 OK MEMBERS 2"
        ]
    );
    sim.send(d, &[req("l5", Command::Members { group: g("go") })]);
    assert_eq!(sim.take(d), ["l5 MEMBER go dave owner online", "l5 OK MEMBERS 1"]);
    // mine went with its only member; its name is free again.
    sim.send(b, &[req("n", Command::Create { group: g("mine"), rule: None })]);
    assert_eq!(sim.take(b), ["n OK CREATE"]);
    // bob still reads his conversation with alice, but cannot write to it.
    sim.send(
        b,
        &[req("h1", Command::History { conv: alice_dm, range: HistoryRange::Last, limit: 5 })],
    );
    let history = sim.take(b);
    assert!(history.last().unwrap().starts_with("h1 OK HISTORY @alice 1"), "{history:?}");
    sim.send(b, &[req("s", dm(alice_dm, "k2")), req("s2", dm(rust, "k3"))]);
    let sent = sim.take(b);
    assert_eq!(sent[0], "s ERR NO_SUCH_USER");
    assert!(sent[1].starts_with("s2 OK SEND #rust 7 "), "{sent:?}");
    // The name is taken for good; nothing logs in with it.
    let e = sim.connect();
    sim.send(
        e,
        &[
            req("h", hello(&[1])),
            req(
                "r",
                Command::Register {
                    user: user("alice"),
                    password: Password::new("anything").unwrap(),
                },
            ),
            req("l", login("alice", "pw-alice")),
            req("t", auth("alice", token, secret)),
        ],
    );
    assert_eq!(sim.take(e)[1..], ["r ERR USER_EXISTS", "l ERR AUTH_FAILED", "t ERR AUTH_FAILED"]);
    sim.send(b, &[req("i", Command::Invite { group: g("mine"), user: user("alice") })]);
    assert_eq!(sim.take(b), ["i ERR NO_SUCH_USER"]);
}

/// A locked account keeps everything but does not log in: with the right password
/// or token it is told ACCOUNT_LOCKED, with a wrong one AUTH_FAILED as ever.
#[test]
fn a_locked_account_does_not_log_in() {
    let token = baatkaro_hub::store::TokenRecord {
        id: 9,
        user: user("bob"),
        digest: <sha2::Sha256 as sha2::Digest>::digest([3u8; 32]).into(),
        label: text("old laptop"),
        created: T0,
        used: T0,
        address: "127.0.0.1".parse().unwrap(),
    };
    let cfg = HubConfig { logins_per_minute: 1_000, ..HubConfig::new(limits()) };
    let mut sim = Sim::with_snapshot(cfg, |snap| {
        snap.locked = vec![user("bob")];
        snap.tokens = vec![token];
    });
    let c = sim.connect();
    sim.send(
        c,
        &[
            req("h", hello(&[1])),
            req("l1", login("bob", "wrong")),
            req("l2", login("bob", "pw-bob")),
            req("t1", auth("bob", 9, TokenSecret([3; 32]))),
        ],
    );
    assert_eq!(
        sim.take(c)[1..],
        ["l1 ERR AUTH_FAILED", "l2 ERR ACCOUNT_LOCKED", "t1 ERR ACCOUNT_LOCKED"]
    );
    assert_eq!(sim.conns[c].logged_in, None);
    sim.logged_in("alice");
}

// ---------------------------------------------------------------------------------
// Login throttling per account (SPEC.md 11.5)
// ---------------------------------------------------------------------------------

fn from(last: u8) -> std::net::IpAddr {
    std::net::Ipv4Addr::new(198, 51, 100, last).into()
}

/// Guesses at one account from many addresses are slowed after five failures, with
/// a delay that grows and is said truthfully; they hash no password while slowed.
/// An address that logged in to the account before keeps its own budget, and a token
/// is never slowed by others' failures; a stranger with the right password waits
/// like any other.
#[test]
fn guesses_from_many_addresses_are_slowed_but_not_the_owner() {
    let mut sim = Sim::new(limits());
    // alice logs in from 127.0.0.1 (known from now on) and makes a token.
    let a = sim.logged_in("alice");
    let (token, secret) = sim.mint(a, "laptop");
    let hashes = sim.hashes;
    let mut failed = 0;
    let mut slowed = Vec::new();
    for i in 0..40u8 {
        let c = sim.connect_from(from(i % 20 + 1));
        sim.send(c, &[req("h", hello(&[1])), req("g", login("alice", &format!("guess-{i}")))]);
        let frames = sim.take_frames(c);
        match &frames[1] {
            ServerFrame::Err { failure, .. } if failure.code == ErrorCode::AuthFailed => {
                failed += 1
            }
            ServerFrame::Err { failure, .. } if failure.code == ErrorCode::RateLimited => {
                slowed.push(failure.retry_after.unwrap());
            }
            other => panic!("{other:?}"),
        }
        sim.advance(sim.now + 100);
    }
    // Failures 1-5 are free; after them the next waits 1 s from the last, the one
    // after 2 s, then 4 s: in 4 s of guessing, two more got through.
    assert_eq!(failed, 7, "slowed: {slowed:?}");
    assert_eq!(slowed.len(), 33);
    assert_eq!(sim.hashes - hashes, 7, "no password is hashed while slowed");
    assert_eq!(slowed[..2], [900, 800], "1 s after the fifth failure, less the time since");
    assert_eq!(slowed[28], 3_900, "then 4 s after the seventh");
    assert!(slowed.iter().all(|w| (1..=4_000).contains(w)), "{slowed:?}");
    // The owner's address logs in at once with the password, and the token anywhere.
    let owner = sim.connect();
    sim.send(owner, &[req("h", hello(&[1])), req("l", login("alice", "pw-alice"))]);
    assert_eq!(sim.take(owner)[1], "l OK LOGIN alice");
    let away = sim.connect_from(from(99));
    sim.send(away, &[req("h", hello(&[1])), req("t", auth("alice", token, secret))]);
    assert_eq!(sim.take(away)[1], "t OK AUTH alice");
    // A stranger with the right password waits like the guessers, and is told how
    // long; once it logged in, its address has a budget of its own.
    let stranger = sim.connect_from(from(200));
    sim.send(stranger, &[req("h", hello(&[1])), req("l", login("alice", "pw-alice"))]);
    let frames = sim.take_frames(stranger);
    let ServerFrame::Err { failure, .. } = &frames[1] else { panic!("{frames:?}") };
    assert_eq!(failure.code, ErrorCode::RateLimited);
    let wait = failure.retry_after.unwrap();
    assert!(failure.note.as_ref().unwrap().as_str().contains("this account"));
    sim.advance(sim.now + wait);
    sim.send(stranger, &[req("l2", login("alice", "pw-alice"))]);
    assert_eq!(sim.take(stranger), ["l2 OK LOGIN alice"]);
    // Another account is not slowed at all.
    let bob = sim.connect_from(from(1));
    sim.send(bob, &[req("h", hello(&[1])), req("l", login("bob", "pw-bob"))]);
    assert_eq!(sim.take(bob)[1], "l OK LOGIN bob");
}

/// The same slowing for a name without an account: a refusal does not tell which
/// names exist.
#[test]
fn names_without_an_account_are_slowed_alike() {
    let mut sim = Sim::new(limits());
    let mut codes = Vec::new();
    for name in ["alice", "zed"] {
        let c = sim.connect_from(from(7));
        sim.send(c, &[req("h", hello(&[1]))]);
        for i in 0..7 {
            sim.send(c, &[req("g", login(name, &format!("guess-{i}")))]);
        }
        codes.push(sim.take(c)[1..].to_vec());
    }
    assert_eq!(codes[0], codes[1]);
    assert_eq!(codes[0][5], "g ERR RATE_LIMITED");
}

// ---------------------------------------------------------------------------------
// Read markers (SPEC.md 6.8)
// ---------------------------------------------------------------------------------

fn read(to: &str, seq: Seq) -> Command {
    Command::Read { conv: Conversation::Group(group(to)), seq }
}

/// How many `CONVERSATIONS read` counts the batches at the store carry.
fn counts_at_store(sim: &Sim) -> usize {
    sim.held
        .iter()
        .flat_map(|b| b.reads.iter())
        .filter(|(_, r)| matches!(r, Read::Unread(_)))
        .count()
}

/// A READ answers where the marker is and tells the user's other sessions only;
/// pipelined counts reach the store one at a time per connection, and their replies
/// keep the request order.
#[test]
fn read_markers_reach_other_sessions_and_a_connections_counts_take_turns() {
    let mut sim = Sim::new(limits());
    let [a, b, _] = three_in_rust(&mut sim);
    let phone = sim.logged_in("alice");
    for k in 0..3 {
        sim.send(b, &[req("m", send("rust", &format!("k{k}"), "hi"))]); // 3, 4, 5
    }
    for k in [a, b, phone] {
        sim.take(k);
    }
    sim.hold();
    let tags = ["c1", "r1", "c2", "c3", "r2", "p1"];
    sim.send(
        a,
        &[
            req("c1", Command::ConversationsWithMarkers),
            req("r1", read("rust", 3)),
            req("c2", Command::ConversationsWithMarkers),
            req("c3", Command::ConversationsWithMarkers),
            req("r2", read("rust", 1)),
            req("p1", Command::Ping),
        ],
    );
    let start = sim.conns[a].frames.len();
    for _ in 0..10 {
        assert!(counts_at_store(&sim) <= 1, "two counts of one connection at the store");
        if sim.held.is_empty() {
            break;
        }
        sim.release_one();
    }
    sim.release_all();
    let (tagged, untagged) = split_untagged(sim.take(a));
    assert_eq!(
        tagged,
        [
            "c1 CONV #rust 5 0 3",
            "c1 OK CONVERSATIONS 1",
            "r1 OK READ #rust 3",
            "c2 CONV #rust 5 3 2",
            "c2 OK CONVERSATIONS 1",
            "c3 CONV #rust 5 3 2",
            "c3 OK CONVERSATIONS 1",
            "r2 OK READ #rust 3",
            "p1 OK PING",
        ]
    );
    assert!(untagged.iter().all(|e| !e.starts_with("* READ")), "the sender heard itself");
    assert_replies_in_order(&sim.conns[a].frames[start..], &tags);
    assert_eq!(sim.take(phone), ["* READ #rust 3"], "once: r2 moved nothing");
    assert!(sim.take(b).is_empty(), "bob hears nothing of alice's marker");
}

/// A member who leaves loses the marker; a READ past the newest is clamped, and one
/// by a non-member is refused as HISTORY is.
#[test]
fn a_marker_goes_with_the_membership() {
    let mut sim = Sim::new(limits());
    let [a, b, _] = three_in_rust(&mut sim);
    sim.send(b, &[req("r1", read("rust", 99))]);
    assert_eq!(sim.take(b), ["r1 OK READ #rust 2"]);
    sim.send(b, &[req("l1", Command::Leave { group: group("rust") })]);
    sim.send(b, &[req("r2", read("rust", 1))]);
    let got = sim.take(b);
    assert_eq!(got.last().map(String::as_str), Some("r2 ERR NOT_MEMBER"), "{got:?}");
    sim.send(b, &[req("j1", Command::Join { group: group("rust"), reason: None })]);
    sim.send(b, &[req("c1", Command::ConversationsWithMarkers)]);
    let got = sim.take(b);
    assert!(got.contains(&"c1 CONV #rust 4 0 0".to_string()), "{got:?}");
    sim.take(a);
}
