//! The context every Kafka client of the process is made with: librdkafka's
//! error callback goes to `tracing`, and a failure that retrying cannot fix
//! (the broker refused the credentials, the TLS handshake failed) is recorded
//! in a [`ConnectionWatch`] shared by all the clients made from one
//! [`crate::KafkaSettings`].
//!
//! Why: librdkafka retries such a connection forever and reports nothing to
//! the caller of a request but, once its timeout runs out, "Meta data fetch
//! error: AllBrokersDown" (~30 s at start, the same as a broker that is
//! simply away). The error callback knows the real cause within
//! milliseconds. The recovery read, which runs first at start, ends its wait
//! as soon as the watch holds a failure, so `ioc serve` stops within seconds
//! with an error that names the setting to check; the running system stops
//! on one too (a revoked password, an expired certificate), rather than
//! showing a stale picture for ever.
//!
//! Nothing logged or recorded here carries a secret: librdkafka's reasons
//! name the mechanism and the broker, never the password, and the hints
//! name settings, not their values.

use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;

/// A connection the broker will never accept as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionFailure {
    /// SASL: the broker refused the username or password.
    #[error(
        "kafka authentication failed: check kafka.properties sasl.username / sasl.password \
         (and sasl.mechanisms); librdkafka: {reason}"
    )]
    Authentication { reason: String },
    /// SASL: the broker does not offer the mechanism asked for.
    #[error(
        "kafka SASL mechanism refused by the broker: check kafka.properties sasl.mechanisms; \
         librdkafka: {reason}"
    )]
    Mechanism { reason: String },
    /// TLS: the broker's certificate is not signed by a trusted CA, or is
    /// not for the host connected to.
    #[error(
        "TLS handshake with the broker failed, its certificate was not trusted: check \
         kafka.properties ssl.ca.location (the CA that signed the broker's certificate) and \
         that the broker's certificate names the host in kafka.brokers; librdkafka: {reason}"
    )]
    UntrustedBroker { reason: String },
    /// TLS: any other handshake failure.
    #[error(
        "TLS handshake with the broker failed: check kafka.properties security.protocol, \
         ssl.ca.location, ssl.certificate.location / ssl.key.location; librdkafka: {reason}"
    )]
    Tls { reason: String },
}

impl ConnectionFailure {
    /// The failure librdkafka's error callback describes, if it is one that
    /// retrying cannot fix. Broker outages (`_TRANSPORT` "Connection
    /// refused", `_ALL_BROKERS_DOWN`, timeouts) are not: they heal.
    pub fn classify(error: &KafkaError, reason: &str) -> Option<Self> {
        match error.rdkafka_error_code()? {
            code @ (RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::UnsupportedSASLMechanism
            | RDKafkaErrorCode::SSL
            // Some paths report a failed handshake as a transport error:
            // only its text tells.
            | RDKafkaErrorCode::BrokerTransportFailure) => Self::from_text(Some(code), reason),
            _ => None,
        }
    }

    /// The failure a librdkafka log line at warning level or above
    /// describes (facility `FAIL`: a broker connection failed), if it is
    /// one that retrying cannot fix. The log callback runs at once on
    /// librdkafka's own threads, whereas the error callback of a consumer
    /// runs only when its queue is served, and librdkafka was seen to
    /// hold a consumer's error events back for 3 to 15 s and more behind
    /// blocking watermark requests (docs/decisions.md, decision 20).
    pub fn from_log(message: &str) -> Option<Self> {
        Self::from_text(None, message)
    }

    fn from_text(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<Self> {
        let text = reason.to_ascii_lowercase();
        let reason = reason.to_string();
        // librdkafka words a connection lost in the middle of a handshake
        // (a broker going away, a client closing) as a failed handshake too:
        // that heals.
        if text.contains("broker transport failure")
            || text.contains("disconnected")
            || text.contains("timed out")
        {
            return None;
        }
        let is = |c: RDKafkaErrorCode| code == Some(c);
        if is(RDKafkaErrorCode::UnsupportedSASLMechanism)
            || text.contains("unsupported sasl mechanism")
        {
            Some(ConnectionFailure::Mechanism { reason })
        } else if is(RDKafkaErrorCode::Authentication)
            || is(RDKafkaErrorCode::SaslAuthenticationFailed)
            || text.contains("sasl authentication error")
        {
            Some(ConnectionFailure::Authentication { reason })
        } else if is(RDKafkaErrorCode::SSL)
            || text.contains("ssl handshake failed")
            || text.contains("certificate verify failed")
        {
            if text.contains("certificate verify failed")
                || text.contains("ssl.ca.location")
                || text.contains("unable to get local issuer")
                || text.contains("self-signed certificate")
                || text.contains("self signed certificate")
                || text.contains("hostname mismatch")
            {
                Some(ConnectionFailure::UntrustedBroker { reason })
            } else {
                Some(ConnectionFailure::Tls { reason })
            }
        } else {
            None
        }
    }
}

/// The first unfixable connection failure any client of the process met.
/// Runtime state, not configuration: it is shared by every clone of the
/// settings it lives in, takes no part in their equality, and is never
/// serialized.
#[derive(Clone, Default)]
pub struct ConnectionWatch {
    inner: Arc<WatchInner>,
}

#[derive(Default)]
struct WatchInner {
    first: Mutex<Option<ConnectionFailure>>,
    /// Cancelled when the first failure is recorded.
    failed: CancellationToken,
}

impl ConnectionWatch {
    /// Records `failure` unless one is already recorded.
    pub fn record(&self, failure: ConnectionFailure) {
        let mut first = self.inner.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(failure);
            self.inner.failed.cancel();
        }
    }

