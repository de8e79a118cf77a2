//! Consumer health of the owning processor, watched once a second beside
//! the hot loop: the lag over the assignment (a metric, and the "caught up"
//! readiness), the progress watchdog (screens stale and `/readyz` 503 when
//! work waits and none is handled), and the stall watch that makes the
//! processor heal itself.
//!
//! librdkafka's consumer has been seen, rarely, to stay stuck after the whole
//! cluster was away (a fetcher that never resumes; librdkafka issues 1546,
//! 2164, 3082) while the broker answers and inputs wait. The stall watch
//! counts such seconds and, past [`STALL_REBUILD_S`], asks the processor to
//! rebuild its session: abort the open transaction, fresh producer and
//! consumer, state restored from the log, inputs from the committed
//! offsets. Nothing is lost (uncommitted inputs come again) and nothing is
//! doubled (their outputs were aborted with the transaction).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;

use crate::acks::SharedTracker;
use crate::metrics_names as metric;
use crate::processor::{InputConsumer, ProcessorStatus};

/// Seconds without progress, with work waiting, after which the processor
/// counts as stalled (screens stale, not ready). Long enough that a fetch
/// round trip or a commit in progress does not flap it, short enough that a
/// wall screen never reads LIVE over a picture frozen for long.
pub const STALLED_AFTER_S: u32 = 5;

/// Seconds a processor may go with the broker answering, inputs waiting and
/// none handled, nothing in flight, before it rebuilds its session.
pub const STALL_REBUILD_S: u32 = 30;

/// Counts the seconds that look stalled.
#[derive(Debug, Default)]
pub struct StallWatch {
    /// Seconds in a row that looked stalled.
    stalled_s: u32,
    handled: u64,
}

impl StallWatch {
    /// One second's check: inputs handled so far, inputs in flight, the lag
    /// over the assignment (None when it could not be measured), and whether
    /// the broker answered at all (an outage is not a stall). True when it
    /// has looked stalled for `after_s` seconds in a row (and counting
    /// starts again).
    pub fn step(
        &mut self,
        handled: u64,
        in_flight: usize,
        lag: Option<i64>,
        reachable: bool,
        after_s: u32,
    ) -> bool {
        let progressed = handled != self.handled;
        self.handled = handled;
        let looks_stalled = !progressed
            && in_flight == 0
            && match lag {
                Some(lag) => lag > 0,
                // The broker answers but the consumer's view cannot be read.
                None => reachable,
            };
        self.stalled_s = if looks_stalled { self.stalled_s + 1 } else { 0 };
        if self.stalled_s >= after_s {
            self.stalled_s = 0;
            true
        } else {
            false
        }
    }
}

/// Messages from each partition's offset in `at` to its end, summed. A
/// partition without an offset (nothing consumed since the assignment)
/// counts from its offset in `fallback`, else from the beginning. None if a
/// watermark cannot be read.
fn lag_over(
    c: &InputConsumer,
    at: &rdkafka::TopicPartitionList,
    fallback: Option<&rdkafka::TopicPartitionList>,
) -> Option<i64> {
    let mut lag = 0i64;
    for p in at.elements() {
        let (low, high) = c
            .fetch_watermarks(p.topic(), p.partition(), Duration::from_secs(1))
            .ok()?;
        let from = match p.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ => match fallback
                .and_then(|f| f.find_partition(p.topic(), p.partition()))
                .map(|e| e.offset())
            {
                Some(rdkafka::Offset::Offset(o)) => o,
                _ => low,
            },
        };
        lag += (high - from).max(0);
    }
    Some(lag)
}

