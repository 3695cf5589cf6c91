//! Starting, using and stopping the control plane.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeSpec, ServiceAccount};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::binaries::ClusterBinaries;
use crate::certs::{CertificateFiles, Certificates};
use crate::error::{Error, Result};
use crate::process::{
    self, Component, KEEP_MARKER, Spawn, Watchdog, is_ours, log_tail, recorded_pids, run_stopper,
};
use crate::{kubeconfig, stages};

/// Marks a directory as a state directory of this crate (so it may be wiped and removed).
const MARKER: &str = ".mizzen-testcluster";
/// The admin kubeconfig in the state directory.
const KUBECONFIG: &str = "kubeconfig";
/// The KWOK Stage file in the state directory.
const STAGES: &str = "kwok-stages.yaml";
/// How many times a start is tried when a component reports that its port was taken.
const START_ATTEMPTS: usize = 3;
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// Lines of a component log quoted in an error.
const LOG_TAIL_LINES: usize = 40;
/// The component [`Cluster::stop_apiserver`] and [`Cluster::start_apiserver`] act on.
const APISERVER: &str = "kube-apiserver";

/// The Service ClusterIP range (nothing is behind these addresses: never dial them).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The range KWOK takes fake pod IPs from (nothing is behind these addresses: never dial them).
pub const POD_CIDR: &str = "10.244.0.0/16";

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct Options {
    /// How many fake nodes to create (`node-1` .. `node-N`). Default 3.
    pub nodes: usize,
    /// The state directory. `None` (the default) uses a new temporary directory that is removed
    /// when the cluster stops. A given directory is created if needed, wiped at start if it holds
    /// a stopped cluster of this crate, refused if it holds a running one or foreign files, and
    /// kept when an attached cluster stops (logs stay readable).
    pub dir: Option<PathBuf>,
    /// Let the processes outlive the process that starts them (for `mizzen dev up`): no
    /// watchdog, each process in its own process group, nothing stopped on drop. Stop it with
    /// [`Cluster::stop_dir`] (or [`Cluster::stop`]). Default false.
    pub detach: bool,
    /// The binaries to run; `None` (the default) calls [`ClusterBinaries::locate`].
    pub binaries: Option<ClusterBinaries>,
    /// How long each readiness wait (etcd, apiserver, nodes, default ServiceAccount) may take.
    /// Default 120 s.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 3,
            dir: None,
            detach: false,
            binaries: None,
            timeout: Duration::from_secs(120),
        }
    }
}

/// A process of a running cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentPid {
    /// `etcd`, `kube-apiserver`, `kube-controller-manager`, `kube-scheduler` or `kwok`.
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

/// A running local control plane with KWOK fake nodes. See the [crate docs](crate).
pub struct Cluster {
    dir: PathBuf,
    detached: bool,
    binaries: ClusterBinaries,
    config: kube::Config,
    components: Vec<Component>,
    watchdog: Option<Watchdog>,
    node_names: Vec<String>,
    phases: Vec<(&'static str, Duration)>,
    /// How long each readiness wait may take ([`Options::timeout`]).
    timeout: Duration,
    stopped: bool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("detached", &self.detached)
            .field("pids", &self.pids())
            .finish_non_exhaustive()
    }
}

/// Loopback ports for the components.
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    kwok: u16,
}

/// A failed start attempt, and whether a retry with other ports may help.
struct StartFailure {
    error: Error,
    port_clash: bool,
}

impl From<Error> for StartFailure {
    fn from(error: Error) -> Self {
        Self {
            error,
            port_clash: false,
        }
    }
}

/// Why a readiness probe failed: the component to blame, and what was seen.
struct Blame {
    component: &'static str,
    reason: String,
}

impl Blame {
    fn new(component: &'static str, reason: impl std::fmt::Display) -> Self {
        Self {
            component,
            reason: reason.to_string(),
        }
    }
}

