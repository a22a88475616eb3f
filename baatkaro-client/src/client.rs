//! The async client: one connection to a BaatKaro server.
//!
//! A background task reads the socket, decodes frames with the proto crate's
//! decoder, hands each final reply (with its items) to the request that waits for
//! it, and queues untagged events for [`Client::next_event`]. Requests may be sent
//! from several tasks at once: each gets its own tag, and the server answers in
//! order anyway.
//!
//! ```no_run
//! # async fn example() -> Result<(), baatkaro_client::ClientError> {
//! use baatkaro_client::Client;
//! use baatkaro_proto::{Conversation, Password, Text};
//!
//! let mut client = Client::connect("127.0.0.1:7667").await?;
//! client.login("alice".parse()?, Password::new("correct-pass")?).await?;
//! let (seq, _time) = client.send(Conversation::Group("rust".parse()?), Text::new("hi")?).await?;
//! while let Some(event) = client.next_event().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baatkaro_proto::transport::{Address, AddressError, Host, plaintext_allowed};
use baatkaro_proto::{
    Command, Conversation, Encode, ErrorCode, Event, Failure, Features, HistoryRange, IdemKey,
    Item, Limits, Millis, OkReply, Password, Request, Seq, ServerFrame, ServerFrameDecoder,
    Software, StoredEvent, Tag, Text, TokenId, TokenSecret, UserName, ValidationError, Versions,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::tls::{self, ConnectOptions, TlsInfo, TrustError};

/// A byte stream to the server: TCP, or TLS over TCP.
trait Transport: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Transport for T {}

/// The writing half of the connection, shared by requests and the keepalive.
type Writer = Arc<tokio::sync::Mutex<WriteHalf<Box<dyn Transport>>>>;

/// Events queued for the application before the oldest are dropped (and counted:
/// stored ones can always be fetched again with HISTORY).
const EVENT_QUEUE: usize = 4096;

/// Why a request or the connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error: its code, its note (which, for
    /// `RATE_LIMITED`, names the limit) and, when it said, when to try again.
    #[error("{}", failed_text(.0))]
    Failed(Failure),
    /// The connection is gone (the server closed it, or said why with BYE).
    #[error("connection closed{}", .0.as_ref().map(|f| format!(" by the server: {}", f.code)).unwrap_or_default())]
    Closed(Option<Failure>),
    /// The server sent something this client cannot read.
    #[error("the server sent a bad frame: {0}")]
    Protocol(String),
    /// A value given to the client is not valid on the wire.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Connecting or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The server's address could not be read.
    #[error("bad server address: {0}")]
    Address(#[from] AddressError),
    /// The server's TLS certificate was not trusted.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A password or token would have crossed the network in clear (SPEC.md 11.7).
    #[error(
        "refusing to send a password in clear to {0}, which is not this machine: connect \
         with baatkaros://, or say --insecure-plaintext if the network is trusted"
    )]
    Plaintext(std::net::SocketAddr),
    /// The caller cancelled the operation (an upload: the server deleted what it
    /// held of it).
    #[error("cancelled")]
    Cancelled,
}

/// A failure as a person reads it: `CODE: note (try again in 2.5 s)`.
fn failed_text(f: &Failure) -> String {
    let mut text = f.code.to_string();
    if let Some(note) = &f.note {
        text.push_str(&format!(": {note}"));
    }
    if let Some(ms) = f.retry_after {
        text.push_str(&format!(" (try again in {})", wait_text(ms)));
    }
    text
}

/// A wait in milliseconds, in words: `250 ms`, `2.5 s`, `3 min 5 s`.
fn wait_text(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{} s", ms / 1_000, ms % 1_000 / 100),
        _ => {
            let s = ms.div_ceil(1_000);
            match s % 60 {
                0 => format!("{} min", s / 60),
                rest => format!("{} min {rest} s", s / 60),
            }
        }
    }
}

impl ClientError {
    /// The server's error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Failed(f) => Some(f.code),
            _ => None,
        }
    }
}

/// Something that happened, as the application sees it.
// Nearly every value is an `Event`; boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// An untagged event from the server.
    Event(Event),
    /// This many events were dropped because the application did not take them
    /// fast enough; catch up with HISTORY.
    Lagged(u64),
}

