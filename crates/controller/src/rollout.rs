//! The RolloutPolicy controller: `DrainWaves` rollouts of the ztunnel or istio-cni DaemonSet
//! (`docs/rollout.md`).
//!
//! With a `DrainWaves` policy the component's DaemonSet is rendered with
//! `updateStrategy: OnDelete` ([`drives`]), so the DaemonSet controller replaces a node's
//! agent pod only when mizzen deletes it. This controller drives the nodes in waves
//! ([`crate::waves`]): per node, cordon, evict the ambient workloads through the Eviction
//! API (PodDisruptionBudgets are the API server's to enforce), delete the old agent pod, wait
//! until the new one is Ready on that node, uncordon. A wave starts once the previous one
//! passed its gate (its nodes Ready with their new agent pods, the workloads it evicted
//! Available again) and the soak time has passed.
//!
//! Everything is recorded in the cluster: a node being driven carries
//! [`NODE_ANNOTATION`] (`<policy>/<state>/<since>`), and [`CORDONED_BY_ANNOTATION`] when mizzen
//! cordoned it; the wave, the gate and the evicted workloads are in the policy's status. A
//! restarted (or new) leader reads them and carries on; a deleted policy uncordons what it
//! cordoned (its finalizer waits for that).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use mizzen_api::condition_types::READY;
use mizzen_api::rollout::{
    NodeRollout, RolloutMode, RolloutPolicy, RolloutPolicyStatus, RolloutTargetKind,
};
use mizzen_api::{Condition, ConditionStatus, Conditions};
use serde_json::json;

use crate::context::{Context, now, patch_status};
use crate::waves::{self, NodeInfo, Waves};
use crate::wiring::{Wiring, all_of, fingerprint};
use crate::{Error, cni, ztunnel};

/// On a node being driven: `<policy>/<state>/<since>`, state `draining`, `replacing` or
/// `failed`.
pub const NODE_ANNOTATION: &str = "mizzen.io/rollout";
/// On a node mizzen cordoned: the policy that did (a node cordoned by someone else is left
/// cordoned).
pub const CORDONED_BY_ANNOTATION: &str = "mizzen.io/cordoned-by";
/// On a failed node: why.
pub const REASON_ANNOTATION: &str = "mizzen.io/rollout-reason";
/// Keeps a policy until the nodes it cordoned are uncordoned.
pub const FINALIZER: &str = "mizzen.io/uncordon";
/// How often an active rollout looks again.
const TICK: Duration = Duration::from_secs(1);
/// How long one eviction may take before it counts as refused (a budget that allows none).
const EVICTION_WAIT: Duration = Duration::from_secs(3);
/// The condition that says the rollout is halted, and why.
pub const PAUSED: &str = "Paused";

/// Whether one of `policies` is a `DrainWaves` policy that drives the DaemonSet of the `kind`
/// named `name`.
pub fn drives<'a>(
    policies: impl IntoIterator<Item = &'a RolloutPolicy>,
    kind: RolloutTargetKind,
    name: &str,
) -> bool {
    policies.into_iter().any(|p| {
        p.spec.mode == RolloutMode::DrainWaves
            && p.spec.target_ref.kind == kind
            && p.spec.target_ref.name == name
            && p.metadata.deletion_timestamp.is_none()
    })
}

/// The progress of the `DrainWaves` policy that drives the `kind` named `name`, for that
/// component's `Ready` message, e.g. `RolloutPolicy zt: wave 2/5, 12/30 nodes updated`.
pub fn summary(
    store: &Store<RolloutPolicy>,
    kind: RolloutTargetKind,
    name: &str,
) -> Option<String> {
    let p = store.state().into_iter().find(|p| {
        p.spec.mode == RolloutMode::DrainWaves
            && p.spec.target_ref.kind == kind
            && p.spec.target_ref.name == name
    })?;
    let s = p.status.clone().unwrap_or_default();
    let mut text = format!("RolloutPolicy {}", p.name_any());
    if let Some(w) = &s.wave {
        text += &format!(": wave {w}");
    }
    if let Some(progress) = &s.progress {
        text += &format!(", {progress} nodes updated");
    }
    if let Some(c) = s.conditions.get_condition(PAUSED)
        && c.status == ConditionStatus::True
    {
        text += &format!(" (paused: {})", c.message.clone().unwrap_or_default());
    }
    Some(text)
}

