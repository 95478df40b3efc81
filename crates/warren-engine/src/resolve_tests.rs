#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use warren_config::{Config, ModelProviderConfig, PoolConfig, RoleConfig};
use warren_domain::ReasonCode;

use super::*;

fn provider(models: &[&str]) -> ModelProviderConfig {
    ModelProviderConfig {
        base_url: "http://127.0.0.1:9/v1".into(),
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        ..ModelProviderConfig::default()
    }
}

fn config() -> Config {
    let mut config = Config::default();
    config.model.default = Some("local/big".into());
    config
        .model_providers
        .insert("local".into(), provider(&["big", "small", "reviewer"]));
    config
        .model_providers
        .insert("other".into(), provider(&["far"]));
    config.timeouts.run_secs = 600;
    config.timeouts.inactivity_secs = 120;
    config.roles.insert(
        "review".into(),
        RoleConfig {
            model: Some("local/reviewer".into()),
            contract: true,
            fields: vec!["verdict".into()],
            run_secs: Some(30),
            ..RoleConfig::default()
        },
    );
    config
}

#[test]
fn the_role_is_resolved_once_with_its_model_limits_and_contract() {
    let r = resolve(&config(), None, Some("review")).unwrap();
    assert_eq!(r.agent.model.to_string(), "local/reviewer");
    assert_eq!(r.limits.hard, Duration::from_secs(30));
    assert_eq!(r.limits.inactivity, Duration::from_secs(120));
    let contract = r.contract.unwrap();
    assert_eq!(contract.role, "review");
    assert_eq!(contract.required_fields, vec!["verdict".to_owned()]);
    assert_eq!(r.structurer.model.to_string(), "local/reviewer");
}

#[test]
fn a_model_flag_wins_over_the_role_and_the_default() {
    let r = resolve(&config(), Some("other/far"), Some("review")).unwrap();
    assert_eq!(r.agent.model.to_string(), "other/far");
    let r = resolve(&config(), None, None).unwrap();
    assert_eq!(r.agent.model.to_string(), "local/big");
    assert!(r.contract.is_none());
    assert_eq!(r.limits.hard, Duration::from_secs(600));
}

#[test]
fn an_unknown_role_or_model_is_a_config_error() {
    let e = resolve(&config(), None, Some("nope")).unwrap_err();
    assert_eq!(e.reason_code, ReasonCode::InvalidConfig);
    assert!(e.message.contains("nope"), "{e}");
    let e = resolve(&config(), Some("local/missing"), None).unwrap_err();
    assert_eq!(e.reason_code, ReasonCode::InvalidConfig);
}

#[test]
fn a_missing_credential_variable_is_an_error_for_the_structurer_too() {
    let mut config = config();
    config.model_providers.get_mut("other").unwrap().api_key_env =
        Some("WARREN_TEST_SURELY_UNSET_KEY".into());
    config.structurer.model = Some("other/far".into());
    let e = resolve(&config, None, Some("review")).unwrap_err();
    assert_eq!(e.reason_code, ReasonCode::InvalidConfig);
    assert!(e.message.contains("WARREN_TEST_SURELY_UNSET_KEY"), "{e}");
    assert!(e.hint.is_some());
}

#[test]
fn the_small_model_is_used_only_on_the_agents_endpoint() {
    let mut config = config();
    config.model.small = Some("local/small".into());
    let r = resolve(&config, None, None).unwrap();
    assert_eq!(r.small_model.as_deref(), Some("small"));
    let r = resolve(&config, Some("other/far"), None).unwrap();
    assert_eq!(r.small_model, None, "a sandbox reaches one endpoint");
}

#[test]
fn the_pool_comes_with_its_size() {
    let mut config = config();
    config.model_providers.get_mut("local").unwrap().pool = Some("gpu".into());
    config
        .pools
        .insert("gpu".into(), PoolConfig { max_concurrent: 2 });
    let r = resolve(&config, None, None).unwrap();
    assert_eq!(r.pool, Some(("gpu".to_owned(), 2)));
    assert_eq!(
        resolve(&config, Some("other/far"), None).unwrap().pool,
        None
    );
}

#[test]
fn the_branch_name_is_made_in_one_place() {
    let name = warren_domain::SandboxName::parse("fix-login").unwrap();
    assert_eq!(default_branch(&name), "warren/fix-login");
}

#[test]
fn approvals_come_from_the_role_else_the_policy_and_none_when_nothing_asks() {
    let mut config = config();
    assert_eq!(resolve(&config, None, None).unwrap().approvals, None);
    config.policy.approvals.bash = vec!["git push*".into()];
    config.policy.approvals.timeout_secs = 7;
    let r = resolve(&config, None, None).unwrap().approvals.unwrap();
    assert_eq!(r.ask.bash, ["git push*"]);
    assert_eq!(r.timeout, Duration::from_secs(7));
    // A role's set replaces the policy's, and an empty one turns asking off for the role.
    config.roles.get_mut("review").unwrap().approvals = Some(warren_config::ApprovalsConfig {
        edit: vec!["docs/*".into()],
        ..Default::default()
    });
    let r = resolve(&config, None, Some("review"))
        .unwrap()
        .approvals
        .unwrap();
    assert!(r.ask.bash.is_empty());
    assert_eq!(r.ask.edit, ["docs/*"]);
    config.roles.get_mut("review").unwrap().approvals =
        Some(warren_config::ApprovalsConfig::default());
    assert_eq!(
        resolve(&config, None, Some("review")).unwrap().approvals,
        None
    );
}

#[test]
fn a_roles_budget_overrides_the_run_budget_key_by_key() {
    let mut config = config();
    config.budget.run = warren_domain::BudgetLimits::parse("tokens=1000,requests=5").unwrap();
    config.budget.sandbox = warren_domain::BudgetLimits::parse("cost=3").unwrap();
    config.budget.prices.insert(
        "local/big".into(),
        warren_config::Price {
            input: 1.0,
            output: 2.0,
        },
    );
    config.roles.insert(
        "cheap".into(),
        RoleConfig {
            budget: Some(warren_domain::BudgetLimits::parse("tokens=50").unwrap()),
            ..RoleConfig::default()
        },
    );
    let plain = resolve(&config, None, None).unwrap();
    assert_eq!(plain.budget.run.tokens, Some(1000));
    let cheap = resolve(&config, None, Some("cheap")).unwrap();
    assert_eq!(cheap.budget.run.tokens, Some(50));
    assert_eq!(cheap.budget.run.requests, Some(5));
    assert_eq!(cheap.budget.sandbox.cost, Some(3.0));
    // A `provider/model` price reaches the gateway under the model id it sends upstream.
    assert_eq!(cheap.prices.get("big").map(|p| p.output), Some(2.0));
    assert!(!cheap.prices.contains_key("small"));
}
