//! `baatkaro`: the BaatKaro command-line client.
//!
//! This version ships the protocol codec (`baatkaro-proto`); the interactive client
//! and the one-shot subcommands land with the client issue. Until then the binary
//! prints what it will do.

use std::process::ExitCode;

const USAGE: &str = "\
baatkaro — command-line client for the BaatKaro group chat protocol

USAGE:
    baatkaro [--server ADDR] [--user NAME] [SUBCOMMAND]

STATUS:
    This build contains the protocol codec only (see SPEC.md); the interactive
    client and the subcommands (register, login, create, join, send, ...) land in a
    later version.
";

fn main() -> ExitCode {
    print!("{USAGE}");
    match std::env::args().nth(1).as_deref() {
        None | Some("-h" | "--help") => ExitCode::SUCCESS,
        Some(other) => {
            eprintln!("baatkaro: cannot run {other:?} yet: this build has no client");
            ExitCode::from(2)
        }
    }
}
