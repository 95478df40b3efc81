//! A property-based fuzz of the API from its own OpenAPI document: schemathesis (from PyPI)
//! loads `/openapi.json` from a real `warren serve` (which also checks the document is valid
//! OpenAPI 3.1), then sends generated and mutated requests to every operation with a valid token
//! for a bounded time. It fails on any 5xx, a crash, a response whose status, content type or
//! body its documentation does not allow, a schema-violating request that is accepted, or a
//! request without the token that is served.
//!
//! Nothing is excluded: no model is configured and the fuzzer knows no repository path, so a
//! launch or a run is refused with a 4xx before any agent could start (the test checks that
//! nothing was created). `.ci/run` installs the pinned schemathesis; with `CI=true` a missing
//! one fails this test instead of skipping it.

use std::time::Duration;

use super::harness::{Fixture, scenario, text_turn};
use super::http::{Server, json_of, token};

/// The fuzz's time budget (schemathesis' `--max-time`); the whole test stays well under 3 min.
const BUDGET_SECS: &str = "60";

fn schemathesis() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("WARREN_SCHEMATHESIS") {
        return Some(p.into());
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    // Where `python3 -m pip install` puts scripts, for a PATH without it (a pyenv before rehash).
    let scripts = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    on_path
        .into_iter()
        .chain(scripts)
        .map(|d| d.join("schemathesis"))
        .find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let Some(st) = schemathesis() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is not installed: .ci/run installs it (python3 -m pip install schemathesis)"
        );
        eprintln!(
            "skipping the API fuzz: schemathesis is not installed (pip install schemathesis)"
        );
        return;
    };
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    // No model at all: nothing the fuzzer sends can start an agent.
    std::fs::write(&fx.config, "").unwrap();
    let server =
        Server::start_args(&fx, &["--max-body-bytes", "65536"], reqwest::Client::new()).await;
    let fuzz = token(&fx, "fuzz").await;
    let work = fx.dir.path().join("fuzz");
    std::fs::create_dir_all(&work).unwrap();
    let mut cmd = tokio::process::Command::new(&st);
    cmd.args([
        "run",
        &server.url("/openapi.json"),
        "--header",
        &format!("Authorization: Bearer {fuzz}"),
        // Every check but `positive_data_acceptance`: a schema-valid launch names no repository
        // this host has, so it is rightly refused.
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "20",
        "--max-time",
        BUDGET_SECS,
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--no-color",
    ])
    // Its example database and reports stay in the test's temp dir.
    .current_dir(&work)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(150), cmd.output())
        .await
        .expect("schemathesis ran past its budget")
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");

    // The fuzz created nothing, and the server still answers.
    let (status, listed) = json_of(
        server
            .http
            .get(server.url("/v1/sandboxes?all=true"))
            .bearer_auth(&fuzz)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["sandboxes"], serde_json::json!([]), "{listed}");
    let sandboxes = fx.data.join("sandboxes");
    assert!(
        !sandboxes.exists() || std::fs::read_dir(&sandboxes).unwrap().next().is_none(),
        "the fuzz left sandbox directories"
    );
    server.stop().await;
}
