//! Loading and merging the layers. Each file is checked on its own first, so an error names the
//! file it came from; then tables merge key by key and the result is validated as a whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::{Table, Value};
use warren_domain::{ReasonCode, UserFacing};

use crate::model::{Config, ModelRef};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "at", rename_all = "snake_case")]
pub enum Source {
    Default,
    UserFile(PathBuf),
    RepoFile(PathBuf),
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::UserFile(p) => write!(f, "user file {}", p.display()),
            Self::RepoFile(p) => write!(f, "repo file {}", p.display()),
            Self::Env(var) => write!(f, "environment {var}"),
            Self::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config in {origin}: {message}")]
    Invalid {
        origin: String,
        message: String,
        hint: Option<String>,
    },
}

impl UserFacing for ConfigError {
    fn reason_code(&self) -> ReasonCode {
        ReasonCode::InvalidConfig
    }
    fn hint(&self) -> Option<String> {
        match self {
            Self::Read { path, .. } if path.ends_with(".warren.toml") => Some(format!(
                "check that {} is a readable file, or remove it",
                path.display()
            )),
            Self::Read { path, .. } => Some(format!(
                "check that {} exists and is a readable file, or unset WARREN_CONFIG",
                path.display()
            )),
            Self::Invalid { hint, .. } => hint.clone(),
        }
    }
}

/// Keys a repository's `.warren.toml` may not set: with them the repository an agent works on
/// (possibly a stranger's, cloned by a server) could widen what that agent may reach or spend,
/// or where the user's model credential goes. They belong to the user's file, the server's, or
/// flags.
const REPO_FORBIDDEN: &[&str] = &[
    "policy",
    "budget",
    "model_providers",
    "opencode.binary",
    "sandbox.mount_host_docker_socket",
];
/// The same, for each role the repository's file names.
const REPO_FORBIDDEN_IN_ROLES: &[&str] = &["approvals", "egress", "allow", "budget"];

fn refuse_widening(table: &Table, path: &Path) -> Result<(), ConfigError> {
    let has = |t: &Table, dotted: &str| {
        let mut parts = dotted.split('.').peekable();
        let mut at = t;
        while let Some(part) = parts.next() {
            match at.get(part) {
                None => return false,
                Some(_) if parts.peek().is_none() => return true,
                Some(Value::Table(inner)) => at = inner,
                Some(_) => return false,
            }
        }
        false
    };
    let mut found: Vec<String> = REPO_FORBIDDEN
        .iter()
        .filter(|k| has(table, k))
        .map(|k| (*k).to_owned())
        .collect();
    if let Some(Value::Table(roles)) = table.get("roles") {
        for (name, role) in roles {
            if let Value::Table(role) = role {
                for key in REPO_FORBIDDEN_IN_ROLES
                    .iter()
                    .filter(|k| role.contains_key(**k))
                {
                    found.push(format!("roles.{name}.{key}"));
                }
            }
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        origin: format!("repo file {}", path.display()),
        message: format!(
            "{} cannot be set by a repository's .warren.toml: a repository may not widen what its agent can reach or spend, or choose where the model credential goes",
            found.join(", ")
        ),
        hint: Some("move these settings to your own config file (WARREN_CONFIG or ~/.config/warren/config.toml) or give them as flags (--allow, --ask-bash, --budget), then remove them from .warren.toml".into()),
    })
}

