//! Websocket protocol against a real server and real clients.

mod common;

use std::time::Duration;

use common::*;
use futures::{SinkExt, StreamExt};
use ioc_gateway::auth::Role;
use ioc_gateway::{Heartbeat, StaleReason};
use ioc_model::EventBody;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn refuses_upgrade_without_a_valid_token_or_origin() {
    let srv = start(|c| c.allowed_origins = vec!["https://ioc.example".into()]).await;
    assert_eq!(try_connect(srv.addr, None, None).await.err(), Some(401));
    assert_eq!(
        try_connect(srv.addr, Some("not.a.jwt"), None).await.err(),
        Some(401)
    );
    let foreign = ioc_gateway::auth::mint_token("other-secret", "x", Role::Ioc, None, 60).unwrap();
    assert_eq!(
        try_connect(srv.addr, Some(&foreign), None).await.err(),
        Some(401)
    );
    let expired = expired_token();
    assert_eq!(
        try_connect(srv.addr, Some(&expired), None).await.err(),
        Some(401)
    );
    let good = token(Role::Ioc, None);
    assert_eq!(
        try_connect(srv.addr, Some(&good), Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert!(
        try_connect(srv.addr, Some(&good), Some("https://ioc.example"))
            .await
            .is_ok()
    );
    // Browsers put the token in the query string.
    let url = format!("ws://{}/ws?access_token={good}", srv.addr);
    assert!(tokio_tungstenite::connect_async(url).await.is_ok());
}

fn expired_token() -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    encode(
        &Header::default(),
        &json!({"sub": "x", "role": "ioc", "exp": now - 120}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn city_subscription_gets_a_snapshot_then_ordered_events_with_prev_seq() {
    let srv = start(|_| {}).await;
    srv.gw.publish(opened(1, "i1", "hai_chau", None));
    srv.gw.publish(unit_updated(2, "u1", "hai_chau"));
    let mut ws = connect(srv.addr, &token(Role::Ioc, None)).await;
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut ws).await, json!({"op": "pong"}));
    send(&mut ws, json!({"op": "subscribe", "channel": "city"})).await;
    let snap = recv(&mut ws).await;
    assert_eq!(snap["op"], "snapshot");
    assert_eq!(snap["channel"], "city");
    assert_eq!(snap["seq"], 2);
    assert_eq!(snap["data"]["incidents"][0]["incident_id"], "i1");
    assert_eq!(snap["data"]["units"][0]["unit_id"], "u1");
    assert!(snap["data"]["alerts"].as_array().unwrap().is_empty());
    assert!(snap["data"]["recommendations"].is_array());

    srv.gw.publish(unit_updated(3, "u1", "hai_chau")); // not on city
    srv.gw.publish(opened(4, "i2", "son_tra", None));
    srv.gw.publish(opened(4, "dup", "son_tra", None)); // duplicate seq: ignored
    srv.gw.publish(alert_raised(5, "a1", "son_tra", Some("i2")));
    let e1 = recv(&mut ws).await;
    assert_eq!(
        (
            e1["op"].as_str(),
            e1["seq"].as_u64(),
            e1["prev_seq"].as_u64()
        ),
        (Some("event"), Some(4), Some(2))
    );
    assert_eq!(e1["event"]["type"], "incident.opened");
    assert_eq!(e1["event"]["data"]["incident_id"], "i2");
    let e2 = recv(&mut ws).await;
    assert_eq!(
        (e2["seq"].as_u64(), e2["prev_seq"].as_u64()),
        (Some(5), Some(4))
    );
    assert_eq!(e2["event"]["type"], "alert.raised");
    assert_quiet(&mut ws).await;
    assert_eq!(srv.gw.last_seq(), 5);

    // unsubscribe stops delivery; units channel carries only unit updates.
    send(&mut ws, json!({"op": "unsubscribe", "channel": "city"})).await;
    send(&mut ws, json!({"op": "subscribe", "channel": "units"})).await;
    let snap = recv(&mut ws).await;
    assert_eq!(
        (snap["op"].as_str(), snap["seq"].as_u64()),
        (Some("snapshot"), Some(5))
    );
    assert_eq!(snap["data"].as_object().unwrap().len(), 1);
    srv.gw.publish(opened(6, "i3", "hai_chau", None));
    srv.gw.publish(unit_updated(7, "u2", "son_tra"));
    let e = recv(&mut ws).await;
    assert_eq!(
        (e["seq"].as_u64(), e["prev_seq"].as_u64()),
        (Some(7), Some(5))
    );
    assert_eq!(e["channel"], "units");
}

#[tokio::test]
async fn district_user_sees_only_its_district_and_stays_connected_after_refusals() {
    let srv = start(|_| {}).await;
    srv.gw.publish(opened(1, "i1", "hai_chau", Some(PHONE)));
    srv.gw.publish(opened(2, "i2", "son_tra", None));
    let mut ws = connect(srv.addr, &token(Role::District, Some("hai_chau"))).await;

    for channel in ["city", "district:son_tra", "units", "dispatch"] {
        send(&mut ws, json!({"op": "subscribe", "channel": channel})).await;
        let err = recv(&mut ws).await;
        assert_eq!(err["op"], "error", "{channel}");
        assert_eq!(err["code"], "forbidden", "{channel}");
        assert_eq!(err["channel"], channel);
    }
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "district:atlantis"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "unknown_channel");
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(recv(&mut ws).await["code"], "bad_request");
    send(&mut ws, json!({"op": "dance"})).await;
    assert_eq!(recv(&mut ws).await["code"], "bad_request");

    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "district:hai_chau"}),
    )
    .await;
    let snap = recv(&mut ws).await;
    assert_eq!(snap["op"], "snapshot");
    assert_eq!(snap["channel"], "district:hai_chau");
    let incidents = snap["data"]["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["incident_id"], "i1");
    assert_eq!(incidents[0]["caller"], "********67");

    srv.gw.publish(opened(3, "i3", "son_tra", None));
    srv.gw.publish(unit_updated(4, "u1", "hai_chau"));
    let e = recv(&mut ws).await;
    assert_eq!(
        (e["seq"].as_u64(), e["prev_seq"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(e["event"]["type"], "unit.updated");
    assert_quiet(&mut ws).await;
}

#[tokio::test]
async fn callers_are_masked_everywhere_but_the_dispatch_channel() {
    let srv = start(|_| {}).await;
    srv.gw.publish(opened(1, "i1", "hai_chau", Some(PHONE)));
    let mut ws = connect(srv.addr, &token(Role::Dispatcher, None)).await;
    send(&mut ws, json!({"op": "subscribe", "channel": "city"})).await;
    let city_snap = recv(&mut ws).await;
    send(&mut ws, json!({"op": "subscribe", "channel": "dispatch"})).await;
    let dispatch_snap = recv(&mut ws).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "district:hai_chau"}),
    )
    .await;
    let district_snap = recv(&mut ws).await;
    assert_eq!(city_snap["data"]["incidents"][0]["caller"], "********67");
    assert_eq!(
        district_snap["data"]["incidents"][0]["caller"],
        "********67"
    );
    assert_eq!(dispatch_snap["data"]["incidents"][0]["caller"], PHONE);

    srv.gw
        .publish(opened(2, "i2", "hai_chau", Some("0511 3822 115")));
    let mut by_channel = std::collections::HashMap::new();
    for _ in 0..3 {
        let f = recv(&mut ws).await;
        by_channel.insert(f["channel"].as_str().unwrap().to_string(), f);
    }
    assert_eq!(by_channel["city"]["event"]["data"]["caller"], "*********15");
    assert_eq!(
        by_channel["district:hai_chau"]["event"]["data"]["caller"],
        "*********15"
    );
    assert_eq!(
        by_channel["dispatch"]["event"]["data"]["caller"],
        "0511 3822 115"
    );
    assert!(!by_channel["city"].to_string().contains("3822"));
}

