//! The HTTP side: the API (`/api/*`), probes, metrics and the dashboards.
//!
//! The API reads the same picture as the websocket snapshots and applies the
//! same rules: district users see only their district, callers are masked
//! for everyone but dispatchers. Commands are not applied here: they are
//! written to `ioc.commands` through the [`CommandSink`](crate::CommandSink)
//! and applied by the engine, so there is one writer of state.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ioc_model::{Command, CommandOp, GeoPoint, Timestamp, Validate};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower_http::services::ServeDir;

use crate::auth::{self, AuthError, Claims, Role};
use crate::picture::Scope;
use crate::{telemetry, ws, Inner};

/// How long a command may wait for Kafka before we answer 503.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);
const GEO_JSON: &str = "application/geo+json";

/// Every route of the gateway.
pub(crate) fn router(inner: Arc<Inner>) -> Router {
    let dashboards = ServeDir::new(&inner.config.dashboards_dir);
    Router::new()
        .route("/ws", get(ws::handler))
        .route("/api/incidents", get(list_incidents))
        .route("/api/units", get(list_units))
        .route("/api/alerts", get(list_alerts))
        .route("/api/zones", get(zones))
        .route("/api/incidents/{id}/assign", post(assign))
        .route("/api/alerts/{id}/ack", post(ack_alert))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback_service(dashboards)
        .layer(middleware::from_fn(count_requests))
        .with_state(inner)
}

/// Counts requests by route template (bounded) and status.
async fn count_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "static".to_string());
    let response = next.run(req).await;
    metrics::counter!(
        telemetry::HTTP_REQUESTS,
        "route" => route,
        "status" => response.status().as_str().to_string()
    )
    .increment(1);
    response
}

/// A JSON error body: `{"error": message}`.
pub(crate) fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// 401 for a missing or bad token, counted.
pub(crate) fn unauthorized(e: &AuthError) -> Response {
    metrics::counter!(telemetry::AUTH_FAILURES).increment(1);
    tracing::info!(error = %e, "request refused: bad token");
    let mut response = api_error(StatusCode::UNAUTHORIZED, &e.to_string());
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The authenticated operator of a request: bearer header or
/// `access_token` query. Rejects with 401 before the handler runs.
pub(crate) struct Operator(pub Claims);

impl axum::extract::FromRequestParts<Arc<Inner>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        inner: &Arc<Inner>,
    ) -> Result<Self, Self::Rejection> {
        auth::authenticate(&inner.config.jwt_secret, &parts.headers, &parts.uri)
            .map(Operator)
            .map_err(|e| unauthorized(&e))
    }
}

/// What a token may read: its district only for district users, callers
/// only for dispatchers.
fn scope(claims: &Claims) -> Scope<'_> {
    Scope {
        district: claims.own_district(),
        mask_callers: !claims.role.sees_callers(),
    }
}

fn wants_geojson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains(GEO_JSON))
}

/// A GeoJSON Point feature (null geometry when the position is unknown)
/// with the view as properties.
fn feature<T: Serialize>(id: &str, at: Option<GeoPoint>, view: &T) -> Value {
    let geometry = match at {
        Some(p) => json!({"type": "Point", "coordinates": [p.lon, p.lat]}),
        None => Value::Null,
    };
    json!({
        "type": "Feature",
        "id": id,
        "geometry": geometry,
        "properties": serde_json::to_value(view).unwrap_or(Value::Null),
    })
}

fn geojson_response(features: Vec<Value>) -> Response {
    let body = json!({"type": "FeatureCollection", "features": features});
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(GEO_JSON))],
        body.to_string(),
    )
        .into_response()
}

async fn list_incidents(
    State(inner): State<Arc<Inner>>,
    Operator(claims): Operator,
    headers: HeaderMap,
) -> Response {
    let incidents = inner.hub.with_picture(|p| p.incidents(scope(&claims)));
    if wants_geojson(&headers) {
        let features = incidents
            .iter()
            .map(|i| feature(&i.incident_id, Some(i.location), i))
            .collect();
        return geojson_response(features);
    }
    Json(incidents).into_response()
}

async fn list_units(
    State(inner): State<Arc<Inner>>,
    Operator(claims): Operator,
    headers: HeaderMap,
) -> Response {
    let units = inner.hub.with_picture(|p| p.units(scope(&claims)));
    if wants_geojson(&headers) {
        let features = units
            .iter()
            .map(|u| feature(&u.unit_id, u.position, u))
            .collect();
        return geojson_response(features);
    }
    Json(units).into_response()
}

