//! The dashboard in a real browser: `tests/browser/dashboard.mjs` drives Debian's Chromium with
//! Playwright through sign-in, a launch whose events arrive live, the diff, a server stopped and
//! started again under the open page, a follow-up whose command waits for an approval given on
//! the page, a patch download, an export and a teardown, and a one-shot run, against the real `warren serve` this test starts (real OpenCode,
//! bubblewrap, the scripted model). This test owns the server: the script asks it on stdout to
//! stop and start it, and it answers on the script's stdin. It then checks in git what the
//! clicks made. `.ci/run` installs Chromium and the script's npm packages; elsewhere the test
//! skips with a message when either is missing (with `CI=true` it fails instead).
//!
//! `WARREN_SCREENSHOTS=docs/screenshots cargo test -p warren-cli --test all -- dashboard`
//! refreshes the screenshots in the docs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::harness::{Fixture, bash_turn, git, scenario, text_turn, when_turn};
use super::http::{Server, json_of, token};

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Chromium and the script's packages, or why the test cannot run here.
fn browser_ready() -> Result<(), String> {
    if !Path::new(CHROMIUM).is_file() {
        return Err(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        return Err(format!(
            "playwright-core is not installed (npm ci --prefix {})",
            browser_dir().display()
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_chromium_runs_follows_diffs_exports_and_survives_a_restart() {
    if let Err(why) = browser_ready() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the browser test cannot run: {why}; .ci/run installs both"
        );
        eprintln!("skipping the dashboard's browser test: {why}");
        return;
    }
    let greet = "pub fn greet(name: &str) -> String {\n    format!(\"hello {name}\")\n}\n";
    let farewell = "pub fn farewell() -> &'static str {\n    \"bye\"\n}\n";
    let fx = Fixture::new(&scenario(vec![
        when_turn("build the greeter", json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/src/greet.rs", "content": greet } }] })),
        // It takes a few seconds, so the page sees the run go on before it ends.
        when_turn("build the greeter", bash_turn("sleep 3; printf '\\000\\001\\002' > blob.bin; ln -s src/greet.rs link.rs")),
        when_turn("build the greeter", text_turn("greeter done")),
        when_turn("now the farewell", json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/src/farewell.rs", "content": farewell } }] })),
        // The launch asked for approval of `echo ok*`: the page approves it.
        when_turn("now the farewell", bash_turn("echo ok > approved.txt")),
        when_turn("now the farewell", text_turn("farewell done")),
        when_turn("a quick one", bash_turn("echo quick > quick.txt")),
        when_turn("a quick one", text_turn("quick done")),
    ]))
    .await;
    let mut server = Some(Server::start(&fx).await);
    let base = server.as_ref().unwrap().base.clone();
    let port = server.as_ref().unwrap().port;
    let alice = token(&fx, "alice").await;
    let shots = std::env::var("WARREN_SCREENSHOTS")
        .map(|d| Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(d))
        .unwrap_or_else(|_| fx.dir.path().join("shots"));

    let mut script = tokio::process::Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .current_dir(browser_dir())
        .env("WARREN_URL", &base)
        .env("WARREN_TOKEN", &alice)
        .env("WARREN_REPO", &fx.repo)
        .env("WARREN_SHOTS", &shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs the browser script");
    let mut answers = script.stdin.take().unwrap();
    let mut lines = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut steps = Vec::new();
    let verdict = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            eprintln!("[browser] {line}");
            match line.as_str() {
                "STOP" => {
                    server.take().unwrap().stop().await;
                    answers.write_all(b"STOPPED\n").await.unwrap();
                }
                "START" => {
                    server = Some(Server::start_on(&fx, port).await);
                    answers.write_all(b"STARTED\n").await.unwrap();
                }
                "PASS" => return Ok(()),
                l if l.starts_with("FAIL") => return Err(l.to_owned()),
                l => steps.push(l.to_owned()),
            }
        }
        Err("the script ended without a verdict".to_owned())
    })
    .await;
    let status = tokio::time::timeout(Duration::from_secs(60), script.wait())
        .await
        .expect("the browser script exits")
        .unwrap();
    match verdict {
        Err(_) => panic!("the browser script stalled after: {steps:?}"),
        Ok(Err(failure)) => panic!(
            "{failure}\n(after {steps:?}; a screenshot is in {})",
            shots.display()
        ),
        Ok(Ok(())) => assert!(status.success(), "{status}"),
    }
    assert!(steps.len() >= 14, "every step ran: {steps:?}");

    // What the clicks made, seen from git and the API.
    let files = git(&fx.repo, &["ls-tree", "-r", "--name-only", "dash-export"]);
    for path in [
        "src/greet.rs",
        "src/farewell.rs",
        "approved.txt",
        "blob.bin",
        "link.rs",
    ] {
        assert!(
            files.lines().any(|l| l == path),
            "{path} in dash-export: {files}"
        );
    }
    assert_eq!(git(&fx.repo, &["show", "dash-export:src/greet.rs"]), greet);
    let quick = git(&fx.repo, &["show", "warren/dash-run:quick.txt"]);
    assert_eq!(quick, "quick\n");
    let server = server.unwrap();
    let (_, listed) = json_of(
        server
            .http
            .get(server.url("/v1/sandboxes?all=true"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let states: Vec<(String, String)> = listed["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("dash".into(), "destroyed".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("dash-run".into(), "destroyed".into())),
        "{states:?}"
    );
    server.stop().await;
}

/// The page's files, as any browser gets them: no token needed, the right media types, a
/// same-origin-only policy, a 304 for a file it has, and the API's error for one that is not there.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_files_are_served_without_a_token_under_a_strict_policy() {
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    let server = Server::start(&fx).await;
    let http = &server.http;

    let page = http.get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<script type="module" src="/assets/app.js">"#),
        "{html}"
    );

    let script = http.get(server.url("/assets/app.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = script.headers()["etag"].to_str().unwrap().to_owned();
    let again = http
        .get(server.url("/assets/app.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        304,
        "a file the browser has is not sent again"
    );

    let (status, missing) = json_of(
        http.get(server.url("/assets/nope.js"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        missing["error"]["reason_code"], "invalid_argument",
        "{missing}"
    );
    // The API behind it still wants a token.
    let (status, refused) =
        json_of(http.get(server.url("/v1/sandboxes")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(refused["error"]["reason_code"], "unauthorized");
    server.stop().await;
}
