//! The task that owns the connection: one socket (TCP or TLS), one
//! [`ClientSession`], the requests in flight, and — with reconnect on — the way
//! back after the connection drops.
//!
//! Handles talk to it only through a channel of [`Job`]s and hear back through
//! each job's one-shot reply; events go out on a broadcast channel. Nothing here is
//! shared behind a lock but the [`Status`] the handles read.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baatkaro_proto::client::{Answer, ClientSession, reconnect_delay};
use baatkaro_proto::transport::{Address, Host, plaintext_allowed};
use baatkaro_proto::{
    Command, Conversation, ErrorCode, Event, Failure, Features, HistoryRange, Item, Limits,
    OkReply, Seq, Software, StoredEvent, Tag, TokenId, TokenSecret, UserName, Verb, Versions,
};
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::tls::{self, ConnectOptions, TlsInfo, TrustError};
use crate::{ClientError, ClientEvent};

/// A byte stream to the server: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// Octets of requests written but not yet taken by the socket before the task
/// stops taking new requests (callers then wait): bounds the client's memory when
/// the server reads slowly.
const OUT_MAX: usize = 16 << 20;

/// Requests kept while reconnecting, to be sent once connected again; more fail
/// at once.
pub(crate) const AWAY_QUEUE: usize = 1024;

/// Events held back while a reconnect logs in and catches up (they go to the
/// application after the missed ones); a server that sends more is dropped.
const HELD_EVENTS: usize = 65_536;

/// How many connections one request may be sent on: a request whose connection
/// keeps dropping before its answer fails after this many.
const TRIES: u8 = 3;

/// The error of an answer cut at [`ANSWER_BYTES_MAX`](baatkaro_proto::client::ANSWER_BYTES_MAX).
pub(crate) fn too_large() -> ClientError {
    ClientError::Protocol(format!(
        "the answer passed {} MiB; ask for less at once",
        baatkaro_proto::client::ANSWER_BYTES_MAX >> 20
    ))
}

/// What the server said in its HELLO reply.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// The server software.
    pub software: Software,
    /// Its optional features.
    pub features: Features,
    /// Every limit it enforces.
    pub limits: Limits,
}

impl ServerInfo {
    /// Whether the server offers the feature named `name` (`files`, `tokens`, …).
    pub fn has(&self, name: &str) -> bool {
        self.features.contains(name)
    }
}

/// What the handles may read of the connection: written by the task only.
#[derive(Debug)]
pub(crate) struct Status {
    pub(crate) info: ServerInfo,
    pub(crate) user: Option<UserName>,
    pub(crate) peer: SocketAddr,
    pub(crate) tls: Option<TlsInfo>,
    /// False while reconnecting.
    pub(crate) connected: bool,
    /// Set once the connection is gone for good, with the server's BYE if any.
    pub(crate) closed: Option<Option<Failure>>,
}

pub(crate) fn lock(status: &Mutex<Status>) -> std::sync::MutexGuard<'_, Status> {
    status.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request from a handle, and where its answer goes.
pub(crate) struct Job {
    pub(crate) command: Command,
    pub(crate) reply: oneshot::Sender<Result<Answer, ClientError>>,
    /// How many connections it was sent on already.
    pub(crate) tries: u8,
}

/// One open connection: the socket's halves and the session over them.
pub(crate) struct Link {
    rd: ReadHalf<Box<dyn Transport>>,
    wr: WriteHalf<Box<dyn Transport>>,
    session: ClientSession,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    info: ServerInfo,
    buf: Vec<u8>,
}

