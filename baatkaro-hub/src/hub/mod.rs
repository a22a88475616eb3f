//! The hub: the server's state (accounts, groups, conversations, files) and every
//! request applied to it, as a sans-IO machine in the manner of quinn-proto's
//! `Endpoint`.
//!
//! Inputs are `handle_*` calls, each with `now`: a connection came or went, a
//! request arrived, a batch committed, a snapshot loaded, a password was hashed, a
//! disk job finished, a timer fired. Outputs are drained from [`Hub::poll_output`]
//! (deliveries, batches to commit, hashes and disk jobs to run) and
//! [`Hub::poll_timeout`] (the next housekeeping).
//!
//! **The drive-loop contract:** feed any number of inputs, then drain `poll_output`
//! until it returns `None` (that ends the turn: what the turn staged goes to the store
//! as one batch when one may), then wait for the next input or until `poll_timeout`.
//! Between turns, take no more requests while [`Hub::accepting`] is false.
//!
//! The hub stages what must become durable in the open batch and holds every answer
//! and event back until the batch that made them true has committed; then each
//! connection gets its share of the batch, every event encoded once. Nothing the hub
//! says can reveal a change the disk does not hold yet, and if a commit fails, the hub
//! answers `INTERNAL` to everything that waited on it and reloads its state from the
//! store, so memory and disk agree again. Every decision of the product is a rule of
//! `baatkaro-proto` (the group machine, the session, [`baatkaro_proto::rules`]); the
//! hub gathers the facts they need and carries out what they decide.

mod accounts;
mod arena;
mod files;
mod groups;
mod markers;
mod messages;
mod route;
mod tokens;

use accounts::Attempts;
pub use tokens::Entropy;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use baatkaro_proto::credentials::TokenRules;
use baatkaro_proto::delivery::{DigestSeed, KeyDigest, RateBudget, SendKeys, SentKey};
use baatkaro_proto::group::{Group, GroupRules};
use baatkaro_proto::rules::Rules;
use baatkaro_proto::session::RequestId;
use baatkaro_proto::throttle::AccountGuard;
use baatkaro_proto::{
    Command, DoneVerb, ErrorCode, Event, Failure, GroupName, Item, Limits, Millis, OkReply, Seq,
    ServerFrame, TokenId, UserName,
};
use bytes::Bytes;

use crate::output::{ConnId, ConnMap, DiskDone, DiskJob, HashDone, Output};
use crate::store::{Batch, ConvKey, ReadResult, Snapshot, StoreFault, Write};

/// How many batches may be committing at the store at once.
///
/// One: the next batch goes to the store when the one before it is durable, with
/// everything that arrived during that sync. With two, the second went at the very
/// next turn, holding only that turn's writes, and every message after it waited
/// for both syncs (BENCHMARKS.md, "One batch at the store": the open loop's median
/// 1.87 → 1.47 ms at 1 M deliveries/s, throughput unchanged or better).
pub const IN_FLIGHT: usize = 1;

/// Emptied vectors kept for reuse: one for each batch in flight, and the open one.
const SPARES: usize = IN_FLIGHT + 1;

/// Writes the open batch may gather while [`IN_FLIGHT`] batches commit, before the
/// hub stops taking requests (and connections stop being read).
const MAX_OPEN_WRITES: usize = 16 * 1024;

/// The open batch also closes once its events' bytes reach this share of the
/// `queue` limit: a batch is delivered at once when it commits, and a reader who
/// keeps up must never find more than its queue holds arriving in one go.
const QUEUE_SHARE: u64 = 4;

/// How many of a batch's SENDs have their key slots warmed before it is handled:
/// enough to overlap the misses of a pipelining client's read, few enough that the
/// first slots are still cached when their SENDs come.
const WARM_AHEAD: usize = 64;

/// Housekeeping (expiries, stored keys, idle attempt budgets) runs this often.
const SWEEP_EVERY: Millis = 60_000;

/// What the hub needs to know of the server's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubConfig {
    /// Every limit, as advertised in HELLO.
    pub limits: Limits,
    /// Whether REGISTER creates accounts.
    pub registration_open: bool,
    /// Most accounts; REGISTER fails past it.
    pub max_accounts: u64,
    /// LOGIN and REGISTER attempts per minute from one address (and the burst).
    pub logins_per_minute: u64,
    /// Milliseconds clients are asked to wait before reconnecting after a shutdown.
    pub shutdown_retry_ms: u64,
    /// Seconds a session token lives unused (SPEC.md 4.7).
    pub token_idle_secs: u64,
}

impl HubConfig {
    /// The reference server's defaults with these limits.
    pub fn new(limits: Limits) -> Self {
        HubConfig {
            limits,
            registration_open: true,
            max_accounts: 1_000_000,
            logins_per_minute: 60,
            shutdown_retry_ms: 5_000,
            token_idle_secs: 90 * 24 * 3600,
        }
    }
}

/// Something to tell a connection once the batch it waits on has committed.
#[derive(Debug)]
enum Out {
    /// A final reply.
    Reply { conn: ConnId, id: RequestId, result: Result<OkReply, Failure> },
    /// The items of a reply, then the reply.
    List { conn: ConnId, id: RequestId, items: Vec<Item>, result: Result<OkReply, Failure> },
    /// An encoded event for several connections; `cause`'s session gets it after
    /// its request's reply.
    Frame { to: Arc<[ConnId]>, bytes: Bytes, cause: Option<(ConnId, RequestId)> },
    /// An upload's bytes, to delete once the batch that makes the store forget the
    /// upload is durable (and not at all if it fails: the upload comes back); and
    /// the FILE-CANCEL to answer once they are gone (failed with the batch).
    DropUpload(baatkaro_proto::FileId, Option<(ConnId, RequestId)>),
    /// A goodbye, after what the connection got before it.
    Close { conn: ConnId, failure: Failure },
}

