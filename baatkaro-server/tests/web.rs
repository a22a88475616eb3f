//! The web listener (SPEC.md section 12): the embedded page, the WebSocket
//! handshake and its origin rules, the WebSocket layer's limits, and the same
//! slow-consumer policy as over TCP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use baatkaro_proto::{Command, ErrorCode, Event, Failure, JoinRule, ServerFrame};
use bytes::Bytes;
use common::{
    Client, TestServer, WAIT, bytes_past_a_reader_that_never_reads, config, http,
    spec_http_example, ws_connect,
};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn web_server() -> (TestServer, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_web(config(dir.path())).await;
    let web = server.web.unwrap();
    (server, web, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_its_script_and_guarded_headers() {
    let (server, web, _dir) = web_server().await;
    let page = http(web, &format!("GET / HTTP/1.1\r\nHost: {web}")).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let html = String::from_utf8(page.body.clone()).unwrap();
    assert!(html.contains("app.js"), "{html}");
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    let script =
        http(web, &format!("GET /app.js HTTP/1.1\r\nHost: localhost:{}", web.port())).await;
    assert_eq!(script.status, 200);
    assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert!(!script.body.is_empty());
    // Revalidation by entity tag.
    let etag = script.header("etag").unwrap().to_string();
    let again =
        http(web, &format!("GET /app.js HTTP/1.1\r\nHost: {web}\r\nIf-None-Match: {etag}")).await;
    assert_eq!((again.status, again.body.len()), (304, 0));
    let head = http(web, &format!("HEAD /app.js HTTP/1.1\r\nHost: {web}")).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some(script.body.len().to_string().as_str()));

    assert_eq!(http(web, &format!("GET /nothing HTTP/1.1\r\nHost: {web}")).await.status, 404);
    let post = http(web, &format!("POST / HTTP/1.1\r\nHost: {web}\r\nContent-Length: 0")).await;
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_is_not_this_machine_s_is_not_answered_on_loopback() {
    // DNS rebinding: a page at evil.example, its name pointed at 127.0.0.1.
    let (server, web, _dir) = web_server().await;
    let r = http(web, &format!("GET / HTTP/1.1\r\nHost: evil.example:{}", web.port())).await;
    assert_eq!(r.status, 421);
    assert_eq!(http(web, "GET / HTTP/1.1").await.status, 400, "HTTP/1.1 needs a Host");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_page_s_own_origin_opens_a_session() {
    let (server, web, _dir) = web_server().await;
    let own = format!("http://{web}");
    let mut ws = ws_connect(web, Some(&own)).await.expect("the page's own origin is let in");
    ws.send(Message::Binary(Bytes::from_static(b"h1 HELLO 1\r\n"))).await.unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => assert!(b.starts_with(b"h1 OK HELLO 1 "), "{b:?}"),
        other => panic!("{other:?}"),
    }
    for origin in ["https://evil.example", "null", &format!("https://{web}")] {
        match ws_connect(web, Some(origin)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 403, "{origin}")
            }
            other => panic!("{origin}: {:?}", other.map(|_| ())),
        }
    }
    // The subprotocol must be asked for.
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let r = http(
        web,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13"
        ),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("baatkaro.v1"));
    // A plain GET of the endpoint is told what it is.
    assert_eq!(http(web, &format!("GET /ws HTTP/1.1\r\nHost: {web}")).await.status, 426);
    server.stop().await;
}

