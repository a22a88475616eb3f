//! `baatkaro-server`: the reference BaatKaro server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use baatkaro_proto::Limits;
use baatkaro_server::config::{
    self, Config, FileConfig, HashCost, LIMIT_HELP, Registration, Reserve,
};
use baatkaro_server::pace::RuntimeIdle;
use baatkaro_server::server::{Listeners, Server};
use clap::{Arg, ArgAction, ArgMatches, Command, value_parser};

fn cli() -> Command {
    let mut cmd = Command::new("baatkaro-server")
        .version(env!("CARGO_PKG_VERSION"))
        .about("The reference server of the BaatKaro group chat protocol (SPEC.md)")
        .long_about(
            "The reference server of the BaatKaro group chat protocol (SPEC.md).\n\n\
             With no arguments it listens on 127.0.0.1:7667 and keeps its data in the \
             platform's data directory. Settings come from the built-in defaults, then \
             the TOML file given with --config, then these flags.",
        )
        .arg(Arg::new("listen").long("listen").value_name("ADDR").value_parser(value_parser!(std::net::SocketAddr))
            .help("Address to listen on [default: 127.0.0.1:7667]"))
        .arg(Arg::new("web-listen").long("web-listen").value_name("ADDR").value_parser(value_parser!(std::net::SocketAddr))
            .help("Address of the web listener: the web client, downloads and WebSocket sessions \
                   [default: 127.0.0.1:7668]"))
        .arg(Arg::new("no-web").long("no-web").action(ArgAction::SetTrue).conflicts_with("web-listen")
            .help("Serve no web listener"))
        .arg(Arg::new("web-origin").long("web-origin").value_name("URL").action(ArgAction::Append)
            .help("An origin the web client is also reached at, e.g. https://chat.example.org behind \
                   a proxy: pages from it may open sessions (repeatable)"))
        .arg(Arg::new("data-dir").long("data-dir").value_name("DIR").value_parser(value_parser!(PathBuf))
            .help("Directory for the database and its lock [default: the platform's data directory]"))
        .arg(Arg::new("config").long("config").value_name("FILE").value_parser(value_parser!(PathBuf))
            .help("TOML file with settings: the flags' names with _ for -, and a [limits] table"))
        .arg(Arg::new("tls-cert").long("tls-cert").value_name("FILE").value_parser(value_parser!(PathBuf))
            .requires("tls-key").conflicts_with("tls-self-signed")
            .help("Serve TLS with this PEM certificate chain (the server's own certificate first)"))
        .arg(Arg::new("tls-key").long("tls-key").value_name("FILE").value_parser(value_parser!(PathBuf))
            .requires("tls-cert")
            .help("The PEM private key of --tls-cert"))
        .arg(Arg::new("tls-self-signed").long("tls-self-signed").action(ArgAction::SetTrue)
            .help("Serve TLS with a self-signed certificate made on first start and kept in the data \
                   directory; its fingerprint is logged, for clients to pin"))
        .arg(Arg::new("tls-handshake-ms").long("tls-handshake-ms").value_name("MS").value_parser(value_parser!(u64))
            .help("Milliseconds a connection has to complete its TLS handshake [default: 10000]"))
        .arg(Arg::new("insecure-plaintext").long("insecure-plaintext").action(ArgAction::SetTrue)
            .help("Allow plain text on an address other than loopback (behind a TLS proxy, say): \
                   passwords and messages then cross the network in clear"))
        .arg(Arg::new("registration").long("registration").value_parser(value_parser!(Registration))
            .help("Whether REGISTER creates accounts [default: open]"))
        .arg(Arg::new("max-accounts").long("max-accounts").value_name("N").value_parser(value_parser!(u64))
            .help("Most accounts the server holds [default: 1000000]"))
        .arg(Arg::new("max-connections").long("max-connections").value_name("N").value_parser(value_parser!(usize))
            .help("Most connections at once [default: 10000]"))
        .arg(Arg::new("max-per-address").long("max-per-address").value_name("N").value_parser(value_parser!(usize))
            .help("Most connections from one address [default: 256]"))
        .arg(Arg::new("logins-per-minute").long("logins-per-minute").value_name("N").value_parser(value_parser!(u64))
            .help("LOGIN and REGISTER attempts per minute from one address [default: 60]"))
        .arg(Arg::new("frames-per-second").long("frames-per-second").value_name("N").value_parser(value_parser!(u64))
            .help("Frames per second per connection before reading slows down [default: 20000]"))
        .arg(Arg::new("max-hashes").long("max-hashes").value_name("N").value_parser(value_parser!(usize))
            .help("Password hashes computed at once [default: 2]"))
        .arg(Arg::new("hash-memory-kib").long("hash-memory-kib").value_name("KIB").value_parser(value_parser!(u32))
            .help("Argon2id memory per password hash [default: 19456]"))
        .arg(Arg::new("hash-iterations").long("hash-iterations").value_name("N").value_parser(value_parser!(u32))
            .help("Argon2id passes per password hash [default: 2]"))
        .arg(Arg::new("insecure-test-hash").long("insecure-test-hash").action(ArgAction::SetTrue)
            .help("Use the cheapest password hash: for tests and load generation on a private machine only"))
        .arg(Arg::new("no-direct-io").long("no-direct-io").action(ArgAction::SetTrue)
            .help("Move shared files, and write the message logs, through the page cache, not by direct I/O (O_DIRECT)"))
        .arg(Arg::new("commit-cycle-us").long("commit-cycle-us").value_name("MICROS").value_parser(value_parser!(u64))
            .help("Least time between large commits while the server is saturated, for throughput; 0 never waits [default: 2500]"))
        .arg(Arg::new("token-idle-secs").long("token-idle-secs").value_name("SECS").value_parser(value_parser!(u64))
            .help("Seconds a session token lives unused before it stops working [default: 7776000, 90 days]"))
        .arg(Arg::new("log").long("log").value_name("FILTER")
            .help("Log filter, e.g. info, debug, baatkaro_server=trace [default: info, or RUST_LOG]"))
        .arg(Arg::new("upload-reserve").long("upload-reserve").value_name("BYTES|N%").value_parser(value_parser!(Reserve))
            .help("Disk space uploads must leave free, so that files never stop messages: bytes, or a percentage of the file system such as 5% [default: 1073741824]"))
        .arg(Arg::new("store-reserve").long("store-reserve").value_name("BYTES").value_parser(value_parser!(u64))
            .help("Disk space held for the database in baatkaro.reserve, let go when the disk is nearly full; 0 holds none [default: 67108864]"))
        .arg(Arg::new("verify-at-start").long("verify-at-start").value_name("BYTES").value_parser(value_parser!(u64))
            .help("Bytes of stored rows checked against their checksums at start (the whole database up to that size); 0 skips the check [default: 1073741824]"))
        .arg(Arg::new("verify-rate").long("verify-rate").value_name("BYTES").value_parser(value_parser!(u64))
            .help("Bytes a second the background check of the database reads while serving; 0 turns it off [default: 16777216]"))
        .arg(Arg::new("event-segment-bytes").long("event-segment-bytes").value_name("BYTES").value_parser(value_parser!(u64).range(1 << 20..))
            .help("Bytes of each segment of the event log, at least 1048576 [default: 67108864]"))
        .arg(Arg::new("fresh").long("fresh").action(ArgAction::SetTrue)
            .help("Start a new, empty store where the database is gone but the data directory still holds a store's files (refused where a database exists)"));
    cmd = cmd.subcommand(admin_cli());
    let defaults = Limits::default();
    for (key, help) in LIMIT_HELP {
        if config::SET_ELSEWHERE.iter().any(|(k, _)| k == key) {
            continue;
        }
        let default = defaults.get(key.as_bytes()).unwrap_or_default();
        cmd = cmd.arg(
            Arg::new(*key)
                .long(format!("limit-{key}"))
                .value_name("N")
                .value_parser(value_parser!(u64))
                .help(format!("Limit `{key}`: {help} [default: {default}]"))
                .help_heading("Limits (SPEC.md Appendix B, advertised in HELLO)"),
        );
    }
    cmd
}

