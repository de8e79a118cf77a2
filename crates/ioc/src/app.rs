//! Wiring of the whole system in one process: recovery, processor, events
//! reader, push gateway and (for the demo) the simulator, with shutdown in a
//! stated order: stop the simulator (no new input) → stop the processor
//! (stop fetching, drain in-flight outputs, commit offsets) → stop the
//! events reader → close every websocket with a reason and stop HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use futures::FutureExt;
use ioc_engine::Engine;
use ioc_gateway::{CommandSink, Gateway, GatewayConfig, StaleReason};
use ioc_ingest::{
    check_connection, run_events_reader, run_processor, EventsReaderHooks, KafkaContext,
    KafkaSettings, ProcessorConfig, ProcessorStatus, RecoveredLog, Restore,
};
use ioc_model::{Command, CommandOp, OutputEvent, Topics};
use ioc_router::Zones;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::telemetry;

/// What to start besides the processor and gateway.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// HS256 secret for operator tokens.
    pub jwt_secret: String,
    /// Run the Da Nang simulator as a producer too.
    pub simulate: bool,
}

/// A running system.
pub struct System {
    /// The push gateway (also readable by tests).
    pub gateway: Gateway,
    /// Where HTTP and websockets listen.
    pub addr: SocketAddr,
    /// Live processor counters.
    pub processor: Arc<ProcessorStatus>,
    /// Cancelled when a task that must not stop has stopped.
    pub fatal: CancellationToken,
    sim: Option<(CancellationToken, JoinHandle<()>)>,
    processor_task: (CancellationToken, JoinHandle<()>),
    reader_task: (CancellationToken, JoinHandle<()>),
    gateway_task: (CancellationToken, JoinHandle<()>),
}

impl std::fmt::Debug for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System").field("addr", &self.addr).finish()
    }
}

/// Writes operator commands to `ioc.commands`; resolves once Kafka has
/// acknowledged them.
struct KafkaCommandSink {
    producer: FutureProducer<KafkaContext>,
    topic: String,
}

impl CommandSink for KafkaCommandSink {
    fn submit(&self, cmd: Command) -> BoxFuture<'static, Result<(), String>> {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        async move {
            let key = match &cmd.op {
                CommandOp::AckAlert { alert_id } => alert_id.clone(),
                op => op.incident_id().unwrap_or_default().to_string(),
            };
            let payload = serde_json::to_vec(&cmd).map_err(|e| e.to_string())?;
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| format!("kafka did not accept the command: {e}"))
        }
        .boxed()
    }
}

/// Feeds the gateway from the output log and keeps its readiness: ready
/// when the processor has caught up with its inputs, the gateway has caught
/// up with the output log, and the broker is reachable.
struct GatewayFeed {
    gateway: Gateway,
    processor: Arc<ProcessorStatus>,
    reader_caught_up: AtomicBool,
    broker_stale: AtomicBool,
}

impl GatewayFeed {
    /// Readiness and the screens' staleness from what the reader and the
    /// processor report: a cut broker, or a processor that makes no progress
    /// with work waiting, marks every screen stale and `/readyz` 503 (never
    /// LIVE over a frozen picture).
    fn update_readiness(&self) {
        let stale = if self.broker_stale.load(Ordering::Relaxed) {
            Some(StaleReason::Broker)
        } else if self.processor.stalled.load(Ordering::Relaxed) {
            Some(StaleReason::Processor)
        } else {
            None
        };
        self.gateway.set_stale(stale);
        let ready = self.reader_caught_up.load(Ordering::Relaxed)
            && self.processor.caught_up.load(Ordering::Relaxed)
            && stale.is_none();
        self.gateway.set_ready(ready);
    }
}

impl EventsReaderHooks for GatewayFeed {
    fn on_event(&self, ev: OutputEvent) {
        self.gateway.publish(ev);
    }
    fn on_event_json(&self, ev: OutputEvent, json: &str) {
        self.gateway.publish_serialized(ev, Arc::from(json));
    }
    fn on_caught_up(&self) {
        tracing::info!(
            seq = self.gateway.last_seq(),
            "gateway caught up with the output log"
        );
        self.reader_caught_up.store(true, Ordering::Relaxed);
        self.update_readiness();
    }
    fn on_broker_stale(&self, stale: bool) {
        self.broker_stale.store(stale, Ordering::Relaxed);
        self.update_readiness();
    }
}

