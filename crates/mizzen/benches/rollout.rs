//! The data-plane rollout benchmark (issue 12): the wall time of a ztunnel patch release on
//! `--nodes` fake nodes, first with the DaemonSet's own `RollingUpdate`, then with a
//! `DrainWaves` RolloutPolicy, and what the operator itself spends per node (CPU and API
//! requests). Ambient workloads with a PodDisruptionBudget run on the nodes, so the drained
//! rollout really evicts. `cargo bench -p mizzen --bench rollout` (docs/benchmark.md).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use common::{Metrics, Operator, ProcessStats, kubectl, kubectl_stdin, progress};
use mizzen_testcluster::{Cluster, Options};

#[derive(Debug, Parser)]
#[command(about = "mizzen's rollout benchmark: RollingUpdate against DrainWaves")]
struct Args {
    /// Fake nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Replicas of the ambient workload (spread over the nodes by the scheduler).
    #[arg(long, default_value_t = 200)]
    pods: usize,
    /// `drainWaves.waveSize`.
    #[arg(long, default_value = "10%")]
    wave_size: String,
    /// `drainWaves.maxUnavailable`.
    #[arg(long, default_value_t = 2)]
    max_unavailable: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    common::bench_main("rollout", run(Args::parse()))
}

async fn run(args: Args) -> Result<()> {
    let cluster = Cluster::start(Options {
        nodes: args.nodes,
        timeout: Duration::from_secs(120 + args.nodes as u64),
        ..Options::default()
    })
    .await
    .context("starting the local control plane")?;
    progress(format!(
        "control plane ready in {:.1}s with {} nodes",
        cluster.startup_time().as_secs_f64(),
        args.nodes
    ));
    let dir = tempfile::tempdir()?;
    common::install_crds(&cluster);
    let mut op = Operator::start("mizzen", &cluster.kubeconfig_path(), dir.path(), &[]);
    let result = measure(&cluster, &op, &args).await;
    if result.is_err() {
        eprintln!("--- the operator's log ---\n{}", op.log_tail(40));
    }
    op.signal("TERM");
    op.wait_exit(15);
    tokio::task::spawn_blocking(move || cluster.stop()).await??;
    result
}

/// The operator's CPU seconds and API requests (all verbs) so far.
fn counters(op: &Operator) -> Result<(f64, f64)> {
    let cpu = ProcessStats::read(op.child.id())?.cpu_secs;
    let metrics: Metrics = op.scrape().context("scraping the operator")?;
    let requests = metrics
        .value("mizzen_kube_requests_total", &[])
        .unwrap_or(0.0);
    Ok((cpu, requests))
}

fn wait(cluster: &Cluster, what: &[&str], timeout: &str) {
    let mut args = vec!["wait"];
    args.extend(what);
    let timeout = format!("--timeout={timeout}");
    args.push(&timeout);
    kubectl(cluster, &args);
}

fn set_ztunnel(cluster: &Cluster, version: &str) {
    kubectl(
        cluster,
        &[
            "patch",
            "ztunnel",
            "default",
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"version":"{version}"}}}}"#),
        ],
    );
}

/// One measured rollout.
struct Run {
    mode: String,
    wall: f64,
    cpu: f64,
    requests: f64,
}

async fn measure(cluster: &Cluster, op: &Operator, args: &Args) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while op.readyz().map(|r| r.0) != Some(200) {
        if Instant::now() > deadline {
            bail!("the operator was not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for ns in ["istio-system", "ztunnel", "apps"] {
        kubectl(cluster, &["create", "namespace", ns]);
    }
    kubectl(
        cluster,
        &[
            "label",
            "namespace",
            "apps",
            "istio.io/dataplane-mode=ambient",
        ],
    );
    let mesh = "apiVersion: sailoperator.io/v1
kind: Istio
metadata: {name: default}
spec: {namespace: istio-system, version: v1.26.3, profile: ambient}
---
apiVersion: sailoperator.io/v1
kind: ZTunnel
metadata: {name: default}
spec: {namespace: ztunnel, version: v1.26.3}
";
    kubectl_stdin(cluster, &["apply", "-f", "-"], Some(mesh.as_bytes()));
    wait(
        cluster,
        &[
            "--for=condition=Ready",
            "istios/default",
            "ztunnels/default",
        ],
        "5m",
    );
    let app = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: apps}}
