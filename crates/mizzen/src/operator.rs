//! `mizzen run`: flags of the operator process, handed to the runtime.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};
use mizzen_catalog::Catalog;
use mizzen_render::Platform;
use mizzen_runtime::{LeaderElection, LeaseTimes, Options};

/// Options of `mizzen run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Platform: detected from the API server by default.
    #[arg(long, value_enum, default_value_t = PlatformArg::Auto, env = "MIZZEN_PLATFORM")]
    platform: PlatformArg,
    /// Address of the /healthz and /readyz endpoints (in a pod: 0.0.0.0:8081).
    #[arg(long, default_value = "127.0.0.1:8081", env = "MIZZEN_HEALTH_ADDR")]
    health_addr: SocketAddr,
    /// Address of the Prometheus /metrics endpoint (in a pod: 0.0.0.0:8080).
    #[arg(long, default_value = "127.0.0.1:8080", env = "MIZZEN_METRICS_ADDR")]
    metrics_addr: SocketAddr,
    /// Reconcile only while holding the leader Lease (for more than one replica).
    #[arg(long, env = "MIZZEN_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: POD_NAMESPACE, then the ServiceAccount's).
    #[arg(long, env = "MIZZEN_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = mizzen_controller::permissions::LEASE_NAME)]
    leader_election_id: String,
    /// Holder identity (default: POD_NAME, then the host name).
    #[arg(long, env = "MIZZEN_LEADER_ELECTION_IDENTITY")]
    leader_election_identity: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PlatformArg {
    Auto,
    Kubernetes,
    Openshift,
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub fn run_operator(args: RunArgs, catalog: Catalog) -> anyhow::Result<()> {
    let options = Options {
        catalog,
        platform: match args.platform {
            PlatformArg::Auto => None,
            PlatformArg::Kubernetes => Some(Platform::Kubernetes),
            PlatformArg::Openshift => Some(Platform::OpenShift),
        },
        health_addr: args.health_addr,
        metrics_addr: args.metrics_addr,
        leader_election: args.leader_elect.then(|| LeaderElection {
            namespace: args.leader_election_namespace,
            name: args.leader_election_id,
            identity: args.leader_election_identity,
            times: LeaseTimes::default(),
        }),
    };
    tokio::runtime::Runtime::new()?.block_on(mizzen_runtime::run(options))
}
