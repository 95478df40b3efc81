//! The egress policy of a job, resolved once: `[policy]`, then the role's settings, then the
//! run's own overrides (flags, API fields) that the front ends fold into the config they hand the
//! engine. A launched sandbox keeps the policy it was launched with (saved beside its
//! workspace), so a follow-up prompt is not silently opened or closed by a config edit.

use std::path::{Path, PathBuf};

use warren_config::{AllowEntry, Config, EgressMode, PolicyConfig, RoleConfig};
use warren_domain::{ErrorInfo, ReasonCode};
use warren_gateway::egress::{EgressPolicy, RuleSpec};
use warren_provider::Provider;

use crate::paths::SandboxDirs;

const RULE_HINT: &str = "an allow entry is HOST[:PORT], *.SUFFIX[:PORT], IP[:PORT], [IPV6][:PORT] or CIDR[:PORT] (80 and 443 without a port, :* for any), or a table { host = \"...\", ports = [...], methods = [...] }; see docs/config.md [policy]";

/// The allow-list a job runs under, `None` when its egress is `none`. Every entry is checked,
/// even when egress is off, so a typo is found before it matters.
pub fn resolve(
    policy: &PolicyConfig,
    role: Option<&RoleConfig>,
) -> Result<Option<EgressPolicy>, ErrorInfo> {
    let mode = role.and_then(|r| r.egress).unwrap_or(policy.egress);
    let mut specs = Vec::new();
    for entry in policy
        .allow
        .iter()
        .chain(role.map_or(&[][..], |r| &r.allow))
    {
        specs.push(spec(entry)?);
    }
    let parsed = EgressPolicy::parse(&specs).map_err(|e| invalid(e.to_string()))?;
    Ok((mode == EgressMode::AllowList).then_some(parsed))
}

fn spec(entry: &AllowEntry) -> Result<RuleSpec, ErrorInfo> {
    match entry {
        AllowEntry::Short(target) => Ok(RuleSpec::new(target.clone())),
        AllowEntry::Rule(rule) => {
            let target = match (&rule.host, &rule.cidr) {
                (Some(t), None) | (None, Some(t)) => t.clone(),
                _ => {
                    return Err(invalid(format!(
                        "egress allow entry {rule:?} must name exactly one of host or cidr"
                    )));
                }
            };
            Ok(RuleSpec {
                target,
                ports: rule.ports.clone(),
                methods: rule.methods.clone(),
            })
        }
    }
}

fn invalid(message: String) -> ErrorInfo {
    ErrorInfo::new(ReasonCode::InvalidEgressRule, message).with_hint(RULE_HINT)
}

/// Folds a run's overrides into `policy`: `mode` (`none` or `allow-list`) replaces the
/// configured one, `allow` entries are added (and switch egress to `allow-list` when no mode is
/// given). Checks the entries, so a bad one is refused before anything exists.
pub fn apply_overrides(
    policy: &mut PolicyConfig,
    mode: Option<&str>,
    allow: &[String],
) -> Result<(), ErrorInfo> {
    let mode = mode
        .map(|raw| {
            EgressMode::parse(raw).ok_or_else(|| {
                ErrorInfo::new(
                    ReasonCode::InvalidArgument,
                    format!("egress {raw:?} is not a mode; accepted: none, allow-list"),
                )
                .with_hint("use --egress allow-list with --allow HOST[:PORT], or --egress none")
            })
        })
        .transpose()?;
    if mode == Some(EgressMode::None) && !allow.is_empty() {
        return Err(ErrorInfo::new(
            ReasonCode::InvalidArgument,
            "allow entries were given with egress none, which lets nothing out",
        )
        .with_hint("drop --egress none (allow entries switch egress to allow-list)"));
    }
    for raw in allow {
        spec(&AllowEntry::Short(raw.clone()))
            .and_then(|s| EgressPolicy::parse(&[s]).map_err(|e| invalid(e.to_string())))?;
        policy.allow.push(AllowEntry::Short(raw.clone()));
    }
    if let Some(mode) = mode {
        policy.egress = mode;
    } else if !allow.is_empty() {
        policy.egress = EgressMode::AllowList;
    }
    Ok(())
}

