#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Repeated syncs from the host (`warren sync`, and before every `exec`): exactly the user's
//! changes reach the workspace, the agent's own edits win and are reported as conflicts, a
//! hostile workspace gets nothing written through its symlinks, and the export afterwards starts
//! from the new HEAD.

mod common;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use common::*;
use warren_sync::{ChangeKind, PartialSyncReport, RepoInfo, SyncInReport};

fn partial(
    fx: &Fixture,
    repo: &RepoInfo,
    previous: &SyncInReport,
) -> (SyncInReport, PartialSyncReport) {
    warren_sync::sync_partial(repo, previous, &fx.ws, &fx.baseline).unwrap()
}

fn ws_git(fx: &Fixture, args: &[&str]) -> Vec<u8> {
    git_in(&fx.home, &fx.ws, args)
}

fn initial() -> Tree {
    tree_of(&[
        (b"edit.txt", file(b"original\n")),
        (b"gone.txt", file(b"to be deleted\n")),
        (b"mode.sh", file(b"#!/bin/sh\necho hi\n")),
        (b"dir/to-link.txt", file(b"becomes a link\n")),
        (b"keep/untouched.txt", file(b"never changes\n")),
        (b"keep/other.bin", file(&all_bytes())),
    ])
}

fn synced(files: &Tree) -> (Fixture, RepoInfo, SyncInReport) {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, files);
    fx.commit_all("initial");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    (fx, repo, sync)
}

