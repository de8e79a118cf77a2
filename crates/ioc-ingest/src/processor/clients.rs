//! The Kafka clients of an owner session (the transactional producer, the
//! inputs' consumer assigned by hand) and what a failed transactional call
//! means for the session.

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{Ended, InputConsumer, ProcessorConfig, TXN_TIMEOUT};
use crate::IngestError;

/// The transactional producer's config: the shared producer defaults, the
/// `transactional.id`, and timeouts an operator may override. A delivery
/// may wait no longer than the transaction lives (librdkafka refuses
/// otherwise); a dead owner's open transaction holds back read_committed
/// readers until the coordinator aborts it, at most that long (a new owner
/// aborts it at once, in `init_transactions`).
pub(super) fn transactional_config(config: &ProcessorConfig) -> rdkafka::ClientConfig {
    let mut c = config.kafka.producer_config();
    if !config.exactly_once {
        return c;
    }
    let given = |k: &str| config.kafka.properties.contains_key(k);
    if !given("transaction.timeout.ms") {
        c.set("transaction.timeout.ms", "60000");
    }
    if !given("message.timeout.ms") {
        c.set("message.timeout.ms", "60000");
    }
    c.set("transactional.id", &config.transactional_id);
    c
}

/// The inputs' consumer: the group's committed offsets are read by it, but
/// it never joins (assigned by hand) and never commits (the transactions
/// do).
pub(super) fn input_consumer(config: &ProcessorConfig) -> Result<InputConsumer, IngestError> {
    Ok(config
        .kafka
        .consumer_config()
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create_with_context(config.kafka.context("processor consumer"))?)
}

/// Assigns every partition of the inputs from the group's committed
/// offsets (the beginning where none). Blocking.
pub(super) fn assign_inputs(c: &InputConsumer, topics: &[&str]) -> Result<usize, IngestError> {
    let mut all = TopicPartitionList::new();
    for t in topics {
        let md = c.fetch_metadata(Some(t), TXN_TIMEOUT)?;
        for topic in md.topics() {
            if let Some(e) = topic.error() {
                return Err(IngestError::Kafka(KafkaError::MetadataFetch(e.into())));
            }
            for p in topic.partitions() {
                all.add_partition(topic.name(), p.id());
            }
        }
    }
    let committed = c.committed_offsets(all, TXN_TIMEOUT)?;
    let mut from = TopicPartitionList::with_capacity(committed.count());
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        from.add_partition_offset(e.topic(), e.partition(), offset)?;
    }
    let n = from.count();
    c.assign(&from)?;
    Ok(n)
}

/// Runs a blocking Kafka call off the runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(KafkaError::Canceled)
            .inspect_err(|_| tracing::error!(error = %e, "blocking kafka call panicked"))
    })
}

/// What a failed transactional call means for the session.
pub(super) fn judge(what: &str, e: &KafkaError) -> Ended {
    let fenced = match e {
        KafkaError::Transaction(r) => {
            r.is_fatal()
                || matches!(
                    r.code(),
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                )
        }
        _ => false,
    };
    if unsupported(e) {
        Ended::Unsupported(format!("{what}: {e}"))
    } else if fenced {
        Ended::Fenced(format!("{what}: {e}"))
    } else {
        Ended::Rebuild(format!("{what}: {e}"))
    }
}

/// The broker lacks the API (EndTxn on Tansu 0.6): librdkafka calls that
/// retriable, but no retry can make it work.
fn unsupported(e: &KafkaError) -> bool {
    matches!(e, KafkaError::Transaction(r) if r.code() == RDKafkaErrorCode::UnsupportedFeature)
}

/// A transactional call worth making again as it is.
pub(super) fn retriable(e: &KafkaError) -> bool {
    !unsupported(e) && matches!(e, KafkaError::Transaction(r) if r.is_retriable())
}
