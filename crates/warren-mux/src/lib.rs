//! Many TCP connections over one byte stream, for a sandbox warren cannot reach by network (a pod
//! whose network is closed) but can reach by an exec's stdin and stdout. yamux does the
//! multiplexing and flow control; this crate decides what a stream means.
//!
//! - A stream the **sandbox** opens starts with one byte, its [`Channel`]; the host connects it to
//!   the address warren configured for that channel (the gateway, the egress proxy). The sandbox
//!   never names a host address, so it can reach nothing warren did not route.
//! - A stream the **host** opens starts with a port (two bytes, big-endian); the sandbox connects
//!   it to `127.0.0.1:<port>` inside the sandbox (a warm OpenCode server).

mod driver;
mod host;
mod sandbox;

pub use host::{HostMux, Opener, Route};
pub use sandbox::{Listen, serve_sandbox};

/// What a sandbox-opened stream is for. The host maps each to an address of its choosing.
pub type Channel = u8;

/// The model gateway.
pub const GATEWAY: Channel = 1;
/// The egress proxy.
pub const EGRESS: Channel = 2;

/// What the sandbox side writes on its stdout once it listens, before the first yamux frame, so
/// the host knows its loopback ports are open before it starts anything that dials them.
pub const READY_LINE: &str = "warren-mux ready\n";
