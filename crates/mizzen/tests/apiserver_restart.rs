//! kube-apiserver stopped in the middle of an InPlace patch update of the ambient mesh (issue
//! 10, "Keep it from coming back"): the operator process survives the outage, the mesh
//! converges on the new version once the API server is back, and children deleted behind the
//! operator's back right after the API server returns are recreated.
//!
//! Each outage: patch Istio, IstioCNI and ZTunnel one patch version up, SIGTERM the apiserver
//! (at once, or for every second outage once the operator has applied the new ztunnel
//! DaemonSet), SIGKILL it 2 s later, leave it down for N s, start it again (same flags, port
//! and certificates). Printed (`--nocapture`): how long after the API server is back the mesh has
//! converged, when each step of the convergence first held (the operator's writes, the
//! kube-controller-manager's rollouts, the operator's status), how long each repair lagged,
//! and what the operator's `/readyz` said.
//!
//! Outages of 5 s and 30 s by default; `MIZZEN_APISERVER_OUTAGES=5,30,60` (seconds) sets
//! others, at most five (one patch version step each, v1.26.3 to v1.26.8). The operator runs
//! with `--leader-elect`, as shipped: during an outage longer than its renew deadline (10 s)
//! it steps down, and it leads again once the API server is back, in the same process.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use mizzen_api::{Istio, IstioCNI, ZTunnel};
use mizzen_testcluster::{Cluster, Options};

const NODES: usize = 3;
/// Seconds the API server is down for, by default.
const DEFAULT_OUTAGES: &[u64] = &[5, 30];
/// The mesh starts at v1.26.3 and goes one patch up per outage; the catalog ends at v1.26.8.
const FIRST_PATCH: usize = 3;
const LAST_PATCH: usize = 8;
/// How long, once the API server is back, the mesh may take to converge, the deleted children
/// to come back and the operator's `/readyz` to say ready. The kube-controller-manager alone
/// takes up to about 80 s to roll the workloads out after a 30 s outage (its informers back
/// off up to 30 s, and it waits for its pod cache to catch up with its own writes). `/readyz`
/// is 200 again about 5 s after the operator's watches stop failing.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(180);
/// Poll interval of the measurements.
const POLL: Duration = Duration::from_millis(200);
/// How long the API server may take to exit after SIGTERM before it gets SIGKILL. It refuses
/// new connections at once but keeps serving the watches it has until its process exits, about
/// 20 s later: the outage proper starts when the process is gone.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The outages to run, from `MIZZEN_APISERVER_OUTAGES` or [`DEFAULT_OUTAGES`].
fn outages() -> Vec<u64> {
    let outages: Vec<u64> = match std::env::var("MIZZEN_APISERVER_OUTAGES") {
        Ok(list) => list
            .split(',')
            .map(|s| {
                s.trim().parse().unwrap_or_else(|_| {
                    panic!("MIZZEN_APISERVER_OUTAGES={list}: {s:?} is not a number of seconds")
                })
            })
            .collect(),
        Err(_) => DEFAULT_OUTAGES.to_vec(),
    };
    assert!(
        !outages.is_empty() && outages.len() <= LAST_PATCH - FIRST_PATCH,
        "between 1 and {} outages (one patch version step each): {outages:?}",
        LAST_PATCH - FIRST_PATCH
    );
    assert!(
        outages.iter().all(|s| (1..=600).contains(s)),
        "outages of 1 to 600 s: {outages:?}"
    );
    outages
}

