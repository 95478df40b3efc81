#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The two ways out besides a branch: `pull_to_dir` (plain files, never written through a symlink
//! in the target) and `export_patch` (a series that `git am` turns into the branch's exact tree,
//! leaving no ref behind).

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use warren_domain::{ReasonCode, UserFacing};
use warren_sync::{PULL_MANIFEST, PullManifest};

fn without_manifest(mut tree: Tree) -> Tree {
    tree.remove(PULL_MANIFEST.as_bytes());
    tree
}

fn perms(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

fn top_level(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    names
}

/// A synced repo whose agent then modified, deleted, chmodded, and added files and a symlink.
fn agent_edited(fx: &Fixture) -> (warren_sync::RepoInfo, warren_sync::SyncInReport, Tree) {
    fx.init_repo();
    fx.write_tree(
        &fx.repo,
        &tree_of(&[
            (b"keep.txt", file(b"unchanged\n")),
            (b"modify.txt", file(b"before\n")),
            (b"delete.txt", file(b"doomed\n")),
            (b"script.sh", file(b"#!/bin/sh\n")),
            (b"dir/nested.txt", file(b"nested\n")),
        ]),
    );
    fx.commit_all("initial");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);

    let secret = fx.outside.join("host-secret");
    std::fs::write(&secret, b"never read\n").unwrap();
    let added = tree_of(&[
        (b"modify.txt", file(b"after\n")),
        (b"new/deep/added.bin", file(&all_bytes())),
        (b"new-tool", exe(b"#!/bin/sh\necho tool\n")),
        (b"link-abs", link(secret.as_os_str().as_bytes())),
    ]);
    fx.write_tree(&fx.ws, &added);
    remove(&fx.ws, b"delete.txt");
    chmod(&fx.ws, b"script.sh", 0o755);
    let mut expected = added;
    expected.insert(b"script.sh".to_vec(), exe(b"#!/bin/sh\n"));
    (repo, sync, expected)
}

#[test]
fn pull_writes_exactly_the_changed_files_and_lists_deletions() {
    let fx = Fixture::new();
    let (_repo, _sync, expected) = agent_edited(&fx);
    let changes = fx.collect();
    let outside_before = snapshot(&fx.outside);
    let tmp_before = top_level(fx.tmp.path());

    let dir = fx.tmp.path().join("pulled/here");
    let report = warren_sync::pull_to_dir(&fx.ws, &changes, &dir).unwrap();
    assert_eq!(report.dir, dir);
    assert_eq!(report.written, expected.len());
    assert_eq!(report.deleted, 1);
    assert_eq!(report.manifest, dir.join(PULL_MANIFEST));

    assert_eq!(without_manifest(snapshot(&dir)), expected);
    assert_eq!(perms(&dir.join("new-tool")), 0o755);
    assert_eq!(perms(&dir.join("script.sh")), 0o755);
    assert_eq!(perms(&dir.join("modify.txt")), 0o644);
    assert_eq!(perms(&dir.join("new/deep/added.bin")), 0o644);
    assert!(
        std::fs::symlink_metadata(dir.join("link-abs"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let manifest: PullManifest =
        serde_json::from_slice(&std::fs::read(&report.manifest).unwrap()).unwrap();
    assert_eq!(
        manifest.deleted,
        vec![Path::new("delete.txt").to_path_buf()]
    );
    let listed: Vec<(Vec<u8>, u32, u64)> = manifest
        .written
        .iter()
        .map(|f| (f.path.as_os_str().as_bytes().to_vec(), f.mode, f.size))
        .collect();
    let secret_len = fx.outside.join("host-secret").as_os_str().len() as u64;
    assert_eq!(
        listed,
        vec![
            (b"link-abs".to_vec(), 0o120000, secret_len),
            (b"modify.txt".to_vec(), 0o100644, 6),
            (b"new-tool".to_vec(), 0o100755, 20),
            (b"new/deep/added.bin".to_vec(), 0o100644, 512),
            (b"script.sh".to_vec(), 0o100755, 10),
        ]
    );

    assert_eq!(snapshot(&fx.outside), outside_before, "nothing outside dir");
    let mut tmp_after = tmp_before.clone();
    tmp_after.push(b"pulled".to_vec());
    tmp_after.sort();
    assert_eq!(top_level(fx.tmp.path()), tmp_after);
}

#[test]
fn pulling_again_overwrites_and_replaces_a_planted_final_symlink_without_following_it() {
    let fx = Fixture::new();
    let (_repo, _sync, expected) = agent_edited(&fx);
    let changes = fx.collect();
    let dir = fx.tmp.path().join("pulled");
    warren_sync::pull_to_dir(&fx.ws, &changes, &dir).unwrap();

    // Between pulls someone points a pulled file at a host file, and the user adds their own.
    let victim = fx.outside.join("victim");
    std::fs::write(&victim, b"host content\n").unwrap();
    std::fs::remove_file(dir.join("modify.txt")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("modify.txt")).unwrap();
    std::fs::write(dir.join("mine.txt"), b"user's own\n").unwrap();

    let report = warren_sync::pull_to_dir(&fx.ws, &changes, &dir).unwrap();
    assert_eq!(report.written, expected.len());
    let mut with_mine = expected.clone();
    with_mine.insert(b"mine.txt".to_vec(), file(b"user's own\n"));
    assert_eq!(without_manifest(snapshot(&dir)), with_mine);
    assert_eq!(std::fs::read(&victim).unwrap(), b"host content\n");
}

#[test]
fn pull_refuses_a_symlinked_directory_in_the_target_and_writes_nothing() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b"readme", file(b"hi\n"))]));
    fx.commit_all("initial");
    let repo = fx.inspect();
    let _sync = fx.sync(&repo);
    put(&fx.ws, b"a-first.txt", &file(b"sorted before sub\n"));
    put(&fx.ws, b"sub/x", &file(b"must not escape\n"));
    let changes = fx.collect();

    let dir = fx.tmp.path().join("pulled");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::symlink(&fx.outside, dir.join("sub")).unwrap();

    let err = warren_sync::pull_to_dir(&fx.ws, &changes, &dir).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::UnsafeSandboxOutput, "{err}");
    assert!(err.to_string().contains("sub/x"), "{err}");
    assert!(top_level(&fx.outside).is_empty(), "wrote outside dir");
    assert_eq!(top_level(&dir), vec![b"sub".to_vec()], "wrote inside dir");
}