#[tokio::test]
async fn since_replays_from_history_or_falls_back_to_a_fresh_snapshot() {
    let srv = start(|c| c.history_len = 5).await;
    for seq in 1..=10 {
        let district = if seq % 2 == 0 { "hai_chau" } else { "son_tra" };
        srv.gw
            .publish(opened(seq, &format!("i{seq}"), district, None));
    }
    let mut ws = connect(srv.addr, &token(Role::Ioc, None)).await;
    // History holds 6..=10: resuming after 7 replays 8, 9, 10 with no snapshot.
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "city", "since": 7}),
    )
    .await;
    for (seq, prev) in [(8, 7), (9, 8), (10, 9)] {
        let f = recv(&mut ws).await;
        assert_eq!(f["op"], "event");
        assert_eq!(
            (f["seq"].as_u64(), f["prev_seq"].as_u64()),
            (Some(seq), Some(prev))
        );
    }
    // Filtered replay: only hai_chau events, prev_seq chains through them.
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "district:hai_chau", "since": 5}),
    )
    .await;
    for (seq, prev) in [(6, 5), (8, 6), (10, 8)] {
        let f = recv(&mut ws).await;
        assert_eq!(f["channel"], "district:hai_chau");
        assert_eq!(
            (f["seq"].as_u64(), f["prev_seq"].as_u64()),
            (Some(seq), Some(prev))
        );
    }
    // Up to date: nothing to replay, then live events continue the chain.
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "units", "since": 10}),
    )
    .await;
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut ws).await["op"], "pong");
    srv.gw.publish(unit_updated(11, "u1", "son_tra"));
    let f = recv(&mut ws).await;
    assert_eq!(
        (f["seq"].as_u64(), f["prev_seq"].as_u64()),
        (Some(11), Some(10))
    );

    // Too old for the history (and from the future): fresh snapshot.
    let mut ws2 = connect(srv.addr, &token(Role::Ioc, None)).await;
    send(
        &mut ws2,
        json!({"op": "subscribe", "channel": "city", "since": 2}),
    )
    .await;
    let snap = recv(&mut ws2).await;
    assert_eq!(
        (snap["op"].as_str(), snap["seq"].as_u64()),
        (Some("snapshot"), Some(11))
    );
    assert_eq!(snap["data"]["incidents"].as_array().unwrap().len(), 10);
    send(
        &mut ws2,
        json!({"op": "subscribe", "channel": "units", "since": 99}),
    )
    .await;
    assert_eq!(recv(&mut ws2).await["op"], "snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_while_a_fast_client_gets_everything() {
    const EVENTS: u64 = 2500;
    let srv = start(|c| c.client_queue = 64).await;
    let ioc = token(Role::Ioc, None);

    let mut slow = connect(srv.addr, &ioc).await;
    send(&mut slow, json!({"op": "subscribe", "channel": "city"})).await;
    assert_eq!(recv(&mut slow).await["op"], "snapshot");

    let mut fast = connect(srv.addr, &ioc).await;
    send(&mut fast, json!({"op": "subscribe", "channel": "city"})).await;
    assert_eq!(recv(&mut fast).await["op"], "snapshot");
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut expected = 1;
        while expected <= EVENTS {
            let f = recv(&mut fast).await;
            assert_eq!(
                f["seq"].as_u64(),
                Some(expected),
                "fast client lost a frame"
            );
            assert_eq!(f["prev_seq"].as_u64(), Some(expected - 1));
            progress_tx.send_replace(expected);
            expected += 1;
        }
    });

    // 16 KiB per event: the slow client's queue and socket buffers overflow
    // long before the end. Publishing waits for the fast client to stay
    // within half its queue, the way a real consumer's pace is set by Kafka.
    let padding = "x".repeat(16 * 1024);
    for seq in 1..=EVENTS {
        let mut ev = opened(seq, &format!("i{seq}"), "hai_chau", None);
        if let EventBody::IncidentOpened(i) = &mut ev.body {
            i.description = Some(padding.clone());
        }
        srv.gw.publish(ev);
        while seq - *progress.borrow() > 32 {
            progress.changed().await.unwrap();
        }
    }
    reader.await.unwrap();

    let mut last = 0;
    let (code, reason) = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(t))) => {
                let f: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                last = f["seq"].as_u64().unwrap();
            }
            Some(Ok(Message::Close(Some(c)))) => break (u16::from(c.code), c.reason.to_string()),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(code, 1008);
    assert_eq!(reason, "slow consumer: resume with since");
    assert!(last < EVENTS, "slow client got everything: {last}");
}

