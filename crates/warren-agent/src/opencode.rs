//! OpenCode's configuration and command line inside a sandbox. The config points OpenCode at the
//! model gateway relay on loopback with a placeholder key, allows every tool (the sandbox is the
//! boundary), and turns off everything that would reach the network or the user's state:
//! MCP servers, sharing, autoupdate, model-list fetches and snapshots.

use serde_json::json;
use warren_provider::{
    ExecSpec, SANDBOX_EGRESS_PORT, SANDBOX_HOME, SANDBOX_RUN_DIR, SANDBOX_WORKSPACE,
};

/// The loopback port inside the sandbox where the init process relays to the gateway socket.
pub const GATEWAY_PORT: u16 = 4000;
/// The loopback port inside the sandbox where the egress proxy is reached, when the sandbox's
/// egress is an allow-list: the init relays it to the proxy's socket, or the provider carries it
/// to the proxy's address ([`EgressRoute`]).
pub const EGRESS_PORT: u16 = SANDBOX_EGRESS_PORT;
/// What OpenCode sees as its API key. The gateway replaces it with the real credential.
pub const PLACEHOLDER_API_KEY: &str = "warren-gateway-placeholder";
/// Where a warm OpenCode server listens inside its sandbox.
pub const SERVER_PORT: u16 = 4096;
/// What a warm server prints on stdout once it accepts connections.
pub const SERVER_READY_LINE: &str = "opencode server listening on";

/// The run directory's socket names for the process `pid` that owns them. Named per owner, so a
/// monitor that is still shutting down never removes the socket of the one that replaces it.
pub fn gateway_socket_name(pid: u32) -> String {
    format!("gateway-{pid}.sock")
}

pub fn egress_socket_name(pid: u32) -> String {
    format!("egress-{pid}.sock")
}

pub fn server_socket_name(pid: u32) -> String {
    format!("opencode-{pid}.sock")
}

/// Everything needed to start OpenCode for one prompt.
#[derive(Debug, Clone)]
pub struct OpencodeLaunch {
    /// The provider id OpenCode will know the endpoint by (warren's model provider name).
    pub provider: String,
    pub model: String,
    pub small_model: Option<String>,
    /// Path of warren's init inside the sandbox.
    pub init_path: String,
    /// Path of the opencode binary inside the sandbox.
    pub opencode_path: String,
    pub prompt: String,
    /// Continue this OpenCode session instead of starting a new one.
    pub session_id: Option<String>,
    /// How OpenCode reaches the model gateway.
    pub gateway: GatewayRoute,
    /// How the sandbox reaches the egress proxy, when its egress is an allow-list: the
    /// environment points every ordinary tool at [`EGRESS_PORT`] on loopback either way.
    pub egress: Option<EgressRoute>,
    /// What the agent must ask for (approval rules); empty: nothing asks.
    pub ask: AskRules,
}

/// How [`EGRESS_PORT`] inside the sandbox reaches the egress proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRoute {
    /// The proxy's socket file name in the run directory: warren's init relays the port to it.
    Socket(String),
    /// The provider listens on the port and carries its connections to the proxy (a pod, over
    /// warren's relay): nothing for the init to do.
    Provider,
}

/// OpenCode permission patterns that make the agent ask instead of acting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AskRules {
    /// Bash commands (`git push*`).
    pub bash: Vec<String>,
    /// Edited paths, relative to the workspace.
    pub edit: Vec<String>,
}

impl AskRules {
    pub fn is_empty(&self) -> bool {
        self.bash.is_empty() && self.edit.is_empty()
    }
}

/// Stands for an ordered rule object in the serialized config (see [`ordered_rules`]).
const ORDERED: &str = "__warren_ordered_rules__";

