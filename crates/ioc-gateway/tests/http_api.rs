//! HTTP API, probes, metrics and static files against a real server.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use ioc_gateway::auth::Role;
use ioc_model::CommandOp;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn seeded() -> TestServer {
    let srv = start(|_| {}).await;
    srv.gw.publish(opened(1, "i1", "hai_chau", Some(PHONE)));
    srv.gw.publish(opened(2, "i2", "son_tra", Some(PHONE)));
    srv.gw.publish(unit_updated(3, "u1", "hai_chau"));
    srv.gw.publish(unit_updated(4, "u2", "son_tra"));
    srv.gw
        .publish(alert_raised(5, "a1", "hai_chau", Some("i1")));
    srv.gw.publish(alert_raised(6, "a2", "son_tra", None));
    srv
}

async fn get(srv: &TestServer, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().get(srv.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post(srv: &TestServer, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
    let resp = reqwest::Client::new()
        .post(srv.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn probes_and_metrics() {
    let srv = start(|_| {}).await;
    let client = reqwest::Client::new();
    let health = client.get(srv.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let ready = client.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    srv.gw.set_ready(true);
    let ready = client.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    srv.gw.set_ready(false);
    let ready = client.get(srv.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let metrics = client.get(srv.url("/metrics")).send().await.unwrap();
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    assert_eq!(metrics.text().await.unwrap(), "gateway_up 1\n");
}

#[tokio::test]
async fn lists_need_a_token_and_respect_role_scope_and_masking() {
    let srv = seeded().await;
    assert_eq!(get(&srv, "/api/incidents", None).await.0, 401);
    assert_eq!(get(&srv, "/api/incidents", Some("garbage")).await.0, 401);

    let (status, incidents) = get(&srv, "/api/incidents", Some(&token(Role::Ioc, None))).await;
    assert_eq!(status, 200);
    assert_eq!(incidents.as_array().unwrap().len(), 2);
    assert_eq!(incidents[0]["caller"], "********67");

    let (_, incidents) = get(&srv, "/api/incidents", Some(&token(Role::Dispatcher, None))).await;
    assert_eq!(incidents[0]["caller"], PHONE);

    let district = token(Role::District, Some("hai_chau"));
    for (path, id_field, id) in [
        ("/api/incidents", "incident_id", "i1"),
        ("/api/units", "unit_id", "u1"),
        ("/api/alerts", "alert_id", "a1"),
    ] {
        let (status, items) = get(&srv, path, Some(&district)).await;
        assert_eq!(status, 200, "{path}");
        let items = items.as_array().unwrap().clone();
        assert_eq!(items.len(), 1, "{path}");
        assert_eq!(items[0][id_field], id, "{path}");
    }
    let (_, incidents) = get(&srv, "/api/incidents", Some(&district)).await;
    assert_eq!(incidents[0]["caller"], "********67");

    // Browsers may pass the token in the query string.
    let url = srv.url(&format!(
        "/api/units?access_token={}",
        token(Role::Ioc, None)
    ));
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn geojson_accept_returns_point_features() {
    let srv = seeded().await;
    let resp = reqwest::Client::new()
        .get(srv.url("/api/incidents"))
        .bearer_auth(token(Role::Ioc, None))
        .header("accept", "application/geo+json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/geo+json");
    let fc: Value = resp.json().await.unwrap();
    assert_eq!(fc["type"], "FeatureCollection");
    let f = &fc["features"][0];
    assert_eq!(f["type"], "Feature");
    assert_eq!(
        f["geometry"],
        json!({"type": "Point", "coordinates": [108.22, 16.06]})
    );
    assert_eq!(f["properties"]["caller"], "********67");

    // Alerts are placed at their incident.
    let resp = reqwest::Client::new()
        .get(srv.url("/api/alerts"))
        .bearer_auth(token(Role::District, Some("hai_chau")))
        .header("accept", "application/geo+json")
        .send()
        .await
        .unwrap();
    let fc: Value = resp.json().await.unwrap();
    assert_eq!(fc["features"][0]["properties"]["alert_id"], "a1");
    assert_eq!(fc["features"][0]["geometry"]["type"], "Point");
}

#[tokio::test]
async fn only_dispatchers_assign_and_commands_reach_the_sink() {
    let srv = seeded().await;
    let body = r#"{"unit_id":"u1"}"#;
    let path = "/api/incidents/i1/assign";
    assert_eq!(post(&srv, path, &token(Role::Ioc, None), body).await.0, 403);
    assert_eq!(
        post(&srv, path, &token(Role::District, Some("hai_chau")), body)
            .await
            .0,
        403
    );
    assert!(srv.sink.commands.lock().unwrap().is_empty());

    let dispatcher = token(Role::Dispatcher, None);
    let (status, reply) = post(&srv, path, &dispatcher, body).await;
    assert_eq!(status, 202);
    let command_id = reply["command_id"].as_str().unwrap().to_string();
    {
        let commands = srv.sink.commands.lock().unwrap();
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0].command_id, command_id);
        assert_eq!(commands[0].issued_by, "tester");
        assert_eq!(
            commands[0].op,
            CommandOp::Assign {
                incident_id: "i1".into(),
                unit_id: "u1".into()
            }
        );
    }

    let (status, reply) = post(&srv, "/api/incidents/nope/assign", &dispatcher, body).await;
    assert_eq!(status, 404);
    assert!(reply["error"].is_string());
    let (status, reply) = post(&srv, path, &dispatcher, "{oops").await;
    assert_eq!(status, 400);
    assert!(reply["error"].is_string());
    let (status, _) = post(&srv, path, &dispatcher, r#"{"unit":"u1"}"#).await;
    assert_eq!(status, 422);
    let (status, _) = post(&srv, path, &dispatcher, r#"{"unit_id":""}"#).await;
    assert_eq!(status, 422);

    srv.sink.fail.store(true, Ordering::SeqCst);
    let (status, reply) = post(&srv, path, &dispatcher, body).await;
    assert_eq!(status, 503);
    assert!(reply["error"].as_str().unwrap().contains("broker down"));
}

#[tokio::test]
async fn alerts_are_acknowledged_by_ioc_dispatch_or_their_own_district() {
    let srv = seeded().await;
    let own = token(Role::District, Some("hai_chau"));
    assert_eq!(post(&srv, "/api/alerts/a2/ack", &own, "").await.0, 403);
    assert_eq!(post(&srv, "/api/alerts/a1/ack", &own, "").await.0, 202);
    assert_eq!(
        post(&srv, "/api/alerts/a2/ack", &token(Role::Ioc, None), "")
            .await
            .0,
        202
    );
    assert_eq!(
        post(&srv, "/api/alerts/zzz/ack", &token(Role::Ioc, None), "")
            .await
            .0,
        404
    );
    let commands = srv.sink.commands.lock().unwrap();
    let acked: Vec<_> = commands.iter().map(|c| c.op.clone()).collect();
    assert_eq!(
        acked,
        vec![
            CommandOp::AckAlert {
                alert_id: "a1".into()
            },
            CommandOp::AckAlert {
                alert_id: "a2".into()
            }
        ]
    );
}

#[tokio::test]
async fn zones_are_public_and_dashboards_are_served() {
    let srv = start(|_| {}).await;
    let (status, zones_body) = get(&srv, "/api/zones", None).await;
    assert_eq!(status, 200);
    assert_eq!(zones_body, zones());
    let index = reqwest::get(srv.url("/")).await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.text().await.unwrap(), "<h1>IOC</h1>");
    let missing = reqwest::get(srv.url("/nope.js")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let _ = std::fs::remove_dir_all(&srv.dashboards);
}