#[tokio::test]
async fn a_screen_that_reconnects_with_since_gets_exactly_what_it_missed() {
    let srv = start(|_| {}).await;
    let ioc = token(Role::Ioc, None);
    let mut ws = connect(srv.addr, &ioc).await;
    send(&mut ws, json!({"op": "subscribe", "channel": "city"})).await;
    assert_eq!(recv(&mut ws).await["seq"], 0);
    for seq in 1..=5 {
        srv.gw
            .publish(opened(seq, &format!("i{seq}"), "hai_chau", None));
    }
    let mut last = 0;
    for _ in 1..=5 {
        last = recv(&mut ws).await["seq"].as_u64().unwrap();
    }
    drop(ws); // the screen loses its network
    for seq in 6..=40 {
        if seq % 3 == 0 {
            srv.gw.publish(unit_updated(seq, "u1", "son_tra")); // not on city
        } else {
            srv.gw
                .publish(alert_raised(seq, &format!("a{seq}"), "son_tra", None));
        }
    }
    let mut ws = connect(srv.addr, &ioc).await;
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "city", "since": last}),
    )
    .await;
    let mut prev = last;
    let want: Vec<u64> = (6..=40).filter(|s| s % 3 != 0).collect();
    for seq in want {
        let f = recv(&mut ws).await;
        assert_eq!(f["op"], "event", "replay, not a snapshot");
        assert_eq!(
            (f["seq"].as_u64(), f["prev_seq"].as_u64()),
            (Some(seq), Some(prev))
        );
        prev = seq;
    }
    srv.gw.publish(opened(41, "i41", "hai_chau", None));
    let f = recv(&mut ws).await;
    assert_eq!(
        (f["seq"].as_u64(), f["prev_seq"].as_u64()),
        (Some(41), Some(40))
    );
    assert_quiet(&mut ws).await;
}

