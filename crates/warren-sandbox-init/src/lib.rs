//! `warren-sandbox-init` runs inside the sandbox, before the agent. The sandbox has its own network
//! namespace with only loopback, so OpenCode cannot reach the host; warren bind-mounts the model
//! gateway's Unix socket into the sandbox and this process relays `127.0.0.1:PORT` to it. Then it
//! runs the agent command and exits with its status. It uses only `std` and threads so it adds
//! almost nothing to a sandbox's memory.
//!
//! A warm OpenCode server is reached the other way round: `--expose SOCKET=PORT` listens on a
//! Unix socket in the shared run directory and relays each connection to `127.0.0.1:PORT` here,
//! so warren on the host can drive the server through it.
//!
//! A sandbox with no shared file system (a pod) has no socket to relay to: there `mux` carries
//! the gateway's connections over the stdin and stdout of an exec warren holds open.
//!
//! Usage: `warren-sandbox-init [--relay PORT=SOCKET]... [--expose SOCKET=PORT]... -- COMMAND [ARGS...]`
//! or `warren-sandbox-init mux --listen CHANNEL=127.0.0.1:PORT...`, or `warren-sandbox-init netcheck`

mod mux;
mod netcheck;
mod relay;

use std::process::{Command, ExitCode, Stdio};

/// Entry point of the `warren-sandbox-init` binary (built by warren-cli, beside `warren`).
pub fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(message) => {
            eprintln!("warren-sandbox-init: {message}");
            ExitCode::from(125)
        }
    }
}

fn run() -> Result<ExitCode, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("mux", rest)) = args.split_first().map(|(a, r)| (a.as_str(), r)) {
        return mux::main(rest);
    }
    if args.first().map(String::as_str) == Some("netcheck") {
        return Ok(netcheck::main());
    }
    let Parsed {
        relays,
        exposes,
        command,
    } = parse_args(&args)?;
    for (port, socket) in relays {
        relay::start(port, socket.into())?;
    }
    for (socket, port) in exposes {
        relay::expose(socket.into(), port)?;
    }
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| "no command given after '--'".to_owned())?;
    let status = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    Ok(exit_code_of(status))
}

#[derive(Debug, Default)]
struct Parsed {
    /// Loopback port → Unix socket (out of the sandbox).
    relays: Vec<(u16, String)>,
    /// Unix socket → loopback port (into a server in this sandbox).
    exposes: Vec<(String, u16)>,
    command: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--relay" => {
                let spec = iter
                    .next()
                    .ok_or_else(|| "--relay needs PORT=SOCKET".to_owned())?;
                let (port, socket) = spec
                    .split_once('=')
                    .ok_or_else(|| format!("--relay {spec}: expected PORT=SOCKET"))?;
                let port = port
                    .parse::<u16>()
                    .map_err(|e| format!("--relay {spec}: bad port: {e}"))?;
                parsed.relays.push((port, socket.to_owned()));
            }
            "--expose" => {
                let spec = iter
                    .next()
                    .ok_or_else(|| "--expose needs SOCKET=PORT".to_owned())?;
                let (socket, port) = spec
                    .rsplit_once('=')
                    .ok_or_else(|| format!("--expose {spec}: expected SOCKET=PORT"))?;
                let port = port
                    .parse::<u16>()
                    .map_err(|e| format!("--expose {spec}: bad port: {e}"))?;
                parsed.exposes.push((socket.to_owned(), port));
            }
            "--" => {
                parsed.command = iter.cloned().collect();
                return Ok(parsed);
            }
            other => {
                return Err(format!(
                    "unexpected argument {other:?}; usage: [--relay PORT=SOCKET]... [--expose SOCKET=PORT]... -- COMMAND"
                ));
            }
        }
    }
    Err("missing '--' before the command".to_owned())
}

fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let signal = status.signal().unwrap_or(0);
    ExitCode::from(u8::try_from(128 + signal).unwrap_or(255))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_relays_and_command() {
        let parsed = parse_args(&strings(&[
            "--relay",
            "4000=/run/warren/gw.sock",
            "--expose",
            "/run/warren/oc=1.sock=4096",
            "--",
            "opencode",
            "run",
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            parsed.relays,
            vec![(4000, "/run/warren/gw.sock".to_owned())]
        );
        assert_eq!(
            parsed.exposes,
            vec![("/run/warren/oc=1.sock".to_owned(), 4096)]
        );
        assert_eq!(parsed.command, strings(&["opencode", "run"]));
    }

    #[test]
    fn rejects_malformed_relays() {
        assert!(parse_args(&strings(&["--relay", "x=/s", "--", "a"])).is_err());
        assert!(parse_args(&strings(&["--relay", "4000", "--", "a"])).is_err());
        assert!(parse_args(&strings(&["opencode"])).is_err());
        assert!(parse_args(&strings(&["--expose", "/s", "--", "a"])).is_err());
    }
}
