//! baatkaro-hub stays sans-IO: nothing in its normal dependency tree does IO
//! scheduling or networking (checked against the workspace's Cargo.lock), so the
//! server's core builds and is tested without tokio.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

/// Package name → names of its dependencies, from Cargo.lock.
fn lock_graph() -> BTreeMap<String, Vec<String>> {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"))
        .expect("Cargo.lock at the workspace root");
    let mut graph = BTreeMap::new();
    for package in lock.split("[[package]]").skip(1) {
        let name = package
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap()
            .to_owned();
        let deps = package
            .split("dependencies = [")
            .nth(1)
            .map(|d| {
                d.split(']')
                    .next()
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix('"'))
                    .map(|l| l.split([' ', '"']).next().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        graph.insert(name, deps);
    }
    graph
}

/// The names under a manifest's `[dependencies]`.
fn normal_deps(manifest: &str) -> Vec<String> {
    manifest
        .split("[dependencies]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn hub_pulls_in_no_async_runtime_or_network_crate() {
    let graph = lock_graph();
    // Cargo.lock lists dev-dependencies too; the normal ones are those in Cargo.toml's
    // [dependencies], which this reads to start the walk, and so for the workspace's
    // own proto crate.
    let normal = normal_deps(include_str!("../Cargo.toml"));
    let proto = normal_deps(include_str!("../../baatkaro-proto/Cargo.toml"));
    assert!(normal.iter().any(|n| n == "baatkaro-proto"), "parsed {normal:?}");
    assert!(proto.iter().any(|n| n == "nom"), "parsed {proto:?}");
    let mut seen = BTreeSet::new();
    let mut todo = normal;
    while let Some(name) = todo.pop() {
        if seen.insert(name.clone()) {
            if name == "baatkaro-proto" {
                todo.extend(proto.iter().cloned());
                continue;
            }
            // sha2 (session tokens' digests) detects CPU features with cpufeatures,
            // which uses libc on aarch64 only, to read the auxiliary vector
            // (getauxval): no IO, and no other crate of it is reached.
            if name == "cpufeatures" {
                assert_eq!(graph.get(&name).cloned().unwrap_or_default(), ["libc"]);
                continue;
            }
            todo.extend(graph.get(&name).cloned().unwrap_or_default());
        }
    }
    for banned in ["tokio", "mio", "async-std", "smol", "futures", "socket2", "libc"] {
        assert!(!seen.contains(banned), "baatkaro-hub depends on {banned}: {seen:?}");
    }
}
