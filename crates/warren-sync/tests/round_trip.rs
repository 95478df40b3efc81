#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The ordinary flow, checked the way a user would check it with git: what lands in the sandbox,
//! what the exported branch holds, and that the user's checkout is untouched.

mod common;

use std::collections::BTreeMap;

use common::*;
use warren_sync::{ChangeKind, MODE_EXECUTABLE, MODE_SYMLINK};

/// Everything a user would notice changing in their checkout.
#[derive(Debug, PartialEq)]
struct UserState {
    files: Tree,
    index: Vec<u8>,
    head_file: Vec<u8>,
    head: String,
    stash: Vec<u8>,
    cached_diff: Vec<u8>,
}

fn user_state(fx: &Fixture) -> UserState {
    let index = std::fs::read(fx.repo.join(".git/index")).unwrap();
    UserState {
        files: snapshot(&fx.repo),
        index,
        head_file: std::fs::read(fx.repo.join(".git/HEAD")).unwrap(),
        head: fx.rev("HEAD"),
        stash: fx.git(&["stash", "list"]),
        cached_diff: fx.git(&["diff", "--cached", "--name-status"]),
    }
}

fn committed_files(fx: &Fixture) -> Tree {
    let abs = fx.outside.join("host-file");
    tree_of(&[
        (b"bin.dat", file(&all_bytes())),
        (b"run.sh", exe(b"#!/bin/sh\necho hi\n")),
        (b"link-rel", link(b"dir/target.txt")),
        (b"link-abs", link(abs.to_str().unwrap().as_bytes())),
        (b"empty", file(b"")),
        (b"with space.txt", file(b"spaced\n")),
        (b"new\nline.txt", file(b"newline in name\n")),
        ("ünïcödé.txt".as_bytes(), file("ünï\n".as_bytes())),
        (b"-dash.txt", file(b"dash\n")),
        (b"dir/target.txt", file(b"target\n")),
        (b"dir/sub/deep.txt", file(b"deep\n")),
        (b"tracked-deleted.txt", file(b"to be deleted\n")),
        (b"modified.txt", file(b"original\n")),
        (b".gitignore", file(b"ignored.log\n*.tmp\n")),
    ])
}

