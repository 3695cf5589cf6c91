//! The scale benchmark (issue 13): what the operator costs the API server and itself while a
//! cluster grows, sits idle, and upgrades its control plane.
//!
//! ```sh
//! cargo bench -p mizzen --bench scale -- [--steps 3:300,30:1500,100:3000] [--idle-secs 60] ...
//! ```
//!
//! It starts its own local control plane (`mizzen-testcluster`, KWOK fake nodes), installs the
//! CRDs, starts `mizzen run` (this build's release binary), installs the ambient mesh of the
//! seed procedures, then grows the cluster step by step: fake nodes, bare pods spread over
//! namespaces (half ambient, some with `istio.io/rev`), one ConfigMap and one Secret per
//! namespace. After each step, and for a settle period, an idle window and a series of
//! InPlace upgrades, it prints the operator's memory (`/proc/<pid>/status`), CPU
//! (`/proc/<pid>/stat`), the API requests it sent (deltas of its own counter
//! `mizzen_kube_requests_total`) and its reconciles (`mizzen_reconcile_total`). Upgrades are timed
//! from the return of the Istio patch to a watch event showing the istiod Deployment at the new
//! version. Every figure is measured; every wait is bounded; the operator and the cluster are
//! stopped at the end and on failure. `docs/benchmark.md` explains the output.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use comfy_table::{CellAlignment, Table, presets};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Namespace, Node, NodeSpec, Pod, PodSpec, Secret,
};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use mizzen_testcluster::{Cluster, Options};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use common::{Metrics, Operator, ProcessStats, progress};

/// The version the mesh is installed at; upgrades alternate between it and [`OTHER_VERSION`].
const BASE_VERSION: &str = "v1.26.3";
/// The other version of the alternating InPlace upgrades.
const OTHER_VERSION: &str = "v1.26.4";
/// Label on every object the benchmark creates (namespaces, pods, ConfigMaps, Secrets).
const BENCH_LABEL: &str = "mizzen-bench";
/// Size of the ConfigMap's and of the Secret's payload in each namespace.
const PAYLOAD_BYTES: usize = 4096;
/// Every how many pods one carries the label `istio.io/rev=default`.
const REV_POD_EVERY: usize = 50;
/// Every how many namespaces one carries the label `istio.io/rev=default` (at index 5 mod 10,
/// an odd index, so never an ambient one).
const REV_NAMESPACE_EVERY: usize = 10;
/// How long the request counter must stay unchanged for the operator to count as settled.
const QUIET: Duration = Duration::from_secs(5);
/// The longest settle after the mesh install and after each step.
const STEP_SETTLE_MAX: Duration = Duration::from_secs(30);
/// The longest settle before the idle window.
const FINAL_SETTLE_MAX: Duration = Duration::from_secs(60);
/// How often the settle loop scrapes the operator.
const SCRAPE_INTERVAL: Duration = Duration::from_millis(500);
/// How long one API write is retried (a namespace's `default` ServiceAccount may not exist yet
/// when its first pod is created; the admission plugin then refuses the pod).
const CREATE_RETRY_FOR: Duration = Duration::from_secs(60);

/// Command-line flags (after `cargo bench -p mizzen --bench scale --`).
#[derive(Debug, Parser)]
#[command(about = "mizzen's scale benchmark: memory, CPU and API requests as a cluster grows")]
struct Args {
    /// Growth steps as NODES:PODS, cumulative and non-decreasing (benchmark pods, not counting
    /// the mesh's own pods).
    #[arg(long, default_value = "3:300,30:1500,100:3000")]
    steps: Steps,
    /// Benchmark pods per namespace.
    #[arg(long, default_value_t = 10)]
    pods_per_namespace: usize,
    /// Length of the idle window after the last step, in seconds.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Number of InPlace upgrades of the Istio (alternating v1.26.3 and v1.26.4).
    #[arg(long, default_value_t = 5)]
    upgrades: usize,
    /// Run the operator with `--leader-elect` (Lease in namespace mizzen-system).
    #[arg(long)]
    leader_elect: bool,
    /// Concurrent API requests while the benchmark creates objects.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Passed by `cargo bench` to every bench target; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One growth step: the cluster has `nodes` fake nodes and `pods` benchmark pods after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Step {
    nodes: usize,
    pods: usize,
}

/// The steps of `--steps`.
#[derive(Clone, Debug)]
struct Steps(Vec<Step>);

impl std::str::FromStr for Steps {
    type Err = String;

    /// Parses `3:300,30:1500`: at least one step, nodes ≥ 1, neither count decreasing.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut steps: Vec<Step> = Vec::new();
        for part in s.split(',') {
            let (nodes, pods) = part
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{part:?} is not NODES:PODS"))?;
            let step = Step {
                nodes: nodes.parse().map_err(|e| format!("nodes {nodes:?}: {e}"))?,
                pods: pods.parse().map_err(|e| format!("pods {pods:?}: {e}"))?,
            };
            if step.nodes == 0 {
                return Err("a step needs at least one node".into());
            }
            if let Some(last) = steps.last()
                && (step.nodes < last.nodes || step.pods < last.pods)
            {
                return Err(format!(
                    "{part:?} shrinks the cluster; steps are cumulative"
                ));
            }
            steps.push(step);
        }
        Ok(Self(steps))
    }
}

fn main() -> ExitCode {
    common::bench_main("scale", run(Args::parse()))
}

/// Starts the cluster and the operator, runs the benchmark, and stops both whatever happened.
async fn run(args: Args) -> Result<()> {
    let first = args.steps.0[0];
    let cluster = Cluster::start(Options {
        nodes: first.nodes,
        ..Options::default()
    })
    .await
    .context("starting the local control plane")?;
    progress(format!(
        "control plane ready in {:.1}s with {} nodes",
        cluster.startup_time().as_secs_f64(),
        first.nodes
    ));
    let dir = tempfile::tempdir().context("a directory for the operator's log")?;
    let outcome = start_and_measure(&cluster, dir.path(), &args).await;
    match &outcome {
        Ok(()) => drop(dir),
        Err(_) => {
            let kept = dir.keep();
            eprintln!("the operator's log is kept in {}", kept.display());
        }
    }
    progress("stopping the control plane");
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .context("stopping the control plane")?
        .context("stopping the control plane")?;
    outcome
}

