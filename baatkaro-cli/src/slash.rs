//! The chat's slash commands, parsed by the same clap definitions as the one-shot
//! subcommands ([`Op`]) plus the few that only make sense in a chat
//! ([`ChatCommand`]); `/help` is read off the same tree.
//!
//! A line is split into words at whitespace (no quoting: an apostrophe in a message
//! is text), then:
//! - an argument that takes any number of words (a message, a reason) gets the rest
//!   of the line as typed, as one word;
//! - an optional `group` or `conversation` argument left out is the current
//!   conversation: it is put back in as the first argument and the line parsed
//!   again, so clap decides what is left out exactly as the one-shot command line;
//! - clap's errors are said in a line, with the command's usage, never repeating a
//!   long input whole.

use std::sync::LazyLock;

use baatkaro_proto::Conversation;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::explain::shorten;
use crate::ops::{self, Op};

/// A line of the chat as clap reads it: one slash command, without its `/` (the
/// tree of [`TREE`]; no program name, no `--help` of clap's own).
#[derive(Parser, Debug)]
#[command(
    name = "",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
pub(crate) struct Slash {
    #[command(subcommand)]
    /// The command.
    pub(crate) typed: Typed,
}

/// What a line typed in the chat asks for.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub(crate) enum Typed {
    /// An operation, as on the command line.
    #[command(flatten)]
    Op(Op),
    /// Something only a chat does.
    #[command(flatten)]
    Chat(ChatCommand),
}

/// The commands only a chat has.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub(crate) enum ChatCommand {
    /// Make a conversation the current one (`rust`, `#rust` or `@alice`): plain
    /// text goes there.
    #[command(visible_alias = "query")]
    Switch {
        #[arg(value_parser = ops::conversation)]
        conversation: Conversation,
    },
    /// Show people coming online and going (on), or not (off, the default).
    Presence {
        #[arg(value_parser = on_off(), action = clap::ArgAction::Set, value_name = "STATE")]
        state: bool,
    },
    /// The commands; with a command's name, what it takes.
    Help {
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
    /// While the connection is down, try to reconnect now rather than when the
    /// backoff says.
    Reconnect,
    /// Leave the chat.
    #[command(visible_alias = "exit")]
    Quit,
}

/// `on` or `off`.
fn on_off() -> impl clap::builder::TypedValueParser<Value = bool> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["on", "off"]).map(|s| s == "on")
}

/// The clap tree of the chat's commands, built once.
pub(crate) static TREE: LazyLock<clap::Command> =
    LazyLock::new(|| with_filled_help(Slash::command(), "left out: the current one"));

/// The ids of the arguments the current conversation fills in when left out.
const FILLED: [&str; 2] = ["group", "conversation"];

/// `cmd` with `help` on every argument the chat fills in (said once, here, rather
/// than on each).
pub(crate) fn with_filled_help(mut cmd: clap::Command, help: &'static str) -> clap::Command {
    let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
    for name in names {
        // In place (`mut_arg` would move the argument last, changing its position).
        cmd = cmd.mut_subcommand(name, |sub| {
            sub.mut_args(|a| {
                let filled = FILLED.contains(&a.get_id().as_str()) && !a.is_required_set();
                if filled { a.help(help) } else { a }
            })
        });
    }
    cmd
}

/// Whether an argument takes the rest of the line (any number of words).
pub(crate) fn takes_rest(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.max_values() == usize::MAX)
}

/// The arguments a person gives (not clap's own `--help`).
pub(crate) fn args(cmd: &clap::Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| a.get_id() != "help")
}

/// The positional arguments of a command, in order.
pub(crate) fn positionals(cmd: &clap::Command) -> Vec<&Arg> {
    let mut p: Vec<&Arg> = args(cmd).filter(|a| a.is_positional()).collect();
    p.sort_by_key(|a| a.get_index());
    p
}

/// What an argument is called in usage and errors: `USER`, `GROUP`.
pub(crate) fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|n| n.first())
        .map_or_else(|| arg.get_id().as_str().to_uppercase(), |n| n.to_string())
}

