//! Command-line entry of the scripted stand-in for a language model (not a real model): loads a
//! scenario file, serves it on loopback, and tells scripts which port it took.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use warren_model_script::{STAND_IN_NOTICE, Scenario, start};

/// warren-model-script: a scripted stand-in for a language model (not a real model).
///
/// Serves an OpenAI-compatible chat-completions API (POST /v1/chat/completions, GET /v1/models)
/// that replies with the turns of a scenario file, in order, including scripted faults
/// (HTTP errors, hangs, dropped connections). Point an OpenAI-compatible client such as
/// OpenCode at the printed base URL. Received requests are listed at GET /_script/requests.
#[derive(Debug, Parser)]
#[command(name = "warren-model-script", version, about = STAND_IN_NOTICE)]
struct Args {
    /// Scenario file (.json or .toml) with the scripted turns.
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,
    /// Address to listen on; loopback with a free port by default.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Write the bound port number to this file (atomically) once listening.
    #[arg(long, value_name = "PATH")]
    port_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let scenario = Scenario::load(&args.scenario)?;
    let turns = scenario.turns.len();
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            "listening on non-loopback address {}: the stand-in is meant for local tests",
            args.listen
        );
    }
    let server = start(scenario, args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;

    {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "warren-model-script: scripted stand-in for a language model (not a real model), \
             serving {turns} turns on {}",
            server.base_url()
        )?;
        stdout.flush()?;
    }
    if let Some(path) = &args.port_file {
        write_port_file(path, server.addr().port())
            .with_context(|| format!("cannot write port file {}", path.display()))?;
    }

    wait_for_signal().await?;
    let remaining = server.remaining_turn_uses();
    tracing::info!(
        "stopping after {} requests ({remaining} scripted turn uses left)",
        server.requests().len()
    );
    server.shutdown().await;
    Ok(())
}

/// Writes `port` to a temporary file beside `path`, then renames it into place, so a reader
/// never sees a partial number.
fn write_port_file(path: &Path, port: u16) -> std::io::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