/// The last `n` lines of the operator's log, for failure messages.
fn log_tail(op: &Operator, n: usize) -> String {
    let log = op.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The mesh's custom resources, all named `default`.
fn mesh_kinds() -> [(&'static str, ApiResource); 3] {
    [
        ("Istio", ApiResource::erase::<Istio>(&())),
        ("IstioCNI", ApiResource::erase::<IstioCNI>(&())),
        ("ZTunnel", ApiResource::erase::<ZTunnel>(&())),
    ]
}

/// A child the operator owns and recreates: deleted right after the API server is back.
struct Owned {
    what: String,
    resource: ApiResource,
    namespace: &'static str,
    name: &'static str,
}

fn children() -> Vec<Owned> {
    let child = |resource: ApiResource, namespace, name, owner| Owned {
        what: format!(
            "{} {namespace}/{name} (by the {owner} controller)",
            resource.kind
        ),
        resource,
        namespace,
        name,
    };
    vec![
        child(
            ApiResource::erase::<ServiceAccount>(&()),
            "ztunnel",
            "ztunnel",
            "ZTunnel",
        ),
        child(
            ApiResource::erase::<Service>(&()),
            "istio-system",
            "istiod-active-default",
            "Istio",
        ),
        child(
            ApiResource::erase::<Service>(&()),
            "istio-system",
            "istiod",
            "IstioRevision",
        ),
    ]
}

impl Owned {
    fn api(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), self.namespace, &self.resource)
    }
}

/// The first container image of a pod template.
fn template_image(spec: Option<&k8s_openapi::api::core::v1::PodTemplateSpec>) -> String {
    spec.and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn version_label<K: Resource>(obj: &K) -> &str {
    obj.meta()
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/version"))
        .map_or("", String::as_str)
}

/// The images the workloads run now: (ztunnel, istio-cni, istiod).
async fn workload_images(client: &Client) -> [String; 3] {
    let ds = |ns| Api::<DaemonSet>::namespaced(client.clone(), ns);
    let zt = ds("ztunnel").get("ztunnel").await.unwrap();
    let cni = ds("istio-cni").get("istio-cni-node").await.unwrap();
    let istiod = Api::<Deployment>::namespaced(client.clone(), "istio-system")
        .get("istiod")
        .await
        .unwrap();
    [
        template_image(zt.spec.as_ref().map(|s| &s.template)),
        template_image(cni.spec.as_ref().map(|s| &s.template)),
        template_image(istiod.spec.as_ref().map(|s| &s.template)),
    ]
}

/// Each condition of convergence on `version` (bare, `1.26.4`) at `generations` (of Istio,
/// IstioCNI, ZTunnel, as the patch left them), with why it does not hold yet: each custom
/// resource Ready for its current generation; each workload's template on the new version
/// (the operator's write) with an image other than `old_images`; each DaemonSet's pods all
/// running that image and ready, and its status saying so (the kube-controller-manager's and
/// KWOK's work); the istiod Deployment rolled out.
async fn convergence(
    client: &Client,
    version: &str,
    generations: &[i64; 3],
    old_images: &[String; 3],
) -> Vec<(String, Result<(), String>)> {
    let mut checks = Vec::new();
    for ((kind, ar), generation) in mesh_kinds().iter().zip(generations) {
        let ready = Api::<DynamicObject>::all_with(client.clone(), ar)
            .get("default")
            .await
            .map_err(|e| e.to_string())
            .and_then(|obj| ready_for(&obj, *generation));
        checks.push((format!("{kind}/default Ready"), ready));
    }
    for ((ns, name), old_image) in DAEMONSETS.into_iter().zip(old_images) {
        let what = format!("DaemonSet {ns}/{name}");
        let ds = match Api::<DaemonSet>::namespaced(client.clone(), ns)
            .get(name)
            .await
        {
            Ok(ds) => ds,
            Err(e) => {
                checks.push((format!("{what} applied"), Err(e.to_string())));
                continue;
            }
        };
        let image = template_image(ds.spec.as_ref().map(|s| &s.template));
        let applied = if version_label(&ds) == version && image != *old_image {
            Ok(())
        } else {
            Err(format!("version {:?}, image {image}", version_label(&ds)))
        };
        let (pods, status) = match applied {
            Ok(()) => (
                daemonset_pods_ready(client, &ds, &image).await,
                daemonset_status_rolled_out(&ds),
            ),
            Err(_) => (Err("not applied yet".into()), Err("not applied yet".into())),
        };
        checks.push((format!("{what} applied"), applied));
        checks.push((format!("{what} {PODS_READY}"), pods));
        checks.push((format!("{what} {STATUS_CAUGHT_UP}"), status));
    }
    let what = "Deployment istio-system/istiod";
    match Api::<Deployment>::namespaced(client.clone(), "istio-system")
        .get("istiod")
        .await
    {
        Ok(istiod) => {
            let image = template_image(istiod.spec.as_ref().map(|s| &s.template));
            let applied = version_label(&istiod) == version && image != old_images[2];
            let st = istiod.status.clone().unwrap_or_default();
            let replicas = istiod.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let rolled_out = st.observed_generation == istiod.metadata.generation
                && st.updated_replicas == Some(replicas)
                && st.ready_replicas == Some(replicas)
                && st.replicas == Some(replicas);
            checks.push((
                format!("{what} applied"),
                if applied {
                    Ok(())
                } else {
                    Err(format!(
                        "version {:?}, image {image}",
                        version_label(&istiod)
                    ))
                },
            ));
            checks.push((
                format!("{what} rolled out"),
                match (applied, rolled_out) {
                    (true, true) => Ok(()),
                    (false, _) => Err("not applied yet".into()),
                    (true, false) => Err(format!(
                        "generation {:?}, status {st:?}",
                        istiod.metadata.generation
                    )),
                },
            ));
        }
        Err(e) => checks.push((format!("{what} applied"), Err(e.to_string()))),
    }
    checks
}

/// Whether a mesh custom resource is Ready for `generation`, its status caught up.
fn ready_for(obj: &DynamicObject, generation: i64) -> Result<(), String> {
    if obj.metadata.generation != Some(generation) {
        return Err(format!(
            "generation {:?}, the patch made it {generation}",
            obj.metadata.generation
        ));
    }
    let status = &obj.data["status"];
    if status["observedGeneration"].as_i64() != Some(generation) {
        return Err(format!(
            "observedGeneration {} of {generation}",
            status["observedGeneration"]
        ));
    }
    let ready = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) if c["status"] == "True" && c["observedGeneration"] == generation => Ok(()),
        other => Err(format!("Ready condition {other:?}")),
    }
}