fn spawn_named<F>(name: &'static str, fatal: CancellationToken, fut: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        match fut.await {
            Ok(()) => tracing::info!(task = name, "stopped"),
            Err(e) => {
                tracing::error!(task = name, error = %format!("{e:#}"), "task failed");
                fatal.cancel();
            }
        }
    })
}

/// Starts everything against the brokers in `config.kafka`.
pub async fn start(config: &Config, opts: StartOptions) -> anyhow::Result<System> {
    let zones = Arc::new(
        Zones::load(&config.zones_path)
            .with_context(|| format!("zones_path {}", config.zones_path.display()))?,
    );
    let kafka = config.kafka.clone();
    let topics = config.topics.clone();

    // The cluster first: refused credentials or an untrusted certificate
    // stop the start here, within a second, naming the setting.
    {
        let (kafka, topic) = (kafka.clone(), topics.events.clone());
        tokio::task::spawn_blocking(move || check_connection(&kafka, &topic))
            .await
            .context("connection check task")?
            .context("cannot reach the output log")?;
    }
    // Recovery happens in the processor, once it owns the output log and
    // has fenced every earlier writer: the engine is rebuilt from the log.
    let restore: Restore = {
        let (engine_config, zones) = (config.engine.clone(), Arc::clone(&zones));
        Arc::new(move |log: &RecoveredLog| {
            let mut engine =
                Engine::restore(engine_config.clone(), Arc::clone(&zones), &log.events);
            // Inputs deduplicated by id; positions and status reports
            // (caused by `topic:partition:offset`) are deduplicated by their
            // timestamps.
            for (cause, at) in &log.causes {
                if matches!(
                    cause.split_once(':'),
                    Some(("call" | "incident" | "command", _))
                ) {
                    engine.mark_seen_at(cause, *at);
                }
            }
            tracing::info!(
                events = log.events.len(),
                dropped_tail = log.dropped_tail,
                duplicates = log.duplicates,
                last_seq = engine.last_seq(),
                incidents = engine.incidents().count(),
                units = engine.units().count(),
                "state recovered from the output log"
            );
            engine
        })
    };
    ioc_ingest::metrics_names::describe();

    let fatal = CancellationToken::new();
    // A client of the process meeting refused credentials or a failed TLS
    // handshake later (a revoked password, an expired certificate) stops
    // it too: retrying cannot heal that, and screens would freeze.
    {
        let (watch, fatal) = (kafka.watch.clone(), fatal.clone());
        tokio::spawn(async move {
            tokio::select! {
                failure = watch.failed() => {
                    tracing::error!(error = %failure, "kafka connection refused as configured: stopping");
                    fatal.cancel();
                }
                _ = fatal.cancelled() => {}
            }
        });
    }
    let commands: Arc<dyn CommandSink> = Arc::new(KafkaCommandSink {
        producer: kafka
            .producer_config()
            .create_with_context(kafka.context("command producer"))
            .context("command producer")?,
        topic: topics.commands.clone(),
    });
    let handle = telemetry::prometheus();
    let render: Arc<dyn Fn() -> String + Send + Sync> =
        Arc::new(move || handle.as_ref().map(|h| h.render()).unwrap_or_default());
    let gw = &config.gateway;
    let gateway = Gateway::new(
        GatewayConfig {
            jwt_secret: opts.jwt_secret.clone(),
            dashboards_dir: gw.dashboards_dir.clone(),
            allowed_origins: gw.allowed_origins.clone(),
            history_len: gw.history_len,
            client_queue: gw.client_queue,
            max_frame_bytes: gw.max_frame_bytes,
            max_connections_per_token: gw.max_connections_per_token,
        },
        zones.geojson().clone(),
        commands,
        render,
    );
    let listener = tokio::net::TcpListener::bind(gw.bind)
        .await
        .with_context(|| format!("cannot listen on gateway.bind {}", gw.bind))?;
    let addr = listener.local_addr()?;

    let gateway_token = CancellationToken::new();
    let gateway_task = {
        let (g, t) = (gateway.clone(), gateway_token.clone());
        spawn_named("gateway", fatal.clone(), async move {
            g.serve(listener, t).await.context("gateway server")
        })
    };

    let status = Arc::new(ProcessorStatus::default());
    let reader_token = CancellationToken::new();
    let reader_task = {
        let feed = Arc::new(GatewayFeed {
            gateway: gateway.clone(),
            processor: Arc::clone(&status),
            reader_caught_up: AtomicBool::new(false),
            broker_stale: AtomicBool::new(false),
        });
        // The processor's catching up is polled: it has no hook of its own.
        let poll = {
            let (feed, token) = (Arc::clone(&feed), reader_token.clone());
            async move {
                loop {
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => feed.update_readiness(),
                    }
                }
            }
        };
        let hooks: Arc<dyn EventsReaderHooks> = feed;
        let fut = run_events_reader(
            kafka.clone(),
            topics.events.clone(),
            hooks,
            reader_token.clone(),
        );
        spawn_named("events-reader", fatal.clone(), async move {
            let (result, ()) = tokio::join!(fut, poll);
            result.context("events reader")
        })
    };

    let processor_token = CancellationToken::new();
    let processor_task = {
        let mut pc = ProcessorConfig::new(kafka.clone(), topics.clone());
        pc.group_id.clone_from(&config.processor.group_id);
        pc.max_in_flight = config.processor.max_in_flight;
        pc.session_timeout_ms = config.processor.session_timeout_ms;
        pc.commit_interval = Duration::from_millis(config.processor.commit_interval_ms);
        pc.exactly_once = config.processor.exactly_once;
        if let Some(id) = &config.processor.transactional_id {
            pc.transactional_id.clone_from(id);
        }
        let fut = run_processor(pc, restore, Arc::clone(&status), processor_token.clone());
        spawn_named("processor", fatal.clone(), async move {
            fut.await.context("processor")
        })
    };

    let sim = if opts.simulate {
        let token = CancellationToken::new();
        let task = spawn_simulator(config, &zones, token.clone(), fatal.clone())?;
        Some((token, task))
    } else {
        None
    };

    Ok(System {
        gateway,
        addr,
        processor: status,
        fatal,
        sim,
        processor_task: (processor_token, processor_task),
        reader_task: (reader_token, reader_task),
        gateway_task: (gateway_token, gateway_task),
    })
}