/// `baatkaro-server admin`: offline changes to accounts.
fn admin_cli() -> Command {
    let user = || {
        Arg::new("user")
            .value_name("USER")
            .required(true)
            .value_parser(value_parser!(baatkaro_proto::UserName))
    };
    Command::new("admin")
        .about("Change accounts while the server is stopped: reset a password, lock or unlock an account")
        .long_about(
            "Change accounts in the data directory while no server runs on it (the \
             directory's lock file says whether one does; a running server makes this \
             refuse). The hash cost and the password limit come from --config, as the \
             server's do.",
        )
        .subcommand_required(true)
        .arg(Arg::new("data-dir").long("data-dir").value_name("DIR").value_parser(value_parser!(PathBuf))
            .help("The server's data directory [default: the config file's, or the platform's]"))
        .arg(Arg::new("config").long("config").value_name("FILE").value_parser(value_parser!(PathBuf))
            .help("The server's TOML settings (for data_dir, [hash] and [limits] password)"))
        .arg(Arg::new("insecure-test-hash").long("insecure-test-hash").action(ArgAction::SetTrue)
            .help("Hash with the cheapest cost, as a server started with it does: for tests only"))
        .subcommand(Command::new("reset-password")
            .about("Give a user a new password (from --password-file, BAATKARO_PASSWORD or a prompt) and revoke their session tokens")
            .arg(user())
            .arg(Arg::new("password-file").long("password-file").value_name("PATH").value_parser(value_parser!(PathBuf))
                .help("Read the new password from this file's first line")))
        .subcommand(Command::new("lock").about("Lock an account: it does not log in until unlocked").arg(user()))
        .subcommand(Command::new("unlock").about("Unlock an account").arg(user()))
}

