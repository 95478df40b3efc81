//! Which headers cross the gateway. The sandbox's credentials must never reach the upstream (the
//! real one is injected instead), and hop-by-hop headers describe a single connection, so they are
//! never forwarded in either direction.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that only describe one connection (RFC 9110 §7.6.1) plus `content-length`, which the
/// sending side recomputes from the body it actually sends.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Headers from the sandbox that carry credentials or name the wrong host.
const SANDBOX_ONLY: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "host",
    "cookie",
    "cookie2",
];

fn is_hop_by_hop(name: &HeaderName, connection_listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || connection_listed.iter().any(|c| c == name.as_str())
}

/// Header names a sender listed in `Connection`, which are hop-by-hop by declaration.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The headers to send upstream: the sandbox's own minus credentials and hop-by-hop headers,
/// plus the real credential when one is configured.
pub(crate) fn upstream_request_headers(
    incoming: &HeaderMap,
    authorization: Option<&HeaderValue>,
) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 1);
    for (name, value) in incoming {
        if is_hop_by_hop(name, &listed) || SANDBOX_ONLY.contains(&name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(auth) = authorization {
        out.insert(header::AUTHORIZATION, auth.clone());
    }
    out
}

/// Whether `incoming` carries exactly one `Authorization: Bearer <token>`. Compared in constant
/// time, so the answer's timing says nothing about how much of a guess was right.
pub(crate) fn carries_token(incoming: &HeaderMap, token: &str) -> bool {
    let mut values = incoming.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(given) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    let expected = token.as_bytes();
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The upstream response headers to pass back to the sandbox.
pub(crate) fn downstream_response_headers(upstream: &HeaderMap) -> HeaderMap {
    let listed = connection_listed(upstream);
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if !is_hop_by_hop(name, &listed) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn request_drops_credentials_and_hop_by_hop() {
        let incoming = map(&[
            ("authorization", "Bearer placeholder"),
            ("proxy-authorization", "Basic x"),
            ("host", "127.0.0.1:9"),
            ("cookie", "a=b"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "12"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
            ("user-agent", "opencode"),
            ("x-stainless-lang", "js"),
        ]);
        let real = HeaderValue::from_static("Bearer real-key");
        let out = upstream_request_headers(&incoming, Some(&real));
        let mut names: Vec<_> = out.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "accept",
                "authorization",
                "content-type",
                "user-agent",
                "x-stainless-lang"
            ]
        );
        assert_eq!(out.get_all(header::AUTHORIZATION).iter().count(), 1);
        assert_eq!(out[header::AUTHORIZATION], "Bearer real-key");

        let without = upstream_request_headers(&incoming, None);
        assert!(without.get(header::AUTHORIZATION).is_none());
    }

    #[test]
    fn response_keeps_ordinary_headers() {
        let upstream = map(&[
            ("content-type", "text/event-stream"),
            ("retry-after", "7"),
            ("x-request-id", "abc"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("content-length", "3"),
        ]);
        let out = downstream_response_headers(&upstream);
        assert_eq!(out["content-type"], "text/event-stream");
        assert_eq!(out["retry-after"], "7");
        assert_eq!(out["x-request-id"], "abc");
        assert_eq!(out.len(), 3);
    }
}
