//! Tab completion for the chat prompt: command names, then each argument by what
//! the command's clap definition says it is (a group, a user, a conversation, one
//! of its possible values, a flag), from the tree that parses commands and makes
//! `/help`.

use std::collections::BTreeSet;

use clap::Arg;

use crate::line::Completion;
use crate::slash::{self, TREE};
/// The group and user names the chat has seen, to complete from.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    /// Group names.
    pub(crate) groups: BTreeSet<String>,
    /// User names.
    pub(crate) users: BTreeSet<String>,
}

/// What an argument's value may be, to complete it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Group,
    User,
    /// `#group` or `@user`.
    Conversation,
    /// A command's name.
    Command,
    /// One of these words.
    Words(Vec<String>),
    /// Free text, a number, a path, an id: nothing to offer.
    Free,
}

/// What completes an argument, from its value name or possible values.
pub(crate) fn kind_of(arg: &Arg) -> Kind {
    let values = arg.get_possible_values();
    if !values.is_empty() {
        return Kind::Words(values.iter().map(|v| v.get_name().to_string()).collect());
    }
    match slash::value_name(arg).as_str() {
        "GROUP" => Kind::Group,
        "USER" => Kind::User,
        "CONVERSATION" => Kind::Conversation,
        "COMMAND" => Kind::Command,
        _ => Kind::Free,
    }
}

/// What may stand as positional argument number `index` (from 0): argument `j`
/// can, if enough optional arguments before it were left out to bring it there.
fn kinds_at(args: &[&Arg], index: usize) -> Vec<Kind> {
    let mut out = Vec::new();
    let mut optional_before = 0;
    for (j, arg) in args.iter().enumerate() {
        if j >= index && j - index <= optional_before {
            out.push(kind_of(arg));
        }
        optional_before += usize::from(!arg.is_required_set());
    }
    out
}

/// Every command name and visible alias, in the order `/help` lists them.
fn command_names() -> Vec<String> {
    TREE.get_subcommands()
        .flat_map(|c| std::iter::once(c.get_name()).chain(c.get_visible_aliases()))
        .map(String::from)
        .collect()
}

