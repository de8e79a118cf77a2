//! `ioc serve` against a listener that requires TLS and SASL/SCRAM
//! credentials (stunnel4 in front of Tansu, see `support/secure.rs`): the
//! whole pipeline runs through it, every Kafka client of the process
//! connecting with the operator's `[kafka.properties]`, and a wrong password
//! or an unknown CA stops the start within seconds with an error that names
//! the setting to check.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use ioc_gateway::auth::Role;
use ioc_integration_tests::secure::{SecureCluster, PASSWORD};
use ioc_integration_tests::{eventually, get_list, produce, token, ServeProcess, WsClient};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn ts() -> String {
    ioc_model::Timestamp::now().to_rfc3339()
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioc_serve_runs_the_whole_pipeline_through_tls_and_sasl_scram() -> anyhow::Result<()> {
    let started = Instant::now();
    let cluster = SecureCluster::start()?;
    eprintln!("secure cluster up in {:?}", started.elapsed());
    let topics = ioc_model::Topics::default();
    let config = cluster.ioc_toml(PASSWORD, &cluster.ca);
    let log = cluster.dir.join("ioc-serve.log");
    let serve = ServeProcess::spawn_logged(&cluster.bootstrap(), &config, "info", &log)?;
    // Ready: the recovery reader read the (empty) log, the events reader
    // caught up, and the lag watch measured the processor's consumer at the
    // end of its inputs: three clients through TLS and SASL already.
    let ready = serve
        .wait_ready(Duration::from_secs(90))
        .await
        .with_context(|| format!("ioc serve never ready; its log:\n{}", log_of(&log)))?;
    eprintln!("ioc serve ready through TLS + SASL in {ready:?}");

    let p = cluster.producer()?;
    let http = reqwest::Client::new();
    let base = format!("http://{}", serve.addr);
    let ioc_token = token(Role::Ioc, None);
    let mut ws = WsClient::connect(serve.addr, &ioc_token).await?;
    ws.send(json!({"op": "subscribe", "channel": "city"}))
        .await?;
    ws.wait_for(WAIT, |v| v["op"] == "snapshot").await?;

    // Two ambulances near Hai Chau, then a call there.
    for (id, lat, lon) in [("amb-1", 16.0550, 108.2030), ("amb-2", 16.0700, 108.2200)] {
        let unit = json!({"unit_id": id, "ts": ts(), "kind": "ambulance", "status": "available"});
        produce(&p, &topics.units, id, unit.to_string().as_bytes()).await?;
        eventually(WAIT, "unit registered", || async {
            let units = get_list(&http, &format!("{base}/api/units"), &ioc_token).await?;
            units.iter().any(|u| u["unit_id"] == id).then_some(())
        })
        .await?;
        let fix = json!({"unit_id": id, "ts": ts(), "lat": lat, "lon": lon, "speed_kmh": 0.0});
        produce(&p, &topics.positions, id, fix.to_string().as_bytes()).await?;
    }
    eventually(WAIT, "both units located", || async {
        let units = get_list(&http, &format!("{base}/api/units"), &ioc_token).await?;
        (units.iter().filter(|u| !u["position"].is_null()).count() == 2).then_some(())
    })
    .await?;
    let call = json!({
        "call_id": "tls-call-1", "received_at": ts(), "line": "115",
        "location": {"lat": 16.0544, "lon": 108.2022, "accuracy_m": 20.0},
        "category": "medical", "caller": "0905123467"
    });
    produce(&p, &topics.calls, "tls-call-1", call.to_string().as_bytes()).await?;
    let opened = ws
        .wait_for(WAIT, |v| {
            v["op"] == "event" && v["event"]["type"] == "incident.opened"
        })
        .await?;
    assert_eq!(opened["event"]["data"]["incident_id"], "inc-tls-call-1");
    let rec = ws
        .wait_for(WAIT, |v| {
            v["op"] == "event" && v["event"]["type"] == "dispatch.recommended"
        })
        .await?;
    assert_eq!(rec["event"]["data"]["candidates"][0]["unit_id"], "amb-1");
    let incidents = get_list(&http, &format!("{base}/api/incidents"), &ioc_token)
        .await
        .context("GET /api/incidents")?;
    assert!(
        incidents
            .iter()
            .any(|i| i["incident_id"] == "inc-tls-call-1"),
        "{incidents:?}"
    );

    // A dispatcher's command: the command producer writes it, the processor
    // applies it, the screens see the assignment.
    let dispatcher = token(Role::Dispatcher, None);
    let reply = http
        .post(format!("{base}/api/incidents/inc-tls-call-1/assign"))
        .bearer_auth(&dispatcher)
        .json(&json!({"unit_id": "amb-1"}))
        .send()
        .await?;
    assert_eq!(
        reply.status(),
        reqwest::StatusCode::ACCEPTED,
        "{:?}",
        reply.text().await
    );
    let assigned = ws
        .wait_for(WAIT, |v| {
            v["op"] == "event" && v["event"]["type"] == "dispatch.assigned"
        })
        .await?;
    assert_eq!(assigned["event"]["data"]["unit_id"], "amb-1", "{assigned}");

    // A malformed call: dead-lettered by the processor's producer.
    produce(&p, &topics.calls, "tls-bad", b"{not json").await?;
    let letters = eventually(WAIT, "the dead letter", || async {
        let all = cluster.read_topic(&topics.dlq).ok()?;
        all.into_iter().find(|l| l["key"] == "tls-bad")
    })
    .await?;
    assert_eq!(letters["topic"], topics.calls);

    // A restart: recovery reads the output log back through TLS and SASL.
    drop(ws);
    let status = serve.terminate(Duration::from_secs(30))?;
    assert!(
        status.success(),
        "ioc serve stopped with {status}; its log:\n{}",
        log_of(&log)
    );
    let log2 = cluster.dir.join("ioc-serve-2.log");
    let serve = ServeProcess::spawn_logged(&cluster.bootstrap(), &config, "info", &log2)?;
    let ready = serve
        .wait_ready(Duration::from_secs(90))
        .await
        .with_context(|| {
            format!(
                "restarted ioc serve never ready; its log:\n{}",
                log_of(&log2)
            )
        })?;
    eprintln!("restarted ioc serve ready in {ready:?}");
    let incidents = get_list(
        &http,
        &format!("http://{}/api/incidents", serve.addr),
        &ioc_token,
    )
    .await
    .context("GET /api/incidents after the restart")?;
    let inc = incidents
        .iter()
        .find(|i| i["incident_id"] == "inc-tls-call-1")
        .with_context(|| format!("incident not recovered: {incidents:?}"))?;
    assert!(inc["assigned_units"].to_string().contains("amb-1"), "{inc}");
    serve.terminate(Duration::from_secs(30))?;

    // Every connection went through stunnel, and the password never
    // reached a log line.
    assert!(
        cluster.stunnel_log().contains("accepted connection"),
        "{}",
        cluster.stunnel_log()
    );
    for l in [&log, &log2] {
        let text = log_of(l);
        assert!(
            !text.contains(PASSWORD),
            "the password is in {}",
            l.display()
        );
        assert!(!text.contains("kafka authentication failed"), "{text}");
    }
    eprintln!("whole secure pipeline test in {:?}", started.elapsed());
    Ok(())
}

/// `ioc serve` must stop by itself, non-zero; the bound is this test's
/// timeout, the measured time goes to its output.
fn exit_within(
    serve: &mut ServeProcess,
    bound: Duration,
) -> anyhow::Result<(std::process::ExitStatus, Duration)> {
    let started = Instant::now();
    loop {
        if let Some(status) = serve.child.try_wait()? {
            return Ok((status, started.elapsed()));
        }
        if started.elapsed() > bound {
            anyhow::bail!("ioc serve still running after {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_an_unknown_ca_stops_the_start_within_seconds_naming_the_setting(
) -> anyhow::Result<()> {
    let cluster = SecureCluster::start()?;
    let wrong_password = "not-the-password-0451";
    let cases = [
        (
            "wrong password",
            cluster.ioc_toml(wrong_password, &cluster.ca),
            "kafka authentication failed: check kafka.properties sasl.username / sasl.password",
        ),
        (
            "unknown CA",
            cluster.ioc_toml(PASSWORD, &cluster.other_ca),
            "TLS handshake with the broker failed, its certificate was not trusted: check \
             kafka.properties ssl.ca.location",
        ),
    ];
    for (case, config, expected) in cases {
        let log = cluster
            .dir
            .join(format!("ioc-{}.log", case.replace(' ', "-")));
        let mut serve = ServeProcess::spawn_logged(&cluster.bootstrap(), &config, "info", &log)?;
        let (status, took) = exit_within(&mut serve, Duration::from_secs(15))
            .with_context(|| format!("{case}: {}", log_of(&log)))?;
        let stderr = log_of(&log);
        let said = stderr.find("Error:").map_or("", |i| &stderr[i..]);
        eprintln!("{case}: ioc serve exited ({status}) after {took:?}:\n{said}");
        assert!(!status.success(), "{case}: exited with {status}");
        assert!(
            stderr.contains(expected),
            "{case}: stderr lacks {expected:?}:\n{stderr}"
        );
        assert!(
            !stderr.contains(wrong_password) && !stderr.contains(PASSWORD),
            "{case}: a password reached stderr:\n{stderr}"
        );
    }
    Ok(())
}
