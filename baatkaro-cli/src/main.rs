//! `baatkaro`: the BaatKaro command-line client.
//!
//! With no subcommand (or `chat`) it opens an interactive chat; each other
//! subcommand does one thing and exits 0 on success, or non-zero with a message on
//! standard error.

mod actions;
mod chat;
mod complete;
mod editor;
mod line;
mod login;
mod show;
mod slash;

use std::path::PathBuf;
use std::process::ExitCode;

use baatkaro_client::{Client, ClientError, ConnectOptions, IfExists};
use baatkaro_proto::transport::Fingerprint;
use baatkaro_proto::{
    Conversation, FileId, GroupName, JoinRule, OfferName, Password, Seq, Text, UserName,
};
use clap::{Parser, Subcommand};

use actions::{Action, Printer};

/// The command-line client of the BaatKaro group chat protocol.
#[derive(Parser, Debug)]
#[command(name = "baatkaro", version, about)]
struct Cli {
    /// The server's address: `host:port` in plain text, `baatkaros://host:port` for TLS.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:7667",
        value_name = "ADDR",
        env = "BAATKARO_SERVER"
    )]
    server: String,
    /// With TLS, trust only the CAs in this PEM file [default: the system's trust store].
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// With TLS, accept exactly the certificate with this SHA-256 (as the server logs it).
    #[arg(long, global = true, value_name = "SHA256")]
    fingerprint: Option<Fingerprint>,
    /// Send the password in clear to a server that is not on this machine.
    #[arg(long, global = true)]
    insecure_plaintext: bool,
    /// Who to log in as [default: the user of the last `login` or `register`].
    // Its own id: subcommands have a positional USER, which must not overwrite it.
    #[arg(long = "user", global = true, value_name = "NAME", env = "BAATKARO_USER")]
    login_user: Option<UserName>,
    /// Read the password from this file's first line [default: BAATKARO_PASSWORD, or a prompt].
    #[arg(long, global = true, value_name = "PATH")]
    password_file: Option<PathBuf>,
    /// Where the client keeps its settings [default: the platform's config directory].
    #[arg(long, global = true, value_name = "DIR")]
    config_dir: Option<PathBuf>,
    /// Print data as one JSON object per line.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Option<Sub>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Chat interactively (the default); reads commands line by line from a pipe.
    Chat {
        /// Create the account first.
        #[arg(long)]
        register: bool,
    },
    /// Create an account (and remember the user name for later commands).
    Register,
    /// Check the password, save a new session token for this device, and remember
    /// the user name for later commands.
    Login,
    /// End this device's session: revoke its saved token and forget it.
    Logout,
    /// Your session tokens: number, device, last use and address, expiry.
    Tokens,
    /// Revoke a session token (see `tokens`): the sessions it logged in end.
    Revoke { token: baatkaro_proto::TokenId },
    /// Change your password (the new one from --new-password-file,
    /// BAATKARO_NEW_PASSWORD, or a prompt): your other sessions end and every token
    /// but this device's is revoked.
    Passwd {
        /// Read the new password from this file's first line.
        #[arg(long, value_name = "PATH")]
        new_password_file: Option<PathBuf>,
    },
    /// Delete your account for good: you leave every group, a group you own passes
    /// to its first admin (or member), and your name is never given to anyone else.
    DeleteAccount {
        /// Yes, delete it.
        #[arg(long)]
        yes: bool,
    },
    /// Create a group and own it.
    Create {
        group: GroupName,
        #[arg(long, value_parser = parse_rule)]
        rule: Option<JoinRule>,
    },
    /// Join a group, or ask to.
    Join {
        group: GroupName,
        #[arg(long, value_parser = parse_text)]
        reason: Option<Text>,
    },
    /// List a group's pending join requests.
    Requests { group: GroupName },
    /// Admit a requester.
    Approve { group: GroupName, user: UserName },
    /// Refuse a request.
    Reject { group: GroupName, user: UserName },
    /// Invite a user.
    Invite { group: GroupName, user: UserName },
    /// Accept an invite.
    Accept { group: GroupName },
    /// Decline an invite.
    Decline { group: GroupName },
    /// Leave a group (or withdraw a request).
    Leave { group: GroupName },
    /// Remove a member.
    Kick {
        group: GroupName,
        user: UserName,
        /// Also ban them.
        #[arg(long)]
        ban: bool,
    },
    /// Lift a ban.
    Unban { group: GroupName, user: UserName },
    /// Make a member an admin.
    Promote { group: GroupName, user: UserName },
    /// Make an admin a member.
    Demote { group: GroupName, user: UserName },
    /// Offer ownership to a member.
    Transfer { group: GroupName, user: UserName },
    /// Accept an ownership offer.
    AcceptOwnership { group: GroupName },
    /// Withdraw an ownership offer.
    CancelTransfer { group: GroupName },
    /// Change a group's join rule.
    Rule {
        group: GroupName,
        #[arg(value_parser = parse_rule)]
        rule: JoinRule,
    },
    /// Delete a group you own.
    Delete { group: GroupName },
    /// Your groups, invites and requests.
    Groups,
    /// Every conversation you read, with its newest sequence number.
    Conversations,
    /// A group's members, with roles and who is online.
    Members { group: GroupName },
    /// Who is online (in one group, or in any of yours).
    Online { group: Option<GroupName> },
    /// Send a message to a group.
    Send {
        group: GroupName,
        #[arg(value_parser = parse_text)]
        text: Text,
    },
    /// Send a private message.
    Dm {
        user: UserName,
        #[arg(value_parser = parse_text)]
        text: Text,
    },
    /// Print a group's stored events (or, with --with, a private conversation's).
    History {
        #[arg(required_unless_present = "with")]
        group: Option<GroupName>,
        /// The private conversation with this user instead.
        #[arg(long, conflicts_with = "group")]
        with: Option<UserName>,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: Seq,
    },
    /// Share a file with a group: `upload GROUP PATH`, or `upload --to USER PATH`.
    Upload {
        /// GROUP PATH (or only PATH, with --to).
        #[arg(num_args = 1..=2, required = true, value_name = "GROUP PATH")]
        args: Vec<String>,
        /// Send it to this user instead of a group.
        #[arg(long)]
        to: Option<UserName>,
        /// The name others see [default: the file's own name].
        #[arg(long, value_parser = parse_file_name)]
        name: Option<OfferName>,
    },
    /// List the files shared in a group (or, with --with, a private conversation).
    Files {
        #[arg(required_unless_present = "with")]
        group: Option<GroupName>,
        /// The private conversation with this user instead.
        #[arg(long, conflicts_with = "group")]
        with: Option<UserName>,
    },
    /// Download a shared file (an interrupted download resumes when run again). An
    /// existing file is kept: the download takes a free name (`notes (1).pdf`).
    Download {
        file: FileId,
        /// Where to save it: a file, or a directory to save into under the file's
        /// name made safe [default: the current directory].
        #[arg(short = 'o', long = "output", value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace a file that has the name, instead of taking a free one.
        #[arg(long)]
        force: bool,
    },
    /// Print a group's events as they happen, until interrupted or N messages.
    Tail {
        group: GroupName,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
}