#[test]
fn only_the_user_changes_are_sent_and_the_baseline_moves_with_them() {
    let (fx, repo, sync) = synced(&initial());
    assert!(
        fx.baseline.join("user.index").is_file(),
        "the temporary index is kept"
    );
    let untouched = std::fs::metadata(fx.ws.join("keep/untouched.txt")).unwrap();

    put(
        &fx.repo,
        b"edit.txt",
        &file(b"edited by the user, longer\n"),
    );
    put(&fx.repo, b"new/added.txt", &file(b"added\n"));
    remove(&fx.repo, b"gone.txt");
    chmod(&fx.repo, b"mode.sh", 0o755);
    put(&fx.repo, b"dir/to-link.txt", &link(b"../edit.txt"));

    let (next, report) = partial(&fx, &repo, &sync);
    assert_eq!((report.updated, report.deleted), (4, 1), "{report:?}");
    assert!(report.conflicts.is_empty(), "{report:?}");
    assert_eq!(report.workspace_git_skipped, None);
    assert!(report.dirty && next.dirty);
    assert_eq!(report.bytes, 27 + 6 + 18);

    let mut expected = initial();
    expected.insert(b"edit.txt".to_vec(), file(b"edited by the user, longer\n"));
    expected.insert(b"new/added.txt".to_vec(), file(b"added\n"));
    expected.remove(b"gone.txt".as_slice());
    expected.insert(b"mode.sh".to_vec(), exe(b"#!/bin/sh\necho hi\n"));
    expected.insert(b"dir/to-link.txt".to_vec(), link(b"../edit.txt"));
    assert_eq!(snapshot(&fx.ws), expected);
    assert_eq!(fx.ls_tree(&next.user_tree), expected);
    assert_eq!(next.user_tree, report.user_tree);
    assert_eq!((next.files, next.symlinks), (5, 1));
    let sent_bytes: u64 = expected
        .values()
        .map(|n| match n {
            Node::File { bytes, .. } => bytes.len() as u64,
            Node::Symlink(_) => 0,
        })
        .sum();
    assert_eq!(next.bytes, sent_bytes);

    // Nothing else was rewritten: same inode, same mtime.
    let after = std::fs::metadata(fx.ws.join("keep/untouched.txt")).unwrap();
    assert_eq!(
        (after.ino(), after.mtime(), after.mtime_nsec()),
        (untouched.ino(), untouched.mtime(), untouched.mtime_nsec())
    );

    // The host's edits are the new baseline, not the agent's work.
    assert!(fx.collect().is_empty(), "{:?}", fx.collect());
    // The agent's own repository has them as a commit, and a clean status.
    assert_eq!(ws_git(&fx, &["status", "--porcelain"]), b"");
    assert_eq!(
        ws_git(&fx, &["log", "-1", "--format=%s"]),
        b"warren: sync from host\n"
    );
    assert_eq!(ws_git(&fx, &["rev-list", "--count", "HEAD"]), b"2\n");
    assert_eq!(ls_tree(&fx.home, &fx.ws, "HEAD"), expected);
    let fsck = git_cmd(&fx.home, &fx.ws)
        .args(["fsck", "--strict", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );

    // The baseline ref follows the new user tree.
    let protected = fx.rev("refs/warren/baselines/test-1^{tree}");
    assert_eq!(protected, next.user_tree);

    // A second sync with nothing new sends nothing.
    let (again, report) = partial(&fx, &repo, &next);
    assert_eq!(
        (report.updated, report.deleted, report.conflicts.len()),
        (0, 0, 0)
    );
    assert_eq!(again, next);
}

#[test]
fn a_path_both_changed_keeps_the_agents_version_and_is_reported() {
    let (fx, repo, sync) = synced(&initial());
    put(&fx.ws, b"edit.txt", &file(b"the agent's version\n"));
    put(&fx.ws, b"agent-only.txt", &file(b"agent\n"));
    put(&fx.repo, b"edit.txt", &file(b"the user's version\n"));
    put(
        &fx.repo,
        b"keep/untouched.txt",
        &file(b"the user changed this one\n"),
    );

    let (next, report) = partial(&fx, &repo, &sync);
    assert_eq!(report.conflicts, vec![PathBuf::from("edit.txt")]);
    assert_eq!(report.updated, 1);
    assert_eq!(
        std::fs::read(fx.ws.join("edit.txt")).unwrap(),
        b"the agent's version\n"
    );
    assert_eq!(
        std::fs::read(fx.ws.join("keep/untouched.txt")).unwrap(),
        b"the user changed this one\n"
    );

    // The agent's repository shows only the agent's own work.
    assert_eq!(
        ws_git(&fx, &["status", "--porcelain"]),
        b" M edit.txt\n?? agent-only.txt\n"
    );

    let changes = fx.collect();
    let listed: Vec<_> = changes
        .changes
        .iter()
        .map(|c| (c.path.clone(), c.kind))
        .collect();
    assert_eq!(
        listed,
        vec![
            (PathBuf::from("agent-only.txt"), ChangeKind::Added),
            (PathBuf::from("edit.txt"), ChangeKind::Modified),
        ]
    );

    let exported = fx.export(&repo, &next, &changes);
    let mut expected = initial();
    expected.insert(
        b"keep/untouched.txt".to_vec(),
        file(b"the user changed this one\n"),
    );
    expected.insert(b"edit.txt".to_vec(), file(b"the user's version\n"));
    let user_commit = exported.user_changes_commit.clone().unwrap();
    assert_eq!(fx.ls_tree(&user_commit), expected);
    expected.insert(b"edit.txt".to_vec(), file(b"the agent's version\n"));
    expected.insert(b"agent-only.txt".to_vec(), file(b"agent\n"));
    assert_eq!(fx.ls_tree("warren/test"), expected);
}

#[test]
fn a_directory_the_agent_replaced_by_a_symlink_gets_nothing_written_through_it() {
    let (fx, repo, sync) = synced(&initial());
    let host_dir = fx.outside.join("hostdir");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("untouched.txt"), b"host file\n").unwrap();
    remove(&fx.ws, b"keep");
    put(&fx.ws, b"keep", &link(host_dir.as_os_str().as_bytes()));
    // The workspace's own repository gets a planted object directory too.
    let objects = fx.ws.join(".git/objects");
    std::fs::rename(&objects, fx.ws.join(".git/objects-moved")).unwrap();
    std::os::unix::fs::symlink(fx.outside.join("objects"), &objects).unwrap();

    put(&fx.repo, b"keep/untouched.txt", &file(b"user edit\n"));
    put(&fx.repo, b"keep/new.txt", &file(b"user addition\n"));
    remove(&fx.repo, b"keep/other.bin");
    put(&fx.repo, b"edit.txt", &file(b"fine to sync\n"));

    let (_, report) = partial(&fx, &repo, &sync);
    assert_eq!(
        report.conflicts,
        vec![
            PathBuf::from("keep/new.txt"),
            PathBuf::from("keep/other.bin"),
            PathBuf::from("keep/untouched.txt")
        ]
    );
    assert_eq!(report.updated, 1);
    assert_eq!(
        std::fs::read(fx.ws.join("edit.txt")).unwrap(),
        b"fine to sync\n"
    );
    // Outside: exactly what was there.
    let names: Vec<_> = std::fs::read_dir(&host_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1);
    assert_eq!(
        std::fs::read(host_dir.join("untouched.txt")).unwrap(),
        b"host file\n"
    );
    assert!(!fx.outside.join("objects").exists());
    assert!(report.workspace_git_skipped.is_some(), "{report:?}");

    // The agent's replacement is what it exported.
    let changes = fx.collect();
    assert!(
        changes
            .changes
            .iter()
            .any(|c| c.path.as_os_str() == "keep" && c.kind == ChangeKind::Added)
    );
}

