//! Performance volumes: named volumes mounted over workspace directories such as `node_modules`
//! or `target`, keyed by repository and directory, so they survive the sandbox and the next
//! sandbox of the same repository starts with a warm dependency tree or build cache. The agent
//! can write anything into them, so they are caches, never inputs warren trusts: export reads the
//! host workspace, where these directories are empty mount points.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptions, RemoveVolumeOptionsBuilder, WaitContainerOptions,
};
use futures_util::StreamExt;
use warren_domain::SandboxId;

use crate::container::VolumeMount;
use crate::exec::is_status;
use crate::names::{check_volume_rel, container_name, volume_name_for_key};
use crate::ownership::RunAs;
use crate::{DockerError, DockerSettings, labels};

/// Creates the settings' volumes that do not exist yet and returns what to mount.
pub(crate) async fn ensure(
    docker: &Docker,
    settings: &DockerSettings,
    sandbox: &SandboxId,
    run_as: RunAs,
) -> Result<Vec<VolumeMount>, String> {
    if settings.volumes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(key) = settings.volumes_repo_key.as_deref() else {
        return Err(
            "volumes are configured but no repository key was given (volumes_repo_key)".into(),
        );
    };
    let mut out = Vec::new();
    for rel in &settings.volumes {
        check_volume_rel(rel)?;
        let name = volume_name_for_key(key, rel);
        match docker.inspect_volume(&name).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {
                let request = VolumeCreateRequest {
                    name: Some(name.clone()),
                    labels: Some(HashMap::from([
                        (labels::VOLUME.to_owned(), "1".to_owned()),
                        (labels::REPO.to_owned(), key.to_owned()),
                        (labels::OWNER.to_owned(), settings.owner.clone()),
                    ])),
                    ..Default::default()
                };
                docker
                    .create_volume(request)
                    .await
                    .map_err(|e| format!("creating the volume {name}: {e}"))?;
                if let Err(e) = init_ownership(docker, settings, sandbox, &name, run_as).await {
                    // Without this the next run would find the volume and skip the handover.
                    let _ = docker
                        .remove_volume(&name, None::<RemoveVolumeOptions>)
                        .await;
                    return Err(e);
                }
            }
            Err(e) => return Err(format!("inspecting the volume {name}: {e}")),
        }
        out.push(VolumeMount {
            name,
            rel: rel.clone(),
        });
    }
    Ok(out)
}

/// Hands a just-created volume's root (the engine makes it root-owned) to the container's user,
/// with a one-off helper container that holds only CAP_CHOWN and has no network. Not an exec in
/// the sandbox: that container has no capabilities at all, and runc refuses a privileged exec
/// in it ("unable to apply caps"); the sandbox's own bounding set stays empty this way.
async fn init_ownership(
    docker: &Docker,
    settings: &DockerSettings,
    sandbox: &SandboxId,
    name: &str,
    run_as: RunAs,
) -> Result<(), String> {
    let body = ContainerCreateBody {
        image: Some(settings.image.clone()),
        entrypoint: Some(vec![]),
        cmd: Some(vec!["chown".into(), run_as.user(), "/volume".into()]),
        user: Some("0:0".into()),
        // Labelled as part of the sandbox so gc sweeps it if warren dies right here.
        labels: Some(HashMap::from([
            (labels::SANDBOX.to_owned(), sandbox.as_str().to_owned()),
            (labels::OWNER.to_owned(), settings.owner.clone()),
        ])),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                source: Some(name.to_owned()),
                target: Some("/volume".into()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            }]),
            network_mode: Some("none".into()),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["CHOWN".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            userns_mode: settings.userns_mode.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let helper = container_name(&settings.owner, "volume-init");
    let options = CreateContainerOptionsBuilder::new().name(&helper).build();
    let id = docker
        .create_container(Some(options), body)
        .await
        .map_err(|e| format!("creating {helper}: {e}"))?
        .id;
    let result = async {
        docker.start_container(&id, None).await?;
        let mut wait = docker.wait_container(&id, None::<WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(_)) | None => Ok(()),
            Some(Err(e)) => Err(e),
        }
    }
    .await;
    let removal = RemoveContainerOptionsBuilder::new().force(true).build();
    let _ = docker.remove_container(&id, Some(removal)).await;
    result.map_err(|e| format!("handing the volume {name} to {}: {e}", run_as.user()))
}

/// Removes every warren volume that no container uses; returns their names. A volume still in
/// use is kept (and logged): its sandbox is alive.
pub(crate) async fn remove_all(docker: &Docker) -> Result<Vec<String>, DockerError> {
    let filters = HashMap::from([("label", vec![format!("{}=1", labels::VOLUME)])]);
    let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
    let list = docker
        .list_volumes(Some(options))
        .await
        .map_err(|source| DockerError::Api {
            action: "listing volumes".into(),
            source,
        })?;
    let mut removed = Vec::new();
    for volume in list.volumes.unwrap_or_default() {
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        match docker.remove_volume(&volume.name, Some(options)).await {
            Ok(()) => removed.push(volume.name),
            Err(e) if is_status(&e, 404) => {}
            Err(e) if is_status(&e, 409) => {
                tracing::info!(
                    "keeping the volume {}: a container still uses it",
                    volume.name
                );
            }
            Err(source) => {
                return Err(DockerError::Api {
                    action: format!("removing the volume {}", volume.name),
                    source,
                });
            }
        }
    }
    Ok(removed)
}
