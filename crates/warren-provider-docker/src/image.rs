//! The sandbox image, built through the Engine API from an in-memory context: no registry, no
//! docker CLI, no files written. It layers warren's pieces over the offline Debian base made by
//! `scripts/build-base-image.sh`: the `agent` user (uid 1000), OpenCode and warren's init under
//! /opt/warren/bin, and a pre-staged OpenCode config dir, so booting a sandbox copies nothing.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

use crate::DockerError;

/// The base image `scripts/build-base-image.sh` makes by default.
pub const DEFAULT_BASE_IMAGE: &str = "warren-base:bookworm";
/// The sandbox image the provider uses by default.
pub const DEFAULT_SANDBOX_IMAGE: &str = "warren-sandbox:latest";
/// Where the image keeps its copies of OpenCode and the init.
pub const IMAGE_BIN_DIR: &str = "/opt/warren/bin";
/// OpenCode's pre-staged config dir (`OPENCODE_CONFIG_DIR` in the image).
pub const IMAGE_OPENCODE_CONFIG_DIR: &str = "/opt/warren/opencode-config";

#[derive(Debug, Clone)]
pub struct ImageBuildOptions {
    /// The image to build `FROM` (must exist locally: nothing is pulled).
    pub base: String,
    /// The tag of the result.
    pub tag: String,
    /// The OpenCode binary (a symlink is resolved).
    pub opencode: PathBuf,
    /// warren's in-sandbox init (`warren-sandbox-init`).
    pub init: PathBuf,
    /// OpenCode plugins to bake in, copied to `<config dir>/plugin`.
    pub plugin_dir: Option<PathBuf>,
}

impl ImageBuildOptions {
    /// The default base and tag with the given binaries.
    pub fn new(opencode: PathBuf, init: PathBuf) -> Self {
        Self {
            base: DEFAULT_BASE_IMAGE.into(),
            tag: DEFAULT_SANDBOX_IMAGE.into(),
            opencode,
            init,
            plugin_dir: None,
        }
    }
}

/// The image's baseline OpenCode config. warren passes the real one per run through
/// `OPENCODE_CONFIG_CONTENT`; this one only keeps a hand-run OpenCode from phoning home.
pub fn opencode_config_json() -> String {
    let config = serde_json::json!({
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": false,
        "share": "disabled",
    });
    format!("{config:#}\n")
}

/// The Dockerfile of the sandbox image.
pub fn dockerfile(base: &str) -> String {
    format!(
        r#"FROM {base}
RUN useradd --uid 1000 --user-group --home-dir /home/agent --create-home --shell /bin/bash agent \
 && mkdir -p /workspace {IMAGE_BIN_DIR} \
 && chown 1000:1000 /workspace
COPY opencode warren-sandbox-init {IMAGE_BIN_DIR}/
COPY opencode-config/ {IMAGE_OPENCODE_CONFIG_DIR}/
ENV PATH={IMAGE_BIN_DIR}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    OPENCODE_DISABLE_MODELS_FETCH=1 \
    OPENCODE_CONFIG_DIR={IMAGE_OPENCODE_CONFIG_DIR}
LABEL warren.image=sandbox
USER 1000:1000
WORKDIR /workspace
CMD ["sleep", "infinity"]
"#
    )
}

/// Builds the sandbox image and returns its id (`sha256:...`).
pub async fn build_image(docker: &Docker, opts: &ImageBuildOptions) -> Result<String, DockerError> {
    let context = build_context(opts)?;
    // networkmode none: the build only copies files and runs useradd; nothing may be fetched.
    let options = BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&opts.tag)
        .rm(true)
        .forcerm(true)
        .networkmode("none")
        .build();
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    let mut id = None;
    let mut tail: VecDeque<String> = VecDeque::new();
    let fail = |message: String, tail: &VecDeque<String>| DockerError::Build {
        tag: opts.tag.clone(),
        message: if tail.is_empty() {
            message
        } else {
            format!("{message}\n{}", Vec::from(tail.clone()).join("\n"))
        },
    };
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => return Err(fail(e.to_string(), &tail)),
        };
        if let Some(detail) = info.error_detail {
            return Err(fail(detail.message.unwrap_or_default(), &tail));
        }
        if let Some(found) = info.aux.and_then(|aux| aux.id) {
            id = Some(found);
        }
        if let Some(line) = info
            .stream
            .as_deref()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
        {
            tracing::debug!(target: "warren::image", "{line}");
            if tail.len() == 20 {
                tail.pop_front();
            }
            tail.push_back(line.to_owned());
        }
    }
    match id {
        Some(id) => Ok(id),
        // Builders that do not report the id in an aux message (older engines, Podman).
        None => docker
            .inspect_image(&opts.tag)
            .await
            .map_err(|source| DockerError::Api {
                action: format!("inspecting the built image {}", opts.tag),
                source,
            })?
            .id
            .ok_or_else(|| fail("the engine reported no image id".into(), &tail)),
    }
}

