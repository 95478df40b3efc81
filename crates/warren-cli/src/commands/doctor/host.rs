//! The checks of this machine: bubblewrap and user namespaces, OpenCode, the in-sandbox init,
//! git, the data directory and the store. Every program is run bounded in time, so a hung
//! binary makes a failed check rather than a hung doctor.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warren_api::DoctorCheck;
use warren_engine::tools::OPENCODE_VERSION;

use super::{fail, ok, skip};

/// What a bounded run of a program gave: its exit success and its stdout and stderr.
struct Ran {
    success: bool,
    out: String,
    err: String,
}

fn run_bounded(program: &Path, args: &[&str], limit: Duration) -> Result<Ran, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within {} s",
                    program.display(),
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", program.display())),
        }
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    Ok(Ran {
        success: status.success(),
        out: out.trim().to_owned(),
        err: err.trim().to_owned(),
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Why the kernel refuses unprivileged user namespaces, and the setting that allows them, read
/// from the knobs that exist on this kernel.
fn userns_cause() -> (String, String) {
    userns_cause_from(sysctl)
}

/// [`userns_cause`] over `read` (a sysctl file's trimmed content, `None` when absent).
fn userns_cause_from(read: impl Fn(&str) -> Option<String>) -> (String, String) {
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return (
            "kernel.unprivileged_userns_clone = 0 forbids unprivileged user namespaces".into(),
            "sudo sysctl -w kernel.unprivileged_userns_clone=1".into(),
        );
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return (
            "user.max_user_namespaces = 0 forbids user namespaces".into(),
            "sudo sysctl -w user.max_user_namespaces=15000".into(),
        );
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return (
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)".into(),
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or add an AppArmor profile allowing userns for bwrap)".into(),
        );
    }
    (
        "the kernel or the container refuses to create a user namespace (a container needs e.g. --security-opt seccomp=unconfined, or --privileged)".into(),
        "run warren on the host or in a container allowed to create user namespaces, or set sandbox.provider = \"docker\"".into(),
    )
}

pub(crate) fn bubblewrap(provider: &str) -> DoctorCheck {
    const NAME: &str = "bubblewrap";
    if provider != "local" {
        return skip(
            NAME,
            format!("sandbox.provider is {provider:?}; only the local provider uses bubblewrap"),
        );
    }
    let install = "sudo apt-get install bubblewrap (or set WARREN_BWRAP to the bwrap binary)";
    let Some(bwrap) = warren_provider_local::find_bwrap() else {
        return fail(NAME, "bwrap is not on PATH", install);
    };
    if !bwrap.is_file() {
        return fail(
            NAME,
            format!("{} (WARREN_BWRAP) is not a file", bwrap.display()),
            install,
        );
    }
    let version = run_bounded(&bwrap, &["--version"], Duration::from_secs(5))
        .map(|r| r.out)
        .unwrap_or_default();
    // The real test: can this process create a user namespace here?
    let args = ["--unshare-user", "--ro-bind", "/", "/", "true"];
    match run_bounded(&bwrap, &args, Duration::from_secs(10)) {
        Ok(r) if r.success => ok(
            NAME,
            format!(
                "{} ({version}) creates user namespaces here",
                bwrap.display()
            ),
        ),
        Ok(r) => {
            let (cause, fix) = userns_cause();
            fail(NAME, format!("{}: {cause}", r.err), fix)
        }
        Err(e) => fail(
            NAME,
            e,
            "check that bwrap runs: bwrap --unshare-user --ro-bind / / true",
        ),
    }
}

pub(crate) fn opencode(configured: Option<&Path>) -> DoctorCheck {
    const NAME: &str = "opencode";
    let install = format!(
        "npm install -g opencode-ai@{OPENCODE_VERSION} (or 'make tools' in a warren checkout), or set WARREN_OPENCODE to the opencode binary"
    );
    // The lookup `Tools::locate` makes, without its init half (a check of its own).
    let found = configured
        .map(Path::to_path_buf)
        .or_else(|| on_path("opencode"));
    let Some(found) = found else {
        return fail(NAME, "OpenCode (opencode) is not set nor on PATH", install);
    };
    let path = match std::fs::canonicalize(&found) {
        Ok(real) if real.is_file() => real,
        Ok(real) => return fail(NAME, format!("{} is not a file", real.display()), install),
        Err(e) => {
            return fail(
                NAME,
                format!("OpenCode binary {} is not usable: {e}", found.display()),
                install,
            );
        }
    };
    match run_bounded(&path, &["--version"], Duration::from_secs(30)) {
        Ok(r) if r.success && r.out == OPENCODE_VERSION => {
            ok(NAME, format!("{} version {}", path.display(), r.out))
        }
        Ok(r) if r.success => fail(
            NAME,
            format!(
                "{} is version {}; warren supports {OPENCODE_VERSION}",
                path.display(),
                r.out
            ),
            install,
        ),
        Ok(r) => fail(
            NAME,
            format!("{} --version failed: {}", path.display(), r.err),
            install,
        ),
        Err(e) => fail(NAME, e, install),
    }
}

