//! `loadtest`: drives the system from outside and measures it end to end.
//!
//! Registers N units, connects M websocket clients to the `units` channel,
//! then produces position pings at a target rate for a fixed time and
//! measures, per delivered frame, the latency from the ping's timestamp
//! (set at produce time) to the websocket receive. In the same run it
//! measures a baseline: a bare consumer that only decodes and validates the
//! same pings, so the processor's throughput is reported as a fraction of
//! the limit on this machine.
//!
//! `--embedded` starts the embedded broker and the whole system in-process;
//! otherwise give `--brokers` and `--gateway` of a running system.
//!
//! While the load runs it samples the resident memory (`VmRSS`) of this
//! process (which, with `--embedded`, is the broker, the system and the
//! measuring clients together) and of every `--watch-pid` (e.g. a separately
//! started `ioc serve`), and reports it at the start of the load, after the
//! warm-up, at the end, its maximum, and its slope after the warm-up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ioc_gateway::auth::Role;
use ioc_model::{decode_input, InputKind, Timestamp, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// mimalloc instead of glibc's malloc: the processor, the events reader and
/// the gateway allocate on different threads, and glibc's arena locks showed
/// up in the profile (decision 18, BENCHMARKS.md "Processor hot path").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    about = "End-to-end load test of the IOC event processor"
)]
struct Args {
    /// Start the embedded broker and the system in this process.
    #[arg(long)]
    embedded: bool,
    /// Kafka bootstrap servers of a running system (without --embedded).
    #[arg(long)]
    brokers: Option<String>,
    /// Gateway address HOST:PORT of a running system (without --embedded).
    #[arg(long)]
    gateway: Option<String>,
    /// JWT secret of a running system (without --embedded).
    #[arg(long, env = "IOC_JWT_SECRET")]
    secret: Option<String>,
    /// Units in the fleet.
    #[arg(long, default_value_t = 1000)]
    units: usize,
    /// Target position pings per second; 0 = as fast as possible (capacity).
    #[arg(long, default_value_t = 4000)]
    rate: u64,
    /// Pings to send when --rate is 0.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Websocket clients on the `units` channel (role ioc: wall screens
    /// with the map of every unit).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Websocket clients on the `city` channel (role ioc): every event but
    /// positions, callers masked.
    #[arg(long, default_value_t = 0)]
    city_clients: usize,
    /// Websocket clients on the `dispatch` channel (role dispatcher):
    /// dispatcher consoles, callers visible.
    #[arg(long, default_value_t = 0)]
    dispatch_clients: usize,
    /// District screens (role district), spread round-robin over the zones,
    /// each on its own `district:<id>`: the district's incidents, alerts and
    /// the positions of the units inside it.
    #[arg(long, default_value_t = 0)]
    district_clients: usize,
    /// Emergency calls per second (lines 113/114/115, random places in the
    /// city) produced alongside the pings; only with --rate > 0.
    #[arg(long, default_value_t = 0.0)]
    calls_per_s: f64,
    /// Incident reports per second (cameras, sensors, the citizen app)
    /// produced alongside the pings; only with --rate > 0.
    #[arg(long, default_value_t = 0.0)]
    reports_per_s: f64,
    /// Unit status changes per second (a unit going out of service, the
    /// next time back to available); only with --rate > 0.
    #[arg(long, default_value_t = 0.0)]
    status_per_s: f64,
    /// Skip the bare-relay baseline (with --embedded: consume, decode,
    /// produce one output per ping and read it back, without our code).
    #[arg(long)]
    no_relay: bool,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Processor's `max_in_flight` (inputs whose outputs may await
    /// acknowledgement at once) with --embedded; the config default if unset.
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// librdkafka property `KEY=VALUE` for every Kafka client of the
    /// embedded system (repeatable), to try settings without a config file.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    kafka_properties: Vec<String>,
    /// Seconds between memory (VmRSS) samples while the load runs; 0 = off.
    #[arg(long, default_value_t = 10)]
    mem_interval: u64,
    /// Seconds of load counted as warm-up: the memory slope is fitted to the
    /// samples after it.
    #[arg(long, default_value_t = 120)]
    mem_warmup: u64,
    /// Also sample the memory of this process (repeatable), e.g. a
    /// separately started `ioc serve` or `ioc broker`.
    #[arg(long = "watch-pid", value_name = "PID")]
    watch_pids: Vec<u32>,
    /// Units registered per batch; with --embedded each batch waits until the
    /// processor and the gateway have applied it, otherwise batches are paced
    /// at --register-rate. The embedded broker keeps only the last 5 MiB of
    /// each partition, so an unpaced 1M-unit registration would be lost.
    #[arg(long, default_value_t = 10_000)]
    register_batch: usize,
    /// Registrations per second between batches without --embedded.
    #[arg(long, default_value_t = 20_000)]
    register_rate: u64,
    /// GET the gateway's `/metrics` every this many seconds while the load
    /// runs, as Prometheus would; 0 = never. The Prometheus recorder keeps
    /// every histogram observation until it is rendered.
    #[arg(long, default_value_t = 0)]
    scrape_metrics: u64,
}