/// The build context: a tar of the Dockerfile, the two binaries and the config dir. Every header
/// is normalised (root owner, mtime 0) so an unchanged input hits the engine's build cache.
fn build_context(opts: &ImageBuildOptions) -> Result<Vec<u8>, DockerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DockerError::Io { path, source }
    };
    let opencode = std::fs::canonicalize(&opts.opencode).map_err(io(&opts.opencode))?;
    let init = std::fs::canonicalize(&opts.init).map_err(io(&opts.init))?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    tar.follow_symlinks(false);
    let ctx = |source| DockerError::Io {
        path: PathBuf::from("<build context>"),
        source,
    };
    append_bytes(
        &mut tar,
        "Dockerfile",
        dockerfile(&opts.base).as_bytes(),
        0o644,
    )
    .map_err(ctx)?;
    for (name, path) in [("opencode", &opencode), ("warren-sandbox-init", &init)] {
        let file = std::fs::File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let mut header = header(len, 0o755, tar::EntryType::Regular);
        tar.append_data(&mut header, name, file).map_err(io(path))?;
    }
    let mut dir = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut dir, "opencode-config/", std::io::empty())
        .map_err(ctx)?;
    let config = opencode_config_json();
    append_bytes(
        &mut tar,
        "opencode-config/opencode.json",
        config.as_bytes(),
        0o644,
    )
    .map_err(ctx)?;
    if let Some(plugins) = &opts.plugin_dir {
        tar.append_dir_all("opencode-config/plugin", plugins)
            .map_err(io(plugins))?;
    }
    tar.into_inner().map_err(ctx)
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    header
}

fn append_bytes(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    data: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut header = header(data.len() as u64, mode, tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_disables_updates_and_sharing() -> anyhow::Result<()> {
        let config: serde_json::Value = serde_json::from_str(&opencode_config_json())?;
        assert_eq!(config["autoupdate"], false);
        assert_eq!(config["share"], "disabled");
        assert!(config["$schema"].is_string());
        Ok(())
    }

    #[test]
    fn dockerfile_has_user_binaries_env_and_label() {
        let file = dockerfile("warren-base:bookworm");
        assert!(file.starts_with("FROM warren-base:bookworm\n"));
        for needle in [
            "--uid 1000",
            "--home-dir /home/agent",
            "/opt/warren/bin/",
            "OPENCODE_DISABLE_MODELS_FETCH=1",
            "LABEL warren.image=sandbox",
        ] {
            assert!(file.contains(needle), "{needle}");
        }
    }

    #[test]
    fn context_holds_executables_and_config() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (oc, init, plugins) = (
            dir.path().join("oc"),
            dir.path().join("init"),
            dir.path().join("p"),
        );
        std::fs::write(&oc, "opencode")?;
        std::fs::write(&init, "init")?;
        std::fs::create_dir(&plugins)?;
        std::fs::write(plugins.join("x.ts"), "export {}")?;
        let mut opts = ImageBuildOptions::new(oc, init);
        opts.plugin_dir = Some(plugins);
        let bytes = build_context(&opts)?;
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries()? {
            let entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            seen.push((path, entry.header().mode()?));
        }
        for want in [
            ("Dockerfile", 0o644),
            ("opencode", 0o755),
            ("warren-sandbox-init", 0o755),
            ("opencode-config/opencode.json", 0o644),
            ("opencode-config/plugin/x.ts", 0o644),
        ] {
            assert!(
                seen.iter().any(|(p, m)| p == want.0 && *m == want.1),
                "{want:?} in {seen:?}"
            );
        }
        Ok(())
    }
}
