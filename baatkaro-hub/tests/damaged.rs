//! A hub whose store was found damaged (SPEC.md 8, `STORE_DAMAGED`): every command it
//! still serves stages no write, and every other is refused without one.

// Test code: a failed unwrap or assertion is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baatkaro_hub::store::{Read, ReadResult, Snapshot};
use baatkaro_hub::{Delivery, HashDone, HashOutcome, HashPurpose, Hub, HubConfig, Output};
use baatkaro_proto::group::{GroupEvent, GroupId};
use baatkaro_proto::session::RequestId;
use baatkaro_proto::storage::served_while_damaged;
use baatkaro_proto::{
    Command, ErrorCode, FileId, GroupName, HistoryRange, JoinRule, Limits, OkReply, Password, Text,
    UserName, Verb, Versions,
};

const T0: u64 = 1_764_072_000_000;

/// Token secrets: not random, and none is needed to be.
#[derive(Debug)]
struct Fixed;

impl baatkaro_hub::Entropy for Fixed {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        buf.fill(7);
        Ok(())
    }
}

fn user(s: &str) -> UserName {
    s.parse().unwrap()
}

fn rust() -> GroupName {
    "rust".parse().unwrap()
}

/// A hub with alice, the owner of `rust`, logged in on connection 1.
fn hub() -> Hub {
    let snapshot = Snapshot {
        users: vec![(user("alice"), "stored".into())],
        groups: vec![(
            GroupId(1),
            rust(),
            vec![GroupEvent::Created { owner: user("alice"), rule: JoinRule::Approval }],
        )],
        next_group_id: 2,
        ..Snapshot::default()
    };
    let mut hub =
        Hub::new(HubConfig::new(Limits::default()), snapshot, T0, 7, Box::new(Fixed)).unwrap();
    hub.handle_connected(1, "127.0.0.1".parse().unwrap());
    let login = Command::Login { user: user("alice"), password: Password::new("pw").unwrap() };
    hub.handle_request(1, RequestId(0), login, T0);
    drain(&mut hub);
    let done = HashDone {
        req: (1, RequestId(0)),
        user: user("alice"),
        outcome: HashOutcome::Checked(true),
        purpose: HashPurpose::Login,
    };
    hub.handle_hashed(done, T0);
    drain(&mut hub);
    hub
}

/// What the hub asks for until it is quiet: the writes it would commit, and the
/// final replies it gives.
fn drain(hub: &mut Hub) -> (usize, Vec<Result<OkReply, ErrorCode>>) {
    let (mut writes, mut replies) = (0, Vec::new());
    while let Some(out) = hub.poll_output() {
        match out {
            Output::Commit(batch) => {
                writes += batch.writes.len();
                // Its reads are answered as an empty store would.
                let reads = batch
                    .reads
                    .iter()
                    .map(|(t, read)| {
                        let found = match read {
                            Read::History(_) => ReadResult::History(Default::default()),
                            Read::Unread(q) => ReadResult::Unread(vec![0; q.convs.len()]),
                        };
                        (*t, Ok(found))
                    })
                    .collect();
                hub.handle_committed(batch.id, Ok(()), reads, Vec::new(), T0);
            }
            Output::Deliver { batch, share, .. } => {
                for d in batch.share(&share) {
                    match d {
                        Delivery::Reply { result, .. } => {
                            let result = batch.result(*result).expect("a routed result");
                            replies.push(result.clone().map_err(|f| f.code));
                        }
                        Delivery::List(l) => {
                            let l = batch.list(*l).expect("a routed list");
                            replies.push(l.result.clone().map_err(|f| f.code));
                        }
                        Delivery::Frame { .. } | Delivery::Close(_) => {}
                    }
                }
            }
            _ => {}
        }
    }
    (writes, replies)
}

/// A command of each verb a damaged store still serves.
fn reading(verb: Verb) -> Command {
    let file = FileId::new("f1").unwrap();
    let conv = "#rust".parse().unwrap();
    match verb {
        Verb::Hello => Command::Hello { versions: Versions::new(vec![1]).unwrap(), client: None },
        Verb::Login => {
            Command::Login { user: user("alice"), password: Password::new("pw").unwrap() }
        }
        Verb::Logout => Command::Logout { revoke: false },
        Verb::Auth => Command::Auth {
            user: user("alice"),
            token: 1,
            secret: baatkaro_proto::TokenSecret([1; 32]),
        },
        Verb::Tokens => Command::Tokens,
        Verb::Ping => Command::Ping,
        Verb::Groups => Command::Groups,
        Verb::Conversations => Command::Conversations,
        Verb::Members => Command::Members { group: rust() },
        Verb::Online => Command::Online { group: None },
        Verb::Requests => Command::Requests { group: rust() },
        Verb::Bans => Command::Bans { group: rust() },
        Verb::History => Command::History { conv, range: HistoryRange::After(0), limit: 10 },
        Verb::Files => Command::Files { conv },
        Verb::FileGet => Command::FileGet { file, offset: 0, length: 0 },
        Verb::FileStatus => Command::FileStatus { file },
        other => panic!("{other} is served while damaged: add a command for it here"),
    }
}

#[test]
fn what_a_damaged_store_serves_writes_nothing() {
    let mut hub = hub();
    hub.handle_damaged();
    for (n, verb) in Verb::ALL.iter().copied().filter(|v| served_while_damaged(*v)).enumerate() {
        hub.handle_request(1, RequestId(10 + n as u64), reading(verb), T0);
        let (writes, _) = drain(&mut hub);
        assert_eq!(writes, 0, "{verb} staged a write on a damaged store");
    }
    // The housekeeping of an hour stages nothing either.
    hub.handle_timeout(T0 + 3_600_000);
    assert_eq!(drain(&mut hub).0, 0);
}

#[test]
fn what_would_write_is_refused_with_store_damaged_and_writes_nothing() {
    let mut hub = hub();
    let send = |key: &str| Command::Send {
        to: "#rust".parse().unwrap(),
        key: key.parse().unwrap(),
        text: Text::new("hello").unwrap(),
    };
    hub.handle_request(1, RequestId(1), send("k1"), T0);
    let (writes, replies) = drain(&mut hub);
    assert!(writes > 0 && matches!(replies[..], [Ok(OkReply::Send { .. })]), "{replies:?}");

    hub.handle_damaged();
    let refused = [
        send("k2"),
        Command::Create { group: "go".parse().unwrap(), rule: None },
        Command::Delete { group: rust() },
        Command::FileCancel { file: FileId::new("f1").unwrap() },
        // It forgets the session's token: a write, unlike a plain LOGOUT.
        Command::Logout { revoke: true },
    ];
    for (n, command) in refused.into_iter().enumerate() {
        hub.handle_request(1, RequestId(2 + n as u64), command, T0);
        let (writes, replies) = drain(&mut hub);
        assert_eq!((writes, &replies[..]), (0, &[Err(ErrorCode::StoreDamaged)][..]));
    }
    assert_eq!(hub.take_refused(), 5);
    assert!(hub.is_damaged());
}
