//! `warren-sandbox-init netcheck`: is this sandbox's network closed? A pod always has a network
//! namespace of the cluster's making, and whether the deny-all NetworkPolicy warren put before it
//! is enforced depends on the cluster's network plugin, which the API does not say. So the pod is
//! asked: an interface besides loopback, then a TCP connection to the addresses a pod can usually
//! reach (its default gateway, the API server's service). An answer of any kind (connected, or
//! refused by the peer) means packets leave the pod; only silence or "unreachable" is closed.
//!
//! Prints `closed` or `open: <what answered>`; exits 0 when closed, 3 when open.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn main() -> ExitCode {
    match reachable() {
        None => {
            println!("closed");
            ExitCode::SUCCESS
        }
        Some(what) => {
            println!("open: {what}");
            ExitCode::from(3)
        }
    }
}

fn reachable() -> Option<String> {
    let interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != "lo")
                .collect()
        })
        .unwrap_or_default();
    if interfaces.is_empty() {
        return None;
    }
    let mut targets = Vec::new();
    if let Some(gateway) = default_gateway() {
        // Port 53: the cluster's DNS often lives at or behind the gateway; any answer will do.
        targets.push(SocketAddr::new(IpAddr::V4(gateway), 53));
    }
    if let (Ok(host), Ok(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) && let (Ok(ip), Ok(port)) = (host.parse::<IpAddr>(), port.parse::<u16>())
    {
        targets.push(SocketAddr::new(ip, port));
    }
    for target in &targets {
        match TcpStream::connect_timeout(target, TIMEOUT) {
            Ok(_) => return Some(format!("connected to {target}")),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Some(format!("{target} answered (connection refused)"));
            }
            Err(_) => {}
        }
    }
    if targets.is_empty() {
        // Interfaces but no route anywhere and nothing to try: nothing leaves.
        return None;
    }
    None
}

/// The IPv4 default route's gateway, from the kernel's routing table.
fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"00000000") {
            return None;
        }
        let gateway = u32::from_str_radix(fields.get(2)?, 16).ok()?;
        // The table is in host byte order of a little-endian u32 holding network order.
        Some(Ipv4Addr::from(gateway.swap_bytes()))
    })
}
