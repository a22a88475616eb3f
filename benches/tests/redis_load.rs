//! Small runs of `baatkaro-load --redis`: against Debian's `redis-server` when it
//! is on the PATH (started by the generator, and started here), and always against
//! a stand-in that speaks the same RESP3 and misorders one delivery, which the
//! generator must report and fail on. No speed is asserted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use baatkaro_benches::load::check::Tally;
use baatkaro_benches::load::redis;
use baatkaro_benches::load::resp::{self, Frame, Limits, Value};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const LOAD: &str = env!("CARGO_BIN_EXE_baatkaro-load");

/// Runs the generator with `args` and `--json`: its exit status and report.
fn run(args: &[&str]) -> (bool, serde_json::Value) {
    let out: Output = Command::new(LOAD).args(args).arg("--json").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("baatkaro-load {args:?}: {e}: {stdout}{}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.success(), report)
}

/// A run that must pass, with every delivery checked.
fn passing(args: &[&str], delivered: u64) -> serde_json::Value {
    let (ok, r) = run(args);
    assert!(ok, "baatkaro-load {args:?} failed: {r}");
    assert_eq!(r["target"], "redis", "{r}");
    for key in ["lost", "duplicated", "reordered"] {
        assert_eq!(r[key], 0, "{key}: {r}");
    }
    assert_eq!(r["delivered"], delivered, "{r}");
    assert!(r["p50_us"].is_number() && r["generator_cpu_pct"].is_number(), "{r}");
    r
}

fn have_redis() -> bool {
    let found =
        Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        // Straight to standard error, so that it shows even though the test passes.
        let _ = writeln!(
            std::io::stderr(),
            "redis-server is not on the PATH: skipped (apt-get install redis-server)"
        );
    }
    found
}

