//! `baatkaro-load`: measures message throughput of a BaatKaro server (or of Redis
//! pub/sub, for comparison), and checks it. Its parts are in `benches/src/load/`.
//!
//! Every member is one TCP connection speaking the protocol through
//! `baatkaro-proto`'s codec, and sends `--messages` in all. In saturation mode each
//! member keeps up to `--window` SENDs in flight; in open-loop mode (`--rate R`) the
//! members send R messages per second in all on a fixed schedule (each member woken
//! at its times by a kernel timer, not tokio's millisecond one), and latency counts
//! from each message's intended send time (no coordinated omission); how late the
//! generator itself wrote them is reported too (`send_late_p50_us`,
//! `send_late_p99_us`), as it is part of every latency. Either way every
//! member must have received every message of its group exactly once, in sequence
//! order, without a gap, or the run fails (exit 1). `--private` pairs the members
//! of each group slot instead (members 0 and 1, 2 and 3, …): each sends its messages
//! to its peer as private messages, and both see every message of the pair's
//! conversation. `--connections K --idle` instead opens K logged-in idle
//! connections and reports the server's memory per connection.
//!
//! It reports its own CPU use too: a figure taken while the generator kept its core
//! more than 85 % busy may be the generator's limit rather than the server's, and is
//! marked as a lower bound (`"lower_bound": true`). It also reports its CPU time per
//! delivery and so how many deliveries per second one core of it could take
//! (`generator_ns_per_delivery`, `generator_capacity_per_sec`). On a terminal it
//! shows a progress line on standard error while it runs.
//!
//! ```sh
//! cargo build --release -p baatkaro-server -p baatkaro-benches
//! taskset -c 1 target/release/baatkaro-load --groups 1 --members 100 --messages 1000 --pin
//! ```
//!
//! Without `--server` it starts the release server next to itself (port 0, a
//! temporary data directory, the test-only password hash, send budgets raised) and
//! reports its CPU time during the run and its peak memory. With `--server ADDR` it measures a running
//! server, which must allow the accounts it registers (`--insecure-test-hash`,
//! `--logins-per-minute`, `--limit-rate`, `--limit-burst`).
//!
//! `--redis` measures Redis pub/sub instead, in the same shape and with the same
//! checks, so that a figure can be given as a ratio to Redis measured on the same
//! machine in the same sitting: it starts Debian's `redis-server` from the PATH
//! on a free loopback port (storing nothing: `--save '' --appendonly no`, a
//! temporary directory), pinned to core 0 with `--pin`, and measures its CPU and
//! memory as it does the BaatKaro server's; `--redis-server ADDR` measures a
//! running one. A group is a channel; each member is one RESP3 connection that
//! both SUBSCRIBEs to it and PUBLISHes into it, a PUBLISH's reply being its
//! acknowledgement; with `--private` each pair is a channel of two (so, as with
//! BaatKaro, both members receive every message of the pair, their own included).
//! A payload is `--size` bytes (32 at least; less is refused): the send time, the
//! sender's place in its group and its number among the sender's messages, which
//! every member checks arrive in order without a gap. The report's `target` says
//! which was measured.
//!
//! ```sh
//! taskset -c 1 target/release/baatkaro-load --redis --groups 10 --members 10 --messages 5000 --pin
//! ```

use baatkaro_benches::load::process::{Owned, fail};
use baatkaro_benches::load::run::{Options, drive};
use baatkaro_benches::load::{baatkaro, redis, report};

/// What to measure.
enum Target {
    /// The BaatKaro server: started here, or at this address.
    BaatKaro(Option<String>),
    /// Redis pub/sub: started here, or at this address.
    Redis(Option<String>),
}

/// What the command line asks for.
struct Args {
    target: Target,
    opts: Options,
    /// `--connections K --idle`: only open K logged-in idle connections.
    idle: Option<usize>,
}

fn usage() -> ! {
    eprintln!(
        "usage: baatkaro-load [--server ADDR | --redis | --redis-server ADDR] [--groups G] \
         [--members N] [--size BYTES] [--messages M] [--window W | --rate R] [--private] \
         [--json] [--pin] | [--connections K --idle]"
    );
    std::process::exit(2)
}

fn args() -> Args {
    let mut a = Options::default();
    let (mut server, mut redis, mut redis_server) = (None, false, None);
    let (mut connections, mut idle) = (None, false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or_else(|| usage())
        };
        match flag.as_str() {
            "--groups" => a.groups = num(),
            "--members" => a.members = num(),
            "--size" => a.size = num(),
            "--messages" => a.messages = num(),
            "--window" => a.window = num(),
            "--server" => server = Some(it.next().unwrap_or_else(|| usage())),
            "--redis" => redis = true,
            "--redis-server" => redis_server = Some(it.next().unwrap_or_else(|| usage())),
            "--json" => a.json = true,
            "--pin" => a.pin = true,
            "--connections" => connections = Some(num()),
            "--idle" => idle = true,
            "--rate" => a.rate = Some(num()),
            "--private" => a.private = true,
            _ => usage(),
        }
    }
    let target = match (server, redis, redis_server) {
        (server, false, None) => Target::BaatKaro(server),
        (None, true, None) => Target::Redis(None),
        (None, false, Some(addr)) => Target::Redis(Some(addr)),
        _ => usage(),
    };
    let idle = match (connections, idle, &target) {
        (Some(k), true, Target::BaatKaro(_)) => Some(k),
        (None, false, _) => None,
        _ => usage(),
    };
    // A Redis payload holds the stamp, the sender's place and its number: a smaller
    // one would be sent larger than the report says, and larger than BaatKaro's.
    if matches!(target, Target::Redis(_)) && a.size < redis::PAYLOAD_MIN {
        fail(&format!("--redis needs --size {} at least", redis::PAYLOAD_MIN));
    }
    if a.private && !a.members.is_multiple_of(2) {
        fail("--private pairs the members: --members must be even");
    }
    Args { target, opts: a, idle }
}

fn main() {
    let Args { target, opts, idle } = args();
    let (owned, addr) = match &target {
        Target::BaatKaro(Some(addr)) | Target::Redis(Some(addr)) => (None, addr.clone()),
        Target::BaatKaro(None) => {
            let (o, addr) = baatkaro::start_server(opts.pin);
            (Some(o), addr)
        }
        Target::Redis(None) => {
            let (o, addr) = redis::start_server(opts.pin).unwrap_or_else(|e| fail(&e));
            (Some(o), addr)
        }
    };
    let pid = owned.as_ref().map(Owned::pid);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    if let Some(k) = idle {
        rt.block_on(baatkaro::idle_run(&addr, k, pid, opts.json));
        owned.into_iter().for_each(Owned::stop);
        return;
    }
    let epoch = std::time::Instant::now();
    let (name, outcome) = rt.block_on(async {
        match target {
            Target::BaatKaro(_) => {
                let members = baatkaro::members(&addr, &opts).await;
                ("baatkaro", drive(members, &opts, epoch, pid).await)
            }
            Target::Redis(_) => {
                let members = redis::members(&addr, &opts).await;
                ("redis", drive(members, &opts, epoch, pid).await)
            }
        }
    });
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprint!("\r\x1b[2K"); // The progress line goes.
    }
    let passed = report::print(name, &opts, &outcome);
    owned.into_iter().for_each(Owned::stop);
    if !passed {
        std::process::exit(1);
    }
}