/// The completion of the word that ends at `cursor` (a byte offset) in `line`.
pub(crate) fn complete(line: &str, cursor: usize, names: &Names) -> Completion {
    let Some(before) = line.get(..cursor) else { return Completion::default() };
    let start = before.rfind(' ').map_or(0, |i| i + 1);
    let word = &before[start..];
    let mut words = before[..start].split_whitespace();
    let candidates = match words.next() {
        // The first word: a command name.
        None if word.starts_with('/') => {
            return Completion { start: start + 1, candidates: command_names() };
        }
        // Plain text: the people one might address.
        None => names.users.iter().map(|u| format!("{u}:")).collect(),
        Some(first) => match first.strip_prefix('/').and_then(|n| TREE.find_subcommand(n)) {
            None => names.users.iter().cloned().collect(),
            // A flag, wherever it is typed.
            Some(command) if word.starts_with('-') => slash::args(command)
                .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
                .collect(),
            Some(command) => {
                // Flags and their values are not positional arguments.
                let index = words.filter(|w| !w.starts_with('-')).count();
                let mut out: Vec<String> = Vec::new();
                for kind in kinds_at(&slash::positionals(command), index) {
                    match kind {
                        Kind::Group => out.extend(names.groups.iter().cloned()),
                        Kind::User => out.extend(names.users.iter().cloned()),
                        Kind::Conversation => {
                            out.extend(names.groups.iter().map(|g| format!("#{g}")));
                            out.extend(names.users.iter().map(|u| format!("@{u}")));
                        }
                        Kind::Command => out.extend(command_names()),
                        Kind::Words(w) => out.extend(w),
                        Kind::Free => {}
                    }
                }
                // Sorted, and each once: arguments may offer the same names twice.
                out.sort();
                out.dedup();
                out
            }
        },
    };
    // `#group` and `@user` are accepted wherever a bare name is.
    match word.chars().next() {
        Some(sigil @ ('#' | '@')) if !candidates.iter().any(|c| c.starts_with(sigil)) => {
            Completion { start: start + 1, candidates }
        }
        _ => Completion { start, candidates },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{Completed, Line};

    fn names() -> Names {
        Names {
            groups: ["rust", "rustaceans", "go"].map(String::from).into(),
            users: ["alice", "bob", "bobby"].map(String::from).into(),
        }
    }

    /// Types `typed`, presses Tab, and returns the line and what was listed.
    fn tab(typed: &str) -> (String, Vec<String>) {
        let mut line = Line::default();
        typed.chars().for_each(|c| line.insert(c));
        let c = complete(line.text(), line.cursor(), &names());
        let listed = match line.complete(&c) {
            Completed::Choices(words) => words,
            _ => vec![],
        };
        (line.text().to_string(), listed)
    }

    #[test]
    fn commands_complete_from_the_table() {
        assert_eq!(tab("/mem").0, "/members ");
        assert_eq!(tab("/transfer-a").0, "/transfer-accept ");
        assert_eq!(tab("/accept-o").0, "/accept-ownership ");
        let (line, mut listed) = tab("/de");
        assert_eq!(line, "/de");
        listed.sort();
        assert_eq!(listed, ["decline", "delete", "demote", "deop"]);
    }

    #[test]
    fn arguments_complete_by_what_the_usage_says() {
        assert_eq!(tab("/members ru").0, "/members rust");
        assert_eq!(tab("/members g").0, "/members go ");
        assert_eq!(tab("/msg al").0, "/msg alice ");
        // `[GROUP] USER`: the first argument may be either, the second is a user.
        assert_eq!(tab("/approve a").0, "/approve alice ");
        assert_eq!(tab("/approve go a").0, "/approve go alice ");
        assert_eq!(tab("/approve go bobby x").0, "/approve go bobby x");
        // Keywords and flags are offered as they are written.
        assert_eq!(tab("/create rust op").0, "/create rust open ");
        assert_eq!(tab("/kick go bob --").0, "/kick go bob --ban ");
        assert_eq!(tab("/kick --ban bob").1, vec!["bob", "bobby"]);
        assert_eq!(tab("/presence o").1, vec!["off", "on"]);
        assert_eq!(tab("/help kic").0, "/help kick ");
        assert_eq!(tab("/switch @bob").1, vec!["@bob", "@bobby"]);
        // Conversations, with their sigils.
        assert_eq!(tab("/history @al").0, "/history @alice ");
        assert_eq!(tab("/history #g").0, "/history #go ");
        // A sigil on a bare name is kept.
        assert_eq!(tab("/members #g").0, "/members #go ");
        // Free text gets nothing.
        assert_eq!(tab("/msg bob hel").0, "/msg bob hel");
        assert_eq!(tab("/download f").0, "/download f");
    }

    #[test]
    fn plain_text_completes_whom_it_addresses() {
        assert_eq!(tab("al").0, "alice: ");
        assert_eq!(tab("thanks b").0, "thanks bob");
        assert_eq!(tab("thanks bob").1, vec!["bob", "bobby"]);
        assert_eq!(tab("thanks bobb").0, "thanks bobby ");
    }

    /// The value names that mean free input.
    const FREE: &[&str] = &["TEXT", "REASON", "PATH", "FILE", "TOKEN", "SINCE"];

    #[test]
    fn every_argument_of_every_command_is_understood() {
        // A new value name that reads as free input by mistake would silently
        // complete nothing; these are the only names that mean free input.
        for c in TREE.get_subcommands() {
            for a in slash::positionals(c) {
                let name = slash::value_name(a);
                let known = kind_of(a) != Kind::Free || FREE.contains(&name.as_str());
                assert!(known, "/{} {name}", c.get_name());
            }
        }
    }
}
