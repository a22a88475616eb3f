//! What the client can do, once: the operations behind both the one-shot
//! subcommands and the interactive slash commands, and how their results print.

use baatkaro_client::{Client, ClientError};

use crate::show;
use std::path::{Path, PathBuf};

use baatkaro_client::transfer::{IfExists, SharedFile, UploadProgress, name_for};
use baatkaro_proto::{
    Command, Conversation, FileId, GroupName, InviteOutcome, Item, JoinOutcome, JoinRule,
    OfferName, OkReply, Seq, Text, TokenId, UserName,
};
use indicatif::{ProgressBar, ProgressStyle};

/// One operation of the product. (A download's `output` is a file, or a directory to
/// save into: the current one if `None`.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Create { group: GroupName, rule: Option<JoinRule> },
    Join { group: GroupName, reason: Option<Text> },
    Requests { group: GroupName },
    Approve { group: GroupName, user: UserName },
    Reject { group: GroupName, user: UserName },
    Invite { group: GroupName, user: UserName },
    Accept { group: GroupName },
    Decline { group: GroupName },
    Leave { group: GroupName },
    Kick { group: GroupName, user: UserName, ban: bool },
    Unban { group: GroupName, user: UserName },
    Promote { group: GroupName, user: UserName },
    Demote { group: GroupName, user: UserName },
    Transfer { group: GroupName, user: UserName },
    AcceptOwnership { group: GroupName },
    CancelTransfer { group: GroupName },
    Rule { group: GroupName, rule: JoinRule },
    Delete { group: GroupName },
    Groups,
    Conversations,
    Members { group: GroupName },
    Online { group: Option<GroupName> },
    Send { to: Conversation, text: Text },
    History { conv: Conversation, since: Seq },
    Upload { to: Conversation, path: PathBuf, name: Option<OfferName> },
    Files { conv: Conversation },
    Download { file: FileId, output: Option<PathBuf>, if_exists: IfExists },
    Tokens,
    Revoke { token: TokenId },
}

/// Where results go: plain lines, or one JSON object per line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Printer {
    pub(crate) json: bool,
    /// Show transfers' progress on standard error (a terminal, outside the chat).
    pub(crate) progress: bool,
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

fn file_json(f: &SharedFile) -> serde_json::Value {
    serde_json::json!({
        "id": f.id.as_str(), "conv": f.conv.to_string(), "seq": f.seq, "size": f.size,
        "sha256": f.sha256.to_string(), "name": f.name.as_str()
    })
}

impl Printer {
    pub(crate) fn items(&self, items: &[Item], out: &mut dyn FnMut(String)) {
        for i in items {
            out(if self.json { show::item_json(i).to_string() } else { show::item_line(i) });
        }
    }
}

impl Action {
    /// The request this action sends, if it is a single one.
    fn command(&self) -> Option<Command> {
        use Action as A;
        Some(match self.clone() {
            A::Create { group, rule } => Command::Create { group, rule },
            A::Join { group, reason } => Command::Join { group, reason },
            A::Requests { group } => Command::Requests { group },
            A::Approve { group, user } => Command::Approve { group, user },
            A::Reject { group, user } => Command::Reject { group, user },
            A::Invite { group, user } => Command::Invite { group, user },
            A::Accept { group } => Command::Accept { group },
            A::Decline { group } => Command::Decline { group },
            A::Leave { group } => Command::Leave { group },
            A::Kick { group, user, ban } => Command::Kick { group, user, ban },
            A::Unban { group, user } => Command::Unban { group, user },
            A::Promote { group, user } => Command::Promote { group, user },
            A::Demote { group, user } => Command::Demote { group, user },
            A::Transfer { group, user } => Command::Transfer { group, user },
            A::AcceptOwnership { group } => Command::TransferAccept { group },
            A::CancelTransfer { group } => Command::TransferCancel { group },
            A::Rule { group, rule } => Command::Rule { group, rule },
            A::Delete { group } => Command::Delete { group },
            A::Groups => Command::Groups,
            A::Conversations => Command::Conversations,
            A::Members { group } => Command::Members { group },
            A::Online { group } => Command::Online { group },
            A::Tokens => Command::Tokens,
            A::Revoke { token } => Command::Revoke { token },
            A::Send { .. }
            | A::History { .. }
            | A::Upload { .. }
            | A::Files { .. }
            | A::Download { .. } => return None,
        })
    }

    /// Whether the action may change which groups the user is in.
    pub(crate) fn changes_groups(&self) -> bool {
        matches!(
            self,
            Action::Create { .. }
                | Action::Join { .. }
                | Action::Accept { .. }
                | Action::Leave { .. }
                | Action::Delete { .. }
        )
    }

