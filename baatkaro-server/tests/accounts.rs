//! The account's whole life on the real server (SPEC.md 4.8): a password change and
//! a deletion last across a restart, a deleted name stays taken, and the operator's
//! offline command resets passwords and locks accounts on a stopped server's data
//! directory, and refuses to touch one a server holds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::{Command as Process, Output};

use baatkaro_proto::{Command, ErrorCode, JoinRule, OkReply, Password, Text, TokenId};
use baatkaro_proto::{TokenSecret, UserName};
use common::{Client, TestServer, config, user};

fn pw(s: &str) -> Password {
    Password::new(s).unwrap()
}

/// A connection that said HELLO, ready to log in.
async fn greeted(addr: std::net::SocketAddr) -> Client {
    let mut c = Client::connect(addr).await;
    c.hello().await;
    c
}

async fn mint(c: &mut Client) -> (TokenId, TokenSecret) {
    match c.ok(Command::Token { label: Text::new("laptop").unwrap() }).await.1 {
        OkReply::Token { token, secret } => (token, secret),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_and_a_deleted_account_last_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    let g = "rust".parse().unwrap();
    alice.ok(Command::Create { group: g, rule: Some(JoinRule::Open) }).await;
    bob.ok(Command::Join { group: g, reason: None }).await;
    bob.ok(Command::Password { old: pw("pw-bob"), new: pw("bobs-new-password") }).await;
    alice.ok(Command::DeleteAccount { password: pw("pw-alice") }).await;
    drop((alice, bob));
    server.stop().await;

    let server = TestServer::start(config(dir.path())).await;
    let mut c = greeted(server.addr).await;
    c.err(Command::Login { user: user("bob"), password: pw("pw-bob") }, ErrorCode::AuthFailed)
        .await;
    c.ok(Command::Login { user: user("bob"), password: pw("bobs-new-password") }).await;
    // bob owns rust now, alone in it.
    let (items, _) = c.ok(Command::Members { group: g }).await;
    assert_eq!(format!("{items:?}").matches("Member {").count(), 1, "{items:?}");
    assert!(format!("{items:?}").contains("role: Owner"), "{items:?}");
    let mut r = greeted(server.addr).await;
    let taken = Command::Register { user: user("alice"), password: pw("anything-at-all") };
    r.err(taken, ErrorCode::UserExists).await;
    r.err(Command::Login { user: user("alice"), password: pw("pw-alice") }, ErrorCode::AuthFailed)
        .await;
    drop((c, r));
    server.stop().await;
}

/// Runs `baatkaro-server admin --insecure-test-hash --data-dir DIR ARGS…`.
fn admin(dir: &Path, args: &[&str], password: Option<&str>) -> Output {
    let mut c = Process::new(env!("CARGO_BIN_EXE_baatkaro-server"));
    c.args(["admin", "--insecure-test-hash", "--data-dir"]).arg(dir).args(args);
    match password {
        Some(p) => c.env("BAATKARO_PASSWORD", p),
        None => c.env_remove("BAATKARO_PASSWORD"),
    };
    c.output().unwrap()
}

fn said(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_resets_passwords_and_locks_accounts_while_the_server_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let out = admin(empty.path(), &["lock", "bob"], None);
    assert!(!out.status.success() && said(&out).contains("holds no BaatKaro database"));
    assert!(!empty.path().join("baatkaro.db").exists(), "no database is made");

    let server = TestServer::start(config(dir.path())).await;
    let mut bob = Client::register(server.addr, "bob").await;
    let (token, secret) = mint(&mut bob).await;
    // A running server holds the directory: the operator's command refuses.
    let out = admin(dir.path(), &["lock", "bob"], None);
    assert!(!out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("in use by another baatkaro-server"), "{}", said(&out));
    drop(bob);
    server.stop().await;

    let out = admin(dir.path(), &["lock", "bob"], None);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bob: locked\n");
    let out = admin(dir.path(), &["lock", "zed"], None);
    assert!(!out.status.success() && said(&out).contains("there is no account zed"));
    let server = TestServer::start(config(dir.path())).await;
    let mut c = greeted(server.addr).await;
    c.err(Command::Login { user: user("bob"), password: pw("pw-bob") }, ErrorCode::AccountLocked)
        .await;
    c.err(Command::Auth { user: user("bob"), token, secret }, ErrorCode::AccountLocked).await;
    drop(c);
    server.stop().await;

    let out = admin(dir.path(), &["unlock", "bob"], None);
    assert!(out.status.success(), "{}", said(&out));
    let out = admin(dir.path(), &["reset-password", "bob"], Some("short"));
    assert!(!out.status.success() && said(&out).contains("shorter than 8"), "{}", said(&out));
    let out = admin(dir.path(), &["reset-password", "bob"], Some("reset-by-the-operator"));
    assert!(out.status.success(), "{}", said(&out));
    let server = TestServer::start(config(dir.path())).await;
    let mut c = greeted(server.addr).await;
    c.err(Command::Login { user: user("bob"), password: pw("pw-bob") }, ErrorCode::AuthFailed)
        .await;
    c.err(Command::Auth { user: user("bob"), token, secret }, ErrorCode::AuthFailed).await;
    let bobs: UserName = user("bob");
    c.ok(Command::Login { user: bobs, password: pw("reset-by-the-operator") }).await;
    drop(c);
    server.stop().await;

    // A damaged account row is not made to look whole by a reset, which sums the
    // row anew: the operator is told, and nothing changes.
    let db = rusqlite::Connection::open(dir.path().join("baatkaro.db")).unwrap();
    db.execute("UPDATE users SET created = created + 1 WHERE name = 'bob'", []).unwrap();
    drop(db);
    let out = admin(dir.path(), &["reset-password", "bob"], Some("another-reset-pw"));
    assert!(!out.status.success(), "{}", said(&out));
    assert!(said(&out).contains("fails its checksum"), "{}", said(&out));
}