/// Starts the operator, runs every phase, prints the report, and stops the operator (SIGTERM,
/// then SIGKILL on drop) whatever happened.
async fn start_and_measure(cluster: &Cluster, dir: &std::path::Path, args: &Args) -> Result<()> {
    let client = cluster.client();
    common::install_crds(cluster);
    let mut op_args = Vec::new();
    if args.leader_elect {
        create_namespace(&client, "mizzen-system").await?;
        op_args.extend([
            "--leader-elect",
            "--leader-election-namespace=mizzen-system",
        ]);
    }
    let started = Instant::now();
    let mut op = Operator::start("mizzen", &cluster.kubeconfig_path(), dir, &op_args);
    progress(format!("operator started (pid {})", op.child.id()));
    let result = Bench::new(cluster, client, &op, started, args).run().await;
    if result.is_err() {
        eprintln!(
            "--- the operator's log, last lines ---\n{}",
            op.log_tail(40)
        );
    }
    if op.child_alive() {
        op.signal("TERM");
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while op.child_alive() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Measurements
// ---------------------------------------------------------------------------------------------

/// A request class of `mizzen_kube_requests_total`: the verb and `group/resource/subresource`
/// (the core group and empty parts left out).
type RequestKey = (String, String);

/// The operator's counters and process figures at one moment.
#[derive(Clone, Debug)]
struct Snapshot {
    at: Instant,
    /// Requests by verb and resource, summed over answer codes.
    requests: BTreeMap<RequestKey, f64>,
    /// Requests whose answer was not 2xx, by code (`error`: none came).
    failed: BTreeMap<String, f64>,
    /// Finished reconciles by controller (`mizzen_reconcile_total`, summed over results).
    reconciles: BTreeMap<String, f64>,
    /// Failed reconciles by controller (`result="error"`).
    reconcile_errors: BTreeMap<String, f64>,
    process: ProcessStats,
}

/// `group/resource/subresource` of a request sample, the empty parts left out.
fn resource_of(labels: &BTreeMap<String, String>) -> String {
    let part = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
    let name = [part("group"), part("resource"), part("subresource")]
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    match (part("group"), part("resource")) {
        ("", "") => "(discovery or non-resource)".into(),
        (group, "") => format!("{group} (discovery)"),
        _ => name,
    }
}

/// Whether a verb only reads.
fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

/// Whether a verb writes.
fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "delete" | "deletecollection"
    )
}

impl Snapshot {
    /// Builds a snapshot from a scrape and `/proc` of `pid`.
    fn new(metrics: &Metrics, pid: u32) -> Result<Self> {
        let mut requests = BTreeMap::new();
        let mut failed = BTreeMap::new();
        for s in metrics.select("mizzen_kube_requests_total", &[]) {
            let verb = s.labels.get("verb").cloned().unwrap_or_default();
            *requests.entry((verb, resource_of(&s.labels))).or_default() += s.value;
            let code = s.labels.get("code").cloned().unwrap_or_default();
            if !code.starts_with('2') {
                *failed.entry(code).or_default() += s.value;
            }
        }
        let mut reconciles = BTreeMap::new();
        let mut reconcile_errors = BTreeMap::new();
        for s in metrics.select("mizzen_reconcile_total", &[]) {
            let controller = s.labels.get("controller").cloned().unwrap_or_default();
            *reconciles.entry(controller.clone()).or_default() += s.value;
            if s.labels.get("result").map(String::as_str) == Some("error") {
                *reconcile_errors.entry(controller).or_default() += s.value;
            }
        }
        Ok(Self {
            at: Instant::now(),
            requests,
            failed,
            reconciles,
            reconcile_errors,
            process: ProcessStats::read(pid)?,
        })
    }

    /// The state of a process that has not started yet: zero counters, zero CPU.
    fn origin(at: Instant) -> Self {
        Self {
            at,
            requests: BTreeMap::new(),
            failed: BTreeMap::new(),
            reconciles: BTreeMap::new(),
            reconcile_errors: BTreeMap::new(),
            process: ProcessStats {
                rss_kib: 0,
                hwm_kib: 0,
                cpu_secs: 0.0,
            },
        }
    }

    /// Requests sent, leases left out (a leader renews its Lease every 5 s, which is not
    /// activity): what the settle loop watches.
    fn activity(&self) -> f64 {
        self.requests
            .iter()
            .filter(|((_, resource), _)| !resource.ends_with("leases"))
            .map(|(_, v)| v)
            .sum::<f64>()
            + self.reconciles.values().sum::<f64>()
    }
}

/// What changed between two snapshots: one phase of the benchmark.
#[derive(Clone, Debug)]
struct Phase {
    name: String,
    wall: Duration,
    requests: BTreeMap<RequestKey, f64>,
    /// Requests not answered 2xx, by code.
    failed: BTreeMap<String, f64>,
    reconciles: BTreeMap<String, f64>,
    reconcile_errors: BTreeMap<String, f64>,
    cpu_secs: f64,
    /// The process figures at the phase's end.
    end: ProcessStats,
}

/// `after - before` for every key of either map, zeros left out.
fn delta<K: Ord + Clone>(after: &BTreeMap<K, f64>, before: &BTreeMap<K, f64>) -> BTreeMap<K, f64> {
    let keys: BTreeSet<&K> = after.keys().chain(before.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let d = after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
            (d != 0.0).then(|| (k.clone(), d))
        })
        .collect()
}

impl Phase {
    fn between(name: impl Into<String>, before: &Snapshot, after: &Snapshot) -> Self {
        Self {
            name: name.into(),
            wall: after.at - before.at,
            requests: delta(&after.requests, &before.requests),
            failed: delta(&after.failed, &before.failed),
            reconciles: delta(&after.reconciles, &before.reconciles),
            reconcile_errors: delta(&after.reconcile_errors, &before.reconcile_errors),
            cpu_secs: after.process.cpu_secs - before.process.cpu_secs,
            end: after.process,
        }
    }

