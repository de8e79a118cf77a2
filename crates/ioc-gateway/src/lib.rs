//! Push gateway of the IOC event processor: websocket fan-out of
//! `ioc.events` to wall screens, dispatcher consoles and district screens,
//! the HTTP API, and the static dashboards.
//!
//! The gateway is a stateless reader of the output log. It never talks to
//! Kafka: the binary consumes `ioc.events` and calls [`Gateway::publish`] in
//! seq order, and hands in a [`CommandSink`] that writes operator commands to
//! `ioc.commands`. From the events alone the gateway keeps its own picture
//! of the current state (for snapshots and the HTTP API) and a bounded
//! history of recent events (for `since` replay), so any number of gateways
//! can run side by side.
//!
//! Protocol and endpoints are the contract of `DESIGN.md`: see the `ws`
//! module for the websocket and the `http` module for the HTTP API.

pub mod auth;
mod channel;
mod http;
mod hub;
mod picture;
mod telemetry;
mod ws;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::channel::{Channel, ChannelError};
pub use crate::hub::StaleReason;
pub use crate::telemetry::{
    AUTH_FAILURES, EVENTS_PUBLISHED, HTTP_REQUESTS, WS_COALESCED, WS_CONNECTIONS, WS_MESSAGES_OUT,
    WS_REFUSED, WS_SLOW_DISCONNECTS,
};

/// How long [`Gateway::serve`] waits for websockets to say goodbye after
/// shutdown before returning anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Gateway settings. Defaults are in [`GatewayConfig::default`].
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// HS256 secret of operator tokens. Must not be empty in production.
    pub jwt_secret: String,
    /// Static dashboards served at `/` (index.html at `/`).
    pub dashboards_dir: PathBuf,
    /// Exact-match allow-list of browser `Origin`s for `/ws`; empty allows
    /// any origin (development).
    pub allowed_origins: Vec<String>,
    /// Events kept for `since` replay; older resumes get a fresh snapshot.
    pub history_len: usize,
    /// Per-client outbound queue, in frames. Past half of it, unit
    /// positions are coalesced (latest per unit) instead of queued; a client
    /// whose queue still fills is disconnected as slow, so one slow screen
    /// cannot hold memory or publish.
    pub client_queue: usize,
    /// Largest inbound websocket message; larger ones close with 1009.
    pub max_frame_bytes: usize,
    /// Open websockets one token may hold at once; the next upgrade is
    /// refused with 429. Bounds what one leaked or shared token can cost.
    pub max_connections_per_token: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            dashboards_dir: PathBuf::from("dashboards"),
            allowed_origins: Vec::new(),
            history_len: 10_000,
            client_queue: 1024,
            max_frame_bytes: 16 * 1024,
            max_connections_per_token: 8,
        }
    }
}

/// A [`GatewayConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("jwt_secret must not be empty")]
    EmptySecret,
    #[error("client_queue must be at least 1, got 0")]
    ZeroQueue,
    #[error("max_frame_bytes must be at least 256, got {0}")]
    TinyFrame(usize),
    #[error("max_connections_per_token must be at least 1, got 0")]
    ZeroConnectionsPerToken,
}

impl GatewayConfig {
    /// Checks values the gateway cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.is_empty() {
            return Err(ConfigError::EmptySecret);
        }
        if self.client_queue == 0 {
            return Err(ConfigError::ZeroQueue);
        }
        if self.max_frame_bytes < 256 {
            return Err(ConfigError::TinyFrame(self.max_frame_bytes));
        }
        if self.max_connections_per_token == 0 {
            return Err(ConfigError::ZeroConnectionsPerToken);
        }
        Ok(())
    }
}

/// Websocket keep-alive timing. Separate from [`GatewayConfig`] because only
/// tests have a reason to change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The server pings every client this often.
    pub ping_interval: Duration,
    /// A client that sends nothing (not even a pong) for this long is closed.
    pub idle_timeout: Duration,
    /// How long we try to deliver a close frame before dropping the socket.
    pub close_timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Where operator commands go (`ioc.commands` in production).
pub trait CommandSink: Send + Sync + 'static {
    /// Resolves Ok once Kafka accepted the command.
    fn submit(&self, cmd: ioc_model::Command) -> BoxFuture<'static, Result<(), String>>;
}

/// Shared state behind every handler and connection.
pub(crate) struct Inner {
    pub config: GatewayConfig,
    pub hub: hub::Hub,
    /// Served as is at `/api/zones`, serialized once.
    pub zones_json: String,
    pub commands: Arc<dyn CommandSink>,
    pub render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    /// Caught up with Kafka: `/readyz` answers 200.
    pub ready: AtomicBool,
    pub heartbeat: Mutex<Heartbeat>,
    /// Source of websocket connection ids (log correlation, hub keys).
    pub next_conn_id: AtomicU64,
    /// Open websockets per token, for `max_connections_per_token`. An entry
    /// lives only while its token has a connection, so this is bounded by
    /// the number of open websockets.
    pub per_token: Mutex<HashMap<String, usize>>,
    /// Cancelled when [`Gateway::serve`] shuts down: every websocket closes
    /// with 1001 and no new one is accepted.
    pub shutdown: CancellationToken,
    /// Websocket connection tasks, so shutdown can wait for their close frames.
    pub tracker: TaskTracker,
}

