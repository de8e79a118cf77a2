//! Shared helpers for the integration tests in `tests/`: start the whole
//! system against the embedded broker on loopback, produce real Kafka
//! messages, talk to the gateway with real websocket and HTTP clients.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use futures::{SinkExt, StreamExt};
use ioc::app::{self, StartOptions, System};
use ioc::config::Config;
use ioc_gateway::auth::{mint_token, Role};
use ioc_ingest::EmbeddedBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Secret used by the tests' gateway.
pub const SECRET: &str = "integration-test-secret-0123456789";

/// Repo root, from this crate's manifest dir.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A config pointing at a broker, with the gateway on a free port.
pub fn test_config(brokers: &str) -> Config {
    let mut c = Config::default();
    c.kafka.brokers = brokers.to_string();
    c.gateway.bind = "127.0.0.1:0".parse().expect("static addr");
    c.zones_path = repo_root().join("data/danang/districts.geojson");
    c.gateway.dashboards_dir = repo_root().join("dashboards");
    c.gateway.jwt_secret = Some(SECRET.to_string());
    c
}

/// The embedded broker plus the whole system on top of it.
pub struct TestSystem {
    pub broker: EmbeddedBroker,
    pub system: System,
    pub config: Config,
}

impl TestSystem {
    /// Starts broker and system (no simulator).
    pub async fn start() -> anyhow::Result<Self> {
        let config_topics = ioc_model::Topics::default();
        let broker = EmbeddedBroker::start(&config_topics)?;
        let config = test_config(&broker.bootstrap_servers());
        let system = app::start(
            &config,
            StartOptions {
                jwt_secret: SECRET.to_string(),
                simulate: false,
            },
        )
        .await?;
        Ok(Self {
            broker,
            system,
            config,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http(&self) -> String {
        format!("http://{}", self.system.addr)
    }
}

/// A token for a role.
pub fn token(role: Role, district: Option<&str>) -> String {
    mint_token(SECRET, "tester", role, district, 3600).expect("mint token")
}

/// An idempotent producer to the broker.
pub fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?)
}

/// Produces one message and waits for the broker's acknowledgement.
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<()> {
    p.send(
        FutureRecord::to(topic).key(key).payload(payload),
        Duration::from_secs(10),
    )
    .await
    .map(|_| ())
    .map_err(|(e, _)| anyhow!("produce to {topic}: {e}"))
}

/// Reads every message of partition 0 of a topic currently present, as JSON.
pub fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<Value>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let (low, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
    let mut out = Vec::new();
    if high <= low {
        return Ok(out);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))?;
    c.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m?;
            out.push(serde_json::from_slice(m.payload().unwrap_or_default())?);
            if m.offset() + 1 >= high {
                break;
            }
        }
    }
    Ok(out)
}

/// A websocket client of the gateway.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects with `?access_token=`.
    pub async fn connect(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<Self> {
        let url = format!("ws://{addr}/ws?access_token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .context("ws connect")?;
        Ok(Self { ws })
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, v: Value) -> anyhow::Result<()> {
        self.ws.send(WsMessage::Text(v.to_string().into())).await?;
        Ok(())
    }

    /// Next JSON frame, or an error after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| anyhow!("no frame within {timeout:?}"))?
                .ok_or_else(|| anyhow!("socket closed"))??;
            match msg {
                WsMessage::Text(t) => return Ok(serde_json::from_str(&t)?),
                WsMessage::Close(c) => return Err(anyhow!("closed: {c:?}")),
                _ => continue,
            }
        }
    }

    /// Waits for the first frame matching `pred`, skipping others.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let v = self
                .next(left)
                .await
                .context("waiting for a matching frame")?;
            if pred(&v) {
                return Ok(v);
            }
        }
    }
}

/// Polls `f` until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(anyhow!("timed out waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
