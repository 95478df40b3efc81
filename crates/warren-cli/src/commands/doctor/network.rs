//! The checks of what warren talks to: the configured model endpoints (a bounded TCP connect,
//! never a request carrying a credential; the credential variable only checked for being set),
//! the Docker engine and the sandbox image, and a configured warren server with its token.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use warren_api::DoctorCheck;
use warren_config::Config;
use warren_domain::UserFacing;
use warren_provider::Provider;

use super::{fail, ok, skip};
use crate::cli::GlobalArgs;
use crate::provider::AnyProvider;
use crate::remote::Client;

const CONNECT_LIMIT: Duration = Duration::from_secs(3);

/// A TCP connection to `base_url`'s host and port within [`CONNECT_LIMIT`].
fn connect(base_url: &str) -> Result<String, String> {
    let url =
        reqwest::Url::parse(base_url).map_err(|e| format!("{base_url:?} is not a URL: {e}"))?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("{base_url:?} names no host"))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{base_url:?} names no port"))?;
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_LIMIT) {
            Ok(_) => return Ok(format!("{host}:{port}")),
            Err(e) => last = format!("cannot connect to {host}:{port}: {e}"),
        }
    }
    Err(last)
}

/// A model to run agents with: without a model provider, no run can start.
fn model(config: &Config) -> DoctorCheck {
    const NAME: &str = "model";
    if config.model_providers.is_empty() {
        return fail(
            NAME,
            "no model provider is configured, so no agent can run",
            "add [model] default = \"PROVIDER/MODEL\" and [model_providers.PROVIDER] (base_url, models, api_key_env) to ~/.config/warren/config.toml: see the README, 'Using it with a real model'",
        );
    }
    match &config.model.default {
        Some(default) => ok(NAME, format!("default model {default}")),
        None => ok(
            NAME,
            "no default model: each run names one with --model PROVIDER/MODEL",
        ),
    }
}

/// Two checks per configured model provider: its endpoint answers, its credential is set.
pub(crate) fn models(config: &Config) -> Vec<DoctorCheck> {
    let mut checks = vec![model(config)];
    for (name, provider) in &config.model_providers {
        let endpoint = format!("model endpoint {name}");
        checks.push(match connect(&provider.base_url) {
            Ok(addr) => ok(endpoint, format!("{} reachable ({addr})", provider.base_url)),
            Err(e) => fail(
                endpoint,
                format!("{}: {e}", provider.base_url),
                format!(
                    "start the model server at {} or set model_providers.{name}.base_url to one that runs",
                    provider.base_url
                ),
            ),
        });
        let credential = format!("model credential {name}");
        checks.push(match (&provider.api_key_env, &provider.api_key) {
            (Some(var), _) => match std::env::var_os(var) {
                Some(v) if !v.is_empty() => ok(credential, format!("{var} is set")),
                _ => fail(
                    credential,
                    format!("{var} is not set"),
                    format!("export {var}=..."),
                ),
            },
            (None, Some(_)) => ok(credential, "api_key set in the config"),
            (None, None) => skip(credential, "no api_key_env configured (none needed)"),
        });
    }
    checks
}

/// Docker and the sandbox image, needed only when the docker provider is configured.
pub(crate) async fn docker(config: &Config) -> DoctorCheck {
    const NAME: &str = "docker";
    if config.sandbox.provider != "docker" {
        return skip(
            NAME,
            format!(
                "sandbox.provider is {:?}; only the docker provider uses Docker",
                config.sandbox.provider
            ),
        );
    }
    let start = "start Docker (sudo systemctl start docker) and make its socket reachable (set DOCKER_HOST, or add this user to the docker group: sudo usermod -aG docker $USER)";
    let provider = match AnyProvider::for_kind("docker", config, None) {
        Ok(p) => p,
        Err(e) => return fail(NAME, e.message, start),
    };
    let Some(docker) = provider.docker() else {
        return fail(NAME, "the docker provider did not start", start);
    };
    let image = docker.settings().image.clone();
    let client = match docker.docker().await {
        Ok(c) => c,
        Err(e) => return fail(NAME, format!("cannot reach Docker: {e}"), start),
    };
    let reach = tokio::time::timeout(Duration::from_secs(5), client.version()).await;
    let version = match reach {
        Ok(Ok(v)) => v.version.unwrap_or_default(),
        Ok(Err(e)) => return fail(NAME, format!("cannot reach Docker: {e}"), start),
        Err(_) => return fail(NAME, "Docker did not answer within 5 s", start),
    };
    match client.inspect_image(&image).await {
        Ok(_) => ok(NAME, format!("Docker {version}; image {image} present")),
        Err(e) => fail(
            NAME,
            format!("Docker {version} runs but the image {image} is missing: {e}"),
            if image == warren_provider_docker::DEFAULT_SANDBOX_IMAGE {
                "warren image build".to_owned()
            } else {
                format!(
                    "docker pull {image} (or build it), or set sandbox.image_profile to a profile whose image exists"
                )
            },
        ),
    }
}

