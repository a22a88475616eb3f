//! Password hashes run on exactly the configured number of threads, and on no
//! other: the process's threads are counted from /proc, so this file holds one
//! test, alone in its process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use baatkaro_server::auth::{Hasher, THREAD_NAME};
use baatkaro_server::config::HashCost;

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

fn hashing_threads() -> usize {
    thread_names().iter().filter(|n| n.starts_with(THREAD_NAME)).count()
}

/// Waits until `n` hashing threads show in /proc: a new thread names itself once
/// it runs, and an ended one leaves when it has exited, so this polls, bounded
/// in time.
fn until_hashing_threads(n: usize) {
    let since = Instant::now();
    while hashing_threads() != n {
        assert!(since.elapsed() < Duration::from_secs(10), "want {n}: {:?}", thread_names());
        std::thread::yield_now();
    }
}

#[test]
fn hashes_run_on_the_configured_threads_only() {
    // A runtime on this thread alone: any thread that appears is the hasher's (or
    // a blocking pool's, which is what this test rules out).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let threads_before = thread_names().len();
    assert_eq!(hashing_threads(), 0);

    let h = Hasher::new(HashCost { memory_kib: 1024, iterations: 1 }, 3).unwrap();
    until_hashing_threads(3);
    assert_eq!(h.threads_running(), 3);

    let verified = rt.block_on(async {
        let stored: Arc<str> = h.hash(b"pw".to_vec()).await.unwrap().into();
        let mut jobs = tokio::task::JoinSet::new();
        for i in 0..30 {
            let (h, stored) = (h.clone(), stored.clone());
            jobs.spawn(async move {
                let pw = if i % 3 == 0 { b"pw".to_vec() } else { b"nope".to_vec() };
                let unknown = i % 5 == 0;
                let ok = h.verify(pw, if unknown { None } else { Some(stored) }).await;
                assert_eq!(ok, i % 3 == 0 && !unknown, "job {i}");
                ok
            });
        }
        let mut verified = 0;
        while let Some(ok) = jobs.join_next().await {
            verified += usize::from(ok.unwrap());
        }
        verified
    });
    assert_eq!(verified, 8);
    // 31 hashes later, still the same three threads and no others.
    assert_eq!(thread_names().len(), threads_before + 3, "{:?}", thread_names());
    assert_eq!(hashing_threads(), 3);

    // The threads end once the last handle is gone.
    drop(h);
    until_hashing_threads(0);
}
