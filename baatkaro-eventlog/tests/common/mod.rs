//! What the log's tests share.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

/// Whether `path` is on a file system known to take direct I/O (ext4, XFS), where
/// a log asked for direct writes must be making them.
// `f_type`'s type differs between architectures (i64 here, u32 or i32 elsewhere).
#[allow(clippy::useless_conversion)]
pub(crate) fn takes_direct_io(path: &Path) -> bool {
    const EXT4: i64 = 0xEF53;
    const XFS: i64 = 0x5846_5342;
    let kind = i64::from(rustix::fs::statfs(path).unwrap().f_type);
    kind == EXT4 || kind == XFS
}

/// The segment files of the log in `dir`, in order.
pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}