/// A screen that stops reading while units move: its positions are
/// coalesced (latest per unit) instead of closing it, a fast client on the
/// same channel gets every frame in order, and once the slow screen reads
/// again it gets an exact `prev_seq` chain ending with every unit's latest
/// position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_behind_on_positions_gets_them_coalesced_instead_of_closed() {
    const EVENTS: u64 = 3000;
    const UNITS: u64 = 10;
    let srv = start(|c| c.client_queue = 64).await;
    let ioc = token(Role::Ioc, None);

    let mut slow = connect(srv.addr, &ioc).await;
    send(&mut slow, json!({"op": "subscribe", "channel": "units"})).await;
    assert_eq!(recv(&mut slow).await["op"], "snapshot");
    let mut fast = connect(srv.addr, &ioc).await;
    send(&mut fast, json!({"op": "subscribe", "channel": "units"})).await;
    assert_eq!(recv(&mut fast).await["op"], "snapshot");

    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        for expected in 1..=EVENTS {
            let f = recv(&mut fast).await;
            assert_eq!(
                f["seq"].as_u64(),
                Some(expected),
                "fast client lost a frame"
            );
            assert_eq!(f["prev_seq"].as_u64(), Some(expected - 1));
            progress_tx.send_replace(expected);
        }
    });
    // 16 KiB unit ids make every position frame big, so the slow client's
    // socket buffers and queue fill within a few hundred events.
    let pad = "x".repeat(16 * 1024);
    let unit_id = |seq: u64| format!("u{}-{pad}", seq % UNITS);
    for seq in 1..=EVENTS {
        srv.gw.publish(unit_updated(seq, &unit_id(seq), "hai_chau"));
        while seq - *progress.borrow() > 32 {
            progress.changed().await.unwrap();
        }
    }
    reader.await.unwrap();

    // Now the slow screen reads: still open, exact chain, every unit's
    // latest position last, and fewer frames than events.
    let mut prev = 0;
    let mut frames = 0u64;
    let mut latest = std::collections::HashMap::new();
    while prev < EVENTS {
        let f = recv(&mut slow).await;
        assert_eq!(f["op"], "event", "{}", f["op"]);
        assert_eq!(f["prev_seq"].as_u64(), Some(prev), "gap in the chain");
        prev = f["seq"].as_u64().unwrap();
        let unit = f["event"]["data"]["unit_id"].as_str().unwrap().to_string();
        latest.insert(unit, prev);
        frames += 1;
    }
    let want: std::collections::HashMap<String, u64> = (EVENTS - UNITS + 1..=EVENTS)
        .map(|seq| (unit_id(seq), seq))
        .collect();
    assert_eq!(latest, want, "every unit's latest position arrives");
    assert!(frames < EVENTS, "nothing was coalesced ({frames} frames)");
    send(&mut slow, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut slow).await["op"], "pong");
}

