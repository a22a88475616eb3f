//! Downloads over HTTP (SPEC.md section 12.4): `GET /files/<file-id>` hands a shared
//! file to the browser's own download manager, authenticated by a session token in
//! a cookie or a `Bearer` header.
//!
//! The rules are elsewhere: the hub checks the token as AUTH does and the reader as
//! FILE-GET does ([`baatkaro_hub::Hub::handle_file_access`]), and
//! [`baatkaro_proto::web::download`] reads the headers and names the file. Here is
//! the I/O: ask the hub, open the content, and produce the body one chunk at a
//! time, read off the async threads only when hyper is ready to send it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use baatkaro_direct_io::ContentFile;
use baatkaro_hub::{FileAccess, FileGrant};
use baatkaro_proto::web::download::{self, RangeAnswer};
use baatkaro_proto::{ErrorCode, Failure, FileId};
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Body, WebCtx, header_str, refusal, with_status};
use crate::hub::HubMsg;

/// The most bytes read from disk at once for a download. hyper asks the body for
/// more only once what it holds to send fits its write buffer (the listener's
/// `max_buf_size`, 16 KiB), so a reader that does not keep up holds at most about
/// this much more in the server, whatever the size of the file.
const CHUNK: u64 = 64 * 1024;

/// The content security policy of a download: it is never a page, and if a browser
/// showed it anyway, it could run and load nothing.
const SANDBOX: &str = "default-src 'none'; sandbox";

/// Answers a request for `/files/<file-id>` (GET or HEAD, its `Host` already
/// checked) from `peer`.
pub(super) async fn serve(parts: &Parts, peer: SocketAddr, web: &WebCtx) -> Response<Body> {
    let mut response = answer(parts, peer, web).await;
    // Nothing under /files is kept by a cache, refusals included: a file one may
    // not read today may be one's to read tomorrow, and a file's bytes stay private.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    response
}

/// The answer to a request for `/files/<file-id>`, but for the headers every one
/// carries.
async fn answer(parts: &Parts, peer: SocketAddr, web: &WebCtx) -> Response<Body> {
    let Some(file) = download::file_of_path(parts.uri.path()) else {
        return refusal(StatusCode::NOT_FOUND, "no such file");
    };
    let authorization = header_str(&parts.headers, header::AUTHORIZATION);
    let cookies = parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    let token = match download::request_token(authorization, cookies) {
        Ok(token) => token,
        Err(why) => return unauthorized(&why.to_string()),
    };
    let access = FileAccess {
        peer: peer.ip(),
        user: token.user,
        token: token.token,
        secret: token.secret,
        file,
    };
    match ask_hub(web, access).await {
        Ok(grant) => send_file(parts, file, grant, web).await,
        Err(failure) => refused(&failure),
    }
}

/// The hub's answer on a download's token and file; `SHUTTING_DOWN` when the
/// server stops before it answers (it takes no more requests then).
async fn ask_hub(web: &WebCtx, access: FileAccess) -> Result<FileGrant, Failure> {
    let stopping_failure = || Failure {
        retry_after: Some(web.shutdown_retry_ms),
        ..Failure::new(ErrorCode::ShuttingDown)
    };
    let mut stopping = web.conn.stopping.clone();
    if *stopping.borrow() {
        return Err(stopping_failure());
    }
    let (answer, answered) = oneshot::channel();
    let ask = async {
        let sent = web.conn.hub.send(HubMsg::FileAccess { access, answer }).await;
        if sent.is_err() {
            return None;
        }
        answered.await.ok()
    };
    tokio::select! {
        answer = ask => answer.unwrap_or_else(|| Err(stopping_failure())),
        _ = stopping.wait_for(|s| *s) => Err(stopping_failure()),
    }
}

/// The answer for a file the hub let the token's user read: the whole file or the
/// range asked for (for a GET: a HEAD has the headers only), or `416`.
async fn send_file(parts: &Parts, file: FileId, grant: FileGrant, web: &WebCtx) -> Response<Body> {
    let FileGrant { size, sha256, name } = grant;
    let etag = download::etag(&sha256);
    let answer = if parts.method == Method::GET {
        let range = header_str(&parts.headers, header::RANGE);
        download::answer_range(range, header_str(&parts.headers, header::IF_RANGE), &etag, size)
    } else {
        // Range requests are defined for GET alone (RFC 9110 14.2).
        RangeAnswer::Whole
    };
    let mut response = if answer == RangeAnswer::Unsatisfiable {
        refusal(StatusCode::RANGE_NOT_SATISFIABLE, "the range is past the end of the file")
    } else {
        let (offset, length) = answer.span(size);
        let disk = web.conn.disk.clone();
        // Opened before the answer starts, so that content missing from the disk is
        // a 500 rather than a download cut short.
        let opened = tokio::task::spawn_blocking(move || disk.open_content(&sha256)).await;
        let content = match opened {
            Ok(Ok(content)) => Arc::new(content),
            Ok(Err(e)) => {
                tracing::warn!(%file, error = %e, "a shared file's content cannot be opened");
                return refusal(StatusCode::INTERNAL_SERVER_ERROR, "the file cannot be read");
            }
            Err(_) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, "the file cannot be read"),
        };
        let status =
            if answer == RangeAnswer::Whole { StatusCode::OK } else { StatusCode::PARTIAL_CONTENT };
        let mut response = match parts.method {
            Method::HEAD => with_status(status, Bytes::new()),
            _ => {
                let body = FileBody { content, next: offset, end: offset + length, reading: None };
                let mut response = Response::new(body.boxed_unsync());
                *response.status_mut() = status;
                super::guard_headers(response.headers_mut());
                response
            }
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        let disposition = download::content_disposition(name.as_str());
        // Percent-encoded: always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        response
    };
    let headers = response.headers_mut();
    if let Some(range) = answer.content_range(size) {
        insert_text(headers, header::CONTENT_RANGE, &range);
    }
    insert_text(headers, header::ETAG, &etag);
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(SANDBOX));
    response
}

