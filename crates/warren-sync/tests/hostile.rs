#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A sandbox that tries to make the host read, run or export what it should not: every attempt
//! is either exported harmlessly (a symlink stays a symlink) or refused with nothing created.

mod common;

use std::os::unix::ffi::OsStrExt;

use common::*;
use rustix::fs::{FileType, Mode};
use warren_domain::{ReasonCode, UserFacing};
use warren_sync::{ChangeKind, Limits, MODE_SYMLINK};

fn synced(files: &[(&[u8], Node)]) -> (Fixture, warren_sync::RepoInfo, warren_sync::SyncInReport) {
    let fx = Fixture::new();
    fx.init_repo();
    fx.write_tree(&fx.repo, &tree_of(files));
    fx.commit_all("initial");
    let repo = fx.inspect();
    let sync = fx.sync(&repo);
    (fx, repo, sync)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_symlink_to_a_host_secret_is_exported_as_a_link_and_the_secret_never_read() {
    let (fx, repo, sync) = synced(&[(b"config.txt", file(b"settings\n"))]);
    let secret = format!("TOP-SECRET-{}", token());
    let secret_path = fx.outside.join("secret.txt");
    std::fs::write(&secret_path, &secret).unwrap();

    put(
        &fx.ws,
        b"config.txt",
        &link(secret_path.as_os_str().as_bytes()),
    );
    let changes = fx.collect();
    assert_eq!(changes.changes.len(), 1);
    assert_eq!(changes.changes[0].mode, Some(MODE_SYMLINK));
    let report = fx.export(&repo, &sync, &changes);

    let tree = fx.ls_tree(&report.head);
    assert_eq!(
        tree[b"config.txt".as_slice()],
        link(secret_path.as_os_str().as_bytes())
    );
    assert!(
        !contains(&fx.all_objects(), secret.as_bytes()),
        "the secret's bytes reached the repo"
    );
    let baseline_objects = git_in(
        &fx.home,
        &fx.repo,
        &[
            "--git-dir",
            fx.baseline.join("git").to_str().unwrap(),
            "cat-file",
            "--batch-all-objects",
            "--batch",
        ],
    );
    assert!(!contains(&baseline_objects, secret.as_bytes()));
}

#[test]
fn a_directory_replaced_by_a_symlink_to_the_host_exports_only_the_link() {
    let (fx, repo, sync) = synced(&[
        (b"dir/a.txt", file(b"a\n")),
        (b"dir/b.txt", file(b"b\n")),
        (b"keep.txt", file(b"keep\n")),
    ]);
    let secret = format!("OUTSIDE-{}", token());
    let host_dir = fx.outside.join("hostdir");
    std::fs::create_dir_all(host_dir.join("nested")).unwrap();
    // Same names as the baseline files, so following the link would look like a modification.
    std::fs::write(host_dir.join("a.txt"), &secret).unwrap();
    std::fs::write(host_dir.join("b.txt"), b"b\n").unwrap();
    std::fs::write(host_dir.join("c.txt"), &secret).unwrap();
    std::fs::write(host_dir.join("nested/d.txt"), &secret).unwrap();

    remove(&fx.ws, b"dir");
    put(&fx.ws, b"dir", &link(host_dir.as_os_str().as_bytes()));
    let changes = fx.collect();
    let kinds: Vec<(Vec<u8>, ChangeKind)> = changes
        .changes
        .iter()
        .map(|c| (c.path.as_os_str().as_bytes().to_vec(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (b"dir".to_vec(), ChangeKind::Added),
            (b"dir/a.txt".to_vec(), ChangeKind::Deleted),
            (b"dir/b.txt".to_vec(), ChangeKind::Deleted),
        ]
    );
    let report = fx.export(&repo, &sync, &changes);
    assert_eq!(
        fx.ls_tree(&report.head),
        tree_of(&[
            (b"dir", link(host_dir.as_os_str().as_bytes())),
            (b"keep.txt", file(b"keep\n"))
        ])
    );
    assert!(!contains(&fx.all_objects(), secret.as_bytes()));
}

#[test]
fn a_symlinked_parent_planted_inside_the_workspace_is_not_followed() {
    let (fx, repo, sync) = synced(&[
        (b"src/lib.rs", file(b"fn a() {}\n")),
        (b"other/x.rs", file(b"x\n")),
    ]);
    // `src` now points at a sibling directory that has a different lib.rs.
    put(&fx.ws, b"other/lib.rs", &file(b"fn evil() {}\n"));
    remove(&fx.ws, b"src");
    put(&fx.ws, b"src", &link(b"other"));
    let changes = fx.collect();
    let report = fx.export(&repo, &sync, &changes);
    assert_eq!(
        fx.ls_tree(&report.head),
        tree_of(&[
            (b"other/lib.rs", file(b"fn evil() {}\n")),
            (b"other/x.rs", file(b"x\n")),
            (b"src", link(b"other")),
        ])
    );
}

#[test]
fn an_oversized_file_is_refused_naming_file_size_limit_and_key() {
    let (fx, _repo, _sync) = synced(&[(b"a.txt", file(b"a\n"))]);
    let before = fx.branches();
    put(&fx.ws, b"big.bin", &file(&vec![7u8; 5000]));
    let limits = Limits {
        max_file_bytes: 1000,
        ..Limits::default()
    };
    let err = warren_sync::collect_changes(&fx.ws, &fx.baseline, &limits).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::UnsafeSandboxOutput);
    let msg = err.to_string();
    for needle in ["big.bin", "5000", "1000", "sync.max_file_bytes"] {
        assert!(msg.contains(needle), "{needle} missing from: {msg}");
    }
    assert_eq!(fx.branches(), before);

    let limits = Limits {
        max_total_bytes: 4000,
        ..Limits::default()
    };
    let err = warren_sync::collect_changes(&fx.ws, &fx.baseline, &limits).unwrap_err();
    assert!(err.to_string().contains("sync.max_total_bytes"), "{err}");
    put(&fx.ws, b"small.txt", &file(b"s"));
    let limits = Limits {
        max_files: 1,
        ..Limits::default()
    };
    let err = warren_sync::collect_changes(&fx.ws, &fx.baseline, &limits).unwrap_err();
    assert!(err.to_string().contains("sync.max_files"), "{err}");
}

#[test]
fn a_file_that_grows_after_collection_is_refused_and_no_branch_is_made() {
    let (fx, repo, sync) = synced(&[(b"a.txt", file(b"a\n"))]);
    let before = fx.branches();
    put(&fx.ws, b"a.txt", &file(b"small\n"));
    let changes = fx.collect();
    put(&fx.ws, b"a.txt", &file(&vec![b'x'; 10_000]));
    let err = warren_sync::export_branch(&repo, &sync, &fx.ws, &changes, &request("warren/test"))
        .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::UnsafeSandboxOutput);
    assert!(err.to_string().contains("a.txt"), "{err}");
    assert_eq!(fx.branches(), before);
}

