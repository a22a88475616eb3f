//! The interactive client's slash commands: one table, from which both the parser
//! and `/help` are made.

use baatkaro_proto::{Conversation, GroupName, JoinRule, Text, UserName};

use baatkaro_client::IfExists;

use crate::actions::Action;

/// What a line typed in the chat asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Typed {
    /// Do this.
    Act(Action),
    /// Make this group the current one.
    Switch(GroupName),
    /// Show the commands.
    Help,
    /// Leave the client.
    Quit,
}

/// One slash command.
pub(crate) struct Slash {
    pub(crate) name: &'static str,
    pub(crate) usage: &'static str,
    pub(crate) help: &'static str,
    parse: fn(&mut Words<'_>) -> Result<Typed, String>,
}

/// The arguments after a command's name, and the current group for those that
/// default to it.
pub(crate) struct Words<'a> {
    rest: &'a str,
    current: Option<GroupName>,
}

impl Words<'_> {
    fn next(&mut self) -> Option<&str> {
        let s = self.rest.trim_start();
        if s.is_empty() {
            return None;
        }
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        let (word, rest) = s.split_at(end);
        self.rest = rest;
        Some(word)
    }

    fn count(&self) -> usize {
        self.rest.split_whitespace().count()
    }

    fn group(&mut self) -> Result<GroupName, String> {
        let word = self.next().ok_or("missing argument: GROUP")?;
        word.trim_start_matches('#').parse().map_err(|e| format!("{word}: {e}"))
    }

    /// A group if `more` words remain beyond what must follow; else the current one.
    fn group_or_current(&mut self, after: usize) -> Result<GroupName, String> {
        if self.count() > after {
            return self.group();
        }
        self.current.ok_or_else(|| "no current group: name one, or /switch GROUP".into())
    }

    fn user(&mut self) -> Result<UserName, String> {
        let word = self.next().ok_or("missing argument: USER")?;
        word.trim_start_matches('@').parse().map_err(|e| format!("{word}: {e}"))
    }

    fn text(&mut self) -> Result<Text, String> {
        let t = self.rest.trim();
        self.rest = "";
        if t.is_empty() {
            return Err("missing argument: TEXT".into());
        }
        Text::new(t).map_err(|e| e.to_string())
    }

    fn done(&self) -> Result<(), String> {
        match self.rest.trim() {
            "" => Ok(()),
            extra => Err(format!("unexpected arguments: {extra}")),
        }
    }
}

fn act(a: Action) -> Result<Typed, String> {
    Ok(Typed::Act(a))
}

macro_rules! group_user {
    ($variant:ident) => {
        |w: &mut Words<'_>| {
            let group = w.group_or_current(1)?;
            let user = w.user()?;
            w.done()?;
            act(Action::$variant { group, user })
        }
    };
}

macro_rules! group_only {
    ($variant:ident) => {
        |w: &mut Words<'_>| {
            let group = w.group_or_current(0)?;
            w.done()?;
            act(Action::$variant { group })
        }
    };
}

