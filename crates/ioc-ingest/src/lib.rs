//! Kafka adapters around the pure engine: the embedded broker, the ingest
//! loop (decode → validate → engine → `ioc.events` / `ioc.dlq` → offsets),
//! and the reader of `ioc.events` that feeds the push gateway.
//!
//! Delivery semantics: exactly once into the output log. An input's outputs
//! (events or its dead letter) and its offset are committed in one Kafka
//! transaction by the one processor that holds the output log's lease
//! ([`ownership`]); readers see committed outputs only. An aborted
//! transaction's inputs are consumed again and re-emit the same events.

mod acks;
mod client;
mod embedded;
mod events;
mod health;
pub mod metrics_names;
pub mod ownership;
mod processor;
mod settings;

pub use crate::client::{ConnectionFailure, ConnectionWatch, KafkaContext};
pub use crate::embedded::EmbeddedBroker;
pub use crate::events::{
    check_connection, read_all_events, run_events_reader, EventsReaderHooks, RecoveredLog,
    BATCH_END_HEADER, CAUSE_HEADER,
};

pub use crate::processor::{
    run_processor, ProcessorConfig, ProcessorStatus, Restore, STALLED_AFTER_S,
};
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
    #[error("the broker does not support transactions ({0}): set processor.exactly_once = false to run on it, without fencing")]
    NoTransactions(String),
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The broker refused the connection as configured (credentials, TLS).
    #[error(transparent)]
    Connection(#[from] ConnectionFailure),
}
