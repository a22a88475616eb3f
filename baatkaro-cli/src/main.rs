//! `baatkaro`: the BaatKaro command-line client.
//!
//! With no subcommand (or `chat`) it opens an interactive chat; each other
//! subcommand does one thing and exits 0 on success, or non-zero with a message on
//! standard error.

mod chat;
mod complete;
mod editor;
mod explain;
mod line;
mod login;
mod ops;
mod show;
mod slash;
mod transfers;

use std::path::PathBuf;
use std::process::ExitCode;

use baatkaro_client::{Client, ClientError, ConnectOptions};
use baatkaro_proto::transport::Fingerprint;
use baatkaro_proto::{GroupName, Password, UserName};
use clap::{CommandFactory, Parser, Subcommand};

use ops::{Op, Printer};

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
    #[arg(
        long = "user",
        global = true,
        value_name = "NAME",
        env = "BAATKARO_USER",
        value_parser = ops::user_name
    )]
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

/// The subcommands: every operation of the table ([`Op`], which the chat's slash
/// commands share), and those that set up or end a session, which only the command
/// line has.
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
    /// Change your password (the new one from --new-password-file,
    /// BAATKARO_NEW_PASSWORD, or a prompt): your other sessions end and every token
    /// but this device's is revoked.
    #[command(visible_alias = "password")]
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
    /// Print a group's events as they happen, until interrupted or N messages.
    Tail {
        #[arg(value_parser = ops::group_name)]
        group: GroupName,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    #[command(flatten)]
    Op(Op),
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
    /// The operating system refused, about this path or address.
    #[error("{what}: {error}")]
    Os { what: String, error: std::io::Error },
    /// A refusal said in words a person can act on (who may, the limit).
    #[error("{0}")]
    Explained(String),
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
        place: login::place_file(settings.dir.as_deref(), &cli.server, user),
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

async fn run(cli: Cli) -> Result<(), Fail> {
    let settings = Settings::new(cli.config_dir.clone());
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let printer = Printer { json: cli.json, progress, chat: false };
    let mut print = |line: String| println!("{line}");
    match &cli.command {
        None | Some(Sub::Chat { .. }) => {
            // A chat comes back by itself when the connection drops.
            let mut login = login_of(&cli, &settings)?;
            login.options.reconnect = true;
            let user = login.user;
            let client = if matches!(cli.command, Some(Sub::Chat { register: true })) {
                let pw = password(&cli, user)?;
                login.register(pw).await?
            } else {
                login.connect(&mut || password(&cli, user)).await?
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
                let registered = matches!(cli.command, Some(Sub::Register));
                print(if cli.json {
                    serde_json::json!({ "user": u.as_str() }).to_string()
                } else if registered {
                    format!("registered {u}; logged in")
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
        Some(Sub::Op(op)) => {
            let (client, _) = session(&cli, &settings).await?;
            match op {
                Op::Upload { conversation: Some(to), path, name } => {
                    let result = ops::upload_interruptible(
                        &client,
                        printer,
                        &mut print,
                        *to,
                        path,
                        name.clone(),
                    )
                    .await;
                    if let Err(Fail::Client(ClientError::Cancelled)) = result {
                        return Err(Fail::Interrupted(
                            "upload cancelled: the server deleted what it held of it".into(),
                        ));
                    }
                    result?;
                }
                op => {
                    op.run(&client, printer, &mut print).await?;
                }
            }
            Ok(())
        }
    }
}

/// The command line's clap tree: the derive's, with the help of the arguments the
/// chat fills in.
fn cli_command() -> clap::Command {
    slash::with_filled_help(Cli::command(), "In the chat, left out means the current one")
}

/// Parses the command line as [`cli_command`] describes it.
fn parse_cli(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Cli, clap::Error> {
    use clap::FromArgMatches;
    Cli::from_arg_matches(&cli_command().try_get_matches_from(args)?)
}

fn main() -> ExitCode {
    let cli = match parse_cli(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // In a line, without repeating a long argument whole.
            let sub = std::env::args().skip(1).find(|a| !a.starts_with('-'));
            let hint = match sub {
                Some(sub) if cli_command().find_subcommand(&sub).is_some() => {
                    format!("baatkaro {sub} --help")
                }
                _ => "baatkaro --help".to_string(),
            };
            eprintln!("baatkaro: {} (see `{hint}`)", slash::clap_error_words(&e));
            return ExitCode::from(2);
        }
    };
    show::set_local_offset();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("baatkaro: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A local set, for the chat's background transfers (see transfers.rs).
    let local = tokio::task::LocalSet::new();
    let result = runtime.block_on(local.run_until(run(cli)));
    // Without waiting for a transfer left running (a file being hashed, say).
    drop(local);
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(e)) => {
            eprintln!("baatkaro: {e}");
            ExitCode::from(2)
        }
        Err(e @ (Fail::Client(_) | Fail::Os { .. } | Fail::Explained(_))) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::complete::{self, Kind, Names};
    use crate::slash::{self, TREE};
    use baatkaro_proto::Conversation;

    /// The subcommands that set up or end a session: only the command line has them.
    const SESSION_ONLY: &[&str] =
        &["chat", "register", "login", "logout", "passwd", "delete-account", "tail"];

    /// A value that fits an argument, by what completes it.
    fn sample(arg: &clap::Arg) -> String {
        match complete::kind_of(arg) {
            Kind::Group => "rust".into(),
            Kind::User => "bob".into(),
            Kind::Conversation => "#rust".into(),
            Kind::Command => "kick".into(),
            Kind::Words(w) => w[0].clone(),
            Kind::Free => match slash::value_name(arg).as_str() {
                "FILE" => "f1".into(),
                "TOKEN" => "3".into(),
                "PATH" => "notes.txt".into(),
                _ => "some words".into(),
            },
        }
    }

    #[test]
    fn the_definitions_are_consistent() {
        cli_command().debug_assert();
        slash::Slash::command().debug_assert();
    }

    /// Walks clap's tree: every subcommand is a slash command (or one of the
    /// session's, deliberately), parses there with its arguments as it does on the
    /// command line, and completes.
    #[test]
    fn every_subcommand_has_a_slash_form_and_completes() {
        let cli = cli_command();
        let current = Some(Conversation::Group("rust".parse().unwrap()));
        let mut checked = 0;
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            if SESSION_ONLY.contains(&name) {
                assert!(TREE.find_subcommand(name).is_none(), "{name} is in the chat too");
                continue;
            }
            let slash = TREE
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("`{name}` has no slash command"));
            let args: Vec<String> = slash::positionals(slash).iter().map(|a| sample(a)).collect();
            let line = format!("/{name} {}", args.join(" "));
            let typed = slash::parse(&line, current);
            assert!(typed.is_ok(), "{line}: {typed:?}");
            let mut argv = vec!["baatkaro".to_string(), name.to_string()];
            argv.extend(args.iter().flat_map(|a| a.split(' ').map(String::from)));
            let parsed = parse_cli(argv.iter().map(Into::into));
            assert!(parsed.is_ok(), "{argv:?}: {}", parsed.unwrap_err());
            // The same operation either way.
            if let (Ok(slash::Typed::Op(chat)), Ok(Cli { command: Some(Sub::Op(line)), .. })) =
                (&typed, &parsed)
                && !matches!(chat, Op::Send { .. } | Op::Dm { .. } | Op::Join { .. })
            {
                assert_eq!(chat, line, "{name}");
            }
            // Its name completes.
            let partial = &line[..name.len()];
            let c = complete::complete(partial, partial.len(), &Names::default());
            assert!(c.candidates.iter().any(|n| n == name), "/{name} does not complete");
            checked += 1;
        }
        assert!(checked > 25, "only {checked} subcommands");
        // And the chat's own commands complete too.
        for sub in TREE.get_subcommands() {
            let line = format!("/{}", sub.get_name());
            let c = complete::complete(&line, line.len(), &Names::default());
            assert!(c.candidates.iter().any(|n| n == sub.get_name()), "{line}");
        }
    }

    #[test]
    fn a_flag_looking_user_name_is_a_user_on_the_command_line_too() {
        let cli = parse_cli(["baatkaro", "kick", "rust", "x--ban"].map(Into::into)).unwrap();
        let Some(Sub::Op(Op::Kick { user, ban, .. })) = cli.command else { panic!() };
        assert_eq!((user.as_str(), ban), ("x--ban", false));
    }
}
