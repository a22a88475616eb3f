//! Every command of the protocol has a typed method: a stand-in server records the
//! verb of every request it gets while each typed method is called once, and the
//! verbs seen must be all of `Verb::ALL`. A command added to the protocol without
//! a method here fails this test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baatkaro_client::proto::{
    Encode, Feature, Features, Limits, RequestDecoder, ServerFrame, Software, Verb,
};
use baatkaro_client::{
    Client, ClientError, Conversation, ErrorCode, Failure, HistoryRange, OkReply, Password, Sha256,
    Text,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(20);

/// A server that answers HELLO and refuses everything else with `NOT_PERMITTED`,
/// noting each verb it was sent.
async fn recorder() -> (SocketAddr, Arc<Mutex<BTreeSet<Verb>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let verbs = seen.clone();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut decoder = RequestDecoder::new(1 << 24);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stream.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            decoder.push(&buf[..n]);
            while let Some(Ok(req)) = decoder.next_frame() {
                verbs.lock().unwrap().insert(req.command.verb());
                let frame = match req.command.verb() {
                    Verb::Hello => ServerFrame::Ok {
                        tag: req.tag,
                        reply: OkReply::Hello {
                            version: 1,
                            server: Software::new("recorder/1").unwrap(),
                            features: Features::new(
                                [
                                    "files",
                                    "file-cancel",
                                    "tokens",
                                    "account",
                                    "read",
                                    "group-state",
                                ]
                                .iter()
                                .map(|f| Feature::new(f).unwrap())
                                .collect(),
                            )
                            .unwrap(),
                            limits: Box::new(Limits::default()),
                        },
                    },
                    _ => ServerFrame::Err {
                        tag: req.tag,
                        failure: Failure::new(ErrorCode::NotPermitted),
                    },
                };
                if stream.write_all(&frame.to_bytes()).await.is_err() {
                    return;
                }
            }
        }
    });
    (addr, seen)
}

/// The answer of a typed method to a refusal: refused, with the server's code.
fn refused<T: std::fmt::Debug>(r: Result<T, ClientError>) {
    match r {
        Err(e) => assert_eq!(e.code(), Some(ErrorCode::NotPermitted), "{e}"),
        Ok(v) => panic!("expected a refusal, got {v:?}"),
    }
}

#[tokio::test]
async fn every_verb_of_the_protocol_has_a_typed_method() {
    let (addr, seen) = recorder().await;
    let c = Client::connect(&addr.to_string()).await.unwrap();
    let (g, u) = ("rust".parse().unwrap(), "bob".parse().unwrap());
    let conv: Conversation = "#rust".parse().unwrap();
    let pw = || Password::new("a-password").unwrap();
    let text = || Text::new("hi").unwrap();
    let file = "f1".parse().unwrap();
    let calls = async {
        refused(c.register(u, pw()).await);
        refused(c.login(u, pw()).await);
        refused(c.auth(u, "7".parse().unwrap(), baatkaro_client::TokenSecret([7; 32])).await);
        refused(c.ping().await);
        refused(c.make_token(text()).await);
        refused(c.tokens().await);
        refused(c.revoke("7".parse().unwrap()).await);
        refused(c.change_password(pw(), pw()).await);
        refused(c.create(g, None).await);
        refused(c.delete_group(g).await);
        refused(c.set_rule(g, baatkaro_client::JoinRule::Open).await);
        refused(c.join(g, Some(text())).await);
        refused(c.requests(g).await);
        refused(c.approve(g, u).await);
        refused(c.reject(g, u).await);
        refused(c.invite(g, u).await);
        refused(c.accept(g).await);
        refused(c.decline(g).await);
        refused(c.leave(g).await);
        refused(c.kick(g, u, true).await);
        refused(c.unban(g, u).await);
        refused(c.promote(g, u).await);
        refused(c.demote(g, u).await);
        refused(c.transfer(g, u).await);
        refused(c.transfer_accept(g).await);
        refused(c.transfer_cancel(g).await);
        refused(c.groups().await);
        refused(c.conversations().await);
        refused(c.members(g).await);
        refused(c.online(None).await);
        refused(c.send(conv, text()).await);
        refused(c.history(conv, HistoryRange::Last, 10).await);
        refused(
            c.offer_file(
                conv,
                1,
                Sha256([0; 32]),
                baatkaro_client::OfferName::new("a.txt").unwrap(),
            )
            .await,
        );
        refused(c.file_chunk(file, 0, bytes::Bytes::from_static(b"x")).await);
        refused(c.file_status(file).await);
        refused(c.commit_file(file).await);
        refused(c.cancel_upload(file).await);
        refused(c.files(conv).await);
        refused(c.file_get(file, 0, 0).await);
        refused(c.read(conv, 7).await);
        refused(c.bans(g).await);
        refused(c.delete_account(pw()).await);
        refused(c.logout(false).await);
    };
    tokio::time::timeout(WAIT, calls).await.expect("every call answered in time");
    let seen = seen.lock().unwrap().clone();
    let missing: Vec<_> = Verb::ALL.iter().filter(|v| !seen.contains(v)).collect();
    assert!(missing.is_empty(), "verbs without a typed method: {missing:?}");
}