/// The mesh's DaemonSets: (namespace, name) of ztunnel and istio-cni.
const DAEMONSETS: [(&str, &str); 2] = [("ztunnel", "ztunnel"), ("istio-cni", "istio-cni-node")];

/// The check that a DaemonSet's pods all run the new image and are ready.
const PODS_READY: &str = "pods updated and ready";
/// The check that a DaemonSet's status says it is rolled out.
const STATUS_CAUGHT_UP: &str = "status rolled out";

/// Whether a DaemonSet's status says it runs its current template on every node.
fn daemonset_status_rolled_out(ds: &DaemonSet) -> Result<(), String> {
    let st = ds.status.clone().unwrap_or_default();
    let nodes = NODES as i32;
    if st.observed_generation != ds.metadata.generation
        || st.desired_number_scheduled != nodes
        || st.updated_number_scheduled != Some(nodes)
        || st.number_ready != nodes
        || st.number_available != Some(nodes)
    {
        return Err(format!(
            "generation {:?}, status {st:?}",
            ds.metadata.generation
        ));
    }
    Ok(())
}

/// Whether a DaemonSet has exactly one pod per node, none terminating, each with `image` and
/// Ready.
async fn daemonset_pods_ready(client: &Client, ds: &DaemonSet, image: &str) -> Result<(), String> {
    let selector = mizzen_controller::rollout::pod_selector(ds);
    let ns = ds.metadata.namespace.as_deref().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| format!("listing pods: {e}"))?
        .items;
    let mut all_good = pods.len() == NODES;
    let mut seen = Vec::new();
    for p in &pods {
        let pod_image = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref())
            .unwrap_or_default();
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let terminating = p.metadata.deletion_timestamp.is_some();
        all_good &= pod_image == image && ready && !terminating;
        seen.push(format!(
            "{} on {node:?}: {pod_image}{}{}",
            p.metadata.name.as_deref().unwrap_or_default(),
            if ready { "" } else { ", not ready" },
            if terminating { ", terminating" } else { "" },
        ));
    }
    if all_good {
        Ok(())
    } else {
        Err(format!("pods {seen:?}, want {NODES} ready of {image}"))
    }
}