    /// The first failure recorded, if any.
    pub fn failure(&self) -> Option<ConnectionFailure> {
        self.inner
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves with the first failure, once one is recorded.
    pub async fn failed(&self) -> ConnectionFailure {
        loop {
            self.inner.failed.cancelled().await;
            if let Some(f) = self.failure() {
                return f;
            }
        }
    }
}

impl std::fmt::Debug for ConnectionWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionWatch")
            .field("failure", &self.failure())
            .finish()
    }
}

/// Every watch equals every other: settings compare by what was configured.
impl PartialEq for ConnectionWatch {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for ConnectionWatch {}

/// The client context of every Kafka client of the process (the processor's
/// producer embeds one in its [`crate::acks::AckContext`]).
#[derive(Debug, Clone)]
pub struct KafkaContext {
    /// Which client this is, for the log (`processor consumer`, ...).
    client: &'static str,
    watch: ConnectionWatch,
}

impl KafkaContext {
    pub(crate) fn new(client: &'static str, watch: ConnectionWatch) -> Self {
        Self { client, watch }
    }

    /// The watch this client reports to.
    pub fn watch(&self) -> &ConnectionWatch {
        &self.watch
    }
}

impl ClientContext for KafkaContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let client = self.client;
        // librdkafka also raises each end of partition as an error event:
        // for a reader that asked for them it is news, not a fault.
        if matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::trace!(client, reason, "end of partition");
            return;
        }
        match ConnectionFailure::classify(&error, reason) {
            // Said once loudly; librdkafka repeats it at every retry.
            Some(failure) if self.watch.failure().is_none() => {
                tracing::error!(client, error = %error, reason, "{failure}");
                self.watch.record(failure);
            }
            _ => tracing::warn!(client, error = %error, reason, "kafka client error"),
        }
    }

    /// librdkafka's log lines through `tracing` (target `librdkafka`), as
    /// rdkafka's default does through `log`; a failed broker connection
    /// that retrying cannot fix is recorded at once (see
    /// [`ConnectionFailure::from_log`]).
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let client = self.client;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", client, "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", client, "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", client, "librdkafka: {fac} {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", client, "librdkafka: {fac} {message}")
            }
        }
        let serious = !matches!(
            level,
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug
        );
        if serious {
            if let Some(failure) = ConnectionFailure::from_log(message) {
                if self.watch.failure().is_none() {
                    tracing::error!(client, "{failure}");
                }
                self.watch.record(failure);
            }
        }
    }
}

