//! Metric names of the Kafka side, as constants: one place to read them,
//! no typos between emitter and dashboard. Labels are bounded (topic kind,
//! outcome), never ids.

/// Input messages handled, labels `topic` (calls|incidents|positions|units|commands) and `outcome` (ok|dlq).
pub const INGEST_MESSAGES: &str = "ioc_ingest_messages_total";
/// Dead letters produced, label `topic`.
pub const DLQ_MESSAGES: &str = "ioc_dlq_messages_total";
/// Output events produced to `ioc.events`.
pub const EVENTS_PRODUCED: &str = "ioc_events_produced_total";
/// Seconds spent in `Engine::apply` per input.
pub const ENGINE_APPLY_SECONDS: &str = "ioc_engine_apply_seconds";
/// Produce failures (the processor stops committing after one).
pub const PRODUCE_ERRORS: &str = "ioc_produce_errors_total";
/// Seq of the last output event produced by this processor.
pub const LAST_SEQ: &str = "ioc_processor_last_seq";
/// Inputs ignored as redeliveries.
pub const DUPLICATES: &str = "ioc_engine_duplicates_total";
/// Dedupe ids the engine remembers now (calls, incident reports, commands,
/// closed incidents within `engine.dedupe_retention_s`): a gauge that
/// should level off, not grow for ever.
pub const SEEN_IDS: &str = "ioc_engine_seen_ids";
/// Recommendations emitted.
pub const RECOMMENDATIONS: &str = "ioc_engine_recommendations_total";
/// Offsets stored (inputs fully handled).
pub const OFFSETS_STORED: &str = "ioc_ingest_offsets_stored_total";
/// Events read from `ioc.events` by the gateway feed.
pub const EVENTS_READ: &str = "ioc_events_read_total";
/// 1 while the broker is unreachable from the events reader.
pub const BROKER_STALE: &str = "ioc_broker_stale";
/// Messages not yet consumed by the processor, summed over its assignment.
pub const CONSUMER_LAG: &str = "ioc_consumer_lag";
/// Times the processor left and rejoined its consumer group because its
/// consumer stalled (inputs waiting, none delivered, nothing in flight).
pub const CONSUMER_REJOINS: &str = "ioc_consumer_rejoins_total";
