//! `baatkaro-server`: the reference BaatKaro server.
//!
//! This version ships the protocol and its codec (`baatkaro-proto`, described in
//! SPEC.md); the server that speaks it over TCP is the next piece of work. Until then
//! the binary explains that and prints its intended usage, so that the README's
//! quick start does something honest on a fresh machine.

use std::process::ExitCode;

const USAGE: &str = "\
baatkaro-server — reference server for the BaatKaro group chat protocol

USAGE:
    baatkaro-server [--listen ADDR] [--data-dir DIR] [--config FILE]

DEFAULTS:
    --listen    127.0.0.1:7667
    --data-dir  the platform's data directory (e.g. ~/.local/share/baatkaro)

STATUS:
    This build contains the protocol codec only (see SPEC.md); it does not accept
    connections yet. The TCP server, persistence and accounts are tracked as the
    server issue and land in a later version.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    print!("{USAGE}");
    match args.first().map(String::as_str) {
        None | Some("-h" | "--help") => ExitCode::SUCCESS,
        Some(other) => {
            eprintln!("baatkaro-server: cannot act on {other:?} yet: this build has no server");
            ExitCode::from(2)
        }
    }
}
