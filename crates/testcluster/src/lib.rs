//! A real, local Kubernetes control plane for mizzen's integration tests, benchmarks and the
//! `mizzen dev` command.
//!
//! [`Cluster::start`] runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
//! [KWOK](https://kwok.sigs.k8s.io) as separate processes, creates `N` fake nodes and waits until
//! they are Ready, so Deployments and DaemonSets really roll out: the controllers create pods, the
//! scheduler binds them, and KWOK plays the kubelet (pods go Running and Ready at once, terminating
//! pods are deleted at once). There are no containers, no container runtime and no kubelet.
//!
//! The binaries come from `tools/cluster/build.sh` (see [`ClusterBinaries::locate`]).
//!
//! # Network safety
//!
//! Every component listens on `127.0.0.1` only, and the apiserver never dials a Service ClusterIP
//! or a pod IP: it advertises `127.0.0.1`, runs with `--endpoint-reconciler-type=none`, and the
//! webhook admission plugins (`MutatingAdmissionWebhook`, `ValidatingAdmissionWebhook`,
//! `ValidatingAdmissionPolicy`) are disabled, so webhook configurations are inert. KWOK reports
//! `127.0.0.1` as every node's IP; fake pod IPs come from `10.244.0.0/16` and have nothing behind
//! them: never dial them. [`sockets`] and [`listening_sockets`] let a test check what the
//! components listen on and connect to.
//!
//! # Lifetime
//!
//! An attached cluster (the default) is stopped, and its temporary state directory removed, when
//! the [`Cluster`] is dropped, and also when the process that started it dies without dropping it
//! (a panic, `std::process::exit`, a signal, or a `static` cluster that is never dropped): a small
//! watchdog process per cluster notices that its parent is gone and stops the components. A
//! detached cluster ([`Options::detach`]) outlives the process that started it, and is stopped
//! with [`Cluster::stop_dir`].
//!
//! # Restarting the API server
//!
//! [`Cluster::stop_apiserver`] stops the kube-apiserver process (SIGTERM, then SIGKILL after a
//! bound) and [`Cluster::start_apiserver`] starts it again with the same arguments, port and
//! certificates, so kubeconfigs and clients keep working; the other components keep running
//! and reconnect on their own. For tests of how clients live through an API-server outage.
//!
//! # Tests
//!
//! [`shared`] starts one cluster per test binary; [`TestNamespace`] gives each test its own
//! namespace:
//!
//! ```no_run
//! # async fn example() -> Result<(), mizzen_testcluster::Error> {
//! let cluster = mizzen_testcluster::shared().await;
//! let ns = mizzen_testcluster::TestNamespace::new(cluster, "my-test").await?;
//! let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = ns.api();
//! # Ok(()) }
//! ```

mod binaries;
mod certs;
mod cluster;
mod error;
mod kubeconfig;
mod net;
mod process;
mod shared;
mod stages;
mod tools;

pub use binaries::ClusterBinaries;
pub use cluster::{Cluster, ComponentPid, Options, POD_CIDR, SERVICE_CIDR};
pub use error::Error;
pub use net::{SocketInfo, TcpState, is_loopback, listening_sockets, sockets};
pub use shared::{TEST_NAMESPACE_LABEL, TestNamespace, shared};
pub use stages::KWOK_STAGES;
pub use tools::{helm_bin, istiod_bin};
