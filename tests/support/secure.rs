//! A Kafka listener that requires TLS and SASL/SCRAM credentials, made of
//! real parts, for `tests/secure_cluster.rs`:
//!
//! * a throwaway CA and a server certificate for `127.0.0.1`, made with the
//!   `openssl` command line, and a second CA that signed nothing (the
//!   "unknown CA" of a misconfigured client);
//! * Tansu 0.6, a Kafka-compatible broker, built with its SQLite storage so
//!   that it keeps SCRAM credentials, run with `--authentication`: SASL is
//!   checked by a broker that implements it;
//! * Debian's stunnel4 in front of it, terminating TLS on the client-facing
//!   port and speaking plaintext to the broker on loopback. Tansu advertises
//!   the stunnel port, so every connection a client opens, after the
//!   bootstrap one too, goes through TLS.
//!
//! Tansu's own `--cert`/`--key` do not switch its listener to TLS in 0.6,
//! hence the terminator; the wheel's memory-only build cannot keep
//! credentials, hence the SQLite build (`scripts/setup.sh` installs both
//! tools; docs/decisions.md, decision 20).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;

use crate::free_port;

/// The user the broker knows.
pub const USERNAME: &str = "ioc-processor";
/// Its password: random per process would hide nothing here, and a fixed
/// one lets a test check that it never reaches a log.
pub const PASSWORD: &str = "s3cret-Scram-Password-4-tests";
/// The SASL mechanism of the user.
pub const MECHANISM: &str = "SCRAM-SHA-512";

/// Topics and partitions, as the embedded broker makes them.
const TOPICS: &[(&str, i32)] = &[
    ("ioc.calls", 3),
    ("ioc.incidents", 3),
    ("ioc.positions", 6),
    ("ioc.units", 3),
    ("ioc.commands", 3),
    ("ioc.events", 1),
    ("ioc.dlq", 1),
];

/// Tansu built with SQLite storage: `IOC_TANSU_SQLITE`, else where
/// `scripts/setup.sh` installs it.
pub fn tansu_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("IOC_TANSU_SQLITE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".local/share/ioc/tansu-sqlite/bin/tansu"),
    };
    if !path.exists() {
        bail!(
            "{} not found: run scripts/setup.sh (it builds Tansu with its SQLite storage) \
             or point IOC_TANSU_SQLITE at such a build",
            path.display()
        );
    }
    Ok(path)
}

/// Debian's stunnel (package stunnel4).
fn stunnel_binary() -> anyhow::Result<PathBuf> {
    for name in ["stunnel4", "stunnel"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.exists() {
                return Ok(p);
            }
        }
    }
    bail!("stunnel4 not found: run scripts/setup.sh (apt-get install stunnel4)")
}

