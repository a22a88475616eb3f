//! The server's side of SPEC.md 11.7: the TLS handshake's deadline, and the
//! binary refusing plain text on an address other than loopback unless told
//! `--insecure-plaintext` — tried inside a network namespace the test makes, so
//! that such an address exists without touching the machine's own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use baatkaro_server::tls::TlsSource;
use common::{TestServer, WAIT, config};
use tokio::io::AsyncReadExt;

const SERVER: &str = env!("CARGO_BIN_EXE_baatkaro-server");

#[tokio::test]
async fn a_connection_that_never_finishes_its_handshake_is_closed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.tls = Some(TlsSource::SelfSigned);
    cfg.tls_handshake_ms = 200;
    // Only the handshake's deadline can close the connection within the wait.
    cfg.limits.login = 3600;
    cfg.limits.idle = 3600;
    let server = TestServer::start(cfg).await;
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed, with nothing sent: {read:?}");
    server.stop().await;
}

/// Runs the server binary in a new network namespace whose loopback device also
/// has 10.77.0.1, with these arguments after `--data-dir DIR`.
fn in_namespace(dir: &std::path::Path, args: &[&str]) -> Child {
    Command::new("unshare")
        .args(["--map-root-user", "--net", "--", "sh", "-c"])
        .arg("ip link set lo up && ip addr add 10.77.0.1/32 dev lo && exec \"$@\"")
        .arg("sh")
        .arg(SERVER)
        .arg("--data-dir")
        .arg(dir)
        .args(["--insecure-test-hash", "--log", "info"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs: the test needs a network namespace")
}

/// The server's log lines until one contains `until` or the log ends, within
/// [`WAIT`]; the process is killed once it has said it.
fn log_until(mut child: Child, until: &str) -> (Vec<String>, Option<std::process::ExitStatus>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        let done = line.contains(until);
        lines.push(line);
        if done {
            let _ = child.kill();
            let _ = child.wait();
            return (lines, None);
        }
    }
    let _ = child.kill();
    (lines, child.wait().ok())
}

#[test]
fn plain_text_beyond_loopback_is_refused_unless_insisted() {
    let dir = tempfile::tempdir().unwrap();

    let (lines, status) =
        log_until(in_namespace(dir.path(), &["--listen", "10.77.0.1:0"]), "listening on");
    let status = status.expect("the server exits by itself");
    assert_eq!(status.code(), Some(2), "a configuration error: {lines:?}");
    let said = lines.join("\n");
    assert!(said.contains("--insecure-plaintext") && said.contains("--tls-self-signed"), "{said}");
    assert!(!dir.path().join("baatkaro.db").exists(), "refused before the store was opened");

    let (lines, status) = log_until(
        in_namespace(dir.path(), &["--listen", "10.77.0.1:0", "--insecure-plaintext"]),
        "listening on",
    );
    assert!(status.is_none(), "it serves when insisted: {lines:?}");

    let (lines, status) = log_until(
        in_namespace(&dir.path().join("tls"), &["--listen", "10.77.0.1:0", "--tls-self-signed"]),
        "listening on",
    );
    assert!(status.is_none(), "it serves TLS: {lines:?}");
    let said = lines.join("\n");
    assert!(
        said.contains("with TLS") && said.contains("sha256:"),
        "the fingerprint is logged: {said}"
    );
}