/// What the server said in its HELLO reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server software.
    pub software: Software,
    /// Its optional features.
    pub features: Features,
    /// Every limit it enforces.
    pub limits: Limits,
}

type Waiting = HashMap<Tag, (Vec<Item>, oneshot::Sender<(Vec<Item>, Result<OkReply, Failure>)>)>;

/// State the reader task shares with the handle.
#[derive(Default)]
struct Shared {
    waiting: Waiting,
    /// Set once the connection is gone, with the server's BYE if it sent one.
    closed: Option<Option<Failure>>,
    lagged: u64,
}

/// A connection to a server.
pub struct Client {
    writer: Writer,
    shared: Arc<Mutex<Shared>>,
    events: mpsc::Receiver<ClientEvent>,
    next_tag: AtomicU64,
    keys: KeyMaker,
    info: ServerInfo,
    user: Option<UserName>,
    reader: tokio::task::JoinHandle<()>,
    /// Sends PING while the connection lasts, so the server's idle timeout never
    /// closes a client that is only listening (SPEC.md section 4).
    keepalive: Option<tokio::task::JoinHandle<()>>,
    /// The server's socket address.
    peer: std::net::SocketAddr,
    /// The certificate, when the connection is TLS.
    tls: Option<TlsInfo>,
    /// Whether secrets may go over plain text beyond loopback.
    insecure_plaintext: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
        if let Some(k) = &self.keepalive {
            k.abort();
        }
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// Connects to `addr` (`host:port`, `baatkaro://host:port`, or
    /// `baatkaros://host:port` for TLS, trusting the system's CAs only) and says
    /// HELLO.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Self::connect_with(addr, &ConnectOptions::default()).await
    }

    /// Connects as [`connect`](Self::connect), trusting the server and sending
    /// secrets as `options` say, within `options.timeout`.
    pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Client, ClientError> {
        let addr: Address = addr.parse()?;
        if !addr.tls && (options.ca.is_some() || options.fingerprint.is_some()) {
            return Err(TrustError::NotTls.into());
        }
        match tokio::time::timeout(options.timeout, Self::open(&addr, options)).await {
            Ok(opened) => opened,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{addr} did not answer within {:?}", options.timeout),
            )
            .into()),
        }
    }

    /// Connects, completes TLS if asked, and says HELLO.
    async fn open(addr: &Address, options: &ConnectOptions) -> Result<Client, ClientError> {
        let tcp = match &addr.host {
            Host::Ip(ip) => TcpStream::connect((*ip, addr.port)).await?,
            Host::Name(name) => TcpStream::connect((name.as_str(), addr.port)).await?,
        };
        let _ = tcp.set_nodelay(true);
        let peer = tcp.peer_addr()?;
        let (stream, tls): (Box<dyn Transport>, _) = if addr.tls {
            let (stream, info) = tls::handshake(tcp, addr, options).await?;
            (Box::new(stream), Some(info))
        } else {
            (Box::new(tcp), None)
        };
        let (mut rd, wr) = tokio::io::split(stream);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let reader_shared = shared.clone();
        let reader = tokio::spawn(async move {
            let mut decoder = ServerFrameDecoder::new(baatkaro_proto::PAYLOAD_CEILING);
            let mut buf = vec![0u8; 256 * 1024];
            let mut bye = None;
            'read: loop {
                let n = match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                decoder.push(&buf[..n]);
                while let Some(frame) = decoder.next_frame() {
                    match frame {
                        Ok(frame) => {
                            if let ServerFrame::Event(Event::Bye(f)) = &frame {
                                bye = Some(f.clone());
                            }
                            route(&reader_shared, &tx, frame);
                        }
                        // A frame of a later version, or garbage: a reply it was
                        // meant to be fails; an unknown event is skipped.
                        Err(e) if !e.is_fatal() => {
                            if let Some(tag) = e.tag {
                                let failure = Failure::new(e.code);
                                if let Some((items, done)) =
                                    lock(&reader_shared).waiting.remove(&tag)
                                {
                                    let _ = done.send((items, Err(failure)));
                                }
                            }
                        }
                        Err(_) => break 'read,
                    }
                }
            }
            let mut s = lock(&reader_shared);
            s.closed = Some(bye);
            // Waiters see their sender dropped and report the close.
            s.waiting.clear();
        });
        let mut client = Client {
            writer: Arc::new(tokio::sync::Mutex::new(wr)),
            shared,
            events,
            next_tag: AtomicU64::new(1),
            keys: KeyMaker::new(),
            info: ServerInfo {
                software: Software::new("unknown")?,
                features: Features::default(),
                limits: Limits::default(),
            },
            user: None,
            reader,
            keepalive: None,
            peer,
            tls,
            insecure_plaintext: options.insecure_plaintext,
        };
        let software = Software::new(concat!("baatkaro-client/", env!("CARGO_PKG_VERSION")))?;
        let versions = Versions::new(vec![baatkaro_proto::PROTOCOL_VERSION])?;
        match client.ok(Command::Hello { versions, client: Some(software) }).await?.1 {
            OkReply::Hello { server, features, limits, .. } => {
                client.info = ServerInfo { software: server, features, limits: *limits };
            }
            other => return Err(ClientError::Protocol(format!("HELLO answered with {other:?}"))),
        }
        client.keepalive = Some(tokio::spawn(keepalive(
            client.writer.clone(),
            Duration::from_millis(client.info.limits.idle.saturating_mul(500).max(500)),
        )));
        Ok(client)
    }

    /// What the server offers.
    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    /// Who this connection is logged in as.
    pub fn user(&self) -> Option<UserName> {
        self.user
    }

    /// The server's certificate and why it was trusted, on a TLS connection.
    pub fn tls(&self) -> Option<TlsInfo> {
        self.tls
    }

    /// Refuses, before it is written, a secret (a password or a token) that would
    /// cross the network in clear: on plain text to an address that is not
    /// loopback, unless the options insisted (SPEC.md 11.7).
    pub fn check_secret_may_travel(&self) -> Result<(), ClientError> {
        if self.tls.is_some() || plaintext_allowed(self.peer.ip(), self.insecure_plaintext) {
            Ok(())
        } else {
            Err(ClientError::Plaintext(self.peer))
        }
    }

    /// Logs in.
    pub async fn login(&mut self, user: UserName, password: Password) -> Result<(), ClientError> {
        self.ok(Command::Login { user, password }).await?;
        self.user = Some(user);
        Ok(())
    }

    /// Creates an account and logs in.
    pub async fn register(
        &mut self,
        user: UserName,
        password: Password,
    ) -> Result<(), ClientError> {
        self.ok(Command::Register { user, password }).await?;
        self.user = Some(user);
        Ok(())
    }

    /// Logs in with a session token (the `tokens` feature, SPEC.md 4.7): no password
    /// is sent, and none is hashed.
    pub async fn auth(
        &mut self,
        user: UserName,
        token: TokenId,
        secret: TokenSecret,
    ) -> Result<(), ClientError> {
        self.ok(Command::Auth { user, token, secret }).await?;
        self.user = Some(user);
        Ok(())
    }

    /// Makes a session token for the logged-in account, labelled with the device
    /// that will keep it: its number and its secret (shown this once).
    pub async fn make_token(&self, label: Text) -> Result<(TokenId, TokenSecret), ClientError> {
        match self.ok(Command::Token { label }).await?.1 {
            OkReply::Token { token, secret } => Ok((token, secret)),
            other => Err(ClientError::Protocol(format!("TOKEN answered with {other:?}"))),
        }
    }

    /// Revokes one of the account's session tokens; the sessions it logged in end.
    pub async fn revoke(&self, token: TokenId) -> Result<(), ClientError> {
        self.ok(Command::Revoke { token }).await.map(|_| ())
    }

    /// Ends the session; with `revoke`, the token it logged in with is revoked too.
    pub async fn logout(&self, revoke: bool) -> Result<(), ClientError> {
        self.ok(Command::Logout { revoke }).await.map(|_| ())
    }

    /// Changes the account's password (the `account` feature): every other session
    /// ends, and every token but the one this session logged in with is revoked.
    pub async fn change_password(&self, old: Password, new: Password) -> Result<(), ClientError> {
        self.ok(Command::Password { old, new }).await.map(|_| ())
    }

    /// Deletes the account for good (the `account` feature); the connection closes.
    pub async fn delete_account(&self, password: Password) -> Result<(), ClientError> {
        self.ok(Command::DeleteAccount { password }).await.map(|_| ())
    }

    /// Sends a request and waits for its items and final reply.
    pub async fn call(
        &self,
        command: Command,
    ) -> Result<(Vec<Item>, Result<OkReply, Failure>), ClientError> {
        if command.carries_secret() {
            self.check_secret_may_travel()?;
        }
        let tag = Tag::new(&format!("c{}", self.next_tag.fetch_add(1, Ordering::Relaxed)))?;
        let (done, answer) = oneshot::channel();
        {
            let mut s = lock(&self.shared);
            if let Some(bye) = &s.closed {
                return Err(ClientError::Closed(bye.clone()));
            }
            s.waiting.insert(tag, (Vec::new(), done));
        }
        // A chunk's payload is written from where it is, after its line: not copied.
        let mut head = bytes::BytesMut::with_capacity(128);
        let payload = Request { tag, command }.encode_head(&mut head);
        let parts: [&[u8]; 3] = match &payload {
            Some(p) => [&head, p, b"\r\n"],
            None => [&head, b"", b""],
        };
        if let Err(e) = write_parts(&mut *self.writer.lock().await, &parts).await {
            lock(&self.shared).waiting.remove(&tag);
            return Err(e.into());
        }
        match answer.await {
            Ok(answer) => Ok(answer),
            Err(_) => Err(ClientError::Closed(lock(&self.shared).closed.clone().flatten())),
        }
    }

    /// Sends a request that must succeed: its items and reply.
    pub async fn ok(&self, command: Command) -> Result<(Vec<Item>, OkReply), ClientError> {
        match self.call(command).await? {
            (items, Ok(reply)) => Ok((items, reply)),
            (_, Err(failure)) => Err(ClientError::Failed(failure)),
        }
    }

    /// Sends a message with a fresh idempotency key, retrying with the same key
    /// after a `RATE_LIMITED` answer: its sequence number and time.
    pub async fn send(&self, to: Conversation, text: Text) -> Result<(Seq, Millis), ClientError> {
        let key = self.keys.next();
        loop {
            match self.call(Command::Send { to, key, text: text.clone() }).await? {
                (_, Ok(OkReply::Send { seq, time, .. })) => return Ok((seq, time)),
                (_, Ok(other)) => {
                    return Err(ClientError::Protocol(format!("SEND answered with {other:?}")));
                }
                (_, Err(Failure { code: ErrorCode::RateLimited, retry_after, .. })) => {
                    let wait = retry_after.unwrap_or(100).min(60_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                (_, Err(failure)) => return Err(ClientError::Failed(failure)),
            }
        }
    }

    /// Every stored event of a conversation after `after`, page by page: the events
    /// and the oldest sequence number the server still keeps.
    pub async fn history(
        &self,
        conv: Conversation,
        after: Seq,
    ) -> Result<(Vec<StoredEvent>, Seq), ClientError> {
        let mut events = Vec::new();
        let mut after = after;
        let limit = u32::try_from(self.info.limits.page).unwrap_or(u32::MAX).max(1);
        loop {
            let (items, reply) = self
                .ok(Command::History { conv, range: HistoryRange::After(after), limit })
                .await?;
            let OkReply::History { latest, oldest, .. } = reply else {
                return Err(ClientError::Protocol(format!("HISTORY answered with {reply:?}")));
            };
            let before = events.len();
            events.extend(items.into_iter().filter_map(|i| match i {
                Item::Stored(e) => Some(e),
                _ => None,
            }));
            match events.last() {
                Some(last) if events.len() > before && last.seq() < latest => after = last.seq(),
                _ => return Ok((events, oldest)),
            }
        }
    }

    /// Catches up: for every conversation this user reads whose newest sequence
    /// number is past the one in `seen`, fetches what was missed, in order, and
    /// moves `seen` on. Returns the missed events.
    pub async fn catch_up(
        &self,
        seen: &mut BTreeMap<Conversation, Seq>,
    ) -> Result<Vec<StoredEvent>, ClientError> {
        let (items, _) = self.ok(Command::Conversations).await?;
        let mut missed = Vec::new();
        for item in items {
            let Item::Conversation { conv, latest } = item else { continue };
            let have = seen.get(&conv).copied().unwrap_or(0);
            if latest > have {
                let (events, _) = self.history(conv, have).await?;
                if let Some(last) = events.last() {
                    seen.insert(conv, last.seq());
                }
                missed.extend(events);
            }
        }
        Ok(missed)
    }

    /// The next event, or `None` once the connection is gone and every queued
    /// event was taken.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        let lagged = std::mem::take(&mut lock(&self.shared).lagged);
        if lagged > 0 {
            return Some(ClientEvent::Lagged(lagged));
        }
        self.events.recv().await
    }

    /// Why the connection closed, once it has: the server's BYE, if it sent one.
    pub fn closed(&self) -> Option<Option<Failure>> {
        lock(&self.shared).closed.clone()
    }
}

