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
/// Processor sessions rebuilt from the output log (its consumer stalled,
/// a delivery or a commit failed): the open transaction aborted, fresh
/// consumer and producer.
pub const CONSUMER_REJOINS: &str = "ioc_consumer_rejoins_total";
/// Transactions committed by this processor (outputs and input offsets).
pub const TRANSACTIONS: &str = "ioc_processor_transactions_total";
/// Times this processor was fenced by a newer owner of the output log.
pub const FENCED: &str = "ioc_processor_fenced_total";
/// 1 while this processor owns the output log, 0 on standby.
pub const OWNER: &str = "ioc_processor_owner";

/// Registers the HELP text of every metric above with whatever recorder is
/// installed.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        INGEST_MESSAGES,
        "input messages handled, by topic kind and outcome (ok, dlq)"
    );
    describe_counter!(
        DLQ_MESSAGES,
        "dead letters produced, by topic kind of the input"
    );
    describe_counter!(EVENTS_PRODUCED, "output events produced to the output log");
    describe_histogram!(
        ENGINE_APPLY_SECONDS,
        "seconds spent applying one input to the engine"
    );
    describe_counter!(
        PRODUCE_ERRORS,
        "deliveries that failed (the open transaction is aborted)"
    );
    describe_gauge!(
        LAST_SEQ,
        "seq of the last output event produced by this processor"
    );
    describe_counter!(DUPLICATES, "inputs ignored as redeliveries");
    describe_gauge!(SEEN_IDS, "dedupe ids the engine remembers now");
    describe_counter!(RECOMMENDATIONS, "dispatch recommendations emitted");
    describe_counter!(
        OFFSETS_STORED,
        "inputs fully handled: their transaction committed"
    );
    describe_counter!(
        EVENTS_READ,
        "events read from the output log by the gateway feed"
    );
    describe_gauge!(
        BROKER_STALE,
        "1 while the broker is unreachable from the events reader"
    );
    describe_gauge!(
        CONSUMER_LAG,
        "input messages not yet consumed, over the processor's assignment"
    );
    describe_counter!(
        CONSUMER_REJOINS,
        "processor sessions rebuilt from the output log (stall, failed delivery or commit)"
    );
    describe_counter!(TRANSACTIONS, "transactions committed by this processor");
    describe_counter!(
        FENCED,
        "times this processor was fenced by a newer owner of the output log"
    );
    describe_gauge!(
        OWNER,
        "1 while this processor owns the output log, 0 on standby"
    );
}
