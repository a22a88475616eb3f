//! A reader whose socket fills and that reads again later, over TCP, TLS and
//! WebSocket: while its socket refuses writes, every delivery the connection
//! applies meets a write it cannot finish (`Connection::write_now`, then the loop's
//! own write), and what was not written must be written once the socket drains.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_proto::{Command, JoinRule, OkReply, StoredEvent};
use common::{
    Client, Link, TestServer, bytes_past_a_reader_that_never_reads, config, password, user,
};
use tokio::net::{TcpSocket, TcpStream};

/// How the clients reach the server.
#[derive(Clone, Copy)]
enum Transport {
    Tcp,
    Tls,
    Ws,
}

/// A TCP connection; with a small receive buffer if `small`, so that what the
/// server sends it piles up in the server rather than in the kernel.
async fn tcp(addr: std::net::SocketAddr, small: bool) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    if small {
        socket.set_recv_buffer_size(16 * 1024).unwrap();
    }
    socket.connect(addr).await.unwrap()
}

/// A client of `server` over `transport`, registered as `name`.
async fn register(server: &TestServer, transport: Transport, name: &str, small: bool) -> Client {
    let link = match transport {
        Transport::Tcp => Link::Tcp(tcp(server.addr, small).await),
        Transport::Tls => {
            Link::Tls(Box::new(common::tls_over(tcp(server.addr, small).await).await))
        }
        Transport::Ws => {
            let addr = server.web.unwrap();
            Link::Ws(Box::new(common::ws_over(tcp(addr, small).await, addr, None).await.unwrap()))
        }
    };
    let mut c = Client::over(link);
    c.hello().await;
    let r = c.call(Command::Register { user: user(name), password: password(name) }).await;
    assert_eq!(r.1, Ok(OkReply::Register { user: user(name) }), "register {name}");
    c.name = name.into();
    c
}

/// bob stops reading while alice sends him at least 8 MiB (twice what the kernel's
/// buffers may hold on loopback with this machine's `tcp_wmem` and `tcp_rmem`, a
/// quarter of his queue at most), then reads: he gets every message, in order
/// (fails if a write the socket refused is then polled only with a waker that does
/// not wake the connection: bob waits for ever).
async fn a_reader_whose_socket_filled_gets_everything(transport: Transport) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // With no queue counted: only what the kernel's buffers hold, twice.
    let bytes = bytes_past_a_reader_that_never_reads(0);
    // Messages of 16,000 bytes, in whole batches of 32; his queue four times as much.
    let n = bytes.div_ceil(32 * 16_000) * 32;
    cfg.limits.queue = (4 * (n * 16_000) as u64).max(32 * 1024 * 1024);
    if matches!(transport, Transport::Tls) {
        cfg.tls = Some(baatkaro_server::tls::TlsSource::SelfSigned);
    }
    let server = match transport {
        Transport::Ws => TestServer::start_web(cfg).await,
        Transport::Tcp | Transport::Tls => TestServer::start(cfg).await,
    };
    let mut alice = register(&server, transport, "alice", false).await;
    let room = || "room".parse().unwrap();
    alice.ok(Command::Create { group: room(), rule: Some(JoinRule::Open) }).await;
    let mut bob = register(&server, transport, "bob", true).await;
    bob.ok(Command::Join { group: room(), reason: None }).await;
    // alice reads her replies and her own messages, so she is no slow reader.
    let seqs = alice.send_batches("#room", &"x".repeat(16_000), n, 32).await;
    // Every delivery to bob was sent with alice's own: bob reads now.
    let mut got = Vec::new();
    while got.len() < n {
        if let StoredEvent::Message { seq, .. } = bob.stored().await {
            got.push(seq);
        }
    }
    assert_eq!(got, seqs, "bob got every message, in order");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_a_reader_whose_socket_filled_gets_everything() {
    a_reader_whose_socket_filled_gets_everything(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_reader_whose_socket_filled_gets_everything() {
    a_reader_whose_socket_filled_gets_everything(Transport::Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_websocket_a_reader_whose_socket_filled_gets_everything() {
    a_reader_whose_socket_filled_gets_everything(Transport::Ws).await;
}
