//! The real `baatkaro` binary against a real server on 127.0.0.1: one-shot
//! subcommands, a chat driven through a pipe, reconnect and catch-up, bad input,
//! and the interactive client in a terminal (tmux).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use baatkaro_server::config::{Config, HashCost};
use baatkaro_server::server::Server;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_baatkaro");

/// A server in this process, on a fixed address so that it can be restarted there.
struct TestServer {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), baatkaro_server::server::ServeError>>,
}

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir.to_path_buf());
    c.hash_cost = HashCost::TEST_ONLY;
    c.logins_per_minute = 100_000;
    // The tests' passwords are `pw-NAME`.
    c.limits.password = 1;
    c
}

async fn start(dir: &Path, addr: Option<SocketAddr>) -> (TestServer, SocketAddr) {
    start_with(config(dir), addr).await
}

async fn start_with(cfg: Config, addr: Option<SocketAddr>) -> (TestServer, SocketAddr) {
    let listener =
        tokio::net::TcpListener::bind(addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::open(cfg).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    (TestServer { stop, task }, addr)
}

impl TestServer {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap()
            .expect("the server stopped as asked");
    }
}

/// Runs `baatkaro` as `user` (password `pw-USER`) with these arguments.
struct Bin {
    addr: SocketAddr,
    config_dir: PathBuf,
}

impl Bin {
    fn command(&self, user: &str, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(["--server", &self.addr.to_string(), "--config-dir"])
            .arg(&self.config_dir)
            .args(["--user", user])
            .args(args)
            .env("BAATKARO_PASSWORD", format!("pw-{user}"))
            .env_remove("BAATKARO_USER")
            .stdin(Stdio::null());
        c
    }

    async fn run(&self, user: &str, args: &[&str]) -> Output {
        let mut c = self.command(user, args);
        tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap()
    }

    /// alice and bob register; alice creates the open group `rust` and bob joins.
    async fn alice_and_bob_in_rust(&self) {
        self.ok("alice", &["register"]).await;
        self.ok("bob", &["register"]).await;
        self.ok("alice", &["create", "rust", "open"]).await;
        self.ok("bob", &["join", "rust"]).await;
    }

    /// Runs and requires success: standard output.
    async fn ok(&self, user: &str, args: &[&str]) -> String {
        let out = self.run(user, args).await;
        assert!(out.status.success(), "{user} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and requires failure: standard error.
    async fn fails(&self, user: &str, args: &[&str]) -> String {
        let out = self.run(user, args).await;
        assert!(
            !out.status.success(),
            "{user} {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_scenario_through_one_shot_subcommands_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    for u in ["alice", "bob", "carol"] {
        assert_eq!(b.ok(u, &["register"]).await, format!("registered {u}; logged in\n"));
    }
    b.ok("alice", &["create", "rust"]).await;
    assert_eq!(
        b.ok("bob", &["join", "rust", "I", "write", "Rust"]).await,
        "asked to join #rust: an admin decides\n"
    );
    let requests = b.ok("alice", &["requests", "rust"]).await;
    assert!(requests.starts_with("bob ") && requests.contains("I write Rust"), "{requests}");
    b.ok("alice", &["approve", "rust", "bob"]).await;
    assert_eq!(b.ok("alice", &["send", "rust", "hello bob"]).await, "sent to #rust as number 2\n");
    assert_eq!(b.ok("bob", &["send", "#rust", "hi alice"]).await, "sent to #rust as number 3\n");
    assert_eq!(b.ok("alice", &["dm", "bob", "psst"]).await, "sent to @bob as number 1\n");
    assert_eq!(b.ok("alice", &["invite", "rust", "carol"]).await, "invited carol to #rust\n");
    b.ok("carol", &["accept", "rust"]).await;
    b.ok("alice", &["promote", "rust", "bob"]).await;
    assert_eq!(
        b.ok("alice", &["kick", "rust", "carol", "--ban"]).await,
        "kicked and banned carol from #rust\n"
    );
    let refused = b.fails("carol", &["join", "rust"]).await;
    assert!(refused.contains("BANNED"), "{refused}");
    // Admins see who is banned, and by whom; members may not.
    assert_eq!(b.ok("bob", &["bans", "rust"]).await, "carol banned by alice\n");
    b.ok("alice", &["transfer", "rust", "bob"]).await;
    // The offer stands, for every member to see.
    let groups = b.ok("alice", &["groups"]).await;
    assert!(groups.contains("rust owner approval 2 members, latest"), "{groups}");
    assert!(groups.contains("offered to bob"), "the pending offer to bob: {groups}");
    // The wire verb's name, and the friendlier alias.
    b.ok("bob", &["transfer-accept", "rust"]).await;
    b.ok("bob", &["transfer", "rust", "alice"]).await;
    b.ok("bob", &["cancel-transfer", "rust"]).await;
    b.ok("alice", &["leave", "rust"]).await;
    let members = b.ok("bob", &["members", "rust"]).await;
    assert_eq!(members, "bob owner online\n");
    let json = b.ok("bob", &["--json", "groups"]).await;
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["membership"], "owner");
    server.stop().await;

    let (server, addr) = start(dir.path(), Some(addr)).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    let history = b.ok("bob", &["history", "rust"]).await;
    for want in [
        "bob joined (admitted by alice)",
        "alice: hello bob",
        "bob: hi alice",
        "carol was banned by alice",
        "bob is the owner now (was alice)",
        "alice left",
    ] {
        assert!(history.contains(want), "{want:?} missing from\n{history}");
    }
    let json = b.ok("bob", &["--json", "history", "rust", "--since", "2"]).await;
    let seqs: Vec<u64> = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (3..=seqs.len() as u64 + 2).collect::<Vec<_>>());
    assert!(b.ok("bob", &["history", "@alice"]).await.contains("alice: psst"));
    // The user of the last `register`/`login` is remembered.
    let mut c = Command::new(BIN);
    c.args(["--server", &addr.to_string(), "--config-dir"]).arg(dir.path().join("client"));
    c.args(["groups"]).env("BAATKARO_PASSWORD", "pw-carol").env_remove("BAATKARO_USER");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_clear_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.ok("alice", &["register"]).await;
    assert!(b.fails("alice", &["send", "nowhere", "hi"]).await.contains("NO_SUCH_GROUP"));
    assert!(b.fails("alice", &["create", "Bad$Name"]).await.contains("Bad$Name"));
    let out = b.run("alice", &["approve", "rust"]).await;
    assert_eq!(out.status.code(), Some(2), "a missing argument is a usage error");
    // `login` checks the password even with a token saved.
    let mut wrong = b.command("alice", &["login"]);
    wrong.env("BAATKARO_PASSWORD", "nope");
    let out = tokio::task::spawn_blocking(move || wrong.output().unwrap()).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("AUTH_FAILED"));
    server.stop().await;
    let refused = b.fails("alice", &["groups"]).await;
    assert!(refused.contains("refused") || refused.contains("onnection"), "{refused}");
}

