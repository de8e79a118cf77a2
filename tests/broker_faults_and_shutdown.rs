//! Faults on the Kafka side and an orderly stop, driven from outside:
//!
//! * the broker goes away for 30 s: screens keep the last picture marked
//!   stale, the system reconnects, catches up and loses nothing;
//! * the dead-letter topic is unavailable: the processor stops committing
//!   rather than skip the bad message, aborts and rebuilds its session
//!   (screens stale, not ready) for as long as it lasts; once the topic is
//!   back it dead-letters the message, once, without a restart;
//! * SIGTERM: in-flight work finished, offsets committed, websockets closed
//!   with a reason, exit 0.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use ioc_gateway::auth::Role;
use ioc_integration_tests::{
    committed_offsets, end_offsets, eventually, get_list, produce, producer, read_topic, token,
    ServeProcess, TestSystem, WsClient,
};
use serde_json::json;

fn now() -> String {
    ioc_model::Timestamp::now().to_rfc3339()
}

fn call(id: &str, lat: f64, lon: f64) -> Vec<u8> {
    json!({"call_id": id, "received_at": now(), "line": "115",
        "location": {"lat": lat, "lon": lon}, "category": "medical"})
    .to_string()
    .into_bytes()
}

async fn incident_ids(http: &reqwest::Client, base: &str, token: &str) -> Option<Vec<String>> {
    let v = get_list(http, &format!("{base}/api/incidents"), token).await?;
    Some(
        v.iter()
            .filter_map(|i| i["incident_id"].as_str().map(str::to_string))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_marks_screens_stale_and_loses_nothing() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let brokers = sys.broker.bootstrap_servers();
    let topics = sys.config.topics.clone();
    let p = producer(&brokers)?;
    let http = reqwest::Client::new();
    let t = token(Role::Ioc, None);
    let base = sys.http();
    let wait = Duration::from_secs(30);

    produce(&p, &topics.calls, "before", &call("before", 16.05, 108.20)).await?;
    eventually(wait, "the first incident", || async {
        let ids = incident_ids(&http, &base, &t).await?;
        ids.contains(&"inc-before".to_string()).then_some(())
    })
    .await?;
    let mut ws = WsClient::connect(sys.system.addr, &t).await?;
    ws.send(json!({"op": "subscribe", "channel": "city"}))
        .await?;
    ws.wait_for(wait, |f| f["op"] == "snapshot").await?;

    // The broker goes away.
    sys.broker.broker_down()?;
    let stale = ws
        .wait_for(wait, |f| f["op"] == "status")
        .await
        .context("no stale status frame")?;
    assert_eq!(stale["stale"], true);
    let ready = http.get(format!("{base}/readyz")).send().await?.status();
    assert_eq!(ready.as_u16(), 503, "not ready while the broker is away");
    // The last picture is still served.
    let ids = incident_ids(&http, &base, &t)
        .await
        .context("picture served")?;
    assert!(ids.contains(&"inc-before".to_string()));

    // An input produced during the outage waits in the producer.
    let pending = {
        let (p, topic) = (p.clone(), topics.calls.clone());
        tokio::spawn(
            async move { produce(&p, &topic, "during", &call("during", 16.07, 108.22)).await },
        )
    };
    tokio::time::sleep(Duration::from_secs(30)).await;
    sys.broker.broker_up()?;
    let up = std::time::Instant::now();

    // Generous waits: after 30 s away the processor's group session has
    // expired and it rejoins; on a loaded 2-core machine that takes a while.
    // Both are awaited on one stream of frames, in whichever order they
    // come: the call's events may reach the screen before the status frame
    // that says the picture is live again (waiting for the status frame
    // first and skipping what came before it lost the call's frames: the
    // cause of this test's failures, issue 12).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let (mut fresh_after, mut opened) = (None, None);
    while fresh_after.is_none() || opened.is_none() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let f = ws.next(left).await.with_context(|| {
            format!(
                "screens live again: {}, the call produced during the outage on screen: {} \
                 (a critical task stopped: {}, processor handled {} inputs, its lag over \
                 its assignment at the last check: {}, inputs awaiting acknowledgement: {}, \
                 stalled-consumer replacements: {})",
                fresh_after.is_some(),
                opened.is_some(),
                sys.system.fatal.is_cancelled(),
                sys.system
                    .processor
                    .handled
                    .load(std::sync::atomic::Ordering::Relaxed),
                sys.system
                    .processor
                    .lag
                    .load(std::sync::atomic::Ordering::Relaxed),
                sys.system
                    .processor
                    .in_flight
                    .load(std::sync::atomic::Ordering::Relaxed),
                sys.system
                    .processor
                    .rejoins
                    .load(std::sync::atomic::Ordering::Relaxed)
            )
        })?;
        if f["op"] == "status" && f["stale"] == false {
            fresh_after.get_or_insert(up.elapsed());
        }
        if f["op"] == "event"
            && f["event"]["data"]["incident_id"] == "inc-during"
            && f["event"]["type"] == "incident.opened"
        {
            eprintln!(
                "the call from the outage on screen {} ms after the broker came back",
                up.elapsed().as_millis()
            );
            opened = Some(f);
        }
    }
    eprintln!(
        "screens live again {} ms after the broker came back",
        fresh_after.unwrap_or_default().as_millis()
    );
    pending.await??;
    let opened = opened.context("the call's incident.opened frame")?;
    assert_eq!(opened["event"]["type"], "incident.opened");
    eventually(Duration::from_secs(120), "ready again", || async {
        let s = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .ok()?
            .status();
        s.is_success().then_some(())
    })
    .await?;
    let log = read_topic(&brokers, &topics.events)?;
    let opened = log
        .iter()
        .filter(|e| e["type"] == "incident.opened")
        .count();
    assert_eq!(opened, 2, "each call opened exactly one incident");
    sys.system.shutdown(Duration::from_secs(20)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_dlq_stops_commits_instead_of_skipping() -> anyhow::Result<()> {
    // Deliveries give up after 3 s instead of a minute.
    let tune = |c: &mut ioc::config::Config| {
        c.kafka
            .properties
            .insert("message.timeout.ms".into(), "3000".into());
    };
    let sys = TestSystem::start_with(tune).await?;
    let brokers = sys.broker.bootstrap_servers();
    let topics = sys.config.topics.clone();
    let group = sys.config.processor.group_id.clone();
    let p = producer(&brokers)?;
    let http = reqwest::Client::new();
    let t = token(Role::Ioc, None);
    let base = sys.http();
    let wait = Duration::from_secs(30);
    let parts = [(topics.calls.as_str(), 3)];
    let status = &sys.system.processor;
    let rebuilds = || status.rejoins.load(std::sync::atomic::Ordering::Relaxed);

    produce(&p, &topics.calls, "ok-1", &call("ok-1", 16.05, 108.20)).await?;
    eventually(wait, "the first incident", || async {
        let ids = incident_ids(&http, &base, &t).await?;
        ids.contains(&"inc-ok-1".to_string()).then_some(())
    })
    .await?;
    eventually(wait, "first offsets committed", || async {
        let c = committed_offsets(&brokers, &group, &parts).ok()?;
        (c.values().sum::<i64>() == 1).then_some(())
    })
    .await?;

    sys.broker.fail_topic(&topics.dlq)?;
    produce(&p, &topics.calls, "bad", b"{not json").await?;
    // The dead letter cannot be delivered: the transaction is aborted and
    // the session rebuilt, again and again, never past the bad message.
    eventually(Duration::from_secs(60), "a session rebuilt", || async {
        (rebuilds() >= 2).then_some(())
    })
    .await
    .context(
        "the processor did not give up the transaction holding the undeliverable dead letter",
    )?;
    assert!(
        !sys.system.fatal.is_cancelled(),
        "the processor must not stop"
    );
    let committed = committed_offsets(&brokers, &group, &parts)?;
    assert_eq!(
        committed.values().sum::<i64>(),
        1,
        "the bad message's offset was not committed: {committed:?}"
    );
    let ready = http.get(format!("{base}/readyz")).send().await?.status();
    assert_eq!(
        ready.as_u16(),
        503,
        "not ready while inputs cannot be handled"
    );

    // The topic is back: the same processor dead-letters the message, once.
    sys.broker.heal_topic(&topics.dlq)?;
    let letters = eventually(Duration::from_secs(60), "the dead letter", || async {
        let all = read_topic(&brokers, &topics.dlq).ok()?;
        (!all.is_empty()).then_some(all)
    })
    .await?;
    eventually(wait, "all offsets committed", || async {
        let c = committed_offsets(&brokers, &group, &parts).ok()?;
        (c.values().sum::<i64>() == 2).then_some(())
    })
    .await?;
    // The aborted attempts left nothing a reader sees: one dead letter.
    let letters_now = read_topic(&brokers, &topics.dlq)?;
    assert_eq!(letters_now.len(), 1, "one dead letter: {letters:?}");
    assert_eq!(letters_now[0]["key"], "bad");
    let opened = read_topic(&brokers, &topics.events)?
        .iter()
        .filter(|e| e["type"] == "incident.opened")
        .count();
    assert_eq!(
        opened, 1,
        "the good call opened one incident, whatever was redone"
    );
    sys.system.shutdown(Duration::from_secs(20)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_what_it_finished_and_closes_screens_with_a_reason() -> anyhow::Result<()> {
    let topics = ioc_model::Topics::default();
    let broker = ioc_ingest::EmbeddedBroker::start(&topics)?;
    let brokers = broker.bootstrap_servers();
    let serve = ServeProcess::spawn(&brokers, "")?;
    serve.wait_ready(Duration::from_secs(60)).await?;
    let p = producer(&brokers)?;
    let t = token(Role::Ioc, None);
    let http = reqwest::Client::new();
    let base = format!("http://{}", serve.addr);
    for i in 0..20 {
        let id = format!("term-{i:02}");
        produce(
            &p,
            &topics.calls,
            &id,
            &call(&id, 15.99 + i as f64 * 0.01, 108.2),
        )
        .await?;
    }
    eventually(Duration::from_secs(30), "every call applied", || async {
        let ids = incident_ids(&http, &base, &t).await?;
        (ids.len() == 20).then_some(())
    })
    .await?;
    let url = format!("ws://{}/ws?access_token={t}", serve.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;

    let status =
        tokio::task::spawn_blocking(move || serve.terminate(Duration::from_secs(30))).await??;
    assert!(status.success(), "exit status {status:?}");

    // The screen was told why.
    let mut close = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        if let Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) = msg {
            close = frame;
            break;
        }
    }
    let close = close.context("no close frame")?;
    assert_eq!(u16::from(close.code), 1001);
    assert!(close.reason.contains("shutting down"), "{}", close.reason);

    // Everything handled was committed: a restart has nothing to redo.
    let parts = [(topics.calls.as_str(), 3)];
    let committed = committed_offsets(&brokers, "ioc-processor", &parts)?;
    let ends = end_offsets(&brokers, &parts)?;
    assert_eq!(
        committed, ends,
        "committed offsets equal the end of the calls topic"
    );
    drop(broker);
    Ok(())
}