impl Link {
    /// Connects to `addr`, completes TLS if asked, and says HELLO, all within
    /// `options.timeout`.
    pub(crate) async fn open(
        addr: &Address,
        options: &ConnectOptions,
    ) -> Result<Link, ClientError> {
        if !addr.tls && (options.ca.is_some() || options.fingerprint.is_some()) {
            return Err(TrustError::NotTls.into());
        }
        match tokio::time::timeout(options.timeout, Self::open_now(addr, options)).await {
            Ok(opened) => opened,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{addr} did not answer within {:?}", options.timeout),
            )
            .into()),
        }
    }

    async fn open_now(addr: &Address, options: &ConnectOptions) -> Result<Link, ClientError> {
        let tcp = match &addr.host {
            Host::Ip(ip) => TcpStream::connect((*ip, addr.port)).await,
            Host::Name(name) => TcpStream::connect((name.as_str(), addr.port)).await,
        }
        .map_err(|e| std::io::Error::new(e.kind(), format!("connecting to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr()?;
        let (stream, tls): (Box<dyn Transport>, _) = if addr.tls {
            let (stream, info) = tls::handshake(tcp, addr, options).await?;
            (Box::new(stream), Some(info))
        } else {
            (Box::new(tcp), None)
        };
        let (rd, wr) = tokio::io::split(stream);
        let mut link = Link {
            rd,
            wr,
            session: ClientSession::new(),
            peer,
            tls,
            info: ServerInfo {
                software: Software::new("unknown")?,
                features: Features::default(),
                limits: Limits::default(),
            },
            buf: vec![0; 256 * 1024],
        };
        let software = Software::new(concat!("baatkaro-client/", env!("CARGO_PKG_VERSION")))?;
        let versions = Versions::new(vec![baatkaro_proto::PROTOCOL_VERSION])?;
        match link.ok(Command::Hello { versions, client: Some(software) }).await?.1 {
            OkReply::Hello { server, features, limits, .. } => {
                link.info = ServerInfo { software: server, features, limits: *limits };
            }
            other => return Err(ClientError::Protocol(format!("HELLO answered with {other:?}"))),
        }
        Ok(link)
    }

    pub(crate) fn info(&self) -> &ServerInfo {
        &self.info
    }

    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub(crate) fn tls(&self) -> Option<TlsInfo> {
        self.tls
    }

    /// Whether a secret may cross this connection (SPEC.md 11.7): over TLS, or to
    /// loopback, or where the options insisted.
    fn secret_may_travel(&self, insecure_plaintext: bool) -> Result<(), ClientError> {
        if self.tls.is_some() || plaintext_allowed(self.peer.ip(), insecure_plaintext) {
            Ok(())
        } else {
            Err(ClientError::Plaintext(self.peer))
        }
    }

    /// Sends one request and reads until it is answered, keeping events in the
    /// session (at most [`HELD_EVENTS`]): for the steps of connecting, before the
    /// task serves handles.
    async fn exchange(&mut self, command: Command) -> Result<Answer, ClientError> {
        let tag = self.session.request(command);
        while let Some(bytes) = self.session.poll_transmit() {
            self.wr.write_all(&bytes).await?;
        }
        self.wr.flush().await?;
        loop {
            while let Some((answered, answer)) = self.session.poll_answer() {
                if answered == tag {
                    return Ok(answer);
                }
            }
            if let Some(e) = self.session.failed() {
                return Err(ClientError::Protocol(e.to_string()));
            }
            if self.session.events_waiting() > HELD_EVENTS {
                return Err(ClientError::Protocol(format!(
                    "more than {HELD_EVENTS} events while connecting"
                )));
            }
            let n = self.rd.read(&mut self.buf).await?;
            if n == 0 {
                return Err(ClientError::Closed(self.session.bye().cloned()));
            }
            self.session.handle_input(&self.buf[..n]);
        }
    }

    /// [`ok`](Self::ok) within `timeout`.
    async fn ok_within(
        &mut self,
        command: Command,
        timeout: Duration,
    ) -> Result<(Vec<Item>, OkReply), ClientError> {
        match tokio::time::timeout(timeout, self.ok(command)).await {
            Ok(answered) => answered,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the server did not answer within {timeout:?}"),
            )
            .into()),
        }
    }

    async fn ok(&mut self, command: Command) -> Result<(Vec<Item>, OkReply), ClientError> {
        let answer = self.exchange(command).await?;
        if answer.truncated {
            return Err(too_large());
        }
        match answer.result {
            Ok(reply) => Ok((answer.items, reply)),
            Err(f) => Err(ClientError::Refused(f)),
        }
    }

    /// How often to PING so that the server's idle timeout never closes a client
    /// that only listens (SPEC.md 4): half of `idle`, which is in seconds.
    fn keepalive(&self) -> Duration {
        Duration::from_millis(self.info.limits.idle.saturating_mul(500).max(500))
    }
}

