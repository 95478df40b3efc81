//! `warren serve` end to end: the real binary serving on a free loopback port with its own data
//! dir, tokens made with `warren token create`, real OpenCode and bubblewrap, the scripted model.
//! Every server started is stopped by its pid (SIGTERM, which drains it).

use serde_json::{Value, json};

use super::harness::{Fixture, bash_turn, git, scenario, text_turn, when_turn};
use super::http::{Server, json_of, sse, token};

#[tokio::test(flavor = "multi_thread")]
async fn serve_launch_events_exec_changes_export_teardown() {
    let fx = Fixture::new(&scenario(vec![
        when_turn("first task", json!({ "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/first.txt", "content": "first\n" } }] })),
        when_turn("first task", text_turn("first done")),
        when_turn("second part", bash_turn("echo second > second.txt")),
        when_turn("second part", text_turn("second done")),
    ]))
    .await;
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let bob = token(&fx, "bob").await;
    let http = &server.http;

    let (status, launched) = json_of(
        http.post(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .json(&json!({ "repository": fx.repo, "name": "work", "prompt": "first task" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{launched}");
    let state = launched["sandbox"]["state"].as_str().unwrap();
    assert!(state == "running" || state == "completed", "{state}");

    // Another owner's token: the sandbox does not exist for it.
    let (status, body) = json_of(
        http.get(server.url("/v1/sandboxes/work"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["reason_code"], "sandbox_not_found");
    let (_, listed) = json_of(
        http.get(server.url("/v1/sandboxes"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["sandboxes"], json!([]));

    // SSE: read two events, drop the connection, resume with Last-Event-ID to the end.
    let events_url = server.url("/v1/sandboxes/work/events");
    let first = sse(
        http.get(&events_url)
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
        2,
    )
    .await;
    assert_eq!(first.len(), 2);
    let last = first.last().unwrap().0;
    let rest = sse(
        http.get(&events_url)
            .bearer_auth(&alice)
            .header("Last-Event-ID", last.to_string())
            .send()
            .await
            .unwrap(),
        usize::MAX,
    )
    .await;
    let all: Vec<_> = first.into_iter().chain(rest).collect();
    let seqs: Vec<u64> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert!(
        all.iter().all(|(id, e)| e["seq"].as_u64() == Some(*id)),
        "id: is the seq"
    );
    assert!(
        all.iter()
            .any(|(_, e)| e["type"] == "tool_use" && e["tool"] == "write")
    );
    let n = seqs.len() as u64;

    let (_, got) = json_of(
        http.get(server.url("/v1/sandboxes/work"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got["sandbox"]["state"], "completed", "{got}");
    let (status, changes) = json_of(
        http.get(server.url("/v1/sandboxes/work/changes"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        changes["changes"]["files"],
        json!([{ "kind": "added", "path": "first.txt" }])
    );

    // Unexported work: teardown is refused with the CLI's rule.
    let (status, refused) = json_of(
        http.delete(server.url("/v1/sandboxes/work"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(refused["error"]["reason_code"], "unexported_changes");

    // A follow-up prompt, then its events as NDJSON from where the first stream ended.
    let (status, exec) = json_of(
        http.post(server.url("/v1/sandboxes/work/prompts"))
            .bearer_auth(&alice)
            .json(&json!({ "prompt": "now the second part" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{exec}");
    let text = http
        .get(format!("{events_url}?since={n}"))
        .bearer_auth(&alice)
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let more: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        more.first().unwrap()["seq"].as_u64(),
        Some(n + 1),
        "resumes after {n}"
    );
    assert!(
        more.iter()
            .any(|e| e["type"] == "tool_use" && e["tool"] == "bash"),
        "{text}"
    );

    let (status, exported) = json_of(
        http.post(server.url("/v1/sandboxes/work/export"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{exported}");
    assert_eq!(exported["export"]["branch"], "warren/work");
    assert_eq!(git(&fx.repo, &["show", "warren/work:first.txt"]), "first\n");
    assert_eq!(
        git(&fx.repo, &["show", "warren/work:second.txt"]),
        "second\n"
    );

    let (status, down) = json_of(
        http.delete(server.url("/v1/sandboxes/work"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{down}");
    assert_eq!(down["sandbox"]["state"], "destroyed");

    let metrics = http
        .get(server.url("/metrics"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("warren_sandboxes{state=\"destroyed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warren_sandboxes{state=\"running\"} 0"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_one_shot_run_streams_ndjson_and_exports() {
    let fx = Fixture::new(&scenario(vec![
        bash_turn("echo from-the-agent > agent.txt"),
        text_turn("done"),
    ]))
    .await;
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let resp = server
        .http
        .post(server.url("/v1/runs"))
        .bearer_auth(&alice)
        .json(&json!({ "repository": fx.repo, "name": "oneshot", "prompt": "write the file" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["success"], true, "{text}");
    assert_eq!(summary["branch"], "warren/oneshot");
    let seqs: Vec<u64> = lines[..lines.len() - 1]
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        git(&fx.repo, &["show", "warren/oneshot:agent.txt"]),
        "from-the-agent\n"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_strangers_and_bad_input_and_documents_every_route() {
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let http = &server.http;

    let (status, body) = json_of(http.get(server.url("/v1/sandboxes")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["reason_code"], "unauthorized");
    let (status, _) = json_of(
        http.get(server.url("/v1/sandboxes"))
            .bearer_auth("wrn_0_nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        http.get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let launch = server.url("/v1/sandboxes");
    let repo = fx.repo.to_str().unwrap();
    let huge = format!(
        r#"{{"repository":"{repo}","name":"big","prompt":"{}"}}"#,
        "x".repeat(100_000)
    );
    for (body, want) in [
        ("{not json".to_owned(), 400),
        (
            format!(r#"{{"repository":"{repo}","name":"x","surprise":1}}"#),
            400,
        ),
        (r#"{"name":"x"}"#.to_owned(), 400),
        (format!(r#"{{"repository":"{repo}","name":"../etc"}}"#), 400),
        (huge, 413),
    ] {
        let (status, error) = json_of(
            http.post(&launch)
                .bearer_auth(&alice)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, want, "{}: {error}", &body[..body.len().min(80)]);
        assert!(error["error"]["reason_code"].is_string(), "{error}");
    }
    let (_, listed) = json_of(http.get(&launch).bearer_auth(&alice).send().await.unwrap()).await;
    assert_eq!(listed["sandboxes"], json!([]), "nothing was created");
    assert!(
        !fx.data.join("sandboxes").exists()
            || std::fs::read_dir(fx.data.join("sandboxes"))
                .unwrap()
                .next()
                .is_none()
    );

    // The document is OpenAPI 3.1 and every operation it lists is served (not the fallback).
    let (status, doc) = json_of(http.get(server.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let mut count = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            count += 1;
            let url = server.url(&path.replace("{name}", "nope"));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = http
                .request(method.clone(), &url)
                .bearer_auth(&alice)
                .header("content-type", "application/json")
                .body(r#"{"prompt":"p"}"#)
                .send()
                .await
                .unwrap();
            assert_ne!(resp.status(), 405, "{method} {path}");
            let text = resp.text().await.unwrap_or_default();
            assert!(
                !text.contains("no such route"),
                "{method} {path} is not served: {text}"
            );
        }
    }
    assert!(count >= 15, "{count} operations documented");
    server.stop().await;
}
