//! Small runs of `baatkaro-load`, which fail on any lost, duplicated or reordered
//! delivery: saturation against a server the generator starts itself, and open
//! loop and private messages against a server that is already running. No speed is
//! asserted; BENCHMARKS.md has the figures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use baatkaro_server::config::{Config, HashCost};
use baatkaro_server::server::Server;

const LOAD: &str = env!("CARGO_BIN_EXE_baatkaro-load");

/// Runs the generator with `args` and `--json`; its report, which must say that
/// nothing was lost, duplicated or reordered.
fn run(args: &[&str]) -> serde_json::Value {
    let out: Output = Command::new(LOAD).args(args).arg("--json").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "baatkaro-load {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for key in ["lost", "duplicated", "reordered"] {
        assert_eq!(report[key], 0, "{key}: {report}");
    }
    for key in ["deliveries_per_sec", "sent_per_sec", "p50_us", "p99_us", "p999_us", "max_us"] {
        assert!(report[key].is_number(), "{key} missing: {report}");
    }
    report
}

#[test]
fn saturation_against_a_server_it_starts_delivers_everything_once_in_order() {
    // The generator starts the server binary that sits next to it in the target
    // directory; `cargo test --workspace` builds it.
    let server = std::path::Path::new(LOAD).with_file_name("baatkaro-server");
    assert!(server.exists(), "{} is missing: run the tests with --workspace", server.display());
    let r = run(&["--groups", "1", "--members", "5", "--messages", "200", "--window", "8"]);
    // Five members each see all five members' messages, their own included.
    assert_eq!(r["delivered"], 5000, "{r}");
    assert!(r["server_cpu_s"].is_number() && r["server_rss_bytes"].is_number(), "{r}");
    assert!(r["generator_cpu_pct"].is_number() && r["lower_bound"].is_boolean(), "{r}");
    assert!(r["generator_ns_per_delivery"].is_number(), "{r}");
    // The server's memory, sampled over the run (at least once, when it starts).
    let q = r["server_rss_quarters"].as_array().expect("RSS samples of the server it started");
    assert!(q.len() == 4 && q.iter().all(|b| b.as_u64().is_some_and(|b| b > 0)), "{r}");
}

#[test]
fn open_loop_and_private_runs_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut cfg = Config::new(dir.path().to_path_buf());
    cfg.hash_cost = HashCost::TEST_ONLY;
    cfg.logins_per_minute = 100_000;
    cfg.limits.rate = 100_000;
    cfg.limits.burst = 100_000;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, server) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = Server::open(cfg).await.unwrap();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        (addr, task)
    });
    let r = run(&["--server", &addr, "--members", "5", "--messages", "100", "--rate", "2000"]);
    // Latency was measured from each message's intended time.
    assert!(r["max_us"].as_u64().unwrap() > 0, "{r}");
    // Without the server's pid the generator says it does not know its usage.
    assert!(r["server_cpu_s"].is_null(), "{r}");
    // Two pairs: each member sees its own 100 messages and its peer's.
    let r = run(&["--server", &addr, "--private", "--members", "4", "--messages", "100"]);
    assert_eq!(r["delivered"], 800, "{r}");
    let _ = stop.send(());
    rt.block_on(server).unwrap().expect("the server stopped as asked");
}