impl Cluster {
    /// Starts a cluster and waits until every node is Ready and untainted and the `default`
    /// ServiceAccount exists in namespace `default`.
    ///
    /// Must run inside a Tokio runtime. The returned cluster's processes do not depend on that
    /// runtime: [`Cluster::client`] builds a client for whichever runtime calls it. If a
    /// component fails, the error names it, quotes the end of its log and says where the
    /// state directory (with all logs) was kept.
    pub async fn start(options: Options) -> Result<Cluster> {
        let binaries = match &options.binaries {
            Some(binaries) => binaries.clone(),
            None => tokio::task::spawn_blocking(ClusterBinaries::locate)
                .await
                .map_err(|e| Error::Binaries(format!("locating the binaries failed: {e}")))??,
        };
        let mut attempt = 1;
        loop {
            let last = attempt == START_ATTEMPTS;
            match Self::start_once(&options, &binaries, last).await {
                Err(failure) if failure.port_clash && !last => {
                    tracing::warn!(attempt, error = %failure.error, "port clash; retrying the cluster start");
                    attempt += 1;
                }
                result => return result.map_err(|failure| failure.error),
            }
        }
    }

    async fn start_once(
        options: &Options,
        binaries: &ClusterBinaries,
        last_attempt: bool,
    ) -> Result<Cluster, StartFailure> {
        let (dir, temporary) = prepare_dir(options.dir.as_deref())?;
        let prepared = async {
            let (config, files, ports) = prepare_files(&dir).await?;
            let watchdog = if options.detach {
                None
            } else {
                let log = dir.join("logs").join("watchdog.log");
                Some(Watchdog::start(&dir, temporary, &log)?)
            };
            Ok::<_, Error>((config, files, ports, watchdog))
        }
        .await;
        let (config, files, ports, watchdog) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                // No process runs yet: just discard the directory.
                if temporary {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(error.into());
            }
        };
        let mut cluster = Cluster {
            dir,
            detached: options.detach,
            binaries: binaries.clone(),
            config,
            components: Vec::new(),
            watchdog,
            node_names: (1..=options.nodes).map(|i| format!("node-{i}")).collect(),
            phases: Vec::new(),
            timeout: options.timeout,
            stopped: false,
        };
        match cluster.launch(&ports, &files, options.timeout).await {
            Ok(()) => {
                tracing::info!(dir = %cluster.dir.display(), phases = ?cluster.phases, "cluster ready");
                Ok(cluster)
            }
            Err(error) => {
                let port_clash = cluster.logs_mention_port_clash();
                let keep = last_attempt || !port_clash;
                let _ = cluster.shutdown(keep);
                Err(StartFailure { error, port_clash })
            }
        }
    }

    /// Starts the components in order and waits for each stage of readiness.
    async fn launch(
        &mut self,
        ports: &Ports,
        files: &CertificateFiles,
        timeout: Duration,
    ) -> Result<()> {
        let t0 = Instant::now();
        let dir = self.dir.clone();
        let path = |p: &Path| p.display().to_string();
        let kubeconfig = path(&dir.join(KUBECONFIG));

        let etcd_client = format!("http://127.0.0.1:{}", ports.etcd_client);
        let etcd_peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
        self.spawn(
            "etcd",
            vec![
                format!("--data-dir={}", path(&dir.join("etcd"))),
                format!("--listen-client-urls={etcd_client}"),
                format!("--advertise-client-urls={etcd_client}"),
                format!("--listen-peer-urls={etcd_peer}"),
                format!("--initial-advertise-peer-urls={etcd_peer}"),
                format!("--initial-cluster=default={etcd_peer}"),
                "--unsafe-no-fsync=true".into(),
            ],
        )?;
        let etcd_port = ports.etcd_client;
        self.wait_until("etcd", timeout, async || etcd_healthy(etcd_port).await)
            .await?;
        self.phases.push(("etcd ready", t0.elapsed()));

        self.spawn(
            APISERVER,
            vec![
                format!("--etcd-servers={etcd_client}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={}", ports.apiserver),
                "--endpoint-reconciler-type=none".into(),
                "--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy".into(),
                "--allow-privileged=true".into(),
                "--authorization-mode=Node,RBAC".into(),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", path(&files.sa_pub)),
                format!("--service-account-signing-key-file={}", path(&files.sa_key)),
                format!("--client-ca-file={}", path(&files.ca_cert)),
                format!("--tls-cert-file={}", path(&files.serving_cert)),
                format!("--tls-private-key-file={}", path(&files.serving_key)),
                format!("--cert-dir={}", path(&dir.join("certs"))),
            ],
        )?;
        let client = kube::Client::try_from(self.config.clone())?;
        self.wait_until(APISERVER, timeout, async || apiserver_ready(&client).await)
            .await?;
        self.phases.push(("kube-apiserver ready", t0.elapsed()));

        self.spawn(
            "kube-controller-manager",
            vec![
                format!("--kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                format!("--service-account-private-key-file={}", path(&files.sa_key)),
                format!("--root-ca-file={}", path(&files.ca_cert)),
                "--use-service-account-credentials=false".into(),
                "--kube-api-qps=200".into(),
                "--kube-api-burst=400".into(),
                "--concurrent-daemonset-syncs=5".into(),
            ],
        )?;
        self.spawn(
            "kube-scheduler",
            vec![
                format!("--kubeconfig={kubeconfig}"),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ],
        )?;
        self.spawn(
            "kwok",
            vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--config={}", path(&dir.join(STAGES))),
                "--manage-all-nodes=true".into(),
                "--node-ip=127.0.0.1".into(),
                format!("--node-port={}", ports.kwok),
                format!("--server-address=127.0.0.1:{}", ports.kwok),
                "--node-lease-duration-seconds=40".into(),
                format!("--cidr={POD_CIDR}"),
            ],
        )?;

        create_nodes(&client, &self.node_names).await?;
        let names = self.node_names.clone();
        self.wait_until("kube-apiserver", timeout, async || {
            nodes_ready(&client, &names).await
        })
        .await?;
        self.phases.push(("nodes ready", t0.elapsed()));

        self.wait_until("kube-apiserver", timeout, async || {
            default_service_account(&client).await
        })
        .await?;
        self.phases.push(("default service account", t0.elapsed()));
        Ok(())
    }

    fn spawn(&mut self, name: &'static str, args: Vec<String>) -> Result<()> {
        let component = self.run_component(name, args)?;
        self.components.push(component);
        Ok(())
    }

    /// Starts component `name` with `args` (its log appended to, its pid recorded).
    fn run_component(&self, name: &'static str, args: Vec<String>) -> Result<Component> {
        Spawn {
            name,
            program: self.binaries.path(name),
            args,
            log: self.log_path(name),
            state_dir: &self.dir,
            own_process_group: self.detached,
        }
        .run()
    }

    /// The index of component `name` in `components`.
    fn component_index(&self, name: &str) -> Result<usize> {
        self.components
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| self.component_error(name, "is not a component of this cluster".into()))
    }

    /// Stops the kube-apiserver process, by its own pid: SIGTERM, then SIGKILL if it has not
    /// exited within `grace`; returns once it is gone, with how long that took. The other
    /// components keep running. Start it again with [`Cluster::start_apiserver`]; stopping a
    /// stopped apiserver does nothing. Blocking.
    ///
    /// On SIGTERM the apiserver stops listening within milliseconds (new connections are
    /// refused from then on) but keeps serving the watches its clients already have open until
    /// its process exits, about 20 s later; a `grace` shorter than that ends in SIGKILL, which
    /// drops those connections too.
    pub fn stop_apiserver(&mut self, grace: Duration) -> Result<Duration> {
        self.check_not_stopped()?;
        let i = self.component_index(APISERVER)?;
        let t0 = Instant::now();
        match self.components[i].stop(grace) {
            Some(status) => {
                tracing::info!(%status, took = ?t0.elapsed(), "kube-apiserver stopped");
                Ok(t0.elapsed())
            }
            None => Err(self.component_error(APISERVER, "did not exit after SIGKILL".into())),
        }
    }

    /// Starts kube-apiserver again after [`Cluster::stop_apiserver`], with exactly the
    /// arguments of the first start (same port, certificates and etcd, so every kubeconfig and
    /// client configuration keeps working), and waits until its `/readyz` answers (up to
    /// [`Options::timeout`]). Its output is appended to the same log. Must run inside a Tokio
    /// runtime. Fails if it is running, or (after a few attempts) if its port was taken in the
    /// meantime. Returns how long the start took.
    pub async fn start_apiserver(&mut self) -> Result<Duration> {
        self.check_not_stopped()?;
        let i = self.component_index(APISERVER)?;
        let running = self.components[i]
            .child
            .try_wait()
            .map_err(Error::io("checking on kube-apiserver"))?
            .is_none();
        if running {
            return Err(self.component_error(APISERVER, "is already running".into()));
        }
        let t0 = Instant::now();
        let client = kube::Client::try_from(self.config.clone())?;
        let mut attempt = 1;
        loop {
            let args = self.components[i].args.clone();
            let log_before = std::fs::metadata(&self.components[i].log).map_or(0, |m| m.len());
            self.components[i] = self.run_component(APISERVER, args)?;
            let ready = self
                .wait_until(APISERVER, self.timeout, async || {
                    apiserver_ready(&client).await
                })
                .await;
            match ready {
                Ok(()) => {
                    tracing::info!(took = ?t0.elapsed(), "kube-apiserver started again");
                    return Ok(t0.elapsed());
                }
                // Its port is a loopback port that was free when the cluster started: while
                // the apiserver was down, another process may have been given it as the local
                // port of a connection. Such a connection is short-lived, so try again.
                Err(error)
                    if attempt < START_ATTEMPTS
                        && matches!(self.components[i].child.try_wait(), Ok(Some(_)))
                        && mentions_port_clash_since(&self.components[i].log, log_before) =>
                {
                    tracing::warn!(attempt, %error, "kube-apiserver port taken; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn check_not_stopped(&self) -> Result<()> {
        if self.stopped {
            return Err(Error::StateDir {
                dir: self.dir.clone(),
                problem: "the cluster has been stopped".into(),
            });
        }
        Ok(())
    }

    /// Probes until `probe` succeeds, failing early if a component exits and after `timeout`.
    /// A probe that hangs is blamed on `server`, the component it talks to.
    async fn wait_until(
        &mut self,
        server: &'static str,
        timeout: Duration,
        mut probe: impl AsyncFnMut() -> Result<(), Blame>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(error) = self.exited_component() {
                return Err(error);
            }
            let blame = match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(blame)) => blame,
                Err(_) => Blame::new(server, format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            if Instant::now() >= deadline {
                return Err(self.component_error(
                    blame.component,
                    format!("not ready within {timeout:?}: {}", blame.reason),
                ));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The error for the first component that has exited, if any.
    fn exited_component(&mut self) -> Option<Error> {
        let exited = self.components.iter_mut().find_map(|c| {
            let status = c.child.try_wait().ok()??;
            Some((c.name, status))
        })?;
        Some(self.component_error(exited.0, format!("exited early ({})", exited.1)))
    }

    fn component_error(&self, component: &str, problem: String) -> Error {
        let log = self.log_path(component);
        Error::Component {
            component: component.to_owned(),
            problem,
            tail: log_tail(&log, LOG_TAIL_LINES),
            log,
            dir: self.dir.clone(),
        }
    }

    fn logs_mention_port_clash(&self) -> bool {
        self.components.iter().any(|c| mentions_port_clash(&c.log))
    }

    /// Stops the processes (if this handle still owns them) and reaps them; marks the state
    /// directory to be kept if `keep`.
    fn shutdown(&mut self, keep: bool) -> Result<()> {
        if std::mem::replace(&mut self.stopped, true) {
            return Ok(());
        }
        if keep {
            let _ = std::fs::write(self.dir.join(KEEP_MARKER), "");
        }
        let result = match self.watchdog.take() {
            Some(watchdog) => {
                if watchdog.trigger_and_wait() {
                    Ok(())
                } else {
                    Err(Error::StateDir {
                        dir: self.dir.clone(),
                        problem: "the watchdog did not stop the cluster in time".into(),
                    })
                }
            }
            None => run_stopper(&self.dir, !keep),
        };
        // Reap the children; kill any the stopper missed.
        for component in &mut self.components {
            if !matches!(component.child.try_wait(), Ok(Some(_))) {
                let _ = component.child.kill();
                let _ = component.child.wait();
            }
        }
        result
    }

    /// Stops the cluster now, attached or detached, and removes its state directory: always
    /// for a temporary or detached cluster; an attached cluster in a given directory keeps it.
    /// Blocks until the processes are gone (normally a few seconds).
    pub fn stop(mut self) -> Result<()> {
        self.shutdown(false)
    }

    /// Stops a (detached) cluster by the pids recorded in its state directory, checking that
    /// each pid is still one of its processes, and removes the directory. A missing directory is
    /// not an error; a directory that is not a cluster state directory is refused. Blocking.
    pub fn stop_dir(dir: &Path) -> Result<()> {
        if !dir.exists() {
            return Ok(());
        }
        let dir = canonical(dir)?;
        if !dir.join(MARKER).exists() {
            return Err(Error::StateDir {
                dir,
                problem: "not a mizzen-testcluster state directory; refusing to remove it".into(),
            });
        }
        run_stopper(&dir, true)
    }

    /// The recorded processes of the cluster in `dir` that are still running.
    pub fn running_pids(dir: &Path) -> Vec<ComponentPid> {
        let Ok(dir) = dir.canonicalize() else {
            return Vec::new();
        };
        recorded_pids(&dir)
            .into_iter()
            .filter(|(_, pid)| is_ours(*pid, &dir))
            .map(|(name, pid)| ComponentPid { name, pid })
            .collect()
    }

    /// Where the admin kubeconfig of the cluster in state directory `dir` is.
    pub fn kubeconfig_in(dir: &Path) -> PathBuf {
        dir.join(KUBECONFIG)
    }

    /// The state directory (absolute, canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (`https://127.0.0.1:<port>`, user `admin` in `system:masters`,
    /// credentials inline).
    pub fn kubeconfig_path(&self) -> PathBuf {
        Self::kubeconfig_in(&self.dir)
    }

    /// The client configuration for the admin user.
    pub fn kube_config(&self) -> kube::Config {
        self.config.clone()
    }

    /// A new client for the admin user, bound to the calling Tokio runtime (call it once per
    /// test: each `#[tokio::test]` has its own runtime).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or if the TLS setup fails (it worked when the cluster started).
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config.clone()).expect("client for the test cluster")
    }

    /// A `kubectl` command (the one built with the cluster) with `KUBECONFIG` set to this
    /// cluster's kubeconfig and proxy variables removed. Add arguments and run it.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(self.binaries.path("kubectl"));
        process::clean_environment(&mut cmd);
        cmd.env("KUBECONFIG", self.kubeconfig_path());
        cmd
    }

    /// The directory holding the binaries.
    pub fn bin_dir(&self) -> &Path {
        self.binaries.dir()
    }

    /// The component processes, in start order.
    pub fn pids(&self) -> Vec<ComponentPid> {
        self.components
            .iter()
            .map(|c| ComponentPid {
                name: c.name.to_owned(),
                pid: c.child.id(),
            })
            .collect()
    }

    /// The watchdog's pid (attached clusters only).
    pub fn watchdog_pid(&self) -> Option<u32> {
        self.watchdog.as_ref().map(Watchdog::pid)
    }

    /// The log file of a component (`<dir>/logs/<component>.log`).
    pub fn log_path(&self, component: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{component}.log"))
    }

    /// The fake nodes' names: `node-1` .. `node-N`.
    pub fn node_names(&self) -> &[String] {
        &self.node_names
    }

    /// How long the start took, from launching etcd until the cluster was ready.
    pub fn startup_time(&self) -> Duration {
        self.phases.last().map(|p| p.1).unwrap_or_default()
    }

    /// When each stage of the start was reached, measured from launching etcd: `etcd ready`,
    /// `kube-apiserver ready`, `nodes ready`, `default service account`.
    pub fn startup_phases(&self) -> &[(&'static str, Duration)] {
        &self.phases
    }

    /// Whether the cluster was started detached.
    pub fn is_detached(&self) -> bool {
        self.detached
    }
}

impl Drop for Cluster {
    /// Stops an attached cluster (blocking, normally a few seconds) and removes its temporary
    /// state directory. A detached cluster keeps running.
    fn drop(&mut self) {
        if !self.detached
            && let Err(error) = self.shutdown(false)
        {
            tracing::warn!(%error, "stopping the test cluster");
        }
    }
}

/// Whether a component log says that a port was taken (then another start attempt may work).
fn mentions_port_clash(log: &Path) -> bool {
    mentions_port_clash_since(log, 0)
}

/// Whether the part of a component log after its first `offset` bytes says that a port was
/// taken.
fn mentions_port_clash_since(log: &Path, offset: u64) -> bool {
    std::fs::read(log).is_ok_and(|bytes| {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..]).contains("address already in use")
    })
}

fn canonical(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize()
        .map_err(Error::io(format!("resolving {}", dir.display())))
}

/// Creates the state directory (a new temporary one, or the given one after checks) with its
/// layout: the marker, `certs/` and `logs/` (etcd creates its own data directory, mode 0700).
/// Returns the canonical path and whether it is temporary.
fn prepare_dir(dir: Option<&Path>) -> Result<(PathBuf, bool)> {
    let (dir, temporary) = match dir {
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("mizzen-cluster-")
                .tempdir()
                .map_err(Error::io("creating a temporary state directory"))?;
            (canonical(&tmp.keep())?, true)
        }
        Some(dir) => {
            if dir.exists() {
                let dir = canonical(dir)?;
                let running = Cluster::running_pids(&dir);
                if !running.is_empty() {
                    return Err(Error::StateDir {
                        dir,
                        problem: format!(
                            "a cluster is already running here ({running:?}); stop it first"
                        ),
                    });
                }
                let empty = std::fs::read_dir(&dir)
                    .map_err(Error::io(format!("reading {}", dir.display())))?
                    .next()
                    .is_none();
                if !empty && !dir.join(MARKER).exists() {
                    return Err(Error::StateDir {
                        dir,
                        problem: "not empty and not a mizzen-testcluster state directory; \
                                  refusing to reuse it"
                            .into(),
                    });
                }
                std::fs::remove_dir_all(&dir)
                    .map_err(Error::io(format!("wiping {}", dir.display())))?;
            }
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
            (canonical(dir)?, false)
        }
    };
    for sub in ["certs", "logs"] {
        let path = dir.join(sub);
        std::fs::create_dir(&path).map_err(Error::io(format!("creating {}", path.display())))?;
    }
    std::fs::write(dir.join(MARKER), "")
        .map_err(Error::io(format!("writing {}", dir.join(MARKER).display())))?;
    Ok((dir, temporary))
}