/// A chat driven through a pipe: lines in, lines out.
struct Piped {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Piped {
    fn start(b: &Bin, user: &str) -> Piped {
        let mut child = b
            .command(user, &["chat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Piped { child, lines, seen: Vec::new() }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for a line containing `want`, keeping every line seen.
    async fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(l) = self.seen.iter().find(|l| l.contains(want)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let rx = &self.lines;
            match tokio::task::block_in_place(|| rx.recv_timeout(left)) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line with {want:?}; saw {:#?}", self.seen),
            }
        }
    }

    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.child.stdin.take());
        self.child.wait().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_piped_chat_runs_commands_survives_bad_input_and_catches_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;

    let mut chat = Piped::start(&b, "bob");
    chat.say("/members");
    chat.expect("alice owner").await;
    chat.say("hello from the pipe");
    chat.expect("bob: hello from the pipe").await;
    // Bad input: a clear message, and the session goes on.
    chat.say("/frob");
    chat.expect("unknown command /frob").await;
    chat.say("/approve");
    chat.expect("/approve [GROUP] USER: missing USER").await;
    chat.say("/members nosuchgroup");
    chat.expect("NO_SUCH_GROUP").await;
    chat.say("/msg alice are you there?");
    chat.expect("@alice bob: are you there?").await;
    b.ok("alice", &["send", "rust", "live message"]).await;
    chat.expect("alice: live message").await;

    // The server restarts; what is sent meanwhile arrives once, caught up or live.
    server.stop().await;
    chat.expect("connection lost").await;
    let (server, addr) = start(dir.path(), Some(addr)).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    for i in 1..=3 {
        b.ok("alice", &["send", "rust", &format!("while away {i}")]).await;
    }
    chat.expect("reconnected;").await;
    for i in 1..=3 {
        chat.expect(&format!("alice: while away {i}")).await;
    }
    // A command's answer comes after every event that arrived before it.
    chat.say("/groups");
    chat.expect("rust member open").await;
    for i in 1..=3 {
        let shown =
            chat.seen.iter().filter(|l| l.contains(&format!("alice: while away {i}"))).count();
        assert_eq!(shown, 1, "message {i} shown {shown} times: {:#?}", chat.seen);
    }
    chat.say("/quit");
    assert!(chat.finish().success());
    server.stop().await;
}

/// A tmux server of our own, on its own socket.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed (.ci/run installs it)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// The screen with its colours and attributes, as escape sequences.
    fn screen_styled(&self) -> String {
        let out = self.cmd(&["capture-pane", "-e", "-p", "-t", "t"]).stdout;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Types `text` as it is.
    fn type_text(&self, text: &str) {
        self.cmd(&["send-keys", "-t", "t", "-l", text]);
    }

    /// Presses keys (`Enter`, `C-c`).
    fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend(keys);
        self.cmd(&args);
    }

