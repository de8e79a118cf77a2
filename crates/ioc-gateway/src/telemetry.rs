//! Metric names and their descriptions, in one place so dashboards and code
//! agree. Labels are bounded: channel kinds, route templates, status codes.

/// Open websocket connections (gauge).
pub const WS_CONNECTIONS: &str = "gateway_ws_connections";
/// Frames queued to websocket clients, by `channel_kind` (city, dispatch,
/// district, units).
pub const WS_MESSAGES_OUT: &str = "gateway_ws_messages_out_total";
/// Clients closed because their outbound queue was full.
pub const WS_SLOW_DISCONNECTS: &str = "gateway_ws_slow_disconnects_total";
/// Position frames coalesced away: a newer position of the same unit
/// replaced one still waiting for a client under pressure.
pub const WS_COALESCED: &str = "gateway_ws_coalesced_total";
/// Websocket upgrades refused before the upgrade (token problems are
/// counted in [`AUTH_FAILURES`]), by `reason`: `origin`,
/// `too_many_connections`, `shutting_down`.
pub const WS_REFUSED: &str = "gateway_ws_refused_total";
/// Requests refused for a missing, bad or expired token.
pub const AUTH_FAILURES: &str = "gateway_auth_failures_total";
/// Output events applied to the picture (duplicates excluded).
pub const EVENTS_PUBLISHED: &str = "gateway_events_published_total";
/// HTTP requests by `route` template and `status` code.
pub const HTTP_REQUESTS: &str = "gateway_http_requests_total";

/// Registers descriptions with whatever recorder is installed.
pub fn describe() {
    metrics::describe_gauge!(WS_CONNECTIONS, "open websocket connections");
    metrics::describe_counter!(
        WS_MESSAGES_OUT,
        "frames queued to websocket clients by channel kind"
    );
    metrics::describe_counter!(
        WS_SLOW_DISCONNECTS,
        "websocket clients closed because their queue was full"
    );
    metrics::describe_counter!(
        WS_COALESCED,
        "position frames replaced by a newer position of the same unit before reaching a slow client"
    );
    metrics::describe_counter!(
        WS_REFUSED,
        "websocket upgrades refused by reason (origin, too_many_connections, shutting_down)"
    );
    metrics::describe_counter!(AUTH_FAILURES, "requests refused for a bad token");
    metrics::describe_counter!(EVENTS_PUBLISHED, "output events applied to the picture");
    metrics::describe_counter!(HTTP_REQUESTS, "http requests by route and status");
}