#[test]
fn pull_refuses_a_target_that_is_a_file() {
    let fx = Fixture::new();
    let (_repo, _sync, _) = agent_edited(&fx);
    let changes = fx.collect();
    let target = fx.tmp.path().join("a-file");
    std::fs::write(&target, b"x").unwrap();
    let err = warren_sync::pull_to_dir(&fx.ws, &changes, &target).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), b"x");
}

/// Every ref but the baselines `sync_in` manages.
fn user_refs(fx: &Fixture) -> Vec<u8> {
    let out = fx.git(&["for-each-ref", "--format=%(refname) %(objectname)"]);
    out.split_inclusive(|b| *b == b'\n')
        .filter(|l| !l.starts_with(b"refs/warren/baselines/"))
        .flatten()
        .copied()
        .collect()
}

/// Applies `patch` with `git am` in a fresh repository at `base` (or unborn) and returns the tree.
fn am_tree(fx: &Fixture, base: Option<&str>, patch: &Path, keep_cr: bool) -> String {
    let clone = fx.tmp.path().join(format!("am-{}", token()));
    match base {
        Some(base) => {
            git_in(
                &fx.home,
                fx.tmp.path(),
                &[
                    "clone",
                    "-q",
                    "--no-checkout",
                    fx.repo.to_str().unwrap(),
                    clone.to_str().unwrap(),
                ],
            );
            git_in(&fx.home, &clone, &["checkout", "-q", "--detach", base]);
        }
        None => {
            std::fs::create_dir(&clone).unwrap();
            git_in(&fx.home, &clone, &["init", "-q"]);
        }
    }
    let mut am = vec!["am", "-q"];
    if keep_cr {
        am.push("--keep-cr");
    }
    am.push(patch.to_str().unwrap());
    git_in(&fx.home, &clone, &am);
    let tree = git_in(&fx.home, &clone, &["rev-parse", "HEAD^{tree}"]);
    String::from_utf8(tree).unwrap().trim().to_owned()
}

