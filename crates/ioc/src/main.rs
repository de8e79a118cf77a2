//! `ioc`: the one binary. Parses flags, loads config, installs telemetry and
//! wires tasks; everything else lives in the library crates.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ioc::app::{self, StartOptions};
use ioc::config::{Config, Overrides};
use ioc::telemetry;
use ioc_gateway::auth::{mint_token, Role};
use ioc_ingest::EmbeddedBroker;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's malloc: the processor, the events reader and
/// the gateway allocate on different threads, and glibc's arena locks showed
/// up in the profile (decision 18, BENCHMARKS.md "Processor hot path").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "ioc",
    version,
    about = "Real-time event processor for a city's Intelligent Operations Centre"
)]
struct Cli {
    /// Config file (TOML). Env `IOC_CONFIG`.
    #[arg(long, global = true, env = "IOC_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Whole system on one machine: embedded broker, simulator of a Da Nang
    /// day, processor, gateway and dashboards.
    Demo {
        /// HTTP/websocket address.
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// Simulated seconds per real second.
        #[arg(long)]
        speed: Option<f64>,
        /// Simulator seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Do not run the simulator (produce your own traffic with kcat).
        #[arg(long)]
        no_sim: bool,
    },
    /// Processor + gateway against an existing Kafka cluster.
    Serve {
        #[arg(long, env = "IOC_BROKERS")]
        brokers: Option<String>,
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
    },
    /// The embedded broker alone, topics created.
    Broker {
        /// Fixed port (0 = any free port; the address is printed).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Mints an operator token with the configured secret.
    Token {
        #[arg(long, value_parser = ["ioc", "dispatcher", "district"])]
        role: String,
        /// Zone id, required for role `district`.
        #[arg(long)]
        district: Option<String>,
        /// Lifetime, e.g. `8h`, `30m`, `3600s`.
        #[arg(long, default_value = "8h")]
        ttl: String,
        /// Subject (operator name).
        #[arg(long, default_value = "operator")]
        sub: String,
    },
    /// The simulator alone, producing to any Kafka.
    Simulate {
        #[arg(long, env = "IOC_BROKERS")]
        brokers: Option<String>,
        #[arg(long)]
        speed: Option<f64>,
        #[arg(long)]
        seed: Option<u64>,
    },
}

fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("--ttl must look like 8h, 30m or 3600s, got {s:?}"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => anyhow::bail!("--ttl unit must be s, m, h or d, got {unit:?}"),
    };
    if secs == 0 || secs > 30 * 86_400 {
        anyhow::bail!("--ttl must be between 1s and 30d, got {s:?}");
    }
    Ok(secs)
}

async fn wait_for_signal(fatal: &CancellationToken) -> &'static str {
    let term = async {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
        #[cfg(not(unix))]
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupt",
        _ = term => "terminate",
        _ = fatal.cancelled() => "fatal",
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut overrides = Overrides::default();
    match &cli.command {
        Cmd::Demo {
            bind, speed, seed, ..
        } => {
            overrides.bind = *bind;
            overrides.speed = *speed;
            overrides.seed = *seed;
        }
        Cmd::Serve { brokers, bind } => {
            overrides.brokers.clone_from(brokers);
            overrides.bind = *bind;
        }
        Cmd::Simulate {
            brokers,
            speed,
            seed,
        } => {
            overrides.brokers.clone_from(brokers);
            overrides.speed = *speed;
            overrides.seed = *seed;
        }
        _ => {}
    }
    let mut config = Config::load(cli.config.as_deref(), &overrides)?;
    telemetry::init_logs(&config.log_format);

    match cli.command {
        Cmd::Token {
            role,
            district,
            ttl,
            sub,
        } => {
            let role = match role.as_str() {
                "ioc" => Role::Ioc,
                "dispatcher" => Role::Dispatcher,
                _ => Role::District,
            };
            if role == Role::District && district.is_none() {
                anyhow::bail!("--district is required for role district");
            }
            let secret = config.demo_secret();
            let token = mint_token(&secret, &sub, role, district.as_deref(), parse_ttl(&ttl)?)
                .context("cannot mint token")?;
            println!("{token}");
            Ok(())
        }
        Cmd::Broker { port } => {
            let broker = EmbeddedBroker::start(&config.topics)?;
            let addr = if port == 0 {
                broker.bootstrap_servers()
            } else {
                ioc::proxy::forward(port, broker.bootstrap_servers()).await?
            };
            println!("broker: {addr}");
            let never = CancellationToken::new();
            let why = wait_for_signal(&never).await;
            tracing::info!(why, "broker stopping");
            drop(broker);
            Ok(())
        }
        Cmd::Simulate { .. } => {
            let zones = ioc_router::Zones::load(&config.zones_path)?;
            let token = CancellationToken::new();
            let fatal = CancellationToken::new();
            let task = app::spawn_simulator(&config, &zones, token.clone(), fatal.clone())?;
            let why = wait_for_signal(&fatal).await;
            tracing::info!(why, "simulator stopping");
            token.cancel();
            let _ = task.await;
            Ok(())
        }
        Cmd::Serve { .. } => {
            let secret = config.production_secret()?;
            let system = app::start(
                &config,
                StartOptions {
                    jwt_secret: secret,
                    simulate: false,
                },
            )
            .await?;
            println!("dashboards: http://{}/", system.addr);
            run_until_signal(system, config.shutdown_timeout_s).await
        }
        Cmd::Demo { no_sim, .. } => {
            let broker = EmbeddedBroker::start(&config.topics)?;
            config.kafka.brokers = broker.bootstrap_servers();
            let secret = config.demo_secret();
            if config.gateway.jwt_secret.is_none() {
                tracing::warn!("using the built-in demo token secret: never expose this demo beyond this machine");
            }
            let system = app::start(
                &config,
                StartOptions {
                    jwt_secret: secret.clone(),
                    simulate: !no_sim,
                },
            )
            .await?;
            let token = mint_token(&secret, "demo-operator", Role::Ioc, None, 12 * 3600)?;
            let dispatcher = mint_token(
                &secret,
                "demo-dispatcher",
                Role::Dispatcher,
                None,
                12 * 3600,
            )?;
            println!("broker: {}", config.kafka.brokers);
            println!("dashboards: http://{}/?token={token}", system.addr);
            println!("token: {token}");
            println!("dispatcher-token: {dispatcher}");
            let result = run_until_signal(system, config.shutdown_timeout_s).await;
            drop(broker);
            result
        }
    }
}

async fn run_until_signal(system: app::System, timeout_s: u64) -> anyhow::Result<()> {
    let fatal = system.fatal.clone();
    let why = wait_for_signal(&fatal).await;
    tracing::info!(why, "shutting down");
    system.shutdown(Duration::from_secs(timeout_s)).await?;
    if why == "fatal" {
        anyhow::bail!("a critical task failed; see the log");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_parses_units_and_rejects_nonsense() {
        assert_eq!(parse_ttl("8h").unwrap(), 8 * 3600);
        assert_eq!(parse_ttl("30m").unwrap(), 1800);
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert!(parse_ttl("8y").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("0s").is_err());
    }
}
