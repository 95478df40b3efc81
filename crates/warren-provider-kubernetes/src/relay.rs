//! The pod's only way out: warren's relay over an exec stream. The pod's network is closed (a
//! deny-all NetworkPolicy, checked by [`check_network`]), so OpenCode in the pod cannot reach
//! the gateway by address. Instead `warren-sandbox-init mux` listens on the gateway's loopback
//! address inside the pod, and every connection it accepts travels over that exec's stdin and
//! stdout (yamux, `warren-mux`) to warren, which connects it to the real gateway on its own
//! loopback. The credential stays on warren's host; the pod needs no route, Service or Secret.
//! When the sandbox's egress is an allow-list, the same relay carries its egress port to the
//! egress proxy on warren's loopback, which decides every request; without one, nothing in the
//! pod listens on that port.
//! The same connection carries streams the other way, opened by warren to a loopback port in
//! the pod (a warm OpenCode server, see `expose.rs`): [`Relay::openers`] always names the
//! current connection's opener, since a restarted relay is a new connection.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use warren_mux::{HostMux, Opener, Route};
use warren_provider::{GatewayAttachment, IMAGE_TOOLS_DIR, SANDBOX_EGRESS_PORT};

use crate::exec::{describe, exit_code, params};

/// How long the relay may take to say it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Restarts after the stream drops (an API server restart, a proxy's idle cut) before the relay
/// is given up; the agent then fails on its next model request, and says so.
const MAX_RESTARTS: u32 = 5;
/// A connection that lasted this long resets the count of restarts.
const HEALTHY: Duration = Duration::from_secs(60);

fn init() -> String {
    format!("{IMAGE_TOOLS_DIR}/warren-sandbox-init")
}

/// What the pod side listens on (per channel, a loopback address in the pod) and where warren
/// connects each channel: the gateway on its own address (the pod dials the address OpenCode was
/// told), and the egress proxy, when the attachment names one, on the agent's egress port.
/// `None` for a Unix-socket attachment, which a pod cannot use.
pub(crate) fn channels(gateway: &GatewayAttachment) -> Option<(Vec<Listen>, Vec<Route>)> {
    let GatewayAttachment::Tcp {
        address, egress, ..
    } = gateway
    else {
        return None;
    };
    let mut listen = vec![(warren_mux::GATEWAY, address.clone())];
    let mut routes = vec![Route {
        channel: warren_mux::GATEWAY,
        address: address.clone(),
    }];
    if let Some(proxy) = egress {
        listen.push((
            warren_mux::EGRESS,
            format!("127.0.0.1:{SANDBOX_EGRESS_PORT}"),
        ));
        routes.push(Route {
            channel: warren_mux::EGRESS,
            address: proxy.clone(),
        });
    }
    Some((listen, routes))
}

/// A channel the pod side listens for, on a loopback address in the pod.
pub(crate) type Listen = (warren_mux::Channel, String);

/// A relay running for one pod; dropping it ends it.
pub(crate) struct Relay {
    task: JoinHandle<()>,
    /// The opener of the connection serving now; `None` while it is down (being restarted, or
    /// given up).
    openers: watch::Receiver<Option<Opener>>,
}

