//! What this process measures as it serves, for `/metrics`: requests by route, method and status
//! class, and the duration of each operation (launch, exec, sync, export, teardown, changes, and
//! the one-shot run from its start to its summary) as Prometheus histograms. A middleware records
//! every request; the one-shot run records itself when it ends, its response having long gone.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use warren_provider::Provider;

use crate::state::App;

/// Upper bounds (seconds) of the duration buckets: from a read to a long agent run.
pub const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// A cumulative histogram with [`BUCKETS`].
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (bound, n) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name` with `labels` (`k="v",...`, may be empty).
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            let n = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Measured {
    /// (route, method, status class) -> requests.
    requests: BTreeMap<(String, String, &'static str), u64>,
    /// operation -> durations.
    operations: BTreeMap<&'static str, Histogram>,
}

#[derive(Default)]
pub struct Meter {
    measured: Mutex<Measured>,
}

/// The operation a request is, by its route and method; reads other than the changes are not
/// operations (their counts are in the request counter).
fn operation(method: &str, route: &str) -> Option<&'static str> {
    Some(match (method, route) {
        ("POST", "/v1/sandboxes") => "launch",
        ("POST", "/v1/sandboxes/{name}/prompts") => "exec",
        ("POST", "/v1/sandboxes/{name}/sync") => "sync",
        ("POST", "/v1/sandboxes/{name}/export") => "export",
        ("DELETE", "/v1/sandboxes/{name}") => "teardown",
        ("POST", "/v1/sandboxes/{name}/cancel") => "cancel",
        ("GET", "/v1/sandboxes/{name}/changes") => "changes",
        _ => return None,
    })
}

fn class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Meter {
    fn measured(&self) -> std::sync::MutexGuard<'_, Measured> {
        self.measured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn observe(&self, operation: &'static str, took: Duration) {
        self.measured()
            .operations
            .entry(operation)
            .or_default()
            .observe(took.as_secs_f64());
    }

    pub(crate) fn request(&self, route: String, method: String, status: u16, took: Duration) {
        let op = operation(&method, &route);
        let mut m = self.measured();
        *m.requests
            .entry((route, method, class(status)))
            .or_default() += 1;
        if let Some(op) = op {
            m.operations
                .entry(op)
                .or_default()
                .observe(took.as_secs_f64());
        }
    }

    /// The request counter and the operation histograms, in Prometheus text.
    pub fn write(&self, out: &mut String) {
        let m = self.measured();
        let _ = writeln!(
            out,
            "# HELP warren_http_requests_total Requests answered since start, by route, method and status class."
        );
        let _ = writeln!(out, "# TYPE warren_http_requests_total counter");
        for ((route, method, class), n) in &m.requests {
            let _ = writeln!(
                out,
                "warren_http_requests_total{{route=\"{}\",method=\"{method}\",class=\"{class}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP warren_operation_duration_seconds How long each operation took (a one-shot run: from its start to its summary)."
        );
        let _ = writeln!(out, "# TYPE warren_operation_duration_seconds histogram");
        for (op, h) in &m.operations {
            h.write(
                out,
                "warren_operation_duration_seconds",
                &format!("operation=\"{op}\""),
            );
        }
    }
}

/// A label value as Prometheus text wants it.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: counts and times every request by its route (the pattern, never the raw path, so
/// hostile paths cannot grow the label set); one that matched no route counts as `unmatched`.
pub async fn record<P: Provider + 'static>(
    State(app): State<Arc<App<P>>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    app.meter
        .request(route, method, response.status().as_u16(), start.elapsed());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_counts_everything_in_inf() {
        let mut h = Histogram::default();
        h.observe(0.003);
        h.observe(0.2);
        h.observe(7200.0);
        let mut out = String::new();
        h.write(&mut out, "x", "operation=\"launch\"");
        assert!(out.contains("x_bucket{operation=\"launch\",le=\"0.005\"} 1\n"));
        assert!(out.contains("x_bucket{operation=\"launch\",le=\"0.25\"} 2\n"));
        assert!(out.contains("x_bucket{operation=\"launch\",le=\"3600\"} 2\n"));
        assert!(out.contains("x_bucket{operation=\"launch\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count{operation=\"launch\"} 3\n"));
    }
}
