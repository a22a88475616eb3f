//! TLS end to end: a server with a self-signed certificate, the client library
//! pinning it on first use and refusing a changed one, the `baatkaro` binary doing
//! the same, and the refusal to send a password in clear beyond loopback — the
//! last inside a network namespace this test makes, so that a non-loopback
//! address exists without touching the machine's own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use baatkaro_cli::tls::{KnownHosts, TrustError};
use baatkaro_cli::{Client, ClientError, ConnectOptions, Trust};
use baatkaro_proto::transport::Fingerprint;
use baatkaro_proto::{Conversation, Password, Text};
use baatkaro_server::config::{Config, HashCost};
use baatkaro_server::server::Server;
use baatkaro_server::tls::TlsSource;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_baatkaro");

/// A server in this process, serving until dropped.
struct TestServer {
    addr: SocketAddr,
    fingerprint: Option<Fingerprint>,
    _stop: oneshot::Sender<()>,
}

async fn start(dir: &Path, listen: &str, tls: Option<TlsSource>, insecure: bool) -> TestServer {
    start_with(dir, listen, |cfg| {
        cfg.tls = tls;
        cfg.insecure_plaintext = insecure;
    })
    .await
}

async fn start_with(dir: &Path, listen: &str, set: impl FnOnce(&mut Config)) -> TestServer {
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cfg = Config::new(dir.to_path_buf());
    cfg.listen = addr;
    cfg.hash_cost = HashCost::TEST_ONLY;
    cfg.logins_per_minute = 100_000;
    set(&mut cfg);
    let server = Server::open(cfg).await.unwrap();
    let fingerprint = server.tls_fingerprint();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    TestServer { addr, fingerprint, _stop: stop }
}

fn pinning(dir: &Path) -> ConnectOptions {
    ConnectOptions { known_hosts: Some(dir.join("known_hosts")), ..ConnectOptions::default() }
}

#[tokio::test]
async fn a_tls_session_end_to_end_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", Some(TlsSource::SelfSigned), false).await;
    let url = format!("baatkaros://{}", server.addr);
    let options = pinning(dir.path());

    let mut alice =
        tokio::time::timeout(WAIT, Client::connect_with(&url, &options)).await.unwrap().unwrap();
    let tls = alice.tls().expect("a TLS connection");
    assert_eq!(tls.trust, Trust::FirstUse);
    assert_eq!(Some(tls.fingerprint), server.fingerprint, "the certificate the server loaded");
    let pinned = KnownHosts::lookup(&dir.path().join("known_hosts"), &server.addr.to_string());
    assert_eq!(pinned.unwrap(), server.fingerprint, "pinned on first use");

    alice.register("alice".parse().unwrap(), Password::new("pw-alice-1").unwrap()).await.unwrap();
    let mut bob = Client::connect_with(&url, &options).await.unwrap();
    assert_eq!(bob.tls().unwrap().trust, Trust::Pinned, "the second time, the pin vouches");
    bob.register("bob".parse().unwrap(), Password::new("pw-bob-12").unwrap()).await.unwrap();
    let to_bob = Conversation::Direct("bob".parse().unwrap());
    // More than one TLS record's worth (16 KiB), so that records are split and
    // joined on the way.
    let longest = usize::try_from(alice.server().limits.message).unwrap();
    let text = Text::new(&"x".repeat(longest)).unwrap();
    let mut last = 0;
    for _ in 0..(64 * 1024 / longest + 1) {
        last = alice.send(to_bob, text.clone()).await.unwrap().0;
    }
    let (events, _) = bob.history(Conversation::Direct("alice".parse().unwrap()), 0).await.unwrap();
    assert_eq!(events.last().map(|e| e.seq()), Some(last));
    assert!(events.len() * longest > 64 * 1024);

    // A plain-text client to the TLS port gets no greeting, only a closed socket.
    let plain = Client::connect(&server.addr.to_string()).await;
    assert!(plain.is_err(), "plain text to a TLS listener must fail");
}

#[tokio::test]
async fn a_changed_certificate_is_refused_loudly_and_a_given_one_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", Some(TlsSource::SelfSigned), false).await;
    let url = format!("baatkaros://{}", server.addr);
    let real = server.fingerprint.unwrap();
    let other = Fingerprint([7; 32]);

    // Nothing pins it and no CA vouches: refused, with the fingerprint shown.
    let e = Client::connect_with(&url, &ConnectOptions::default()).await.err().unwrap();
    assert!(
        matches!(e, ClientError::Trust(TrustError::Untrusted { presented, .. }) if presented == real),
        "{e}"
    );

    // The pin says another certificate: the loud refusal.
    KnownHosts::add(&dir.path().join("known_hosts"), &server.addr.to_string(), other).unwrap();
    let e = Client::connect_with(&url, &pinning(dir.path())).await.err().unwrap();
    match &e {
        ClientError::Trust(TrustError::Changed { pinned, presented, .. }) => {
            assert_eq!((*pinned, *presented), (other, real));
        }
        other => panic!("expected a changed certificate, got {other}"),
    }
    assert!(e.to_string().contains("HAS CHANGED"), "{e}");

    // A fingerprint given by the user must match exactly, pins aside.
    let given = ConnectOptions { fingerprint: Some(real), ..ConnectOptions::default() };
    let c = Client::connect_with(&url, &given).await.unwrap();
    assert_eq!(c.tls().unwrap().trust, Trust::Given);
    let wrong = ConnectOptions { fingerprint: Some(other), ..ConnectOptions::default() };
    let e = Client::connect_with(&url, &wrong).await.err().unwrap();
    assert!(matches!(e, ClientError::Trust(TrustError::Mismatch { .. })), "{e}");

    // A CA file that signed nothing here does not make the certificate trusted.
    let ca = rcgen_ca(dir.path());
    let with_ca = ConnectOptions { ca: Some(ca), ..ConnectOptions::default() };
    let e = Client::connect_with(&url, &with_ca).await.err().unwrap();
    assert!(matches!(e, ClientError::Trust(TrustError::Untrusted { .. })), "{e}");
}