/// Every slash command, in the order `/help` lists them.
pub(crate) const COMMANDS: &[Slash] = &[
    Slash {
        name: "create",
        usage: "GROUP [approval|open|invite]",
        help: "create a group and own it",
        parse: |w| {
            let group = w.group()?;
            let rule = w
                .next()
                .map(|r| r.parse::<JoinRule>().map_err(|_| format!("{r}: not a join rule")))
                .transpose()?;
            w.done()?;
            act(Action::Create { group, rule })
        },
    },
    Slash {
        name: "join",
        usage: "GROUP [REASON]",
        help: "join a group, or ask to",
        parse: |w| {
            let group = w.group()?;
            let reason = if w.rest.trim().is_empty() { None } else { Some(w.text()?) };
            act(Action::Join { group, reason })
        },
    },
    Slash {
        name: "requests",
        usage: "[GROUP]",
        help: "list pending join requests",
        parse: group_only!(Requests),
    },
    Slash {
        name: "approve",
        usage: "[GROUP] USER",
        help: "admit a requester",
        parse: group_user!(Approve),
    },
    Slash {
        name: "reject",
        usage: "[GROUP] USER",
        help: "refuse a request",
        parse: group_user!(Reject),
    },
    Slash {
        name: "invite",
        usage: "[GROUP] USER",
        help: "invite a user",
        parse: group_user!(Invite),
    },
    Slash {
        name: "accept",
        usage: "GROUP",
        help: "accept an invite",
        parse: |w| {
            let group = w.group()?;
            w.done()?;
            act(Action::Accept { group })
        },
    },
    Slash {
        name: "decline",
        usage: "GROUP",
        help: "decline an invite",
        parse: |w| {
            let group = w.group()?;
            w.done()?;
            act(Action::Decline { group })
        },
    },
    Slash {
        name: "leave",
        usage: "[GROUP]",
        help: "leave a group (or withdraw a request)",
        parse: group_only!(Leave),
    },
    Slash {
        name: "kick",
        usage: "[GROUP] USER [--ban]",
        help: "remove a member, and ban them with --ban",
        parse: |w| {
            let ban = w.rest.split_whitespace().any(|x| x == "--ban");
            let rest = w.rest.replace("--ban", " ");
            let mut w2 = Words { rest: &rest, current: w.current };
            let group = w2.group_or_current(1)?;
            let user = w2.user()?;
            w2.done()?;
            w.rest = "";
            act(Action::Kick { group, user, ban })
        },
    },
    Slash { name: "unban", usage: "[GROUP] USER", help: "lift a ban", parse: group_user!(Unban) },
    Slash {
        name: "promote",
        usage: "[GROUP] USER",
        help: "make a member an admin",
        parse: group_user!(Promote),
    },
    Slash {
        name: "demote",
        usage: "[GROUP] USER",
        help: "make an admin a member",
        parse: group_user!(Demote),
    },
    Slash {
        name: "transfer",
        usage: "[GROUP] USER",
        help: "offer ownership to a member",
        parse: group_user!(Transfer),
    },
    Slash {
        name: "accept-ownership",
        usage: "[GROUP]",
        help: "accept an ownership offer",
        parse: group_only!(AcceptOwnership),
    },
    Slash {
        name: "cancel-transfer",
        usage: "[GROUP]",
        help: "withdraw an ownership offer",
        parse: group_only!(CancelTransfer),
    },
    Slash {
        name: "rule",
        usage: "[GROUP] approval|open|invite",
        help: "change the join rule",
        parse: |w| {
            let group = w.group_or_current(1)?;
            let r = w.next().ok_or("missing argument: RULE")?;
            let rule = r.parse::<JoinRule>().map_err(|_| format!("{r}: not a join rule"))?;
            w.done()?;
            act(Action::Rule { group, rule })
        },
    },
    Slash {
        name: "delete",
        usage: "GROUP",
        help: "delete a group you own",
        parse: |w| {
            let group = w.group()?;
            w.done()?;
            act(Action::Delete { group })
        },
    },
    Slash {
        name: "members",
        usage: "[GROUP]",
        help: "members with roles and who is online",
        parse: group_only!(Members),
    },
    Slash {
        name: "online",
        usage: "[GROUP]",
        help: "who is online",
        parse: |w| {
            let group = if w.count() > 0 { Some(w.group()?) } else { None };
            w.done()?;
            act(Action::Online { group })
        },
    },
    Slash {
        name: "groups",
        usage: "",
        help: "your groups, invites and requests",
        parse: |w| {
            w.done()?;
            act(Action::Groups)
        },
    },
    Slash {
        name: "msg",
        usage: "USER TEXT",
        help: "send a private message",
        parse: |w| {
            let user = w.user()?;
            let text = w.text()?;
            act(Action::Send { to: Conversation::Direct(user), text })
        },
    },
    Slash {
        name: "history",
        usage: "[#GROUP|@USER] [SINCE]",
        help: "stored events of a conversation",
        parse: |w| {
            let conv = match w.count() {
                0 => Conversation::Group(w.current.ok_or("no current group: name a conversation")?),
                _ => {
                    let word = w.next().unwrap_or_default().to_string();
                    if word.starts_with('@') || word.starts_with('#') {
                        word.parse().map_err(|e| format!("{word}: {e}"))?
                    } else {
                        Conversation::Group(word.parse().map_err(|e| format!("{word}: {e}"))?)
                    }
                }
            };
            let since = w
                .next()
                .map(|s| s.parse::<u64>().map_err(|_| format!("{s}: not a number")))
                .transpose()?;
            w.done()?;
            act(Action::History { conv, since: since.unwrap_or(0) })
        },
    },
    Slash {
        name: "switch",
        usage: "GROUP",
        help: "make a group the current one: plain text goes there",
        parse: |w| {
            let group = w.group()?;
            w.done()?;
            Ok(Typed::Switch(group))
        },
    },
    Slash {
        name: "files",
        usage: "[GROUP]",
        help: "files shared in a group",
        parse: |w| {
            let group = w.group_or_current(0)?;
            w.done()?;
            act(Action::Files { conv: Conversation::Group(group) })
        },
    },
    Slash {
        name: "upload",
        usage: "[GROUP] PATH",
        help: "share a file with a group",
        parse: |w| {
            let group = w.group_or_current(1)?;
            let path = w.next().ok_or("missing argument: PATH")?.into();
            w.done()?;
            act(Action::Upload { to: Conversation::Group(group), path, name: None })
        },
    },
    Slash {
        name: "download",
        usage: "FILE_ID [PATH] [--force]",
        help: "download a shared file; --force replaces a file of its name",
        parse: |w| {
            let force = w.rest.split_whitespace().any(|x| x == "--force");
            let rest = w.rest.split_whitespace().filter(|x| *x != "--force");
            let rest = rest.collect::<Vec<_>>().join(" ");
            let mut w2 = Words { rest: &rest, current: w.current };
            let word = w2.next().ok_or("missing argument: FILE_ID")?;
            let file = word.parse().map_err(|e| format!("{word}: {e}"))?;
            let output = w2.next().map(Into::into);
            w2.done()?;
            w.rest = "";
            let if_exists = if force { IfExists::Overwrite } else { IfExists::PickFreeName };
            act(Action::Download { file, output, if_exists })
        },
    },
    Slash {
        name: "tokens",
        usage: "",
        help: "your session tokens: number, device, last use, address",
        parse: |w| {
            w.done()?;
            act(Action::Tokens)
        },
    },
    Slash {
        name: "revoke",
        usage: "TOKEN",
        help: "revoke a session token: the sessions it logged in end",
        parse: |w| {
            let word = w.next().ok_or("missing argument: TOKEN")?;
            let token = word.parse().map_err(|_| format!("{word}: not a token number"))?;
            w.done()?;
            act(Action::Revoke { token })
        },
    },
    Slash { name: "help", usage: "", help: "this list", parse: |_| Ok(Typed::Help) },
    Slash { name: "quit", usage: "", help: "leave", parse: |_| Ok(Typed::Quit) },
];

