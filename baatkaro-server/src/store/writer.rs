//! The store's thread: batches in, completions out.
//!
//! The hub sends a [`Batch`] while fewer than `baatkaro_hub::IN_FLIGHT` (one) are
//! committing and gathers everything that arrives meanwhile into the next one: that
//! is the group commit, one transaction (one fsync) for all the writes of a batch. Reads of a
//! batch run after its writes commit, so a HISTORY sees every send acknowledged
//! before it.
//!
//! After a failed commit the thread refuses every batch until the hub asks it to
//! [`Job::Load`] again: the hub's memory ran ahead of the disk, and both must agree
//! again before anything more is written.
//!
//! Once the database is found damaged — a read fails its checksum, the engine
//! reports corruption, or the background check ([`super::verify`]) finds a bad row
//! — the thread commits nothing more to it, for good, and tells the hub
//! ([`Done::Damaged`]); reads still run, and so does the reload after the refusal,
//! without writing ([`Store::stop_writing`], told before the next job and at the
//! thread's end). A job already under way when the background check finds damage
//! finishes as it began. Before each commit it lets go of the space
//! held for the database when the disk is nearly full ([`StoreReserve`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use tokio::sync::mpsc::UnboundedSender;

use super::verify::{Background, Checker};
use super::{Batch, ReadResult, Snapshot, Store, StoreError, StoreFault, Write};
use crate::space::StoreReserve;

/// Work for the thread.
#[derive(Debug)]
pub enum Job {
    /// Commit a batch.
    Commit(Batch),
    /// Load a snapshot (at start, and after a failed commit).
    Load {
        /// Idempotency keys older than this are dropped.
        keys_since: u64,
        /// Only each user's newest this many keys are loaded (0: all).
        keys_per_user: u64,
    },
}

/// What the thread reports back.
#[derive(Debug)]
pub enum Done {
    /// A batch: whether it committed, and its reads.
    Committed {
        /// The batch's id.
        id: u64,
        /// Whether its writes are durable.
        result: Result<(), StoreFault>,
        /// Each read's token and result.
        reads: Vec<(u64, Result<ReadResult, StoreFault>)>,
        /// The batch's writes, handed back (to be emptied there) so that the next batch
        /// reuses their memory instead of growing a new vector.
        spare: Vec<Write>,
    },
    /// A snapshot, or why the store could not load one (typed: a start-up that
    /// fails says whether the database is corrupt, locked or unreadable).
    /// Boxed: a snapshot is large, and every other report is small.
    Loaded(Box<Result<Snapshot, StoreError>>),
    /// The database was found damaged (said once): nothing more is written to it.
    /// What was found, naming no byte of the file.
    Damaged(String),
}

/// What the store thread looks after besides its jobs.
#[derive(Debug, Default)]
pub struct Upkeep {
    /// The space held for the database, let go when the disk is nearly full.
    pub reserve: Option<StoreReserve>,
    /// The background check and its pace in bytes a second.
    pub check: Option<(Checker, u64)>,
}

/// Whether the database was found damaged, shared by the store thread and the
/// background check; the first to find damage tells the hub.
#[derive(Debug)]
struct Damage {
    found: AtomicBool,
    done: UnboundedSender<Done>,
}

impl Damage {
    fn found(&self) -> bool {
        self.found.load(Ordering::Acquire)
    }

    /// Marks the store damaged; tells the hub if it is the first to.
    fn report(&self, what: String) {
        if !self.found.swap(true, Ordering::AcqRel) {
            let _ = self.done.send(Done::Damaged(what));
        }
    }
}

/// The running thread.
#[derive(Debug)]
pub struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Stopped (and joined) with the store thread.
    check: Option<Background>,
}

impl Writer {
    /// Starts the thread over `store`. `history` is the `history` limit.
    pub fn spawn<S: Store>(store: S, history: u64, done: UnboundedSender<Done>) -> Self {
        Self::spawn_with(store, history, done, Upkeep::default())
    }

