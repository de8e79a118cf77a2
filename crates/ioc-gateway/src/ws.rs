//! The websocket endpoint (`GET /ws`).
//!
//! Authentication and the origin check happen before the upgrade, so a
//! refused client never gets a connection task. Each connection then runs a
//! reader and a writer side by side: the reader handles client messages and
//! watches the deadlines (token expiry, idle timeout, shutdown); the writer
//! drains the client's bounded queue into the socket and pings. Whichever
//! decides the connection must end cancels the link's token with a close
//! reason, and the writer sends that close frame.
//!
//! Limits: inbound message size (1009), inbound message rate (1008),
//! subscriptions per connection, connections per token (429 before the
//! upgrade), idle timeout and token expiry. The full protocol is in
//! `docs/websocket.md`.
//!
//! Client → server: `{"op":"subscribe","channel":C,"since":SEQ?}`,
//! `{"op":"unsubscribe","channel":C}`, `{"op":"ping"}`. Server → client:
//! `snapshot`, `event` (with `prev_seq` for exact gap detection), `status`,
//! `pong`, `error`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::{self, Claims};
use crate::channel::Channel;
use crate::http::{api_error, unauthorized};
use crate::hub::{
    ClientLink, CLOSE_EXPIRED, CLOSE_IDLE, CLOSE_RATE_LIMITED, CLOSE_SHUTDOWN, CLOSE_TOO_BIG,
};
use crate::{telemetry, Heartbeat, Inner};

/// Most channels one connection may hold: every district plus the city
/// views fits; a client cannot make us keep thousands of entries.
const MAX_SUBSCRIPTIONS: usize = 32;
/// Inbound message budget: burst size and refill per second. Past it the
/// connection is closed with 1008.
const RATE_BURST: f64 = 40.0;
const RATE_PER_SEC: f64 = 20.0;
/// Most queued frames written to a socket in one go.
const WRITE_BATCH: usize = 64;
/// Initial read buffer of a connection. tungstenite allocates 128 KiB per
/// socket by default, which is most of an idle connection's memory; client
/// messages are small and the buffer grows up to `max_frame_bytes` when one
/// is not.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// A client message.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum ClientMessage {
    Subscribe {
        channel: String,
        #[serde(default)]
        since: Option<u64>,
    },
    Unsubscribe {
        channel: String,
    },
    Ping,
}

/// `GET /ws`: origin check, token check, connections-per-token cap, then
/// upgrade. Every refusal is an HTTP answer: no socket is ever upgraded
/// just to be closed.
pub(crate) async fn handler(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !origin_allowed(&inner.config.allowed_origins, &headers) {
        tracing::info!("websocket refused: origin not allowed");
        metrics::counter!(telemetry::WS_REFUSED, "reason" => "origin").increment(1);
        return api_error(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let claims = match auth::authenticate(&inner.config.jwt_secret, &headers, &uri) {
        Ok(claims) => claims,
        Err(e) => return unauthorized(&e),
    };
    if inner.shutdown.is_cancelled() {
        metrics::counter!(telemetry::WS_REFUSED, "reason" => "shutting_down").increment(1);
        return api_error(StatusCode::SERVICE_UNAVAILABLE, "server shutting down");
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    // authenticate() found a token, so this finds the same one.
    let token = auth::token_from_request(&headers, &uri).unwrap_or_default();
    let Some(permit) = TokenPermit::acquire(&inner, token) else {
        tracing::info!(sub = %claims.sub, "websocket refused: too many connections for this token");
        metrics::counter!(telemetry::WS_REFUSED, "reason" => "too_many_connections").increment(1);
        return api_error(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "at most {} websockets per token",
                inner.config.max_connections_per_token
            ),
        );
    };
    let limit = inner.config.max_frame_bytes;
    let tracker = inner.tracker.clone();
    // The permit moves into the connection future: it is released when the
    // connection ends, or when the upgrade fails and the future is dropped.
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                let _permit = permit;
                run(socket, inner, claims).await;
            })
        })
}

/// One open websocket counted against its token; released on drop.
struct TokenPermit {
    inner: Arc<Inner>,
    token: String,
}

impl TokenPermit {
    /// Counts a connection for `token`, or None when it already holds
    /// `max_connections_per_token`.
    fn acquire(inner: &Arc<Inner>, token: &str) -> Option<TokenPermit> {
        let mut per_token = inner.per_token.lock().unwrap_or_else(|p| p.into_inner());
        let open = per_token.entry(token.to_string()).or_insert(0);
        if *open >= inner.config.max_connections_per_token {
            return None;
        }
        *open += 1;
        Some(TokenPermit {
            inner: inner.clone(),
            token: token.to_string(),
        })
    }
}

impl Drop for TokenPermit {
    fn drop(&mut self) {
        let mut per_token = self
            .inner
            .per_token
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(open) = per_token.get_mut(&self.token) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_token.remove(&self.token);
            }
        }
    }
}

/// No `Origin` (not a browser) or an allowed one; any when the list is empty.
fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN) {
        None => true,
        Some(_) if allowed.is_empty() => true,
        Some(origin) => origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a == o)),
    }
}

