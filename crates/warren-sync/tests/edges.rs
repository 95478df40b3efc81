#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The less travelled paths: unborn and SHA-256 repositories, nothing to export, refused names,
//! not a repository, linked worktrees, persisted reports.

mod common;

use common::*;
use warren_domain::{ReasonCode, UserFacing};
use warren_sync::SyncOptions;

#[test]
fn no_agent_changes_still_creates_the_branch_at_the_user_changes() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b"a.txt", file(b"a\n"))]));
    fx.commit_all("initial");
    put(&fx.repo, b"a.txt", &file(b"dirty\n"));
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    // Touching a file without changing it is not a change.
    put(&fx.ws, b"a.txt", &file(b"dirty\n"));
    let changes = fx.collect();
    assert!(changes.is_empty(), "{changes:?}");
    let report = fx.export(&repo, &sync, &changes);
    assert_eq!(report.agent_commit, None);
    assert_eq!(Some(report.head.clone()), report.user_changes_commit);
    assert_eq!(fx.rev("warren/test"), report.head);
}

#[test]
fn unborn_branch_exports_a_root_user_commit_then_the_agent() {
    let fx = Fixture::new();
    fx.init_repo();
    put(&fx.repo, b"first.txt", &file(b"first\n"));
    let repo = fx.inspect();
    assert_eq!(repo.head, None);
    let sync = fx.sync(&repo);
    assert!(sync.dirty);
    put(&fx.ws, b"second.txt", &file(b"second\n"));
    let report = fx.export(&repo, &sync, &fx.collect());
    assert_eq!(report.base, None);
    let user = report.user_changes_commit.clone().unwrap();
    let agent = report.agent_commit.clone().unwrap();
    assert_eq!(fx.rev(&format!("{agent}^")), user);
    assert!(
        fx.git_raw(&["rev-parse", "--verify", "--quiet", &format!("{user}^")])
            .stdout
            .is_empty()
    );
    assert_eq!(
        fx.ls_tree("warren/test"),
        tree_of(&[
            (b"first.txt", file(b"first\n")),
            (b"second.txt", file(b"second\n"))
        ])
    );
    assert_eq!(report.files_changed, 2);
}

#[test]
fn existing_branch_is_refused_and_left_unchanged() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b"a.txt", file(b"a\n"))]));
    fx.commit_all("initial");
    fx.git(&["branch", "warren/test"]);
    let before = fx.branches();
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    put(&fx.ws, b"a.txt", &file(b"agent\n"));
    let changes = fx.collect();
    let err = warren_sync::export_branch(&repo, &sync, &fx.ws, &changes, &request("warren/test"))
        .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::BranchExists);
    assert!(err.to_string().contains("warren/test"), "{err}");
    assert_eq!(
        err.hint().as_deref(),
        Some("choose another --name or delete it with 'git branch -D warren/test'")
    );
    assert_eq!(fx.branches(), before);
}

#[test]
fn invalid_branch_names_are_refused_before_anything_is_written() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b"a.txt", file(b"a\n"))]));
    fx.commit_all("initial");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    put(&fx.ws, b"a.txt", &file(b"agent\n"));
    let changes = fx.collect();
    let before = fx.branches();
    for bad in ["", "-x", "a..b", "has space", "@{-1}", "x.lock"] {
        let err =
            warren_sync::export_branch(&repo, &sync, &fx.ws, &changes, &request(bad)).unwrap_err();
        assert_eq!(
            err.reason_code(),
            ReasonCode::InvalidArgument,
            "{bad}: {err}"
        );
    }
    assert_eq!(fx.branches(), before);
}

#[test]
fn not_a_git_repo_names_the_path_and_says_what_to_do() {
    let fx = Fixture::new();
    let err = warren_sync::inspect_repo(&fx.outside).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::NotAGitRepo);
    assert!(
        err.to_string().contains(fx.outside.to_str().unwrap()),
        "{err}"
    );
    assert_eq!(
        err.hint().as_deref(),
        Some("run 'git init' there or pass --repo pointing at a git work tree")
    );
    let missing = fx.outside.join("does-not-exist");
    let err = warren_sync::inspect_repo(&missing).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::NotAGitRepo);
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

#[test]
fn inspect_finds_the_root_from_a_subdirectory_and_a_linked_worktree() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b"sub/a.txt", file(b"a\n"))]));
    fx.commit_all("initial");
    let info = warren_sync::inspect_repo(&fx.repo.join("sub")).unwrap();
    assert_eq!(
        info.root.canonicalize().unwrap(),
        fx.repo.canonicalize().unwrap()
    );
    assert_eq!(info.git_dir, info.common_dir);

    let wt = fx.tmp.path().join("linked");
    fx.git(&["worktree", "add", "-q", "-b", "side", wt.to_str().unwrap()]);
    let linked = warren_sync::inspect_repo(&wt).unwrap();
    assert_eq!(
        linked.common_dir,
        fx.repo.join(".git").canonicalize().unwrap()
    );
    assert_ne!(linked.git_dir, linked.common_dir);
    assert_eq!(linked.head_ref.as_deref(), Some("refs/heads/side"));
}

#[test]
fn without_sandbox_git_the_workspace_has_no_git_dir() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b"a.txt", file(b"a\n"))]));
    fx.commit_all("initial");
    let repo = fx.inspect();
    let mut opts = SyncOptions::new("no-git", "sbx");
    opts.sandbox_git = false;
    let sync = warren_sync::sync_in(&repo, &fx.ws, &fx.baseline, &opts).unwrap();
    assert!(!fx.ws.join(".git").exists());
    assert_eq!(sync.files, 1);
    assert!(!fx.baseline.join("git").starts_with(&fx.ws));
}