/// A command's usage, as the chat writes it: `/kick [GROUP] USER [--ban]`.
pub(crate) fn usage(cmd: &clap::Command) -> String {
    let mut words = vec![format!("/{}", cmd.get_name())];
    for a in positionals(cmd) {
        let mut w = value_name(a);
        if takes_rest(a) {
            w.push_str("...");
        }
        words.push(if a.is_required_set() { w } else { format!("[{w}]") });
    }
    for a in args(cmd).filter(|a| !a.is_positional()) {
        let flag = match (a.get_long(), a.get_short()) {
            (Some(l), _) => format!("--{l}"),
            (None, Some(s)) => format!("-{s}"),
            (None, None) => continue,
        };
        let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
        words.push(if takes_value {
            format!("[{flag} {}]", value_name(a))
        } else {
            format!("[{flag}]")
        });
    }
    words.join(" ")
}

/// What a command does, in words to follow "may": its help's first line, from a
/// lowercase letter, without the full stop ("remove a member from a group").
pub(crate) fn doing(name: &str) -> Option<String> {
    let about = TREE.find_subcommand(name)?.get_about()?.to_string();
    let first = about.lines().next()?.trim_end_matches('.');
    let mut chars = first.chars();
    let head = chars.next()?;
    Some(head.to_lowercase().chain(chars).collect())
}

/// Splits a line into words at whitespace: each word and where it starts.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

/// Parses a line typed in the chat: a slash command, or text for the current
/// conversation.
pub(crate) fn parse(line: &str, current: Option<Conversation>) -> Result<Typed, String> {
    let Some(command) = line.strip_prefix('/') else {
        let to =
            current.ok_or("no current conversation: /switch #GROUP or @USER, or /join GROUP")?;
        let text = line.trim_end().to_string();
        return Ok(Typed::Op(Op::Send { to, text: vec![text] }));
    };
    let found = words(command);
    let Some(&(_, name)) = found.first() else {
        return Err("a command goes after the /: /help lists them".into());
    };
    let Some(cmd) = TREE.find_subcommand(name) else {
        return Err(format!("unknown command /{}: /help lists them", shorten(name)));
    };
    let fail = |e: clap::Error| format!("{}: {}", usage(cmd), clap_error_words(&e));
    let mut argv: Vec<String> = found.iter().map(|(_, w)| w.to_string()).collect();
    let mut matches = TREE.clone().try_get_matches_from(&argv).map_err(fail)?;
    // The rest of the line as typed, for an argument that takes it.
    if let Some((_, sub)) = matches.subcommand()
        && let Some(rest) = args(cmd).find(|a| takes_rest(a))
        && let Some(first) = sub.indices_of(rest.get_id().as_str()).and_then(|mut i| i.next())
        && let Some(&(start, _)) = found.get(first)
    {
        argv.truncate(first);
        argv.push(command[start..].trim_end().to_string());
        matches = TREE.clone().try_get_matches_from(&argv).map_err(fail)?;
    }
    // The current conversation, for an optional group or conversation left out.
    if let Some((_, sub)) = matches.subcommand()
        && let Some(arg) = positionals(cmd)
            .into_iter()
            .find(|a| FILLED.contains(&a.get_id().as_str()) && !a.is_required_set())
        && sub.value_source(arg.get_id().as_str()).is_none()
    {
        let current = match (arg.get_id().as_str(), current) {
            (_, None) => {
                return Err(format!(
                    "{}: no current conversation: name the {}, or /switch to one",
                    usage(cmd),
                    value_name(arg).to_lowercase()
                ));
            }
            ("group", Some(Conversation::Direct(u))) => {
                return Err(format!(
                    "{}: the current conversation is @{u}, not a group: name the group",
                    usage(cmd)
                ));
            }
            (_, Some(c)) => c.to_string(),
        };
        argv.insert(1, current);
        matches = TREE.clone().try_get_matches_from(&argv).map_err(fail)?;
    }
    typed_of(&matches).map_err(fail)
}

fn typed_of(matches: &ArgMatches) -> Result<Typed, clap::Error> {
    Slash::from_arg_matches(matches).map(|s| s.typed)
}

