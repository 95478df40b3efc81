#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `[policy]`: egress defaults to none; allow entries come as strings or tables, roles carry their
//! own; a misspelt key is an error, and the section survives the JSON trip to a monitor.

mod common;

use common::loaded;
use warren_config::{AllowEntry, AllowRule, Config, EgressMode};

#[test]
fn egress_is_none_unless_configured() {
    let config = loaded("").unwrap();
    assert_eq!(config.policy.egress, EgressMode::None);
    assert!(config.policy.allow.is_empty());
}

#[test]
fn entries_are_strings_or_tables_and_roles_have_their_own() {
    let config = loaded(
        r#"
[policy]
egress = "allow-list"
allow = ["pypi.org", { cidr = "10.0.0.0/8", ports = [5432] }]

[roles.deps]
egress = "allow-list"
allow = ["*.npmjs.org"]
"#,
    )
    .unwrap();
    assert_eq!(config.policy.egress, EgressMode::AllowList);
    assert_eq!(
        config.policy.allow,
        vec![
            AllowEntry::Short("pypi.org".into()),
            AllowEntry::Rule(AllowRule {
                cidr: Some("10.0.0.0/8".into()),
                ports: vec![5432],
                ..AllowRule::default()
            }),
        ]
    );
    let role = &config.roles["deps"];
    assert_eq!(role.egress, Some(EgressMode::AllowList));
    assert_eq!(role.allow, vec![AllowEntry::Short("*.npmjs.org".into())]);

    let json = serde_json::to_string(&config).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back.policy, config.policy);
}

#[test]
fn unknown_modes_and_keys_are_errors() {
    let e = loaded("[policy]\negress = \"open\"\n").unwrap_err();
    assert!(e.contains("egress") || e.contains("open"), "{e}");
    let e = loaded("[policy]\nallow = [{ hots = \"x.org\" }]\n").unwrap_err();
    assert!(!e.is_empty());
    let e = loaded("[policy]\nalow = []\n").unwrap_err();
    assert!(e.contains("alow"), "{e}");
}
