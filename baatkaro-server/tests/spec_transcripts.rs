//! SPEC.md's example transcripts, replayed against the real server.
//!
//! Each transcript of sections 2 to 8 runs on a server prepared so that the story
//! the transcript assumes is true (who exists, who is a member, how many events a
//! conversation already has). Its `C:` frames are sent in order, each to the session
//! the transcript's comments name; every `S:` frame must arrive on that session.
//! Times, which the spec writes as fixed examples, are compared as "a time", and
//! `retry=` hints as "a hint". A session may receive untagged events the excerpt
//! does not show (presence, earlier events of a story), but every tagged frame must
//! be exactly the one shown, in order.
//!
//! File ids and token secrets, which the server makes up, are mapped: the id in the
//! spec's FILE-OFFER reply (the secret in its TOKEN reply) stands for the one the
//! server gave, in what the client sends after it and in what the server sends.
//!
//! Left out: section 7, whose examples are single events with no request to send
//! (the proto crate's tests check that they decode).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use baatkaro_proto::{Command, Encode, JoinRule, Password, ServerFrame};
use common::{Client, Endpoint, TestServer, config, user};

const SPEC: &str = include_str!("../../SPEC.md");

/// One step of a transcript.
#[derive(Debug, Clone)]
enum Step {
    /// A `#` line.
    Comment(String),
    /// A client frame's bytes, payload included.
    Client(Vec<u8>),
    /// A server frame as text, payload included, CRLF after each line.
    Server(String),
}

/// A transcript: the section it stands in, its first line in SPEC.md, its steps.
#[derive(Debug)]
struct Transcript {
    section: String,
    line: usize,
    steps: Vec<Step>,
}

/// The declared payload length at the end of a line, if any.
fn marker(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind(" {")?;
    inner[open + 2..].parse().ok()
}

fn transcripts() -> Vec<Transcript> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut current: Option<Transcript> = None;
    // A C:/S: line that declared a payload: the next line of the same side is it.
    let mut payload_of: Option<char> = None;
    for (n, line) in SPEC.lines().enumerate() {
        if let Some(h) = line.strip_prefix("### ") {
            section = h.split_whitespace().next().unwrap_or_default().to_string();
        } else if let Some(h) = line.strip_prefix("## ") {
            section =
                h.split_whitespace().next().unwrap_or_default().trim_end_matches('.').to_string();
        }
        if line.starts_with("```") {
            match current.take() {
                Some(t) if t.steps.iter().any(|s| matches!(s, Step::Client(_))) => out.push(t),
                Some(_) => {}
                None => {
                    current = Some(Transcript {
                        section: section.clone(),
                        line: n + 1,
                        steps: Vec::new(),
                    })
                }
            }
            continue;
        }
        let Some(t) = current.as_mut() else { continue };
        let (side, rest) = match line.split_at_checked(3) {
            Some(("C: ", rest)) => ('C', rest),
            Some(("S: ", rest)) => ('S', rest),
            _ => {
                if let Some(c) = line.strip_prefix("# ") {
                    t.steps.push(Step::Comment(c.to_string()));
                }
                continue;
            }
        };
        if payload_of == Some(side) {
            payload_of = None;
            match t.steps.last_mut() {
                Some(Step::Client(bytes)) => {
                    bytes.extend_from_slice(format!("{rest}\r\n").as_bytes())
                }
                Some(Step::Server(text)) => text.push_str(&format!("{rest}\r\n")),
                _ => unreachable!("a payload follows its frame"),
            }
            continue;
        }
        payload_of = marker(rest).map(|_| side);
        match side {
            'C' => t.steps.push(Step::Client(format!("{rest}\r\n").into_bytes())),
            _ => t.steps.push(Step::Server(format!("{rest}\r\n"))),
        }
    }
    out
}