impl Inner {
    pub fn heartbeat(&self) -> Heartbeat {
        *self.heartbeat.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The push gateway. Cheap to clone: every clone shares the same state.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("last_seq", &self.last_seq())
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway with an empty picture, not ready and not stale.
    ///
    /// `zones_geojson` is served at `/api/zones`; its `properties.id`s are
    /// the only districts one can subscribe to (any id if it has none).
    /// Invalid settings are clamped and logged; call
    /// [`GatewayConfig::validate`] first to refuse them instead.
    pub fn new(
        mut config: GatewayConfig,
        zones_geojson: serde_json::Value,
        commands: Arc<dyn CommandSink>,
        render_metrics: Arc<dyn Fn() -> String + Send + Sync>,
    ) -> Self {
        if let Err(e) = config.validate() {
            tracing::warn!(error = %e, "gateway config is not valid, clamping");
        }
        config.client_queue = config.client_queue.max(1);
        config.max_frame_bytes = config.max_frame_bytes.max(256);
        config.max_connections_per_token = config.max_connections_per_token.max(1);
        telemetry::describe();
        let zones: HashSet<String> = channel::zone_ids(&zones_geojson);
        let inner = Inner {
            hub: hub::Hub::new(config.history_len, zones),
            config,
            zones_json: zones_geojson.to_string(),
            commands,
            render_metrics,
            ready: AtomicBool::new(false),
            heartbeat: Mutex::new(Heartbeat::default()),
            next_conn_id: AtomicU64::new(1),
            per_token: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Applies an output event to the picture and history and fans it out.
    /// Call in seq order; an event with seq <= the last applied is ignored,
    /// so redelivery after a consumer restart is harmless. Never blocks on
    /// clients.
    pub fn publish(&self, ev: ioc_model::OutputEvent) {
        let seq = ev.seq;
        if !self.inner.hub.publish(ev) {
            tracing::debug!(seq, "duplicate output event ignored");
        }
    }

    /// [`Gateway::publish`] with the event as the output log holds it
    /// (`json` is the serialization of `ev`): channels that do not mask
    /// callers send those bytes instead of serializing the event again.
    pub fn publish_serialized(&self, ev: ioc_model::OutputEvent, json: Arc<str>) {
        let seq = ev.seq;
        if !self.inner.hub.publish_with_json(ev, Some(json)) {
            tracing::debug!(seq, "duplicate output event ignored");
        }
    }

    /// Caught up with Kafka (or not): drives `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// Picture stale for a reason (broker cut, processor stuck) or live
    /// (None): every client gets `{"op":"status","stale":..,"reason":..,
    /// "seq":N}` on a change, and new clients get it on connect while stale,
    /// so no screen shows a stale picture without saying so.
    pub fn set_stale(&self, stale: Option<StaleReason>) {
        self.inner.hub.set_stale(stale);
    }

    /// Seq of the last applied event (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.inner.hub.last_seq()
    }

    /// Open websocket connections.
    pub fn connections(&self) -> usize {
        self.inner.hub.connections()
    }

    /// Changes websocket keep-alive timing for connections opened afterwards.
    pub fn set_heartbeat(&self, heartbeat: Heartbeat) {
        *self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = heartbeat;
    }

    /// The HTTP and websocket routes, with the dashboards as fallback.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, closes
    /// every websocket with 1001 "server shutting down" and waits (bounded)
    /// for the close frames to go out. A gateway serves once: its websockets
    /// stay refused after shutdown.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let inner = self.inner.clone();
        let watcher = {
            let shutdown = shutdown.clone();
            let inner = inner.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                inner.shutdown.cancel();
            })
        };
        let result = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        inner.shutdown.cancel();
        inner.tracker.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("websockets still open after the drain timeout");
        }
        watcher.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_needs_a_secret() {
        let mut c = GatewayConfig::default();
        assert_eq!(c.validate(), Err(ConfigError::EmptySecret));
        c.jwt_secret = "s".into();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.history_len, 10_000);
        assert_eq!(c.client_queue, 1024);
        assert_eq!(c.max_frame_bytes, 16 * 1024);
        assert_eq!(c.max_connections_per_token, 8);
        c.max_connections_per_token = 0;
        assert_eq!(c.validate(), Err(ConfigError::ZeroConnectionsPerToken));
    }
}