/// The kubernetes provider: the cluster answers, this identity holds every right the provider
/// uses in its namespace, and a real sandbox pod starts there, is found closed off the network,
/// and is removed (the image, the policy and the relay, as a run would meet them).
pub(crate) async fn kubernetes(config: &Config) -> DoctorCheck {
    const NAME: &str = "kubernetes";
    if config.sandbox.provider != "kubernetes" {
        return skip(
            NAME,
            format!(
                "sandbox.provider is {:?}; only the kubernetes provider uses a cluster",
                config.sandbox.provider
            ),
        );
    }
    let reach = "set KUBECONFIG (and [sandbox.kubernetes] context) to a cluster you can reach, or run inside the cluster with a service account";
    let provider = match AnyProvider::for_kind("kubernetes", config, None) {
        Ok(p) => p,
        Err(e) => return fail(NAME, e.message, reach),
    };
    let Some(kube) = provider.kubernetes() else {
        return fail(NAME, "the kubernetes provider did not start", reach);
    };
    let namespace = kube.settings().namespace.clone();
    match tokio::time::timeout(Duration::from_secs(10), kube.preflight()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let hint = e.hint().unwrap_or_else(|| reach.to_owned());
            return fail(NAME, e.to_string(), hint);
        }
        Err(_) => return fail(NAME, "the cluster did not answer within 10 s", reach),
    }
    match kube.missing_rights().await {
        Ok(missing) if missing.is_empty() => {}
        Ok(missing) => {
            return fail(
                NAME,
                format!(
                    "this identity may not {} in the namespace {namespace}",
                    missing.join(", ")
                ),
                format!(
                    "grant them in {namespace} (deploy/kubernetes/role.yaml is the Role warren needs)"
                ),
            );
        }
        Err(e) => return fail(NAME, e.to_string(), reach),
    }
    let spec = warren_provider::SandboxSpec {
        id: warren_domain::SandboxId::new(),
        name: warren_domain::SandboxName::parse("doctor").unwrap_or_else(|_| unreachable!()),
        host_dirs: None,
        // Nothing in the probe dials it; the relay only listens.
        gateway: warren_provider::GatewayAttachment::Tcp {
            address: "127.0.0.1:40999".into(),
            token: "doctor".into(),
            egress: None,
        },
        tools: Vec::new(),
    };
    let image = kube.settings().image.clone();
    // A doctor answers in bounded time, whatever `create_timeout_secs` allows a run.
    let probe = tokio::time::timeout(Duration::from_secs(60), kube.create(&spec)).await;
    let Ok(created) = probe else {
        let pods = kube.list_pods().await.unwrap_or_default();
        for pod in pods.iter().filter(|p| p.sandbox_id == spec.id.as_str()) {
            let _ = kube.delete_pod(&pod.name).await;
        }
        return fail(
            NAME,
            format!("a sandbox pod from {image} did not start within 60 s"),
            format!(
                "kubectl describe pod -n {namespace} -l warren.dev/sandbox-id shows why (scheduling, image pull); check the nodes' taints and that they have {image}"
            ),
        );
    };
    match created {
        Ok((sandbox, timings)) => {
            let _ = warren_provider::Sandbox::destroy(sandbox).await;
            ok(
                NAME,
                format!(
                    "namespace {namespace}: rights held; a sandbox pod from {image} started in {:.1} s, closed off the network, relay up",
                    timings.total.as_secs_f64()
                ),
            )
        }
        Err(e) => {
            let hint = e.hint().unwrap_or_else(|| {
                format!("make {image} available to the nodes (push it to their registry, or import it with image_pull_policy = \"Never\"); docs/kubernetes.md")
            });
            fail(NAME, e.to_string(), hint)
        }
    }
}

/// A configured server (`WARREN_SERVER` / `--server`): reachable, and the token accepted.
pub(crate) async fn server(global: &GlobalArgs) -> DoctorCheck {
    const NAME: &str = "server";
    let Some(server) = global.server.as_deref().filter(|s| !s.is_empty()) else {
        return skip(NAME, "no WARREN_SERVER configured (working locally)");
    };
    let Some(token) = global.token.as_deref().filter(|t| !t.is_empty()) else {
        return fail(
            NAME,
            format!("WARREN_SERVER is {server} but WARREN_TOKEN is not set"),
            "export WARREN_TOKEN=... (a token from 'warren token create' on the server)",
        );
    };
    let client = match Client::new(server, token) {
        Ok(c) => c,
        Err(e) => return fail(NAME, e.message, e.hint.unwrap_or_default()),
    };
    let req = client
        .request(reqwest::Method::GET, "/v1/sandboxes?limit=1")
        .timeout(Duration::from_secs(10));
    match client.send(req).await {
        Ok(_) => ok(NAME, format!("{server} reachable; WARREN_TOKEN accepted")),
        Err(e) if e.reason_code == warren_domain::ReasonCode::Unauthorized => fail(
            NAME,
            format!("{server} refused WARREN_TOKEN: {}", e.message),
            "export WARREN_TOKEN=... (a valid token: 'warren token create' on the server)",
        ),
        Err(e) => fail(
            NAME,
            e.message,
            format!("start 'warren serve' at {server}, or unset WARREN_SERVER to work locally"),
        ),
    }
}
