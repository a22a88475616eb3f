//! A hub that reloads its state after a failed commit (SPEC.md 5.2): the
//! idempotency keys it loads back are found under the same digests as the keys
//! its users send afterwards, and a connection whose account the store does not
//! hold is no longer taken for it.

// Test code: a failed unwrap or assertion is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use baatkaro_hub::store::{Batch, ConvKey, Read, ReadResult, Snapshot, StoreFault, TokenRecord};
use baatkaro_hub::{
    Delivery, HashDone, HashOutcome, HashPurpose, Hub, HubConfig, IN_FLIGHT, Output,
};
use baatkaro_proto::delivery::fingerprint;
use baatkaro_proto::group::{GroupEvent, GroupId};
use baatkaro_proto::session::RequestId;
use baatkaro_proto::{
    Address, Command, Conversation, DoneVerb, ErrorCode, GroupName, HistoryRange, JoinRule, Limits,
    Millis, OkReply, Password, Text, TokenSecret, UserName,
};
use sha2::Digest;

const T0: Millis = 1_764_072_000_000;

/// Unpredictable enough for a test: no two fills alike, none of them a constant a
/// digest seed could be mistaken for.
#[derive(Debug)]
struct Counting(u8);

impl baatkaro_hub::Entropy for Counting {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        for b in buf {
            self.0 = self.0.wrapping_mul(31).wrapping_add(17);
            *b = self.0;
        }
        Ok(())
    }
}

fn user(s: &str) -> UserName {
    s.parse().unwrap()
}

fn rust() -> GroupName {
    "rust".parse().unwrap()
}

fn conv() -> Conversation {
    "#rust".parse().unwrap()
}

/// alice, the owner of `rust`, and the keys and sequence numbers given.
fn snapshot(keys: Vec<(&str, &str, u64, Millis)>, latest: u64) -> Snapshot {
    Snapshot {
        users: vec![(user("alice"), "stored".into())],
        groups: vec![(
            GroupId(1),
            rust(),
            vec![GroupEvent::Created { owner: user("alice"), rule: JoinRule::Approval }],
        )],
        latest: vec![(ConvKey::Group(GroupId(1)), latest)],
        keys: keys
            .into_iter()
            .map(|(key, text, seq, time)| {
                let fp = fingerprint(&conv(), text.as_bytes());
                (user("alice"), key.parse().unwrap(), conv(), fp, seq, time)
            })
            .collect(),
        next_group_id: 2,
        ..Snapshot::default()
    }
}

