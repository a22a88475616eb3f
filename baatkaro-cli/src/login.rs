//! Logging in: with the session token this client saved for the server and user
//! when there is one (no password sent, none spent against the server's password
//! budget), else with the password, which then earns a new token (SPEC.md 4.7).
//!
//! A token lives in the config directory, one file per server address and user,
//! created readable and writable by the user alone (mode 0600, in a directory of
//! mode 0700): it is as good as the password until it is revoked or expires.

use std::io::Write;
use std::path::{Path, PathBuf};

use baatkaro_client::{Client, ConnectOptions, TlsInfo, Trust};
use baatkaro_proto::{ErrorCode, Password, Text, TokenId, TokenSecret, UserName};

use crate::Fail;

/// Where the token for one server address and user is kept.
pub(crate) struct TokenFile {
    path: Option<PathBuf>,
}

/// A file name for any server address: letters, digits, `.` and `-` as they are,
/// every other byte as `%XX`, so that two addresses never share a file.
fn file_name_of(server: &str) -> String {
    let mut out = String::with_capacity(server.len());
    for b in server.bytes() {
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The file that keeps where the chat of `user` on `server` was last: under
/// `config_dir`, one per server address and user, as tokens are.
pub(crate) fn place_file(
    config_dir: Option<&Path>,
    server: &str,
    user: UserName,
) -> Option<PathBuf> {
    config_dir.map(|d| d.join("where").join(file_name_of(server)).join(user.as_str()))
}

impl TokenFile {
    /// The token file of `user` on `server` under `config_dir` (none without one:
    /// then nothing is saved).
    pub(crate) fn new(config_dir: Option<&Path>, server: &str, user: UserName) -> Self {
        let path =
            config_dir.map(|d| d.join("tokens").join(file_name_of(server)).join(user.as_str()));
        TokenFile { path }
    }

    /// The saved token, if there is a readable one.
    pub(crate) fn load(&self) -> Option<(TokenId, TokenSecret)> {
        let text = std::fs::read_to_string(self.path.as_ref()?).ok()?;
        let (id, secret) = text.trim().split_once(' ')?;
        Some((id.parse().ok()?, TokenSecret::from_hex(secret.as_bytes()).ok()?))
    }

    /// Saves a token in place of any other: written to a new file created with mode
    /// 0600 (never widened, never chmod'ed after), then renamed over the old one, so
    /// that a reader sees the old token or the new one, whole.
    pub(crate) fn save(&self, token: TokenId, secret: &TokenSecret) -> std::io::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let dir = path.parent().ok_or_else(|| std::io::Error::other("no directory"))?;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        // A file left by a process of the same number that died mid-write.
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&tmp).and_then(|mut f| {
            f.write_all(format!("{token} ").as_bytes())?;
            f.write_all(&secret.to_hex())?;
            f.write_all(b"\n")?;
            f.sync_all()
        });
        match written.and_then(|()| std::fs::rename(&tmp, path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Forgets the saved token.
    pub(crate) fn remove(&self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The device label a new token carries: this program and the machine's name.
fn label() -> Text {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    let label = match host {
        Some(host) => format!("baatkaro-cli on {host}"),
        None => "baatkaro-cli".to_string(),
    };
    // A host name of control characters or past the label's length is left out.
    let fits = |s: &str| s.len() <= baatkaro_proto::credentials::LABEL_MAX;
    Text::new(&label)
        .ok()
        .filter(|t| fits(t.as_str()))
        .unwrap_or_else(|| Text::new("baatkaro-cli").unwrap_or_else(|_| unreachable!("valid text")))
}

/// How to log in, and again after the connection drops.
pub(crate) struct Login {
    /// The server's address.
    pub(crate) server: String,
    /// How to reach it safely (TLS trust, plain text beyond loopback).
    pub(crate) options: ConnectOptions,
    /// Who.
    pub(crate) user: UserName,
    /// The password, once it was needed.
    pub(crate) password: Option<Password>,
    /// The saved token.
    pub(crate) saved: TokenFile,
    /// Where the chat was last (`#group` or `@user`), to open there next time.
    pub(crate) place: Option<PathBuf>,
}

impl Login {
    /// Connects and logs in: with the saved token if the server takes tokens; if it
    /// refuses the token (revoked, expired), the token is forgotten and the password
    /// is used — `ask` gives it the first time it is needed — and a new token is
    /// made and saved.
    pub(crate) async fn connect(
        &mut self,
        ask: &mut dyn FnMut() -> Result<Password, Fail>,
    ) -> Result<Client, Fail> {
        let client = self.open().await?;
        let tokens = client.server().features.contains("tokens");
        if tokens && let Some((token, secret)) = self.saved.load() {
            match client.auth(self.user, token, secret).await {
                Ok(()) => return Ok(client),
                Err(e) if e.code() == Some(ErrorCode::AuthFailed) => self.saved.remove(),
                Err(e) => return Err(e.into()),
            }
        }
        // Before the password is asked for: it could not be sent anyway.
        client.check_secret_may_travel()?;
        let password = match &self.password {
            Some(p) => p.clone(),
            None => ask()?,
        };
        client.login(self.user, password.clone()).await?;
        self.password = Some(password);
        self.keep_token(&client).await;
        Ok(client)
    }

    /// Connects and creates the account, then saves a token for it.
    pub(crate) async fn register(&mut self, password: Password) -> Result<Client, Fail> {
        let client = self.open().await?;
        client.register(self.user, password.clone()).await?;
        self.password = Some(password);
        self.keep_token(&client).await;
        Ok(client)
    }

    /// Connects and logs in with the password even if a token is saved (checking
    /// the password), then replaces the saved token with a new one and revokes the
    /// old.
    pub(crate) async fn with_password(&mut self, password: Password) -> Result<Client, Fail> {
        let client = self.open().await?;
        client.login(self.user, password.clone()).await?;
        self.password = Some(password);
        self.renew_token(&client).await;
        Ok(client)
    }

    /// Connects as the options say, telling the user when a server's certificate
    /// was pinned on first use (SPEC.md 11.7).
    async fn open(&self) -> Result<Client, Fail> {
        let client = match Client::connect_with(self.server.as_str(), &self.options).await {
            Ok(client) => client,
            // Which server could not be reached.
            Err(baatkaro_client::ClientError::Io(error)) => {
                return Err(Fail::Os { what: format!("cannot reach {}", self.server), error });
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(TlsInfo { fingerprint, trust: Trust::FirstUse }) = client.tls() {
            eprintln!(
                "baatkaro: first connection to {}: pinned its certificate {fingerprint} in {}; \
                 check it against the fingerprint in the server's log",
                self.server,
                self.options
                    .known_hosts
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
        }
        Ok(client)
    }

    /// Saves a new token for this device in place of the saved one, which is then
    /// revoked (after a password change, say, which revoked the others).
    pub(crate) async fn renew_token(&self, client: &Client) {
        let old = self.saved.load();
        if self.keep_token(client).await
            && let Some((token, _)) = old
        {
            // Best effort: a token already gone is as good as revoked.
            let _ = client.revoke(token).await;
        }
    }

    /// Makes a token for this device and saves it, if the server takes tokens.
    /// Best effort: a client that cannot save one still works, with its password.
    async fn keep_token(&self, client: &Client) -> bool {
        if !client.server().features.contains("tokens") {
            return false;
        }
        let made = match client.make_token(label()).await {
            Ok(made) => made,
            Err(e) => {
                eprintln!("baatkaro: no session token: {e}");
                return false;
            }
        };
        match self.saved.save(made.token, &made.secret) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("baatkaro: cannot save the session token: {e}");
                // Unsaved, it would only wait to expire.
                let _ = client.revoke(made.token).await;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_address_has_a_file_name_of_its_own() {
        assert_eq!(file_name_of("127.0.0.1:7667"), "127.0.0.1%3A7667");
        assert_eq!(file_name_of("[::1]:7667"), "%5B%3A%3A1%5D%3A7667");
        assert_ne!(file_name_of("a:b"), file_name_of("a%3Ab"));
        assert_eq!(file_name_of("../x"), "..%2Fx");
    }

    #[cfg(unix)]
    #[test]
    fn a_token_is_saved_for_its_owner_alone_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(Some(dir.path()), "127.0.0.1:7667", "alice".parse().unwrap());
        assert_eq!(file.load(), None);
        let secret = TokenSecret([7; 32]);
        file.save(12, &secret).unwrap();
        assert_eq!(file.load(), Some((12, secret)));
        let path = file.path.clone().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700, "{dir_mode:o}");
        file.save(13, &TokenSecret([8; 32])).unwrap();
        assert_eq!(file.load(), Some((13, TokenSecret([8; 32]))));
        file.remove();
        assert_eq!(file.load(), None);
    }
}