/// The credentials a reconnect logs in with again.
#[derive(Clone)]
enum Resume {
    /// A session token (AUTH): the password never crosses the network again.
    Token { user: UserName, token: TokenId, secret: TokenSecret },
    /// The password the session logged in with (LOGIN; a server without tokens).
    Password { user: UserName, password: baatkaro_proto::Password },
}

impl Resume {
    fn of(command: &Command) -> Option<Resume> {
        match command {
            Command::Auth { user, token, secret } => {
                Some(Resume::Token { user: *user, token: *token, secret: *secret })
            }
            Command::Login { user, password } | Command::Register { user, password } => {
                Some(Resume::Password { user: *user, password: password.clone() })
            }
            _ => None,
        }
    }

    fn command(&self) -> Command {
        match self.clone() {
            Resume::Token { user, token, secret } => Command::Auth { user, token, secret },
            Resume::Password { user, password } => Command::Login { user, password },
        }
    }
}

/// A request in flight, by what waits for it.
enum Waiter {
    /// A handle's request: `order` keeps requests in order when they are sent again
    /// after a reconnect; `command` is kept when it may be sent again or holds
    /// credentials a reconnect needs.
    Job {
        order: u64,
        verb: Verb,
        command: Option<Command>,
        tries: u8,
        reply: oneshot::Sender<Result<Answer, ClientError>>,
    },
    /// The CONVERSATIONS sent behind a login: where a reconnect's catch-up starts
    /// for a conversation no event was seen of.
    Baseline,
    /// A keepalive PING.
    Keepalive,
}

/// Why [`Driver::serve`] stopped.
enum End {
    /// Every handle is gone, or one closed the client: close quietly.
    HandlesGone,
    /// The connection broke; the server's BYE, if it sent one.
    Lost { reason: String, bye: Option<Failure> },
}

/// Why a reconnect attempt failed.
enum Attempt {
    /// Trying again may work: wait (at least `retry` ms, if the server said).
    Again { why: ClientError, retry: Option<u64> },
    /// It cannot: the server refused the credentials or the certificate changed.
    Hopeless(ClientError),
}

/// The connection's task.
pub(crate) struct Driver {
    addr: Address,
    options: ConnectOptions,
    jobs: mpsc::Receiver<Job>,
    status: Arc<Mutex<Status>>,
    events: broadcast::Sender<ClientEvent>,
    /// Woken by [`Client::reconnect_now`](crate::Client::reconnect_now).
    wake: Arc<Notify>,
    /// Woken (with a permit kept) by [`Client::close`](crate::Client::close).
    stop: Arc<Notify>,
    resume: Option<Resume>,
    /// The newest sequence number given to the application, per conversation: a
    /// stored event at or below it is a repeat (a live event the catch-up gave).
    emitted: HashMap<Conversation, Seq>,
    /// Each conversation's newest sequence number when the session logged in.
    baseline: HashMap<Conversation, Seq>,
    /// A LOGOUT or DELETE-ACCOUNT was sent: the end of the connection is wanted.
    leaving: bool,
    order: u64,
}

impl Driver {
    pub(crate) fn new(
        addr: Address,
        options: ConnectOptions,
        jobs: mpsc::Receiver<Job>,
        status: Arc<Mutex<Status>>,
        events: broadcast::Sender<ClientEvent>,
        wake: Arc<Notify>,
        stop: Arc<Notify>,
    ) -> Driver {
        Driver {
            addr,
            options,
            jobs,
            status,
            events,
            wake,
            stop,
            resume: None,
            emitted: HashMap::new(),
            baseline: HashMap::new(),
            leaving: false,
            order: 0,
        }
    }

