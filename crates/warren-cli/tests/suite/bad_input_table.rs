//! Every hostile input a new user can type is a user error: exit 2, a stable reason code, a
//! message naming the problem, a hint naming the fix, with `--json` only the error on stdout, and
//! nothing created: no sandbox record, no branch, no file, an existing file untouched.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::harness::{Fixture, git, json_lines, stdout};

struct Case {
    what: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    code: &'static str,
    /// Substrings the message must contain (the path, key or flag at fault).
    mentions: Vec<String>,
}

fn case(what: &'static str, args: &[&str], code: &'static str, mentions: &[&str]) -> Case {
    Case {
        what,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: Vec::new(),
        code,
        mentions: mentions.iter().map(|m| (*m).to_owned()).collect(),
    }
}

impl Case {
    fn env(mut self, var: &'static str, value: impl Into<String>) -> Self {
        self.env.push((var, value.into()));
        self
    }

    /// Runs with `WARREN_CONFIG` pointing at a file holding `body`.
    fn config(self, dir: &Path, file: &str, body: String) -> Self {
        let path = dir.join(file);
        std::fs::write(&path, body).unwrap();
        self.env("WARREN_CONFIG", path.to_str().unwrap())
    }
}

/// Files the cases aim at; after every case they must be exactly as they were.
struct Targets {
    file_in_repo: String,
    plain_dir: String,
    existing_patch: PathBuf,
    existing_bytes: Vec<u8>,
    missing_dir: PathBuf,
    read_only_dir: Option<PathBuf>,
}

impl Targets {
    fn new(fx: &Fixture) -> Self {
        let root = fx.dir.path();
        let plain = root.join("plain-dir");
        std::fs::create_dir_all(&plain).unwrap();
        let existing_patch = root.join("existing.patch");
        let existing_bytes = b"a patch the user keeps\n".to_vec();
        std::fs::write(&existing_patch, &existing_bytes).unwrap();
        Targets {
            file_in_repo: fx.repo.join("README.md").to_str().unwrap().to_owned(),
            plain_dir: plain.to_str().unwrap().to_owned(),
            existing_patch,
            existing_bytes,
            missing_dir: root.join("missing-dir"),
            read_only_dir: read_only_dir(root),
        }
    }

    async fn assert_untouched(&self, fx: &Fixture, what: &str) {
        assert_eq!(
            std::fs::read(&self.existing_patch).unwrap(),
            self.existing_bytes,
            "{what}: the existing file was changed"
        );
        assert!(
            !self.missing_dir.exists(),
            "{what}: a directory was created"
        );
        assert!(
            !Path::new(&self.plain_dir).join("changes.patch").exists(),
            "{what}: a file was written"
        );
        if let Some(ro) = &self.read_only_dir {
            assert!(
                std::fs::read_dir(ro).unwrap().next().is_none(),
                "{what}: a file was written"
            );
        }
        let listed = fx.warren(&["list", "--all", "--json"]).await;
        let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
        assert_eq!(
            listed["sandboxes"],
            serde_json::json!([]),
            "{what}: a sandbox was recorded"
        );
        assert!(
            !fx.data.join("sandboxes").exists(),
            "{what}: sandbox scratch space was created"
        );
        assert_eq!(
            git(&fx.repo, &["for-each-ref", "refs/heads/warren"]),
            "",
            "{what}: a branch was created"
        );
    }
}

/// A directory this process cannot write into, or `None` when it can anyway (root).
fn read_only_dir(root: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join("read-only");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"").is_ok() {
        std::fs::remove_file(&probe).unwrap();
        eprintln!("skipping the read-only directory case: this process may write anywhere");
        return None;
    }
    Some(dir)
}