fn parse_file_name(s: &str) -> Result<OfferName, String> {
    OfferName::new(s).map_err(|e| e.to_string())
}

fn parse_text(s: &str) -> Result<Text, String> {
    Text::new(s).map_err(|e| e.to_string())
}

fn parse_rule(s: &str) -> Result<JoinRule, String> {
    s.parse().map_err(|_| format!("{s}: expected approval, open or invite"))
}

/// Why the client stopped without doing what was asked.
#[derive(Debug, thiserror::Error)]
enum Fail {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    /// Stopped by Ctrl-C, having undone what it started.
    #[error("{0}")]
    Interrupted(String),
}

/// The settings the client remembers between runs.
struct Settings {
    dir: Option<PathBuf>,
}

impl Settings {
    fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir.or_else(|| {
            directories::ProjectDirs::from("", "", "baatkaro").map(|d| d.config_dir().to_path_buf())
        });
        Settings { dir }
    }

    /// The user of the last successful `login` or `register`.
    fn last_user(&self) -> Option<UserName> {
        let dir = self.dir.as_ref()?;
        std::fs::read_to_string(dir.join("user")).ok()?.trim().parse().ok()
    }

    /// How to reach servers: the command line's trust settings, and servers
    /// pinned on first use in `known_hosts` in the settings directory.
    fn connect_options(&self, cli: &Cli) -> ConnectOptions {
        let mut options = ConnectOptions::default().insecure_plaintext(cli.insecure_plaintext);
        options.ca = cli.ca.clone();
        options.fingerprint = cli.fingerprint;
        options.known_hosts = self.dir.as_ref().map(|d| d.join("known_hosts"));
        options
    }

    /// Where the session token for `user` on `server` is kept.
    fn token_file(&self, server: &str, user: UserName) -> login::TokenFile {
        login::TokenFile::new(self.dir.as_deref(), server, user)
    }

    /// Forgets `user` as the one to log in as, if it is.
    fn forget_user(&self, user: UserName) {
        if self.last_user() == Some(user)
            && let Some(dir) = &self.dir
        {
            let _ = std::fs::remove_file(dir.join("user"));
        }
    }

    fn remember_user(&self, user: UserName) {
        // Best effort: a client that cannot save its settings still works.
        if let Some(dir) = &self.dir
            && std::fs::create_dir_all(dir).is_ok()
        {
            let _ = std::fs::write(dir.join("user"), format!("{user}\n"));
        }
    }
}