/// Writes certificates, kubeconfig and KWOK stages into `dir` and picks the ports.
async fn prepare_files(dir: &Path) -> Result<(kube::Config, CertificateFiles, Ports)> {
    let certs = Certificates::generate()?;
    let files = certs.write(&dir.join("certs"))?;
    let [etcd_client, etcd_peer, apiserver, kwok] = free_ports()?;
    let ports = Ports {
        etcd_client,
        etcd_peer,
        apiserver,
        kwok,
    };
    let text = kubeconfig::render(
        ports.apiserver,
        &certs.ca_cert,
        &certs.admin_cert,
        &certs.admin_key,
    );
    let path = dir.join(KUBECONFIG);
    std::fs::write(&path, &text).map_err(Error::io(format!("writing {}", path.display())))?;
    let path = dir.join(STAGES);
    std::fs::write(&path, stages::KWOK_STAGES)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    let parsed = Kubeconfig::from_yaml(&text).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Ok((config, files, ports))
}

/// `N` distinct free loopback ports (bound together, then released; a clash with another
/// process in between makes a component fail, and the start is retried).
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(Error::io("binding a free loopback port"))?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(Error::io("reading a bound port"))?
            .port();
    }
    Ok(ports)
}

/// etcd's `/health` over plain HTTP on loopback.
async fn etcd_healthy(port: u16) -> Result<(), Blame> {
    let blame = |e: std::io::Error| Blame::new("etcd", e);
    let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(blame)?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .map_err(blame)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.map_err(blame)?;
    let response = String::from_utf8_lossy(&response);
    if response.contains(r#""health":"true""#) {
        Ok(())
    } else {
        Err(Blame::new("etcd", format!("/health answered {response:?}")))
    }
}

