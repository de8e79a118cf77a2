//! `wsbench`: websocket fan-out benchmark of the push gateway.
//!
//! One *case* is one server and one number of clients:
//!
//! - `--server gateway`: the real [`ioc_gateway::Gateway`], in this process
//!   on `127.0.0.1:0`, with a recording command sink. Synthetic
//!   `incident.updated` events go through [`Gateway::publish`] (picture,
//!   history, routing, one serialization, shared frames, per-client queues).
//! - `--server fastws`: the baseline of the issue, a bare `fastwebsockets`
//!   server that writes the same frame bytes to every socket through a
//!   `tokio::sync::broadcast` channel: no auth, no routing, no picture.
//!
//! The websocket clients run in a child process (this binary again, with
//! `--clients-only`), so the server's resident memory (`VmRSS` of this
//! process, read before and after the clients connect) is not mixed with
//! theirs. Each event carries its publish time (Unix nanoseconds) in its
//! description; clients record publish → receive latency in HDR histograms
//! and check that seqs only grow. Loopback only.
//!
//! `--matrix` runs every case in a fresh process each (so one case's freed
//! memory cannot flatter the next) and prints a Markdown table.
//!
//! Raises the open-files limit itself (root can raise the hard limit too);
//! otherwise run it under `ulimit -n 250000`.

use std::io::{BufRead, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use ioc_gateway::auth::{mint_token, Role};
use ioc_gateway::{CommandSink, Gateway, GatewayConfig};
use ioc_model::{
    Category, Command, EventBody, GeoPoint, IncidentStatus, IncidentView, OutputEvent, Timestamp,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "wsbench-secret-0123456789";
/// Marker before the publish time inside each event.
const TS_MARK: &str = "@ts:";
/// Source addresses the clients spread over (127.0.0.2..), so more than
/// one ephemeral port range of connections fit on loopback.
const SOURCE_IPS: u32 = 16;
/// Handshakes in flight at once from the clients process.
const CONNECT_CONCURRENCY: usize = 256;
/// Histogram shards in the clients process (one lock per shard).
const SHARDS: usize = 64;

#[derive(Debug, Parser, Clone)]
#[command(
    name = "wsbench",
    about = "Websocket fan-out benchmark of the push gateway"
)]
struct Args {
    /// Server under test: `gateway` or `fastws`.
    #[arg(long, default_value = "gateway")]
    server: String,
    /// Active clients subscribed to `city`.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Target frames per second delivered in total (events/s × clients).
    #[arg(long, default_value_t = 200_000)]
    frames_per_sec: u64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Idle mode: connect this many clients, publish nothing, report memory.
    #[arg(long)]
    idle: Option<usize>,
    /// Run every case of the matrix, each in its own process, and print a
    /// Markdown table.
    #[arg(long)]
    matrix: bool,
    /// Client counts of the matrix.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,19900")]
    matrix_clients: Vec<usize>,
    /// Idle connection counts of the matrix.
    #[arg(long, value_delimiter = ',', default_value = "19900")]
    matrix_idle: Vec<usize>,
    /// With --idle: spread the idle connections over this many gateway
    /// processes (each with its own clients process), all held open at the
    /// same time, and sum their memory. For a per-process open-files limit
    /// below the connection count (20,000 in our CI containers).
    #[arg(long, default_value_t = 1)]
    idle_shards: usize,
    /// Internal: after connecting (idle mode), print the result and keep the
    /// connections open until a line arrives on stdin.
    #[arg(long, hide = true)]
    hold: bool,
    /// Internal: run the websocket clients against --addr.
    #[arg(long, hide = true)]
    clients_only: bool,
    #[arg(long, hide = true)]
    addr: Option<SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.matrix {
        return run_matrix(&args);
    }
    if args.idle.is_some() && args.idle_shards > 1 && !args.clients_only {
        return run_sharded_idle(&args);
    }
    if args.clients_only {
        return rt.block_on(clients_process(args));
    }
    let result = rt.block_on(run_case(args))?;
    println!("{result}");
    // Tens of thousands of sockets close faster with the process.
    std::process::exit(0);
}