const SECRET: &str = "loadtest-secret-0123456789abcdef";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topics = Topics::default();
    let mut _broker = None;
    let mut _system = None;
    let (brokers, gateway, secret) = if args.embedded {
        let broker = ioc_ingest::EmbeddedBroker::start(&topics)?;
        let mut config = ioc::config::Config::default();
        config.kafka.brokers = broker.bootstrap_servers();
        config.gateway.bind = "127.0.0.1:0".parse()?;
        config.gateway.client_queue = 65_536;
        for kv in &args.kafka_properties {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--kafka-property {kv:?}: expected KEY=VALUE"))?;
            config.kafka.properties.insert(k.into(), v.into());
        }
        if let Some(n) = args.max_in_flight {
            config.processor.max_in_flight = n;
        }
        let system = ioc::app::start(
            &config,
            ioc::app::StartOptions {
                jwt_secret: SECRET.into(),
                simulate: false,
            },
        )
        .await?;
        let out = (
            broker.bootstrap_servers(),
            system.addr.to_string(),
            SECRET.to_string(),
        );
        _broker = Some(broker);
        _system = Some(system);
        out
    } else {
        (
            args.brokers
                .clone()
                .context("--brokers is required without --embedded")?,
            args.gateway
                .clone()
                .context("--gateway is required without --embedded")?,
            args.secret
                .clone()
                .context("--secret (or IOC_JWT_SECRET) is required without --embedded")?,
        )
    };
    let token = ioc_gateway::auth::mint_token(
        &secret,
        "loadtest",
        ioc_gateway::auth::Role::Ioc,
        None,
        3600,
    )?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "2000000")
        .create()?;

    // Fleet around Da Nang.
    let fleet: Vec<(String, f64, f64)> = (0..args.units)
        .map(|i| {
            let f = i as f64 / args.units.max(1) as f64;
            let lat = 15.98 + (f * 7919.0).fract() * 0.14;
            let lon = 108.12 + (f * 104_729.0).fract() * 0.16;
            (format!("lt-{i:06}"), lat, lon)
        })
        .collect();
    eprintln!("registering {} units", fleet.len());
    let register_start = Instant::now();
    let handled_base = _system
        .as_ref()
        .map_or(0, |s| s.processor.handled.load(Ordering::Relaxed));
    let batch = args.register_batch.max(1);
    for (b, chunk) in fleet.chunks(batch).enumerate() {
        for (j, (id, _, _)) in chunk.iter().enumerate() {
            let kind = KINDS[(b * batch + j) % KINDS.len()];
            let msg =
                json!({"unit_id": id, "ts": Timestamp::now(), "kind": kind, "status": "available"});
            send(&producer, &topics.units, id, msg.to_string().as_bytes())?;
        }
        producer.flush(Duration::from_secs(30))?;
        let registered = (b * batch + chunk.len()) as u64;
        if let Some(system) = _system.as_ref() {
            // Wait for the processor to handle the batch and the gateway to
            // apply its events before producing more.
            let deadline = Instant::now() + Duration::from_secs(120);
            while system.processor.handled.load(Ordering::Relaxed) < handled_base + registered
                || system.gateway.last_seq() < system.processor.last_seq.load(Ordering::Relaxed)
            {
                if Instant::now() > deadline {
                    bail!("registration stalled after {registered} units");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else if fleet.len() > batch {
            let due = Duration::from_secs_f64(registered as f64 / args.register_rate.max(1) as f64);
            tokio::time::sleep(due.saturating_sub(register_start.elapsed())).await;
        }
        if fleet.len() > batch {
            eprint!("\r  registered {registered} ");
        }
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // The whole list each time: poll less often for a large fleet.
    let poll = Duration::from_millis(200.max(fleet.len() as u64 / 100));
    loop {
        let n = http
            .get(format!("http://{gateway}/api/units"))
            .bearer_auth(&token)
            .send()
            .await?
            .json::<Vec<serde::de::IgnoredAny>>()
            .await
            .map(|v| v.len())
            .unwrap_or(0);
        if n >= fleet.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {} units registered after 120 s", fleet.len());
        }
        tokio::time::sleep(poll).await;
    }
    let register_s = register_start.elapsed().as_secs_f64();
    eprintln!("\r{} units registered in {register_s:.1} s", fleet.len());

    // Websocket clients, in groups by channel: wall screens on `units`, and
    // optionally on `city`, dispatcher consoles and district screens.
    let zones: Vec<String> = if args.district_clients > 0 {
        let z: serde_json::Value = http
            .get(format!("http://{gateway}/api/zones"))
            .send()
            .await?
            .json()
            .await?;
        let mut ids: Vec<String> = z["features"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["properties"]["id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        if ids.is_empty() {
            bail!("--district-clients: the gateway serves no zones");
        }
        ids
    } else {
        Vec::new()
    };
    let groups = [
        ClientGroup::new("units", args.clients)?,
        ClientGroup::new("city", args.city_clients)?,
        ClientGroup::new("dispatch", args.dispatch_clients)?,
        ClientGroup::new("district", args.district_clients)?,
    ];
    let hist = Arc::clone(&groups[0].hist);
    // Frames of every group: the drain waits until they stop.
    let delivered = Arc::new(AtomicU64::new(0));
    // Microseconds since `origin` of the latest frame received: the end of
    // the processing window.
    let origin = Instant::now();
    let last_rx_us = Arc::new(AtomicU64::new(0));
    // Clients that have their snapshot: the load starts once all have it,
    // as a screen first loads the picture (at 1M units the `units` snapshot
    // is ~200 MB and a client still parsing it would be cut as slow).
    let snapshots = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut client_no = 0usize;
    for group in &groups {
        for i in 0..group.clients {
            client_no += 1;
            let (role, district, channel) = match group.name {
                "units" => (Role::Ioc, None, "units".to_string()),
                "city" => (Role::Ioc, None, "city".to_string()),
                "dispatch" => (Role::Dispatcher, None, "dispatch".to_string()),
                _ => {
                    let id = &zones[i % zones.len()];
                    (Role::District, Some(id.as_str()), format!("district:{id}"))
                }
            };
            // One token per client: the gateway caps open websockets per
            // token (`max_connections_per_token`), as it should for real
            // screens.
            let token = ioc_gateway::auth::mint_token(
                &secret,
                &format!("loadtest-{client_no}"),
                role,
                district,
                3600,
            )?;
            let url = format!("ws://{gateway}/ws?access_token={token}");
            // No size limit: the first frame is a snapshot of the whole fleet
            // (~200 MB at 1M units, over tungstenite's 64 MiB default).
            let ws_config = WebSocketConfig::default()
                .max_message_size(None)
                .max_frame_size(None);
            let (mut ws, _) =
                tokio_tungstenite::connect_async_with_config(url, Some(ws_config), false)
                    .await
                    .with_context(|| format!("websocket client {client_no} ({channel})"))?;
            ws.send(WsMessage::Text(
                json!({"op":"subscribe","channel":channel})
                    .to_string()
                    .into(),
            ))
            .await?;
            let (hist, frames, by_type) = (
                Arc::clone(&group.hist),
                Arc::clone(&group.frames),
                Arc::clone(&group.by_type),
            );
            let count_types = group.name != "units";
            let (delivered, last_rx_us, snapshots) = (
                Arc::clone(&delivered),
                Arc::clone(&last_rx_us),
                Arc::clone(&snapshots),
            );
            let stop = stop.clone();
            readers.push(tokio::spawn(async move {
                // Counted locally and merged when the client stops: a lock
                // per frame across a thousand clients was the tool's own
                // contention, taken from the system under test.
                let mut local =
                    Histogram::<u64>::new_with_bounds(1, 600_000, 3).expect("histogram bounds");
                let mut local_frames = 0u64;
                let mut local_types: Vec<(String, u64)> = Vec::new();
                loop {
                    let msg = tokio::select! {
                        biased;
                        _ = stop.cancelled() => break,
                        msg = ws.next() => msg,
                    };
                    let Some(Ok(msg)) = msg else { break };
                    let WsMessage::Text(t) = msg else { continue };
                    // Only `op`, `event.ts` and `event.type` are read:
                    // parsing the whole frame into a `Value` cost more CPU
                    // than the gateway spent on it, taken from the system
                    // under test on a 2-core machine.
                    let Ok(frame) = serde_json::from_str::<FrameTs<'_>>(&t) else {
                        continue;
                    };
                    if frame.op == "snapshot" {
                        snapshots.fetch_add(1, Ordering::Relaxed);
                    }
                    if frame.op != "event" {
                        continue;
                    }
                    let Some(event) = frame.event else { continue };
                    let Ok(ts) = Timestamp::parse(event.ts.as_ref()) else {
                        continue;
                    };
                    let lat_ms = (Timestamp::now().unix_millis() - ts.unix_millis()).max(1) as u64;
                    let _ = local.record(lat_ms);
                    if count_types {
                        match local_types.iter_mut().find(|(k, _)| *k == event.kind) {
                            Some((_, n)) => *n += 1,
                            None => local_types.push((event.kind.into_owned(), 1)),
                        }
                    }
                    local_frames += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                    last_rx_us.fetch_max(origin.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                if let Ok(mut h) = hist.lock() {
                    let _ = h.add(&local);
                }
                frames.fetch_add(local_frames, Ordering::Relaxed);
                if let Ok(mut m) = by_type.lock() {
                    for (k, n) in local_types {
                        *m.entry(k).or_insert(0) += n;
                    }
                }
            }));
        }
    }
    let n_clients = client_no as u64;

    let snapshot_start = Instant::now();
    while snapshots.load(Ordering::Relaxed) < n_clients {
        if snapshot_start.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} of {} clients got their snapshot in 300 s",
                snapshots.load(Ordering::Relaxed),
                n_clients
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let snapshot_wait_s = snapshot_start.elapsed().as_secs_f64();

    // Load.
    eprintln!(
        "producing {} pings/s for {} s to {} clients",
        args.rate, args.duration, args.clients
    );
    // The system's own counters around the load (where frames go when they
    // do not reach a screen: coalesced, slow clients cut, events skipped).
    let metrics_url = format!("http://{gateway}/metrics");
    let counters_before = scrape_counters(&http, &metrics_url).await;
    let loadavg_start = loadavg();
    let start = Instant::now();
    // Memory samples: this process, then every --watch-pid.
    let mut watched: Vec<(String, Option<u32>)> = vec![(
        if args.embedded {
            "loadtest + embedded broker and system (self)".to_string()
        } else {
            "loadtest (self)".to_string()
        },
        None,
    )];
    for &pid in &args.watch_pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .with_context(|| format!("--watch-pid {pid}: no such process"))?;
        watched.push((format!("{} (pid {pid})", comm.trim()), Some(pid)));
    }
    let mem_samples: Arc<Mutex<Vec<MemSample>>> = Arc::default();
    let scrapes = Arc::new(AtomicU64::new(0));
    // Pings produced so far, for the samples: a backlog (frames not yet on
    // the screens) is memory too.
    let sent_so_far = Arc::new(AtomicU64::new(0));
    let sampler = (args.mem_interval > 0).then(|| {
        let (samples, watched) = (Arc::clone(&mem_samples), watched.clone());
        let (sent_so_far, delivered) = (Arc::clone(&sent_so_far), Arc::clone(&delivered));
        let every = Duration::from_secs(args.mem_interval);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let s = sample_memory(start, &watched, &sent_so_far, &delivered);
                if let Ok(mut v) = samples.lock() {
                    v.push(s);
                }
            }
        })
    });
    let scraper = (args.scrape_metrics > 0).then(|| {
        let (http, url) = (http.clone(), format!("http://{gateway}/metrics"));
        let every = Duration::from_secs(args.scrape_metrics);
        let scrapes = Arc::clone(&scrapes);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Ok(r) = http.get(&url).send().await {
                    if r.status().is_success() && r.bytes().await.is_ok() {
                        scrapes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    });
    let mut sent = 0u64;
    let total = if args.rate == 0 {
        args.count
    } else {
        args.rate * args.duration
    };
    let first_tx_us = origin.elapsed().as_micros() as u64;
    // With --embedded, the processor's own rate: from the first ping
    // produced to the last one handled (every output acknowledged and the
    // offset stored), without the gateway and websocket legs.
    // Also the largest consumer lag the processor reported (it updates it
    // every second) until then.
    let processor_done_us = Arc::new(AtomicU64::new(0));
    let lag_max = Arc::new(AtomicU64::new(0));
    // When the processor last handled a ping: its rate when some were lost.
    let processor_last_us = Arc::new(AtomicU64::new(0));
    let handled_before = _system
        .as_ref()
        .map(|s| s.processor.handled.load(Ordering::Relaxed));
    let processor_watch = _system.as_ref().map(|system| {
        let status = Arc::clone(&system.processor);
        let target = status.handled.load(Ordering::Relaxed) + total;
        let (done, lag_max, last) = (
            Arc::clone(&processor_done_us),
            Arc::clone(&lag_max),
            Arc::clone(&processor_last_us),
        );
        tokio::spawn(async move {
            let mut seen = status.handled.load(Ordering::Relaxed);
            while seen < target {
                lag_max.fetch_max(status.lag.load(Ordering::Relaxed), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
                let now = status.handled.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    last.store(origin.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            }
            done.store(origin.elapsed().as_micros() as u64, Ordering::Relaxed);
        })
    });
    let mut step = 0u64;
    // Calls, reports and status changes alongside the pings (fixed-rate
    // runs only), each at its own rate.
    let mut traffic = Traffic::new(&fleet, &topics);
    while sent < total {
        let due = if args.rate == 0 {
            total
        } else {
            (start.elapsed().as_secs_f64() * args.rate as f64) as u64
        };
        while sent < due.min(total) {
            let (id, lat, lon) = &fleet[(sent as usize) % fleet.len()];
            step += 1;
            let wiggle = ((step % 100) as f64) * 1e-5;
            let msg = json!({"unit_id": id, "ts": Timestamp::now(), "lat": lat + wiggle, "lon": lon, "speed_kmh": 30.0});
            send(&producer, &topics.positions, id, msg.to_string().as_bytes())?;
            sent += 1;
        }
        if args.rate > 0 {
            let el = start.elapsed().as_secs_f64();
            traffic.produce_due(
                &producer,
                el * args.calls_per_s,
                el * args.reports_per_s,
                el * args.status_per_s,
            )?;
        }
        sent_so_far.store(sent, Ordering::Relaxed);
        if sent % (args.rate.max(10) / 10).max(1) == 0 {
            let el = start.elapsed().as_secs_f64();
            let rss = mem_samples
                .lock()
                .ok()
                .and_then(|v| v.last().and_then(|s| s.rss_kib.first().copied().flatten()));
            eprint!(
                "\r{:>5.1}s sent {sent} delivered {} rss {:.0} MiB ",
                el,
                delivered.load(Ordering::Relaxed),
                rss.unwrap_or(0) as f64 / 1024.0
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    producer.flush(Duration::from_secs(60))?;
    let produce_s = start.elapsed().as_secs_f64();
    // The end of the load: last memory sample.
    if let Some(s) = scraper {
        s.abort();
    }
    if let Some(s) = sampler {
        s.abort();
        if let Ok(mut v) = mem_samples.lock() {
            v.push(sample_memory(start, &watched, &sent_so_far, &delivered));
        }
    }
    let loadavg_end = loadavg();
    // Drain: wait until deliveries stop growing.
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let now = delivered.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    // From the first ping produced to the last frame received.
    let wall_s = (last_rx_us
        .load(Ordering::Relaxed)
        .saturating_sub(first_tx_us)) as f64
        / 1e6;
    eprintln!();
    if let Some(w) = processor_watch {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    let processor_s = (processor_done_us
        .load(Ordering::Relaxed)
        .saturating_sub(first_tx_us)) as f64
        / 1e6;
    let processor_per_s = (processor_s > 0.0).then(|| total as f64 / processor_s);
    // Pings the processor handled (fewer than produced if the broker dropped
    // some before it read them: the embedded broker keeps only the last
    // 5 MiB of each partition).
    let processor_handled = _system.as_ref().zip(handled_before).map(|(s, before)| {
        s.processor
            .handled
            .load(Ordering::Relaxed)
            .saturating_sub(before)
    });
    // Clients stop and hand in what they counted.
    stop.cancel();
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }

    let counters_after = scrape_counters(&http, &metrics_url).await;
    let counters: serde_json::Map<String, serde_json::Value> = COUNTERS
        .iter()
        .filter_map(|name| {
            let after = counters_after.as_ref()?.get(*name)?;
            let before = counters_before.as_ref()?.get(*name).copied().unwrap_or(0.0);
            Some(((*name).to_string(), json!(after - before)))
        })
        .collect();

    // Baseline: a bare consumer of the same pings that only decodes and validates.
    let (bare, bare_msgs) = bare_consume(&brokers, &topics.positions, total).await?;
    // Second baseline: the Kafka work the contract asks of the processor for
    // each ping (consume, decode, produce one output, have it acknowledged,
    // read it back as the gateway does) with none of our code.
    let relay = match (&_broker, args.no_relay) {
        (Some(broker), false) => {
            broker.create_topic(RELAY_TOPIC, 1)?;
            Some(bare_relay(&brokers, &topics.positions, RELAY_TOPIC, total).await?)
        }
        _ => None,
    };

    let h = hist
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock"))?
        .clone();
    let delivered = groups[0].frames.load(Ordering::Relaxed);
    let expected = total * args.clients as u64;
    let group_reports: serde_json::Map<String, serde_json::Value> = groups
        .iter()
        .filter(|g| g.clients > 0)
        .map(|g| (g.name.to_string(), g.report()))
        .collect();
    let report = json!({
        "units": args.units, "rate_target": args.rate, "duration_s": args.duration, "clients": args.clients,
        "inputs_produced": {"positions": total, "calls": traffic.calls, "reports": traffic.reports, "status_changes": traffic.status},
        "client_groups": group_reports,
        "pings_produced": total, "produce_rate": total as f64 / produce_s,
        "frames_delivered": delivered, "frames_expected": expected,
        "delivered_per_s": delivered as f64 / wall_s,
        "latency_ms": {"p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9),
                        "p99": h.value_at_quantile(0.99), "p999": h.value_at_quantile(0.999), "max": h.max()},
        "register_s": register_s,
        "snapshot_wait_s": snapshot_wait_s,
        "bare_consume_per_s": bare,
        "bare_consume_msgs": bare_msgs,
        "bare_relay_per_s": relay.map(|r| r.0),
        "bare_relay_msgs": relay.map(|r| r.1),
        "processor_only_vs_relay": processor_per_s.zip(relay).map(|(p, r)| p / r.0),
        "processed_per_s": total as f64 / wall_s,
        "processor_vs_bare": (total as f64 / wall_s) / bare,
        "processor_only_per_s": processor_per_s,
        "processor_only_vs_bare": processor_per_s.map(|p| p / bare),
        "processor_handled": processor_handled,
        // Pings handled over the time to the last one handled: the
        // processor's rate even when the broker dropped some.
        "processor_handled_per_s": processor_handled.and_then(|n| {
            let s = processor_last_us.load(Ordering::Relaxed).saturating_sub(first_tx_us) as f64 / 1e6;
            (s > 0.0).then(|| n as f64 / s)
        }),
        "system_counters_during_load": counters,
        "consumer_lag_max": _system.as_ref().map(|_| lag_max.load(Ordering::Relaxed)),
        "loadavg_start": loadavg_start, "loadavg_end": loadavg_end,
    });
    println!("| metric | value |\n|---|---|");
    for (k, v) in report.as_object().into_iter().flatten() {
        if k != "client_groups" {
            println!("| {k} | {v} |");
        }
    }
    println!("\n| clients | channel | frames | p50 | p90 | p99 | p99.9 | max | events by type |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for g in groups.iter().filter(|g| g.clients > 0) {
        let r = g.report();
        let l = &r["latency_ms"];
        println!(
            "| {} | {} | {} | {} ms | {} ms | {} ms | {} ms | {} ms | {} |",
            g.clients,
            g.name,
            r["frames"],
            l["p50"],
            l["p90"],
            l["p99"],
            l["p999"],
            l["max"],
            r["events_by_type"]
        );
    }
    let samples = mem_samples
        .lock()
        .map_err(|_| anyhow::anyhow!("memory samples lock"))?
        .clone();
    let memory: Vec<serde_json::Value> = watched
        .iter()
        .enumerate()
        .map(|(i, (label, pid))| {
            let series: Vec<(f64, u64)> = samples
                .iter()
                .filter_map(|s| s.rss_kib[i].map(|kib| (s.t_s, kib)))
                .collect();
            let mut m = memory_summary(&series, args.mem_warmup as f64);
            m["process"] = json!(label);
            m["pid"] = json!(pid.unwrap_or_else(std::process::id));
            m["samples"] = json!(series
                .iter()
                .map(|&(t, kib)| json!([(t * 10.0).round() / 10.0, kib]))
                .collect::<Vec<_>>());
            m
        })
        .collect();
    if !samples.is_empty() {
        println!(
            "\nVmRSS every {} s while the load ran (warm-up {} s, slope fitted after it)\n",
            args.mem_interval, args.mem_warmup
        );
        println!("| process | samples | start | after warm-up | end | max | slope after warm-up |");
        println!("|---|---|---|---|---|---|---|");
        let mib = |v: &serde_json::Value| {
            v.as_f64()
                .map_or_else(|| "–".to_string(), |x| format!("{x:.1} MiB"))
        };
        for m in &memory {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                m["process"].as_str().unwrap_or_default(),
                m["samples"].as_array().map_or(0, Vec::len),
                mib(&m["start_mib"]),
                mib(&m["after_warmup_mib"]),
                mib(&m["end_mib"]),
                mib(&m["max_mib"]),
                m["slope_mib_per_10min"]
                    .as_f64()
                    .map_or_else(|| "–".to_string(), |x| format!("{x:+.2} MiB / 10 min")),
            );
        }
    }
    let mut report = report;
    report["memory"] = json!({
        "interval_s": args.mem_interval, "warmup_s": args.mem_warmup,
        "embedded_in_self": args.embedded, "processes": memory,
        "metrics_scrape_every_s": args.scrape_metrics, "metrics_scrapes": scrapes.load(Ordering::Relaxed),
        // At each sample: [seconds, pings produced, frames delivered].
        "progress": samples.iter()
            .map(|s| json!([(s.t_s * 10.0).round() / 10.0, s.pings_sent, s.frames_delivered]))
            .collect::<Vec<_>>(),
    });
    if let Some(path) = args.report {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Scratch topic of the bare-relay baseline (embedded broker only).
const RELAY_TOPIC: &str = "loadtest.relay";

/// Websocket clients on one kind of channel and what they received.
struct ClientGroup {
    name: &'static str,
    clients: usize,
    /// Produce-to-receive latency of every event frame, ms.
    hist: Arc<Mutex<Histogram<u64>>>,
    frames: Arc<AtomicU64>,
    /// Event frames by event type (not counted for `units`: one type).
    by_type: Arc<Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl ClientGroup {
    fn new(name: &'static str, clients: usize) -> anyhow::Result<Self> {
        Ok(Self {
            name,
            clients,
            hist: Arc::new(Mutex::new(Histogram::new_with_bounds(1, 600_000, 3)?)),
            frames: Arc::default(),
            by_type: Arc::default(),
        })
    }

    fn report(&self) -> serde_json::Value {
        let h = self.hist.lock().map(|h| h.clone()).ok();
        let q = |x: f64| h.as_ref().map(|h| h.value_at_quantile(x));
        json!({
            "clients": self.clients,
            "frames": self.frames.load(Ordering::Relaxed),
            "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
                           "max": h.as_ref().map(Histogram::max)},
            "events_by_type": self.by_type.lock().map(|m| json!(*m)).unwrap_or_default(),
        })
    }
}

/// Calls, incident reports and unit status changes produced alongside the
/// pings: random places in the city (a fixed seed, so runs repeat), ids
/// unique to this process so a long-lived broker's dedupe never drops them.
struct Traffic<'a> {
    fleet: &'a [(String, f64, f64)],
    topics: &'a Topics,
    rng: u64,
    run: String,
    calls: u64,
    reports: u64,
    status: u64,
}

impl<'a> Traffic<'a> {
    fn new(fleet: &'a [(String, f64, f64)], topics: &'a Topics) -> Self {
        Self {
            fleet,
            topics,
            rng: 0x9E37_79B9_7F4A_7C15,
            run: format!("{}-{}", std::process::id(), Timestamp::now().unix_millis()),
            calls: 0,
            reports: 0,
            status: 0,
        }
    }

    /// xorshift64*: uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A place in the urban districts of Da Nang.
    fn place(&mut self) -> (f64, f64) {
        (16.00 + self.next() * 0.09, 108.15 + self.next() * 0.09)
    }

    /// Produces what is due by now: until `calls`, `reports` and `status`
    /// of each have been produced since the start.
    fn produce_due(
        &mut self,
        p: &FutureProducer,
        calls: f64,
        reports: f64,
        status: f64,
    ) -> anyhow::Result<()> {
        while (self.calls as f64) < calls.floor() {
            let (lat, lon) = self.place();
            let (line, category) = match (self.next() * 6.0) as u32 {
                0 => ("113", "crime"),
                1 => ("113", "traffic_accident"),
                2 => ("114", "fire"),
                3 => ("114", "rescue"),
                _ => ("115", "medical"),
            };
            let id = format!("lt-call-{}-{}", self.run, self.calls);
            let caller = format!("+84905{:06}", self.calls % 1_000_000);
            let msg = json!({"call_id": id, "received_at": Timestamp::now(), "line": line,
                "location": {"lat": lat, "lon": lon, "accuracy_m": 30.0},
                "category": category, "caller": caller});
            send(p, &self.topics.calls, &id, msg.to_string().as_bytes())?;
            self.calls += 1;
        }
        while (self.reports as f64) < reports.floor() {
            let (lat, lon) = self.place();
            let (source, category) = match (self.next() * 4.0) as u32 {
                0 => ("camera", "traffic_accident"),
                1 => ("sensor", "flood"),
                2 => ("citizen_app", "other"),
                _ => ("camera", "crime"),
            };
            let priority = 2 + (self.next() * 3.0) as u32;
            let id = format!("lt-inc-{}-{}", self.run, self.reports);
            let msg = json!({"incident_id": id, "reported_at": Timestamp::now(), "source": source,
                "category": category, "priority": priority.min(4),
                "location": {"lat": lat, "lon": lon}, "description": "loadtest"});
            send(p, &self.topics.incidents, &id, msg.to_string().as_bytes())?;
            self.reports += 1;
        }
        while (self.status as f64) < status.floor() && !self.fleet.is_empty() {
            // Unit i of the fleet, out of service on the first pass over the
            // fleet, available again on the next.
            let n = self.status as usize;
            let i = (n * 7_919) % self.fleet.len();
            let state = if (n / self.fleet.len()) % 2 == 0 {
                "out_of_service"
            } else {
                "available"
            };
            let id = &self.fleet[i].0;
            let msg = json!({"unit_id": id, "ts": Timestamp::now(), "kind": KINDS[i % KINDS.len()],
                "status": state});
            send(p, &self.topics.units, id, msg.to_string().as_bytes())?;
            self.status += 1;
        }
        Ok(())
    }
}

/// Unit kinds of the fleet: unit i is `KINDS[i % 4]`.
const KINDS: [&str; 4] = ["ambulance", "police", "fire_engine", "rescue"];

/// The parts of a websocket frame the latency measurement needs.
#[derive(serde::Deserialize)]
struct FrameTs<'a> {
    #[serde(borrow)]
    op: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event: Option<EventTs<'a>>,
}

#[derive(serde::Deserialize)]
struct EventTs<'a> {
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
    #[serde(borrow, rename = "type", default)]
    kind: std::borrow::Cow<'a, str>,
}

fn send(p: &FutureProducer, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
    loop {
        match p.send_result(FutureRecord::to(topic).key(key).payload(payload)) {
            Ok(_) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                _,
            )) => {
                p.poll(Duration::from_millis(10));
            }
            Err((e, _)) => bail!("produce: {e}"),
        }
    }
}

/// One memory sample: seconds since the load started, VmRSS in KiB of each
/// watched process (`None` if it could not be read, e.g. it exited).
#[derive(Clone)]
struct MemSample {
    t_s: f64,
    rss_kib: Vec<Option<u64>>,
    pings_sent: u64,
    frames_delivered: u64,
}

fn sample_memory(
    start: Instant,
    watched: &[(String, Option<u32>)],
    sent: &AtomicU64,
    delivered: &AtomicU64,
) -> MemSample {
    MemSample {
        t_s: start.elapsed().as_secs_f64(),
        rss_kib: watched.iter().map(|(_, pid)| vm_rss_kib(*pid)).collect(),
        pings_sent: sent.load(Ordering::Relaxed),
        frames_delivered: delivered.load(Ordering::Relaxed),
    }
}

/// `VmRSS` of a process (this one if `None`) in KiB, from `/proc/PID/status`.
fn vm_rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = pid.map_or_else(
        || "/proc/self/status".to_string(),
        |p| format!("/proc/{p}/status"),
    );
    let status = std::fs::read_to_string(path).ok()?;
    parse_vm_rss_kib(&status)
}

fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Counters of the system read from `/metrics` before and after the load.
const COUNTERS: [&str; 6] = [
    "ioc_events_produced_total",
    "ioc_events_read_total",
    "gateway_events_published_total",
    "gateway_ws_messages_out_total",
    "gateway_ws_coalesced_total",
    "gateway_ws_slow_disconnects_total",
];

/// [`COUNTERS`] from the gateway's `/metrics`, each summed over its labels;
/// `None` if it cannot be read.
async fn scrape_counters(
    http: &reqwest::Client,
    url: &str,
) -> Option<std::collections::HashMap<&'static str, f64>> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    Some(parse_counters(&text))
}

fn parse_counters(text: &str) -> std::collections::HashMap<&'static str, f64> {
    let mut out = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        for name in COUNTERS {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                continue;
            }
            if let Some(v) = rest
                .rsplit(' ')
                .next()
                .and_then(|v| v.trim().parse::<f64>().ok())
            {
                *out.entry(name).or_insert(0.0) += v;
            }
        }
    }
    out
}