    /// Requests whose verb satisfies `class`.
    fn count(&self, class: fn(&str) -> bool) -> f64 {
        self.requests
            .iter()
            .filter(|((verb, _), _)| class(verb))
            .map(|(_, v)| v)
            .sum()
    }

    fn total_requests(&self) -> f64 {
        self.requests.values().sum()
    }

    fn total_reconciles(&self) -> f64 {
        self.reconciles.values().sum()
    }

    /// A one-line summary for the progress output.
    fn summary(&self) -> String {
        format!(
            "{}: {:.1}s, RSS {} (peak {}), CPU {:.2}s, {} requests ({} reads, {} writes), {} reconciles",
            self.name,
            self.wall.as_secs_f64(),
            mib(self.end.rss_kib),
            mib(self.end.hwm_kib),
            self.cpu_secs,
            n(self.total_requests()),
            n(self.count(is_read)),
            n(self.count(is_write)),
            n(self.total_reconciles())
        )
    }
}

/// KiB as MiB with one decimal.
fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// How a settle ended.
#[derive(Clone, Copy, Debug)]
struct Settled {
    /// Whether the counters stood still for [`QUIET`] (else the bound was reached).
    quiet: bool,
    /// How long it took.
    took: Duration,
}

impl std::fmt::Display for Settled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.took.as_secs_f64();
        if self.quiet {
            write!(f, "quiet after {s:.1}s")
        } else {
            write!(f, "not quiet in {s:.0}s")
        }
    }
}

/// What one growth step did and how long each part took.
#[derive(Clone, Debug)]
struct StepReport {
    step: Step,
    namespaces: usize,
    /// All pods in the cluster at the step's end (benchmark pods, istiod, ztunnel, istio-cni).
    pods_in_cluster: usize,
    /// Time to create the nodes and wait until they are Ready.
    nodes_took: Duration,
    /// Time to create the namespaces, ConfigMaps, Secrets and pods.
    create_took: Duration,
    /// Time from the end of creation until every benchmark pod runs and the DaemonSets cover
    /// every node.
    running_took: Duration,
    settled: Settled,
    phase: Phase,
}

/// One timed upgrade.
#[derive(Clone, Debug)]
struct Upgrade {
    from: &'static str,
    to: &'static str,
    /// Milliseconds from the patch's return to the watch event of istiod at `to` (negative if
    /// the event arrived first).
    reaction_ms: f64,
    /// The istiod image the event carried.
    image: String,
    /// From the patch's return until the Istio is Ready again.
    ready_after: Duration,
}

// ---------------------------------------------------------------------------------------------
// The benchmark
// ---------------------------------------------------------------------------------------------

/// The running benchmark: clients, the operator, and the cluster's size so far.
struct Bench<'a> {
    cluster: &'a Cluster,
    client: kube::Client,
    op: &'a Operator,
    /// When the operator process was started.
    started: Instant,
    args: &'a Args,
    nodes: usize,
    namespaces: usize,
    pods: usize,
}

impl<'a> Bench<'a> {
    fn new(
        cluster: &'a Cluster,
        client: kube::Client,
        op: &'a Operator,
        started: Instant,
        args: &'a Args,
    ) -> Self {
        Self {
            cluster,
            client,
            op,
            started,
            args,
            nodes: cluster.node_names().len(),
            namespaces: 0,
            pods: 0,
        }
    }

    /// Every phase in order, then the report.
    async fn run(mut self) -> Result<()> {
        let zero = self.snapshot_when_ready().await?;
        let mut phases = vec![Phase::between(
            "startup",
            &Snapshot::origin(self.started),
            &zero,
        )];

        let before = zero;
        let t = Instant::now();
        self.install_mesh().await?;
        progress(format!(
            "mesh installed and Ready in {:.1}s",
            t.elapsed().as_secs_f64()
        ));
        let settled = self.settle(STEP_SETTLE_MAX).await?;
        let mut last = self.snapshot().await?;
        let install = Phase::between("install", &before, &last);
        progress(format!("{} ({settled})", install.summary()));
        phases.push(install);

        let mut steps = Vec::new();
        for (i, step) in self.args.steps.0.clone().into_iter().enumerate() {
            let (report, end) = self.grow(i + 1, step, &last).await?;
            progress(format!(
                "{}: nodes {:.1}s, create {:.1}s, running {:.1}s, {}",
                report.phase.summary(),
                report.nodes_took.as_secs_f64(),
                report.create_took.as_secs_f64(),
                report.running_took.as_secs_f64(),
                report.settled
            ));
            last = end;
            phases.push(report.phase.clone());
            steps.push(report);
        }

        let settled = self.settle(FINAL_SETTLE_MAX).await?;
        let after_settle = self.snapshot().await?;
        let settle = Phase::between("settle", &last, &after_settle);
        progress(format!("{} ({settled})", settle.summary()));
        phases.push(settle);

        progress(format!("idle window of {}s", self.args.idle_secs));
        tokio::time::sleep(Duration::from_secs(self.args.idle_secs)).await;
        let after_idle = self.snapshot().await?;
        let idle = Phase::between("idle", &after_settle, &after_idle);
        progress(idle.summary());
        phases.push(idle.clone());

        let (upgrades, upgrade_phase) = self.upgrades(&after_idle).await?;
        if let Some(p) = &upgrade_phase {
            progress(p.summary());
            phases.push(p.clone());
        }

        print_report(&Report {
            args: self.args,
            steps: &steps,
            phases: &phases,
            idle: &idle,
            settled,
            upgrades: &upgrades,
            upgrade_phase: upgrade_phase.as_ref(),
        });
        Ok(())
    }

    /// The operator's pid.
    fn pid(&self) -> u32 {
        self.op.child.id()
    }

