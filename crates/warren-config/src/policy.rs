//! `[policy]`: what the agent may do without a person saying yes. Approvals name OpenCode
//! permission patterns (bash commands such as `git push*`, edited paths) that make the agent ask;
//! without any, nothing asks and a run is as unattended as ever.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
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