/// What one outage measured.
struct Figures {
    outage: u64,
    from: String,
    to: String,
    ztunnel_at_stop: String,
    stop_took: Duration,
    start_took: Duration,
    down: Duration,
    readyz_503_after: Option<Duration>,
    converged_after: Duration,
    milestones: Vec<(String, Duration)>,
    repairs: Vec<(String, Duration)>,
    readyz_changes: Vec<(Duration, u16, String)>,
}

impl Figures {
    /// When the last of the operator's workload writes ("applied") first held.
    fn writes_done_after(&self) -> Duration {
        self.milestones
            .iter()
            .filter(|m| m.0.ends_with(" applied"))
            .map(|m| m.1)
            .max()
            .unwrap_or_default()
    }

    /// When the operator's `/readyz` said 200 again, after the API server was back.
    fn readyz_ok_after(&self) -> Duration {
        self.readyz_changes
            .iter()
            .rev()
            .find(|c| c.1 == 200)
            .map(|c| c.0)
            .unwrap_or_default()
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} s outage during {} -> {} (ztunnel DaemonSet at the SIGTERM: {}):",
            self.outage, self.from, self.to, self.ztunnel_at_stop
        )?;
        writeln!(
            f,
            "  kube-apiserver: SIGTERM to exit {:.2?}, then {} s without it, start to /readyz \
             {:.2?}; {:.2?} from the SIGTERM to the API server back",
            self.stop_took, self.outage, self.start_took, self.down
        )?;
        match self.readyz_503_after {
            Some(t) => writeln!(f, "  operator /readyz 503 {t:.2?} after the SIGTERM")?,
            None => writeln!(f, "  operator /readyz never 503 during the outage")?,
        }
        writeln!(
            f,
            "  converged {:.2?} after the API server was back; first held, after it was back:",
            self.converged_after
        )?;
        for (what, t) in &self.milestones {
            writeln!(f, "    {t:>9.2?}  {what}")?;
        }
        writeln!(
            f,
            "  repair lag (deleted right after the API server was back):"
        )?;
        for (what, lag) in &self.repairs {
            writeln!(f, "    {lag:>9.2?}  {what}")?;
        }
        write!(f, "  operator /readyz after the API server was back:")?;
        for (t, code, why) in &self.readyz_changes {
            write!(f, "\n    {t:>9.2?}  {code} {why}")?;
        }
        Ok(())
    }
}

/// The first line of a `/readyz` body, cut to a readable length.
fn first_line(body: &str) -> String {
    let line = body.trim().lines().next().unwrap_or("");
    match line.char_indices().nth(140) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_owned(),
    }
}

