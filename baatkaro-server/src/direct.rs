//! Deliveries written by the hub itself, straight to an idle TCP connection.
//!
//! A delivery normally goes through the connection's channel: the hub sends it, the
//! runtime wakes the connection's task, the task applies it to its session and
//! writes. At light load each delivery is a wake-up of its own, and the task's turn
//! (the wake, its `select!`, the channel) costs about as much of the core as the
//! write itself (BENCHMARKS.md, "The hub writes to idle connections"). So while a
//! plain TCP connection has nothing to send and nothing on its way, its task
//! *lends* its socket to the hub, and the hub writes the frames of a fan-out that
//! are not tied to any of the connection's requests (events: a message, a member
//! who joined) with one write on the spot — as an event loop does, back to back
//! for all recipients of a message.
//!
//! Whoever writes must be the only writer, and nothing may overtake what is already
//! queued. The rules:
//!
//! - The task lends the socket only when its session has nothing queued, nothing
//!   is being written, and nothing sent it waits to be applied: no delivery
//!   counted in its backlog, nothing in its channel — checked under the lock.
//! - The task takes it back, under the lock, whenever it wakes, before it applies
//!   or writes anything.
//! - The hub writes only under the lock, while the socket is lent, only when
//!   nothing sent through the channel waits, and only a share of one frame tied
//!   to no request (a busy connection's larger shares go through the channel,
//!   where its task writes them together with what else came meanwhile).
//! - When the socket does not take all of it, the hub sends the rest through the
//!   channel under the lock and marks the share *cut*: the task, taking its socket
//!   back, applies that rest before anything of its own, or what it writes would
//!   land inside a frame.
//! - Anything else the hub sends a connection (a download, a goodbye) takes the
//!   socket back first and is sent under the lock, so that no frame written later
//!   overtakes it.
//!
//! TLS and WebSocket streams are written by their connection's task only: their
//! framing and encryption state live in the task.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use baatkaro_hub::{Delivery, Routed};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A TCP stream whose writing side is shared by a connection's task (which reads
/// and writes through this type's `AsyncRead` and `AsyncWrite`) and the hub (which
/// writes while the socket is lent, through [`Direct`] and a [`TcpWriter`]).
///
/// Reads go by tokio's own read half: after a read shorter than the room given, it
/// knows the socket is drained and waits for it, where reading by readiness from
/// outside tokio would make one more `recvfrom` each time, to learn that it would
/// block (a first version did: 37,313 `recvfrom`s in 3 s of 10 × 10 against 20,327).
#[derive(Debug)]
pub(crate) struct SharedTcp {
    rd: OwnedReadHalf,
    wr: TcpWriter,
}

/// The writing side of a [`SharedTcp`], for the hub. When the last clone goes, the
/// socket's writing side is shut down (a FIN): whoever keeps one keeps the
/// connection's end open.
#[derive(Clone, Debug)]
pub(crate) struct TcpWriter(Arc<OwnedWriteHalf>);

impl SharedTcp {
    /// Shares `stream`'s writing side.
    pub(crate) fn new(stream: TcpStream) -> SharedTcp {
        let (rd, wr) = stream.into_split();
        SharedTcp { rd, wr: TcpWriter(Arc::new(wr)) }
    }

    /// The writing side, for the hub.
    pub(crate) fn writer(&self) -> TcpWriter {
        self.wr.clone()
    }
}

impl TcpWriter {
    fn stream(&self) -> &TcpStream {
        (*self.0).as_ref()
    }
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.rd).poll_read(cx, buf)
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.wr.stream().poll_write_ready(cx))?;
            match self.wr.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.wr.stream().poll_write_ready(cx))?;
            match self.wr.0.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here: every write is the socket's.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = rustix::net::shutdown(self.wr.stream(), rustix::net::Shutdown::Write);
        Poll::Ready(shut.map_err(io::Error::from))
    }
}

/// The hub's way to write to a connection's socket while the connection lends it.
#[derive(Debug)]
pub(crate) struct Direct {
    socket: TcpWriter,
    /// Who may write: changed and acted on only under this lock, so that at most
    /// one side writes at a time.
    lend: Mutex<Lend>,
    /// Whether `lend` was last left other than [`Lend::Kept`], read without the
    /// lock: a connection that keeps its socket costs the hub a load, not a lock.
    hint: AtomicBool,
    /// Bytes sent through the connection's channel and not yet applied (the
    /// connection's backlog, shared with its handle).
    backlog: Arc<AtomicUsize>,
}

