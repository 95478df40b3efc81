//! Where a launch's repository comes from and how the work goes back when the server shares
//! no disk with the user: `POST /v1/bundles` takes a git bundle (streamed to disk under its own
//! size cap, then imported with fsck on by the engine's `source` module), a launch names a
//! host path, a git URL or an uploaded bundle, and `GET /v1/sandboxes/{name}/bundle` hands the
//! exported branch back as a bundle for the client to fetch.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use warren_api::{BundleEnvelope, BundleView, RepositorySource};
use warren_domain::{ReasonCode, UserFacing};
use warren_engine::source::{self, SourceError, SourceLimits};
use warren_provider::Provider;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::handlers::repository;
use crate::state::App;

fn source_error(e: &SourceError) -> ApiError {
    ApiError(e.to_error_info())
}

/// The server's caps on a source (its own settings: no repository is known yet).
fn limits<P: Provider + 'static>(app: &App<P>) -> ApiResult<SourceLimits> {
    Ok(SourceLimits::from_config(&(app.config)(None)?))
}

/// The work tree a launch's repository names: a host path as is, a git URL cloned, an uploaded
/// bundle's import.
/// A repository named by its path on the server's host, which may not lie in the server's own
/// data directory: that holds every tenant's sandboxes and sources, and a path into it would
/// let one owner launch on another's work.
fn host_path<P: Provider + 'static>(app: &App<P>, raw: &str) -> ApiResult<PathBuf> {
    let path = repository(raw)?;
    refuse_data_dir(app, raw, &path)?;
    Ok(path)
}

/// Refuses a repository (a host path, or the path of a `file://` URL) inside the data directory.
fn refuse_data_dir<P: Provider + 'static>(
    app: &App<P>,
    raw: &str,
    path: &std::path::Path,
) -> ApiResult<()> {
    let data = app
        .data_dir
        .canonicalize()
        .unwrap_or_else(|_| app.data_dir.clone());
    let lexical = path.starts_with(&app.data_dir) || path.starts_with(&data);
    if lexical || path.canonicalize().is_ok_and(|p| p.starts_with(&data)) {
        return Err(source_error(&SourceError::Unsupported(format!(
            "repository {raw:?} lies in the server's data directory, which holds every owner's sandboxes"
        ))));
    }
    Ok(())
}

pub(crate) async fn resolve<P: Provider + 'static>(
    app: &Arc<App<P>>,
    raw: &RepositorySource,
) -> ApiResult<PathBuf> {
    let url = match raw {
        RepositorySource::Bundle { bundle } => {
            return source::source_dir(&app.data_dir, bundle)
                .filter(|dir| source::origin_url(dir).is_none())
                .ok_or_else(|| {
                    source_error(&SourceError::Unsupported(format!(
                        "no uploaded bundle has the id {bundle:?}"
                    )))
                });
        }
        RepositorySource::Git { git } => git.clone(),
        RepositorySource::Text(text) if source::is_git_url(text) => text.clone(),
        RepositorySource::Text(text) => return host_path(app, text),
    };
    source::check_url(&url).map_err(|e| source_error(&e))?;
    if let Some((scheme, rest)) = url.split_once("://")
        && scheme.eq_ignore_ascii_case("file")
    {
        // file://HOST/PATH: the path starts at the first slash after the (usually empty) host.
        if rest.contains('%') {
            return Err(source_error(&SourceError::Unsupported(format!(
                "repository URL {url:?} holds percent-escapes, which a file:// URL here may not"
            ))));
        }
        let path = rest.find('/').map_or("", |at| &rest[at..]);
        refuse_data_dir(app, &url, std::path::Path::new(path))?;
    }
    app.blocking(move |app| {
        let limits = limits(app)?;
        source::clone_url(&app.data_dir, &url, &limits).map_err(|e| source_error(&e))
    })
    .await
}

