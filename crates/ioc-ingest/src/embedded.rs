//! The embedded Kafka-protocol broker: librdkafka's mock cluster on
//! loopback, with the topics created. Used by `ioc demo`, `ioc broker` and
//! the tests, so they speak real Kafka protocol to a real (in-process)
//! broker that outside tools such as `kcat` can reach too.

use ioc_model::Topics;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::RDKafkaRespErr;

use crate::IngestError;

/// A running embedded broker. Dropping it stops the broker.
///
/// Not `Send`: librdkafka's mock cluster handle must stay on the thread
/// that created it, so keep it in `main` (or the test) and share only its
/// bootstrap address.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap_servers())
            .finish()
    }
}

/// Partitions per topic: inputs are keyed and spread; the output log has
/// one partition so its `seq` is a single global order.
pub fn partitions_for(topics: &Topics, topic: &str) -> i32 {
    if topic == topics.events || topic == topics.dlq {
        1
    } else if topic == topics.positions {
        6
    } else {
        3
    }
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster on a random loopback port and creates
    /// every topic.
    pub fn start(topics: &Topics) -> Result<Self, IngestError> {
        let cluster = MockCluster::new(1).map_err(|e| IngestError::Embedded(e.to_string()))?;
        for t in topics.all() {
            cluster
                .create_topic(t, partitions_for(topics, t), 1)
                .map_err(|e| IngestError::Embedded(format!("create topic {t}: {e}")))?;
        }
        Ok(Self { cluster })
    }

    /// Creates one more topic (e.g. a scratch topic of a benchmark).
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), IngestError> {
        self.cluster
            .create_topic(name, partitions, 1)
            .map_err(|e| IngestError::Embedded(format!("create topic {name}: {e}")))
    }

    /// `host:port` to give to clients.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Takes the broker down (connections refused) to simulate an outage.
    pub fn broker_down(&self) -> Result<(), IngestError> {
        self.cluster
            .broker_down(1)
            .map_err(|e| IngestError::Embedded(e.to_string()))
    }

    /// Makes every request about `topic` fail (as if it were unavailable),
    /// until [`EmbeddedBroker::heal_topic`].
    pub fn fail_topic(&self, topic: &str) -> Result<(), IngestError> {
        self.cluster
            .topic_error(
                topic,
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            )
            .map_err(|e| IngestError::Embedded(e.to_string()))
    }

    /// Undoes [`EmbeddedBroker::fail_topic`].
    pub fn heal_topic(&self, topic: &str) -> Result<(), IngestError> {
        self.cluster
            .topic_error(topic, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
            .map_err(|e| IngestError::Embedded(e.to_string()))
    }

    /// Brings the broker back after [`EmbeddedBroker::broker_down`].
    pub fn broker_up(&self) -> Result<(), IngestError> {
        self.cluster
            .broker_up(1)
            .map_err(|e| IngestError::Embedded(e.to_string()))
    }
}
