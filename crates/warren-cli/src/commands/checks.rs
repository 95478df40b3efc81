//! Checks of what the user typed, made before the config is loaded or the engine is called, so a
//! mistake costs nothing: no sandbox record, no branch, no file, no state change. Each failure is
//! a user error (exit 2) that names the problem and, in its hint, the fix.

use std::path::{Path, PathBuf};

use warren_config::{Config, MAX_TIMEOUT_SECS, timeout_range};
use warren_domain::{ErrorInfo, ExitClass, ReasonCode, SandboxName, UserFacing};

/// A sandbox name as typed on the command line.
pub(crate) fn sandbox_name(raw: &str) -> Result<SandboxName, ErrorInfo> {
    SandboxName::parse(raw).map_err(|e| e.to_error_info())
}

/// `--repo`: an existing directory (whether it is inside a git work tree is checked by the
/// engine, which says how to make it one). Canonical, so the record names the real path.
pub(crate) fn repo_dir(path: &Path) -> Result<PathBuf, ErrorInfo> {
    let not_a_repo = |problem: String, hint: String| {
        ErrorInfo::new(
            ReasonCode::NotAGitRepo,
            format!("--repo {}: {problem}", path.display()),
        )
        .with_hint(hint)
    };
    let canonical = std::fs::canonicalize(path).map_err(|e| {
        not_a_repo(
            format!("cannot open it: {e}"),
            "pass --repo a directory inside a git work tree".to_owned(),
        )
    })?;
    if !canonical.is_dir() {
        let parent = canonical.parent().unwrap_or(Path::new("/"));
        return Err(not_a_repo(
            "it is a file, not a directory".to_owned(),
            format!(
                "pass the directory of the git work tree, e.g. --repo {}",
                parent.display()
            ),
        ));
    }
    Ok(canonical)
}

/// `--budget`: `tokens=200000,cost=2.5,...`; `None` when not given.
pub(crate) fn budget(raw: Option<&str>) -> Result<Option<warren_domain::BudgetLimits>, ErrorInfo> {
    raw.map(|raw| {
        warren_domain::BudgetLimits::parse(raw).map_err(|problem| {
            ErrorInfo::new(
                ReasonCode::InvalidArgument,
                format!("--budget {raw:?}: {problem}"),
            )
            .with_hint(
                "pass --budget KEY=VALUE pairs, e.g. --budget tokens=200000,cost=2.5,requests=40,time=30m",
            )
        })
    })
    .transpose()
}

/// `--timeout`: the same range the config accepts for `timeouts.run_secs`.
pub(crate) fn timeout(secs: u64) -> Result<u64, ErrorInfo> {
    if (1..=MAX_TIMEOUT_SECS).contains(&secs) {
        return Ok(secs);
    }
    Err(ErrorInfo::new(
        ReasonCode::InvalidArgument,
        format!(
            "--timeout {secs} is out of range; accepted: {}",
            timeout_range()
        ),
    )
    .with_hint(format!(
        "pass --timeout a number of seconds from 1 to {MAX_TIMEOUT_SECS}, e.g. --timeout 3600"
    )))
}

/// A prompt must say something; `example` shows the command with one.
pub(crate) fn prompt(text: &str, example: &str) -> Result<(), ErrorInfo> {
    if !text.trim().is_empty() {
        return Ok(());
    }
    Err(
        ErrorInfo::new(ReasonCode::InvalidArgument, "the prompt is empty")
            .with_hint(format!("say what the agent should do, e.g. {example}")),
    )
}

/// `--model` and `--role` must name what the config defines.
pub(crate) fn model_and_role(
    config: &Config,
    model: Option<&str>,
    role: Option<&str>,
) -> Result<(), ErrorInfo> {
    if let Some(model) = model {
        config.resolve_model(model).map_err(|message| {
            let known: Vec<String> = config
                .model_providers
                .iter()
                .flat_map(|(p, c)| c.models.iter().map(move |m| format!("{p}/{m}")))
                .collect();
            let hint = if known.is_empty() {
                "add a [model_providers.<name>] section listing its models (docs/config.md)"
                    .to_owned()
            } else {
                format!(
                    "pass --model one of {}, or add the model to [model_providers.<provider>] models in the config",
                    known.join(", ")
                )
            };
            ErrorInfo::new(ReasonCode::InvalidConfig, format!("--model: {message}"))
                .with_hint(hint)
        })?;
    }
    if let Some(role) = role {
        config.role(role).map_err(|message| {
            ErrorInfo::new(ReasonCode::InvalidConfig, format!("--role: {message}")).with_hint(
                format!(
                    "pass --role one of the configured roles, or add a [roles.{role}] section to the config (docs/config.md)"
                ),
            )
        })?;
    }
    Ok(())
}

fn bad_destination(flag: &str, path: &Path, problem: &str, hint: String) -> ErrorInfo {
    ErrorInfo::new(
        ReasonCode::InvalidArgument,
        format!("{flag} {}: {problem}", path.display()),
    )
    .with_hint(hint)
}

fn writable(dir: &Path) -> bool {
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
}

/// The nearest of `dir` and its ancestors that exists; it must be a directory warren can write
/// into (missing directories below it are what would be created).
fn check_creatable(flag: &str, path: &Path, dir: &Path) -> Result<(), ErrorInfo> {
    let existing = dir
        .ancestors()
        .find(|a| std::fs::symlink_metadata(a).is_ok())
        .unwrap_or(Path::new("/"));
    if !existing.is_dir() {
        return Err(bad_destination(
            flag,
            path,
            &format!("{} is a file, not a directory", existing.display()),
            "choose a path whose parent is a directory".to_owned(),
        ));
    }
    if !writable(existing) {
        return Err(bad_destination(
            flag,
            path,
            &format!("the directory {} is not writable", existing.display()),
            "choose a directory you can write to, or change its permissions".to_owned(),
        ));
    }
    Ok(())
}

