//! Hostile clients over real TCP: one that pipelines and never reads, one that sends
//! frames faster than its budget, ones that never log in, and a slow consumer that
//! reads only after it was dropped (SPEC.md sections 3, 4.1, 5.4 and 11).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use baatkaro_proto::{Command, ErrorCode, Event, ServerFrame, ServerFrameDecoder, StoredEvent};
use common::{
    Client, TestServer, WAIT, bytes_past_a_reader_that_never_reads, config, conv, tcp_buffer_sizes,
    text,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A raw connection with a small receive buffer, so that what the server sends piles
/// up in the server rather than in the kernel.
async fn raw(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads everything until the server closes (within [`WAIT`]): the frames, decoded.
async fn read_to_end(stream: &mut TcpStream) -> Vec<ServerFrame> {
    let mut decoder = ServerFrameDecoder::new(1 << 24);
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => decoder.push(&buf[..n]),
            Ok(Err(e)) => panic!("the connection was reset instead of closed: {e}"),
            Err(_) => panic!("still open after {WAIT:?}: {} frames so far", frames.len()),
        }
        frames.extend(decoder.by_ref().map(|f| f.unwrap()));
    }
    frames
}

/// How many copies of `request` fill four times what the kernel's socket buffers
/// can hold between a client and the server at most (the client's send buffer and
/// the server's receive buffer, as `tcp_wmem` and `tcp_rmem` let them grow), and at
/// least 3,000,000: a client that writes that many without being read was not
/// stopped by the buffers, whatever this machine's settings.
fn requests_past_the_socket_buffers(request: &str) -> usize {
    let bytes = tcp_buffer_sizes("tcp_wmem").max + tcp_buffer_sizes("tcp_rmem").max;
    (4 * bytes / request.len()).max(3_000_000)
}

fn bye(frames: &[ServerFrame]) -> Option<ErrorCode> {
    match frames.last() {
        Some(ServerFrame::Event(Event::Bye(f))) => Some(f.code),
        _ => None,
    }
}

/// SPEC.md 3, 5.4 and 11.2: a client that pipelines requests (PINGs, and commands
/// that fail) and never reads is read no more once half of `queue` waits for it,
/// before and after login: what it sends then waits in its own socket, and it is
/// closed when its deadline comes (login, or idle), with its BYE when it reads at last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_and_never_reads_is_paused_then_closed_with_its_bye() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.queue = 64 * 1024;
    cfg.limits.chunk = 16 * 1024;
    cfg.limits.idle = 2;
    cfg.limits.login = 2;
    cfg.frames_per_second = 100_000_000;
    cfg.linger_ms = 60_000;
    let server = TestServer::start(cfg).await;
    let cases = [(false, "PING"), (false, "GROUPS"), (true, "PING"), (true, "JOIN")];
    for (n, (logged_in, request)) in cases.into_iter().enumerate() {
        let mut s = raw(server.addr).await;
        if logged_in {
            let login = format!("h HELLO 1\r\nr REGISTER pipe{n} {{12}}\r\ncorrect-pass\r\n");
            s.write_all(login.as_bytes()).await.unwrap();
        }
        // Far more requests than the socket buffers can hold, until the server stops
        // taking them (a write that cannot finish within a second: its socket is full).
        let n = requests_past_the_socket_buffers(&format!("p0 {request}\r\n"));
        let mut sent = 0;
        let mut batch = Vec::new();
        while sent < n {
            batch.clear();
            for i in sent..sent + 1_000 {
                batch.extend_from_slice(format!("p{i} {request}\r\n").as_bytes());
            }
            let write = tokio::time::timeout(Duration::from_secs(1), s.write_all(&batch)).await;
            if !matches!(write, Ok(Ok(()))) {
                break;
            }
            sent += 1_000;
        }
        assert!(sent < n, "the server took all {n} {request}s without them being read");
        let frames = read_to_end(&mut s).await;
        // The pipelined requests' answers (tags `p…`), not HELLO's and REGISTER's.
        let answered = frames
            .iter()
            .filter(|f| match f {
                ServerFrame::Ok { tag, .. } | ServerFrame::Err { tag, .. } => {
                    tag.as_str().starts_with('p')
                }
                _ => false,
            })
            .count();
        let why = if logged_in { ErrorCode::IdleTimeout } else { ErrorCode::LoginTimeout };
        assert_eq!(bye(&frames), Some(why), "{request} (logged in: {logged_in})");
        // Once the client reads, the server reads on, so how many are answered is
        // how many the socket buffers held (which the kernel sizes, up to
        // `tcp_rmem`'s maximum): no more than were sent, the last batch perhaps in part.
        assert!(answered <= sent + 1_000, "{answered} answered of {sent} sent");
    }
    // The server is fine for everyone else.
    let mut alice = Client::register(server.addr, "alice").await;
    alice.ok(Command::Groups).await;
    server.stop().await;
}