#[tokio::test]
async fn a_connection_over_the_limit_is_told_why_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), "127.0.0.1:0", |cfg| {
        cfg.tls = Some(TlsSource::SelfSigned);
        cfg.max_per_address = 1;
    })
    .await;
    let url = format!("baatkaros://{}", server.addr);
    let _first = Client::connect_with(&url, &pinning(dir.path())).await.unwrap();
    let e = Client::connect_with(&url, &pinning(dir.path())).await.err().unwrap();
    match e {
        ClientError::Closed(Some(bye)) => {
            assert_eq!(bye.code, baatkaro_proto::ErrorCode::TooManyConnections);
        }
        other => panic!("expected BYE TOO_MANY_CONNECTIONS through TLS, got {other}"),
    }
}

/// A CA certificate that signed nothing, as a PEM file.
fn rcgen_ca(dir: &Path) -> std::path::PathBuf {
    // The server's own self-signed certificate, from another data directory:
    // a valid anchor for a different key.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    baatkaro_server::tls::Tls::load(&TlsSource::SelfSigned, &other, "127.0.0.1:1".parse().unwrap())
        .unwrap();
    other.join(baatkaro_server::tls::SELF_SIGNED_CERT)
}

/// Runs `baatkaro` (as carol, whose password is in the environment) off the
/// runtime's thread, which serves the server meanwhile.
async fn run(args: &[&str], config_dir: &Path) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .arg("--config-dir")
        .arg(config_dir)
        .env("BAATKARO_PASSWORD", "pw-carol-1")
        .env_remove("BAATKARO_USER")
        .env_remove("BAATKARO_SERVER")
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || c.output().unwrap());
    tokio::time::timeout(WAIT, out).await.unwrap().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn the_command_line_client_pins_on_first_use_and_refuses_a_changed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", Some(TlsSource::SelfSigned), false).await;
    let url = format!("baatkaros://{}", server.addr);
    let config = dir.path().join("client");
    let fp = server.fingerprint.unwrap().to_string();

    let out = run(&["--server", &url, "--user", "carol", "register"], &config).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&fp), "the pin is announced: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("logged in as carol"));

    let out = run(&["--server", &url, "groups"], &config).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("pinned"),
        "only the first use announces: {}",
        text(&out.stderr)
    );

    // Another certificate for the same address, as an interceptor would show.
    let known = config.join("known_hosts");
    std::fs::write(&known, format!("{} {}\n", server.addr, Fingerprint([9; 32]))).unwrap();
    let out = run(&["--server", &url, "groups"], &config).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("HAS CHANGED"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(&fp), "the presented certificate is named");
}

// ----------------------------------------------------------------------------
// Beyond loopback, inside a network namespace.

/// The address the namespace gives its loopback device: not loopback itself.
const AWAY: &str = "10.77.0.1";

#[test]
fn beyond_loopback_a_password_goes_only_over_tls_or_when_insisted() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(exe)
        .args(["--exact", "inside_a_network_namespace", "--ignored", "--nocapture"])
        .env("BAATKARO_IN_NETNS", "1")
        .stdin(Stdio::null())
        .output()
        .expect("unshare (util-linux) runs: the test needs to make a network namespace");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "inside the namespace:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the inner test ran:\n{stdout}\n{stderr}");
}

#[tokio::test]
#[ignore = "runs inside the network namespace that the test above makes"]
async fn inside_a_network_namespace() {
    assert_eq!(std::env::var("BAATKARO_IN_NETNS").as_deref(), Ok("1"), "run by the test above");
    for args in
        [&["link", "set", "lo", "up"][..], &["addr", "add", &format!("{AWAY}/32"), "dev", "lo"]]
    {
        let status = Command::new("ip").args(args).status().expect("ip (iproute2) runs");
        assert!(status.success(), "ip {args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = start(&dir.path().join("plain"), &format!("{AWAY}:0"), None, true).await;
    let config = dir.path().join("client");

    // Plain text to an address that is not loopback: refused before the password
    // is read or sent.
    let server = plain.addr.to_string();
    let out = run(&["--server", &server, "--user", "carol", "register"], &config).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("refusing to send a password in clear"),
        "{}",
        text(&out.stderr)
    );
    // The library says the same.
    let mut c = Client::connect(&server).await.unwrap();
    let e = c.login("carol".parse().unwrap(), Password::new("pw-carol-1").unwrap()).await;
    assert!(matches!(e, Err(ClientError::Plaintext(_))), "{e:?}");

    // Insisting works.
    let out =
        run(&["--server", &server, "--user", "carol", "--insecure-plaintext", "register"], &config)
            .await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // TLS needs no insisting.
    let tls =
        start(&dir.path().join("tls"), &format!("{AWAY}:0"), Some(TlsSource::SelfSigned), false)
            .await;
    let url = format!("baatkaros://{}", tls.addr);
    let out = run(&["--server", &url, "--user", "carol", "register"], &config).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
}