/// One websocket connection, from upgrade to close.
async fn run(socket: WebSocket, inner: Arc<Inner>, claims: Claims) {
    let id = inner.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let heartbeat = inner.heartbeat();
    let (link, mut queue) = ClientLink::new(id, inner.config.client_queue);
    metrics::gauge!(telemetry::WS_CONNECTIONS).increment(1.0);
    inner.hub.register(link.clone());
    tracing::info!(conn = id, sub = %claims.sub, role = claims.role.as_str(), "websocket connected");

    let (mut sink, mut stream) = socket.split();
    let mut subscriptions = HashSet::new();
    tokio::join!(
        write_loop(&mut sink, &mut queue, &inner, &link, heartbeat),
        read_loop(
            &mut stream,
            &inner,
            &link,
            &claims,
            &mut subscriptions,
            heartbeat
        ),
    );

    inner.hub.unregister(id, &subscriptions);
    if link.close_reason().is_some() {
        // Complete the close handshake: keep reading until the client
        // answers our close frame, so it can still reply to what it had
        // buffered instead of writing into a reset socket.
        let drain = async { while let Some(Ok(_)) = stream.next().await {} };
        let _ = tokio::time::timeout(heartbeat.close_timeout, drain).await;
    }
    metrics::gauge!(telemetry::WS_CONNECTIONS).decrement(1.0);
    let reason = link
        .close_reason()
        .map(|r| r.reason)
        .unwrap_or("peer closed");
    tracing::info!(conn = id, sub = %claims.sub, reason, "websocket closed");
}

/// Drains the queue into the socket, pings, and sends the close frame.
/// Once the queue has drained enough, asks the hub for the positions it
/// held back while the client was behind.
async fn write_loop(
    sink: &mut SplitSink<WebSocket, Message>,
    queue: &mut mpsc::Receiver<Utf8Bytes>,
    inner: &Inner,
    link: &Arc<ClientLink>,
    heartbeat: Heartbeat,
) {
    let mut ping = tokio::time::interval_at(
        Instant::now() + heartbeat.ping_interval,
        heartbeat.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            biased;
            _ = link.closing().cancelled() => break,
            frame = queue.recv() => match frame {
                Some(frame) => Message::Text(frame),
                None => break,
            },
            _ = ping.tick() => Message::Ping(Bytes::new()),
        };
        // A socket the client does not read blocks here; the close token
        // still wins, and tungstenite keeps the half-sent frame buffered so
        // the close frame follows it intact. Frames already queued go out
        // with this one in a single write: a client that fell behind
        // catches up with fewer system calls.
        let send_batch = async {
            sink.feed(message).await?;
            for _ in 1..WRITE_BATCH {
                match queue.try_recv() {
                    Ok(frame) => sink.feed(Message::Text(frame)).await?,
                    Err(_) => break,
                }
            }
            sink.flush().await
        };
        tokio::select! {
            biased;
            _ = link.closing().cancelled() => break,
            sent = send_batch => if sent.is_err() {
                link.close(None);
                break;
            },
        }
        if link.wants_flush() {
            inner.hub.flush_held(link);
        }
    }
    if let Some(reason) = link.close_reason() {
        let frame = Message::Close(Some(CloseFrame {
            code: reason.code,
            reason: Utf8Bytes::from_static(reason.reason),
        }));
        let _ = tokio::time::timeout(heartbeat.close_timeout, sink.send(frame)).await;
    }
    let _ = tokio::time::timeout(heartbeat.close_timeout, sink.close()).await;
}

/// Handles client messages and the connection's deadlines.
async fn read_loop(
    stream: &mut SplitStream<WebSocket>,
    inner: &Inner,
    link: &Arc<ClientLink>,
    claims: &Claims,
    subscriptions: &mut HashSet<Channel>,
    heartbeat: Heartbeat,
) {
    let expires_at = Instant::now() + until_unix_secs(claims.exp);
    let mut last_seen = Instant::now();
    let mut budget = RateBudget::new();
    let limit = inner.config.max_frame_bytes;
    loop {
        let message = tokio::select! {
            _ = link.closing().cancelled() => break,
            _ = inner.shutdown.cancelled() => {
                link.close(Some(CLOSE_SHUTDOWN));
                break;
            }
            _ = tokio::time::sleep_until(expires_at) => {
                link.close(Some(CLOSE_EXPIRED));
                break;
            }
            _ = tokio::time::sleep_until(last_seen + heartbeat.idle_timeout) => {
                link.close(Some(CLOSE_IDLE));
                break;
            }
            message = stream.next() => message,
        };
        let message = match message {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                // tungstenite reports an oversized message as a capacity
                // error; axum does not expose its type, only its text.
                let too_big = e.to_string().contains("Space limit exceeded");
                link.close(too_big.then_some(CLOSE_TOO_BIG));
                break;
            }
            None => {
                link.close(None);
                break;
            }
        };
        last_seen = Instant::now();
        match message {
            Message::Text(text) => {
                if text.len() > limit {
                    link.close(Some(CLOSE_TOO_BIG));
                    break;
                }
                if !budget.take() {
                    // A screen sends a few subscriptions and a ping now and
                    // then; a client past the budget is broken or hostile,
                    // and answering each message would only feed it.
                    tracing::info!(conn = link.id, "websocket closed: inbound rate limit");
                    link.close(Some(CLOSE_RATE_LIMITED));
                    break;
                }
                handle_text(text.as_str(), inner, link, claims, subscriptions);
            }
            Message::Binary(data) => {
                if data.len() > limit {
                    link.close(Some(CLOSE_TOO_BIG));
                    break;
                }
                link.push(error_frame(
                    "bad_request",
                    None,
                    "binary messages are not supported: send JSON text",
                ));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => {
                link.close(None);
                break;
            }
        }
    }
}

