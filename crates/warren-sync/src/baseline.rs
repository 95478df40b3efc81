//! The host's trusted baseline: a git dir outside the workspace (never bound into the sandbox)
//! whose index holds the workspace as last synced, so finding what the agent changed is a stat
//! pass. The agent's own repository inside the workspace is `sandbox_git`'s.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, SyncError};
use crate::git::{Git, one_line};
use crate::paths::{bytes_to_path, path_bytes};
use crate::repo::RepoInfo;

/// Highest-precedence attributes for the baseline: whatever `.gitattributes` the agent writes,
/// git compares and hashes the bytes on disk, untransformed.
const NEUTRAL_ATTRIBUTES: &str = "* -text -filter -ident -working-tree-encoding !eol\n";

/// A git command on the baseline dir, seeing `workspace` as its work tree.
pub(crate) fn baseline_git(step: &str, git_dir: &Path, workspace: &Path) -> Git {
    Git::isolated(step, workspace)
        .arg("--git-dir")
        .arg(git_dir)
        .arg("--work-tree")
        .arg(workspace)
        .current_dir(workspace)
}

/// The repository's object format (`sha1` or `sha256`), which the baseline and the workspace's
/// own repository must share with it.
pub(crate) fn object_format(repo: &RepoInfo) -> Result<String> {
    let format = Git::user(&repo.root, "reading the repository's object format")
        .args(["rev-parse", "--show-object-format"])
        .run()?;
    Ok(String::from_utf8_lossy(one_line(&format)).into_owned())
}

/// Makes `git_dir`: objects borrowed from the user's store, the user's ignore rules, and neutral
/// attributes. Its index is written next, by [`write_index`] or [`index_workspace`].
///
/// The index may name blobs that no store holds (the raw bytes of a file the user's filters
/// change when storing it): git only hashes work-tree files to compare them with it, except for
/// symlinks, whose blobs are always the user's. Never write a tree from this index.
pub(crate) fn init(repo: &RepoInfo, git_dir: &Path, format: &str) -> Result<()> {
    Git::isolated("creating the baseline git dir", git_dir)
        .args(["init", "--bare", "-q", "--template="])
        .arg(format!("--object-format={format}"))
        .arg(git_dir)
        .run()?;
    // One append instead of a `git config` process per key: this dir is ours and brand new, and a
    // second `[core]` section is valid git config.
    let config = git_dir.join("config");
    let settings = "[core]\n\thooksPath = /dev/null\n\tfsmonitor = false\n\tautocrlf = false\n\tsymlinks = true\n\tfilemode = true\n[gc]\n\tauto = 0\n";
    std::fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .and_then(|mut f| std::io::Write::write_all(&mut f, settings.as_bytes()))
        .map_err(|e| SyncError::io("configuring the baseline git dir", &config, e))?;

    let objects = repo.common_dir.join("objects");
    if path_bytes(&objects).contains(&b'\n') {
        return Err(SyncError::failed(
            "linking the baseline to the repository's objects",
            &objects,
            "the path contains a newline, which git's alternates file cannot hold",
        ));
    }
    let mut alternates = path_bytes(&objects).to_vec();
    alternates.push(b'\n');
    write_file(
        &git_dir.join("objects/info/alternates"),
        &alternates,
        "linking the baseline to the repository's objects",
    )?;
    write_file(
        &git_dir.join("info/exclude"),
        &user_excludes(repo)?,
        "copying the user's ignore rules",
    )?;
    write_file(
        &git_dir.join("info/attributes"),
        NEUTRAL_ATTRIBUTES.as_bytes(),
        "neutralising attributes in the baseline",
    )
}

/// Installs an index warren wrote with the stat data of the files as copied: the workspace as
/// sent, so later change detection is a stat pass.
pub(crate) fn write_index(git_dir: &Path, index: &[u8]) -> Result<()> {
    write_file(&git_dir.join("index"), index, "writing the baseline index")
}

/// Indexes the workspace as sent by having git hash every file, for when no index was written
/// while copying (no workspace repository was made).
pub(crate) fn index_workspace(git_dir: &Path, workspace: &Path, user_tree: &str) -> Result<()> {
    baseline_git(
        "loading the user tree into the baseline index",
        git_dir,
        workspace,
    )
    .args(["read-tree", user_tree])
    .run()?;
    // Re-hashes what was sent, raw: where the user's filters made the stored blob differ from
    // the bytes on disk, the baseline holds the bytes, so untouched files never look changed.
    baseline_git("indexing the workspace as sent", git_dir, workspace)
        .args(["add", "-A", "--", "."])
        .run()?;
    Ok(())
}

/// The user's `info/exclude` and global excludes file, so files the user ignores that the agent
/// creates (build output, editor files) stay out of the export.
fn user_excludes(repo: &RepoInfo) -> Result<Vec<u8>> {
    let mut rules = Vec::new();
    let mut sources = vec![repo.common_dir.join("info/exclude")];
    let (out, ctx) = Git::user(&repo.root, "reading core.excludesFile")
        .args(["config", "--path", "--get", "core.excludesFile"])
        .run_raw()?;
    match out.status.code() {
        Some(0) => sources.push(bytes_to_path(one_line(&out.stdout))),
        Some(1) => {
            let config_home = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
            if let Some(dir) = config_home {
                sources.push(dir.join("git/ignore"));
            }
        }
        _ => return Err(ctx.failure(&out)),
    }
    for source in sources {
        match std::fs::read(&source) {
            Ok(bytes) => {
                rules.extend_from_slice(&bytes);
                rules.push(b'\n');
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SyncError::io("reading the user's ignore rules", source, e)),
        }
    }
    Ok(rules)
}

fn write_file(path: &Path, contents: &[u8], step: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| SyncError::io(step, parent, e))?;
    }
    let mut file = std::fs::File::create(path).map_err(|e| SyncError::io(step, path, e))?;
    file.write_all(contents)
        .map_err(|e| SyncError::io(step, path, e))
}
