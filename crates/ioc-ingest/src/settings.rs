//! Connection settings shared by every Kafka client of the process, with
//! pass-through of any librdkafka property (TLS, SASL, timeouts).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::client::{ConnectionWatch, KafkaContext};

/// How to reach the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// Extra librdkafka properties for every client (`security.protocol`,
    /// `sasl.mechanisms`, `ssl.ca.location`, ...).
    pub properties: BTreeMap<String, String>,
    /// Where every client made from these settings (and their clones)
    /// records a failure of authentication or TLS (see [`crate::client`]).
    #[serde(skip)]
    pub watch: ConnectionWatch,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self::new("127.0.0.1:9092")
    }
}

/// Defaults of every client. librdkafka backs off reconnecting to a broker
/// exponentially up to `reconnect.backoff.max.ms`, 10 s by default: after an
/// outage each client (processor consumer, producers, the events reader and
/// its probe) found the broker again up to 10 s apart, and a call waited
/// that long to reach the screens. 1 s keeps the retry of a cluster that is
/// away to one connection attempt a second per client and broker.
const COMMON_DEFAULTS: &[(&str, &str)] = &[("reconnect.backoff.max.ms", "1000")];

impl KafkaSettings {
    /// Settings for a bootstrap address and nothing else.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
            watch: ConnectionWatch::default(),
        }
    }

    /// The context for one client (`client` names it in the log): its
    /// errors are logged, and its unfixable connection failures recorded
    /// in [`KafkaSettings::watch`].
    pub fn context(&self, client: &'static str) -> KafkaContext {
        KafkaContext::new(client, self.watch.clone())
    }

    /// A client config with the brokers, the defaults of every client and
    /// the pass-through properties set.
    pub fn client_config(&self) -> ClientConfig {
        self.with_defaults(&[])
    }

    /// Our defaults first, then the configured properties, so an operator
    /// can override any of them.
    fn with_defaults(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in COMMON_DEFAULTS.iter().chain(defaults) {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer config: `acks=all`, no duplicates on retry.
    pub fn producer_config(&self) -> ClientConfig {
        self.with_defaults(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "2"),
            ("message.timeout.ms", "120000"),
            ("queue.buffering.max.messages", "1000000"),
        ])
    }

    /// A low-latency consumer config: a fetch returns after at most 5 ms
    /// even when little data is waiting (librdkafka's default is 500 ms,
    /// which the embedded broker honours to the letter, and which would be
    /// our latency floor; a ping crosses two consumers). 5 ms took the city
    /// load's p99 from 31 to 21 ms at no measurable cost in capacity
    /// (BENCHMARKS.md); a real broker answers as soon as data arrives.
    pub fn consumer_config(&self) -> ClientConfig {
        self.with_defaults(&[
            ("fetch.wait.max.ms", "5"),
            ("enable.partition.eof", "false"),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acks::AckContext;
    use rdkafka::consumer::{BaseConsumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, ThreadedProducer};

    fn secure(mechanism: &str, ca: &str) -> KafkaSettings {
        let mut k = KafkaSettings::new("kafka-1:9093");
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", mechanism),
            ("sasl.username", "ioc"),
            ("sasl.password", "not-a-real-secret"),
            ("ssl.ca.location", ca),
        ] {
            k.properties.insert(key.into(), value.into());
        }
        k
    }

    /// The clients are created, not only configured: librdkafka refuses
    /// `SASL_SSL` at creation when built without TLS, a SCRAM mechanism
    /// without OpenSSL, and reads the CA file then (so a missing one fails
    /// here). No broker is needed: creation does not connect.
    /// (A runtime, because a `StreamConsumer` spawns its waker task.)
    #[tokio::test]
    async fn tls_and_sasl_clients_are_created_with_every_mechanism() {
        let ca = std::env::temp_dir().join(format!("ioc-settings-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, TEST_CA_PEM).unwrap();
        let ca_path = ca.to_str().unwrap();
        for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
            let mut k = secure(mechanism, ca_path);
            // An operator may also override one of our defaults.
            k.properties.insert("fetch.wait.max.ms".into(), "50".into());
            let consumer = k.consumer_config().set("group.id", "t").clone();
            assert_eq!(consumer.get("fetch.wait.max.ms"), Some("50"));
            let native = consumer.create_native_config().unwrap();
            assert_eq!(native.get("sasl.mechanisms").unwrap(), mechanism);
            assert_eq!(native.get("security.protocol").unwrap(), "sasl_ssl");
            let _: BaseConsumer<KafkaContext> = consumer
                .create_with_context(k.context("test consumer"))
                .unwrap_or_else(|e| panic!("{mechanism} consumer: {e}"));
            let _: StreamConsumer<KafkaContext> = consumer
                .create_with_context(k.context("test stream consumer"))
                .unwrap_or_else(|e| panic!("{mechanism} stream consumer: {e}"));
            let producer = k.producer_config();
            assert_eq!(producer.get("enable.idempotence"), Some("true"));
            assert_eq!(producer.get("acks"), Some("all"));
            let _: FutureProducer<KafkaContext> = producer
                .create_with_context(k.context("test producer"))
                .unwrap_or_else(|e| panic!("{mechanism} producer: {e}"));
            // The processor's producer, with its delivery-tracking context.
            let _: ThreadedProducer<AckContext> = producer
                .create_with_context(AckContext {
                    shared: Default::default(),
                    client: k.context("test processor producer"),
                })
                .unwrap_or_else(|e| panic!("{mechanism} processor producer: {e}"));
        }
        std::fs::remove_file(&ca).ok();

        let missing = secure("SCRAM-SHA-512", "/nonexistent/ioc-ca.pem");
        let err = missing
            .producer_config()
            .create_with_context::<_, FutureProducer<KafkaContext>>(missing.context("p"))
            .err()
            .expect("a CA file that does not exist fails at creation");
        assert!(err.to_string().contains("ssl.ca.location"), "{err}");
    }

    /// A throwaway self-signed CA certificate (made with `openssl req
    /// -x509`), only parsed, never trusted for anything.
    const TEST_CA_PEM: &str = include_str!("../tests/data/test-ca.pem");
}
