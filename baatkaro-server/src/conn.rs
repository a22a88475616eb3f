//! One connection: a reader task and a writer task around the proto crate's
//! [`Session`], which keeps every per-connection rule.
//!
//! The session sits behind a mutex that is only ever held to hand it bytes or take
//! bytes from it, never across a socket call. The reader feeds it what arrives and
//! passes the requests it decodes to the hub; the hub answers into it and wakes the
//! writer; the writer takes everything queued in one buffer and writes it with one
//! call, so frames that piled up while a write ran leave together.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baatkaro_proto::Millis;
use baatkaro_proto::delivery::RateBudget;
use baatkaro_proto::session::{Session, SessionEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc, watch};
use tracing::Instrument;

use crate::clock;
use crate::hub::HubMsg;

/// Identifies a connection for the life of the server.
pub(crate) type ConnId = u64;

/// What the reader, the writer and the hub share of one connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Its id.
    pub(crate) id: ConnId,
    /// Who is at the other end.
    pub(crate) peer: SocketAddr,
    session: Mutex<Link>,
    /// Woken when there is output to write.
    pub(crate) writer: Notify,
    /// Woken when the session may have requests to pass on (an answer let frames
    /// that waited in the decoder through) or has closed.
    pub(crate) reader: Notify,
    /// Signalled after every write to the socket: room in the queue for downloads.
    pub(crate) drained: Notify,
}

/// The session and whether the socket is still there.
#[derive(Debug)]
pub(crate) struct Link {
    /// The protocol state of the connection.
    pub(crate) session: Session,
    /// The peer closed, or a socket call failed: nothing more will be written.
    pub(crate) gone: bool,
    /// The reader found the session taking no input and waits to be woken: whoever
    /// answers a request checks whether it takes input again.
    pub(crate) stalled: bool,
}

impl Link {
    /// Whether the reader should be woken: frames wait in the decoder, or it stopped
    /// reading and the session takes input again (answers freed room in flight).
    pub(crate) fn reader_has_work(&mut self) -> bool {
        if self.session.has_events() {
            return true;
        }
        if self.stalled && self.session.wants_input() {
            self.stalled = false;
            return true;
        }
        false
    }
}

impl Conn {
    /// A connection for `session`.
    pub(crate) fn new(id: ConnId, peer: SocketAddr, session: Session) -> Self {
        Conn {
            id,
            peer,
            session: Mutex::new(Link { session, gone: false, stalled: false }),
            writer: Notify::new(),
            reader: Notify::new(),
            drained: Notify::new(),
        }
    }

    /// Locks the session. A task that panicked while holding it cannot have left
    /// the session half-changed in a way that matters more than losing the
    /// connection, so a poisoned lock is taken as it is.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Link> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The read buffer of a connection, at first and at most.
const READ_MIN: usize = 4 * 1024;
const READ_MAX: usize = 256 * 1024;

/// How long a closing connection's last frames may take to leave.
const LINGER: Duration = Duration::from_secs(5);

/// How fast one connection may send frames: beyond it the reader waits before it
/// reads more, and TCP slows the client down (SPEC.md section 3).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameBudget {
    /// Frames per second, sustained.
    pub(crate) rate: u64,
    /// Frames in a burst.
    pub(crate) burst: u64,
}

/// Runs a connection until it closes: spawns its writer, then reads.
pub(crate) async fn serve(
    stream: TcpStream,
    conn: Arc<Conn>,
    hub: mpsc::Sender<HubMsg>,
    budget: FrameBudget,
    shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("conn", id = conn.id, peer = %conn.peer);
    async move {
        // Small frames are batched in user space; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let mut writer = tokio::spawn(write_loop(wr, conn.clone()));
        if hub.send(HubMsg::Connected { conn: conn.clone() }).await.is_ok() {
            read_loop(rd, &conn, &hub, budget, shutdown).await;
        }
        conn.lock().gone = true;
        conn.writer.notify_one();
        // The last frames (a BYE) get a moment to leave; a peer that reads nothing
        // must not hold the connection open.
        if tokio::time::timeout(LINGER, &mut writer).await.is_err() {
            writer.abort();
        }
        let _ = hub.send(HubMsg::Disconnected { conn: conn.id }).await;
        tracing::debug!("closed");
    }
    .instrument(span)
    .await
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    conn: &Arc<Conn>,
    hub: &mpsc::Sender<HubMsg>,
    budget: FrameBudget,
    mut shutdown: watch::Receiver<bool>,
) {
    // Small for the many quiet connections (a line is at most 1 KiB); it doubles (up to READ_MAX) while reads
    // fill it, so that a file upload arrives in a few reads, not dozens.
    let mut buf = vec![0u8; READ_MIN];
    let mut frames = RateBudget::new(budget.burst, clock::now());
    let mut shutting_down = false;
    loop {
        // Pass on what the session decoded, and learn what to wait for next.
        let (requests, closed, wants_input, deadline) = {
            let mut link = conn.lock();
            let mut requests = Vec::new();
            let mut closed = false;
            while let Some(event) = link.session.poll_event() {
                match event {
                    SessionEvent::Request { id, command } => requests.push((id, command)),
                    SessionEvent::LoggedIn { .. } => {}
                    SessionEvent::Closed { reason } => {
                        tracing::debug!(?reason, "session closed");
                        closed = true;
                    }
                }
            }
            closed |= link.gone;
            let wants_input = link.session.wants_input();
            link.stalled = !wants_input;
            (requests, closed, wants_input, link.session.poll_timeout())
        };
        conn.writer.notify_one();
        let mut throttle = None;
        for (id, command) in requests {
            if let Err(wait) = frames.try_take(clock::now(), budget.rate, budget.burst) {
                throttle = Some(wait);
            }
            if hub.send(HubMsg::Request { conn: conn.id, id, command }).await.is_err() {
                return;
            }
        }
        if closed {
            return;
        }
        if let Some(wait) = throttle {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        let sleep = deadline_sleep(deadline);
        tokio::select! {
            read = rd.read(&mut buf), if wants_input => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    conn.lock().session.handle_input(&buf[..n], clock::now());
                    if n == buf.len() && buf.len() < READ_MAX {
                        buf.resize(buf.len() * 2, 0);
                    }
                }
            },
            () = conn.reader.notified() => {}
            () = sleep => conn.lock().session.handle_timeout(clock::now()),
            _ = shutdown.changed(), if !shutting_down => {
                // The hub says goodbye to every session; keep going until it has.
                shutting_down = true;
            }
        }
    }
}

/// Sleeps until a session deadline (milliseconds since the epoch), or forever.
async fn deadline_sleep(deadline: Option<Millis>) {
    match deadline {
        Some(at) => {
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(clock::now()))).await
        }
        None => std::future::pending().await,
    }
}

async fn write_loop(mut wr: OwnedWriteHalf, conn: Arc<Conn>) {
    loop {
        let (bytes, done) = {
            let mut link = conn.lock();
            let bytes = link.session.poll_transmit();
            let closed = link.session.state() == baatkaro_proto::session::SessionState::Closed;
            (bytes, link.gone || closed)
        };
        match bytes {
            Some(bytes) => {
                if wr.write_all(&bytes).await.is_err() {
                    conn.lock().gone = true;
                    conn.reader.notify_one();
                    conn.drained.notify_waiters();
                    return;
                }
                conn.drained.notify_waiters();
            }
            None if done => {
                let _ = wr.shutdown().await;
                conn.reader.notify_one();
                conn.drained.notify_waiters();
                return;
            }
            None => conn.writer.notified().await,
        }
    }
}