/// Times become `<T>` and retry hints `retry=<N>`: the spec's are examples.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.split("\r\n").enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let words: Vec<String> = line
            .split(' ')
            .map(|w| {
                if w.len() == 13 && w.bytes().all(|b| b.is_ascii_digit()) {
                    "<T>".into()
                } else if w.starts_with("retry=") {
                    "retry=<N>".into()
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
    }
    out
}

/// What a transcript needs before it starts: its sessions, by name, and the first
/// one to speak.
struct Stage {
    sessions: HashMap<String, Client>,
    first: &'static str,
    /// Actions to take just before the client frame with this tag is sent.
    hooks: Vec<(&'static str, Hook)>,
}

#[derive(Clone, Copy)]
enum Hook {
    /// This user asks to join this group.
    Join(&'static str, &'static str),
}

fn g(s: &str) -> baatkaro_proto::GroupName {
    s.parse().unwrap()
}

async fn logged_in(addr: Endpoint, names: &[&str]) -> HashMap<String, Client> {
    let mut out = HashMap::new();
    for name in names {
        out.insert(name.to_string(), Client::register(addr, name).await);
    }
    out
}

async fn create(c: &mut Client, group: &str, rule: JoinRule) {
    c.ok(Command::Create { group: g(group), rule: Some(rule) }).await;
}

async fn join(c: &mut Client, group: &str) {
    c.ok(Command::Join { group: g(group), reason: None }).await;
}

/// `n` messages from `c` to `to`.
async fn fill(c: &mut Client, to: &str, n: usize) {
    // Every key is new: a reused one would be a retry, and store nothing.
    static KEYS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    for _ in 0..n {
        let k = KEYS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        c.say(to, &format!("fill-{k}"), "filler").await;
    }
}

/// Prepares the server for the transcript at `section`/`line`.
async fn stage(section: &str, first_client_line: &str, addr: Endpoint) -> Stage {
    let none = Vec::new();
    match section {
        "2.2" | "3" | "8" => {
            let mut s = logged_in(addr, &["alice", "gopher"]).await;
            create(s.get_mut("alice").unwrap(), "rust", JoinRule::Approval).await;
            create(s.get_mut("gopher").unwrap(), "go", JoinRule::Approval).await;
            Stage { sessions: s, first: "alice", hooks: none }
        }
        "4.2" => {
            let s = HashMap::from([("client".to_string(), Client::connect(addr).await)]);
            Stage { sessions: s, first: "client", hooks: none }
        }
        "4.3" => {
            let mut c = Client::connect(addr).await;
            c.hello().await;
            Stage {
                sessions: HashMap::from([("client".to_string(), c)]),
                first: "client",
                hooks: none,
            }
        }
        "4.4" => {
            let mut r = Client::connect(addr).await;
            r.hello().await;
            r.ok(Command::Register {
                user: user("alice"),
                password: Password::new("correct-pass").unwrap(),
            })
            .await;
            let mut c = Client::connect(addr).await;
            c.hello().await;
            Stage {
                sessions: HashMap::from([("client".to_string(), c)]),
                first: "client",
                hooks: none,
            }
        }
        "4.5" | "4.6" | "4.7" | "6.1" => {
            Stage { sessions: logged_in(addr, &["alice"]).await, first: "alice", hooks: none }
        }
        "6.2" => {
            let mut s = logged_in(addr, &["alice", "bob", "carol"]).await;
            let alice = s.get_mut("alice").unwrap();
            create(alice, "rust", JoinRule::Approval).await;
            fill(alice, "#rust", 1).await;
            Stage { sessions: s, first: "bob", hooks: vec![("r1", Hook::Join("carol", "rust"))] }
        }
        "4.8" => {
            let mut s = logged_in(addr, &["alice", "carol"]).await;
            create(s.get_mut("alice").unwrap(), "rust", JoinRule::Open).await;
            join(s.get_mut("carol").unwrap(), "rust").await;
            let alice = s.get_mut("alice").unwrap();
            alice.ok(Command::Promote { group: g("rust"), user: user("carol") }).await;
            Stage { sessions: s, first: "alice", hooks: none }
        }
        "6.3" | "6.4" => {
            let mut s = logged_in(addr, &["alice", "bob", "erin", "dave"]).await;
            create(s.get_mut("alice").unwrap(), "rust", JoinRule::Approval).await;
            join(s.get_mut("bob").unwrap(), "rust").await;
            let alice = s.get_mut("alice").unwrap();
            alice.ok(Command::Approve { group: g("rust"), user: user("bob") }).await;
            fill(alice, "#rust", 1).await;
            join(s.get_mut("erin").unwrap(), "rust").await;
            if section == "6.4" {
                let alice = s.get_mut("alice").unwrap();
                alice.ok(Command::Approve { group: g("rust"), user: user("erin") }).await;
                alice.ok(Command::Invite { group: g("rust"), user: user("dave") }).await;
                s.get_mut("dave").unwrap().ok(Command::Accept { group: g("rust") }).await;
            }
            Stage { sessions: s, first: "alice", hooks: none }
        }
        "6.5" if first_client_line.starts_with("l8 ") => {
            // On a server that keeps ten events per conversation: see `run`.
            let mut s = logged_in(addr, &["alice", "bob", "carol", "dave"]).await;
            create(s.get_mut("alice").unwrap(), "rust", JoinRule::Open).await;
            for name in ["bob", "carol", "dave"] {
                join(s.get_mut(name).unwrap(), "rust").await;
            }
            fill(s.get_mut("alice").unwrap(), "#rust", 87).await;
            s.get_mut("dave").unwrap().say("#rust", "d", "ok").await;
            s.get_mut("bob").unwrap().say("#rust", "b", "sure").await;
            s.get_mut("carol").unwrap().say("#rust", "c", "see ya").await;
            fill(s.get_mut("alice").unwrap(), "#rust", 7).await;
            Stage { sessions: s, first: "alice", hooks: none }
        }
        "6.5" | "6.6" => {
            let mut s = logged_in(addr, &["alice", "bob", "carol", "gopher"]).await;
            // rust: JOINED bob (1), ROLE (2), 38 messages, bob's (41), JOINED carol (42).
            create(s.get_mut("alice").unwrap(), "rust", JoinRule::Approval).await;
            join(s.get_mut("bob").unwrap(), "rust").await;
            s.get_mut("alice")
                .unwrap()
                .ok(Command::Approve { group: g("rust"), user: user("bob") })
                .await;
            s.get_mut("alice")
                .unwrap()
                .ok(Command::Promote { group: g("rust"), user: user("bob") })
                .await;
            fill(s.get_mut("bob").unwrap(), "#rust", 38).await;
            s.get_mut("bob").unwrap().say("#rust", "gm", "good morning").await;
            join(s.get_mut("carol").unwrap(), "rust").await;
            s.get_mut("alice")
                .unwrap()
                .ok(Command::Approve { group: g("rust"), user: user("carol") })
                .await;
            // go: an open group of twelve that alice is invited to.
            create(s.get_mut("gopher").unwrap(), "go", JoinRule::Open).await;
            for i in 0..11 {
                let mut c = Client::register(addr, &format!("go{i}")).await;
                join(&mut c, "go").await;
            }
            s.get_mut("gopher")
                .unwrap()
                .ok(Command::Invite { group: g("go"), user: user("alice") })
                .await;
            fill(s.get_mut("bob").unwrap(), "@alice", 5).await;
            s.get_mut("bob").unwrap().say("@alice", "hi", "hi!").await;
            s.get_mut("alice").unwrap().say("@bob", "hello", "hello").await;
            if section == "6.5" {
                s.remove("bob"); // bob is offline in this example
            }
            Stage { sessions: s, first: "alice", hooks: none }
        }
        "6.7" => {
            // alice shares in rust as its 44th event: bob joined, then 42 messages.
            let mut s = logged_in(addr, &["alice", "bob"]).await;
            create(s.get_mut("alice").unwrap(), "rust", JoinRule::Open).await;
            join(s.get_mut("bob").unwrap(), "rust").await;
            fill(s.get_mut("bob").unwrap(), "#rust", 42).await;
            Stage { sessions: s, first: "alice", hooks: none }
        }
        "6.8" => {
            // rust: JOINED bob (1), three messages of bob's (2-4), one of alice's (5);
            // @bob: two messages of bob's. alice also has another session.
            let mut s = logged_in(addr, &["alice", "bob"]).await;
            create(s.get_mut("alice").unwrap(), "rust", JoinRule::Open).await;
            join(s.get_mut("bob").unwrap(), "rust").await;
            fill(s.get_mut("bob").unwrap(), "#rust", 3).await;
            fill(s.get_mut("alice").unwrap(), "#rust", 1).await;
            fill(s.get_mut("bob").unwrap(), "@alice", 2).await;
            s.insert("alice:other".into(), Client::login(addr, "alice").await);
            Stage { sessions: s, first: "alice", hooks: none }
        }
        "6.9" => {
            // rust (open): JOINED bob, carol, erin, mallory (1-4), ROLE bob (5), BANNED
            // erin by alice (6), BANNED mallory by bob (7).
            let mut s = logged_in(addr, &["alice", "bob", "carol", "erin", "mallory"]).await;
            create(s.get_mut("alice").unwrap(), "rust", JoinRule::Open).await;
            for name in ["bob", "carol", "erin", "mallory"] {
                join(s.get_mut(name).unwrap(), "rust").await;
            }
            let alice = s.get_mut("alice").unwrap();
            alice.ok(Command::Promote { group: g("rust"), user: user("bob") }).await;
            alice.ok(Command::Kick { group: g("rust"), user: user("erin"), ban: true }).await;
            let bob = s.get_mut("bob").unwrap();
            bob.ok(Command::Kick { group: g("rust"), user: user("mallory"), ban: true }).await;
            Stage { sessions: s, first: "alice", hooks: none }
        }
        other => panic!("no stage for the transcript of section {other}"),
    }
}

/// The session a comment switches to, if it names one.
fn session_of(comment: &str) -> Option<String> {
    if comment.starts_with("another connection") {
        return Some(format!("another:{}", comment.contains("after its HELLO")));
    }
    if let Some(at) = comment.find("'s other session") {
        let name = comment[..at].rsplit(' ').next()?;
        return Some(format!("{name}:other"));
    }
    let at = comment.find("'s session")?;
    let name = comment[..at].rsplit(' ').next()?;
    Some(name.to_string())
}

/// The file id of a FILE-OFFER reply, or the secret of a TOKEN reply: the value the
/// server makes up.
fn offered_id(frame: &str) -> Option<String> {
    let mut words = frame.split(' ');
    let (_, ok, verb, id) = (words.next()?, words.next()?, words.next()?, words.next()?);
    match (ok, verb) {
        ("OK", "FILE-OFFER") => Some(id.to_string()),
        ("OK", "TOKEN") => words.next().map(|secret| secret.trim_end().to_string()),
        _ => None,
    }
}

/// Replays `t`, over WebSocket if `ws`, else over TCP.
async fn run(t: &Transcript, ws: bool) {
    let first_client_line = t
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Client(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        })
        .unwrap_or_default();
    // Transcripts after a comment that changes the server are split there.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    if first_client_line.starts_with("l8 ") {
        cfg.limits.history = 10;
    }
    if matches!(t.section.as_str(), "4.2" | "4.8") {
        // The HELLO shown, and the password too short, are the defaults'.
        let defaults = baatkaro_server::config::Config::new(dir.path().to_path_buf());
        cfg.limits.password = defaults.limits.password;
        cfg.logins_per_minute = defaults.logins_per_minute;
        cfg.max_per_address = defaults.max_per_address;
    }
    let server = TestServer::start_web(cfg).await;
    let mut stage = stage(&t.section, &first_client_line, server.endpoint(ws)).await;
    let mut server = Some(server);
    if t.section == "6.6" {
        // "On a server with a much lower rate budget": restart with one, state intact.
        drop(stage.sessions.drain());
        server.take().unwrap().stop().await;
        let mut cfg = config(dir.path());
        cfg.limits.rate = 4;
        cfg.limits.burst = 2;
        server = Some(TestServer::start_web(cfg).await);
        let addr = server.as_ref().unwrap().endpoint(ws);
        for name in ["alice", "bob"] {
            stage.sessions.insert(name.into(), Client::login(addr, name).await);
        }
    }
    let addr = server.as_ref().unwrap().endpoint(ws);
    let mut current = stage.first.to_string();
    // (the spec's file id, the server's)
    let mut ids: Vec<(String, String)> = Vec::new();
    for step in &t.steps {
        match step {
            Step::Comment(c) => {
                if let Some(name) = session_of(c) {
                    if let Some(after_hello) = name.strip_prefix("another:") {
                        let mut c = Client::connect(addr).await;
                        if after_hello == "true" {
                            c.hello().await;
                        }
                        stage.sessions.insert(name.clone(), c);
                    }
                    current = name;
                }
            }
            Step::Client(bytes) => {
                let tag = String::from_utf8_lossy(bytes)
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                for (at, hook) in &stage.hooks {
                    if *at == tag {
                        match hook {
                            Hook::Join(who, group) => {
                                join(stage.sessions.get_mut(*who).unwrap(), group).await
                            }
                        }
                    }
                }
                let mut text = String::from_utf8_lossy(bytes).into_owned();
                for (spec, real) in &ids {
                    text = text.replace(spec.as_str(), real);
                }
                let c = stage
                    .sessions
                    .get_mut(&current)
                    .unwrap_or_else(|| panic!("no session {current}"));
                c.send_raw(text.as_bytes()).await;
            }
            Step::Server(want) => {
                let c = stage
                    .sessions
                    .get_mut(&current)
                    .unwrap_or_else(|| panic!("no session {current}"));
                loop {
                    let frame = c.frame().await.unwrap_or_else(|| {
                        panic!("SPEC.md line {}: {current} closed awaiting {want:?}", t.line)
                    });
                    let mut got = String::from_utf8_lossy(&frame.to_bytes()).into_owned();
                    if let (Some(spec), Some(real)) = (offered_id(want), offered_id(&got))
                        && !ids.iter().any(|(s, _)| *s == spec)
                    {
                        ids.push((spec, real));
                    }
                    for (spec, real) in &ids {
                        got = got.replace(real.as_str(), spec);
                    }
                    if normalise(&got) == normalise(want) {
                        break;
                    }
                    // Untagged events the excerpt leaves out may come first.
                    assert!(
                        matches!(frame, ServerFrame::Event(_)),
                        "SPEC.md line {} ({current}): expected\n  {}\ngot\n  {}",
                        t.line,
                        normalise(want).trim_end(),
                        normalise(&got).trim_end()
                    );
                }
            }
        }
    }
    drop(stage);
    server.take().unwrap().stop().await;
}

