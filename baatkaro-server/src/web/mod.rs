//! The web listener (SPEC.md section 12): HTTP/1.1 serving the embedded web client
//! and shared files ([`files`], section 12.4), and WebSocket upgrades that become
//! sessions exactly like TCP ones.
//!
//! A connection is admitted by the same accept loop, limits and TLS as a TCP one;
//! here it is served by hyper until it asks for a WebSocket. The upgrade is then
//! taken back into this connection's own task, which runs the session through the
//! same [`conn::serve`] as every other transport: same codec, limits, queues and
//! slow-consumer policy, and the server's shutdown waits for it like for the rest.

mod assets;
mod files;
mod stall;
mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baatkaro_hub::ConnId;
use baatkaro_proto::session::{Session, SessionConfig};
use baatkaro_proto::web::download::FILES_PREFIX;
use baatkaro_proto::web::{OriginPolicy, OriginRefusal, SUBPROTOCOL, WEBSOCKET_PATH};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::conn::{self, ConnCtx};

/// Longest an HTTP request's head may take to arrive, the first one and each one
/// after on a kept-alive connection: a client that opens a connection and says
/// nothing holds a connection slot no longer than this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How often, at most, a connection in its HTTP part checks for a stall.
const STALL_CHECK: Duration = Duration::from_secs(5);

/// Most bytes hyper buffers of a request head (browsers send a few hundred).
const HEAD_MAX: usize = 16 * 1024;

/// What the web listener needs besides the connection itself.
#[derive(Clone)]
pub(crate) struct WebCtx {
    /// Which pages may open sessions, which hosts are answered.
    pub(crate) policy: Arc<OriginPolicy>,
    /// Whether the listener speaks TLS (so pages are `https`).
    pub(crate) tls: bool,
    /// Largest WebSocket message either way.
    pub(crate) message_max: usize,
    /// The sessions' configuration.
    pub(crate) session: SessionConfig,
    /// How long clients are asked to wait after the server stopped.
    pub(crate) shutdown_retry_ms: u64,
    /// How long an HTTP connection may move no byte before it is closed.
    pub(crate) stall: Duration,
    /// What every connection task has.
    pub(crate) conn: ConnCtx,
}

/// A WebSocket handshake answered, waiting for hyper to hand the stream over.
type Upgrade = Arc<Mutex<Option<OnUpgrade>>>;

