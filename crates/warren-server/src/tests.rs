#![expect(clippy::unwrap_used, reason = "tests")]

use super::*;

#[test]
fn non_loopback_is_refused_without_tls_or_insecure_bind() {
    let any: SocketAddr = "0.0.0.0:8420".parse().unwrap();
    let error = check_bind(&any, false, false).unwrap_err();
    assert_eq!(error.reason_code, ReasonCode::InvalidArgument);
    assert!(error.hint.unwrap().contains("--tls-cert"));
    assert!(check_bind(&any, true, false).is_ok());
    assert!(
        check_bind(&any, false, true).is_ok(),
        "TLS allows any address"
    );
    assert!(check_bind(&"127.0.0.1:1".parse().unwrap(), false, false).is_ok());
    assert!(check_bind(&"[::1]:1".parse().unwrap(), false, false).is_ok());
}

/// A provider that can do nothing: the routes and the document need a type, not a backend.
struct NoProvider;
struct NoSandbox;

impl warren_provider::Sandbox for NoSandbox {
    fn exec(
        &self,
        _: &warren_provider::ExecSpec,
    ) -> Result<warren_provider::ExecChild, warren_provider::ProviderError> {
        Err(unsupported())
    }
    async fn destroy(self) -> Result<(), warren_provider::ProviderError> {
        Ok(())
    }
}

fn unsupported() -> warren_provider::ProviderError {
    warren_provider::ProviderError::Unsupported {
        provider: "none",
        what: "anything".into(),
    }
}

impl Provider for NoProvider {
    type Sandbox = NoSandbox;
    fn name(&self) -> &'static str {
        "none"
    }
    fn mounts(&self) -> warren_provider::Mounts {
        warren_provider::Mounts::HostPaths
    }
    async fn preflight(&self) -> Result<(), warren_provider::ProviderError> {
        Err(unsupported())
    }
    async fn create(
        &self,
        _: &warren_provider::SandboxSpec,
    ) -> Result<(NoSandbox, warren_provider::CreateTimings), warren_provider::ProviderError> {
        Err(unsupported())
    }
}

fn app(data_dir: PathBuf) -> Arc<App<NoProvider>> {
    let store =
        Arc::new(warren_store::Store::open(&warren_store::default_db_path(&data_dir)).unwrap());
    Arc::new(App {
        data_dir,
        store: store.clone(),
        tenancy: store,
        providers: Arc::new(|_, _, _| Ok(NoProvider)),
        config: Arc::new(|_| Ok(warren_config::Config::default())),
        tasks: tasks::Tasks::default(),
        shutdown: CancellationToken::new(),
        streams: limits::StreamLimits::new(2),
        runs_succeeded: Default::default(),
        runs_failed: Default::default(),
    })
}

#[test]
fn the_document_lists_exactly_the_routes_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_, served) = router(app(dir.path().to_path_buf()), 1024);
    let doc = openapi::document();
    assert_eq!(doc["openapi"].as_str().unwrap().get(..3), Some("3.1"));
    assert_eq!(openapi::operations(&doc), served);
    // Every reference resolves inside the document.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling $ref {name}"
        );
    }
}
