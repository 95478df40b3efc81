//! Shell completions: `warren completions SHELL` prints a script that calls back into `warren`
//! (clap_complete's dynamic engine), so subcommands, flags and sandbox names are always those of
//! the installed binary and the store of the moment rather than a snapshot taken at install time.

use std::ffi::OsStr;
use std::io::Write;

use clap::{Args, ValueEnum};
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};
use warren_api::ListView;
use warren_store::StateStore;

/// The variable the scripts set when they call `warren` back for candidates.
pub const VAR: &str = "WARREN_COMPLETE";

const REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the completion script for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Answers a completion request when a script called back (and exits); otherwise returns.
pub fn answer_callback() {
    clap_complete::CompleteEnv::with_factory(<crate::cli::Cli as clap::CommandFactory>::command)
        .var(VAR)
        .complete();
}

pub fn print(args: &CompletionsArgs) -> i32 {
    let shell: &dyn EnvCompleter = match args.shell {
        Shell::Bash => &Bash,
        Shell::Zsh => &Zsh,
        Shell::Fish => &Fish,
    };
    let mut out = std::io::stdout().lock();
    // The script calls `warren` from PATH, so it keeps working across upgrades and moves.
    match shell
        .write_registration(VAR, "warren", "warren", "warren", &mut out)
        .and_then(|()| out.flush())
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("warren: cannot write the completion script: {e}");
            1
        }
    }
}

/// The completer attached to every argument that names a sandbox.
pub fn names() -> ArgValueCompleter {
    ArgValueCompleter::new(sandbox_names)
}

/// Names of the sandboxes not destroyed that start with what was typed. The callback sees only
/// the environment (not `--data-dir` or `--server` typed on the line), so it reads where
/// WARREN_DATA_DIR / WARREN_SERVER point. Any failure completes nothing: a completion must never
/// print an error into the user's prompt.
fn sandbox_names(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    let mut names = if remote_configured() {
        remote_names().unwrap_or_default()
    } else {
        local_names().unwrap_or_default()
    };
    names.retain(|n| n.starts_with(prefix.as_ref()));
    names.sort();
    names.into_iter().map(CompletionCandidate::new).collect()
}

fn remote_configured() -> bool {
    std::env::var("WARREN_SERVER").is_ok_and(|s| !s.is_empty())
}

/// A plain read of the local store: no reconciler, no retention sweep, and nothing created when
/// there is no database yet (completing must not initialise a data directory).
fn local_names() -> Option<Vec<String>> {
    let data_dir = std::env::var_os("WARREN_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(warren_engine::default_data_dir)?;
    let db = warren_store::default_db_path(&data_dir);
    if !db.is_file() {
        return Some(Vec::new());
    }
    let store = warren_store::Store::open(&db).ok()?;
    let records = store.list(false).ok()?;
    Some(records.into_iter().map(|r| r.name.to_string()).collect())
}

/// The server's list (one page of up to 500, which is what a prompt can show anyway).
fn remote_names() -> Option<Vec<String>> {
    let server = std::env::var("WARREN_SERVER").ok()?;
    let token = std::env::var("WARREN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    // A server that does not answer must not freeze the user's prompt.
    runtime.block_on(async {
        let client = crate::remote::Client::new(&server, &token).ok()?;
        let list = client.get::<ListView>("/v1/sandboxes?all=false&limit=500");
        let page = tokio::time::timeout(REMOTE_TIMEOUT, list)
            .await
            .ok()?
            .ok()?;
        Some(
            page.sandboxes
                .into_iter()
                .map(|s| s.name.to_string())
                .collect(),
        )
    })
}