/// SPEC.md section 3: the frame budget holds per frame. At 100 frames a second with a
/// burst of 200, a client that pipelines 2,000 PINGs gets about that many answers a
/// second, not all of them (the bound has a wide margin: it is not a speed test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frame_budget_slows_a_pipelining_client_to_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.frames_per_second = 100;
    let server = TestServer::start(cfg).await;
    let mut c = Client::connect(server.addr).await;
    let started = Instant::now();
    let pings: Vec<u8> = (0..2_000).flat_map(|i| format!("p{i} PING\r\n").into_bytes()).collect();
    c.send_raw(&pings).await;
    let mut answered = 0;
    while answered < 400 {
        match c.frame().await.expect("open") {
            ServerFrame::Ok { .. } => answered += 1,
            other => panic!("{other:?}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // 400 answers need the burst (200) and two seconds at 100 a second.
    assert!(elapsed > 1.5, "400 answers in {elapsed:.2} s: the budget did not hold");
    server.stop().await;
}

/// SPEC.md 4.1 and 11.5: connections that do not log in within `login` seconds are
/// closed with `BYE LOGIN_TIMEOUT` whether they are silent, trickle a frame a byte at
/// a time, or send PINGs (before and after HELLO).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_do_not_log_in_are_closed_at_the_login_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.login = 2;
    let server = TestServer::start(cfg).await;
    let kinds = ["silent", "trickling", "pinging", "hello, then pinging"];
    let mut tasks = Vec::new();
    for kind in kinds {
        let addr = server.addr;
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut s = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = s.split();
            let feed = async {
                if kind.starts_with("hello") {
                    wr.write_all(b"h HELLO 1\r\n").await.unwrap();
                }
                // Pacing the client's own input (not waiting on the server): one
                // byte or one PING every 200 ms, for at most ten seconds.
                for i in 0..50 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let sent = match kind {
                        "trickling" => {
                            wr.write_all(&b"t1 LOGIN x {2}\r\npw\r\n"[i % 10..i % 10 + 1]).await
                        }
                        "silent" => Ok(()),
                        _ => wr.write_all(format!("p{i} PING\r\n").as_bytes()).await,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            };
            let mut bytes = Vec::new();
            let read = async {
                let _ = tokio::time::timeout(WAIT, rd.read_to_end(&mut bytes)).await;
            };
            tokio::select! {
                () = read => {}
                () = feed => panic!("{kind}: still open after ten seconds"),
            }
            let elapsed = started.elapsed();
            let mut d = ServerFrameDecoder::new(1 << 16);
            d.push(&bytes);
            let frames: Vec<_> = d.map(|f| f.unwrap()).collect();
            assert_eq!(bye(&frames), Some(ErrorCode::LoginTimeout), "{kind}: {frames:?}");
            assert!(elapsed >= Duration::from_millis(1_900), "{kind}: closed after {elapsed:?}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A client that logs in is not affected.
    let mut alice = Client::register(server.addr, "alice").await;
    alice.ok(Command::Groups).await;
    server.stop().await;
}

/// SPEC.md 5.4: a slow consumer dropped while it was not reading still receives its
/// BYE when it starts reading late (within the linger time): the backlog it was never
/// handed is dropped first, and the close waits for it instead of resetting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_that_reads_late_still_receives_its_bye() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.queue = 128 * 1024;
    cfg.limits.chunk = 16 * 1024;
    cfg.linger_ms = 60_000;
    // Far more than the queue and the socket buffers hold, in rounds of 32 messages
    // of 2 KiB; alice reads hers every 64 KiB, so she is no slow consumer.
    let big = "x".repeat(2 * 1024);
    let rounds = bytes_past_a_reader_that_never_reads(cfg.limits.queue).div_ceil(32 * big.len());
    let server = TestServer::start(cfg).await;
    let mut alice = Client::register(server.addr, "alice").await;
    alice
        .ok(Command::Create {
            group: "room".parse().unwrap(),
            rule: Some(baatkaro_proto::JoinRule::Open),
        })
        .await;
    let mut slow = raw(server.addr).await;
    slow.write_all(b"h HELLO 1\r\nr REGISTER slow {12}\r\ncorrect-pass\r\nj JOIN room\r\n")
        .await
        .unwrap();
    // slow's JOIN is in before alice starts: she sees it join.
    loop {
        if let Event::Stored(StoredEvent::Joined { .. }) = alice.event().await {
            break;
        }
    }
    for round in 0..rounds {
        for i in 0..32 {
            alice
                .send(Command::Send {
                    to: conv("#room"),
                    key: format!("k{round}-{i}").parse().unwrap(),
                    text: text(&big),
                })
                .await;
        }
        let mut replies = 0;
        while replies < 32 {
            if let ServerFrame::Ok { .. } = alice.frame().await.expect("alice stays") {
                replies += 1;
            }
        }
    }
    // Only now does slow read: messages, then its BYE, then the end.
    let frames = read_to_end(&mut slow).await;
    assert_eq!(bye(&frames), Some(ErrorCode::SlowConsumer), "{} frames", frames.len());
    let messages = frames
        .iter()
        .filter(|f| matches!(f, ServerFrame::Event(Event::Stored(StoredEvent::Message { .. }))))
        .count();
    assert!(messages < rounds * 32, "dropped before it had everything: {messages}");
    server.stop().await;
}

/// The server binary's resident memory, from /proc, in bytes: `VmRSS` or `VmHWM`.
fn proc_memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// SPEC.md 11.2, measured on the real binary: eight clients that pipeline requests
/// and never read — four before HELLO sending PINGs, four logged in sending commands
/// that fail — are dropped, and the server's peak memory grows by a few queues, not
/// by what they sent (the server before this design grew by hundreds of MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelining_clients_that_never_read_do_not_grow_the_servers_memory() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_baatkaro-server"))
        .args(["--listen", "127.0.0.1:0", "--no-web", "--insecure-test-hash", "--data-dir"])
        .arg(dir.path())
        .args(["--limit-queue", "1048576", "--limit-chunk", "65536"])
        .args(["--frames-per-second", "100000000", "--logins-per-minute", "100000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(at) = line.find("listening on ") {
            addr = Some(line[at + "listening on ".len()..].trim().to_string());
            break;
        }
    }
    let addr: std::net::SocketAddr =
        addr.expect("the server says where it listens").parse().unwrap();
    // Keep reading its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    let pid = child.id();
    let before = proc_memory(pid, "VmRSS:");
    let mut attackers = Vec::new();
    for n in 0..8 {
        attackers.push(tokio::spawn(async move {
            let mut s = raw(addr).await;
            let request = if n < 4 {
                "PING"
            } else {
                let login = format!("h HELLO 1\r\nr REGISTER mem{n} {{12}}\r\ncorrect-pass\r\n");
                s.write_all(login.as_bytes()).await.unwrap();
                "JOIN"
            };
            let batch: Vec<u8> =
                (0..2_000).flat_map(|i| format!("p{i} {request}\r\n").into_bytes()).collect();
            // 20 MB each at most, until the server stops taking them (a write that
            // cannot finish within a second: the server no longer reads it).
            for _ in 0..20_000_000 / batch.len() {
                let write = tokio::time::timeout(Duration::from_secs(1), s.write_all(&batch)).await;
                if !matches!(write, Ok(Ok(()))) {
                    break;
                }
            }
            s
        }));
    }
    // Held open until measured: the server holds what it holds for them now.
    let mut held = Vec::new();
    for a in attackers {
        held.push(a.await.unwrap());
    }
    let peak = proc_memory(pid, "VmHWM:");
    let grown = peak.saturating_sub(before);
    let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
    assert!(grown < 64 << 20, "the server's peak memory grew by {} MiB", grown >> 20);
}

/// SPEC.md 7.8: a connection over the limits gets `BYE TOO_MANY_CONNECTIONS`, then the
/// end — not a reset that destroys the BYE — even when it sent its HELLO (and more)
/// before the server turned it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_that_spoke_first_still_gets_its_bye() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_per_address = 1;
    let server = TestServer::start(cfg).await;
    let _first = Client::register(server.addr, "alice").await;
    for _ in 0..5 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&b"a1 HELLO 1\r\n".repeat(100)).await.unwrap();
        let frames = read_to_end(&mut s).await;
        assert_eq!(bye(&frames), Some(ErrorCode::TooManyConnections), "{frames:?}");
    }
    server.stop().await;
}