#[test]
fn patch_applied_with_git_am_gives_the_branch_tree_and_leaves_no_ref() {
    let fx = Fixture::new();
    fx.init_repo();
    let mut binary = all_bytes();
    binary.extend_from_slice(b"\0\x01tail");
    fx.write_tree(
        &fx.repo,
        &tree_of(&[
            (b"bin.dat", file(&binary)),
            (b"text.txt", file(b"one\ntwo\n")),
            (b"gone.txt", file(b"to delete\n")),
            (b"run.sh", file(b"#!/bin/sh\necho run\n")),
        ]),
    );
    fx.commit_all("initial");
    let base = fx.rev("HEAD");
    // The user's own uncommitted edits come first in the series.
    put(&fx.repo, b"text.txt", &file(b"one\ntwo\nthree (user)\n"));
    put(&fx.repo, b"untracked.txt", &file(b"user's new file\n"));
    // Settings that would make format-patch's output un-appliable if they were honoured.
    for (key, value) in [
        ("diff.noprefix", "true"),
        ("diff.mnemonicPrefix", "true"),
        ("format.coverLetter", "true"),
        ("format.useAutoBase", "true"),
        ("format.attach", "boundary"),
        ("color.ui", "always"),
    ] {
        fx.git(&["config", key, value]);
    }
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    assert!(sync.dirty);

    let mut binary2 = binary.clone();
    binary2.reverse();
    put(&fx.ws, b"bin.dat", &file(&binary2));
    put(&fx.ws, b"new.bin", &file(&[0u8, 159, 146, 150, 0, 255]));
    put(&fx.ws, b"link", &link(b"/abs/host/path"));
    remove(&fx.ws, b"gone.txt");
    chmod(&fx.ws, b"run.sh", 0o755);
    let changes = fx.collect();

    let refs_before = user_refs(&fx);
    let out_dir = fx.tmp.path().join("patches");
    std::fs::create_dir(&out_dir).unwrap();
    let patch = out_dir.join("series.patch");
    let req = request("warren/test");
    let report = warren_sync::export_patch(&repo, &sync, &fx.ws, &changes, &req, &patch).unwrap();
    assert_eq!(report.file, patch);
    assert_eq!(report.commits, 2);
    assert!(!report.keep_cr);
    assert_eq!(user_refs(&fx), refs_before, "export_patch created a ref");
    assert_eq!(top_level(&out_dir), vec![b"series.patch".to_vec()]);

    let branch = fx.export(&repo, &sync, &changes);
    assert_eq!(report.files_changed, branch.files_changed);
    let branch_tree = fx.rev(&format!("{}^{{tree}}", branch.head));
    assert_eq!(am_tree(&fx, Some(&base), &patch, false), branch_tree);
}

#[test]
fn patch_with_crlf_lines_says_it_needs_keep_cr_and_then_applies_exactly() {
    let fx = Fixture::new();
    fx.init_repo();
    put(&fx.repo, b"crlf.txt", &file(b"dos\r\nline\r\n"));
    fx.commit_all("initial");
    let base = fx.rev("HEAD");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    put(&fx.ws, b"crlf.txt", &file(b"dos\r\nline\r\nmore\r\n"));
    let changes = fx.collect();

    let patch = fx.tmp.path().join("crlf.patch");
    let req = request("warren/test");
    let report = warren_sync::export_patch(&repo, &sync, &fx.ws, &changes, &req, &patch).unwrap();
    assert!(report.keep_cr);
    let branch = fx.export(&repo, &sync, &changes);
    let branch_tree = fx.rev(&format!("{}^{{tree}}", branch.head));
    assert_eq!(am_tree(&fx, Some(&base), &patch, true), branch_tree);
}

#[test]
fn patch_of_an_unborn_repository_starts_at_the_root() {
    let fx = Fixture::new();
    fx.init_repo();
    put(&fx.repo, b"first.txt", &file(b"never committed\n"));
    let repo = fx.inspect();
    assert_eq!(repo.head, None);
    let sync = fx.sync(&repo);
    put(&fx.ws, b"agent.txt", &exe(b"from the agent\n"));
    let changes = fx.collect();

    let patch = fx.tmp.path().join("root.patch");
    let req = request("warren/test");
    let report = warren_sync::export_patch(&repo, &sync, &fx.ws, &changes, &req, &patch).unwrap();
    assert_eq!((report.commits, report.files_changed), (2, 2));
    assert!(user_refs(&fx).is_empty(), "export_patch created a ref");

    let branch = fx.export(&repo, &sync, &changes);
    let branch_tree = fx.rev(&format!("{}^{{tree}}", branch.head));
    assert!(!report.keep_cr);
    assert_eq!(am_tree(&fx, None, &patch, false), branch_tree);
}

#[test]
fn patch_of_a_clean_checkout_holds_only_the_agent_commit() {
    let fx = Fixture::new();
    fx.init_repo();
    put(&fx.repo, b"a.txt", &file(b"a\n"));
    fx.commit_all("initial");
    let base = fx.rev("HEAD");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    put(&fx.ws, b"a.txt", &file(b"a, edited\n"));
    let changes = fx.collect();

    let patch = fx.tmp.path().join("one.patch");
    let req = request("warren/test");
    let report = warren_sync::export_patch(&repo, &sync, &fx.ws, &changes, &req, &patch).unwrap();
    assert_eq!((report.commits, report.files_changed), (1, 1));
    let text = std::fs::read(&patch).unwrap();
    assert!(text.starts_with(b"From "), "not a patch series");
    let branch = fx.export(&repo, &sync, &changes);
    let branch_tree = fx.rev(&format!("{}^{{tree}}", branch.head));
    assert!(!report.keep_cr);
    assert_eq!(am_tree(&fx, Some(&base), &patch, false), branch_tree);
}