pub(crate) fn sandbox_init() -> DoctorCheck {
    const NAME: &str = "sandbox init";
    // Where `Tools::locate` looks, in its order.
    let explicit = std::env::var_os("WARREN_SANDBOX_INIT").map(PathBuf::from);
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("warren-sandbox-init")));
    match [explicit, sibling, on_path("warren-sandbox-init")]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
    {
        Some(p) => ok(NAME, p.display().to_string()),
        None => fail(
            NAME,
            "warren-sandbox-init is missing: it must sit next to the warren binary",
            "cargo install --path crates/warren-cli (installs both), or set WARREN_SANDBOX_INIT to it",
        ),
    }
}

pub(crate) fn git() -> DoctorCheck {
    const NAME: &str = "git";
    match run_bounded(Path::new("git"), &["--version"], Duration::from_secs(10)) {
        Ok(r) if r.success => ok(NAME, r.out),
        Ok(r) => fail(NAME, r.err, "sudo apt-get install git"),
        Err(e) => fail(NAME, e, "sudo apt-get install git"),
    }
}

pub(crate) fn data_dir(dir: &Path) -> DoctorCheck {
    const NAME: &str = "data directory";
    let fix = format!(
        "make {} writable by this user (e.g. sudo chown -R $USER {}), or set WARREN_DATA_DIR to a writable directory",
        dir.display(),
        dir.display()
    );
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(NAME, format!("cannot create {}: {e}", dir.display()), fix);
    }
    match tempfile::NamedTempFile::new_in(dir) {
        Ok(_) => ok(NAME, format!("{} is writable", dir.display())),
        Err(e) => fail(NAME, format!("cannot write in {}: {e}", dir.display()), fix),
    }
}

pub(crate) fn store(dir: &Path) -> DoctorCheck {
    const NAME: &str = "store";
    let spec = std::env::var("WARREN_STORE").ok();
    match crate::commands::store::open_stores(spec.as_deref(), dir) {
        Ok(_) => ok(
            NAME,
            match spec.as_deref().filter(|s| !s.trim().is_empty()) {
                Some(s) if s.trim() != "sqlite" => "PostgreSQL opened, migrations current".into(),
                _ => format!(
                    "{} opened, migrations current",
                    warren_store::default_db_path(dir).display()
                ),
            },
        ),
        Err(e) => {
            let info = e.into_info();
            fail(
                NAME,
                info.message,
                info.hint.unwrap_or_else(|| {
                    "move the damaged database aside or set WARREN_DATA_DIR to a fresh directory"
                        .into()
                }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::userns_cause_from;

    fn cause(knobs: &[(&str, &str)]) -> String {
        let knobs: Vec<(String, String)> = knobs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        userns_cause_from(|path| {
            knobs
                .iter()
                .find(|(k, _)| path.ends_with(k.as_str()))
                .map(|(_, v)| v.clone())
        })
        .1
    }

    #[test]
    fn the_fix_names_the_knob_that_forbids_user_namespaces() {
        assert_eq!(
            cause(&[("unprivileged_userns_clone", "0")]),
            "sudo sysctl -w kernel.unprivileged_userns_clone=1"
        );
        assert_eq!(
            cause(&[
                ("unprivileged_userns_clone", "1"),
                ("max_user_namespaces", "0")
            ]),
            "sudo sysctl -w user.max_user_namespaces=15000"
        );
        assert!(
            cause(&[
                ("max_user_namespaces", "63000"),
                ("apparmor_restrict_unprivileged_userns", "1")
            ])
            .starts_with("sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
        );
        // Every knob allows it: the container (seccomp, no privileges) is what refuses.
        assert!(
            cause(&[("apparmor_restrict_unprivileged_userns", "0")])
                .contains("allowed to create user namespaces")
        );
    }
}