/// As many open files as the kernel allows (hard limit too when root).
fn raise_fd_limit() {
    let want = 1 << 20;
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_err() {
        let _ = rlimit::increase_nofile_limit(want);
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Resident memory of this process in bytes.
fn rss_bytes() -> u64 {
    proc_kib("/proc/self/status", "VmRSS:") * 1024
}

/// A `Key:   N kB` line of a /proc file, in KiB (0 when absent).
fn proc_kib(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------- matrix

fn run_matrix(args: &Args) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut rows: Vec<Value> = Vec::new();
    let mut cases: Vec<Vec<String>> = Vec::new();
    for &n in &args.matrix_clients {
        for server in ["gateway", "fastws"] {
            cases.push(vec![
                format!("--server={server}"),
                format!("--clients={n}"),
                format!("--frames-per-sec={}", args.frames_per_sec),
                format!("--seconds={}", args.seconds),
            ]);
        }
    }
    for &n in &args.matrix_idle {
        for server in ["gateway", "fastws"] {
            cases.push(vec![format!("--server={server}"), format!("--idle={n}")]);
        }
    }
    for case in cases {
        eprintln!("wsbench: running {}", case.join(" "));
        let out = std::process::Command::new(&exe)
            .args(&case)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run a case")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().last().map(serde_json::from_str::<Value>) {
            Some(Ok(v)) => {
                eprintln!("wsbench: {v}");
                rows.push(v);
            }
            _ => eprintln!("wsbench: case {case:?} failed: {stdout}"),
        }
    }
    println!("| server | clients | events/s | frames/s delivered | delivered/expected | p50 ms | p99 ms | max ms | out of order | server RSS/client |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows.iter().filter(|r| r["mode"] == "active") {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.4} | {:.2} | {:.2} | {:.2} | {} | {:.1} KiB |",
            r["server"].as_str().unwrap_or("?"),
            r["clients"],
            r["events_per_sec"].as_f64().unwrap_or(0.0),
            r["frames_per_sec"].as_f64().unwrap_or(0.0),
            r["delivered_ratio"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0),
            r["out_of_order"],
            r["rss_per_client_kib"].as_f64().unwrap_or(0.0),
        );
    }
    println!();
    println!(
        "| server | idle connections | server RSS before | server RSS after | per connection |"
    );
    println!("|---|---|---|---|---|");
    for r in rows.iter().filter(|r| r["mode"] == "idle") {
        println!(
            "| {} | {} | {:.0} MiB | {:.0} MiB | {:.1} KiB |",
            r["server"].as_str().unwrap_or("?"),
            r["clients"],
            r["rss_before_mib"].as_f64().unwrap_or(0.0),
            r["rss_after_mib"].as_f64().unwrap_or(0.0),
            r["rss_per_client_kib"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(())
}

/// `MemAvailable` of the machine, bytes.
fn mem_available() -> u64 {
    proc_kib("/proc/meminfo", "MemAvailable:") * 1024
}

/// `--idle N --idle-shards S`: S gateway processes of N/S idle connections
/// each, all open at once; prints one Markdown row and a JSON line.
fn run_sharded_idle(args: &Args) -> anyhow::Result<()> {
    let total = args.idle.unwrap_or(0);
    let shards = args.idle_shards;
    let exe = std::env::current_exe()?;
    let avail_before = mem_available();
    let mut children = Vec::new();
    for s in 0..shards {
        let n = total / shards + usize::from(s < total % shards);
        let child = std::process::Command::new(&exe)
            .arg(format!("--server={}", args.server))
            .arg(format!("--idle={n}"))
            .arg("--hold")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start a shard")?;
        children.push(child);
    }
    let mut rows = Vec::new();
    for child in &mut children {
        let out = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
        let row: Value = serde_json::from_str(line.trim())
            .with_context(|| format!("a shard failed: {line:?}"))?;
        eprintln!("wsbench: shard {row}");
        rows.push(row);
    }
    // Every shard holds its connections now.
    std::thread::sleep(Duration::from_secs(1));
    let avail_during = mem_available();
    for child in &mut children {
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "stop");
        }
    }
    for child in &mut children {
        let _ = child.wait();
    }
    let sum = |k: &str| {
        rows.iter()
            .map(|r| r[k].as_f64().unwrap_or(0.0))
            .sum::<f64>()
    };
    let connected: u64 = rows
        .iter()
        .map(|r| r["clients"].as_u64().unwrap_or(0))
        .sum();
    let (before, after) = (sum("rss_before_mib"), sum("rss_after_mib"));
    let machine_mib = avail_before.saturating_sub(avail_during) as f64 / (1024.0 * 1024.0);
    println!("| server | idle connections | processes | server RSS before (sum) | server RSS after (sum) | per connection | machine memory used (servers + clients + kernel) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {connected} | {shards} | {before:.0} MiB | {after:.0} MiB | {:.1} KiB | {machine_mib:.0} MiB |",
        args.server,
        (after - before) * 1024.0 / connected.max(1) as f64
    );
    println!(
        "{}",
        json!({
            "mode": "idle_sharded", "server": args.server, "clients": connected,
            "shards": shards, "rss_before_mib": before, "rss_after_mib": after,
            "rss_per_client_kib": (after - before) * 1024.0 / connected.max(1) as f64,
            "machine_mib": machine_mib,
        })
    );
    Ok(())
}

// ------------------------------------------------------------------ case

/// Records nothing: the benchmark only needs the command sink to exist.
struct NullSink;

impl CommandSink for NullSink {
    fn submit(&self, _cmd: Command) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// A server under test: how to publish one event to it.
enum Server {
    Gateway(Gateway),
    Fastws {
        tx: broadcast::Sender<Arc<[u8]>>,
        lagged: Arc<AtomicU64>,
    },
}

impl Server {
    fn publish(&self, ev: OutputEvent, prev_seq: u64) {
        match self {
            Server::Gateway(gw) => gw.publish(ev),
            Server::Fastws { tx, .. } => {
                // The very bytes the gateway sends on `city`.
                let event = serde_json::to_string(&ev).unwrap_or_default();
                let frame = format!(
                    r#"{{"op":"event","channel":"city","seq":{},"prev_seq":{prev_seq},"event":{event}}}"#,
                    ev.seq
                );
                let _ = tx.send(Arc::from(frame.into_bytes()));
            }
        }
    }
}

async fn start_server(kind: &str, clients: usize) -> anyhow::Result<(Server, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    match kind {
        "gateway" => {
            let config = GatewayConfig {
                jwt_secret: SECRET.into(),
                // One token for every client of the benchmark.
                max_connections_per_token: clients.max(1),
                ..GatewayConfig::default()
            };
            let gw = Gateway::new(
                config,
                json!({"type": "FeatureCollection", "features": []}),
                Arc::new(NullSink),
                Arc::new(String::new),
            );
            let serving = gw.clone();
            tokio::spawn(async move {
                let _ = serving.serve(listener, CancellationToken::new()).await;
            });
            Ok((Server::Gateway(gw), addr))
        }
        "fastws" => {
            // Same depth as the gateway's per-client queue.
            let (tx, _) = broadcast::channel::<Arc<[u8]>>(GatewayConfig::default().client_queue);
            let lagged = Arc::new(AtomicU64::new(0));
            let (tx2, lagged2) = (tx.clone(), lagged.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let rx = tx2.subscribe();
                    tokio::spawn(fastws_connection(stream, rx, lagged2.clone()));
                }
            });
            Ok((Server::Fastws { tx, lagged }, addr))
        }
        other => bail!("unknown --server {other:?}: expected gateway or fastws"),
    }
}

