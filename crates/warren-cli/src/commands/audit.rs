//! `warren audit REV`: from a commit back to the record of the sandbox that made it. The
//! commit's `Warren-Sandbox` trailer names the sandbox; the store (or the server) has every
//! model request its agent made.

use std::path::Path;
use std::process::Command;

use warren_api::{AuditCommit, AuditTrailer, AuditView};
use warren_domain::{ErrorInfo, ReasonCode, SandboxId};
use warren_engine::audit::{SANDBOX_TRAILER, sandbox_id_of};

use super::{CmdResult, checks, load_config, with_lifecycle};
use crate::cli::{AuditArgs, GlobalArgs};

/// A commit warren made: its id, its `Warren-*` trailers, the sandbox they name.
pub(crate) struct WarrenCommit {
    pub commit: AuditCommit,
    pub sandbox: SandboxId,
}

pub fn audit(global: &GlobalArgs, args: &AuditArgs) -> CmdResult<i32> {
    let found = read_commit(&args.repo, &args.rev)?;
    let config = load_config(None, Vec::new())?.config;
    let view = with_lifecycle(global, &config, |lc| {
        let record = lc
            .store
            .get(&found.sandbox)
            .map_err(|_| not_recorded(&found))?;
        let events = lc
            .store
            .events(&record.id, 0, None)
            .map_err(|e| warren_domain::UserFacing::to_error_info(&e))?;
        Ok(warren_engine::audit::trail(&record, &events))
    })?;
    print(view, found.commit, global.json)
}

fn not_recorded(found: &WarrenCommit) -> ErrorInfo {
    ErrorInfo::new(
        ReasonCode::SandboxNotFound,
        format!(
            "commit {} was made by warren sandbox {}, which this machine's store does not hold",
            short(&found.commit.id),
            found.sandbox
        ),
    )
    .with_hint("run warren audit where the sandbox ran (the same WARREN_DATA_DIR), or against its server with WARREN_SERVER")
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Reads REV's `Warren-*` trailers in `repo`.
pub(crate) fn read_commit(repo: &Path, rev: &str) -> Result<WarrenCommit, ErrorInfo> {
    let repo = checks::repo_dir(repo)?;
    if git(&repo, &["rev-parse", "--git-dir"]).is_none() {
        return Err(ErrorInfo::new(
            ReasonCode::NotAGitRepo,
            format!("{} is not inside a git work tree", repo.display()),
        )
        .with_hint(
            "run warren audit in the repository the branch was exported to, or pass --repo",
        ));
    }
    let verify = format!("{rev}^{{commit}}");
    let id = git(
        &repo,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &verify,
        ],
    )
    .filter(|_| !rev.starts_with('-'))
    .ok_or_else(|| {
        ErrorInfo::new(
            ReasonCode::InvalidArgument,
            format!("{rev:?} is not a commit in {}", repo.display()),
        )
        .with_hint("pass a branch, tag or commit id, e.g. warren audit warren/<name>")
    })?;
    let id = id.trim().to_owned();
    let raw = git(
        &repo,
        &["log", "-1", "--format=%(trailers:unfold,only)", &id],
    )
    .unwrap_or_default();
    let trailers: Vec<AuditTrailer> = raw
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(key, _)| key.starts_with("Warren-"))
        .map(|(key, value)| AuditTrailer {
            key: key.to_owned(),
            value: value.trim().to_owned(),
        })
        .collect();
    let sandbox = trailers
        .iter()
        .find(|t| t.key == SANDBOX_TRAILER)
        .and_then(|t| sandbox_id_of(&t.value))
        .map(SandboxId::from_stored)
        .ok_or_else(|| {
            ErrorInfo::new(
                ReasonCode::NotAWarrenCommit,
                format!(
                    "commit {} ({rev}) was not made by warren: it has no {SANDBOX_TRAILER} trailer",
                    short(&id)
                ),
            )
            .with_hint("audit the agent's commit of an exported branch, e.g. warren audit warren/<name> (the commit before it may hold your own uncommitted changes)")
        })?;
    Ok(WarrenCommit {
        commit: AuditCommit { id, trailers },
        sandbox,
    })
}

fn git(repo: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prints the trail: `--json` as the `audit` view, else a table.
pub(crate) fn print(mut view: AuditView, commit: AuditCommit, json: bool) -> CmdResult<i32> {
    view.commit = Some(commit);
    if json {
        crate::output::print_json(&view)?;
        return Ok(0);
    }
    if let Some(c) = &view.commit {
        println!("commit:    {}", c.id);
    }
    println!("sandbox:   {} ({})", view.name, view.sandbox_id);
    if let Some(session) = &view.session_id {
        println!("session:   {session}");
    }
    if let Some(model) = &view.model {
        println!("model:     {model}");
    }
    let t = view.totals;
    println!(
        "requests:  {} ({} failed), {} tokens in, {} out, ${:.4}",
        t.requests, t.errors, t.input_tokens, t.output_tokens, t.cost_usd
    );
    for r in &view.requests {
        let tokens = match (r.input_tokens, r.output_tokens) {
            (None, None) => "-".to_owned(),
            (i, o) => format!("{}/{}", i.unwrap_or(0), o.unwrap_or(0)),
        };
        let cost = r.cost_usd.map_or("-".to_owned(), |c| format!("${c:.4}"));
        let error = r
            .error
            .as_deref()
            .map(|e| format!("  {e}"))
            .unwrap_or_default();
        println!(
            "  #{:<4} {} {:<10} {:<20} HTTP {} {:>12} tokens {:>10} {:>6} ms  attempt {}{error}",
            r.seq,
            r.at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            r.source.as_str(),
            r.model.as_deref().unwrap_or(&r.endpoint),
            r.status,
            tokens,
            cost,
            r.latency_ms,
            r.attempt
        );
    }
    Ok(0)
}
