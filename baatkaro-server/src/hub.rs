//! The hub's shell: one task that drives the sans-IO [`Hub`] of `baatkaro-hub`,
//! feeding it what connections, the store thread, the password hasher and the disk
//! report, and carrying out what it asks, by the core's drive-loop contract.
//!
//! The shell holds no rule of the product. What it adds is plumbing: the channels to
//! every connection (and the backlog bound on each), the store thread, the blocking
//! disk jobs and the running hashes of uploads, which those jobs share.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use baatkaro_hub::{
    ConnId, ConnMap, DiskDone, DiskJob, FileAccess, FileGrant, HashDone, HashJob, HashKind,
    HashOutcome, Hub, Output,
};
use baatkaro_proto::session::RequestId;
use baatkaro_proto::{Command, ErrorCode, Failure, FileId, Millis};
use tokio::sync::{mpsc, oneshot};

use crate::auth::Hasher;
use crate::clock;
use crate::conn::ConnHandle;
use crate::disk::{self, Disk, Settled};
use crate::pace::{Pace, RuntimeIdle};
use crate::running_hash::RunningHash;
use crate::store::writer::{Done, Job, Writer};

/// What the hub's task is told.
#[derive(Debug)]
pub(crate) enum HubMsg {
    /// A connection was accepted.
    Connected {
        /// Its id.
        conn: ConnId,
        /// Who is at the other end.
        peer: SocketAddr,
        /// How to reach it.
        handle: ConnHandle,
    },
    /// A connection's session handed on requests, in the order it read them.
    Requests {
        /// Whose.
        conn: ConnId,
        /// Each request's id in the session, and what it asks.
        requests: Vec<(RequestId, Command)>,
    },
    /// A download over HTTP asks whether its token may read a file (SPEC.md 12.4).
    FileAccess {
        /// The token, the address and the file.
        access: FileAccess,
        /// Where the answer goes: the file's size, hash and name, or the refusal.
        answer: oneshot::Sender<Result<FileGrant, Failure>>,
    },
    /// A connection is gone.
    Disconnected {
        /// Which.
        conn: ConnId,
    },
    /// A password check or hash finished.
    Hashed(HashDone),
    /// A disk job finished.
    Disk(DiskDone),
    /// Stop: say goodbye to every session once everything is durable.
    Shutdown,
}

/// How many messages the hub's inbox holds, and how many requests, however they
/// are grouped into messages (connections take a permit of
/// [`ConnCtx::queued`](crate::conn::ConnCtx) for each request they send, and the
/// hub gives it back when it takes the request): a LOGIN, or the server's
/// shutdown, waits behind at most this many requests in the inbox (and behind the
/// connections already waiting for room, first come, first served).
pub(crate) const INBOX: usize = 4096;

/// How many messages (each request counted) the task takes in one turn before it
/// lets the runtime run other tasks.
const TURN: usize = 1024;

/// The rest of a message of requests the hub stopped accepting partway through:
/// taken in first when it accepts again, before any later message.
type Held = (ConnId, std::vec::IntoIter<(RequestId, Command)>);

/// The hub's task and what it drives.
pub(crate) struct HubTask {
    hub: Hub,
    writer: Option<Writer>,
    done: mpsc::UnboundedReceiver<Done>,
    hasher: Hasher,
    disk: Arc<Disk>,
    me: mpsc::WeakSender<HubMsg>,
    conns: ConnMap<ConnHandle>,
    /// Requests taken from the inbox and not yet handed to the hub.
    held: Option<Held>,
    /// The outputs for connections of the turn, carried out after the others
    /// (kept for its memory).
    later: Vec<Output>,
    /// The inbox's room for requests: a permit is given back for each request
    /// taken.
    queued: Arc<tokio::sync::Semaphore>,
    /// The running hash of each upload hashed as it arrives, shared with its jobs.
    hashes: HashMap<FileId, Arc<RunningHash>>,
    /// A connection's backlog bound: bytes sent it that it has not taken in.
    backlog_limit: usize,
    /// The store thread is gone: nothing can be made durable, so the server stops
    /// (connections see their sockets close; nothing unacknowledged was promised).
    store_gone: bool,
    /// The database's path, for what the log says about it.
    database: std::path::PathBuf,
    /// While the database is damaged: when the log says so again.
    next_damage_report: Option<tokio::time::Instant>,
    /// When the next batch may go to the store (commits paced at saturation).
    pace: Pace,
    /// What the runtime's park hooks say, if it has them: without, no pacing.
    runtime: Option<Arc<RuntimeIdle>>,
}

