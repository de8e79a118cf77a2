//! The frames the hub sends, built by hand around already serialized
//! events so that one event is serialized once for every subscriber.

use axum::extract::ws::Utf8Bytes;
use serde_json::json;

/// `{"op":"event",...}` around an already serialized event.
pub(super) fn event_frame(
    channel_json: &str,
    seq: u64,
    prev_seq: u64,
    event_json: &str,
) -> Utf8Bytes {
    // Sized once and filled by hand: `format!` grew the string several
    // times per frame, on the hottest path of the gateway.
    // The fixed text is 53 bytes, each number up to 20 digits: 93 at most
    // (64 had a seven-digit seq pair reallocate the frame).
    let mut frame = String::with_capacity(96 + channel_json.len() + event_json.len());
    frame.push_str(r#"{"op":"event","channel":"#);
    frame.push_str(channel_json);
    frame.push_str(r#","seq":"#);
    frame.push_str(itoa_u64(seq).as_str());
    frame.push_str(r#","prev_seq":"#);
    frame.push_str(itoa_u64(prev_seq).as_str());
    frame.push_str(r#","event":"#);
    frame.push_str(event_json);
    frame.push('}');
    frame.into()
}

/// Decimal digits of `n` without going through `fmt`.
pub(super) fn itoa_u64(mut n: u64) -> DecimalU64 {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    DecimalU64 { buf, start: i }
}

pub(super) struct DecimalU64 {
    buf: [u8; 20],
    start: usize,
}

impl DecimalU64 {
    pub(super) fn as_str(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buf[self.start..]).unwrap_or("0")
    }
}

/// Why a picture is stale, as the status frame's `reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// The gateway cannot reach the broker.
    Broker,
    /// The broker answers but the processor makes no progress: inputs wait
    /// or outputs stay unacknowledged and none is handled.
    Processor,
}

impl StaleReason {
    /// The word in the status frame.
    pub fn as_str(self) -> &'static str {
        match self {
            StaleReason::Broker => "broker",
            StaleReason::Processor => "processor",
        }
    }
}

/// `{"op":"status","stale":true,"reason":"broker","seq":..}` while stale,
/// `{"op":"status","stale":false,"seq":..}` when live again.
pub fn status_frame(stale: Option<StaleReason>, seq: u64) -> Utf8Bytes {
    match stale {
        Some(reason) => {
            json!({"op": "status", "stale": true, "reason": reason.as_str(), "seq": seq})
        }
        None => json!({"op": "status", "stale": false, "seq": seq}),
    }
    .to_string()
    .into()
}