#[test]
fn groups_and_pairs_over_redis_deliver_everything_once_in_order() {
    if !have_redis() {
        return;
    }
    // Started by the generator: two channels of three, each member seeing all
    // three members' 50 messages; its CPU and memory measured.
    let r = passing(&["--redis", "--groups", "2", "--members", "3", "--messages", "50"], 900);
    assert!(r["server_cpu_s"].is_number() && r["server_rss_bytes"].is_number(), "{r}");
    // A running one: two pairs, each member hearing its own and its peer's 100
    // messages; then open loop.
    // Started here the way the generator starts it: a port the kernel has just
    // handed out and taken back (Redis cannot take 0; tried again on another if
    // something took it meanwhile), a temporary directory.
    let (_redis, addr) = redis::start_server(false).unwrap();
    let r = passing(
        &["--redis-server", &addr, "--private", "--members", "4", "--messages", "100"],
        800,
    );
    assert!(r["server_cpu_s"].is_null(), "{r}");
    let r = passing(
        &["--redis-server", &addr, "--members", "5", "--messages", "40", "--rate", "2000"],
        1000,
    );
    assert!(r["max_us"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn a_gap_in_a_senders_messages_is_counted_as_lost_and_out_of_order() {
    // Sender 1 of three, this member being 0: its message 2 never comes.
    let mut tally = Tally::new(3, 0..3, Some(0), 4);
    for k in [0, 1, 3] {
        assert!(tally.delivered(Some(1)));
        tally.in_sender_order(1, k);
    }
    for sender in [0, 2] {
        for k in 0..4 {
            tally.delivered(Some(sender));
            tally.in_sender_order(sender, k);
        }
    }
    let seen = tally.finish().unwrap();
    assert_eq!((seen.delivered, seen.lost, seen.reordered, seen.duplicated), (11, 1, 1, 0));
}

/// A channel's subscribers, and the one delivery it holds back.
#[derive(Default)]
struct Channel {
    subscribers: Vec<mpsc::UnboundedSender<Vec<u8>>>,
    /// The publishing connection and the message held back from subscriber 0.
    held: Option<(usize, Vec<u8>)>,
    swapped: bool,
}

/// What the stand-in gets wrong.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// The first connection's second message reaches the channel's first
    /// subscriber only after its third.
    Misorder,
    /// The first connection's first PUBLISH is acknowledged twice.
    DoubleAck,
}

/// Serves HELLO, SUBSCRIBE and PUBLISH as Redis does, but for `fault`.
async fn stand_in(listener: tokio::net::TcpListener, fault: Fault) {
    let channels: Arc<Mutex<HashMap<Vec<u8>, Channel>>> = Arc::default();
    for conn in 0.. {
        let Ok((stream, _)) = listener.accept().await else { return };
        let channels = channels.clone();
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
            tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    if wr.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
            });
            let (mut buf, mut published) = (BytesMut::new(), 0);
            while rd.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {
                while let Some((frame, n)) = resp::next_frame(&buf, &Limits::default()).unwrap() {
                    let Frame::Other(Value::Array(args)) = frame else { panic!("{frame:?}") };
                    let args: Vec<&[u8]> = args.iter().map(|a| a.bytes().unwrap()).collect();
                    let mut channels = channels.lock().unwrap();
                    match args[..] {
                        [b"HELLO", b"3"] => {
                            tx.send(b"%1\r\n$5\r\nproto\r\n:3\r\n".to_vec()).unwrap()
                        }
                        [b"SUBSCRIBE", c] => {
                            channels.entry(c.to_vec()).or_default().subscribers.push(tx.clone());
                            let mut push = format!(">3\r\n$9\r\nsubscribe\r\n${}\r\n", c.len());
                            push.push_str(&String::from_utf8_lossy(c));
                            push.push_str("\r\n:1\r\n");
                            tx.send(push.into_bytes()).unwrap();
                        }
                        [b"PUBLISH", c, payload] => {
                            published += 1;
                            let ch = channels.get_mut(c).unwrap();
                            // A push is written as an array is, but for its type byte.
                            let mut message = Vec::new();
                            resp::command(&mut message, &[b"message", c, payload]);
                            message[0] = b'>';
                            for (i, s) in ch.subscribers.iter().enumerate() {
                                let misorder = fault == Fault::Misorder && conn == 0;
                                if i == 0 && misorder && published == 2 && !ch.swapped {
                                    ch.held = Some((conn, message.clone()));
                                    continue;
                                }
                                s.send(message.clone()).unwrap();
                                if i == 0 && ch.held.as_ref().is_some_and(|(c, _)| *c == conn) {
                                    s.send(ch.held.take().unwrap().1).unwrap();
                                    ch.swapped = true;
                                }
                            }
                            let mut ack = format!(":{}\r\n", ch.subscribers.len()).into_bytes();
                            if fault == Fault::DoubleAck && conn == 0 && published == 1 {
                                // In one write, so that both arrive before the
                                // generator may send again (its window is 1).
                                ack = ack.repeat(2);
                            }
                            tx.send(ack).unwrap();
                        }
                        _ => panic!("unexpected command {args:?}"),
                    }
                    drop(channels);
                    buf.advance(n);
                }
            }
        });
    }
}

#[test]
fn a_misordered_delivery_fails_the_run() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(stand_in(listener, Fault::Misorder));
    let (ok, r) =
        run(&["--redis-server", &addr, "--members", "3", "--messages", "20", "--window", "1"]);
    assert!(!ok, "the run passed: {r}");
    // Message 1 came after message 2: out of order once, and once behind.
    assert_eq!(
        (&r["reordered"], &r["duplicated"], &r["lost"]),
        (&1.into(), &1.into(), &0.into()),
        "{r}"
    );
    assert_eq!(r["delivered"], 180, "{r}");
}

#[test]
fn a_payload_too_small_for_the_checks_is_refused() {
    // Refused before anything is started or connected to: the address is never used.
    let out = Command::new(LOAD).args(["--redis-server", "127.0.0.1:9", "--size", "31"]).output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--size 32"), "{out:?}");
}

#[test]
fn an_acknowledgement_of_nothing_fails_the_run() {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(stand_in(listener, Fault::DoubleAck));
    let out = Command::new(LOAD)
        .args(["--redis-server", &addr, "--members", "2", "--messages", "5", "--window", "1"])
        .output()
        .unwrap();
    // A failed run (1), not a crash (101) nor a pass.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("acknowledgements of") && stderr.contains(" sends"), "{stderr}");
}
