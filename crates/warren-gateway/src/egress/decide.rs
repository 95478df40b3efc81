//! One egress decision: is `method host:port` allowed, and if so, which address to connect to.
//! Names are resolved here, on the host, and every candidate address is checked; the proxy then
//! connects to the address that was checked, never to the name again, so a second DNS answer
//! (rebinding) cannot move the connection somewhere the policy did not look at.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::address::non_public;
use super::rules::{EgressPolicy, canonical};

/// How long a host name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed { address: SocketAddr, rule: String },
    Denied { reason: String },
}

fn deny(reason: impl Into<String>) -> Decision {
    Decision::Denied {
        reason: reason.into(),
    }
}

/// Decides for a request target. `host` is as the client sent it (brackets already removed).
pub(crate) async fn decide(policy: &EgressPolicy, host: &str, port: u16, method: &str) -> Decision {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return match policy.by_address(ip, port, method) {
            Some(rule) => Decision::Allowed {
                address: SocketAddr::new(canonical(ip), port),
                rule: rule.to_string(),
            },
            None => deny(format!(
                "{ip} is a raw IP address and no rule names it (with port {port}, method {method})"
            )),
        };
    }
    // A name no rule allows is never resolved: a DNS query is itself a way out (tunnelled data
    // in the name), so it is refused before one is sent.
    let Some(by_name) = policy.by_name(&host, port, method) else {
        return deny(format!(
            "no rule allows {host} (with port {port}, method {method})"
        ));
    };
    let addresses = match resolve(&host, port).await {
        Ok(list) if !list.is_empty() => list,
        Ok(_) => return deny(format!("{host} has no address")),
        Err(e) => return deny(format!("{host} could not be resolved: {e}")),
    };
    // A public address is allowed by the name's rule; an address of the host or its network only
    // when a rule names that address itself.
    let mut refused = None;
    for addr in &addresses {
        let ip = canonical(addr.ip());
        let rule = match non_public(ip) {
            None => Some(by_name),
            Some(class) => {
                refused.get_or_insert((ip, class));
                policy.by_address(ip, port, method)
            }
        };
        if let Some(rule) = rule {
            return Decision::Allowed {
                address: SocketAddr::new(ip, port),
                rule: rule.to_string(),
            };
        }
    }
    match refused {
        Some((ip, class)) => deny(format!(
            "{host} resolves to {ip}, a {class} address, and no rule names that address"
        )),
        None => deny(format!("{host} has no usable address")),
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::egress::rules::RuleSpec;

    fn policy(entries: &[&str]) -> EgressPolicy {
        let specs: Vec<RuleSpec> = entries.iter().map(|e| RuleSpec::new(*e)).collect();
        EgressPolicy::parse(&specs).unwrap()
    }

    fn denied(d: &Decision) -> &str {
        match d {
            Decision::Denied { reason } => reason,
            Decision::Allowed { .. } => panic!("allowed: {d:?}"),
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_needs_the_address_named() {
        let p = policy(&["localhost:8000"]);
        let d = decide(&p, "localhost", 8000, "GET").await;
        assert!(denied(&d).contains("loopback"), "{d:?}");

        let p = policy(&["localhost:8000", "127.0.0.1:8000"]);
        match decide(&p, "localhost", 8000, "GET").await {
            Decision::Allowed { address, rule } => {
                assert_eq!(address, "127.0.0.1:8000".parse().unwrap());
                assert_eq!(rule, "127.0.0.1:8000");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn raw_addresses_need_a_rule_naming_them() {
        let p = policy(&["localhost:*"]);
        let d = decide(&p, "169.254.169.254", 80, "GET").await;
        assert!(denied(&d).contains("raw IP"), "{d:?}");
        let d = decide(&p, "127.0.0.1", 80, "GET").await;
        assert!(denied(&d).contains("raw IP"), "{d:?}");
        let p = policy(&["169.254.0.0/16"]);
        assert!(matches!(
            decide(&p, "169.254.169.254", 80, "GET").await,
            Decision::Allowed { .. }
        ));
    }

    #[tokio::test]
    async fn unknown_names_and_unlisted_hosts_are_refused() {
        let p = policy(&["127.0.0.1:*", "no-such-host.invalid:443"]);
        // Allowed by address, but a name is matched by name: localhost is not resolved.
        let d = decide(&p, "localhost", 80, "GET").await;
        assert!(denied(&d).contains("no rule allows localhost"), "{d:?}");
        let d = decide(&p, "no-such-host.invalid", 443, "CONNECT").await;
        assert!(denied(&d).contains("could not be resolved"), "{d:?}");
        let d = decide(&EgressPolicy::default(), "localhost", 80, "GET").await;
        assert!(denied(&d).contains("no rule allows"), "{d:?}");
    }
}
