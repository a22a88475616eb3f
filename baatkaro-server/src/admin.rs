//! `baatkaro-server admin`: the operator's offline changes to accounts, made on the
//! data directory while the server is stopped — reset a user's password (which
//! revokes their session tokens), lock an account, unlock it.
//!
//! It takes the data directory's lock as a server does, so it refuses to run while a
//! server holds the directory; and it never creates a database: a directory without
//! one is a mistake (a wrong `--data-dir`), said as such.

use std::path::{Path, PathBuf};

use baatkaro_proto::{Password, UserName};

use crate::auth::Hasher;
use crate::config::HashCost;
use crate::store::StoreError;
use crate::store::sqlite::{DB_FILE, Sqlite};

/// One change to make.
#[derive(Debug)]
pub enum Change {
    /// Give `user` this password, and revoke all their session tokens.
    ResetPassword {
        /// The account.
        user: UserName,
        /// The new password.
        password: Password,
    },
    /// Lock `user`'s account: it does not log in until unlocked.
    Lock {
        /// The account.
        user: UserName,
    },
    /// Unlock `user`'s account.
    Unlock {
        /// The account.
        user: UserName,
    },
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The directory holds no database.
    #[error("{0} holds no BaatKaro database (is --data-dir right?)")]
    NoDatabase(PathBuf),
    /// There is no such account.
    #[error("there is no account {0}")]
    NoSuchUser(UserName),
    /// The new password is shorter than the configured minimum.
    #[error("the new password is shorter than {0} bytes (limit password)")]
    TooShort(u64),
    /// The store could not be opened or changed (a running server holds it, say).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The password could not be hashed.
    #[error("hashing the password failed: {0}")]
    Hash(String),
    /// The change's thread failed.
    #[error("{0}")]
    Other(String),
}

/// What the operator's change needs of the server's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// The password hash cost, as the server hashes.
    pub hash_cost: HashCost,
    /// The shortest password allowed (the `password` limit).
    pub min_password: u64,
}

/// Makes `change` to the accounts in `dir`: a line to tell the operator what was
/// done, or why not.
pub async fn run(dir: &Path, change: Change, settings: Settings) -> Result<String, AdminError> {
    if !dir.join(DB_FILE).is_file() {
        return Err(AdminError::NoDatabase(dir.to_path_buf()));
    }
    // The hash comes first: the directory is locked only for the change itself.
    let hash = match &change {
        Change::ResetPassword { password, .. } => {
            let len = password.expose().len() as u64;
            if len < settings.min_password {
                return Err(AdminError::TooShort(settings.min_password));
            }
            let hasher = Hasher::new(settings.hash_cost, 1).map_err(AdminError::Hash)?;
            Some(hasher.hash(password.expose().to_vec()).await.map_err(AdminError::Hash)?)
        }
        _ => None,
    };
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut store = Sqlite::open(&dir)?;
        let mut admin = store.admin();
        let (user, done, said) = match change {
            Change::ResetPassword { user, .. } => {
                let done = admin.reset_password(user, hash.as_deref().unwrap_or_default())?;
                (user, done, format!("{user}: password reset; every session token revoked"))
            }
            Change::Lock { user } => {
                (user, admin.set_locked(user, true)?, format!("{user}: locked"))
            }
            Change::Unlock { user } => {
                (user, admin.set_locked(user, false)?, format!("{user}: unlocked"))
            }
        };
        if done { Ok(said) } else { Err(AdminError::NoSuchUser(user)) }
    })
    .await
    .map_err(|e| AdminError::Other(e.to_string()))?
}