#[test]
fn reports_survive_a_json_round_trip() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b"a.txt", file(b"a\n"))]));
    fx.commit_all("initial");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    put(&fx.ws, b"odd \xff name", &file(b"x"));
    let changes = fx.collect();
    let sync_back: warren_sync::SyncInReport =
        serde_json::from_str(&serde_json::to_string(&sync).unwrap()).unwrap();
    let changes_back: warren_sync::ChangeSet =
        serde_json::from_str(&serde_json::to_string(&changes).unwrap()).unwrap();
    assert_eq!(sync_back, sync);
    assert_eq!(changes_back, changes);
    let report = fx.export(&repo, &sync_back, &changes_back);
    assert!(
        fx.ls_tree(&report.head)
            .contains_key(b"odd \xff name".as_slice())
    );
}

#[test]
fn a_non_empty_workspace_or_reused_baseline_is_refused() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b"a.txt", file(b"a\n"))]));
    fx.commit_all("initial");
    let repo = fx.inspect();
    put(&fx.ws, b"leftover", &file(b"x"));
    let err =
        warren_sync::sync_in(&repo, &fx.ws, &fx.baseline, &SyncOptions::new("x", "s")).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::SyncFailed);
    assert!(
        err.to_string().contains("not empty") && err.to_string().contains(fx.ws.to_str().unwrap())
    );
    let err = warren_sync::sync_in(
        &repo,
        &fx.outside,
        &fx.baseline,
        &SyncOptions::new("bad..id", "s"),
    )
    .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::InvalidArgument);
}

#[test]
fn a_sha256_repository_round_trips() {
    let fx = Fixture::new();
    fx.git(&["init", "-q", "-b", "main", "--object-format=sha256"]);
    fx.git(&["config", "user.name", "Test User"]);
    fx.git(&["config", "user.email", "test@example.com"]);
    fx.write_tree(
        &fx.repo,
        &tree_of(&[(b"a.txt", file(b"a\n")), (b"gone.txt", file(b"g\n"))]),
    );
    fx.commit_all("initial");
    put(&fx.repo, b"a.txt", &file(b"dirty\n"));
    let repo = fx.inspect();
    assert_eq!(repo.head.as_ref().map(String::len), Some(64));
    let sync = fx.sync(&repo);
    remove(&fx.ws, b"gone.txt");
    put(&fx.ws, b"new.txt", &file(b"new\n"));
    let report = fx.export(&repo, &sync, &fx.collect());
    assert_eq!(report.head.len(), 64);
    assert_eq!(
        fx.ls_tree("warren/test"),
        tree_of(&[(b"a.txt", file(b"dirty\n")), (b"new.txt", file(b"new\n"))])
    );
    let fsck = fx.git_raw(&["fsck", "--strict", "--no-progress"]);
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
}

#[test]
fn a_file_staged_despite_an_ignore_rule_is_sent_and_kept_in_the_user_tree() {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(&[(b".gitignore", file(b"*.log\n"))]));
    fx.commit_all("initial");
    put(&fx.repo, b"keep.log", &file(b"staged on purpose\n"));
    put(&fx.repo, b"other.log", &file(b"really ignored\n"));
    fx.git(&["add", "-f", "keep.log"]);
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    assert!(sync.dirty);
    let expected = tree_of(&[
        (b".gitignore", file(b"*.log\n")),
        (b"keep.log", file(b"staged on purpose\n")),
    ]);
    assert_eq!(snapshot(&fx.ws), expected);
    assert_eq!(fx.ls_tree(&sync.user_tree), expected);
    // Untouched by the agent, so nothing to export beyond the user's changes.
    assert!(fx.collect().is_empty());
}

#[test]
fn submodules_and_nested_repositories_are_skipped_and_reported() {
    let fx = Fixture::new();
    fx.init_repo();
    put(&fx.repo, b"a.txt", &file(b"a\n"));
    let nested = |rel: &str| {
        let dir = fx.repo.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        git_in(&fx.home, &dir, &["init", "-q", "-b", "main"]);
        put(&dir, b"inner.txt", &file(b"inner\n"));
        git_in(&fx.home, &dir, &["add", "-A"]);
        git_in(&fx.home, &dir, &["commit", "-q", "-m", "inner"]);
    };
    nested("sub");
    fx.commit_all("with a gitlink");
    nested("vendor/lib");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    assert_eq!(
        sync.skipped_submodules,
        vec![
            std::path::PathBuf::from("sub"),
            std::path::PathBuf::from("vendor/lib")
        ]
    );
    assert_eq!(snapshot(&fx.ws), tree_of(&[(b"a.txt", file(b"a\n"))]));
    assert!(
        !sync.dirty,
        "an untracked nested repository is not a user change"
    );

    put(&fx.ws, b"a.txt", &file(b"agent\n"));
    let report = fx.export(&repo, &sync, &fx.collect());
    let listing = String::from_utf8(fx.git(&["ls-tree", "-r", &report.head])).unwrap();
    assert!(
        listing.contains("160000 commit") && listing.contains("\tsub\n"),
        "{listing}"
    );
    assert!(!listing.contains("vendor"), "{listing}");
    assert_eq!(fx.name_status(Some(&fx.rev("main")), &report.head).len(), 1);
}