    /// Waits until the program in the terminal has ended (its session with it).
    async fn expect_ended(&self) {
        let deadline = Instant::now() + WAIT;
        while self.cmd(&["has-session", "-t", "t"]).status.success() {
            assert!(Instant::now() < deadline, "still running:\n{}", self.screen());
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last line with text: the prompt.
    fn prompt_line(&self) -> String {
        let screen = self.screen();
        screen.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().to_string()
    }

    /// Waits until the screen shows `want`.
    async fn expect(&self, want: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if screen.contains(want) {
                return screen;
            }
            assert!(Instant::now() < deadline, "the screen never showed {want:?}:\n{screen}");
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// A server where alice owns the open group `rust` and bob is in it, and bob's
/// interactive chat running in a tmux terminal of 120 × 30 (its socket named
/// after `name`), ready at its prompt.
async fn bob_chatting_in_a_terminal(dir: &Path, name: &str) -> (TestServer, Bin, Tmux) {
    bob_chatting_in_a_terminal_with(dir, name, "").await
}

/// As [`bob_chatting_in_a_terminal`], with more environment (`NAME=value …`).
async fn bob_chatting_in_a_terminal_with(
    dir: &Path,
    name: &str,
    env: &str,
) -> (TestServer, Bin, Tmux) {
    let (server, addr) = start(dir, None).await;
    let b = Bin { addr, config_dir: dir.join("client") };
    b.alice_and_bob_in_rust().await;
    let tmux = Tmux { socket: format!("baatkaro-{name}-{}", std::process::id()) };
    let line = format!(
        "env -u NO_COLOR BAATKARO_PASSWORD=pw-bob TERM=xterm {env} {BIN} --server {addr} \
         --config-dir {} --user bob",
        b.config_dir.display()
    );
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "120", "-y", "30", &line]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmux.expect("logged in as bob").await;
    tmux.expect("[#rust] >").await;
    (server, b, tmux)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_an_incoming_message_leaves_the_half_typed_line_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, tmux) = bob_chatting_in_a_terminal(dir.path(), "half").await;
    tmux.cmd(&["send-keys", "-t", "t", "-l", "half typed"]);
    tmux.expect("half typed").await;
    b.ok("alice", &["send", "rust", "ping from alice"]).await;
    let screen = tmux.expect("alice: ping from alice").await;
    let last = screen.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("[#rust] > half typed"), "the prompt line lost its input:\n{screen}");
    // The line is still there to finish and send.
    tmux.cmd(&["send-keys", "-t", "t", " and finished", "Enter"]);
    tmux.expect("bob: half typed and finished").await;
    let history = b.ok("alice", &["history", "rust"]).await;
    assert!(history.contains("bob: half typed and finished"), "{history}");
    tmux.cmd(&["send-keys", "-t", "t", "/quit", "Enter"]);
    drop(tmux);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_tab_completes_commands_groups_and_users() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, tmux) = bob_chatting_in_a_terminal(dir.path(), "tab").await;
    // A command name, then a group the user is in.
    tmux.cmd(&["send-keys", "-t", "t", "-l", "/mem"]);
    tmux.cmd(&["send-keys", "-t", "t", "Tab"]);
    // (The screen capture drops trailing spaces: what is typed next shows them.)
    tmux.cmd(&["send-keys", "-t", "t", "-l", "ru"]);
    tmux.expect("[#rust] > /members ru").await;
    tmux.cmd(&["send-keys", "-t", "t", "Tab"]);
    tmux.expect("[#rust] > /members rust").await;
    tmux.cmd(&["send-keys", "-t", "t", "Enter"]);
    tmux.expect("alice owner").await;
    // Several commands fit: they are listed and the line is kept.
    tmux.cmd(&["send-keys", "-t", "t", "-l", "/de"]);
    tmux.cmd(&["send-keys", "-t", "t", "Tab"]);
    let screen = tmux.expect("decline  demote  deop  delete").await;
    let last = screen.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.ends_with("[#rust] > /de"), "the line was not kept:\n{screen}");
    tmux.cmd(&["send-keys", "-t", "t", "C-u"]);
    // A user name learned from the members list, as the argument of /msg.
    tmux.cmd(&["send-keys", "-t", "t", "-l", "/msg al"]);
    tmux.cmd(&["send-keys", "-t", "t", "Tab"]);
    tmux.cmd(&["send-keys", "-t", "t", "-l", "completed"]);
    tmux.expect("[#rust] > /msg alice completed").await;
    tmux.cmd(&["send-keys", "-t", "t", "Enter"]);
    tmux.expect("@alice bob: completed").await;
    let history = b.ok("alice", &["history", "@bob"]).await;
    assert!(history.contains("bob: completed"), "{history}");
    tmux.cmd(&["send-keys", "-t", "t", "-l", "/quit"]);
    tmux.cmd(&["send-keys", "-t", "t", "Enter"]);
    drop(tmux);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_upload_list_and_download_and_interrupted_transfers_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;
    let data: Vec<u8> =
        (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, &data).unwrap();

    // An upload cut after its first chunk (made here through the protocol) is
    // finished by `upload`, which sends only what the server lacks.
    let raw = baatkaro_client::Client::connect(&addr.to_string()).await.unwrap();
    raw.login("alice".parse().unwrap(), baatkaro_proto::Password::new("pw-alice").unwrap())
        .await
        .unwrap();
    let sha = baatkaro_client::transfer::hash_file(&path).unwrap().1;
    let offer = baatkaro_proto::Command::FileOffer {
        to: "#rust".parse().unwrap(),
        size: data.len() as u64,
        sha256: sha,
        name: baatkaro_proto::OfferName::new("report.pdf").unwrap(),
    };
    let (_, reply) = raw.ok(offer).await.unwrap();
    let baatkaro_proto::OkReply::FileOffer { file: started, .. } = reply else {
        panic!("{reply:?}")
    };
    let first = bytes::Bytes::copy_from_slice(&data[..262_144]);
    raw.ok(baatkaro_proto::Command::FileChunk { file: started, offset: 0, data: first })
        .await
        .unwrap();
    drop(raw);
    let out = b.ok("alice", &["--json", "upload", "rust", path.to_str().unwrap()]).await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["id"], started.as_str(), "the interrupted upload was resumed: {out}");
    let id = v["id"].as_str().unwrap().to_string();

    let listed = b.ok("bob", &["--json", "files", "rust"]).await;
    let v: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(
        (v["id"].as_str(), v["name"].as_str(), v["size"].as_u64()),
        (Some(id.as_str()), Some("report.pdf"), Some(2_000_000))
    );

    // A download cut half way (its .part left behind) resumes and is verified.
    let dest = dir.path().join("copy.pdf");
    std::fs::write(baatkaro_client::transfer::part_path(&dest), &data[..700_000]).unwrap();
    b.ok("bob", &["download", &id, dest.to_str().unwrap()]).await;
    assert!(std::fs::read(&dest).unwrap() == data, "byte-identical");
    assert!(!baatkaro_client::transfer::part_path(&dest).exists());
    // A corrupt partial download is caught by the hash and removed.
    let bad = dir.path().join("bad.pdf");
    std::fs::write(baatkaro_client::transfer::part_path(&bad), vec![0u8; 700_000]).unwrap();
    let err = b.fails("bob", &["download", &id, bad.to_str().unwrap()]).await;
    assert!(err.contains("SHA-256"), "{err}");
    assert!(!bad.exists());
    // A non-member cannot see or fetch it.
    b.ok("carol", &["register"]).await;
    assert!(b.fails("carol", &["download", &id]).await.contains("NO_SUCH_FILE"));
    // A private file, with --to.
    let out =
        b.ok("alice", &["upload", "@bob", path.to_str().unwrap(), "--name", "for-bob.pdf"]).await;
    assert!(out.contains("@bob"), "{out}");
    assert!(b.ok("bob", &["files", "@alice"]).await.contains("for-bob.pdf"));
    server.stop().await;
}

