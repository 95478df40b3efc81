//! Shared fixtures: real git repositories in tempdirs, with git isolated from the machine's own
//! configuration, and snapshots of trees on disk and in git to compare byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warren_sync::{
    ChangeSet, ExportReport, ExportRequest, Limits, RepoInfo, SyncInReport, SyncOptions,
};

/// A file as a user would check it: bytes and executable bit, or a symlink's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File { bytes: Vec<u8>, exec: bool },
    Symlink(Vec<u8>),
}

pub fn file(bytes: &[u8]) -> Node {
    Node::File {
        bytes: bytes.to_vec(),
        exec: false,
    }
}

pub fn exe(bytes: &[u8]) -> Node {
    Node::File {
        bytes: bytes.to_vec(),
        exec: true,
    }
}

pub fn link(target: &[u8]) -> Node {
    Node::Symlink(target.to_vec())
}

pub type Tree = BTreeMap<Vec<u8>, Node>;

/// One test's world: a home dir for git, the user's repo, a workspace, a baseline dir and a
/// place outside all of them.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub repo: PathBuf,
    pub ws: PathBuf,
    pub baseline: PathBuf,
    pub outside: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let p = |n: &str| {
            let d = tmp.path().join(n);
            std::fs::create_dir_all(&d).unwrap();
            d
        };
        let (home, repo, ws, baseline, outside) =
            (p("home"), p("repo"), p("ws"), p("baseline"), p("outside"));
        Self {
            tmp,
            home,
            repo,
            ws,
            baseline,
            outside,
        }
    }

    /// A repo with a local identity, so warren's commits are deterministic on any machine.
    pub fn init_repo(&self) {
        self.git(&["init", "-q", "-b", "main"]);
        self.git(&["config", "user.name", "Test User"]);
        self.git(&["config", "user.email", "test@example.com"]);
    }

    pub fn git(&self, args: &[&str]) -> Vec<u8> {
        git_in(&self.home, &self.repo, args)
    }

    pub fn git_raw(&self, args: &[&str]) -> Output {
        git_cmd(&self.home, &self.repo).args(args).output().unwrap()
    }

    pub fn write_tree(&self, dir: &Path, tree: &Tree) {
        for (path, node) in tree {
            put(dir, path, node);
        }
    }

    pub fn commit_all(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    pub fn rev(&self, rev: &str) -> String {
        String::from_utf8(self.git(&["rev-parse", rev]))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn inspect(&self) -> RepoInfo {
        warren_sync::inspect_repo(&self.repo).unwrap()
    }

    pub fn sync(&self, repo: &RepoInfo) -> SyncInReport {
        warren_sync::sync_in(
            repo,
            &self.ws,
            &self.baseline,
            &SyncOptions::new("test-1", "sbx"),
        )
        .unwrap()
    }

    pub fn collect(&self) -> ChangeSet {
        warren_sync::collect_changes(&self.ws, &self.baseline, &Limits::default()).unwrap()
    }

    pub fn export(
        &self,
        repo: &RepoInfo,
        sync: &SyncInReport,
        changes: &ChangeSet,
    ) -> ExportReport {
        warren_sync::export_branch(repo, sync, &self.ws, changes, &request("warren/test")).unwrap()
    }

    pub fn branches(&self) -> Vec<u8> {
        self.git(&[
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
        ])
    }

    /// Every object in the repository's store (and its alternates), contents included.
    pub fn all_objects(&self) -> Vec<u8> {
        self.git(&["cat-file", "--batch-all-objects", "--batch"])
    }

    pub fn ls_tree(&self, rev: &str) -> Tree {
        ls_tree(&self.home, &self.repo, rev)
    }

    /// `git diff-tree --name-status` between two commits (or a root commit against nothing).
    pub fn name_status(&self, from: Option<&str>, to: &str) -> BTreeMap<Vec<u8>, String> {
        let mut args = vec!["diff-tree", "-r", "-z", "--no-renames", "--name-status"];
        match from {
            Some(f) => args.push(f),
            None => args.push("--root"),
        }
        args.push(to);
        let out = self.git(&args);
        let mut fields = out.split(|b| *b == 0).filter(|s| !s.is_empty());
        if from.is_none() {
            fields.next(); // the commit id diff-tree prints for --root
        }
        let mut map = BTreeMap::new();
        while let (Some(status), Some(path)) = (fields.next(), fields.next()) {
            map.insert(path.to_vec(), String::from_utf8(status.to_vec()).unwrap());
        }
        map
    }
}

pub fn request(branch: &str) -> ExportRequest {
    ExportRequest {
        branch: branch.to_owned(),
        agent_message: "agent: did the task".to_owned(),
        user_changes_message: "warren: your uncommitted changes".to_owned(),
        agent_author: ("opencode".to_owned(), "agent@warren.invalid".to_owned()),
    }
}

pub fn git_cmd(home: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test User")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test User")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_WORK_TREE");
    cmd
}

pub fn git_in(home: &Path, dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = git_cmd(home, dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn ls_tree(home: &Path, repo: &Path, rev: &str) -> Tree {
    let out = git_in(home, repo, &["ls-tree", "-r", "-z", "--full-tree", rev]);
    let mut tree = Tree::new();
    for record in out.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let tab = record.iter().position(|b| *b == b'\t').unwrap();
        let meta = std::str::from_utf8(&record[..tab]).unwrap();
        let mut parts = meta.split(' ');
        let (mode, _kind, oid) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let bytes = git_in(home, repo, &["cat-file", "blob", oid]);
        let node = match mode {
            "100644" => Node::File { bytes, exec: false },
            "100755" => Node::File { bytes, exec: true },
            "120000" => Node::Symlink(bytes),
            other => panic!("unexpected mode {other} in {rev}"),
        };
        tree.insert(record[tab + 1..].to_vec(), node);
    }
    tree
}

pub fn path_of(dir: &Path, rel: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(rel))
}

/// Writes one node, replacing whatever was at the path (file, symlink or empty directory).
pub fn put(dir: &Path, rel: &[u8], node: &Node) {
    let path = path_of(dir, rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    remove(dir, rel);
    match node {
        Node::File { bytes, exec } => {
            std::fs::write(&path, bytes).unwrap();
            let mode = if *exec { 0o755 } else { 0o644 };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Node::Symlink(target) => {
            std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).unwrap()
        }
    }
}

pub fn remove(dir: &Path, rel: &[u8]) {
    let path = path_of(dir, rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path).unwrap(),
        Ok(_) => std::fs::remove_file(&path).unwrap(),
        Err(_) => {}
    }
}

pub fn chmod(dir: &Path, rel: &[u8], mode: u32) {
    std::fs::set_permissions(path_of(dir, rel), std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Everything under `dir` except a top-level `.git`, as files, exec bits and symlink targets.
pub fn snapshot(dir: &Path) -> Tree {
    fn walk(base: &Path, dir: &Path, tree: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            if rel == b".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                tree.insert(rel, Node::Symlink(target.as_os_str().as_bytes().to_vec()));
            } else if meta.is_dir() {
                walk(base, &path, tree);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let exec = meta.permissions().mode() & 0o100 != 0;
                tree.insert(rel, Node::File { bytes, exec });
            }
        }
    }
    let mut tree = Tree::new();
    walk(dir, dir, &mut tree);
    tree
}

pub fn tree_of(entries: &[(&[u8], Node)]) -> Tree {
    entries
        .iter()
        .cloned()
        .map(|(p, n)| (p.to_vec(), n))
        .collect()
}

pub fn all_bytes() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}

/// A random-ish token so markers from parallel tests never collide.
pub fn token() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{t}", std::process::id())
}
