//! The allow-list an egress proxy enforces, parsed once from the configuration's entries so that a
//! bad entry is refused before any sandbox exists, and matched per request without allocating.
//!
//! An entry names a host (`registry.npmjs.org`, `*.npmjs.org`), a literal IP (`127.0.0.1`,
//! `[::1]`) or a CIDR (`10.0.0.0/8`), optionally with a port (`:8080`, `:*` for any); without one
//! only 80 and 443 are allowed. Methods, when given, restrict plain HTTP requests; a rule with
//! methods allows a CONNECT tunnel only when it lists `CONNECT`, since what goes through a tunnel
//! cannot be seen.

use std::fmt;
use std::net::IpAddr;

/// The ports a rule without an explicit one allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// One allow-list entry as configured: a short string, or a table for ports and methods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSpec {
    /// `HOST[:PORT]`, `*.SUFFIX[:PORT]`, `IP[:PORT]`, `[IPV6][:PORT]` or `CIDR[:PORT]`.
    pub target: String,
    /// Extra ports (the target's own port, if any, counts too). Empty: the target's port, else
    /// [`DEFAULT_PORTS`].
    pub ports: Vec<u16>,
    /// HTTP methods for plain HTTP; empty: any method, and CONNECT.
    pub methods: Vec<String>,
}

impl RuleSpec {
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            ..Self::default()
        }
    }
}

/// Why an entry is not a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("egress allow entry {entry:?} is invalid: {reason}")]
pub struct RuleError {
    pub entry: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A lowercase host name, matched exactly.
    Host(String),
    /// `*.suffix`: any name with at least one more label in front of `.suffix` (lowercase, with
    /// its leading dot).
    Wildcard(String),
    /// An address range; a literal IP is a range of one.
    Net { base: IpAddr, prefix: u8 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    Any,
    List(Vec<u16>),
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    target: Target,
    ports: Ports,
    /// Uppercase; empty means any.
    methods: Vec<String>,
    /// How the rule is shown in events: the entry as configured.
    text: String,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The allow-list: nothing gets out that no rule allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    rules: Vec<Rule>,
}

impl EgressPolicy {
    /// Parses every entry; the first bad one is the error.
    pub fn parse(specs: &[RuleSpec]) -> Result<Self, RuleError> {
        let rules = specs.iter().map(Rule::parse).collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule that allows `method` to `host:port` by name (host and wildcard rules).
    pub(crate) fn by_name(&self, host: &str, port: u16, method: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.matches_name(host) && r.allows(port, method))
    }

    /// The first rule that names `ip` itself (a literal IP or a CIDR holding it).
    pub(crate) fn by_address(&self, ip: IpAddr, port: u16, method: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|r| r.contains(ip) && r.allows(port, method))
    }
}

impl Rule {
    pub fn parse(spec: &RuleSpec) -> Result<Self, RuleError> {
        let fail = |reason: &str| RuleError {
            entry: spec.target.clone(),
            reason: reason.to_owned(),
        };
        let raw = spec.target.trim();
        if raw.is_empty() {
            return Err(fail("it is empty"));
        }
        if raw.contains("://") || raw.contains('@') || raw.contains(char::is_whitespace) {
            return Err(fail(
                "give a host, IP or CIDR with an optional :PORT, not a URL",
            ));
        }
        let (target, port) = split_port(raw).map_err(|r| fail(&r))?;
        let target = parse_target(target).map_err(|r| fail(&r))?;
        let ports = match port {
            PortSpec::Any => Ports::Any,
            PortSpec::One(p) => Ports::List(vec![p]),
            PortSpec::None if spec.ports.is_empty() => Ports::List(DEFAULT_PORTS.to_vec()),
            PortSpec::None => Ports::List(Vec::new()),
        };
        let ports = match ports {
            Ports::List(mut list) => {
                if spec.ports.contains(&0) {
                    return Err(fail("port 0 is not a port"));
                }
                list.extend(&spec.ports);
                list.sort_unstable();
                list.dedup();
                Ports::List(list)
            }
            Ports::Any => Ports::Any,
        };
        let mut methods = Vec::new();
        for m in &spec.methods {
            let upper = m.trim().to_ascii_uppercase();
            if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(fail(&format!("{m:?} is not an HTTP method")));
            }
            methods.push(upper);
        }
        let mut text = raw.to_owned();
        if !spec.ports.is_empty() {
            let list: Vec<String> = spec.ports.iter().map(u16::to_string).collect();
            text.push_str(&format!(" ports={}", list.join(",")));
        }
        if !methods.is_empty() {
            text.push_str(&format!(" methods={}", methods.join(",")));
        }
        Ok(Self {
            target,
            ports,
            methods,
            text,
        })
    }

    fn allows(&self, port: u16, method: &str) -> bool {
        let port_ok = match &self.ports {
            Ports::Any => true,
            Ports::List(list) => list.contains(&port),
        };
        port_ok && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }

    fn matches_name(&self, host: &str) -> bool {
        match &self.target {
            Target::Host(name) => name == host,
            Target::Wildcard(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
            Target::Net { .. } => false,
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match &self.target {
            Target::Net { base, prefix } => in_net(ip, *base, *prefix),
            _ => false,
        }
    }
}

enum PortSpec {
    None,
    Any,
    One(u16),
}

/// Splits `target[:port]`, where an IPv6 target is bracketed (`[::1]:8080`) or a bare address
/// without a port (`::1`, `fd00::/8`).
fn split_port(raw: &str) -> Result<(&str, PortSpec), String> {
    let (target, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (inner, after) = rest
            .split_once(']')
            .ok_or_else(|| "an opening '[' needs its ']'".to_owned())?;
        match after {
            "" => (inner, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (inner, Some(p)),
                None => return Err("only :PORT may follow ']'".into()),
            },
        }
    } else if raw.matches(':').count() > 1 {
        // An unbracketed IPv6 address or range: no port.
        (raw, None)
    } else {
        match raw.rsplit_once(':') {
            Some((t, p)) => (t, Some(p)),
            None => (raw, None),
        }
    };
    let port = match port {
        None => PortSpec::None,
        Some("*") => PortSpec::Any,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("{p:?} is not a port (1 to 65535, or *)")),
            Ok(n) => PortSpec::One(n),
        },
    };
    Ok((target, port))
}

fn parse_target(raw: &str) -> Result<Target, String> {
    if let Some((addr, prefix)) = raw.split_once('/') {
        let base: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} before '/' is not an IP address"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("/{prefix} is not a prefix length (0 to {max})"))?;
        if prefix == 0 {
            return Err("a /0 range would allow every address; name the ranges you need".into());
        }
        return Ok(Target::Net { base, prefix });
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(Target::Net { base: ip, prefix });
    }
    let lower = raw.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        check_name(suffix)?;
        if !suffix.contains('.') {
            return Err("a wildcard needs at least two labels after '*.' (*.example.org)".into());
        }
        return Ok(Target::Wildcard(format!(".{suffix}")));
    }
    if lower.contains('*') {
        return Err("'*' is allowed only as the whole first label (*.example.org)".into());
    }
    check_name(&lower)?;
    Ok(Target::Host(lower))
}

fn check_name(name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err("it is not a host name".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("{label:?} is not a valid host name label"));
        }
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("it looks like an IPv4 address but is not a valid one".into());
    }
    Ok(())
}

/// Whether `ip` is in `base/prefix`. An IPv4-mapped IPv6 address is compared as IPv4.
pub(crate) fn in_net(ip: IpAddr, base: IpAddr, prefix: u8) -> bool {
    match (canonical(ip), base) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address it carries: a rule or a refusal about one must hold
/// for the other.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
