//! `baatkaro-logins`: N clients register at once, then log in at once, against a
//! server with the real (default) password hash cost, and the server's memory is
//! read before, at the peak and after each wave.
//!
//! Each client is one TCP connection that sends `a HELLO 1` and `b REGISTER uI
//! {12}` (or `LOGIN`) with its password in one write, and waits for the answer to
//! `b`. All N connect first, then all send, so the server holds N password hashes
//! to do at once; it computes `max_hashes` of them at a time.
//!
//! ```sh
//! cargo build --release -p baatkaro-server -p baatkaro-benches
//! target/release/baatkaro-logins --connections 500
//! target/release/baatkaro-logins --connections 500 --server-bin /other/target/release/baatkaro-server
//! ```
//!
//! It starts the server itself (`--server-bin`, by default the `baatkaro-server`
//! next to it) on port 0 with a temporary data directory, every setting at its
//! default except the per-address limits (all clients come from 127.0.0.1), and
//! `--max-hashes` if given. The peak is the highest `VmRSS` sampled every 10 ms
//! during the wave; `VmHWM` is the kernel's own high-water mark since the server
//! started. "After" is `VmRSS` `--settle-ms` (default 2000) after the last
//! answer, with every client connection closed.

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baatkaro_proto::{
    Command, Encode, OkReply, Password, Request, ServerFrame, ServerFrameDecoder, Tag, UserName,
    Versions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Args {
    connections: usize,
    server_bin: std::path::PathBuf,
    max_hashes: Option<usize>,
    settle: Duration,
    json: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: baatkaro-logins [--connections N] [--server-bin PATH] [--max-hashes N] \
         [--settle-ms MS] [--json]"
    );
    std::process::exit(2)
}

fn fail(why: &str) -> ! {
    eprintln!("baatkaro-logins: {why}");
    std::process::exit(1)
}

fn args() -> Args {
    let mut a = Args {
        connections: 500,
        server_bin: std::env::current_exe().unwrap_or_default().with_file_name("baatkaro-server"),
        max_hashes: None,
        settle: Duration::from_secs(2),
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or_else(|| usage());
        match flag.as_str() {
            "--connections" => a.connections = num(),
            "--max-hashes" => a.max_hashes = Some(num()),
            "--settle-ms" => a.settle = Duration::from_millis(num() as u64),
            "--server-bin" => a.server_bin = it.next().unwrap_or_else(|| usage()).into(),
            "--json" => a.json = true,
            _ => usage(),
        }
    }
    if a.connections == 0 {
        usage();
    }
    a
}