    /// Serves the connection, and every one after it, until the handles are gone
    /// or the connection is gone for good.
    pub(crate) async fn run(mut self, mut link: Link) {
        let mut queued = VecDeque::new();
        loop {
            match self.serve(&mut link, &mut queued).await {
                End::HandlesGone => break,
                End::Lost { reason, bye } => {
                    drop(link);
                    if !self.will_reconnect(bye.as_ref()) {
                        lock(&self.status).closed = Some(bye);
                        break;
                    }
                    match self.reconnect(reason, bye, &mut queued).await {
                        Some(next) => link = next,
                        None => break,
                    }
                }
            }
        }
        let mut status = lock(&self.status);
        status.connected = false;
        status.closed.get_or_insert(None);
    }

    fn will_reconnect(&self, bye: Option<&Failure>) -> bool {
        // A revoked session cannot log in again with what it had, and a server
        // that speaks no common version will not start to.
        let hopeless = bye
            .is_some_and(|b| matches!(b.code, ErrorCode::Revoked | ErrorCode::UnsupportedVersion));
        self.options.reconnect && !self.leaving && !hopeless
    }

    async fn serve(&mut self, link: &mut Link, queued: &mut VecDeque<Job>) -> End {
        let mut waiting: HashMap<Tag, Waiter> = HashMap::new();
        // What was asked for while away goes first, in the order it was asked.
        while let Some(job) = queued.pop_front() {
            self.submit(link, &mut waiting, job);
        }
        let mut out: VecDeque<Bytes> = VecDeque::new();
        let mut out_len = 0usize;
        let mut unflushed = false;
        let mut keepalive = tokio::time::interval(link.keepalive());
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.reset();
        // Keepalive ticks since the last PING was sent without its answer: at two
        // (a whole `idle`), the server is taken for gone.
        let mut unanswered = 0u32;
        loop {
            while let Some((tag, answer)) = link.session.poll_answer() {
                if matches!(waiting.get(&tag), Some(Waiter::Keepalive)) {
                    unanswered = 0;
                }
                self.answered(link, &mut waiting, tag, answer);
            }
            while let Some(event) = link.session.poll_event() {
                self.emit(event);
            }
            while let Some(bytes) = link.session.poll_transmit() {
                out_len += bytes.len();
                out.push_back(bytes);
            }
            if let Some(e) = link.session.failed() {
                let reason = e.to_string();
                return self.lost(link, waiting, queued, reason);
            }
            tokio::select! {
                read = link.rd.read(&mut link.buf) => match read {
                    Ok(0) => return self.lost(link, waiting, queued, "the server closed the connection".into()),
                    Ok(n) => link.session.handle_input(&link.buf[..n]),
                    Err(e) => return self.lost(link, waiting, queued, e.to_string()),
                },
                written = write_some(&mut link.wr, &out), if !out.is_empty() || unflushed => match written {
                    Ok(Some(n)) => {
                        out_len -= n;
                        consume(&mut out, n);
                        unflushed = true;
                    }
                    Ok(None) => unflushed = false,
                    Err(e) => return self.lost(link, waiting, queued, e.to_string()),
                },
                job = self.jobs.recv(), if out_len < OUT_MAX => match job {
                    Some(job) => self.submit(link, &mut waiting, job),
                    None => return self.closing(waiting),
                },
                () = self.stop.notified() => return self.closing(waiting),
                _ = keepalive.tick() => {
                    if waiting.values().any(|w| matches!(w, Waiter::Keepalive)) {
                        unanswered += 1;
                        if unanswered >= 2 {
                            let idle = link.keepalive() * 2;
                            let reason = format!("the server did not answer a PING within {idle:?}");
                            return self.lost(link, waiting, queued, reason);
                        }
                    } else {
                        let tag = link.session.request(Command::Ping);
                        waiting.insert(tag, Waiter::Keepalive);
                    }
                }
            }
        }
    }

