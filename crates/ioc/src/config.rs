//! Configuration: one serde struct, defaults in one place, loaded from a
//! TOML file, then environment variables, then command-line flags (each
//! overriding the one before), and validated with errors that name the
//! setting, what was expected and what came.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ioc_engine::{DispatchRules, EngineConfig};
use ioc_ingest::KafkaSettings;
use ioc_model::Topics;
use serde::Deserialize;

/// Secret used by `ioc demo` when none is configured. Never for production:
/// `ioc serve` refuses to start with it.
pub const DEMO_JWT_SECRET: &str = "ioc-demo-secret-not-for-production-use";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub gateway: GatewaySettings,
    pub engine: EngineConfig,
    pub processor: ProcessorSettings,
    pub simulator: SimulatorSettings,
    /// GeoJSON file of the zones (districts or wards).
    pub zones_path: PathBuf,
    /// Dispatch rules TOML; the built-in rules when absent.
    pub rules_path: Option<PathBuf>,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// Seconds allowed for a graceful shutdown before giving up.
    pub shutdown_timeout_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            kafka: KafkaSettings::default(),
            topics: Topics::default(),
            gateway: GatewaySettings::default(),
            engine: EngineConfig::default(),
            processor: ProcessorSettings::default(),
            simulator: SimulatorSettings::default(),
            zones_path: PathBuf::from("data/danang/districts.geojson"),
            rules_path: None,
            log_format: "text".into(),
            shutdown_timeout_s: 20,
        }
    }
}

/// HTTP / websocket server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    pub bind: SocketAddr,
    /// HS256 secret for operator tokens (env `IOC_JWT_SECRET`).
    pub jwt_secret: Option<String>,
    pub dashboards_dir: PathBuf,
    /// Exact-match browser origins; empty allows any (development).
    pub allowed_origins: Vec<String>,
    pub history_len: usize,
    pub client_queue: usize,
    pub max_frame_bytes: usize,
    /// Open websockets one token may hold; more are refused with 429.
    pub max_connections_per_token: usize,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            jwt_secret: None,
            dashboards_dir: PathBuf::from("dashboards/dist"),
            allowed_origins: Vec::new(),
            history_len: 10_000,
            client_queue: 1024,
            max_frame_bytes: 16 * 1024,
            max_connections_per_token: 8,
        }
    }
}

/// Processor (consumer group) settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorSettings {
    pub group_id: String,
    pub max_in_flight: usize,
    /// How long a crashed or paused owner keeps the output log's lease
    /// before a standby of the group gets it (librdkafka
    /// `session.timeout.ms`; Apache Kafka refuses less than its
    /// `group.min.session.timeout.ms`, 6 s by default).
    pub session_timeout_ms: u64,
    /// How often the open transaction commits (outputs become visible to
    /// the screens at commit).
    pub commit_interval_ms: u64,
    /// The producer's `transactional.id`; default
    /// `ioc-processor.<events topic>.0`. Every processor of one deployment
    /// must use the same, so a new owner fences the old one.
    pub transactional_id: Option<String>,
    /// Outputs and input offsets in Kafka transactions (true), or flushed
    /// and committed at least once for a broker without transactions.
    pub exactly_once: bool,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            group_id: "ioc-processor".into(),
            max_in_flight: 4096,
            session_timeout_ms: 6_000,
            commit_interval_ms: 5,
            transactional_id: None,
            exactly_once: true,
        }
    }
}

/// Simulator settings (`ioc demo`, `ioc simulate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorSettings {
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    #[serde(flatten)]
    pub sim: ioc_sim::SimConfig,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            speed: 1.0,
            sim: ioc_sim::SimConfig::default(),
        }
    }
}

/// Values from the command line that override file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub brokers: Option<String>,
    pub bind: Option<SocketAddr>,
    pub zones_path: Option<PathBuf>,
    pub dashboards_dir: Option<PathBuf>,
    pub speed: Option<f64>,
    pub seed: Option<u64>,
}

