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
mod slash;

use std::path::PathBuf;
use std::process::ExitCode;

use baatkaro_cli::{Client, ClientError, ConnectOptions, IfExists, TlsInfo, Trust};
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
    /// Check the password (and remember the user name for later commands).
    Login,
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
        ConnectOptions {
            ca: cli.ca.clone(),
            fingerprint: cli.fingerprint,
            known_hosts: self.dir.as_ref().map(|d| d.join("known_hosts")),
            insecure_plaintext: cli.insecure_plaintext,
            ..ConnectOptions::default()
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

/// Connects and logs in (or registers); also returns the password, for a chat
/// that logs in again after a reconnect.
async fn session(
    cli: &Cli,
    settings: &Settings,
    register: bool,
) -> Result<(Client, Password), Fail> {
    let user = cli.login_user.or_else(|| settings.last_user()).ok_or_else(|| {
        Fail::Usage(
            "who are you? give --user NAME (or run `baatkaro login --user NAME` once)".into(),
        )
    })?;
    let options = settings.connect_options(cli);
    let mut client = Client::connect_with(cli.server.as_str(), &options).await?;
    if let Some(TlsInfo { fingerprint, trust: Trust::FirstUse }) = client.tls() {
        eprintln!(
            "baatkaro: first connection to {}: pinned its certificate {fingerprint} in {}; \
             check it against the fingerprint in the server's log",
            cli.server,
            options.known_hosts.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    // After the handshake: a password is not asked for before it could be refused.
    client.check_secret_may_travel()?;
    let pw = password(cli, user)?;
    if register {
        client.register(user, pw.clone()).await?;
    } else {
        client.login(user, pw.clone()).await?;
    }
    Ok((client, pw))
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
        S::Chat { .. } | S::Register | S::Login | S::Tail { .. } => return None,
    })
}

async fn run(cli: Cli) -> Result<(), Fail> {
    let settings = Settings::new(cli.config_dir.clone());
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let printer = Printer { json: cli.json, progress };
    let mut print = |line: String| println!("{line}");
    match &cli.command {
        None | Some(Sub::Chat { .. }) => {
            let register = matches!(cli.command, Some(Sub::Chat { register: true }));
            let (client, password) = session(&cli, &settings, register).await?;
            let user = client.user().ok_or_else(|| Fail::Usage("not logged in".into()))?;
            settings.remember_user(user);
            let login = chat::Login {
                server: cli.server.clone(),
                options: settings.connect_options(&cli),
                user,
                password,
            };
            chat::run(client, login, printer).await
        }
        Some(Sub::Register | Sub::Login) => {
            let (client, _) =
                session(&cli, &settings, matches!(cli.command, Some(Sub::Register))).await?;
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
        Some(Sub::Tail { group, count }) => {
            let (client, _) = session(&cli, &settings, false).await?;
            chat::tail(client, *group, *count, printer).await
        }
        Some(sub) => {
            let action = action_of(sub).ok_or_else(|| {
                Fail::Usage("upload takes GROUP PATH, or PATH with --to USER".into())
            })?;
            let (client, _) = session(&cli, &settings, false).await?;
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