/// Writes all of `parts`, in order, in as few system calls as the socket allows,
/// and flushes them (TLS holds records until flushed).
async fn write_parts<W: AsyncWrite + Unpin>(w: &mut W, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> =
        parts.iter().filter(|p| !p.is_empty()).map(|p| std::io::IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    // Every pass writes at least one byte, or fails.
    while !rest.is_empty() {
        let n = w.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        std::io::IoSlice::advance_slices(&mut rest, n);
    }
    w.flush().await
}

/// Sends a PING every `every` (half the server's `idle`) until the connection breaks.
/// Its reply carries a tag no request waits on, so it is dropped on arrival.
async fn keepalive(writer: Writer, every: Duration) {
    let tag = Tag::new("keepalive").unwrap_or_else(|_| unreachable!("a valid tag"));
    let ping = Request { tag, command: Command::Ping }.to_bytes();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if write_parts(&mut *writer.lock().await, &[&ping]).await.is_err() {
            return;
        }
    }
}

fn route(shared: &Mutex<Shared>, events: &mpsc::Sender<ClientEvent>, frame: ServerFrame) {
    let mut s = lock(shared);
    match frame {
        ServerFrame::Item { tag, item } => {
            if let Some((items, _)) = s.waiting.get_mut(&tag) {
                items.push(item);
            }
        }
        ServerFrame::Ok { tag, reply } => {
            if let Some((items, done)) = s.waiting.remove(&tag) {
                let _ = done.send((items, Ok(reply)));
            }
        }
        ServerFrame::Err { tag, failure } => {
            if let Some((items, done)) = s.waiting.remove(&tag) {
                let _ = done.send((items, Err(failure)));
            }
        }
        ServerFrame::Event(event) => {
            if events.try_send(ClientEvent::Event(event)).is_err() {
                s.lagged += 1;
            }
        }
    }
}

