//! The container definition for a sandbox: every isolation flag in one pure function, so the
//! policy can be read (and unit-tested) without an engine.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use warren_provider::{HostDirs, SANDBOX_HOME, SANDBOX_RUN_DIR, SANDBOX_WORKSPACE, SandboxSpec};

use crate::DockerSettings;
use crate::labels;
use crate::ownership::RunAs;

/// The host's Docker socket, bound only when the settings ask for it.
pub(crate) const HOST_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// A named volume mounted over a workspace directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeMount {
    pub name: String,
    pub rel: String,
}

impl VolumeMount {
    pub fn target(&self) -> String {
        format!("{SANDBOX_WORKSPACE}/{}", self.rel)
    }
}

fn bind(source: &std::path::Path, target: &str, read_only: bool) -> Mount {
    Mount {
        source: Some(source.to_string_lossy().into_owned()),
        target: Some(target.to_owned()),
        typ: Some(MountType::BIND),
        read_only: Some(read_only),
        ..Default::default()
    }
}

pub(crate) fn sandbox_labels(spec: &SandboxSpec, owner: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::SANDBOX.to_owned(), spec.id.as_str().to_owned()),
        (labels::OWNER.to_owned(), owner.to_owned()),
        (labels::NAME.to_owned(), spec.name.as_str().to_owned()),
    ])
}

/// What a container binds from the host, checked by the provider before the request is built.
pub(crate) struct HostBinds<'a> {
    pub dirs: &'a HostDirs,
    pub run_dir: &'a std::path::Path,
    /// (host path, sandbox path) of each tool taken from the host; tools the image carries need
    /// no bind.
    pub tools: Vec<(std::path::PathBuf, String)>,
}

