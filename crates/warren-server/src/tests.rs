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
        meter: meter::Meter::default(),
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

/// Checks Prometheus text exposition: every sample belongs to a family declared by `# TYPE`
/// before it, parses as `name{label="value",...} number`, appears once, and every histogram's
/// buckets are cumulative and end in `+Inf` equal to its `_count`.
fn check_exposition(text: &str) -> std::collections::BTreeMap<String, f64> {
    use std::collections::{BTreeMap, HashMap};
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples: BTreeMap<String, f64> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "{line}"
            );
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "no TYPE before {line}");
        let labels = &series[name.len()..];
        if !labels.is_empty() {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap();
            for pair in inner.split("\",") {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(!v.trim_end_matches('"').contains('\n'), "{line}");
            }
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "duplicate {line}"
        );
    }
    // Histograms: cumulative buckets, +Inf equals the count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut by_labels: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (series, value) in &samples {
            let Some(rest) = series.strip_prefix(&format!("{family}_bucket{{")) else {
                continue;
            };
            let (labels, le) = rest.rsplit_once("le=\"").unwrap();
            let le = le.trim_end_matches("\"}");
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            by_labels
                .entry(labels.trim_end_matches(',').to_owned())
                .or_default()
                .push((le, *value));
        }
        for (labels, mut buckets) in by_labels {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{family}{{{labels}}} not cumulative"
            );
            let count_key = if labels.is_empty() {
                format!("{family}_count")
            } else {
                format!("{family}_count{{{labels}}}")
            };
            assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
            assert_eq!(
                Some(&buckets.last().unwrap().1),
                samples.get(&count_key),
                "{family}{{{labels}}}"
            );
        }
    }
    samples
}

#[test]
fn metrics_are_valid_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path().to_path_buf());
    let empty = check_exposition(&metrics::render(&app).unwrap());
    assert_eq!(empty["warren_streams_open"], 0.0);
    assert_eq!(empty["warren_model_request_duration_seconds_count"], 0.0);
    let ms = std::time::Duration::from_millis;
    app.meter
        .request("/v1/sandboxes".into(), "POST".into(), 201, ms(30));
    app.meter
        .request("/v1/sandboxes".into(), "POST".into(), 422, ms(2));
    app.meter
        .request("/v1/sandboxes/{name}".into(), "GET".into(), 200, ms(1));
    app.meter
        .request("unmatched".into(), "GET".into(), 404, ms(1));
    app.meter.observe("run", ms(90_000));
    let _slot = app.streams.acquire("t").unwrap();
    let m = check_exposition(&metrics::render(&app).unwrap());
    assert_eq!(
        m[r#"warren_http_requests_total{route="/v1/sandboxes",method="POST",class="2xx"}"#],
        1.0
    );
    assert_eq!(
        m[r#"warren_http_requests_total{route="/v1/sandboxes",method="POST",class="4xx"}"#],
        1.0
    );
    assert_eq!(
        m[r#"warren_operation_duration_seconds_count{operation="launch"}"#],
        2.0
    );
    assert_eq!(
        m[r#"warren_operation_duration_seconds_bucket{operation="launch",le="0.005"}"#],
        1.0
    );
    assert_eq!(
        m[r#"warren_operation_duration_seconds_bucket{operation="run",le="60"}"#],
        0.0
    );
    assert_eq!(
        m[r#"warren_operation_duration_seconds_bucket{operation="run",le="300"}"#],
        1.0
    );
    assert_eq!(m["warren_streams_open"], 1.0);
    assert!(
        !m.keys().any(|k| k.contains("operation=\"get")),
        "reads are not operations"
    );
}
