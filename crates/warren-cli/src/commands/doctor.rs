//! `warren doctor`: checks every prerequisite of the configured setup and, for each one that
//! fails, names the exact command or setting that fixes it. It works alone on this machine even
//! when `WARREN_SERVER` is set (the server is one of the things it checks).

mod host;
mod network;

use warren_api::{CheckStatus, DoctorCheck, DoctorEnvelope, DoctorView};
use warren_domain::ReasonCode;

use super::{CmdResult, data_dir, load_config};
use crate::cli::GlobalArgs;
use crate::output::{color_enabled, print_json};

/// A check's result, built by the probes.
pub(crate) fn ok(name: impl Into<String>, detail: impl Into<String>) -> DoctorCheck {
    check(name, CheckStatus::Ok, detail, None)
}

pub(crate) fn skip(name: impl Into<String>, why: impl Into<String>) -> DoctorCheck {
    check(name, CheckStatus::Skip, why, None)
}

pub(crate) fn fail(
    name: impl Into<String>,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> DoctorCheck {
    check(name, CheckStatus::Fail, detail, Some(fix.into()))
}

fn check(
    name: impl Into<String>,
    status: CheckStatus,
    detail: impl Into<String>,
    fix: Option<String>,
) -> DoctorCheck {
    DoctorCheck {
        name: name.into(),
        status,
        detail: detail.into(),
        fix,
    }
}

pub(crate) async fn doctor(global: &GlobalArgs) -> CmdResult<i32> {
    let mut checks = Vec::new();
    let config = match load_config(None, Vec::new()) {
        Ok(loaded) => {
            checks.push(ok("config", "loaded"));
            Some(loaded.config)
        }
        Err(e) => {
            checks.push(fail(
                "config",
                e.message.clone(),
                e.hint
                    .unwrap_or_else(|| "fix the config file (docs/config.md)".to_owned()),
            ));
            None
        }
    };
    let provider = config
        .as_ref()
        .map_or("local", |c| c.sandbox.provider.as_str());
    checks.push(host::bubblewrap(provider));
    // With a broken config, `WARREN_OPENCODE` (which the config would have read) still counts.
    let opencode = config
        .as_ref()
        .and_then(|c| c.opencode.binary.clone())
        .or_else(|| std::env::var_os("WARREN_OPENCODE").map(std::path::PathBuf::from));
    checks.push(host::opencode(opencode.as_deref()));
    checks.push(host::sandbox_init());
    checks.push(host::git());
    match data_dir(global) {
        Ok(dir) => {
            checks.push(host::data_dir(&dir));
            checks.push(host::store(&dir));
        }
        Err(e) => checks.push(fail(
            "data directory",
            e.message.clone(),
            e.hint.clone().unwrap_or_default(),
        )),
    }
    if let Some(config) = &config {
        checks.extend(network::models(config));
        checks.push(network::docker(config).await);
        checks.push(network::kubernetes(config).await);
    }
    checks.push(network::server(global).await);

    let ok = checks.iter().all(|c| c.status != CheckStatus::Fail);
    let view = DoctorView { ok, checks };
    if global.json {
        print_json(&DoctorEnvelope { doctor: view })?;
    } else {
        print_human(&view);
    }
    Ok(if ok {
        0
    } else {
        // Something on this machine must change: the class of a missing dependency.
        ReasonCode::MissingDependency.exit_class().code()
    })
}

fn print_human(view: &DoctorView) {
    let color = color_enabled();
    let paint = |code: &str, t: &str| {
        if color {
            format!("\x1b[{code}m{t}\x1b[0m")
        } else {
            t.to_owned()
        }
    };
    for c in &view.checks {
        let mark = match c.status {
            CheckStatus::Ok => paint("32", "✔"),
            CheckStatus::Fail => paint("31", "✘"),
            CheckStatus::Skip => paint("2", "–"),
        };
        println!("{mark} {}: {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("    fix: {fix}");
        }
    }
    let failed = view
        .checks
        .iter()
        .filter(|c| c.status == CheckStatus::Fail)
        .count();
    if failed == 0 {
        println!("everything warren needs here is in place");
    } else {
        println!("{failed} check(s) failed");
    }
}
