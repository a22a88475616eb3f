//! `baatkaro-verify`: what checking a large database costs. It fills a database
//! with N stored messages through the server's own store (the rows and checksums
//! the server writes), then times, each with the database file dropped from the
//! page cache first (`posix_fadvise(DONTNEED)`) and again with it cached:
//!
//! - opening the store (what every start pays anyway);
//! - SQLite's `PRAGMA quick_check` and `PRAGMA integrity_check`;
//! - the checksum check of every row (what the start-up check and the background
//!   check do, `baatkaro_server::store::verify`);
//! - the schema migration that adds the checksums to a database of an older server.
//!
//! ```sh
//! cargo build --release -p baatkaro-benches
//! target/release/baatkaro-verify --events 1000000
//! ```
//!
//! `--dir DIR` keeps the database there (default: a temporary directory, deleted
//! after); `--groups N` spreads the messages over N groups (default 100);
//! `--text N` makes each message N bytes long (default 100).

use std::path::Path;
use std::time::{Duration, Instant};

use baatkaro_proto::group::GroupId;
use baatkaro_proto::{Conversation, Encode, Event, ServerFrame, StoredEvent, Text, UserName};
use baatkaro_server::store::sqlite::{DB_FILE, Sqlite};
use baatkaro_server::store::verify::Checker;
use baatkaro_server::store::{ConvKey, EventRecord, Store, Write};

struct Args {
    events: u64,
    groups: u64,
    text: usize,
    dir: Option<std::path::PathBuf>,
}

fn args() -> Result<Args, String> {
    let mut a = Args { events: 1_000_000, groups: 100, text: 100, dir: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => a.events = value()?.parse().map_err(|e| format!("--events: {e}"))?,
            "--groups" => a.groups = value()?.parse().map_err(|e| format!("--groups: {e}"))?,
            "--text" => a.text = value()?.parse().map_err(|e| format!("--text: {e}"))?,
            "--dir" => a.dir = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    a.groups = a.groups.max(1);
    Ok(a)
}

/// Fills the store with `events` messages, 10,000 to a commit.
fn fill(dir: &Path, a: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut store = Sqlite::open(dir)?;
    let from: UserName = "alice".parse()?;
    let text = Text::new(&"x".repeat(a.text.max(1)))?;
    let conv: Conversation = "#rust".parse()?;
    let mut batch = Vec::with_capacity(10_000);
    let mut seqs = vec![0u64; a.groups as usize];
    let started = Instant::now();
    for i in 0..a.events {
        let g = (i % a.groups) as usize;
        seqs[g] += 1;
        let time = 1_764_072_600_000 + i;
        let event = StoredEvent::Message { conv, seq: seqs[g], time, from, text: text.clone() };
        let frame = ServerFrame::Event(Event::Stored(event.clone())).to_bytes();
        let key = ConvKey::Group(GroupId(g as u64 + 1));
        batch.push(Write::Event(EventRecord::new(key, &event, frame)));
        if batch.len() == 10_000 {
            store.commit(&batch, a.groups + 1, 0)?;
            batch.clear();
        }
    }
    store.commit(&batch, a.groups + 1, 0)?;
    println!("filled {} events in {:.1} s", a.events, started.elapsed().as_secs_f64());
    Ok(())
}

/// Drops the database's pages from the page cache.
fn uncache(dir: &Path) -> std::io::Result<()> {
    for name in [DB_FILE, "baatkaro.db-wal"] {
        if let Ok(f) = std::fs::File::open(dir.join(name)) {
            f.sync_all()?;
            rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
        }
    }
    Ok(())
}

/// Runs `f` with the database uncached, then cached; prints both.
fn time<T>(
    dir: &Path,
    what: &str,
    mut f: impl FnMut() -> Result<T, Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut took = [Duration::ZERO; 2];
    for (i, cold) in [true, false].into_iter().enumerate() {
        if cold {
            uncache(dir)?;
        }
        let started = Instant::now();
        f()?;
        took[i] = started.elapsed();
    }
    println!(
        "{what:<40} uncached {:>8.2} s   cached {:>8.2} s",
        took[0].as_secs_f64(),
        took[1].as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let tmp = tempfile::tempdir()?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    fill(&dir, &a)?;
    let path = dir.join(DB_FILE);
    println!("database: {} bytes", std::fs::metadata(&path)?.len());
    time(&dir, "open the store", || Ok(Sqlite::open(&dir)?))?;
    let sql = |pragma: &'static str| {
        let path = path.clone();
        move || {
            let conn = rusqlite::Connection::open(&path)?;
            let found: String = conn.query_row(pragma, [], |r| r.get(0))?;
            if found != "ok" {
                return Err(format!("{pragma}: {found}").into());
            }
            Ok(())
        }
    };
    time(&dir, "PRAGMA quick_check", sql("PRAGMA quick_check"))?;
    time(&dir, "PRAGMA integrity_check", sql("PRAGMA integrity_check"))?;
    time(&dir, "checksum check of every row", || {
        let mut checker = Checker::open(&path)?;
        let p = checker.check(u64::MAX)?;
        if !p.pass_done || p.rows < a.events {
            return Err(format!("checked only {} rows", p.rows).into());
        }
        Ok(())
    })?;
    // The migration: back to a database without checksums, then opened again.
    let mut took = Duration::ZERO;
    Sqlite::downgrade_for_tests(&dir, 4)?;
    uncache(&dir)?;
    let started = Instant::now();
    Sqlite::open(&dir)?;
    took += started.elapsed();
    println!("{:<40} uncached {:>8.2} s", "migration adding the checksums", took.as_secs_f64());
    Ok(())
}
