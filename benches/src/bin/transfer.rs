//! `baatkaro-transfer`: uploads and then downloads one large file through a real
//! server over loopback and reports the rate each way (hashing and verification
//! included) and the server's memory during the transfer.
//!
//! ```sh
//! cargo build --release -p baatkaro-server -p baatkaro-benches
//! taskset -c 1 target/release/baatkaro-transfer --size-mib 1024 --pin   # server on core 0
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use baatkaro_client::transfer::name_for;
use baatkaro_client::{Client, IfExists};
use baatkaro_proto::{Conversation, JoinRule, Password};

fn usage() -> ! {
    eprintln!("usage: baatkaro-transfer [--size-mib N] [--server-bin PATH] [--pin]");
    std::process::exit(2)
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

/// Writes `size` bytes of cheap pseudo-random content.
fn make_file(path: &Path, size: u64) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    // On disk before the clock starts: its dirty pages must not slow the transfer.
    f.get_ref().sync_all()
}

/// The value, or the error on standard error and exit 1.
fn ok<T>(r: Result<T, baatkaro_client::ClientError>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    })
}

fn main() {
    let mut size_mib = 1024u64;
    let mut server_bin: Option<PathBuf> = None;
    let mut pin = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--size-mib" => {
                size_mib = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| usage())
            }
            "--server-bin" => server_bin = args.next().map(PathBuf::from),
            "--pin" => pin = true,
            _ => usage(),
        }
    }
    let server_bin = server_bin.unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        exe.with_file_name("baatkaro-server")
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let size = size_mib << 20;
    let source = dir.path().join("source.bin");
    make_file(&source, size).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let data = dir.path().join("data");
    let args: [&std::ffi::OsStr; 3] =
        ["--insecure-test-hash".as_ref(), "--data-dir".as_ref(), data.as_os_str()];
    let (mut server, addr) = baatkaro_benches::spawn_server(&server_bin, &args, pin)
        .unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
    let pid = server.id();
    // The server's memory, sampled while the transfers run.
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let s2 = sampling.clone();
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        while s2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(m) = memory(pid) {
                samples.push(m.0);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        samples
    });
    let before = memory(pid).map_or(0, |m| m.0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|_| std::process::exit(1));
    let (up, down) = rt.block_on(async {
        let c = Client::connect(addr.as_str()).await.unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
        ok(c.register(
            "bench".parse().unwrap_or_else(|_| usage()),
            Password::new("bench-password").unwrap_or_else(|_| usage()),
        )
        .await);
        let group = "bench".parse().unwrap_or_else(|_| usage());
        ok(c.ok(baatkaro_proto::Command::Create { group, rule: Some(JoinRule::Open) }).await);
        let name = ok(name_for(&source));
        let t = Instant::now();
        let shared = ok(c.upload(Conversation::Group(group), &source, name, &mut |_, _| {}).await);
        let up = t.elapsed();
        let dest = dir.path().join("copy.bin");
        let t = Instant::now();
        ok(c.download(&shared, &dest, IfExists::PickFreeName, &mut |_, _| {}).await);
        (up, t.elapsed())
    });
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let samples = sampler.join().unwrap_or_default();
    let peak = memory(pid).map_or(0, |m| m.1);
    let max_sample = samples.iter().copied().max().unwrap_or(0);
    let _ = server.kill();
    let _ = server.wait();
    let mb = size as f64 / 1e6;
    println!(
        "size {size_mib} MiB: upload {:.0} MB/s ({:.2} s), download {:.0} MB/s ({:.2} s); server RSS before {} MiB, max during {} MiB, peak (VmHWM) {} MiB",
        mb / up.as_secs_f64(),
        up.as_secs_f64(),
        mb / down.as_secs_f64(),
        down.as_secs_f64(),
        before >> 20,
        max_sample >> 20,
        peak >> 20
    );
}