/// Every second: the consumer's lag over its assignment, as a metric and
/// as the processor's "caught up" readiness; the progress watchdog; and
/// the stall watch, which notifies `stalled` (once) when the session must
/// be rebuilt.
pub fn spawn_lag_watch(
    consumer: Arc<InputConsumer>,
    status: Arc<ProcessorStatus>,
    acks: Arc<SharedTracker>,
    first_input: String,
    stalled: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Seconds with work waiting and none handled.
        let (mut idle_s, mut handled_before) = (0u32, status.handled.load(Ordering::Relaxed));
        let mut stall = StallWatch::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let c = Arc::clone(&consumer);
            let measured = tokio::task::spawn_blocking(move || -> Option<(i64, usize)> {
                let positions = c.position().ok()?;
                // A partition nothing has been consumed from since the
                // assignment has no position yet: it starts at the group's
                // committed offset, or at the beginning when there is none.
                let committed = c
                    .committed_offsets(positions.clone(), Duration::from_secs(1))
                    .ok()?;
                let lag = lag_over(&c, &positions, Some(&committed))?;
                Some((lag, positions.count()))
            })
            .await
            .ok()
            .flatten();
            let (handled, in_flight) = (
                status.handled.load(Ordering::Relaxed),
                acks.lock().in_flight(),
            );
            let progressed = handled != handled_before;
            status.in_flight.store(in_flight as u64, Ordering::Relaxed);
            // Work waiting: inputs behind (when it could be measured) or
            // outputs awaiting acknowledgement.
            let waiting = measured.is_some_and(|(lag, _)| lag > 0) || in_flight > 0;
            idle_s = if waiting && handled == handled_before {
                idle_s + 1
            } else {
                0
            };
            handled_before = handled;
            let stalled_now = idle_s >= STALLED_AFTER_S;
            if status.stalled.swap(stalled_now, Ordering::Relaxed) != stalled_now {
                if stalled_now {
                    tracing::warn!(
                        idle_s,
                        lag_over_assignment = ?measured,
                        in_flight,
                        handled,
                        "processor makes no progress with work waiting: screens marked stale"
                    );
                } else {
                    tracing::info!(handled, "processor progresses again");
                }
            }
            // The broker answering though the consumer's own view could
            // not be measured: the consumer is stuck, not the cluster.
            let reachable = measured.is_some() || {
                let (c, topic) = (Arc::clone(&consumer), first_input.clone());
                tokio::task::spawn_blocking(move || {
                    c.fetch_metadata(Some(&topic), Duration::from_secs(1))
                        .is_ok()
                })
                .await
                .unwrap_or(false)
            };
            let lag = measured.map(|(lag, _)| lag);
            if stall.step(handled, in_flight, lag, reachable, STALL_REBUILD_S) {
                tracing::error!(
                    stalled_s = STALL_REBUILD_S,
                    lag_over_assignment = ?measured,
                    handled,
                    "consumer stalled with the broker answering and inputs waiting: rebuilding the session"
                );
                stalled.notify_one();
                return;
            }
            if let Some((lag, partitions)) = measured {
                metrics::gauge!(metric::CONSUMER_LAG).set(lag as f64);
                status.lag.store(lag.max(0) as u64, Ordering::Relaxed);
                // Caught up: nothing left to read, and what was read is
                // committed or being committed (a transaction that cannot
                // commit holds its inputs in flight without progress).
                let settled = in_flight == 0 || progressed;
                if partitions > 0
                    && lag == 0
                    && settled
                    && !status.caught_up.swap(true, Ordering::Relaxed)
                {
                    tracing::info!(partitions, "processor caught up with its inputs");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_watch_fires_after_seconds_in_a_row_with_inputs_waiting_and_none_handled() {
        let mut w = StallWatch::default();
        let waiting = Some(5);
        // Handling inputs: never.
        for s in 0..100 {
            assert!(!w.step(s, 0, waiting, true, 3));
        }
        // Stuck with inputs waiting: on the third second, then counting again.
        assert!(!w.step(99, 0, waiting, true, 3));
        assert!(!w.step(99, 0, waiting, true, 3));
        assert!(w.step(99, 0, waiting, true, 3));
        assert!(!w.step(99, 0, waiting, true, 3));
        // Not a stall: caught up, outputs awaiting acknowledgement (the
        // producer's problem), or the broker away (an outage). Each breaks
        // the run of seconds.
        let mut w = StallWatch::default();
        for interruption in [Some(0), waiting, None] {
            let in_flight = usize::from(interruption == waiting);
            assert!(!w.step(7, 0, waiting, true, 2));
            assert!(!w.step(7, in_flight, interruption, false, 2));
        }
        assert!(!w.step(7, 0, waiting, true, 2));
        assert!(w.step(7, 0, waiting, true, 2));
        // The broker answers but the consumer's own view cannot be measured:
        // stalled.
        let mut w = StallWatch::default();
        assert!(!w.step(0, 0, None, true, 2));
        assert!(w.step(0, 0, None, true, 2));
    }
}
