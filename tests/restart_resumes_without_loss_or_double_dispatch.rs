//! Recovery under SIGKILL: the processor (`ioc serve`, a separate process)
//! is killed with `kill -9` at random points while a producer sends a known
//! stream, and restarted each time. At the end every input is reflected
//! exactly once, the output log has no seq twice with different content,
//! no unit is on two incidents, and a websocket client that followed along
//! through every restart (resuming with `since`) holds the same picture as
//! the final processor.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use ioc_gateway::auth::Role;
use ioc_ingest::EmbeddedBroker;
use ioc_integration_tests::{
    eventually, get_list, produce, producer, read_topic, token, ServeProcess, WsClient,
};
use serde_json::{json, Value};

/// Kills in one run; `IOC_FAULT_KILLS` overrides (the 10 runs in
/// about two minutes).
fn kills() -> usize {
    std::env::var("IOC_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

const CONFIG: &str = "[processor]\nsession_timeout_ms = 3000\n";

/// A client-side picture built only from what the websocket said: incidents
/// from the `city` channel, units from the `units` channel, each channel
/// with its own position in the log (channels are ordered each on its own;
/// positions may be coalesced and arrive after a later city event).
#[derive(Default)]
struct View {
    city_seq: u64,
    units_seq: u64,
    incidents: BTreeMap<String, Value>,
    units: BTreeMap<String, Value>,
}

impl View {
    fn seq(&self, channel: &str) -> u64 {
        if channel == "units" {
            self.units_seq
        } else {
            self.city_seq
        }
    }

    fn apply_frame(&mut self, f: &Value) {
        let channel = f["channel"].as_str().unwrap_or_default();
        let seq = f["seq"].as_u64().unwrap_or(0);
        match (f["op"].as_str(), channel) {
            (Some("snapshot"), "city") => {
                self.incidents.clear();
                for i in f["data"]["incidents"].as_array().into_iter().flatten() {
                    self.incidents.insert(
                        i["incident_id"].as_str().unwrap_or_default().into(),
                        i.clone(),
                    );
                }
                self.city_seq = seq;
            }
            (Some("snapshot"), "units") => {
                self.units.clear();
                for u in f["data"]["units"].as_array().into_iter().flatten() {
                    self.units
                        .insert(u["unit_id"].as_str().unwrap_or_default().into(), u.clone());
                }
                self.units_seq = seq;
            }
            (Some("event"), "city") if seq > self.city_seq => {
                self.city_seq = seq;
                let ev = &f["event"];
                let data = &ev["data"];
                let id = data["incident_id"].as_str().unwrap_or_default().to_string();
                match ev["type"].as_str().unwrap_or_default() {
                    "incident.opened" | "incident.updated" => {
                        self.incidents.insert(id, data.clone());
                    }
                    "incident.closed" => {
                        self.incidents.remove(&id);
                    }
                    _ => {}
                }
            }
            (Some("event"), "units") if seq > self.units_seq => {
                self.units_seq = seq;
                let data = &f["event"]["data"];
                self.units.insert(
                    data["unit_id"].as_str().unwrap_or_default().into(),
                    data.clone(),
                );
            }
            _ => {}
        }
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_without_loss_or_double_dispatch() -> anyhow::Result<()> {
    let topics = ioc_model::Topics::default();
    let broker = EmbeddedBroker::start(&topics)?;
    let brokers = broker.bootstrap_servers();
    let p = producer(&brokers)?;
    let ioc_token = token(Role::Ioc, None);
    let http = reqwest::Client::new();
    let mut rng = Lcg(0xDA_4A46);

    // A fleet registered before anything else.
    let kinds = ["ambulance", "police", "fire_engine", "rescue"];
    let units: Vec<String> = (0..16).map(|i| format!("fu-{i:02}")).collect();
    let mut serve = ServeProcess::spawn(&brokers, CONFIG)?;
    let first_ready = serve.wait_ready(Duration::from_secs(60)).await?;
    let t0 = ioc_model::Timestamp::now();
    for (i, id) in units.iter().enumerate() {
        let msg = json!({"unit_id": id, "ts": t0, "kind": kinds[i % 4], "status": "available"});
        produce(&p, &topics.units, id, msg.to_string().as_bytes()).await?;
    }
    eventually(Duration::from_secs(30), "fleet registered", || async {
        let n = get_list(
            &http,
            &format!("http://{}/api/units", serve.addr),
            &ioc_token,
        )
        .await?
        .len();
        (n == units.len()).then_some(())
    })
    .await?;

    // A websocket client that follows through every restart.
    let mut view = View::default();
    let mut ws = WsClient::connect(serve.addr, &ioc_token).await?;
    ws.send(json!({"op": "subscribe", "channel": "city"}))
        .await?;
    ws.send(json!({"op": "subscribe", "channel": "units"}))
        .await?;

    // The known stream, sent by its own task while the processor is killed
    // and restarted: calls far apart (no correlation: one incident each)
    // and positions with increasing timestamps.
    let calls = 60usize;
    let stream = {
        let (p, topics, units) = (p.clone(), topics.clone(), units.clone());
        let t0 = ioc_model::Timestamp::now().plus_millis(-1_200_000);
        let mut rng = Lcg(0x5EED);
        tokio::spawn(async move {
            let mut last_position: BTreeMap<String, (f64, f64)> = BTreeMap::new();
            let mut sent_calls = BTreeSet::new();
            for c in 0..calls {
                let id = format!("fault-call-{c:03}");
                // A grid 0.01° (> 1 km) apart: never within the correlation radius.
                let lat = 15.99 + (c / 10) as f64 * 0.01;
                let lon = 108.15 + (c % 10) as f64 * 0.01;
                let category = if c % 7 == 0 { "fire" } else { "medical" };
                let msg = json!({"call_id": id, "received_at": ioc_model::Timestamp::now(), "line": "115",
                    "location": {"lat": lat, "lon": lon}, "category": category, "caller": "0905000111"});
                produce(&p, &topics.calls, &id, msg.to_string().as_bytes()).await?;
                sent_calls.insert(id);
                for (n, u) in units.iter().enumerate().take(4 + c % 12) {
                    // Units drive plausibly (a GPS jump would be rejected):
                    // ~50 m per ping, one ping every 10 s of event time.
                    let (la, lo) = last_position
                        .get(u)
                        .copied()
                        .unwrap_or((16.0 + n as f64 * 0.004, 108.18));
                    let (la, lo) = (
                        la + (rng.next() - 0.5) * 0.001,
                        lo + (rng.next() - 0.5) * 0.001,
                    );
                    let ts = t0.plus_millis(10_000 * (c as i64 + 1));
                    let msg = json!({"unit_id": u, "ts": ts, "lat": la, "lon": lo});
                    produce(&p, &topics.positions, u, msg.to_string().as_bytes()).await?;
                    last_position.insert(u.clone(), (la, lo));
                }
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
            anyhow::Ok((sent_calls, last_position))
        })
    };

    let kill_count = kills();
    let mut recoveries = Vec::new();
    for _ in 0..kill_count {
        // Run for a random while, reading the socket as a screen would.
        let until = Instant::now() + Duration::from_millis(300 + (rng.next() * 1500.0) as u64);
        while Instant::now() < until {
            if let Ok(f) = ws.next(Duration::from_millis(50)).await {
                view.apply_frame(&f);
            }
        }
        serve.kill9()?;
        serve = ServeProcess::spawn(&brokers, CONFIG)?;
        recoveries.push(serve.wait_ready(Duration::from_secs(90)).await?);
        // Resume: reconnect and ask for what we missed.
        ws = WsClient::connect(serve.addr, &ioc_token).await?;
        for ch in ["city", "units"] {
            ws.send(json!({"op": "subscribe", "channel": ch, "since": view.seq(ch)}))
                .await?;
        }
    }
    let (sent_calls, last_position) = stream.await??;

    // Everything processed: the final processor is caught up and the
    // picture stops changing.
    serve.wait_ready(Duration::from_secs(60)).await?;
    let incidents: Vec<Value> =
        eventually(Duration::from_secs(60), "every call reflected", || async {
            let v = get_list(
                &http,
                &format!("http://{}/api/incidents", serve.addr),
                &ioc_token,
            )
            .await?;
            (v.len() >= calls).then_some(v)
        })
        .await?;
    let units_now: Vec<Value> = http
        .get(format!("http://{}/api/units", serve.addr))
        .bearer_auth(&ioc_token)
        .send()
        .await?
        .json()
        .await?;

    // Exactly once: one open incident per call, each with one call.
    assert_eq!(incidents.len(), calls, "one incident per call");
    let ids: BTreeSet<String> = incidents
        .iter()
        .map(|i| i["incident_id"].as_str().unwrap_or_default().to_string())
        .collect();
    let want: BTreeSet<String> = sent_calls.iter().map(|c| format!("inc-{c}")).collect();
    assert_eq!(ids, want);
    assert!(
        incidents.iter().all(|i| i["call_count"] == 1),
        "a call counted twice"
    );

    // Last positions are the last ones sent.
    for u in &units_now {
        let id = u["unit_id"].as_str().unwrap_or_default();
        if let Some((la, lo)) = last_position.get(id) {
            assert_eq!(u["position"]["lat"].as_f64(), Some(*la), "{id}");
            assert_eq!(u["position"]["lon"].as_f64(), Some(*lo), "{id}");
        }
    }

    // No unit on two incidents, and incidents and units agree.
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for i in &incidents {
        for u in i["assigned_units"].as_array().into_iter().flatten() {
            let u = u.as_str().unwrap_or_default().to_string();
            let inc = i["incident_id"].as_str().unwrap_or_default().to_string();
            assert!(
                owner.insert(u.clone(), inc).is_none(),
                "unit {u} on two incidents"
            );
        }
    }
    for u in &units_now {
        let id = u["unit_id"].as_str().unwrap_or_default();
        assert_eq!(
            u["incident_id"].as_str(),
            owner.get(id).map(String::as_str),
            "unit {id} and its incident disagree"
        );
    }

    // The log: a seq written twice (a batch re-emitted after a crash) must
    // be the same event both times, and no call opened two incidents.
    let log = read_topic(&brokers, &topics.events)?;
    let mut by_seq: BTreeMap<u64, &Value> = BTreeMap::new();
    for ev in &log {
        let seq = ev["seq"].as_u64().context("seq")?;
        if let Some(prev) = by_seq.insert(seq, ev) {
            assert_eq!(prev, ev, "seq {seq} written twice with different content");
        }
    }
    let seqs: Vec<u64> = by_seq.keys().copied().collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gap in the log's seq"
    );
    let opened = by_seq
        .values()
        .filter(|e| e["type"] == "incident.opened")
        .count();
    assert_eq!(opened, calls, "incident.opened exactly once per call");

    // The websocket client's picture equals the final processor's.
    // The last event of each channel: `unit.updated` travel on `units`,
    // everything else on `city`.
    let last_of = |units: bool| {
        by_seq
            .iter()
            .filter(|(_, e)| (e["type"] == "unit.updated") == units)
            .map(|(s, _)| *s)
            .max()
            .unwrap_or(0)
    };
    let (last_city, last_units) = (last_of(false), last_of(true));
    let deadline = Instant::now() + Duration::from_secs(30);
    while (view.city_seq < last_city || view.units_seq < last_units) && Instant::now() < deadline {
        if let Ok(f) = ws.next(Duration::from_millis(200)).await {
            view.apply_frame(&f);
        }
    }
    assert_eq!(view.city_seq, last_city, "client caught up on city");
    assert_eq!(view.units_seq, last_units, "client caught up on units");
    let http_incidents: BTreeMap<String, Value> = incidents
        .iter()
        .map(|i| {
            (
                i["incident_id"].as_str().unwrap_or_default().to_string(),
                i.clone(),
            )
        })
        .collect();
    assert_eq!(
        view.incidents.keys().collect::<Vec<_>>(),
        http_incidents.keys().collect::<Vec<_>>()
    );
    for (id, i) in &http_incidents {
        assert_eq!(
            view.incidents[id]["assigned_units"], i["assigned_units"],
            "{id}"
        );
        assert_eq!(view.incidents[id]["status"], i["status"], "{id}");
    }
    for u in &units_now {
        let id = u["unit_id"].as_str().unwrap_or_default();
        assert_eq!(view.units[id]["position"], u["position"], "{id}");
        assert_eq!(view.units[id]["status"], u["status"], "{id}");
    }

    let ms: Vec<u128> = recoveries.iter().map(Duration::as_millis).collect();
    eprintln!(
        "first start ready in {} ms; recovery after kill -9 (spawn to /readyz 200), ms: {ms:?}",
        first_ready.as_millis()
    );
    assert_eq!(recoveries.len(), kill_count);
    drop(serve);
    drop(broker);
    Ok(())
}
