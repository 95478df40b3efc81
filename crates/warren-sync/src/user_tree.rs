//! What the user sees, as a git tree in their own object store: the files `ls-files` lists
//! (tracked, plus untracked but not ignored) with their work-tree content. The tree is written
//! through a temporary index kept in the baseline dir, never through the user's own index, and
//! that index is kept between syncs: its stat data lets `git add -A` re-read only files whose
//! stat changed, so a repeated sync costs a stat pass, not a read of the whole repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::error::{Result, SyncError};
use crate::git::{FALLBACK_EMAIL, FALLBACK_NAME, Git, join_z, parse_oid, split_z};
use crate::paths::bytes_to_path;
use crate::repo::{RepoInfo, zero_oid_like};
use crate::safe_fs::{Entry, SafeRoot};

/// The temporary index's name in the baseline dir.
pub(crate) const USER_INDEX: &str = "user.index";

/// How ls-files listed a path.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Listed {
    Plain,
    Submodule,
    UntrackedRepo,
}

/// Every path the user sees, as git spells it.
pub(crate) struct Listing {
    pub(crate) paths: BTreeMap<Vec<u8>, Listed>,
}

impl Listing {
    /// Submodules and untracked nested repositories: never sent, reported instead.
    pub(crate) fn skipped(&self) -> Vec<PathBuf> {
        self.paths
            .iter()
            .filter(|(_, kind)| **kind != Listed::Plain)
            .map(|(raw, _)| bytes_to_path(raw))
            .collect()
    }
}

/// Lists the user's tracked files (from their index) and untracked, not ignored ones.
pub(crate) fn list(repo: &RepoInfo) -> Result<Listing> {
    let root = &repo.root;
    let staged = Git::user(root, "listing the tracked files to send")
        .args(["ls-files", "-z", "--cached", "--stage"])
        .run()?;
    let others = Git::user(root, "listing the untracked files to send")
        .args(["ls-files", "-z", "--others", "--exclude-standard"])
        .run()?;
    // Unmerged paths appear once per stage; the map keeps one.
    let mut paths = BTreeMap::new();
    for record in split_z(&staged) {
        let Some(tab) = record.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let kind = if record.starts_with(b"160000 ") {
            Listed::Submodule
        } else {
            Listed::Plain
        };
        paths.insert(record[tab + 1..].to_vec(), kind);
    }
    for record in split_z(&others) {
        // A trailing slash is how ls-files shows an untracked nested repository.
        match record.strip_suffix(b"/") {
            Some(dir) => paths.insert(dir.to_vec(), Listed::UntrackedRepo),
            None => paths.insert(record.to_vec(), Listed::Plain),
        };
    }
    Ok(Listing { paths })
}