/// A read waiting on the store.
#[derive(Debug)]
enum PendingRead {
    /// A HISTORY page.
    History {
        conn: ConnId,
        id: RequestId,
        conv: baatkaro_proto::Conversation,
        latest: Seq,
        /// The bytes its page may take, counted against its connection's read budget.
        budget: u64,
    },
    /// The unread counts of a `CONVERSATIONS read`: its items, made but for the
    /// counts of the items at `counted` (in the order of the query's ranges).
    Unread { conn: ConnId, id: RequestId, items: Vec<Item>, counted: Vec<usize> },
}

impl PendingRead {
    /// The request it answers.
    fn request(&self) -> (ConnId, RequestId) {
        match self {
            PendingRead::History { conn, id, .. } | PendingRead::Unread { conn, id, .. } => {
                (*conn, *id)
            }
        }
    }
}

/// A batch at the store, with what waits on it.
#[derive(Debug)]
struct InFlight {
    id: u64,
    outs: Vec<Out>,
}

/// A user as the hub knows them.
#[derive(Debug)]
struct User {
    hash: Arc<str>,
    /// Connections logged in as this user.
    sessions: Sessions,
    /// Groups the user may relate to (member, pending request or invite): a
    /// superset, checked against the group itself whenever it is used.
    relations: BTreeSet<GroupName>,
    /// Users with whom there is a private conversation.
    peers: BTreeSet<UserName>,
    keys: SendKeys,
    budget: RateBudget,
    /// Session tokens, at most `tokens`.
    tokens: Vec<tokens::Token>,
    /// The operator locked the account: it does not log in.
    locked: bool,
    /// The login throttle of the account (SPEC.md 11.5).
    guard: AccountGuard,
}

/// The connections logged in as one user, shared: every event for the user alone
/// (a private message, a read marker) is handed out with a reference to the list,
/// not a list of its own. Changed only when a session comes or goes.
#[derive(Debug, Default, Clone)]
struct Sessions(Option<Arc<[ConnId]>>);

impl Sessions {
    /// The connections, oldest first.
    fn iter(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.0.iter().flat_map(|s| s.iter().copied())
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.len())
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The list to hand out with an event for the user, if the user is online.
    fn shared(&self) -> Option<Arc<[ConnId]>> {
        self.0.clone()
    }

    /// Adds a connection (a copy of the list: sessions come and go rarely).
    fn push(&mut self, conn: ConnId) {
        self.0 = Some(self.iter().chain([conn]).collect());
    }

    /// Takes a connection out; the list is dropped with its last connection.
    fn remove(&mut self, conn: ConnId) {
        let rest: Vec<ConnId> = self.iter().filter(|c| *c != conn).collect();
        self.0 = (!rest.is_empty()).then(|| rest.into());
    }
}

impl User {
    /// A user with this password hash and nothing else yet.
    fn new(hash: Arc<str>, burst: u64, now: Millis) -> Self {
        User {
            hash,
            sessions: Sessions::default(),
            relations: BTreeSet::new(),
            peers: BTreeSet::new(),
            keys: SendKeys::new(),
            budget: RateBudget::new(burst, now),
            tokens: Vec::new(),
            locked: false,
            guard: AccountGuard::default(),
        }
    }
}

/// A group incarnation and its conversation's newest sequence number.
#[derive(Debug)]
struct GroupRec {
    group: Group,
    latest: Seq,
    /// The sessions a message to the group goes to, as of a sessions epoch.
    fanout: Option<Fanout>,
}

impl GroupRec {
    fn new(group: Group) -> Self {
        GroupRec { group, latest: 0, fanout: None }
    }
}

/// The sessions of a group's members, remembered so that a message does not look
/// up every member: valid while the hub's sessions epoch is `epoch` and the group's
/// membership has not changed (a change clears it).
#[derive(Debug)]
struct Fanout {
    epoch: u64,
    to: Arc<[ConnId]>,
}

/// A connection as the hub knows it.
#[derive(Debug)]
struct ConnRec {
    peer: IpAddr,
    user: Option<UserName>,
    /// The token the session logged in with, if it did with one. Kept by its
    /// DELETE-ACCOUNT, for a failed commit to give back with the account.
    token: Option<TokenId>,
    /// The session's credentials were revoked: nothing it sends is served.
    revoked: bool,
    /// The account this connection deleted: a failed commit that answers the
    /// DELETE-ACCOUNT INTERNAL gives it back (the session is still logged in as
    /// it). Not cleared once the deletion is durable (nor is `token`): the session
    /// ends with its reply and sends nothing more, and only a DELETE-ACCOUNT reply
    /// of this connection's in a failed commit reads it; nothing reads the token
    /// of a connection logged in as nobody. (Boxed: the record is looked up for
    /// every connection a batch reaches, and this is almost always empty.)
    deleted: Option<Box<UserName>>,
    /// While a batch is routed: the connection's place in it
    /// ([`route::NO_SLOT`] otherwise).
    slot: u32,
}