#[test]
fn export_after_a_partial_sync_starts_from_the_new_head() {
    let (fx, repo, sync) = synced(&initial());
    // The user commits, then leaves some work uncommitted.
    put(&fx.repo, b"committed.txt", &file(b"committed later\n"));
    fx.commit_all("second");
    let head = fx.rev("HEAD");
    put(&fx.repo, b"edit.txt", &file(b"uncommitted edit\n"));
    // The agent works before and after the sync.
    put(&fx.ws, b"agent.txt", &file(b"agent work\n"));
    let (next, report) = partial(&fx, &repo, &sync);
    assert_eq!(next.head.as_deref(), Some(head.as_str()));
    assert_eq!(report.head, next.head);
    assert!(next.dirty);
    remove(&fx.ws, b"gone.txt");

    let exported = fx.export(&repo, &next, &fx.collect());
    assert_eq!(exported.base.as_deref(), Some(head.as_str()));
    let user_commit = exported.user_changes_commit.clone().unwrap();
    let agent_commit = exported.agent_commit.clone().unwrap();
    assert_eq!(fx.rev(&format!("{user_commit}^")), head);
    assert_eq!(fx.rev(&format!("{agent_commit}^")), user_commit);
    assert_eq!(exported.head, agent_commit);

    let mut expected = initial();
    expected.insert(b"committed.txt".to_vec(), file(b"committed later\n"));
    expected.insert(b"edit.txt".to_vec(), file(b"uncommitted edit\n"));
    assert_eq!(fx.ls_tree(&user_commit), expected);
    expected.insert(b"agent.txt".to_vec(), file(b"agent work\n"));
    expected.remove(b"gone.txt".as_slice());
    assert_eq!(fx.ls_tree(&agent_commit), expected);
    let status = fx.name_status(Some(&user_commit), &agent_commit);
    assert_eq!(status.len(), 2, "{status:?}");
    let fsck = fx.git_raw(&["fsck", "--strict", "--no-progress"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
fn files_and_directories_swap_places_and_odd_names_survive() {
    let (fx, repo, sync) = synced(&initial());
    // A file becomes a directory, a directory becomes a file, and names git must quote.
    remove(&fx.repo, b"edit.txt");
    put(
        &fx.repo,
        b"edit.txt/inside.txt",
        &file(b"now a directory\n"),
    );
    remove(&fx.repo, b"keep");
    put(&fx.repo, b"keep", &file(b"now a file\n"));
    put(
        &fx.repo,
        b"odd \"name\"\nwith newline \xff",
        &file(b"odd\n"),
    );

    let (next, report) = partial(&fx, &repo, &sync);
    assert!(report.conflicts.is_empty(), "{report:?}");
    assert_eq!(report.workspace_git_skipped, None);
    let expected = fx.ls_tree(&next.user_tree);
    assert_eq!(snapshot(&fx.ws), expected);
    assert!(fx.collect().is_empty());
    assert_eq!(ws_git(&fx, &["status", "--porcelain"]), b"");
    assert_eq!(ls_tree(&fx.home, &fx.ws, "HEAD"), expected);
}

#[test]
fn without_a_workspace_repository_the_files_still_sync_and_the_reason_is_given() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &initial());
    fx.commit_all("initial");
    let repo = fx.inspect();
    let mut opts = warren_sync::SyncOptions::new("test-1", "sbx");
    opts.sandbox_git = false;
    let sync = warren_sync::sync_in(&repo, &fx.ws, &fx.baseline, &opts).unwrap();
    // The agent makes a repository of its own; warren must not commit into it.
    ws_git(&fx, &["init", "-q"]);
    put(&fx.repo, b"edit.txt", &file(b"synced anyway\n"));
    let (_, report) = partial(&fx, &repo, &sync);
    assert_eq!(report.updated, 1);
    assert_eq!(
        std::fs::read(fx.ws.join("edit.txt")).unwrap(),
        b"synced anyway\n"
    );
    assert!(
        report
            .workspace_git_skipped
            .unwrap()
            .contains("did not create")
    );
    let log = git_cmd(&fx.home, &fx.ws)
        .args(["log", "--oneline"])
        .output()
        .unwrap();
    assert!(!log.status.success(), "the agent's repository got a commit");
}

#[test]
fn a_sha256_repository_syncs_partially() {
    let fx = Fixture::new();
    fx.git(&["init", "-q", "-b", "main", "--object-format=sha256"]);
    fx.git(&["config", "user.name", "Test User"]);
    fx.git(&["config", "user.email", "test@example.com"]);
    fx.write_tree(&fx.repo, &initial());
    fx.commit_all("initial");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    assert_eq!(ws_git(&fx, &["status", "--porcelain"]), b"");
    put(&fx.repo, b"edit.txt", &file(b"sha256 edit\n"));
    put(&fx.ws, b"agent.txt", &file(b"agent\n"));
    let (next, report) = partial(&fx, &repo, &sync);
    assert_eq!((report.updated, report.workspace_git_skipped), (1, None));
    assert_eq!(ws_git(&fx, &["status", "--porcelain"]), b"?? agent.txt\n");
    let exported = fx.export(&repo, &next, &fx.collect());
    assert_eq!(exported.head.len(), 64);
    let tree = fx.ls_tree("warren/test");
    assert_eq!(tree[b"edit.txt".as_slice()], file(b"sha256 edit\n"));
    assert_eq!(tree[b"agent.txt".as_slice()], file(b"agent\n"));
}