/// A client that only listens still sends PING, so the server's idle timeout (1 s
/// here) does not close it: three idle timeouts pass without a BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_listens_is_not_closed_for_idleness() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.limits.idle = 1;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::open(cfg).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(listener, async move {
        let _ = stopped.await;
    }));
    let client = baatkaro_client::Client::connect(&addr.to_string()).await.unwrap();
    let mut events = client.events();
    let password = baatkaro_proto::Password::new("pw-idle").unwrap();
    client.register("idler".parse().unwrap(), password).await.unwrap();
    // Nothing arrives, not even a BYE, while three idle timeouts pass.
    let waited = tokio::time::timeout(Duration::from_secs(3), events.next()).await;
    assert!(waited.is_err(), "the client heard {waited:?}");
    client.ok(baatkaro_proto::Command::Groups).await.unwrap();
    let _ = stop.send(());
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap().expect("the server stopped as asked");
}

impl Bin {
    /// Runs and requires success, in the directory `cwd`: standard output.
    async fn ok_in(&self, cwd: &Path, user: &str, args: &[&str]) -> String {
        let mut c = self.command(user, args);
        c.current_dir(cwd);
        let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
        assert!(out.status.success(), "{user} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_keeps_an_existing_file_and_takes_a_free_name_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;
    let data: Vec<u8> =
        (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    let source = dir.path().join("x");
    std::fs::write(&source, &data).unwrap();
    let out = b.ok("alice", &["--json", "upload", "rust", source.to_str().unwrap()]).await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let dl = dir.path().join("dl");
    std::fs::create_dir(&dl).unwrap();

    // Twice into the same folder: both kept, the second under a free name.
    assert_eq!(b.ok_in(&dl, "bob", &["download", &id]).await, "saved x (300.0 kB)\n");
    let second = b.ok_in(&dl, "bob", &["download", &id]).await;
    assert_eq!(second, "saved x (1) (300.0 kB): x exists\n");
    assert_eq!(listing(&dl), ["x", "x (1)"]);
    assert!(std::fs::read(dl.join("x")).unwrap() == data);
    assert!(std::fs::read(dl.join("x (1)")).unwrap() == data);
    // A file of that name (here the user's own) is replaced only with --force.
    std::fs::write(dl.join("x"), b"mine").unwrap();
    let out = b.ok("bob", &["--json", "download", &id, dl.to_str().unwrap()]).await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["path"], dl.join("x (2)").to_str().unwrap(), "{out}");
    assert_eq!(v["wanted"], dl.join("x").to_str().unwrap(), "{out}");
    assert_eq!(std::fs::read(dl.join("x")).unwrap(), b"mine");
    assert_eq!(b.ok_in(&dl, "bob", &["download", &id, "--force"]).await, "saved x (300.0 kB)\n");
    assert!(std::fs::read(dl.join("x")).unwrap() == data);
    assert_eq!(listing(&dl), ["x", "x (1)", "x (2)"]);
    // The same in the chat.
    let mut chat = Piped::start(&b, "bob");
    chat.say(&format!("/download {id} {}", dl.display()));
    let line = chat.expect("(300.0 kB)").await;
    assert!(
        line.ends_with(&format!(
            "saved {} (300.0 kB): {} exists",
            dl.join("x (3)").display(),
            dl.join("x").display()
        )),
        "{line}"
    );
    std::fs::write(dl.join("x"), b"mine").unwrap();
    chat.say(&format!("/download {id} {} --force", dl.display()));
    chat.expect(&format!("saved {} (300.0 kB)", dl.join("x").display())).await;
    chat.say("/quit");
    assert!(chat.finish().success());
    assert!(std::fs::read(dl.join("x")).unwrap() == data);
    assert_eq!(listing(&dl), ["x", "x (1)", "x (2)", "x (3)"]);

    // A link planted at the name is neither followed nor replaced; --force
    // replaces the link itself, never the file it points to.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    std::os::unix::fs::symlink(&victim, dl.join("link.bin")).unwrap();
    let link = dl.join("link.bin");
    let out = b.ok("bob", &["download", &id, link.to_str().unwrap()]).await;
    assert!(out.contains("link (1).bin") && out.contains("link.bin exists"), "{out}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    b.ok("bob", &["download", &id, link.to_str().unwrap(), "--force"]).await;
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_file());
    assert!(std::fs::read(&link).unwrap() == data);
    // A link planted where the unfinished download goes is refused, not followed.
    let y = dl.join("y.bin");
    std::os::unix::fs::symlink(&victim, baatkaro_client::transfer::part_path(&y)).unwrap();
    let err = b.fails("bob", &["download", &id, y.to_str().unwrap()]).await;
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!y.exists());
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    // A missing folder is an error, not a file of that name.
    let err = b.fails("bob", &["download", &id, &format!("{}/", dl.join("no").display())]).await;
    assert!(err.contains("no such directory"), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_file_names_are_saved_under_safe_names_inside_the_chosen_folder() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;
    // The user's own files, apart from the server's data.
    let home = tempfile::tempdir().unwrap();
    let source = home.path().join("content");
    std::fs::write(&source, b"hostile content").unwrap();
    // An offered name may not begin with a dot: the CLI says so before sending, and
    // a local dot file is shared without its dots.
    let err =
        b.fails("alice", &["upload", "rust", source.to_str().unwrap(), "--name", ".bashrc"]).await;
    assert!(err.contains("must not begin with '.'"), "{err}");
    let dotted = home.path().join(".profile");
    std::fs::write(&dotted, b"x").unwrap();
    let out = b.ok("alice", &["upload", "rust", dotted.to_str().unwrap()]).await;
    assert!(out.starts_with("shared profile as "), "{out}");

    // Names the protocol carries that would be trouble on a disk.
    let long = format!("{}.txt", "n".repeat(251));
    let cases: Vec<(String, String)> = vec![
        ("CON.txt".into(), "_CON.txt".into()),
        ("a<b>:c|d?*.txt".into(), "a_b__c_d__.txt".into()),
        ("tab\there".into(), "tab_here".into()),
        ("trailing. . .".into(), "trailing".into()),
        ("  lead".into(), "lead".into()),
        ("-rf".into(), "_rf".into()),
        (long.clone(), long.clone()),
    ];
    let alice = baatkaro_client::Client::connect(&addr.to_string()).await.unwrap();
    alice
        .login("alice".parse().unwrap(), baatkaro_proto::Password::new("pw-alice").unwrap())
        .await
        .unwrap();
    let bob = baatkaro_client::Client::connect(&addr.to_string()).await.unwrap();
    bob.login("bob".parse().unwrap(), baatkaro_proto::Password::new("pw-bob").unwrap())
        .await
        .unwrap();
    let dl = home.path().join("dl");
    std::fs::create_dir(&dl).unwrap();
    let before = listing(home.path());
    for (name, safe) in &cases {
        let offered = baatkaro_proto::OfferName::new(name).unwrap();
        let to = "#rust".parse().unwrap();
        let shared = alice.upload(to, &source, offered, &mut |_, _| {}).await.unwrap();
        let id = shared.id.to_string();
        let out = b.ok("bob", &["--json", "download", &id, dl.to_str().unwrap()]).await;
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["path"], dl.join(safe).to_str().unwrap(), "{name:?}");
        assert_eq!(std::fs::read(dl.join(safe)).unwrap(), b"hostile content", "{name:?}");
    }
    // A name that begins with a dot, as a server may still send for a file it stored
    // before the rule: the library saves it visible, in the folder.
    let mut legacy = alice
        .upload(
            "#rust".parse().unwrap(),
            &source,
            baatkaro_proto::OfferName::new("z").unwrap(),
            &mut |_, _| {},
        )
        .await
        .unwrap();
    for (name, safe) in [(".bashrc", "bashrc"), ("...", "download")] {
        legacy.name = baatkaro_proto::FileName::new(name).unwrap();
        let saved = bob
            .download(&legacy, &dl, baatkaro_client::IfExists::PickFreeName, &mut |_, _| {})
            .await
            .unwrap();
        assert_eq!(saved.path, dl.join(safe), "{name:?}");
    }
    let mut want: Vec<String> = cases.iter().map(|c| c.1.clone()).collect();
    want.extend(["bashrc".into(), "download".into()]);
    want.sort();
    assert_eq!(listing(&dl), want, "only the safe names, no part left behind");
    assert_eq!(listing(home.path()), before, "nothing outside the folder");
    server.stop().await;
}

/// The token file of `user` for the server at `addr` (login.rs's layout: one file per
/// server address and user, the address with `:` written `%3A`).
fn token_file(b: &Bin, user: &str) -> PathBuf {
    let server = b.addr.to_string().replace(':', "%3A");
    b.config_dir.join("tokens").join(server).join(user)
}

/// SPEC.md 4.7: a script of 1,000 one-shot commands against a server with the
/// default login budget (60 password attempts a minute from an address) never sees
/// RATE_LIMITED: `register` saves a session token, and every command after it logs
/// in with the token, without the password (it is not even given to them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_one_shot_commands_log_in_with_the_saved_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.logins_per_minute = Config::new(dir.path().to_path_buf()).logins_per_minute;
    assert_eq!(cfg.logins_per_minute, 60);
    let (server, addr) = start_with(cfg, None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.ok("alice", &["register"]).await;
    b.ok("alice", &["create", "rust"]).await;
    let started = Instant::now();
    let runs = {
        let b = Bin { addr, config_dir: b.config_dir.clone() };
        tokio::task::spawn_blocking(move || {
            for i in 0..1_000 {
                let mut c = b.command("alice", &["send", "rust", &format!("message {i}")]);
                c.env_remove("BAATKARO_PASSWORD");
                let out = c.output().unwrap();
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "command {i}: {stderr}");
                assert!(!stderr.contains("RATE_LIMITED"), "command {i}: {stderr}");
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout),
                    format!("sent to #rust as number {}\n", i + 1)
                );
            }
        })
    };
    runs.await.unwrap();
    eprintln!("1,000 one-shot commands in {:?}", started.elapsed());
    server.stop().await;
}

