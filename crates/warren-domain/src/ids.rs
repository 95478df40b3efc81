//! Identifiers: a sandbox has an opaque id (UUIDv7, sortable by creation) and a user-chosen name
//! that must be safe as a git branch component, a directory name and a container name.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct SandboxId(String);

impl SandboxId {
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string())
    }

    pub fn from_stored(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last 12 hex digits, for directory and ref names. Not the first 12: in a UUIDv7 those
    /// are the creation millisecond, which two sandboxes launched together can share.
    pub fn short(&self) -> &str {
        let start = self.0.len().saturating_sub(12);
        &self.0[start..]
    }
}

impl Default for SandboxId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for SandboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

/// A sandbox name: 1 to 63 characters of `[a-z0-9._-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SandboxName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid sandbox name {name:?}: {problem}; use 1-63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
)]
pub struct InvalidName {
    pub name: String,
    pub problem: &'static str,
}

impl SandboxName {
    pub fn parse(raw: &str) -> Result<Self, InvalidName> {
        let fail = |problem| InvalidName {
            name: raw.to_owned(),
            problem,
        };
        if raw.is_empty() {
            return Err(fail("it is empty"));
        }
        if raw.len() > 63 {
            return Err(fail("it is longer than 63 characters"));
        }
        let first = raw.as_bytes()[0];
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(fail("it must start with a lowercase letter or a digit"));
        }
        if !raw.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        }) {
            return Err(fail(
                "it contains a character outside a-z, 0-9, '.', '_', '-'",
            ));
        }
        if raw.contains("..") || raw.ends_with('.') || raw.ends_with(".lock") {
            return Err(fail(
                "git refuses '..', a trailing '.' or a '.lock' suffix in branch names",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A name derived from a prompt and a random suffix, for runs where the user gave none.
    pub fn generate(prompt: &str) -> Self {
        let mut slug = String::new();
        for word in prompt.split(|c: char| !c.is_ascii_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            if slug.len() + word.len() + 1 > 24 {
                break;
            }
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.push_str(&word.to_ascii_lowercase());
        }
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        if slug.is_empty() {
            Self(format!("run-{suffix}"))
        } else {
            Self(format!("{slug}-{suffix}"))
        }
    }

    /// The valid name closest to `raw` (lowercased, other characters turned into '-'), for a
    /// hint after `raw` was refused; `None` when nothing usable is left.
    pub fn suggest(raw: &str) -> Option<Self> {
        let mut name = String::new();
        for c in raw.chars() {
            let c = c.to_ascii_lowercase();
            let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_') {
                c
            } else {
                '-'
            };
            let repeated = matches!(c, '-' | '.') && name.ends_with(c);
            if !repeated {
                name.push(c);
            }
        }
        let mut name = name
            .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_owned();
        name.truncate(63);
        loop {
            let trimmed = name.trim_end_matches(['.', '-']);
            let trimmed = trimmed.strip_suffix(".lock").unwrap_or(trimmed);
            if trimmed.len() == name.len() {
                break;
            }
            name = trimmed.to_owned();
        }
        Self::parse(&name).ok().filter(|n| n.as_str() != raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl crate::UserFacing for InvalidName {
    fn reason_code(&self) -> crate::ReasonCode {
        crate::ReasonCode::InvalidArgument
    }

    fn hint(&self) -> Option<String> {
        Some(match SandboxName::suggest(&self.name) {
            Some(name) => format!("use a name like {name}"),
            None => "use a name like fix-login or run.2".to_owned(),
        })
    }
}

/// A string with the rules [`SandboxName::parse`] enforces, as far as a pattern can say them.
impl JsonSchema for SandboxName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SandboxName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A sandbox name: 1 to 63 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit.",
            "type": "string",
            "minLength": 1,
            "maxLength": 63,
            "pattern": "^[a-z0-9][a-z0-9._-]*$"
        })
    }
}

impl TryFrom<String> for SandboxName {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SandboxName> for String {
    fn from(value: SandboxName) -> Self {
        value.0
    }
}

impl std::fmt::Display for SandboxName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_of_sandboxes_created_together_differ() {
        let ids: Vec<SandboxId> = (0..64).map(|_| SandboxId::new()).collect();
        let mut shorts: Vec<&str> = ids.iter().map(SandboxId::short).collect();
        shorts.sort_unstable();
        shorts.dedup();
        assert_eq!(shorts.len(), ids.len());
    }

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["fix-login", "a", "run.2", "x_y-9"] {
            assert!(SandboxName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_names_git_or_paths_would_misread() {
        for bad in [
            "",
            "-rf",
            "Fix",
            "a/b",
            "a..b",
            "a.lock",
            "a.",
            "../x",
            &"x".repeat(64),
        ] {
            assert!(SandboxName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refused_name_suggests_the_closest_valid_one() {
        for (bad, suggested) in [
            ("../evil", Some("evil")),
            ("Fix Login", Some("fix-login")),
            ("a..b", Some("a.b")),
            ("a.lock", Some("a")),
            ("-rf", Some("rf")),
            ("feature/x.", Some("feature-x")),
            ("", None),
            ("///", None),
        ] {
            let got = SandboxName::suggest(bad);
            assert_eq!(got.as_ref().map(SandboxName::as_str), suggested, "{bad}");
        }
        let long = SandboxName::suggest(&"X".repeat(80));
        assert_eq!(long.map(|n| n.as_str().len()), Some(63));
        let hint = SandboxName::parse("Bad")
            .err()
            .and_then(|e| crate::UserFacing::hint(&e));
        assert_eq!(hint.as_deref(), Some("use a name like bad"));
    }

    #[test]
    fn generated_names_are_valid() {
        for prompt in [
            "make the login test deterministic",
            "",
            "!!!",
            "Ünïcode prompt here",
        ] {
            let name = SandboxName::generate(prompt);
            assert!(SandboxName::parse(name.as_str()).is_ok(), "{name}");
        }
    }
}