/// Environment variables that set config keys. Each is documented in docs/config.md.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("WARREN_MODEL", "model.default"),
    ("WARREN_SANDBOX_PROVIDER", "sandbox.provider"),
    ("WARREN_IMAGE_PROFILE", "sandbox.image_profile"),
    ("WARREN_TIMEOUT_RUN_SECS", "timeouts.run_secs"),
    ("WARREN_TIMEOUT_INACTIVITY_SECS", "timeouts.inactivity_secs"),
    ("WARREN_OPENCODE", "opencode.binary"),
    ("WARREN_WARM_IDLE_SECS", "opencode.warm_idle_secs"),
    ("WARREN_LEASE_TTL_SECS", "timeouts.lease_ttl_secs"),
];

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The user file; `None` means the XDG default (`$XDG_CONFIG_HOME/warren/config.toml`), and
    /// `WARREN_CONFIG` in `env` overrides both.
    pub user_file: Option<PathBuf>,
    /// The repository whose `.warren.toml` applies.
    pub repo_dir: Option<PathBuf>,
    /// The environment to read `WARREN_*` from (the process environment in the CLI).
    pub env: Vec<(String, String)>,
    /// Values from command-line flags: (dotted key, value, flag name).
    pub flags: Vec<(String, Value, String)>,
}

#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Dotted key → the layer that set it, for every leaf value.
    pub sources: BTreeMap<String, Source>,
}

pub fn default_user_file() -> Option<PathBuf> {
    use etcetera::BaseStrategy;
    etcetera::choose_base_strategy()
        .ok()
        .map(|s| s.config_dir().join("warren").join("config.toml"))
}

pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let defaults = to_table(&Config::default())?;
    let mut merged = defaults.clone();
    let mut sources = BTreeMap::new();
    record_sources(&defaults, "", &Source::Default, &mut sources);

    let env_value = |name: &str| {
        opts.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let user_file = env_value("WARREN_CONFIG")
        .map(PathBuf::from)
        .or_else(|| opts.user_file.clone())
        .or_else(default_user_file);
    if let Some(path) = user_file {
        let explicit = env_value("WARREN_CONFIG").is_some();
        if let Some(table) = read_layer(&path, explicit)? {
            apply(
                &mut merged,
                &table,
                "",
                &Source::UserFile(path),
                &mut sources,
            );
        }
    }
    if let Some(repo) = &opts.repo_dir {
        let path = repo.join(".warren.toml");
        if let Some(table) = read_layer(&path, false)? {
            refuse_widening(&table, &path)?;
            apply(
                &mut merged,
                &table,
                "",
                &Source::RepoFile(path),
                &mut sources,
            );
        }
    }
    for (var, key) in ENV_KEYS {
        if let Some(raw) = env_value(var) {
            let value = coerce(&defaults, key, &raw).map_err(|message| ConfigError::Invalid {
                origin: format!("environment {var}"),
                message,
                hint: Some(format!(
                    "fix {var}, or unset it to use the config files' {key}"
                )),
            })?;
            set_path(&mut merged, key, value);
            sources.insert((*key).to_owned(), Source::Env((*var).to_owned()));
        }
    }
    for (key, value, flag) in &opts.flags {
        set_path(&mut merged, key, value.clone());
        sources.insert(key.clone(), Source::Flag(flag.clone()));
    }
    let config: Config = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            origin: "the merged configuration".to_owned(),
            message: e.message().trim().to_owned(),
            hint: Some(SCHEMA_HINT.into()),
        })?;
    validate(&config, &sources)?;
    Ok(Loaded { config, sources })
}

/// Where every section, key and accepted value is described.
const SCHEMA_HINT: &str = "see docs/config.md for every section, key and accepted value";

/// The same hint for every model reference that names nothing configured.
const MODEL_HINT: &str = "name a provider/model listed in [model_providers.<provider>] models, or add the model there (docs/config.md)";

fn invalid(origin: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        message: message.trim().to_owned(),
        hint: Some(SCHEMA_HINT.into()),
    }
}

fn to_table(config: &Config) -> Result<Table, ConfigError> {
    Table::try_from(config).map_err(|e| invalid("built-in defaults", &e.to_string()))
}

/// Reads one file and checks it alone against the schema, so errors name this file.
fn read_layer(path: &Path, must_exist: bool) -> Result<Option<Table>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let origin = path.display().to_string();
    let table: Table = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        origin: origin.clone(),
        message: e.to_string().trim().to_owned(),
        hint: Some(syntax_hint(path)),
    })?;
    toml::from_str::<Config>(&text).map_err(|e| ConfigError::Invalid {
        origin,
        message: e.to_string().trim().to_owned(),
        hint: Some(SCHEMA_HINT.into()),
    })?;
    Ok(Some(table))
}

