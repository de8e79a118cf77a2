//! What the processor writes: an input's (or a tick's) events as one batch
//! with its cause, or its dead letter, each under the input's ticket.

use std::time::Duration;

use base64::Engine as _;
use ioc_model::{DeadLetter, OutputEvent, Timestamp, Topics};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;

use super::meters::Meters;
use super::TxnProducer;
use crate::acks::SharedTracker;

/// Produces the dead letter of an input that cannot be applied: its
/// original bytes (up to a bound), where it came from and why.
pub(super) async fn dead_letter(
    producer: &TxnProducer,
    acks: &SharedTracker,
    ticket: u64,
    topics: &Topics,
    msg: &BorrowedMessage<'_>,
    reason: String,
) {
    let payload = msg.payload().unwrap_or_default();
    let key = msg
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .map(str::to_string);
    let letter = DeadLetter {
        original_base64: base64::engine::general_purpose::STANDARD
            .encode(&payload[..payload.len().min(DeadLetter::MAX_ORIGINAL_BYTES)]),
        original_size: payload.len() as u64,
        original_truncated: payload.len() > DeadLetter::MAX_ORIGINAL_BYTES,
        key: key.clone(),
        topic: msg.topic().to_string(),
        partition: msg.partition(),
        offset: msg.offset(),
        reason,
        ts: Timestamp::now(),
    };
    let bytes = serde_json::to_vec(&letter).unwrap_or_default();
    let record_key = key.unwrap_or_default();
    send(
        producer,
        acks,
        ticket,
        &topics.dlq,
        &record_key,
        &bytes,
        None,
    )
    .await;
}

/// Produces the outputs of one input (or one clock tick) as a batch under
/// its ticket: every event carries the input's dedupe key in the
/// `ioc-cause` header, and the last one carries `ioc-batch-end`. Recovery
/// uses both: it ignores a batch cut short by a crash (the input is
/// redelivered and re-emits it, with the same seqs), and remembers every
/// cause as applied.
pub(super) async fn produce_events(
    producer: &TxnProducer,
    acks: &SharedTracker,
    ticket: u64,
    topics: &Topics,
    events: &[OutputEvent],
    cause: &str,
    meters: &Meters,
) {
    let mut bytes = Vec::with_capacity(512);
    for (i, ev) in events.iter().enumerate() {
        bytes.clear();
        if serde_json::to_writer(&mut bytes, ev).is_err() {
            bytes.clear();
        }
        let mut headers = OwnedHeaders::new_with_capacity(2).insert(Header {
            key: crate::events::CAUSE_HEADER,
            value: Some(cause),
        });
        if i + 1 == events.len() {
            headers = headers.insert(Header {
                key: crate::events::BATCH_END_HEADER,
                value: Some("1"),
            });
        }
        send(
            producer,
            acks,
            ticket,
            &topics.events,
            ev.entity_id(),
            &bytes,
            Some(headers),
        )
        .await;
    }
    meters.events_produced.increment(events.len() as u64);
}

/// Enqueues one record under `ticket`, waiting (not dropping) while
/// librdkafka's queue is full. Any other refusal fails the ticket: it
/// counts as a failed delivery, so offsets stop there instead of the loop
/// spinning on it.
pub(super) async fn send(
    producer: &TxnProducer,
    acks: &SharedTracker,
    ticket: u64,
    topic: &str,
    key: &str,
    payload: &[u8],
    mut headers: Option<OwnedHeaders>,
) {
    // Counted before the send: the delivery report may come first.
    acks.lock().add_output(ticket);
    loop {
        let mut record = BaseRecord::with_opaque_to(topic, ticket as usize)
            .key(key)
            .payload(payload);
        if let Some(h) = headers.take() {
            record = record.headers(h);
        }
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                headers = record.headers;
                tracing::debug!("producer queue full, waiting");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                tracing::error!(topic, error = %e, "output refused by the producer");
                acks.lock().fail(ticket, e.to_string());
                acks.failed.cancel();
                return;
            }
        }
    }
}
