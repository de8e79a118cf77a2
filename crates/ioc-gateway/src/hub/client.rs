//! A websocket client as the hub sees it: its bounded frame queue, why it
//! is closed, and the queue's pressure, which decides when unit positions
//! are held back instead of queued (see the hub's module docs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::lock;
use crate::telemetry;

/// A websocket close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

/// Queue full: the client cannot keep up.
pub const CLOSE_SLOW: CloseReason = CloseReason {
    code: 1008,
    reason: "slow consumer: resume with since",
};
/// More inbound messages than the rate limit allows.
pub const CLOSE_RATE_LIMITED: CloseReason = CloseReason {
    code: 1008,
    reason: "rate limit exceeded",
};
/// The gateway is stopping.
pub const CLOSE_SHUTDOWN: CloseReason = CloseReason {
    code: 1001,
    reason: "server shutting down",
};
/// The token's `exp` passed.
pub const CLOSE_EXPIRED: CloseReason = CloseReason {
    code: 1008,
    reason: "token expired",
};
/// No frame from the client within the idle timeout.
pub const CLOSE_IDLE: CloseReason = CloseReason {
    code: 1001,
    reason: "idle timeout",
};
/// Inbound message over the size limit.
pub const CLOSE_TOO_BIG: CloseReason = CloseReason {
    code: 1009,
    reason: "message too big",
};

/// The hub's handle on one websocket client.
pub struct ClientLink {
    /// Connection id, unique per process.
    pub id: u64,
    /// Bounded outbound queue drained by the connection's writer.
    tx: mpsc::Sender<Utf8Bytes>,
    /// Cancelled when the connection must end, for whatever reason.
    closing: CancellationToken,
    /// The close frame to send; the first reason wins.
    reason: Mutex<Option<CloseReason>>,
    /// The hub holds back positions for this client: the writer asks for
    /// them once the queue has drained. Written under the hub lock.
    pub(super) holding: AtomicBool,
}

impl ClientLink {
    /// A link and the receiving end of its queue.
    pub fn new(id: u64, queue: usize) -> (Arc<ClientLink>, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let link = ClientLink {
            id,
            tx,
            closing: CancellationToken::new(),
            reason: Mutex::new(None),
            holding: AtomicBool::new(false),
        };
        (Arc::new(link), rx)
    }

    /// Asks the connection to end with `reason` (None: no close frame of
    /// ours, e.g. the peer already closed). Returns false if it was already
    /// ending.
    pub fn close(&self, reason: Option<CloseReason>) -> bool {
        let mut slot = lock(&self.reason);
        if self.closing.is_cancelled() {
            return false;
        }
        *slot = reason;
        self.closing.cancel();
        true
    }

    /// The token cancelled when the connection must end.
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }

    /// The close frame chosen, if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        *lock(&self.reason)
    }

    /// Queues a frame without waiting. A full queue closes the client as a
    /// slow consumer: we never block publish and never grow memory.
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        if self.closing.is_cancelled() {
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close_slow();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Closes the client as a slow consumer (counted once).
    pub(super) fn close_slow(&self) {
        if self.close(Some(CLOSE_SLOW)) {
            metrics::counter!(telemetry::WS_SLOW_DISCONNECTS).increment(1);
            tracing::warn!(conn = self.id, "slow websocket consumer disconnected");
        }
    }

    /// Free slots in the queue right now.
    pub(super) fn free_slots(&self) -> usize {
        self.tx.capacity()
    }

    /// Frames waiting in the queue.
    pub(super) fn queued(&self) -> usize {
        self.tx.max_capacity().saturating_sub(self.tx.capacity())
    }

    /// Queue length from which positions are held back instead of queued.
    pub(super) fn high_water(&self) -> usize {
        (self.tx.max_capacity() / 2).max(1)
    }

    /// Whether positions must be held back for this client now.
    pub(super) fn under_pressure(&self) -> bool {
        self.queued() >= self.high_water()
    }

    /// Whether the writer should ask the hub for held positions: some are
    /// held and the queue has drained to a quarter.
    pub fn wants_flush(&self) -> bool {
        self.holding.load(Ordering::Relaxed) && self.queued() <= self.tx.max_capacity() / 4
    }
}