/// The store as the hub's task reaches it.
#[derive(Debug)]
pub(crate) struct StoreLink {
    /// The store's thread.
    pub(crate) writer: Writer,
    /// What the store's thread reports.
    pub(crate) done: mpsc::UnboundedReceiver<Done>,
    /// The database's path, for what the log says about it.
    pub(crate) database: std::path::PathBuf,
}

/// How often the log repeats that the database is damaged, while it is.
const DAMAGE_REPORT_EVERY: Duration = Duration::from_secs(60);

impl HubTask {
    /// A task around `hub`, committing through `store`.
    pub(crate) fn new(
        hub: Hub,
        StoreLink { writer, done, database }: StoreLink,
        hasher: Hasher,
        disk: Arc<Disk>,
        me: mpsc::WeakSender<HubMsg>,
        queue: u64,
    ) -> Self {
        HubTask {
            hub,
            writer: Some(writer),
            done,
            hasher,
            disk,
            me,
            conns: ConnMap::default(),
            held: None,
            later: Vec::new(),
            queued: Arc::new(tokio::sync::Semaphore::new(INBOX)),
            hashes: HashMap::new(),
            backlog_limit: usize::try_from(queue).unwrap_or(usize::MAX),
            store_gone: false,
            database,
            next_damage_report: None,
            pace: Pace::new(crate::pace::MIN_CYCLE),
            runtime: None,
        }
    }

    /// The task, counting the requests in its inbox with `queued` (shared with
    /// the connections that send them).
    pub(crate) fn with_queued(self, queued: Arc<tokio::sync::Semaphore>) -> Self {
        HubTask { queued, ..self }
    }

    /// The task paces its commits at saturation in cycles of `cycle` (zero:
    /// never), told by `runtime` when the runtime it runs on goes idle
    /// ([`crate::pace`]).
    pub(crate) fn paced(self, runtime: Arc<RuntimeIdle>, cycle: Duration) -> Self {
        HubTask { runtime: Some(runtime), pace: Pace::new(cycle), ..self }
    }