fn mkfifo(path: &std::path::Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

#[test]
fn a_fifo_replacing_a_file_is_refused_with_a_clear_error_and_no_branch() {
    let (fx, _repo, _sync) = synced(&[
        (b"pipes/data.txt", file(b"data\n")),
        (b"a.txt", file(b"a\n")),
    ]);
    let before = fx.branches();
    remove(&fx.ws, b"pipes/data.txt");
    mkfifo(&fx.ws.join("pipes/data.txt"));
    put(&fx.ws, b"a.txt", &file(b"agent\n"));
    let err = warren_sync::collect_changes(&fx.ws, &fx.baseline, &Limits::default()).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::UnsafeSandboxOutput);
    let msg = err.to_string();
    assert!(
        msg.contains("pipes/data.txt") && msg.contains("FIFO"),
        "{msg}"
    );
    assert_eq!(fx.branches(), before);
}

#[test]
fn a_new_fifo_is_left_out_like_git_would_and_never_opened() {
    // git's own walk skips FIFOs, sockets and devices it has never tracked; so does the export,
    // and nothing blocks trying to read one.
    let (fx, repo, sync) = synced(&[(b"a.txt", file(b"a\n"))]);
    mkfifo(&fx.ws.join("run/server.fifo"));
    put(&fx.ws, b"a.txt", &file(b"agent\n"));
    let changes = fx.collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    let report = fx.export(&repo, &sync, &changes);
    assert_eq!(
        fx.ls_tree(&report.head),
        tree_of(&[(b"a.txt", file(b"agent\n"))])
    );
}