/// The saved token is its user's alone (mode 0600); when the server refuses it (it
/// was revoked), the next command logs in with the password and saves a new one.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_falls_back_to_the_password_and_is_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.ok("alice", &["register"]).await;
    let file = token_file(&b, "alice");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let saved = std::fs::read_to_string(&file).unwrap();
    let first = saved.split(' ').next().unwrap().to_string();
    let listed = b.ok("alice", &["--json", "tokens"]).await;
    let v: serde_json::Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(v["token"].to_string(), first);
    assert!(v["label"].as_str().unwrap().starts_with("baatkaro-cli"), "{v}");
    assert_eq!(v["address"], "127.0.0.1");

    // Revoked (here by its own session): the next command falls back to the password
    // and saves a new token.
    b.ok("alice", &["revoke", &first]).await;
    let mut c = b.command("alice", &["groups"]);
    c.env_remove("BAATKARO_PASSWORD");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(!out.status.success(), "no token, no password: refused");
    b.ok("alice", &["groups"]).await;
    let second = std::fs::read_to_string(&file).unwrap();
    assert_ne!(second.split(' ').next().unwrap(), first, "a new token was saved");
    let mut c = b.command("alice", &["groups"]);
    c.env_remove("BAATKARO_PASSWORD");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // `logout` revokes this device's token and forgets it.
    assert!(b.ok("alice", &["logout"]).await.contains("revoked"));
    assert!(!file.exists());
    let listed = b.ok("bob", &["register"]).await;
    assert!(listed.contains("bob"));
    server.stop().await;
}

