//! Row checksums: every row the store keeps carries, in its `row_sum` column, a
//! 64-bit XXH3 of its other columns, so that altered bytes inside a record — which
//! SQLite's own checks (`PRAGMA quick_check`, `integrity_check`) do not look at —
//! are found when the row is read, by the start-up check and by the background
//! check ([`super::verify`]).
//!
//! The sum covers each value with its type: a tag byte (null, integer, real, text,
//! blob), then the integer's 8 bytes, or the length and bytes of a text or blob. The
//! same function is registered in SQL as `baatkaro_row_sum(...)`, which the schema
//! migration uses to sum the rows of older databases.

use rusqlite::Connection;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use xxhash_rust::xxh3::xxh3_64;

/// The SQL name of the row checksum function.
pub(crate) const SQL_FUNCTION: &str = "baatkaro_row_sum";

/// A row checksum being built, one column at a time, in the table's column order:
/// the columns are laid out in a buffer and hashed at once (XXH3 of a whole buffer
/// measured several times faster than feeding it a column at a time).
pub(crate) struct RowSum(Vec<u8>);

impl RowSum {
    /// An empty sum.
    pub(crate) fn new() -> Self {
        RowSum(Vec::with_capacity(256))
    }

    /// Empties the sum, keeping its buffer, for the next row.
    pub(crate) fn start(&mut self) -> &mut Self {
        self.0.clear();
        self
    }

    /// Adds an integer column.
    pub(crate) fn int(&mut self, v: i64) -> &mut Self {
        self.0.push(1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Adds a text column.
    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        self.bytes(3, s.as_bytes())
    }

    /// Adds a blob column.
    pub(crate) fn blob(&mut self, b: &[u8]) -> &mut Self {
        self.bytes(4, b)
    }

    fn bytes(&mut self, tag: u8, b: &[u8]) -> &mut Self {
        self.0.push(tag);
        self.0.extend_from_slice(&(b.len() as u64).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }

    /// Adds a column as SQLite holds it.
    pub(crate) fn value(&mut self, v: ValueRef<'_>) -> &mut Self {
        match v {
            ValueRef::Null => {
                self.0.push(0);
                self
            }
            ValueRef::Integer(i) => self.int(i),
            ValueRef::Real(f) => {
                self.0.push(2);
                self.0.extend_from_slice(&f.to_bits().to_le_bytes());
                self
            }
            ValueRef::Text(t) => self.bytes(3, t),
            ValueRef::Blob(b) => self.bytes(4, b),
        }
    }

    /// The checksum of the columns added, as SQLite stores it (the bits of the
    /// `u64`).
    pub(crate) fn digest(&self) -> i64 {
        xxh3_64(&self.0) as i64
    }
}

/// Registers `baatkaro_row_sum(...)` on a connection.
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    conn.create_scalar_function(
        SQL_FUNCTION,
        -1,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| {
            let mut sum = RowSum::new();
            for i in 0..ctx.len() {
                sum.value(ctx.get_raw(i));
            }
            Ok(sum.digest())
        },
    )
}

/// A table the checks cover: its name, the columns that order its rows (the
/// primary key, or `rowid`), and the columns its checksum covers, in order.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    pub(crate) key: &'static [&'static str],
    pub(crate) columns: &'static [&'static str],
}

/// Every table of the schema, the small ones first and the history last: a check
/// with a budget covers what every start loads anyway before it reaches the events.
pub(crate) const TABLES: &[Table] = &[
    Table { name: "meta", key: &["rowid"], columns: &["key", "value"] },
    Table { name: "identity", key: &["rowid"], columns: &["id", "created"] },
    Table { name: "users", key: &["rowid"], columns: &["name", "hash", "created"] },
    Table { name: "groups", key: &["rowid"], columns: &["id", "name"] },
    Table { name: "group_log", key: &["group_id", "n"], columns: &["group_id", "n", "event"] },
    Table {
        name: "uploads",
        key: &["rowid"],
        columns: &["id", "user", "conv", "size", "sha256", "name", "ranges", "created"],
    },
    Table {
        name: "files",
        key: &["rowid"],
        columns: &["id", "key", "conv", "seq", "time", "uploader", "size", "sha256", "name"],
    },
    Table { name: "contents", key: &["user", "sha256"], columns: &["user", "sha256", "size"] },
    Table {
        name: "sent_keys",
        key: &["rowid"],
        columns: &["user", "key", "conv", "fingerprint", "seq", "time"],
    },
    Table { name: "key_blocks", key: &["id"], columns: &["floor", "newest", "keys"] },
    Table { name: "read_markers", key: &["user", "conv"], columns: &["user", "conv", "seq"] },
    Table { name: "event_floors", key: &["conv"], columns: &["conv", "floor"] },
    Table {
        name: "event_chunks",
        key: &["conv", "first_seq"],
        columns: &["conv", "first_seq", "last_seq", "pos", "len"],
    },
    Table { name: "events", key: &["conv", "seq"], columns: &["conv", "seq", "time", "frame"] },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_function_and_the_builder_agree_and_see_every_byte_and_type() {
        let conn = Connection::open_in_memory().unwrap();
        register(&conn).unwrap();
        let sql: i64 = conn
            .query_row("SELECT baatkaro_row_sum('g:1', 7, x'00ff', NULL, 1.5)", [], |r| r.get(0))
            .unwrap();
        let rust = RowSum::new()
            .text("g:1")
            .int(7)
            .blob(&[0, 0xff])
            .value(ValueRef::Null)
            .value(ValueRef::Real(1.5))
            .digest();
        assert_eq!(sql, rust);
        // One byte, one type, or where a column ends changes the sum.
        let mut s = RowSum::new();
        let base = s.start().text("ab").text("c").digest();
        assert_ne!(base, s.start().text("ab").text("d").digest());
        assert_ne!(base, s.start().text("a").text("bc").digest());
        assert_ne!(base, s.start().blob(b"ab").text("c").digest());
        assert_ne!(s.start().int(1).digest(), s.start().text("1").digest());
        // Started again, a sum forgets the row before.
        assert_eq!(base, s.start().text("ab").text("c").digest());
    }
}