    /// A snapshot now; the scrape is retried for up to 10 s.
    async fn snapshot(&self) -> Result<Snapshot> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self.op.scrape() {
                return Snapshot::new(&m, self.pid());
            }
            if Instant::now() > deadline {
                bail!("the operator's /metrics did not answer for 10s");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (up to 60 s) until `/readyz` answers 200 (and, with `--leader-elect`, the operator
    /// leads), then takes the first snapshot.
    async fn snapshot_when_ready(&self) -> Result<Snapshot> {
        let leader_elect = self.args.leader_elect;
        wait_for(
            "the operator's /readyz",
            Duration::from_secs(60),
            async || {
                let ready = matches!(self.op.readyz(), Some((200, _)));
                Ok((ready && (!leader_elect || self.op.leads())).then_some(()))
            },
        )
        .await?;
        progress("operator ready");
        self.snapshot().await
    }

    /// Waits until the operator has sent no request (leases aside) and finished no reconcile
    /// for [`QUIET`], or `max` has passed.
    async fn settle(&self, max: Duration) -> Result<Settled> {
        let start = Instant::now();
        let mut seen = self.snapshot().await?.activity();
        let mut since = Instant::now();
        loop {
            tokio::time::sleep(SCRAPE_INTERVAL).await;
            let now = self.snapshot().await?.activity();
            if now != seen {
                seen = now;
                since = Instant::now();
            }
            if since.elapsed() >= QUIET {
                return Ok(Settled {
                    quiet: true,
                    took: start.elapsed(),
                });
            }
            if start.elapsed() >= max {
                return Ok(Settled {
                    quiet: false,
                    took: start.elapsed(),
                });
            }
        }
    }

    /// Applies the ambient mesh of `deploy/examples/ambient.yaml` (what
    /// `scripts/seed/install-ambient.sh` applies) and waits until the Istio, IstioCNI and
    /// ZTunnel are Ready for their current generation.
    async fn install_mesh(&self) -> Result<()> {
        for ns in ["istio-system", "istio-cni", "ztunnel"] {
            create_namespace(&self.client, ns).await?;
        }
        let manifest = std::fs::read_to_string(common::root().join("deploy/examples/ambient.yaml"))
            .context("reading deploy/examples/ambient.yaml")?;
        anyhow::ensure!(
            manifest.contains(BASE_VERSION),
            "deploy/examples/ambient.yaml is not at {BASE_VERSION}"
        );
        common::kubectl_stdin(
            self.cluster,
            &["apply", "-f", "-"],
            Some(manifest.as_bytes()),
        );
        for kind in [Kind::Istio, Kind::IstioCni, Kind::ZTunnel] {
            self.wait_ready(kind, Duration::from_secs(300)).await?;
        }
        Ok(())
    }

    /// Waits until the `default` resource of `kind` is Ready for its current generation.
    async fn wait_ready(&self, kind: Kind, timeout: Duration) -> Result<()> {
        let api = kind.api(&self.client);
        wait_for(
            &format!("{} default to be Ready", kind.name()),
            timeout,
            async || Ok(api.get_opt("default").await?.filter(is_ready).map(|_| ())),
        )
        .await
    }

    /// Grows the cluster to `step`, waits until it runs, lets the operator settle, and
    /// measures the whole as one phase; also returns the snapshot that ends it (where the next
    /// phase starts).
    async fn grow(
        &mut self,
        index: usize,
        step: Step,
        before: &Snapshot,
    ) -> Result<(StepReport, Snapshot)> {
        progress(format!(
            "step {index}: growing to {} nodes and {} pods",
            step.nodes, step.pods
        ));
        let t = Instant::now();
        self.add_nodes(step.nodes).await?;
        let nodes_took = t.elapsed();

        let t = Instant::now();
        self.add_workloads(step.pods).await?;
        let create_took = t.elapsed();

        let t = Instant::now();
        let timeout = Duration::from_secs(120) + Duration::from_millis(200) * step.pods as u32;
        self.wait_pods_running(step.pods, timeout).await?;
        self.wait_daemonsets(step.nodes, Duration::from_secs(300))
            .await?;
        for kind in [Kind::Istio, Kind::IstioCni, Kind::ZTunnel] {
            self.wait_ready(kind, Duration::from_secs(120)).await?;
        }
        let running_took = t.elapsed();

        let settled = self.settle(STEP_SETTLE_MAX).await?;
        let after = self.snapshot().await?;
        let pods_in_cluster = Api::<Pod>::all(self.client.clone())
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        let report = StepReport {
            step,
            namespaces: self.namespaces,
            pods_in_cluster,
            nodes_took,
            create_took,
            running_took,
            settled,
            phase: Phase::between(format!("step {index}"), before, &after),
        };
        Ok((report, after))
    }

    /// Creates fake nodes `node-<N+1>` .. `node-<target>` (as `mizzen-testcluster` creates its
    /// own) and waits until every one is Ready and untainted.
    async fn add_nodes(&mut self, target: usize) -> Result<()> {
        if target <= self.nodes {
            return Ok(());
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let creates = (self.nodes + 1..=target)
            .map(|i| create(api.clone(), fake_node(&format!("node-{i}"))))
            .collect();
        run_bounded(creates, self.args.concurrency).await?;
        self.nodes = target;
        let timeout = Duration::from_secs(120) + Duration::from_secs(target as u64);
        wait_for(
            &format!("{target} nodes to be Ready"),
            timeout,
            async || {
                let nodes = api.list(&ListParams::default().labels("type=kwok")).await?;
                let ready = nodes.items.iter().filter(|n| node_ready(n)).count();
                Ok((ready >= target).then_some(()))
            },
        )
        .await
    }

    /// Creates the namespaces (each with its ConfigMap and Secret) and the pods up to `target`
    /// benchmark pods, spread round-robin over every node.
    async fn add_workloads(&mut self, target: usize) -> Result<()> {
        let per_ns = self.args.pods_per_namespace.max(1);
        let wanted_ns = target.div_ceil(per_ns);
        let c = self.args.concurrency;

        let ns_api: Api<Namespace> = Api::all(self.client.clone());
        let namespaces = (self.namespaces..wanted_ns)
            .map(|i| create(ns_api.clone(), bench_namespace(i)))
            .collect();
        run_bounded(namespaces, c).await?;

        let mut creates: Vec<BoxFuture<'static, Result<()>>> = Vec::new();
        for i in self.namespaces..wanted_ns {
            let ns = namespace_name(i);
            let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), &ns);
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
            creates.push(create(cms, bench_config_map(i)));
            creates.push(create(secrets, bench_secret(i)));
        }
        for j in self.pods..target {
            let ns = namespace_name(j / per_ns);
            let node = format!("node-{}", j % self.nodes + 1);
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            creates.push(create(pods, bench_pod(j, &node)));
        }
        let n = creates.len();
        run_bounded(creates, c).await?;
        progress(format!(
            "created {} namespaces and {n} ConfigMaps, Secrets and pods",
            wanted_ns.saturating_sub(self.namespaces)
        ));
        self.namespaces = self.namespaces.max(wanted_ns);
        self.pods = self.pods.max(target);
        Ok(())
    }

    /// Waits until `target` benchmark pods are Running.
    async fn wait_pods_running(&self, target: usize, timeout: Duration) -> Result<()> {
        let api: Api<Pod> = Api::all(self.client.clone());
        let params = ListParams::default()
            .labels(BENCH_LABEL)
            .fields("status.phase=Running");
        wait_for(
            &format!("{target} pods to be Running"),
            timeout,
            async || {
                let running = api.list_metadata(&params).await?.items.len();
                Ok((running >= target).then_some(()))
            },
        )
        .await
    }

    /// Waits until the istio-cni and ztunnel DaemonSets run a ready, updated pod on each of
    /// `nodes` nodes.
    async fn wait_daemonsets(&self, nodes: usize, timeout: Duration) -> Result<()> {
        for ns in ["istio-cni", "ztunnel"] {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            wait_for(
                &format!("the DaemonSets in {ns} to cover {nodes} nodes"),
                timeout,
                async || {
                    let list = api.list(&ListParams::default()).await?;
                    let covered = !list.items.is_empty()
                        && list.items.iter().all(|ds| {
                            ds.status.as_ref().is_some_and(|s| {
                                let n = nodes as i32;
                                s.desired_number_scheduled == n
                                    && s.number_ready == n
                                    && s.updated_number_scheduled == Some(n)
                            })
                        });
                    Ok(covered.then_some(()))
                },
            )
            .await?;
        }
        Ok(())
    }

    /// `--upgrades` InPlace version changes of the Istio, each timed from the patch's return
    /// to a watch event of the istiod Deployment at the new version, then waited to Ready.
    /// The phase covers all of them.
    async fn upgrades(&self, before: &Snapshot) -> Result<(Vec<Upgrade>, Option<Phase>)> {
        if self.args.upgrades == 0 {
            return Ok((Vec::new(), None));
        }
        let (mut seen, _watch) = watch_istiod(self.client.clone());
        // The watch is running (its initial list done) before the first patch.
        tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(event) = seen.recv().await {
                if matches!(event, Seen::Synced) {
                    return Ok(());
                }
            }
            Err(anyhow!("the istiod watch ended"))
        })
        .await
        .context("the istiod watch did not sync within 30s")??;

