//! The server's configuration: built-in defaults, then an optional TOML file, then
//! command-line flags, each overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use baatkaro_proto::transport::plaintext_allowed;
use baatkaro_proto::web::OriginPolicy;
use baatkaro_proto::{LIMIT_VALUE_MAX, LINE_MAX, Limits, PAYLOAD_CEILING, TEXT_MAX};
use serde::Deserialize;

pub use crate::space::Reserve;
use crate::tls::TlsSource;

/// Where the server listens when told nothing else.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7667";

/// Where the web listener (the page, downloads and WebSocket sessions) listens
/// when told nothing else.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:7668";

/// The longest commit cycle an operator may set (`commit_cycle_us`), 50 ms.
pub const MAX_COMMIT_CYCLE_US: u64 = 50_000;

/// One line of help for every limit of SPEC.md Appendix B, in wire order.
pub const LIMIT_HELP: &[(&str, &str)] = &[
    ("line", "longest line in bytes, CRLF included (fixed by the protocol at 1024)"),
    ("payload", "longest payload in bytes (at most 16777216)"),
    ("message", "longest message text in bytes (at most 65536)"),
    ("reason", "longest join-request reason in bytes (at most 65536)"),
    ("file", "largest file in bytes"),
    ("chunk", "chunk size for uploads and downloads in bytes (at most payload)"),
    ("quota", "file storage per user in bytes"),
    ("uploads", "unfinished uploads per user"),
    ("partial", "seconds an unfinished upload is kept for resuming"),
    ("groups", "groups per user, counting pending requests"),
    ("members", "members per group"),
    ("pending", "pending join requests per group"),
    ("invites", "pending invites per group"),
    ("rate", "sustained sends per second per user (at least 1)"),
    ("burst", "sends allowed in a burst above rate (at least 1)"),
    ("history", "events kept per conversation (0: all)"),
    ("page", "most events one HISTORY reply carries (at least 1)"),
    ("inflight", "requests in flight per connection before the server stops reading"),
    ("sessions", "logged-in connections per user"),
    ("idle", "seconds without a frame before a connection is closed"),
    ("expiry", "seconds until a join request or invite expires"),
    ("keys", "seconds an idempotency key is remembered"),
    (
        "queue",
        "outgoing bytes queued for a connection before it is dropped as slow, and chunk bytes in flight before the server stops reading",
    ),
    (
        "login",
        "seconds a connection has to log in, not counting its own password hash (0: only idle applies)",
    ),
    (
        "key-count",
        "idempotency keys remembered per user, the newest (0: every key of the keys window)",
    ),
    (
        "tokens",
        "session tokens per user; making one more lets go of the least recently used (at least 1)",
    ),
    ("password", "shortest password REGISTER and PASSWORD accept, in bytes (1 to 1024)"),
    ("logins", "password attempts a minute from one address: set with --logins-per-minute"),
    ("per-address", "connections at once from one address: set with --max-per-address"),
    ("frames", "frames a second per connection: set with --frames-per-second"),
];

/// The HELLO keys whose values are settings of their own (the flag and file key
/// named), not `--limit-KEY` or `[limits]`: they were settings before HELLO listed
/// them.
pub const SET_ELSEWHERE: &[(&str, &str)] = &[
    ("logins", "logins_per_minute"),
    ("per-address", "max_per_address"),
    ("frames", "frames_per_second"),
];

/// The cost of the Argon2id password hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
}

impl Default for HashCost {
    /// OWASP's recommendation for Argon2id: 19 MiB, two passes, one lane.
    fn default() -> Self {
        HashCost { memory_kib: 19 * 1024, iterations: 2 }
    }
}

impl HashCost {
    /// The cheapest cost Argon2 allows. For tests and load generation on a private
    /// machine only: it makes stolen hashes cheap to crack.
    pub const TEST_ONLY: HashCost = HashCost { memory_kib: 8, iterations: 1 };
}

