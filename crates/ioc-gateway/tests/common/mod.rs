//! Shared fixtures of the gateway integration tests: a real server on
//! `127.0.0.1:0`, a command sink that records, token and event builders,
//! and a small websocket client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use ioc_gateway::auth::{mint_token, Role};
use ioc_gateway::{CommandSink, Gateway, GatewayConfig};
use ioc_model::{
    AlertKind, AlertStatus, AlertView, Category, Command, EventBody, GeoPoint, IncidentStatus,
    IncidentView, OutputEvent, Timestamp, UnitKind, UnitStatus, UnitView,
};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "integration-secret";
pub const PHONE: &str = "0905123467";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Records every command; fails them all while `fail` is set.
#[derive(Default)]
pub struct RecordingSink {
    pub commands: Mutex<Vec<Command>>,
    pub fail: AtomicBool,
}

impl CommandSink for RecordingSink {
    fn submit(&self, cmd: Command) -> BoxFuture<'static, Result<(), String>> {
        let result = if self.fail.load(Ordering::SeqCst) {
            Err("broker down".to_string())
        } else {
            self.commands.lock().unwrap().push(cmd);
            Ok(())
        };
        Box::pin(async move { result })
    }
}

pub struct TestServer {
    pub gw: Gateway,
    pub addr: SocketAddr,
    pub sink: Arc<RecordingSink>,
    pub shutdown: CancellationToken,
    pub serving: tokio::task::JoinHandle<std::io::Result<()>>,
    pub dashboards: std::path::PathBuf,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub fn zones() -> Value {
    json!({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "hai_chau"}, "geometry": null},
        {"type": "Feature", "properties": {"id": "son_tra"}, "geometry": null},
        {"type": "Feature", "properties": {"id": "thanh_khe"}, "geometry": null},
    ]})
}

/// `n` zones `zone_00`, `zone_01`, ...
pub fn many_zones(n: usize) -> Value {
    let features: Vec<Value> = (0..n)
        .map(|i| json!({"type": "Feature", "properties": {"id": format!("zone_{i:02}")}, "geometry": null}))
        .collect();
    json!({"type": "FeatureCollection", "features": features})
}

/// Starts a gateway on an ephemeral port with [`zones`].
pub async fn start(tweak: impl FnOnce(&mut GatewayConfig)) -> TestServer {
    start_with_zones(zones(), tweak).await
}

/// Starts a gateway on an ephemeral port with the given zones.
pub async fn start_with_zones(zones: Value, tweak: impl FnOnce(&mut GatewayConfig)) -> TestServer {
    let dashboards = std::env::temp_dir().join(format!(
        "ioc-gateway-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dashboards).unwrap();
    std::fs::write(dashboards.join("index.html"), "<h1>IOC</h1>").unwrap();
    let mut config = GatewayConfig {
        jwt_secret: SECRET.into(),
        dashboards_dir: dashboards.clone(),
        ..GatewayConfig::default()
    };
    tweak(&mut config);
    let sink = Arc::new(RecordingSink::default());
    let gw = Gateway::new(
        config,
        zones,
        sink.clone(),
        Arc::new(|| "gateway_up 1\n".to_string()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let serving = {
        let gw = gw.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { gw.serve(listener, shutdown).await })
    };
    TestServer {
        gw,
        addr,
        sink,
        shutdown,
        serving,
        dashboards,
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

pub fn token(role: Role, district: Option<&str>) -> String {
    mint_token(SECRET, "tester", role, district, 3600).unwrap()
}

/// Opens `/ws` with a bearer token.
pub async fn connect(addr: SocketAddr, token: &str) -> Ws {
    try_connect(addr, Some(token), None).await.unwrap()
}

/// Opens `/ws`, returning the HTTP status on refusal.
pub async fn try_connect(
    addr: SocketAddr,
    token: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, u16> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(token) = token {
        req.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    if let Some(origin) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(origin).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("unexpected connect error: {e}"),
    }
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Next JSON frame (pings and pongs skipped), or panic after 5 s.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("stream ended")
            .expect("websocket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Reads until the server's close frame; returns its code and reason.
pub async fn recv_close(ws: &mut Ws) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("timed out waiting for close");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_string())
            }
            Some(Ok(Message::Close(None))) => return (u16::from(CloseCode::Status), String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error before close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

/// Asserts nothing but pings arrive for a short while.
pub async fn assert_quiet(ws: &mut Ws) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(150);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected no frame, got {other:?}"),
        }
    }
}

fn ts() -> Timestamp {
    Timestamp::from_unix_millis(1_790_000_000_000)
}

pub fn incident(id: &str, district: &str, caller: Option<&str>) -> IncidentView {
    IncidentView {
        incident_id: id.into(),
        status: IncidentStatus::Open,
        category: Category::Medical,
        priority: 2,
        location: GeoPoint {
            lat: 16.06,
            lon: 108.22,
        },
        district: Some(district.into()),
        opened_at: ts(),
        updated_at: ts(),
        source: "call:115".into(),
        call_count: 1,
        caller: caller.map(Into::into),
        line: None,
        description: None,
        assigned_units: vec![],
        correlation: None,
        assign_deadline: ts().plus_millis(600_000),
        closed_at: None,
    }
}

pub fn unit(id: &str, district: &str) -> UnitView {
    UnitView {
        unit_id: id.into(),
        kind: UnitKind::Ambulance,
        status: UnitStatus::Available,
        position: Some(GeoPoint {
            lat: 16.07,
            lon: 108.21,
        }),
        district: Some(district.into()),
        station: None,
        home_district: None,
        incident_id: None,
        speed_kmh: None,
        heading_deg: None,
        last_fix: Some(ts()),
    }
}

pub fn alert(id: &str, district: &str, incident_id: Option<&str>) -> AlertView {
    AlertView {
        alert_id: id.into(),
        kind: AlertKind::IncidentOpened,
        status: AlertStatus::Raised,
        severity: 2,
        district: Some(district.into()),
        incident_id: incident_id.map(Into::into),
        unit_id: None,
        message: "incident opened".into(),
        raised_at: ts(),
        acknowledged_by: None,
    }
}

pub fn event(seq: u64, district: &str, body: EventBody) -> OutputEvent {
    OutputEvent {
        seq,
        ts: ts(),
        district: Some(district.into()),
        body,
    }
}

pub fn opened(seq: u64, id: &str, district: &str, caller: Option<&str>) -> OutputEvent {
    event(
        seq,
        district,
        EventBody::IncidentOpened(incident(id, district, caller)),
    )
}

pub fn unit_updated(seq: u64, id: &str, district: &str) -> OutputEvent {
    event(seq, district, EventBody::UnitUpdated(unit(id, district)))
}

pub fn alert_raised(seq: u64, id: &str, district: &str, incident_id: Option<&str>) -> OutputEvent {
    event(
        seq,
        district,
        EventBody::AlertRaised(alert(id, district, incident_id)),
    )
}