/// What to do about a file that is not TOML at all: often JSON or YAML given by mistake.
fn syntax_hint(path: &Path) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some(kind @ ("json" | "yaml" | "yml")) => format!(
            "warren's config is TOML, not {}: rewrite {} as TOML (docs/config.md has an example), or point WARREN_CONFIG at a .toml file",
            kind.to_ascii_uppercase().replace("YML", "YAML"),
            path.display()
        ),
        _ => format!(
            "fix the TOML syntax at the line shown in {} (docs/config.md has an example)",
            path.display()
        ),
    }
}

/// Merges `layer` into `base` key by key: tables recurse, everything else replaces.
fn apply(
    base: &mut Table,
    layer: &Table,
    prefix: &str,
    source: &Source,
    sources: &mut BTreeMap<String, Source>,
) {
    for (key, value) in layer {
        let path = join(prefix, key);
        match (base.get_mut(key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => {
                apply(existing, incoming, &path, source, sources);
            }
            _ => {
                base.insert(key.clone(), value.clone());
                record_sources_value(value, &path, source, sources);
            }
        }
    }
}

fn record_sources(
    table: &Table,
    prefix: &str,
    source: &Source,
    sources: &mut BTreeMap<String, Source>,
) {
    for (key, value) in table {
        record_sources_value(value, &join(prefix, key), source, sources);
    }
}

fn record_sources_value(
    value: &Value,
    path: &str,
    source: &Source,
    sources: &mut BTreeMap<String, Source>,
) {
    match value {
        Value::Table(t) => record_sources(t, path, source, sources),
        _ => {
            sources.insert(path.to_owned(), source.clone());
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn get_path<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let first = parts.next()?;
    parts.try_fold(table.get(first)?, |v, part| v.as_table()?.get(part))
}

fn set_path(table: &mut Table, key: &str, value: Value) {
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for part in &parts[..parts.len() - 1] {
        let entry = cur
            .entry((*part).to_owned())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else { return };
        cur = next;
    }
    if let Some(last) = parts.last() {
        cur.insert((*last).to_owned(), value);
    }
}

/// Turns an environment string into the type the key's default has.
fn coerce(defaults: &Table, key: &str, raw: &str) -> Result<Value, String> {
    match get_path(defaults, key) {
        Some(Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{key} must be a whole number, got {raw:?}")),
        Some(Value::Boolean(_)) => match raw.trim() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err(format!("{key} must be true or false, got {raw:?}")),
        },
        _ => Ok(Value::String(raw.to_owned())),
    }
}

const SANDBOX_PROVIDERS: &[&str] = &["local", "docker", "kubernetes"];

fn validate(config: &Config, sources: &BTreeMap<String, Source>) -> Result<(), ConfigError> {
    let origin_of = |key: &str| {
        sources
            .get(key)
            .map(ToString::to_string)
            .unwrap_or_else(|| "the configuration".into())
    };
    if !SANDBOX_PROVIDERS.contains(&config.sandbox.provider.as_str()) {
        return Err(ConfigError::Invalid {
            origin: origin_of("sandbox.provider"),
            message: format!(
                "sandbox.provider = {:?} is not a known provider; accepted: {}",
                config.sandbox.provider,
                SANDBOX_PROVIDERS.join(", ")
            ),
            hint: Some(format!(
                "set sandbox.provider to one of: {}",
                SANDBOX_PROVIDERS.join(", ")
            )),
        });
    }
    if config.sandbox.image().is_none() {
        let known: Vec<&str> = config
            .sandbox
            .image_profiles
            .keys()
            .map(String::as_str)
            .collect();
        return Err(ConfigError::Invalid {
            origin: origin_of("sandbox.image_profile"),
            message: format!(
                "sandbox.image_profile = {:?} is not a key of sandbox.image_profiles; defined profiles: {}",
                config.sandbox.image_profile,
                known.join(", ")
            ),
            hint: Some("add it under [sandbox.image_profiles] with the image it names".into()),
        });
    }
    for (name, provider) in &config.model_providers {
        let key = format!("model_providers.{name}.base_url");
        if !(provider.base_url.starts_with("http://") || provider.base_url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                origin: origin_of(&key),
                message: format!(
                    "{key} = {:?} must be an http:// or https:// URL",
                    provider.base_url
                ),
                hint: Some("e.g. base_url = \"http://127.0.0.1:4000/v1\"".into()),
            });
        }
        if provider.models.is_empty() {
            let key = format!("model_providers.{name}.models");
            return Err(ConfigError::Invalid {
                origin: origin_of(&format!("model_providers.{name}.base_url")),
                message: format!("{key} is empty; list the model names this endpoint serves"),
                hint: Some(format!("e.g. {key} = [\"my-model\"]")),
            });
        }
    }
    for (name, provider) in &config.model_providers {
        if let Some(pool) = &provider.pool
            && !config.pools.contains_key(pool)
        {
            let key = format!("model_providers.{name}.pool");
            let known: Vec<&str> = config.pools.keys().map(String::as_str).collect();
            return Err(ConfigError::Invalid {
                origin: origin_of(&key),
                message: format!(
                    "{key} = {pool:?} names no pool; defined pools: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
                hint: Some(format!("add [pools.{pool}] with max_concurrent = N")),
            });
        }
    }
    for (name, role) in &config.roles {
        if let Some(model) = &role.model {
            let key = format!("roles.{name}.model");
            config
                .resolve_model(model)
                .map_err(|message| ConfigError::Invalid {
                    origin: origin_of(&key),
                    message: format!("{key}: {message}"),
                    hint: Some(MODEL_HINT.into()),
                })?;
        }
    }
    if let Some(model) = &config.structurer.model {
        config
            .resolve_model(model)
            .map_err(|message| ConfigError::Invalid {
                origin: origin_of("structurer.model"),
                message: format!("structurer.model: {message}"),
                hint: Some(MODEL_HINT.into()),
            })?;
    }
    for key in ["model.default", "model.small"] {
        let value = match key {
            "model.default" => &config.model.default,
            _ => &config.model.small,
        };
        if let Some(raw) = value {
            config
                .resolve_model(raw)
                .map_err(|message| ConfigError::Invalid {
                    origin: origin_of(key),
                    message: format!("{key}: {message}"),
                    hint: Some(MODEL_HINT.into()),
                })?;
        }
    }
    crate::policy::check(config, &origin_of)?;
    crate::budget::check(config, &origin_of)?;
    crate::kubernetes::check(config, &origin_of)?;
    crate::bounds::check(config, &origin_of)
}

impl Config {
    /// The role named `name`, or an error listing the configured roles.
    pub fn role(&self, name: &str) -> Result<&crate::model::RoleConfig, String> {
        self.roles.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.roles.keys().map(String::as_str).collect();
            format!(
                "unknown role {name:?}; configured roles: {}",
                if known.is_empty() {
                    "none (add a [roles.<name>] section)".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// Resolves `provider/model` against the configured model providers.
    pub fn resolve_model(&self, raw: &str) -> Result<ModelRef, String> {
        let model = ModelRef::parse(raw)
            .ok_or_else(|| format!("{raw:?} is not of the form provider/model"))?;
        let known: Vec<&str> = self.model_providers.keys().map(String::as_str).collect();
        let Some(provider) = self.model_providers.get(&model.provider) else {
            return Err(format!(
                "unknown model provider {:?} in {raw:?}; configured providers: {}",
                model.provider,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        if !provider.models.iter().any(|m| m == &model.model) {
            return Err(format!(
                "model {:?} is not listed in model_providers.{}.models ({})",
                model.model,
                model.provider,
                provider.models.join(", ")
            ));
        }
        Ok(model)
    }
}
