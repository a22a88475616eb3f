//! A WebSocket session as the byte stream the connection task expects (SPEC.md
//! section 12): binary messages in, their bytes concatenated; each write out, one
//! binary message.
//!
//! The connection task writes the session's pieces (each a run of whole frames),
//! and this stream takes of each write the whole frames that fit in one message, so
//! every message it sends holds whole frames only and stays within the limit, as
//! the binding requires; the connection task writes the rest next.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use baatkaro_proto::web::whole_frames_within;
use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The WebSocket layer's own limits, set to the protocol's: no message larger
/// than `message_max` is read (tungstenite's default would buffer 64 MiB), the
/// read buffer starts small for the many quiet connections, and writes go out as
/// they are made (the connection task already coalesces frames).
pub(crate) fn config(message_max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        // Builds up only while the socket refuses writes; one message and some.
        .max_write_buffer_size(message_max.saturating_mul(2))
        .max_message_size(Some(message_max))
        .max_frame_size(Some(message_max))
}

/// A WebSocket connection read and written as a byte stream.
pub(crate) struct WsBytes<S> {
    ws: WebSocketStream<S>,
    /// The rest of the message being read.
    pending: Bytes,
    /// Why the session ends, for the close frame: set when the peer broke a rule
    /// of the binding.
    close: Option<(CloseCode, &'static str)>,
    /// The close frame is queued.
    close_sent: bool,
    /// The largest message to send (SPEC.md 12.2).
    message_max: usize,
}

impl<S> WsBytes<S> {
    /// Wraps a WebSocket whose handshake is done; no message it sends is larger
    /// than `message_max`.
    pub(crate) fn new(ws: WebSocketStream<S>, message_max: usize) -> Self {
        WsBytes { ws, pending: Bytes::new(), close: None, close_sent: false, message_max }
    }

    /// Notes why the session ends and gives the error the read reports.
    fn refuse(&mut self, code: CloseCode, why: &'static str) -> io::Error {
        self.close.get_or_insert((code, why));
        io::Error::new(io::ErrorKind::InvalidData, why)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            let next = ready!(Pin::new(&mut self.ws).poll_next(cx));
            match next {
                // The peer closed: the end of the stream.
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(bytes))) => self.pending = bytes,
                Some(Ok(Message::Text(_))) => {
                    let e = self.refuse(CloseCode::Unsupported, "frames travel in binary messages");
                    return Poll::Ready(Err(e));
                }
                // Pongs are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(WsError::Capacity(_))) => {
                    let e = self.refuse(CloseCode::Size, "message larger than the limit");
                    return Poll::Ready(Err(e));
                }
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Err(WsError::Io(e))) => return Poll::Ready(Err(e)),
                Some(Err(_)) => {
                    let e = self.refuse(CloseCode::Protocol, "WebSocket protocol error");
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = Pin::new(&mut self.ws);
        ready!(ws.poll_ready(cx)).map_err(io_error)?;
        // Whole frames only, as many as fit in a message: replies held back behind
        // a slow request come out as one long run, which goes as several messages.
        let n = whole_frames_within(buf, self.message_max);
        let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
        Pin::new(&mut self.ws).start_send(message).map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_sent {
            ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(io_error)?;
            let (code, why) = self.close.unwrap_or((CloseCode::Normal, ""));
            let frame = CloseFrame { code, reason: why.into() };
            Pin::new(&mut self.ws).start_send(Message::Close(Some(frame))).map_err(io_error)?;
            self.close_sent = true;
        }
        match ready!(Pin::new(&mut self.ws).poll_flush(cx)) {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
            Err(e) => return Poll::Ready(Err(io_error(e))),
        }
        Pin::new(self.ws.get_mut()).poll_shutdown(cx)
    }
}

/// The I/O error a WebSocket error stands for.
fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other),
    }
}