/// A clap error in one line a person can act on, repeating no long input whole.
pub(crate) fn clap_error_words(e: &clap::Error) -> String {
    let strings = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(s)) => s.clone(),
        _ => Vec::new(),
    };
    let arg = strings(ContextKind::InvalidArg).join(" ");
    let arg = arg.trim_start_matches('<').trim_end_matches('>').trim_end_matches("...");
    match e.kind() {
        ErrorKind::ValueValidation => match std::error::Error::source(e) {
            Some(why) => why.to_string(),
            None => format!("bad {arg}"),
        },
        ErrorKind::InvalidValue => {
            let value = strings(ContextKind::InvalidValue).join(" ");
            let valid = strings(ContextKind::ValidValue).join(", ");
            if value.is_empty() {
                format!("{arg} needs a value")
            } else {
                format!("{} is not a {arg}: one of {valid}", shorten(&value))
            }
        }
        ErrorKind::MissingRequiredArgument => {
            let missing: Vec<String> = strings(ContextKind::InvalidArg)
                .iter()
                .map(|a| {
                    a.trim_start_matches('<')
                        .trim_end_matches('>')
                        .trim_end_matches("...")
                        .to_string()
                })
                .collect();
            format!("missing {}", missing.join(" and "))
        }
        ErrorKind::UnknownArgument => {
            format!(
                "{} is not an option here",
                shorten(&strings(ContextKind::InvalidArg).join(" "))
            )
        }
        ErrorKind::TooManyValues | ErrorKind::WrongNumberOfValues => {
            let value = strings(ContextKind::InvalidValue).join(" ");
            format!("too many arguments: {}", shorten(&value))
        }
        _ => {
            // clap's own words, first line, without its `error: `.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            // Room for clap's sentence, not for a page it quotes.
            crate::explain::shorten_to(first.trim_start_matches("error: "), 160)
        }
    }
}