/// The 1, 5 and 15 minute load averages of the machine.
fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|x| x.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Start, after warm-up, end and maximum of a series of `(seconds, KiB)`
/// samples, in MiB, and the least-squares slope of the samples at or after
/// `warmup_s`, in MiB per 10 minutes (null with fewer than 3 such samples).
fn memory_summary(series: &[(f64, u64)], warmup_s: f64) -> serde_json::Value {
    let mib = |kib: u64| (kib as f64 / 1024.0 * 10.0).round() / 10.0;
    let after: Vec<(f64, f64)> = series
        .iter()
        .filter(|(t, _)| *t >= warmup_s)
        .map(|&(t, kib)| (t, kib as f64 / 1024.0))
        .collect();
    let slope = (after.len() >= 3).then(|| {
        let n = after.len() as f64;
        let mt = after.iter().map(|p| p.0).sum::<f64>() / n;
        let mm = after.iter().map(|p| p.1).sum::<f64>() / n;
        let cov: f64 = after.iter().map(|p| (p.0 - mt) * (p.1 - mm)).sum();
        let var: f64 = after.iter().map(|p| (p.0 - mt).powi(2)).sum();
        let per_s = if var > 0.0 { cov / var } else { 0.0 };
        (per_s * 600.0 * 100.0).round() / 100.0
    });
    json!({
        "start_mib": series.first().map(|s| mib(s.1)),
        "after_warmup_mib": series.iter().find(|s| s.0 >= warmup_s).map(|s| mib(s.1)),
        "after_warmup_t_s": series.iter().find(|s| s.0 >= warmup_s).map(|s| (s.0 * 10.0).round() / 10.0),
        "end_mib": series.last().map(|s| mib(s.1)),
        "max_mib": series.iter().map(|s| s.1).max().map(mib),
        "slope_mib_per_10min": slope,
        "samples_after_warmup": after.len(),
    })
}

