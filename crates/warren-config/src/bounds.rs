//! Bounds on numbers a typo can make absurd. A timeout of 0 would start a sandbox only to stop it at
//! once, and one of years is a run nothing ever stops; a pool of 0 runs could never admit anyone.
//! Each is refused when the config is loaded, naming the key, its source and the accepted range.

use crate::layers::ConfigError;
use crate::model::Config;

/// The longest timeout warren accepts, in seconds: 7 days. A longer agent run is a mistake (an
/// extra digit, milliseconds for seconds), not a plan.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 60 * 60;

/// A supervisor's lease: under 2 s a heartbeat (every third of it) has too little room to land
/// before the lease lapses; over an hour, a dead replica's sandboxes wait that long to be marked.
pub const MIN_LEASE_TTL_SECS: u64 = 2;
pub const MAX_LEASE_TTL_SECS: u64 = 3600;

/// The accepted range of every timeout, for messages: "1 to 604800 seconds (7 days)".
pub fn timeout_range() -> String {
    format!(
        "1 to {MAX_TIMEOUT_SECS} seconds ({} days)",
        MAX_TIMEOUT_SECS / 86_400
    )
}

/// Checks every timeout and pool size; `origin_of` names the layer that set a key.
pub(crate) fn check(
    config: &Config,
    origin_of: &dyn Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let mut timeouts: Vec<(String, u64)> = vec![
        ("timeouts.run_secs".into(), config.timeouts.run_secs),
        (
            "timeouts.inactivity_secs".into(),
            config.timeouts.inactivity_secs,
        ),
        (
            "structurer.timeout_secs".into(),
            config.structurer.timeout_secs,
        ),
        (
            "policy.approvals.timeout_secs".into(),
            config.policy.approvals.timeout_secs,
        ),
    ];
    for (name, role) in &config.roles {
        if let Some(secs) = role.run_secs {
            timeouts.push((format!("roles.{name}.run_secs"), secs));
        }
        if let Some(secs) = role.inactivity_secs {
            timeouts.push((format!("roles.{name}.inactivity_secs"), secs));
        }
        if let Some(approvals) = &role.approvals {
            timeouts.push((
                format!("roles.{name}.approvals.timeout_secs"),
                approvals.timeout_secs,
            ));
        }
    }
    for (key, secs) in timeouts {
        if !(1..=MAX_TIMEOUT_SECS).contains(&secs) {
            return Err(ConfigError::Invalid {
                origin: origin_of(&key),
                message: format!(
                    "{key} = {secs} is out of range; accepted: {}",
                    timeout_range()
                ),
                hint: Some(format!(
                    "set {key} to a number of seconds from 1 to {MAX_TIMEOUT_SECS}, e.g. 3600 for an hour"
                )),
            });
        }
    }
    let ttl = config.timeouts.lease_ttl_secs;
    if !(MIN_LEASE_TTL_SECS..=MAX_LEASE_TTL_SECS).contains(&ttl) {
        let key = "timeouts.lease_ttl_secs";
        return Err(ConfigError::Invalid {
            origin: origin_of(key),
            message: format!(
                "{key} = {ttl} is out of range; accepted: {MIN_LEASE_TTL_SECS} to {MAX_LEASE_TTL_SECS} seconds"
            ),
            hint: Some(format!(
                "set {key} to a number of seconds from {MIN_LEASE_TTL_SECS} to {MAX_LEASE_TTL_SECS}, e.g. 30"
            )),
        });
    }
    for (name, pool) in &config.pools {
        if pool.max_concurrent == 0 {
            let key = format!("pools.{name}.max_concurrent");
            return Err(ConfigError::Invalid {
                origin: origin_of(&key),
                message: format!("{key} = 0 would never admit a run; accepted: 1 or more"),
                hint: Some(format!(
                    "set {key} to how many runs may use the pool at once (1 or more)"
                )),
            });
        }
    }
    Ok(())
}
