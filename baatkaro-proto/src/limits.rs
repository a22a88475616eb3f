//! Limits and quotas: the protocol's fixed limits, and the per-server ones a server
//! advertises in its HELLO reply.

/// The longest line, CRLF included, in either direction. Fixed by the protocol:
/// every line's content is bounded by the grammar, so no server needs more.
pub const LINE_MAX: usize = 1024;

/// The largest payload limit a server may advertise (16 MiB).
pub const PAYLOAD_CEILING: u64 = 16 * 1024 * 1024;

/// The largest value any limit may have on the wire: `limit-value = "0" / (%x31-39 *13DIGIT)`
/// (SPEC.md section 4.2). Fourteen digits bound the HELLO reply well inside
/// [`LINE_MAX`], with room for the keys later versions add (SPEC.md section 10).
pub const LIMIT_VALUE_MAX: u64 = 99_999_999_999_999;

macro_rules! limits {
    (@absent) => { None };
    (@absent $absent:expr) => { Some($absent) };
    ($( $(#[$doc:meta])* $field:ident = $key:literal, default = $default:expr
        $(, absent = $absent:expr)?; )*) => {
        /// Every limit and quota a server enforces, advertised in the HELLO reply so that
        /// a client never has to guess. Sizes are in bytes, times in seconds, and a value
        /// of 0 means "no limit" only where the field says so.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub struct Limits {
            $( $(#[$doc])* pub $field: u64, )*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits { $( $field: $default, )* }
            }
        }

        impl Limits {
            /// The wire keys, in the order the HELLO reply lists them.
            pub const KEYS: &'static [&'static str] = &[$($key),*];

            /// The value for a wire key, or `None` for an unknown key.
            pub fn get(&self, key: &[u8]) -> Option<u64> {
                match key { $(k if k == $key.as_bytes() => Some(self.$field),)* _ => None }
            }

            /// Sets the value for a wire key; false for an unknown key.
            pub fn set(&mut self, key: &[u8], value: u64) -> bool {
                match key {
                    $(k if k == $key.as_bytes() => { self.$field = value; true })*
                    _ => false,
                }
            }

            /// The value a client takes for a key that a HELLO reply leaves out, or
            /// `None` for the keys every server of this version lists. Keys added to
            /// version 1 after its first edition are optional this way (SPEC.md
            /// section 10), so that a newer client still understands an older server.
            pub fn absent(key: &str) -> Option<u64> {
                match key { $($key => limits!(@absent $($absent)?),)* _ => None }
            }

            /// `(key, value)` for every limit, in wire order.
            pub fn entries(&self) -> [(&'static str, u64); Self::KEYS.len()] {
                [$(($key, self.$field)),*]
            }
        }
    };
}

limits! {
    /// Longest line in bytes, CRLF included (always [`LINE_MAX`] in this version).
    line = "line", default = LINE_MAX as u64;
    /// Longest payload in bytes; a longer declared payload is refused from its header.
    payload = "payload", default = 1024 * 1024;
    /// Longest message text in bytes.
    message = "message", default = 16 * 1024;
    /// Longest join-request reason in bytes.
    reason = "reason", default = 1024;
    /// Largest file in bytes.
    file = "file", default = 4 * 1024 * 1024 * 1024;
    /// Upload and download chunk size in bytes (at most `payload`).
    chunk = "chunk", default = 1024 * 1024;
    /// Storage quota per user in bytes, counting each distinct file once.
    quota = "quota", default = 16 * 1024 * 1024 * 1024;
    /// Concurrent unfinished uploads per user.
    uploads = "uploads", default = 4;
    /// Seconds an unfinished upload is kept for resuming before it is removed.
    partial = "partial", default = 24 * 3600;
    /// Groups a user may belong to (or have pending requests for).
    groups = "groups", default = 256;
    /// Members per group.
    members = "members", default = 10_000;
    /// Pending join requests per group.
    pending = "pending", default = 1_000;
    /// Pending invites per group.
    invites = "invites", default = 1_000;
    /// Sustained sends (SEND and FILE-OFFER) per second per user.
    rate = "rate", default = 1_000;
    /// Sends a user may make in a burst above `rate`.
    burst = "burst", default = 10_000;
    /// Events kept per conversation; older ones are dropped. 0: everything is kept.
    history = "history", default = 0;
    /// Most events one HISTORY request returns.
    page = "page", default = 1_000;
    /// Requests a client may have in flight (sent, not yet answered); the server stops
    /// reading from a client past this.
    inflight = "inflight", default = 1_024;
    /// Logged-in connections per user.
    sessions = "sessions", default = 16;
    /// Seconds without a frame from the client before the server closes the connection.
    idle = "idle", default = 300;
    /// Seconds until a pending join request or invite expires.
    expiry = "expiry", default = 7 * 24 * 3600;
    /// Seconds an idempotency key is remembered after its send.
    keys = "keys", default = 7 * 24 * 3600;
    /// Bytes the server queues for a connection that is not reading before it drops
    /// the connection as a slow consumer; also the FILE-CHUNK payload bytes that a
    /// connection's unanswered requests may carry before the server stops reading it.
    queue = "queue", default = 8 * 1024 * 1024;
    /// Seconds a connection has to log in (LOGIN, REGISTER or AUTH) after it is accepted,
    /// not counting the time the server spends hashing its own password; past it the
    /// server closes the connection with `BYE LOGIN_TIMEOUT`, whatever it sent. 0: no
    /// deadline of its own (only `idle`), as with servers that do not list the key.
    login = "login", default = 60, absent = 0;
    /// Idempotency keys remembered per user: a retried SEND is recognised if fewer
    /// than this many later sends of the same user were stored (SPEC.md 5.2), within
    /// the `keys` window. 0: no count bound (only `keys`), as with servers that do not
    /// list the key.
    key_count = "key-count", default = 1024, absent = 0;
    /// Session tokens a user may hold (SPEC.md 4.7): minting one more lets go of the
    /// one used least recently. 0: none, as with servers that do not list the key
    /// (which have no `tokens` feature).
    tokens = "tokens", default = 32, absent = 0;
    /// Shortest password REGISTER and PASSWORD accept, in octets. 1: any, as with
    /// servers that do not list the key.
    password = "password", default = 8, absent = 1;
    /// Password attempts (LOGIN, REGISTER, PASSWORD, DELETE-ACCOUNT) a minute from one
    /// address, and as many at once; token logins have a budget of their own (SPEC.md
    /// 4.7). 0: not said, as with servers that do not list the key (they may limit).
    logins = "logins", default = 60, absent = 0;
    /// Connections at once from one address; one more is told `BYE
    /// TOO_MANY_CONNECTIONS`. 0: not said.
    per_address = "per-address", default = 256, absent = 0;
    /// Frames a second one connection may send before the server reads it more
    /// slowly (twice as many at once); nothing is refused for it. 0: not said.
    frames = "frames", default = 20_000, absent = 0;
}
