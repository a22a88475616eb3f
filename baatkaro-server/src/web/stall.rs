//! A byte stream that notes when bytes last moved, so that an HTTP connection whose
//! peer stopped reading (or writing) can be found and closed: hyper has no write
//! timeout, and such a connection would hold its place in the connection limits.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock;

/// When bytes last moved, in [`clock::monotonic`] milliseconds.
#[derive(Clone, Default)]
pub(crate) struct LastMoved(Arc<AtomicU64>);

impl LastMoved {
    /// Bytes moved now.
    fn touch(&self) {
        self.0.store(clock::monotonic(), Ordering::Relaxed);
    }

    /// Milliseconds since bytes last moved.
    pub(crate) fn idle_ms(&self) -> u64 {
        clock::monotonic().saturating_sub(self.0.load(Ordering::Relaxed))
    }
}

/// `S`, noting each read and write that moved bytes.
pub(crate) struct Watched<S> {
    inner: S,
    moved: LastMoved,
}

impl<S> Watched<S> {
    /// Wraps `inner`; bytes count as moved now.
    pub(crate) fn new(inner: S) -> (Self, LastMoved) {
        let moved = LastMoved::default();
        moved.touch();
        (Watched { inner, moved: moved.clone() }, moved)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.moved.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
