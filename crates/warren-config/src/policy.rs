//! `[policy]`: what a sandbox may reach besides its model (egress) and what the agent may do
//! without a person saying yes (approvals). Egress is an allow-list the host's proxy enforces;
//! approvals name OpenCode permission patterns (bash commands such as `git push*`, edited paths)
//! that make the agent ask. Without either, a sandbox reaches its model only and nothing asks.

use serde::{Deserialize, Serialize};

/// `[policy]`. The egress entries are checked when a run resolves (their syntax is the egress
/// proxy's: `warren_gateway::egress::rules`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub egress: EgressMode,
    /// Hosts (`registry.npmjs.org`, `*.npmjs.org`), literal IPs and CIDRs, each with an optional
    /// `:PORT` (80 and 443 without one), or tables with `ports` and `methods`.
    pub allow: Vec<AllowEntry>,
    pub approvals: ApprovalsConfig,
}

/// OpenCode permission patterns that need a person's approval, and how long one is waited for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// Bash commands, as OpenCode matches them (`*` any text): `git push*`, `rm -rf *`.
    pub bash: Vec<String>,
    /// Edited files, relative to the workspace (`docs/*`, `*.lock`).
    pub edit: Vec<String>,
    /// After this long unanswered, a request is denied: a run never hangs on a question.
    pub timeout_secs: u64,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            bash: Vec::new(),
            edit: Vec::new(),
            timeout_secs: 300,
        }
    }
}

impl ApprovalsConfig {
    /// Whether anything can ask at all.
    pub fn is_empty(&self) -> bool {
        self.bash.is_empty() && self.edit.is_empty()
    }
}

/// Every approval pattern is non-empty: an empty one would match nothing and look like a rule.
pub(crate) fn check(
    config: &crate::Config,
    origin_of: &dyn Fn(&str) -> String,
) -> Result<(), crate::ConfigError> {
    let mut sets = vec![("policy.approvals".to_owned(), &config.policy.approvals)];
    for (name, role) in &config.roles {
        if let Some(approvals) = &role.approvals {
            sets.push((format!("roles.{name}.approvals"), approvals));
        }
    }
    for (prefix, set) in sets {
        for (kind, patterns) in [("bash", &set.bash), ("edit", &set.edit)] {
            if patterns.iter().any(|p| p.trim().is_empty()) {
                let key = format!("{prefix}.{kind}");
                return Err(crate::ConfigError::Invalid {
                    origin: origin_of(&key),
                    message: format!("{key} has an empty pattern"),
                    hint: Some(format!(
                        "give each pattern as OpenCode matches it, e.g. {key} = [\"git push*\"]"
                    )),
                });
            }
        }
    }
    Ok(())
}

/// Whether a sandbox has a way out besides its model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EgressMode {
    /// Only the model gateway: no other network at all.
    #[default]
    None,
    /// An HTTP(S) proxy on the host lets through what `allow` lists, and nothing else.
    AllowList,
}

impl EgressMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::AllowList => "allow-list",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" => Some(Self::None),
            "allow-list" => Some(Self::AllowList),
            _ => None,
        }
    }
}

/// One `allow` entry: `"HOST[:PORT]"`, or a table naming a `host` (or `cidr`) with `ports` and,
/// for plain HTTP, `methods`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AllowEntry {
    Short(String),
    Rule(AllowRule),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
}