/// Everything the server needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The address of the web listener, which serves the web client, downloads and
    /// WebSocket sessions (SPEC.md section 12); `None` serves no web.
    pub web_listen: Option<SocketAddr>,
    /// Origins the web client is also reached at, beyond the listener's own (a
    /// proxy's `https://chat.example.org`): pages from them may open sessions.
    pub web_origins: Vec<String>,
    /// Milliseconds an HTTP connection of the web listener may move no byte either
    /// way (a client that stopped reading its responses) before it is closed.
    pub web_stall_ms: u64,
    /// Where the database and the lock file live.
    pub data_dir: PathBuf,
    /// Every limit, advertised in HELLO.
    pub limits: Limits,
    /// Whether REGISTER creates accounts.
    pub registration_open: bool,
    /// Most accounts the server holds; REGISTER fails past it.
    pub max_accounts: u64,
    /// Most connections at once; more are greeted with `BYE TOO_MANY_CONNECTIONS`.
    pub max_connections: usize,
    /// Most connections from one address at once.
    pub max_per_address: usize,
    /// LOGIN and REGISTER attempts per minute from one address (and the burst).
    pub logins_per_minute: u64,
    /// Frames per second one connection may send before the server reads it more
    /// slowly; it may send twice as many in a burst.
    pub frames_per_second: u64,
    /// Most password hashes computed at once (each takes `hash_cost.memory_kib`).
    pub max_hashes: usize,
    /// The password hash cost.
    pub hash_cost: HashCost,
    /// The log filter (`info`, `debug`, `baatkaro_server=trace`, …).
    pub log: String,
    /// Milliseconds clients are asked to wait before reconnecting after a shutdown.
    pub shutdown_retry_ms: u64,
    /// Whether shared files move, and the message logs are written, by direct I/O
    /// (`O_DIRECT`) where the file system allows it, instead of through the page
    /// cache.
    pub direct_io: bool,
    /// Milliseconds a connection the server closes may take to receive its last
    /// frames (a BYE), while its input is read and dropped.
    pub linger_ms: u64,
    /// Microseconds from one large batch of writes to the store to the next while
    /// the server is saturated ([`crate::pace`]): longer cycles share each commit's
    /// fixed cost among more messages, for throughput, and add up to a cycle to a
    /// message's wait then; 0 never holds a batch. Only a server given its
    /// runtime's hooks ([`crate::server::Server::paced`], as the binary is) paces.
    pub commit_cycle_us: u64,
    /// Where the TLS certificate comes from; `None` serves plain text.
    pub tls: Option<TlsSource>,
    /// Milliseconds a new connection has to complete its TLS handshake.
    pub tls_handshake_ms: u64,
    /// Whether plain text may be served on an address other than loopback: for
    /// a server behind a TLS-terminating proxy, or a network the operator trusts.
    pub insecure_plaintext: bool,
    /// How much of the data directory's disk uploads must leave free, in bytes or a
    /// percentage of the file system: a chunk that would eat into it is refused with
    /// `STORAGE_FULL`, so that files filling the disk never stop messages.
    pub upload_reserve: Reserve,
    /// Bytes of disk held for the database in `baatkaro.reserve`, let go when the
    /// disk is nearly full so that messages can still be stored (and the server can
    /// start) on a disk something else filled; 0 holds none.
    pub store_reserve: u64,
    /// Bytes of stored rows the start-up check reads back and compares with their
    /// checksums (with SQLite's `quick_check` when the whole database fits): a
    /// damaged database is refused. 0 skips the check at start.
    pub verify_at_start: u64,
    /// Bytes a second the background check reads while the server runs, going
    /// round the whole database at most once an hour; 0 turns it off.
    pub verify_rate: u64,
    /// Bytes of each segment of the event log (at least 1 MiB): the history that
    /// retention lets go is deleted a segment at a time, and a start reads the last
    /// segment back.
    pub event_segment_bytes: u64,
    /// Start a new, empty store where the database is gone though the directory
    /// holds what a store leaves (`--fresh`); refused where a database exists.
    pub fresh: bool,
    /// Seconds a session token lives unused: one not used to log in for that long
    /// stops working (SPEC.md 4.7).
    pub token_idle_secs: u64,
}

impl Config {
    /// The limits the server advertises in HELLO and enforces: `limits`, with the
    /// keys that are settings of their own ([`SET_ELSEWHERE`]) filled in from them.
    pub fn advertised(&self) -> Limits {
        Limits {
            logins: self.logins_per_minute,
            per_address: self.max_per_address as u64,
            frames: self.frames_per_second,
            ..self.limits.clone()
        }
    }

    /// Which pages may open sessions on a web listener bound to `web`.
    pub fn origin_policy(&self, web: SocketAddr) -> Result<OriginPolicy, ConfigError> {
        OriginPolicy::new(&self.web_origins, web.ip().is_loopback())
            .map_err(|why| ConfigError::Other(format!("web_origins: {why}")))
    }

