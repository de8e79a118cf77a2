//! Logs (`tracing`) and metrics (Prometheus through `metrics`), installed
//! once per process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often histogram observations are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

fn builder() -> Option<PrometheusBuilder> {
    PrometheusBuilder::new()
        .set_buckets(&[
            0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
        ])
        .ok()
}

/// Installs the global Prometheus recorder (first call) and returns the
/// handle `/metrics` renders from. `None` if another recorder was installed
/// first (then metrics go there).
pub fn prometheus() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let handle = builder()?.install_recorder().ok()?;
            spawn_upkeep(handle.clone(), UPKEEP_EVERY);
            Some(handle)
        })
        .clone()
}

/// The recorder keeps every histogram observation (8 bytes each, several
/// per ping) until upkeep or a scrape folds them into the buckets; with
/// `install_recorder` nobody runs upkeep, so a process whose `/metrics`
/// nobody scrapes (Prometheus down, or none configured) grew by ~100 KiB/s
/// at 5k pings/s. A plain thread, so it needs no runtime.
fn spawn_upkeep(handle: PrometheusHandle, every: Duration) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
    }
}

/// Installs the log subscriber: `RUST_LOG` filter (default `info`), text
/// or JSON lines on stderr.
pub fn init_logs(format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn,librdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse().ok())
            })
            .unwrap_or(0)
    }

    /// 4M histogram observations and no scrape: without upkeep they are
    /// all kept (~32 MiB); with it, memory stays where it was and the
    /// observations still reach the buckets.
    #[test]
    fn histogram_observations_do_not_pile_up_without_scrapes() {
        let recorder = builder().unwrap().build_recorder();
        let handle = recorder.handle();
        spawn_upkeep(handle.clone(), Duration::from_millis(10));
        let h = metrics::with_local_recorder(&recorder, || metrics::histogram!("test_seconds"));
        // Warm up the allocator and the bucket's blocks.
        for i in 0..200_000u32 {
            h.record(f64::from(i % 1000) * 1e-6);
        }
        std::thread::sleep(Duration::from_millis(50));
        let before = rss_kib();
        for _ in 0..40 {
            for i in 0..100_000u32 {
                h.record(f64::from(i % 1000) * 1e-6);
            }
            std::thread::sleep(Duration::from_millis(15));
        }
        std::thread::sleep(Duration::from_millis(50));
        let grown = rss_kib().saturating_sub(before);
        assert!(grown < 8 * 1024, "grew by {grown} KiB over 4M observations");
        // Counted: all but a few. metrics-util's bucket loses some
        // observations when a drain races the recording thread (0.0002-1.5 %
        // in our runs, 2.6 % once in a CI run on a busy machine); a scrape
        // drains the same way, upkeep only more often. Upkeep that dropped
        // what it folded would lose most of them: at least 95 % must arrive.
        let count: u64 = handle
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("test_seconds_count "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert!((3_990_000..=4_200_000).contains(&count), "{count}");
    }
}