    /// Starts the thread over `store`, with its upkeep: the database's reserve and
    /// the background check.
    pub fn spawn_with<S: Store>(
        mut store: S,
        history: u64,
        done: UnboundedSender<Done>,
        upkeep: Upkeep,
    ) -> Self {
        let damage = Arc::new(Damage { found: AtomicBool::new(false), done: done.clone() });
        let check = upkeep.check.and_then(|(checker, rate)| {
            let damage = damage.clone();
            Background::spawn(checker, rate, move |what| damage.report(what))
                .inspect_err(|e| tracing::error!(error = %e, "cannot start the background check"))
                .ok()
        });
        let mut reserve = upkeep.reserve;
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("baatkaro-store".into())
            .spawn(move || {
                let mut poisoned = false;
                // Damage found by a commit or by the background check: the store is
                // told before the next job (not even a reload writes to it from then
                // on) or, after the last, before it closes (nor does its close).
                let mut stopped = false;
                let mut stop_if_damaged = |store: &mut S| {
                    if !stopped && damage.found() {
                        store.stop_writing();
                        stopped = true;
                    }
                };
                for job in rx {
                    stop_if_damaged(&mut store);
                    let report = match job {
                        Job::Load { keys_since, keys_per_user } => {
                            let r = store.load(keys_since, keys_per_user);
                            if let Err(StoreError::Corrupt(what)) = &r {
                                damage.report(what.clone());
                            }
                            poisoned = r.is_err();
                            Done::Loaded(Box::new(r))
                        }
                        Job::Commit(batch) => {
                            let mut run = Run {
                                store: &mut store,
                                history,
                                poisoned: &mut poisoned,
                                damage: &damage,
                                reserve: reserve.as_mut(),
                            };
                            run.batch(batch)
                        }
                    };
                    if done.send(report).is_err() {
                        break; // The hub is gone: nothing more will come.
                    }
                }
                stop_if_damaged(&mut store);
                // A clean stop: what the next start would read back, written now.
                if !poisoned
                    && !damage.found.load(Ordering::Acquire)
                    && let Err(e) = store.checkpoint()
                {
                    tracing::warn!(error = %e, "could not checkpoint the store at shutdown");
                }
            })
            .ok();
        Writer { jobs: Some(jobs), thread, check }
    }

    /// Hands the thread a job. False if the thread has stopped.
    pub fn send(&self, job: Job) -> bool {
        self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok()) && self.thread.is_some()
    }

    /// Lets the thread finish what it has and waits for it.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Writer {
    // Also when the hub unwinds: the store (and the data directory's lock) is
    // closed before the server's `run` returns, so a restart in the same process
    // finds the directory free.
    fn drop(&mut self) {
        // The check's connection closes first: the store's, closing last, then
        // copies the log into the database and deletes it (not a damaged store's:
        // `Store::stop_writing`).
        self.check = None;
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One batch's run on the store thread, with what it may touch.
struct Run<'a, S> {
    store: &'a mut S,
    history: u64,
    poisoned: &'a mut bool,
    damage: &'a Damage,
    reserve: Option<&'a mut StoreReserve>,
}