        let istios = Kind::Istio.api(&self.client);
        let mut done = Vec::new();
        let mut from = BASE_VERSION;
        for i in 0..self.args.upgrades {
            let to = if from == BASE_VERSION {
                OTHER_VERSION
            } else {
                BASE_VERSION
            };
            // Events of the previous rollout are not this upgrade's.
            while seen.try_recv().is_ok() {}
            let patch = json!({ "spec": { "version": to } });
            istios
                .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("patching Istio default to {to}"))?;
            let returned = Instant::now();
            let label = to.trim_start_matches('v');
            let (at, image) = tokio::time::timeout(Duration::from_secs(120), async {
                while let Some(event) = seen.recv().await {
                    if let Seen::Istiod { at, version, image } = event
                        && version.as_deref() == Some(label)
                    {
                        return Ok((at, image));
                    }
                }
                Err(anyhow!("the istiod watch ended"))
            })
            .await
            .with_context(|| format!("istiod did not reach {to} within 120s"))??;
            let reaction_ms = match at.checked_duration_since(returned) {
                Some(d) => d.as_secs_f64() * 1000.0,
                None => -(returned.duration_since(at).as_secs_f64() * 1000.0),
            };
            self.wait_ready(Kind::Istio, Duration::from_secs(180))
                .await?;
            let ready_after = returned.elapsed();
            progress(format!(
                "upgrade {}: {from} -> {to}: istiod at {label} after {reaction_ms:.0} ms, Ready after {:.1}s",
                i + 1,
                ready_after.as_secs_f64()
            ));
            done.push(Upgrade {
                from,
                to,
                reaction_ms,
                image,
                ready_after,
            });
            from = to;
        }
        let after = self.snapshot().await?;
        Ok((done, Some(Phase::between("upgrades", before, &after))))
    }
}

/// What the istiod watch reports.
enum Seen {
    /// The initial list is done.
    Synced,
    /// The istiod Deployment as seen at `at`: its `app.kubernetes.io/version` label and the
    /// first container's image.
    Istiod {
        at: Instant,
        version: Option<String>,
        image: String,
    },
}

