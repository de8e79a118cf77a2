//! One writer of the output log, driven from outside: two `ioc serve`
//! processes (A, B) of one deployment against one broker.
//!
//! * A owns the output log; B, started next, stands by (not ready, owns
//!   nothing, writes nothing) instead of splitting the inputs;
//! * A is paused (SIGSTOP) past its group session: B gets the lease, fences
//!   A's producer, restores the picture from the log and handles every
//!   input from where A's last transaction left off;
//! * A is woken (SIGCONT): its writes are refused, it stands by;
//! * no seq is written twice, every call opens exactly one incident, and
//!   both gateways (B's, and A's, which kept following the log) show all
//!   of them.
//!
//! Before issue 12 two processors split the inputs and both wrote their own
//! seqs: 52 of 263 seqs collided and screens missed incidents
//! (docs/scaling.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use ioc_gateway::auth::Role;
use ioc_ingest::EmbeddedBroker;
use ioc_integration_tests::{
    committed_offsets, end_offsets, eventually, get_list, produce, producer, read_topic, token,
    ServeProcess,
};
use rdkafka::producer::FutureProducer;
use serde_json::json;

/// A paused owner loses the lease after 3 s (default 6 s).
const CONFIG: &str = "[processor]\nsession_timeout_ms = 3000\n";
const GROUP: &str = "ioc-processor";
const STORED: &str = "ioc_ingest_offsets_stored_total";
const OWNER: &str = "ioc_processor_owner";
const FENCED: &str = "ioc_processor_fenced_total";
/// Input topics and their partitions on the embedded broker.
const INPUTS: [(&str, i32); 5] = [
    ("ioc.calls", 3),
    ("ioc.incidents", 3),
    ("ioc.positions", 6),
    ("ioc.units", 3),
    ("ioc.commands", 3),
];
const KINDS: [&str; 4] = ["ambulance", "police", "fire_engine", "rescue"];

/// Waits until the group's committed offsets are the end of every input
/// partition: every input produced so far is handled and committed.
async fn wait_committed(brokers: &str, timeout: Duration) -> anyhow::Result<()> {
    eventually(timeout, "group committed every input", || async {
        let b = brokers.to_string();
        tokio::task::spawn_blocking(move || {
            let done = committed_offsets(&b, GROUP, &INPUTS).ok()?;
            let end = end_offsets(&b, &INPUTS).ok()?;
            (done == end).then_some(())
        })
        .await
        .ok()
        .flatten()
    })
    .await
}

/// A burst of calls (far apart: one incident each) and pings.
async fn burst(
    p: &FutureProducer,
    calls: std::ops::Range<usize>,
    units: &[String],
    step: i64,
) -> anyhow::Result<usize> {
    let mut sent = 0;
    let t0 = ioc_model::Timestamp::now().plus_millis(-600_000);
    for c in calls {
        let id = format!("split-call-{c:03}");
        let (lat, lon) = (
            15.95 + (c / 10) as f64 * 0.01,
            108.12 + (c % 10) as f64 * 0.01,
        );
        let msg = json!({"call_id": id, "received_at": ioc_model::Timestamp::now(), "line": "115",
            "location": {"lat": lat, "lon": lon}, "category": "medical"});
        produce(p, "ioc.calls", &id, msg.to_string().as_bytes()).await?;
        sent += 1;
    }
    for (n, u) in units.iter().enumerate() {
        for k in 0..3 {
            // ~10 m per ping, 10 s apart in event time: never a GPS jump.
            let i = step * 3 + k;
            let (lat, lon) = (16.0 + n as f64 * 0.003 + i as f64 * 1e-4, 108.2);
            let ts = t0.plus_millis(10_000 * (i + 1));
            let msg = json!({"unit_id": u, "ts": ts, "lat": lat, "lon": lon});
            produce(p, "ioc.positions", u, msg.to_string().as_bytes()).await?;
            sent += 1;
        }
    }
    Ok(sent)
}

async fn register(p: &FutureProducer, units: &[String]) -> anyhow::Result<usize> {
    let ts = ioc_model::Timestamp::now().plus_millis(-900_000);
    for (i, id) in units.iter().enumerate() {
        let msg = json!({"unit_id": id, "ts": ts, "kind": KINDS[i % 4], "status": "available"});
        produce(p, "ioc.units", id, msg.to_string().as_bytes()).await?;
    }
    Ok(units.len())
}

fn signal(p: &ServeProcess, sig: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill {sig} failed");
    Ok(())
}

