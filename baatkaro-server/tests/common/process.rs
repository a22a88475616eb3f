//! The server binary run as a process of its own: started, watched through what it
//! logs, and stopped or killed.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::sync::mpsc;

/// The binary's standard error, read on a thread, line by line.
pub struct Log {
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    /// The lines of `seen` a wait found. The others are looked at again by the next
    /// wait: the server may log what one waits for before what another waited for.
    found: Vec<usize>,
}

impl Log {
    pub fn of(stderr: impl Read + Send + 'static) -> Log {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Log { lines, seen: Vec::new(), found: Vec::new() }
    }

    /// Waits (bounded) for a line that contains `what`; `None` if the process ended
    /// first.
    pub fn wait_for(&mut self, what: &str) -> Option<String> {
        let earlier =
            (0..self.seen.len()).find(|&i| !self.found.contains(&i) && self.seen[i].contains(what));
        if let Some(at) = earlier {
            self.found.push(at);
            return Some(self.seen[at].clone());
        }
        loop {
            match self.lines.recv_timeout(super::WAIT) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(what) {
                        self.found.push(self.seen.len() - 1);
                        return Some(line);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("no log line with {what:?} in {:?}; saw {:?}", super::WAIT, self.seen)
                }
            }
        }
    }

    /// Everything it said, once the process has ended.
    pub fn rest(mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(super::WAIT) {
            self.seen.push(line);
        }
        self.seen
    }
}

/// A server process, killed if a failing test leaves it running.
pub struct Running(pub Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The server binary, started by `cmd`, and what it logs; the address it listens
/// on, or `None` if it exited first.
pub fn serve(mut cmd: Process) -> (Running, Log, Option<std::net::SocketAddr>) {
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut log = Log::of(child.stderr.take().unwrap());
    let addr = log.wait_for("listening on ").map(|line| {
        let at = line.find("listening on ").unwrap() + "listening on ".len();
        line[at..].trim().parse().unwrap()
    });
    (Running(Some(child)), log, addr)
}

pub fn server_bin(data: &Path, extra: &[&str]) -> Process {
    let mut cmd = Process::new(env!("CARGO_BIN_EXE_baatkaro-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--no-web", "--insecure-test-hash", "--data-dir"])
        .arg(data);
    cmd.args(extra);
    cmd
}