/// The baseline connection: handshake by hand, then write every broadcast
/// frame. Inbound frames are never read (the clients send one subscribe).
async fn fastws_connection(
    mut stream: TcpStream,
    mut rx: broadcast::Receiver<Arc<[u8]>>,
    lagged: Arc<AtomicU64>,
) {
    use base64::Engine as _;
    use sha1::{Digest, Sha1};
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 16 * 1024 {
            return;
        }
    }
    let request = String::from_utf8_lossy(&buf);
    let Some(key) = request.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-key")
            .then(|| value.trim().to_string())
    }) else {
        return;
    };
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    let mut ws = fastwebsockets::WebSocket::after_handshake(stream, fastwebsockets::Role::Server);
    ws.set_auto_pong(false);
    ws.set_auto_close(false);
    loop {
        match rx.recv().await {
            Ok(frame) => {
                let frame = fastwebsockets::Frame::text(fastwebsockets::Payload::Borrowed(&frame));
                if ws.write_frame(frame).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                lagged.fetch_add(n, Ordering::Relaxed);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn bench_event(seq: u64) -> OutputEvent {
    let ts = Timestamp::from_unix_millis(1_790_000_000_000);
    let incident = IncidentView {
        incident_id: format!("bench-{}", seq % 100),
        status: IncidentStatus::Open,
        category: Category::Medical,
        priority: 2,
        location: GeoPoint {
            lat: 16.06,
            lon: 108.22,
        },
        district: Some("hai_chau".into()),
        opened_at: ts,
        updated_at: ts,
        source: "call:115".into(),
        call_count: 1,
        caller: None,
        line: None,
        description: Some(format!("{TS_MARK}{}", now_nanos())),
        assigned_units: vec![],
        correlation: None,
        assign_deadline: ts.plus_millis(600_000),
        closed_at: None,
    };
    OutputEvent {
        seq,
        ts,
        district: Some("hai_chau".into()),
        body: EventBody::IncidentUpdated(incident),
    }
}

async fn run_case(args: Args) -> anyhow::Result<Value> {
    let idle = args.idle.is_some();
    let n = args.idle.unwrap_or(args.clients);
    let (server, addr) = start_server(&args.server, n).await?;
    // Let the runtime and allocator settle before the baseline reading.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_bytes();

    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--clients-only")
        .arg(format!("--addr={addr}"))
        .arg(format!("--clients={n}"))
        .arg(format!("--server={}", args.server))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the clients process")?;
    let mut child_in = child.stdin.take().context("no stdin")?;
    let mut child_out = tokio::io::BufReader::new(child.stdout.take().context("no stdout")?);
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    child_out.read_line(&mut line).await?;
    if line.trim() != "ready" {
        bail!("clients process did not get ready: {line:?}");
    }
    let connect_secs: f64 = {
        line.clear();
        child_out.read_line(&mut line).await?;
        line.trim().parse().unwrap_or(0.0)
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_bytes();
    if idle && args.hold {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "{}",
            json!({
                "mode": "idle", "server": args.server, "clients": n,
                "connect_secs": connect_secs,
                "rss_before_mib": mib(rss_before), "rss_after_mib": mib(rss_after),
            })
        );
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
        })
        .await?;
        // The parent has its figures; the clients process ends with our pipe.
        std::process::exit(0);
    }

    let mut published = 0u64;
    let mut publish_secs = 0.0;
    if !idle {
        let events_per_sec = (args.frames_per_sec as f64 / n as f64).max(1.0);
        let start = Instant::now();
        let total = (events_per_sec * args.seconds as f64).round() as u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let mut prev_seq = 0;
        while published < total {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * events_per_sec) as u64).min(total);
            while published < due {
                published += 1;
                server.publish(bench_event(published), prev_seq);
                prev_seq = published;
            }
        }
        publish_secs = start.elapsed().as_secs_f64();
        // Let the last frames arrive.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    child_in.write_all(b"stop\n").await?;
    line.clear();
    child_out.read_line(&mut line).await?;
    let report: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("bad report from the clients process: {line:?}"))?;
    let _ = child.kill().await;

    let frames = report["frames"].as_u64().unwrap_or(0);
    let window = report["window_secs"].as_f64().unwrap_or(0.0);
    let lagged = match &server {
        Server::Fastws { lagged, .. } => lagged.load(Ordering::Relaxed),
        Server::Gateway(_) => 0,
    };
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    Ok(json!({
        "mode": if idle { "idle" } else { "active" },
        "server": args.server,
        "clients": n,
        "connect_secs": connect_secs,
        "events": published,
        "events_per_sec": if publish_secs > 0.0 { published as f64 / publish_secs } else { 0.0 },
        "frames": frames,
        "frames_per_sec": if window > 0.0 { frames as f64 / window } else { 0.0 },
        "delivered_ratio": if published > 0 { frames as f64 / (published * n as u64) as f64 } else { 0.0 },
        "p50_ms": report["p50_ms"],
        "p99_ms": report["p99_ms"],
        "max_ms": report["max_ms"],
        "out_of_order": report["out_of_order"],
        "closed_early": report["closed_early"],
        "baseline_lagged_frames": lagged,
        "rss_before_mib": mib(rss_before),
        "rss_after_mib": mib(rss_after),
        "rss_per_client_kib": rss_after.saturating_sub(rss_before) as f64 / 1024.0 / n.max(1) as f64,
        "clients_process_rss_mib": report["rss_mib"],
    }))
}