#[tokio::test]
async fn the_operator_recovers_from_an_apiserver_outage_during_a_rollout() {
    let outages = outages();
    let t_test = Instant::now();
    let mut cluster = Cluster::start(Options {
        nodes: NODES,
        ..Options::default()
    })
    .await
    .unwrap();
    install_crds(&cluster);
    let dir = tempfile::tempdir().unwrap();
    // As shipped: with leader election. The holder cannot renew during the outage; it steps
    // down and leads again afterwards, in the same process.
    kubectl(&cluster, &["create", "namespace", "mizzen-system"]);
    let mut op = Operator::start(
        "mizzen",
        &cluster.kubeconfig_path(),
        dir.path(),
        &[
            "--leader-elect",
            "--leader-election-namespace=mizzen-system",
        ],
    );
    let pid = op.child.id();
    let first = format!("v1.26.{FIRST_PATCH}");
    seed(&cluster, "install-ambient", &[&first]);
    until(60, "the operator's /readyz to say ready", || {
        op.readyz().filter(|(code, _)| *code == 200)
    });
    println!(
        "mesh installed at {first} {:.1?} into the test",
        t_test.elapsed()
    );

    let mut all = Vec::new();
    for (k, &outage) in outages.iter().enumerate() {
        let from = format!("v1.26.{}", FIRST_PATCH + k);
        let to = format!("v1.26.{}", FIRST_PATCH + k + 1);
        let bare = to.trim_start_matches('v');
        let client = cluster.client();
        let old_images = workload_images(&client).await;

        // The rollout: all three at once, as one `kubectl apply` of the example would.
        let patch = serde_json::json!({"spec": {"version": to}});
        let mut generations = [0; 3];
        for ((kind, ar), generation) in mesh_kinds().iter().zip(&mut generations) {
            let patched = Api::<DynamicObject>::all_with(client.clone(), ar)
                .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap_or_else(|e| panic!("patching {kind}/default: {e}"));
            *generation = patched.metadata.generation.unwrap();
        }
        // Every other outage starts once the operator has applied the new ztunnel DaemonSet
        // (its pods being replaced), the others at once (the operator's writes still to come).
        let wait_for_apply = k % 2 == 1;
        let zt_api = Api::<DaemonSet>::namespaced(client.clone(), "ztunnel");
        let applied_by = Instant::now() + Duration::from_secs(60);
        let zt = loop {
            let zt = zt_api.get("ztunnel").await.unwrap();
            if !wait_for_apply || version_label(&zt) == bare {
                break zt;
            }
            assert!(
                Instant::now() < applied_by,
                "the operator did not apply the ztunnel DaemonSet at {to} within 60 s:\n{}",
                log_tail(&op, 60)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let zt_status = zt.status.clone().unwrap_or_default();
        let ztunnel_at_stop = format!(
            "version {}, {} of {} pods updated",
            version_label(&zt),
            zt_status.updated_number_scheduled.unwrap_or(0),
            zt_status.desired_number_scheduled
        );
        drop(client);

        // The outage: SIGTERM (from then on the apiserver refuses new connections but keeps
        // serving the watches it has), SIGKILL after STOP_GRACE, then `outage` seconds without
        // an apiserver process.
        let apiserver_pid = pid_of(&cluster, "kube-apiserver");
        let sigterm = Instant::now();
        let (stop_took, readyz_503_after) = std::thread::scope(|s| {
            let stopper = s.spawn(|| cluster.stop_apiserver(STOP_GRACE));
            let mut gone: Option<Instant> = None;
            let mut first_503 = None;
            while gone.is_none_or(|g| g.elapsed() < Duration::from_secs(outage)) {
                assert!(
                    op.child_alive(),
                    "the operator exited during the outage:\n{}",
                    log_tail(&op, 60)
                );
                if first_503.is_none() && op.readyz().is_some_and(|(code, _)| code == 503) {
                    first_503 = Some(sigterm.elapsed());
                }
                if gone.is_none() && stopper.is_finished() {
                    gone = Some(Instant::now());
                }
                std::thread::sleep(POLL);
            }
            let stopped = stopper.join().expect("the stopper thread");
            (stopped.unwrap(), first_503)
        });
        let start_took = cluster.start_apiserver().await.unwrap();
        let back = Instant::now();
        let down = sigterm.elapsed();
        assert_ne!(pid_of(&cluster, "kube-apiserver"), apiserver_pid);
        let running: Vec<String> = Cluster::running_pids(cluster.dir())
            .into_iter()
            .map(|p| p.name)
            .collect();
        for name in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        ] {
            assert!(
                running.iter().any(|r| r == name),
                "{name} did not survive the outage: {running:?}"
            );
        }

        // Children deleted behind the operator's back, at once.
        let client = cluster.client();
        let mut pending = Vec::new();
        for child in children() {
            let api = child.api(&client);
            let old = api
                .get(child.name)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", child.what));
            api.delete(child.name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("deleting {}: {e}", child.what));
            pending.push((child, old.metadata.uid.unwrap(), Instant::now()));
        }

        // Until the mesh has converged, every child is back and /readyz says ready.
        let mut repairs = Vec::new();
        let mut converged_after = None;
        let mut milestones: Vec<(String, Duration)> = Vec::new();
        let mut readyz_changes: Vec<(Duration, u16, String)> = Vec::new();
        let mut last = String::new();
        loop {
            let readyz = op.readyz().map_or((0, "no answer".into()), |(code, body)| {
                (code, first_line(&body))
            });
            if readyz_changes
                .last()
                .is_none_or(|c| (c.1, &c.2) != (readyz.0, &readyz.1))
            {
                readyz_changes.push((back.elapsed(), readyz.0, readyz.1));
            }
            let ready = readyz_changes.last().is_some_and(|c| c.1 == 200);
            if converged_after.is_some() && pending.is_empty() && ready {
                break;
            }
            let limit = RECOVERY_TIMEOUT;
            assert!(
                op.child_alive(),
                "the operator exited after the outage:\n{}",
                log_tail(&op, 60)
            );
            if back.elapsed() > limit {
                let missing: Vec<&str> = pending.iter().map(|p| p.0.what.as_str()).collect();
                panic!(
                    "{limit:?} after the API server came back ({outage} s outage during \
                     {from} -> {to}): converged after: {converged_after:?}; not recreated: \
                     {missing:?}; /readyz: {readyz_changes:?}\nfirst held: {milestones:?}\n\
                     last seen: {last}\n\
                     operator alive: {}\noperator log (last lines):\n{}",
                    op.child_alive(),
                    log_tail(&op, 80)
                );
            }
            let mut i = 0;
            while i < pending.len() {
                let (child, old_uid, deleted) = &pending[i];
                match child.api(&client).get_opt(child.name).await {
                    Ok(Some(obj)) if obj.metadata.uid.as_ref() != Some(old_uid) => {
                        repairs.push((child.what.clone(), deleted.elapsed()));
                        pending.remove(i);
                    }
                    Ok(_) => i += 1,
                    Err(e) => {
                        last = format!("{}: {e}", child.what);
                        i += 1;
                    }
                }
            }
            if converged_after.is_none() {
                let checks = convergence(&client, bare, &generations, &old_images).await;
                for (what, check) in &checks {
                    if check.is_ok() && !milestones.iter().any(|m| m.0 == *what) {
                        milestones.push((what.clone(), back.elapsed()));
                    }
                }
                if checks.iter().all(|c| c.1.is_ok()) {
                    converged_after = Some(back.elapsed());
                } else {
                    last = checks
                        .iter()
                        .map(|(what, c)| match c {
                            Ok(()) => format!("\n  ok: {what}"),
                            Err(why) => format!("\n  NOT: {what}: {why}"),
                        })
                        .collect();
                }
            }
            tokio::time::sleep(POLL).await;
        }
        assert!(
            op.child_alive() && op.child.id() == pid,
            "the same operator process throughout:\n{}",
            log_tail(&op, 60)
        );
        assert!(
            op.leads(),
            "the operator leads again:\n{}",
            log_tail(&op, 60)
        );
        let figures = Figures {
            outage,
            from,
            to,
            ztunnel_at_stop,
            stop_took,
            start_took,
            down,
            readyz_503_after,
            converged_after: converged_after.unwrap(),
            milestones,
            repairs,
            readyz_changes,
        };
        println!("{figures}");
        if outage >= 5 {
            assert!(
                figures.readyz_503_after.is_some(),
                "the operator's /readyz said ready throughout a {outage} s outage"
            );
        }
        all.push(figures);
    }

    let mut summary = String::new();
    for f in &all {
        let worst = f.repairs.iter().map(|r| r.1).max().unwrap_or_default();
        writeln!(
            summary,
            "  {:>3} s outage: converged {:>6.2?} after the API server was back, repairs lag \
             at most {worst:>6.2?}, /readyz 503 {:.2?} after the SIGTERM and 200 again \
             {:>6.2?} after the API server was back; the operator's workload writes done \
             {:>6.2?} after it",
            f.outage,
            f.converged_after,
            f.readyz_503_after.unwrap_or_default(),
            f.readyz_ok_after(),
            f.writes_done_after()
        )
        .unwrap();
    }
    println!(
        "API server outages, one operator process (pid {pid}) throughout; test took {:.1?}:\n{summary}",
        t_test.elapsed()
    );
    op.signal("TERM");
    let status = op.wait_exit(30);
    assert!(status.success(), "{status:?}: {}", log_tail(&op, 40));
}

/// The pid of a component of the cluster, as the cluster handle knows it.
fn pid_of(cluster: &Cluster, name: &str) -> u32 {
    cluster
        .pids()
        .into_iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", cluster.pids()))
        .pid
}
