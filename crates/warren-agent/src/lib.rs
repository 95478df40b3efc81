//! The agent runtime for OpenCode: how warren configures it inside a sandbox, how its JSON event
//! stream becomes typed [`warren_domain::AgentEvent`]s, and how one run is supervised.

pub mod classify;
pub mod events;
pub mod opencode;
pub mod supervise;

pub use classify::classify_failure;
pub use events::{Parsed, parse_line};
pub use opencode::{GATEWAY_PORT, OpencodeLaunch, PLACEHOLDER_API_KEY};
pub use supervise::{AgentRun, EndReason, Limits, supervise};