    /// The client is closed: every request in flight is told so.
    fn closing(&mut self, waiting: HashMap<Tag, Waiter>) -> End {
        lock(&self.status).closed = Some(None);
        for waiter in waiting.into_values() {
            if let Waiter::Job { reply, .. } = waiter {
                let _ = reply.send(Err(ClientError::Closed(None)));
            }
        }
        End::HandlesGone
    }

    fn submit(&mut self, link: &mut Link, waiting: &mut HashMap<Tag, Waiter>, job: Job) {
        let verb = job.command.verb();
        if job.command.carries_secret()
            && let Err(e) = link.secret_may_travel(self.options.insecure_plaintext)
        {
            let _ = job.reply.send(Err(e));
            return;
        }
        if matches!(verb, Verb::Logout | Verb::DeleteAccount) {
            // Whatever comes of it, the connection's end is wanted now.
            self.leaving = true;
        }
        let logs_in = Resume::of(&job.command).is_some();
        let keep = job.command.is_idempotent() || logs_in || verb == Verb::Password;
        let command = keep.then(|| job.command.clone());
        let tag = link.session.request(job.command);
        self.order += 1;
        waiting.insert(
            tag,
            Waiter::Job {
                order: self.order,
                verb,
                command,
                tries: job.tries + 1,
                reply: job.reply,
            },
        );
        if logs_in && self.options.reconnect {
            // Right behind the login, which the server judges first: where a
            // reconnect's catch-up starts, known even if the link drops soon.
            let tag = link.session.request(Command::Conversations);
            waiting.insert(tag, Waiter::Baseline);
        }
    }

    fn answered(
        &mut self,
        link: &mut Link,
        waiting: &mut HashMap<Tag, Waiter>,
        tag: Tag,
        answer: Answer,
    ) {
        match waiting.remove(&tag) {
            Some(Waiter::Job { verb, command, reply, .. }) => {
                if answer.result.is_ok() {
                    match (command, &self.resume) {
                        (
                            Some(Command::Password { new, .. }),
                            Some(Resume::Password { user, .. }),
                        ) => {
                            // A reconnect logs in with the password as it is now.
                            self.resume = Some(Resume::Password { user: *user, password: new });
                        }
                        (Some(command), _) if Resume::of(&command).is_some() => {
                            self.resume = Resume::of(&command);
                            lock(&self.status).user = link.session.user();
                        }
                        _ => {}
                    }
                } else if verb == Verb::Logout {
                    // Refused: the session goes on.
                    self.leaving = false;
                }
                let _ = reply.send(Ok(answer));
            }
            Some(Waiter::Baseline) => {
                for item in answer.items {
                    if let Item::Conversation { conv, latest } = item {
                        self.baseline.insert(conv, latest);
                    }
                }
            }
            Some(Waiter::Keepalive) | None => {}
        }
    }

    /// Gives an event to the application, unless it is a stored event it had.
    fn emit(&mut self, event: Event) -> bool {
        if let Event::Stored(e) = &event {
            let newest = self.emitted.entry(e.conv()).or_insert(0);
            if e.seq() <= *newest {
                return false;
            }
            *newest = e.seq();
        }
        // No receiver is not an error: nobody listens.
        let _ = self.events.send(ClientEvent::Event(event));
        true
    }

