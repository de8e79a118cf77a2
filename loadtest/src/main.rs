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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ioc_model::{decode_input, InputKind, Timestamp, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;

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
    /// Websocket clients on the `units` channel.
    #[arg(long, default_value_t = 10)]
    clients: usize,
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
    for (i, (id, _, _)) in fleet.iter().enumerate() {
        let kind = ["ambulance", "police", "fire_engine", "rescue"][i % 4];
        let msg =
            json!({"unit_id": id, "ts": Timestamp::now(), "kind": kind, "status": "available"});
        send(&producer, &topics.units, id, msg.to_string().as_bytes())?;
    }
    producer.flush(Duration::from_secs(30))?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = http
            .get(format!("http://{gateway}/api/units"))
            .bearer_auth(&token)
            .send()
            .await?
            .json::<Vec<serde_json::Value>>()
            .await
            .map(|v| v.len())
            .unwrap_or(0);
        if n >= fleet.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {} units registered after 120 s", fleet.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Websocket clients.
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 600_000, 3,
    )?));
    let delivered = Arc::new(AtomicU64::new(0));
    // Microseconds since `origin` of the latest frame received: the end of
    // the processing window.
    let origin = Instant::now();
    let last_rx_us = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for i in 0..args.clients {
        // One token per client: the gateway caps open websockets per token
        // (`max_connections_per_token`), as it should for real screens.
        let token = ioc_gateway::auth::mint_token(
            &secret,
            &format!("loadtest-{i}"),
            ioc_gateway::auth::Role::Ioc,
            None,
            3600,
        )?;
        let url = format!("ws://{gateway}/ws?access_token={token}");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        ws.send(WsMessage::Text(
            json!({"op":"subscribe","channel":"units"})
                .to_string()
                .into(),
        ))
        .await?;
        let (hist, delivered, last_rx_us) = (
            Arc::clone(&hist),
            Arc::clone(&delivered),
            Arc::clone(&last_rx_us),
        );
        readers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let WsMessage::Text(t) = msg else { continue };
                // Only `op` and `event.ts` are read: parsing the whole frame
                // into a `Value` cost more CPU than the gateway spent on it,
                // taken from the system under test on a 2-core machine.
                let Ok(frame) = serde_json::from_str::<FrameTs<'_>>(&t) else {
                    continue;
                };
                if frame.op != "event" {
                    continue;
                }
                let Some(ts) = frame
                    .event
                    .and_then(|e| Timestamp::parse(e.ts.as_ref()).ok())
                else {
                    continue;
                };
                let lat_ms = (Timestamp::now().unix_millis() - ts.unix_millis()).max(1) as u64;
                if let Ok(mut h) = hist.lock() {
                    let _ = h.record(lat_ms);
                }
                delivered.fetch_add(1, Ordering::Relaxed);
                last_rx_us.fetch_max(origin.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        }));
    }

    // Load.
    eprintln!(
        "producing {} pings/s for {} s to {} clients",
        args.rate, args.duration, args.clients
    );
    let start = Instant::now();
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
    let processor_done_us = Arc::new(AtomicU64::new(0));
    let processor_watch = _system.as_ref().map(|system| {
        let status = Arc::clone(&system.processor);
        let target = status.handled.load(Ordering::Relaxed) + total;
        let done = Arc::clone(&processor_done_us);
        tokio::spawn(async move {
            while status.handled.load(Ordering::Relaxed) < target {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            done.store(origin.elapsed().as_micros() as u64, Ordering::Relaxed);
        })
    });
    let mut step = 0u64;
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
        if sent % (args.rate.max(10) / 10).max(1) == 0 {
            let el = start.elapsed().as_secs_f64();
            eprint!(
                "\r{:>5.1}s sent {sent} delivered {} ",
                el,
                delivered.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    producer.flush(Duration::from_secs(60))?;
    let produce_s = start.elapsed().as_secs_f64();
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
    for r in readers {
        r.abort();
    }

    // Baseline: a bare consumer of the same pings that only decodes and validates.
    let bare = bare_consume(&brokers, &topics.positions, total).await?;

    let h = hist
        .lock()
        .map_err(|_| anyhow::anyhow!("histogram lock"))?
        .clone();
    let delivered = delivered.load(Ordering::Relaxed);
    let expected = total * args.clients as u64;
    let report = json!({
        "units": args.units, "rate_target": args.rate, "duration_s": args.duration, "clients": args.clients,
        "pings_produced": total, "produce_rate": total as f64 / produce_s,
        "frames_delivered": delivered, "frames_expected": expected,
        "delivered_per_s": delivered as f64 / wall_s,
        "latency_ms": {"p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9),
                        "p99": h.value_at_quantile(0.99), "p999": h.value_at_quantile(0.999), "max": h.max()},
        "bare_consume_per_s": bare,
        "processed_per_s": total as f64 / wall_s,
        "processor_vs_bare": (total as f64 / wall_s) / bare,
        "processor_only_per_s": processor_per_s,
        "processor_only_vs_bare": processor_per_s.map(|p| p / bare),
    });
    println!("| metric | value |\n|---|---|");
    for (k, v) in report.as_object().into_iter().flatten() {
        println!("| {k} | {v} |");
    }
    if let Some(path) = args.report {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

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

/// Messages per second a consumer reaches that only decodes and validates.
async fn bare_consume(brokers: &str, topic: &str, count: u64) -> anyhow::Result<f64> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("loadtest-bare-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    c.subscribe(&[topic])?;
    let mut n = 0u64;
    let mut started: Option<Instant> = None;
    let now = Timestamp::now().plus_millis(3_600_000);
    while n < count {
        let m = tokio::time::timeout(Duration::from_secs(30), c.recv())
            .await
            .context("bare consumer stalled")??;
        started.get_or_insert_with(Instant::now);
        if decode_input(InputKind::Position, m.payload().unwrap_or_default(), now).is_ok() {
            n += 1;
        }
    }
    Ok(n as f64 / started.map_or(1.0, |s| s.elapsed().as_secs_f64()))
}