/// The `/help` summary: what plain text does, what is filled in, and every
/// command's name; it fits a terminal of 24 lines by 80 columns.
pub(crate) fn help() -> Vec<String> {
    let mut lines = vec![
        "Plain text goes to the current conversation; /switch #group or @user changes it."
            .to_string(),
        "A [GROUP] or [CONVERSATION] left out is the current one. Tab completes.".to_string(),
        "Ctrl-C clears the line; twice quits. /help COMMAND says what a command takes.".to_string(),
        "Commands:".to_string(),
    ];
    // Each name with its other names: `dm/msg`.
    let names: Vec<String> = TREE
        .get_subcommands()
        .map(|c| {
            std::iter::once(c.get_name())
                .chain(c.get_visible_aliases())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    lines.extend(wrap(&names.join(" "), "  "));
    lines
}

/// The width `/help` keeps to.
const WIDTH: usize = 80;

/// `text` in lines of at most [`WIDTH`] characters (a longer word stands alone),
/// each starting with `indent`.
fn wrap(text: &str, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = indent.to_string();
    for word in text.split_whitespace() {
        let used = line.chars().count();
        if used > indent.len() && used + 1 + word.chars().count() > WIDTH {
            lines.push(std::mem::replace(&mut line, indent.to_string()));
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if line.len() > indent.len() {
        lines.push(line);
    }
    lines
}

/// `/help COMMAND`: the usage, other names, what it does, and each argument's help.
pub(crate) fn help_for(name: &str) -> Result<Vec<String>, String> {
    let name = name.trim_start_matches('/');
    let cmd = TREE
        .find_subcommand(name)
        .ok_or_else(|| format!("unknown command /{}: /help lists them", shorten(name)))?;
    let mut lines = vec![usage(cmd)];
    let aliases: Vec<&str> = cmd.get_visible_aliases().collect();
    if !aliases.is_empty() {
        lines.push(format!("  also /{}", aliases.join(", /")));
    }
    let about = cmd.get_long_about().or(cmd.get_about()).map(|a| a.to_string());
    lines.extend(about.iter().flat_map(|a| wrap(a, "  ")));
    for a in args(cmd) {
        let head = match a.get_long() {
            Some(l) => format!("--{l}"),
            None => value_name(a),
        };
        let mut help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        let values: Vec<String> =
            a.get_possible_values().iter().map(|v| v.get_name().to_string()).collect();
        if !values.is_empty() && a.get_help().is_none() {
            help = format!("{help} one of {}", values.join(", ")).trim().to_string();
        }
        if !help.is_empty() {
            let mut wrapped = wrap(&help, &" ".repeat(15)).into_iter();
            if let Some(first) = wrapped.next() {
                lines.push(format!("  {head:<12} {}", first.trim_start()));
            }
            lines.extend(wrapped);
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baatkaro_proto::{GroupName, UserName};

    fn g(s: &str) -> GroupName {
        s.parse().unwrap()
    }

    fn u(s: &str) -> UserName {
        s.parse().unwrap()
    }

    fn rust() -> Option<Conversation> {
        Some(Conversation::Group(g("rust")))
    }

    #[test]
    fn the_current_conversation_fills_in_a_group_left_out() {
        assert_eq!(
            parse("/approve bob", rust()),
            Ok(Typed::Op(Op::Approve { group: Some(g("rust")), user: u("bob") }))
        );
        assert_eq!(
            parse("/approve #go @bob", rust()),
            Ok(Typed::Op(Op::Approve { group: Some(g("go")), user: u("bob") }))
        );
        assert_eq!(
            parse("/kick bob --ban", rust()),
            Ok(Typed::Op(Op::Kick { group: Some(g("rust")), user: u("bob"), ban: true }))
        );
        assert_eq!(
            parse("/members", rust()),
            Ok(Typed::Op(Op::Members { group: Some(g("rust")) }))
        );
        // `online` without a group means every group: not filled in.
        assert_eq!(parse("/online", rust()), Ok(Typed::Op(Op::Online { only: None })));
        let bob = Some(Conversation::Direct(u("bob")));
        assert_eq!(
            parse("/history", bob),
            Ok(Typed::Op(Op::History { conversation: bob, since: 0 }))
        );
        assert!(parse("/kick carol", bob).unwrap_err().contains("is @bob, not a group"));
        assert!(parse("/kick carol", None).unwrap_err().contains("no current conversation"));
    }

    #[test]
    fn a_flag_looking_name_is_a_name() {
        // `x--ban` is a valid user name (letters, digits, - _ .), and it is the user.
        assert_eq!(
            parse("/kick x--ban", rust()),
            Ok(Typed::Op(Op::Kick { group: Some(g("rust")), user: u("x--ban"), ban: false }))
        );
        assert_eq!(
            parse("/kick rust x--ban --ban", None),
            Ok(Typed::Op(Op::Kick { group: Some(g("rust")), user: u("x--ban"), ban: true }))
        );
    }

    #[test]
    fn text_is_the_rest_of_the_line_as_typed() {
        let say = |s: &str| vec![s.to_string()];
        assert_eq!(
            parse("/msg alice  don't  --ban me ", None),
            Ok(Typed::Op(Op::Dm { user: u("alice"), text: say("don't  --ban me") }))
        );
        assert_eq!(
            parse("/join go let me in, please", None),
            Ok(Typed::Op(Op::Join { group: g("go"), reason: say("let me in, please") }))
        );
        assert_eq!(
            parse("  hello there  ", rust()),
            Ok(Typed::Op(Op::Send { to: rust().unwrap(), text: say("  hello there") }))
        );
    }

    #[test]
    fn bad_input_says_what_is_wrong_and_how_to_write_it() {
        assert_eq!(parse("/frob", None).unwrap_err(), "unknown command /frob: /help lists them");
        assert_eq!(parse("/approve", rust()).unwrap_err(), "/approve [GROUP] USER: missing USER");
        let e = parse("/create Rust", None).unwrap_err();
        assert!(e.contains("Rust is not a group name") && e.contains("lowercase letters"), "{e}");
        let e = parse("/rule rust sometimes", None).unwrap_err();
        assert!(e.contains("sometimes is not a RULE: one of approval, open, invite"), "{e}");
        assert!(parse("hello", None).unwrap_err().contains("no current conversation"));
        // A long input is not repeated whole.
        let long = format!("/create {}", "a".repeat(100_000));
        let e = parse(&long, None).unwrap_err();
        assert!(e.len() < 300 && e.contains("(100000 bytes)"), "{}", e.len());
    }

    #[test]
    fn help_fits_a_small_terminal_and_names_every_command() {
        let summary = help();
        assert!(summary.len() <= 20, "{} lines", summary.len());
        assert!(summary.iter().all(|l| l.chars().count() <= 80), "{summary:#?}");
        let all = summary.join(" ");
        for c in TREE.get_subcommands() {
            assert!(all.split([' ', '/']).any(|w| w == c.get_name()), "{}", c.get_name());
            let detail = help_for(c.get_name()).unwrap();
            assert!(detail.len() <= 20, "/help {}: {detail:#?}", c.get_name());
            assert!(detail.iter().all(|l| l.chars().count() <= 80), "{detail:#?}");
        }
        let kick = help_for("kick").unwrap();
        assert_eq!(kick[0], "/kick [GROUP] USER [--ban]");
        assert!(kick.iter().any(|l| l.contains("--ban") && l.contains("Also ban them")));
        assert!(kick.iter().any(|l| l.contains("GROUP") && l.contains("the current one")));
    }

    #[test]
    fn doing_reads_the_help() {
        assert_eq!(doing("kick").as_deref(), Some("remove a member from a group"));
    }
}
