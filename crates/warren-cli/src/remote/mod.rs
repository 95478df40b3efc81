//! Remote mode: with `WARREN_SERVER` (or `--server`) and `WARREN_TOKEN` (or `--token`) set,
//! the sandbox commands go through warren's HTTP API instead of the local engine, and print what
//! they print locally (the server returns the same `warren-api` views, rendered by the same
//! functions; its errors come back as the same `ErrorInfo`, so the exit codes match).
//! Commands that need the sandbox's files on this machine refuse, saying why.

mod client;
mod commands;
mod repo;

use warren_domain::{Decision, ErrorInfo, ReasonCode};

use crate::cli::{Cli, Command};
use crate::commands::CmdResult;

pub use client::Client;

/// The client when remote mode is on; `None` works locally. Commands that only make sense on
/// this machine (`serve`, `token`, `config`, `schema`, the monitor) never go remote.
pub fn client_for(cli: &Cli) -> Option<Result<Client, ErrorInfo>> {
    if matches!(
        cli.command,
        Command::Serve(_)
            | Command::Token(_)
            | Command::Config(_)
            | Command::Schema(_)
            | Command::Monitor(_)
            | Command::Completions(_)
            | Command::Doctor
    ) {
        return None;
    }
    let server = cli.global.server.as_deref().filter(|s| !s.is_empty())?;
    Some(match cli.global.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Client::new(server, token),
        None => Err(ErrorInfo::new(
            ReasonCode::Unauthorized,
            format!("WARREN_SERVER is set ({server}) but no token is"),
        )
        .with_hint("set WARREN_TOKEN (or pass --token) to a token from 'warren token create' on the server, or unset WARREN_SERVER to work locally")),
    })
}

pub async fn dispatch(client: &Client, cli: Cli) -> CmdResult<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Run(args) => commands::run(client, g, args).await,
        Command::Launch(args) => commands::launch(client, g, args).await,
        Command::Exec(args) => commands::exec(client, g, args).await,
        Command::List(args) => commands::list(client, g, args.all).await,
        Command::Status(args) => commands::status(client, g, &args.name).await,
        Command::Logs(args) => commands::logs(client, g, &args).await,
        Command::Export(args) => commands::export(client, g, args).await,
        Command::Sync(args) => commands::sync(client, g, &args.name).await,
        Command::Teardown(args) => commands::teardown(client, g, args).await,
        Command::Approve(args) => {
            let request = args.request.as_deref();
            commands::answer(client, g, &args.name, request, Decision::Approve, None).await
        }
        Command::Deny(args) => {
            let request = args.request.as_deref();
            commands::answer(client, g, &args.name, request, Decision::Deny, args.reason).await
        }
        Command::Audit(args) => commands::audit(client, g, &args).await,
        Command::Open(_) => Err(local_only(
            "open",
            "it shows the sandbox's directory and OpenCode socket on the server's host",
        )),
        Command::Pull(_) => Err(local_only(
            "pull",
            "it copies files from the sandbox's directory on the server's host",
        )),
        Command::Gc(_) => Err(local_only(
            "gc",
            "the server runs its own reconciler and retention in a loop",
        )),
        Command::Image(_) => Err(local_only(
            "image",
            "images are built on the machine that runs the sandboxes",
        )),
        Command::Serve(_)
        | Command::Token(_)
        | Command::Config(_)
        | Command::Schema(_)
        | Command::Monitor(_)
        | Command::Completions(_)
        | Command::Doctor => Err(ErrorInfo::new(
            ReasonCode::Internal,
            "a local-only command reached remote mode",
        )
        .into()),
    }
}

fn local_only(command: &str, why: &str) -> crate::commands::CliError {
    ErrorInfo::new(
        ReasonCode::InvalidArgument,
        format!("'warren {command}' does not work in remote mode: {why}"),
    )
    .with_hint(match command {
        "pull" => "use 'warren export NAME' (the branch comes back to your repository), or run it on the server's host without WARREN_SERVER".to_owned(),
        _ => format!("run 'warren {command}' on the server's host, without WARREN_SERVER / --server"),
    })
    .into()
}