/// The RolloutPolicy controller.
pub fn controller(w: &Wiring) -> BoxFuture<'static, ()> {
    let own = &w.ctx.own;
    let store = own.policies.store();
    let controller = Controller::for_shared_stream(own.policies.changes(), store.clone())
        .watches_shared_stream(own.ztunnels.changes(), all_of(store.clone()))
        .watches_shared_stream(own.cnis.changes(), all_of(store.clone()))
        .reconcile_on(node_changes(w, store.clone()))
        .reconcile_on(daemonset_changes(w, store));
    w.start("RolloutPolicy", controller, reconcile)
}

/// Every policy, each time a node changes in a way a rollout reads (cordon, readiness, labels,
/// mizzen's annotations, deletion): heartbeats change nothing.
fn node_changes(
    w: &Wiring,
    store: Store<RolloutPolicy>,
) -> impl futures::Stream<Item = ObjectRef<RolloutPolicy>> + Send + 'static {
    use futures::StreamExt;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    w.ctx.own.nodes.changes().flat_map(move |node| {
        let print = fingerprint(&(
            node.spec.as_ref().and_then(|s| s.unschedulable),
            node_ready(&node),
            node.labels(),
            node.annotations().get(NODE_ANNOTATION),
            node.annotations().get(CORDONED_BY_ANNOTATION),
            node.metadata.deletion_timestamp.is_some(),
        ));
        let changed = seen.insert(node.name_any(), print) != Some(print);
        let refs: Vec<_> = if changed {
            store
                .state()
                .iter()
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect()
        } else {
            Vec::new()
        };
        futures::stream::iter(refs)
    })
}

/// Every policy, each time a child of a ZTunnel or an IstioCNI changes (their DaemonSets'
/// progress).
fn daemonset_changes(
    w: &Wiring,
    store: Store<RolloutPolicy>,
) -> impl futures::Stream<Item = ObjectRef<RolloutPolicy>> + Send + 'static {
    use futures::StreamExt;
    w.ctx
        .children
        .changes_of_owners(&["ZTunnel", "IstioCNI"])
        .flat_map(move |()| {
            futures::stream::iter(
                store
                    .state()
                    .iter()
                    .map(|p| ObjectRef::from_obj(p.as_ref()))
                    .collect::<Vec<_>>(),
            )
        })
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// A node's mark: the state this policy left it in, and since when.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mark {
    state: String,
    since: Timestamp,
}

fn mark_of(node: &Node, policy: &str) -> Option<Mark> {
    let value = node.annotations().get(NODE_ANNOTATION)?;
    let mut parts = value.splitn(3, '/');
    let (p, state, since) = (parts.next()?, parts.next()?, parts.next()?);
    (p == policy).then(|| Mark {
        state: state.to_string(),
        since: since.parse().unwrap_or_else(|_| Timestamp::now()),
    })
}

/// The agent pod on each node: whether it runs the DaemonSet's current revision, is Ready,
/// and its name (not when it is already going).
#[derive(Clone, Debug, Default)]
struct Agent {
    updated: bool,
    ready: bool,
    old_pods: Vec<String>,
}

