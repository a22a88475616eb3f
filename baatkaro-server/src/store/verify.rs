//! Checks of the whole database: every row of every table read back and compared
//! with its checksum (checksum.rs), in slices, on a connection of its own.
//!
//! At start the server checks as much as `verify_at_start` allows (the whole
//! database unless it is larger), with SQLite's `PRAGMA quick_check` of the
//! b-trees when the whole database fits that budget, and refuses to start on
//! damage. While it runs, a background thread goes on where the start-up check
//! stopped and then round again, at most `verify_rate` bytes a second and one pass
//! an hour, so that damage in rows nobody reads is found too; a read of history
//! checks its rows as well. BENCHMARKS.md has the costs on a large database.
//!
//! Messages name the table and the row's key when the key is one the server could
//! have written (digits, and names of `a-z 0-9 : _ -`), and never quote anything
//! else a damaged file holds.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

use baatkaro_eventlog::{Position, Verifier};

use super::checksum::{RowSum, TABLES, Table};
use super::{StoreError, events, key_log};

/// Rows read by one statement: each slice is its own short read transaction, so a
/// check never holds back the writer's checkpoints for long.
const SLICE_ROWS: usize = 256;

/// Bytes the background check reads between two pauses.
const BACKGROUND_STEP: u64 = 1 << 20;

/// The background check starts a pass at most this often.
const PASS_EVERY: Duration = Duration::from_secs(3600);

/// How long the background check waits after an error that is not damage (the
/// disk busy, say) before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// How far a check got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of columns read and checked.
    pub bytes: u64,
    /// Rows read and checked.
    pub rows: u64,
    /// Whether the last table's last row was reached (the next check starts over).
    pub pass_done: bool,
}

/// A check of the database in `dir`, and where it is.
pub struct Checker {
    conn: Connection,
    /// The table being checked, an index into [`TABLES`].
    table: usize,
    /// The key of the last row checked in it, if any.
    after: Option<Vec<Value>>,
    /// Whether the last check finished a pass (and nothing was checked since).
    just_finished: bool,
    /// The check of the event log beside the database, after the last table.
    log: Verifier,
    /// The check of the key log, after the event log's.
    keys: Verifier,
    /// Whether the event log's check is done this pass (the key log's is next).
    log_done: bool,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checker").field("table", &TABLES.get(self.table).map(|t| t.name)).finish()
    }
}

impl Checker {
    /// A check of the database file at `path`, from its first table.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        // A small cache: every page is read once a pass, so caching them would only
        // cost memory.
        conn.pragma_update(None, "cache_size", -2048)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let log = Verifier::new(&dir.join(events::LOG_DIR));
        let keys = Verifier::new(&dir.join(key_log::KEY_LOG_DIR));
        Ok(Checker {
            conn,
            table: 0,
            after: None,
            just_finished: false,
            log,
            keys,
            log_done: false,
        })
    }

    /// The size of the database file and of the event and key logs beside it, in
    /// bytes.
    pub fn database_size(&self) -> Result<u64, StoreError> {
        let pages: i64 = self.conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
        let size: i64 = self.conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        Ok(pages.max(0) as u64 * size.max(0) as u64 + self.log.size()? + self.keys.size()?)
    }

    /// SQLite's check of the b-trees (page structure, free list, indexes). It does
    /// not read what the records hold: that is what [`Checker::check`] does.
    pub fn quick_check(&self) -> Result<(), StoreError> {
        let mut st = self.conn.prepare("PRAGMA quick_check")?;
        let found: Vec<String> =
            st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
        if found.len() == 1 && found[0] == "ok" {
            return Ok(());
        }
        // Its lines name pages, rows and indexes, not content; still only printable
        // ASCII of the first one goes in the message.
        let first: String = found
            .first()
            .map(|l| l.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(200).collect())
            .unwrap_or_default();
        Err(StoreError::Corrupt(format!(
            "PRAGMA quick_check found {} problem(s); the first: {first}",
            found.len()
        )))
    }

    /// Checks rows, from where the last check stopped, until `budget` bytes have
    /// been read (a slice at least) or the last table is done; the next check then
    /// starts over. Damage is a [`StoreError::Corrupt`] that names the row.
    pub fn check(&mut self, budget: u64) -> Result<Progress, StoreError> {
        let mut progress = Progress::default();
        self.just_finished = false;
        loop {
            if self.table == TABLES.len() {
                // After the tables, the event log, up to what is indexed: past that
                // is what a restart may still cut (events.rs); then the key log, up
                // to what the database says it holds (key_log.rs).
                let (verifier, end) = if self.log_done {
                    (&mut self.keys, key_log::logged(&self.conn)?.unwrap_or(0))
                } else {
                    (&mut self.log, events::indexed(&self.conn)?.unwrap_or(0))
                };
                let left = budget.saturating_sub(progress.bytes);
                let c = verifier.check(Position(end), left).map_err(|e| match e {
                    baatkaro_eventlog::LogError::Damaged(why) => StoreError::Corrupt(why),
                    other => StoreError::Io(std::io::Error::other(other.to_string())),
                })?;
                progress.bytes += c.bytes;
                progress.rows += c.batches;
                if !c.pass_done {
                    return Ok(progress);
                }
                if !self.log_done {
                    self.log_done = true;
                    continue;
                }
                self.log_done = false;
                self.table += 1;
                continue;
            }
            let Some(table) = TABLES.get(self.table) else {
                self.table = 0;
                self.after = None;
                self.just_finished = true;
                progress.pass_done = true;
                return Ok(progress);
            };
            let rows = self.slice(table, &mut progress).map_err(|e| match e {
                StoreError::Corrupt(why) => {
                    StoreError::Corrupt(format!("table {}: {why}", table.name))
                }
                other => other,
            })?;
            if rows < SLICE_ROWS {
                self.table += 1;
                self.after = None;
            }
            if progress.bytes >= budget && self.table <= TABLES.len() {
                return Ok(progress);
            }
        }
    }

    /// Checks the next slice of `table`; the rows read.
    fn slice(&mut self, table: &Table, progress: &mut Progress) -> Result<usize, StoreError> {
        let keys = table.key.join(", ");
        let from = match &self.after {
            None => String::new(),
            Some(after) => {
                let marks = vec!["?"; after.len()].join(", ");
                format!("WHERE ({keys}) > ({marks})")
            }
        };
        let sql = format!(
            "SELECT {keys}, {}, row_sum FROM {} {from} ORDER BY {keys} LIMIT {SLICE_ROWS}",
            table.columns.join(", "),
            table.name,
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let params = self.after.take().unwrap_or_default();
        let mut rows = st.query(rusqlite::params_from_iter(params.iter()))?;
        let (k, n) = (table.key.len(), table.columns.len());
        let key_of = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Vec<Value>> {
            (0..k).map(|i| row.get_ref(i).map(Value::from)).collect()
        };
        let mut count = 0;
        let mut last = None;
        let mut sum = RowSum::new();
        while let Some(row) = rows.next()? {
            sum.start();
            for i in k..k + n {
                let v = row.get_ref(i)?;
                progress.bytes += match v {
                    ValueRef::Text(b) | ValueRef::Blob(b) => b.len() as u64,
                    _ => 8,
                };
                sum.value(v);
            }
            let stored: Option<i64> = row.get_ref(k + n)?.as_i64_or_null().unwrap_or(None);
            if stored != Some(sum.digest()) {
                return Err(StoreError::Corrupt(format!(
                    "the row {} fails its checksum",
                    describe(table, &key_of(row)?)
                )));
            }
            count += 1;
            progress.rows += 1;
            // Only a full slice's last key is needed: the next slice starts after it
            // (a shorter slice ends the table).
            if count == SLICE_ROWS {
                last = Some(key_of(row)?);
            }
        }
        self.after = last;
        Ok(count)
    }
}

