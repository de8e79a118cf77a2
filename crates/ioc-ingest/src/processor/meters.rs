//! The processor's metric handles, resolved once.

use crate::metrics_names as metric;

/// Metric handles resolved once: a `metrics::counter!` with labels is a
/// registry lookup (hash of name and labels) per call, on every input.
pub(super) struct Meters {
    pub(super) ok: Vec<(&'static str, metrics::Counter)>,
    pub(super) dlq: Vec<(&'static str, metrics::Counter, metrics::Counter)>,
    pub(super) apply_seconds: metrics::Histogram,
    pub(super) duplicates: metrics::Counter,
    pub(super) recommendations: metrics::Counter,
    pub(super) events_produced: metrics::Counter,
    pub(super) last_seq: metrics::Gauge,
    pub(super) seen_ids: metrics::Gauge,
    pub(super) offsets_stored: metrics::Counter,
    pub(super) transactions: metrics::Counter,
    pub(super) produce_errors: metrics::Counter,
}

impl Meters {
    pub(super) fn new() -> Self {
        let labels = [
            "calls",
            "incidents",
            "positions",
            "units",
            "commands",
            "unknown",
        ];
        Self {
            ok: labels
                .iter()
                .map(|&l| {
                    (
                        l,
                        metrics::counter!(metric::INGEST_MESSAGES, "topic" => l, "outcome" => "ok"),
                    )
                })
                .collect(),
            dlq: labels
                .iter()
                .map(|&l| {
                    (
                        l,
                        metrics::counter!(metric::INGEST_MESSAGES, "topic" => l, "outcome" => "dlq"),
                        metrics::counter!(metric::DLQ_MESSAGES, "topic" => l),
                    )
                })
                .collect(),
            apply_seconds: metrics::histogram!(metric::ENGINE_APPLY_SECONDS),
            duplicates: metrics::counter!(metric::DUPLICATES),
            recommendations: metrics::counter!(metric::RECOMMENDATIONS),
            events_produced: metrics::counter!(metric::EVENTS_PRODUCED),
            last_seq: metrics::gauge!(metric::LAST_SEQ),
            seen_ids: metrics::gauge!(metric::SEEN_IDS),
            offsets_stored: metrics::counter!(metric::OFFSETS_STORED),
            transactions: metrics::counter!(metric::TRANSACTIONS),
            produce_errors: metrics::counter!(metric::PRODUCE_ERRORS),
        }
    }

    pub(super) fn handled_ok(&self, label: &'static str) {
        match self.ok.iter().find(|(l, _)| *l == label) {
            Some((_, c)) => c.increment(1),
            None => metrics::counter!(metric::INGEST_MESSAGES, "topic" => label, "outcome" => "ok")
                .increment(1),
        }
    }

    pub(super) fn dead_lettered(&self, label: &'static str) {
        match self.dlq.iter().find(|(l, _, _)| *l == label) {
            Some((_, a, b)) => {
                a.increment(1);
                b.increment(1);
            }
            None => {
                metrics::counter!(metric::INGEST_MESSAGES, "topic" => label, "outcome" => "dlq")
                    .increment(1);
                metrics::counter!(metric::DLQ_MESSAGES, "topic" => label).increment(1);
            }
        }
    }
}