    /// Runs until the core is finished (shut down and every connection told), then
    /// lets the store thread finish.
    pub(crate) async fn run(mut self, mut inbox: mpsc::Receiver<HubMsg>) {
        let runtime = self.runtime.clone();
        if let Some(runtime) = &runtime {
            runtime.set_workers(tokio::runtime::Handle::current().metrics().num_workers());
        }
        let idle = || async {
            match &runtime {
                Some(runtime) => runtime.idle().await,
                None => std::future::pending().await,
            }
        };
        loop {
            // Read at every turn while a batch is held, so that it goes within
            // microseconds of its time at saturation, when turns are many; the timer
            // below is for when they are not.
            let hooked = runtime.as_ref().is_some_and(|r| r.hooked());
            let hold = hooked && self.pace.holds(tokio::time::Instant::now);
            self.hub.hold_commits(hold);
            self.carry_out();
            let holding = self.hub.holds_batch();
            if let Some(runtime) = &runtime {
                runtime.set_holding(holding);
            }
            if self.store_gone {
                tracing::error!("the store thread is gone; stopping");
                break;
            }
            if self.hub.is_finished() {
                break;
            }
            if self.hub.accepting()
                && let Some(held) = self.held.take()
            {
                self.take_requests(held, clock::now());
                continue;
            }
            let accepting = self.hub.accepting();
            let wake = self.hub.poll_timeout().map(instant_of);
            tokio::select! {
                biased;
                done = self.done.recv() => match done {
                    Some(done) => self.on_done(done),
                    None => {
                        tracing::error!("the store thread stopped");
                        break;
                    }
                },
                msg = inbox.recv(), if accepting && self.held.is_none() => {
                    let Some(msg) = msg else {
                        // Every sender is gone without a shutdown (the serving
                        // future was dropped): stop as a shutdown does, so that the
                        // open batch, one held for pacing included, still commits
                        // rather than being dropped. The hub no longer accepts, so
                        // the closed inbox is not read again.
                        self.hub.handle_shutdown();
                        continue;
                    };
                    let mut taken = self.on_msg(msg);
                    // Take what else is waiting now: the turn's outputs are batched.
                    while taken < TURN && self.hub.accepting() && self.held.is_none() {
                        match inbox.try_recv() {
                            Ok(msg) => taken += self.on_msg(msg),
                            Err(_) => break,
                        }
                    }
                }
                () = sleep_until(wake) => self.hub.handle_timeout(clock::now()),
                // The held batch's time came with nothing else to do: the loop's
                // next turn lets it go.
                () = sleep_until(self.pace.until()), if holding => {}
                // The core would go idle: holding the batch gains nothing.
                () = idle(), if holding => self.pace.release(),
                () = sleep_until(self.next_damage_report) => self.report_damage_again(),
            }
        }
        if let Some(w) = self.writer.take() {
            w.finish();
        }
    }

    /// Hands the hub a message; how many it counts as (its requests taken).
    fn on_msg(&mut self, msg: HubMsg) -> usize {
        let now = clock::now();
        match msg {
            HubMsg::Requests { conn, requests } => {
                return self.take_requests((conn, requests.into_iter()), now);
            }
            HubMsg::Connected { conn, peer, handle } => {
                self.conns.insert(conn, handle);
                self.hub.handle_connected(conn, peer.ip());
            }
            HubMsg::FileAccess { access, answer } => {
                // The asker may have gone meanwhile: then nobody needs the answer.
                let _ = answer.send(self.hub.handle_file_access(access, now));
            }
            HubMsg::Disconnected { conn } => {
                self.conns.remove(&conn);
                self.hub.handle_disconnected(conn);
            }
            HubMsg::Hashed(done) => self.hub.handle_hashed(done, now),
            HubMsg::Disk(done) => self.hub.handle_disk(done, now),
            HubMsg::Shutdown => self.hub.handle_shutdown(),
        }
        1
    }

    /// Hands the hub requests while it accepts them, and holds the rest; how many
    /// it took.
    fn take_requests(&mut self, (conn, mut requests): Held, now: Millis) -> usize {
        let taken = self.hub.handle_requests(conn, &mut requests, now);
        self.queued.add_permits(taken);
        if requests.len() > 0 {
            self.held = Some((conn, requests));
        }
        taken
    }

    fn on_done(&mut self, done: Done) {
        let now = clock::now();
        match done {
            Done::Committed { id, result, reads, spare } => {
                self.hub.handle_committed(id, result, reads, spare, now);
            }
            Done::Loaded(loaded) => {
                self.hub.handle_loaded((*loaded).map_err(|e| e.to_string()), now)
            }
            Done::Damaged(what) => {
                tracing::error!(
                    database = %self.database.display(),
                    "THE DATABASE IS DAMAGED: {what}. Nothing more is written to it: requests \
                     that would write are refused with STORE_DAMAGED, reads of what is intact \
                     still work. Stop the server and restore the database from a backup (or \
                     move it away and start afresh with --fresh); a start refuses the damaged \
                     file"
                );
                self.hub.handle_damaged();
                self.next_damage_report = Some(tokio::time::Instant::now() + DAMAGE_REPORT_EVERY);
            }
        }
    }

