//! `warren completions`: each script is accepted by its real shell, and bash, driven the way it
//! drives a completion function on TAB, completes subcommands and the store's sandbox names
//! (not destroyed ones) by calling the real binary back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warren_domain::{SandboxId, SandboxName, SandboxState};
use warren_store::{StateStore, TenancyStore};

use super::harness::{Fixture, scenario, text_turn};
use super::http::{Server, token};

fn warren(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .env("WARREN_DATA_DIR", data_dir)
        .env_remove("WARREN_SERVER")
        .env_remove("WARREN_TOKEN")
        .output()
        .unwrap()
}

fn script(shell: &str, dir: &Path) -> PathBuf {
    let out = warren(&dir.join("data"), &["completions", shell]);
    assert!(out.status.success(), "{shell}: {out:?}");
    assert!(!out.stdout.is_empty(), "{shell}: an empty script");
    let path = dir.join(format!("warren.{shell}"));
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn installed(shell: &str) -> bool {
    let found = Command::new(shell)
        .args(["-c", "exit 0"])
        .output()
        .is_ok_and(|o| o.status.success());
    // .ci/run installs zsh and fish; only a developer machine may lack them.
    assert!(
        found || std::env::var("CI").as_deref() != Ok("true"),
        "{shell} is not installed on CI"
    );
    found
}

#[test]
fn each_shell_accepts_its_script_and_an_unknown_shell_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let path = script(shell, dir.path());
        if !installed(shell) {
            eprintln!("skipping the syntax check of the {shell} script: {shell} is not installed");
            continue;
        }
        let out = Command::new(shell).arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{shell} -n refused the script: {out:?}"
        );
    }
    let out = warren(&dir.path().join("data"), &["completions", "pwsh"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash, zsh, fish"));
    assert!(
        !dir.path().join("data").exists(),
        "printing a script created the data directory"
    );
}

/// Runs bash's completion function the way bash does on TAB after `line` (the last word is the
/// one being completed), with `warren` on PATH, and returns the candidates.
fn complete_in_bash(dir: &Path, data_dir: &Path, words: &[&str]) -> Vec<String> {
    complete_in_bash_with(dir, data_dir, words, &[])
}

fn complete_in_bash_with(
    dir: &Path,
    data_dir: &Path,
    words: &[&str],
    env: &[(&str, &str)],
) -> Vec<String> {
    let script = script("bash", dir);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("warren");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_warren"), &link).unwrap();
    }
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let body = format!(
        "source '{script}'\nCOMP_WORDS=({words})\nCOMP_CWORD={cword}\n\
         _clap_complete_warren warren '{current}' '{previous}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script = script.display(),
        words = quoted.join(" "),
        current = words[cword],
        previous = words[cword - 1],
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &body])
        .env("PATH", path)
        .env("WARREN_DATA_DIR", data_dir)
        .env_remove("WARREN_SERVER")
        .env_remove("WARREN_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

fn sandbox(store: &warren_store::Store, repo: &Path, name: &str) -> SandboxId {
    sandbox_in(store, repo, name)
}

fn sandbox_in(store: &dyn StateStore, repo: &Path, name: &str) -> SandboxId {
    store
        .create_sandbox(warren_store::NewSandbox {
            id: SandboxId::new(),
            name: SandboxName::parse(name).unwrap(),
            repo: repo.to_path_buf(),
            provider: "local".into(),
            model: None,
            prompt: None,
            role: None,
        })
        .unwrap()
        .id
}

#[test]
fn bash_completes_subcommands_and_the_stores_sandbox_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let words = complete_in_bash(dir.path(), &data, &["warren", "st"]);
    assert!(words.contains(&"status".to_owned()), "{words:?}");
    assert!(!words.contains(&"list".to_owned()), "{words:?}");
    // No store yet: no names, and completing created no data directory.
    let words = complete_in_bash(dir.path(), &data, &["warren", "status", ""]);
    assert!(words.iter().all(|w| w.starts_with('-')), "{words:?}");
    assert!(!data.exists(), "completing created the data directory");

    let store = warren_store::Store::open(&warren_store::default_db_path(&data)).unwrap();
    sandbox(&store, dir.path(), "alpha-one");
    sandbox(&store, dir.path(), "beta-two");
    let gone = sandbox(&store, dir.path(), "alpha-gone");
    store
        .transition(&gone, SandboxState::TearingDown, None)
        .unwrap();
    store
        .transition(&gone, SandboxState::Destroyed, None)
        .unwrap();
    let before = store.list(true).unwrap();

    let words = complete_in_bash(dir.path(), &data, &["warren", "status", ""]);
    for name in ["alpha-one", "beta-two"] {
        assert!(
            words.contains(&name.to_owned()),
            "{name} missing: {words:?}"
        );
    }
    assert!(!words.contains(&"alpha-gone".to_owned()), "{words:?}");

    for command in ["logs", "exec", "export", "pull", "sync", "teardown", "open"] {
        let words = complete_in_bash(dir.path(), &data, &["warren", command, "al"]);
        assert_eq!(
            words,
            vec!["alpha-one".to_owned()],
            "warren {command} al<TAB>"
        );
    }
    // Completing is a read: no state, timestamp or transition moved.
    assert_eq!(store.list(true).unwrap(), before);
}

#[test]
fn fish_completes_the_stores_sandbox_names() {
    if !installed("fish") {
        eprintln!("skipping: fish is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = warren_store::Store::open(&warren_store::default_db_path(&data)).unwrap();
    sandbox(&store, dir.path(), "fish-one");
    sandbox(&store, dir.path(), "other-two");
    let script = script("fish", dir.path());
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_warren"), bin.join("warren")).unwrap();
    let out = Command::new("fish")
        .args(["--no-config", "-c"])
        .arg(format!(
            "source '{}'; complete -C 'warren teardown fi'",
            script.display()
        ))
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("WARREN_DATA_DIR", &data)
        .env_remove("WARREN_SERVER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let words: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(words, vec!["fish-one".to_owned()]);
}

/// In remote mode the names are the server's (as the token's owner sees them), not the local
/// store's.
#[tokio::test(flavor = "multi_thread")]
async fn remote_mode_completes_the_servers_sandbox_names_for_the_tokens_owner() {
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    let store = warren_store::Store::open(&warren_store::default_db_path(&fx.data)).unwrap();
    for (name, owner) in [
        ("mine-one", "alice"),
        ("mine-two", "alice"),
        ("theirs", "bob"),
    ] {
        let id = sandbox_in(&store, &fx.repo, name);
        store.set_owner(&id, owner).unwrap();
    }
    let alice = token(&fx, "alice").await;
    let server = Server::start(&fx).await;
    let local = tempfile::tempdir().unwrap();
    let local_data = local.path().join("data");
    let local_store =
        warren_store::Store::open(&warren_store::default_db_path(&local_data)).unwrap();
    sandbox(&local_store, local.path(), "local-only");

    let words = tokio::task::spawn_blocking({
        let (base, dir) = (server.base.clone(), local.path().to_path_buf());
        move || {
            complete_in_bash_with(
                &dir,
                &local_data,
                &["warren", "status", ""],
                &[("WARREN_SERVER", &base), ("WARREN_TOKEN", &alice)],
            )
        }
    })
    .await
    .unwrap();
    server.stop().await;
    for name in ["mine-one", "mine-two"] {
        assert!(
            words.contains(&name.to_owned()),
            "{name} missing: {words:?}"
        );
    }
    assert!(!words.contains(&"theirs".to_owned()), "{words:?}");
    assert!(!words.contains(&"local-only".to_owned()), "{words:?}");
}