    /// The connection broke: tells each waiting request, or keeps it to be sent
    /// again if that is safe, it has tries left, and a reconnect will come.
    fn lost(
        &mut self,
        link: &mut Link,
        waiting: HashMap<Tag, Waiter>,
        queued: &mut VecDeque<Job>,
        reason: String,
    ) -> End {
        let bye = link.session.bye().cloned();
        let _ = link.session.close();
        let reconnecting = self.will_reconnect(bye.as_ref());
        let mut again = Vec::new();
        for waiter in waiting.into_values() {
            let Waiter::Job { order, command, tries, reply, .. } = waiter else { continue };
            match command {
                Some(command) if reconnecting && command.is_idempotent() && tries < TRIES => {
                    again.push((order, Job { command, reply, tries }));
                }
                _ if reconnecting => {
                    let _ = reply.send(Err(ClientError::NotConnected(format!(
                        "the connection dropped before the answer: {reason}"
                    ))));
                }
                _ => {
                    let _ = reply.send(Err(ClientError::Closed(bye.clone())));
                }
            }
        }
        again.sort_by_key(|(order, _)| *order);
        queued.extend(again.into_iter().map(|(_, job)| job));
        End::Lost { reason, bye }
    }

    /// Waits, tries, and waits longer, until connected and caught up again — or
    /// the handles are gone, or the server refuses the credentials.
    async fn reconnect(
        &mut self,
        mut reason: String,
        bye: Option<Failure>,
        queued: &mut VecDeque<Job>,
    ) -> Option<Link> {
        lock(&self.status).connected = false;
        let mut retry = bye.and_then(|b| b.retry_after);
        let mut attempt = 0u32;
        loop {
            let wait = Duration::from_millis(reconnect_delay(attempt, retry, jitter()));
            let _ = self.events.send(ClientEvent::Disconnected { reason, retry_in: wait });
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = self.wake.notified() => break,
                    () = self.stop.notified() => return self.give_up(queued, None),
                    job = self.jobs.recv() => match job {
                        Some(job) => away(job, queued),
                        None => return self.give_up(queued, None),
                    },
                }
            }
            match self.establish().await {
                Ok((link, missed)) => {
                    let mut status = lock(&self.status);
                    status.info = link.info.clone();
                    status.peer = link.peer;
                    status.tls = link.tls;
                    status.connected = true;
                    drop(status);
                    let _ = self.events.send(ClientEvent::Reconnected { missed });
                    return Some(link);
                }
                Err(Attempt::Hopeless(e)) => return self.give_up(queued, Some(e)),
                Err(Attempt::Again { why, retry: hint }) => {
                    retry = hint;
                    reason = why.to_string();
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }

    /// Stops reconnecting: queued requests fail, and the application hears why.
    fn give_up(&mut self, queued: &mut VecDeque<Job>, why: Option<ClientError>) -> Option<Link> {
        for job in queued.drain(..) {
            let _ = job.reply.send(Err(ClientError::Closed(None)));
        }
        if let Some(why) = why {
            let _ = self.events.send(ClientEvent::Closed { reason: why.to_string() });
        }
        lock(&self.status).closed = Some(None);
        None
    }

    /// Connects, logs in again, and gives the application every stored event it
    /// missed, in order: how many. Each step has the options' `timeout`.
    async fn establish(&mut self) -> Result<(Link, u64), Attempt> {
        let again = |why: ClientError| {
            let retry = match &why {
                ClientError::Refused(f) | ClientError::Closed(Some(f)) => f.retry_after,
                _ => None,
            };
            Attempt::Again { why, retry }
        };
        let mut link = match Link::open(&self.addr, &self.options).await {
            Ok(link) => link,
            Err(e @ (ClientError::Trust(_) | ClientError::Address(_))) => {
                return Err(Attempt::Hopeless(e));
            }
            Err(e) => return Err(again(e)),
        };
        let Some(resume) = self.resume.clone() else { return Ok((link, 0)) };
        link.secret_may_travel(self.options.insecure_plaintext).map_err(Attempt::Hopeless)?;
        let timeout = self.options.timeout;
        match link.ok_within(resume.command(), timeout).await {
            Ok(_) => {}
            // The credentials themselves were refused: trying again cannot help.
            Err(ClientError::Refused(f)) if f.retry_after.is_none() && !f.code.has_retry() => {
                return Err(Attempt::Hopeless(ClientError::Refused(f)));
            }
            Err(e) => return Err(again(e)),
        }
        lock(&self.status).user = link.session.user();
        let (items, _) = link.ok_within(Command::Conversations, timeout).await.map_err(again)?;
        let page = u32::try_from(link.info.limits.page).unwrap_or(u32::MAX).max(1);
        let mut missed = 0;
        for item in items {
            let Item::Conversation { conv, latest } = item else { continue };
            let known = self.emitted.get(&conv).or_else(|| self.baseline.get(&conv)).copied();
            let mut after = match (known, conv) {
                (Some(seq), _) => seq,
                // A private conversation new since the login: all of it is news.
                (None, Conversation::Direct(_)) => 0,
                // A group joined while away: from the user's own JOINED on, as a
                // live join would have shown it, not its history before.
                (None, Conversation::Group(_)) => {
                    match self.joined_at(&mut link, conv, page, timeout).await {
                        Ok(Some(seq)) => seq - 1,
                        Ok(None) => latest,
                        Err(e) => return Err(again(e)),
                    }
                }
            };
            // Page by page; each page moves `after` on, so this ends.
            while after < latest {
                let command =
                    Command::History { conv, range: HistoryRange::After(after), limit: page };
                let events = match link.ok_within(command, timeout).await {
                    Ok((events, _)) => events,
                    // Not readable any more (kicked, the group deleted meanwhile):
                    // nothing of it to catch up.
                    Err(ClientError::Refused(_)) => break,
                    Err(e) => return Err(again(e)),
                };
                let before = after;
                for item in events {
                    if let Item::Stored(e) = item {
                        after = after.max(e.seq());
                        if self.emit(Event::Stored(e)) {
                            missed += 1;
                        }
                    }
                }
                if after == before {
                    break;
                }
            }
            self.baseline.insert(conv, latest);
        }
        Ok((link, missed))
    }

    /// The sequence number of the user's newest JOINED in a group, within its last
    /// page of history, if it is there.
    async fn joined_at(
        &self,
        link: &mut Link,
        conv: Conversation,
        page: u32,
        timeout: Duration,
    ) -> Result<Option<Seq>, ClientError> {
        let me = link.session.user();
        let command = Command::History { conv, range: HistoryRange::Last, limit: page };
        let items = match link.ok_within(command, timeout).await {
            Ok((items, _)) => items,
            Err(ClientError::Refused(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(items.iter().rev().find_map(|i| match i {
            Item::Stored(e @ StoredEvent::Joined { user, .. }) if Some(*user) == me => {
                Some(e.seq())
            }
            _ => None,
        }))
    }
}

/// A request made while reconnecting: kept if it may be sent late, else refused.
fn away(job: Job, queued: &mut VecDeque<Job>) {
    if job.command.is_idempotent() && queued.len() < AWAY_QUEUE {
        queued.push_back(job);
    } else {
        let why = if job.command.is_idempotent() {
            format!("{AWAY_QUEUE} requests wait already")
        } else {
            format!("{} is not safe to send late; try again once reconnected", job.command.verb())
        };
        let _ = job.reply.send(Err(ClientError::NotConnected(why)));
    }
}

/// A number from 0 to 1,000 that differs between calls and processes, to spread
/// reconnects (SPEC.md 9) without a random-number crate.
fn jitter() -> u64 {
    // RandomState is seeded from the OS's randomness once per process and differs
    // per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() % 1_001
}

/// Writes what it can of `out` in one system call (`Some(n)`), or, with nothing to
/// write, flushes (`None`; TLS holds records until flushed).
async fn write_some<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &VecDeque<Bytes>,
) -> std::io::Result<Option<usize>> {
    if out.is_empty() {
        w.flush().await?;
        return Ok(None);
    }
    let slices: Vec<IoSlice<'_>> = out.iter().take(64).map(|b| IoSlice::new(b)).collect();
    let n = w.write_vectored(&slices).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    Ok(Some(n))
}

/// Drops the first `n` written octets of `out`.
fn consume(out: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = out.front_mut() else { return };
        if front.len() <= n {
            n -= front.len();
            out.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}