/// Brings the kept temporary index up to date with the work tree and writes its tree. `git add`
/// honours the user's config and filters, so the tree is what the user would have committed.
pub(crate) fn write(repo: &RepoInfo, baseline_dir: &Path, listing: &Listing) -> Result<String> {
    let index = baseline_dir.join(USER_INDEX);
    // splitIndex off: a split index would write shared-index files into the user's git dir.
    // Light compression for the blobs `add` stores: a repeated sync is on the critical path of
    // every `exec`, and gc recompresses loose objects anyway.
    let git = |step: &str| {
        Git::user(&repo.root, step)
            .args([
                "-c",
                "core.splitIndex=false",
                "-c",
                "core.looseCompression=0",
            ])
            .env("GIT_INDEX_FILE", &index)
    };
    if index.symlink_metadata().is_err() {
        seed(repo, &index, &git)?;
    }
    git("recording the uncommitted changes")
        .args(["add", "-A", "--", "."])
        .run()?;

    let out = git("listing the temporary index")
        .args(["ls-files", "-z"])
        .run()?;
    let indexed: BTreeSet<&[u8]> = split_z(&out).collect();

    // Files the user staged despite an ignore rule are listed (they are in the user's index) but
    // `add -A` skips them; add them by literal name so the tree matches what is sent.
    let source = SafeRoot::open(&repo.root)
        .map_err(|e| SyncError::io("opening the work tree", &repo.root, e))?;
    let mut missing = Vec::new();
    for (raw, kind) in &listing.paths {
        if *kind == Listed::Plain && !indexed.contains(raw.as_slice()) {
            let on_disk = source.lstat(&bytes_to_path(raw)).map_err(|e| {
                SyncError::io(
                    "reading a file to send",
                    repo.root.join(bytes_to_path(raw)),
                    e,
                )
            })?;
            if matches!(on_disk, Entry::File { .. } | Entry::Symlink { .. }) {
                missing.push(raw.as_slice());
            }
        }
    }
    if !missing.is_empty() {
        git("recording staged files that match an ignore rule")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .args(["add", "-f", "--pathspec-from-file=-", "--pathspec-file-nul"])
            .run_input(join_z(missing).as_slice())?;
    }

    // Nothing the listing does not hold: `add -A` records an untracked nested repository as a
    // gitlink to a commit this repository lacks, and a kept index may still hold a path the user
    // has since untracked and ignores.
    let extra: Vec<&[u8]> = indexed
        .iter()
        .copied()
        .filter(|p| {
            listing
                .paths
                .get(*p)
                .is_none_or(|k| *k == Listed::UntrackedRepo)
        })
        .collect();
    if !extra.is_empty() {
        git("leaving unlisted paths out of the user tree")
            .args(["update-index", "--force-remove", "-z", "--stdin"])
            .run_input(join_z(extra).as_slice())?;
    }

    let out = git("writing the user tree").arg("write-tree").run()?;
    parse_oid(&out, "writing the user tree", &repo.root)
}

/// Starts the temporary index as a copy of the user's own, whose stat data is valid for every
/// file they have not touched since git last looked; without one, from HEAD (every file is then
/// read once).
fn seed(repo: &RepoInfo, index: &Path, git: &dyn Fn(&str) -> Git) -> Result<()> {
    let theirs = repo.git_dir.join("index");
    match std::fs::copy(&theirs, index) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(SyncError::io("copying the user's index", theirs, e)),
    }
    let read = git("loading HEAD into a temporary index").arg("read-tree");
    match &repo.head {
        Some(head) => read.arg(head),
        None => read.arg("--empty"),
    }
    .run()?;
    Ok(())
}

/// Points `refname` at a commit of `user_tree` (on top of HEAD), so the tree and any blob only it
/// holds survive gc while the sandbox lives. A first sync creates the ref (and fails if it
/// exists); a later one moves it. The commit is warren's, never shown as the user's work.
pub(crate) fn protect(
    repo: &RepoInfo,
    refname: &str,
    user_tree: &str,
    sandbox: &str,
    create: bool,
) -> Result<String> {
    let step = "recording the baseline commit";
    let mut commit = Git::user(&repo.root, step)
        .args(["commit-tree", "--no-gpg-sign", user_tree])
        .env("GIT_AUTHOR_NAME", FALLBACK_NAME)
        .env("GIT_AUTHOR_EMAIL", FALLBACK_EMAIL)
        .env("GIT_COMMITTER_NAME", FALLBACK_NAME)
        .env("GIT_COMMITTER_EMAIL", FALLBACK_EMAIL);
    if let Some(head) = &repo.head {
        commit = commit.args(["-p", head]);
    }
    let message = format!("warren baseline {sandbox}\n");
    let out = commit.run_input(message.as_bytes())?;
    let oid = parse_oid(&out, step, &repo.root)?;
    let mut update = Git::user(&repo.root, "moving the baseline ref").args([
        "update-ref",
        "-m",
        "warren: baseline",
        refname,
        &oid,
    ]);
    if create {
        update = update.arg(zero_oid_like(&oid));
    }
    update.run()?;
    Ok(oid)
}
