//! `warren-sandbox-init mux --listen CHANNEL=ADDR...`: the sandbox's end of warren's relay for a
//! sandbox with no network path to the host (a pod). It listens on the given loopback addresses
//! and carries their connections to warren over its own stdin and stdout (see `warren-mux`); it
//! ends when warren closes its stdin. The only part of the init that needs an async runtime, so
//! the runtime is built here and nowhere else.

use std::process::ExitCode;

use warren_mux::{Channel, Listen};

pub(crate) fn main(args: &[String]) -> Result<ExitCode, String> {
    let listens = parse(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("cannot start the relay's runtime: {e}"))?;
    runtime.block_on(async {
        let mut bound = Vec::new();
        for (channel, address) in listens {
            let listener = tokio::net::TcpListener::bind(&address)
                .await
                .map_err(|e| format!("cannot listen on {address}: {e}"))?;
            bound.push(Listen { channel, listener });
        }
        warren_mux::serve_sandbox(tokio::io::stdin(), tokio::io::stdout(), bound)
            .await
            .map_err(|e| format!("the relay to warren ended: {e}"))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `CHANNEL=ADDR` pairs; the address must be loopback, so nothing outside the sandbox can use the
/// relay.
fn parse(args: &[String]) -> Result<Vec<(Channel, String)>, String> {
    let mut listens = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg != "--listen" {
            return Err(format!(
                "unexpected argument {arg:?}; usage: mux --listen CHANNEL=127.0.0.1:PORT..."
            ));
        }
        let spec = iter
            .next()
            .ok_or_else(|| "--listen needs CHANNEL=ADDR".to_owned())?;
        let (channel, address) = spec
            .split_once('=')
            .ok_or_else(|| format!("--listen {spec}: expected CHANNEL=ADDR"))?;
        let channel = channel
            .parse::<Channel>()
            .map_err(|e| format!("--listen {spec}: bad channel: {e}"))?;
        let addr: std::net::SocketAddr = address
            .parse()
            .map_err(|e| format!("--listen {spec}: bad address: {e}"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("--listen {spec}: the address must be loopback"));
        }
        listens.push((channel, address.to_owned()));
    }
    if listens.is_empty() {
        return Err("mux needs at least one --listen CHANNEL=ADDR".to_owned());
    }
    Ok(listens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_loopback_listens_only() {
        assert_eq!(
            parse(&strings(&["--listen", "1=127.0.0.1:4000"])).unwrap_or_default(),
            vec![(1, "127.0.0.1:4000".to_owned())]
        );
        assert!(parse(&strings(&["--listen", "1=0.0.0.0:4000"])).is_err());
        assert!(parse(&strings(&["--listen", "x=127.0.0.1:4000"])).is_err());
        assert!(parse(&strings(&["--listen"])).is_err());
        assert!(parse(&[]).is_err());
    }
}