/// The password: from `--password-file`, `BAATKARO_PASSWORD`, or a prompt.
fn password(cli: &Cli, user: UserName) -> Result<Password, Fail> {
    let raw = if let Some(path) = &cli.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))?;
        text.lines().next().unwrap_or_default().to_string()
    } else if let Ok(p) = std::env::var("BAATKARO_PASSWORD") {
        p
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        rpassword::prompt_password(format!("password for {user}: "))
            .map_err(|e| Fail::Usage(e.to_string()))?
    } else {
        return Err(Fail::Usage(
            "no password: set BAATKARO_PASSWORD or give --password-file".into(),
        ));
    };
    Password::new(&raw).map_err(|e| Fail::Usage(format!("password: {e}")))
}

/// The new password for `passwd`: from `file`, `BAATKARO_NEW_PASSWORD`, or a prompt
/// (asked twice).
fn new_password(file: Option<&std::path::Path>, user: UserName) -> Result<Password, Fail> {
    let raw = if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Fail::Usage(format!("{}: {e}", path.display())))?;
        text.lines().next().unwrap_or_default().to_string()
    } else if let Ok(p) = std::env::var("BAATKARO_NEW_PASSWORD") {
        p
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password(format!("new password for {user}: "))
            .map_err(|e| Fail::Usage(e.to_string()))?;
        let again = rpassword::prompt_password("the same again: ")
            .map_err(|e| Fail::Usage(e.to_string()))?;
        if first != again {
            return Err(Fail::Usage("the two new passwords differ".into()));
        }
        first
    } else {
        return Err(Fail::Usage(
            "no new password: set BAATKARO_NEW_PASSWORD or give --new-password-file".into(),
        ));
    };
    Password::new(&raw).map_err(|e| Fail::Usage(format!("new password: {e}")))
}

/// Who to log in as: `--user`, or the user of the last `login` or `register`.
fn who(cli: &Cli, settings: &Settings) -> Result<UserName, Fail> {
    cli.login_user.or_else(|| settings.last_user()).ok_or_else(|| {
        Fail::Usage(
            "who are you? give --user NAME (or run `baatkaro login --user NAME` once)".into(),
        )
    })
}

/// How this run logs in: with the saved token when it works, else the password.
fn login_of(cli: &Cli, settings: &Settings) -> Result<login::Login, Fail> {
    let user = who(cli, settings)?;
    Ok(login::Login {
        server: cli.server.clone(),
        user,
        options: settings.connect_options(cli),
        password: None,
        saved: settings.token_file(&cli.server, user),
    })
}