/// `passwd` changes the password (this device keeps a working token); `delete-account`
/// asks for --yes, then deletes the account for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_and_delete_account() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.ok("alice", &["register"]).await;
    let mut c = b.command("alice", &["passwd"]);
    c.env("BAATKARO_NEW_PASSWORD", "a-new-password");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The token saved after the change logs in, without a password.
    let mut c = b.command("alice", &["groups"]);
    c.env_remove("BAATKARO_PASSWORD");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(b.fails("alice", &["login"]).await.contains("AUTH_FAILED"), "the old password");
    let mut c = b.command("alice", &["login"]);
    c.env("BAATKARO_PASSWORD", "a-new-password");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = b.run("alice", &["delete-account"]).await;
    assert_eq!(out.status.code(), Some(2), "not without --yes");
    let mut c = b.command("alice", &["delete-account", "--yes"]);
    c.env("BAATKARO_PASSWORD", "a-new-password");
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "account alice deleted\n");
    assert!(!token_file(&b, "alice").exists());
    assert!(b.fails("alice", &["register"]).await.contains("USER_EXISTS"));
    server.stop().await;
}

/// A RATE_LIMITED says which limit and when to try again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_named_with_when_to_try_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.logins_per_minute = 1;
    let (server, addr) = start_with(cfg, None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.ok("alice", &["register"]).await;
    let err = b.fails("alice", &["login"]).await;
    // The wait is a minute less the time the test took since the budget was
    // spent: "1 min" on a quiet machine, "59.8 s" on a busy one.
    assert!(
        err.contains(
            "RATE_LIMITED: password attempts from this address: over logins a minute (try again in "
        ),
        "{err}"
    );
    assert!(err.contains(" min)") || err.contains(" s)"), "{err}");
    // The saved token still logs in: token logins have their own budget.
    b.ok("alice", &["groups"]).await;
    server.stop().await;
}

/// Whether `line` starts with a time, `HH:MM `.
fn timed(line: &str) -> bool {
    let b = line.trim_start().as_bytes();
    b.len() > 6
        && b[..2].iter().chain(&b[3..5]).all(u8::is_ascii_digit)
        && b[2] == b':'
        && b[5] == b' '
}

