//! Egress allow-lists end to end, through the agent's own bash tool in a real sandbox: what the
//! list allows is reached by ordinary tools (curl, git over dumb HTTP, npm and pip against a local
//! registry and index; perl and git in the sandbox image that docker and kubernetes run), everything
//! else is refused by the proxy on the host or has no route at all, and every decision is an event
//! of the sandbox.
//!
//! The test servers listen on 127.0.0.2: loopback on the host, but not an address the sandbox's
//! `NO_PROXY` keeps local (127.0.0.1 inside a sandbox is the sandbox itself). From a pod they are
//! reachable only through the proxy: its loopback is its own, its network is closed, and the
//! proxy is reached over warren's relay (the `EGRESS` channel) on warren's loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::every_backend;

use super::harness::{
    Backend, Fixture, bash_turn, git, json_lines, scenario, stderr, stdout, text_turn,
};

/// A static file server on 127.0.0.2 (plus `/redirect`, which points at the cloud metadata
/// address), counting the requests it answers.
struct Files {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Files {
    async fn start(root: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (root, seen) = (root.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("/")
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let response = respond(&root, &path);
                    let _ = stream.write_all(&response).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, paths, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(root: &Path, path: &str) -> Vec<u8> {
    if path == "/redirect" {
        return b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
    }
    let mut file = root.join(path.trim_start_matches('/'));
    if path.ends_with('/') {
        file = file.join("index.html");
    }
    let inside = file
        .canonicalize()
        .is_ok_and(|f| f.starts_with(root.canonicalize().unwrap()));
    match std::fs::read(&file) {
        Ok(body) if inside && file.is_file() => {
            let kind = if path.ends_with(".html") || path.ends_with('/') {
                "text/html"
            } else if !path.contains('.') {
                "application/json"
            } else {
                "application/octet-stream"
            };
            let mut out = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            out
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    }
}

const HELLO: &str = "egress-hello-7f3a";
const DEP: &str = "dependency-content-91c2";

/// A dumb-HTTP git repository, an npm packument and a PyPI "simple" index with one wheel.
fn serve_root(dir: &Path, base: &str) -> PathBuf {
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), format!("{HELLO}\n")).unwrap();

    let work = dir.join("dep-work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("dep.txt"), format!("{DEP}\n")).unwrap();
    git(&work, &["add", "-A"]);
    git(
        &work,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "dep",
        ],
    );
    let bare = root.join("repo.git");
    git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    git(&bare, &["update-server-info"]);

    let packument = serde_json::json!({
        "name": "demo-pkg",
        "dist-tags": { "latest": "1.2.3" },
        "versions": { "1.2.3": {
            "name": "demo-pkg", "version": "1.2.3",
            "dist": { "tarball": format!("{base}/demo-pkg-1.2.3.tgz") }
        } }
    });
    std::fs::write(root.join("demo-pkg"), packument.to_string()).unwrap();

    let simple = root.join("simple/demo-pkg");
    std::fs::create_dir_all(&simple).unwrap();
    let wheel = "demo_pkg-0.1.0-py3-none-any.whl";
    std::fs::write(
        simple.join("index.html"),
        format!("<html><body><a href=\"../../files/{wheel}\">{wheel}</a></body></html>\n"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("files")).unwrap();
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\n\
             z = zipfile.ZipFile(sys.argv[1], 'w')\n\
             z.writestr('demo_pkg/__init__.py', '')\n\
             z.writestr('demo_pkg-0.1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: demo-pkg\\nVersion: 0.1.0\\n')\n\
             z.writestr('demo_pkg-0.1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
             z.writestr('demo_pkg-0.1.0.dist-info/RECORD', '')\n\
             z.close()",
            root.join("files").join(wheel).to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(made.success());
    root
}

/// A host port that counts connections and must see none.
struct Untouched {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Untouched {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while listener.accept().await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            port,
            accepted,
            task,
        }
    }
}

impl Drop for Untouched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A labelled probe: the label and what the command printed (stderr too).
fn probe(label: &str, command: &str) -> Value {
    bash_turn(&format!(
        "echo \"{label}: $( {{ timeout 60 {command} ; }} 2>&1 | tr '\\n' ' ')\""
    ))
}

/// `GET url` with perl's HTTP::Tiny (which reads http_proxy and follows redirects): the status,
/// then the body when it succeeded.
fn perl_get(url: &str) -> String {
    format!(
        "perl -MHTTP::Tiny -e '$r = HTTP::Tiny->new->get($ARGV[0]); print \"status=$r->{{status}} \"; print $r->{{content}} if $r->{{success}}' {url}"
    )
}

fn outputs(out: &std::process::Output) -> String {
    json_lines(out)
        .iter()
        .filter(|e| e["type"] == "tool_use")
        .map(|e| e["output"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

fn line<'a>(all: &'a str, label: &str) -> &'a str {
    all.lines()
        .find(|l| l.starts_with(&format!("{label}:")))
        .unwrap_or_else(|| panic!("no output for {label}:\n{all}"))
}

every_backend!(an_allow_list_lets_listed_hosts_through_and_refuses_everything_else);

async fn an_allow_list_lets_listed_hosts_through_and_refuses_everything_else(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    // The port is only known once bound, and the packument names it: bind, then fill the root.
    let root = tmp.path().join("www");
    let files = Files::start(root.clone()).await;
    serve_root(tmp.path(), &files.url());
    let untouched = Untouched::start().await;
    let (url, port) = (files.url(), files.addr.port());
    let other = format!("http://127.0.0.2:{}/", untouched.port);

    let mut turns = Vec::new();
    let allowed: Vec<(&str, String, &str)>;
    let denied: Vec<(&str, String)>;
    let unproxied: Vec<(&str, String)>;
    match backend {
        Backend::Local => {
            allowed = vec![
                ("curl", format!("curl -sS {url}/hello.txt"), HELLO),
                (
                    "curl-connect",
                    format!("curl -sS --proxytunnel {url}/hello.txt"),
                    HELLO,
                ),
                (
                    "git",
                    format!("git clone -q {url}/repo.git /tmp/dep && cat /tmp/dep/dep.txt"),
                    DEP,
                ),
                (
                    "npm",
                    format!("npm view demo-pkg version --registry {url}/ --no-update-notifier"),
                    "1.2.3",
                ),
                (
                    "pip",
                    format!(
                        "/usr/bin/python3 -m pip download --no-deps --disable-pip-version-check --no-cache-dir -d /tmp/dl --index-url {url}/simple/ demo-pkg >/dev/null && ls /tmp/dl"
                    ),
                    "demo_pkg-0.1.0-py3-none-any.whl",
                ),
            ];
            let code = |u: &str| format!("curl -s -o /dev/null -w 'code=%{{http_code}}' {u}");
            denied = vec![
                ("raw-ip", code(&other)),
                ("metadata", code("http://169.254.169.254/latest/meta-data/")),
                ("host", code("http://example.org/")),
                (
                    "connect-host",
                    "curl -s -o /dev/null -w 'code=%{http_connect}' https://example.org/"
                        .to_owned(),
                ),
                (
                    "loopback-name",
                    format!(
                        "env -u NO_PROXY -u no_proxy {}",
                        code(&format!("http://localhost:{port}/hello.txt"))
                    ),
                ),
                (
                    "redirect",
                    format!("curl -sL -o /dev/null -w 'code=%{{http_code}}' {url}/redirect"),
                ),
            ];
            unproxied = vec![
                (
                    "noproxy",
                    format!("curl -sS --noproxy '*' {url}/hello.txt && echo ESCAPED"),
                ),
                (
                    "socket",
                    format!(
                        "/usr/bin/python3 -c 'import socket; socket.create_connection((\"127.0.0.2\", {port}), 5)' && echo ESCAPED"
                    ),
                ),
                ("dns", "getent hosts example.org && echo ESCAPED".to_owned()),
            ];
        }
        Backend::Docker | Backend::Kubernetes => {
            allowed = vec![
                ("perl", perl_get(&format!("{url}/hello.txt")), HELLO),
                (
                    "git",
                    format!("git clone -q {url}/repo.git /tmp/dep && cat /tmp/dep/dep.txt"),
                    DEP,
                ),
            ];
            denied = vec![
                ("raw-ip", perl_get(&other)),
                (
                    "metadata",
                    perl_get("http://169.254.169.254/latest/meta-data/"),
                ),
                ("host", perl_get("http://example.org/")),
                (
                    "loopback-name",
                    format!(
                        "env -u NO_PROXY -u no_proxy {}",
                        perl_get(&format!("http://localhost:{port}/hello.txt"))
                    ),
                ),
                ("redirect", perl_get(&format!("{url}/redirect"))),
            ];
            unproxied = vec![
                (
                    "socket",
                    format!(
                        "perl -MIO::Socket::INET -e 'IO::Socket::INET->new(PeerAddr => \"127.0.0.2\", PeerPort => {port}, Timeout => 5) or die \"refused: $!\\n\"; print \"ESCAPED\"'"
                    ),
                ),
                ("dns", "getent hosts example.org && echo ESCAPED".to_owned()),
            ];
        }
    }
    for (label, command, _) in &allowed {
        turns.push(probe(label, command));
    }
    for (label, command) in denied.iter().chain(&unproxied) {
        turns.push(probe(label, command));
    }
    turns.push(text_turn("Done."));
    let fx = Fixture::with_backend(&scenario(turns), backend).await;
    fx.append_config(&format!(
        "\n[policy]\negress = \"allow-list\"\nallow = [\"localhost:{port}\"]\n"
    ));
    let allow = format!("127.0.0.2:{port}");
    let out = fx
        .run(
            "egress",
            &["--json", "--allow", &allow],
            "fetch dependencies",
        )
        .await;
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    let all = outputs(&out);
    for (label, _, expect) in &allowed {
        assert!(
            line(&all, label).contains(expect),
            "{label} did not get through:\n{all}"
        );
    }
    for (label, _) in &denied {
        let got = line(&all, label);
        assert!(
            got.contains("code=403") || got.contains("status=403"),
            "{label} was not refused by the proxy: {got}\n{all}"
        );
    }
    for (label, _) in &unproxied {
        assert!(
            !line(&all, label).contains("ESCAPED"),
            "{label} got out without the proxy:\n{all}"
        );
    }
    assert_eq!(
        untouched.accepted.load(Ordering::SeqCst),
        0,
        "an address no rule names was reached"
    );
    // The server saw only what the proxy let through.
    let seen = files.requests();
    assert!(seen.iter().all(|p| p != "/latest/meta-data/"), "{seen:?}");
    assert_eq!(
        seen.iter().filter(|p| *p == "/hello.txt").count(),
        match backend {
            Backend::Local => 2,
            Backend::Docker | Backend::Kubernetes => 1,
        },
        "{seen:?}"
    );

    // Every decision is an event: the allowed ones with their rule and bytes, the refusals with
    // their reason.
    let events: Vec<Value> = json_lines(&out)
        .into_iter()
        .filter(|e| e["type"] == "egress")
        .collect();
    let find = |decision: &str, host: &str, why: &str| {
        events.iter().find(|e| {
            e["decision"] == decision
                && e["host"] == host
                && e["reason"].as_str().unwrap_or_default().contains(why)
        })
    };
    let hello = events
        .iter()
        .find(|e| e["decision"] == "allowed" && e["method"] == "GET" && e["status"] == 200)
        .unwrap_or_else(|| panic!("no allowed GET event: {events:#?}"));
    assert_eq!(hello["host"], "127.0.0.2");
    assert_eq!(hello["port"], port);
    assert_eq!(hello["rule"], allow.as_str());
    assert!(hello["bytes_down"].as_u64().unwrap() > 0);
    assert!(hello["duration_ms"].is_u64());
    assert!(
        events
            .iter()
            .any(|e| e["decision"] == "allowed" && e["status"] == 302),
        "the redirect itself was let through and passed back: {events:#?}"
    );
    assert!(
        find("denied", "127.0.0.2", "raw IP").is_some(),
        "{events:#?}"
    );
    assert!(
        find("denied", "169.254.169.254", "raw IP").is_some(),
        "{events:#?}"
    );
    assert!(
        find("denied", "example.org", "no rule allows").is_some(),
        "{events:#?}"
    );
    assert!(
        find("denied", "localhost", "loopback").is_some(),
        "{events:#?}"
    );
    if backend == Backend::Local {
        assert!(
            events.iter().any(|e| e["method"] == "CONNECT"
                && e["decision"] == "allowed"
                && e["bytes_down"].as_u64() > Some(0)),
            "{events:#?}"
        );
        assert!(
            events.iter().any(|e| e["method"] == "CONNECT"
                && e["host"] == "example.org"
                && e["decision"] == "denied"),
            "{events:#?}"
        );
    }

    // status counts them, logs shows them.
    let status = super::harness::status(&fx, "egress").await;
    let allowed_n = events.iter().filter(|e| e["decision"] == "allowed").count() as u64;
    let denied_n = events.iter().filter(|e| e["decision"] == "denied").count() as u64;
    assert_eq!(status["egress"]["allowed"], allowed_n, "{status}");
    assert_eq!(status["egress"]["denied"], denied_n, "{status}");
    assert!(denied_n >= denied.len() as u64);
    let human = fx.warren(&["status", "egress"]).await;
    assert!(
        stdout(&human).contains(&format!(
            "egress:    {allowed_n} allowed, {denied_n} denied"
        )),
        "{}",
        stdout(&human)
    );
    if backend == Backend::Kubernetes {
        // The pod, and with it the relay's gateway and egress channels, went with the run.
        super::kube::assert_no_pod(status["sandbox"]["id"].as_str().unwrap()).await;
    }
    let logs = fx.warren(&["logs", "egress"]).await;
    let logs = format!("{}{}", stdout(&logs), stderr(&logs));
    assert!(
        logs.contains("egress denied GET 169.254.169.254:80"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("egress allowed GET 127.0.0.2:{port} by {allow}")),
        "{logs}"
    );
}

/// The error of a refused `--json` command, which must have created nothing.
async fn refused(fx: &Fixture, args: &[&str]) -> Value {
    let out = fx.warren(args).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let listed = fx.warren(&["list", "--all", "--json"]).await;
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap_or_default();
    assert!(
        listed["sandboxes"].as_array().is_none_or(Vec::is_empty),
        "a refused command created {listed}"
    );
    lines[0]["error"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_egress_settings_are_refused_before_anything_exists() {
    let fx = Fixture::new("{}").await;
    let repo = fx.repo.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--repo", repo, "--json"];
        args.extend_from_slice(extra);
        args.push("x");
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["--allow", "https://pypi.org"],
            "invalid_egress_rule",
            "not a URL",
        ),
        (
            &["--allow", "pypi.org:99999"],
            "invalid_egress_rule",
            "not a port",
        ),
        (
            &["--allow", "0.0.0.0/0"],
            "invalid_egress_rule",
            "every address",
        ),
        (&["--egress", "open"], "invalid_argument", "not a mode"),
        (
            &["--egress", "none", "--allow", "pypi.org"],
            "invalid_argument",
            "egress none",
        ),
    ];
    for (extra, code, says) in cases {
        let args = run(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let error = refused(&fx, &args).await;
        assert_eq!(error["reason_code"], code, "{extra:?}: {error}");
        assert!(error["message"].as_str().unwrap().contains(says), "{error}");
        assert!(error["hint"].is_string(), "{error}");
    }
    let launch = ["launch", "x", "--repo", repo, "--allow", "*.org", "--json"];
    let error = refused(&fx, &launch).await;
    assert_eq!(error["reason_code"], "invalid_egress_rule", "{error}");

    // A bad entry in the config is found even while egress is off.
    fx.append_config("\n[policy]\nallow = [{ host = \"pypi.org\", methods = [\"G T\"] }]\n");
    let args = run(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let error = refused(&fx, &args).await;
    assert_eq!(error["reason_code"], "invalid_egress_rule", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("HTTP method"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_cannot_isolate_the_sandbox_refuses_an_allow_list() {
    let fx = Fixture::new("{}").await;
    // With the host's Docker socket inside, the agent could start a container with a network.
    fx.append_config("\n[sandbox]\nmount_host_docker_socket = true\n");
    let repo = fx.repo.to_str().unwrap();
    let args = [
        "run",
        "--repo",
        repo,
        "--provider",
        "docker",
        "--allow",
        "127.0.0.2:80",
        "--json",
        "x",
    ];
    let error = refused(&fx, &args).await;
    assert_eq!(error["reason_code"], "egress_unenforceable", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("docker"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launched_sandbox_keeps_its_allow_list_for_follow_ups() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("www");
    let files = Files::start(root.clone()).await;
    serve_root(tmp.path(), &files.url());
    let url = files.url();
    let fetch = format!("curl -sS {url}/hello.txt");
    let fx = Fixture::new(&scenario(vec![
        super::harness::when_turn("first task", probe("first", &fetch)),
        super::harness::when_turn("first task", text_turn("first done")),
        super::harness::when_turn("second part", probe("second", &fetch)),
        super::harness::when_turn("second part", text_turn("second done")),
    ]))
    .await;
    // No warm server: the follow-up gets a new supervisor, with the config as it is now.
    fx.append_config("\n[opencode]\nwarm_idle_secs = 0\n");
    let repo = fx.repo.to_str().unwrap();
    let allow = format!("127.0.0.2:{}", files.addr.port());
    let out = fx
        .warren(&[
            "launch",
            "kept",
            "--repo",
            repo,
            "--allow",
            &allow,
            "--prompt",
            "first task",
            "--json",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let first = fx.warren(&["logs", "kept", "-f", "--json"]).await;
    assert!(
        outputs(&first).contains(&format!("first: {HELLO}")),
        "{}",
        stdout(&first)
    );
    // The config has no [policy]: the follow-up runs under the launch's allow-list.
    let exec = fx
        .warren(&["exec", "kept", "now the second part", "--json"])
        .await;
    assert!(exec.status.success(), "{}", stderr(&exec));
    assert!(
        outputs(&exec).contains(&format!("second: {HELLO}")),
        "{}",
        stdout(&exec)
    );
    let status = super::harness::status(&fx, "kept").await;
    assert_eq!(status["egress"]["allowed"], 2, "{status}");
    let logs = fx.warren(&["logs", "kept", "--json"]).await;
    let denied: Vec<Value> = json_lines(&logs)
        .into_iter()
        .filter(|e| e["type"] == "egress" && e["decision"] == "denied")
        .collect();
    // OpenCode's server itself asks registry.npmjs.org for updates; that is refused and recorded
    // like anything else the list does not name. The listed host never is.
    assert!(
        denied.iter().all(|e| e["host"] != "127.0.0.2"),
        "{denied:#?}"
    );
    assert_eq!(
        status["egress"]["denied"],
        denied.len() as u64,
        "{status} {denied:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_takes_egress_fields_and_shows_the_decisions() {
    use super::http::{Server, json_of, token};

    let tmp = tempfile::tempdir().unwrap();
    let files = Files::start(tmp.path().join("www")).await;
    serve_root(tmp.path(), &files.url());
    let url = files.url();
    let fx = Fixture::new(&scenario(vec![
        probe("api", &format!("curl -sS {url}/hello.txt")),
        probe(
            "api-denied",
            "curl -s -o /dev/null -w 'code=%{http_code}' http://169.254.169.254/",
        ),
        text_turn("done"),
    ]))
    .await;
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let repo = fx.repo.to_str().unwrap();
    let post = |path: &str, body: Value| {
        server
            .http
            .post(server.url(path))
            .bearer_auth(&alice)
            .json(&body)
            .send()
    };

    for (path, body, code) in [
        (
            "/v1/runs",
            serde_json::json!({ "repository": repo, "prompt": "p", "allow": ["https://x.org"] }),
            "invalid_egress_rule",
        ),
        (
            "/v1/sandboxes",
            serde_json::json!({ "repository": repo, "name": "n", "egress": "none", "allow": ["x.org"] }),
            "invalid_argument",
        ),
        (
            "/v1/sandboxes",
            serde_json::json!({ "repository": repo, "name": "n", "egress": "wide-open" }),
            "invalid_argument",
        ),
    ] {
        let (status, error) = json_of(post(path, body).await.unwrap()).await;
        assert_eq!(status, 400, "{error}");
        assert_eq!(error["error"]["reason_code"], code, "{error}");
        assert!(error["error"]["hint"].is_string(), "{error}");
    }

    let allow = format!("127.0.0.2:{}", files.addr.port());
    let response = post(
        "/v1/runs",
        serde_json::json!({ "repository": repo, "prompt": "fetch", "name": "api-egress", "allow": [allow] }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["success"], true, "{text}");
    let egress: Vec<&Value> = lines.iter().filter(|e| e["type"] == "egress").collect();
    assert!(
        egress.iter().any(|e| e["decision"] == "allowed"
            && e["rule"] == allow.as_str()
            && e["status"] == 200),
        "{egress:#?}"
    );
    assert!(
        egress
            .iter()
            .any(|e| e["decision"] == "denied" && e["host"] == "169.254.169.254"),
        "{egress:#?}"
    );

    let (status, view) = json_of(
        server
            .http
            .get(server.url("/v1/sandboxes/api-egress/status"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    // OpenCode's own update check (registry.npmjs.org) may be among the refusals.
    let count = |d: &str| egress.iter().filter(|e| e["decision"] == d).count() as u64;
    assert_eq!(view["egress"]["allowed"], count("allowed"), "{view}");
    assert_eq!(view["egress"]["denied"], count("denied"), "{view}");
    assert_eq!(count("allowed"), 1, "{egress:#?}");
    server.stop().await;
}