/// Connects and logs in (with the saved token, or the password); also returns how,
/// for a chat that logs in again after a reconnect.
async fn session(cli: &Cli, settings: &Settings) -> Result<(Client, login::Login), Fail> {
    let mut login = login_of(cli, settings)?;
    let user = login.user;
    let client = login.connect(&mut || password(cli, user)).await?;
    Ok((client, login))
}

fn action_of(sub: &Sub) -> Option<Action> {
    use Sub as S;
    Some(match sub {
        S::Create { group, rule } => Action::Create { group: *group, rule: *rule },
        S::Join { group, reason } => Action::Join { group: *group, reason: reason.clone() },
        S::Requests { group } => Action::Requests { group: *group },
        S::Approve { group, user } => Action::Approve { group: *group, user: *user },
        S::Reject { group, user } => Action::Reject { group: *group, user: *user },
        S::Invite { group, user } => Action::Invite { group: *group, user: *user },
        S::Accept { group } => Action::Accept { group: *group },
        S::Decline { group } => Action::Decline { group: *group },
        S::Leave { group } => Action::Leave { group: *group },
        S::Kick { group, user, ban } => Action::Kick { group: *group, user: *user, ban: *ban },
        S::Unban { group, user } => Action::Unban { group: *group, user: *user },
        S::Promote { group, user } => Action::Promote { group: *group, user: *user },
        S::Demote { group, user } => Action::Demote { group: *group, user: *user },
        S::Transfer { group, user } => Action::Transfer { group: *group, user: *user },
        S::AcceptOwnership { group } => Action::AcceptOwnership { group: *group },
        S::CancelTransfer { group } => Action::CancelTransfer { group: *group },
        S::Rule { group, rule } => Action::Rule { group: *group, rule: *rule },
        S::Delete { group } => Action::Delete { group: *group },
        S::Groups => Action::Groups,
        S::Conversations => Action::Conversations,
        S::Members { group } => Action::Members { group: *group },
        S::Online { group } => Action::Online { group: *group },
        S::Send { group, text } => {
            Action::Send { to: Conversation::Group(*group), text: text.clone() }
        }
        S::Dm { user, text } => {
            Action::Send { to: Conversation::Direct(*user), text: text.clone() }
        }
        S::History { group, with, since } => {
            let conv = match (group, with) {
                (_, Some(u)) => Conversation::Direct(*u),
                (Some(g), None) => Conversation::Group(*g),
                (None, None) => return None,
            };
            Action::History { conv, since: *since }
        }
        S::Upload { args, to, name } => {
            let (conv, path) = match (to, &args[..]) {
                (Some(u), [path]) => (Conversation::Direct(*u), path),
                (None, [group, path]) => (Conversation::Group(group.parse().ok()?), path),
                _ => return None,
            };
            Action::Upload { to: conv, path: PathBuf::from(path), name: name.clone() }
        }
        S::Files { group, with } => {
            let conv = match (group, with) {
                (_, Some(u)) => Conversation::Direct(*u),
                (Some(g), None) => Conversation::Group(*g),
                (None, None) => return None,
            };
            Action::Files { conv }
        }
        S::Download { file, output, force } => Action::Download {
            file: *file,
            output: output.clone(),
            if_exists: if *force { IfExists::Overwrite } else { IfExists::PickFreeName },
        },
        S::Tokens => Action::Tokens,
        S::Revoke { token } => Action::Revoke { token: *token },
        S::Chat { .. }
        | S::Register
        | S::Login
        | S::Logout
        | S::Tail { .. }
        | S::Passwd { .. }
        | S::DeleteAccount { .. } => return None,
    })
}