spec:
  replicas: {}
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: c, image: example.invalid/app:1}}]}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: app, namespace: apps}}
spec:
  maxUnavailable: 10%
  selector: {{matchLabels: {{app: app}}}}
",
        args.pods
    );
    kubectl_stdin(cluster, &["apply", "-f", "-"], Some(app.as_bytes()));
    kubectl(
        cluster,
        &[
            "rollout",
            "status",
            "deployment/app",
            "-n",
            "apps",
            "--timeout=5m",
        ],
    );
    progress(format!(
        "mesh Ready; {} ambient pods on {} nodes",
        args.pods, args.nodes
    ));

    let mut runs = Vec::new();
    // RollingUpdate: the DaemonSet's own (maxUnavailable 1 by default).
    let (cpu0, req0) = counters(op)?;
    let t = Instant::now();
    set_ztunnel(cluster, "v1.26.4");
    wait(
        cluster,
        &["--for=condition=Ready", "ztunnels/default"],
        "30m",
    );
    let (cpu1, req1) = counters(op)?;
    runs.push(Run {
        mode: "RollingUpdate (the DaemonSet's own)".into(),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu1 - cpu0,
        requests: req1 - req0,
    });
    progress(format!("RollingUpdate: {:.1}s", runs[0].wall));

    // DrainWaves: the policy first switches the DaemonSet to OnDelete (nothing to roll).
    let policy = format!(
        "apiVersion: mizzen.io/v1alpha1
kind: RolloutPolicy
metadata: {{name: bench}}
spec:
  targetRef: {{kind: ZTunnel, name: default}}
  mode: DrainWaves
  drainWaves: {{waveSize: \"{}\", maxUnavailable: {}, nodeTimeoutSeconds: 600}}
",
        args.wave_size, args.max_unavailable
    );
    kubectl_stdin(cluster, &["apply", "-f", "-"], Some(policy.as_bytes()));
    wait(
        cluster,
        &[
            "--for=jsonpath={.status.phase}=Complete",
            "rolloutpolicy/bench",
        ],
        "2m",
    );
    let (cpu0, req0) = counters(op)?;
    let t = Instant::now();
    set_ztunnel(cluster, "v1.26.5");
    wait(
        cluster,
        &[
            "--for=jsonpath={.status.version}=v1.26.5",
            "rolloutpolicy/bench",
        ],
        "2m",
    );
    wait(
        cluster,
        &[
            "--for=jsonpath={.status.phase}=Complete",
            "rolloutpolicy/bench",
        ],
        "60m",
    );
    wait(
        cluster,
        &["--for=condition=Ready", "ztunnels/default"],
        "5m",
    );
    let (cpu1, req1) = counters(op)?;
    runs.push(Run {
        mode: format!(
            "DrainWaves (waves of {}, {} node(s) at once)",
            args.wave_size, args.max_unavailable
        ),
        wall: t.elapsed().as_secs_f64(),
        cpu: cpu1 - cpu0,
        requests: req1 - req0,
    });
    progress(format!("DrainWaves: {:.1}s", runs[1].wall));
    let evictions = op
        .scrape()
        .context("scraping the operator")?
        .value("mizzen_kube_requests_total", &[("subresource", "eviction")])
        .unwrap_or(0.0);
    let nodes = args.nodes as f64;
    println!(
        "mizzen rollout benchmark: {} fake nodes, {} ambient pods (PodDisruptionBudget maxUnavailable 10%)",
        args.nodes, args.pods
    );
    println!();
    println!(
        "| rollout | wall s | s per node | operator CPU s | CPU ms per node | API requests | requests per node |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &runs {
        println!(
            "| {} | {:.1} | {:.2} | {:.2} | {:.1} | {:.0} | {:.1} |",
            r.mode,
            r.wall,
            r.wall / nodes,
            r.cpu,
            r.cpu * 1000.0 / nodes,
            r.requests,
            r.requests / nodes
        );
    }
    println!();
    println!(
        "DrainWaves against RollingUpdate: {:+.1} s in all, {:+.2} s per node",
        runs[1].wall - runs[0].wall,
        (runs[1].wall - runs[0].wall) / nodes
    );
    println!("eviction requests sent (refusals by the budget included): {evictions:.0}");
    Ok(())
}