/// The server's state, and what it waits on.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    /// The group machine's limits.
    group_rules: GroupRules,
    /// The other per-command rules' limits.
    rules: Rules,
    /// Every live group's name by its id, for shared files (which know the id).
    group_names: HashMap<baatkaro_proto::group::GroupId, GroupName>,
    users: HashMap<UserName, User>,
    /// The names of deleted accounts: taken for good.
    tombstones: HashSet<UserName>,
    /// The login throttles of names without an account, so that a refusal looks
    /// the same for any name (at most [`accounts::MAX_GHOSTS`]).
    ghosts: HashMap<UserName, AccountGuard>,
    groups: HashMap<GroupName, GroupRec>,
    direct: HashMap<ConvKey, Seq>,
    /// Read markers (SPEC.md 6.8), by conversation then reader: at most one per
    /// conversation a user may read (a group's go when its member leaves, all of a
    /// group's when it is deleted, all of a user's with their account).
    markers: HashMap<ConvKey, HashMap<UserName, Seq>>,
    conns: ConnMap<ConnRec>,
    /// Moves on whenever any session logs in or goes: every [`Fanout`] of an
    /// older epoch is stale.
    sessions_epoch: u64,
    next_group_id: u64,
    open: Batch,
    open_outs: Vec<Out>,
    /// Emptied vectors of committed batches, reused by the next ones: a busy
    /// batch holds thousands of writes and outputs, and growing fresh vectors
    /// that large showed in profiles as copies and page faults. A vector dropped
    /// for want of room had the next batch grow a fresh one; at most [`SPARES`]
    /// each.
    spare_writes: Vec<Vec<Write>>,
    spare_outs: Vec<Vec<Out>>,
    /// Scratch for [`Hub::deliver_all`].
    routing: route::Routing,
    /// The time of the newest idempotency key the store may still hold past its
    /// window (none once all are pruned).
    newest_key: Option<Millis>,
    /// Bytes of the events staged in the open batch (each counted once).
    open_bytes: u64,
    in_flight: VecDeque<InFlight>,
    reads: HashMap<u64, PendingRead>,
    /// Bytes the pages of each connection's unanswered HISTORY reads may take: at
    /// most half of `queue` in all, so that pipelined reads cannot make the store
    /// build more than that for one connection (a page takes one event at least).
    reading: HashMap<ConnId, u64>,
    /// The connections with a `CONVERSATIONS read` count at the store, each with
    /// the ones it sent since, waiting their turn: one count per connection at a
    /// time, so that pipelined counts (each up to `UNREAD_WINDOW` events per
    /// conversation) cannot fill one batch's reads and hold the store thread.
    counting: HashMap<ConnId, VecDeque<(RequestId, UserName)>>,
    next_batch: u64,
    next_token: u64,
    files: files::Files,
    /// Login and registration attempts per source address, and when it last tried.
    attempts: HashMap<IpAddr, (RateBudget, Millis)>,
    /// Token logins per source address, a budget of their own.
    token_attempts: HashMap<IpAddr, (RateBudget, Millis)>,
    /// The session tokens' rules.
    token_rules: TokenRules,
    /// The next token number to give out.
    next_token_id: TokenId,
    /// Where token secrets come from.
    entropy: Box<dyn Entropy>,
    /// Where event frames are encoded.
    arena: arena::FrameArena,
    /// The secret that idempotency keys are digested with (drawn from `entropy` at
    /// start), so that no user can choose keys that pile up in one index slot.
    digest_seed: DigestSeed,
    /// The digests of a batch's first keys, while their slots are warmed (kept to
    /// spare an allocation per batch; at most [`WARM_AHEAD`] long).
    warm_digests: Vec<KeyDigest>,
    /// Set once a commit failed: requests wait until the reload is done.
    reloading: bool,
    /// The shell asks that the open batch wait before it goes to the store
    /// ([`Hub::hold_commits`]).
    commits_held: bool,
    /// Set once the store found its database damaged: it takes no more writes, so
    /// the hub serves only what reads and stages nothing of its own.
    damaged: bool,
    /// Requests refused with `STORE_DAMAGED` since the shell last asked.
    refused: u64,
    shutting_down: bool,
    /// Every goodbye is said: the shell may stop.
    finished: bool,
    /// What the shell has yet to carry out.
    outputs: VecDeque<Output>,
    /// When housekeeping runs next.
    next_sweep: Millis,
    /// A random prefix of the file ids this run hands out, from the shell.
    file_prefix: u64,
}

impl Hub {
    /// A hub over a snapshot loaded at start, at `now`. `file_prefix` is a random
    /// number from the shell: the file ids of this run start with it, so that ids of
    /// different runs do not collide. `entropy` makes the secrets of session tokens and
    /// the seed of idempotency keys' digests; a start without it fails.
    pub fn new(
        cfg: HubConfig,
        snapshot: Snapshot,
        now: Millis,
        file_prefix: u64,
        mut entropy: Box<dyn Entropy>,
    ) -> Result<Self, String> {
        let mut seed = [0u8; 16];
        entropy.fill(&mut seed).map_err(|e| format!("no randomness for the key digests: {e}"))?;
        let mut hub = Hub {
            digest_seed: DigestSeed::from_bytes(seed),
            warm_digests: Vec::new(),
            arena: arena::FrameArena::default(),
            token_rules: TokenRules::new(&cfg.limits, cfg.token_idle_secs),
            token_attempts: HashMap::new(),
            next_token_id: 1,
            entropy,
            group_rules: GroupRules::from_limits(&cfg.limits),
            rules: Rules::new(&cfg.limits),
            group_names: HashMap::new(),
            cfg,
            users: HashMap::new(),
            tombstones: HashSet::new(),
            ghosts: HashMap::new(),
            groups: HashMap::new(),
            direct: HashMap::new(),
            markers: HashMap::new(),
            conns: ConnMap::default(),
            sessions_epoch: 0,
            next_group_id: 1,
            open: Batch::default(),
            open_outs: Vec::new(),
            spare_writes: Vec::new(),
            spare_outs: Vec::new(),
            routing: route::Routing::default(),
            newest_key: None,
            open_bytes: 0,
            in_flight: VecDeque::new(),
            reads: HashMap::new(),
            reading: HashMap::new(),
            counting: HashMap::new(),
            next_batch: 1,
            next_token: 1,
            files: files::Files::default(),
            attempts: HashMap::new(),
            reloading: false,
            commits_held: false,
            damaged: false,
            refused: 0,
            shutting_down: false,
            finished: false,
            outputs: VecDeque::new(),
            next_sweep: now.saturating_add(SWEEP_EVERY),
            file_prefix,
        };
        hub.install(snapshot, now)?;
        Ok(hub)
    }