/// `export --patch FILE`: a file in an existing, writable directory, and not an existing file
/// unless `force`. Returns the absolute path.
pub(crate) fn patch_file(path: &Path, force: bool) -> Result<PathBuf, ErrorInfo> {
    const FLAG: &str = "--patch";
    let path = std::path::absolute(path).map_err(|e| {
        bad_destination(
            FLAG,
            path,
            &e.to_string(),
            "pass --patch the file to write, e.g. --patch changes.patch".to_owned(),
        )
    })?;
    if path.is_dir() {
        return Err(bad_destination(
            FLAG,
            &path,
            "it is a directory",
            format!(
                "name a file inside it, e.g. --patch {}",
                path.join("changes.patch").display()
            ),
        ));
    }
    if std::fs::symlink_metadata(&path).is_ok() {
        if !force {
            return Err(bad_destination(
                FLAG,
                &path,
                "the file already exists",
                "pass --force to overwrite it, or choose another path".to_owned(),
            ));
        }
        if rustix::fs::access(&path, rustix::fs::Access::WRITE_OK).is_err() {
            return Err(bad_destination(
                FLAG,
                &path,
                "the file is not writable",
                "change its permissions, or choose another path".to_owned(),
            ));
        }
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let nearest = parent
        .ancestors()
        .find(|a| std::fs::symlink_metadata(a).is_ok());
    if nearest.is_some_and(|a| a != parent && a.is_dir()) {
        return Err(bad_destination(
            FLAG,
            &path,
            &format!("the directory {} does not exist", parent.display()),
            format!(
                "create it first (mkdir -p {}), or choose another path",
                parent.display()
            ),
        ));
    }
    check_creatable(FLAG, &path, parent)?;
    Ok(path)
}

/// `pull --to DIR`: a directory, or a path where one can be created.
pub(crate) fn pull_dir(dir: &Path) -> Result<(), ErrorInfo> {
    const FLAG: &str = "--to";
    let absolute = std::path::absolute(dir).map_err(|e| {
        bad_destination(
            FLAG,
            dir,
            &e.to_string(),
            "pass --to the directory to write into, e.g. --to ./changes".to_owned(),
        )
    })?;
    let dir = absolute.as_path();
    if std::fs::symlink_metadata(dir).is_ok() && !dir.is_dir() {
        return Err(bad_destination(
            FLAG,
            dir,
            "it is a file, not a directory",
            "name a directory (it is created if missing), not an existing file".to_owned(),
        ));
    }
    check_creatable(FLAG, dir, dir)
}

/// Every user error names its fix. Most hints are specific and made where the error is; this
/// gives the few that come without one (from deep in a library) a pointer to where to look.
pub(crate) fn with_hint(mut error: ErrorInfo) -> ErrorInfo {
    if error.hint.is_some() || error.reason_code.exit_class() != ExitClass::User {
        return error;
    }
    let hint = match error.reason_code {
        ReasonCode::InvalidConfig => {
            "'warren config show' prints the effective configuration and where each value came from; docs/config.md lists every key"
        }
        ReasonCode::InvalidTransition | ReasonCode::WrongState => {
            "'warren status <name>' shows the sandbox's state; docs/cli.md says which states each command needs"
        }
        ReasonCode::SandboxNotFound => "'warren list --all' shows the sandboxes warren knows",
        ReasonCode::BranchExists => {
            "choose another branch name, or delete the branch with 'git branch -D'"
        }
        ReasonCode::UnexportedChanges => {
            "export the work first ('warren export <name>'), or pass --export or --force"
        }
        ReasonCode::UnknownModel | ReasonCode::ModelAuth => {
            "check the model name and the credential in [model_providers] (docs/config.md)"
        }
        ReasonCode::ContextLength => {
            "start a new sandbox with a shorter prompt, or use a model with a larger context window"
        }
        _ => {
            "'warren <command> --help' lists the accepted arguments; docs/errors.md explains each reason_code"
        }
    };
    error.hint = Some(hint.to_owned());
    error
}

/// The approval flags as config overrides (`policy.approvals.*`), checked like the keys they set.
pub(crate) fn approval_flags(
    flags: &crate::cli::ApprovalFlags,
) -> Result<Vec<(String, toml::Value, String)>, ErrorInfo> {
    let mut out = Vec::new();
    for (key, patterns, flag) in [
        ("bash", &flags.bash, "--ask-bash"),
        ("edit", &flags.edit, "--ask-edit"),
    ] {
        if patterns.is_empty() {
            continue;
        }
        if patterns.iter().any(|p| p.trim().is_empty()) {
            return Err(ErrorInfo::new(
                ReasonCode::InvalidArgument,
                format!("{flag} needs a pattern, got an empty one"),
            )
            .with_hint(format!("e.g. {flag} 'git push*'")));
        }
        let list = patterns
            .iter()
            .map(|p| toml::Value::String(p.clone()))
            .collect();
        out.push((
            format!("policy.approvals.{key}"),
            toml::Value::Array(list),
            flag.to_owned(),
        ));
    }
    if let Some(secs) = flags.approval_timeout {
        if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
            return Err(ErrorInfo::new(
                ReasonCode::InvalidArgument,
                format!(
                    "--approval-timeout {secs} is out of range; accepted: {}",
                    timeout_range()
                ),
            )
            .with_hint(
                "pass --approval-timeout a number of seconds, e.g. --approval-timeout 300",
            ));
        }
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        out.push((
            "policy.approvals.timeout_secs".to_owned(),
            toml::Value::Integer(secs),
            "--approval-timeout".to_owned(),
        ));
    }
    Ok(out)
}
