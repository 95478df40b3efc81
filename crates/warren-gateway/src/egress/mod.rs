//! The egress proxy: when a sandbox's policy is an allow-list, this HTTP proxy beside the model
//! gateway is its only way to anything but the model. It runs on the host, outside the sandbox,
//! on a Unix socket the sandbox reaches through warren's init relay, or on a loopback TCP port
//! the provider's own relay carries the sandbox's connections to (a pod); the sandbox itself has
//! no network and no resolver. TLS goes through CONNECT tunnels, plain HTTP is forwarded request by
//! request and never follows redirects, every target is checked against the allow-list and its
//! resolved address (see [`decide`]), and every decision is reported as a notice that becomes an
//! event of the sandbox.

mod address;
mod decide;
mod io;
mod proxy;
mod record;
pub mod rules;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use record::EgressRecord;
pub use rules::{DEFAULT_PORTS, EgressPolicy, Rule, RuleError, RuleSpec};
pub(crate) use serve::{Running, start};

/// Where an egress proxy listens and what it lets through.
#[derive(Debug, Clone)]
pub struct EgressListen {
    pub at: EgressAt,
    pub policy: EgressPolicy,
}

/// The proxy's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressAt {
    /// A Unix socket; its directory is the access control, as for the gateway's own socket.
    Unix(PathBuf),
    /// A loopback TCP address (port 0: any free port), for a sandbox that cannot see a host
    /// socket and whose provider relays its connections from warren's host. The proxy asks no
    /// credential, so anything but loopback is refused: only warren's host can reach it, and
    /// only the relay hands it a sandbox's connections.
    Tcp(SocketAddr),
}