    /// Says again, once a minute, that the database is damaged, and how many
    /// requests it cost since.
    fn report_damage_again(&mut self) {
        let refused = self.hub.take_refused();
        tracing::error!(
            database = %self.database.display(),
            refused,
            "the database is still damaged and takes no writes; {refused} request(s) refused \
             with STORE_DAMAGED in the last minute. Stop the server and restore the database"
        );
        self.next_damage_report = Some(tokio::time::Instant::now() + DAMAGE_REPORT_EVERY);
    }

    /// Drains the core's outputs and carries each out: first those for the store,
    /// the hasher and the disk, then those for connections, in the core's order.
    /// Writing to connections can take a while (the shell writes to idle sockets
    /// itself, [`crate::direct`]), and meanwhile the store syncs the next batch.
    fn carry_out(&mut self) {
        let mut later = std::mem::take(&mut self.later);
        while let Some(output) = self.hub.poll_output() {
            match output {
                Output::Deliver { .. } | Output::Download { .. } | Output::Close { .. } => {
                    later.push(output);
                }
                output => self.carry(output),
            }
        }
        for output in later.drain(..) {
            self.carry(output);
        }
        self.later = later;
    }

    /// Carries out one of the core's outputs.
    fn carry(&mut self, output: Output) {
        match output {
            Output::Deliver { conn, batch, share } => {
                let Some(handle) = self.conns.get(&conn) else { return };
                // A connection that has not taken in `queue` bytes sent it is too
                // slow to keep up (SPEC.md section 5.4); its session checks the
                // bytes it took in.
                if !handle.deliver(batch, share, self.backlog_limit) {
                    handle.close(Failure::new(ErrorCode::SlowConsumer));
                }
            }
            Output::Download { conn, job } => {
                if let Some(handle) = self.conns.get(&conn) {
                    handle.download(job);
                }
            }
            Output::Close { conn, failure } => {
                if let Some(handle) = self.conns.get(&conn) {
                    handle.close(failure);
                }
            }
            Output::Commit(batch) => {
                self.pace.sent(batch.writes.len(), tokio::time::Instant::now());
                if !self.writer.as_ref().is_some_and(|w| w.send(Job::Commit(batch))) {
                    self.store_gone = true;
                }
            }
            Output::Load { keys_since, keys_per_user } => {
                let job = Job::Load { keys_since, keys_per_user };
                if !self.writer.as_ref().is_some_and(|w| w.send(job)) {
                    self.store_gone = true;
                }
            }
            Output::Hash(job) => self.hash(job),
            Output::Disk(job) => self.disk_job(job),
        }
    }

    /// Runs a password job on the hasher (bounded in number) and reports back.
    fn hash(&self, HashJob { req, user, kind, purpose }: HashJob) {
        let (hasher, me) = (self.hasher.clone(), self.me.clone());
        tokio::spawn(async move {
            let outcome = match kind {
                HashKind::Hash { password } => {
                    HashOutcome::Hashed(hasher.hash(password.expose().to_vec()).await)
                }
                HashKind::Verify { password, stored } => {
                    HashOutcome::Checked(hasher.verify(password.expose().to_vec(), stored).await)
                }
            };
            if let Some(me) = me.upgrade() {
                let _ = me.send(HubMsg::Hashed(HashDone { req, user, outcome, purpose })).await;
            }
        });
    }