async fn incidents_on_screen(p: &ServeProcess) -> Option<usize> {
    let http = reqwest::Client::new();
    let list = get_list(
        &http,
        &format!("http://{}/api/incidents", p.addr),
        &token(Role::Ioc, None),
    )
    .await?;
    Some(list.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_owner_is_fenced_and_every_incident_reaches_the_screens() -> anyhow::Result<()> {
    let topics = ioc_model::Topics::default();
    let broker = EmbeddedBroker::start(&topics)?;
    let brokers = broker.bootstrap_servers();
    let p = producer(&brokers)?;
    let logs = std::env::temp_dir().join(format!("ioc-one-writer-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let rust_log = "info,rdkafka=warn,librdkafka=warn";

    let a = ServeProcess::spawn_logged(&brokers, CONFIG, rust_log, &logs.join("a.log"))?;
    a.wait_ready(Duration::from_secs(90)).await?;
    let fleet: Vec<String> = (0..16).map(|i| format!("unit-{i:02}")).collect();
    register(&p, &fleet).await?;
    burst(&p, 0..20, &fleet, 0).await?;
    wait_committed(&brokers, Duration::from_secs(60)).await?;

    // B joins: a standby, not a second writer.
    let b = ServeProcess::spawn_logged(&brokers, CONFIG, rust_log, &logs.join("b.log"))?;
    eventually(Duration::from_secs(60), "B on standby", || async {
        (b.metric(OWNER, "").await.ok()? == 0.0 && b.metric(STORED, "").await.is_ok()).then_some(())
    })
    .await?;
    burst(&p, 20..30, &fleet, 1).await?;
    wait_committed(&brokers, Duration::from_secs(60)).await?;
    assert_eq!(a.metric(OWNER, "").await?, 1.0, "A keeps the output log");
    assert_eq!(
        b.metric(STORED, "").await?,
        0.0,
        "B handled nothing on standby"
    );
    let standby = reqwest::get(format!("http://{}/readyz", b.addr))
        .await?
        .status();
    assert_eq!(standby.as_u16(), 503, "a standby is not ready");
    let a_before = a.metric(STORED, "").await?;

    // A is paused past its session: B takes over.
    signal(&a, "-STOP")?;
    let paused_at = Instant::now();
    burst(&p, 30..45, &fleet, 2).await?;
    wait_committed(&brokers, Duration::from_secs(90))
        .await
        .context("B did not take over the paused A's inputs")?;
    let took_over = paused_at.elapsed();
    assert_eq!(b.metric(OWNER, "").await?, 1.0, "B owns the output log");
    assert!(b.metric(STORED, "").await? > 0.0);

    // A wakes: its writes are refused; it stands by.
    signal(&a, "-CONT")?;
    eventually(Duration::from_secs(60), "A back on standby", || async {
        (a.metric(OWNER, "").await.ok()? == 0.0).then_some(())
    })
    .await?;
    let a_fenced = a.metric(FENCED, "").await?;
    burst(&p, 45..60, &fleet, 3).await?;
    wait_committed(&brokers, Duration::from_secs(60)).await?;
    assert_eq!(
        a.metric(STORED, "").await?,
        a_before,
        "A committed nothing after it was paused"
    );

    // The log: each seq once, growing; one incident per call.
    let log = read_topic(&brokers, &topics.events)?;
    let mut by_seq: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut last = 0u64;
    for ev in &log {
        let seq = ev["seq"].as_u64().context("seq")?;
        assert!(
            seq > last,
            "seq {seq} after {last}: written twice or backwards"
        );
        last = seq;
        by_seq.entry(seq).or_default().insert(ev.to_string());
    }
    let mut opened: BTreeMap<String, usize> = BTreeMap::new();
    for ev in log.iter().filter(|e| e["type"] == "incident.opened") {
        *opened
            .entry(
                ev["data"]["incident_id"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
            )
            .or_default() += 1;
    }
    let want: BTreeSet<String> = (0..60).map(|c| format!("inc-split-call-{c:03}")).collect();
    assert_eq!(opened.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert!(
        opened.values().all(|n| *n == 1),
        "a call opened two incidents"
    );
    // Both gateways show every incident.
    for (name, p) in [("A", &a), ("B", &b)] {
        eventually(
            Duration::from_secs(30),
            "every incident on screen",
            || async { (incidents_on_screen(p).await? == 60).then_some(()) },
        )
        .await
        .with_context(|| format!("{name}'s gateway"))?;
    }
    eprintln!(
        "one writer: A paused -> B committed every input within {} ms; A fenced {a_fenced} time(s); \
         log {} events, max seq {last}; logs in {}",
        took_over.as_millis(),
        log.len(),
        logs.display()
    );
    Ok(())
}
