//! The egress policy: which requests from the sandbox may reach the model endpoint at all. The
//! gateway is the sandbox's only network path, so everything that is not plainly a model API call
//! is refused here, before any upstream connection exists.

use hyper::{Method, Uri};

/// The path prefix OpenCode inside the sandbox is configured with (`http://127.0.0.1:PORT/v1`).
const SANDBOX_PREFIX: &str = "/v1/";

/// Returns the part of the path after `/v1/` when the request is an allowed model API call.
pub(crate) fn allowed_rest<'a>(method: &Method, uri: &'a Uri) -> Option<&'a str> {
    // Absolute-form and authority-form targets are proxy requests for some other host; a model
    // client talking to its base URL never sends them.
    if uri.scheme().is_some() || uri.authority().is_some() {
        return None;
    }
    let rest = uri.path().strip_prefix(SANDBOX_PREFIX)?;
    let allowed = match *method {
        Method::POST => rest == "chat/completions",
        Method::GET => {
            rest == "models" || rest.strip_prefix("models/").is_some_and(is_safe_model_id)
        }
        _ => false,
    };
    allowed.then_some(rest)
}

/// Model ids may contain `/` (`org/model`), but no segment may let the upstream's URL
/// normalisation climb out of `models/` (`..`, `%2e%2e`, backslashes).
fn is_safe_model_id(id: &str) -> bool {
    !id.is_empty()
        && id.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'@' | b'+' | b'%')
                })
                && percent_escapes_are_harmless(seg)
        })
}

fn percent_escapes_are_harmless(seg: &str) -> bool {
    let bytes = seg.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let Some(hex) = seg.get(i + 1..i + 3) else {
                return false;
            };
            let Ok(decoded) = u8::from_str_radix(hex, 16) else {
                return false;
            };
            if decoded == b'.' || decoded == b'\\' || decoded < 0x20 {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// How a refused request target is shown in the error body and the `Blocked` notice. The query
/// string is left out because it is never needed to understand a refusal.
pub(crate) fn display_target(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
        (None, Some(authority)) => authority.to_string(),
        _ => uri.path().to_string(),
    }
}

/// Maps the allowed rest of the path onto the upstream base URL, which carries its own version
/// path (`https://api.example.com/v1`, `http://127.0.0.1:4000/custom/v1`).
pub(crate) fn upstream_url(base: &str, rest: &str, query: Option<&str>) -> String {
    let base = base.trim_end_matches('/');
    match query {
        Some(q) => format!("{base}/{rest}?{q}"),
        None => format!("{base}/{rest}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn check(method: Method, target: &str) -> Option<String> {
        let uri: Uri = target.parse().unwrap();
        allowed_rest(&method, &uri).map(str::to_owned)
    }

    #[test]
    fn allows_only_model_calls() {
        assert_eq!(
            check(Method::POST, "/v1/chat/completions").as_deref(),
            Some("chat/completions")
        );
        assert_eq!(
            check(Method::GET, "/v1/models?x=1").as_deref(),
            Some("models")
        );
        assert_eq!(
            check(Method::GET, "/v1/models/gpt-4o").as_deref(),
            Some("models/gpt-4o")
        );
        assert_eq!(
            check(Method::GET, "/v1/models/meta-llama/Llama-3.1:8b").as_deref(),
            Some("models/meta-llama/Llama-3.1:8b")
        );
        assert!(check(Method::GET, "/v1/models/org%2Fmodel").is_some());

        assert!(check(Method::GET, "/v1/chat/completions").is_none());
        assert!(check(Method::POST, "/v1/models").is_none());
        assert!(check(Method::POST, "/v1/embeddings").is_none());
        assert!(check(Method::POST, "/chat/completions").is_none());
        assert!(check(Method::POST, "/v2/chat/completions").is_none());
        assert!(check(Method::POST, "/v1/chat/completions/").is_none());
        assert!(check(Method::GET, "/v1/models/").is_none());
        assert!(check(Method::GET, "/etc/passwd").is_none());
        assert!(check(Method::DELETE, "/v1/models/x").is_none());
        assert!(check(Method::GET, "http://other-host/v1/models").is_none());
        assert!(check(Method::CONNECT, "other-host:443").is_none());
    }

    #[test]
    fn refuses_traversal_out_of_models() {
        for target in [
            "/v1/models/../admin",
            "/v1/models/./x",
            "/v1/models/a//b",
            "/v1/models/%2e%2e/admin",
            "/v1/models/%2E./admin",
            "/v1/models/a%5cb",
            "/v1/models/a%0ab",
            "/v1/models/a%zz",
            "/v1/models/a%2",
        ] {
            assert!(
                check(Method::GET, target).is_none(),
                "{target} should be refused"
            );
        }
    }

    #[test]
    fn maps_onto_base_with_its_own_path() {
        assert_eq!(
            upstream_url("http://h:1/custom/v1/", "models", Some("a=1&b=2")),
            "http://h:1/custom/v1/models?a=1&b=2"
        );
        assert_eq!(
            upstream_url("https://api.example.com/v1", "chat/completions", None),
            "https://api.example.com/v1/chat/completions"
        );
    }

    #[test]
    fn displays_targets_without_query() {
        let show = |t: &str| display_target(&t.parse().unwrap());
        assert_eq!(show("/etc/passwd?secret=1"), "/etc/passwd");
        assert_eq!(show("http://other-host/"), "http://other-host/");
        assert_eq!(show("other-host:443"), "other-host:443");
    }
}
