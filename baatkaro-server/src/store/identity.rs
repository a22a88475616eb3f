//! The store's identity: a random id made with the database, kept in it and in a
//! small file beside it (`baatkaro.id`). A directory that has the file (or shared
//! files) but no database, or whose file names another database, is refused at
//! start rather than silently started afresh: that would let anyone register the
//! old names, and mix one store's files with another's records.

use std::io::Write;
use std::path::Path;

/// The identity file's name inside the data directory.
pub const ID_FILE: &str = "baatkaro.id";

/// The schema version from which a database holds its identity.
pub(super) const IDENTITY_VERSION: i64 = 5;

/// Whether `id` is an identity as the store makes them: 32 lower-case hex digits.
/// Nothing else read from a file is ever quoted in a message.
pub(super) fn valid(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What `dir` holds of a store, apart from its database and lock: the identity file,
/// the database's log, shared files, unfinished uploads. Other files (a
/// configuration, a certificate) do not count.
pub(super) fn leftovers(dir: &Path) -> Vec<&'static str> {
    let nonempty = |name: &str| {
        std::fs::read_dir(dir.join(name)).is_ok_and(|mut entries| entries.next().is_some())
    };
    let mut found = Vec::new();
    if dir.join(ID_FILE).exists() {
        found.push(ID_FILE);
    }
    for name in ["baatkaro.db-wal", "baatkaro.db-journal"] {
        if dir.join(name).exists() {
            found.push(name);
        }
    }
    if nonempty("files") {
        found.push("files/");
    }
    if nonempty("partial") {
        found.push("partial/");
    }
    if nonempty("events") {
        found.push("events/");
    }
    found
}

/// The identity in `dir`'s file, if there is one. A file that does not hold an
/// identity is an error that names the file (not its content).
pub(super) fn read(dir: &Path) -> Result<Option<String>, super::StoreError> {
    let path = dir.join(ID_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let id = std::str::from_utf8(&bytes).unwrap_or_default().trim();
            if valid(id) {
                Ok(Some(id.to_string()))
            } else {
                Err(super::StoreError::Corrupt(format!(
                    "{} does not hold a store identity (32 hex digits)",
                    path.display()
                )))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes `id` to `dir`'s identity file, durably and whole.
pub(super) fn write(dir: &Path, id: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{ID_FILE}.new"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(format!("{id}\n").as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(ID_FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_a_store_leaves_counts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("server.toml"), "listen = 1").unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        assert!(leftovers(dir.path()).is_empty(), "an empty files/ and other files do not count");
        std::fs::write(dir.path().join("files").join("ab"), "x").unwrap();
        assert_eq!(leftovers(dir.path()), ["files/"]);
        write(dir.path(), "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(leftovers(dir.path()), [ID_FILE, "files/"]);
        assert_eq!(read(dir.path()).unwrap().as_deref(), Some("0123456789abcdef0123456789abcdef"));
        std::fs::write(dir.path().join(ID_FILE), "\x1b[31mnot an id").unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(!e.contains('\x1b') && !e.contains("not an id"), "{e}");
    }
}