    /// The defaults, with data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Config {
            // The constant is a valid socket address.
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| unreachable!("valid default")),
            web_listen: Some(
                DEFAULT_WEB_LISTEN.parse().unwrap_or_else(|_| unreachable!("valid default")),
            ),
            web_origins: Vec::new(),
            web_stall_ms: 20_000,
            data_dir,
            limits: Limits::default(),
            registration_open: true,
            max_accounts: 1_000_000,
            max_connections: 10_000,
            max_per_address: 256,
            logins_per_minute: 60,
            frames_per_second: 20_000,
            max_hashes: 2,
            hash_cost: HashCost::default(),
            log: "info".into(),
            shutdown_retry_ms: 5_000,
            direct_io: true,
            linger_ms: 5_000,
            commit_cycle_us: crate::pace::MIN_CYCLE.as_micros() as u64,
            tls: None,
            tls_handshake_ms: 10_000,
            insecure_plaintext: false,
            upload_reserve: Reserve::DEFAULT,
            store_reserve: 64 << 20,
            verify_at_start: 1 << 30,
            verify_rate: 16 << 20,
            event_segment_bytes: 64 << 20,
            fresh: false,
            token_idle_secs: 90 * 24 * 3600,
        }
    }

    /// Checks that the values make sense together and fit the protocol.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let bad = |key: &'static str, why: &str| Err(ConfigError::Limit { key, why: why.into() });
        if l.line != LINE_MAX as u64 {
            return bad("line", "is fixed by the protocol at 1024");
        }
        if l.payload < 1024 || l.payload > PAYLOAD_CEILING {
            return bad("payload", "must be between 1024 and 16777216");
        }
        if l.message == 0 || l.message > TEXT_MAX as u64 || l.message > l.payload {
            return bad("message", "must be between 1 and 65536, and at most payload");
        }
        if l.reason == 0 || l.reason > TEXT_MAX as u64 || l.reason > l.payload {
            return bad("reason", "must be between 1 and 65536, and at most payload");
        }
        if l.password == 0 || l.password > baatkaro_proto::Password::MAX_LEN as u64 {
            return bad("password", "must be between 1 and 1024");
        }
        if l.chunk == 0 || l.chunk > l.payload {
            return bad("chunk", "must be between 1 and payload");
        }
        for (key, value) in [
            ("rate", l.rate),
            ("burst", l.burst),
            ("page", l.page),
            ("inflight", l.inflight),
            ("sessions", l.sessions),
            ("idle", l.idle),
            ("queue", l.queue),
            ("members", l.members),
            ("groups", l.groups),
            ("tokens", l.tokens),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if l.queue < 64 * 1024 {
            return bad("queue", "must be at least 65536");
        }
        // A download adds a chunk while less than half the queue is used: a chunk
        // must fit in the other half, or downloading would drop its own reader.
        if l.chunk.saturating_add(LINE_MAX as u64) > l.queue / 2 {
            return bad("queue", "must be at least twice chunk plus 1024");
        }
        for (key, value) in self.advertised().entries() {
            if value > LIMIT_VALUE_MAX {
                return bad(key, "must be at most 99999999999999 (14 digits)");
            }
        }
        if self.token_idle_secs == 0 {
            return Err(ConfigError::Other("token_idle_secs must be at least 1".into()));
        }
        if self.linger_ms > 600_000 {
            return Err(ConfigError::Other("linger_ms must be at most 600000".into()));
        }
        // A cycle of tens of milliseconds would only add latency: the measured gain
        // was from 0 to 2.5 ms, and 4 ms already gave less.
        if self.commit_cycle_us > MAX_COMMIT_CYCLE_US {
            return Err(ConfigError::Other(format!(
                "commit_cycle_us must be at most {MAX_COMMIT_CYCLE_US}"
            )));
        }
        if self.tls_handshake_ms == 0 || self.tls_handshake_ms > 600_000 {
            return Err(ConfigError::Other("tls_handshake_ms must be between 1 and 600000".into()));
        }
        if self.tls.is_none() && !plaintext_allowed(self.listen.ip(), self.insecure_plaintext) {
            return Err(ConfigError::Plaintext(self.listen));
        }
        if self.web_stall_ms == 0 {
            return Err(ConfigError::Other("web_stall_ms must be at least 1".into()));
        }
        if let Some(web) = self.web_listen {
            if self.tls.is_none() && !plaintext_allowed(web.ip(), self.insecure_plaintext) {
                return Err(ConfigError::Plaintext(web));
            }
            self.origin_policy(web)?;
        }
        if [self.max_connections, self.max_per_address, self.max_hashes].contains(&0)
            || self.logins_per_minute == 0
            || self.frames_per_second == 0
        {
            return Err(ConfigError::Other(
                "max_connections, max_per_address, max_hashes, logins_per_minute and \
                 frames_per_second must be at least 1"
                    .into(),
            ));
        }
        if argon2::Params::new(self.hash_cost.memory_kib, self.hash_cost.iterations, 1, None)
            .is_err()
        {
            return Err(ConfigError::Other("hash cost out of Argon2's range".into()));
        }
        Ok(())
    }
}

