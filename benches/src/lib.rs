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

/// Starts a `baatkaro-server` binary with these arguments (and `--listen
/// 127.0.0.1:0`), pinned to core 0 with `taskset` if asked, and returns it with the
/// address it says it listens on. Its log is drained in the background so that it
/// never blocks on a full pipe.
pub fn spawn_server(
    bin: &std::path::Path,
    args: &[&std::ffi::OsStr],
    pin: bool,
) -> Result<(std::process::Child, String), String> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(["--listen", "127.0.0.1:0", "--no-web"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "cannot start {}: {e} (build it: cargo build --release -p baatkaro-server)",
            bin.display()
        )
    })?;
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the server has no standard error".into());
    };
    let mut stderr = BufReader::new(stderr);
    let mut line = String::new();
    // Bounded: the server logs a few lines before it listens, or exits.
    for _ in 0..50 {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(at) = line.find("listening on ") {
            let addr = line[at + "listening on ".len()..].trim().to_string();
            std::thread::spawn(move || for _ in stderr.lines() {});
            return Ok((child, addr));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err("the server did not start".into())
}
