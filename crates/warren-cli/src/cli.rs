//! The command-line surface (clap definitions only; no behaviour here).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "warren",
    version,
    about = "Run OpenCode coding agents in isolated sandboxes and bring their work back as git branches."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where warren keeps its database and sandbox scratch space [default: $XDG_DATA_HOME/warren]
    #[arg(long, global = true, env = "WARREN_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Print machine-readable JSON on stdout (NDJSON for streams)
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sandbox a repository, run OpenCode on a prompt, export its changes as a branch, tear down
    Run(RunArgs),
    /// List sandboxes
    List(ListArgs),
    /// Show one sandbox's state, timings, tokens and changes
    Status(NameArgs),
    /// Show a sandbox's recorded events
    Logs(LogsArgs),
    /// Show the effective configuration and where each value came from
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The repository to work on (any directory inside a git work tree)
    #[arg(long, default_value = ".", value_name = "PATH")]
    pub repo: PathBuf,

    /// Sandbox name; the branch is warren/<name> [default: derived from the prompt]
    #[arg(long)]
    pub name: Option<String>,

    /// Model as provider/model, from [model_providers] in the config [default: model.default]
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,

    /// Hard wall-clock limit for the agent, in seconds [default: timeouts.run_secs]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,

    /// What the agent should do
    #[arg(required = true, value_name = "PROMPT")]
    pub prompt: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include destroyed sandboxes
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub name: String,
    /// Only events with a sequence number greater than this
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    pub since: u64,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective config, each value with its source
    Show {
        /// Also apply this repository's .warren.toml
        #[arg(long, value_name = "PATH")]
        repo: Option<PathBuf>,
    },
}
