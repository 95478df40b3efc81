#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn policy(entries: &[&str]) -> EgressPolicy {
    let specs: Vec<RuleSpec> = entries.iter().map(|e| RuleSpec::new(*e)).collect();
    EgressPolicy::parse(&specs).unwrap()
}

fn err(spec: RuleSpec) -> String {
    Rule::parse(&spec).unwrap_err().reason
}

#[test]
fn host_names_match_exactly_and_case_blind() {
    let p = policy(&["Registry.NPMJS.org"]);
    assert!(p.by_name("registry.npmjs.org", 443, "CONNECT").is_some());
    assert!(p.by_name("registry.npmjs.org", 80, "GET").is_some());
    assert!(
        p.by_name("evil-registry.npmjs.org", 443, "CONNECT")
            .is_none()
    );
    assert!(
        p.by_name("registry.npmjs.org.evil.com", 443, "CONNECT")
            .is_none()
    );
    // Only 80 and 443 without a port.
    assert!(p.by_name("registry.npmjs.org", 8443, "CONNECT").is_none());
}

#[test]
fn wildcards_need_a_label_in_front() {
    let p = policy(&["*.npmjs.org:443"]);
    assert!(p.by_name("registry.npmjs.org", 443, "CONNECT").is_some());
    assert!(p.by_name("a.b.npmjs.org", 443, "CONNECT").is_some());
    assert!(p.by_name("npmjs.org", 443, "CONNECT").is_none());
    assert!(p.by_name("evilnpmjs.org", 443, "CONNECT").is_none());
    assert!(p.by_name("registry.npmjs.org", 80, "GET").is_none());
}

#[test]
fn ports_and_methods() {
    let p = policy(&["example.org:*"]);
    assert!(p.by_name("example.org", 1, "GET").is_some());
    let spec = RuleSpec {
        target: "files.example.org".into(),
        ports: vec![8080],
        methods: vec!["get".into(), "HEAD".into()],
    };
    let p = EgressPolicy::parse(&[spec]).unwrap();
    assert!(p.by_name("files.example.org", 8080, "GET").is_some());
    assert!(p.by_name("files.example.org", 8080, "HEAD").is_some());
    assert!(p.by_name("files.example.org", 8080, "POST").is_none());
    // A tunnel hides its methods: a method-restricted rule does not open one.
    assert!(p.by_name("files.example.org", 8080, "CONNECT").is_none());
    // Explicit ports replace the defaults.
    assert!(p.by_name("files.example.org", 80, "GET").is_none());
    assert_eq!(
        p.rules()[0].to_string(),
        "files.example.org ports=8080 methods=GET,HEAD"
    );
}

#[test]
fn addresses_and_ranges_match_by_address_only() {
    let p = policy(&["127.0.0.1:8000", "10.0.0.0/8:*", "[::1]:9000", "fd00::/8"]);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(p.by_address(ip("127.0.0.1"), 8000, "GET").is_some());
    assert!(p.by_address(ip("::ffff:127.0.0.1"), 8000, "GET").is_some());
    assert!(p.by_address(ip("127.0.0.2"), 8000, "GET").is_none());
    assert!(p.by_address(ip("127.0.0.1"), 8001, "GET").is_none());
    assert!(p.by_address(ip("10.200.3.4"), 5432, "CONNECT").is_some());
    assert!(p.by_address(ip("11.0.0.1"), 5432, "CONNECT").is_none());
    assert!(p.by_address(ip("::1"), 9000, "GET").is_some());
    assert!(p.by_address(ip("fd12::1"), 443, "CONNECT").is_some());
    // An address rule is not a name rule.
    assert!(p.by_name("127.0.0.1", 8000, "GET").is_none());
}

#[test]
fn bad_entries_say_why() {
    assert!(err(RuleSpec::new("")).contains("empty"));
    assert!(err(RuleSpec::new("https://example.org")).contains("not a URL"));
    assert!(err(RuleSpec::new("example.org:0")).contains("not a port"));
    assert!(err(RuleSpec::new("example.org:99999")).contains("not a port"));
    assert!(err(RuleSpec::new("ex ample.org")).contains("not a URL"));
    assert!(err(RuleSpec::new("*.org")).contains("two labels"));
    assert!(err(RuleSpec::new("a.*.org")).contains("first label"));
    assert!(err(RuleSpec::new("10.0.0.0/33")).contains("prefix length"));
    assert!(err(RuleSpec::new("0.0.0.0/0")).contains("every address"));
    assert!(err(RuleSpec::new("999.1.1.1")).contains("IPv4"));
    assert!(err(RuleSpec::new("exa$mple.org")).contains("label"));
    assert!(err(RuleSpec::new("[::1")).contains("']'"));
    let spec = RuleSpec {
        target: "example.org".into(),
        ports: vec![],
        methods: vec!["GE T".into()],
    };
    assert!(err(spec).contains("HTTP method"));
}