/// Reads until the WebSocket closes; the close frame's code, if one came.
async fn close_code(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("the server closes") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_or_in_text_ends_the_session() {
    let (server, web, _dir) = web_server().await;
    let limits = config(std::path::Path::new("/")).advertised();
    let max = baatkaro_proto::web::message_max(&limits) as usize;

    // One byte over: refused before it is buffered whole, with 1009.
    let mut ws = ws_connect(web, None).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(b"h1 HELLO 1\r\n"))).await.unwrap();
    let big = vec![b'x'; max + 1];
    // The server may close while the message is still being written.
    let _ = ws.send(Message::Binary(Bytes::from(big))).await;
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Size));

    // A message of exactly the limit is read (and found to be a line too long).
    let mut ws = ws_connect(web, None).await.unwrap();
    ws.send(Message::Binary(Bytes::from(vec![b'x'; max]))).await.unwrap();
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Binary(b))) => {
            assert!(String::from_utf8_lossy(&b).contains("LINE_TOO_LONG"), "{b:?}")
        }
        other => panic!("{other:?}"),
    }

    let mut ws = ws_connect(web, None).await.unwrap();
    ws.send(Message::text("h1 HELLO 1\r\n")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(CloseCode::Unsupported));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_websocket_reader_is_dropped_like_a_slow_tcp_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.queue = 256 * 1024;
    cfg.limits.chunk = 64 * 1024;
    // Messages of 2 KiB, in batches of 32, the slow reader never reads: in all far
    // more than its queue and the socket buffers hold.
    let n = bytes_past_a_reader_that_never_reads(cfg.limits.queue).div_ceil(32 * 2048) * 32;
    let server = TestServer::start_web(cfg).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let rule = Some(JoinRule::Open);
    alice.ok(Command::Create { group: "room".parse().unwrap(), rule }).await;
    let mut slow = Client::register(server.ws(), "slow").await;
    slow.ok(Command::Join { group: "room".parse().unwrap(), reason: None }).await;
    alice.send_batches("#room", &"x".repeat(2048), n, 32).await;
    let frames = slow.until_closed().await;
    match frames.last() {
        Some(ServerFrame::Event(Event::Bye(Failure { code: ErrorCode::SlowConsumer, .. }))) => {}
        other => panic!("expected BYE SLOW_CONSUMER last, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_listener_counts_against_the_address_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_per_address = 2;
    let server = TestServer::start_web(cfg).await;
    let web = server.web.unwrap();
    // Both answered, so both admitted.
    let mut a = Client::connect(server.addr).await;
    a.hello().await;
    let mut b = Client::connect(server.ws()).await;
    b.hello().await;
    let r = http(web, &format!("GET / HTTP/1.1\r\nHost: {web}")).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    server.stop().await;
}

/// SPEC.md 12.1's example handshake: the request, sent with this server's address,
/// gets the response shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_s_example_handshake_is_answered_as_shown() {
    let (request, response) = spec_http_example("### 12.1 The endpoint");
    let (server, web, _dir) = web_server().await;
    let request = request.replace("127.0.0.1:7668", &web.to_string());
    let mut s = TcpStream::connect(web).await.unwrap();
    s.write_all(format!("{}\r\n\r\n", request.replace('\n', "\r\n")).as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the response head");
        got.extend_from_slice(&buf[..n]);
    }
    let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
    let mut want = response.trim_end().lines();
    assert_eq!(got.lines().next().unwrap(), want.next().unwrap().to_ascii_lowercase());
    for line in want {
        assert!(got.contains(&format!("{}\r\n", line.to_ascii_lowercase())), "{line:?} in\n{got}");
    }
    server.stop().await;
}

/// Replies held back behind a slow request are released as one long run: over
/// WebSocket they still go as messages within the limit, each of whole frames
/// (SPEC.md 12.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_released_at_once_go_as_messages_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // A real password hash: the PASSWORD below takes a while, and the HISTORY
    // pipelined behind it is answered meanwhile and held back.
    cfg.hash_cost = baatkaro_server::config::HashCost::default();
    let limits = cfg.advertised();
    let max = baatkaro_proto::web::message_max(&limits) as usize;
    let server = TestServer::start_web(cfg).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let rule = Some(JoinRule::Open);
    alice.ok(Command::Create { group: "g".parse().unwrap(), rule }).await;
    let big = "x".repeat(16 * 1024);
    for i in 0..200 {
        alice.say("#g", &format!("k{i}"), &big).await;
    }
    let mut ws = ws_connect(server.web.unwrap(), None).await.unwrap();
    let login = "h HELLO 1\r\nl LOGIN alice {8}\r\npw-alice\r\n".to_string();
    let pipelined = "p PASSWORD 8 {16}\r\npw-alicepw-alic2\r\nq HISTORY #g last 1000\r\n";
    ws.send(Message::Binary(Bytes::from(login + pipelined))).await.unwrap();
    let mut decoder = baatkaro_proto::ServerFrameDecoder::new(1 << 24);
    let mut history_done = false;
    let mut messages = 0;
    while !history_done {
        let message = match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Binary(b))) => b,
            other => panic!("{other:?}"),
        };
        messages += 1;
        assert!(message.len() <= max, "a message of {} octets, over {max}", message.len());
        decoder.push(&message);
        while let Some(frame) = decoder.next_frame() {
            match frame.unwrap() {
                ServerFrame::Ok { reply: baatkaro_proto::OkReply::History { .. }, .. } => {
                    history_done = true
                }
                ServerFrame::Err { failure, .. } => panic!("{failure:?}"),
                _ => {}
            }
        }
        assert_eq!(decoder.buffered(), 0, "message {messages} ends inside a frame");
    }
    assert!(messages > 3, "3.2 MB of history came in {messages} messages");
    server.stop().await;
}

/// An HTTP client that pipelines requests and never reads the responses holds no
/// place in the connection limits for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_connections = 1;
    cfg.web_stall_ms = 300;
    let server = TestServer::start_web(cfg).await;
    let web = server.web.unwrap();
    let mut s = TcpStream::connect(web).await.unwrap();
    let get = format!("GET /app.js HTTP/1.1\r\nHost: {web}\r\n\r\n").repeat(200);
    // Written without reading: the responses fill the socket's buffers.
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(2), s.write_all(get.as_bytes())).await;
    // The one place comes free once the server gives up on it.
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < WAIT, "the stalled connection still holds the place");
        let r = http(web, &format!("GET / HTTP/1.1\r\nHost: {web}")).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503);
    }
    drop(s);
    server.stop().await;
}
