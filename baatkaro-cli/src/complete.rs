//! Tab completion for the chat prompt: command names, then each argument by what
//! the command's usage says it is (a group, a user, a keyword), from the same
//! table that parses commands and makes `/help`.

use std::collections::BTreeSet;

use crate::line::Completion;
use crate::slash::COMMANDS;

/// The group and user names the chat has seen, to complete from.
#[derive(Debug, Default, Clone)]
pub(crate) struct Names {
    /// Group names.
    pub(crate) groups: BTreeSet<String>,
    /// User names.
    pub(crate) users: BTreeSet<String>,
}

/// What a usage word stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind<'a> {
    Group,
    User,
    /// `#GROUP|@USER`.
    Conversation,
    /// A word to type as it is.
    Literal(&'a str),
    /// Free text, a number, a path: nothing to offer.
    Free,
}

/// One word of a usage string: its alternatives, and whether it may be left out.
struct Slot<'a> {
    kinds: Vec<Kind<'a>>,
    optional: bool,
}

/// Reads a usage string such as `[GROUP] USER [--ban]`.
fn slots(usage: &str) -> Vec<Slot<'_>> {
    usage
        .split_whitespace()
        .map(|word| {
            let inner = word.strip_prefix('[').and_then(|w| w.strip_suffix(']'));
            let kinds = inner
                .unwrap_or(word)
                .split('|')
                .map(|alt| match alt {
                    "GROUP" => Kind::Group,
                    "USER" => Kind::User,
                    "#GROUP" | "@USER" => Kind::Conversation,
                    w if w.chars().all(|c| c.is_ascii_lowercase() || c == '-') => Kind::Literal(w),
                    _ => Kind::Free,
                })
                .collect();
            Slot { kinds, optional: inner.is_some() }
        })
        .collect()
}

/// What may stand as argument number `index` (from 0): slot `j` can, if enough
/// optional slots before it were left out to bring it there.
fn kinds_at<'a>(slots: &[Slot<'a>], index: usize) -> Vec<Kind<'a>> {
    let mut out = Vec::new();
    let mut optional_before = 0;
    for (j, slot) in slots.iter().enumerate() {
        if j >= index && j - index <= optional_before {
            out.extend(slot.kinds.iter().copied());
        }
        optional_before += usize::from(slot.optional);
    }
    out
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
            return Completion {
                start: start + 1,
                candidates: COMMANDS.iter().map(|c| c.name.to_string()).collect(),
            };
        }
        // Plain text: the people one might address.
        None => names.users.iter().map(|u| format!("{u}:")).collect(),
        Some(first) => {
            match first.strip_prefix('/').and_then(|n| COMMANDS.iter().find(|c| c.name == n)) {
                None => names.users.iter().cloned().collect(),
                Some(command) => {
                    let index = words.count();
                    let mut out: Vec<String> = Vec::new();
                    for kind in kinds_at(&slots(command.usage), index) {
                        match kind {
                            Kind::Group => out.extend(names.groups.iter().cloned()),
                            Kind::User => out.extend(names.users.iter().cloned()),
                            Kind::Conversation => {
                                out.extend(names.groups.iter().map(|g| format!("#{g}")));
                                out.extend(names.users.iter().map(|u| format!("@{u}")));
                            }
                            Kind::Literal(w) => out.push(w.to_string()),
                            Kind::Free => {}
                        }
                    }
                    // Sorted, and each once: slots may offer the same names twice.
                    out.sort();
                    out.dedup();
                    out
                }
            }
        }
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
        assert_eq!(tab("/accept-o").0, "/accept-ownership ");
        let (line, mut listed) = tab("/de");
        assert_eq!(line, "/de");
        listed.sort();
        assert_eq!(listed, ["decline", "delete", "demote"]);
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
        // Conversations, with their sigils.
        assert_eq!(tab("/history @al").0, "/history @alice ");
        assert_eq!(tab("/history #g").0, "/history #go ");
        // A sigil on a bare name is kept.
        assert_eq!(tab("/members #g").0, "/members #go ");
        // Free text gets nothing.
        assert_eq!(tab("/msg bob hel").0, "/msg bob hel");
    }

    #[test]
    fn plain_text_completes_whom_it_addresses() {
        assert_eq!(tab("al").0, "alice: ");
        assert_eq!(tab("thanks b").0, "thanks bob");
        assert_eq!(tab("thanks bob").1, vec!["bob", "bobby"]);
        assert_eq!(tab("thanks bobb").0, "thanks bobby ");
    }

    #[test]
    fn every_usage_word_is_understood() {
        // A new usage word that reads as free text by mistake would silently
        // complete nothing; these are all the words that mean free text.
        let free = ["TEXT", "REASON", "SINCE", "PATH", "FILE_ID", "TOKEN"];
        for c in COMMANDS {
            for word in c.usage.split_whitespace() {
                let inner = word.trim_start_matches('[').trim_end_matches(']');
                for alt in inner.split('|') {
                    let known = matches!(alt, "GROUP" | "USER" | "#GROUP" | "@USER")
                        || alt.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                        || free.contains(&alt);
                    assert!(known, "/{} {}: {alt}", c.name, c.usage);
                }
            }
        }
    }
}