/// Refuses an allow-list on a provider that cannot enforce one: its sandboxes must have no
/// network of their own, or the policy would be a suggestion. Such a sandbox reaches the proxy
/// through the run directory (host paths) or through the provider's own relay (no shared file
/// system: the provider carries the egress port as it carries the gateway).
pub fn check_enforceable<P: Provider>(
    provider: &P,
    egress: Option<&EgressPolicy>,
) -> Result<(), ErrorInfo> {
    if egress.is_none() {
        return Ok(());
    }
    let why = if provider.isolates_network() {
        None
    } else {
        Some("it does not guarantee that its sandboxes have no network of their own")
    };
    match why {
        None => Ok(()),
        Some(why) => Err(ErrorInfo::new(
            ReasonCode::EgressUnenforceable,
            format!(
                "the {} provider cannot enforce an egress allow-list: {why}",
                provider.name()
            ),
        )
        .with_hint("use a provider whose sandboxes have no network of their own (local, docker without the host's Docker socket, kubernetes), or run with egress none")),
    }
}

fn saved_path(dirs: &SandboxDirs) -> PathBuf {
    dirs.root.join("policy.json")
}

/// Keeps the policy a sandbox was launched with, for its follow-up prompts.
pub(crate) fn save(dirs: &SandboxDirs, policy: &PolicyConfig) -> Result<(), ErrorInfo> {
    let text = serde_json::to_string(policy)
        .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
    write(&saved_path(dirs), &text).map_err(|e| {
        ErrorInfo::new(
            ReasonCode::SandboxFailed,
            format!("cannot save the sandbox's egress policy: {e}"),
        )
    })
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// `config` with the sandbox's own policy, when it was launched with one saved: its egress and
/// allow-list replace the config's; its approval rules are kept and the prompt's own are added
/// (a follow-up can ask for more approvals, never drop the ones the sandbox was launched with;
/// the wait is the prompt's).
pub(crate) fn with_saved(config: &Config, dirs: &SandboxDirs) -> Result<Config, ErrorInfo> {
    let mut config = config.clone();
    match std::fs::read_to_string(saved_path(dirs)) {
        Ok(text) => {
            let saved: PolicyConfig = serde_json::from_str(&text).map_err(|e| {
                ErrorInfo::new(
                    ReasonCode::SandboxFailed,
                    format!("the sandbox's saved policy is unreadable: {e}"),
                )
            })?;
            let now = std::mem::replace(&mut config.policy, saved);
            let approvals = &mut config.policy.approvals;
            for pattern in now.approvals.bash {
                if !approvals.bash.contains(&pattern) {
                    approvals.bash.push(pattern);
                }
            }
            for pattern in now.approvals.edit {
                if !approvals.edit.contains(&pattern) {
                    approvals.edit.push(pattern);
                }
            }
            approvals.timeout_secs = now.approvals.timeout_secs;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ErrorInfo::new(
                ReasonCode::SandboxFailed,
                format!("cannot read the sandbox's saved policy: {e}"),
            ));
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn overrides_add_entries_and_switch_the_mode() {
        let mut policy = PolicyConfig::default();
        apply_overrides(&mut policy, None, &["127.0.0.1:8000".into()]).unwrap();
        assert_eq!(policy.egress, EgressMode::AllowList);
        let resolved = resolve(&policy, None).unwrap().unwrap();
        assert_eq!(resolved.rules().len(), 1);

        let mut policy = PolicyConfig::default();
        let e = apply_overrides(&mut policy, Some("none"), &["x.org".into()]).unwrap_err();
        assert_eq!(e.reason_code, ReasonCode::InvalidArgument);
        let e = apply_overrides(&mut policy, Some("open"), &[]).unwrap_err();
        assert_eq!(e.reason_code, ReasonCode::InvalidArgument);
        let e = apply_overrides(&mut policy, None, &["https://x.org".into()]).unwrap_err();
        assert_eq!(e.reason_code, ReasonCode::InvalidEgressRule);
        assert!(e.hint.is_some());
        assert_eq!(
            policy,
            PolicyConfig::default(),
            "a refused override changed nothing"
        );
    }

    #[test]
    fn a_role_overrides_the_mode_and_adds_entries() {
        let policy = PolicyConfig {
            egress: EgressMode::None,
            allow: vec![AllowEntry::Short("pypi.org".into())],
            ..Default::default()
        };
        assert!(resolve(&policy, None).unwrap().is_none());
        let role = RoleConfig {
            egress: Some(EgressMode::AllowList),
            allow: vec![AllowEntry::Rule(warren_config::AllowRule {
                cidr: Some("10.0.0.0/8".into()),
                ports: vec![5432],
                ..Default::default()
            })],
            ..RoleConfig::default()
        };
        let resolved = resolve(&policy, Some(&role)).unwrap().unwrap();
        assert_eq!(resolved.rules().len(), 2);

        let bad = RoleConfig {
            allow: vec![AllowEntry::Rule(warren_config::AllowRule::default())],
            ..RoleConfig::default()
        };
        let e = resolve(&policy, Some(&bad)).unwrap_err();
        assert_eq!(e.reason_code, ReasonCode::InvalidEgressRule);
    }
}