// --------------------------------------------------------------- clients

/// What the clients measured, shared by every client task.
struct Tally {
    hist: Vec<Mutex<Histogram<u64>>>,
    frames: AtomicU64,
    out_of_order: AtomicU64,
    closed_early: AtomicU64,
    first_recv: AtomicU64,
    last_recv: AtomicU64,
    connected: AtomicUsize,
}

async fn clients_process(args: Args) -> anyhow::Result<()> {
    let addr = args
        .addr
        .context("--addr is required with --clients-only")?;
    let n = args.clients;
    let token = mint_token(SECRET, "wsbench", Role::Ioc, None, 24 * 3600)?;
    let tally = Arc::new(Tally {
        hist: (0..SHARDS)
            .map(|_| Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds")))
            .collect(),
        frames: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        closed_early: AtomicU64::new(0),
        first_recv: AtomicU64::new(u64::MAX),
        last_recv: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
    });
    let wait_snapshot = args.server == "gateway";
    let started = Instant::now();
    let gate = Arc::new(tokio::sync::Semaphore::new(CONNECT_CONCURRENCY));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(1024);
    for i in 0..n {
        let (tally, token, gate, ready_tx) =
            (tally.clone(), token.clone(), gate.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("open semaphore");
            let ws = match connect_client(addr, i, &token, wait_snapshot).await {
                Ok(ws) => ws,
                Err(e) => {
                    let _ = ready_tx.send(Err(e)).await;
                    return;
                }
            };
            drop(permit);
            tally.connected.fetch_add(1, Ordering::Relaxed);
            let _ = ready_tx.send(Ok(())).await;
            drop(ready_tx);
            read_frames(ws, i, &tally).await;
        });
    }
    drop(ready_tx);
    for _ in 0..n {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => bail!("client failed to connect: {e:#}"),
            None => bail!("clients ended before connecting"),
        }
    }
    let stdout = std::io::stdout();
    {
        let mut out = stdout.lock();
        writeln!(out, "ready")?;
        writeln!(out, "{:.2}", started.elapsed().as_secs_f64())?;
        out.flush()?;
    }
    // Wait for the parent's "stop".
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    })
    .await?;

    let mut merged = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for h in &tally.hist {
        merged.add(&*h.lock().unwrap_or_else(|p| p.into_inner()))?;
    }
    let first = tally.first_recv.load(Ordering::Relaxed);
    let last = tally.last_recv.load(Ordering::Relaxed);
    let window = if last > first {
        (last - first) as f64 / 1e9
    } else {
        0.0
    };
    let ms = |us: u64| us as f64 / 1000.0;
    let report = json!({
        "frames": tally.frames.load(Ordering::Relaxed),
        "window_secs": window,
        "p50_ms": ms(merged.value_at_quantile(0.50)),
        "p99_ms": ms(merged.value_at_quantile(0.99)),
        "max_ms": ms(merged.max()),
        "out_of_order": tally.out_of_order.load(Ordering::Relaxed),
        "closed_early": tally.closed_early.load(Ordering::Relaxed),
        "rss_mib": rss_bytes() as f64 / (1024.0 * 1024.0),
    });
    // A parent that already has its figures (--hold) may be gone: no error.
    let mut out = stdout.lock();
    let _ = writeln!(out, "{report}").and_then(|_| out.flush());
    std::process::exit(0);
}