impl<S: Store> Run<'_, S> {
    fn batch(&mut self, batch: Batch) -> Done {
        let result = if *self.poisoned {
            Err(StoreFault::Failed("an earlier commit failed; the store is reloading".into()))
        } else if batch.writes.is_empty() {
            Ok(())
        } else if self.damage.found() {
            // Never another write into a damaged file.
            Err(StoreFault::Damaged("the database was found damaged; it takes no writes".into()))
        } else {
            if let Some(r) = self.reserve.as_deref_mut() {
                r.before_commit();
            }
            self.store.commit(&batch.writes, batch.next_group_id, self.history).map_err(|e| {
                tracing::error!(error = %e, writes = batch.writes.len(), "commit failed");
                match &e {
                    StoreError::Corrupt(what) => self.damage.report(what.clone()),
                    StoreError::Full(_) => {
                        if let Some(r) = self.reserve.as_deref_mut() {
                            r.on_full();
                        }
                    }
                    _ => {}
                }
                e.fault()
            })
        };
        *self.poisoned |= result.is_err();
        let reads = match &result {
            Ok(()) => batch
                .reads
                .into_iter()
                .map(|(token, q)| {
                    let page = self.store.read(&q).map_err(|e| {
                        if let StoreError::Corrupt(what) = &e {
                            self.damage.report(what.clone());
                        }
                        e.fault()
                    });
                    (token, page)
                })
                .collect(),
            Err(e) => batch.reads.into_iter().map(|(token, _)| (token, Err(e.clone()))).collect(),
        };
        // Handed back full: its frames are freed on the thread that made them,
        // which the allocator does without taking another thread's arena lock.
        Done::Committed { id: batch.id, result, reads, spare: batch.writes }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::{HistoryPage, HistoryQuery, UnreadQuery};

    /// A store that says what was asked of it, and whose commits find damage.
    struct Told(Arc<Mutex<Vec<&'static str>>>);

    impl Store for Told {
        fn load(&mut self, _: u64, _: u64) -> Result<Snapshot, StoreError> {
            self.0.lock().unwrap().push("load");
            Ok(Snapshot::default())
        }
        fn commit(&mut self, _: &[Write], _: u64, _: u64) -> Result<(), StoreError> {
            self.0.lock().unwrap().push("commit");
            Err(StoreError::Corrupt("a row fails its checksum".into()))
        }
        fn history(&mut self, _: &HistoryQuery) -> Result<HistoryPage, StoreError> {
            Err(StoreError::Corrupt("not in this test".into()))
        }
        fn unread(&mut self, _: &UnreadQuery) -> Result<Vec<u64>, StoreError> {
            Err(StoreError::Corrupt("not in this test".into()))
        }
        fn stop_writing(&mut self) {
            self.0.lock().unwrap().push("stop_writing");
        }
    }

    /// The reload after a commit found damage is told to write nothing first
    /// (fails without the thread's `stop_writing`).
    #[test]
    fn the_reload_after_damage_is_found_writes_nothing() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let (done, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::spawn(Told(told.clone()), 0, done);
        let writes = vec![Write::KeysExpired { before: 1 }];
        assert!(writer.send(Job::Commit(Batch { id: 1, writes, next_group_id: 1, reads: vec![] })));
        assert!(writer.send(Job::Load { keys_since: 0, keys_per_user: 0 }));
        writer.finish();
        let mut got = Vec::new();
        while let Ok(report) = reports.try_recv() {
            got.push(match report {
                Done::Damaged(_) => "damaged",
                Done::Committed { result: Err(_), .. } => "refused",
                Done::Committed { result: Ok(()), .. } => "committed",
                Done::Loaded(r) if r.is_ok() => "loaded",
                Done::Loaded(_) => "not loaded",
            });
        }
        assert_eq!(got, ["damaged", "refused", "loaded"]);
        assert_eq!(*told.lock().unwrap(), ["commit", "stop_writing", "load"]);
    }

    /// A SQLite store whose second commit finds damage (before writing anything).
    struct DamagedOnSecond(crate::store::sqlite::Sqlite, u32);

    impl Store for DamagedOnSecond {
        fn load(&mut self, a: u64, b: u64) -> Result<Snapshot, StoreError> {
            self.0.load(a, b)
        }
        fn commit(&mut self, w: &[Write], g: u64, h: u64) -> Result<(), StoreError> {
            self.1 += 1;
            if self.1 == 2 {
                return Err(StoreError::Corrupt("a row fails its checksum".into()));
            }
            self.0.commit(w, g, h)
        }
        fn history(&mut self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
            self.0.history(q)
        }
        fn unread(&mut self, q: &UnreadQuery) -> Result<Vec<u64>, StoreError> {
            self.0.unread(q)
        }
        fn checkpoint(&mut self) -> Result<(), StoreError> {
            self.0.checkpoint()
        }
        fn stop_writing(&mut self) {
            self.0.stop_writing()
        }
    }

    fn files(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect()
    }

    /// Damage found by the last job before the server stops: the store's close
    /// must not copy the database's log into the damaged file.
    #[test]
    fn a_store_stopped_right_after_damage_is_found_is_not_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::Sqlite::open(dir.path()).unwrap();
        let (done, mut reports) = tokio::sync::mpsc::unbounded_channel();
        let writer = Writer::spawn(DamagedOnSecond(store, 0), 0, done);
        assert!(writer.send(Job::Load { keys_since: 0, keys_per_user: 0 }));
        assert!(matches!(reports.blocking_recv(), Some(Done::Loaded(r)) if r.is_ok()));
        let carol = Write::User { name: "carol".parse().unwrap(), hash: "x".into(), created: 1 };
        let batch = |id, writes| Job::Commit(Batch { id, writes, next_group_id: 1, reads: vec![] });
        assert!(writer.send(batch(1, vec![carol.clone()])));
        assert!(matches!(reports.blocking_recv(), Some(Done::Committed { result: Ok(()), .. })));
        let before = files(dir.path());
        assert!(writer.send(batch(2, vec![carol])));
        assert!(matches!(reports.blocking_recv(), Some(Done::Damaged(_))));
        writer.finish();
        let after = files(dir.path());
        let changed: Vec<_> =
            before.keys().chain(after.keys()).filter(|p| before.get(*p) != after.get(*p)).collect();
        assert!(changed.is_empty(), "written after the damage was found: {changed:?}");
    }
}
