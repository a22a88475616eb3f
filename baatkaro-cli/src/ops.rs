//! The table of operations: every operation of the product, declared once as a
//! clap subcommand. The one-shot command line (`baatkaro kick rust bob`) and the
//! chat's slash commands (`/kick bob`) are both parsed from these definitions, and
//! `/help` and Tab completion read them through [`clap::CommandFactory`].
//!
//! Conventions the chat relies on (see `slash.rs`):
//! - An optional positional argument whose id is `group` or `conversation` is the
//!   current one in the chat when left out (the one-shot command line asks for it).
//!   An optional group that means something else when left out (`online`'s "any of
//!   yours") has another id.
//! - An argument that takes any number of words (message text, a reason) takes the
//!   rest of the chat's line as it was typed, spaces and all.
//! - Value names say what completes an argument: `GROUP`, `USER`, `CONVERSATION`
//!   (`#group` or `@user`); arguments with possible values complete to those.
//!
//! Subcommands are named after the wire verbs (`transfer-accept` is
//! TRANSFER-ACCEPT), with aliases where people expect another word.

use std::path::{Path, PathBuf};

use baatkaro_client::transfer::{IfExists, SharedFile, UploadProgress, name_for};
use baatkaro_client::{Client, ClientError};
use baatkaro_proto::{
    Command, Conversation, ErrorCode, FileId, GroupName, InviteOutcome, Item, JoinOutcome,
    JoinRule, OfferName, OkReply, Seq, Text, TokenId, UserName,
};
use clap::Subcommand;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{Fail, explain, show};