/// OpenCode reads a permission object in order and the last matching rule wins, so "allow
/// everything" must come first and the patterns that ask after it. serde_json's map sorts its
/// keys (a pattern such as `!x` would sort before `*`), so the object is written here by hand.
fn ordered_rules(ask: &[String]) -> String {
    let mut entries = vec![r#""*":"allow""#.to_owned()];
    for pattern in ask {
        entries.push(format!(
            r#"{}:"ask""#,
            serde_json::Value::from(pattern.as_str())
        ));
    }
    format!("{{{}}}", entries.join(","))
}

/// How OpenCode inside the sandbox reaches the model gateway.
#[derive(Clone, PartialEq, Eq)]
pub enum GatewayRoute {
    /// The gateway socket's file name inside the run directory. warren's init relays loopback
    /// port [`GATEWAY_PORT`] to it, and OpenCode sends a placeholder key the gateway replaces.
    Socket(String),
    /// A gateway the sandbox dials over TCP (`host:port`), for sandboxes that share no file
    /// system with warren. OpenCode talks to it directly, with the sandbox's token as its API
    /// key (`Authorization: Bearer <token>`): the gateway checks it, strips it and injects the
    /// real credential. No relay: the init only runs the agent.
    Tcp { address: String, token: String },
}

// By hand: the token opens the sandbox's gateway, so it stays out of logs.
impl std::fmt::Debug for GatewayRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Socket(name) => f.debug_tuple("Socket").field(name).finish(),
            Self::Tcp { address, .. } => f
                .debug_struct("Tcp")
                .field("address", address)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

impl OpencodeLaunch {
    pub fn config_json(&self) -> String {
        let (base_url, api_key) = match &self.gateway {
            GatewayRoute::Socket(_) => (
                format!("http://127.0.0.1:{GATEWAY_PORT}/v1"),
                PLACEHOLDER_API_KEY,
            ),
            GatewayRoute::Tcp { address, token } => {
                (format!("http://{address}/v1"), token.as_str())
            }
        };
        let mut models = serde_json::Map::new();
        models.insert(self.model.clone(), json!({ "name": self.model }));
        if let Some(small) = &self.small_model {
            models.insert(small.clone(), json!({ "name": small }));
        }
        let small = self.small_model.as_deref().unwrap_or(&self.model);
        // Without approval rules a kind is plainly allowed (as OpenCode has always been run
        // here); with them, a placeholder the ordered object replaces after serialization.
        let rule = |ask: &[String], kind: &str| {
            if ask.is_empty() {
                json!("allow")
            } else {
                json!(format!("{ORDERED}{kind}"))
            }
        };
        let config = json!({
            "$schema": "https://opencode.ai/config.json",
            "provider": {
                self.provider.clone(): {
                    "npm": "@ai-sdk/openai-compatible",
                    "name": format!("{} (via warren gateway)", self.provider),
                    "options": { "baseURL": base_url, "apiKey": api_key },
                    "models": models,
                }
            },
            "model": format!("{}/{}", self.provider, self.model),
            "small_model": format!("{}/{}", self.provider, small),
            // The sandbox is the boundary: OpenCode's own prompts would auto-reject and stall
            // the run, and an outside path is simply absent in the sandbox.
            "permission": {
                "edit": rule(&self.ask.edit, "edit"),
                "bash": rule(&self.ask.bash, "bash"),
                "external_directory": "allow",
                "webfetch": "deny",
            },
            "mcp": {},
            "autoupdate": false,
            "share": "disabled",
            "snapshot": false,
        })
        .to_string();
        config
            .replace(
                &format!("\"{ORDERED}edit\""),
                &ordered_rules(&self.ask.edit),
            )
            .replace(
                &format!("\"{ORDERED}bash\""),
                &ordered_rules(&self.ask.bash),
            )
    }

    /// A one-shot `opencode run`: boots OpenCode, runs the prompt, exits.
    pub fn exec_spec(&self) -> ExecSpec {
        let mut argv = self.init_argv(&[], self.gateway_relay());
        argv.extend([self.opencode_path.clone(), "run".into()]);
        self.push_run_args(&mut argv);
        self.spec(argv)
    }

    /// A warm `opencode serve` that stays up between prompts, reachable through `server_socket`
    /// (a file name in the run directory).
    pub fn server_exec_spec(&self, server_socket: &str) -> ExecSpec {
        let expose = [
            "--expose".to_owned(),
            format!("{SANDBOX_RUN_DIR}/{server_socket}={SERVER_PORT}"),
        ];
        self.serve(&[expose])
    }

    /// A warm `opencode serve` on the sandbox's loopback [`SERVER_PORT`] only, for a sandbox
    /// that cannot write the host's run directory: its provider serves the port on the host
    /// (`Sandbox::expose`) instead of the init.
    pub fn loopback_server_exec_spec(&self) -> ExecSpec {
        self.serve(&[])
    }

    fn serve(&self, options: &[[String; 2]]) -> ExecSpec {
        let mut argv = self.init_argv(options, self.gateway_relay());
        argv.extend([
            self.opencode_path.clone(),
            "serve".into(),
            "--hostname".into(),
            "127.0.0.1".into(),
            "--port".into(),
            SERVER_PORT.to_string(),
        ]);
        self.spec(argv)
    }

    fn gateway_relay(&self) -> Option<[String; 2]> {
        match &self.gateway {
            GatewayRoute::Socket(socket) => Some([
                "--relay".to_owned(),
                format!("{GATEWAY_PORT}={SANDBOX_RUN_DIR}/{socket}"),
            ]),
            GatewayRoute::Tcp { .. } => None,
        }
    }

    fn egress_relay(&self) -> Option<[String; 2]> {
        match &self.egress {
            Some(EgressRoute::Socket(socket)) => Some([
                "--relay".to_owned(),
                format!("{EGRESS_PORT}={SANDBOX_RUN_DIR}/{socket}"),
            ]),
            Some(EgressRoute::Provider) | None => None,
        }
    }

    fn init_argv(&self, options: &[[String; 2]], relay: Option<[String; 2]>) -> Vec<String> {
        let mut argv = vec![self.init_path.clone()];
        argv.extend(relay.into_iter().flatten());
        argv.extend(self.egress_relay().into_iter().flatten());
        argv.extend(options.iter().flatten().cloned());
        argv.push("--".into());
        argv
    }

    fn push_run_args(&self, argv: &mut Vec<String>) {
        argv.extend(["--format".into(), "json".into()]);
        if let Some(session) = &self.session_id {
            argv.extend(["--session".into(), session.clone()]);
        }
        // `--` keeps a prompt that starts with '-' from being read as a flag.
        argv.extend(["--".into(), self.prompt.clone()]);
    }

    fn spec(&self, argv: Vec<String>) -> ExecSpec {
        let env = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("HOME".into(), SANDBOX_HOME.into()),
            // OpenCode takes its project directory from $PWD, not from the process cwd.
            ("PWD".into(), SANDBOX_WORKSPACE.into()),
            ("TERM".into(), "dumb".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("USER".into(), "agent".into()),
            ("OPENCODE_DISABLE_MODELS_FETCH".into(), "1".into()),
            ("OPENCODE_DISABLE_AUTOUPDATE".into(), "1".into()),
            ("OPENCODE_CONFIG_CONTENT".into(), self.config_json()),
        ];
        let mut env = env;
        if self.egress.is_some() {
            env.extend(proxy_env(self.gateway_host()));
        }
        ExecSpec {
            argv,
            env,
            cwd: SANDBOX_WORKSPACE.into(),
        }
    }
}

impl OpencodeLaunch {
    /// The host OpenCode dials for the model when it is not on loopback (a TCP gateway
    /// advertised by name), which must stay direct too.
    fn gateway_host(&self) -> Option<&str> {
        match &self.gateway {
            GatewayRoute::Tcp { address, .. } => address
                .rsplit_once(':')
                .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
                .filter(|host| !matches!(*host, "127.0.0.1" | "localhost" | "::1")),
            GatewayRoute::Socket(_) => None,
        }
    }
}

/// What makes ordinary tools use the egress proxy: the proxy variables curl, Python, Node and most
/// others read (both spellings), git's and npm's and pip's own settings. Loopback stays direct:
/// OpenCode's model calls go to the gateway relay there, never through the proxy; so does the
/// gateway's own host when it is reached by name.
fn proxy_env(gateway_host: Option<&str>) -> Vec<(String, String)> {
    let proxy = format!("http://127.0.0.1:{EGRESS_PORT}");
    let mut no_proxy = "127.0.0.1,localhost,::1".to_owned();
    if let Some(host) = gateway_host {
        no_proxy.push(',');
        no_proxy.push_str(host);
    }
    let mut env: Vec<(String, String)> = [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "npm_config_proxy",
        "npm_config_https_proxy",
        "PIP_PROXY",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), proxy.clone()))
    .collect();
    env.push(("NO_PROXY".into(), no_proxy.clone()));
    env.push(("no_proxy".into(), no_proxy));
    // git reads http_proxy too, but its own setting also covers a repository config that
    // names another proxy.
    env.extend([
        ("GIT_CONFIG_COUNT".into(), "1".into()),
        ("GIT_CONFIG_KEY_0".into(), "http.proxy".into()),
        ("GIT_CONFIG_VALUE_0".into(), proxy),
    ]);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> OpencodeLaunch {
        OpencodeLaunch {
            provider: "scripted".into(),
            model: "m1".into(),
            small_model: None,
            init_path: "/run/warren-bin/init".into(),
            opencode_path: "/run/warren-bin/opencode".into(),
            prompt: "-rf everything".into(),
            session_id: None,
            gateway: GatewayRoute::Socket(gateway_socket_name(7)),
            ask: AskRules::default(),
            egress: None,
        }
    }

    #[test]
    fn approval_rules_ask_after_a_catch_all_allow_in_order() {
        let mut launch = launch();
        launch.ask.bash = vec!["git push*".into(), "!weird \"quoted\"".into()];
        let text = launch.config_json();
        let cfg: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(cfg["permission"]["bash"]["git push*"], "ask");
        assert_eq!(cfg["permission"]["bash"]["!weird \"quoted\""], "ask");
        assert_eq!(cfg["permission"]["edit"], "allow");
        // Last match wins in OpenCode: the catch-all must come before the patterns that ask.
        let star = text.find(r#""*":"allow""#).unwrap_or(usize::MAX);
        let weird = text.find("!weird").unwrap_or(0);
        assert!(star < weird, "{text}");
    }

    #[test]
    fn an_allow_list_relays_the_egress_port_and_points_tools_at_it() {
        let plain = launch().exec_spec();
        assert!(!plain.env.iter().any(|(k, _)| k.ends_with("PROXY")));
        assert!(!plain.argv.iter().any(|a| a.contains("egress")));

        let mut launch = launch();
        launch.egress = Some(EgressRoute::Socket(egress_socket_name(7)));
        let spec = launch.exec_spec();
        assert_eq!(
            spec.argv[..6],
            [
                "/run/warren-bin/init",
                "--relay",
                "4000=/run/warren/gateway-7.sock",
                "--relay",
                "4001=/run/warren/egress-7.sock",
                "--"
            ]
        );
        let env: std::collections::BTreeMap<_, _> = spec.env.into_iter().collect();
        for key in [
            "HTTP_PROXY",
            "https_proxy",
            "npm_config_https_proxy",
            "PIP_PROXY",
        ] {
            assert_eq!(env[key], "http://127.0.0.1:4001", "{key}");
        }
        assert_eq!(env["GIT_CONFIG_KEY_0"], "http.proxy");
        assert!(env["NO_PROXY"].contains("127.0.0.1"));
    }

    #[test]
    fn over_tcp_opencode_dials_the_gateway_with_the_token_and_no_relay_runs() {
        let mut launch = launch();
        launch.gateway = GatewayRoute::Tcp {
            address: "10.0.0.5:41000".into(),
            token: "tok-0123456789abcdef".into(),
        };
        let cfg: serde_json::Value =
            serde_json::from_str(&launch.config_json()).unwrap_or_default();
        let options = &cfg["provider"]["scripted"]["options"];
        assert_eq!(options["baseURL"], "http://10.0.0.5:41000/v1");
        assert_eq!(options["apiKey"], "tok-0123456789abcdef");
        let argv = launch.exec_spec().argv;
        assert_eq!(
            argv[..3],
            ["/run/warren-bin/init", "--", "/run/warren-bin/opencode"]
        );
        assert!(!format!("{launch:?}").contains("tok-0123456789abcdef"));
    }

    #[test]
    fn over_tcp_the_provider_carries_the_egress_port_and_tools_still_point_at_it() {
        let mut launch = launch();
        launch.gateway = GatewayRoute::Tcp {
            address: "127.0.0.1:41000".into(),
            token: "tok-0123456789abcdef".into(),
        };
        launch.egress = Some(EgressRoute::Provider);
        let spec = launch.exec_spec();
        // No socket to relay to: the provider listens on the port (a pod's relay).
        assert_eq!(
            spec.argv[..3],
            ["/run/warren-bin/init", "--", "/run/warren-bin/opencode"]
        );
        assert!(!spec.argv.iter().any(|a| a == "--relay"), "{:?}", spec.argv);
        let env: std::collections::BTreeMap<_, _> = spec.env.into_iter().collect();
        for key in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "http_proxy",
            "https_proxy",
            "npm_config_proxy",
            "npm_config_https_proxy",
            "PIP_PROXY",
            "GIT_CONFIG_VALUE_0",
        ] {
            assert_eq!(env[key], "http://127.0.0.1:4001", "{key}");
        }
        // The model is dialled directly on loopback, never through the proxy.
        assert_eq!(env["NO_PROXY"], "127.0.0.1,localhost,::1");
        assert_eq!(env["no_proxy"], env["NO_PROXY"]);

        // A gateway reached by name stays direct as well.
        launch.gateway = GatewayRoute::Tcp {
            address: "warren.example:41000".into(),
            token: "tok-0123456789abcdef".into(),
        };
        let env: std::collections::BTreeMap<_, _> = launch.exec_spec().env.into_iter().collect();
        assert_eq!(env["NO_PROXY"], "127.0.0.1,localhost,::1,warren.example");
    }

    #[test]
    fn config_points_at_the_gateway_with_a_placeholder_and_turns_off_network_features() {
        let cfg: serde_json::Value =
            serde_json::from_str(&launch().config_json()).unwrap_or_default();
        let provider = &cfg["provider"]["scripted"];
        assert_eq!(provider["options"]["baseURL"], "http://127.0.0.1:4000/v1");
        assert_eq!(provider["options"]["apiKey"], PLACEHOLDER_API_KEY);
        assert_eq!(cfg["model"], "scripted/m1");
        assert_eq!(cfg["share"], "disabled");
        assert_eq!(cfg["autoupdate"], false);
        assert_eq!(cfg["mcp"], serde_json::json!({}));
        assert_eq!(cfg["permission"]["bash"], "allow");
    }

    #[test]
    fn a_warm_server_is_exposed_on_a_socket() {
        let launch = launch();
        let server = launch.server_exec_spec("opencode-7.sock").argv;
        assert_eq!(
            server,
            [
                "/run/warren-bin/init",
                "--relay",
                "4000=/run/warren/gateway-7.sock",
                "--expose",
                "/run/warren/opencode-7.sock=4096",
                "--",
                "/run/warren-bin/opencode",
                "serve",
                "--hostname",
                "127.0.0.1",
                "--port",
                "4096",
            ]
        );
    }

    #[test]
    fn a_loopback_server_exposes_nothing_itself() {
        let launch = launch();
        let server = launch.loopback_server_exec_spec().argv;
        assert!(!server.iter().any(|a| a == "--expose"), "{server:?}");
        let n = server.len();
        assert_eq!(
            server[n - 5..],
            ["serve", "--hostname", "127.0.0.1", "--port", "4096"]
        );
    }

    #[test]
    fn the_prompt_follows_a_double_dash_and_the_env_is_complete() {
        let spec = launch().exec_spec();
        let n = spec.argv.len();
        assert_eq!(spec.argv[n - 2], "--");
        assert_eq!(spec.argv[n - 1], "-rf everything");
        assert!(
            spec.env
                .iter()
                .any(|(k, v)| k == "PWD" && v == "/workspace")
        );
        assert!(
            !spec
                .env
                .iter()
                .any(|(k, _)| k.contains("API_KEY") || k.contains("TOKEN")),
            "no credential may be passed into the sandbox"
        );
    }
}
