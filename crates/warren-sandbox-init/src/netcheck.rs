//! `warren-sandbox-init netcheck`: is this sandbox's network closed? A pod always has a network
//! namespace of the cluster's making, and whether the deny-all NetworkPolicy warren put before it
//! is enforced depends on the cluster's network plugin, which the API does not say. So the pod is
//! asked: an interface besides loopback, then a TCP connection to the addresses a pod can usually
//! reach (where its routes lead: a gateway, the host side of a bridge; the API server's service).
//! An answer of any kind (connected, or refused by the peer) means packets leave the pod; only
//! silence or "unreachable" is closed.
//!
//! Prints `closed` or `open: <what answered>`; exits 0 when closed, 3 when open.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// Long enough for any peer on a cluster network to answer (a reset or a SYN-ACK comes back in
/// milliseconds there); a dropped packet costs all of it, once per pod.
const TIMEOUT: Duration = Duration::from_millis(750);

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
    // Port 53: the cluster's DNS often lives at or behind a gateway; any answer will do.
    let mut targets: Vec<SocketAddr> = route_peers()
        .into_iter()
        .map(|ip| SocketAddr::new(IpAddr::V4(ip), 53))
        .collect();
    if let (Ok(host), Ok(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) && let (Ok(ip), Ok(port)) = (host.parse::<IpAddr>(), port.parse::<u16>())
    {
        targets.push(SocketAddr::new(ip, port));
    }
    // All at once: on a closed network each one costs the whole timeout.
    let probes: Vec<_> = targets
        .into_iter()
        .map(|target| {
            std::thread::spawn(move || match TcpStream::connect_timeout(&target, TIMEOUT) {
                Ok(_) => Some(format!("connected to {target}")),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Some(format!("{target} answered (connection refused)"))
                }
                Err(_) => None,
            })
        })
        .collect();
    // Interfaces, but nothing they lead to answers (or no route at all): nothing leaves.
    probes.into_iter().find_map(|p| p.join().ok().flatten())
}

/// Who the pod's routes lead to, from the kernel's IPv4 routing table: each route's gateway,
/// and for a route with none (a subnet on the link, as a bridge network gives) the subnet's
/// first address, where a bridge's host side usually sits.
fn route_peers() -> Vec<Ipv4Addr> {
    let Ok(table) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    let mut peers = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(iface), Some(dest), Some(gateway)) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        if *iface == "lo" {
            continue;
        }
        // The table holds each address as a little-endian u32 of network-order bytes.
        let parse = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::swap_bytes);
        let peer = match (parse(gateway), parse(dest)) {
            (Some(g), _) if g != 0 => Ipv4Addr::from(g),
            (_, Some(d)) if d != 0 => Ipv4Addr::from(d + 1),
            _ => continue,
        };
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }
    peers
}
