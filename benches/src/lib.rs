//! Benchmarks for BaatKaro. This library holds the frame fixtures the benches share;
//! `benches/codec.rs` measures the codec (run `cargo bench -p baatkaro-benches`).
//! [`load`] is the load generator `baatkaro-load`.

pub mod load;

use baatkaro_proto::{
    Command, Conversation, Encode, Event, Request, ServerFrame, StoredEvent, Tag, Text,
};
use bytes::{Bytes, BytesMut};

/// A message text of exactly `len` ASCII bytes.
pub fn text_of(len: usize) -> Text {
    let body: String =
        "The quick brown fox jumps over the lazy dog. ".chars().cycle().take(len).collect();
    // The cycled sentence is printable ASCII, so it is always valid text.
    Text::new(&body).unwrap_or_else(|e| unreachable!("fixture text is valid: {e}"))
}

/// A client SEND to a group with a `len`-byte message.
pub fn send_frame(len: usize, n: u64) -> Request {
    Request {
        tag: tag(&format!("s{n}")),
        command: Command::Send {
            to: Conversation::Group(name("general")),
            key: format!("k-{n}").parse().unwrap_or_else(|e| unreachable!("{e}")),
            text: text_of(len),
        },
    }
}

/// The MSG event a server fans out for a `len`-byte group message.
pub fn msg_event(len: usize, seq: u64) -> ServerFrame {
    ServerFrame::Event(Event::Stored(StoredEvent::Message {
        conv: Conversation::Group(name("general")),
        seq,
        time: 1_764_072_000_000 + seq,
        from: "alice".parse().unwrap_or_else(|e| unreachable!("{e}")),
        text: text_of(len),
    }))
}

/// A FILE-CHUNK upload of `len` bytes at `offset`.
pub fn chunk_frame(len: usize, offset: u64) -> Request {
    Request {
        tag: tag("c"),
        command: Command::FileChunk {
            file: "f7Qx2".parse().unwrap_or_else(|e| unreachable!("{e}")),
            offset,
            data: Bytes::from(vec![0xa5; len]),
        },
    }
}

/// Encodes frames back to back into one buffer.
pub fn stream<F: Encode>(frames: &[F]) -> Bytes {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode(&mut out);
    }
    out.freeze()
}

fn tag(s: &str) -> Tag {
    Tag::new(s).unwrap_or_else(|e| unreachable!("fixture tag is valid: {e}"))
}

fn name(s: &str) -> baatkaro_proto::GroupName {
    s.parse().unwrap_or_else(|e| unreachable!("fixture name is valid: {e}"))
}

/// `program`, run through `taskset -c 0` if `pin`: a server pinned to core 0.
pub fn pinned(program: &std::ffi::OsStr, pin: bool) -> std::process::Command {
    if pin {
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", "0"]).arg(program);
        c
    } else {
        std::process::Command::new(program)
    }
}

/// Starts a server with `cmd` and waits until a line of its log (its standard
/// output if `log_on_stdout`, else its standard error) contains `marker`: returns
/// the process and that line. The log is drained in the background from then on,
/// so that the server never blocks on a full pipe; a server that says nothing of
/// the kind within its first 100 lines, or exits, is killed.
pub fn spawn_until(
    mut cmd: std::process::Command,
    log_on_stdout: bool,
    marker: &str,
) -> Result<(std::process::Child, String), String> {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let (out, err) = if log_on_stdout {
        (Stdio::piped(), Stdio::null())
    } else {
        (Stdio::null(), Stdio::piped())
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    let log: Option<Box<dyn Read + Send>> = if log_on_stdout {
        child.stdout.take().map(|o| Box::new(o) as _)
    } else {
        child.stderr.take().map(|e| Box::new(e) as _)
    };
    let mut last = String::new();
    if let Some(log) = log {
        let mut log = BufReader::new(log);
        let mut line = String::new();
        // Bounded: a server logs a few lines before it is ready, or exits.
        for _ in 0..100 {
            line.clear();
            if log.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.contains(marker) {
                std::thread::spawn(move || for _ in log.lines() {});
                return Ok((child, line));
            }
            last = line.trim().to_string();
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("{} did not start: {last}", cmd.get_program().to_string_lossy()))
}

/// Starts a `baatkaro-server` binary with these arguments (and `--listen
/// 127.0.0.1:0`), pinned to core 0 with `taskset` if asked, and returns it with the
/// address it says it listens on.
pub fn spawn_server(
    bin: &std::path::Path,
    args: &[&std::ffi::OsStr],
    pin: bool,
) -> Result<(std::process::Child, String), String> {
    let mut cmd = pinned(bin.as_os_str(), pin);
    cmd.args(["--listen", "127.0.0.1:0", "--no-web"]).args(args);
    let (child, line) = spawn_until(cmd, false, "listening on ")
        .map_err(|e| format!("{e} (build it: cargo build --release -p baatkaro-server)"))?;
    let at = line.find("listening on ").unwrap_or(0) + "listening on ".len();
    Ok((child, line[at..].trim().to_string()))
}
