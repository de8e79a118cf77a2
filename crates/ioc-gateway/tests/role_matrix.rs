//! The whole role × channel × action matrix in one table: every principal
//! against every websocket channel and every HTTP action, on a real server.
//!
//! The picture holds one incident, unit and alert in `hai_chau` and one of
//! each in `son_tra`. "own" and "other" are from the point of view of the
//! district user `hai_chau`; `son_tra` is the mirror image.

mod common;

use common::*;
use ioc_gateway::auth::Role;
use serde_json::{json, Value};

/// One principal: who, and what it must get.
struct Row {
    name: &'static str,
    /// None: no token at all.
    who: Option<(Role, Option<&'static str>)>,
    /// Subscribe outcome per channel in [`CHANNELS`] order: true =
    /// snapshot, false = `forbidden` error with the socket still up.
    channels: [bool; 5],
    /// HTTP status of assign, ack of the hai_chau alert, ack of the
    /// son_tra alert.
    actions: [u16; 3],
    /// (status, items) of GET /api/incidents, /api/units, /api/alerts.
    lists: [(u16, usize); 3],
}

const CHANNELS: [&str; 5] = [
    "city",
    "dispatch",
    "units",
    "district:hai_chau",
    "district:son_tra",
];

const T: bool = true;
const F: bool = false;

fn matrix() -> Vec<Row> {
    vec![
        Row {
            name: "ioc",
            who: Some((Role::Ioc, None)),
            channels: [T, F, T, T, T],
            actions: [403, 202, 202],
            lists: [(200, 2), (200, 2), (200, 2)],
        },
        Row {
            name: "dispatcher",
            who: Some((Role::Dispatcher, None)),
            channels: [T, T, T, T, T],
            actions: [202, 202, 202],
            lists: [(200, 2), (200, 2), (200, 2)],
        },
        Row {
            name: "district hai_chau (own = hai_chau)",
            who: Some((Role::District, Some("hai_chau"))),
            channels: [F, F, F, T, F],
            actions: [403, 202, 403],
            lists: [(200, 1), (200, 1), (200, 1)],
        },
        Row {
            name: "district son_tra (own = son_tra)",
            who: Some((Role::District, Some("son_tra"))),
            channels: [F, F, F, F, T],
            actions: [403, 403, 202],
            lists: [(200, 1), (200, 1), (200, 1)],
        },
        Row {
            name: "no token",
            who: None,
            channels: [F; 5], // the upgrade itself is refused: checked apart
            actions: [401, 401, 401],
            lists: [(401, 0), (401, 0), (401, 0)],
        },
    ]
}

#[tokio::test]
async fn every_role_gets_exactly_its_channels_actions_and_lists() {
    let srv = start(|_| {}).await;
    srv.gw.publish(opened(1, "i1", "hai_chau", Some(PHONE)));
    srv.gw.publish(opened(2, "i2", "son_tra", None));
    srv.gw.publish(unit_updated(3, "u1", "hai_chau"));
    srv.gw.publish(unit_updated(4, "u2", "son_tra"));
    srv.gw
        .publish(alert_raised(5, "a1", "hai_chau", Some("i1")));
    srv.gw.publish(alert_raised(6, "a2", "son_tra", Some("i2")));
    let http = reqwest::Client::new();

    for row in matrix() {
        let token = row.who.map(|(role, district)| token(role, district));

        // Websocket channels.
        match &token {
            None => assert_eq!(
                try_connect(srv.addr, None, None).await.err(),
                Some(401),
                "{}",
                row.name
            ),
            Some(token) => {
                let mut ws = connect(srv.addr, token).await;
                for (channel, allowed) in CHANNELS.iter().zip(row.channels) {
                    send(&mut ws, json!({"op": "subscribe", "channel": channel})).await;
                    let reply = recv(&mut ws).await;
                    let got = (reply["op"].clone(), reply["code"].clone());
                    let want = if allowed {
                        (json!("snapshot"), Value::Null)
                    } else {
                        (json!("error"), json!("forbidden"))
                    };
                    assert_eq!(got, want, "{} subscribing to {channel}", row.name);
                }
                // Still connected after every refusal.
                send(&mut ws, json!({"op": "ping"})).await;
                assert_eq!(recv(&mut ws).await["op"], "pong", "{}", row.name);
            }
        }

        // HTTP actions.
        let actions = [
            ("/api/incidents/i1/assign", r#"{"unit_id":"u1"}"#),
            ("/api/alerts/a1/ack", ""),
            ("/api/alerts/a2/ack", ""),
        ];
        for ((path, body), want) in actions.iter().zip(row.actions) {
            let mut req = http.post(srv.url(path)).body(body.to_string());
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let status = req.send().await.unwrap().status().as_u16();
            assert_eq!(status, want, "{} POST {path}", row.name);
        }

        // Lists, scoped to what the role may see.
        let lists = ["/api/incidents", "/api/units", "/api/alerts"];
        for (path, (want_status, want_len)) in lists.iter().zip(row.lists) {
            let mut req = http.get(srv.url(path));
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            assert_eq!(status, want_status, "{} GET {path}", row.name);
            if status == 200 {
                let items: Value = resp.json().await.unwrap();
                assert_eq!(
                    items.as_array().map(Vec::len),
                    Some(want_len),
                    "{} GET {path}",
                    row.name
                );
            }
        }
    }

    // Only the allowed commands reached the command log: one assign by the
    // dispatcher, and acks by ioc, dispatcher and the alert's own district.
    let ops: Vec<String> = srv
        .sink
        .commands
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.op.name().to_string())
        .collect();
    assert_eq!(ops.iter().filter(|op| *op == "assign").count(), 1);
    assert_eq!(ops.iter().filter(|op| *op == "ack_alert").count(), 6);
}
