//! The operator's runtime (DESIGN.md decision 11): everything around the controllers that a
//! process needs to run in a cluster. The API client (requests counted), the health
//! (`/healthz`, `/readyz`) and metrics (`/metrics`) endpoints, leader election on a Lease,
//! logging, platform detection, and shutdown on SIGTERM: controllers stop first, then the
//! Lease is released so a standby takes over at once.
//!
//! The binary parses flags into [`Options`] and calls [`run`]; the controllers know nothing
//! of leases or HTTP servers: they get a `watch` channel saying whether to write, the metrics
//! to update and the health to report to.

pub mod admin;
pub mod client;
pub mod lease;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use mizzen_catalog::Catalog;
use mizzen_controller::metrics::Metrics;
use mizzen_controller::{Health, RunOptions};
use mizzen_render::Platform;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

pub use lease::{LeaseConfig, LeaseTimes};

/// Where a pod's ServiceAccount namespace is mounted.
const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// How the operator process runs.
pub struct Options {
    /// The version catalog.
    pub catalog: Catalog,
    /// The platform; `None` detects it from the API server.
    pub platform: Option<Platform>,
    /// Address of `/healthz` and `/readyz`.
    pub health_addr: SocketAddr,
    /// Address of `/metrics`.
    pub metrics_addr: SocketAddr,
    /// Leader election, when enabled.
    pub leader_election: Option<LeaderElection>,
}

/// Leader-election settings as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct LeaderElection {
    /// Namespace of the Lease; default `POD_NAMESPACE`, then the ServiceAccount's namespace.
    pub namespace: Option<String>,
    /// Name of the Lease.
    pub name: String,
    /// Holder identity; default `POD_NAME`, then the host name.
    pub identity: Option<String>,
    /// Timings.
    pub times: LeaseTimes,
}

impl LeaderElection {
    /// Fills the namespace and identity from the pod's environment.
    pub fn resolve(&self) -> anyhow::Result<LeaseConfig> {
        let namespace = self
            .namespace
            .clone()
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.is_empty())
            })
            .or_else(|| {
                std::fs::read_to_string(SA_NAMESPACE_FILE)
                    .ok()
                    .map(|s| s.trim().to_owned())
                    .filter(|n| !n.is_empty())
            })
            .context(
                "leader election needs the operator's namespace: set --leader-election-namespace \
                 or POD_NAMESPACE (the manifests set it from the downward API)",
            )?;
        let identity = self
            .identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
            .or_else(hostname)
            .context("no holder identity: set POD_NAME")?;
        Ok(LeaseConfig {
            namespace,
            name: self.name.clone(),
            identity,
            times: self.times,
        })
    }
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Runs the operator until SIGTERM or Ctrl-C; an error when it cannot start or loses the
/// leadership it held (the process should then exit and be restarted as a standby).
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let mut registry = Registry::with_prefix("mizzen");
    let requests = Arc::new(client::RequestMetrics::new(&mut registry));
    let metrics = Metrics::new(&mut registry);
    let health = Arc::new(Health::default());
    let config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster, KUBECONFIG or ~/.kube/config)")?;
    let client = client::client(config, requests)?;

    let health_addr = admin::serve_health(opts.health_addr, health.clone())
        .await
        .with_context(|| format!("cannot listen on {}", opts.health_addr))?;
    let metrics_addr = admin::serve_metrics(opts.metrics_addr, Arc::new(registry))
        .await
        .with_context(|| format!("cannot listen on {}", opts.metrics_addr))?;
    let platform = match opts.platform {
        Some(p) => p,
        None => detect_platform(&client).await,
    };
    tracing::info!(%health_addr, %metrics_addr, ?platform, "mizzen starting");

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });

    let (leader_tx, leader_rx) = watch::channel(opts.leader_election.is_none());
    let (lease_stop_tx, lease_stop_rx) = watch::channel(false);
    let election = match &opts.leader_election {
        Some(le) => {
            let cfg = le.resolve()?;
            tracing::info!(
                lease = cfg.name,
                namespace = cfg.namespace,
                identity = cfg.identity,
                "leader election on: reconciling once this process holds the lease"
            );
            let task = lease::elect(
                client.clone(),
                cfg,
                leader_tx,
                lease_stop_rx,
                health.clone(),
                metrics.clone(),
            );
            Some(tokio::spawn(task))
        }
        None => None,
    };
    tokio::spawn(track_leader(leader_rx.clone(), metrics.clone()));

    let run_opts = RunOptions {
        catalog: Arc::new(opts.catalog),
        platform,
        health,
        metrics,
        leader: leader_rx,
    };
    let mut controller_stop = stop_rx.clone();
    let controllers = mizzen_controller::run(client, run_opts, async move {
        let _ = controller_stop.wait_for(|s| *s).await;
    });
    tokio::pin!(controllers);
    let lost = match election {
        Some(mut task) => tokio::select! {
            r = &mut controllers => {
                // The controllers have stopped writing: release the Lease, then exit.
                let _ = lease_stop_tx.send(true);
                let _ = task.await;
                r?;
                None
            }
            ended = &mut task => match ended {
                Ok(lease::Ended::Lost(why)) => Some(why),
                Ok(lease::Ended::Shutdown) => None,
                Err(e) => Some(format!("the election task failed: {e}")),
            },
        },
        None => {
            controllers.await?;
            None
        }
    };
    if let Some(why) = lost {
        anyhow::bail!(
            "lost the leadership ({why}); exiting so that a fresh standby takes its place"
        );
    }
    Ok(())
}

/// Keeps the `mizzen_leader` gauge and the log in step with the election.
async fn track_leader(mut leader: watch::Receiver<bool>, metrics: Arc<Metrics>) {
    loop {
        let leading = *leader.borrow_and_update();
        metrics.set_leader(leading);
        if leader.changed().await.is_err() {
            return;
        }
    }
}

/// OpenShift serves `operator.openshift.io/v1` with kind `OpenShiftAPIServer`.
pub async fn detect_platform(client: &kube::Client) -> Platform {
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
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
}

/// Makes glibc use one malloc arena, by executing this program again, once, with
/// `MALLOC_ARENA_MAX=1` in its environment (glibc reads it only when a process starts), unless
/// the variable is set already. glibc otherwise keeps an arena per thread with memory an idle
/// operator never gives back: 3.3 MiB of a 24 MiB resident set (docs/scale.md). Same pid, same
/// arguments. Returns only when it did not execute again (the variable was set, or the exec
/// failed, which is reported and harmless).
pub fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command.args(args).env(VAR, "1").exec();
    eprintln!("could not execute again with {VAR}=1 ({error}); continuing with glibc's default");
}