impl ConsumerContext for KafkaContext {}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(code: RDKafkaErrorCode) -> KafkaError {
        KafkaError::Global(code)
    }

    /// Reasons as librdkafka 2.x words them.
    #[test]
    fn failures_that_retrying_cannot_fix_name_the_setting() {
        let auth = ConnectionFailure::classify(
            &global(RDKafkaErrorCode::Authentication),
            "sasl_ssl://127.0.0.1:9093/bootstrap: SASL authentication error: Authentication \
             failed during authentication due to invalid credentials with SASL mechanism \
             SCRAM-SHA-512 (after 3ms in state AUTH_REQ)",
        )
        .unwrap();
        assert!(matches!(auth, ConnectionFailure::Authentication { .. }));
        assert!(auth.to_string().contains("sasl.username / sasl.password"));

        let ca = ConnectionFailure::classify(
            &global(RDKafkaErrorCode::SSL),
            "ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: error:0A000086:SSL \
             routines::certificate verify failed: broker certificate could not be verified, \
             verify that ssl.ca.location is correctly configured or root CA certificates are \
             installed (install ca-certificates package) (after 4ms in state SSL_HANDSHAKE)",
        )
        .unwrap();
        assert!(matches!(ca, ConnectionFailure::UntrustedBroker { .. }));
        assert!(ca
            .to_string()
            .starts_with("TLS handshake with the broker failed"));
        assert!(ca.to_string().contains("ssl.ca.location"));

        let old = ConnectionFailure::classify(
            &global(RDKafkaErrorCode::BrokerTransportFailure),
            "ssl://b:9093/1: SSL handshake failed: wrong version number",
        );
        assert!(matches!(old, Some(ConnectionFailure::Tls { .. })));

        let mech = ConnectionFailure::classify(
            &global(RDKafkaErrorCode::Authentication),
            "sasl_ssl://b:9093/1: SASL SCRAM-SHA-256 mechanism handshake failed: Broker: \
             Unsupported SASL mechanism: broker's supported mechanisms: PLAIN",
        );
        assert!(matches!(mech, Some(ConnectionFailure::Mechanism { .. })));
    }

    /// Log lines (facility `FAIL`) as librdkafka 2.12 writes them.
    #[test]
    fn failed_connections_in_the_log_are_classified_too() {
        let ca = ConnectionFailure::from_log(
            "sasl_ssl://127.0.0.1:36633/bootstrap: error:0A000086:SSL routines::certificate \
             verify failed (after 3ms in state SSL_HANDSHAKE)",
        );
        assert!(matches!(
            ca,
            Some(ConnectionFailure::UntrustedBroker { .. })
        ));
        let auth = ConnectionFailure::from_log(
            "sasl_ssl://127.0.0.1:46805/bootstrap: SASL authentication error: SASL SCRAM \
             authentication failed: broker responded with invalid-proof (after 16ms in state \
             AUTH_REQ)",
        );
        assert!(matches!(
            auth,
            Some(ConnectionFailure::Authentication { .. })
        ));
        for outage in [
            "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused \
             (after 0ms in state CONNECT)",
            "GroupCoordinator: SASL SCRAM-SHA-512 mechanism handshake failed: Local: Broker \
             transport failure: broker's supported mechanisms: (n/a) (after 0ms in state DOWN)",
            "sasl_ssl://b:9093/1: Disconnected (after 30012ms in state UP)",
        ] {
            assert_eq!(ConnectionFailure::from_log(outage), None, "{outage}");
        }
    }

    #[test]
    fn an_outage_is_not_a_misconfiguration() {
        for (code, reason) in [
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection \
                 refused (after 0ms in state CONNECT)",
            ),
            (RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"),
            (
                RDKafkaErrorCode::BrokerTransportFailure,
                "127.0.0.1:9092/1: Disconnected while requesting ApiVersion: might be caused by \
                 incorrect security.protocol configuration (connecting to a SSL listener?) or \
                 broker version is < 0.10 (see api.version.request) (after 1ms in state \
                 APIVERSION_QUERY)",
            ),
            (RDKafkaErrorCode::MessageTimedOut, "timed out"),
            // Seen when a consumer closed while its coordinator connection
            // was authenticating.
            (
                RDKafkaErrorCode::Authentication,
                "GroupCoordinator: SASL SCRAM-SHA-512 mechanism handshake failed: Local: Broker \
                 transport failure: broker's supported mechanisms: (n/a) (after 0ms in state DOWN)",
            ),
            (
                RDKafkaErrorCode::SSL,
                "ssl://b:9093/1: SSL handshake failed: Disconnected: connecting to a PLAINTEXT \
                 broker listener? (after 2ms in state SSL_HANDSHAKE)",
            ),
            (
                RDKafkaErrorCode::Authentication,
                "sasl_ssl://b:9093/1: SASL authentication error: Local: Timed out",
            ),
        ] {
            assert_eq!(
                ConnectionFailure::classify(&global(code), reason),
                None,
                "{reason}"
            );
        }
    }

    /// The callback is wired: a client that expects TLS, facing a listener
    /// that answers in plain text, records a TLS failure (within the
    /// test's 20 s bound; librdkafka would report only a timeout).
    #[test]
    fn a_failed_tls_handshake_reaches_the_watch() {
        use std::io::Write as _;
        use std::time::{Duration, Instant};

        use rdkafka::consumer::{BaseConsumer, Consumer};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            }
        });
        let mut k = crate::KafkaSettings::new(addr.to_string());
        k.properties
            .insert("security.protocol".into(), "SSL".into());
        let c: BaseConsumer<KafkaContext> = k
            .consumer_config()
            .set("group.id", "t")
            .create_with_context(k.context("test consumer"))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while k.watch.failure().is_none() && Instant::now() < deadline {
            let _ = c.fetch_metadata(None, Duration::from_millis(200));
            let _ = c.poll(Duration::from_millis(50));
        }
        let failure = k.watch.failure();
        assert!(
            matches!(failure, Some(ConnectionFailure::Tls { .. })),
            "{failure:?}"
        );
    }

    #[test]
    fn the_watch_keeps_the_first_failure_and_is_shared_by_clones() {
        let watch = ConnectionWatch::default();
        let clone = watch.clone();
        assert_eq!(watch.failure(), None);
        clone.record(ConnectionFailure::Tls { reason: "a".into() });
        clone.record(ConnectionFailure::Authentication { reason: "b".into() });
        assert_eq!(
            watch.failure(),
            Some(ConnectionFailure::Tls { reason: "a".into() })
        );
        assert_eq!(watch, ConnectionWatch::default());
    }
}