/// The platform's data directory for BaatKaro (e.g. `~/.local/share/baatkaro`).
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "baatkaro").map(|d| d.data_dir().to_path_buf())
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A limit out of its range.
    #[error("limit {key} {why}")]
    Limit {
        /// The limit's key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// Plain text on an address other than loopback, not insisted on.
    #[error(
        "refusing to listen on {0} without TLS: passwords and messages would cross the \
         network in clear (SPEC.md 11.7). Give --tls-cert FILE --tls-key FILE, or \
         --tls-self-signed; or --insecure-plaintext if a TLS proxy or a trusted network \
         stands in front of the server"
    )]
    Plaintext(SocketAddr),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The TOML file's shape: every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `listen = "127.0.0.1:7667"`
    pub listen: Option<SocketAddr>,
    /// `web_listen = "127.0.0.1:7668"`
    pub web_listen: Option<SocketAddr>,
    /// `web = false`: serve no web client, downloads or WebSocket sessions.
    pub web: Option<bool>,
    /// `web_origins = ["https://chat.example.org"]`
    pub web_origins: Option<Vec<String>>,
    /// `web_stall_ms = 20000`
    pub web_stall_ms: Option<u64>,
    /// `data_dir = "/var/lib/baatkaro"`
    pub data_dir: Option<PathBuf>,
    /// `registration = "open"` or `"closed"`
    pub registration: Option<Registration>,
    /// `max_accounts = 1000000`
    pub max_accounts: Option<u64>,
    /// `max_connections = 10000`
    pub max_connections: Option<usize>,
    /// `max_per_address = 256`
    pub max_per_address: Option<usize>,
    /// `logins_per_minute = 60`
    pub logins_per_minute: Option<u64>,
    /// `frames_per_second = 20000`
    pub frames_per_second: Option<u64>,
    /// `max_hashes = 2`
    pub max_hashes: Option<usize>,
    /// `[hash] memory_kib = 19456, iterations = 2`
    pub hash: Option<HashCost>,
    /// `log = "info"`
    pub log: Option<String>,
    /// `direct_io = false`: shared files and the message logs go through the page
    /// cache.
    pub direct_io: Option<bool>,
    /// `linger_ms = 5000`
    pub linger_ms: Option<u64>,
    /// `commit_cycle_us = 2500`; 0: every batch goes as soon as the one before it
    /// has committed.
    pub commit_cycle_us: Option<u64>,
    /// `tls_cert = "/etc/baatkaro/cert.pem"`, with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// `tls_key = "/etc/baatkaro/key.pem"`, with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// `tls_self_signed = true`: make and keep a self-signed certificate.
    pub tls_self_signed: Option<bool>,
    /// `tls_handshake_ms = 10000`
    pub tls_handshake_ms: Option<u64>,
    /// `insecure_plaintext = true`: plain text beyond loopback.
    pub insecure_plaintext: Option<bool>,
    /// `upload_reserve = 1073741824` or a share of the disk, `"5%"`
    pub upload_reserve: Option<Reserve>,
    /// `store_reserve = 67108864`
    pub store_reserve: Option<u64>,
    /// `verify_at_start = 1073741824`
    pub verify_at_start: Option<u64>,
    /// `verify_rate = 16777216`
    pub verify_rate: Option<u64>,
    /// `event_segment_bytes = 67108864`
    pub event_segment_bytes: Option<u64>,
    /// `token_idle_secs = 7776000`
    pub token_idle_secs: Option<u64>,
    /// `[limits]` with the keys of SPEC.md Appendix B: `payload = 1048576`, …
    pub limits: Option<toml::Table>,
}