#[tokio::test]
async fn a_token_holds_at_most_max_connections_per_token() {
    let srv = start(|c| c.max_connections_per_token = 2).await;
    let shared = token(Role::Ioc, None);
    let first = connect(srv.addr, &shared).await;
    let _second = connect(srv.addr, &shared).await;
    assert_eq!(
        try_connect(srv.addr, Some(&shared), None).await.err(),
        Some(429)
    );
    // Another token of the same operator is counted on its own.
    let other = ioc_gateway::auth::mint_token(SECRET, "tester", Role::Ioc, None, 7200).unwrap();
    assert!(try_connect(srv.addr, Some(&other), None).await.is_ok());
    // A closed connection gives its place back.
    drop(first);
    let mut reconnected = None;
    for _ in 0..100 {
        match try_connect(srv.addr, Some(&shared), None).await {
            Ok(ws) => {
                reconnected = Some(ws);
                break;
            }
            Err(status) => {
                assert_eq!(status, 429);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert!(reconnected.is_some(), "the place was never given back");
}

#[tokio::test]
async fn a_client_flooding_messages_is_closed_with_1008() {
    let srv = start(|_| {}).await;
    let mut ws = connect(srv.addr, &token(Role::Ioc, None)).await;
    for _ in 0..100 {
        if ws.send(Message::text(r#"{"op":"ping"}"#)).await.is_err() {
            break;
        }
    }
    let (code, reason) = recv_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "rate limit exceeded"));
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let srv = start(|c| c.max_frame_bytes = 1024).await;
    let mut ws = connect(srv.addr, &token(Role::Ioc, None)).await;
    let big = json!({"op": "subscribe", "channel": "x".repeat(4096)});
    send(&mut ws, big).await;
    let (code, _) = recv_close(&mut ws).await;
    assert_eq!(code, 1009);
}

#[tokio::test]
async fn silent_clients_are_closed_and_pinged_clients_stay() {
    let srv = start(|_| {}).await;
    srv.gw.set_heartbeat(Heartbeat {
        ping_interval: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(300),
        close_timeout: Duration::from_secs(2),
    });
    let ioc = token(Role::Ioc, None);
    let mut silent = connect(srv.addr, &ioc).await;
    let mut alive = connect(srv.addr, &ioc).await;
    // The live client reads, so tungstenite answers every ping with a pong.
    assert_quiet(&mut alive).await;
    assert_quiet(&mut alive).await;
    assert_quiet(&mut alive).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, reason) = recv_close(&mut silent).await;
    assert_eq!((code, reason.as_str()), (1001, "idle timeout"));
    send(&mut alive, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut alive).await["op"], "pong");
}

