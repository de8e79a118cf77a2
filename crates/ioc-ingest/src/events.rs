//! Readers of the output log `ioc.events`.
//!
//! * [`read_all_events`] reads the log from the beginning to its current end
//!   (the processor's recovery: the engine is rebuilt from what it wrote).
//! * [`run_events_reader`] follows the log forever and hands each event to
//!   the push gateway, tells it when it has caught up (readiness) and when
//!   the broker is unreachable (screens show STALE).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ioc_model::{OutputEvent, Timestamp};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::client::KafkaContext;
use crate::metrics_names as metric;
use crate::{IngestError, KafkaSettings};

/// What the events reader tells its owner.
pub trait EventsReaderHooks: Send + Sync + 'static {
    /// One event, in log order.
    fn on_event(&self, ev: OutputEvent);
    /// One event with its payload as read from the log (`json` is its
    /// serialization), for a consumer that can reuse the bytes instead of
    /// serializing again. Defaults to [`EventsReaderHooks::on_event`].
    fn on_event_json(&self, ev: OutputEvent, json: &str) {
        let _ = json;
        self.on_event(ev);
    }
    /// The reader reached the end of the log as it was at start.
    fn on_caught_up(&self);
    /// The broker became unreachable (`true`) or reachable again (`false`).
    fn on_broker_stale(&self, stale: bool);
}

fn reader_config(kafka: &KafkaSettings) -> rdkafka::ClientConfig {
    let mut c = kafka.consumer_config();
    // No group membership: the reader assigns partitions itself and never
    // commits; a group id is still required by librdkafka's consumer.
    // Committed events only: an aborted transaction's events are re-emitted
    // by the next owner with the same seqs. The end of the partition is
    // told by the fetches (partition EOF), not by ListOffsets, which a
    // broker may under-report (Tansu 0.6 does after a multi-record write).
    c.set("group.id", "ioc-events-reader")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    c
}

/// Watermarks of partition 0 of `topic`, asked in short slices: between two
/// the consumer is polled, which serves librdkafka's error callback, and a
/// failure of authentication or TLS that it recorded ends the wait at once,
/// instead of after `timeout` with "AllBrokersDown" (see [`crate::client`]).
fn watermarks(
    consumer: &BaseConsumer<KafkaContext>,
    topic: &str,
    timeout: Duration,
) -> Result<(i64, i64), IngestError> {
    let deadline = Instant::now() + timeout;
    loop {
        let asked = consumer.fetch_watermarks(topic, 0, Duration::from_millis(500));
        // Nothing is assigned: this only serves queued events (errors).
        let _ = consumer.poll(Duration::ZERO);
        if let Some(failure) = consumer.context().watch().failure() {
            return Err(IngestError::Connection(failure));
        }
        match asked {
            Ok(w) => return Ok(w),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => {}
        }
    }
}

/// Reaches the cluster as every reader does and reads the output log's
/// watermarks: refused credentials or an untrusted broker certificate end
/// it within a second, with the error naming the setting. Blocking.
pub fn check_connection(kafka: &KafkaSettings, topic: &str) -> Result<(), IngestError> {
    let consumer: BaseConsumer<KafkaContext> =
        reader_config(kafka).create_with_context(kafka.context("connection check"))?;
    watermarks(&consumer, topic, Duration::from_secs(30)).map(|_| ())
}

/// Header naming the input an output event came from (its dedupe key, or
/// `topic:partition:offset`, or `tick`).
pub const CAUSE_HEADER: &str = "ioc-cause";
/// Header on the last event of one input's outputs.
pub const BATCH_END_HEADER: &str = "ioc-batch-end";

/// The output log as recovery needs it.
#[derive(Debug, Default)]
pub struct RecoveredLog {
    /// Events of complete batches, each seq once, in order.
    pub events: Vec<OutputEvent>,
    /// Causes of those events: inputs whose effects are all in the log,
    /// with the time of the first event each caused (when the engine
    /// recorded it, for the dedupe retention).
    pub causes: Vec<(String, Timestamp)>,
    /// Events after the last complete batch (a crash cut the batch short);
    /// the input will be redelivered and re-emit them with the same seqs.
    pub dropped_tail: usize,
    /// Events whose seq had already been seen (a re-emitted batch).
    pub duplicates: usize,
}