/// Makes idempotency keys unique per user across processes: a random prefix per
/// client and a counter.
struct KeyMaker {
    prefix: u64,
    counter: AtomicU64,
}

impl KeyMaker {
    fn new() -> Self {
        // RandomState is seeded from the OS's randomness once per process, and
        // differs per instance; the clock separates processes further.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        KeyMaker { prefix: h.finish(), counter: AtomicU64::new(1) }
    }

    fn next(&self) -> IdemKey {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // Hex digits and one '-': always a valid key.
        IdemKey::new(&format!("{:016x}-{n}", self.prefix))
            .unwrap_or_else(|_| unreachable!("valid key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_says_which_and_when() {
        let f = Failure {
            retry_after: Some(2_500),
            note: baatkaro_proto::Note::new("token logins from this address: over their budget")
                .ok(),
            ..Failure::new(ErrorCode::RateLimited)
        };
        assert_eq!(
            ClientError::Failed(f).to_string(),
            "RATE_LIMITED: token logins from this address: over their budget (try again in 2.5 s)"
        );
        assert_eq!(wait_text(250), "250 ms");
        assert_eq!(wait_text(60_000), "1 min");
        assert_eq!(wait_text(185_000), "3 min 5 s");
        assert_eq!(
            ClientError::Failed(Failure::new(ErrorCode::NotMember)).to_string(),
            "NOT_MEMBER: acting or target user not a member of the group"
        );
    }
}
