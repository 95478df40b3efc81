//! Checks made before anything is created, so a run that cannot work fails in milliseconds with a
//! precise error instead of after a sandbox boot and OpenCode's own minute of retries.

use std::time::Duration;

use warren_domain::{ErrorInfo, ReasonCode};

/// Opens (and closes) a TCP connection to the model endpoint.
pub async fn probe_endpoint(base_url: &str, timeout: Duration) -> Result<(), ErrorInfo> {
    let url = url::Url::parse(base_url).map_err(|e| {
        ErrorInfo::new(
            ReasonCode::InvalidConfig,
            format!("model endpoint {base_url:?} is not a URL: {e}"),
        )
    })?;
    let host = url.host_str().unwrap_or("").to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let unreachable = |cause: String| {
        ErrorInfo::new(
            ReasonCode::ModelUnreachable,
            format!("cannot reach the model endpoint {base_url}: {cause}"),
        )
        .with_hint("the model endpoint refused the connection: is it running? Check model_providers.<name>.base_url")
    };
    match tokio::time::timeout(
        timeout,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {} s",
            timeout.as_secs()
        ))),
    }
}