#[utoipa::path(post, path = "/v1/bundles", tag = "sources",
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "A git bundle holding `refs/warren/wip`: one commit (the uncommitted state) on top of the user's HEAD"),
    responses(
        (status = 201, description = "Imported: name it in a launch as `{\"bundle\": id}`", body = ref("#/components/schemas/BundleEnvelope")),
        (status = 413, description = "Larger than the server's sync.max_total_bytes", body = ref("#/components/schemas/ErrorEnvelope")),
        (status = 422, description = "Not a complete bundle, or objects refused by fsck (`..`, `.git` entries)", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn upload_bundle<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    Extension(_who): Extension<Principal>,
    body: Body,
) -> ApiResult<(StatusCode, axum::Json<BundleEnvelope>)> {
    let limits = app.blocking(|app| limits(app)).await?;
    let dir = source::uploads_dir(&app.data_dir);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        ApiError::new(
            ReasonCode::Internal,
            format!("cannot create {}: {e}", dir.display()),
        )
    })?;
    let file = dir.join(format!("{}.bundle", uuid_simple()));
    let received = receive(body, &file, limits.max_bytes).await;
    let bytes = match received {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = tokio::fs::remove_file(&file).await;
            return Err(e);
        }
    };
    let upload = file.clone();
    let imported = app
        .blocking(move |app| {
            source::import_bundle(&app.data_dir, &upload, &limits).map_err(|e| source_error(&e))
        })
        .await;
    let _ = tokio::fs::remove_file(&file).await;
    let imported = imported?;
    Ok((
        StatusCode::CREATED,
        axum::Json(BundleEnvelope {
            bundle: BundleView {
                id: imported.id,
                bytes,
                head: imported.head,
            },
        }),
    ))
}

/// Streams the body into `file`, refusing it once it passes `max` bytes.
async fn receive(body: Body, file: &std::path::Path, max: u64) -> ApiResult<u64> {
    let io = |e: std::io::Error| {
        ApiError::new(
            ReasonCode::Internal,
            format!("cannot store the upload: {e}"),
        )
    };
    let mut out = tokio::fs::File::create(file).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ReasonCode::InvalidArgument,
                format!("the upload broke off: {e}"),
            )
        })?;
        total += chunk.len() as u64;
        if total > max {
            return Err(source_error(&SourceError::TooLarge {
                what: "the bundle".into(),
                max,
            }));
        }
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    if total == 0 {
        return Err(source_error(&SourceError::InvalidBundle(
            "the upload is empty".into(),
        )));
    }
    Ok(total)
}

fn uuid_simple() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[utoipa::path(get, path = "/v1/sandboxes/{name}/bundle", tag = "sources",
    params(("name" = String, Path, description = "The sandbox's name")),
    responses(
        (status = 200, description = "A git bundle of the exported branch's commits on top of the sandbox's base (its `refs/heads/<branch>`)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 409, description = "Nothing exported yet", body = ref("#/components/schemas/ErrorEnvelope")),
        (status = 404, description = "No such sandbox", body = ref("#/components/schemas/ErrorEnvelope")),
    ))]
pub async fn download_bundle<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let bytes = app
        .blocking(move |app| {
            let record = app.find(&who, &name)?;
            let branch = record.branch.clone().ok_or_else(|| {
                ApiError::new(
                    ReasonCode::WrongState,
                    format!("sandbox {} has exported no branch", record.name),
                )
                .with_hint(format!(
                    "export it first: POST /v1/sandboxes/{}/export",
                    record.name
                ))
            })?;
            let base = record
                .sync
                .as_ref()
                .and_then(|s| s.get("head"))
                .and_then(|h| h.as_str())
                .map(str::to_owned);
            let dir = source::uploads_dir(&app.data_dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| ApiError::new(ReasonCode::Internal, e.to_string()))?;
            let file = dir.join(format!("{}.out.bundle", uuid_simple()));
            let packed = source::bundle_branch(&record.repo, &branch, base.as_deref(), &file)
                .map_err(|e| source_error(&e))
                .and_then(|f| {
                    std::fs::read(&f)
                        .map_err(|e| ApiError::new(ReasonCode::Internal, e.to_string()))
                });
            let _ = std::fs::remove_file(&file);
            packed
        })
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from(bytes),
    )
        .into_response())
}

/// Brings a bundle-launched sandbox's source up to a newer uploaded bundle (remote `sync`).
pub(crate) fn update_source<P: Provider + 'static>(
    app: &App<P>,
    record: &warren_store::SandboxRecord,
    bundle: &str,
    config: &warren_config::Config,
) -> ApiResult<()> {
    let unsupported = |why: String| source_error(&SourceError::Unsupported(why));
    let newer = source::source_dir(&app.data_dir, bundle)
        .filter(|dir| source::origin_url(dir).is_none())
        .ok_or_else(|| unsupported(format!("no uploaded bundle has the id {bundle:?}")))?;
    let ours = record.repo.starts_with(source::sources_dir(&app.data_dir))
        && source::origin_url(&record.repo).is_none();
    if !ours || newer == record.repo {
        return Err(unsupported(format!(
            "sandbox {} was not launched from an uploaded bundle",
            record.name
        )));
    }
    source::update_from_bundle(&record.repo, &newer, &SourceLimits::from_config(config))
        .map_err(|e| source_error(&e))?;
    Ok(())
}
