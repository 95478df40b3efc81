#![allow(clippy::unwrap_used, clippy::expect_used)]
//! For random trees and random agent edits, the exported branch holds exactly the edited tree:
//! same paths, same bytes, same modes, same symlink targets.

mod common;

use common::*;
use proptest::prelude::*;

const COMPONENTS: &[&str] = &["a", "b c", "ü", "-x", "d.txt", "e\nf", "名"];
const TARGETS: &[&str] = &["a", "../up", "/abs/host/path", "b c/ü", "-x"];

fn path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(COMPONENTS), 1..=3)
        .prop_map(|parts| parts.join("/").into_bytes())
}

fn node() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => (prop::collection::vec(any::<u8>(), 0..48), any::<bool>())
            .prop_map(|(bytes, exec)| Node::File { bytes, exec }),
        1 => prop::sample::select(TARGETS).prop_map(|t| Node::Symlink(t.as_bytes().to_vec())),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Modify(usize, Vec<u8>),
    Delete(usize),
    Chmod(usize),
    ToSymlink(usize, &'static str),
    Add(Vec<u8>, Node),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), prop::collection::vec(any::<u8>(), 0..48))
            .prop_map(|(i, b)| Edit::Modify(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Chmod),
        (any::<usize>(), prop::sample::select(TARGETS)).prop_map(|(i, t)| Edit::ToSymlink(i, t)),
        (path(), node()).prop_map(|(p, n)| Edit::Add(p, n)),
    ]
}

/// Whether `path` would be both a file and a directory alongside what `tree` holds.
fn conflicts(tree: &Tree, path: &[u8]) -> bool {
    tree.keys().any(|k| {
        let under =
            |a: &[u8], b: &[u8]| a.len() > b.len() && a.starts_with(b) && a[b.len()] == b'/';
        k.as_slice() != path && (under(k, path) || under(path, k))
    })
}

fn nth_key(tree: &Tree, i: usize) -> Option<Vec<u8>> {
    if tree.is_empty() {
        return None;
    }
    tree.keys().nth(i % tree.len()).cloned()
}

/// Applies one edit to the workspace and to the expected tree alike.
fn apply(ws: &std::path::Path, expected: &mut Tree, edit: Edit) {
    match edit {
        Edit::Modify(i, bytes) => {
            if let Some(key) = nth_key(expected, i) {
                let exec = matches!(expected[&key], Node::File { exec: true, .. });
                let node = Node::File { bytes, exec };
                put(ws, &key, &node);
                expected.insert(key, node);
            }
        }
        Edit::Delete(i) => {
            if let Some(key) = nth_key(expected, i) {
                remove(ws, &key);
                expected.remove(&key);
            }
        }
        Edit::Chmod(i) => {
            if let Some(key) = nth_key(expected, i)
                && let Some(Node::File { exec, .. }) = expected.get_mut(&key)
            {
                *exec = !*exec;
                chmod(ws, &key, if *exec { 0o755 } else { 0o644 });
            }
        }
        Edit::ToSymlink(i, target) => {
            if let Some(key) = nth_key(expected, i) {
                let node = Node::Symlink(target.as_bytes().to_vec());
                put(ws, &key, &node);
                expected.insert(key, node);
            }
        }
        Edit::Add(path, node) => {
            if !expected.contains_key(&path) && !conflicts(expected, &path) {
                put(ws, &path, &node);
                expected.insert(path, node);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_exported_tree_is_exactly_the_edited_tree(
        files in prop::collection::vec((path(), node()), 1..8),
        edits in prop::collection::vec(edit(), 0..8),
    ) {
        let fx = Fixture::new();
        fx.init_repo();
        let mut initial = Tree::new();
        for (p, n) in files {
            if !conflicts(&initial, &p) {
                initial.insert(p, n);
            }
        }
        fx.write_tree(&fx.repo, &initial);
        fx.commit_all("initial");
        let repo = fx.inspect();
        let sync = fx.sync(&repo);
        prop_assert!(!sync.dirty);
        prop_assert_eq!(snapshot(&fx.ws), initial.clone());

        let mut expected = initial.clone();
        for e in edits {
            apply(&fx.ws, &mut expected, e);
        }
        let changes = fx.collect();
        let report = fx.export(&repo, &sync, &changes);
        prop_assert_eq!(fx.ls_tree(&report.head), expected.clone());
        prop_assert_eq!(report.agent_commit.is_some(), expected != initial);
        prop_assert_eq!(report.user_changes_commit, None);
    }
}