/// A watch task, aborted when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches the Deployment `istiod` in istio-system (retrying with backoff), stamping each
/// event with the time it arrived. The watch stops when the returned guard is dropped.
fn watch_istiod(client: kube::Client) -> (mpsc::UnboundedReceiver<Seen>, AbortOnDrop) {
    let (tx, rx) = mpsc::unbounded_channel();
    let api: Api<Deployment> = Api::namespaced(client, "istio-system");
    let config = watcher::Config::default().fields("metadata.name=istiod");
    let task = tokio::spawn(async move {
        let mut events = watcher(api, config).default_backoff().boxed();
        while let Some(event) = events.next().await {
            let seen = match event {
                Ok(watcher::Event::InitDone) => Seen::Synced,
                Ok(watcher::Event::Apply(d) | watcher::Event::InitApply(d)) => Seen::Istiod {
                    at: Instant::now(),
                    version: d
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("app.kubernetes.io/version").cloned()),
                    image: d
                        .spec
                        .and_then(|s| s.template.spec)
                        .and_then(|s| s.containers.into_iter().next())
                        .and_then(|c| c.image)
                        .unwrap_or_default(),
                },
                Ok(_) => continue,
                Err(error) => {
                    progress(format!("istiod watch: {error}"));
                    continue;
                }
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    (rx, AbortOnDrop(task))
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

/// The mesh's kinds the benchmark waits on.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Istio,
    IstioCni,
    ZTunnel,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Istio => "Istio",
            Kind::IstioCni => "IstioCNI",
            Kind::ZTunnel => "ZTunnel",
        }
    }

    fn api(self, client: &kube::Client) -> Api<DynamicObject> {
        let plural = match self {
            Kind::Istio => "istios",
            Kind::IstioCni => "istiocnis",
            Kind::ZTunnel => "ztunnels",
        };
        let gvk = GroupVersionKind::gvk("sailoperator.io", "v1", self.name());
        Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        )
    }
}

/// Whether a mesh resource is Ready for its current generation: condition `Ready` True, and
/// neither the condition's nor the status's `observedGeneration` behind (what
/// `kubectl wait --for=condition=Ready` relies on).
fn is_ready(obj: &DynamicObject) -> bool {
    let generation = obj.metadata.generation;
    let fresh = |v: &Value| {
        v.get("observedGeneration")
            .and_then(Value::as_i64)
            .is_none_or(|g| Some(g) == generation)
    };
    let status = &obj.data["status"];
    fresh(status)
        && status["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True" && fresh(c))
        })
}

/// Whether a node is Ready and has no taints.
fn node_ready(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| !t.is_empty());
    ready && !tainted
}

/// A KWOK fake node, as `mizzen-testcluster` creates them (KWOK runs with
/// `--manage-all-nodes`, and its Stage makes the node Ready).
fn fake_node(name: &str) -> Node {
    let labels = [
        ("type", "kwok"),
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
    ];
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(string_map(labels)),
            annotations: Some(string_map([("kwok.x-k8s.io/node", "fake")])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(format!("kwok://{name}")),
            ..Default::default()
        }),
        status: None,
    }
}

fn string_map<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn namespace_name(i: usize) -> String {
    format!("scale-{i:04}")
}

/// Namespace `i`: ambient when `i` is even; `istio.io/rev=default` every
/// [`REV_NAMESPACE_EVERY`]th (index 5 mod 10).
fn bench_namespace(i: usize) -> Namespace {
    let mut labels = string_map([(BENCH_LABEL, "namespace")]);
    if i.is_multiple_of(2) {
        labels.insert("istio.io/dataplane-mode".into(), "ambient".into());
    }
    if i % REV_NAMESPACE_EVERY == 5 {
        labels.insert("istio.io/rev".into(), "default".into());
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_name(i)),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// [`PAYLOAD_BYTES`] of text that differs per namespace (so nothing dedupes it).
fn payload(i: usize, what: &str) -> String {
    let line = format!("{what} of namespace {i}: the kind of data a full cache would hold\n");
    line.repeat(PAYLOAD_BYTES / line.len() + 1)[..PAYLOAD_BYTES].to_owned()
}

fn bench_config_map(i: usize) -> ConfigMap {
    ConfigMap {
        metadata: bench_meta("settings", i),
        data: Some(BTreeMap::from([(
            "settings.txt".to_owned(),
            payload(i, "settings"),
        )])),
        ..Default::default()
    }
}

fn bench_secret(i: usize) -> Secret {
    Secret {
        metadata: bench_meta("credentials", i),
        data: Some(BTreeMap::from([(
            "token".to_owned(),
            ByteString(payload(i, "token").into_bytes()),
        )])),
        ..Default::default()
    }
}

fn bench_meta(name: &str, namespace: usize) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace_name(namespace)),
        labels: Some(string_map([(BENCH_LABEL, name)])),
        ..Default::default()
    }
}

/// Benchmark pod `j`, bound to `node` directly (no scheduling: KWOK runs it at once); every
/// [`REV_POD_EVERY`]th carries `istio.io/rev=default`.
fn bench_pod(j: usize, node: &str) -> Pod {
    let mut labels = string_map([(BENCH_LABEL, "pod"), ("app", "scale")]);
    if j % REV_POD_EVERY == 7 {
        labels.insert("istio.io/rev".into(), "default".into());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("pod-{j:05}")),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(0),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.k8s.io/pause:3.10".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Creates the namespace `name` unless it exists.
async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    create(Api::all(client.clone()), ns).await
}

