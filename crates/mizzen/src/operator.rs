//! `mizzen run`: the operator process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, ValueEnum};
use kube::Client;
use mizzen_catalog::Catalog;
use mizzen_controller::{RunOptions, run};
use mizzen_render::Platform;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Options of `mizzen run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Platform: detected from the API server by default.
    #[arg(long, value_enum, default_value_t = PlatformArg::Auto, env = "MIZZEN_PLATFORM")]
    platform: PlatformArg,
    /// Address of the /healthz and /readyz endpoints.
    #[arg(long, default_value = "127.0.0.1:8081", env = "MIZZEN_HEALTH_ADDR")]
    health_addr: SocketAddr,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PlatformArg {
    Auto,
    Kubernetes,
    Openshift,
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub fn run_operator(args: RunArgs, catalog: Catalog) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let client = Client::try_default().await?;
        let platform = match args.platform {
            PlatformArg::Kubernetes => Platform::Kubernetes,
            PlatformArg::Openshift => Platform::OpenShift,
            PlatformArg::Auto => detect_platform(&client).await,
        };
        let ready = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind(args.health_addr).await?;
        tracing::info!(addr = %args.health_addr, ?platform, "mizzen starting");
        tokio::spawn(serve_health(listener, ready.clone()));
        let opts = RunOptions {
            catalog: Arc::new(catalog),
            platform,
            ready,
        };
        run(client, opts, shutdown_signal()).await?;
        Ok(())
    })
}

/// OpenShift serves `operator.openshift.io/v1` with kind `OpenShiftAPIServer`.
async fn detect_platform(client: &Client) -> Platform {
    match client
        .list_api_group_resources("operator.openshift.io/v1")
        .await
    {
        Ok(list)
            if list
                .resources
                .iter()
                .any(|r| r.kind == "OpenShiftAPIServer") =>
        {
            Platform::OpenShift
        }
        _ => Platform::Kubernetes,
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
}

/// `/healthz` answers while the process runs; `/readyz` once the controllers run.
async fn serve_health(listener: TcpListener, ready: Arc<AtomicBool>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (code, body) = match path {
                "/healthz" => ("200 OK", "ok"),
                "/readyz" if ready.load(Ordering::SeqCst) => ("200 OK", "ok"),
                "/readyz" => ("503 Service Unavailable", "starting"),
                _ => ("404 Not Found", "not found"),
            };
            let response = format!(
                "HTTP/1.1 {code}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(response.as_bytes()).await;
        });
    }
}