/// Runs a command to completion; its output in the error if it fails.
fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Waits until something accepts TCP connections on `port`.
fn wait_listening(port: u16, what: &str, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(anyhow!(
        "{what} not listening on 127.0.0.1:{port} within 30 s; its log: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    ))
}

/// A throwaway CA (`name.pem`, `name.key`) in `dir`.
fn make_ca(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let pem = dir.join(format!("{name}.pem"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{name}.key")))
        .arg("-out")
        .arg(&pem)
        .args(["-subj", &format!("/CN=ioc test {name}")]))?;
    Ok(pem)
}

/// TLS + SASL/SCRAM in front of a real broker; everything stops on drop.
pub struct SecureCluster {
    /// Certificates, keys, configs, logs and the broker's database.
    pub dir: PathBuf,
    /// The client-facing, TLS-only port (stunnel).
    pub tls_port: u16,
    /// The CA that signed the server certificate.
    pub ca: PathBuf,
    /// A CA that signed nothing the cluster presents.
    pub other_ca: PathBuf,
    tansu: Child,
    stunnel: Child,
}

impl SecureCluster {
    /// Makes the certificates, starts Tansu (a user and the topics created
    /// first, then restarted requiring authentication) and stunnel.
    pub fn start() -> anyhow::Result<Self> {
        let tansu = tansu_binary()?;
        let stunnel = stunnel_binary()?;
        let tls_port = free_port()?;
        let broker_port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("ioc-secure-{}-{tls_port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;

        // Certificates: a CA, a server certificate it signs for the
        // address clients connect to, and a second, unrelated CA.
        let ca = make_ca(&dir, "ca")?;
        let other_ca = make_ca(&dir, "other-ca")?;
        let (key, csr, cert) = (
            dir.join("server.key"),
            dir.join("server.csr"),
            dir.join("server.pem"),
        );
        run(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr))?;
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName = IP:127.0.0.1, DNS:localhost\n\
             extendedKeyUsage = serverAuth\n\
             basicConstraints = CA:FALSE\n",
        )?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(dir.join("ca.key"))
            .arg("-out")
            .arg(&cert)
            .arg("-extfile")
            .arg(&ext))?;

        // The broker, first without authentication: the user and the
        // topics are created through its own CLI, into its database.
        // Tansu reads a `sqlite://` path relative to its working directory.
        let storage = "sqlite://tansu.db";
        let broker_url = format!("tcp://127.0.0.1:{broker_port}");
        let setup_log = dir.join("tansu-setup.log");
        let mut setup = spawn_tansu(
            &tansu,
            &dir,
            storage,
            broker_port,
            &broker_url,
            false,
            &setup_log,
        )?;
        let created = (|| -> anyhow::Result<()> {
            wait_listening(broker_port, "tansu", &setup_log)?;
            run(Command::new(&tansu)
                .args([
                    "user",
                    "create",
                    "--broker",
                    &broker_url,
                    "--mechanism",
                    "scram512",
                ])
                .args([USERNAME, PASSWORD]))?;
            for (topic, partitions) in TOPICS {
                run(Command::new(&tansu)
                    .args(["topic", "create", topic, "--broker", &broker_url])
                    .args(["--partitions", &partitions.to_string()]))?;
            }
            Ok(())
        })();
        let _ = setup.kill();
        let _ = setup.wait();
        created.context("tansu setup (user and topics)")?;

        // Then requiring SASL, advertising the TLS port.
        let tansu_log = dir.join("tansu.log");
        let advertised = format!("tcp://127.0.0.1:{tls_port}");
        let tansu = spawn_tansu(
            &tansu,
            &dir,
            storage,
            broker_port,
            &advertised,
            true,
            &tansu_log,
        )?;

        // TLS terminator: TLS on the client-facing port, plaintext to the
        // broker on loopback.
        let stunnel_conf = dir.join("stunnel.conf");
        let stunnel_log = dir.join("stunnel.log");
        std::fs::write(
            &stunnel_conf,
            format!(
                "foreground = yes\npid =\ndebug = notice\noutput = {log}\n\n\
                 [kafka]\naccept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{broker_port}\n\
                 cert = {cert}\nkey = {key}\n",
                log = stunnel_log.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )?;
        let stunnel = Command::new(stunnel)
            .arg(&stunnel_conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn stunnel")?;
        let cluster = Self {
            dir,
            tls_port,
            ca,
            other_ca,
            tansu,
            stunnel,
        };
        wait_listening(broker_port, "tansu", &tansu_log)?;
        wait_listening(tls_port, "stunnel", &stunnel_log)?;
        Ok(cluster)
    }

    /// `127.0.0.1:TLS_PORT`: the only address clients are given.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }

    /// The librdkafka properties of a client, with `password` and `ca`.
    pub fn properties(&self, password: &str, ca: &Path) -> Vec<(&'static str, String)> {
        vec![
            ("security.protocol", "SASL_SSL".into()),
            ("sasl.mechanisms", MECHANISM.into()),
            ("sasl.username", USERNAME.into()),
            ("sasl.password", password.into()),
            ("ssl.ca.location", ca.display().to_string()),
        ]
    }

    /// `ioc.toml` for `ioc serve` against this cluster: the `[kafka]`
    /// section an operator writes (docs/operations.md shows the same).
    ///
    /// Tansu 0.6 answers no EndTxn: the processor runs without
    /// transactions on it (`exactly_once = false`, decision 21).
    pub fn ioc_toml(&self, password: &str, ca: &Path) -> String {
        let mut toml = String::from("[processor]\nexactly_once = false\n\n[kafka.properties]\n");
        for (k, v) in self.properties(password, ca) {
            toml.push_str(&format!("{k:?} = {v:?}\n"));
        }
        toml
    }

    /// A client config with the right credentials and CA.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        for (k, v) in self.properties(PASSWORD, &self.ca) {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer through TLS and SASL.
    pub fn producer(&self) -> anyhow::Result<FutureProducer> {
        Ok(self
            .client_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()?)
    }

    /// Every message of partition 0 of `topic` now present, as JSON, read
    /// through TLS and SASL.
    pub fn read_topic(&self, topic: &str) -> anyhow::Result<Vec<Value>> {
        let c: BaseConsumer = self
            .client_config()
            .set("group.id", "test-secure-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let (low, high) = c.fetch_watermarks(topic, 0, Duration::from_secs(10))?;
        let mut out = Vec::new();
        if high <= low {
            return Ok(out);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Offset(low))?;
        c.assign(&tpl)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(m) = c.poll(Duration::from_millis(200)) {
                let m = m?;
                out.push(serde_json::from_slice(m.payload().unwrap_or_default())?);
                if m.offset() + 1 >= high {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// stunnel's log: one line per connection it accepted.
    pub fn stunnel_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stunnel.log")).unwrap_or_default()
    }
}

fn spawn_tansu(
    bin: &Path,
    dir: &Path,
    storage: &str,
    port: u16,
    advertised: &str,
    authentication: bool,
    log: &Path,
) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log)?;
    let mut cmd = Command::new(bin);
    cmd.args(["broker", "--storage-engine", storage])
        .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args(["--advertised-listener-url", advertised]);
    if authentication {
        cmd.arg("--authentication");
    }
    cmd.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("spawn tansu")
}

impl Drop for SecureCluster {
    fn drop(&mut self) {
        for child in [&mut self.stunnel, &mut self.tansu] {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