/// Parses a line typed in the chat: a slash command, or text for the current group.
pub(crate) fn parse(line: &str, current: Option<GroupName>) -> Result<Typed, String> {
    let Some(command) = line.strip_prefix('/') else {
        let group = current.ok_or("no current group: /switch GROUP, or /join GROUP first")?;
        let text = Text::new(line.trim_end()).map_err(|e| e.to_string())?;
        return Ok(Typed::Act(Action::Send { to: Conversation::Group(group), text }));
    };
    let (name, rest) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
    let slash = COMMANDS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("unknown command /{name}: /help lists them"))?;
    (slash.parse)(&mut Words { rest, current })
        .map_err(|e| format!("/{} {}: {e}", slash.name, slash.usage).replace("  ", " "))
}

/// The `/help` text, from the table.
pub(crate) fn help() -> Vec<String> {
    let mut lines = vec!["Plain text goes to the current group. Commands:".to_string()];
    for c in COMMANDS {
        let head = format!("/{} {}", c.name, c.usage);
        lines.push(format!("  {:<36} {}", head.trim_end(), c.help));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> GroupName {
        s.parse().unwrap()
    }

    #[test]
    fn commands_parse_with_and_without_the_current_group() {
        let cur = Some(g("rust"));
        assert_eq!(
            parse("/approve bob", cur),
            Ok(Typed::Act(Action::Approve { group: g("rust"), user: "bob".parse().unwrap() }))
        );
        assert_eq!(
            parse("/approve go bob", cur),
            Ok(Typed::Act(Action::Approve { group: g("go"), user: "bob".parse().unwrap() }))
        );
        assert_eq!(
            parse("/kick bob --ban", cur),
            Ok(Typed::Act(Action::Kick {
                group: g("rust"),
                user: "bob".parse().unwrap(),
                ban: true
            }))
        );
        assert!(matches!(parse("hello there", cur), Ok(Typed::Act(Action::Send { .. }))));
        let file = || "f1".parse().unwrap();
        assert_eq!(
            parse("/download f1", cur),
            Ok(Typed::Act(Action::Download {
                file: file(),
                output: None,
                if_exists: IfExists::PickFreeName
            }))
        );
        assert_eq!(
            parse("/download f1 --force /tmp/x", cur),
            Ok(Typed::Act(Action::Download {
                file: file(),
                output: Some("/tmp/x".into()),
                if_exists: IfExists::Overwrite
            }))
        );
        assert_eq!(parse("/switch #go", cur), Ok(Typed::Switch(g("go"))));
    }

    #[test]
    fn bad_input_says_what_is_wrong() {
        assert_eq!(parse("/frob", None).unwrap_err(), "unknown command /frob: /help lists them");
        assert!(parse("/approve", Some(g("rust"))).unwrap_err().contains("missing argument: USER"));
        assert!(parse("/join", None).unwrap_err().contains("missing argument: GROUP"));
        assert!(parse("hello", None).unwrap_err().contains("no current group"));
        assert!(parse("/create Rust", None).unwrap_err().contains("Rust"));
    }

    #[test]
    fn help_lists_every_command() {
        let help = help().join("\n");
        for c in COMMANDS {
            assert!(help.contains(&format!("/{}", c.name)), "{}", c.name);
        }
    }
}
