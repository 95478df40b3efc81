//! One function per command: turn parsed arguments into engine calls and render what comes back.
//! Every failure is an `ErrorInfo`, rendered once, with the exit code of its class.

use std::path::{Path, PathBuf};

use serde_json::json;
use warren_config::{LoadOptions, Loaded};
use warren_domain::{ErrorInfo, ReasonCode, SandboxName, UserFacing};
use warren_engine::{RunRequest, default_data_dir};
use warren_provider_local::LocalProvider;
use warren_store::{SandboxRecord, Store};

use crate::cli::{Cli, Command, ConfigCommand, GlobalArgs, LogsArgs, RunArgs};
use crate::output::{EventPrinter, print_error, print_summary};

pub async fn dispatch(cli: Cli) -> i32 {
    let json = cli.global.json;
    let result = match cli.command {
        Command::Run(args) => run(&cli.global, args).await,
        Command::List(args) => list(&cli.global, args.all),
        Command::Status(args) => status(&cli.global, &args.name),
        Command::Logs(args) => logs(&cli.global, &args),
        Command::Config(args) => match args.command {
            ConfigCommand::Show { repo } => config_show(json, repo.as_deref()),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            print_error(&error, json);
            error.reason_code.exit_class().code()
        }
    }
}

fn data_dir(global: &GlobalArgs) -> Result<PathBuf, ErrorInfo> {
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

fn load_config(
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

fn open_store(global: &GlobalArgs) -> Result<Store, ErrorInfo> {
    let path = warren_store::default_db_path(&data_dir(global)?);
    Store::open(&path).map_err(|e| e.to_error_info())
}

async fn run(global: &GlobalArgs, args: RunArgs) -> Result<i32, ErrorInfo> {
    let name = args
        .name
        .as_deref()
        .map(SandboxName::parse)
        .transpose()
        .map_err(|e| ErrorInfo::new(ReasonCode::InvalidArgument, e.to_string()))?;
    if args.prompt.trim().is_empty() {
        return Err(
            ErrorInfo::new(ReasonCode::InvalidArgument, "the prompt is empty").with_hint(
                "say what the agent should do, e.g. warren run \"fix the failing test\"",
            ),
        );
    }
    let mut flags = Vec::new();
    if let Some(secs) = args.timeout {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        flags.push((
            "timeouts.run_secs".to_owned(),
            toml::Value::Integer(secs),
            "--timeout".to_owned(),
        ));
    }
    let repo_dir = std::fs::canonicalize(&args.repo).map_err(|e| {
        ErrorInfo::new(
            ReasonCode::NotAGitRepo,
            format!("{} is not a directory: {e}", args.repo.display()),
        )
        .with_hint("pass --repo pointing at a git work tree")
    })?;
    let loaded = load_config(Some(&repo_dir), flags)?;
    let request = RunRequest {
        repo: repo_dir,
        prompt: args.prompt,
        name,
        model: args.model,
        data_dir: data_dir(global)?,
        config: loaded.config,
    };
    let provider = LocalProvider::new();
    let mut printer = EventPrinter::new(global.json);
    let summary = warren_engine::run(&provider, request, &mut printer).await?;
    print_summary(&summary, global.json);
    Ok(match &summary.error {
        None => 0,
        Some(e) => e.reason_code.exit_class().code(),
    })
}

fn list(global: &GlobalArgs, all: bool) -> Result<i32, ErrorInfo> {
    let store = open_store(global)?;
    let records = store.list(all).map_err(|e| e.to_error_info())?;
    if global.json {
        println!("{}", json!({ "sandboxes": records }));
        return Ok(0);
    }
    if records.is_empty() {
        eprintln!(
            "no sandboxes{}",
            if all {
                ""
            } else {
                " (use --all to include destroyed ones)"
            }
        );
        return Ok(0);
    }
    println!(
        "{:<28} {:<13} {:<8} {:<26} BRANCH",
        "NAME", "STATE", "PROVIDER", "CREATED"
    );
    for r in &records {
        println!(
            "{:<28} {:<13} {:<8} {:<26} {}",
            r.name,
            r.state,
            r.provider,
            r.created_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            r.branch.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}

fn find(store: &Store, name: &str) -> Result<SandboxRecord, ErrorInfo> {
    let name = SandboxName::parse(name)
        .map_err(|e| ErrorInfo::new(ReasonCode::InvalidArgument, e.to_string()))?;
    store.get_by_name(&name).map_err(|e| e.to_error_info())
}

fn status(global: &GlobalArgs, name: &str) -> Result<i32, ErrorInfo> {
    let store = open_store(global)?;
    let r = find(&store, name)?;
    if global.json {
        println!("{}", json!({ "sandbox": r }));
        return Ok(0);
    }
    let t = |v: &time::OffsetDateTime| {
        v.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    println!("name:      {}", r.name);
    println!("id:        {}", r.id);
    println!("state:     {} (since {})", r.state, t(&r.state_changed_at));
    println!("repo:      {}", r.repo.display());
    println!("provider:  {}", r.provider);
    if let Some(model) = &r.model {
        println!("model:     {model}");
    }
    if let Some(session) = &r.session_id {
        println!("session:   {session}");
    }
    println!("created:   {}", t(&r.created_at));
    println!("tokens:    {} in, {} out", r.usage.input, r.usage.output);
    if let Some(branch) = &r.branch {
        println!(
            "branch:    {branch} ({} files changed)",
            r.changed_files.unwrap_or(0)
        );
    }
    if let Some(error) = &r.error {
        println!("error:     {} [{}]", error.message, error.reason_code);
    }
    Ok(0)
}

fn logs(global: &GlobalArgs, args: &LogsArgs) -> Result<i32, ErrorInfo> {
    let store = open_store(global)?;
    let r = find(&store, &args.name)?;
    let events = store
        .events(&r.id, args.since, None)
        .map_err(|e| e.to_error_info())?;
    let mut printer = EventPrinter::new(global.json);
    for event in &events {
        warren_engine::RunObserver::event(&mut printer, event);
    }
    Ok(0)
}

fn config_show(json: bool, repo: Option<&Path>) -> Result<i32, ErrorInfo> {
    let loaded = load_config(repo, Vec::new())?;
    if json {
        let value = json!({ "config": loaded.config, "sources": loaded.sources });
        println!("{value}");
        return Ok(0);
    }
    let text = toml::to_string_pretty(&loaded.config)
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
    println!("{text}");
    for (key, source) in &loaded.sources {
        eprintln!("# {key} = from {source}");
    }
    Ok(0)
}