    /// Runs a disk job on a blocking thread; those with an answer report back.
    fn disk_job(&mut self, job: DiskJob) {
        let (disk, me) = (self.disk.clone(), self.me.clone());
        let report = move |done: DiskDone| {
            if let Some(me) = me.upgrade() {
                let _ = me.blocking_send(HubMsg::Disk(done));
            }
        };
        match job {
            DiskJob::Begin { file } => {
                self.hashes.insert(file, Arc::new(RunningHash::new()));
            }
            DiskJob::Release { file } => {
                if let Some(h) = self.hashes.get(&file) {
                    h.drop_parked();
                }
            }
            DiskJob::ForgetHashes => self.hashes.clear(),
            DiskJob::Drop { file, req } => {
                self.hashes.remove(&file);
                tokio::task::spawn_blocking(move || {
                    disk.drop_partial(&file);
                    if let Some(req) = req {
                        report(DiskDone::Dropped { req });
                    }
                });
            }
            DiskJob::Chunk { req, file, size, offset, data } => {
                let hashing = self.hashes.get(&file).cloned();
                tokio::task::spawn_blocking(move || {
                    let len = data.len() as u64;
                    let result = disk
                        .write_chunk(&file, size, offset, &data)
                        .map_err(failed("chunk write", file));
                    // Hashed once written. A failed write may still have changed some
                    // of its bytes, some of them hashed already: the commit reads the
                    // file back.
                    match (&result, hashing) {
                        (Ok(()), Some(h)) => h.add(offset, data),
                        (Err(_), Some(h)) => h.give_up(),
                        (_, None) => {}
                    }
                    report(DiskDone::Chunk { req, file, offset, len, result });
                });
            }
            DiskJob::Finish { file, size, sha256 } => {
                // Every byte hashed as it came (all its chunks are written): no
                // read-back. Either way the running hash is done with.
                let digest = self.hashes.remove(&file).and_then(|h| h.digest(size));
                tokio::task::spawn_blocking(move || {
                    let settled = match digest {
                        Some(digest) => disk.settle(&file, size, &sha256, digest == sha256.0),
                        None => disk.finish(&file, size, &sha256),
                    };
                    let result = match settled {
                        Ok(Settled::Matched) => Ok(true),
                        Ok(Settled::Mismatched) => Ok(false),
                        Ok(Settled::Gone) => Err(bytes_gone(file)),
                        Err(e) => Err(failed("finishing an upload", file)(e)),
                    };
                    report(DiskDone::Finished { file, result });
                });
            }
            DiskJob::Sync { rec } => {
                tokio::task::spawn_blocking(move || {
                    let result =
                        disk.sync_partial(&rec.id).map_err(failed("syncing an upload", rec.id));
                    report(DiskDone::Synced { rec, result });
                });
            }
        }
    }
}

/// The operating system's random number generator, which makes the secrets of
/// session tokens: `getrandom` asks the kernel each time (no generator state in the
/// process to seed, fork or leak).
#[derive(Debug)]
pub(crate) struct OsEntropy;

impl baatkaro_hub::Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        getrandom::fill(buf).map_err(|e| e.to_string())
    }
}

/// An upload whose bytes the server said it held has no file ([`Settled::Gone`]):
/// the uploader is told `UPLOAD_INCOMPLETE`, the hub forgets the ranges, and the
/// bytes are sent again.
fn bytes_gone(file: FileId) -> ErrorCode {
    tracing::warn!(
        %file,
        "an upload's bytes are gone (lost in a crash): its uploader sends them again"
    );
    ErrorCode::UploadIncomplete
}

/// Logs a failed disk operation on `file` and gives its error code.
fn failed(what: &'static str, file: FileId) -> impl FnOnce(std::io::Error) -> ErrorCode {
    move |e| {
        let code = disk::code_of(&e);
        // A full disk is told once a minute by the disk itself, not once a chunk.
        if code == ErrorCode::StorageFull {
            tracing::debug!(error = %e, %file, "{what} failed");
        } else {
            tracing::warn!(error = %e, %file, "{what} failed");
        }
        code
    }
}

/// The tokio instant of a deadline in milliseconds since the epoch.
fn instant_of(at: baatkaro_proto::Millis) -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(clock::now()))
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