/// Runs `baatkaro-server admin …`.
fn admin(m: &ArgMatches) -> ExitCode {
    match admin_change(m) {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("baatkaro-server admin: {e}");
            ExitCode::FAILURE
        }
    }
}

fn admin_change(m: &ArgMatches) -> Result<String, String> {
    use baatkaro_server::admin::{self, Change, Settings};
    let mut cfg = Config::new(config::default_data_dir().unwrap_or_default());
    if let Some(path) = m.get_one::<PathBuf>("config") {
        FileConfig::read(path).and_then(|f| f.apply(&mut cfg)).map_err(|e| e.to_string())?;
    }
    if let Some(dir) = m.get_one::<PathBuf>("data-dir") {
        cfg.data_dir = dir.clone();
    }
    if m.get_flag("insecure-test-hash") {
        cfg.hash_cost = HashCost::TEST_ONLY;
    }
    let user = |s: &ArgMatches| {
        s.get_one::<baatkaro_proto::UserName>("user").copied().ok_or("no user given")
    };
    let change = match m.subcommand() {
        Some(("reset-password", s)) => {
            Change::ResetPassword { user: user(s)?, password: admin_password(s)? }
        }
        Some(("lock", s)) => Change::Lock { user: user(s)? },
        Some(("unlock", s)) => Change::Unlock { user: user(s)? },
        _ => return Err("give reset-password, lock or unlock".into()),
    };
    let settings = Settings { hash_cost: cfg.hash_cost, min_password: cfg.limits.password };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(admin::run(&cfg.data_dir, change, settings)).map_err(|e| e.to_string())
}

/// The new password for `admin reset-password`: from `--password-file`,
/// `BAATKARO_PASSWORD`, or a prompt that does not echo.
fn admin_password(m: &ArgMatches) -> Result<baatkaro_proto::Password, String> {
    let raw = if let Some(path) = m.get_one::<PathBuf>("password-file") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.lines().next().unwrap_or_default().to_string()
    } else if let Ok(p) = std::env::var("BAATKARO_PASSWORD") {
        p
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        rpassword::prompt_password("new password: ").map_err(|e| e.to_string())?
    } else {
        return Err("no password: set BAATKARO_PASSWORD or give --password-file".into());
    };
    baatkaro_proto::Password::new(&raw).map_err(|e| format!("password: {e}"))
}