impl Config {
    /// File (if given) → environment → flags → validation.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?;
                toml::from_str::<Config>(&text)
                    .with_context(|| format!("invalid config file {}", p.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        config.apply_overrides(overrides);
        if let Some(rules) = &config.rules_path {
            let text = std::fs::read_to_string(rules)
                .with_context(|| format!("cannot read rules file {}", rules.display()))?;
            config.engine.rules = DispatchRules::from_toml(&text)
                .with_context(|| format!("invalid rules file {}", rules.display()))?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Environment variables, `IOC_*`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = get("IOC_BROKERS") {
            self.kafka.brokers = v;
        }
        if let Some(v) = get("IOC_BIND") {
            self.gateway.bind = v
                .parse()
                .with_context(|| format!("IOC_BIND must be HOST:PORT, got {v:?}"))?;
        }
        if let Some(v) = get("IOC_JWT_SECRET") {
            self.gateway.jwt_secret = Some(v);
        }
        if let Some(v) = get("IOC_JWT_SECRET_FILE") {
            let secret = std::fs::read_to_string(&v)
                .with_context(|| format!("cannot read IOC_JWT_SECRET_FILE {v}"))?;
            self.gateway.jwt_secret = Some(secret.trim().to_string());
        }
        if let Some(v) = get("IOC_ZONES_PATH") {
            self.zones_path = PathBuf::from(v);
        }
        if let Some(v) = get("IOC_DASHBOARDS_DIR") {
            self.gateway.dashboards_dir = PathBuf::from(v);
        }
        if let Some(v) = get("IOC_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = get("IOC_DEDUPE_RETENTION_S") {
            self.engine.dedupe_retention_s = v.trim().parse().with_context(|| {
                format!("IOC_DEDUPE_RETENTION_S must be a whole number of seconds, got {v:?}")
            })?;
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides) {
        if let Some(b) = &o.brokers {
            self.kafka.brokers.clone_from(b);
        }
        if let Some(b) = o.bind {
            self.gateway.bind = b;
        }
        if let Some(z) = &o.zones_path {
            self.zones_path.clone_from(z);
        }
        if let Some(d) = &o.dashboards_dir {
            self.gateway.dashboards_dir.clone_from(d);
        }
        if let Some(s) = o.speed {
            self.simulator.speed = s;
        }
        if let Some(s) = o.seed {
            self.simulator.sim.seed = s;
        }
    }

    /// Checks every setting; errors name the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.kafka.brokers.trim().is_empty() {
            bail!("kafka.brokers must be HOST:PORT[,HOST:PORT], got an empty string");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!(
                "log_format must be \"text\" or \"json\", got {:?}",
                self.log_format
            );
        }
        if let Some(s) = &self.gateway.jwt_secret {
            if s.len() < 16 {
                bail!(
                    "gateway.jwt_secret must be at least 16 bytes, got {}",
                    s.len()
                );
            }
        }
        if self.gateway.history_len == 0 || self.gateway.client_queue == 0 {
            bail!("gateway.history_len and gateway.client_queue must be positive");
        }
        if self.gateway.max_connections_per_token == 0 {
            bail!("gateway.max_connections_per_token must be positive, got 0");
        }
        if !(self.simulator.speed.is_finite()
            && self.simulator.speed > 0.0
            && self.simulator.speed <= 3600.0)
        {
            bail!(
                "simulator.speed must be within (0, 3600], got {}",
                self.simulator.speed
            );
        }
        if !(1_000..=300_000).contains(&self.processor.session_timeout_ms) {
            bail!(
                "processor.session_timeout_ms must be within 1000..=300000, got {}",
                self.processor.session_timeout_ms
            );
        }
        if !(1..=10_000).contains(&self.processor.commit_interval_ms) {
            bail!(
                "processor.commit_interval_ms must be within 1..=10000, got {}",
                self.processor.commit_interval_ms
            );
        }
        if self.processor.max_in_flight == 0 {
            bail!("processor.max_in_flight must be positive");
        }
        let topics = self.topics.all();
        for (i, t) in topics.iter().enumerate() {
            if t.is_empty() {
                bail!("topic names must not be empty");
            }
            if topics[..i].contains(t) {
                bail!("topic {t:?} is configured twice");
            }
        }
        self.engine.validate().context("invalid engine settings")?;
        Ok(())
    }

    /// The JWT secret for `serve`: must be configured and not the demo one.
    pub fn production_secret(&self) -> anyhow::Result<String> {
        match &self.gateway.jwt_secret {
            Some(s) if s != DEMO_JWT_SECRET => Ok(s.clone()),
            Some(_) => bail!("gateway.jwt_secret is the demo secret: set IOC_JWT_SECRET to your own"),
            None => bail!("gateway.jwt_secret is not set: set IOC_JWT_SECRET (at least 16 bytes) or gateway.jwt_secret in the config file"),
        }
    }

    /// The JWT secret for `demo`: the configured one or the demo default.
    pub fn demo_secret(&self) -> String {
        self.gateway
            .jwt_secret
            .clone()
            .unwrap_or_else(|| DEMO_JWT_SECRET.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let err = toml::from_str::<Config>("[gateway]\nbnd = \"1.2.3.4:5\"\n").unwrap_err();
        assert!(err.to_string().contains("bnd"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_bad_env_is_a_clear_error() {
        let mut c: Config = toml::from_str("[kafka]\nbrokers = \"file:9092\"\n").unwrap();
        c.apply_env(|k| (k == "IOC_BROKERS").then(|| "env:9092".to_string()))
            .unwrap();
        assert_eq!(c.kafka.brokers, "env:9092");
        let err = c
            .apply_env(|k| (k == "IOC_BIND").then(|| "nonsense".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("IOC_BIND"), "{err}");
    }

    #[test]
    fn dedupe_retention_comes_from_file_then_env_and_is_validated() {
        assert_eq!(Config::default().engine.dedupe_retention_s, 604_800);
        let mut c: Config = toml::from_str("[engine]\ndedupe_retention_s = 86400\n").unwrap();
        assert_eq!(c.engine.dedupe_retention_s, 86_400);
        c.validate().unwrap();
        c.apply_env(|k| (k == "IOC_DEDUPE_RETENTION_S").then(|| "1209600".to_string()))
            .unwrap();
        assert_eq!(c.engine.dedupe_retention_s, 1_209_600);
        c.validate().unwrap();
        for bad in ["-1", "7d", ""] {
            let err = c
                .apply_env(|k| (k == "IOC_DEDUPE_RETENTION_S").then(|| bad.to_string()))
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("IOC_DEDUPE_RETENTION_S must be a whole number"),
                "{err}"
            );
        }
        c.apply_env(|k| (k == "IOC_DEDUPE_RETENTION_S").then(|| "0".to_string()))
            .unwrap();
        let err = format!("{:#}", c.validate().unwrap_err());
        assert!(
            err.contains("engine.dedupe_retention_s must be within 3600..=31536000"),
            "{err}"
        );
        let err = toml::from_str::<Config>("[engine]\ndedupe_retention_s = -1\n").unwrap_err();
        assert!(err.to_string().contains("dedupe_retention_s"), "{err}");
    }

    #[test]
    fn flags_override_env() {
        let mut c = Config::default();
        c.apply_env(|k| (k == "IOC_BROKERS").then(|| "env:9092".to_string()))
            .unwrap();
        c.apply_overrides(&Overrides {
            brokers: Some("flag:9092".into()),
            ..Overrides::default()
        });
        assert_eq!(c.kafka.brokers, "flag:9092");
    }

    #[test]
    fn validation_names_the_setting() {
        let c = Config {
            log_format: "xml".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("log_format"));
        let mut c = Config::default();
        c.gateway.jwt_secret = Some("short".into());
        assert!(c.validate().unwrap_err().to_string().contains("jwt_secret"));
        let mut c = Config::default();
        c.topics.dlq = c.topics.events.clone();
        assert!(c.validate().unwrap_err().to_string().contains("twice"));
        assert!(Config::default().production_secret().is_err());
    }
}