/// Messages per second a consumer reaches that only decodes and validates,
/// and how many it read: up to `count` from the start of what the broker
/// still holds (the embedded broker keeps only the last 5 MiB of each
/// partition), stopping after 3 s without a message; the rate is measured
/// from the first message to the last.
async fn bare_consume(brokers: &str, topic: &str, count: u64) -> anyhow::Result<(f64, u64)> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("loadtest-bare-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    c.subscribe(&[topic])?;
    let mut n = 0u64;
    let mut started: Option<Instant> = None;
    let mut last = Instant::now();
    let now = Timestamp::now().plus_millis(3_600_000);
    while n < count {
        let wait = if started.is_some() { 3 } else { 30 };
        let m = match tokio::time::timeout(Duration::from_secs(wait), c.recv()).await {
            Ok(m) => m?,
            Err(_) if started.is_some() => break,
            Err(_) => bail!("bare consumer got nothing in 30 s"),
        };
        started.get_or_insert_with(Instant::now);
        last = Instant::now();
        if decode_input(InputKind::Position, m.payload().unwrap_or_default(), now).is_ok() {
            n += 1;
        }
    }
    let secs = started.map_or(1.0, |s| last.duration_since(s).as_secs_f64());
    Ok((n as f64 / secs.max(1e-6), n))
}

