//! Kafka adapters around the pure engine: the embedded broker, the ingest
//! loop (decode → validate → engine → `ioc.events` / `ioc.dlq` → offsets),
//! and the reader of `ioc.events` that feeds the push gateway.
//!
//! Delivery semantics: at-least-once from Kafka. An input's offset is stored
//! only after every output it caused (events or its dead letter) has been
//! acknowledged by the broker, strictly in input order; librdkafka commits
//! stored offsets. Redelivered inputs are deduplicated by the engine.

mod acks;
mod client;
mod embedded;
mod events;
pub mod metrics_names;
mod processor;
mod settings;

pub use crate::client::{ConnectionFailure, ConnectionWatch, KafkaContext};
pub use crate::embedded::EmbeddedBroker;
pub use crate::events::{
    read_all_events, run_events_reader, EventsReaderHooks, RecoveredLog, BATCH_END_HEADER,
    CAUSE_HEADER,
};

pub use crate::processor::{run_processor, ProcessorConfig, ProcessorStatus};
pub use crate::settings::KafkaSettings;

/// Errors of the Kafka adapters.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("embedded broker: {0}")]
    Embedded(String),
    #[error("delivery to {topic} failed, offsets no longer advance: {reason}")]
    Delivery { topic: String, reason: String },
    #[error("corrupt output log: {0}")]
    CorruptLog(String),
    /// The broker refused the connection as configured (credentials, TLS).
    #[error(transparent)]
    Connection(#[from] ConnectionFailure),
}
