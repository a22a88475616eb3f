//! The handle: a cheap, cloneable [`Client`] whose methods take `&self`, so one
//! task can send while another receives.
//!
//! A task of its own owns the connection ([`crate::connection`]); every method
//! sends it a request and waits for the answer, and [`Client::events`] hears what
//! the server says unasked. Requests from several tasks at once each get their
//! own tag. Dropping a request's future (a timeout, a `select!`) is safe: the
//! request is still answered, and the answer dropped.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use baatkaro_proto::client::Answer;
use baatkaro_proto::transport::{Address, plaintext_allowed};
use baatkaro_proto::{
    Command, Conversation, Failure, IdemKey, Item, OkReply, Seq, StoredEvent, UserName,
};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::connection::{Driver, Job, Link, ServerInfo, Status, lock, too_large};
use crate::events::{EVENT_QUEUE, Events};
use crate::tls::{ConnectOptions, TlsInfo};
use crate::{ClientError, ClientEvent};

/// Requests handed to the connection's task but not yet taken by it; a caller
/// beyond that waits its turn.
const JOB_QUEUE: usize = 256;

/// A connection to a BaatKaro server. Clone it freely: every clone drives the
/// same connection, which closes when the last clone is dropped.
///
/// Every command of SPEC.md has a typed method (`join`, `kick`, `history`, …;
/// see [`crate`]'s list); [`Client::call`] sends any [`Command`] as it is.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: mpsc::Sender<Job>,
    status: Arc<Mutex<Status>>,
    events: broadcast::WeakSender<ClientEvent>,
    /// The receiver made with the channel, for the first [`Client::events`]: it
    /// has every event since the connection opened.
    first: Mutex<Option<broadcast::Receiver<ClientEvent>>>,
    wake: Arc<Notify>,
    stop: Arc<Notify>,
    keys: KeyMaker,
    insecure_plaintext: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = lock(&self.inner.status);
        f.debug_struct("Client")
            .field("peer", &status.peer)
            .field("user", &status.user)
            .field("connected", &status.connected)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to `addr` (`host:port`, `baatkaro://host:port`, or
    /// `baatkaros://host:port` for TLS, trusting the system's CAs only) and says
    /// HELLO.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        Self::connect_with(addr, &ConnectOptions::default()).await
    }

    /// Connects as [`connect`](Self::connect), trusting the server, sending
    /// secrets and reconnecting as `options` say, within `options.timeout`.
    pub async fn connect_with(addr: &str, options: &ConnectOptions) -> Result<Client, ClientError> {
        let addr: Address = addr.parse()?;
        let link = Link::open(&addr, options).await?;
        let status = Arc::new(Mutex::new(link.status()));
        let (jobs, queue) = mpsc::channel(JOB_QUEUE);
        let (events, first) = broadcast::channel(EVENT_QUEUE);
        let wake = Arc::new(Notify::new());
        let stop = Arc::new(Notify::new());
        let driver = Driver::new(
            addr,
            options.clone(),
            queue,
            status.clone(),
            events.clone(),
            wake.clone(),
            stop.clone(),
        );
        let inner = Inner {
            jobs,
            status,
            events: events.downgrade(),
            first: Mutex::new(Some(first)),
            wake,
            stop,
            keys: KeyMaker::new(),
            insecure_plaintext: options.insecure_plaintext,
        };
        // The task holds the only strong sender: the streams end when it does.
        drop(events);
        tokio::spawn(driver.run(link));
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The events of this connection, as a [`Stream`](futures::Stream). The first
    /// call gets every event since the connection opened; a later one, every
    /// event from then on. Each stream holds at most [`EVENT_QUEUE`] events not yet
    /// taken, and reports any it lost in their place ([`ClientEvent::Lagged`]).
    pub fn events(&self) -> Events {
        if let Some(first) = self.inner.first.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Events::new(first);
        }
        match self.inner.events.upgrade() {
            Some(sender) => Events::new(sender.subscribe()),
            // The connection is gone: a stream that ends at once.
            None => Events::new(broadcast::channel(1).1),
        }
    }

    /// What the server offers: its software, features and limits (those of the
    /// current connection, after a reconnect).
    pub fn server(&self) -> ServerInfo {
        lock(&self.inner.status).info.clone()
    }

    /// Who this connection is logged in as.
    pub fn user(&self) -> Option<UserName> {
        lock(&self.inner.status).user
    }

    /// The server's certificate and why it was trusted, on a TLS connection.
    pub fn tls(&self) -> Option<TlsInfo> {
        lock(&self.inner.status).tls
    }

    /// Whether the client is connected now (false while it reconnects, and once
    /// the connection is gone for good).
    pub fn is_connected(&self) -> bool {
        let status = lock(&self.inner.status);
        status.connected && status.closed.is_none()
    }

    /// Why the connection is gone for good, once it is: `Some` of the server's
    /// BYE, if it sent one.
    pub fn closed(&self) -> Option<Option<Failure>> {
        lock(&self.inner.status).closed.clone()
    }

    /// While reconnecting, tries again now instead of waiting out the backoff
    /// (at any other time, nothing).
    pub fn reconnect_now(&self) {
        // Only a waiting reconnect hears it: a call while connected leaves nothing
        // behind to cut the server's next `retry=` short.
        self.inner.wake.notify_waiters();
    }

    /// Closes the connection now, without LOGOUT, and stops reconnecting: every
    /// request in flight fails with [`ClientError::Closed`], and the event streams
    /// end. (Dropping every clone does the same.)
    pub fn close(&self) {
        // A permit is kept if the task is busy: it stops at its next turn.
        self.inner.stop.notify_one();
    }

    /// Refuses, before it is written, a secret (a password or a token) that would
    /// cross the network in clear: on plain text to an address that is not
    /// loopback, unless the options insisted (SPEC.md 11.7).
    pub fn check_secret_may_travel(&self) -> Result<(), ClientError> {
        let status = lock(&self.inner.status);
        if status.tls.is_some()
            || plaintext_allowed(status.peer.ip(), self.inner.insecure_plaintext)
        {
            Ok(())
        } else {
            Err(ClientError::Plaintext(status.peer))
        }
    }

    /// Sends any command and waits for its items and final reply, refusal
    /// included: the escape hatch under the typed methods. A command that
    /// carries a secret is refused unless it may travel
    /// ([`check_secret_may_travel`](Self::check_secret_may_travel)).
    pub async fn call(&self, command: Command) -> Result<Answer, ClientError> {
        if command.carries_secret() {
            self.check_secret_may_travel()?;
        }
        let (reply, answer) = oneshot::channel();
        if self.inner.jobs.send(Job { command, reply, tries: 0 }).await.is_err() {
            return Err(self.gone());
        }
        match answer.await {
            Ok(Ok(answer)) if answer.truncated => Err(too_large()),
            Ok(answer) => answer,
            Err(_) => Err(self.gone()),
        }
    }

    /// Sends a command that must succeed: its items and reply, or
    /// [`ClientError::Refused`].
    pub async fn ok(&self, command: Command) -> Result<(Vec<Item>, OkReply), ClientError> {
        let answer = self.call(command).await?;
        match answer.result {
            Ok(reply) => Ok((answer.items, reply)),
            Err(failure) => Err(ClientError::Refused(failure)),
        }
    }

    fn gone(&self) -> ClientError {
        ClientError::Closed(self.closed().flatten())
    }

    /// A fresh idempotency key, unique to this client (SPEC.md 5.2).
    pub fn new_key(&self) -> IdemKey {
        self.inner.keys.next()
    }

    /// Catches up: for every conversation this user reads whose newest sequence
    /// number is past the one in `seen`, fetches what was missed, in order, and
    /// moves `seen` on. Returns the missed events.
    pub async fn catch_up(
        &self,
        seen: &mut BTreeMap<Conversation, Seq>,
    ) -> Result<Vec<StoredEvent>, ClientError> {
        let mut missed = Vec::new();
        for c in self.conversations().await? {
            let have = seen.get(&c.conv).copied().unwrap_or(0);
            if c.latest > have {
                let history = self.history_after(c.conv, have).await?;
                if let Some(last) = history.events.last() {
                    seen.insert(c.conv, last.seq());
                }
                missed.extend(history.events);
            }
        }
        Ok(missed)
    }
}

impl Link {
    /// What the handles may read of a new connection.
    pub(crate) fn status(&self) -> Status {
        Status {
            info: self.info().clone(),
            user: None,
            peer: self.peer(),
            tls: self.tls(),
            connected: true,
            closed: None,
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
