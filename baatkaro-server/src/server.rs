//! Starting and stopping: open the store, start the hub, accept connections until
//! told to stop, then shut down in order.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baatkaro_eventlog::Options as LogOptions;
use baatkaro_proto::session::{FrameBudget, Session, SessionConfig};
use baatkaro_proto::transport::{Fingerprint, plaintext_allowed};
use baatkaro_proto::{Encode, ErrorCode, Event, Failure, Feature, Features, ServerFrame, Software};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::Hasher;
use crate::clock;
use crate::config::{Config, ConfigError};
use crate::conn::{self, ConnCtx};
use crate::direct::SharedTcp;
use crate::disk::Disk;
use crate::hub::{HubMsg, HubTask, OsEntropy, StoreLink};
use crate::pace::RuntimeIdle;
use crate::space::StoreReserve;
use crate::store::sqlite::{DB_FILE, Sqlite};
use crate::store::verify::Checker;
use crate::store::writer::{Done, Job, Upkeep, Writer};
use crate::store::{Store, StoreError};
use crate::tls::{Tls, TlsError};
use crate::web::{self, WebCtx};
use baatkaro_hub::{Hub, HubConfig};
use baatkaro_proto::web::message_max;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened or loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS certificate or key could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The start-up check found the database damaged.
    #[error(
        "the database {} is damaged: {why}. The server does not start on it: restore it from \
         a backup (or move it away and start afresh with --fresh)",
        path.display()
    )]
    Damaged {
        /// The database file.
        path: std::path::PathBuf,
        /// What was found (naming no byte of the file).
        why: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Why [`Server::serve`] stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener may not serve plain text (SPEC.md 11.7), or the web origin
    /// policy is unusable for the web listener's address; nothing was served.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hub stopped on its own: its store failed in a way it cannot serve past
    /// (the log says how). Every session was closed; a supervisor should start the
    /// server again, which reopens and checks the store.
    #[error("the server stopped: its store failed (the log says how)")]
    Stopped,
}

/// A server whose store is open, ready to [`run`](Server::run).
pub struct Server {
    cfg: Arc<Config>,
    hub: HubTask,
    inbox: mpsc::Receiver<HubMsg>,
    hub_tx: mpsc::Sender<HubMsg>,
    /// Room for requests in the hub's inbox (see [`crate::hub::INBOX`]).
    queued: Arc<tokio::sync::Semaphore>,
    disk: Arc<Disk>,
    tls: Option<Tls>,
}