/// Reconciles one policy.
pub async fn reconcile(policy: Arc<RolloutPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = policy.name_any();
    let nodes = ctx.own.nodes.list(&ctx.client).await?;
    if policy.metadata.deletion_timestamp.is_some() {
        release(&ctx, &name, &nodes).await?;
        if policy.finalizers().iter().any(|f| f == FINALIZER) {
            set_finalizer(&ctx, &policy, false).await?;
        }
        return Ok(Action::await_change());
    }
    let mut status = policy.status.clone().unwrap_or_default();
    // A spec the controller has not seen yet: failed nodes are tried again.
    let spec_changed = status.observed_generation != policy.meta().generation;
    status.observed_generation = policy.meta().generation;
    if policy.spec.mode != RolloutMode::DrainWaves {
        release(&ctx, &name, &nodes).await?;
        if policy.finalizers().iter().any(|f| f == FINALIZER) {
            set_finalizer(&ctx, &policy, false).await?;
        }
        idle(
            &mut status,
            "RollingUpdate: the DaemonSet rolls out by its own updateStrategy",
        );
        write_status(&ctx, &policy, &status).await?;
        return Ok(Action::await_change());
    }
    if !policy.finalizers().iter().any(|f| f == FINALIZER) {
        set_finalizer(&ctx, &policy, true).await?;
    }
    let Some((namespace, ds_name)) = target(&ctx, &policy).await? else {
        let kind = format!("{:?}", policy.spec.target_ref.kind);
        halt(
            &mut status,
            "TargetNotFound",
            format!(
                "{kind} {} not found; the policy waits for it",
                policy.spec.target_ref.name
            ),
        );
        write_status(&ctx, &policy, &status).await?;
        return Ok(Action::await_change());
    };
    let Some(ds) = ctx
        .children
        .get::<DaemonSet>(&ctx.client, Some(&namespace), &ds_name)
        .await?
    else {
        halt(
            &mut status,
            "DaemonSetNotFound",
            format!("DaemonSet {namespace}/{ds_name} does not exist yet"),
        );
        write_status(&ctx, &policy, &status).await?;
        return Ok(Action::requeue(Duration::from_secs(5)));
    };
    if !on_delete(&ds) {
        halt(
            &mut status,
            "SwitchingToOnDelete",
            format!("waiting for DaemonSet {namespace}/{ds_name} to be set to OnDelete"),
        );
        write_status(&ctx, &policy, &status).await?;
        return Ok(Action::requeue(TICK));
    }
    let spec = policy.spec.drain_waves.clone().unwrap_or_default();
    let infos: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| NodeInfo {
            name: n.name_any(),
            labels: n.labels().clone(),
            deleting: n.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    let marks: BTreeMap<String, Mark> = nodes
        .iter()
        .filter_map(|n| Some((n.name_any(), mark_of(n, &name)?)))
        .collect();
    let version = ds
        .labels()
        .get(mizzen_render::VERSION_LABEL)
        .map(|v| format!("v{v}"));
    if status.version != version {
        // A new version to roll out: a new rollout.
        status.version = version;
        status.start_time = None;
        status.estimated_completion_time = None;
        status.current_wave = 0;
        status.wave_completed_time = None;
        status.evicted.clear();
    }
    let waves = match waves::plan(&infos, &spec) {
        Ok(w) => w,
        Err(invalid) => {
            // Nodes under way are finished; nothing new starts.
            if !marks.is_empty() {
                let agents = agents(&ctx, &ds).await?;
                for (node, mark) in &marks {
                    advance(&ctx, &policy, &spec, node, mark, &agents, &mut status).await?;
                }
            }
            halt(&mut status, invalid.reason, invalid.message);
            write_status(&ctx, &policy, &status).await?;
            return Ok(Action::await_change());
        }
    };
    if complete(&ds) && marks.is_empty() {
        release(&ctx, &name, &nodes).await?;
        let total = ds.status.as_ref().map_or(0, |s| s.desired_number_scheduled);
        status.phase = Some("Complete".into());
        status.progress = Some(format!("{total}/{total}"));
        (
            status.updated,
            status.draining,
            status.pending,
            status.failed,
        ) = (total, 0, 0, 0);
        status.nodes.clear();
        status.evicted.clear();
        set(
            &mut status,
            READY,
            true,
            "RolloutComplete",
            "every node runs the new agent pod",
        );
        set(&mut status, PAUSED, false, "NotPaused", "");
        write_status(&ctx, &policy, &status).await?;
        return Ok(Action::await_change());
    }
    let agents = agents(&ctx, &ds).await?;
    let mut marks = marks;
    if spec_changed {
        for (node, mark) in marks.iter_mut().filter(|(_, m)| m.state == "failed") {
            patch_node(
                &ctx,
                node,
                &json!({"metadata": {"annotations": {
                    NODE_ANNOTATION: format!("{name}/draining/{}", now()),
                    REASON_ANNOTATION: null}}}),
            )
            .await?;
            *mark = Mark {
                state: "draining".into(),
                since: Timestamp::now(),
            };
        }
    }
    drive(
        &ctx,
        &policy,
        &spec,
        &waves,
        &nodes,
        &marks,
        &agents,
        &mut status,
    )
    .await?;
    write_status(&ctx, &policy, &status).await?;
    Ok(Action::requeue(TICK))
}

/// The namespace and DaemonSet name of the policy's target, if it exists.
async fn target(ctx: &Context, policy: &RolloutPolicy) -> Result<Option<(String, String)>, Error> {
    let t = &policy.spec.target_ref;
    Ok(match t.kind {
        RolloutTargetKind::ZTunnel => ctx
            .own
            .ztunnels
            .get(&ctx.client, &t.name)
            .await?
            .map(|z| (z.spec.namespace.clone(), ztunnel::daemonset_name(&z))),
        RolloutTargetKind::IstioCNI => ctx
            .own
            .cnis
            .get(&ctx.client, &t.name)
            .await?
            .map(|c| (c.spec.namespace.clone(), cni::DAEMONSET.to_string())),
    })
}

fn on_delete(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

/// The DaemonSet runs its current spec, updated and available, on every scheduled node.
fn complete(ds: &DaemonSet) -> bool {
    let Some(s) = &ds.status else { return false };
    s.observed_generation == ds.metadata.generation
        && s.updated_number_scheduled.unwrap_or(0) == s.desired_number_scheduled
        && s.number_available.unwrap_or(0) == s.desired_number_scheduled
}

/// A DaemonSet's pod selector as a label selector string (`k=v,…`; its `matchLabels`).
pub fn pod_selector(ds: &DaemonSet) -> String {
    ds.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.as_ref())
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// The agent pods, by node.
async fn agents(ctx: &Context, ds: &DaemonSet) -> Result<BTreeMap<String, Agent>, Error> {
    let namespace = ds.namespace().unwrap_or_default();
    let selector = pod_selector(ds);
    let revisions = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    let uid = ds.uid();
    let current = revisions
        .items
        .iter()
        .filter(|r| {
            r.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == uid.as_ref())
        })
        .max_by_key(|r| r.revision)
        .and_then(|r| r.labels().get("controller-revision-hash").cloned());
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await?;
    let mut agents: BTreeMap<String, Agent> = BTreeMap::new();
    for pod in pods.items {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let agent = agents.entry(node).or_default();
        let updated =
            current.is_some() && pod.labels().get("controller-revision-hash") == current.as_ref();
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if updated {
            agent.updated = true;
            agent.ready = pod_ready(&pod);
        } else {
            agent.old_pods.push(pod.name_any());
        }
    }
    Ok(agents)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Whether `node` is done: its agent pod runs the current revision, Ready, and no old one is
/// left.
fn done(agents: &BTreeMap<String, Agent>, node: &str) -> bool {
    agents
        .get(node)
        .is_some_and(|a| a.updated && a.ready && a.old_pods.is_empty())
}

/// One step of the rollout: advance the nodes under way, pass the gate, start new nodes.
#[allow(clippy::too_many_arguments)]
async fn drive(
    ctx: &Context,
    policy: &RolloutPolicy,
    spec: &mizzen_api::rollout::DrainWaves,
    waves: &Waves,
    nodes: &[Arc<Node>],
    marks: &BTreeMap<String, Mark>,
    agents: &BTreeMap<String, Agent>,
    status: &mut RolloutPolicyStatus,
) -> Result<(), Error> {
    let name = policy.name_any();
    let all = waves.all();
    let now_ts = Timestamp::now();
    if status.start_time.is_none() {
        status.start_time = Some(now());
        ctx.event(
            policy,
            EventType::Normal,
            "RolloutStarted",
            format!(
                "rolling out {} in {} wave(s) of the {} node(s)",
                status.version.clone().unwrap_or_default(),
                all.len(),
                all.iter().map(Vec::len).sum::<usize>()
            ),
        )
        .await;
    }
    // Nodes under way.
    let mut failed: Vec<(String, String)> = Vec::new();
    for (node, mark) in marks {
        if mark.state == "failed" {
            let why = nodes
                .iter()
                .find(|n| n.name_any() == *node)
                .and_then(|n| n.annotations().get(REASON_ANNOTATION).cloned())
                .unwrap_or_default();
            failed.push((node.clone(), why));
            continue;
        }
        if let Some(why) = advance(ctx, policy, spec, node, mark, agents, status).await? {
            failed.push((node.clone(), why));
        }
    }
    let wave_of = |node: &str| all.iter().position(|w| w.iter().any(|n| n == node));
    let under_way: BTreeSet<&String> = marks
        .iter()
        .filter(|(_, m)| m.state != "failed")
        .map(|(n, _)| n)
        .collect();
    let current = all
        .iter()
        .position(|w| w.iter().any(|n| !done(agents, n) || under_way.contains(n)));
    // Counts.
    let total: usize = all.iter().map(Vec::len).sum();
    let updated = all
        .iter()
        .flatten()
        .filter(|n| done(agents, n) && !marks.contains_key(*n))
        .count();
    status.updated = updated as i32;
    status.draining = under_way.len() as i32;
    status.failed = failed.len() as i32;
    status.pending = total.saturating_sub(updated + under_way.len() + failed.len()) as i32;
    let progress = format!("{updated}/{total}");
    if status.progress.as_deref() != Some(&progress) {
        estimate(status, updated, total, now_ts);
        status.progress = Some(progress);
    }
    status.nodes = all
        .iter()
        .flatten()
        .filter(|n| !done(agents, n) || marks.contains_key(*n))
        .map(|n| {
            let (state, reason) = match marks.get(n) {
                Some(m) if m.state == "failed" => (
                    "Failed",
                    failed.iter().find(|(f, _)| f == n).map(|(_, w)| w.clone()),
                ),
                Some(m) if m.state == "draining" => ("Draining", None),
                Some(_) => ("Replacing", None),
                None => ("Pending", None),
            };
            NodeRollout {
                name: n.clone(),
                state: state.into(),
                reason,
                wave: wave_of(n).map_or(0, |w| w as i32 + 1),
            }
        })
        .collect();
    if let Some((node, why)) = failed.first() {
        halt(
            status,
            "NodeFailed",
            format!(
                "node {node}: {why}; the rollout is paused. Fix the cause, then change the \
                 policy (e.g. set spec.paused to true and back to false) to retry the node"
            ),
        );
        status.phase = Some("Failed".into());
        return Ok(());
    }
    let Some(current) = current else {
        // Every node done; the DaemonSet's status follows.
        status.phase = Some("RollingOut".into());
        return Ok(());
    };
    status.wave = Some(format!("{}/{}", current + 1, all.len()));
    // A new wave starts once the previous one passed its gate and soaked.
    if current as i32 + 1 > status.current_wave {
        if status.current_wave > 0 {
            let completed = status.wave_completed_time.get_or_insert_with(now).clone();
            let completed: Timestamp = completed.parse().unwrap_or(now_ts);
            match gate(ctx, status, nodes, &all[..current], agents).await? {
                Gate::Open => {}
                Gate::Waiting(why) => {
                    let limit = spec.workload_timeout_seconds.unwrap_or(300);
                    if now_ts.duration_since(completed).as_secs() > limit {
                        halt(
                            status,
                            "GateFailed",
                            format!(
                                "wave {} did not pass its gate within {limit}s: {why}; the \
                                 rollout is paused",
                                status.current_wave
                            ),
                        );
                        status.phase = Some("Failed".into());
                    } else {
                        progressing(status, format!("wave {} gate: {why}", status.current_wave));
                    }
                    return Ok(());
                }
            }
            let soak = spec.soak_seconds.unwrap_or(0);
            let soaked = now_ts.duration_since(completed).as_secs();
            if soaked < soak {
                progressing(
                    status,
                    format!(
                        "wave {} passed its gate; soaking {}s more",
                        status.current_wave,
                        soak - soaked
                    ),
                );
                return Ok(());
            }
            ctx.event(
                policy,
                EventType::Normal,
                "WaveCompleted",
                format!("wave {}/{} completed", status.current_wave, all.len()),
            )
            .await;
        }
        if policy.spec.paused {
            paused(status, under_way.is_empty());
            return Ok(());
        }
        status.current_wave = current as i32 + 1;
        status.wave_completed_time = None;
        status.evicted.clear();
        ctx.event(
            policy,
            EventType::Normal,
            "WaveStarted",
            format!(
                "wave {}/{}: {}",
                current + 1,
                all.len(),
                all[current].join(", ")
            ),
        )
        .await;
    }
    if policy.spec.paused {
        paused(status, under_way.is_empty());
        return Ok(());
    }
    // Start nodes of the current wave, up to maxUnavailable at once.
    let drained_wave = current < waves.drained.len();
    let mut busy = under_way.len();
    for node in &all[current] {
        if busy >= waves.max_unavailable {
            break;
        }
        if done(agents, node) || marks.contains_key(node) {
            continue;
        }
        start(ctx, &name, node, nodes, drained_wave).await?;
        busy += 1;
    }
    if all[current]
        .iter()
        .all(|n| done(agents, n) && !marks.contains_key(n))
    {
        status.wave_completed_time.get_or_insert_with(now);
    }
    progressing(
        status,
        format!(
            "wave {}/{}: {} of {} node(s) updated",
            current + 1,
            all.len(),
            updated,
            total
        ),
    );
    Ok(())
}

/// The estimated completion time, from the pace so far; the caller recomputes it only when
/// a node finished, so it does not change (and cause a status write) on every look.
fn estimate(status: &mut RolloutPolicyStatus, updated: usize, total: usize, now: Timestamp) {
    let Some(start) = status
        .start_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok())
    else {
        return;
    };
    if updated == 0 || updated >= total {
        status.estimated_completion_time = None;
        return;
    }
    let elapsed = now.duration_since(start).as_secs_f64();
    let eta = start + jiff::SignedDuration::from_secs_f64(elapsed * total as f64 / updated as f64);
    status.estimated_completion_time = Some(
        eta.round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Second)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap_or(eta)
        .to_string(),
    );
}