/// The line of `screen` that holds `want`.
fn line_with<'s>(screen: &'s str, want: &str) -> &'s str {
    screen.lines().find(|l| l.contains(want)).unwrap_or_else(|| panic!("no {want:?} in\n{screen}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_lines_have_times_senders_colours_and_mentions_stand_out() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, tmux) = bob_chatting_in_a_terminal(dir.path(), "style").await;
    assert!(timed(line_with(&tmux.screen(), "logged in as bob")), "{}", tmux.screen());
    b.ok("alice", &["send", "rust", "no mention here"]).await;
    b.ok("alice", &["send", "rust", "hello @bob, and bobby"]).await;
    tmux.expect("hello @bob, and bobby").await;
    let screen = tmux.screen();
    assert!(timed(line_with(&screen, "alice: no mention here")), "{screen}");
    let styled = tmux.screen_styled();
    let plain = line_with(&styled, "no mention here");
    let mention = line_with(&styled, "hello @bob");
    // alice's name in a colour (SGR 3x or 38;5;n), the same on both lines.
    let name_at = |l: &str| l[..l.find("alice").unwrap()].rfind("\u{1b}[").unwrap();
    let colour = |l: &str| l[name_at(l)..l.find("alice").unwrap()].to_string();
    assert!(colour(plain).contains("3"), "{plain:?}");
    assert_eq!(colour(plain), colour(mention));
    // The mention in reverse video; the other line not.
    assert!(mention.contains("\u{1b}[7m"), "{mention:?}");
    assert!(!plain.contains("\u{1b}[7m"), "{plain:?}");

    // Presence is not shown by default: alice's one-shot commands came and went.
    assert!(!tmux.screen().contains("alice is "), "{}", tmux.screen());
    tmux.type_text("/presence on");
    tmux.press(&["Enter"]);
    tmux.expect("online and going: shown").await;
    b.ok("alice", &["groups"]).await;
    tmux.expect("alice is online").await;

    // Your own message appears once.
    tmux.type_text("only once please");
    tmux.press(&["Enter"]);
    tmux.expect("bob: only once please").await;
    b.ok("alice", &["send", "rust", "a later line"]).await;
    let screen = tmux.expect("alice: a later line").await;
    assert_eq!(screen.matches("only once please").count(), 1, "{screen}");
    tmux.type_text("/quit");
    tmux.press(&["Enter"]);
    tmux.expect_ended().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_turns_senders_colours_off() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, tmux) =
        bob_chatting_in_a_terminal_with(dir.path(), "nocolor", "NO_COLOR=1").await;
    b.ok("alice", &["send", "rust", "plain text here"]).await;
    tmux.expect("alice: plain text here").await;
    let styled = tmux.screen_styled();
    let line = line_with(&styled, "plain text here");
    // Nothing between the conversation and the name: no colour.
    assert!(line.contains("#rust alice: plain text here"), "{line:?}");
    tmux.press(&["C-c", "C-c"]);
    tmux.expect_ended().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_switch_goes_to_groups_and_people_that_exist_and_private_unread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, tmux) = bob_chatting_in_a_terminal(dir.path(), "switch").await;
    b.ok("carol", &["register"]).await;
    b.ok("carol", &["create", "secret"]).await;
    tmux.type_text("/switch secret");
    tmux.press(&["Enter"]);
    tmux.expect("you are not in #secret").await;
    tmux.type_text("/switch @nobody");
    tmux.press(&["Enter"]);
    tmux.expect("there is no user nobody").await;
    // A private message while bob is in #rust is counted.
    b.ok("alice", &["dm", "bob", "psst"]).await;
    tmux.expect("@alice alice: psst").await;
    tmux.expect("[#rust] @alice:1 >").await;
    tmux.type_text("/switch @alice");
    tmux.press(&["Enter"]);
    tmux.expect("now in @alice").await;
    assert!(tmux.prompt_line().starts_with("[@alice] >"), "{}", tmux.prompt_line());
    // Plain text goes there now.
    tmux.type_text("psst yourself");
    tmux.press(&["Enter"]);
    tmux.expect("@alice bob: psst yourself").await;
    assert!(b.ok("alice", &["history", "@bob"]).await.contains("bob: psst yourself"));
    // A group operation needs a group named: the current conversation is not one.
    tmux.type_text("/members");
    tmux.press(&["Enter"]);
    tmux.expect("is @alice, not a group").await;
    tmux.type_text("/switch #rust");
    tmux.press(&["Enter"]);
    tmux.expect("now in #rust").await;
    tmux.press(&["C-c", "C-c"]);
    tmux.expect_ended().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_ctrl_c_clears_the_line_and_twice_quits() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _b, tmux) = bob_chatting_in_a_terminal(dir.path(), "ctrlc").await;
    tmux.type_text("a draft");
    tmux.expect("[#rust] > a draft").await;
    tmux.press(&["C-c"]);
    let deadline = Instant::now() + WAIT;
    while tmux.prompt_line() != "[#rust] >" {
        assert!(Instant::now() < deadline, "not cleared:\n{}", tmux.screen());
        tokio::task::yield_now().await;
    }
    // Still running: what is typed next shows.
    tmux.type_text("still here");
    tmux.expect("[#rust] > still here").await;
    tmux.press(&["C-u", "C-c", "C-c"]);
    tmux.expect_ended().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_an_upload_runs_while_messages_keep_showing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, tmux) = bob_chatting_in_a_terminal(dir.path(), "upload").await;
    // A FIFO: the upload waits for its writer, as a slow disk or a big file would.
    let fifo = dir.path().join("slow.bin");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    tmux.type_text(&format!("/upload {}", fifo.display()));
    tmux.press(&["Enter"]);
    tmux.expect("in the background").await;
    b.ok("alice", &["send", "rust", "while you upload"]).await;
    tmux.expect("alice: while you upload").await;
    // Commands work meanwhile too.
    tmux.type_text("/members");
    tmux.press(&["Enter"]);
    tmux.expect("alice owner").await;
    // A real file is shared meanwhile, and its end is told.
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, vec![b'n'; 300_000]).unwrap();
    tmux.type_text(&format!("/upload {}", file.display()));
    tmux.press(&["Enter"]);
    tmux.expect("shared notes.txt as").await;
    let screen = tmux.expect("bob shared notes.txt (300.0 kB").await;
    assert!(timed(line_with(&screen, "shared notes.txt as")), "{screen}");
    // The chat quits though the first upload still waits for its writer.
    tmux.type_text("/quit");
    tmux.press(&["Enter"]);
    tmux.expect_ended().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_the_rule_who_may_the_limit_and_never_echo_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;
    // A name's rule.
    let e = b.fails("alice", &["create", "Rust"]).await;
    assert!(
        e.contains("lowercase letters, digits, - . _ only, starting with a letter, at most 32"),
        "{e}"
    );
    // An OS error names the path.
    let e = b.fails("alice", &["upload", "rust", "/no/such/file.txt"]).await;
    assert!(e.contains("/no/such/file.txt: No such file"), "{e}");
    // `x--ban` is a user name (SPEC's name grammar: letters, digits, - _ .), and a
    // slash line kicks that user, without banning.
    b.ok("x--ban", &["register"]).await;
    b.ok("x--ban", &["join", "rust"]).await;
    let mut alice = Piped::start(&b, "alice");
    alice.say("/kick x--ban");
    alice.expect("kicked x--ban from #rust").await;
    b.ok("x--ban", &["join", "rust"]).await;
    alice.say("/quit");
    assert!(alice.finish().success());

    let mut chat = Piped::start(&b, "bob");
    // Who may.
    chat.say("/kick alice");
    chat.expect(
        "NOT_PERMITTED: only the owner and admins may remove a member from a group, and only \
         someone of lower rank",
    )
    .await;
    chat.say("/promote x--ban");
    chat.expect("NOT_PERMITTED: only the owner may make a member an admin").await;
    // The server's message limit, and the text not echoed back.
    chat.say(&"y".repeat(20_000));
    let e = chat.expect("TEXT_TOO_LONG").await;
    assert!(e.contains("20000 bytes; this server takes at most 16384"), "{e}");
    chat.say(&"z".repeat(100_000));
    let e = chat.expect("(100000 bytes)").await;
    assert!(e.len() < 200, "{} bytes: {}", e.len(), &e[..200]);
    chat.say("/groups");
    chat.expect("rust member open 3 members").await;
    // Plain text through a pipe: no escape sequences.
    assert!(chat.seen.iter().all(|l| !l.contains('\u{1b}')), "{:#?}", chat.seen);
    chat.say("/quit");
    assert!(chat.finish().success());
    server.stop().await;
    let e = b.fails("alice", &["groups"]).await;
    assert!(e.contains(&format!("cannot reach {addr}")), "{e}");
}

/// The server restarts mid-chat: the chat says when it tries again, a line typed
/// while the server is down waits, `/reconnect` brings the chat back at once, and
/// the line arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_a_line_typed_while_the_server_is_down_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let (server, b, tmux) = bob_chatting_in_a_terminal(dir.path(), "restart").await;
    server.stop().await;
    tmux.expect("connection lost").await;
    tmux.expect("/reconnect tries now").await;
    tmux.type_text("typed while down");
    tmux.press(&["Enter"]);
    tmux.expect("the message goes once the connection is back").await;
    let (server, _) = start(dir.path(), Some(b.addr)).await;
    tmux.type_text("/reconnect");
    tmux.press(&["Enter"]);
    tmux.expect("reconnected").await;
    tmux.expect("bob: typed while down").await;
    let history = b.ok("alice", &["history", "rust"]).await;
    assert_eq!(history.matches("typed while down").count(), 1, "{history}");
    tmux.type_text("/quit");
    tmux.press(&["Enter"]);
    tmux.expect_ended().await;
    server.stop().await;
}

