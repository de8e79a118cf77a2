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

pub mod secure;

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
    c.gateway.dashboards_dir = repo_root().join("dashboards/dist");
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
        Self::start_with(|_| {}).await
    }

    /// Starts broker and system with a config adjusted by `tune`.
    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        // `IOC_TEST_LOG=1` shows the system's own log lines in test output.
        if std::env::var_os("IOC_TEST_LOG").is_some() {
            ioc::telemetry::init_logs("text");
        }
        let config_topics = ioc_model::Topics::default();
        let broker = EmbeddedBroker::start(&config_topics)?;
        let mut config = test_config(&broker.bootstrap_servers());
        tune(&mut config);
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

/// Reads every committed message of partition 0 of a topic, as JSON, to
/// the end the fetches report (the output log is written in transactions:
/// its last offsets may be commit markers, and aborted records are skipped,
/// as every reader of the system does).
pub fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<Value>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(out),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => out.push(serde_json::from_slice(m.payload().unwrap_or_default())?),
        }
    }
    Err(anyhow!(
        "{topic}: no end of partition within 20 s ({} read)",
        out.len()
    ))
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

/// `GET` a JSON array from the gateway with a bearer token; `None` on any
/// failure, so that it fits [`eventually`].
pub async fn get_list(http: &reqwest::Client, url: &str, token: &str) -> Option<Vec<Value>> {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
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

/// The `ioc` binary of this build, built on first use (tests of another
/// package cannot ask cargo for it directly).
pub fn ioc_binary() -> anyhow::Result<PathBuf> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            // target/<profile>/deps/<test> → target/<profile>/ioc
            let dir = exe
                .parent()
                .and_then(|p| p.parent())
                .ok_or("unexpected test binary location")?;
            let bin = dir.join("ioc");
            let profile_release = dir.ends_with("release");
            let mut cmd = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"));
            cmd.args(["build", "-p", "ioc", "--bin", "ioc"])
                .current_dir(repo_root());
            if profile_release {
                cmd.arg("--release");
            }
            let status = cmd.status().map_err(|e| format!("cargo build: {e}"))?;
            if !status.success() || !bin.exists() {
                return Err(format!("cannot build {}", bin.display()));
            }
            Ok(bin)
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A free loopback port (bound and released: good enough for tests).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `ioc serve` as a child process: what an operator runs, killable.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
}

impl ServeProcess {
    /// Starts `ioc serve` against `brokers` with extra config TOML.
    pub fn spawn(brokers: &str, extra_toml: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let dir = std::env::temp_dir().join(format!("ioc-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("ioc.toml");
        std::fs::write(&config, extra_toml)?;
        let child = std::process::Command::new(ioc_binary()?)
            .args(["--config"])
            .arg(&config)
            .args(["serve", "--brokers", brokers, "--bind", &addr.to_string()])
            .env("IOC_JWT_SECRET", SECRET)
            .env(
                "IOC_ZONES_PATH",
                repo_root().join("data/danang/districts.geojson"),
            )
            .env("IOC_DASHBOARDS_DIR", repo_root().join("dashboards/dist"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("spawn ioc serve")?;
        Ok(Self { child, addr })
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn terminate(mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(anyhow!("no exit within {timeout:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        let http = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.addr);
        eventually(timeout, "readyz", || async {
            let r = http.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await?;
        Ok(started.elapsed())
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Offsets committed by a consumer group, per (topic, partition), for the
/// partitions of `topics` (partition counts of the embedded broker).
pub fn committed_offsets(
    brokers: &str,
    group: &str,
    topics: &[(&str, i32)],
) -> anyhow::Result<std::collections::BTreeMap<(String, i32), i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (t, n) in topics {
        for p in 0..*n {
            tpl.add_partition(t, p);
        }
    }
    let got = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(got
        .elements()
        .into_iter()
        .map(|e| {
            let o = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            ((e.topic().to_string(), e.partition()), o)
        })
        .collect())
}

/// End offsets (high watermarks) of the same partitions.
pub fn end_offsets(
    brokers: &str,
    topics: &[(&str, i32)],
) -> anyhow::Result<std::collections::BTreeMap<(String, i32), i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-watermarks")
        .create()?;
    let mut out = std::collections::BTreeMap::new();
    for (t, n) in topics {
        for p in 0..*n {
            let (_, high) = c.fetch_watermarks(t, p, Duration::from_secs(10))?;
            out.insert((t.to_string(), p), high);
        }
    }
    Ok(out)
}

impl ServeProcess {
    /// Like [`ServeProcess::spawn`], with the process's log (stderr, at
    /// `rust_log`) written to `log_path`, so a test can show what happened.
    pub fn spawn_logged(
        brokers: &str,
        extra_toml: &str,
        rust_log: &str,
        log_path: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let dir = std::env::temp_dir().join(format!("ioc-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("ioc.toml");
        std::fs::write(&config, extra_toml)?;
        let log = std::fs::File::create(log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let child = std::process::Command::new(ioc_binary()?)
            .args(["--config"])
            .arg(&config)
            .args(["serve", "--brokers", brokers, "--bind", &addr.to_string()])
            .env("IOC_JWT_SECRET", SECRET)
            .env(
                "IOC_ZONES_PATH",
                repo_root().join("data/danang/districts.geojson"),
            )
            .env("IOC_DASHBOARDS_DIR", repo_root().join("dashboards/dist"))
            .env("RUST_LOG", rust_log)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn ioc serve")?;
        Ok(Self { child, addr })
    }

    /// Sum of a Prometheus metric over its label sets whose labels contain
    /// `label_filter` (e.g. `topic="calls"`; empty matches all), from
    /// `/metrics`. 0 when absent.
    pub async fn metric(&self, name: &str, label_filter: &str) -> anyhow::Result<f64> {
        let body = reqwest::get(format!("http://{}/metrics", self.addr))
            .await?
            .text()
            .await?;
        Ok(sum_metric(&body, name, label_filter))
    }
}

/// Sum of the samples of `name` in a Prometheus text exposition whose
/// label set contains `label_filter`.
pub fn sum_metric(body: &str, name: &str, label_filter: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            (metric == name && labels.contains(label_filter))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
