//! A loopback TCP forwarder that gives the embedded broker a fixed port.
//!
//! librdkafka's mock cluster always binds a random port. `ioc broker --port
//! N` listens on N and forwards every connection to the mock broker. Kafka
//! clients bootstrap through N, then connect to the advertised (random)
//! loopback address from the metadata, which is reachable on this machine
//! too, so both paths work.

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

/// Starts forwarding `127.0.0.1:port` to `target` in the background and
/// returns the fixed address.
pub async fn forward(port: u16, target: String) -> anyhow::Result<String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} for the broker"))?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let target = target.clone();
            tokio::spawn(async move {
                match TcpStream::connect(&target).await {
                    Ok(mut outbound) => {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "broker forward failed"),
                }
            });
        }
    });
    Ok(addr)
}
