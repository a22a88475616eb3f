//! At the open-file limit the server refuses a new connection with `BYE
//! TOO_MANY_CONNECTIONS` at once, instead of leaving it in the listen backlog,
//! and serves again once a descriptor is free. The test lowers its own
//! process's limit, so this file holds one test, alone in its process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use baatkaro_proto::{
    Command, Encode, ErrorCode, Event, Failure, Request, ServerFrame, ServerFrameDecoder, Tag,
    Versions,
};
use common::{TestServer, config};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long the server may take to answer a connection before it counts as hung.
const PROMPTLY: Duration = Duration::from_secs(5);

/// The numbers of this process's open descriptors.
fn open_descriptors() -> Vec<u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The inodes of this process's open sockets.
fn open_sockets() -> Vec<u64> {
    open_descriptors()
        .into_iter()
        .filter_map(|fd| {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
            link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// The inode of the server's end of a loopback connection, from /proc/net/tcp.
fn server_socket(server_port: u16, client_port: u16) -> u64 {
    let port =
        |address: &str| u16::from_str_radix(address.rsplit(':').next().unwrap(), 16).unwrap();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| port(f[1]) == server_port && port(f[2]) == client_port)
        .map(|f| f[9].parse().unwrap())
        .expect("the server's end of the connection")
}

/// Connects a socket made beforehand (so the client needs no new descriptor),
/// says HELLO and returns the stream with the first frame the server sends.
async fn hello(socket: TcpSocket, addr: SocketAddr) -> (TcpStream, ServerFrame) {
    let mut stream = socket.connect(addr).await.unwrap();
    let versions = Versions::new(vec![1]).unwrap();
    let hello =
        Request { tag: Tag::new("h").unwrap(), command: Command::Hello { versions, client: None } };
    stream.write_all(&hello.to_bytes()).await.unwrap();
    let mut decoder = ServerFrameDecoder::new(1 << 20);
    let mut buf = [0u8; 4096];
    let frame = tokio::time::timeout(PROMPTLY, async {
        loop {
            if let Some(frame) = decoder.next_frame() {
                return frame.unwrap();
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed without a frame");
            decoder.push(&buf[..n]);
        }
    })
    .await
    .expect("the server answers a new connection promptly");
    (stream, frame)
}

fn is_served(frame: &ServerFrame) -> bool {
    matches!(frame, ServerFrame::Ok { tag, .. } if tag.as_str() == "h")
}

fn is_refused(frame: &ServerFrame) -> bool {
    matches!(
        frame,
        ServerFrame::Event(Event::Bye(Failure {
            code: ErrorCode::TooManyConnections,
            retry_after: Some(1000),
            ..
        }))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_descriptor_limit_new_connections_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    // The client ends of every connection, made before the limit is lowered.
    let mut sockets: Vec<TcpSocket> = (0..64).map(|_| TcpSocket::new_v4().unwrap()).collect();

    // Room for a few more descriptors: new ones take the lowest free number,
    // which must stay under the limit, so the limit goes just past the first gap
    // in the open numbers (descriptors above it, inherited ones say, stay usable).
    // The server's accepts run out long before the sockets do.
    let original = getrlimit(Resource::Nofile);
    let open = open_descriptors();
    let first_free = (0..).find(|n| !open.contains(n)).unwrap();
    let lowered = Rlimit { current: Some(first_free + 2), maximum: original.maximum };
    setrlimit(Resource::Nofile, lowered).unwrap();

    let mut served = Vec::new();
    let refused = loop {
        let socket = sockets.pop().expect("the server ran out of descriptors");
        let (stream, frame) = hello(socket, server.addr).await;
        if is_refused(&frame) {
            break stream;
        }
        assert!(is_served(&frame), "{frame:?}");
        served.push(stream);
    };
    assert!(!served.is_empty(), "the limit left room for at least two connections");
    drop(refused);

    // One served client leaves; once the server has closed its end, the next
    // connection is served again (the spare descriptor is back, nothing leaked).
    let leaving = served.pop().unwrap();
    let server_end = server_socket(server.addr.port(), leaving.local_addr().unwrap().port());
    drop(leaving);
    let since = Instant::now();
    while open_sockets().contains(&server_end) {
        assert!(since.elapsed() < PROMPTLY, "the server did not close a finished connection");
        tokio::task::yield_now().await;
    }
    let (_again, frame) = hello(sockets.pop().unwrap(), server.addr).await;
    assert!(is_served(&frame), "{frame:?}");

    setrlimit(Resource::Nofile, original).unwrap();
    drop((served, _again));
    server.stop().await;
}