    /// Replaces the state with a snapshot's, keeping the connections (and who is
    /// logged in on them).
    fn install(&mut self, snap: Snapshot, now: Millis) -> Result<(), String> {
        let limits = &self.cfg.limits;
        self.users.clear();
        self.groups.clear();
        self.group_names.clear();
        self.direct.clear();
        self.markers.clear();
        for (name, hash) in snap.users {
            self.users.insert(name, User::new(hash.into(), limits.burst, now));
        }
        for name in snap.locked {
            if let Some(u) = self.users.get_mut(&name) {
                u.locked = true;
            }
        }
        self.tombstones = snap.tombstones.into_iter().collect();
        let mut known: HashMap<UserName, Vec<_>> = HashMap::new();
        for (user, address, since) in snap.known_addresses {
            known.entry(user).or_default().push((address, since));
        }
        for (user, list) in known {
            if let Some(u) = self.users.get_mut(&user) {
                u.guard = AccountGuard::with_known(list);
            }
        }
        self.next_token_id = snap.next_token_id.max(1);
        for record in snap.tokens {
            self.next_token_id = self.next_token_id.max(record.id.saturating_add(1));
            if let Some(u) = self.users.get_mut(&record.user) {
                u.tokens.push(tokens::Token::from_record(record));
            }
        }
        let mut ids = HashMap::new();
        for (id, name, events) in snap.groups {
            let group = Group::replay(id, name, self.group_rules.expiry, &events)
                .ok_or_else(|| format!("group {name} has no creation in its log"))?;
            ids.insert(id, name);
            for user in events.iter().filter_map(related_user) {
                if let Some(u) = self.users.get_mut(&user) {
                    u.relations.insert(name);
                }
            }
            self.groups.insert(name, GroupRec::new(group));
            self.group_names.insert(id, name);
        }
        for (conv, seq) in snap.latest {
            match conv {
                ConvKey::Group(id) => {
                    if let Some(rec) = ids.get(&id).and_then(|n| self.groups.get_mut(n)) {
                        rec.latest = seq;
                    }
                }
                ConvKey::Direct(a, b) => {
                    self.direct.insert(conv, seq);
                    for (me, peer) in [(a, b), (b, a)] {
                        if let Some(u) = self.users.get_mut(&me) {
                            u.peers.insert(peer);
                        }
                    }
                }
            }
        }
        for (user, conv, seq) in snap.read_markers {
            self.markers.entry(conv).or_default().insert(user, seq);
        }
        // Keys loaded now may expire while the server runs: they are pruned too.
        self.newest_key = snap.keys.iter().map(|k| k.5).max();
        let kept = self.cfg.limits.key_count;
        for (user, key, conv, fingerprint, seq, time) in snap.keys {
            if let Some(u) = self.users.get_mut(&user) {
                u.keys.remember(
                    KeyDigest::of(&key, &self.digest_seed),
                    SentKey { conv, fingerprint, seq, time },
                    kept,
                );
            }
        }
        self.next_group_id = snap.next_group_id;
        // A FILE-COMMIT whose upload was being verified is answered now: the upload
        // it names is replaced by the store's.
        for req in self.files.pending_commits() {
            self.deliver(Out::Reply {
                conn: req.0,
                id: req.1,
                result: Err(Failure::new(ErrorCode::Internal)),
            });
        }
        // Ids go on from the last one given: one given before a reload, to an upload
        // the store does not hold (whose bytes are being dropped), must not name a
        // new upload.
        let given = self.files.ids_given();
        self.files =
            files::Files::load(snap.uploads, snap.files, snap.contents, self.file_prefix, given);
        // Sessions stay logged in across a reload as the accounts they name. One whose
        // account the store does not hold (a REGISTER in the batch that failed, whose
        // session was answered INTERNAL and so is not logged in) is logged out here
        // too: else it would act, and end, as whoever registers the name next.
        self.sessions_epoch += 1;
        for (id, rec) in &mut self.conns {
            let Some(user) = rec.user else { continue };
            match self.users.get_mut(&user) {
                Some(u) => u.sessions.push(*id),
                None => {
                    rec.user = None;
                    rec.token = None;
                }
            }
        }
        Ok(())
    }

    /// Whether the hub takes more requests now: not while the open batch is full (it
    /// goes to the store at the end of the turn, or when the batch at the store has
    /// committed), a reload is under way, or the server is stopping. The shell stops
    /// reading requests (and connections, in turn, their sockets) meanwhile.
    pub fn accepting(&self) -> bool {
        !self.full() && !self.shutting_down
    }

    /// Asks the hub to keep the open batch from the store (`true`) until asked
    /// again (`false`), while it gathers more: the shell paces commits when the
    /// server is saturated, so that a commit's fixed cost is shared by more writes.
    /// A batch that is full, or the server stopping, goes regardless, so a hold
    /// never stops the hub from taking requests.
    pub fn hold_commits(&mut self, hold: bool) {
        self.commits_held = hold;
    }

    /// Whether the open batch would go to the store now but for
    /// [`Hub::hold_commits`]: the shell lets it go early when the server has
    /// nothing else to do.
    pub fn holds_batch(&self) -> bool {
        self.batch_may_go() && self.batch_held()
    }

    /// Whether the open batch has something for the store, and the store room for it.
    fn batch_may_go(&self) -> bool {
        let has_work = !self.open.writes.is_empty() || !self.open.reads.is_empty();
        has_work && self.in_flight.len() < IN_FLIGHT && !self.reloading
    }

    /// Whether the shell's hold keeps the open batch back: not once it is full or
    /// the server is stopping.
    fn batch_held(&self) -> bool {
        self.commits_held && !self.full() && !self.shutting_down
    }

    /// Whether the hub is done: shutting down, everything committed, every
    /// connection told goodbye. The shell can stop the store then.
    pub fn is_finished(&self) -> bool {
        self.finished && self.outputs.is_empty()
    }