/// Handles one client JSON message.
fn handle_text(
    text: &str,
    inner: &Inner,
    link: &Arc<ClientLink>,
    claims: &Claims,
    subscriptions: &mut HashSet<Channel>,
) {
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            let reason: String = e.to_string().chars().take(200).collect();
            link.push(error_frame(
                "bad_request",
                None,
                &format!("expected subscribe, unsubscribe or ping: {reason}"),
            ));
            return;
        }
    };
    match message {
        ClientMessage::Ping => {
            link.push(Utf8Bytes::from_static(r#"{"op":"pong"}"#));
        }
        ClientMessage::Subscribe { channel, since } => {
            let parsed = Channel::parse(&channel, inner.hub.zones())
                .and_then(|c| c.authorize(claims).map(|()| c));
            let parsed = match parsed {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(conn = link.id, code = e.code(), "subscription refused");
                    link.push(error_frame(e.code(), Some(&channel), &e.to_string()));
                    return;
                }
            };
            if !subscriptions.contains(&parsed) && subscriptions.len() >= MAX_SUBSCRIPTIONS {
                link.push(error_frame(
                    "too_many_subscriptions",
                    Some(&channel),
                    &format!("at most {MAX_SUBSCRIPTIONS} channels per connection"),
                ));
                return;
            }
            subscriptions.insert(parsed.clone());
            inner.hub.subscribe(link, parsed, since);
        }
        ClientMessage::Unsubscribe { channel } => {
            match Channel::parse(&channel, inner.hub.zones()) {
                Ok(parsed) => {
                    if subscriptions.remove(&parsed) {
                        inner.hub.unsubscribe(link.id, &parsed);
                    }
                }
                Err(e) => {
                    link.push(error_frame(e.code(), Some(&channel), &e.to_string()));
                }
            }
        }
    }
}

/// `{"op":"error","code":..,"channel":..,"message":..}`.
fn error_frame(code: &str, channel: Option<&str>, message: &str) -> Utf8Bytes {
    let mut frame = json!({"op": "error", "code": code, "message": message});
    if let Some(channel) = channel {
        let channel: String = channel.chars().take(160).collect();
        frame["channel"] = channel.into();
    }
    frame.to_string().into()
}

/// Time from now until a Unix time in seconds (zero if past).
fn until_unix_secs(exp: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // Cap far-future expiries: tokio timers only reach about two years.
    Duration::from_secs(exp)
        .saturating_sub(now)
        .min(Duration::from_secs(365 * 24 * 3600))
}

/// Token bucket for inbound messages, so one client cannot make us build
/// snapshots in a loop.
struct RateBudget {
    tokens: f64,
    at: Instant,
}

impl RateBudget {
    fn new() -> Self {
        Self {
            tokens: RATE_BURST,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * RATE_PER_SEC;
        self.tokens = (self.tokens + refill).min(RATE_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_check() {
        let mut h = HeaderMap::new();
        let allowed = vec!["https://ioc.danang.gov.vn".to_string()];
        assert!(
            origin_allowed(&allowed, &h),
            "non-browser clients send none"
        );
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!origin_allowed(&allowed, &h));
        assert!(origin_allowed(&[], &h), "empty list allows any");
        h.insert(header::ORIGIN, "https://ioc.danang.gov.vn".parse().unwrap());
        assert!(origin_allowed(&allowed, &h));
        // Exact match only: look-alikes that contain or extend the name fail.
        for evil in [
            "https://ioc.danang.gov.vn.evil.example",
            "https://evil-ioc.danang.gov.vn",
            "http://ioc.danang.gov.vn",
            "https://ioc.danang.gov.vn:8443",
            "https://IOC.danang.gov.vn.evil.example",
        ] {
            h.insert(header::ORIGIN, evil.parse().unwrap());
            assert!(!origin_allowed(&allowed, &h), "{evil} must not pass");
        }
    }

    #[test]
    fn parses_client_messages() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"op":"subscribe","channel":"city","since":4}"#).unwrap();
        assert!(matches!(m, ClientMessage::Subscribe { since: Some(4), .. }));
        assert!(serde_json::from_str::<ClientMessage>(r#"{"op":"dance"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"op":"ping"}"#).is_ok());
    }

    #[test]
    fn rate_budget_allows_bursts_then_refuses() {
        let mut b = RateBudget::new();
        let allowed = (0..100).filter(|_| b.take()).count();
        assert!((40..45).contains(&allowed), "{allowed}");
    }
}