/// The body of every response: bytes made whole (a page, a refusal), or a shared
/// file read from disk as it is sent.
pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Serves one admitted connection of the web listener until it closes: HTTP
/// requests, then, if it asks for one, its WebSocket session. `session` was made
/// when the connection was `accepted`, so that its login deadline runs from then
/// (SPEC.md 4.1), handshakes included, as does the HTTP part's.
pub(crate) async fn serve<S>(
    stream: S,
    id: ConnId,
    peer: SocketAddr,
    accepted: tokio::time::Instant,
    session: Session,
    web: WebCtx,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (stream, moved) = stall::Watched::new(stream);
    let upgrade: Upgrade = Arc::default();
    let service = {
        let (shared, upgrade) = (Arc::new(web.clone()), upgrade.clone());
        hyper::service::service_fn(move |req| {
            let (web, upgrade) = (shared.clone(), upgrade.clone());
            async move { Ok::<_, Infallible>(respond(req, peer, &web, &upgrade).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT).max_buf_size(HEAD_MAX);
    let http = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(http);
    // The HTTP part of a connection takes a place in the connection limits as a
    // session does, so it is bounded like one that has not logged in: past the
    // login time it answers the request under way and no other (a download goes
    // on while its bytes flow), and it is closed when no byte has moved either
    // way for a while (a peer that stopped reading its responses, which hyper
    // would otherwise wait for forever).
    let limits = &web.session.limits;
    let secs = if limits.login > 0 { limits.login } else { limits.idle };
    let deadline = accepted + Duration::from_secs(secs);
    let mut winding_down = false;
    let mut check =
        tokio::time::interval(STALL_CHECK.min(web.stall / 2).max(Duration::from_millis(10)));
    let mut stopping = web.conn.stopping.clone();
    let stop = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    let served = loop {
        tokio::select! {
            served = &mut http => break served,
            () = &mut stop => {
                // The server stops: the request under way is answered, no other.
                http.as_mut().graceful_shutdown();
                match tokio::time::timeout(web.conn.linger, &mut http).await {
                    Ok(served) => break served,
                    Err(_) => return,
                }
            }
            () = tokio::time::sleep_until(deadline), if !winding_down => {
                winding_down = true;
                http.as_mut().graceful_shutdown();
            }
            _ = check.tick() => {
                if u128::from(moved.idle_ms()) >= web.stall.as_millis() {
                    tracing::debug!(%peer, "HTTP connection stalled: closed");
                    return;
                }
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!(%peer, error = %e, "HTTP connection ended");
        return;
    }
    let Some(on_upgrade) = upgrade.lock().ok().and_then(|mut u| u.take()) else { return };
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "WebSocket upgrade failed");
            return;
        }
    };
    let config = ws::config(web.message_max);
    let socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    conn::serve(ws::WsBytes::new(socket, web.message_max), None, id, peer, session, web.conn).await;
}

/// The answer to one HTTP request from `peer`.
async fn respond(
    req: Request<Incoming>,
    peer: SocketAddr,
    web: &WebCtx,
    upgrade: &Upgrade,
) -> Response<Body> {
    let host = header_str(req.headers(), header::HOST);
    match web.policy.check_host(host) {
        Ok(()) => {}
        Err(why @ OriginRefusal::NoHost) => {
            return refusal(StatusCode::BAD_REQUEST, &why.to_string());
        }
        Err(why) => return refusal(StatusCode::MISDIRECTED_REQUEST, &why.to_string()),
    }
    if req.uri().path() == WEBSOCKET_PATH {
        return websocket(req, web, upgrade);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = refusal(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    if req.uri().path().starts_with(FILES_PREFIX) {
        // The head alone: a GET's body, if any, is not read.
        let (parts, _) = req.into_parts();
        return files::serve(&parts, peer, web).await;
    }
    let Some((asset, etag)) = assets::find(req.uri().path()) else {
        return refusal(StatusCode::NOT_FOUND, "no such page");
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        with_status(StatusCode::NOT_MODIFIED, Bytes::new())
    } else if req.method() == Method::HEAD {
        let mut r = with_status(StatusCode::OK, Bytes::new());
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
        r
    } else {
        with_status(StatusCode::OK, Bytes::from_static(asset.body))
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    headers.insert(header::ETAG, HeaderValue::from_static(etag));
    // Revalidated every time: the names stay the same from one version to the next.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Answers a WebSocket handshake (RFC 6455 section 4.2) for the binding's
/// subprotocol from an allowed origin, and leaves the stream to be taken over.
fn websocket(mut req: Request<Incoming>, web: &WebCtx, upgrade: &Upgrade) -> Response<Body> {
    if req.method() != Method::GET {
        return refusal(StatusCode::METHOD_NOT_ALLOWED, "a WebSocket handshake is a GET");
    }
    let has_token = |name, token: &str| {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec());
    let is_upgrade =
        has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket");
    let (Some(key), true) = (key, is_upgrade) else {
        let mut r = refusal(StatusCode::UPGRADE_REQUIRED, "this is the WebSocket endpoint");
        r.headers_mut().insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return r;
    };
    if !has_token(header::SEC_WEBSOCKET_VERSION, "13") {
        let mut r = refusal(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only");
        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    if !has_token(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        return refusal(
            StatusCode::BAD_REQUEST,
            &format!("ask for the subprotocol {SUBPROTOCOL} in Sec-WebSocket-Protocol"),
        );
    }
    let (host, origin) =
        (header_str(req.headers(), header::HOST), header_str(req.headers(), header::ORIGIN));
    if let Err(why) = web.policy.check_upgrade(host, origin, web.tls) {
        tracing::info!(origin = origin.unwrap_or(""), "WebSocket refused: {why}");
        return refusal(StatusCode::FORBIDDEN, &why.to_string());
    }
    let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
        return refusal(StatusCode::INTERNAL_SERVER_ERROR, "the connection cannot be upgraded");
    };
    if let Ok(mut slot) = upgrade.lock() {
        *slot = Some(on_upgrade);
    }
    let mut response = with_status(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(&key)) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// A header's value as text, if present and text.
pub(super) fn header_str(headers: &http::HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A response with the headers every response of the web listener carries.
fn with_status(status: StatusCode, body: Bytes) -> Response<Body> {
    let body = Full::new(body).map_err(|never| match never {}).boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    guard_headers(response.headers_mut());
    response
}

/// Sets the headers every response of the web listener carries.
fn guard_headers(headers: &mut HeaderMap) {
    // The page loads only its own script and style and connects only to its own
    // server; no other site may frame it or sniff its types.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' blob: data:; \
             style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A refusal with its reason as plain text.
fn refusal(status: StatusCode, why: &str) -> Response<Body> {
    let mut response = with_status(status, Bytes::from(format!("{why}\n")));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
