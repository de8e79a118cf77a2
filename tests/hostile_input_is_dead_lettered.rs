//! Hostile input from the outside: each bad message lands in `ioc.dlq` with
//! its reason and original bytes, is counted in the metrics, and never
//! stalls a partition or crashes the process; a command for a closed
//! incident is rejected with a reason on the output log.

use std::time::Duration;

use anyhow::Context;
use ioc_gateway::auth::Role;
use ioc_integration_tests::{
    eventually, get_list, produce, producer, read_topic, token, TestSystem,
};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn now() -> String {
    ioc_model::Timestamp::now().to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_hostile_input_is_dead_lettered_with_a_reason() -> anyhow::Result<()> {
    let sys = TestSystem::start().await?;
    let brokers = sys.broker.bootstrap_servers();
    let topics = sys.config.topics.clone();
    // A producer allowed to send the 1 MB message.
    let big: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.max.bytes", "3000000")
        .create()?;
    let p = producer(&brokers)?;

    let call = |lat: f64| {
        json!({"call_id": "x", "received_at": now(), "line": "115",
               "location": {"lat": lat, "lon": 108.2}, "category": "medical"})
    };
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge_note = {
        let mut c = call(16.0);
        c["note"] = json!("x".repeat(10_000));
        c.to_string()
    };
    let one_mb = {
        let mut c = call(16.0);
        c["note"] = json!("y".repeat(1_048_576));
        c.to_string()
    };
    let far_future = {
        let mut c = call(16.0);
        c["received_at"] = json!("2099-01-01T00:00:00Z");
        c.to_string()
    };
    let far_past = {
        let mut c = call(16.0);
        c["received_at"] = json!("1970-01-01T00:00:00Z");
        c.to_string()
    };
    let unknown_line = {
        let mut c = call(16.0);
        c["line"] = json!("116");
        c.to_string()
    };
    let wrong_type = {
        let mut c = call(16.0);
        c["location"]["lat"] = json!("sixteen");
        c.to_string()
    };
    // (topic, key, payload, expected reason fragment)
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            &topics.calls,
            "h-malformed",
            br#"{"call_id":"#.to_vec(),
            "not utf-8 json",
        ),
        (
            &topics.calls,
            "h-nan",
            br#"{"call_id":"x","location":{"lat":NaN}}"#.to_vec(),
            "not utf-8 json",
        ),
        (
            &topics.calls,
            "h-inf",
            br#"{"call_id":"x","location":{"lat":1e999}}"#.to_vec(),
            "not utf-8 json",
        ),
        (
            &topics.calls,
            "h-wrong-type",
            wrong_type.into_bytes(),
            "invalid type",
        ),
        (
            &topics.calls,
            "h-lat-range",
            call(91.0).to_string().into_bytes(),
            "location.lat must be within",
        ),
        (
            &topics.calls,
            "h-unknown-enum",
            unknown_line.into_bytes(),
            "unknown variant `116`",
        ),
        (
            &topics.calls,
            "h-huge-string",
            huge_note.into_bytes(),
            "note must be at most",
        ),
        (
            &topics.calls,
            "h-nested",
            nested.into_bytes(),
            "recursion limit",
        ),
        (
            &topics.calls,
            "h-future",
            far_future.into_bytes(),
            "ahead of the processor clock",
        ),
        (
            &topics.calls,
            "h-past",
            far_past.into_bytes(),
            "before 2000",
        ),
        (
            &topics.calls,
            "h-not-utf8",
            vec![0xff, 0xfe, 0x00, 0x7b],
            "not utf-8 json",
        ),
        (&topics.calls, "h-empty", Vec::new(), "not utf-8 json"),
        (
            &topics.calls,
            "h-array",
            b"[1,2,3]".to_vec(),
            "expected a JSON object",
        ),
        (
            &topics.positions,
            "h-unknown-unit",
            json!({"unit_id": "ghost-7", "ts": now(), "lat": 16.0, "lon": 108.2})
                .to_string()
                .into_bytes(),
            "unknown unit",
        ),
        (
            &topics.units,
            "h-unit-kind",
            json!({"unit_id": "u", "ts": now(), "kind": "tank", "status": "available"})
                .to_string()
                .into_bytes(),
            "unknown variant `tank`",
        ),
        (
            &topics.commands,
            "h-command-op",
            json!({"command_id": "c", "ts": now(), "issued_by": "x", "op": 1})
                .to_string()
                .into_bytes(),
            "op must be a string",
        ),
    ];
    for (topic, key, payload, _) in &cases {
        produce(&p, topic, key, payload).await?;
    }
    produce(&big, &topics.calls, "h-1mb", one_mb.as_bytes()).await?;

    // After all that, valid input still flows.
    let good = json!({"call_id": "after-hostile", "received_at": now(), "line": "114",
        "location": {"lat": 16.06, "lon": 108.22}, "category": "fire"});
    produce(
        &p,
        &topics.calls,
        "after-hostile",
        good.to_string().as_bytes(),
    )
    .await?;
    let http = reqwest::Client::new();
    let dispatcher = token(Role::Dispatcher, None);
    eventually(WAIT, "the valid call after the hostile ones", || async {
        let v = get_list(&http, &format!("{}/api/incidents", sys.http()), &dispatcher).await?;
        v.iter()
            .any(|i| i["incident_id"] == "inc-after-hostile")
            .then_some(())
    })
    .await?;

    let expected = cases.len() + 1;
    let letters = eventually(WAIT, "every dead letter", || async {
        let all = read_topic(&brokers, &topics.dlq).ok()?;
        (all.len() >= expected).then_some(all)
    })
    .await?;
    assert_eq!(letters.len(), expected, "one dead letter each, no more");
    use base64::Engine as _;
    for (topic, key, payload, reason) in &cases {
        let l = letters
            .iter()
            .find(|l| l["key"] == *key)
            .with_context(|| format!("no dead letter for {key}"))?;
        let got = l["reason"].as_str().unwrap_or_default();
        assert!(
            got.contains(reason),
            "{key}: reason {got:?} lacks {reason:?}"
        );
        assert_eq!(l["topic"], *topic, "{key}");
        let original = base64::engine::general_purpose::STANDARD
            .decode(l["original_base64"].as_str().unwrap_or_default())?;
        assert_eq!(&original, payload, "{key}: original bytes kept");
    }
    let mb = letters
        .iter()
        .find(|l| l["key"] == "h-1mb")
        .context("1 MB letter")?;
    assert!(
        mb["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("too large"),
        "{mb}"
    );
    // Too big to carry whole in a deliverable dead letter: its size and
    // first bytes are, and it stays on its topic at the recorded offset.
    assert_eq!(mb["original_size"].as_u64(), Some(one_mb.len() as u64));
    assert_eq!(mb["original_truncated"], true);
    let head = base64::engine::general_purpose::STANDARD
        .decode(mb["original_base64"].as_str().unwrap_or_default())?;
    assert_eq!(&head[..], &one_mb.as_bytes()[..head.len()]);
    assert!(head.len() < one_mb.len());

    // Counted in the metrics, by topic.
    let metrics = http
        .get(format!("{}/metrics", sys.http()))
        .send()
        .await?
        .text()
        .await?;
    let calls_dlq = metrics
        .lines()
        .find(|l| l.starts_with("ioc_dlq_messages_total{topic=\"calls\"}"))
        .context("dlq metric for calls")?;
    let n: f64 = calls_dlq.rsplit(' ').next().unwrap_or("0").parse()?;
    assert_eq!(
        n as usize,
        cases.iter().filter(|c| c.0 == topics.calls).count() + 1
    );

    // A command for a closed incident: rejected with a reason, not applied.
    let close = json!({"command_id": "h-close", "ts": now(), "issued_by": "disp",
        "op": "close_incident", "incident_id": "inc-after-hostile"});
    produce(
        &p,
        &topics.commands,
        "inc-after-hostile",
        close.to_string().as_bytes(),
    )
    .await?;
    let assign = json!({"command_id": "h-assign-closed", "ts": now(), "issued_by": "disp",
        "op": "assign", "incident_id": "inc-after-hostile", "unit_id": "any"});
    produce(
        &p,
        &topics.commands,
        "inc-after-hostile",
        assign.to_string().as_bytes(),
    )
    .await?;
    let rejected = eventually(WAIT, "command.rejected", || async {
        let log = read_topic(&brokers, &topics.events).ok()?;
        log.into_iter().find(|e| {
            e["type"] == "command.rejected" && e["data"]["command_id"] == "h-assign-closed"
        })
    })
    .await?;
    assert!(
        rejected["data"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("is closed"),
        "{rejected}"
    );

    sys.system.shutdown(Duration::from_secs(20)).await?;
    Ok(())
}