#[tokio::test]
async fn a_connection_closes_when_its_token_expires() {
    let srv = start(|_| {}).await;
    let short = ioc_gateway::auth::mint_token(SECRET, "t", Role::Ioc, None, 2).unwrap();
    let mut ws = connect(srv.addr, &short).await;
    let (code, reason) = recv_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
}

#[tokio::test]
async fn stale_status_reaches_every_client() {
    let srv = start(|_| {}).await;
    srv.gw.publish(unit_updated(3, "u1", "hai_chau"));
    let mut ws = connect(srv.addr, &token(Role::Ioc, None)).await;
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut ws).await["op"], "pong"); // registered
    srv.gw.set_stale(Some(StaleReason::Broker));
    assert_eq!(
        recv(&mut ws).await,
        json!({"op": "status", "stale": true, "reason": "broker", "seq": 3})
    );
    // A client connecting during the cut is told at once, with the reason.
    let mut late = connect(srv.addr, &token(Role::Ioc, None)).await;
    let told = recv(&mut late).await;
    assert_eq!(
        (told["stale"].clone(), told["reason"].clone()),
        (json!(true), json!("broker"))
    );
    // A change of reason is a change: every screen hears of it.
    srv.gw.set_stale(Some(StaleReason::Processor));
    assert_eq!(recv(&mut ws).await["reason"], "processor");
    assert_eq!(recv(&mut late).await["reason"], "processor");
    srv.gw.set_stale(None);
    assert_eq!(
        recv(&mut ws).await,
        json!({"op": "status", "stale": false, "seq": 3})
    );
    assert_eq!(recv(&mut late).await["stale"], false);
}

