//! The whole pipeline from the outside: a real Kafka producer writes to the
//! embedded broker on loopback, the processor routes, and a real websocket
//! client and HTTP client see the result.

use std::time::Duration;

use anyhow::Context;
use ioc_gateway::auth::Role;
use ioc_integration_tests::{
    eventually, get_list, produce, producer, read_topic, token, TestSystem, WsClient,
};
use ioc_router::distance_m;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);

/// A deterministic fleet around Da Nang: (id, kind, status, lat, lon).
fn fleet() -> Vec<(String, &'static str, &'static str, f64, f64)> {
    let mut out = Vec::new();
    // A small LCG keeps the fleet deterministic without extra dependencies.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..40 {
        let kind = ["ambulance", "police", "fire_engine", "rescue"][i % 4];
        // A quarter of the units are busy: they must never be recommended.
        let status = if i % 5 == 0 { "on_scene" } else { "available" };
        let lat = 15.98 + next() * 0.14;
        let lon = 108.12 + next() * 0.16;
        out.push((format!("unit-{i:02}"), kind, status, lat, lon));
    }
    out
}

fn ts() -> String {
    ioc_model::Timestamp::now().to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_is_routed_to_the_truly_nearest_available_unit_and_bad_input_is_dead_lettered(
) -> anyhow::Result<()> {
    let ts_sys = TestSystem::start().await?;
    let brokers = ts_sys.broker.bootstrap_servers();
    let topics = ts_sys.config.topics.clone();
    let p = producer(&brokers)?;
    let http = reqwest::Client::new();
    let ioc_token = token(Role::Ioc, None);

    // Ready once caught up with the (empty) log.
    eventually(WAIT, "readyz", || async {
        let r = http
            .get(format!("{}/readyz", ts_sys.http()))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await?;

    // Register the fleet and give every unit a position.
    let fleet = fleet();
    for (id, kind, status, _, _) in &fleet {
        let msg = json!({"unit_id": id, "ts": ts(), "kind": kind, "status": status});
        produce(&p, &topics.units, id, msg.to_string().as_bytes()).await?;
    }
    // Positions and registrations travel on different topics, so Kafka
    // does not order them: register first, then send positions (a position
    // of an unregistered unit is dead-lettered by contract).
    eventually(WAIT, "all units registered", || async {
        let units = get_list(&http, &format!("{}/api/units", ts_sys.http()), &ioc_token).await?;
        (units.len() == fleet.len()).then_some(())
    })
    .await?;
    for (id, _, _, lat, lon) in &fleet {
        let msg = json!({"unit_id": id, "ts": ts(), "lat": lat, "lon": lon, "speed_kmh": 0.0});
        produce(&p, &topics.positions, id, msg.to_string().as_bytes()).await?;
    }
    // The gateway's picture has every unit with its position.
    eventually(WAIT, "all units visible over HTTP", || async {
        let units = get_list(&http, &format!("{}/api/units", ts_sys.http()), &ioc_token).await?;
        let located = units.iter().filter(|u| !u["position"].is_null()).count();
        (located == fleet.len()).then_some(())
    })
    .await?;

    let mut ws = WsClient::connect(ts_sys.system.addr, &ioc_token).await?;
    ws.send(json!({"op": "subscribe", "channel": "city"}))
        .await?;
    let snapshot = ws.wait_for(WAIT, |v| v["op"] == "snapshot").await?;
    assert_eq!(snapshot["channel"], "city");
    let snap_seq = snapshot["seq"].as_u64().context("snapshot seq")?;

    // A medical call in Hai Chau.
    let (clat, clon) = (16.0544, 108.2022);
    let call = json!({
        "call_id": "e2e-call-1", "received_at": ts(), "line": "115",
        "location": {"lat": clat, "lon": clon, "accuracy_m": 20.0},
        "category": "medical", "caller": "0905123467"
    });
    produce(&p, &topics.calls, "e2e-call-1", call.to_string().as_bytes()).await?;

    let opened = ws
        .wait_for(WAIT, |v| {
            v["op"] == "event" && v["event"]["type"] == "incident.opened"
        })
        .await?;
    assert!(opened["seq"].as_u64().context("seq")? > snap_seq);
    let inc = &opened["event"]["data"];
    assert_eq!(inc["incident_id"], "inc-e2e-call-1");
    assert_eq!(inc["district"], "hai_chau");
    assert_ne!(
        inc["caller"], "0905123467",
        "the wall screen never sees the number"
    );

    let rec = ws
        .wait_for(WAIT, |v| {
            v["op"] == "event" && v["event"]["type"] == "dispatch.recommended"
        })
        .await?;
    let candidates = rec["event"]["data"]["candidates"]
        .as_array()
        .context("candidates")?;
    // Brute force over the fleet we produced: nearest available ambulance.
    let mut want: Vec<(f64, &str)> = fleet
        .iter()
        .filter(|u| u.1 == "ambulance" && u.2 == "available")
        .map(|u| (distance_m(clat, clon, u.3, u.4), u.0.as_str()))
        .collect();
    want.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(
        candidates[0]["unit_id"], want[0].1,
        "candidates: {candidates:?}"
    );
    assert_eq!(candidates[0]["kind"], "ambulance");
    let got: Vec<&str> = candidates
        .iter()
        .filter_map(|c| c["unit_id"].as_str())
        .collect();
    let want_ids: Vec<&str> = want.iter().take(got.len()).map(|w| w.1).collect();
    assert_eq!(got, want_ids, "ranked like the brute-force scan");
    let d0 = candidates[0]["distance_m"].as_f64().context("distance")?;
    assert!((d0 - want[0].0).abs() < 1.5, "{d0} vs {}", want[0].0);

    // An invalid call goes to the DLQ with its reason; the next valid one
    // still gets through.
    let bad = json!({
        "call_id": "e2e-bad", "received_at": ts(), "line": "115",
        "location": {"lat": 123.0, "lon": 108.2}, "category": "medical"
    });
    produce(&p, &topics.calls, "e2e-bad", bad.to_string().as_bytes()).await?;
    produce(&p, &topics.calls, "e2e-bad-2", b"{not json").await?;
    let good = json!({
        "call_id": "e2e-call-2", "received_at": ts(), "line": "114",
        "location": {"lat": 16.0700, "lon": 108.1500}, "category": "fire"
    });
    produce(&p, &topics.calls, "e2e-call-2", good.to_string().as_bytes()).await?;
    let second = ws
        .wait_for(WAIT, |v| {
            v["op"] == "event"
                && v["event"]["type"] == "incident.opened"
                && v["event"]["data"]["incident_id"] == "inc-e2e-call-2"
        })
        .await?;
    assert_eq!(second["event"]["data"]["priority"], 1);

    let letters = eventually(WAIT, "two dead letters", || async {
        let all = read_topic(&brokers, &topics.dlq).ok()?;
        (all.len() >= 2).then_some(all)
    })
    .await?;
    let lat_letter = letters
        .iter()
        .find(|l| l["key"] == "e2e-bad")
        .context("dead letter for the bad call")?;
    assert!(
        lat_letter["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("location.lat"),
        "{lat_letter}"
    );
    assert_eq!(lat_letter["topic"], topics.calls);
    use base64::Engine as _;
    let original = base64::engine::general_purpose::STANDARD
        .decode(lat_letter["original_base64"].as_str().unwrap_or_default())?;
    assert_eq!(
        original,
        bad.to_string().into_bytes(),
        "original bytes kept"
    );
    let json_letter = letters
        .iter()
        .find(|l| l["key"] == "e2e-bad-2")
        .context("dead letter for the malformed call")?;
    assert!(json_letter["reason"]
        .as_str()
        .unwrap_or_default()
        .starts_with("not utf-8 json"));

    // The output log itself is ordered and gap-free.
    let events = read_topic(&brokers, &topics.events)?;
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(!seqs.is_empty());
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq gap-free: {seqs:?}"
    );

    ts_sys.system.shutdown(Duration::from_secs(20)).await?;
    Ok(())
}