/// One operation of the product, as a subcommand of `baatkaro` and a slash command
/// of the chat.
#[derive(Subcommand, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Create a group and own it.
    Create {
        #[arg(value_parser = group_name)]
        group: GroupName,
        /// Who may join: approval (the default), open, or invite only.
        #[arg(value_parser = rule_parser())]
        rule: Option<JoinRule>,
    },
    /// Join a group, or ask to (with a reason for the approvers).
    Join {
        #[arg(value_parser = group_name)]
        group: GroupName,
        /// Why you want in (the rest of the line).
        #[arg(value_name = "REASON", num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        reason: Vec<String>,
    },
    /// List a group's pending join requests.
    Requests {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
    },
    /// List the users banned from a group, and who banned each (owner and admins).
    Bans {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
    },
    /// Admit a user who asked to join.
    #[command(allow_missing_positional = true)]
    Approve {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Refuse a request to join.
    #[command(allow_missing_positional = true)]
    Reject {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Invite a user to a group.
    #[command(allow_missing_positional = true)]
    Invite {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Accept an invite to a group.
    Accept {
        #[arg(value_parser = group_name)]
        group: GroupName,
    },
    /// Decline an invite to a group.
    Decline {
        #[arg(value_parser = group_name)]
        group: GroupName,
    },
    /// Leave a group (or withdraw a request to join it).
    #[command(visible_alias = "part")]
    Leave {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
    },
    /// Remove a member from a group.
    #[command(allow_missing_positional = true)]
    Kick {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = user_name)]
        user: UserName,
        /// Also ban them: they cannot join again until unbanned.
        #[arg(long)]
        ban: bool,
    },
    /// Lift a ban.
    #[command(allow_missing_positional = true)]
    Unban {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Make a member an admin.
    #[command(allow_missing_positional = true, visible_alias = "op")]
    Promote {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Make an admin a plain member again.
    #[command(allow_missing_positional = true, visible_alias = "deop")]
    Demote {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Offer the ownership of a group to a member.
    #[command(allow_missing_positional = true)]
    Transfer {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = user_name)]
        user: UserName,
    },
    /// Accept an offer of a group's ownership.
    #[command(visible_alias = "accept-ownership")]
    TransferAccept {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
    },
    /// Withdraw an offer of ownership.
    #[command(visible_alias = "cancel-transfer")]
    TransferCancel {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
    },
    /// Change who may join a group.
    #[command(allow_missing_positional = true)]
    Rule {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
        #[arg(value_parser = rule_parser())]
        rule: JoinRule,
    },
    /// Delete a group you own, for good.
    Delete {
        #[arg(value_parser = group_name)]
        group: GroupName,
    },
    /// Your groups, invites and requests.
    Groups,
    /// Every conversation you read, with its newest sequence number.
    Conversations,
    /// A group's members, with roles and who is online.
    #[command(visible_alias = "names")]
    Members {
        #[arg(value_parser = group_name)]
        group: Option<GroupName>,
    },
    /// Who is online: in one group, or in any of yours.
    Online {
        /// Only this group.
        #[arg(value_name = "GROUP", value_parser = group_name)]
        only: Option<GroupName>,
    },
    /// Send a message to a conversation (`rust`, `#rust` or `@alice`).
    #[command(visible_alias = "say")]
    Send {
        #[arg(value_name = "CONVERSATION", value_parser = conversation)]
        to: Conversation,
        /// The message (the rest of the line).
        #[arg(value_name = "TEXT", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// Send a private message.
    #[command(visible_alias = "msg")]
    Dm {
        #[arg(value_parser = user_name)]
        user: UserName,
        /// The message (the rest of the line).
        #[arg(value_name = "TEXT", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// A conversation's stored events (`rust`, `#rust` or `@alice`).
    History {
        #[arg(value_parser = conversation)]
        conversation: Option<Conversation>,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: Seq,
    },
    /// Share a file in a conversation (`rust`, `#rust` or `@alice`).
    #[command(allow_missing_positional = true)]
    Upload {
        #[arg(value_parser = conversation)]
        conversation: Option<Conversation>,
        path: PathBuf,
        /// The name others see [default: the file's own name].
        #[arg(long, value_parser = file_name)]
        name: Option<OfferName>,
    },
    /// The files shared in a conversation.
    Files {
        #[arg(value_parser = conversation)]
        conversation: Option<Conversation>,
    },
    /// Download a shared file (an interrupted download resumes when run again). An
    /// existing file is kept: the download takes a free name (`notes (1).pdf`).
    Download {
        file: FileId,
        /// Where to save it: a file, or a directory to save into under the file's
        /// name made safe [default: the current directory].
        #[arg(value_name = "PATH")]
        output: Option<PathBuf>,
        /// Replace a file that has the name, instead of taking a free one.
        #[arg(long)]
        force: bool,
    },
    /// Your session tokens: number, device, last use and address, expiry.
    Tokens,
    /// Revoke a session token (see `tokens`): the sessions it logged in end.
    Revoke { token: TokenId },
}

/// A group name, with or without its `#`; a bad one is refused with the rule.
pub(crate) fn group_name(s: &str) -> Result<GroupName, String> {
    let bare = s.strip_prefix('#').unwrap_or(s);
    bare.parse().map_err(|e| explain::bad_name("group name", s, &e, &explain::group_name_rule()))
}

/// A user name, with or without its `@`; a bad one is refused with the rule.
pub(crate) fn user_name(s: &str) -> Result<UserName, String> {
    let bare = s.strip_prefix('@').unwrap_or(s);
    bare.parse().map_err(|e| explain::bad_name("user name", s, &e, &explain::user_name_rule()))
}

/// A conversation: `@user`, `#group`, or a bare group name.
pub(crate) fn conversation(s: &str) -> Result<Conversation, String> {
    match s.strip_prefix('@') {
        Some(_) => user_name(s).map(Conversation::Direct),
        None => group_name(s).map(Conversation::Group),
    }
}

fn file_name(s: &str) -> Result<OfferName, String> {
    OfferName::new(s).map_err(|e| format!("{}: {e}", explain::shorten(s)))
}

/// A join rule, one of the protocol's keywords (which are also what completes).
fn rule_parser() -> impl clap::builder::TypedValueParser<Value = JoinRule> {
    PossibleValuesParser::new(JoinRule::ALL.iter().map(|r| r.as_str()))
        .try_map(|s| s.parse::<JoinRule>())
}

/// Where results go: plain lines, or one JSON object per line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Printer {
    /// One JSON object per line (`--json`), for scripts.
    pub(crate) json: bool,
    /// Show transfers' progress on standard error (a terminal, outside the chat).
    pub(crate) progress: bool,
    /// In the chat, which shows a sent message when the server echoes it: SEND's
    /// confirmation is left out.
    pub(crate) chat: bool,
}

impl Printer {
    /// Prints list items, each a line or a JSON object.
    pub(crate) fn items(&self, items: &[Item], out: &mut dyn FnMut(String)) {
        for i in items {
            out(if self.json { show::item_json(i).to_string() } else { show::item_line(i) });
        }
    }
}

/// A progress bar with rate and ETA, or nothing.
fn bar(show: bool) -> Option<ProgressBar> {
    show.then(|| {
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    })
}

/// A shared file as a JSON object (upload's and files' `--json` output).
pub(crate) fn file_json(f: &SharedFile) -> serde_json::Value {
    serde_json::json!({
        "id": f.id.as_str(), "conv": f.conv.to_string(), "seq": f.seq, "size": f.size,
        "sha256": f.sha256.to_string(), "name": f.name.as_str()
    })
}

/// The group an operation acts on, which the chat fills in when it was left out.
fn named(group: Option<GroupName>) -> Result<GroupName, Fail> {
    group.ok_or_else(|| Fail::Usage("which group? name it".into()))
}

fn named_conv(conv: Option<Conversation>) -> Result<Conversation, Fail> {
    conv.ok_or_else(|| Fail::Usage("which conversation? name it (#group or @user)".into()))
}

/// Message text from the words given: joined by one space (the chat passes the
/// rest of its line as one word, as typed).
fn text_of(words: &[String]) -> Result<Text, Fail> {
    let joined = words.join(" ");
    Text::new(&joined).map_err(|e| Fail::Usage(format!("{}: {e}", explain::shorten(&joined))))
}

impl Op {
    /// The request this operation sends, if it is a single one.
    pub(crate) fn command(&self) -> Result<Option<Command>, Fail> {
        use Op as O;
        Ok(Some(match self.clone() {
            O::Create { group, rule } => Command::Create { group, rule },
            O::Join { group, reason } => {
                let reason = if reason.is_empty() { None } else { Some(text_of(&reason)?) };
                Command::Join { group, reason }
            }
            O::Requests { group } => Command::Requests { group: named(group)? },
            O::Bans { group } => Command::Bans { group: named(group)? },
            O::Approve { group, user } => Command::Approve { group: named(group)?, user },
            O::Reject { group, user } => Command::Reject { group: named(group)?, user },
            O::Invite { group, user } => Command::Invite { group: named(group)?, user },
            O::Accept { group } => Command::Accept { group },
            O::Decline { group } => Command::Decline { group },
            O::Leave { group } => Command::Leave { group: named(group)? },
            O::Kick { group, user, ban } => Command::Kick { group: named(group)?, user, ban },
            O::Unban { group, user } => Command::Unban { group: named(group)?, user },
            O::Promote { group, user } => Command::Promote { group: named(group)?, user },
            O::Demote { group, user } => Command::Demote { group: named(group)?, user },
            O::Transfer { group, user } => Command::Transfer { group: named(group)?, user },
            O::TransferAccept { group } => Command::TransferAccept { group: named(group)? },
            O::TransferCancel { group } => Command::TransferCancel { group: named(group)? },
            O::Rule { group, rule } => Command::Rule { group: named(group)?, rule },
            O::Delete { group } => Command::Delete { group },
            O::Groups => Command::Groups,
            O::Conversations => Command::Conversations,
            O::Members { group } => Command::Members { group: named(group)? },
            O::Online { only } => Command::Online { group: only },
            O::Tokens => Command::Tokens,
            O::Revoke { token } => Command::Revoke { token },
            O::Send { .. }
            | O::Dm { .. }
            | O::History { .. }
            | O::Upload { .. }
            | O::Files { .. }
            | O::Download { .. } => return Ok(None),
        }))
    }

    /// Whether the operation may change which groups the user is in.
    pub(crate) fn changes_groups(&self) -> bool {
        matches!(
            self,
            Op::Create { .. }
                | Op::Join { .. }
                | Op::Accept { .. }
                | Op::Leave { .. }
                | Op::Delete { .. }
                | Op::TransferAccept { .. }
        )
    }

    /// A refusal in words a person can act on: who may do what was refused, the
    /// limit a message went over; other errors as the client says them.
    pub(crate) fn explain(&self, e: ClientError, client: &Client) -> Fail {
        match e.code() {
            Some(ErrorCode::NotPermitted) => {
                // Subcommands are named after the wire verbs: the verb finds the
                // words of the subcommand's help.
                let who = self.command().ok().flatten().and_then(|c| {
                    let doing = crate::slash::doing(&c.verb().as_str().to_ascii_lowercase())?;
                    explain::who_may(&c, &doing)
                });
                match who {
                    Some(who) => Fail::Explained(format!("{}: {who}", ErrorCode::NotPermitted)),
                    None => Fail::Client(e),
                }
            }
            Some(ErrorCode::TextTooLong) => Fail::Explained(format!(
                "{}: this server takes messages of at most {} bytes",
                ErrorCode::TextTooLong,
                client.server().limits.message
            )),
            _ => Fail::Client(e),
        }
    }

    /// Runs the operation and prints its result with `out`; returns the items of a
    /// listing (for the chat to learn names from), none for other operations.
    pub(crate) async fn run(
        &self,
        client: &Client,
        p: Printer,
        out: &mut dyn FnMut(String),
    ) -> Result<Vec<Item>, Fail> {
        self.run_inner(client, p, out).await.map_err(|e| match e {
            Fail::Client(e) => self.explain(e, client),
            other => other,
        })
    }

    async fn run_inner(
        &self,
        client: &Client,
        p: Printer,
        out: &mut dyn FnMut(String),
    ) -> Result<Vec<Item>, Fail> {
        match self {
            Op::Send { to, text } => send(client, p, out, *to, text).await?,
            Op::Dm { user, text } => {
                send(client, p, out, Conversation::Direct(*user), text).await?
            }
            Op::History { conversation, since } => {
                let conv = named_conv(*conversation)?;
                let baatkaro_client::History { events, oldest, .. } =
                    client.history_after(conv, *since).await?;
                if !p.json && *since + 1 < oldest {
                    out(format!("(events before {oldest} are no longer kept)"));
                }
                let items: Vec<Item> = events.into_iter().map(Item::Stored).collect();
                p.items(&items, out);
                return Ok(items);
            }
            Op::Upload { conversation, path, name } => {
                let to = named_conv(*conversation)?;
                let what = (to, path.as_path(), name.clone());
                let shared = upload(client, p, what, std::future::pending(), |_| {}).await?;
                out(shared_line(&shared, p));
            }
            Op::Files { conversation } => {
                for f in client.files(named_conv(*conversation)?).await? {
                    out(if p.json {
                        file_json(&f).to_string()
                    } else {
                        format!("{} {} ({})", f.id, f.name, show::bytes(f.size))
                    });
                }
            }
            Op::Download { file, output, force } => {
                let bar = bar(p.progress);
                let mut tick = |done: u64, total: u64| {
                    if let Some(b) = &bar {
                        b.set_length(total);
                        b.set_position(done);
                    }
                };
                let saved = download(client, *file, output.as_deref(), *force, &mut tick).await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                out(saved_line(&saved?, p));
            }
            other => {
                let Some(command) = other.command()? else { return Ok(Vec::new()) };
                // The lists say more where the server offers it: read markers and
                // unread counts, ownership offers.
                let server = client.server();
                let command = match command {
                    Command::Conversations if server.has("read") => {
                        Command::ConversationsWithMarkers
                    }
                    Command::Groups if server.has("group-state") => Command::GroupsWithOffers,
                    command => command,
                };
                let (items, reply) = client.ok(command).await?;
                p.items(&items, out);
                if let Some(line) = other.confirmation(&reply, p) {
                    out(line);
                }
                return Ok(items);
            }
        }
        Ok(Vec::new())
    }

    /// What to print for a reply that is more than its items (listings print only
    /// those, so that `--json` output is one kind of object per command).
    fn confirmation(&self, reply: &OkReply, p: Printer) -> Option<String> {
        let (plain, json) = match reply {
            OkReply::Join { group, outcome } => {
                let (o, words) = match outcome {
                    JoinOutcome::Joined => ("joined", format!("joined #{group}")),
                    JoinOutcome::Pending => {
                        ("pending", format!("asked to join #{group}: an admin decides"))
                    }
                };
                (words, serde_json::json!({ "group": group.as_str(), "outcome": o }))
            }
            OkReply::Invite { group, user, outcome } => {
                let (o, words) = match outcome {
                    InviteOutcome::Invited => ("invited", format!("invited {user} to #{group}")),
                    InviteOutcome::Joined => {
                        ("joined", format!("{user} joined #{group} (they had asked to)"))
                    }
                };
                (
                    words,
                    serde_json::json!({ "group": group.as_str(), "user": user.as_str(), "outcome": o }),
                )
            }
            OkReply::Done { verb } => (self.done()?, serde_json::json!({ "ok": verb.as_str() })),
            _ => return None,
        };
        Some(if p.json { json.to_string() } else { plain })
    }

    /// What a successful operation did, in words.
    fn done(&self) -> Option<String> {
        let g = |group: &Option<GroupName>| group.map(|g| format!("#{g}")).unwrap_or_default();
        Some(match self {
            Op::Create { group, .. } => format!("created #{group}"),
            Op::Approve { group, user } => format!("admitted {user} to {}", g(group)),
            Op::Reject { group, user } => format!("refused {user}'s request to join {}", g(group)),
            Op::Accept { group } => format!("joined #{group}"),
            Op::Decline { group } => format!("declined the invite to #{group}"),
            Op::Leave { group } => format!("left {}", g(group)),
            Op::Kick { group, user, ban: false } => format!("kicked {user} from {}", g(group)),
            Op::Kick { group, user, ban: true } => {
                format!("kicked and banned {user} from {}", g(group))
            }
            Op::Unban { group, user } => format!("lifted {user}'s ban from {}", g(group)),
            Op::Promote { group, user } => format!("{user} is an admin of {} now", g(group)),
            Op::Demote { group, user } => format!("{user} is a member of {} now", g(group)),
            Op::Transfer { group, user } => {
                format!("offered the ownership of {} to {user}", g(group))
            }
            Op::TransferAccept { group } => format!("you own {} now", g(group)),
            Op::TransferCancel { group } => format!("withdrew the offer of {}", g(group)),
            Op::Rule { group, rule } => format!("the join rule of {} is {rule} now", g(group)),
            Op::Delete { group } => format!("deleted #{group}"),
            Op::Revoke { token } => format!("revoked token {token}"),
            _ => return None,
        })
    }
}

/// Sends a message; prints where it went, outside the chat.
async fn send(
    client: &Client,
    p: Printer,
    out: &mut dyn FnMut(String),
    to: Conversation,
    words: &[String],
) -> Result<(), Fail> {
    let text = text_of(words)?;
    let limit = client.server().limits.message;
    if text.len() as u64 > limit {
        // Said here, before the bytes travel: the server would refuse them.
        return Err(Fail::Explained(format!(
            "{}: the message is {} bytes; this server takes at most {limit}",
            ErrorCode::TextTooLong,
            text.len()
        )));
    }
    let baatkaro_client::Sent { seq, time, .. } = client.send(to, text).await?;
    if p.json {
        out(serde_json::json!({ "conv": to.to_string(), "seq": seq, "time": time }).to_string());
    } else if !p.chat {
        out(format!("sent to {to} as number {seq}"));
    }
    Ok(())
}

/// Downloads a shared file to `output` (a file, or a directory to save into: the
/// current one if `None`); the path of an OS error is named.
pub(crate) async fn download(
    client: &Client,
    file: FileId,
    output: Option<&Path>,
    force: bool,
    tick: &mut dyn FnMut(u64, u64),
) -> Result<(SharedFile, baatkaro_client::Saved), Fail> {
    let f = client.find_file(file).await?;
    let dest = output.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let if_exists = if force { IfExists::Overwrite } else { IfExists::PickFreeName };
    match client.download(&f, &dest, if_exists, tick).await {
        Ok(saved) => Ok((f, saved)),
        Err(ClientError::Io(error)) => Err(Fail::Os { what: dest.display().to_string(), error }),
        Err(e) => Err(e.into()),
    }
}

/// What a download saved, as a line.
pub(crate) fn saved_line((f, saved): &(SharedFile, baatkaro_client::Saved), p: Printer) -> String {
    // `./notes.pdf` is shown as `notes.pdf`.
    let shown = |p: &Path| p.strip_prefix(".").unwrap_or(p).display().to_string();
    let (path, wanted) = (shown(&saved.path), shown(&saved.wanted));
    if p.json {
        serde_json::json!({ "id": f.id.as_str(), "path": path, "wanted": wanted, "size": f.size })
            .to_string()
    } else if saved.path == saved.wanted {
        format!("saved {path} ({})", show::bytes(f.size))
    } else {
        format!("saved {path} ({}): {wanted} exists", show::bytes(f.size))
    }
}

/// What an upload shared, as a line.
pub(crate) fn shared_line(f: &SharedFile, p: Printer) -> String {
    if p.json {
        file_json(f).to_string()
    } else {
        format!("shared {} as {} in {} ({})", f.name, f.id, f.conv, show::bytes(f.size))
    }
}

/// A one-shot `upload`: Ctrl-C cancels it, and the server deletes what it held of
/// it (an upload cut off any other way stays, and resumes when run again).
pub(crate) async fn upload_interruptible(
    client: &Client,
    p: Printer,
    out: &mut dyn FnMut(String),
    to: Conversation,
    path: &Path,
    name: Option<OfferName>,
) -> Result<(), Fail> {
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let started = |progress: &UploadProgress| {
        if let UploadProgress::Started(file) = progress {
            eprintln!("uploading as {file}: Ctrl-C cancels it");
        }
    };
    let shared = upload(client, p, (to, path, name), interrupted, started).await?;
    out(shared_line(&shared, p));
    Ok(())
}

/// Uploads, with a progress bar where `p` shows one, until `cancel` completes;
/// `tick` hears of the progress too. An OS error names the path.
pub(crate) async fn upload(
    client: &Client,
    p: Printer,
    (to, path, name): (Conversation, &Path, Option<OfferName>),
    cancel: impl std::future::Future<Output = ()>,
    tick: impl Fn(&UploadProgress),
) -> Result<SharedFile, Fail> {
    let os = |error| Fail::Os { what: path.display().to_string(), error };
    let name = match name {
        Some(n) => n,
        None => name_for(path).map_err(|e| match e {
            ClientError::Io(error) => os(error),
            e => e.into(),
        })?,
    };
    let bar = bar(p.progress);
    let mut progress = |progress: UploadProgress| {
        tick(&progress);
        if let (UploadProgress::Held(done, total), Some(b)) = (progress, &bar) {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let f = client.upload_until(to, path, name, &mut progress, cancel).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    f.map_err(|e| match e {
        ClientError::Io(error) => os(error),
        e => e.into(),
    })
}