/// `VmRSS` and `VmHWM` of a process, in bytes.
fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// How many threads a process has.
fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("Threads:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// The server this run started, with its data directory.
struct Owned {
    child: Child,
    _dir: tempfile::TempDir,
}

fn start_server(a: &Args) -> (Owned, String) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    let data = dir.path().join("data");
    let max_hashes = a.max_hashes.map(|n| n.to_string());
    let mut args: Vec<&std::ffi::OsStr> = [
        "--log",
        "warn,baatkaro_server::server=info",
        "--logins-per-minute",
        "1000000",
        "--max-per-address",
        "100000",
        "--max-connections",
        "100000",
        "--data-dir",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    args.push(data.as_os_str());
    if let Some(n) = &max_hashes {
        args.extend([std::ffi::OsStr::new("--max-hashes"), std::ffi::OsStr::new(n)]);
    }
    let (child, addr) =
        baatkaro_benches::spawn_server(&a.server_bin, &args, false).unwrap_or_else(|e| fail(&e));
    (Owned { child, _dir: dir }, addr)
}

fn request(tag: &str, command: Command) -> Vec<u8> {
    let tag = Tag::new(tag).unwrap_or_else(|_| fail("bad tag"));
    Request { tag, command }.to_bytes().to_vec()
}

/// `a HELLO 1`, then `b REGISTER uI` or `b LOGIN uI` with the password.
fn greeting(i: usize, register: bool) -> Vec<u8> {
    let versions = Versions::new(vec![1]).unwrap_or_else(|_| fail("versions"));
    let mut bytes = request("a", Command::Hello { versions, client: None });
    let user: UserName = format!("u{i}").parse().unwrap_or_else(|_| fail("bad user name"));
    let password = Password::new("correct-pass").unwrap_or_else(|_| fail("password"));
    bytes.extend(request(
        "b",
        if register {
            Command::Register { user, password }
        } else {
            Command::Login { user, password }
        },
    ));
    bytes
}

/// Reads until the answer to `b`: whether it was OK.
async fn answer(s: &mut TcpStream) -> bool {
    let mut d = ServerFrameDecoder::new(1 << 20);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(f) = d.next_frame() {
            match f {
                Ok(ServerFrame::Ok { tag, reply }) if tag.as_str() == "b" => {
                    return matches!(reply, OkReply::Register { .. } | OkReply::Login { .. });
                }
                Ok(ServerFrame::Err { tag, failure }) if tag.as_str() == "b" => {
                    eprintln!("baatkaro-logins: {}", failure.code);
                    return false;
                }
                Ok(_) => {}
                Err(e) => fail(&format!("bad frame: {e}")),
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => d.push(&buf[..n]),
        }
    }
}

/// What one wave measured.
struct Wave {
    seconds: f64,
    failed: usize,
    peak_rss: u64,
    hwm: u64,
    after_rss: u64,
    peak_threads: u64,
}

/// Connects `n` clients, then has all of them register (or log in) at once, and
/// samples the server's memory until every one is answered.
async fn wave(addr: &str, pid: u32, n: usize, register: bool, settle: Duration) -> Wave {
    let mut streams = Vec::with_capacity(n);
    for _ in 0..n {
        let s = TcpStream::connect(addr).await.unwrap_or_else(|e| fail(&format!("{addr}: {e}")));
        let _ = s.set_nodelay(true);
        streams.push(s);
    }
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let (mut peak, mut peak_threads) = (0, 0);
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            // Bounded by the wave: `done` is set once every client has its answer.
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                peak = peak.max(memory(pid).map_or(0, |(rss, _)| rss));
                peak_threads = peak_threads.max(threads(pid).unwrap_or(0));
            }
            (peak, peak_threads)
        }
    });
    let start = Instant::now();
    let clients: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            tokio::spawn(async move {
                if s.write_all(&greeting(i, register)).await.is_err() {
                    return false;
                }
                answer(&mut s).await
            })
        })
        .collect();
    let mut failed = 0;
    for c in clients {
        failed += usize::from(!c.await.unwrap_or(false));
    }
    let seconds = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let (sampled, peak_threads) = sampler.await.unwrap_or((0, 0));
    let (rss, hwm) = memory(pid).unwrap_or((0, 0));
    tokio::time::sleep(settle).await;
    let (after_rss, _) = memory(pid).unwrap_or((0, 0));
    Wave { seconds, failed, peak_rss: sampled.max(rss), hwm, after_rss, peak_threads }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn main() {
    let a = args();
    let (mut owned, addr) = start_server(&a);
    let pid = owned.child.id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let (before, register, login) = rt.block_on(async {
        // The server's memory once it has settled after starting.
        tokio::time::sleep(a.settle).await;
        let before = memory(pid).map_or(0, |(rss, _)| rss);
        let register = wave(&addr, pid, a.connections, true, a.settle).await;
        let login = wave(&addr, pid, a.connections, false, a.settle).await;
        (before, register, login)
    });
    let _ = owned.child.kill();
    let _ = owned.child.wait();
    if a.json {
        let w = |w: &Wave| {
            format!(
                "{{\"seconds\":{:.3},\"failed\":{},\"peak_rss_bytes\":{},\"hwm_bytes\":{},\
                 \"after_rss_bytes\":{},\"peak_threads\":{}}}",
                w.seconds, w.failed, w.peak_rss, w.hwm, w.after_rss, w.peak_threads
            )
        };
        println!(
            "{{\"connections\":{},\"before_rss_bytes\":{before},\"register\":{},\"login\":{}}}",
            a.connections,
            w(&register),
            w(&login)
        );
    } else {
        println!("{} clients at once; server RSS before: {:.1} MiB", a.connections, mib(before));
        for (name, w) in [("REGISTER", &register), ("LOGIN", &login)] {
            println!(
                "{name}: {:.2} s, {} failed; RSS peak {:.1} MiB, VmHWM {:.1} MiB, \
                 after {:.1} MiB; up to {} threads",
                w.seconds,
                w.failed,
                mib(w.peak_rss),
                mib(w.hwm),
                mib(w.after_rss),
                w.peak_threads
            );
        }
    }
    if register.failed + login.failed > 0 {
        std::process::exit(1);
    }
}