async fn list_alerts(
    State(inner): State<Arc<Inner>>,
    Operator(claims): Operator,
    headers: HeaderMap,
) -> Response {
    if wants_geojson(&headers) {
        // Alerts have no position of their own: place them at their
        // incident, else at their unit.
        let features = inner.hub.with_picture(|p| {
            p.alerts(scope(&claims))
                .iter()
                .map(|a| {
                    let at = a
                        .incident_id
                        .as_deref()
                        .and_then(|id| p.incident(id))
                        .map(|i| i.location)
                        .or_else(|| {
                            a.unit_id
                                .as_deref()
                                .and_then(|id| p.unit(id))
                                .and_then(|u| u.position)
                        });
                    feature(&a.alert_id, at, a)
                })
                .collect()
        });
        return geojson_response(features);
    }
    let alerts = inner.hub.with_picture(|p| p.alerts(scope(&claims)));
    Json(alerts).into_response()
}

/// Public map data: no token needed.
async fn zones(State(inner): State<Arc<Inner>>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(GEO_JSON))],
        inner.zones_json.clone(),
    )
        .into_response()
}

async fn readyz(State(inner): State<Arc<Inner>>) -> Response {
    if inner.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn render_metrics(State(inner): State<Arc<Inner>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        (inner.render_metrics)(),
    )
        .into_response()
}

/// Body of `POST /api/incidents/{id}/assign`. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct AssignBody {
    unit_id: String,
}

async fn assign(
    State(inner): State<Arc<Inner>>,
    Operator(claims): Operator,
    Path(incident_id): Path<String>,
    body: Bytes,
) -> Response {
    if claims.role != Role::Dispatcher {
        return api_error(StatusCode::FORBIDDEN, "only dispatchers may assign units");
    }
    let body: AssignBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            let status = if e.is_data() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::BAD_REQUEST
            };
            return api_error(
                status,
                &format!("expected a JSON body {{\"unit_id\": \"...\"}}: {e}"),
            );
        }
    };
    if inner
        .hub
        .with_picture(|p| p.incident(&incident_id).is_none())
    {
        return api_error(StatusCode::NOT_FOUND, "no open incident with this id");
    }
    let op = CommandOp::Assign {
        incident_id,
        unit_id: body.unit_id,
    };
    submit(&inner, &claims, op).await
}

async fn ack_alert(
    State(inner): State<Arc<Inner>>,
    Operator(claims): Operator,
    Path(alert_id): Path<String>,
) -> Response {
    let district = inner
        .hub
        .with_picture(|p| p.alert(&alert_id).map(|a| a.district.clone()));
    let Some(district) = district else {
        return api_error(StatusCode::NOT_FOUND, "no live alert with this id");
    };
    if !claims.may_see_district(district.as_deref()) {
        return api_error(
            StatusCode::FORBIDDEN,
            "district users may only acknowledge alerts of their own district",
        );
    }
    submit(&inner, &claims, CommandOp::AckAlert { alert_id }).await
}

/// Validates a command, hands it to the sink and answers 202 once Kafka
/// took it, 503 if it did not (or not in time).
async fn submit(inner: &Inner, claims: &Claims, op: CommandOp) -> Response {
    let command = Command {
        command_id: new_command_id(),
        ts: Timestamp::now(),
        issued_by: claims.sub.clone(),
        op,
    };
    if let Err(e) = command.validate() {
        return api_error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string());
    }
    let command_id = command.command_id.clone();
    let op_name = command.op.name();
    let outcome = tokio::time::timeout(SUBMIT_TIMEOUT, inner.commands.submit(command)).await;
    match outcome {
        Ok(Ok(())) => {
            tracing::info!(command_id, op = op_name, issued_by = %claims.sub, "command accepted");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "command_id": command_id })),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(command_id, op = op_name, error = %e, "command not accepted");
            api_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("command log unavailable: {e}"),
            )
        }
        Err(_) => {
            tracing::warn!(command_id, op = op_name, "command submit timed out");
            api_error(StatusCode::SERVICE_UNAVAILABLE, "command log timed out")
        }
    }
}

/// A random, unique, UUID-v4-shaped id. `RandomState` gives fresh random
/// keys per process and per call; the counter and clock make collisions
/// within a process impossible rather than unlikely.
fn new_command_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut halves = [0u64; 2];
    for (i, half) in halves.iter_mut().enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(count);
        h.write_u128(nanos);
        h.write_usize(i);
        *half = h.finish();
    }
    let bits =
        (u128::from(halves[0]) << 64 | u128::from(halves[1])) & !(0xf000 << 64) | (0x4000 << 64);
    let bits = bits & !(0xc << 60) | (0x8 << 60);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_ids_are_unique_and_uuid_shaped() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_command_id()).collect();
        assert_eq!(ids.len(), 1000);
        let id = ids.iter().next().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }

    #[test]
    fn detects_geojson_accept() {
        let mut h = HeaderMap::new();
        assert!(!wants_geojson(&h));
        h.insert(
            header::ACCEPT,
            "application/geo+json, application/json;q=0.5"
                .parse()
                .unwrap(),
        );
        assert!(wants_geojson(&h));
    }
}
