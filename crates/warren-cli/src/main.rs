//! The `warren` binary: parses arguments, loads config, calls the engine, and renders the result.
//! Results go to stdout, progress and logs to stderr; exit codes follow the failure class.

mod cli;
mod commands;
mod completions;
mod follow;
mod hints;
mod kube_settings;
mod output;
mod provider;
mod remote;
mod render;
mod supervisor;
use warren_engine::views;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    completions::answer_callback();
    let cli = cli::Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    let code = runtime.block_on(commands::dispatch(cli));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(output::color_enabled())
        .try_init();
}
