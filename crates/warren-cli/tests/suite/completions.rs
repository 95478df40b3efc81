//! `warren completions`: each script is accepted by its real shell, and bash, driven the way it
//! drives a completion function on TAB, completes subcommands and the store's sandbox names
//! (not destroyed ones) by calling the real binary back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use warren_domain::{SandboxId, SandboxName, SandboxState};
use warren_store::StateStore;

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
