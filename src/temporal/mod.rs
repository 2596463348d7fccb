//! The Temporal client as the server uses it: connected in the background, reconnected when the
//! server comes back, and never a reason for the BFF itself to be down.

pub mod worker;

use std::{sync::Arc, time::Duration};

use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};
use temporalio_common::protos::temporal::api::workflowservice::v1::GetSystemInfoRequest;
use tokio::sync::RwLock;
use url::Url;

use crate::Config;

/// How long one connection attempt may take before it counts as "Temporal is down".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between background reconnection attempts.
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(10);

/// Why a Temporal call could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TemporalError {
    /// No connection could be established.
    #[error("temporal unreachable: {0}")]
    Unreachable(String),
    /// The call did not answer in time.
    #[error("temporal call timed out")]
    Timeout,
    /// The server answered with an error.
    #[error("temporal call failed: {0}")]
    Call(String),
}

/// A shareable, lazily connected Temporal client.
#[derive(Clone)]
pub struct TemporalHandle {
    inner: Arc<Inner>,
}

struct Inner {
    target: Url,
    namespace: String,
    client: RwLock<Option<Client>>,
}

impl TemporalHandle {
    /// Creates the handle and starts connecting in the background, retrying with backoff until
    /// the first connection succeeds. Never blocks start-up.
    pub fn spawn(config: &Config) -> Self {
        let handle = Self {
            inner: Arc::new(Inner {
                target: config.temporal_address.clone(),
                namespace: config.temporal_namespace.clone(),
                client: RwLock::new(None),
            }),
        };
        let background = handle.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match background.client().await {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, temporal.address = %background.inner.target, "Temporal not reachable yet; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_RECONNECT_BACKOFF);
                    }
                }
            }
        });
        handle
    }

    /// The namespace every call uses.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The connected client, connecting now if there is none yet.
    ///
    /// Once connected, the underlying gRPC channel reconnects by itself after a server restart,
    /// so the client is kept for the life of the process.
    pub async fn client(&self) -> Result<Client, TemporalError> {
        if let Some(client) = self.inner.client.read().await.as_ref() {
            return Ok(client.clone());
        }
        let mut slot = self.inner.client.write().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let client = connect(&self.inner.target, &self.inner.namespace).await?;
        tracing::info!(temporal.address = %self.inner.target, "connected to Temporal");
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Checks that the server answers, within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), TemporalError> {
        let call = async {
            let client = self.client().await?;
            client
                .connection()
                .workflow_service()
                .get_system_info(tonic::Request::new(GetSystemInfoRequest::default()))
                .await
                .map(drop)
                .map_err(|status| TemporalError::Call(status.code().to_string()))
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| TemporalError::Timeout)?
    }
}

/// Opens a connection and a namespaced client.
pub async fn connect(target: &Url, namespace: &str) -> Result<Client, TemporalError> {
    let options = ConnectionOptions::new(target.clone())
        .identity(format!("temporal-bff@{}", std::process::id()))
        .connect_timeout(CONNECT_TIMEOUT)
        .build();
    let connection = tokio::time::timeout(CONNECT_TIMEOUT * 2, Connection::connect(options))
        .await
        .map_err(|_| TemporalError::Timeout)?
        .map_err(|error| TemporalError::Unreachable(error.to_string()))?;
    Client::new(connection, ClientOptions::new(namespace).build())
        .map_err(|error| TemporalError::Unreachable(error.to_string()))
}
