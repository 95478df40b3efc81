//! `GET /v1/sandboxes/{name}/changes` on the real stack: the changed files and the unified diff
//! of exactly what an export would commit, binary and symlink changes listed but not dumped, a
//! size cap that says it cut, and no object written into the user's repository by looking.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::{Fixture, bash_turn, git, scenario, text_turn};
use super::http::{Server, json_of, token};

async fn wait_idle(server: &Server, t: &str, name: &str) -> Value {
    for _ in 0..600 {
        let (_, got) = json_of(
            server
                .http
                .get(server.url(&format!("/v1/sandboxes/{name}")))
                .bearer_auth(t)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let state = got["sandbox"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if state == "completed" || state == "error" {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{name} never went idle");
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_carry_a_unified_diff_with_binary_and_symlinks_marked() {
    let fx = Fixture::new(&scenario(vec![
        bash_turn(
            "printf 'a second line\\n' >> README.md && seq 1 200 > numbers.txt \
             && printf 'bin\\000ary\\001' > blob.bin && ln -s README.md link",
        ),
        text_turn("done"),
    ]))
    .await;
    let server = Server::start_args(&fx, &[], reqwest::Client::new()).await;
    let alice = token(&fx, "alice").await;
    let (status, launched) = json_of(
        server
            .http
            .post(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .json(&json!({ "repository": fx.repo, "name": "diffs", "prompt": "change things" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{launched}");
    let got = wait_idle(&server, &alice, "diffs").await;
    assert_eq!(got["sandbox"]["state"], "completed", "{got}");
    let objects_before = git(&fx.repo, &["count-objects"]);

    let changes_url = server.url("/v1/sandboxes/diffs/changes");
    let (status, body) = json_of(
        server
            .http
            .get(&changes_url)
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let changes = &body["changes"];
    let mut paths: Vec<&str> = changes["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    paths.sort_unstable();
    assert_eq!(paths, ["README.md", "blob.bin", "link", "numbers.txt"]);
    assert_eq!(changes["truncated"], false);
    assert_eq!(changes["binary"], json!(["blob.bin"]));
    assert_eq!(changes["symlinks"], json!(["link"]));
    let diff = changes["diff"].as_str().unwrap();
    assert!(
        diff.contains("diff --git a/README.md b/README.md\n"),
        "{diff}"
    );
    assert!(diff.contains("+a second line\n"), "{diff}");
    assert!(diff.contains("+200\n"), "{diff}");
    assert!(
        diff.contains("Binary files /dev/null and b/blob.bin differ"),
        "{diff}"
    );
    assert!(!diff.contains("link"), "symlinks are not dumped: {diff}");
    assert!(
        !diff.contains('\0') && !diff.contains("+bin"),
        "binary content is not dumped"
    );
    // The text part is a patch git applies to the user's checkout as it was synced.
    let patch = fx.dir.path().join("agent.patch");
    std::fs::write(&patch, diff).unwrap();
    git(
        &fx.repo,
        &[
            "apply",
            "--check",
            "--exclude=blob.bin",
            patch.to_str().unwrap(),
        ],
    );
    assert_eq!(
        git(&fx.repo, &["count-objects"]),
        objects_before,
        "looking at the changes wrote nothing into the repository"
    );

    // A small cap: cut at a line end, and flagged.
    let (status, body) = json_of(
        server
            .http
            .get(format!("{changes_url}?max_diff_bytes=300"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cut = body["changes"]["diff"].as_str().unwrap();
    assert_eq!(body["changes"]["truncated"], true);
    assert!(cut.len() <= 300 && !cut.is_empty(), "{}", cut.len());
    assert!(cut.ends_with('\n') && diff.starts_with(cut));
    assert_eq!(body["changes"]["files"].as_array().unwrap().len(), 4);
    for bad in ["0", "16777217", "x", "-1"] {
        let (status, body) = json_of(
            server
                .http
                .get(format!("{changes_url}?max_diff_bytes={bad}"))
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["reason_code"], "invalid_argument");
    }

    // What that traffic shows on /metrics.
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    assert_eq!(
        value("warren_operation_duration_seconds_count{operation=\"launch\"}"),
        1.0
    );
    assert_eq!(
        value("warren_operation_duration_seconds_count{operation=\"changes\"}"),
        6.0
    );
    assert_eq!(
        value(
            "warren_http_requests_total{route=\"/v1/sandboxes/{name}/changes\",method=\"GET\",class=\"4xx\"}"
        ),
        4.0
    );
    assert!(
        value("warren_model_request_duration_seconds_count") >= 2.0,
        "{metrics}"
    );
    assert_eq!(value("warren_streams_open"), 0.0);
    server.stop().await;
}