/// Builds the simulator's Kafka clients and starts it.
pub fn spawn_simulator(
    config: &Config,
    zones: &Zones,
    token: CancellationToken,
    fatal: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let (producer, consumer) = simulator_clients(&config.kafka, &config.topics)?;
    // Simulated time runs `speed` times faster than the wall clock. Inputs
    // more than 1 h ahead of the processor's clock are invalid, so a fast
    // simulation starts in the past: (speed - 1) × 6 h back keeps six wall
    // hours of simulation behind the present.
    let speed = config.simulator.speed;
    let head_start_ms = ((speed - 1.0).max(0.0) * 6.0 * 3600.0 * 1000.0) as i64;
    let start = ioc_model::Timestamp::now().plus_millis(-head_start_ms);
    let sim = ioc_sim::Simulator::new(config.simulator.sim.clone(), zones, start);
    let fut = ioc_sim::runner::run(
        sim,
        producer,
        consumer,
        config.topics.clone(),
        config.simulator.speed,
        token,
    );
    Ok(spawn_named("simulator", fatal, fut))
}

/// A producer for the simulator's inputs and a consumer that follows the
/// output log from its end (the simulator reacts to dispatches).
pub fn simulator_clients(
    kafka: &KafkaSettings,
    topics: &Topics,
) -> anyhow::Result<(FutureProducer<KafkaContext>, StreamConsumer<KafkaContext>)> {
    let producer: FutureProducer<KafkaContext> = kafka
        .producer_config()
        .create_with_context(kafka.context("simulator producer"))
        .context("simulator producer")?;
    let consumer: StreamConsumer<KafkaContext> = kafka
        .consumer_config()
        .set("group.id", "ioc-simulator")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create_with_context(kafka.context("simulator consumer"))
        .context("simulator consumer")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topics.events, 0, Offset::End)?;
    consumer.assign(&tpl)?;
    Ok((producer, consumer))
}

impl System {
    /// Graceful shutdown in the stated order, within `timeout` overall.
    pub async fn shutdown(self, timeout: Duration) -> anyhow::Result<()> {
        let steps = async move {
            if let Some((token, task)) = self.sim {
                token.cancel();
                let _ = task.await;
            }
            let (t, task) = self.processor_task;
            t.cancel();
            let _ = task.await;
            let (t, task) = self.reader_task;
            t.cancel();
            let _ = task.await;
            let (t, task) = self.gateway_task;
            t.cancel();
            let _ = task.await;
        };
        tokio::time::timeout(timeout, steps)
            .await
            .map_err(|_| anyhow::anyhow!("shutdown did not finish within {timeout:?}"))
    }
}