type ClientWs = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Connects client `i` from its own loopback source address, subscribes to
/// `city` and (gateway) waits for the snapshot.
async fn connect_client(
    addr: SocketAddr,
    i: usize,
    token: &str,
    wait_snapshot: bool,
) -> anyhow::Result<ClientWs> {
    let source = Ipv4Addr::new(127, 0, 0, 2 + (i as u32 % SOURCE_IPS) as u8);
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(addr).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let mut req = format!("ws://{addr}/ws").into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}"))?,
    );
    // tungstenite's default 128 KiB read buffer per client would make the
    // clients process, not the server, the limit at 100k connections.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
        .await
        .context("websocket handshake")?;
    ws.send(Message::text(r#"{"op":"subscribe","channel":"city"}"#))
        .await?;
    if wait_snapshot {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.as_str().contains(r#""op":"snapshot""#) => break,
                Some(Ok(_)) => continue,
                other => bail!("no snapshot: {other:?}"),
            }
        }
    }
    Ok(ws)
}

/// The number right after `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: &str = &text[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

async fn read_frames(mut ws: ClientWs, i: usize, tally: &Tally) {
    let mut last_seq = 0u64;
    let shard = &tally.hist[i % SHARDS];
    while let Some(msg) = ws.next().await {
        let text = match msg {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(_)) | Err(_) => {
                tally.closed_early.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(_) => continue,
        };
        let text = text.as_str();
        let Some(sent) = number_after(text, TS_MARK) else {
            continue;
        };
        let now = now_nanos();
        let micros = now.saturating_sub(sent) / 1000;
        if let Ok(mut h) = shard.lock() {
            let _ = h.record(micros.max(1));
        }
        if let Some(seq) = number_after(text, r#""seq":"#) {
            if seq <= last_seq {
                tally.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
            last_seq = seq;
        }
        tally.frames.fetch_add(1, Ordering::Relaxed);
        tally.first_recv.fetch_min(now, Ordering::Relaxed);
        tally.last_recv.fetch_max(now, Ordering::Relaxed);
    }
}
