//! Where a served sandbox's repository comes from, against a real `warren serve`: a git URL
//! (file:// to a bare repository the test made) cloned by the server, with the branch pushed back
//! on export; and hostile or broken sources refused with a reason code, creating nothing: a bundle
//! whose tree has a `..` entry, garbage bytes, a bundle over the size cap, a URL with a transport
//! that runs commands (`ext::`), an unknown bundle id. A symlink pointing out of the repository
//! stays a symlink inside it, and nothing outside is read or written.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::harness::{Fixture, bash_turn, git, scenario, text_turn};
use super::http::{Server, json_of, token};

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Reads a sandbox's events as NDJSON until the server ends the stream (the sandbox is idle).
async fn wait_idle(server: &Server, token: &str, name: &str) -> Vec<Value> {
    let text = server
        .http
        .get(server.url(&format!("/v1/sandboxes/{name}/events")))
        .bearer_auth(token)
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn upload(server: &Server, token: &str, bytes: Vec<u8>) -> (u16, Value) {
    json_of(
        server
            .http
            .post(server.url("/v1/bundles"))
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// `git hash-object --literally`: writes an object git itself would refuse to make.
fn literal_object(repo: &Path, kind: &str, bytes: &[u8]) -> String {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["hash-object", "--literally", "-w", "--stdin", "-t", kind])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A bundle of `refs/warren/wip` = a commit on top of HEAD of `repo` with `tree`.
fn bundle_of_tree(repo: &Path, tree: &str, into: &Path) -> Vec<u8> {
    let head = git(repo, &["rev-parse", "HEAD"]);
    let wip = git(
        repo,
        &["commit-tree", tree, "-p", head.trim(), "-m", "hostile"],
    );
    git(repo, &["update-ref", "refs/warren/wip", wip.trim()]);
    git(
        repo,
        &[
            "bundle",
            "create",
            into.to_str().unwrap(),
            "refs/warren/wip",
        ],
    );
    git(repo, &["update-ref", "-d", "refs/warren/wip"]);
    std::fs::read(into).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_url_is_cloned_and_the_branch_pushed_back() {
    let fx = Fixture::new(&scenario(vec![
        bash_turn("echo from-the-url > agent.txt"),
        text_turn("done"),
    ]))
    .await;
    let bare = fx.dir.path().join("origin.git");
    git(
        fx.dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            fx.repo.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let url = format!("file://{}", bare.display());
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let http = &server.http;
    let (status, launched) = json_of(
        http.post(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .json(&json!({ "repository": url, "name": "fromurl", "prompt": "write the file" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{launched}");
    let clone = Path::new(launched["sandbox"]["repo"].as_str().unwrap()).to_path_buf();
    assert!(
        clone.starts_with(fx.data.join("sources")),
        "{}",
        clone.display()
    );
    let events = wait_idle(&server, &alice, "fromurl").await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "tool_use" && e["tool"] == "bash")
    );

    let (status, exported) = json_of(
        http.post(server.url("/v1/sandboxes/fromurl/export"))
            .bearer_auth(&alice)
            .json(&json!({ "push": true }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{exported}");
    assert_eq!(exported["export"]["branch"], "warren/fromurl");
    assert_eq!(exported["export"]["pushed_to"], url.as_str());
    assert_eq!(
        git(&bare, &["rev-parse", "warren/fromurl"]),
        git(&clone, &["rev-parse", "warren/fromurl"]),
        "the branch is in the bare repository, the same commit"
    );
    assert_eq!(
        git(&bare, &["show", "warren/fromurl:agent.txt"]),
        "from-the-url\n"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_sources_are_refused_and_create_nothing() {
    let fx = Fixture::new(&scenario(vec![text_turn("unused")])).await;
    fx.append_config("\n[sync]\nmax_total_bytes = 1000000\n");
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let http = &server.http;
    let sources = fx.data.join("sources");
    let uploads = fx.data.join("bundles");

    // A tree with a `..` entry: fsck refuses the objects.
    let blob = git(&fx.repo, &["hash-object", "-w", "--stdin"]);
    let blob = blob.trim();
    let mut raw = b"100644 ..\0".to_vec();
    raw.extend((0..20).map(|i| u8::from_str_radix(&blob[2 * i..2 * i + 2], 16).unwrap()));
    let tree = literal_object(&fx.repo, "tree", &raw);
    let hostile = bundle_of_tree(&fx.repo, &tree, &fx.dir.path().join("dotdot.bundle"));
    let (status, body) = upload(&server, &alice, hostile).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["reason_code"], "invalid_bundle");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hasDotdot"),
        "refused by fsck: {body}"
    );
    assert!(body["error"]["hint"].is_string());
    assert_eq!(entries(&sources), 0, "nothing stays behind");
    assert_eq!(entries(&uploads), 0);

    // Garbage, an empty body, and a bundle over the cap.
    for (bytes, want, code) in [
        (b"not a bundle at all\n".to_vec(), 422, "invalid_bundle"),
        (Vec::new(), 422, "invalid_bundle"),
        // Over the server's --max-body-bytes (64 KiB here) but under the bundle cap: read and
        // judged as a bundle, not refused for its size.
        (vec![7u8; 200_000], 422, "invalid_bundle"),
        (vec![7u8; 1_500_000], 413, "request_too_large"),
    ] {
        let (status, body) = upload(&server, &alice, bytes).await;
        assert_eq!(status, want, "{body}");
        assert_eq!(body["error"]["reason_code"], code, "{body}");
        assert_eq!(entries(&sources), 0);
        assert_eq!(entries(&uploads), 0);
    }

    // Transports that run commands, and unknown bundles: refused before anything runs.
    let pwned = fx.dir.path().join("pwned");
    for repository in [
        json!(format!("ext::sh -c touch% {}", pwned.display())),
        json!({ "git": format!("ext::sh -c touch% {}", pwned.display()) }),
        json!("ftp://example.com/r.git"),
        json!({ "bundle": "0123456789abcdef" }),
        json!({ "bundle": "../../etc" }),
        // The server's data directory holds every owner's sandboxes and sources: not a
        // repository anyone may name, by path or by file:// URL.
        json!(fx.data.display().to_string()),
        json!(format!("file://{}", fx.data.join("sources").display())),
        json!(format!(
            "file:///{}",
            fx.data.display().to_string()[1..].replace('/', "%2F")
        )),
    ] {
        let (status, body) = json_of(
            http.post(server.url("/v1/sandboxes"))
                .bearer_auth(&alice)
                .json(&json!({ "repository": repository, "name": "evil" }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{repository}: {body}");
        assert_eq!(body["error"]["reason_code"], "unsupported_source", "{body}");
    }
    assert!(!pwned.exists(), "no command ran");
    assert_eq!(entries(&sources), 0);
    let (status, _) = json_of(
        http.get(server.url("/v1/sandboxes/evil"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "no sandbox was created");

    // A symlink out of the repository stays a symlink; what it points at is never touched.
    let outside = fx.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "outside\n").unwrap();
    std::os::unix::fs::symlink(&outside, fx.repo.join("escape")).unwrap();
    std::os::unix::fs::symlink("../../outside/secret.txt", fx.repo.join("relative")).unwrap();
    git(&fx.repo, &["add", "escape"]);
    git(&fx.repo, &["commit", "-qm", "a symlink out"]);
    let scratch = fx.dir.path().join("scratch.git");
    git(
        fx.dir.path(),
        &["init", "-q", "--bare", scratch.to_str().unwrap()],
    );
    let head = git(&fx.repo, &["rev-parse", "HEAD"]);
    // The untracked `relative` rides in the uncommitted-state commit, as the CLI would send it.
    let index = fx.dir.path().join("tmp-index");
    let with_index = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&fx.repo)
            .args(args)
            .env("GIT_INDEX_FILE", &index)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    with_index(&["add", "-A"]);
    let tree = with_index(&["write-tree"]);
    let bytes = bundle_of_tree(&fx.repo, &tree, &fx.dir.path().join("symlink.bundle"));
    assert!(head.trim().len() == 40);
    let (status, stored) = upload(&server, &alice, bytes).await;
    assert_eq!(status, 201, "{stored}");
    assert_eq!(stored["bundle"]["head"], head.trim());
    let id = stored["bundle"]["id"].as_str().unwrap();
    let source = sources.join(id);
    for link in ["escape", "relative"] {
        let meta = std::fs::symlink_metadata(source.join(link)).unwrap();
        assert!(meta.file_type().is_symlink(), "{link} stays a symlink");
    }
    let (status, launched) = json_of(
        http.post(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .json(&json!({ "repository": { "bundle": id }, "name": "links" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{launched}");
    let (_, status_view) = json_of(
        http.get(server.url("/v1/sandboxes/links/status"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let workspace = Path::new(status_view["sandbox"]["workspace"].as_str().unwrap()).to_path_buf();
    for link in ["escape", "relative"] {
        let meta = std::fs::symlink_metadata(workspace.join(link)).unwrap();
        assert!(
            meta.file_type().is_symlink(),
            "{link} is a symlink in the workspace"
        );
    }
    assert_eq!(entries(&outside), 1);
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "outside\n"
    );

    // A sandbox from a bundle has no URL to push to.
    let (status, body) = json_of(
        http.post(server.url("/v1/sandboxes/links/export"))
            .bearer_auth(&alice)
            .json(&json!({ "push": true }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["reason_code"], "unsupported_source");
    let _ = http
        .delete(server.url("/v1/sandboxes/links?force=true"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    server.stop().await;
}
