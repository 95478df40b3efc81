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

    /// Talk to this warren server instead of working alone (remote mode; see docs/cli.md)
    #[arg(long, global = true, env = "WARREN_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// The bearer token for --server (from 'warren token create' on the server)
    #[arg(
        long,
        global = true,
        env = "WARREN_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sandbox a repository, run OpenCode on a prompt, export its changes as a branch, tear down
    Run(RunArgs),
    /// Create a long-lived sandbox and start the agent; returns once it runs
    Launch(LaunchArgs),
    /// List sandboxes
    List(ListArgs),
    /// Show one sandbox's state, timings, lease, session, tokens and changes
    Status(NameArgs),
    /// Show a sandbox's recorded events; -f follows them live
    Logs(LogsArgs),
    /// Send a follow-up prompt to the same OpenCode session
    Exec(ExecArgs),
    /// Export the sandbox's changes as a branch or a patch series
    Export(ExportArgs),
    /// Copy the sandbox's changed files into a directory, without git
    Pull(PullArgs),
    /// Send what changed in the repository since the last sync into the sandbox
    Sync(NameArgs),
    /// Show how to reach the sandbox
    Open(NameArgs),
    /// Remove a sandbox (refuses running or unexported work without --force)
    Teardown(TeardownArgs),
    /// Drop dead leases, mark lost sandboxes, apply retention, remove orphans
    Gc(GcArgs),
    /// Build the docker provider's sandbox image
    Image(ImageArgs),
    /// Internal: the detached per-sandbox monitor
    #[command(name = "__monitor", hide = true)]
    Monitor(MonitorArgs),
    /// Show the effective configuration and where each value came from
    Config(ConfigArgs),
    /// Print the JSON Schema of a --json view (without VIEW: list the views)
    Schema(SchemaArgs),
    /// Serve warren's HTTP API (see docs/api.md)
    Serve(ServeArgs),
    /// Check every prerequisite here and say how to fix what is missing
    Doctor,
    /// Create, list and revoke the server's API tokens
    Token(TokenArgs),
    /// Print a completion script for bash, zsh or fish (see the README)
    Completions(crate::completions::CompletionsArgs),
    /// Let the agent do what it asked for (a command or edit an approval rule covers)
    Approve(ApproveArgs),
    /// Refuse what the agent asked for; it is told, with the reason, and carries on
    Deny(DenyArgs),
    /// Show the model requests behind a commit warren made (its Warren-* trailers name the sandbox)
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[arg(add = crate::completions::names())]
    pub name: String,
    /// Answer this request only (its id, `per_...`, from status or logs); the pending one if omitted
    #[arg(long, value_name = "ID")]
    pub request: Option<String>,
}

#[derive(Debug, Args)]
pub struct DenyArgs {
    #[arg(add = crate::completions::names())]
    pub name: String,
    /// Answer this request only (its id, `per_...`, from status or logs); the pending one if omitted
    #[arg(long, value_name = "ID")]
    pub request: Option<String>,
    /// Why: the agent is told
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The commit: a branch, tag or commit id (e.g. warren/fix-login)
    #[arg(value_name = "REV")]
    pub rev: String,

    /// The repository holding REV
    #[arg(long, default_value = ".", value_name = "PATH")]
    pub repo: PathBuf,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on; a non-loopback one needs TLS (--tls-cert/--tls-key) or --insecure-bind
    #[arg(long, default_value = "127.0.0.1:8420", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,

    /// Listen on a non-loopback address without TLS (behind a TLS-terminating proxy only)
    #[arg(long)]
    pub insecure_bind: bool,

    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// The largest request body accepted, in bytes
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,

    /// Event streams (GET .../events, POST /v1/runs) one token may hold open at once; the next
    /// is refused with 429 too_many_streams
    #[arg(long, default_value_t = warren_server::DEFAULT_STREAMS_PER_TOKEN as u64, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=65535))]
    pub max_streams_per_token: u64,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Where the server keeps its state and tokens: a postgres://USER:PASSWORD@HOST:PORT/DB URL
    /// that several replicas share, or 'sqlite' [default: SQLite in the data directory]
    #[arg(
        long = "store",
        env = "WARREN_STORE",
        value_name = "URL",
        global = true
    )]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for an owner; it is printed once and stored hashed
    Create {
        /// Who the token acts for: it sees and touches only this owner's sandboxes
        #[arg(long)]
        owner: String,
        /// The token sees and touches every sandbox
        #[arg(long)]
        admin: bool,
    },
    /// List the tokens (never their secrets)
    List,
    /// Revoke a token by its id
    Revoke {
        /// The token's id (from 'warren token list')
        id: String,
    },
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

    /// Hard wall-clock limit for the agent, in seconds, 1 to 604800 (7 days) [default: timeouts.run_secs]
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,

    /// Sandbox provider: local (bubblewrap) or docker [default: sandbox.provider]
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<String>,

    /// Role from [roles] in the config: its model, timeouts and outcome contract
    #[arg(long)]
    pub role: Option<String>,

    /// Spend limits for the sandbox over all its runs, e.g. tokens=200000,cost=2.5,requests=40,time=30m
    /// (keys: tokens, input_tokens, output_tokens, cost in USD, requests, time) [default: budget.sandbox]
    #[arg(long, value_name = "KEY=VALUE,...")]
    pub budget: Option<String>,
    #[command(flatten)]
    pub network: NetworkFlags,

    /// What the agent should do
    #[arg(required = true, value_name = "PROMPT")]
    pub prompt: String,

    #[command(flatten)]
    pub approvals: ApprovalFlags,
}

