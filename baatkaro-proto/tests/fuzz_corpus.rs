//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and any saved crash
//! inputs (`fuzz/regressions/<target>/`) through the fuzz target bodies in
//! `baatkaro_proto::fuzzing`, so that plain `cargo test` keeps every one of them
//! passing without cargo-fuzz or a nightly toolchain.
//!
//! `roundtrip_values` needs the `arbitrary` feature:
//! `cargo test -p baatkaro-proto --all-features --test fuzz_corpus`.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use baatkaro_proto::fuzzing;

/// `fuzz/` at the workspace root.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The input files in `dir`, sorted; hidden files (`.gitkeep`) are skipped.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())).path())
        .filter(|path| path.is_file())
        .filter(|path| {
            !path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs `body` on every corpus file of `target` (there must be some) and on every
/// file of its regressions directory, if it has one; fails naming every input that
/// panicked (each panic's message is printed as it happens).
fn replay(target: &str, body: fn(&[u8])) {
    let corpus = fuzz_dir().join("corpus").join(target);
    let mut files = inputs(&corpus);
    assert!(
        !files.is_empty(),
        "the corpus {} is empty: the replay would pass vacuously",
        corpus.display()
    );
    let regressions = fuzz_dir().join("regressions").join(target);
    if regressions.is_dir() {
        files.extend(inputs(&regressions));
    }
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data =
                fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            catch_unwind(AssertUnwindSafe(|| body(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target} fails on {} of {} inputs: {failed:#?}",
        failed.len(),
        files.len()
    );
}

#[test]
fn decode_requests_corpus() {
    replay("decode_requests", fuzzing::decode_requests);
}

#[test]
fn decode_server_frames_corpus() {
    replay("decode_server_frames", fuzzing::decode_server_frames);
}

#[cfg(feature = "arbitrary")]
#[test]
fn roundtrip_values_corpus() {
    replay("roundtrip_values", fuzzing::roundtrip_values);
}

#[cfg(feature = "arbitrary")]
#[test]
fn group_ops_corpus() {
    replay("group_ops", fuzzing::group_ops);
}