/// Whether registration is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Registration {
    /// Anyone may REGISTER.
    Open,
    /// REGISTER fails with `REGISTRATION_CLOSED`.
    Closed,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let file_error = |why: String| ConfigError::File { path: path.to_path_buf(), why };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        toml::from_str(&text).map_err(|e| file_error(e.to_string()))
    }

    /// Applies the file's settings over `config`.
    pub fn apply(self, config: &mut Config) -> Result<(), ConfigError> {
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = self.web_listen {
            config.web_listen = Some(v);
        }
        if self.web == Some(false) {
            config.web_listen = None;
        }
        if let Some(v) = self.web_origins {
            config.web_origins = v;
        }
        if let Some(v) = self.web_stall_ms {
            config.web_stall_ms = v;
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = self.registration {
            config.registration_open = v == Registration::Open;
        }
        if let Some(v) = self.max_accounts {
            config.max_accounts = v;
        }
        if let Some(v) = self.max_connections {
            config.max_connections = v;
        }
        if let Some(v) = self.max_per_address {
            config.max_per_address = v;
        }
        if let Some(v) = self.logins_per_minute {
            config.logins_per_minute = v;
        }
        if let Some(v) = self.frames_per_second {
            config.frames_per_second = v;
        }
        if let Some(v) = self.max_hashes {
            config.max_hashes = v;
        }
        if let Some(v) = self.hash {
            config.hash_cost = v;
        }
        if let Some(v) = self.log {
            config.log = v;
        }
        if let Some(v) = self.direct_io {
            config.direct_io = v;
        }
        if let Some(v) = self.linger_ms {
            config.linger_ms = v;
        }
        if let Some(v) = self.commit_cycle_us {
            config.commit_cycle_us = v;
        }
        config.tls =
            tls_source(self.tls_cert, self.tls_key, self.tls_self_signed.unwrap_or(false))?
                .or(config.tls.take());
        if let Some(v) = self.tls_handshake_ms {
            config.tls_handshake_ms = v;
        }
        if let Some(v) = self.insecure_plaintext {
            config.insecure_plaintext = v;
        }
        if let Some(v) = self.upload_reserve {
            config.upload_reserve = v;
        }
        if let Some(v) = self.store_reserve {
            config.store_reserve = v;
        }
        if let Some(v) = self.verify_at_start {
            config.verify_at_start = v;
        }
        if let Some(v) = self.verify_rate {
            config.verify_rate = v;
        }
        if let Some(v) = self.event_segment_bytes {
            config.event_segment_bytes = v;
        }
        if let Some(v) = self.token_idle_secs {
            config.token_idle_secs = v;
        }
        for (key, value) in self.limits.unwrap_or_default() {
            if let Some((_, setting)) = SET_ELSEWHERE.iter().find(|(k, _)| *k == key) {
                return Err(ConfigError::Other(format!("limits.{key} is set by {setting}")));
            }
            let value = value
                .as_integer()
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| ConfigError::Other(format!("limits.{key} must be a number")))?;
            if !config.limits.set(key.as_bytes(), value) {
                return Err(ConfigError::Other(format!("limits.{key} is not a limit")));
            }
        }
        Ok(())
    }
}