/// Who may write to the socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lend {
    /// The connection's task.
    Kept,
    /// The hub.
    Lent,
    /// Nobody yet: the hub wrote part of a share and gave the socket back, the
    /// rest waiting first in the channel. The task applies it before anything
    /// else, or what it writes would land inside a frame.
    Cut,
}

impl Direct {
    /// The hub's side of a connection's socket, with the connection's `backlog`.
    pub(crate) fn new(socket: TcpWriter, backlog: Arc<AtomicUsize>) -> Direct {
        Direct { socket, lend: Mutex::new(Lend::Kept), hint: AtomicBool::new(false), backlog }
    }

    /// The connection's task, with nothing to send and nothing being written, lends
    /// the socket — unless something it has not applied yet was sent it: deliveries
    /// counted in the backlog, or anything in its channel (`inbox_empty`, checked
    /// under the lock, under which the hub sends what must not be overtaken).
    pub(crate) fn lend(&self, inbox_empty: impl FnOnce() -> bool) {
        // Lent already (or cut, which the task finds when it wakes): no lock.
        if self.hint.load(Ordering::Relaxed) {
            return;
        }
        let mut lend = self.lock();
        if *lend == Lend::Kept && self.backlog.load(Ordering::Relaxed) == 0 && inbox_empty() {
            *lend = Lend::Lent;
            self.hint.store(true, Ordering::Relaxed);
        }
    }

    /// The connection's task takes the socket back, before it applies or writes
    /// anything; true if the hub cut a share short meanwhile: the task must then
    /// apply what waits in its channel first.
    #[must_use]
    pub(crate) fn reclaim(&self) -> bool {
        if !self.hint.load(Ordering::Relaxed) {
            return false;
        }
        let mut lend = self.lock();
        let cut = *lend == Lend::Cut;
        *lend = Lend::Kept;
        self.hint.store(false, Ordering::Relaxed);
        cut
    }

    /// The hub takes the socket back and sends something through the channel that
    /// frames written later must not overtake (a download, a goodbye), under the
    /// lock: the connection does not lend its socket again while it is there.
    pub(crate) fn take_back_and(&self, send: impl FnOnce()) {
        let mut lend = self.lock();
        if *lend == Lend::Lent {
            *lend = Lend::Kept;
            self.hint.store(false, Ordering::Relaxed);
        }
        send();
    }

    /// Writes `share` of `batch` if the socket is lent, nothing waits in the channel
    /// and the share is one frame tied to no request (a share of more is a busy
    /// connection's: through the channel its task writes them together with what
    /// else came meanwhile, where the hub would write batch by batch: with shares of
    /// up to 8 frames the open loop's p99 was higher in every round of three
    /// sittings, BENCHMARKS.md, "The hub writes to idle connections"). What
    /// the socket does not take is handed to `rest` — the share, less the bytes of
    /// its frame already written — which sends it through the channel: called under
    /// the lock, so that the connection finds it there when it takes its socket
    /// back. False when it did not try: the share goes through the channel whole.
    /// A frame of more than `limit` bytes (the connection's queue) is not begun:
    /// cut, its rest alone could close the session as a slow consumer, which drops
    /// what it has not handed out, and the BYE would land inside the frame.
    pub(crate) fn write(
        &self,
        batch: &Routed,
        share: &Range<u32>,
        limit: usize,
        rest: impl FnOnce(Range<u32>, u32),
    ) -> bool {
        if !self.hint.load(Ordering::Relaxed) || self.backlog.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let [Delivery::Frame { index, after: None }] = batch.share(share) else { return false };
        let Some(frame) = batch.frame(*index) else { return false };
        // (Frames are far smaller; what was written of one is then a `u32`.)
        if frame.len() > limit || frame.len() > u32::MAX as usize {
            return false;
        }
        let mut lend = self.lock();
        if *lend != Lend::Lent || self.backlog.load(Ordering::Relaxed) != 0 {
            return false;
        }
        // An error other than a full socket is the connection's to find: its task
        // reads the same socket. The rest goes its way, unwritten.
        let n = self.socket.0.try_write(frame).unwrap_or(0);
        if n == frame.len() {
            return true;
        }
        *lend = Lend::Cut;
        rest(share.clone(), n as u32);
        true
    }