/// The create request. Mounts are given as `Mounts` (not `Binds`) so host paths with ':' or ','
/// are not misparsed; the engine orders them by depth, so the binds under /run land on the /run
/// tmpfs after it is mounted, and the read-only root is applied after all of them.
pub(crate) fn container_body(
    spec: &SandboxSpec,
    binds: &HostBinds<'_>,
    settings: &DockerSettings,
    run_as: RunAs,
    volumes: &[VolumeMount],
) -> ContainerCreateBody {
    let mut mounts = vec![
        bind(&binds.dirs.workspace, SANDBOX_WORKSPACE, false),
        bind(&binds.dirs.home, SANDBOX_HOME, false),
        bind(binds.run_dir, SANDBOX_RUN_DIR, false),
    ];
    // The image has its own copies under /opt/warren/bin, but a host-path spec names the host's
    // tools (the ones warren was built with): bind each where it asks, read-only.
    for (host, target) in &binds.tools {
        mounts.push(bind(host, target, true));
    }
    for volume in volumes {
        mounts.push(Mount {
            source: Some(volume.name.clone()),
            target: Some(volume.target()),
            typ: Some(MountType::VOLUME),
            read_only: Some(false),
            ..Default::default()
        });
    }
    if settings.mount_host_docker_socket {
        mounts.push(bind(
            std::path::Path::new(HOST_DOCKER_SOCKET),
            HOST_DOCKER_SOCKET,
            false,
        ));
    }
    // /tmp allows exec (tools unpack and run helpers there, as on the local provider); /run only
    // holds mount points and the gateway socket's directory.
    let tmpfs = HashMap::from([
        (
            "/tmp".to_owned(),
            "rw,exec,nosuid,nodev,mode=1777".to_owned(),
        ),
        ("/run".to_owned(), "rw,nosuid,nodev,mode=755".to_owned()),
    ]);
    let host_config = HostConfig {
        mounts: Some(mounts),
        tmpfs: Some(tmpfs),
        // Only loopback: the gateway is reached through the socket in /run/warren.
        network_mode: Some("none".into()),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(true),
        // A real init as PID 1 reaps the agent's orphans and forwards signals.
        init: Some(true),
        memory: settings.memory_bytes,
        // Swap equal to memory: the limit is a limit, not a hint to start swapping.
        memory_swap: settings.memory_bytes,
        nano_cpus: settings.nano_cpus,
        pids_limit: settings.pids_limit,
        userns_mode: settings.userns_mode.clone(),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(settings.image.clone()),
        // The container lives exactly as long as warren's attached stdin: `cat` ends on EOF, which
        // comes when the provider drops the attachment or the warren process holding it dies.
        // Then PID 1 exits and the engine kills everything in the container: the docker
        // equivalent of bubblewrap's --die-with-parent.
        cmd: Some(vec!["cat".into()]),
        open_stdin: Some(true),
        stdin_once: Some(true),
        attach_stdin: Some(true),
        // The image's entrypoint (if an overlay set one) must not run in place of the tether.
        entrypoint: Some(vec![]),
        user: Some(run_as.user()),
        working_dir: Some(SANDBOX_WORKSPACE.into()),
        hostname: Some("warren-sandbox".into()),
        labels: Some(sandbox_labels(spec, &settings.owner)),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use warren_domain::{SandboxId, SandboxName};
    use warren_provider::{GatewayAttachment, Tool, ToolSource};

    fn spec() -> anyhow::Result<SandboxSpec> {
        Ok(SandboxSpec {
            id: SandboxId::from_stored("0190abc"),
            name: SandboxName::parse("fix-bug")?,
            host_dirs: Some(HostDirs {
                workspace: "/data/ws".into(),
                home: "/data/home".into(),
            }),
            gateway: GatewayAttachment::UnixSocket {
                host_path: "/data/run/gateway-1.sock".into(),
            },
            tools: vec![Tool {
                sandbox_path: PathBuf::from("/run/warren-tools/opencode"),
                source: ToolSource::Host("/opt/oc".into()),
            }],
        })
    }

    fn body(
        spec: &SandboxSpec,
        settings: &DockerSettings,
        volumes: &[VolumeMount],
    ) -> ContainerCreateBody {
        let dirs = spec.host_dirs.clone().unwrap_or_else(|| HostDirs {
            workspace: "/x".into(),
            home: "/x".into(),
        });
        let binds = HostBinds {
            dirs: &dirs,
            run_dir: std::path::Path::new("/data/run"),
            tools: vec![("/opt/oc".into(), "/run/warren-tools/opencode".into())],
        };
        container_body(spec, &binds, settings, run_as(), volumes)
    }

    fn run_as() -> RunAs {
        RunAs {
            uid: 1000,
            gid: 1000,
            chown: true,
        }
    }

    #[test]
    fn isolation_flags_are_all_set() -> anyhow::Result<()> {
        let settings = DockerSettings {
            owner: "abcd1234".into(),
            memory_bytes: Some(1 << 30),
            pids_limit: Some(512),
            ..Default::default()
        };
        let body = body(&spec()?, &settings, &[]);
        let host = body.host_config.clone().unwrap_or_default();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(
            host.security_opt,
            Some(vec!["no-new-privileges".to_owned()])
        );
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.privileged, None);
        assert_eq!((host.memory, host.pids_limit), (Some(1 << 30), Some(512)));
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(body.cmd, Some(vec!["cat".to_owned()]));
        let labels = body.labels.unwrap_or_default();
        assert_eq!(
            labels.get("warren.sandbox").map(String::as_str),
            Some("0190abc")
        );
        assert_eq!(
            labels.get("warren.owner").map(String::as_str),
            Some("abcd1234")
        );
        assert_eq!(
            labels.get("warren.name").map(String::as_str),
            Some("fix-bug")
        );
        let mounts = host.mounts.unwrap_or_default();
        let find = |t: &str| {
            mounts
                .iter()
                .find(|m| m.target.as_deref() == Some(t))
                .cloned()
        };
        assert_eq!(find("/workspace").and_then(|m| m.read_only), Some(false));
        assert_eq!(
            find("/run/warren").and_then(|m| m.source),
            Some("/data/run".into())
        );
        assert_eq!(
            find("/run/warren-tools/opencode").and_then(|m| m.read_only),
            Some(true)
        );
        assert!(find(HOST_DOCKER_SOCKET).is_none());
        Ok(())
    }

    #[test]
    fn docker_socket_and_volumes_only_when_asked() -> anyhow::Result<()> {
        let settings = DockerSettings {
            mount_host_docker_socket: true,
            ..Default::default()
        };
        let volume = VolumeMount {
            name: "warren-vol-a-b".into(),
            rel: "node_modules".into(),
        };
        let body = body(&spec()?, &settings, &[volume]);
        let mounts = body.host_config.and_then(|h| h.mounts).unwrap_or_default();
        assert!(
            mounts
                .iter()
                .any(|m| m.target.as_deref() == Some(HOST_DOCKER_SOCKET))
        );
        let vol = mounts.iter().find(|m| m.typ == Some(MountType::VOLUME));
        assert_eq!(
            vol.and_then(|m| m.target.clone()).as_deref(),
            Some("/workspace/node_modules")
        );
        Ok(())
    }
}
