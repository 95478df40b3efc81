//! One function per command: turn parsed arguments into engine calls and render what comes back.
//! Every failure stays typed until `dispatch`, where it becomes an `ErrorInfo` once (with the
//! hints that name this CLI's commands), rendered with the exit code of its class.

mod approval;
pub(crate) mod audit;
pub(crate) mod checks;
mod doctor;
mod lifecycle;
mod read;
mod run;
mod schema;
mod serve;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_config::{Config, LoadOptions, Loaded};
use warren_domain::{Decision, ErrorInfo, ReasonCode, UserFacing};
use warren_engine::{Lifecycle, default_data_dir};
use warren_provider_local::LocalProvider;

use crate::cli::{Cli, Command, ConfigCommand, GlobalArgs, ImageCommand};
use crate::output::print_error;
use crate::provider::AnyProvider;

pub async fn dispatch(cli: Cli) -> i32 {
    let json = cli.global.json;
    let result = match crate::remote::client_for(&cli) {
        Some(Ok(client)) => crate::remote::dispatch(&client, cli).await,
        Some(Err(error)) => Err(error.into()),
        None => local(cli).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let error = checks::with_hint(error.into_info());
            print_error(&error, json);
            error.reason_code.exit_class().code()
        }
    }
}

/// The commands working alone, on this machine's engine and store.
async fn local(cli: Cli) -> CmdResult<i32> {
    let json = cli.global.json;
    let g = &cli.global;
    match cli.command {
        Command::Run(args) => run::run(g, args).await,
        Command::Launch(args) => lifecycle::launch(g, args).await,
        Command::Exec(args) => lifecycle::exec(g, args).await,
        Command::Export(args) => {
            lifecycle::settle_leftover_pod(g, &args.name).await;
            lifecycle::export(g, args)
        }
        Command::Pull(args) => {
            lifecycle::settle_leftover_pod(g, &args.name).await;
            lifecycle::pull(g, args)
        }
        Command::Sync(args) => {
            lifecycle::settle_leftover_pod(g, &args.name).await;
            lifecycle::sync(g, &args.name)
        }
        Command::Teardown(args) => {
            lifecycle::settle_leftover_pod(g, &args.name).await;
            lifecycle::teardown(g, args).await
        }
        Command::Gc(args) => lifecycle::gc(g, args.volumes).await,
        Command::Image(args) => match args.command {
            ImageCommand::Build(b) => lifecycle::image_build(g, b).await,
        },
        Command::Monitor(args) => lifecycle::monitor(g, args).await,
        Command::List(args) => read::list(g, args.all).await,
        Command::Status(args) => read::status(g, &args.name),
        Command::Logs(args) => read::logs(g, &args).await,
        Command::Open(args) => read::open(g, &args.name),
        Command::Config(args) => match args.command {
            ConfigCommand::Show { repo } => read::config_show(json, repo.as_deref()),
        },
        Command::Schema(args) => schema::schema(json, args.view.as_deref()).map_err(CliError::from),
        Command::Serve(args) => serve::serve(g, args).await,
        Command::Token(args) => serve::token(g, args),
        Command::Completions(args) => Ok(crate::completions::print(&args)),
        Command::Doctor => doctor::doctor(g).await,
        Command::Approve(args) => {
            approval::answer(
                g,
                &args.name,
                args.request.as_deref(),
                Decision::Approve,
                None,
            )
            .await
        }
        Command::Deny(args) => {
            let request = args.request.as_deref();
            approval::answer(g, &args.name, request, Decision::Deny, args.reason).await
        }
        Command::Audit(args) => audit::audit(g, &args),
    }
}

/// A command's failure: an engine error (typed) or one already in wire form (a check, config).
#[derive(Debug)]
pub(crate) enum CliError {
    Engine(warren_engine::EngineError),
    Info(ErrorInfo),
}

impl CliError {
    pub(crate) fn into_info(self) -> ErrorInfo {
        match self {
            Self::Engine(e) => crate::hints::engine_error(&e),
            Self::Info(info) => info,
        }
    }
}

impl From<warren_engine::EngineError> for CliError {
    fn from(e: warren_engine::EngineError) -> Self {
        Self::Engine(e)
    }
}

impl From<ErrorInfo> for CliError {
    fn from(info: ErrorInfo) -> Self {
        Self::Info(info)
    }
}

impl From<warren_store::StoreError> for CliError {
    fn from(e: warren_store::StoreError) -> Self {
        Self::Engine(e.into())
    }
}

pub(crate) type CmdResult<T> = Result<T, CliError>;

pub(crate) fn data_dir(global: &GlobalArgs) -> Result<PathBuf, ErrorInfo> {
    global
        .data_dir
        .clone()
        .or_else(default_data_dir)
        .ok_or_else(|| {
            ErrorInfo::new(
                ReasonCode::InvalidArgument,
                "cannot determine the data directory (no HOME?)",
            )
            .with_hint("pass --data-dir or set WARREN_DATA_DIR")
        })
}

pub(crate) fn load_config(
    repo: Option<&Path>,
    flags: Vec<(String, toml::Value, String)>,
) -> Result<Loaded, ErrorInfo> {
    let opts = LoadOptions {
        user_file: None,
        repo_dir: repo.map(Path::to_path_buf),
        env: std::env::vars()
            .filter(|(k, _)| k.starts_with("WARREN_"))
            .collect(),
        flags,
    };
    warren_config::load(&opts).map_err(|e| e.to_error_info())
}

/// The state of the data directory: the CLI's store is SQLite at `default_db_path(data_dir)`
/// (created and migrated on first use). Opened once per command and shared by everything the
/// command runs; the engine sees only the `StateStore` trait.
pub(crate) fn open_store(data_dir: &Path) -> CmdResult<Arc<warren_store::Store>> {
    let store = warren_store::Store::open(&warren_store::default_db_path(data_dir))?;
    Ok(Arc::new(store))
}

/// Runs `body` with a lifecycle handle for commands that never start an agent (reads, export,
/// pull, teardown, gc): they touch the store and the host directories only, so the provider is
/// never used and no engine needs to be reachable.
pub(crate) fn with_lifecycle<T>(
    global: &GlobalArgs,
    config: &Config,
    body: impl FnOnce(&Lifecycle<'_, AnyProvider>) -> CmdResult<T>,
) -> CmdResult<T> {
    let provider = AnyProvider::Local(LocalProvider::new());
    let data_dir = data_dir(global)?;
    let lifecycle = Lifecycle::new(&provider, config, &data_dir, open_store(&data_dir)?);
    body(&lifecycle)
}