/// What the hub asks for until it is quiet, each commit answered with `commit`:
/// the final replies it gives, and whether it asked to reload.
fn drain(
    hub: &mut Hub,
    commit: impl Fn() -> Result<(), StoreFault>,
    now: Millis,
) -> (Vec<Result<OkReply, ErrorCode>>, bool) {
    let (mut replies, mut load) = (Vec::new(), false);
    let mut rounds = 0;
    while let Some(out) = hub.poll_output() {
        rounds += 1;
        assert!(rounds < 10_000, "the hub never goes quiet");
        match out {
            Output::Commit(batch) => {
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
                hub.handle_committed(batch.id, commit(), reads, Vec::new(), now);
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
            Output::Load { .. } => load = true,
            _ => {}
        }
    }
    (replies, load)
}

/// A hub over `snapshot` at `T0`, its entropy seeded with `seed`, with `conns`
/// connected from loopback.
fn hub_with(snapshot: Snapshot, seed: u8, conns: &[u64]) -> Hub {
    let cfg = HubConfig::new(Limits::default());
    let mut hub = Hub::new(cfg, snapshot, T0, 7, Box::new(Counting(seed))).unwrap();
    for &conn in conns {
        hub.handle_connected(conn, "127.0.0.1".parse().unwrap());
    }
    hub
}

/// The hub's next commit fails: its one final reply is INTERNAL, the hub asks to
/// reload, and it reloads `snapshot`.
fn fail_and_reload(hub: &mut Hub, snapshot: Snapshot, now: Millis) {
    let (replies, load) = drain(hub, || Err(StoreFault::Failed("test".into())), now);
    assert_eq!(replies, [Err(ErrorCode::Internal)]);
    assert!(load, "no reload asked for");
    hub.handle_loaded(Ok(snapshot), now);
    drain(hub, || Ok(()), now);
}

fn send(key: &str, text: &str) -> Command {
    Command::Send { to: conv(), key: key.parse().unwrap(), text: Text::new(text).unwrap() }
}

/// A send under a key from before a reload is a retry after it (the original's
/// sequence number and time) and a different send under it a conflict: the keys
/// loaded back are digested as the ones sent later are (fails if the reload
/// digests them with any seed other than the one the hub started with).
#[test]
fn keys_loaded_back_after_a_failed_commit_still_answer_retries() {
    let mut hub = hub_with(snapshot(vec![], 1), 3, &[1]);
    let login = Command::Login { user: user("alice"), password: Password::new("pw").unwrap() };
    hub.handle_request(1, RequestId(0), login, T0);
    drain(&mut hub, || Ok(()), T0);
    let purpose = HashPurpose::Login;
    let outcome = HashOutcome::Checked(true);
    let done = HashDone { req: (1, RequestId(0)), user: user("alice"), outcome, purpose };
    hub.handle_hashed(done, T0);
    drain(&mut hub, || Ok(()), T0);

    hub.handle_request(1, RequestId(1), send("k1", "hello"), T0);
    let (replies, _) = drain(&mut hub, || Ok(()), T0);
    let [Ok(OkReply::Send { seq, time, .. })] = replies[..] else { panic!("{replies:?}") };
    assert_eq!(time, T0);

    // The next commit fails: the hub answers INTERNAL and reloads what the store
    // holds, k1 with it.
    let t1 = T0 + 1_000;
    hub.handle_request(1, RequestId(2), send("k2", "again"), t1);
    fail_and_reload(&mut hub, snapshot(vec![("k1", "hello", seq, T0)], seq), t1);

    let t2 = T0 + 2_000;
    hub.handle_request(1, RequestId(3), send("k1", "hello"), t2);
    let (replies, _) = drain(&mut hub, || Ok(()), t2);
    let [Ok(OkReply::Send { seq: again, time: at, .. })] = replies[..] else {
        panic!("{replies:?}")
    };
    assert_eq!((again, at), (seq, T0), "a retry after the reload was stored anew");
    hub.handle_request(1, RequestId(4), send("k1", "not hello"), t2);
    let (replies, _) = drain(&mut hub, || Ok(()), t2);
    assert_eq!(replies, [Err(ErrorCode::KeyConflict)]);
}

/// Answers a REGISTER's hashing, as the shell does.
fn registered(hub: &mut Hub, conn: u64, id: u64, name: &str, now: Millis) {
    let done = HashDone {
        req: (conn, RequestId(id)),
        user: user(name),
        outcome: HashOutcome::Hashed(Ok("hashed".into())),
        purpose: HashPurpose::Register,
    };
    hub.handle_hashed(done, now);
}

/// A REGISTER in a batch that failed leaves its connection not logged in: after the
/// reload (whose snapshot has no such account), a request the connection sends is
/// not served as the account, not even once someone else has registered the name
/// (fails if the reload keeps the connection's user).
#[test]
fn a_registration_lost_in_a_failed_commit_logs_its_connection_out() {
    let mut hub = hub_with(snapshot(vec![], 0), 5, &[1, 2]);
    let register =
        || Command::Register { user: user("bob"), password: Password::new("pw").unwrap() };
    hub.handle_request(1, RequestId(0), register(), T0);
    drain(&mut hub, || Ok(()), T0);
    registered(&mut hub, 1, 0, "bob", T0);
    fail_and_reload(&mut hub, snapshot(vec![], 0), T0);

    // Someone else registers the name on another connection, and it holds.
    let t1 = T0 + 1_000;
    hub.handle_request(2, RequestId(0), register(), t1);
    drain(&mut hub, || Ok(()), t1);
    registered(&mut hub, 2, 0, "bob", t1);
    let (replies, _) = drain(&mut hub, || Ok(()), t1);
    assert_eq!(replies, [Ok(OkReply::Register { user: user("bob") })]);

    // The first connection is nobody.
    let to_alice = Command::Send {
        to: Conversation::Direct(user("alice")),
        key: "k1".parse().unwrap(),
        text: Text::new("hi").unwrap(),
    };
    hub.handle_request(1, RequestId(1), to_alice, t1);
    let (replies, _) = drain(&mut hub, || Ok(()), t1);
    assert_eq!(replies, [Err(ErrorCode::AuthRequired)]);
}

/// Logs connection `conn` in as alice (request `id`): the LOGIN and its hashing.
fn log_in_alice(hub: &mut Hub, conn: u64, id: u64, now: Millis) {
    let login = Command::Login { user: user("alice"), password: Password::new("pw").unwrap() };
    hub.handle_request(conn, RequestId(id), login, now);
    drain(hub, || Ok(()), now);
    let outcome = HashOutcome::Checked(true);
    let purpose = HashPurpose::Login;
    hub.handle_hashed(
        HashDone { req: (conn, RequestId(id)), user: user("alice"), outcome, purpose },
        now,
    );
}

/// How many events the hub hands connection `conn` until it is quiet (commits
/// succeed).
fn frames_to(hub: &mut Hub, conn: u64) -> usize {
    let mut frames = 0;
    for _ in 0..10_000 {
        let Some(out) = hub.poll_output() else { return frames };
        match out {
            Output::Commit(batch) => {
                hub.handle_committed(batch.id, Ok(()), Vec::new(), Vec::new(), T0)
            }
            Output::Deliver { conn: to, batch, share } if to == conn => {
                let share = batch.share(&share);
                frames += share.iter().filter(|d| matches!(d, Delivery::Frame { .. })).count();
            }
            _ => {}
        }
    }
    panic!("the hub never goes quiet")
}

/// A LOGIN answered in a batch that failed is answered INTERNAL, so its session is
/// not logged in (and may log in again): the reload logs its connection out too,
/// though the account is still there. Else the connection stays among alice's
/// sessions: it gets her events while not logged in, and once it logs in again it
/// is among them twice and gets each event twice (fails without logging it out).
#[test]
fn a_login_lost_in_a_failed_commit_logs_its_connection_out() {
    let mut hub = hub_with(snapshot(vec![], 0), 9, &[1, 2]);
    // The LOGIN writes its new address down, in the batch that fails.
    log_in_alice(&mut hub, 1, 0, T0);
    fail_and_reload(&mut hub, snapshot(vec![], 0), T0);

    // alice, on another connection, sends to #rust: the first one is nobody.
    let t1 = T0 + 1_000;
    log_in_alice(&mut hub, 2, 0, t1);
    drain(&mut hub, || Ok(()), t1);
    hub.handle_request(2, RequestId(1), send("k1", "hi"), t1);
    assert_eq!(frames_to(&mut hub, 1), 0, "an event for a session that is not logged in");

    // It logs in again, and sends: its message reaches it once.
    log_in_alice(&mut hub, 1, 1, t1);
    drain(&mut hub, || Ok(()), t1);
    hub.handle_request(1, RequestId(2), send("k2", "again"), t1);
    assert_eq!(frames_to(&mut hub, 1), 1, "a session gets its message more than once");
}

/// Connection `conn` (logged in as alice) deletes her account (request `id`): the
/// DELETE-ACCOUNT and its password check, which stages the deletion.
fn delete_alice(hub: &mut Hub, conn: u64, id: u64, now: Millis) {
    let delete = Command::DeleteAccount { password: Password::new("pw").unwrap() };
    hub.handle_request(conn, RequestId(id), delete, now);
    drain(hub, || Ok(()), now);
    let done = HashDone {
        req: (conn, RequestId(id)),
        user: user("alice"),
        outcome: HashOutcome::Checked(true),
        purpose: HashPurpose::DeleteAccount,
    };
    hub.handle_hashed(done, now);
}

/// A DELETE-ACCOUNT answered in a batch that failed is answered INTERNAL: the
/// account is still there after the reload, and its session, still logged in as
/// it, is served as it (fails if the deletion's logging out of the connection
/// outlives the failed commit: its next SEND is refused AUTH_REQUIRED).
#[test]
fn a_deletion_lost_in_a_failed_commit_keeps_its_connection_logged_in() {
    let mut hub = hub_with(snapshot(vec![], 0), 11, &[1]);
    log_in_alice(&mut hub, 1, 0, T0);
    let (replies, _) = drain(&mut hub, || Ok(()), T0);
    assert_eq!(replies, [Ok(OkReply::Login { user: user("alice") })]);

    delete_alice(&mut hub, 1, 1, T0);
    fail_and_reload(&mut hub, snapshot(vec![], 0), T0);

    let t1 = T0 + 1_000;
    hub.handle_request(1, RequestId(2), send("k1", "still here"), t1);
    let (replies, _) = drain(&mut hub, || Ok(()), t1);
    let [Ok(OkReply::Send { seq: 1, .. })] = replies[..] else { panic!("{replies:?}") };
}

/// The secret of alice's token 5 in [`with_token`].
const SECRET: TokenSecret = TokenSecret([7; 32]);

/// `snap` with alice holding token 5 (secret [`SECRET`]).
fn with_token(mut snap: Snapshot) -> Snapshot {
    snap.tokens.push(TokenRecord {
        id: 5,
        user: user("alice"),
        digest: sha2::Sha256::digest(SECRET.0).into(),
        label: Text::new("phone").unwrap(),
        created: T0,
        used: T0,
        address: Address::from("127.0.0.1".parse::<std::net::IpAddr>().unwrap()),
    });
    snap.next_token_id = 6;
    snap
}

fn auth_alice() -> Command {
    Command::Auth { user: user("alice"), token: 5, secret: SECRET }
}

/// A DELETE-ACCOUNT lost in a failed commit gives its connection back all it had:
/// after the reload it is among alice's sessions again (its own message reaches
/// it), and the token it logged in with is still its own, so that its LOGOUT
/// revoke revokes that token (fails if the deletion forgets the connection's
/// token: the LOGOUT revokes nothing and the token still logs in after it; or if
/// the connection is not given its account back).
#[test]
fn a_deletion_lost_in_a_failed_commit_keeps_its_sessions_token() {
    let mut hub = hub_with(with_token(snapshot(vec![], 0)), 13, &[1, 2]);
    hub.handle_request(1, RequestId(0), auth_alice(), T0);
    let (replies, _) = drain(&mut hub, || Ok(()), T0);
    assert_eq!(replies, [Ok(OkReply::Auth { user: user("alice") })]);

    delete_alice(&mut hub, 1, 1, T0);
    fail_and_reload(&mut hub, with_token(snapshot(vec![], 0)), T0);

    // Among alice's sessions again: its message to #rust reaches it.
    let t1 = T0 + 1_000;
    hub.handle_request(1, RequestId(2), send("k1", "still here"), t1);
    assert_eq!(frames_to(&mut hub, 1), 1, "the connection is not among alice's sessions");

    // Its LOGOUT revoke revokes the token it logged in with: the token logs in no more.
    hub.handle_request(1, RequestId(3), Command::Logout { revoke: true }, t1);
    let (replies, _) = drain(&mut hub, || Ok(()), t1);
    assert_eq!(replies, [Ok(OkReply::Done { verb: DoneVerb::Logout })]);
    hub.handle_request(2, RequestId(0), auth_alice(), t1);
    let (replies, _) = drain(&mut hub, || Ok(()), t1);
    assert_eq!(replies, [Err(ErrorCode::AuthFailed)], "the token outlived its LOGOUT revoke");
}

/// What the hub asks for until it is quiet, no commit answered: the batches it sends
/// the store, the final replies it gives, and whether it asked to reload.
fn outputs(hub: &mut Hub) -> (Vec<Batch>, Vec<Result<OkReply, ErrorCode>>, bool) {
    let (mut batches, mut replies, mut load) = (Vec::new(), Vec::new(), false);
    for _ in 0..10_000 {
        let Some(out) = hub.poll_output() else { return (batches, replies, load) };
        match out {
            Output::Commit(batch) => batches.push(batch),
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
            Output::Load { .. } => load = true,
            _ => {}
        }
    }
    panic!("the hub never goes quiet")
}

/// One batch at the store at a time ([`IN_FLIGHT`]): a SEND and a HISTORY that come
/// while it commits wait in the open batch. When that commit fails, the open batch
/// is void too: both are answered `INTERNAL` with the failed batch's SEND, and none
/// of its writes or reads reaches the store, during the reload or after it, where a
/// SEND under the same key is a new message (fails if the open batch goes to the
/// store beside the one committing, or outlives the failure).
#[test]
fn a_failed_commit_voids_the_open_batch_gathered_behind_it() {
    assert_eq!(IN_FLIGHT, 1);
    let mut hub = hub_with(snapshot(vec![], 0), 11, &[1]);
    log_in_alice(&mut hub, 1, 0, T0);
    drain(&mut hub, || Ok(()), T0);

    hub.handle_request(1, RequestId(1), send("k1", "one"), T0);
    let (mut batches, replies, _) = outputs(&mut hub);
    assert_eq!((batches.len(), replies.len()), (1, 0), "k1's batch, held at the store");
    let held = batches.remove(0);

    let history = Command::History { conv: conv(), range: HistoryRange::Last, limit: 10 };
    hub.handle_request(1, RequestId(2), send("k2", "two"), T0);
    hub.handle_request(1, RequestId(3), history, T0);
    let (batches, replies, _) = outputs(&mut hub);
    assert!(batches.is_empty(), "a second batch at the store: {batches:?}");
    assert!(replies.is_empty(), "{replies:?}");

    let failed = || Err(StoreFault::Failed("test".into()));
    hub.handle_committed(held.id, failed(), Vec::new(), held.writes, T0);
    let (batches, replies, load) = outputs(&mut hub);
    assert!(batches.is_empty(), "a batch sent while reloading: {batches:?}");
    assert_eq!(replies, vec![Err(ErrorCode::Internal); 3]);
    assert!(load && !hub.accepting(), "no reload asked for");

    let t1 = T0 + 1_000;
    hub.handle_loaded(Ok(snapshot(vec![], 0)), t1);
    let (batches, _, _) = outputs(&mut hub);
    assert!(batches.is_empty(), "the void open batch went to the store: {batches:?}");
    assert!(hub.accepting());
    hub.handle_request(1, RequestId(4), send("k2", "two"), t1);
    let (replies, _) = drain(&mut hub, || Ok(()), t1);
    let [Ok(OkReply::Send { seq: 1, time, .. })] = replies[..] else { panic!("{replies:?}") };
    assert_eq!(time, t1, "k2 was stored before the reload");
}

/// FILE-OFFER of `size` bytes said to hash to `sha` (all bytes alike), to `#rust`.
fn offer(size: u64, sha: u8) -> Command {
    Command::FileOffer {
        to: conv(),
        name: baatkaro_proto::OfferName::new("notes.bin").unwrap(),
        size,
        sha256: baatkaro_proto::Sha256([sha; 32]),
    }
}

/// A file id handed out before a reload is not handed out again after it: an
/// upload offered in a batch that failed is not in the snapshot reloaded, so its
/// bytes are dropped in the background, and a new upload given the same id would
/// lose its bytes to that drop (fails if the reload starts the ids over).
#[test]
fn a_file_id_given_before_a_reload_is_not_given_again() {
    let mut hub = hub_with(snapshot(vec![], 0), 9, &[1]);
    let login = Command::Login { user: user("alice"), password: Password::new("pw").unwrap() };
    hub.handle_request(1, RequestId(0), login, T0);
    drain(&mut hub, || Ok(()), T0);
    let outcome = HashOutcome::Checked(true);
    let purpose = HashPurpose::Login;
    let done = HashDone { req: (1, RequestId(0)), user: user("alice"), outcome, purpose };
    hub.handle_hashed(done, T0);
    drain(&mut hub, || Ok(()), T0);

    // The offer's batch fails: answered INTERNAL, the upload not in what reloads.
    hub.handle_request(1, RequestId(1), offer(1_000, 1), T0);
    let (replies, load) = drain(&mut hub, || Err(StoreFault::Failed("test".into())), T0);
    assert_eq!(replies, [Err(ErrorCode::Internal)]);
    assert!(load, "no reload asked for");
    hub.handle_loaded(Ok(snapshot(vec![], 0)), T0);
    let mut dropped = Vec::new();
    while let Some(out) = hub.poll_output() {
        if let Output::Disk(baatkaro_hub::DiskJob::Drop { file, .. }) = out {
            dropped.push(file);
        }
        assert!(dropped.len() < 100, "the hub never goes quiet");
    }
    assert_eq!(dropped.len(), 1, "the lost upload's bytes are dropped: {dropped:?}");

    hub.handle_request(1, RequestId(2), offer(2_000, 2), T0);
    let (replies, _) = drain(&mut hub, || Ok(()), T0);
    let [Ok(OkReply::FileOffer { file, .. })] = &replies[..] else { panic!("{replies:?}") };
    assert_ne!(*file, dropped[0], "the new upload has the id whose bytes are being dropped");
}
