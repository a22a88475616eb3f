//! What the client can do, once: the operations behind both the one-shot
//! subcommands and the interactive slash commands, and how their results print.

use baatkaro_cli::{Client, ClientError, show};
use baatkaro_proto::{
    Command, Conversation, GroupName, InviteOutcome, Item, JoinOutcome, JoinRule, OkReply, Seq,
    Text, UserName,
};

/// One operation of the product.
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
}

/// Where results go: plain lines, or one JSON object per line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Printer {
    pub(crate) json: bool,
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
            A::Send { .. } | A::History { .. } => return None,
        })
    }

    /// Runs the action and prints its result with `out`.
    pub(crate) async fn run(
        &self,
        client: &Client,
        p: Printer,
        out: &mut dyn FnMut(String),
    ) -> Result<(), ClientError> {
        match self {
            Action::Send { to, text } => {
                let (seq, time) = client.send(*to, text.clone()).await?;
                out(if p.json {
                    serde_json::json!({ "conv": to.to_string(), "seq": seq, "time": time })
                        .to_string()
                } else {
                    format!("{to} {seq}")
                });
            }
            Action::History { conv, since } => {
                let (events, oldest) = client.history(*conv, *since).await?;
                if !p.json && *since + 1 < oldest {
                    out(format!("(events before {oldest} are no longer kept)"));
                }
                let items: Vec<Item> = events.into_iter().map(Item::Stored).collect();
                p.items(&items, out);
            }
            other => {
                let Some(command) = other.command() else { return Ok(()) };
                let (items, reply) = client.ok(command).await?;
                p.items(&items, out);
                if let Some(line) = confirmation(&reply, p) {
                    out(line);
                }
            }
        }
        Ok(())
    }
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