fn configure(m: &ArgMatches) -> Result<Config, String> {
    let data_dir = config::default_data_dir()
        .ok_or("no data directory could be found for this platform: give --data-dir")?;
    let mut cfg = Config::new(data_dir);
    if let Some(path) = m.get_one::<PathBuf>("config") {
        FileConfig::read(path).and_then(|f| f.apply(&mut cfg)).map_err(|e| e.to_string())?;
    }
    macro_rules! flag {
        ($name:literal, $ty:ty, $field:expr) => {
            if let Some(v) = m.get_one::<$ty>($name) {
                $field = v.clone();
            }
        };
    }
    flag!("listen", std::net::SocketAddr, cfg.listen);
    flag!("data-dir", PathBuf, cfg.data_dir);
    if let Some(v) = m.get_one::<std::net::SocketAddr>("web-listen") {
        cfg.web_listen = Some(*v);
    }
    if m.get_flag("no-web") {
        cfg.web_listen = None;
    }
    if let Some(origins) = m.get_many::<String>("web-origin") {
        cfg.web_origins = origins.cloned().collect();
    }
    flag!("max-accounts", u64, cfg.max_accounts);
    flag!("max-connections", usize, cfg.max_connections);
    flag!("max-per-address", usize, cfg.max_per_address);
    flag!("logins-per-minute", u64, cfg.logins_per_minute);
    flag!("frames-per-second", u64, cfg.frames_per_second);
    flag!("max-hashes", usize, cfg.max_hashes);
    flag!("hash-memory-kib", u32, cfg.hash_cost.memory_kib);
    flag!("hash-iterations", u32, cfg.hash_cost.iterations);
    flag!("log", String, cfg.log);
    flag!("tls-handshake-ms", u64, cfg.tls_handshake_ms);
    let tls = config::tls_source(
        m.get_one::<PathBuf>("tls-cert").cloned(),
        m.get_one::<PathBuf>("tls-key").cloned(),
        m.get_flag("tls-self-signed"),
    )
    .map_err(|e| e.to_string())?;
    if tls.is_some() {
        cfg.tls = tls;
    }
    if m.get_flag("insecure-plaintext") {
        cfg.insecure_plaintext = true;
    }
    flag!("upload-reserve", Reserve, cfg.upload_reserve);
    flag!("store-reserve", u64, cfg.store_reserve);
    flag!("verify-at-start", u64, cfg.verify_at_start);
    flag!("verify-rate", u64, cfg.verify_rate);
    flag!("event-segment-bytes", u64, cfg.event_segment_bytes);
    if m.get_flag("fresh") {
        cfg.fresh = true;
    }
    flag!("token-idle-secs", u64, cfg.token_idle_secs);
    flag!("commit-cycle-us", u64, cfg.commit_cycle_us);
    if let Some(r) = m.get_one::<Registration>("registration") {
        cfg.registration_open = *r == Registration::Open;
    }
    if m.get_flag("no-direct-io") {
        cfg.direct_io = false;
    }
    if m.get_flag("insecure-test-hash") {
        cfg.hash_cost = HashCost::TEST_ONLY;
    }
    for (key, _) in LIMIT_HELP {
        if config::SET_ELSEWHERE.iter().any(|(k, _)| k == key) {
            continue;
        }
        if let Some(v) = m.get_one::<u64>(key) {
            cfg.limits.set(key.as_bytes(), *v);
        }
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let matches = cli().get_matches();
    if let Some(m) = matches.subcommand_matches("admin") {
        return admin(m);
    }
    let mut cfg = match configure(&matches) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("baatkaro-server: {e}");
            return ExitCode::from(2);
        }
    };
    let filter =
        std::env::var("RUST_LOG").ok().filter(|_| cfg.log == "info").unwrap_or(cfg.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    cfg.max_connections = baatkaro_server::rlimit::fit(cfg.max_connections).max_connections;
    // The workers say when they go idle and come back: commits are paced only while
    // they are busy (baatkaro_server::pace).
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let idle = RuntimeIdle::install(&mut builder);
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("baatkaro-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(cfg, idle))
}

/// Starts the server and serves until SIGTERM or SIGINT, whenever that comes.
async fn serve(cfg: Config, idle: Arc<RuntimeIdle>) -> ExitCode {
    // The handlers go in before anything that takes time: until they are, the
    // signals' default action ends the process at once (status 143), which during
    // start-up meant in the middle of opening the store.
    let mut stop = match StopSignals::install() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("baatkaro-server: cannot handle SIGTERM and SIGINT: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut starting = tokio::spawn(start(cfg));
    let started = tokio::select! {
        started = &mut starting => started,
        () = stop.recv() => {
            // Opening runs on blocking threads and may be migrating the schema: it
            // is let finish (a migration is one transaction per step either way),
            // then everything is dropped in order. A second signal meanwhile is
            // caught, and changes nothing.
            tracing::info!("stop signal while starting: stopping once the store is open");
            return match starting.await {
                Ok(Ok(_)) => {
                    tracing::info!("stopped");
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) => {
                    eprintln!("baatkaro-server: {e}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("baatkaro-server: start-up failed: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let (listener, server) = match started {
        Ok(Ok(started)) => started,
        Ok(Err(e)) => {
            eprintln!("baatkaro-server: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("baatkaro-server: start-up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match server.paced(idle).serve(listener, stop.recv()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baatkaro-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Binds the listening socket, then opens and loads the store: the start-up work
/// a stop signal may interrupt.
async fn start(cfg: Config) -> Result<(Listeners, Server), String> {
    let tcp = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let web = match cfg.web_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            format!(
                "cannot listen on {addr} for the web client: {e} (--web-listen ADDR, or --no-web)"
            )
        })?),
        None => None,
    };
    let listener = Listeners { tcp, web };
    let data_dir = cfg.data_dir.clone();
    tracing::info!(data_dir = %data_dir.display(), "opening the store");
    let server = Server::open(cfg).await.map_err(|e| e.to_string())?;
    tracing::info!(data_dir = %data_dir.display(), "store open");
    Ok((listener, server))
}

/// The signals that stop the server: SIGTERM and SIGINT (Ctrl-C). Handled from
/// [`install`](Self::install) on, whether or not anyone waits for them yet.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers; must run inside the runtime.
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    /// Waits for the next stop signal (or one that came since the last call).
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.interrupt.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