/// The TLS source that a certificate, a key and the self-signed switch name,
/// from a file or flags: both files or neither, and not both kinds at once.
pub fn tls_source(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    self_signed: bool,
) -> Result<Option<TlsSource>, ConfigError> {
    match (cert, key, self_signed) {
        (None, None, false) => Ok(None),
        (None, None, true) => Ok(Some(TlsSource::SelfSigned)),
        (Some(cert), Some(key), false) => Ok(Some(TlsSource::Files { cert, key })),
        (Some(_), Some(_), true) => Err(ConfigError::Other(
            "give either a TLS certificate and key or tls-self-signed, not both".into(),
        )),
        _ => Err(ConfigError::Other(
            "a TLS certificate needs its key, and a key its certificate".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_has_help_in_wire_order() {
        let keys: Vec<&str> = LIMIT_HELP.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, Limits::KEYS);
    }

    /// SPEC.md Appendix B's defaults of the keys that are settings of their own are
    /// the settings' defaults.
    #[test]
    fn the_advertised_defaults_are_the_limits_defaults() {
        assert_eq!(Config::new(PathBuf::from("/tmp/x")).advertised(), Limits::default());
        let f: FileConfig = toml::from_str("[limits]\nlogins = 5\n").unwrap();
        let e = f.apply(&mut Config::new(PathBuf::from("/tmp/x"))).unwrap_err();
        assert!(e.to_string().contains("logins_per_minute"), "{e}");
    }

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let mut c = Config::new(PathBuf::from("/tmp/x"));
        c.validate().unwrap();
        c.limits.chunk = c.limits.payload + 1;
        assert!(matches!(c.validate(), Err(ConfigError::Limit { key: "chunk", .. })));
    }

    #[test]
    fn a_file_overrides_the_defaults_and_refuses_unknown_keys() {
        let mut c = Config::new(PathBuf::from("/tmp/x"));
        let f: FileConfig = toml::from_str(
            "listen = \"127.0.0.1:9000\"\nregistration = \"closed\"\ndirect_io = false\n\
             [limits]\nmessage = 100\n",
        )
        .unwrap();
        assert!(c.direct_io, "on by default");
        f.apply(&mut c).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(!c.registration_open);
        assert!(!c.direct_io);
        assert_eq!(c.limits.message, 100);
        let f: FileConfig =
            toml::from_str("upload_reserve = \"10%\"\nverify_rate = 0\nstore_reserve = 5\n")
                .unwrap();
        f.apply(&mut c).unwrap();
        assert_eq!(c.upload_reserve, Reserve::Percent(10));
        assert_eq!((c.verify_rate, c.store_reserve), (0, 5));
        let f: FileConfig = toml::from_str("upload_reserve = 1048576").unwrap();
        f.apply(&mut c).unwrap();
        assert_eq!(c.upload_reserve, Reserve::Bytes(1 << 20));
        assert!(toml::from_str::<FileConfig>("upload_reserve = \"lots\"").is_err());
        let f: FileConfig = toml::from_str("[limits]\nmesage = 100\n").unwrap();
        assert!(f.apply(&mut c).is_err());
        assert!(toml::from_str::<FileConfig>("lissen = 1").is_err());
    }

    /// The commit cycle is read from the file, 0 (never pace) included, and one
    /// above [`MAX_COMMIT_CYCLE_US`] is refused by name.
    #[test]
    fn the_commit_cycle_is_a_setting_with_a_bound() {
        let mut c = Config::new(PathBuf::from("/tmp/x"));
        assert_eq!(c.commit_cycle_us, 2_500, "the measured default");
        let f: FileConfig = toml::from_str("commit_cycle_us = 0").unwrap();
        f.apply(&mut c).unwrap();
        assert_eq!(c.commit_cycle_us, 0);
        c.validate().unwrap();
        c.commit_cycle_us = MAX_COMMIT_CYCLE_US;
        c.validate().unwrap();
        c.commit_cycle_us = MAX_COMMIT_CYCLE_US + 1;
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("commit_cycle_us"), "{e}");
    }

    #[test]
    fn plain_text_beyond_loopback_needs_the_flag() {
        let mut c = Config::new(PathBuf::from("/tmp/x"));
        c.listen = "0.0.0.0:7667".parse().unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("--insecure-plaintext"), "{e}");
        c.insecure_plaintext = true;
        c.validate().unwrap();
        c.insecure_plaintext = false;
        c.tls = Some(TlsSource::SelfSigned);
        c.validate().unwrap();
    }

    #[test]
    fn the_web_listener_follows_the_same_plain_text_rule() {
        let mut c = Config::new(PathBuf::from("/tmp/x"));
        c.web_listen = Some("0.0.0.0:7668".parse().unwrap());
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("0.0.0.0:7668"), "{e}");
        c.tls = Some(TlsSource::SelfSigned);
        c.validate().unwrap();
        c.web_origins = vec!["chat.example.org".into()];
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("web_origins"), "{e}");
        let f: FileConfig =
            toml::from_str("web = false\nweb_origins = [\"https://chat.example.org\"]\n").unwrap();
        f.apply(&mut c).unwrap();
        assert_eq!(c.web_listen, None);
        c.validate().unwrap();
    }

    #[test]
    fn tls_takes_both_files_or_self_signed() {
        let f: FileConfig = toml::from_str("tls_cert = \"c.pem\"\n").unwrap();
        assert!(f.apply(&mut Config::new(PathBuf::from("/tmp/x"))).is_err());
        let f: FileConfig = toml::from_str("tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n").unwrap();
        let mut c = Config::new(PathBuf::from("/tmp/x"));
        f.apply(&mut c).unwrap();
        assert!(matches!(c.tls, Some(TlsSource::Files { .. })));
        assert!(tls_source(Some("c".into()), Some("k".into()), true).is_err());
    }
}