enum Gate {
    Open,
    Waiting(String),
}

/// The gate after a wave: the nodes of the waves done are Ready and run a Ready agent pod,
/// and the workloads the wave evicted are Available again.
async fn gate(
    ctx: &Context,
    status: &RolloutPolicyStatus,
    nodes: &[Arc<Node>],
    done_waves: &[Vec<String>],
    agents: &BTreeMap<String, Agent>,
) -> Result<Gate, Error> {
    for n in done_waves.iter().flatten() {
        if let Some(node) = nodes.iter().find(|x| x.name_any() == *n)
            && !node_ready(node)
        {
            return Ok(Gate::Waiting(format!("node {n} is NotReady")));
        }
        if !done(agents, n) {
            return Ok(Gate::Waiting(format!(
                "the agent pod on node {n} is not Ready"
            )));
        }
    }
    for w in &status.evicted {
        if let Some(why) = unavailable(ctx, w).await? {
            return Ok(Gate::Waiting(why));
        }
    }
    Ok(Gate::Open)
}

/// Why workload `key` (`namespace/Kind/name`) is not Available again, if it is not.
async fn unavailable(ctx: &Context, key: &str) -> Result<Option<String>, Error> {
    let mut parts = key.splitn(3, '/');
    let (Some(ns), Some(kind), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
    let (want, have) = match kind {
        "ReplicaSet" => match Api::<ReplicaSet>::namespaced(ctx.client.clone(), ns)
            .get_opt(name)
            .await?
        {
            Some(rs) => (
                rs.spec.and_then(|s| s.replicas).unwrap_or(1),
                rs.status.and_then(|s| s.available_replicas).unwrap_or(0),
            ),
            None => return Ok(None),
        },
        "StatefulSet" => match Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
            .get_opt(name)
            .await?
        {
            Some(ss) => (
                ss.spec.and_then(|s| s.replicas).unwrap_or(1),
                ss.status.and_then(|s| s.available_replicas).unwrap_or(0),
            ),
            None => return Ok(None),
        },
        _ => return Ok(None),
    };
    Ok((have < want)
        .then(|| format!("{kind} {ns}/{name} has {have}/{want} replicas available again")))
}

/// Starts a node: cordon it and mark it draining, or (a node the selector leaves out) mark
/// it replacing without cordoning.
async fn start(
    ctx: &Context,
    policy: &str,
    node: &str,
    nodes: &[Arc<Node>],
    drain: bool,
) -> Result<(), Error> {
    let cordoned_already = nodes
        .iter()
        .find(|n| n.name_any() == node)
        .and_then(|n| n.spec.as_ref()?.unschedulable)
        .unwrap_or(false);
    let state = if drain { "draining" } else { "replacing" };
    let mut patch = json!({
        "metadata": {"annotations": {NODE_ANNOTATION: format!("{policy}/{state}/{}", now())}},
    });
    if drain && !cordoned_already {
        patch["spec"] = json!({"unschedulable": true});
        patch["metadata"]["annotations"][CORDONED_BY_ANNOTATION] = json!(policy);
    }
    patch_node(ctx, node, &patch).await
}

async fn patch_node(ctx: &Context, node: &str, patch: &serde_json::Value) -> Result<(), Error> {
    Api::<Node>::all(ctx.client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    Ok(())
}

/// Advances a node under way; returns why it failed, if it did now.
async fn advance(
    ctx: &Context,
    policy: &RolloutPolicy,
    spec: &mizzen_api::rollout::DrainWaves,
    node: &str,
    mark: &Mark,
    agents: &BTreeMap<String, Agent>,
    status: &mut RolloutPolicyStatus,
) -> Result<Option<String>, Error> {
    let name = policy.name_any();
    let limit = spec.node_timeout_seconds.unwrap_or(300);
    let late = Timestamp::now().duration_since(mark.since).as_secs() > limit;
    match mark.state.as_str() {
        "draining" => {
            let blocked = evict_ambient(ctx, node, status).await?;
            match blocked {
                None => {
                    // Drained: replace the agent pod.
                    delete_old_agents(ctx, policy, node, agents).await?;
                    patch_node(
                        ctx,
                        node,
                        &json!({"metadata": {"annotations": {
                            NODE_ANNOTATION: format!("{name}/replacing/{}", now())}}}),
                    )
                    .await?;
                    Ok(None)
                }
                Some(why) if late => fail(
                    ctx,
                    policy,
                    node,
                    &format!("not drained within {limit}s: {why}"),
                )
                .await
                .map(Some),
                Some(_) => Ok(None),
            }
        }
        "replacing" => {
            if done(agents, node) {
                finish(ctx, &name, node).await?;
                return Ok(None);
            }
            delete_old_agents(ctx, policy, node, agents).await?;
            if late {
                let why = format!("the new agent pod did not become Ready within {limit}s");
                return fail(ctx, policy, node, &why).await.map(Some);
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

async fn delete_old_agents(
    ctx: &Context,
    policy: &RolloutPolicy,
    node: &str,
    agents: &BTreeMap<String, Agent>,
) -> Result<(), Error> {
    let Some(agent) = agents.get(node) else {
        return Ok(());
    };
    let Some((namespace, _)) = target(ctx, policy).await? else {
        return Ok(());
    };
    for pod in &agent.old_pods {
        match Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
            .delete(pod, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A node done: uncordon it if this policy cordoned it, drop the marks.
async fn finish(ctx: &Context, policy: &str, node: &str) -> Result<(), Error> {
    let node_obj = ctx.own.nodes.get(&ctx.client, node).await?;
    let ours = node_obj
        .as_ref()
        .and_then(|n| n.annotations().get(CORDONED_BY_ANNOTATION).cloned())
        .is_some_and(|p| p == policy);
    let mut patch = json!({"metadata": {"annotations": {
        NODE_ANNOTATION: null, CORDONED_BY_ANNOTATION: null, REASON_ANNOTATION: null}}});
    if ours {
        patch["spec"] = json!({"unschedulable": null});
    }
    patch_node(ctx, node, &patch).await
}

/// Marks a node failed, with why; it stays cordoned (its agent may not work) and the status
/// says so.
async fn fail(
    ctx: &Context,
    policy: &RolloutPolicy,
    node: &str,
    why: &str,
) -> Result<String, Error> {
    patch_node(
        ctx,
        node,
        &json!({"metadata": {"annotations": {
            NODE_ANNOTATION: format!("{}/failed/{}", policy.name_any(), now()),
            REASON_ANNOTATION: why}}}),
    )
    .await?;
    ctx.event(
        policy,
        EventType::Warning,
        "NodeFailed",
        format!("node {node}: {why}"),
    )
    .await;
    Ok(why.to_string())
}

/// Evicts the ambient workload pods on `node`; `None` when none is left, else why not yet
/// (an eviction a PodDisruptionBudget blocks, named).
async fn evict_ambient(
    ctx: &Context,
    node: &str,
    status: &mut RolloutPolicyStatus,
) -> Result<Option<String>, Error> {
    let pods = Api::<Pod>::all(ctx.client.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    let mut left = None;
    for pod in pods.items.iter().filter(|p| evictable(ctx, p)) {
        let ns = pod.namespace().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            left.get_or_insert_with(|| format!("pod {ns}/{} is terminating", pod.name_any()));
            continue;
        }
        let owner = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{ns}/{}/{}", o.kind, o.name));
        // The client retries a 429 for as long as the server's Retry-After says, 15 times:
        // an eviction a budget refuses would hold the reconcile for minutes. One answer is
        // enough; the next look tries again.
        let eviction = tokio::time::timeout(
            EVICTION_WAIT,
            Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                .evict(&pod.name_any(), &EvictParams::default()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(kube::Error::Api(
                kube::core::Status::failure("eviction not granted in time", "TooManyRequests")
                    .with_code(429)
                    .boxed(),
            ))
        });
        match eviction {
            Ok(_) => {
                if let Some(o) = owner
                    && !status.evicted.contains(&o)
                {
                    status.evicted.push(o);
                }
                left.get_or_insert_with(|| format!("pod {ns}/{} is being evicted", pod.name_any()));
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(kube::Error::Api(s)) if s.code == 429 => {
                let pdb = blocking_budget(ctx, pod).await?;
                left = Some(format!(
                    "the eviction of pod {ns}/{} waits for PodDisruptionBudget {}",
                    pod.name_any(),
                    pdb.unwrap_or_else(|| "(not found)".into())
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(left)
}

/// Whether a pod on a node being drained is an ambient workload to evict: enrolled in ambient
/// mode (its label, or its namespace's), not owned by a DaemonSet, not a mirror pod, not
/// finished.
fn evictable(ctx: &Context, pod: &Pod) -> bool {
    let ambient = match pod
        .labels()
        .get(crate::inuse::DATAPLANE_MODE)
        .map(String::as_str)
    {
        Some(mode) => mode == "ambient",
        None => ctx
            .workloads
            .namespace_is_ambient(&pod.namespace().unwrap_or_default()),
    };
    let daemon = pod.owner_references().iter().any(|o| o.kind == "DaemonSet");
    let mirror = pod
        .annotations()
        .contains_key("kubernetes.io/config.mirror");
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    ambient && !daemon && !mirror && !finished
}

/// The PodDisruptionBudget whose selector matches `pod`, as `namespace/name`.
async fn blocking_budget(ctx: &Context, pod: &Pod) -> Result<Option<String>, Error> {
    let ns = pod.namespace().unwrap_or_default();
    let budgets = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    Ok(budgets
        .items
        .iter()
        .find(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| waves::matches(s, pod.labels()))
        })
        .map(|b| format!("{ns}/{}", b.name_any())))
}

/// Uncordons every node this policy cordoned and drops its marks.
async fn release(ctx: &Context, policy: &str, nodes: &[Arc<Node>]) -> Result<(), Error> {
    for n in nodes {
        let marked = mark_of(n, policy).is_some();
        let cordoned = n
            .annotations()
            .get(CORDONED_BY_ANNOTATION)
            .map(String::as_str)
            == Some(policy);
        if marked || cordoned {
            finish(ctx, policy, &n.name_any()).await?;
        }
    }
    Ok(())
}

/// Adds (`keep`) or removes the finalizer: a merge patch of the finalizers `policy` had, with
/// its resourceVersion as precondition (a merge patch never creates a policy that is already
/// gone, as an apply would; a stale copy gets a conflict and the reconcile comes back).
async fn set_finalizer(ctx: &Context, policy: &RolloutPolicy, keep: bool) -> Result<(), Error> {
    let mut finalizers: Vec<String> = policy
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    if keep {
        finalizers.push(FINALIZER.to_string());
    }
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": policy.resource_version(),
    }});
    match Api::<RolloutPolicy>::all(ctx.client.clone())
        .patch(
            &policy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn set(status: &mut RolloutPolicyStatus, type_: &str, value: bool, reason: &str, message: &str) {
    let c = Condition::new(
        type_,
        ConditionStatus::from_bool(value),
        reason,
        message.to_string(),
    );
    status.conditions.set_condition(
        Condition {
            observed_generation: status.observed_generation,
            ..c
        },
        &now(),
    );
}

fn idle(status: &mut RolloutPolicyStatus, message: &str) {
    status.phase = Some("Idle".into());
    status.wave = None;
    status.nodes.clear();
    set(status, READY, true, "RollingUpdate", message);
    set(status, PAUSED, false, "NotPaused", "");
}

fn halt(status: &mut RolloutPolicyStatus, reason: &str, message: String) {
    status.phase = Some("Paused".into());
    set(status, READY, false, reason, &message);
    set(status, PAUSED, true, reason, &message);
}

fn paused(status: &mut RolloutPolicyStatus, between_nodes: bool) {
    let message = if between_nodes {
        "spec.paused: halted between nodes; set it to false to go on"
    } else {
        "spec.paused: finishing the nodes under way, then halting"
    };
    status.phase = Some(
        if between_nodes {
            "Paused"
        } else {
            "RollingOut"
        }
        .into(),
    );
    set(status, READY, false, "Paused", message);
    set(status, PAUSED, true, "PausedBySpec", message);
}

fn progressing(status: &mut RolloutPolicyStatus, message: String) {
    status.phase = Some("RollingOut".into());
    set(status, READY, false, "RollingOut", &message);
    set(status, PAUSED, false, "NotPaused", "");
}

async fn write_status(
    ctx: &Context,
    policy: &RolloutPolicy,
    status: &RolloutPolicyStatus,
) -> Result<(), Error> {
    match patch_status(&ctx.client, policy, policy.status.as_ref(), status).await {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