    /// Whether the socket is lent now.
    #[cfg(test)]
    pub(crate) fn is_lent(&self) -> bool {
        *self.lock() == Lend::Lent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lend> {
        // Nothing panics while holding it; were it poisoned, the state is still right.
        self.lend.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// A connected pair over loopback: the server's end shared, the client's end.
    async fn pair() -> (SharedTcp, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (SharedTcp::new(accepted.unwrap().0), client.unwrap())
    }

    /// A batch of `frames`, each a delivery tied to no request.
    fn events(frames: &[&[u8]]) -> Routed {
        let frames: Vec<Bytes> = frames.iter().map(|f| Bytes::copy_from_slice(f)).collect();
        let deliveries =
            (0..frames.len() as u32).map(|index| Delivery::Frame { index, after: None }).collect();
        Routed { frames, deliveries, ..Routed::default() }
    }

    /// The hub writes only while the socket is lent, and only when nothing waits in
    /// the channel (fails without either check).
    #[tokio::test]
    async fn the_hub_writes_only_to_a_lent_socket_with_nothing_waiting() {
        let (socket, _client) = pair().await;
        let backlog = Arc::new(AtomicUsize::new(0));
        let direct = Direct::new(socket.writer(), backlog.clone());
        let batch = events(&[b"* MSG\r\n"]);
        let no_rest = |_, _| panic!("nothing is left");
        assert!(!direct.write(&batch, &(0..1), usize::MAX, no_rest), "not lent yet");
        direct.lend(|| true);
        assert!(direct.write(&batch, &(0..1), usize::MAX, no_rest), "lent: written");
        backlog.store(7, Ordering::Relaxed);
        assert!(
            !direct.write(&batch, &(0..1), usize::MAX, no_rest),
            "a delivery waits in the channel"
        );
        backlog.store(0, Ordering::Relaxed);
        assert!(!direct.reclaim(), "nothing was cut");
        assert!(!direct.write(&batch, &(0..1), usize::MAX, no_rest), "taken back");
        direct.lend(|| false);
        assert!(
            !direct.write(&batch, &(0..1), usize::MAX, no_rest),
            "not lent with a message in the channel"
        );
    }

    /// A share that is not one frame tied to no request is not the hub's to write.
    #[tokio::test]
    async fn only_a_single_untied_frame_is_written_by_the_hub() {
        let (socket, _client) = pair().await;
        let direct = Direct::new(socket.writer(), Arc::new(AtomicUsize::new(0)));
        direct.lend(|| true);
        let no_rest = |_, _| panic!("nothing is left");
        let mut tied = events(&[b"* MSG\r\n"]);
        tied.deliveries[0] =
            Delivery::Frame { index: 0, after: Some(baatkaro_proto::session::RequestId(1)) };
        assert!(!direct.write(&tied, &(0..1), usize::MAX, no_rest));
        let two = events(&[b"* MSG\r\n", b"* MSG\r\n"]);
        assert!(!direct.write(&two, &(0..2), usize::MAX, no_rest));
        assert!(direct.write(&two, &(1..2), usize::MAX, no_rest));
        assert!(!direct.write(&two, &(1..2), 6, no_rest), "longer than the queue");
        assert!(direct.is_lent());
    }

    /// A frame the socket does not take all of: the rest is handed on, less what
    /// was written of it; the hub writes no more, and the connection learns, taking
    /// its socket back, that a share was cut (fails if a cut share leaves the socket
    /// lent, or is not reported).
    #[tokio::test]
    async fn a_share_cut_short_hands_on_its_rest_and_is_reported() {
        let (socket, _client) = pair().await;
        let direct = Direct::new(socket.writer(), Arc::new(AtomicUsize::new(0)));
        direct.lend(|| true);
        let big = vec![b'b'; 64 << 20];
        let batch = events(&[&big]);
        let mut rest = None;
        assert!(direct.write(&batch, &(0..1), usize::MAX, |r, skip| rest = Some((r, skip))));
        let (range, skip) = rest.expect("64 MiB is more than a socket takes at once");
        assert_eq!(range, 0..1);
        assert!((skip as usize) < big.len());
        assert!(!direct.is_lent());
        let no_rest = |_, _| panic!("nothing is written");
        assert!(!direct.write(&events(&[b"* MSG\r\n"]), &(0..1), usize::MAX, no_rest));
        // A goodbye sent meanwhile leaves the cut to be found.
        let mut sent = false;
        direct.take_back_and(|| sent = true);
        assert!(sent);
        assert!(direct.reclaim(), "the connection learns of the cut");
        assert!(!direct.reclaim(), "once");
    }
}
