//! TLS end to end: a server with a self-signed certificate, the client library
//! pinning it on first use and refusing a changed one, the `baatkaro` binary doing
//! the same, and the refusal to send a password in clear beyond loopback — the
//! last inside a network namespace this test makes, so that a non-loopback
//! address exists without touching the machine's own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use baatkaro_client::tls::{KnownHosts, Pin, TrustError};
use baatkaro_client::{Client, ClientError, ConnectOptions, Trust};
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
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), baatkaro_server::server::ServeError>>,
}

impl TestServer {
    /// Stops the server and waits until its listener is closed.
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .expect("the server stopped as asked");
    }
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
    let task = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    TestServer { addr, fingerprint, stop, task }
}

fn pinning(dir: &Path) -> ConnectOptions {
    ConnectOptions::default().known_hosts(dir.join("known_hosts"))
}

#[tokio::test]
async fn a_tls_session_end_to_end_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), "127.0.0.1:0", Some(TlsSource::SelfSigned), false).await;
    let url = format!("baatkaros://{}", server.addr);
    let options = pinning(dir.path());

    let alice =
        tokio::time::timeout(WAIT, Client::connect_with(&url, &options)).await.unwrap().unwrap();
    let tls = alice.tls().expect("a TLS connection");
    assert_eq!(tls.trust, Trust::FirstUse);
    assert_eq!(Some(tls.fingerprint), server.fingerprint, "the certificate the server loaded");
    let pinned = KnownHosts::lookup(&dir.path().join("known_hosts"), &server.addr.to_string());
    assert_eq!(pinned.unwrap(), server.fingerprint.map(Pin::Certificate), "pinned on first use");

    alice.register("alice".parse().unwrap(), Password::new("pw-alice-1").unwrap()).await.unwrap();
    let bob = Client::connect_with(&url, &options).await.unwrap();
    assert_eq!(bob.tls().unwrap().trust, Trust::Pinned, "the second time, the pin vouches");
    bob.register("bob".parse().unwrap(), Password::new("pw-bob-12").unwrap()).await.unwrap();
    let to_bob = Conversation::Direct("bob".parse().unwrap());
    // More than one TLS record's worth (16 KiB), so that records are split and
    // joined on the way.
    let longest = usize::try_from(alice.server().limits.message).unwrap();
    let text = Text::new(&"x".repeat(longest)).unwrap();
    let mut last = 0;
    for _ in 0..(64 * 1024 / longest + 1) {
        last = alice.send(to_bob, text.clone()).await.unwrap().seq;
    }
    let events =
        bob.history_after(Conversation::Direct("alice".parse().unwrap()), 0).await.unwrap().events;
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
    let pin = Pin::Certificate(other);
    KnownHosts::add(&dir.path().join("known_hosts"), &server.addr.to_string(), pin).unwrap();
    let e = Client::connect_with(&url, &pinning(dir.path())).await.err().unwrap();
    match &e {
        ClientError::Trust(TrustError::Changed { pinned, presented, .. }) => {
            assert_eq!((*pinned, *presented), (other, real));
        }
        other => panic!("expected a changed certificate, got {other}"),
    }
    assert!(e.to_string().contains("HAS CHANGED"), "{e}");

    // A fingerprint given by the user must match exactly, pins aside.
    let given = ConnectOptions::default().fingerprint(real);
    let c = Client::connect_with(&url, &given).await.unwrap();
    assert_eq!(c.tls().unwrap().trust, Trust::Given);
    let wrong = ConnectOptions::default().fingerprint(other);
    let e = Client::connect_with(&url, &wrong).await.err().unwrap();
    assert!(matches!(e, ClientError::Trust(TrustError::Mismatch { .. })), "{e}");

    // A CA file that signed nothing here does not make the certificate trusted.
    let ca = rcgen_ca(dir.path());
    let with_ca = ConnectOptions::default().ca(ca);
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

