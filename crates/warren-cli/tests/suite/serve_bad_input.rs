//! Bad input to every route of `warren serve`: malformed JSON, unknown fields, wrong types, huge
//! bodies, hostile names and repository paths, bad query parameters and headers. Each is a 4xx
//! with a reason code (and a hint where one helps), and nothing is created: no record in the
//! store, nothing in the data dir.

use serde_json::{Value, json};

use super::harness::{Fixture, scenario, text_turn};
use super::http::{Server, json_of, token};

struct Case {
    method: reqwest::Method,
    path: String,
    body: Option<String>,
    header: Option<(&'static str, String)>,
    status: u16,
    code: &'static str,
}

fn case(method: &str, path: &str, body: Option<String>, status: u16, code: &'static str) -> Case {
    Case {
        method: reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        path: path.to_owned(),
        body,
        header: None,
        status,
        code,
    }
}

fn launch(body: Value) -> Option<String> {
    Some(body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_4xx_with_a_reason_code_and_creates_nothing() {
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    let server =
        Server::start_args(&fx, &["--max-body-bytes", "65536"], reqwest::Client::new()).await;
    let alice = token(&fx, "alice").await;
    let repo = fx.repo.to_str().unwrap().to_owned();
    let readme = fx.repo.join("README.md");
    let huge = "x".repeat(70_000);
    let long_name = "a".repeat(64);

    let mut cases = vec![
        // Bodies.
        case(
            "POST",
            "/v1/sandboxes",
            Some("{not json".into()),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            Some("[]".into()),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            Some(r#"{"name":"x"} trailing"#.into()),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": repo, "name": "x", "surprise": 1 })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": 5, "name": "x" })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": repo, "name": ["x"] })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": repo, "name": "x", "prompt": 7 })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": repo, "name": "x", "prompt": "   " })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": repo, "name": "x", "prompt": huge })),
            413,
            "request_too_large",
        ),
        case(
            "POST",
            "/v1/sandboxes/x/prompts",
            Some(r#"{"prompt":"p","surprise":true}"#.into()),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes/x/prompts",
            Some(r#"{"prompt":null}"#.into()),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes/x/export",
            Some(r#"{"branch":42}"#.into()),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/runs",
            launch(json!({ "repository": repo })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/runs",
            launch(json!({ "repository": repo, "prompt": "p", "name": "../x" })),
            400,
            "invalid_argument",
        ),
        // Hostile repository paths.
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": "repo", "name": "x" })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": "", "name": "x" })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": format!("{repo}/../repo"), "name": "x" })),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": readme, "name": "x" })),
            422,
            "not_a_git_repo",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": "/proc", "name": "x" })),
            422,
            "not_a_git_repo",
        ),
        case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": "/nonexistent/warren", "name": "x" })),
            422,
            "not_a_git_repo",
        ),
        case(
            "POST",
            "/v1/runs",
            launch(json!({ "repository": "/proc/self", "prompt": "p" })),
            422,
            "not_a_git_repo",
        ),
        // Bad query parameters and headers.
        case(
            "GET",
            "/v1/sandboxes?limit=0",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes?limit=501",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes?limit=ten",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes?limit=-1",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes?state=sleeping",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes?cursor=nope",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes?all=maybe",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes?surprise=1",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "DELETE",
            "/v1/sandboxes/x?force=perhaps",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes/x/events?since=-1",
            None,
            400,
            "invalid_argument",
        ),
        case(
            "GET",
            "/v1/sandboxes/x/changes?max_diff_bytes=0",
            None,
            400,
            "invalid_argument",
        ),
        // A route that does not take the method.
        case("PUT", "/v1/sandboxes", None, 405, "invalid_argument"),
    ];
    let mut events = case(
        "GET",
        "/v1/sandboxes/x/events",
        None,
        400,
        "invalid_argument",
    );
    events.header = Some(("Last-Event-ID", "abc".into()));
    cases.push(events);
    // Hostile names, in the body and in the path.
    for name in [
        "../x",
        "x/../../etc",
        ".hidden",
        "UPPER",
        "a\u{1}b",
        "tab\there",
        "a\u{202e}b",
        "ｘ",
        "e\u{301}",
        "x.lock",
        long_name.as_str(),
        "",
    ] {
        cases.push(case(
            "POST",
            "/v1/sandboxes",
            launch(json!({ "repository": repo, "name": name })),
            400,
            "invalid_argument",
        ));
        if !name.is_empty() {
            let escaped: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
            for route in ["", "/changes", "/events"] {
                cases.push(case(
                    "GET",
                    &format!("/v1/sandboxes/{escaped}{route}"),
                    None,
                    400,
                    "invalid_argument",
                ));
            }
        }
    }
    // Not UTF-8 at all.
    cases.push(case(
        "GET",
        "/v1/sandboxes/%FF%FE",
        None,
        400,
        "invalid_argument",
    ));

    for c in &cases {
        let mut req = server
            .http
            .request(c.method.clone(), server.url(&c.path))
            .bearer_auth(&alice);
        if let Some(body) = &c.body {
            req = req
                .header("content-type", "application/json")
                .body(body.clone());
        }
        if let Some((name, value)) = &c.header {
            req = req.header(*name, value);
        }
        let what = format!(
            "{} {} {}",
            c.method,
            c.path,
            c.body
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(80)
                .collect::<String>()
        );
        let (status, error) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, c.status, "{what}: {error}");
        assert_eq!(error["error"]["reason_code"], c.code, "{what}: {error}");
        assert!(
            !error["error"]["message"].as_str().unwrap().is_empty(),
            "{what}: {error}"
        );
        assert_eq!(error["error"]["retryable"], false, "{what}: {error}");
        // Where the fix is in the request's shape, the hint says where to look.
        let shape = c.code == "request_too_large"
            || c.path.contains('?')
            || c.body.as_deref().is_some_and(|b| {
                b.starts_with("{not") || b.contains("surprise") || b.contains("\"repository\":5")
            });
        if shape {
            assert!(error["error"]["hint"].is_string(), "{what}: {error}");
        }
    }

    // A route that reads no body still refuses one declared over the limit, before it arrives:
    // only the headers are sent, so the answer cannot race the upload.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/sandboxes/x/sync HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {alice}\r\nContent-Type: application/json\r\nContent-Length: 70000\r\n\r\n"
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, head.as_bytes())
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut raw, &mut answer),
    )
    .await
    .expect("the server waited for a body it must refuse")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"reason_code\":\"request_too_large\""),
        "{answer}"
    );

    // Nothing was created: no record, no sandbox directory.
    let (status, listed) = json_of(
        server
            .http
            .get(server.url("/v1/sandboxes?all=true"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["sandboxes"], json!([]), "{listed}");
    let sandboxes = fx.data.join("sandboxes");
    assert!(
        !sandboxes.exists() || std::fs::read_dir(&sandboxes).unwrap().next().is_none(),
        "a refused request left a sandbox directory"
    );
    server.stop().await;
}
