//! Login throttling on the real server (SPEC.md 11.5): 200 wrong passwords for one
//! account from 20 addresses are slowed, while its owner, at an address that logged
//! in before, gets in at once; every RATE_LIMITED says how long to wait.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, Ipv4Addr};

use baatkaro_proto::{Command, ErrorCode, OkReply, Password};
use common::{Client, TestServer, config, user};

fn local(last: u8) -> IpAddr {
    Ipv4Addr::new(127, 0, 0, last).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_from_twenty_addresses_are_slowed_and_the_owner_still_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // The default password attempts per address: ten from each of twenty addresses
    // stay within it, so what slows them is the account's throttle.
    cfg.logins_per_minute = 60;
    let server = TestServer::start(cfg).await;
    let mut owner = Client::connect_from(server.addr, local(1)).await;
    owner.hello().await;
    owner
        .ok(Command::Register { user: user("alice"), password: Password::new("pw-alice").unwrap() })
        .await;
    drop(owner);

    let mut guessers = Vec::new();
    for last in 2..=21 {
        let mut c = Client::connect_from(server.addr, local(last)).await;
        c.hello().await;
        guessers.push(c);
    }
    let (mut failed, mut slowed) = (0, 0);
    for round in 0..10 {
        for (i, c) in guessers.iter_mut().enumerate() {
            let guess = Password::new(&format!("guess-{round}-{i}")).unwrap();
            match c.call(Command::Login { user: user("alice"), password: guess }).await.1 {
                Err(f) if f.code == ErrorCode::AuthFailed => failed += 1,
                Err(f) if f.code == ErrorCode::RateLimited => {
                    slowed += 1;
                    let wait = f.retry_after.expect("RATE_LIMITED says how long to wait");
                    assert!((1..=15 * 60 * 1000).contains(&wait), "retry={wait}");
                    let note = f.note.expect("and which limit");
                    assert!(note.as_str().contains("this account"), "{note:?}");
                }
                other => panic!("guess {round}-{i}: {other:?}"),
            }
        }
    }
    assert_eq!(failed + slowed, 200);
    // Five free failures, then one more each time the doubling delay has passed
    // (1 s, 2 s, 4 s, …): a handful in the seconds this takes.
    assert!((5..=12).contains(&failed), "{failed} guesses were checked, {slowed} slowed");

    // The owner's address logs in at once; a stranger with the same password waits.
    let mut owner = Client::connect_from(server.addr, local(1)).await;
    owner.hello().await;
    let (_, reply) = owner
        .ok(Command::Login { user: user("alice"), password: Password::new("pw-alice").unwrap() })
        .await;
    assert_eq!(reply, OkReply::Login { user: user("alice") });
    let mut stranger = Client::connect_from(server.addr, local(22)).await;
    stranger.hello().await;
    let right =
        Command::Login { user: user("alice"), password: Password::new("pw-alice").unwrap() };
    stranger.err(right, ErrorCode::RateLimited).await;
    drop((owner, stranger, guessers));
    server.stop().await;
}

/// The addresses that logged in to an account are kept across a restart: after one,
/// guesses from elsewhere slow strangers again, and the owner's address still has a
/// budget of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_address_stays_known_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(config(dir.path())).await;
    let mut owner = Client::connect_from(server.addr, local(1)).await;
    owner.hello().await;
    owner
        .ok(Command::Register { user: user("bob"), password: Password::new("pw-bob").unwrap() })
        .await;
    drop(owner);
    server.stop().await;

    let server = TestServer::start(config(dir.path())).await;
    let mut guesser = Client::connect_from(server.addr, local(30)).await;
    guesser.hello().await;
    for i in 0..6 {
        let guess = Password::new(&format!("guess-{i}")).unwrap();
        let code = if i < 5 { ErrorCode::AuthFailed } else { ErrorCode::RateLimited };
        guesser.err(Command::Login { user: user("bob"), password: guess }, code).await;
    }
    let mut owner = Client::connect_from(server.addr, local(1)).await;
    owner.hello().await;
    owner
        .ok(Command::Login { user: user("bob"), password: Password::new("pw-bob").unwrap() })
        .await;
    drop((owner, guesser));
    server.stop().await;
}
