//! Readers of the output log `ioc.events`.
//!
//! * [`read_all_events`] reads the log from the beginning to its current end
//!   (the processor's recovery: the engine is rebuilt from what it wrote).
//! * [`run_events_reader`] follows the log forever and hands each event to
//!   the push gateway, tells it when it has caught up (readiness) and when
//!   the broker is unreachable (screens show STALE).

use std::sync::Arc;
use std::time::Duration;

use ioc_model::OutputEvent;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::metrics_names as metric;
use crate::{IngestError, KafkaSettings};

/// What the events reader tells its owner.
pub trait EventsReaderHooks: Send + Sync + 'static {
    /// One event, in log order.
    fn on_event(&self, ev: OutputEvent);
    /// The reader reached the end of the log as it was at start.
    fn on_caught_up(&self);
    /// The broker became unreachable (`true`) or reachable again (`false`).
    fn on_broker_stale(&self, stale: bool);
}

fn reader_config(kafka: &KafkaSettings) -> rdkafka::ClientConfig {
    let mut c = kafka.consumer_config();
    // No group membership: the reader assigns partitions itself and never
    // commits; a group id is still required by librdkafka's consumer.
    c.set("group.id", "ioc-events-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    c
}

/// Reads the whole output log (partition 0) as it is now. Blocking: call it
/// from `spawn_blocking` or before the runtime is busy.
pub fn read_all_events(
    kafka: &KafkaSettings,
    topic: &str,
) -> Result<Vec<OutputEvent>, IngestError> {
    let consumer: BaseConsumer = reader_config(kafka).create()?;
    let (low, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(30))?;
    let mut events = Vec::with_capacity(usize::try_from(high - low).unwrap_or(0));
    if high <= low {
        return Ok(events);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))?;
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while std::time::Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        let offset = msg.offset();
        let ev: OutputEvent = serde_json::from_slice(msg.payload().unwrap_or_default())
            .map_err(|e| IngestError::CorruptLog(format!("{topic} offset {offset}: {e}")))?;
        events.push(ev);
        if offset + 1 >= high {
            return Ok(events);
        }
    }
    Err(IngestError::CorruptLog(format!(
        "timed out reading {topic} up to offset {high}"
    )))
}

/// Follows the output log from the beginning until cancelled.
pub async fn run_events_reader(
    kafka: KafkaSettings,
    topic: String,
    hooks: Arc<dyn EventsReaderHooks>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let consumer: StreamConsumer = reader_config(&kafka).create()?;
    let probe: Arc<BaseConsumer> = Arc::new(reader_config(&kafka).create()?);
    let high_at_start = {
        let (probe, topic) = (Arc::clone(&probe), topic.clone());
        tokio::task::spawn_blocking(move || {
            probe.fetch_watermarks(&topic, 0, Duration::from_secs(30))
        })
        .await
        .map_err(|e| IngestError::Embedded(e.to_string()))??
        .1
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut caught_up = high_at_start == 0;
    if caught_up {
        hooks.on_caught_up();
    }

    // Broker liveness: a cheap metadata round trip every 2 s.
    let watch = {
        let (hooks, topic, shutdown) = (Arc::clone(&hooks), topic.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut stale = false;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                let (p, t) = (Arc::clone(&probe), topic.clone());
                let ok = tokio::task::spawn_blocking(move || {
                    p.fetch_watermarks(&t, 0, Duration::from_secs(3)).is_ok()
                })
                .await
                .unwrap_or(false);
                if ok == stale {
                    stale = !ok;
                    metrics::gauge!(metric::BROKER_STALE).set(if stale { 1.0 } else { 0.0 });
                    tracing::warn!(stale, "broker reachability changed");
                    hooks.on_broker_stale(stale);
                }
            }
        })
    };

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "events reader error");
                        continue;
                    }
                };
                let offset = msg.offset();
                match serde_json::from_slice::<OutputEvent>(msg.payload().unwrap_or_default()) {
                    Ok(ev) => {
                        metrics::counter!(metric::EVENTS_READ).increment(1);
                        hooks.on_event(ev);
                    }
                    Err(e) => tracing::error!(offset, error = %e, "unreadable event in the output log, skipped"),
                }
                if !caught_up && offset + 1 >= high_at_start {
                    caught_up = true;
                    hooks.on_caught_up();
                }
            }
        }
    }
    watch.abort();
    Ok(())
}