#[test]
fn round_trip_sends_what_the_user_sees_and_exports_user_then_agent_commits() {
    let fx = Fixture::new();
    fx.init_repo();
    std::fs::write(fx.outside.join("host-file"), b"host secret\n").unwrap();
    fx.write_tree(&fx.repo, &committed_files(&fx));
    fx.commit_all("initial");
    let head = fx.rev("HEAD");

    // The user's uncommitted state.
    put(
        &fx.repo,
        b"modified.txt",
        &file(b"edited but not committed\n"),
    );
    put(&fx.repo, b"untracked.txt", &file(b"untracked\n"));
    put(&fx.repo, b"ignored.log", &file(b"ignored\n"));
    put(&fx.repo, b"scratch.tmp", &file(b"ignored too\n"));
    remove(&fx.repo, b"tracked-deleted.txt");
    fx.git(&["stash", "list"]);
    let before = user_state(&fx);

    let repo = fx.inspect();
    assert_eq!(repo.head.as_deref(), Some(head.as_str()));
    assert_eq!(repo.head_ref.as_deref(), Some("refs/heads/main"));
    let sync = fx.sync(&repo);
    assert!(sync.dirty);
    assert_eq!(sync.head.as_deref(), Some(head.as_str()));

    let mut expected = committed_files(&fx);
    expected.insert(
        b"modified.txt".to_vec(),
        file(b"edited but not committed\n"),
    );
    expected.insert(b"untracked.txt".to_vec(), file(b"untracked\n"));
    expected.remove(b"tracked-deleted.txt".as_slice());
    assert_eq!(
        snapshot(&fx.ws),
        expected,
        "the workspace holds exactly the user's view"
    );
    assert!(!fx.ws.join("ignored.log").exists() && !fx.ws.join("scratch.tmp").exists());
    assert_eq!(sync.files + sync.symlinks, expected.len());
    assert_eq!(sync.symlinks, 2);
    let sent_bytes: u64 = expected
        .values()
        .map(|n| match n {
            Node::File { bytes, .. } => bytes.len() as u64,
            Node::Symlink(_) => 0,
        })
        .sum();
    assert_eq!(sync.bytes, sent_bytes);
    assert_eq!(
        fx.ls_tree(&sync.user_tree),
        expected,
        "the user tree is what was sent"
    );
    assert!(
        fx.git(&["for-each-ref", "refs/warren/baselines/test-1"])
            .len()
            > 40,
        "the baseline ref protects the user tree"
    );

    // The agent's own repository shows a clean baseline of what was sent.
    let ws_status = git_in(&fx.home, &fx.ws, &["status", "--porcelain"]);
    assert_eq!(String::from_utf8_lossy(&ws_status), "");
    assert_eq!(ls_tree(&fx.home, &fx.ws, "HEAD"), expected);

    // The agent works.
    put(&fx.ws, b"agent/a/b/c.txt", &file(b"deep new\n"));
    put(&fx.ws, b"agent/link", &link(b"../bin.dat"));
    put(&fx.ws, b"dir/target.txt", &file(b"target, improved\n"));
    remove(&fx.ws, b"with space.txt");
    chmod(&fx.ws, b"dir/sub/deep.txt", 0o755);
    put(&fx.ws, b"-dash.txt", &link(b"run.sh"));
    // Same size, different bytes: only a content comparison can see it.
    let mut swapped = all_bytes();
    swapped.swap(0, 1);
    put(&fx.ws, b"bin.dat", &file(&swapped));
    put(
        &fx.ws,
        b"untracked.txt",
        &file(b"untracked, then edited by the agent\n"),
    );
    git_in(&fx.home, &fx.ws, &["status", "--porcelain"]); // the agent's git use is harmless

    let changes = fx.collect();
    let summary: BTreeMap<Vec<u8>, (ChangeKind, Option<u32>)> = changes
        .changes
        .iter()
        .map(|c| {
            (
                c.path.as_os_str().as_encoded_bytes().to_vec(),
                (c.kind, c.mode),
            )
        })
        .collect();
    let want: BTreeMap<Vec<u8>, (ChangeKind, Option<u32>)> = [
        (
            &b"-dash.txt"[..],
            (ChangeKind::Modified, Some(MODE_SYMLINK)),
        ),
        (b"agent/a/b/c.txt", (ChangeKind::Added, Some(0o100644))),
        (b"agent/link", (ChangeKind::Added, Some(MODE_SYMLINK))),
        (b"bin.dat", (ChangeKind::Modified, Some(0o100644))),
        (
            b"dir/sub/deep.txt",
            (ChangeKind::Modified, Some(MODE_EXECUTABLE)),
        ),
        (b"dir/target.txt", (ChangeKind::Modified, Some(0o100644))),
        (b"untracked.txt", (ChangeKind::Modified, Some(0o100644))),
        (b"with space.txt", (ChangeKind::Deleted, None)),
    ]
    .into_iter()
    .map(|(p, v)| (p.to_vec(), v))
    .collect();
    assert_eq!(summary, want);
    assert_eq!(
        (changes.added(), changes.modified(), changes.deleted()),
        (2, 5, 1)
    );

    let report = fx.export(&repo, &sync, &changes);
    assert_eq!(report.branch, "warren/test");
    assert_eq!(report.base.as_deref(), Some(head.as_str()));
    let user_commit = report.user_changes_commit.clone().unwrap();
    let agent_commit = report.agent_commit.clone().unwrap();
    assert_eq!(report.head, agent_commit);
    assert_eq!(fx.rev("refs/heads/warren/test"), agent_commit);

    // History: HEAD -> user changes -> agent.
    let log = String::from_utf8(fx.git(&["log", "--format=%H %P|%an <%ae>|%cn|%s", "warren/test"]))
        .unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[0],
        format!(
            "{agent_commit} {user_commit}|opencode <agent@warren.invalid>|Test User|agent: did the task"
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{user_commit} {head}|Test User <test@example.com>|Test User|warren: your uncommitted changes"
        )
    );
    assert!(lines[2].starts_with(&format!("{head} |")));

    let user_diff = fx.name_status(Some(&head), &user_commit);
    let want_user: BTreeMap<Vec<u8>, String> = [
        (&b"modified.txt"[..], "M"),
        (b"untracked.txt", "A"),
        (b"tracked-deleted.txt", "D"),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_vec(), s.to_owned()))
    .collect();
    assert_eq!(user_diff, want_user);

    let agent_diff = fx.name_status(Some(&user_commit), &agent_commit);
    let want_agent: BTreeMap<Vec<u8>, String> = [
        (&b"-dash.txt"[..], "T"),
        (b"agent/a/b/c.txt", "A"),
        (b"agent/link", "A"),
        (b"bin.dat", "M"),
        (b"dir/sub/deep.txt", "M"),
        (b"dir/target.txt", "M"),
        (b"untracked.txt", "M"),
        (b"with space.txt", "D"),
    ]
    .into_iter()
    .map(|(p, s)| (p.to_vec(), s.to_owned()))
    .collect();
    assert_eq!(agent_diff, want_agent);
    assert_eq!(
        report.files_changed,
        fx.name_status(Some(&head), &agent_commit).len()
    );

    // The branch holds exactly the workspace, byte for byte and mode for mode.
    assert_eq!(fx.ls_tree("warren/test"), snapshot(&fx.ws));
    assert_eq!(fx.ls_tree(&user_commit), expected);

    let fsck = fx.git_raw(&["fsck", "--strict", "--no-progress"]);
    assert!(
        fsck.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert!(!String::from_utf8_lossy(&fsck.stderr).contains("error"));

    // The user's checkout is exactly as it was.
    let after = user_state(&fx);
    assert_eq!(after, before);
    assert_eq!(fx.git(&["symbolic-ref", "HEAD"]), b"refs/heads/main\n");

    // Teardown releases the baseline ref, and doing it twice is fine.
    warren_sync::release_baseline(&repo, "test-1").unwrap();
    warren_sync::release_baseline(&repo, "test-1").unwrap();
    assert!(fx.git(&["for-each-ref", "refs/warren"]).is_empty());
}

#[test]
fn clean_repo_exports_a_single_agent_commit_on_head() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(
        &fx.repo,
        &tree_of(&[(b"a.txt", file(b"a\n")), (b"b/c.txt", file(b"c\n"))]),
    );
    fx.commit_all("initial");
    let head = fx.rev("HEAD");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    assert!(!sync.dirty);
    assert_eq!(sync.user_tree, fx.rev("HEAD^{tree}"));

    put(&fx.ws, b"a.txt", &file(b"a, changed\n"));
    let changes = fx.collect();
    assert_eq!(changes.len(), 1);
    let report = fx.export(&repo, &sync, &changes);
    assert_eq!(report.user_changes_commit, None);
    let agent = report.agent_commit.clone().unwrap();
    assert_eq!(fx.rev(&format!("{agent}^")), head);
    assert_eq!(report.files_changed, 1);
    let diff = fx.name_status(Some(&head), &agent);
    assert_eq!(
        diff.into_iter().collect::<Vec<_>>(),
        vec![(b"a.txt".to_vec(), "M".to_owned())]
    );
}