/// The sandbox's egress for this command: replaces `policy.egress`, adds to `policy.allow`.
/// See docs/config.md.
#[derive(Debug, Args, Default)]
pub struct NetworkFlags {
    /// Network besides the model: none, or allow-list (what --allow and [policy] allow list)
    /// [default: policy.egress]
    #[arg(long, value_name = "MODE")]
    pub egress: Option<String>,

    /// Let the sandbox reach HOST[:PORT] (also *.SUFFIX, IP, CIDR) through the egress proxy;
    /// repeatable; added to [policy] allow, and switches egress to allow-list
    #[arg(long, value_name = "HOST[:PORT]")]
    pub allow: Vec<String>,
}

/// Approval rules for this command's prompts: set `[policy.approvals]` (a role's own
/// `approvals` still wins). See docs/config.md.
#[derive(Debug, Args, Default)]
pub struct ApprovalFlags {
    /// A bash command the agent must ask for, as OpenCode matches it (`git push*`); repeatable
    #[arg(long = "ask-bash", value_name = "PATTERN")]
    pub bash: Vec<String>,
    /// A path (relative to the workspace) the agent must ask to edit (`docs/*`); repeatable
    #[arg(long = "ask-edit", value_name = "PATTERN")]
    pub edit: Vec<String>,
    /// Deny an unanswered request after this many seconds [default: policy.approvals.timeout_secs]
    #[arg(long, value_name = "SECS")]
    pub approval_timeout: Option<u64>,
}

#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Sandbox name (the export branch is warren/<name>)
    pub name: String,

    /// The repository to work on (any directory inside a git work tree)
    #[arg(long, default_value = ".", value_name = "PATH")]
    pub repo: PathBuf,

    /// What the agent should do; without it the sandbox waits for `warren exec`
    #[arg(long)]
    pub prompt: Option<String>,

    /// Model as provider/model [default: model.default]
    #[arg(long, value_name = "PROVIDER/MODEL")]
    pub model: Option<String>,

    /// Sandbox provider [default: sandbox.provider]
    #[arg(long, value_name = "PROVIDER")]
    pub provider: Option<String>,

    /// Image profile for the docker provider (a key of sandbox.image_profiles)
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<String>,

    /// Role from [roles] in the config: its model, timeouts and outcome contract
    #[arg(long)]
    pub role: Option<String>,

    #[command(flatten)]
    pub approvals: ApprovalFlags,
    /// Spend limits for the sandbox over all its runs, e.g. tokens=200000,cost=2.5,requests=40,time=30m
    /// (keys: tokens, input_tokens, output_tokens, cost in USD, requests, time) [default: budget.sandbox]
    #[arg(long, value_name = "KEY=VALUE,...")]
    pub budget: Option<String>,
    #[command(flatten)]
    pub network: NetworkFlags,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(add = crate::completions::names())]
    pub name: String,
    /// The follow-up prompt
    pub prompt: String,
    /// Return once the agent runs instead of following its events
    #[arg(long)]
    pub detach: bool,

    /// Role from [roles] in the config: its model, timeouts and outcome contract
    #[arg(long)]
    pub role: Option<String>,

    #[command(flatten)]
    pub approvals: ApprovalFlags,
    /// Replace the sandbox's spend limits (raise a spent budget to go on in the same session),
    /// e.g. tokens=400000,cost=5
    #[arg(long, value_name = "KEY=VALUE,...")]
    pub budget: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(add = crate::completions::names())]
    pub name: String,
    /// Branch to create [default: warren/<name>]
    #[arg(long, conflicts_with = "patch")]
    pub branch: Option<String>,
    /// Write a `git am`-able patch series to FILE instead of a branch
    #[arg(long, value_name = "FILE")]
    pub patch: Option<PathBuf>,
    /// Overwrite FILE if it exists (with --patch)
    #[arg(long, requires = "patch")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[arg(add = crate::completions::names())]
    pub name: String,
    /// Directory to write the changed files into (created if missing)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
}

#[derive(Debug, Args)]
pub struct TeardownArgs {
    #[arg(add = crate::completions::names())]
    pub name: String,
    /// Tear down even while the agent runs or changes are unexported (they are lost)
    #[arg(long)]
    pub force: bool,
    /// Export to warren/<name> first, then tear down
    #[arg(long)]
    pub export: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Also remove the docker provider's dependency volumes that no container uses
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the sandbox image: the base, git, the pinned OpenCode and warren's init, pre-staged
    Build(ImageBuildArgs),
}

#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Base image (must exist locally; scripts/build-base-image.sh builds an offline Debian one)
    #[arg(long, default_value = "warren-base:bookworm")]
    pub base: String,
    /// Tag of the image to build [default: the image of --profile, else warren-sandbox:latest]
    #[arg(long)]
    pub tag: Option<String>,
    /// Build the image a config profile names (sandbox.image_profiles.<P>)
    #[arg(long)]
    pub profile: Option<String>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[arg(long)]
    pub job: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Include destroyed sandboxes
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[arg(add = crate::completions::names())]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[arg(add = crate::completions::names())]
    pub name: String,
    /// Keep following new events until the agent finishes (Ctrl-C detaches)
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only events with a sequence number greater than this
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    pub since: u64,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The view: event, summary, error, status, list, ... (see `warren schema`)
    pub view: Option<String>,
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