async fn run(cli: Cli) -> Result<(), Fail> {
    let settings = Settings::new(cli.config_dir.clone());
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let printer = Printer { json: cli.json, progress };
    let mut print = |line: String| println!("{line}");
    match &cli.command {
        None | Some(Sub::Chat { .. }) => {
            let (client, login) = if matches!(cli.command, Some(Sub::Chat { register: true })) {
                let mut login = login_of(&cli, &settings)?;
                let pw = password(&cli, login.user)?;
                (login.register(pw).await?, login)
            } else {
                session(&cli, &settings).await?
            };
            settings.remember_user(login.user);
            chat::run(client, login, printer).await
        }
        Some(Sub::Register | Sub::Login) => {
            let mut login = login_of(&cli, &settings)?;
            let pw = password(&cli, login.user)?;
            let client = if matches!(cli.command, Some(Sub::Register)) {
                login.register(pw).await?
            } else {
                login.with_password(pw).await?
            };
            if let Some(u) = client.user() {
                settings.remember_user(u);
                print(if cli.json {
                    serde_json::json!({ "user": u.as_str() }).to_string()
                } else {
                    format!("logged in as {u}")
                });
            }
            Ok(())
        }
        Some(Sub::Logout) => {
            let login = login_of(&cli, &settings)?;
            let Some((token, secret)) = login.saved.load() else {
                print(format!("no session token saved for {} on {}", login.user, cli.server));
                return Ok(());
            };
            let client = Client::connect(cli.server.as_str()).await?;
            match client.auth(login.user, token, secret).await {
                Ok(()) => client.logout(true).await?,
                // Refused: it no longer works anyway.
                Err(e) if e.code() == Some(baatkaro_proto::ErrorCode::AuthFailed) => {}
                Err(e) => return Err(e.into()),
            }
            login.saved.remove();
            print(format!("logged out: token {token} revoked"));
            Ok(())
        }
        Some(Sub::Passwd { new_password_file }) => {
            let mut login = login_of(&cli, &settings)?;
            let user = login.user;
            let old = password(&cli, user)?;
            let new = new_password(new_password_file.as_deref(), user)?;
            let client = login.connect(&mut || Ok(old.clone())).await?;
            client.change_password(old, new).await?;
            // The token this session logged in with was kept; one it made after a
            // password login was not: either way this device gets a fresh one.
            login.renew_token(&client).await;
            print(format!("password changed for {user}; your other sessions and tokens ended"));
            Ok(())
        }
        Some(Sub::DeleteAccount { yes }) => {
            let mut login = login_of(&cli, &settings)?;
            let user = login.user;
            if !yes {
                return Err(Fail::Usage(format!(
                    "this deletes the account {user} for good; give --yes to go on"
                )));
            }
            let pw = password(&cli, user)?;
            let client = login.connect(&mut || Ok(pw.clone())).await?;
            client.delete_account(pw).await?;
            login.saved.remove();
            settings.forget_user(user);
            print(format!("account {user} deleted"));
            Ok(())
        }
        Some(Sub::Tail { group, count }) => {
            let (client, _) = session(&cli, &settings).await?;
            chat::tail(client, *group, *count, printer).await
        }
        Some(sub) => {
            let action = action_of(sub).ok_or_else(|| {
                Fail::Usage("upload takes GROUP PATH, or PATH with --to USER".into())
            })?;
            let (client, _) = session(&cli, &settings).await?;
            match action {
                Action::Upload { to, path, name } => {
                    let result = actions::upload_interruptible(
                        &client, printer, &mut print, to, &path, name,
                    )
                    .await;
                    if let Err(ClientError::Cancelled) = result {
                        return Err(Fail::Interrupted(
                            "upload cancelled: the server deleted what it held of it".into(),
                        ));
                    }
                    result?;
                }
                action => {
                    action.run(&client, printer, &mut print).await?;
                }
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("baatkaro: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(e)) => {
            eprintln!("baatkaro: {e}");
            ExitCode::from(2)
        }
        Err(Fail::Client(e)) => {
            eprintln!("baatkaro: {e}");
            ExitCode::FAILURE
        }
        Err(Fail::Interrupted(e)) => {
            eprintln!("baatkaro: {e}");
            // What a shell reports for a command ended by SIGINT.
            ExitCode::from(130)
        }
    }
}
