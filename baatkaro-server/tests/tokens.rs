//! Session tokens on the real server (SPEC.md 4.7): they survive a restart and log a
//! session in without a password; a revocation takes effect at once, on every
//! session the token logged in, and survives a restart too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use baatkaro_proto::{Command, ErrorCode, Event, Item, OkReply, ServerFrame, Text, TokenId};
use baatkaro_proto::{TokenSecret, UserName};
use common::{Client, TestServer, config, user};

/// A connection that said HELLO and logged in with a token.
async fn with_token(
    addr: std::net::SocketAddr,
    name: &str,
    token: TokenId,
    secret: TokenSecret,
) -> Client {
    let mut c = Client::connect(addr).await;
    c.hello().await;
    let (_, reply) = c.ok(Command::Auth { user: user(name), token, secret }).await;
    assert_eq!(reply, OkReply::Auth { user: user(name) });
    c.name = format!("{name} (token {token})");
    c
}

async fn mint(c: &mut Client, label: &str) -> (TokenId, TokenSecret) {
    match c.ok(Command::Token { label: Text::new(label).unwrap() }).await.1 {
        OkReply::Token { token, secret } => (token, secret),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_survives_a_restart_and_logs_in_without_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let (token, secret) = mint(&mut alice, "laptop").await;
    drop(alice);
    server.stop().await;

    // A server that refuses every password attempt at once: only the token gets in.
    let mut cfg = config(dir.path());
    cfg.logins_per_minute = 1;
    let server = TestServer::start(cfg).await;
    let mut spent = Client::connect(server.addr).await;
    spent.hello().await;
    let wrong = baatkaro_proto::Password::new("wrong").unwrap();
    spent
        .err(Command::Login { user: user("alice"), password: wrong.clone() }, ErrorCode::AuthFailed)
        .await;
    spent
        .err(Command::Login { user: user("alice"), password: wrong }, ErrorCode::RateLimited)
        .await;
    let mut c = with_token(server.addr, "alice", token, secret).await;
    let (items, _) = c.ok(Command::Tokens).await;
    let [Item::Token { token: listed, created, used, expires, address, label }] = &items[..] else {
        panic!("{items:?}")
    };
    assert_eq!((*listed, label.as_str(), address.as_str()), (token, "laptop", "127.0.0.1"));
    assert!(used >= created, "{used} {created}");
    assert_eq!(*expires, used + 90 * 24 * 3600 * 1000, "the default idle time, 90 days");
    drop(c);
    server.stop().await;
    // The store holds the secret's SHA-256, never the secret.
    let mut db = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("baatkaro.db") {
            db.extend(std::fs::read(path).unwrap());
        }
    }
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(secret.0).into();
    assert!(contains(&db, &digest), "the digest is stored");
    let hex = String::from_utf8(secret.to_hex().to_vec()).unwrap();
    assert!(!contains(&db, &secret.0) && !contains(&db, hex.as_bytes()), "no secret on disk");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_ends_the_tokens_sessions_at_once_and_lasts() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let (token, secret) = mint(&mut alice, "phone").await;
    let (kept, kept_secret) = mint(&mut alice, "desk").await;
    let mut phone = with_token(server.addr, "alice", token, secret).await;
    let mut desk = with_token(server.addr, "alice", kept, kept_secret).await;

    alice.ok(Command::Revoke { token }).await;
    // The phone's session hears BYE REVOKED and is closed; nothing else is said.
    let frames = phone.until_closed().await;
    let revoked = |f: &ServerFrame| matches!(f, ServerFrame::Event(Event::Bye(b)) if b.code == ErrorCode::Revoked);
    assert!(frames.last().is_some_and(revoked), "{frames:?}");
    // The desk's goes on; the phone's token no longer logs in.
    desk.ok(Command::Groups).await;
    let mut again = Client::connect(server.addr).await;
    again.hello().await;
    let denied = Command::Auth { user: user("alice"), token, secret };
    again.err(denied.clone(), ErrorCode::AuthFailed).await;
    drop((alice, desk, again));
    server.stop().await;

    let server = TestServer::start(config(dir.path())).await;
    let mut again = Client::connect(server.addr).await;
    again.hello().await;
    again.err(denied, ErrorCode::AuthFailed).await;
    let mut desk = with_token(server.addr, "alice", kept, kept_secret).await;
    let (items, _) = desk.ok(Command::Tokens).await;
    let listed: Vec<TokenId> = items
        .iter()
        .map(|i| match i {
            Item::Token { token, .. } => *token,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(listed, [kept]);
    // Numbers are never given out twice, across restarts too.
    let (next, _) = mint(&mut desk, "new").await;
    assert!(next > kept, "{next} after {kept}");
    drop(desk);
    server.stop().await;
}

/// A user's tokens are theirs: another user can neither log in with one nor revoke it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_their_users_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut alice = Client::register(server.addr, "alice").await;
    let mut bob = Client::register(server.addr, "bob").await;
    let (token, secret) = mint(&mut alice, "laptop").await;
    bob.err(Command::Revoke { token }, ErrorCode::NoSuchToken).await;
    let mut c = Client::connect(server.addr).await;
    c.hello().await;
    let bobs: UserName = user("bob");
    c.err(Command::Auth { user: bobs, token, secret }, ErrorCode::AuthFailed).await;
    with_token(server.addr, "alice", token, secret).await;
    drop((alice, bob, c));
    server.stop().await;
}