/// The apiserver's `/readyz`.
async fn apiserver_ready(client: &kube::Client) -> Result<(), Blame> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .expect("a valid request");
    match client.request_text(request).await {
        Ok(_) => Ok(()),
        Err(e) => Err(Blame::new("kube-apiserver", format!("/readyz: {e}"))),
    }
}

/// The fake node objects: no taints; the labels and annotation KWOK's docs use for fake nodes.
fn fake_node(name: &str) -> Node {
    let labels = BTreeMap::from(
        [
            ("type", "kwok"),
            ("kubernetes.io/hostname", name),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", "amd64"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "kwok.x-k8s.io/node".to_owned(),
                "fake".to_owned(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!("kwok://{name}")),
            ..Default::default()
        }),
        status: None,
    }
}

async fn create_nodes(client: &kube::Client, names: &[String]) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for name in names {
        match nodes.create(&PostParams::default(), &fake_node(name)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Every node is Ready (KWOK's job) and has no taints (the node-lifecycle controller removes the
/// `not-ready` taint added at creation).
async fn nodes_ready(client: &kube::Client, names: &[String]) -> Result<(), Blame> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .map_err(|e| Blame::new("kube-apiserver", format!("listing nodes: {e}")))?;
    for name in names {
        let node = list
            .items
            .iter()
            .find(|n| n.metadata.name.as_ref() == Some(name))
            .ok_or_else(|| Blame::new("kube-apiserver", format!("node {name} is missing")))?;
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            return Err(Blame::new("kwok", format!("node {name} is not Ready")));
        }
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .filter(|t| !t.is_empty());
        if let Some(taints) = taints {
            let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
            return Err(Blame::new(
                "kube-controller-manager",
                format!("node {name} still has taints {keys:?}"),
            ));
        }
    }
    Ok(())
}

async fn default_service_account(client: &kube::Client) -> Result<(), Blame> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    match accounts.get_opt("default").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Blame::new(
            "kube-controller-manager",
            "ServiceAccount default/default does not exist yet",
        )),
        Err(e) => Err(Blame::new("kube-apiserver", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_loopback_ports() {
        let ports: [u16; 4] = free_ports().unwrap();
        for (i, a) in ports.iter().enumerate() {
            assert_ne!(*a, 0);
            assert!(!ports[i + 1..].contains(a));
        }
    }

    #[test]
    fn fixed_dir_is_created_wiped_and_guarded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        let (made, temporary) = prepare_dir(Some(&dir)).unwrap();
        assert!(!temporary);
        assert!(made.join(MARKER).exists() && made.join("logs").is_dir());
        std::fs::write(made.join("logs/old.log"), "old").unwrap();
        // A stopped cluster's directory is wiped and reused.
        prepare_dir(Some(&dir)).unwrap();
        assert!(!made.join("logs/old.log").exists());
        // A foreign, non-empty directory is refused.
        let foreign = tmp.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("precious"), "").unwrap();
        let err = prepare_dir(Some(&foreign)).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        assert!(foreign.join("precious").exists());
        let err = Cluster::stop_dir(&foreign).unwrap_err().to_string();
        assert!(err.contains("refusing"), "{err}");
        assert!(foreign.join("precious").exists());
        // stop_dir removes a stopped cluster's directory; a missing one is fine.
        Cluster::stop_dir(&dir).unwrap();
        assert!(!dir.exists());
        Cluster::stop_dir(&dir).unwrap();
    }

    #[test]
    fn temporary_dir_has_layout() {
        let (dir, temporary) = prepare_dir(None).unwrap();
        assert!(temporary);
        assert!(dir.join("certs").is_dir());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn port_clash_is_recognised_in_logs() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("etcd.log");
        std::fs::write(
            &log,
            "{\"level\":\"fatal\",\"msg\":\"listen tcp 127.0.0.1:2379: bind: address already in use\"}\n",
        )
        .unwrap();
        assert!(mentions_port_clash(&log));
        let clash_len = std::fs::metadata(&log).unwrap().len();
        assert!(
            !mentions_port_clash_since(&log, clash_len),
            "only what came after"
        );
        std::fs::write(&log, "E0101 error: something else\n").unwrap();
        assert!(!mentions_port_clash(&log));
        assert!(!mentions_port_clash(&tmp.path().join("missing.log")));
    }

    #[test]
    fn fake_nodes_have_no_taints() {
        let node = fake_node("node-7");
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "node-7");
        assert_eq!(labels["type"], "kwok");
        assert!(node.spec.unwrap().taints.is_none());
    }
}