#[tokio::test]
async fn shutdown_closes_every_websocket_with_1001() {
    let srv = start(|_| {}).await;
    let mut a = connect(srv.addr, &token(Role::Ioc, None)).await;
    let mut b = connect(srv.addr, &token(Role::Dispatcher, None)).await;
    send(&mut a, json!({"op": "subscribe", "channel": "city"})).await;
    recv(&mut a).await;
    srv.shutdown.cancel();
    for ws in [&mut a, &mut b] {
        let (code, reason) = recv_close(ws).await;
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    }
    // Reading on answers the close frame, which ends the server's drain.
    assert!(a.next().await.is_none_or(|r| r.is_err()));
    assert!(b.next().await.is_none_or(|r| r.is_err()));
    tokio::time::timeout(Duration::from_secs(5), srv.serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Unit ids in a snapshot frame's `data.units`.
fn snapshot_units(snap: &serde_json::Value) -> Vec<String> {
    assert_eq!(snap["op"], "snapshot", "{snap}");
    snap["data"]["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit_id"].as_str().unwrap().to_string())
        .collect()
}

/// `(seq, prev_seq)` of an event frame.
fn chain(f: &serde_json::Value) -> (Option<u64>, Option<u64>) {
    assert_eq!(f["op"], "event", "{f}");
    (f["seq"].as_u64(), f["prev_seq"].as_u64())
}

/// A unit driving from hai_chau into son_tra: the hai_chau screen gets that
/// one update (so it can drop the unit) and nothing more of the unit or of
/// son_tra; son_tra gets everything; thanh_khe gets nothing; snapshots and
/// `since` replays agree with the live feed.
#[tokio::test]
async fn a_unit_leaving_a_district_is_sent_to_the_district_it_left() {
    let srv = start(|_| {}).await;
    srv.gw.publish(unit_updated(1, "u1", "hai_chau"));
    srv.gw.publish(unit_updated(2, "u2", "hai_chau"));
    srv.gw.publish(unit_updated(3, "u3", "son_tra"));

    let mut a = connect(srv.addr, &token(Role::District, Some("hai_chau"))).await;
    let mut b = connect(srv.addr, &token(Role::District, Some("son_tra"))).await;
    let mut c = connect(srv.addr, &token(Role::District, Some("thanh_khe"))).await;
    for (ws, district) in [
        (&mut a, "hai_chau"),
        (&mut b, "son_tra"),
        (&mut c, "thanh_khe"),
    ] {
        send(
            ws,
            json!({"op": "subscribe", "channel": format!("district:{district}")}),
        )
        .await;
    }
    assert_eq!(snapshot_units(&recv(&mut a).await), ["u1", "u2"]);
    assert_eq!(snapshot_units(&recv(&mut b).await), ["u3"]);
    assert!(snapshot_units(&recv(&mut c).await).is_empty());

    srv.gw.publish(unit_updated(4, "u1", "son_tra")); // hai_chau -> son_tra
    srv.gw.publish(unit_updated(5, "u1", "son_tra")); // moves within son_tra
    srv.gw.publish(opened(6, "i1", "son_tra", None));
    srv.gw.publish(unit_updated(7, "u2", "hai_chau")); // stays in hai_chau
    srv.gw.publish(unit_updated(8, "u4", "thanh_khe"));

    // hai_chau: the leaving update, then straight to its own unit's update.
    let leaving = recv(&mut a).await;
    assert_eq!(leaving["channel"], "district:hai_chau");
    assert_eq!(chain(&leaving), (Some(4), Some(3)));
    assert_eq!(leaving["event"]["type"], "unit.updated");
    assert_eq!(leaving["event"]["district"], "son_tra");
    assert_eq!(leaving["event"]["data"]["unit_id"], "u1");
    assert_eq!(leaving["event"]["data"]["district"], "son_tra");
    let next = recv(&mut a).await;
    assert_eq!(chain(&next), (Some(7), Some(4)), "nothing else of son_tra");
    assert_eq!(next["event"]["data"]["unit_id"], "u2");

    // son_tra: every event of its district, once.
    for (seq, prev) in [(4, 3), (5, 4), (6, 5)] {
        let f = recv(&mut b).await;
        assert_eq!(f["channel"], "district:son_tra");
        assert_eq!(chain(&f), (Some(seq), Some(prev)));
    }

    // thanh_khe: nothing of the move; its first event chains to its snapshot.
    let f = recv(&mut c).await;
    assert_eq!(chain(&f), (Some(8), Some(3)));
    assert_eq!(f["event"]["data"]["unit_id"], "u4");
    for ws in [&mut a, &mut b, &mut c] {
        assert_quiet(ws).await;
    }

    // Fresh snapshots: the unit is in son_tra's picture, not hai_chau's.
    let mut a2 = connect(srv.addr, &token(Role::District, Some("hai_chau"))).await;
    send(
        &mut a2,
        json!({"op": "subscribe", "channel": "district:hai_chau"}),
    )
    .await;
    let snap = recv(&mut a2).await;
    assert_eq!(snap["seq"], 8);
    assert_eq!(snapshot_units(&snap), ["u2"]);
    let mut b2 = connect(srv.addr, &token(Role::District, Some("son_tra"))).await;
    send(
        &mut b2,
        json!({"op": "subscribe", "channel": "district:son_tra"}),
    )
    .await;
    assert_eq!(snapshot_units(&recv(&mut b2).await), ["u1", "u3"]);

    // A hai_chau screen resuming from before the move gets the same frames
    // as the live one did.
    let mut a3 = connect(srv.addr, &token(Role::District, Some("hai_chau"))).await;
    send(
        &mut a3,
        json!({"op": "subscribe", "channel": "district:hai_chau", "since": 3}),
    )
    .await;
    let f = recv(&mut a3).await;
    assert_eq!(chain(&f), (Some(4), Some(3)));
    assert_eq!(f["event"]["data"]["unit_id"], "u1");
    assert_eq!(chain(&recv(&mut a3).await), (Some(7), Some(4)));
    assert_quiet(&mut a3).await;
}

/// A connection holds at most 32 subscriptions: the 33rd is refused with an
/// error frame and the socket stays up; subscribing again to a channel it
/// holds does not count; unsubscribing frees a place.
#[tokio::test]
async fn the_33rd_subscription_is_refused_and_the_connection_stays_usable() {
    const ZONES: usize = 40;
    let srv = start_with_zones(many_zones(ZONES), |_| {}).await;
    let mut ws = connect(srv.addr, &token(Role::Dispatcher, None)).await;

    // city, dispatch, units and 29 districts: 32 channels.
    let mut held: Vec<String> = ["city", "dispatch", "units"].map(String::from).to_vec();
    held.extend((0..29).map(|i| format!("district:zone_{i:02}")));
    assert_eq!(held.len(), 32);
    for channel in &held {
        send(&mut ws, json!({"op": "subscribe", "channel": channel})).await;
        let snap = recv(&mut ws).await;
        assert_eq!(snap["op"], "snapshot", "{channel}: {snap}");
        assert_eq!(snap["channel"], channel.as_str());
    }

    // The 33rd: an error frame, no snapshot, the socket stays up.
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "district:zone_29"}),
    )
    .await;
    let err = recv(&mut ws).await;
    assert_eq!(err["op"], "error");
    assert_eq!(err["code"], "too_many_subscriptions");
    assert_eq!(err["channel"], "district:zone_29");
    assert!(
        err["message"].as_str().unwrap().contains("32"),
        "{}",
        err["message"]
    );

    // Subscribing again to a channel held does not count: a fresh snapshot.
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "district:zone_00"}),
    )
    .await;
    let snap = recv(&mut ws).await;
    assert_eq!(
        (snap["op"].as_str(), snap["channel"].as_str()),
        (Some("snapshot"), Some("district:zone_00"))
    );

    // Every subscription still delivers, once per channel.
    srv.gw.publish(opened(1, "i1", "zone_00", None));
    let mut got: Vec<String> = Vec::new();
    for _ in 0..3 {
        let f = recv(&mut ws).await;
        assert_eq!(chain(&f), (Some(1), Some(0)));
        got.push(f["channel"].as_str().unwrap().to_string());
    }
    got.sort();
    assert_eq!(got, ["city", "dispatch", "district:zone_00"]);
    // The refused channel gets nothing.
    srv.gw.publish(opened(2, "i2", "zone_29", None));
    let mut got: Vec<String> = Vec::new();
    for _ in 0..2 {
        let f = recv(&mut ws).await;
        assert_eq!(chain(&f), (Some(2), Some(1)));
        got.push(f["channel"].as_str().unwrap().to_string());
    }
    got.sort();
    assert_eq!(got, ["city", "dispatch"]);
    assert_quiet(&mut ws).await;

    // Unsubscribing frees a place: now the 33rd channel fits, and is live.
    send(
        &mut ws,
        json!({"op": "unsubscribe", "channel": "district:zone_28"}),
    )
    .await;
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "district:zone_29"}),
    )
    .await;
    let snap = recv(&mut ws).await;
    assert_eq!(
        (snap["op"].as_str(), snap["channel"].as_str()),
        (Some("snapshot"), Some("district:zone_29"))
    );
    assert_eq!(snap["data"]["incidents"][0]["incident_id"], "i2");
    // ... and the cap is 32 again.
    send(
        &mut ws,
        json!({"op": "subscribe", "channel": "district:zone_28"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "too_many_subscriptions");
    srv.gw.publish(unit_updated(3, "u1", "zone_29"));
    let mut got: Vec<String> = Vec::new();
    for _ in 0..2 {
        let f = recv(&mut ws).await;
        assert_eq!(f["seq"], 3);
        got.push(f["channel"].as_str().unwrap().to_string());
    }
    got.sort();
    assert_eq!(got, ["district:zone_29", "units"]);
    send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(recv(&mut ws).await["op"], "pong");
}