/// Starts `user`'s interactive chat in `tmux` (120 × 30) and waits for its prompt.
async fn chat_in(tmux: &Tmux, b: &Bin, user: &str) {
    let line = format!(
        "env -u NO_COLOR BAATKARO_PASSWORD=pw-{user} TERM=xterm {BIN} --server {} \
         --config-dir {} --user {user}",
        b.addr,
        b.config_dir.display()
    );
    let out = tmux.cmd(&["new-session", "-d", "-s", "t", "-x", "120", "-y", "30", &line]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tmux.expect(&format!("logged in as {user}")).await;
}

/// The chat remembers where you were across restarts: it starts with what was
/// missed since the read markers, per conversation, private ones too; opens where
/// the last chat was; and what was read there is not unread the next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_the_chat_shows_what_was_missed_and_opens_where_you_were() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;
    for i in 1..=3 {
        b.ok("alice", &["send", "rust", &format!("rust news {i}")]).await;
    }
    b.ok("alice", &["send", "@bob", "psst bob"]).await;
    b.ok("alice", &["send", "@bob", "are you there"]).await;

    let tmux = Tmux { socket: format!("baatkaro-missed-{}", std::process::id()) };
    chat_in(&tmux, &b, "bob").await;
    tmux.expect("3 unread in #rust since").await;
    tmux.expect("2 unread in @alice since").await;
    tmux.expect("alice: rust news 3").await;
    // #rust is current: @alice's count waits in the prompt, and its messages until
    // the chat switches there.
    let screen = tmux.expect("[#rust] @alice:2 >").await;
    assert!(!screen.contains("are you there"), "{screen}");
    tmux.type_text("/switch @alice");
    tmux.press(&["Enter"]);
    tmux.expect("@alice alice: are you there").await;
    // #rust was read while it was current: nothing waits there.
    tmux.expect("[@alice] >").await;
    tmux.type_text("/quit");
    tmux.press(&["Enter"]);
    tmux.expect_ended().await;

    b.ok("alice", &["send", "rust", "rust news 4"]).await;
    chat_in(&tmux, &b, "bob").await;
    // Where the last chat was, with #rust's message counted (and shown when the
    // chat switches there).
    let screen = tmux.expect("[@alice] #rust:1 >").await;
    assert!(screen.contains("1 unread in #rust since"), "{screen}");
    assert!(!screen.contains("unread in @alice"), "read before quitting:\n{screen}");
    tmux.type_text("/switch rust");
    tmux.press(&["Enter"]);
    tmux.expect("alice: rust news 4").await;
    tmux.type_text("/quit");
    tmux.press(&["Enter"]);
    tmux.expect_ended().await;
    server.stop().await;
}

/// A command typed while the server is down does not freeze the chat: it waits in
/// the outbox (a listing may be done late), and keys, notices and `/quit` go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_terminal_a_command_while_the_server_is_down_does_not_freeze_the_chat() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _b, tmux) = bob_chatting_in_a_terminal(dir.path(), "freeze").await;
    server.stop().await;
    tmux.expect("connection lost").await;
    tmux.type_text("/members");
    tmux.press(&["Enter"]);
    tmux.expect("done once the connection is back").await;
    tmux.type_text("/switch @nobody");
    tmux.press(&["Enter"]);
    tmux.expect("cannot check @nobody now").await;
    tmux.type_text("/quit");
    tmux.press(&["Enter"]);
    tmux.expect_ended().await;
}

/// Lines go in the order typed: a message, then `/leave`, leaves after the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_then_a_command_go_in_the_order_typed() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;
    let mut child =
        b.command("bob", &[]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"bye all\n/leave\n").unwrap();
    drop(child.stdin.take());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let history = b.ok("alice", &["history", "rust"]).await;
    let (said, left) = (history.find("bob: bye all"), history.find("bob left"));
    assert!(
        said.is_some() && left.is_some() && said < left,
        "bob's output:\n{stdout}\nhistory:\n{history}"
    );
    server.stop().await;
}

/// A conversation the chat only passed through counts as read next time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_switched_through_is_read_the_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;
    b.ok("alice", &["send", "@bob", "psst bob"]).await;
    b.ok("alice", &["send", "@bob", "are you there"]).await;
    let tmux = Tmux { socket: format!("baatkaro-through-{}", std::process::id()) };
    chat_in(&tmux, &b, "bob").await;
    tmux.expect("[#rust] @alice:2 >").await;
    for to in ["@alice", "#rust"] {
        tmux.type_text(&format!("/switch {to}"));
        tmux.press(&["Enter"]);
        tmux.expect(&format!("now in {to}")).await;
    }
    tmux.expect("are you there").await;
    tmux.type_text("/quit");
    tmux.press(&["Enter"]);
    tmux.expect_ended().await;
    chat_in(&tmux, &b, "bob").await;
    // Once a typed line is answered, the start (and its counts) is over.
    tmux.type_text("/presence on");
    tmux.press(&["Enter"]);
    let screen = tmux.expect("people coming online and going: shown").await;
    assert!(!screen.contains("unread in @alice"), "read in passing:\n{screen}");
    assert!(tmux.prompt_line().starts_with("[#rust] >"), "{}", tmux.screen());
    tmux.type_text("/quit");
    tmux.press(&["Enter"]);
    tmux.expect_ended().await;
    server.stop().await;
}

/// `/join` then `/switch` to the group then a message: the switch waits for the
/// join, and the message goes to the group joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_waits_for_the_join_typed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, addr) = start(dir.path(), None).await;
    let b = Bin { addr, config_dir: dir.path().join("client") };
    b.alice_and_bob_in_rust().await;
    b.ok("alice", &["create", "team", "open"]).await;
    let mut child =
        b.command("bob", &[]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"/join team\n/switch team\nhello team\n").unwrap();
    drop(child.stdin.take());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let team = b.ok("alice", &["history", "team"]).await;
    assert!(team.contains("bob: hello team"), "bob's output:\n{stdout}\n#team:\n{team}");
    let rust = b.ok("alice", &["history", "rust"]).await;
    assert!(!rust.contains("hello team"), "{rust}");
    server.stop().await;
}