#[test]
fn a_hostile_git_dir_in_the_workspace_is_never_run_nor_exported() {
    let (fx, repo, sync) = synced(&[(b"a.txt", file(b"a\n"))]);
    let marker = std::env::temp_dir().join(format!("pwned-{}", token()));
    let touch = format!("touch {}", marker.display());
    let hooks = fx.ws.join(".git/hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for hook in [
        "pre-commit",
        "post-commit",
        "post-index-change",
        "reference-transaction",
        "post-checkout",
    ] {
        put(
            &hooks,
            hook.as_bytes(),
            &exe(format!("#!/bin/sh\n{touch}\n").as_bytes()),
        );
    }
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = \"{touch}\"\n\thooksPath = {}\n",
        hooks.display()
    );
    std::fs::write(fx.ws.join(".git/config"), config.as_bytes()).unwrap();
    std::fs::write(
        fx.ws.join(".git/planted"),
        b"should never leave the sandbox",
    )
    .unwrap();
    // A nested repository with the same trap.
    std::fs::create_dir_all(fx.ws.join("vendor/lib/.git")).unwrap();
    std::fs::write(fx.ws.join("vendor/lib/.git/config"), config.as_bytes()).unwrap();
    std::fs::write(
        fx.ws.join("vendor/lib/.git/HEAD"),
        b"ref: refs/heads/main\n",
    )
    .unwrap();
    std::fs::create_dir_all(fx.ws.join("vendor/lib/.git/objects")).unwrap();
    std::fs::create_dir_all(fx.ws.join("vendor/lib/.git/refs")).unwrap();
    put(&fx.ws, b"vendor/lib/code.rs", &file(b"nested\n"));
    put(&fx.ws, b"a.txt", &file(b"agent\n"));

    let changes = fx.collect();
    assert_eq!(
        changes.skipped_nested_repos,
        vec![std::path::PathBuf::from("vendor/lib")]
    );
    let report = fx.export(&repo, &sync, &changes);
    assert!(
        !marker.exists(),
        "a hook or fsmonitor from the sandbox ran on the host"
    );
    let tree = fx.ls_tree(&report.head);
    assert_eq!(tree, tree_of(&[(b"a.txt", file(b"agent\n"))]));
    assert!(!contains(
        &fx.all_objects(),
        b"should never leave the sandbox"
    ));
}

#[test]
fn a_dot_git_in_another_spelling_is_refused() {
    let (fx, _repo, _sync) = synced(&[(b"a.txt", file(b"a\n"))]);
    put(&fx.ws, b"sub/.GIT/config", &file(b"[core]\n"));
    let err = warren_sync::collect_changes(&fx.ws, &fx.baseline, &Limits::default()).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::UnsafeSandboxOutput);
    assert!(err.to_string().contains("sub/.GIT/config"), "{err}");
}

#[test]
fn agent_gitattributes_do_not_transform_exported_bytes() {
    let (fx, repo, sync) = synced(&[(b"notes.txt", file(b"one\n"))]);
    put(
        &fx.ws,
        b".gitattributes",
        &file(b"* text eol=crlf\n* filter=evil\n"),
    );
    let mixed = b"a\r\nb\nc\r\n\r\nd".to_vec();
    put(&fx.ws, b"mixed.txt", &file(&mixed));
    put(&fx.ws, b"notes.txt", &file(b"one\ntwo\n"));
    let report = fx.export(&repo, &sync, &fx.collect());
    assert_eq!(
        fx.ls_tree(&report.head),
        tree_of(&[
            (b".gitattributes", file(b"* text eol=crlf\n* filter=evil\n")),
            (b"mixed.txt", file(&mixed)),
            (b"notes.txt", file(b"one\ntwo\n")),
        ])
    );
}

#[test]
fn an_edit_agent_attributes_would_normalise_away_is_still_exported() {
    // "名名" in UTF-8 and in UTF-16 with a BOM are both 6 bytes; under the agent's
    // working-tree-encoding attribute git would see the new file as unchanged.
    let utf8 = "名名".as_bytes().to_vec();
    let utf16 = vec![0xff, 0xfe, 0x0d, 0x54, 0x0d, 0x54];
    assert_eq!(utf8.len(), utf16.len());
    let (fx, repo, sync) = synced(&[(b"name.txt", file(&utf8))]);
    put(
        &fx.ws,
        b".gitattributes",
        &file(b"name.txt working-tree-encoding=UTF-16\n"),
    );
    put(&fx.ws, b"name.txt", &file(&utf16));
    let changes = fx.collect();
    assert!(
        changes
            .changes
            .iter()
            .any(|c| c.path.as_os_str() == "name.txt"),
        "{changes:?}"
    );
    let report = fx.export(&repo, &sync, &changes);
    assert_eq!(
        fx.ls_tree(&report.head)[b"name.txt".as_slice()],
        file(&utf16)
    );
}
