//! `warren doctor`: on a machine with everything (bubblewrap, OpenCode, the scripted model) it
//! passes and lists every check; each missing piece fails it with the fix named, and a
//! credential's value never appears in what it prints.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Output;

use serde_json::Value;

use super::harness::{Backend, Fixture, docker_ready, scenario, stderr, stdout};
use super::http::{Server, free_port, token};

/// `doctor --json`'s one line, validated against the committed schema.
fn doctor_view(out: &Output) -> Value {
    let line: Value = serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}):\n{}", stdout(out)));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schemas/doctor.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&line)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{line:#}");
    line
}

/// `warren doctor --json` with `env` set: asserts its exit code, returns it with its view.
async fn doctor(fx: &Fixture, env: &[(&str, &OsStr)], code: i32) -> (Output, Value) {
    let env: Vec<(String, OsString)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.to_os_string()))
        .collect();
    let out = fx
        .warren_with(&["doctor", "--json"], |c| {
            c.envs(env);
        })
        .await;
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let view = doctor_view(&out);
    (out, view)
}

fn named<'a>(view: &'a Value, name: &str) -> &'a Value {
    view["doctor"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {view:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_here_and_lists_every_check() {
    let fx = Fixture::new(&scenario(vec![])).await;
    let out = fx.warren(&["doctor", "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let view = doctor_view(&out);
    assert_eq!(view["doctor"]["ok"], true);
    for name in [
        "config",
        "bubblewrap",
        "opencode",
        "sandbox init",
        "git",
        "data directory",
        "store",
        "model",
        "model endpoint scripted",
        "model credential scripted",
        "docker",
        "server",
    ] {
        let check = named(&view, name);
        assert_ne!(check["status"], "fail", "{check:#}");
    }
    assert_eq!(named(&view, "bubblewrap")["status"], "ok");
    assert_eq!(named(&view, "model endpoint scripted")["status"], "ok");
    // The local provider is configured: Docker is not needed, and the output says why.
    let docker = named(&view, "docker");
    assert_eq!(docker["status"], "skip");
    assert!(docker["detail"].as_str().unwrap().contains("local"));
    // The store was really opened (and so created) in the data directory.
    assert!(fx.data.join("warren.db").is_file());

    let human = fx.warren(&["doctor"]).await;
    assert_eq!(human.status.code(), Some(0));
    let text = stdout(&human);
    assert!(text.contains("✔ bubblewrap"), "{text}");
    assert!(text.contains("– docker"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_an_unreachable_endpoint_and_an_unset_credential_without_printing_it() {
    let fx = Fixture::new(&scenario(vec![])).await;
    let port = free_port();
    fx.append_config(&format!(
        "\n[model_providers.closed]\nbase_url = \"http://127.0.0.1:{port}/v1\"\napi_key_env = \"DOCTOR_TEST_KEY\"\nmodels = [\"m\"]\n"
    ));
    let out = fx.warren(&["doctor", "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let view = doctor_view(&out);
    assert_eq!(view["doctor"]["ok"], false);
    let endpoint = named(&view, "model endpoint closed");
    assert_eq!(endpoint["status"], "fail");
    assert!(
        endpoint["detail"]
            .as_str()
            .unwrap()
            .contains(&port.to_string())
    );
    assert!(
        endpoint["fix"]
            .as_str()
            .unwrap()
            .contains("model_providers.closed.base_url")
    );
    let credential = named(&view, "model credential closed");
    assert_eq!(credential["status"], "fail");
    assert_eq!(credential["fix"], "export DOCTOR_TEST_KEY=...");
    // The working endpoint still passes beside the broken one.
    assert_eq!(named(&view, "model endpoint scripted")["status"], "ok");

    let human = fx.warren(&["doctor"]).await;
    assert_eq!(human.status.code(), Some(2));
    let text = stdout(&human);
    assert!(text.contains("✘ model endpoint closed"), "{text}");
    assert!(text.contains("fix: export DOCTOR_TEST_KEY=..."), "{text}");

    // Set, the variable passes, and its value shows nowhere.
    let secret = "sk-doctor-secret-3f9a1c";
    for args in [&["doctor", "--json"][..], &["doctor"][..]] {
        let out = fx
            .warren_with(args, |c| {
                c.env("DOCTOR_TEST_KEY", secret);
            })
            .await;
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !all.contains(secret),
            "the credential's value leaked:\n{all}"
        );
        assert!(all.contains("DOCTOR_TEST_KEY is set"), "{all}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_fails_on_a_missing_opencode_and_names_the_fix() {
    let fx = Fixture::new(&scenario(vec![])).await;
    let missing = fx.dir.path().join("no-such-opencode");
    let (_, view) = doctor(&fx, &[("WARREN_OPENCODE", missing.as_os_str())], 2).await;
    let opencode = named(&view, "opencode");
    assert_eq!(opencode["status"], "fail");
    assert!(
        opencode["detail"]
            .as_str()
            .unwrap()
            .contains("no-such-opencode"),
        "{opencode:#}"
    );
    let fix = opencode["fix"].as_str().unwrap();
    assert!(
        fix.contains("WARREN_OPENCODE") && fix.contains("npm install"),
        "{fix}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_a_configured_server_and_its_token() {
    let fx = Fixture::new(&scenario(vec![])).await;
    let server = Server::start(&fx).await;
    let good = token(&fx, "alice").await;
    let base = server.url("");

    let (out, view) = doctor(
        &fx,
        &[
            ("WARREN_SERVER", OsStr::new(&base)),
            ("WARREN_TOKEN", OsStr::new(&good)),
        ],
        0,
    )
    .await;
    let check = named(&view, "server");
    assert_eq!(check["status"], "ok", "{check:#}");
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains(&good));

    let bad = "wrn_not_a_real_token";
    let (_, view) = doctor(
        &fx,
        &[
            ("WARREN_SERVER", OsStr::new(&base)),
            ("WARREN_TOKEN", OsStr::new(bad)),
        ],
        2,
    )
    .await;
    let check = named(&view, "server");
    assert_eq!(check["status"], "fail", "{check:#}");
    assert!(check["detail"].as_str().unwrap().contains("WARREN_TOKEN"));
    assert!(check["fix"].as_str().unwrap().contains("WARREN_TOKEN"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_fails_without_bubblewrap_for_the_local_provider_only() {
    let fx = Fixture::new(&scenario(vec![])).await;
    let missing = fx.dir.path().join("no-such-bwrap");
    let (_, view) = doctor(&fx, &[("WARREN_BWRAP", missing.as_os_str())], 2).await;
    let check = named(&view, "bubblewrap");
    assert_eq!(check["status"], "fail");
    assert!(
        check["fix"]
            .as_str()
            .unwrap()
            .contains("apt-get install bubblewrap")
    );

    // With the docker provider configured, bubblewrap is not needed.
    let out = fx
        .warren_with(&["doctor", "--json"], |c| {
            c.env("WARREN_BWRAP", &missing)
                .env("WARREN_SANDBOX_PROVIDER", "docker");
        })
        .await;
    let view = doctor_view(&out);
    assert_eq!(named(&view, "bubblewrap")["status"], "skip");
    assert_ne!(named(&view, "docker")["status"], "skip");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_docker_and_the_image_when_the_docker_provider_is_configured() {
    if !docker_ready().await {
        return;
    }
    let fx = Fixture::with_backend(&scenario(vec![]), Backend::Docker).await;
    let out = fx.warren(&["doctor", "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let view = doctor_view(&out);
    let docker = named(&view, "docker");
    assert_eq!(docker["status"], "ok", "{docker:#}");
    assert!(
        docker["detail"]
            .as_str()
            .unwrap()
            .contains("warren-sandbox:e2e")
    );
    assert_eq!(named(&view, "bubblewrap")["status"], "skip");

    // A profile whose image was never built or pulled.
    fx.append_config("ghost = \"warren-doctor-test:never-built\"\n");
    let (_, view) = doctor(&fx, &[("WARREN_IMAGE_PROFILE", OsStr::new("ghost"))], 2).await;
    let docker = named(&view, "docker");
    assert_eq!(docker["status"], "fail", "{docker:#}");
    assert!(docker["detail"].as_str().unwrap().contains("never-built"));
    assert!(
        docker["fix"]
            .as_str()
            .unwrap()
            .contains("docker pull warren-doctor-test:never-built")
    );

    // No engine at the configured socket.
    let (_, view) = doctor(
        &fx,
        &[("DOCKER_HOST", OsStr::new("unix:///nonexistent/docker.sock"))],
        2,
    )
    .await;
    let docker = named(&view, "docker");
    assert_eq!(docker["status"], "fail", "{docker:#}");
    assert!(docker["fix"].as_str().unwrap().contains("DOCKER_HOST"));
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_starts_a_probe_pod_when_the_kubernetes_provider_is_configured() {
    if !super::kube::kube_ready().await {
        return;
    }
    let fx = Fixture::with_backend(&scenario(vec![]), Backend::Kubernetes).await;
    let out = fx.warren(&["doctor", "--json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let view = doctor_view(&out);
    let kube = named(&view, "kubernetes");
    assert_eq!(kube["status"], "ok", "{kube:#}");
    let detail = kube["detail"].as_str().unwrap();
    assert!(
        detail.contains("rights held") && detail.contains("closed off the network"),
        "{detail}"
    );
    assert_eq!(named(&view, "docker")["status"], "skip");

    // An image the nodes do not have: the probe pod cannot start, and doctor says so.
    let config = std::fs::read_to_string(&fx.config).unwrap();
    std::fs::write(
        &fx.config,
        config.replace(
            "image = \"warren-sandbox:e2e\"",
            "image = \"warren-doctor-test:never-built\"",
        ),
    )
    .unwrap();
    let (_, view) = doctor(&fx, &[], 2).await;
    let kube = named(&view, "kubernetes");
    assert_eq!(kube["status"], "fail", "{kube:#}");
    assert!(
        kube["detail"].as_str().unwrap().contains("never-built"),
        "{kube:#}"
    );
}

/// Without any model provider no agent can run: doctor fails and says what to configure.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_fails_without_a_model_and_says_what_to_configure() {
    let fx = Fixture::new(&scenario(Vec::new())).await;
    std::fs::write(&fx.config, "").unwrap();
    let out = fx.warren(&["doctor", "--json"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let view = doctor_view(&out);
    assert_eq!(view["doctor"]["ok"], false);
    let model = named(&view, "model");
    assert_eq!(model["status"], "fail", "{model:#}");
    assert!(
        model["fix"].as_str().unwrap().contains("[model_providers."),
        "{model:#}"
    );
}
