//! The Prometheus `/metrics` endpoint (axum), histograms with explicit buckets.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::{CoordinatorError, Result};

/// Installs the global recorder (once per process) and returns its handle.
pub fn install_recorder() -> Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let buckets = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_string()), &buckets)
        .map_err(|e| CoordinatorError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| CoordinatorError::Metrics(e.to_string()))?;
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// Serves `/metrics` on `address`; returns the bound address and the server task.
pub async fn serve(address: SocketAddr, handle: PrometheusHandle) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| CoordinatorError::Metrics(format!("{address}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| CoordinatorError::Metrics(e.to_string()))?;
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "metrics server stopped");
        }
    });
    Ok((bound, task))
}