/// A CA, and a certificate it signed for `name`: (ca.pem, cert.pem, key.pem).
fn ca_and_leaf(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (dir.join("ca.pem"), dir.join("leaf.pem"), dir.join("leaf.key"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[tokio::test]
async fn a_host_an_authority_vouched_for_is_never_pinned_to_an_impostor() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_leaf(dir.path(), "127.0.0.1");
    let real =
        start(&dir.path().join("real"), "127.0.0.1:0", Some(TlsSource::Files { cert, key }), false)
            .await;
    let url = format!("baatkaros://{}", real.addr);
    let known = dir.path().join("known_hosts");
    let with_ca = ConnectOptions::default().ca(ca).known_hosts(known.clone());
    let c = Client::connect_with(&url, &with_ca).await.unwrap();
    assert_eq!(c.tls().unwrap().trust, Trust::Authority);
    drop(c);
    assert_eq!(KnownHosts::lookup(&known, &real.addr.to_string()).unwrap(), Some(Pin::Authority));
    let addr = real.addr;
    real.stop().await;

    // An impostor on the same address, with a self-signed certificate.
    let _impostor =
        start(&dir.path().join("evil"), &addr.to_string(), Some(TlsSource::SelfSigned), false)
            .await;
    // Where the host was vouched for: the loud refusal, even with pinning on.
    let pinning_only = ConnectOptions::default().known_hosts(known.clone());
    let e = Client::connect_with(&url, &pinning_only).await.err().unwrap();
    assert!(matches!(e, ClientError::Trust(TrustError::LostAuthority { .. })), "{e}");
    assert!(e.to_string().contains("HAS CHANGED"), "{e}");
    // Where the user named the authorities: never pinned on first use.
    let fresh = with_ca.clone().known_hosts(dir.path().join("fresh"));
    let e = Client::connect_with(&url, &fresh).await.err().unwrap();
    assert!(matches!(e, ClientError::Trust(TrustError::Untrusted { .. })), "{e}");
    assert_eq!(KnownHosts::lookup(&dir.path().join("fresh"), &url[12..]).unwrap(), None);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_not_vouched_for() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_leaf(dir.path(), "chat.example.org");
    let server =
        start(dir.path(), "127.0.0.1:0", Some(TlsSource::Files { cert, key }), false).await;
    let options = ConnectOptions::default().ca(ca);
    let e = Client::connect_with(&format!("baatkaros://{}", server.addr), &options)
        .await
        .err()
        .unwrap();
    match e {
        ClientError::Trust(TrustError::Untrusted { why, .. }) => {
            assert!(why.contains("not valid for name"), "{why}")
        }
        other => panic!("expected a name mismatch, got {other}"),
    }
}

#[tokio::test]
async fn connecting_has_a_deadline_and_trust_options_need_tls() {
    // A server that accepts TCP and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let options = ConnectOptions::default().timeout(Duration::from_millis(300));
    for url in [format!("baatkaros://{addr}"), addr.to_string()] {
        let e = tokio::time::timeout(WAIT, Client::connect_with(&url, &options))
            .await
            .unwrap()
            .err()
            .unwrap();
        assert!(
            matches!(&e, ClientError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
            "{e}"
        );
    }
    let pinned = ConnectOptions::default().fingerprint(Fingerprint([1; 32]));
    let e = Client::connect_with(&addr.to_string(), &pinned).await.err().unwrap();
    assert!(matches!(e, ClientError::Trust(TrustError::NotTls)), "{e}");
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
    assert!(text(&out.stdout).contains("registered carol"));

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

/// Set in the environment of the test's run inside the namespace.
const IN_NAMESPACE: &str = "BAATKARO_TEST_IN_NETNS";

#[tokio::test]
async fn beyond_loopback_a_password_goes_only_over_tls_or_when_insisted() {
    // This test runs twice: here, where it makes a network namespace and runs
    // itself again inside; and there, where it does the work.
    if std::env::var_os(IN_NAMESPACE).is_none() {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new("unshare")
            // A user namespace too: no root needed.
            .args(["--map-root-user", "--net", "--"])
            .arg(exe)
            .args(["--exact", "beyond_loopback_a_password_goes_only_over_tls_or_when_insisted"])
            .arg("--nocapture")
            .env(IN_NAMESPACE, "1")
            .stdin(Stdio::null())
            .output()
            .expect("unshare (util-linux) runs: the test needs to make a network namespace");
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "inside the namespace:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "the inner run ran:\n{stdout}\n{stderr}");
        return;
    }
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
        text(&out.stderr).contains("refusing to send a password or token in clear"),
        "{}",
        text(&out.stderr)
    );
    // The library says the same, whichever way the password is sent.
    let c = Client::connect(&server).await.unwrap();
    let e = c.login("carol".parse().unwrap(), Password::new("pw-carol-1").unwrap()).await;
    assert!(matches!(e, Err(ClientError::Plaintext(_))), "{e:?}");
    let raw = baatkaro_proto::Command::Register {
        user: "carol".parse().unwrap(),
        password: Password::new("pw-carol-1").unwrap(),
    };
    assert!(matches!(c.call(raw).await, Err(ClientError::Plaintext(_))));

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