impl Relay {
    /// Follows the relay's current connection, to open streams into the pod.
    pub(crate) fn openers(&self) -> watch::Receiver<Option<Opener>> {
        self.openers.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the relay: `listen` in the pod (a loopback `host:port`) carries `routes` to warren's
/// addresses. Returns once the pod side listens.
pub(crate) async fn start(
    api: Api<Pod>,
    pod: String,
    listen: Vec<Listen>,
    routes: Vec<Route>,
) -> Result<Relay, String> {
    let argv = {
        let mut argv = vec![init(), "mux".to_owned()];
        for (channel, address) in &listen {
            argv.push("--listen".to_owned());
            argv.push(format!("{channel}={address}"));
        }
        argv
    };
    let (opener, first) = connect(&api, &pod, &argv, &routes).await?;
    let (current, openers) = watch::channel(Some(opener));
    let task = tokio::spawn(async move {
        let mut serving = first;
        let mut restarts = 0;
        loop {
            let since = std::time::Instant::now();
            let ended = serving.await;
            // A connection that served a good while was healthy: a warm pod that lives for hours
            // may see several unrelated drops, each its own.
            if since.elapsed() > HEALTHY {
                restarts = 0;
            }
            // Streams opened now would go to a connection that is gone.
            current.send_replace(None);
            if restarts == MAX_RESTARTS {
                tracing::warn!(pod = %pod, "the relay to the pod ended ({ended}); given up after {MAX_RESTARTS} restarts");
                return;
            }
            restarts += 1;
            tracing::warn!(pod = %pod, "the relay to the pod ended ({ended}); restarting it");
            // The old side in the pod lets go of its port when it sees its stdin close.
            tokio::time::sleep(Duration::from_millis(250 * u64::from(restarts))).await;
            match connect(&api, &pod, &argv, &routes).await {
                Ok((opener, next)) => {
                    current.send_replace(Some(opener));
                    serving = next;
                }
                Err(e) => {
                    tracing::warn!(pod = %pod, "the relay could not be restarted: {e}");
                    serving = Box::pin(std::future::ready(e));
                }
            }
        }
    });
    Ok(Relay { task, openers })
}

type Serving = std::pin::Pin<Box<dyn Future<Output = String> + Send>>;

/// One exec of the pod side, ready: its opener, and the future that serves it and says how it
/// ended.
async fn connect(
    api: &Api<Pod>,
    pod: &str,
    argv: &[String],
    routes: &[Route],
) -> Result<(Opener, Serving), String> {
    let mut attached = api
        .exec(pod, argv.to_vec(), &params(true, true, true))
        .await
        .map_err(|e| format!("starting the relay in the pod {pod}: {e}"))?;
    let (Some(stdout), Some(stdin), Some(mut stderr)) =
        (attached.stdout(), attached.stdin(), attached.stderr())
    else {
        return Err("the relay's exec has no stdin, stdout or stderr".into());
    };
    let status = attached.take_status();
    let started = tokio::time::timeout(
        READY_TIMEOUT,
        HostMux::start(BufReader::new(stdout), stdin, routes.to_vec()),
    )
    .await;
    let (opener, serve) = match started {
        Ok(Ok(started)) => started,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("it did not listen within {}s", READY_TIMEOUT.as_secs()),
            };
            let mut said = String::new();
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                (&mut stderr).take(2048).read_to_string(&mut said),
            )
            .await;
            let status = match status {
                Some(s) => tokio::time::timeout(Duration::from_secs(2), s)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            attached.abort();
            return Err(format!(
                "the relay in the pod {pod} did not start: {why}; {}{}",
                describe(status.as_ref()),
                if said.trim().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", said.trim())
                }
            ));
        }
    };
    Ok((
        opener,
        Box::pin(async move {
            // The exec handle lives as long as the connection it carries.
            let _attached = attached;
            let drain_stderr = async {
                let mut said = String::new();
                let _ = (&mut stderr).take(4096).read_to_string(&mut said).await;
                said
            };
            let (served, said) = tokio::join!(serve, drain_stderr);
            let code = match status {
                Some(s) => exit_code(s.await.as_ref()),
                None => None,
            };
            format!(
                "{}, exit {code:?}{}",
                match served {
                    Ok(()) => "closed".to_owned(),
                    Err(e) => e.to_string(),
                },
                if said.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {}", said.trim())
                }
            )
        }),
    ))
}

/// Whether anything outside the pod answers it (see `warren-sandbox-init netcheck`). `Ok(())`
/// when closed; `Err(what answered)` when open; a check that could not run is an error too.
pub(crate) async fn check_network(api: &Api<Pod>, pod: &str) -> Result<(), NetworkCheck> {
    let mut attached = api
        .exec(
            pod,
            vec![init(), "netcheck".to_owned()],
            &params(false, true, true),
        )
        .await
        .map_err(|e| NetworkCheck::Failed(format!("running the network check: {e}")))?;
    let mut out = String::new();
    if let Some(mut stdout) = attached.stdout() {
        let _ = stdout.read_to_string(&mut out).await;
    }
    let status = match attached.take_status() {
        Some(s) => s.await,
        None => None,
    };
    match exit_code(status.as_ref()) {
        Some(0) => Ok(()),
        Some(3) => Err(NetworkCheck::Open(
            out.trim().trim_start_matches("open: ").to_owned(),
        )),
        _ => Err(NetworkCheck::Failed(format!(
            "the network check did not run: {}",
            describe(status.as_ref())
        ))),
    }
}

pub(crate) enum NetworkCheck {
    Open(String),
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(egress: Option<&str>) -> GatewayAttachment {
        GatewayAttachment::Tcp {
            address: "127.0.0.1:41000".into(),
            token: "tok-0123456789abcdef".into(),
            egress: egress.map(str::to_owned),
        }
    }

    fn shape(channels: Option<(Vec<Listen>, Vec<Route>)>) -> (Vec<String>, Vec<String>) {
        let (listen, routes) = channels.unwrap_or_default();
        (
            listen.iter().map(|(c, a)| format!("{c}={a}")).collect(),
            routes
                .iter()
                .map(|r| format!("{}->{}", r.channel, r.address))
                .collect(),
        )
    }

    #[test]
    fn without_a_proxy_the_pod_listens_for_the_gateway_only() {
        let (listen, routes) = shape(channels(&tcp(None)));
        assert_eq!(listen, ["1=127.0.0.1:41000"]);
        assert_eq!(routes, ["1->127.0.0.1:41000"]);
    }

    #[test]
    fn with_a_proxy_the_egress_port_is_carried_to_its_address() {
        let (listen, routes) = shape(channels(&tcp(Some("127.0.0.1:42000"))));
        assert_eq!(listen, ["1=127.0.0.1:41000", "2=127.0.0.1:4001"]);
        assert_eq!(routes, ["1->127.0.0.1:41000", "2->127.0.0.1:42000"]);
    }

    #[test]
    fn a_socket_attachment_has_no_channels_in_a_pod() {
        let socket = GatewayAttachment::UnixSocket {
            host_path: "/run/x/gateway.sock".into(),
        };
        assert!(channels(&socket).is_none());
    }
}