impl RecoveredLog {
    /// Builds the recovery view from the log in offset order: (event,
    /// cause header, batch-end header).
    pub fn from_records(records: Vec<(OutputEvent, Option<String>, bool)>) -> Self {
        let mut out = RecoveredLog::default();
        // A log written without batch markers (older versions) is complete.
        let any_marker = records.iter().any(|r| r.2);
        let complete = if any_marker {
            records.iter().rposition(|r| r.2).map_or(0, |i| i + 1)
        } else {
            records.len()
        };
        out.dropped_tail = records.len() - complete;
        let mut last_seq = 0;
        for (ev, cause, _) in records.into_iter().take(complete) {
            if ev.seq <= last_seq {
                out.duplicates += 1;
                continue;
            }
            last_seq = ev.seq;
            if let Some(c) = cause {
                if out.causes.last().map(|l| &l.0) != Some(&c) {
                    out.causes.push((c, ev.ts));
                }
            }
            out.events.push(ev);
        }
        out
    }
}

/// Reads the whole output log (partition 0) as committed now, to the end
/// that the fetches report (partition EOF). Blocking: call it from
/// `spawn_blocking` or before the runtime is busy. The processor calls it
/// after `init_transactions` fenced every other writer, so the end it reads
/// to is final.
pub fn read_all_events(kafka: &KafkaSettings, topic: &str) -> Result<RecoveredLog, IngestError> {
    let consumer: BaseConsumer<KafkaContext> =
        reader_config(kafka).create_with_context(kafka.context("recovery reader"))?;
    // A size hint only: whatever ListOffsets says, the fetches decide.
    let (low, high) = watermarks(&consumer, topic, Duration::from_secs(30))?;
    let mut records = Vec::with_capacity(usize::try_from(high - low).unwrap_or(0));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while std::time::Instant::now() < deadline {
        let polled = consumer.poll(Duration::from_millis(500));
        if let Some(failure) = kafka.watch.failure() {
            return Err(IngestError::Connection(failure));
        }
        let msg = match polled {
            None => continue,
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {
                return Ok(RecoveredLog::from_records(records));
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(msg)) => msg,
        };
        let offset = msg.offset();
        let ev: OutputEvent = serde_json::from_slice(msg.payload().unwrap_or_default())
            .map_err(|e| IngestError::CorruptLog(format!("{topic} offset {offset}: {e}")))?;
        let mut cause = None;
        let mut batch_end = false;
        if let Some(headers) = msg.headers() {
            for h in headers.iter() {
                match h.key {
                    CAUSE_HEADER => {
                        cause = h
                            .value
                            .and_then(|v| std::str::from_utf8(v).ok())
                            .map(str::to_string)
                    }
                    BATCH_END_HEADER => batch_end = true,
                    _ => {}
                }
            }
        }
        records.push((ev, cause, batch_end));
    }
    Err(IngestError::CorruptLog(format!(
        "timed out reading {topic} to its end ({} events read, {high} reported)",
        records.len()
    )))
}