#[rustfmt::skip]
fn cases(fx: &Fixture, t: &Targets) -> Vec<Case> {
    let repo = fx.repo.to_str().unwrap();
    let dir = fx.dir.path();
    let base = std::fs::read_to_string(&fx.config).unwrap();
    let file = t.file_in_repo.as_str();
    let existing = t.existing_patch.to_str().unwrap();
    let in_missing = t.missing_dir.join("a.patch");
    let in_missing = in_missing.to_str().unwrap();
    let under_file = format!("{existing}/a.patch");
    let missing_repo = format!("{}/nowhere", t.plain_dir);
    // A repository whose own .warren.toml tries to open its agent's network.
    let hostile = dir.join("hostile");
    if !hostile.join(".git").is_dir() {
        std::fs::create_dir_all(&hostile).unwrap();
        git(&hostile, &["init", "-q"]);
        std::fs::write(
            hostile.join(".warren.toml"),
            "[policy]\negress = \"allow-list\"\nallow = [\"evil.example\"]\n",
        )
        .unwrap();
        git(&hostile, &["add", "-A"]);
        git(&hostile, &["commit", "-qm", "widen"]);
    }
    let hostile = hostile.to_str().unwrap().to_owned();
    let mut all = vec![
        case("a repository's .warren.toml setting [policy]", &["run", "--repo", &hostile, "x"], "invalid_config", &[".warren.toml", "policy"]),
        case("--repo naming a file", &["run", "--repo", file, "x"], "not_a_git_repo", &[file]),
        case("launch --repo naming a file", &["launch", "w", "--repo", file], "not_a_git_repo", &[file]),
        case("config show --repo naming a file", &["config", "show", "--repo", file], "not_a_git_repo", &[file]),
        case("--repo not in a git work tree", &["run", "--repo", &t.plain_dir, "x"], "not_a_git_repo", &["plain-dir"]),
        case("--repo missing", &["run", "--repo", &missing_repo, "x"], "not_a_git_repo", &[&missing_repo]),
        case("--timeout 0", &["run", "--repo", repo, "--timeout", "0", "x"], "invalid_argument", &["--timeout", "604800"]),
        case("--timeout absurd", &["run", "--repo", repo, "--timeout", "604801", "x"], "invalid_argument", &["--timeout", "604800"]),
        // --- budgets (issue 12) ---
        case("--budget with an unknown key", &["run", "--repo", repo, "--budget", "money=3", "x"], "invalid_argument", &["--budget", "money"]),
        case("--budget that is not KEY=VALUE", &["launch", "w", "--repo", repo, "--budget", "tokens"], "invalid_argument", &["--budget", "tokens"]),
        case("--budget with a negative cost", &["run", "--repo", repo, "--budget", "cost=-1", "x"], "invalid_argument", &["cost", "-1"]),
        case("--budget with a bad time", &["run", "--repo", repo, "--budget", "time=3d", "x"], "invalid_argument", &["time", "3d"]),
        case("exec --budget with no limit", &["exec", "w", "--budget", ",", "x"], "invalid_argument", &["--budget"]),
        case("budget.prices with a negative price", &["run", "--repo", repo, "x"], "invalid_config", &["budget.prices.m.input"])
            .config(dir, "price.toml", format!("{base}\n[budget.prices.m]\ninput = -1.0\n")),
        case("audit of a REV that is not there", &["audit", "no-such-rev", "--repo", repo], "invalid_argument", &["no-such-rev"]),
        case("audit of a commit warren did not make", &["audit", "HEAD", "--repo", repo], "not_a_warren_commit", &["Warren-Sandbox"]),
        case("audit outside a repository", &["audit", "HEAD", "--repo", &t.plain_dir], "not_a_git_repo", &["plain-dir"]),
        // --- end budgets ---
        case("WARREN_TIMEOUT_RUN_SECS=0", &["run", "--repo", repo, "x"], "invalid_config", &["timeouts.run_secs", "WARREN_TIMEOUT_RUN_SECS"])
            .env("WARREN_TIMEOUT_RUN_SECS", "0"),
        case("timeouts.run_secs = 0", &["run", "--repo", repo, "x"], "invalid_config", &["timeouts.run_secs"])
            .config(dir, "run0.toml", base.replace("inactivity_secs = 60", "inactivity_secs = 60\nrun_secs = 0")),
        case("timeouts.inactivity_secs = 0", &["launch", "w", "--repo", repo], "invalid_config", &["timeouts.inactivity_secs"])
            .config(dir, "inactive0.toml", base.replace("inactivity_secs = 60", "inactivity_secs = 0")),
        case("roles.r.run_secs = 0", &["run", "--repo", repo, "x"], "invalid_config", &["roles.r.run_secs"])
            .config(dir, "role-run0.toml", format!("{base}\n[roles.r]\nrun_secs = 0\n")),
        case("roles.r.inactivity_secs absurd", &["run", "--repo", repo, "x"], "invalid_config", &["roles.r.inactivity_secs"])
            .config(dir, "role-inactive.toml", format!("{base}\n[roles.r]\ninactivity_secs = 99999999\n")),
        case("structurer.timeout_secs = 0", &["run", "--repo", repo, "x"], "invalid_config", &["structurer.timeout_secs"])
            .config(dir, "structurer0.toml", format!("{base}\n[structurer]\ntimeout_secs = 0\n")),
        case("pools.p.max_concurrent = 0", &["run", "--repo", repo, "x"], "invalid_config", &["pools.p.max_concurrent"])
            .config(dir, "pool0.toml", format!("{base}\n[pools.p]\nmax_concurrent = 0\n")),
        case("a JSON file as config", &["run", "--repo", repo, "x"], "invalid_config", &["config.json"])
            .config(dir, "config.json", "{\"model\": {\"default\": \"scripted/scripted\"}}\n".to_owned()),
        case("WARREN_CONFIG naming no file", &["run", "--repo", repo, "x"], "invalid_config", &["no-such.toml"])
            .env("WARREN_CONFIG", dir.join("no-such.toml").to_str().unwrap()),
        case("an unknown config key", &["run", "--repo", repo, "x"], "invalid_config", &["auto_teardwn"])
            .config(dir, "typo.toml", format!("{base}\n[sandbox]\nauto_teardwn = false\n")),
        case("a path as --name", &["run", "--repo", repo, "--name", "../evil", "x"], "invalid_argument", &["../evil"]),
        case("launch with a bad name", &["launch", "Bad", "--repo", repo], "invalid_argument", &["\"Bad\""]),
        case("status with a bad name", &["status", "a/b"], "invalid_argument", &["\"a/b\""]),
        case("logs with a bad name", &["logs", "_x"], "invalid_argument", &["\"_x\""]),
        case("teardown with a bad name", &["teardown", "a..b"], "invalid_argument", &["\"a..b\""]),
        case("export with a bad name", &["export", "A"], "invalid_argument", &["\"A\""]),
        case("an unknown model provider", &["run", "--repo", repo, "--model", "nosuch/model", "x"], "invalid_config", &["nosuch"]),
        case("a model without a provider", &["run", "--repo", repo, "--model", "justamodel", "x"], "invalid_config", &["justamodel"]),
        case("an unknown model", &["launch", "w", "--repo", repo, "--model", "scripted/nope"], "invalid_config", &["nope"]),
        case("an unknown role", &["run", "--repo", repo, "--role", "nosuch", "x"], "invalid_config", &["nosuch"]),
        case("an unknown sandbox provider", &["run", "--repo", repo, "--provider", "vm", "x"], "invalid_config", &["vm"]),
        case("an empty run prompt", &["run", "--repo", repo, "  "], "invalid_argument", &["prompt"]),
        case("an empty launch prompt", &["launch", "w", "--repo", repo, "--prompt", ""], "invalid_argument", &["prompt"]),
        case("an empty exec prompt", &["exec", "w", " "], "invalid_argument", &["prompt"]),
        case("status of an unknown sandbox", &["status", "nosuch"], "sandbox_not_found", &["nosuch"]),
        case("exec of an unknown sandbox", &["exec", "nosuch", "x"], "sandbox_not_found", &["nosuch"]),
        case("export of an unknown sandbox", &["export", "nosuch"], "sandbox_not_found", &["nosuch"]),
        case("teardown of an unknown sandbox", &["teardown", "nosuch"], "sandbox_not_found", &["nosuch"]),
        case("--patch into a missing directory", &["export", "w", "--patch", in_missing], "invalid_argument", &["missing-dir", "does not exist"]),
        case("--patch onto a directory", &["export", "w", "--patch", &t.plain_dir], "invalid_argument", &["plain-dir", "is a directory"]),
        case("--patch onto an existing file", &["export", "w", "--patch", existing], "invalid_argument", &[existing, "already exists"]),
        case("--patch under a file", &["export", "w", "--patch", &under_file], "invalid_argument", &[existing, "not a directory"]),
        case("pull --to an existing file", &["pull", "w", "--to", existing], "invalid_argument", &[existing, "not a directory"]),
        case("pull --to under a file", &["pull", "w", "--to", &under_file], "invalid_argument", &[existing, "not a directory"]),
        case("image build with an unknown profile", &["image", "build", "--profile", "nosuch"], "invalid_config", &["nosuch"]),
        case("approve of an unknown sandbox", &["approve", "nosuch"], "sandbox_not_found", &["nosuch"]),
        case("deny with a bad name", &["deny", "a/b", "--reason", "no"], "invalid_argument", &["\"a/b\""]),
        case("approve --request that is no request id", &["approve", "w", "--request", "rm -rf /"], "invalid_argument", &["--request", "rm -rf /"]),
        case("--ask-bash with an empty pattern", &["run", "--repo", repo, "--ask-bash", " ", "x"], "invalid_argument", &["--ask-bash"]),
        case("--approval-timeout 0", &["run", "--repo", repo, "--ask-bash", "git push*", "--approval-timeout", "0", "x"], "invalid_argument", &["--approval-timeout", "604800"]),
        case("policy.approvals.timeout_secs = 0", &["run", "--repo", repo, "x"], "invalid_config", &["policy.approvals.timeout_secs"])
            .config(dir, "approvals0.toml", format!("{base}\n[policy.approvals]\nbash = [\"rm *\"]\ntimeout_secs = 0\n")),
        case("an empty approval pattern", &["launch", "w", "--repo", repo], "invalid_config", &["roles.r.approvals.edit"])
            .config(dir, "approvals-empty.toml", format!("{base}\n[roles.r.approvals]\nedit = [\"\"]\n")),
    ];
    if let Some(ro) = &t.read_only_dir {
        let target = ro.join("a.patch");
        all.push(case(
            "--patch into a read-only directory",
            &["export", "w", "--patch", target.to_str().unwrap()],
            "invalid_argument",
            &["not writable"],
        ));
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_user_error_with_a_hint_that_creates_nothing() {
    let fx = Fixture::new("{}").await;
    let targets = Targets::new(&fx);
    for c in cases(&fx, &targets) {
        let mut args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        args.push("--json");
        let env = c.env.clone();
        let out = fx
            .warren_with(&args, |cmd| {
                for (var, value) in env {
                    cmd.env(var, value);
                }
            })
            .await;
        let what = c.what;
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: {args:?}\n{}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&out);
        assert_eq!(
            lines.len(),
            1,
            "{what}: with --json stdout carries the error and nothing else: {lines:?}"
        );
        let error = &lines[0]["error"];
        assert_eq!(error["reason_code"], c.code, "{what}: {error}");
        assert_eq!(error["retryable"], false, "{what}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        for m in &c.mentions {
            assert!(message.contains(m.as_str()), "{what}: {m:?} not in {error}");
        }
        let hint = error["hint"].as_str().unwrap_or_default();
        assert!(!hint.trim().is_empty(), "{what}: no hint: {error}");
        targets.assert_untouched(&fx, what).await;
    }
}