impl Server {
    /// Opens the SQLite store in the configured data directory, checks it, and
    /// loads it.
    pub async fn open(cfg: Config) -> Result<Self, StartError> {
        cfg.validate()?;
        let dir = cfg.data_dir.clone();
        let (fresh, budget, rate, reserve) =
            (cfg.fresh, cfg.verify_at_start, cfg.verify_rate, cfg.store_reserve);
        let logs = LogOptions { segment_bytes: cfg.event_segment_bytes, direct: cfg.direct_io };
        let (store, upkeep) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(StoreError::Io)?;
            // Before the database opens: on a full disk it needs room for its log.
            let mut reserve = StoreReserve::new(&dir, reserve);
            reserve.settle().map_err(StoreError::Io)?;
            let mut store = Sqlite::open_logs(&dir, fresh, logs)?;
            let path = dir.join(DB_FILE);
            let mut checker = Checker::open(&path)?;
            if let Err(e) = check_at_start(&mut checker, budget) {
                if matches!(e, StoreError::Corrupt(_)) {
                    // Refused, and closed without copying its log into the file.
                    store.stop_writing();
                }
                return Err(match e {
                    StoreError::Corrupt(why) => StartError::Damaged { path, why },
                    other => other.into(),
                });
            }
            let check = (rate > 0).then_some((checker, rate));
            Ok::<_, StartError>((store, Upkeep { reserve: Some(reserve), check }))
        })
        .await
        .map_err(|e| StartError::Other(e.to_string()))??;
        Self::start(cfg, store, upkeep).await
    }

    /// A server over any store (no reserve, no checks).
    pub async fn with_store<S: Store>(cfg: Config, store: S) -> Result<Self, StartError> {
        Self::start(cfg, store, Upkeep::default()).await
    }

    async fn start<S: Store>(cfg: Config, store: S, upkeep: Upkeep) -> Result<Self, StartError> {
        cfg.validate()?;
        let tls = match &cfg.tls {
            Some(source) => Some(Tls::load(source, &cfg.data_dir, cfg.listen)?),
            None => None,
        };
        let cfg = Arc::new(cfg);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        // Weak: a strong sender held here would keep `recv` below waiting forever
        // for a store thread that died without answering.
        let again = done_tx.downgrade();
        let writer = Writer::spawn_with(store, cfg.limits.history, done_tx, upkeep);
        let keys_since = clock::now().saturating_sub(cfg.limits.keys.saturating_mul(1000));
        writer.send(Job::Load { keys_since, keys_per_user: cfg.limits.key_count });
        // The background check runs while the store loads, and may find damage
        // first: that report is passed on to the hub once it runs, not taken for
        // the store thread's end.
        let mut early = None;
        let snapshot = loop {
            match done_rx.recv().await {
                Some(Done::Loaded(loaded)) => break (*loaded)?,
                // Said once: at most one.
                Some(damaged @ Done::Damaged(_)) => early = Some(damaged),
                _ => return Err(StartError::Other("the store thread stopped".into())),
            }
        };
        if let Some(damaged) = early
            && let Some(again) = again.upgrade()
        {
            let _ = again.send(damaged);
        }
        let hasher = Hasher::new(cfg.hash_cost, cfg.max_hashes).map_err(StartError::Other)?;
        let (dir, direct, reserve) = (cfg.data_dir.clone(), cfg.direct_io, cfg.upload_reserve);
        let keep: std::collections::HashSet<String> =
            snapshot.uploads.iter().map(|u| u.id.to_string()).collect();
        let disk = tokio::task::spawn_blocking(move || {
            let disk = Disk::open(&dir, direct, reserve)?;
            // Bytes of uploads the store does not know (a crash between the two).
            disk.sweep_partials(&|name| keep.contains(name));
            Ok::<_, std::io::Error>(disk)
        })
        .await
        .map_err(|e| StartError::Other(e.to_string()))?
        .map_err(StoreError::Io)?;
        let (hub_tx, inbox) = mpsc::channel(crate::hub::INBOX);
        let queued = Arc::new(tokio::sync::Semaphore::new(crate::hub::INBOX));
        let disk = Arc::new(disk);
        let core = HubConfig {
            limits: cfg.advertised(),
            registration_open: cfg.registration_open,
            max_accounts: cfg.max_accounts,
            logins_per_minute: cfg.logins_per_minute,
            shutdown_retry_ms: cfg.shutdown_retry_ms,
            token_idle_secs: cfg.token_idle_secs,
        };
        let hub = Hub::new(core, snapshot, clock::now(), random(), Box::new(OsEntropy))
            .map_err(|e| StartError::Other(format!("the stored state is inconsistent: {e}")))?;
        let queue = cfg.limits.queue;
        let store = StoreLink { writer, done: done_rx, database: cfg.data_dir.join(DB_FILE) };
        let hub = HubTask::new(hub, store, hasher, disk.clone(), hub_tx.downgrade(), queue)
            .with_queued(queued.clone());
        Ok(Server { cfg, hub, inbox, hub_tx, queued, disk, tls })
    }

    /// The fingerprint of the certificate the server presents, when it speaks
    /// TLS: what clients pin.
    pub fn tls_fingerprint(&self) -> Option<Fingerprint> {
        self.tls.as_ref().map(|t| t.fingerprint)
    }

    /// Paces commits when the server is saturated, for throughput, in cycles of
    /// the configuration's `commit_cycle_us` (0: never) ([`crate::pace`]):
    /// `runtime` is what [`RuntimeIdle::install`] returned for
    /// the runtime this server will run on (as the `baatkaro-server` binary does).
    /// Without it, every batch goes to the store as soon as the one before it has
    /// committed. Given another runtime's, or one another server was given too, a
    /// held batch may go early or wait out its whole cycle while this runtime is
    /// idle; nothing is lost or reordered either way.
    pub fn paced(self, runtime: Arc<RuntimeIdle>) -> Server {
        let cycle = Duration::from_micros(self.cfg.commit_cycle_us);
        Server { hub: self.hub.paced(runtime, cycle), ..self }
    }

    /// Serves `listener` (the protocol over TCP) until `shutdown` completes, then
    /// stops accepting, tells every client, finishes every durable write and
    /// returns. No web listener: see [`Server::serve`], which says when it fails.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        self.serve(Listeners { tcp: listener, web: None }, shutdown).await
    }

    /// Serves the protocol on `listeners.tcp` and, when given, the web client and
    /// WebSocket sessions on `listeners.web` (SPEC.md section 12), until
    /// `shutdown` completes; then stops as [`Server::run`] does. Commits are paced
    /// at saturation only if the server was given its runtime's hooks
    /// ([`Server::paced`]).
    ///
    /// Fails without serving if a listener may not serve plain text or the web
    /// origin policy does not fit the web listener; and stops early, failing, if
    /// the hub stops on its own ([`ServeError::Stopped`]) — a process that went on
    /// accepting connections it could not serve would never be restarted.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let Server { cfg, hub, inbox, hub_tx, queued, disk, tls } = self;
        let Listeners { tcp: listener, web } = listeners;
        // The rule of SPEC.md 11.7 on the sockets actually served, which an
        // embedder may have bound elsewhere than `cfg.listen`.
        for addr in [Some(&listener), web.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|l| l.local_addr().ok())
        {
            if tls.is_none() && !plaintext_allowed(addr.ip(), cfg.insecure_plaintext) {
                tracing::error!("{}", ConfigError::Plaintext(addr));
                return Err(ConfigError::Plaintext(addr).into());
            }
        }
        let policy = match web.as_ref().map(|w| w.local_addr()) {
            Some(Ok(addr)) => match cfg.origin_policy(addr) {
                Ok(policy) => Arc::new(policy),
                Err(e) => {
                    tracing::error!("{e}");
                    return Err(e.into());
                }
            },
            _ => Arc::default(),
        };
        let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
        let handshake = Duration::from_millis(cfg.tls_handshake_ms);
        // The hub's end is watched as a stop: it ends before being told to only when
        // its store failed (a reload that failed, the store thread gone).
        let (hub_end_tx, hub_end) = tokio::sync::oneshot::channel::<()>();
        let hub_task = tokio::spawn(async move {
            hub.run(inbox).await;
            let _ = hub_end_tx.send(());
        });
        let hub_stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = hub_stopped.clone();
        let shutdown = async move {
            tokio::select! {
                () = shutdown => {}
                // Sent, or the task ended by a panic: either way the hub is gone.
                _ = hub_end => stopped.store(true, std::sync::atomic::Ordering::Relaxed),
            }
        };
        let (stop_tx, stopping) = watch::channel(false);
        let session_config = SessionConfig {
            software: Software::new(concat!("baatkaro-server/", env!("CARGO_PKG_VERSION")))
                .unwrap_or_else(|_| unreachable!("the crate version is a valid software token")),
            features: features(),
            limits: cfg.advertised(),
            frames: FrameBudget {
                rate: cfg.frames_per_second,
                burst: cfg.frames_per_second.saturating_mul(2),
            },
        };
        let ctx = ConnCtx {
            hub: hub_tx.clone(),
            queued,
            disk,
            linger: Duration::from_millis(cfg.linger_ms),
            stopping,
        };
        let web_ctx = WebCtx {
            policy,
            tls: tls.is_some(),
            message_max: usize::try_from(message_max(&session_config.limits)).unwrap_or(usize::MAX),
            session: session_config.clone(),
            shutdown_retry_ms: cfg.shutdown_retry_ms,
            stall: Duration::from_millis(cfg.web_stall_ms),
            conn: ctx.clone(),
        };
        let permits = Arc::new(Semaphore::new(cfg.max_connections));
        // Refusing costs a task, and on TLS a handshake: a flood of connections
        // over the limits gets at most this many BYEs at once, the rest are closed.
        let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
        let per_address: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
        let mut tasks = JoinSet::new();
        let mut next_id = 1;
        tokio::pin!(shutdown);
        match (listener.local_addr(), &tls) {
            (Ok(addr), Some(tls)) => {
                tracing::info!(certificate = %tls.fingerprint, "listening on {addr} with TLS");
            }
            (Ok(addr), None) => tracing::info!("listening on {addr}"),
            (Err(e), _) => tracing::warn!(error = %e, "listening on an unknown address"),
        }
        if let Some(Ok(addr)) = web.as_ref().map(|w| w.local_addr()) {
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!("web client at {scheme}://{addr}/");
        }
        let mut spare = Spare::open();
        let mut failures = AcceptFailures::default();
        loop {
            let (accepted, kind) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => (accepted, Kind::Protocol),
                accepted = accept_on(web.as_ref()) => (accepted, Kind::Web),
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            };
            let listener = match kind {
                Kind::Protocol => &listener,
                // Only accepted from when there is one.
                Kind::Web => web.as_ref().unwrap_or(&listener),
            };
            let (stream, peer) = match accepted {
                Ok(pair) => {
                    failures.backoff = None;
                    pair
                }
                Err(e) if out_of_descriptors(&e) => {
                    failures.note(
                        &e,
                        "accept failed: out of file descriptors; new \
                        connections are refused with TOO_MANY_CONNECTIONS",
                    );
                    match spare.accept_at_limit(listener, kind, acceptor.as_ref()).await {
                        AtLimit::Serve(pair) => pair,
                        // Nothing waits: the next accept waits for a connection.
                        AtLimit::Refused | AtLimit::NoneWaiting => continue,
                        AtLimit::NoSpare => {
                            let wait = failures.next_backoff();
                            tokio::select! {
                                () = &mut shutdown => break,
                                () = tokio::time::sleep(wait) => continue,
                            }
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    // That one connection is gone; the next may be fine.
                    failures.note(&e, "accept failed");
                    continue;
                }
                Err(e) => {
                    // Out of memory, say: wait, longer each time in a row, then go
                    // on (or stop if told to).
                    failures.note(&e, "accept failed");
                    let wait = failures.next_backoff();
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            // A place in the address's count, then one in the server's: without
            // both, the connection is told why (while few others are) and closed.
            let admitted = AddressGuard::take(&per_address, peer.ip(), cfg.max_per_address)
                .and_then(|guard| Some((guard, permits.clone().try_acquire_owned().ok()?)));
            let Some((guard, permit)) = admitted else {
                if let Ok(turn) = refusals.clone().try_acquire_owned() {
                    let tls = acceptor.clone();
                    tasks.spawn(async move {
                        refuse(stream, kind, REFUSAL, tls).await;
                        drop(turn)
                    });
                }
                continue;
            };
            // Sessions run on the monotonic clock: their times are only deadlines.
            let session = Session::new(session_config.clone(), clock::monotonic());
            let accepted = tokio::time::Instant::now();
            let id = next_id;
            next_id += 1;
            // Small frames are batched in user space; Nagle would only add latency.
            let _ = stream.set_nodelay(true);
            let ctx = ctx.clone();
            let web_ctx = web_ctx.clone();
            let acceptor = acceptor.clone();
            // Each way of serving is boxed on its own: a task is as large as its
            // largest state, and a plain connection would otherwise carry the
            // room of a TLS WebSocket's (measured: 16.6 KB a task).
            tasks.spawn(async move {
                match (acceptor, kind) {
                    (None, Kind::Protocol) => {
                        // The hub may write to a plain TCP socket itself (`direct`).
                        let shared = SharedTcp::new(stream);
                        let writer = Some(shared.writer());
                        Box::pin(conn::serve(shared, writer, id, peer, session, ctx)).await
                    }
                    (None, Kind::Web) => {
                        Box::pin(web::serve(stream, id, peer, accepted, session, web_ctx)).await
                    }
                    (Some(acceptor), kind) => Box::pin(async move {
                        let mut stopping = ctx.stopping.clone();
                        let tls = tokio::select! {
                            tls = tokio::time::timeout(handshake, acceptor.accept(stream)) => tls,
                            // A half-made connection has nothing to lose.
                            _ = stopping.wait_for(|s| *s) => return,
                        };
                        match tls {
                            Ok(Ok(tls)) if kind == Kind::Web => {
                                Box::pin(web::serve(tls, id, peer, accepted, session, web_ctx))
                                    .await
                            }
                            Ok(Ok(tls)) => {
                                Box::pin(conn::serve(tls, None, id, peer, session, ctx)).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    })
                    .await,
                }
                drop((permit, guard));
            });
        }
        let on_its_own = hub_stopped.load(std::sync::atomic::Ordering::Relaxed);
        if on_its_own {
            tracing::error!("the hub stopped on its own: stopping the server");
        } else {
            tracing::info!("shutting down");
        }
        drop((listener, web));
        let _ = stop_tx.send(true);
        // (A hub that stopped on its own no longer reads its inbox: this fails.)
        let _ = hub_tx.send(HubMsg::Shutdown).await;
        drop((hub_tx, ctx));
        // The hub commits what it holds, says goodbye to every session, then stops.
        if let Err(e) = hub_task.await {
            tracing::error!(error = %e, "the hub's task failed");
        }
        // Connections finish writing their BYE (each bounded by its linger time).
        while tasks.join_next().await.is_some() {}
        tracing::info!("stopped");
        if on_its_own { Err(ServeError::Stopped) } else { Ok(()) }
    }
}

/// The start-up check: SQLite's `quick_check` of the b-trees when the whole
/// database fits `budget`, then the rows' checksums up to `budget` bytes (the
/// background check goes on from there). BENCHMARKS.md has what it costs.
fn check_at_start(checker: &mut Checker, budget: u64) -> Result<(), StoreError> {
    if budget == 0 {
        tracing::info!("the start-up check of the database is off (verify_at_start = 0)");
        return Ok(());
    }
    let started = std::time::Instant::now();
    let size = checker.database_size()?;
    let whole = size <= budget;
    if whole {
        checker.quick_check()?;
    }
    let progress = checker.check(budget)?;
    let ms = started.elapsed().as_millis() as u64;
    if progress.pass_done {
        tracing::info!(rows = progress.rows, bytes = size, ms, "checked the whole database");
    } else {
        tracing::info!(
            rows = progress.rows,
            bytes = progress.bytes,
            database = size,
            ms,
            "checked the database as far as verify_at_start allows; the background check \
             goes on from there"
        );
    }
    Ok(())
}

/// What the web listener says to a connection over the limits.
const TOO_BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
    Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n\r\n\
    too many connections, sorry";

/// How long a refused connection may take to receive its BYE.
const REFUSAL: Duration = Duration::from_secs(1);

/// Most refused connections being told why at once.
const REFUSALS_AT_ONCE: usize = 64;

/// The listeners a server serves.
pub struct Listeners {
    /// The protocol over TCP (SPEC.md section 2).
    pub tcp: TcpListener,
    /// The web client and WebSocket sessions (SPEC.md section 12), if served.
    pub web: Option<TcpListener>,
}

/// Which listener a connection came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The protocol's own TCP listener.
    Protocol,
    /// The web listener.
    Web,
}

/// The next connection on `listener`, or never without one.
async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Greets a connection over the limits with `BYE TOO_MANY_CONNECTIONS` (on the web
/// listener, `503 Service Unavailable`) and closes, all within `within`, the TLS
/// handshake included on a TLS listener.
async fn refuse(stream: TcpStream, kind: Kind, within: Duration, tls: Option<TlsAcceptor>) {
    let _ = tokio::time::timeout(within, async {
        match tls {
            None => say_bye(stream, kind).await,
            Some(acceptor) => say_bye(acceptor.accept(stream).await?, kind).await,
        }
    })
    .await;
}

/// Writes `BYE TOO_MANY_CONNECTIONS`, ends writing, then reads and drops what the
/// client sent already, so that closing does not reset the connection (and
/// destroy the BYE) under a client that said HELLO first.
async fn say_bye<S>(mut stream: S, kind: Kind) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match kind {
        Kind::Protocol => {
            let failure =
                Failure { retry_after: Some(1000), ..Failure::new(ErrorCode::TooManyConnections) };
            let bytes = ServerFrame::Event(Event::Bye(failure)).to_bytes();
            stream.write_all(&bytes).await?;
        }
        Kind::Web => stream.write_all(TOO_BUSY).await?,
    }
    stream.shutdown().await?;
    let mut sink = [0u8; 1024];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// Whether an accept failed for want of file descriptors, the process's (EMFILE)
/// or the system's (ENFILE).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(Errno::from_io_error(e), Some(Errno::MFILE | Errno::NFILE))
}

/// A descriptor held open (on `/dev/null`) so that the server out of
/// descriptors can still refuse a connection: without it the connection waits
/// in the listen backlog, unanswered, until one frees up.
struct Spare(Option<std::fs::File>);

/// What [`Spare::accept_at_limit`] did.
enum AtLimit {
    /// A descriptor had come free after all: serve this connection.
    Serve((TcpStream, SocketAddr)),
    /// A connection was told `BYE TOO_MANY_CONNECTIONS` and closed.
    Refused,
    /// No connection was waiting.
    NoneWaiting,
    /// There is no spare to give up (another task took its descriptor): the
    /// caller must wait and try again.
    NoSpare,
}

impl Spare {
    fn open() -> Self {
        let file = std::fs::File::open("/dev/null");
        if let Err(e) = &file {
            tracing::warn!(error = %e, "no spare descriptor (cannot open /dev/null): at the \
                open-file limit, connections will wait instead of being refused");
        }
        Spare(file.ok())
    }

    /// Opens the spare if it is not open.
    fn reopen(&mut self) {
        if self.0.is_none() {
            self.0 = std::fs::File::open("/dev/null").ok();
        }
    }

    /// After an accept failed for want of descriptors: closes the spare and
    /// accepts the connection waiting, if any. If the spare then opens again,
    /// descriptors have come free and the connection is served; if not, it is
    /// told `BYE TOO_MANY_CONNECTIONS` and closed, and the spare opened again.
    async fn accept_at_limit(
        &mut self,
        listener: &TcpListener,
        kind: Kind,
        tls: Option<&TlsAcceptor>,
    ) -> AtLimit {
        if self.0.take().is_none() {
            self.reopen();
            return AtLimit::NoSpare;
        }
        // Linux's accept takes a descriptor before it looks for a connection, so
        // the failure does not say that one is waiting: look without waiting. With
        // none there, the listener waits for the next one to arrive.
        let Ok(Ok(pair)) = tokio::time::timeout(Duration::ZERO, listener.accept()).await else {
            self.reopen();
            return AtLimit::NoneWaiting;
        };
        self.reopen();
        if self.0.is_some() {
            return AtLimit::Serve(pair);
        }
        // Here, not in a task: the spare can be opened again only once this
        // connection's descriptor is closed.
        // Briefly: the accept loop waits on it.
        refuse(pair.0, kind, Duration::from_millis(50), tls.cloned()).await;
        self.reopen();
        AtLimit::Refused
    }
}

/// The first wait after an accept failure that is not for one connection alone;
/// it doubles with every failure in a row, up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest wait between accepts after failures.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Failed accepts: the backoff after them, and their log, at most a line a
/// second (with how many were not logged) so that a server out of descriptors
/// does not also flood its log.
#[derive(Default)]
struct AcceptFailures {
    /// The wait after the last failure in a row; `None` after a success.
    backoff: Option<Duration>,
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl AcceptFailures {
    fn note(&mut self, e: &std::io::Error, what: &str) {
        let now = std::time::Instant::now();
        if self.last_logged.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            self.unlogged += 1;
            return;
        }
        tracing::warn!(error = %e, not_logged = self.unlogged, "{what}");
        self.last_logged = Some(now);
        self.unlogged = 0;
    }

    fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff.map_or(BACKOFF_MIN, |b| (b * 2).min(BACKOFF_MAX));
        self.backoff = Some(wait);
        wait
    }
}

/// One connection's place in the per-address count, given back on drop.
struct AddressGuard {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl AddressGuard {
    fn take(counts: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressGuard { counts: counts.clone(), ip })
    }
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// The optional features this server offers (SPEC.md 4.2): files and cancelling
/// uploads, session tokens, the account's life, read markers, and a group's bans
/// and ownership offer.
fn features() -> Features {
    let names = ["files", "file-cancel", "tokens", "account", "read", "group-state"];
    let list = names
        .iter()
        .map(|n| Feature::new(n).unwrap_or_else(|_| unreachable!("a valid feature name")))
        .collect();
    Features::new(list).unwrap_or_else(|_| unreachable!("fewer than eight features"))
}

/// A random number, for the file ids of this run.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}