/// The answer to a download the hub refused, by the error code it gave.
fn refused(failure: &Failure) -> Response<Body> {
    let status = StatusCode::from_u16(download::refusal_status(failure.code))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let why = match &failure.note {
        Some(note) => format!("{}: {note}", failure.code),
        None => failure.code.to_string(),
    };
    if status == StatusCode::UNAUTHORIZED {
        return unauthorized(&why);
    }
    let mut response = refusal(status, &why);
    if let Some(ms) = failure.retry_after.filter(|_| {
        matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
    }) {
        let secs = download::retry_after_secs(ms);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// `401`, naming the scheme a token is sent with (RFC 9110 11.6.1).
fn unauthorized(why: &str) -> Response<Body> {
    let mut response = refusal(StatusCode::UNAUTHORIZED, why);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"baatkaro\""));
    response
}

/// A header's value as text, if present and text.
/// Sets a header to text made here (digits, hex and punctuation: always valid).
fn insert_text(headers: &mut http::HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The body of a download: the bytes from `next` to `end` of a content file, read
/// one [`CHUNK`] at a time on a blocking thread, each read started only when hyper
/// asks for more, that is when the client has taken what came before.
struct FileBody {
    content: Arc<ContentFile>,
    /// Where the next read starts.
    next: u64,
    /// One past the last byte to send.
    end: u64,
    /// The read under way.
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let reading = match &mut this.reading {
            Some(reading) => reading,
            None if this.next >= this.end => return Poll::Ready(None),
            None => {
                let (content, offset) = (this.content.clone(), this.next);
                // At most CHUNK: fits in usize.
                let len = (this.end - this.next).min(CHUNK) as usize;
                this.reading
                    .insert(tokio::task::spawn_blocking(move || content.read_at(offset, len)))
            }
        };
        let read = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        // An error ends the body short of its length: the client sees the
        // download fail rather than a file with a hole in it.
        let data = match read {
            Ok(Ok(data)) => data,
            Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
            Err(e) => return Poll::Ready(Some(Err(io::Error::other(e)))),
        };
        this.next += data.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.reading.is_none() && self.next >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end.saturating_sub(self.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    /// A content file holding `data`, in a temporary directory kept alive with it.
    fn content(data: &[u8]) -> (Arc<ContentFile>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("content");
        std::fs::write(&path, data).unwrap();
        (Arc::new(ContentFile::open_read(&path, false).unwrap()), dir)
    }

    /// The body is read a chunk per frame, only as frames are asked for, and says
    /// exactly how much is left.
    #[tokio::test]
    async fn a_body_is_read_a_chunk_at_a_time_as_it_is_taken() {
        let data: Vec<u8> = (0..(2 * CHUNK + 10)).map(|i| (i % 251) as u8).collect();
        let (file, _dir) = content(&data);
        let (offset, end) = (5, 2 * CHUNK + 7);
        let mut body = FileBody { content: file, next: offset, end, reading: None };
        assert_eq!(body.size_hint().exact(), Some(end - offset));
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let bytes = frame.unwrap().into_data().unwrap();
            assert!(bytes.len() as u64 <= CHUNK, "a frame of {} bytes", bytes.len());
            got.extend_from_slice(&bytes);
            frames += 1;
            assert_eq!(body.size_hint().exact(), Some(end - offset - got.len() as u64));
            assert!(body.reading.is_none(), "no read starts before the next frame is asked for");
        }
        assert_eq!(frames, 3);
        assert!(got == data[offset as usize..end as usize], "the range, byte for byte");
        assert!(body.is_end_stream());
    }

    /// A file that turns out shorter than its record ends the body with an error,
    /// not with fewer bytes than its length said.
    #[tokio::test]
    async fn a_short_file_fails_the_body() {
        let (file, _dir) = content(b"short");
        let mut body = FileBody { content: file, next: 0, end: 10, reading: None };
        assert!(body.frame().await.unwrap().is_err());
    }
}