/// Creates `obj`; an existing object counts as created. Refusals that go away (403 while a
/// namespace's ServiceAccount is missing, 429, 5xx, transport errors) are retried for up to
/// [`CREATE_RETRY_FOR`].
fn create<K>(api: Api<K>, obj: K) -> BoxFuture<'static, Result<()>>
where
    K: kube::Resource<DynamicType = ()> + Clone,
    K: k8s_openapi::serde::de::DeserializeOwned + k8s_openapi::serde::Serialize,
    K: std::fmt::Debug + Send + Sync + 'static,
{
    async move {
        let deadline = Instant::now() + CREATE_RETRY_FOR;
        let name = obj.meta().name.clone().unwrap_or_default();
        loop {
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                Err(kube::Error::Api(s)) if !(s.code == 403 || s.code == 429 || s.code >= 500) => {
                    bail!("creating {} {name}: {}", K::kind(&()), s.message)
                }
                Err(error) if Instant::now() > deadline => {
                    return Err(error).with_context(|| format!("creating {name}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
    .boxed()
}

/// Runs `futures` with at most `concurrency` at a time; the first error ends the run.
async fn run_bounded(
    futures: Vec<BoxFuture<'static, Result<()>>>,
    concurrency: usize,
) -> Result<()> {
    futures::stream::iter(futures)
        .buffer_unordered(concurrency.max(1))
        .try_collect::<()>()
        .await
}

/// Polls `check` every 500 ms until it returns `Some`, up to `timeout`. Errors of `check`
/// are retried; the last one is named in the timeout.
async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() > deadline {
            let why = last_error
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!(
                "timed out after {}s waiting for {what}{why}",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

/// Everything the report prints.
struct Report<'a> {
    args: &'a Args,
    steps: &'a [StepReport],
    phases: &'a [Phase],
    idle: &'a Phase,
    settled: Settled,
    upgrades: &'a [Upgrade],
    upgrade_phase: Option<&'a Phase>,
}

/// A table in UTF-8 boxes on a terminal, Markdown-style ASCII otherwise; every column but
/// the first right-aligned.
fn table(header: Vec<String>) -> Table {
    let mut t = Table::new();
    if std::io::stdout().is_terminal() {
        t.load_style(presets::UTF8_FULL_CONDENSED);
    } else {
        t.load_style(presets::ASCII_MARKDOWN);
    }
    t.set_header(header);
    for column in t.column_iter_mut().skip(1) {
        column.set_cell_alignment(CellAlignment::Right);
    }
    t
}

/// A count as an integer (counters are whole numbers).
fn n(v: f64) -> String {
    // `+ 0.0` turns the -0.0 of an empty float sum into 0.
    format!("{:.0}", v + 0.0)
}

fn print_report(r: &Report<'_>) {
    println!();
    println!(
        "mizzen scale benchmark: steps {}, {} pods per namespace, idle {}s, {} upgrades{}",
        r.args
            .steps
            .0
            .iter()
            .map(|s| format!("{}:{}", s.nodes, s.pods))
            .collect::<Vec<_>>()
            .join(","),
        r.args.pods_per_namespace,
        r.args.idle_secs,
        r.args.upgrades,
        if r.args.leader_elect {
            ", --leader-elect"
        } else {
            ""
        }
    );
    let binary = common::mizzen_bin();
    let version = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("operator: {} ({version})", binary.display());
    println!();
    print_steps(r);
    print_requests_matrix(r);
    print_reconciles(r);
    print_idle(r);
    print_upgrades(r);
    print_slope(r);
}

/// One row per step: size, timings, memory, CPU, request and reconcile totals.
fn print_steps(r: &Report<'_>) {
    println!("Growth steps (each: create, wait until running, settle; figures at the step's end)");
    let mut t = table(
        [
            "step",
            "nodes",
            "pods",
            "pods in cluster",
            "namespaces",
            "create s",
            "running s",
            "settle",
            "RSS MiB",
            "HWM MiB",
            "CPU s",
            "requests",
            "reads",
            "writes",
            "failed",
            "reconciles",
        ]
        .map(String::from)
        .to_vec(),
    );
    for s in r.steps {
        let p = &s.phase;
        t.add_row(vec![
            p.name.clone(),
            s.step.nodes.to_string(),
            s.step.pods.to_string(),
            s.pods_in_cluster.to_string(),
            s.namespaces.to_string(),
            format!("{:.1}", (s.nodes_took + s.create_took).as_secs_f64()),
            format!("{:.1}", s.running_took.as_secs_f64()),
            s.settled.to_string(),
            format!("{:.1}", p.end.rss_kib as f64 / 1024.0),
            format!("{:.1}", p.end.hwm_kib as f64 / 1024.0),
            format!("{:.2}", p.cpu_secs),
            n(p.total_requests()),
            n(p.count(is_read)),
            n(p.count(is_write)),
            n(p.failed.values().sum()),
            n(p.total_reconciles()),
        ]);
    }
    println!("{t}\n");
}

/// Requests by verb and resource (rows) and phase (columns).
fn print_requests_matrix(r: &Report<'_>) {
    println!("API requests sent by the operator, by verb and resource, per phase");
    let keys: BTreeSet<&RequestKey> = r.phases.iter().flat_map(|p| p.requests.keys()).collect();
    let mut header = vec!["verb".to_owned(), "resource".to_owned()];
    header.extend(r.phases.iter().map(|p| p.name.clone()));
    let mut t = table(header);
    if let Some(c) = t.column_mut(1) {
        c.set_cell_alignment(CellAlignment::Left);
    }
    for key in keys {
        let mut row = vec![key.0.clone(), key.1.clone()];
        row.extend(
            r.phases
                .iter()
                .map(|p| p.requests.get(key).map(|v| n(*v)).unwrap_or_default()),
        );
        t.add_row(row);
    }
    for (label, class) in [
        ("reads", is_read as fn(&str) -> bool),
        ("writes", is_write),
        ("all", |_: &str| true),
    ] {
        let mut row = vec![format!("= {label}"), String::new()];
        row.extend(r.phases.iter().map(|p| n(p.count(class))));
        t.add_row(row);
    }
    let codes: BTreeSet<&String> = r.phases.iter().flat_map(|p| p.failed.keys()).collect();
    for code in codes {
        let mut row = vec![format!("= code {code}"), String::new()];
        row.extend(
            r.phases
                .iter()
                .map(|p| p.failed.get(code).map(|v| n(*v)).unwrap_or_default()),
        );
        t.add_row(row);
    }
    let mut row = vec!["= wall s".to_owned(), String::new()];
    row.extend(
        r.phases
            .iter()
            .map(|p| format!("{:.0}", p.wall.as_secs_f64())),
    );
    t.add_row(row);
    println!("{t}\n");
}

/// Reconciles by controller (rows) and phase (columns); failed ones in their own rows.
fn print_reconciles(r: &Report<'_>) {
    println!("Reconciles finished (mizzen_reconcile_total), by controller, per phase");
    let mut header = vec!["controller".to_owned()];
    header.extend(r.phases.iter().map(|p| p.name.clone()));
    let mut t = table(header);
    let controllers: BTreeSet<&String> =
        r.phases.iter().flat_map(|p| p.reconciles.keys()).collect();
    for c in &controllers {
        let mut row = vec![(*c).clone()];
        row.extend(
            r.phases
                .iter()
                .map(|p| p.reconciles.get(*c).map(|v| n(*v)).unwrap_or_default()),
        );
        t.add_row(row);
    }
    let failing: BTreeSet<&String> = r
        .phases
        .iter()
        .flat_map(|p| p.reconcile_errors.keys())
        .collect();
    for c in failing {
        let mut row = vec![format!("{c} (failed)")];
        row.extend(
            r.phases
                .iter()
                .map(|p| p.reconcile_errors.get(c).map(|v| n(*v)).unwrap_or_default()),
        );
        t.add_row(row);
    }
    let mut row = vec!["= all".to_owned()];
    row.extend(r.phases.iter().map(|p| n(p.total_reconciles())));
    t.add_row(row);
    let mut row = vec!["= CPU s".to_owned()];
    row.extend(r.phases.iter().map(|p| format!("{:.2}", p.cpu_secs)));
    t.add_row(row);
    println!("{t}\n");
}

/// The idle window: reads and writes by verb and resource, with a per-minute rate.
fn print_idle(r: &Report<'_>) {
    let idle = r.idle;
    let secs = idle.wall.as_secs_f64();
    println!(
        "Idle window: {secs:.1}s after the settle ({}), {} pods in the cluster",
        r.settled,
        r.steps.last().map(|s| s.pods_in_cluster).unwrap_or(0)
    );
    let mut t = table(
        ["class", "verb", "resource", "requests", "per minute"]
            .map(String::from)
            .to_vec(),
    );
    for c in [1, 2] {
        if let Some(col) = t.column_mut(c) {
            col.set_cell_alignment(CellAlignment::Left);
        }
    }
    for ((verb, resource), v) in &idle.requests {
        let class = if is_read(verb) {
            "read"
        } else if is_write(verb) {
            "write"
        } else {
            "other"
        };
        t.add_row(vec![
            class.to_owned(),
            verb.clone(),
            resource.clone(),
            n(*v),
            format!("{:.1}", v * 60.0 / secs + 0.0),
        ]);
    }
    if idle.requests.is_empty() {
        t.add_row(vec!["(no request)".to_owned()]);
    }
    for (label, class) in [("reads", is_read as fn(&str) -> bool), ("writes", is_write)] {
        let v = idle.count(class);
        t.add_row(vec![
            format!("= {label}"),
            String::new(),
            String::new(),
            n(v),
            format!("{:.1}", v * 60.0 / secs + 0.0),
        ]);
    }
    println!("{t}");
    println!(
        "idle: CPU {:.2}s, {} reconciles, RSS {} (peak {})\n",
        idle.cpu_secs,
        n(idle.total_reconciles()),
        mib(idle.end.rss_kib),
        mib(idle.end.hwm_kib)
    );
}

/// Nearest-rank percentile `p` (0 < p ≤ 100) of `sorted` (ascending, not empty).
fn nearest_rank(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Each upgrade's reaction latency and time to Ready, p50/p99, and the phase's requests.
fn print_upgrades(r: &Report<'_>) {
    let Some(phase) = r.upgrade_phase else {
        println!("Upgrades: none (--upgrades 0)\n");
        return;
    };
    println!(
        "Upgrades (InPlace, Istio spec.version; reaction = patch returned -> watch event of \
         the istiod Deployment at the new version)"
    );
    let mut t = table(
        [
            "#",
            "from",
            "to",
            "reaction ms",
            "istiod image",
            "Ready after s",
        ]
        .map(String::from)
        .to_vec(),
    );
    for (i, u) in r.upgrades.iter().enumerate() {
        t.add_row(vec![
            (i + 1).to_string(),
            u.from.to_owned(),
            u.to.to_owned(),
            format!("{:.0}", u.reaction_ms),
            u.image.clone(),
            format!("{:.2}", u.ready_after.as_secs_f64()),
        ]);
    }
    println!("{t}");
    let mut samples: Vec<f64> = r.upgrades.iter().map(|u| u.reaction_ms).collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "reaction latency over {} samples (nearest rank): p50 {:.0} ms, p99 {:.0} ms",
        samples.len(),
        nearest_rank(&samples, 50.0),
        nearest_rank(&samples, 99.0)
    );
    println!(
        "during the upgrades ({:.1}s): {} requests ({} reads, {} writes), {} reconciles, CPU {:.2}s",
        phase.wall.as_secs_f64(),
        n(phase.total_requests()),
        n(phase.count(is_read)),
        n(phase.count(is_write)),
        n(phase.total_reconciles()),
        phase.cpu_secs
    );
    println!("(by verb and resource: the column `upgrades` of the requests table above)\n");
}

/// RSS growth per 1,000 pods in the cluster: least squares over the steps, and first to last.
fn print_slope(r: &Report<'_>) {
    let points: Vec<(f64, f64)> = r
        .steps
        .iter()
        .map(|s| {
            (
                s.pods_in_cluster as f64 / 1000.0,
                s.phase.end.rss_kib as f64 / 1024.0,
            )
        })
        .collect();
    println!("Memory slope (RSS at each step's end against all pods in the cluster)");
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return;
    };
    let count = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / count;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / count;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    if points.len() < 2 || sxx == 0.0 || last.0 == first.0 {
        println!("needs two steps with different pod counts");
        return;
    }
    println!(
        "least squares over {} steps: {:+.2} MiB per 1,000 pods (intercept {:.1} MiB)",
        points.len(),
        sxy / sxx,
        mean_y - sxy / sxx * mean_x
    );
    println!(
        "first to last step: {:+.2} MiB per 1,000 pods ({:.1} -> {:.1} MiB, {:.0} -> {:.0} pods)",
        (last.1 - first.1) / (last.0 - first.0),
        first.1,
        last.1,
        first.0 * 1000.0,
        last.0 * 1000.0
    );
}