/// A row's key as a message may show it: numbers, and texts the server could
/// have written; anything else is only said to be unreadable.
fn describe(table: &Table, key: &[Value]) -> String {
    let parts: Vec<String> = table
        .key
        .iter()
        .zip(key)
        .map(|(name, v)| {
            let shown = match v {
                Value::Integer(i) => i.to_string(),
                Value::Text(t)
                    if !t.is_empty()
                        && t.len() <= 80
                        && t.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b":_-".contains(&b)
                        }) =>
                {
                    t.clone()
                }
                _ => "(unreadable)".into(),
            };
            format!("{name}={shown}")
        })
        .collect();
    parts.join(" ")
}

/// The background check: a thread that goes on checking at a set pace until its
/// [`Background`] is dropped.
#[derive(Debug)]
pub struct Background {
    /// Dropped to stop the thread (its waits end at once).
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Starts checking with `checker` (from where it stopped) at most `rate` bytes a
    /// second; `found` is told of the first damage, after which the thread ends.
    pub fn spawn(
        mut checker: Checker,
        rate: u64,
        found: impl FnOnce(String) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let rate = rate.max(1);
        let thread = std::thread::Builder::new().name("baatkaro-check".into()).spawn(move || {
            // Waits, or says to stop (told, or the server gone).
            let wait = |d: Duration| {
                !matches!(stopped.recv_timeout(d), Err(mpsc::RecvTimeoutError::Timeout))
            };
            // The start-up check read it all just now: the first pass waits its turn.
            if checker.just_finished && wait(PASS_EVERY) {
                return;
            }
            let mut pass_started = Instant::now();
            loop {
                match checker.check(BACKGROUND_STEP) {
                    Ok(p) => {
                        let pause = Duration::from_secs_f64(p.bytes as f64 / rate as f64);
                        if wait(pause) {
                            return;
                        }
                        if p.pass_done {
                            tracing::debug!("the background check finished a pass");
                            let next = pass_started + PASS_EVERY;
                            if wait(next.saturating_duration_since(Instant::now())) {
                                return;
                            }
                            pass_started = Instant::now();
                        }
                    }
                    Err(StoreError::Corrupt(why)) => return found(why),
                    Err(e) => {
                        tracing::warn!(error = %e, "the background check of the database failed");
                        if wait(RETRY_AFTER) {
                            return;
                        }
                    }
                }
            }
        })?;
        Ok(Background { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