    /// How many idempotency keys the hub holds in memory, all users together: at
    /// most `key-count` per user (SPEC.md 5.2), whatever the traffic of the week.
    pub fn keys_held(&self) -> usize {
        self.users.values().map(|u| u.keys.len()).sum()
    }

    /// Whether the store was found damaged (the hub then serves only what reads).
    pub fn is_damaged(&self) -> bool {
        self.damaged
    }

    /// How many requests were refused with `STORE_DAMAGED` since the last call: for
    /// the shell's repeated report of the damage.
    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }

    /// The store found its database damaged (a read failed its checksum, or the
    /// engine reported corruption, on any thread): from now on every request that
    /// would write is refused with `STORE_DAMAGED`, and nothing of the hub's own
    /// (expiries, saved upload ranges) is staged.
    pub fn handle_damaged(&mut self) {
        self.damaged = true;
    }

    /// Whether the hub must wait for a commit before it takes more requests.
    fn full(&self) -> bool {
        self.reloading
            || self.open.writes.len() >= MAX_OPEN_WRITES
            || self.open_bytes >= self.cfg.limits.queue / QUEUE_SHARE
    }

    fn open_is_empty(&self) -> bool {
        self.open.writes.is_empty() && self.open.reads.is_empty() && self.open_outs.is_empty()
    }

    /// A connection was accepted from `peer`.
    pub fn handle_connected(&mut self, conn: ConnId, peer: IpAddr) {
        self.conns.insert(
            conn,
            ConnRec {
                peer,
                user: None,
                token: None,
                revoked: false,
                deleted: None,
                slot: route::NO_SLOT,
            },
        );
    }

    /// A connection is gone.
    pub fn handle_disconnected(&mut self, conn: ConnId) {
        self.on_disconnect(conn);
    }

    /// The server is stopping: nothing new is taken, what is staged commits, then
    /// every connection hears `SHUTTING_DOWN` and [`Hub::is_finished`] turns true.
    pub fn handle_shutdown(&mut self) {
        self.shutting_down = true;
        self.save_uploads(None);
    }

    /// A password job finished.
    pub fn handle_hashed(&mut self, done: HashDone, now: Millis) {
        self.on_hashed(done, now);
    }

    /// A disk job finished.
    pub fn handle_disk(&mut self, done: DiskDone, now: Millis) {
        self.on_disk(done, now);
    }

    /// When [`Hub::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        (!self.finished).then_some(self.next_sweep)
    }

    /// The time from [`Hub::poll_timeout`] has come (or may have: earlier, nothing
    /// happens): expired requests and invites, idempotency keys and uploads.
    pub fn handle_timeout(&mut self, now: Millis) {
        if now >= self.next_sweep {
            self.next_sweep = now.saturating_add(SWEEP_EVERY);
            self.sweep(now);
        }
    }

    /// The next thing for the shell to do. Draining it ends the turn: the writes the
    /// turn staged go to the store as one batch when fewer than [`IN_FLIGHT`] commit.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.end_turn();
        }
        self.outputs.pop_front()
    }

    /// A request handed on by a connection's session at `now`.
    pub fn handle_request(&mut self, conn: ConnId, id: RequestId, command: Command, now: Millis) {
        self.on_request(conn, id, command, None, now);
    }

    /// Requests a connection's session handed on together (what one read of the
    /// socket held), taken in order while the hub accepts them ([`Hub::accepting`]):
    /// how many were taken. The rest stay in `requests`, to be handed in first when
    /// it accepts again, so that a batch still stops at its share of `queue` however
    /// many requests came at once.
    pub fn handle_requests(
        &mut self,
        conn: ConnId,
        requests: &mut std::vec::IntoIter<(RequestId, Command)>,
        now: Millis,
    ) -> usize {
        if !self.accepting() {
            // None taken: none to digest and warm.
            return 0;
        }
        let mut digests = std::mem::take(&mut self.warm_digests);
        self.warm_keys(conn, requests.as_slice(), &mut digests);
        // The digests go to their SENDs, in order, not to be computed again.
        let mut warmed = digests.iter().copied();
        let mut taken = 0;
        while self.accepting() {
            let Some((id, command)) = requests.next() else { break };
            let digest = match command {
                Command::Send { .. } => warmed.next(),
                _ => None,
            };
            self.on_request(conn, id, command, digest, now);
            taken += 1;
        }
        self.warm_digests = digests;
        taken
    }

    /// A download over HTTP at `now` (SPEC.md 12.4): the session token it carries
    /// is checked as AUTH checks one, with the same budget of token logins per
    /// address, and its use recorded the same way (staged like any write: drain
    /// [`Hub::poll_output`] after); then its user must be one who may FILE-GET the
    /// file. The answer is the file's size, hash and name, or the refusal AUTH or
    /// FILE-GET would give: `RATE_LIMITED` (with `retry=`), `AUTH_FAILED`,
    /// `ACCOUNT_LOCKED`, `NO_SUCH_FILE` (also for a file the user may not read), or
    /// `SHUTTING_DOWN`. No session logs in, so nothing is delivered to anyone.
    pub fn handle_file_access(
        &mut self,
        access: crate::output::FileAccess,
        now: Millis,
    ) -> Result<crate::output::FileGrant, Failure> {
        self.file_access(access, now)
    }

    /// Brings into the cache together the idempotency keys' index slots that the
    /// first [`WARM_AHEAD`] SENDs of `requests` will read ([`SendKeys::warm`]),
    /// before they are handled one by one; `digests` are then their keys' digests,
    /// in order (none if the connection is not logged in).
    fn warm_keys(
        &self,
        conn: ConnId,
        requests: &[(RequestId, Command)],
        digests: &mut Vec<KeyDigest>,
    ) {
        digests.clear();
        let Some(user) = self.conns.get(&conn).and_then(|rec| rec.user) else { return };
        let Some(u) = self.users.get(&user) else { return };
        let seed = &self.digest_seed;
        let keys = requests.iter().filter_map(|(_, command)| match command {
            Command::Send { key, .. } => Some(KeyDigest::of(key, seed)),
            _ => None,
        });
        digests.extend(keys.take(WARM_AHEAD));
        u.keys.warm(digests, self.cfg.limits.key_count);
    }

    /// `digest` is that of a SEND's key, if the caller computed it already.
    fn on_request(
        &mut self,
        conn: ConnId,
        id: RequestId,
        command: Command,
        digest: Option<KeyDigest>,
        now: Millis,
    ) {
        let Some(rec) = self.conns.get(&conn) else { return };
        let (user, revoked) = (rec.user, rec.revoked);
        if revoked {
            return self.refuse_revoked(conn, id);
        }
        if self.damaged && !baatkaro_proto::storage::command_served_while_damaged(&command) {
            self.refused += 1;
            return self.reply(conn, id, Err(damaged_failure()));
        }
        match (user, command) {
            (_, Command::Register { user, password }) => {
                self.register(conn, id, user, password, now)
            }
            (_, Command::Login { user, password }) => self.login(conn, id, user, password, now),
            (_, Command::Auth { user, token, secret }) => {
                self.auth((conn, id), user, token, secret, now)
            }
            (Some(user), command) => self.logged_in(conn, id, user, command, digest, now),
            // The session lets nothing else through before it is logged in.
            (None, _) => self.reply(conn, id, Err(Failure::new(ErrorCode::AuthRequired))),
        }
    }

    fn logged_in(
        &mut self,
        conn: ConnId,
        id: RequestId,
        user: UserName,
        command: Command,
        digest: Option<KeyDigest>,
        now: Millis,
    ) {
        use Command as C;
        let r = (conn, id);
        match command {
            C::Create { group, rule } => {
                self.create(r, user, group, rule.unwrap_or(baatkaro_proto::JoinRule::Approval), now)
            }
            C::Join { group, reason } => self.join(r, user, group, reason, now),
            C::Send { to, key, text } => self.send(r, user, to, (key, digest), text, now),
            C::History { conv, range, limit } => self.history(r, user, conv, range, limit),
            C::Groups => self.list_groups(r, user, now),
            C::Conversations => self.list_conversations(r, user),
            C::ConversationsWithMarkers => self.list_conversations_marked(r, user),
            C::GroupsWithOffers => self.list_groups_with_offers(r, user, now),
            C::Read { conv, seq } => self.read(r, user, conv, seq, now),
            C::Bans { group } => self.list_bans(r, user, group),
            C::Members { group } => self.list_members(r, user, group),
            C::Online { group } => self.list_online(r, user, group),
            C::Requests { group } => self.list_requests(r, user, group, now),
            C::FileOffer { to, size, sha256, name } => {
                self.file_offer(r, user, files::Offer { to, size, sha256, name: name.into() }, now)
            }
            C::FileChunk { file, offset, data } => self.file_chunk(r, user, file, offset, data),
            C::FileStatus { file } => self.file_status(r, user, file),
            C::FileCommit { file } => self.file_commit(r, user, file),
            C::FileCancel { file } => self.file_cancel(r, user, file),
            C::Files { conv } => self.list_files(r, user, conv),
            C::FileGet { file, offset, length } => self.file_get(r, user, file, offset, length),
            C::Token { label } => self.mint_token(r, user, label, now),
            C::Tokens => self.list_tokens(r, user),
            C::Revoke { token } => self.revoke(r, user, token),
            C::Logout { revoke: true } => self.logout_revoke(r, user),
            C::Password { old, new } => self.change_password(r, user, old, new, now),
            C::DeleteAccount { password } => self.delete_account(r, user, password, now),
            // Answered by the session itself, or refused by it in this state.
            C::Hello { .. }
            | C::Ping
            | C::Logout { revoke: false }
            | C::Register { .. }
            | C::Login { .. }
            | C::Auth { .. } => {
                self.reply(conn, id, Err(Failure::new(ErrorCode::WrongState)));
            }
            other => match groups::op_of(other) {
                Some((group, op)) => self.group_op(r, user, group, op, now),
                None => self.reply(conn, id, Err(Failure::new(ErrorCode::Internal))),
            },
        }
    }

    // ---- outputs -------------------------------------------------------------

    /// Queues a final reply behind everything staged so far.
    fn reply(&mut self, conn: ConnId, id: RequestId, result: Result<OkReply, Failure>) {
        self.open_outs.push(Out::Reply { conn, id, result });
    }

    /// Queues a list reply: its items, then `OK verb count`.
    fn list(
        &mut self,
        conn: ConnId,
        id: RequestId,
        verb: baatkaro_proto::ListVerb,
        items: Vec<Item>,
    ) {
        let count = items.len() as u64;
        let result = Ok(OkReply::Listed { verb, count });
        self.open_outs.push(Out::List { conn, id, items, result });
    }

    /// Every session of these users.
    fn sessions_of(&self, users: impl IntoIterator<Item = UserName>) -> Vec<ConnId> {
        users
            .into_iter()
            .filter_map(|u| self.users.get(&u))
            .flat_map(|u| u.sessions.iter())
            .collect()
    }

    /// Queues an event for every session of `users`, encoded once (and not at all
    /// when none of them is online).
    fn event_to_users(
        &mut self,
        event: Event,
        users: impl IntoIterator<Item = UserName>,
        cause: Option<(ConnId, RequestId)>,
    ) {
        let to = self.sessions_of(users);
        if !to.is_empty() {
            let frame = self.arena.encode(&ServerFrame::Event(event));
            self.frame_to(to.into(), frame, cause);
        }
    }

    /// Queues an encoded event for every session of `users`.
    fn frame_to_users(
        &mut self,
        bytes: Bytes,
        users: impl IntoIterator<Item = UserName>,
        cause: Option<(ConnId, RequestId)>,
    ) {
        let to = self.sessions_of(users);
        if !to.is_empty() {
            self.frame_to(to.into(), bytes, cause);
        }
    }

    /// Queues an encoded event for every session of one user: their list of
    /// sessions, shared, rather than a list made for it.
    fn frame_to_user(&mut self, bytes: Bytes, user: UserName, cause: Option<(ConnId, RequestId)>) {
        if let Some(to) = self.users.get(&user).and_then(|u| u.sessions.shared()) {
            self.frame_to(to, bytes, cause);
        }
    }

    fn frame_to(&mut self, to: Arc<[ConnId]>, bytes: Bytes, cause: Option<(ConnId, RequestId)>) {
        self.open_bytes += bytes.len() as u64;
        self.open_outs.push(Out::Frame { to, bytes, cause });
    }

    /// Stages a write in the open batch.
    fn write(&mut self, w: Write) {
        if let Write::SendKey { time, .. } = w {
            self.newest_key = Some(self.newest_key.map_or(time, |t| t.max(time)));
        }
        self.open.writes.push(w);
    }

    /// Ends a turn: hands the open batch to the store when it may, releases what
    /// waits on nothing, and wakes every connection that got output.
    fn end_turn(&mut self) {
        let has_work = !self.open.writes.is_empty() || !self.open.reads.is_empty();
        if !has_work && !self.open_outs.is_empty() {
            // Nothing to make durable: these wait only on what is already at the store.
            // Their bytes leave the open batch with them (else presence events alone
            // could fill it for good). The open vector keeps its memory.
            self.open_bytes = 0;
            match self.in_flight.back_mut() {
                Some(last) => last.outs.append(&mut self.open_outs),
                None => {
                    let mut outs = std::mem::take(&mut self.open_outs);
                    self.deliver_all(&mut outs);
                    outs.clear();
                    self.open_outs = outs;
                }
            }
        }
        if self.batch_may_go() && !self.batch_held() {
            let id = self.next_batch;
            self.next_batch += 1;
            let mut batch = std::mem::take(&mut self.open);
            self.open.writes = self.spare_writes.pop().unwrap_or_default();
            self.open_bytes = 0;
            batch.id = id;
            batch.next_group_id = self.next_group_id;
            let spare = self.spare_outs.pop().unwrap_or_default();
            let outs = std::mem::replace(&mut self.open_outs, spare);
            self.in_flight.push_back(InFlight { id, outs });
            self.outputs.push_back(Output::Commit(batch));
        }
        if self.shutting_down && !self.finished && self.in_flight.is_empty() && self.open_is_empty()
        {
            self.say_goodbye();
            self.finished = true;
        }
    }

    /// Batch `id` (the oldest at the store) committed, or failed with `result`'s
    /// error; `reads` are its history reads, `spare` its write vector back, to be
    /// emptied and reused.
    pub fn handle_committed(
        &mut self,
        id: u64,
        result: Result<(), StoreFault>,
        reads: Vec<(u64, Result<ReadResult, StoreFault>)>,
        mut spare: Vec<Write>,
        now: Millis,
    ) {
        if self.spare_writes.len() < SPARES {
            spare.clear();
            self.spare_writes.push(spare);
        }
        let Some(mut batch) = self.in_flight.pop_front() else { return };
        debug_assert_eq!(batch.id, id);
        match result {
            Ok(()) => {
                let mut outs = std::mem::take(&mut batch.outs);
                self.deliver_all(&mut outs);
                outs.clear();
                if self.spare_outs.len() < SPARES {
                    self.spare_outs.push(outs);
                }
                for (token, page) in reads {
                    self.read_done(token, page);
                }
            }
            Err(e) => self.commit_failed(batch, reads, e, now),
        }
    }

    /// The snapshot asked for after a failed commit loaded (or not: then the hub
    /// stops, as memory and disk can no longer be made to agree).
    pub fn handle_loaded(&mut self, snapshot: Result<Snapshot, String>, now: Millis) {
        self.reloading = false;
        let before: Vec<_> = self.files.upload_ids();
        let installed = snapshot.and_then(|snapshot| self.install(snapshot, now));
        // Uploads the store does not hold (offered in a batch that failed) are gone:
        // so are their bytes.
        for file in before {
            if !self.files.has_upload(&file) {
                self.outputs.push_back(Output::Disk(DiskJob::Drop { file, req: None }));
            }
        }
        // What was hashed as it arrived may not match what the store says is held.
        self.outputs.push_back(Output::Disk(crate::output::DiskJob::ForgetHashes));
        match installed {
            Ok(()) => tracing::warn!("state reloaded from the store"),
            Err(e) => {
                tracing::error!(error = %e, "reload failed; stopping");
                self.shutting_down = true;
            }
        }
    }

    /// A commit failed: everything staged since is void. Answer `INTERNAL` to all
    /// of it, drop its events, and reload from the store.
    fn commit_failed(
        &mut self,
        batch: InFlight,
        reads: Vec<(u64, Result<ReadResult, StoreFault>)>,
        e: StoreFault,
        now: Millis,
    ) {
        let code = e.code();
        tracing::error!(error = %e, "commit failed; answering {code} and reloading");
        if matches!(e, StoreFault::Damaged(_)) {
            self.damaged = true;
        }
        let mut outs = batch.outs;
        for b in std::mem::take(&mut self.in_flight) {
            outs.extend(b.outs);
        }
        outs.extend(std::mem::take(&mut self.open_outs));
        let failure = match code {
            ErrorCode::StoreDamaged => damaged_failure(),
            // The store's reserve may have been let go for the next try.
            ErrorCode::StorageFull => Failure { retry_after: Some(1000), ..Failure::new(code) },
            _ => Failure::new(code),
        };
        // A session whose LOGIN, REGISTER or AUTH is answered INTERNAL here is not
        // logged in (and may log in again): nor is its connection, though its
        // account may still be there after the reload (which finds every session
        // again from the connections).
        for out in &outs {
            if let Out::Reply {
                conn,
                result:
                    Ok(
                        OkReply::Login { user }
                        | OkReply::Register { user }
                        | OkReply::Auth { user },
                    ),
                ..
            } = out
                && let Some(rec) = self.conns.get_mut(conn)
                && rec.user == Some(*user)
            {
                rec.user = None;
                rec.token = None;
            }
            // A DELETE-ACCOUNT answered INTERNAL deleted nothing: its session is
            // still logged in, and so is its connection again.
            if let Out::Reply {
                conn,
                result: Ok(OkReply::Done { verb: DoneVerb::DeleteAccount }),
                ..
            } = out
                && let Some(rec) = self.conns.get_mut(conn)
                && let Some(user) = rec.deleted.take()
            {
                rec.user = Some(*user);
            }
        }
        let internal = |conn, id| Out::Reply { conn, id, result: Err(failure.clone()) };
        let mut replies: Vec<Out> = outs
            .into_iter()
            .filter_map(|o| match o {
                Out::Reply { conn, id, .. } | Out::List { conn, id, .. } => {
                    Some(internal(conn, id))
                }
                Out::DropUpload(_, Some((conn, id))) => Some(internal(conn, id)),
                // A session whose credentials were revoked is logged out already: its
                // goodbye is said anyway (it logs in again if they still hold).
                close @ Out::Close { .. } => Some(close),
                Out::Frame { .. } | Out::DropUpload(_, None) => None,
            })
            .collect();
        // Every read waiting, whichever batch it came in (the open batch, gathered
        // behind the one that failed, is void too), is answered: an unanswered one
        // would hold its connection's later replies for good.
        drop(reads);
        let mut waiting: Vec<_> = std::mem::take(&mut self.reads).into_iter().collect();
        waiting.sort_by_key(|(token, _)| *token);
        for (_, p) in waiting {
            let (conn, id) = p.request();
            replies.push(internal(conn, id));
        }
        // Counts waiting their turn behind a count just failed: their turn would
        // never come.
        let mut counting: Vec<_> = std::mem::take(&mut self.counting).into_iter().collect();
        counting.sort_by_key(|(conn, _)| *conn);
        for (conn, ids) in counting {
            replies.extend(ids.into_iter().map(|(id, _)| internal(conn, id)));
        }
        self.reading.clear();
        self.open = Batch::default();
        self.open_bytes = 0;
        for out in replies {
            self.deliver(out);
        }
        self.reloading = true;
        let keys_since = now.saturating_sub(self.cfg.limits.keys.saturating_mul(1000));
        let keys_per_user = self.cfg.limits.key_count;
        self.outputs.push_back(Output::Load { keys_since, keys_per_user });
    }

    /// Writes one output into its sessions, as [`Hub::deliver_all`] does a batch.
    fn deliver(&mut self, mut out: Out) {
        self.deliver_all(std::slice::from_mut(&mut out));
    }

    /// Says `SHUTTING_DOWN` to every session.
    fn say_goodbye(&mut self) {
        let retry = self.cfg.shutdown_retry_ms;
        for &conn in self.conns.keys() {
            let failure =
                Failure { retry_after: Some(retry), ..Failure::new(ErrorCode::ShuttingDown) };
            self.outputs.push_back(Output::Close { conn, failure });
        }
    }

    /// Periodic housekeeping: expired requests and invites, idle attempt budgets.
    fn sweep(&mut self, now: Millis) {
        // Not against the state a reload is about to replace: what it staged would
        // commit against the state loaded after. Nor on a damaged store, which takes
        // no writes (what would expire now expires after the repair).
        if self.reloading || self.damaged {
            return;
        }
        let expired: Vec<_> = self
            .groups
            .values_mut()
            .filter_map(|rec| rec.group.expire(now).map(|e| (rec.group.id(), e)))
            .collect();
        for (id, event) in expired {
            self.write(Write::GroupEvent { id, event });
        }
        // An address silent for ten minutes has a full budget again: forget it.
        self.attempts.retain(|_, (_, last)| now.saturating_sub(*last) < 600_000);
        self.token_attempts.retain(|_, (_, last)| now.saturating_sub(*last) < 600_000);
        self.ghosts.retain(|_, guard| !guard.is_idle(now));
        self.expire_tokens(now);
        self.expire_uploads(now);
        let window = self.cfg.limits.keys.saturating_mul(1000);
        for u in self.users.values_mut() {
            u.keys.expire(now, window);
        }
        // The stored keys follow at every sweep (once a minute), until the newest one
        // written is itself past the window, so that a server gone quiet is pruned in
        // the end and an idle one commits nothing.
        if let Some(newest) = self.newest_key {
            self.write(Write::KeysExpired { before: now.saturating_sub(window) });
            // Keys at the cut itself are kept by it: done only once it passed them.
            if newest < now.saturating_sub(window) {
                self.newest_key = None;
            }
        }
    }
}

/// The answer to a request that would write to a damaged store.
fn damaged_failure() -> Failure {
    Failure {
        retry_after: Some(baatkaro_proto::storage::DAMAGED_RETRY_MS),
        ..Failure::new(ErrorCode::StoreDamaged)
    }
}

/// The user an event relates to a group, for the relations index.
fn related_user(event: &baatkaro_proto::group::GroupEvent) -> Option<UserName> {
    use baatkaro_proto::group::GroupEvent as E;
    match event {
        E::Created { owner, .. } => Some(*owner),
        E::Joined { user, .. } | E::JoinRequested { user, .. } | E::Invited { user, .. } => {
            Some(*user)
        }
        _ => None,
    }
}