    /// Runs the action and prints its result with `out`; returns the items of a
    /// listing (for the chat to learn names from), none for other actions.
    pub(crate) async fn run(
        &self,
        client: &Client,
        p: Printer,
        out: &mut dyn FnMut(String),
    ) -> Result<Vec<Item>, ClientError> {
        match self {
            Action::Send { to, text } => {
                let baatkaro_client::Sent { seq, time, .. } =
                    client.send(*to, text.clone()).await?;
                out(if p.json {
                    serde_json::json!({ "conv": to.to_string(), "seq": seq, "time": time })
                        .to_string()
                } else {
                    format!("{to} {seq}")
                });
            }
            Action::History { conv, since } => {
                let baatkaro_client::History { events, oldest, .. } =
                    client.history_after(*conv, *since).await?;
                if !p.json && *since + 1 < oldest {
                    out(format!("(events before {oldest} are no longer kept)"));
                }
                let items: Vec<Item> = events.into_iter().map(Item::Stored).collect();
                p.items(&items, out);
                return Ok(items);
            }
            Action::Upload { to, path, name } => {
                upload(client, p, out, (*to, path, name.clone()), std::future::pending()).await?;
            }
            Action::Files { conv } => {
                for f in client.files(*conv).await? {
                    out(if p.json {
                        file_json(&f).to_string()
                    } else {
                        format!("{} {} {} bytes", f.id, f.name, f.size)
                    });
                }
            }
            Action::Download { file, output, if_exists } => {
                let f = client.find_file(*file).await?;
                // Into the current directory, under the name made safe, by default.
                let dest = output.clone().unwrap_or_else(|| PathBuf::from("."));
                let bar = bar(p.progress);
                let mut tick = |done: u64, total: u64| {
                    if let Some(b) = &bar {
                        b.set_length(total);
                        b.set_position(done);
                    }
                };
                let saved = client.download(&f, &dest, *if_exists, &mut tick).await?;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                // `./notes.pdf` is shown as `notes.pdf`.
                let shown = |p: &Path| p.strip_prefix(".").unwrap_or(p).display().to_string();
                let (path, wanted) = (shown(&saved.path), shown(&saved.wanted));
                out(if p.json {
                    serde_json::json!({ "id": f.id.as_str(), "path": path, "wanted": wanted, "size": f.size }).to_string()
                } else if saved.path == saved.wanted {
                    format!("saved {path} ({} bytes)", f.size)
                } else {
                    format!("saved {path} ({} bytes): {wanted} exists", f.size)
                });
            }
            other => {
                let Some(command) = other.command() else { return Ok(Vec::new()) };
                let (items, reply) = client.ok(command).await?;
                p.items(&items, out);
                if let Some(line) = confirmation(&reply, p) {
                    out(line);
                }
                return Ok(items);
            }
        }
        Ok(Vec::new())
    }
}

/// A one-shot `upload`: Ctrl-C cancels it, and the server deletes what it held of
/// it (an upload cut off any other way stays, and resumes when run again).
pub(crate) async fn upload_interruptible(
    client: &Client,
    p: Printer,
    out: &mut dyn FnMut(String),
    to: Conversation,
    path: &std::path::Path,
    name: Option<OfferName>,
) -> Result<(), ClientError> {
    let interrupted = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let started = |file: FileId| {
        eprintln!("uploading as {file}: Ctrl-C cancels it");
    };
    upload_with(client, p, out, (to, path, name), interrupted, started).await
}

/// Uploads, with a progress bar where `p` shows one, until `cancel` completes.
async fn upload(
    client: &Client,
    p: Printer,
    out: &mut dyn FnMut(String),
    what: (Conversation, &std::path::Path, Option<OfferName>),
    cancel: impl std::future::Future<Output = ()>,
) -> Result<(), ClientError> {
    upload_with(client, p, out, what, cancel, |_| {}).await
}

async fn upload_with(
    client: &Client,
    p: Printer,
    out: &mut dyn FnMut(String),
    (to, path, name): (Conversation, &std::path::Path, Option<OfferName>),
    cancel: impl std::future::Future<Output = ()>,
    started: impl Fn(FileId),
) -> Result<(), ClientError> {
    let name = match name {
        Some(n) => n,
        None => name_for(path)?,
    };
    let bar = bar(p.progress);
    let mut tick = |progress: UploadProgress| match progress {
        UploadProgress::Started(file) => started(file),
        UploadProgress::Held(done, total) => {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        }
    };
    let f = client.upload_until(to, path, name, &mut tick, cancel).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let f = f?;
    out(if p.json {
        file_json(&f).to_string()
    } else {
        format!("shared {} as {} in {} ({} bytes)", f.name, f.id, f.conv, f.size)
    });
    Ok(())
}

/// What to print for a reply that is more than its items (lists print only those,
/// so that `--json` output is one kind of object per command).
fn confirmation(reply: &OkReply, p: Printer) -> Option<String> {
    let (plain, json) = match reply {
        OkReply::Join { group, outcome } => {
            let o = match outcome {
                JoinOutcome::Joined => "joined",
                JoinOutcome::Pending => "pending",
            };
            (format!("{group}: {o}"), serde_json::json!({ "group": group.as_str(), "outcome": o }))
        }
        OkReply::Invite { group, user, outcome } => {
            let o = match outcome {
                InviteOutcome::Invited => "invited",
                InviteOutcome::Joined => "joined",
            };
            (
                format!("{group}: {user} {o}"),
                serde_json::json!({ "group": group.as_str(), "user": user.as_str(), "outcome": o }),
            )
        }
        OkReply::Done { verb } => ("ok".to_string(), serde_json::json!({ "ok": verb.as_str() })),
        _ => return None,
    };
    Some(if p.json { json.to_string() } else { plain })
}