/// Replays every transcript of sections 2 to 8 (over WebSocket if `ws`) and
/// checks that none was missed.
async fn replay_all(ws: bool) {
    let all = transcripts();
    let mut ran = Vec::new();
    for t in &all {
        if t.section.starts_with('7') || t.section.starts_with('1') {
            continue;
        }
        // 6.5's last exchange needs a server that keeps ten events: its own run.
        if let Some(split) = t
            .steps
            .iter()
            .position(|s| matches!(s, Step::Comment(c) if c.contains("newest 10 events")))
        {
            run(
                &Transcript {
                    section: t.section.clone(),
                    line: t.line,
                    steps: t.steps[..split].to_vec(),
                },
                ws,
            )
            .await;
            run(
                &Transcript {
                    section: t.section.clone(),
                    line: t.line,
                    steps: t.steps[split + 1..].to_vec(),
                },
                ws,
            )
            .await;
        } else {
            run(t, ws).await;
        }
        ran.push(t.section.clone());
    }
    let want = [
        "2.2", "3", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8", "6.1", "6.2", "6.3", "6.4",
        "6.5", "6.6", "6.7", "6.8", "6.9", "8",
    ];
    assert_eq!(ran, want, "the transcripts replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transcript_of_sections_2_to_8_runs_against_the_server() {
    replay_all(false).await;
}

/// SPEC.md section 12: the same frames, in binary WebSocket messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transcript_runs_over_websocket_too() {
    replay_all(true).await;
}
