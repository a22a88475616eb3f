//! The store's thread: batches in, completions out.
//!
//! The hub sends a [`Batch`] while fewer than `baatkaro_hub::IN_FLIGHT` are committing and
//! gathers everything that arrives meanwhile into the next one: that is the group
//! commit, one transaction (one fsync) for all the writes of a batch. Reads of a
//! batch run after its writes commit, so a HISTORY sees every send acknowledged
//! before it.
//!
//! After a failed commit the thread refuses every batch until the hub asks it to
//! [`Job::Load`] again: the hub's memory ran ahead of the disk, and both must agree
//! again before anything more is written.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc::UnboundedSender;

use super::{Batch, HistoryPage, Snapshot, Store, StoreError, Write};

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
        result: Result<(), String>,
        /// Each read's token and result.
        reads: Vec<(u64, Result<HistoryPage, String>)>,
        /// The batch's writes, emptied, handed back so that the next batch
        /// reuses their memory instead of growing a new vector.
        spare: Vec<Write>,
    },
    /// A snapshot, or why the store could not load one (typed: a start-up that
    /// fails says whether the database is corrupt, locked or unreadable).
    Loaded(Result<Snapshot, StoreError>),
}

/// The running thread.
#[derive(Debug)]
pub struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts the thread over `store`. `history` is the `history` limit.
    pub fn spawn<S: Store>(mut store: S, history: u64, done: UnboundedSender<Done>) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("baatkaro-store".into())
            .spawn(move || {
                let mut poisoned = false;
                for job in rx {
                    let report = match job {
                        Job::Load { keys_since, keys_per_user } => {
                            let r = store.load(keys_since, keys_per_user);
                            poisoned = r.is_err();
                            Done::Loaded(r)
                        }
                        Job::Commit(batch) => run_batch(&mut store, batch, history, &mut poisoned),
                    };
                    if done.send(report).is_err() {
                        break; // The hub is gone: nothing more will come.
                    }
                }
            })
            .ok();
        Writer { jobs: Some(jobs), thread }
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
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_batch<S: Store>(store: &mut S, batch: Batch, history: u64, poisoned: &mut bool) -> Done {
    let result = if *poisoned {
        Err("an earlier commit failed; the store is reloading".to_string())
    } else if batch.writes.is_empty() {
        Ok(())
    } else {
        store.commit(&batch.writes, batch.next_group_id, history).map_err(|e: StoreError| {
            tracing::error!(error = %e, writes = batch.writes.len(), "commit failed");
            e.to_string()
        })
    };
    *poisoned |= result.is_err();
    let reads = match result {
        Ok(()) => batch
            .reads
            .into_iter()
            .map(|(token, q)| (token, store.history(&q).map_err(|e| e.to_string())))
            .collect(),
        Err(ref e) => batch.reads.into_iter().map(|(token, _)| (token, Err(e.clone()))).collect(),
    };
    let mut spare = batch.writes;
    spare.clear();
    Done::Committed { id: batch.id, result, reads, spare }
}