/// Messages per second of a relay with none of our code: a consumer of the
/// pings (the processor's consumer settings) that decodes and validates each,
/// produces one output of the size of a `unit.updated` event through an
/// idempotent producer (the processor's settings) to a one-partition topic,
/// while a second consumer reads the outputs back and parses them, as the
/// gateway's events reader does. The rate is from the first ping read to
/// the last output read back; also returned: outputs read back. This is
/// the Kafka work the contract asks for per ping, so the processor's rate
/// as a fraction of it is the cost of the engine, the router and the
/// gateway on top.
async fn bare_relay(
    brokers: &str,
    topic: &str,
    out_topic: &str,
    count: u64,
) -> anyhow::Result<(f64, u64)> {
    let settings = ioc_ingest::KafkaSettings::new(brokers);
    let pid = std::process::id();
    // A consumer of `topic` from its start, in a group of its own.
    let from_start = |group: &str, topic: &str| -> anyhow::Result<StreamConsumer> {
        let c: StreamConsumer = settings
            .consumer_config()
            .set("group.id", format!("{group}-{pid}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()?;
        c.subscribe(&[topic])?;
        Ok(c)
    };
    let consumer = from_start("loadtest-relay", topic)?;
    let reader = from_start("loadtest-relay-reader", out_topic)?;
    let producer: FutureProducer = settings.producer_config().create()?;
    let read = Arc::new(AtomicU64::new(0));
    // Microseconds since `origin` of the last output read back.
    let origin = Instant::now();
    let last_read_us = Arc::new(AtomicU64::new(0));
    let reader_task = {
        let (read, last_read_us) = (Arc::clone(&read), Arc::clone(&last_read_us));
        tokio::spawn(async move {
            while let Ok(m) = reader.recv().await {
                if serde_json::from_slice::<serde_json::Value>(m.payload().unwrap_or_default())
                    .is_ok()
                {
                    read.fetch_add(1, Ordering::Relaxed);
                    last_read_us.store(origin.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            }
        })
    };
    let mut n = 0u64;
    let mut started_us: Option<u64> = None;
    let now = Timestamp::now().plus_millis(3_600_000);
    let mut out = Vec::with_capacity(512);
    while n < count {
        let wait = if started_us.is_some() { 3 } else { 30 };
        let m = match tokio::time::timeout(Duration::from_secs(wait), consumer.recv()).await {
            Ok(m) => m?,
            Err(_) if started_us.is_some() => break,
            Err(_) => bail!("relay consumer got nothing in 30 s"),
        };
        started_us.get_or_insert_with(|| origin.elapsed().as_micros() as u64);
        let Ok(ioc_model::Input::Position(p)) =
            decode_input(InputKind::Position, m.payload().unwrap_or_default(), now)
        else {
            continue;
        };
        n += 1;
        // The shape and size of a `unit.updated` event.
        out.clear();
        serde_json::to_writer(
            &mut out,
            &json!({"seq": n, "ts": p.ts, "type": "unit.updated", "district": "hai_chau",
                "data": {"unit_id": p.unit_id, "kind": "ambulance", "status": "available",
                    "position": {"lat": p.lat, "lon": p.lon}, "district": "hai_chau",
                    "station": null, "home_district": null, "speed_kmh": p.speed_kmh,
                    "heading_deg": p.heading_deg, "last_fix": p.ts}}),
        )?;
        let key = m.key().unwrap_or_default();
        loop {
            match producer.send_result(FutureRecord::to(out_topic).key(key).payload(&out)) {
                Ok(_) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    _,
                )) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err((e, _)) => bail!("relay produce: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    // Until every output is read back, or 3 s without one (the embedded
    // broker drops what a slow reader has not read beyond 5 MiB).
    let mut last = u64::MAX;
    while read.load(Ordering::Relaxed) < n && read.load(Ordering::Relaxed) != last {
        last = read.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    reader_task.abort();
    let read_back = read.load(Ordering::Relaxed);
    let secs = last_read_us
        .load(Ordering::Relaxed)
        .saturating_sub(started_us.unwrap_or(0)) as f64
        / 1e6;
    Ok((n as f64 / secs.max(1e-6), read_back))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_status() {
        let status = "Name:\tioc\nVmHWM:\t  2048 kB\nVmRSS:\t  1536 kB\nRssAnon:\t 1000 kB\n";
        assert_eq!(parse_vm_rss_kib(status), Some(1536));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
        assert!(vm_rss_kib(None).is_some_and(|k| k > 0));
    }

    #[test]
    fn counters_are_summed_over_labels() {
        let text = "# TYPE gateway_ws_messages_out_total counter\n\
            gateway_ws_messages_out_total{channel_kind=\"units\"} 10\n\
            gateway_ws_messages_out_total{channel_kind=\"city\"} 5\n\
            gateway_ws_coalesced_total 7\n\
            gateway_ws_coalesced_total_other 1\n";
        let c = parse_counters(text);
        assert_eq!(c.get("gateway_ws_messages_out_total"), Some(&15.0));
        assert_eq!(c.get("gateway_ws_coalesced_total"), Some(&7.0));
        assert_eq!(c.get("ioc_events_read_total"), None);
    }

    #[test]
    fn memory_slope_is_least_squares_after_warmup() {
        // 100 MiB during warm-up, then 200 MiB growing by 1 MiB a minute.
        let mut series = vec![(0.0, 100 * 1024), (60.0, 150 * 1024)];
        for i in 0..=10u64 {
            series.push((120.0 + 60.0 * i as f64, (200 + i) * 1024));
        }
        let m = memory_summary(&series, 120.0);
        assert_eq!(m["start_mib"], 100.0);
        assert_eq!(m["after_warmup_mib"], 200.0);
        assert_eq!(m["end_mib"], 210.0);
        assert_eq!(m["max_mib"], 210.0);
        assert_eq!(m["slope_mib_per_10min"], 10.0);
        assert_eq!(m["samples_after_warmup"], 11);
        // Too few samples after the warm-up: no slope.
        assert!(memory_summary(&series[..3], 120.0)["slope_mib_per_10min"].is_null());
    }
}