/// Follows the output log from the beginning until cancelled.
pub async fn run_events_reader(
    kafka: KafkaSettings,
    topic: String,
    hooks: Arc<dyn EventsReaderHooks>,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let consumer: StreamConsumer<KafkaContext> =
        reader_config(&kafka).create_with_context(kafka.context("events reader"))?;
    // The probe reads nothing: no end-of-partition events for it.
    let probe: Arc<BaseConsumer<KafkaContext>> = Arc::new(
        reader_config(&kafka)
            .set("enable.partition.eof", "false")
            .create_with_context(kafka.context("events reader probe"))?,
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    // Caught up at the first end of the partition the fetches report.
    let mut caught_up = false;

    // Broker liveness: a cheap metadata round trip every 2 s, or events
    // read since the last one. The probe is a client of its own, with its own
    // reconnect backoff: events can flow again before it answers, and a
    // screen must not read STALE over a live picture (the cause of the
    // outage test's failures, issue 12). Events read count as an answer,
    // both ways: the loop below clears the mark at once when one arrives.
    let stale = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let set_stale = {
        let (hooks, stale) = (Arc::clone(&hooks), Arc::clone(&stale));
        move |now: bool, why: &'static str| {
            if stale.swap(now, std::sync::atomic::Ordering::AcqRel) != now {
                metrics::gauge!(metric::BROKER_STALE).set(if now { 1.0 } else { 0.0 });
                tracing::warn!(stale = now, why, "broker reachability changed");
                hooks.on_broker_stale(now);
            }
        }
    };
    let watch = {
        let (topic, shutdown, read, set_stale) = (
            topic.clone(),
            shutdown.clone(),
            Arc::clone(&read),
            set_stale.clone(),
        );
        tokio::spawn(async move {
            let mut read_before = read.load(std::sync::atomic::Ordering::Relaxed);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                let (p, t) = (Arc::clone(&probe), topic.clone());
                let answered = tokio::task::spawn_blocking(move || {
                    let ok = p.fetch_watermarks(&t, 0, Duration::from_secs(3)).is_ok();
                    // Serves the probe's error callback (and empties its queue).
                    let _ = p.poll(Duration::ZERO);
                    ok
                })
                .await
                .unwrap_or(false);
                let read_now = read.load(std::sync::atomic::Ordering::Relaxed);
                let flowed = read_now != read_before;
                read_before = read_now;
                if answered || flowed {
                    set_stale(
                        false,
                        if answered {
                            "probe answered"
                        } else {
                            "events flow"
                        },
                    );
                } else {
                    set_stale(true, "probe unanswered and no event read");
                }
            }
        })
    };

    let events_read = metrics::counter!(metric::EVENTS_READ);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = consumer.recv() => {
                let msg = match msg {
                    Ok(m) => m,
                    Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {
                        if !caught_up {
                            caught_up = true;
                            hooks.on_caught_up();
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "events reader error");
                        continue;
                    }
                };
                let offset = msg.offset();
                read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if stale.load(std::sync::atomic::Ordering::Relaxed) {
                    set_stale(false, "events flow");
                }
                let payload = msg.payload().unwrap_or_default();
                match serde_json::from_slice::<OutputEvent>(payload) {
                    Ok(ev) => {
                        events_read.increment(1);
                        // Valid JSON is valid UTF-8.
                        match std::str::from_utf8(payload) {
                            Ok(json) => hooks.on_event_json(ev, json),
                            Err(_) => hooks.on_event(ev),
                        }
                    }
                    Err(e) => tracing::error!(offset, error = %e, "unreadable event in the output log, skipped"),
                }
            }
        }
    }
    watch.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ioc_model::{EventBody, Timestamp, UnitKind, UnitStatus, UnitView};

    fn ev(seq: u64) -> OutputEvent {
        OutputEvent {
            seq,
            ts: Timestamp::from_unix_millis(seq as i64 * 1000),
            district: None,
            body: EventBody::UnitUpdated(UnitView {
                unit_id: format!("u{seq}"),
                kind: UnitKind::Police,
                status: UnitStatus::Available,
                position: None,
                district: None,
                station: None,
                home_district: None,
                incident_id: None,
                speed_kmh: None,
                heading_deg: None,
                last_fix: None,
            }),
        }
    }

    fn c(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn a_batch_cut_short_by_a_crash_is_left_for_redelivery() {
        let log = RecoveredLog::from_records(vec![
            (ev(1), c("call:a"), false),
            (ev(2), c("call:a"), true),
            (ev(3), c("call:b"), false), // crash before seq 4 was written
        ]);
        let seqs: Vec<u64> = log.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        // Each cause with the time of the first event it caused.
        let t = Timestamp::from_unix_millis;
        assert_eq!(log.causes, vec![("call:a".to_string(), t(1000))]);
        assert_eq!(log.dropped_tail, 1);
    }

    #[test]
    fn a_re_emitted_batch_is_counted_once() {
        let log = RecoveredLog::from_records(vec![
            (ev(1), c("call:a"), true),
            (ev(2), c("call:b"), false),
            // restart: call:b redelivered, its batch re-emitted whole
            (ev(2), c("call:b"), false),
            (ev(3), c("call:b"), true),
        ]);
        let seqs: Vec<u64> = log.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(log.duplicates, 1);
        let t = Timestamp::from_unix_millis;
        assert_eq!(
            log.causes,
            vec![
                ("call:a".to_string(), t(1000)),
                ("call:b".to_string(), t(2000))
            ]
        );
        assert_eq!(log.dropped_tail, 0);
    }

    #[test]
    fn a_log_without_markers_is_complete() {
        let log = RecoveredLog::from_records(vec![(ev(1), None, false), (ev(2), None, false)]);
        assert_eq!(log.events.len(), 2);
        assert_eq!(log.dropped_tail, 0);
    }
}
