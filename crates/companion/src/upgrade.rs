//! `mizzen upgrade` and `mizzen rollback`: carry out a [`Plan`] one resource at a time.
//!
//! Each step is one merge patch of one resource's `spec.version` (a single request, so an
//! interruption never leaves a resource half-patched), then a wait until that resource is
//! `Ready` for the generation the patch made: the condition's `observedGeneration` must
//! have caught up, so a stale `Ready` from before the patch never counts. Nothing is kept
//! locally: a run that starts again after Ctrl-C or a crash computes the plan from what the
//! cluster says, finishes any rollout still under way, and goes on with the steps left.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use mizzen_api::condition_types::{READY, RECONCILED};
use mizzen_api::{Condition, ConditionStatus, Istio, IstioCNI, IstioRevision, ZTunnel};

use crate::commands::Refusal;
use crate::mesh::Mesh;
use crate::plan::{Plan, Step, StepKind};

/// What a gate saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready for the current generation.
    Ready,
    /// Not yet: what it waits for, and nodes updated / total when it is a DaemonSet.
    Waiting {
        /// The `Ready` message (or why there is none).
        message: String,
        /// Nodes updated and nodes in all, for the data plane.
        nodes: Option<(i32, i32)>,
    },
    /// The operator refused the change: waiting will not help.
    Refused(String),
}

/// The resource a step or gate is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its kind.
    pub kind: StepKind,
    /// Its name.
    pub name: String,
}

impl Target {
    /// The resource of `step`.
    pub fn of(step: &Step) -> Self {
        Self {
            kind: step.kind,
            name: step.name.clone(),
        }
    }

    fn describe(&self) -> String {
        format!("{} {}", self.kind.kind(), self.name)
    }

    /// Sets `spec.version` (one merge patch, applied whole or not at all).
    pub async fn patch(&self, client: &Client, version: &str) -> kube::Result<()> {
        let patch = Patch::Merge(serde_json::json!({"spec": {"version": version}}));
        let pp = PatchParams::default();
        match self.kind {
            StepKind::Prune => {}
            StepKind::ControlPlane => {
                Api::<Istio>::all(client.clone())
                    .patch(&self.name, &pp, &patch)
                    .await?;
            }
            StepKind::IstioCni => {
                Api::<IstioCNI>::all(client.clone())
                    .patch(&self.name, &pp, &patch)
                    .await?;
            }
            StepKind::Ztunnel => {
                Api::<ZTunnel>::all(client.clone())
                    .patch(&self.name, &pp, &patch)
                    .await?;
            }
        }
        Ok(())
    }

    /// Whether the resource is Ready for its current generation.
    pub async fn readiness(&self, client: &Client) -> kube::Result<Readiness> {
        // The generation, the conditions, and where the data plane's DaemonSet is.
        let (generation, conditions, daemonset) = match self.kind {
            StepKind::ControlPlane | StepKind::Prune => {
                let i = Api::<Istio>::all(client.clone()).get(&self.name).await?;
                let c = i.status.map(|s| s.conditions).unwrap_or_default();
                (i.metadata.generation, c, None)
            }
            StepKind::IstioCni => {
                let c = Api::<IstioCNI>::all(client.clone()).get(&self.name).await?;
                let ds = (
                    c.spec.namespace.clone(),
                    mizzen_controller::cni::DAEMONSET.to_string(),
                );
                let conditions = c.status.map(|s| s.conditions).unwrap_or_default();
                (c.metadata.generation, conditions, Some(ds))
            }
            StepKind::Ztunnel => {
                let z = Api::<ZTunnel>::all(client.clone()).get(&self.name).await?;
                let ds = (
                    z.spec.namespace.clone(),
                    mizzen_controller::ztunnel::daemonset_name(&z),
                );
                let conditions = z.status.map(|s| s.conditions).unwrap_or_default();
                (z.metadata.generation, conditions, Some(ds))
            }
        };
        let find = |t: &str| conditions.iter().find(|c| c.type_ == t);
        let current = |c: &&Condition| c.observed_generation.is_none_or(|g| Some(g) == generation);
        let nodes = match daemonset {
            Some((namespace, name)) => Api::<DaemonSet>::namespaced(client.clone(), &namespace)
                .get_opt(&name)
                .await?
                .as_ref()
                .map(mizzen_controller::dataplane::daemonset_progress)
                .map(|p| (p.updated, p.desired)),
            None => None,
        };
        Ok(match find(READY).filter(current) {
            Some(c) if c.status == ConditionStatus::True => Readiness::Ready,
            Some(c) if c.reason.as_deref() == Some("SpecNotApplied") => Readiness::Refused(
                find(RECONCILED)
                    .and_then(|r| r.message.clone())
                    .or_else(|| c.message.clone())
                    .unwrap_or_default(),
            ),
            Some(c) => Readiness::Waiting {
                message: c.message.clone().unwrap_or_default(),
                nodes,
            },
            None => Readiness::Waiting {
                message: UNOBSERVED.into(),
                nodes,
            },
        })
    }
}

/// What a resource waits for while the operator has not reported on its current generation.
const UNOBSERVED: &str = "waiting for the operator to take up the change";

/// After this long without the operator taking up a change, the wait says it may not run.
const OPERATOR_HINT_AFTER: Duration = Duration::from_secs(10);

/// An API error as a one-line refusal: what was being done to what, and the server's answer.
fn refusal(action: &str, target: &Target, e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if s.code == 403 => Refusal::wrap(format!(
            "forbidden to {action} {}: {}",
            target.describe(),
            s.message
        )),
        e => Refusal::wrap(format!("could not {action} {}: {e}", target.describe())),
    }
}

/// How progress is shown while waiting.
pub trait Progress {
    /// A new wait begins.
    fn start(&mut self, what: &str);
    /// Something changed while waiting.
    fn update(&mut self, message: &str, nodes: Option<(i32, i32)>);
    /// The wait ended.
    fn finish(&mut self, message: &str);
    /// A line outside any wait.
    fn line(&mut self, message: &str);
}

/// How a run ended, when it did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step done and every gate passed.
    Done,
    /// Stopped after a step, as `--pause-after` asked.
    Paused(StepKind),
}

/// The settings of one run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long each wait may take.
    pub timeout: Duration,
    /// Stop after this step.
    pub pause_after: Option<StepKind>,
    /// How often to look again.
    pub poll: Duration,
    /// The command that continues the run, for messages (`mizzen upgrade --to v1.26.4`).
    pub again: String,
}

/// Waits until `target` is Ready for its current generation.
pub async fn wait_ready(
    client: &Client,
    target: &Target,
    settings: &Settings,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let started = Instant::now();
    progress.start(&format!("waiting for {} to be Ready", target.describe()));
    let mut last = None;
    loop {
        let readiness = target
            .readiness(client)
            .await
            .map_err(|e| refusal("read", target, e))?;
        match readiness {
            Readiness::Ready => {
                progress.finish(&format!(
                    "{} is Ready ({:.1}s)",
                    target.describe(),
                    started.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            Readiness::Refused(message) => {
                progress.finish(&format!("{} refused the change", target.describe()));
                return Err(Refusal::wrap(format!(
                    "{} did not take the change: {message}",
                    target.describe()
                )));
            }
            Readiness::Waiting { mut message, nodes } => {
                if message == UNOBSERVED && started.elapsed() > OPERATOR_HINT_AFTER {
                    message += " (no answer yet: is mizzen running?)";
                }
                if last.as_ref() != Some(&(message.clone(), nodes)) {
                    progress.update(&message, nodes);
                    last = Some((message.clone(), nodes));
                }
                if started.elapsed() > settings.timeout {
                    progress.finish(&format!("{} is not Ready", target.describe()));
                    return Err(Refusal::wrap(format!(
                        "{} was not Ready after {:?}: {message}. Nothing more was changed; once \
                         it is Ready, run `{}` to go on",
                        target.describe(),
                        settings.timeout,
                        settings.again
                    )));
                }
            }
        }
        tokio::time::sleep(settings.poll).await;
    }
}

/// The gates that come before the steps: every existing resource of the plan's mesh must be
/// Ready, so that a run started again finishes a rollout an earlier run left under way.
pub fn gates(plan: &Plan, mesh: &Mesh) -> Vec<Target> {
    let mut gates = vec![Target {
        kind: StepKind::ControlPlane,
        name: plan.istio.clone(),
    }];
    if let Some(c) = &mesh.cni {
        gates.push(Target {
            kind: StepKind::IstioCni,
            name: c.name_any(),
        });
    }
    if let Some(z) = &mesh.ztunnel {
        gates.push(Target {
            kind: StepKind::Ztunnel,
            name: z.name_any(),
        });
    }
    gates
}

/// Carries out `plan`: the gates, then each step (patch, wait until Ready; for the prune step
/// of a RevisionBased Istio, wait until the operator pruned the revisions nothing uses).
pub async fn run(
    client: &Client,
    mesh: &Mesh,
    plan: &Plan,
    settings: &Settings,
    progress: &mut dyn Progress,
) -> anyhow::Result<Outcome> {
    for gate in gates(plan, mesh) {
        let readiness = gate
            .readiness(client)
            .await
            .map_err(|e| refusal("read", &gate, e))?;
        if readiness != Readiness::Ready {
            progress.line(&format!(
                "{} is not Ready yet (a rollout under way, perhaps from an earlier run): waiting",
                gate.describe()
            ));
            wait_ready(client, &gate, settings, progress).await?;
        }
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let target = Target::of(step);
        progress.line(&format!(
            "step {}/{}: {} {} -> {}",
            i + 1,
            plan.steps.len(),
            target.describe(),
            step.from,
            step.to
        ));
        if step.kind == StepKind::Prune {
            wait_pruned(client, plan, settings, progress).await?;
            continue;
        }
        target
            .patch(client, &step.to)
            .await
            .map_err(|e| refusal("patch", &target, e))?;
        wait_ready(client, &target, settings, progress).await?;
        if settings.pause_after == Some(step.kind) && i + 1 < plan.steps.len() {
            progress.line(&format!(
                "paused after the {} step, as asked; run `{}` to go on",
                step.kind.name(),
                settings.again
            ));
            return Ok(Outcome::Paused(step.kind));
        }
    }
    Ok(Outcome::Done)
}

/// Waits until the Istio's inactive revisions that nothing uses are pruned; one still in use
/// is reported, not waited for (the workloads that use it must move first).
async fn wait_pruned(
    client: &Client,
    plan: &Plan,
    settings: &Settings,
    progress: &mut dyn Progress,
) -> anyhow::Result<()> {
    let istio = Api::<Istio>::all(client.clone()).get(&plan.istio).await?;
    let grace = mizzen_controller::istio::grace(&istio);
    let active = istio
        .status
        .as_ref()
        .and_then(|s| s.active_revision_name.clone());
    let started = Instant::now();
    let mut announced = false;
    loop {
        let revisions: Vec<IstioRevision> = Api::<IstioRevision>::all(client.clone())
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|r| crate::mesh::owned_by(r, &plan.istio) && Some(r.name_any()) != active)
            .collect();
        if revisions.is_empty() {
            if announced {
                progress.finish("the previous revision is pruned");
            }
            return Ok(());
        }
        let in_use: Vec<String> = revisions
            .iter()
            .filter(|r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "InUse"))
                    .is_none_or(|c| c.status != ConditionStatus::False)
            })
            .map(|r| {
                let by = r
                    .status
                    .as_ref()
                    .map(|s| s.in_use_by.join(", "))
                    .unwrap_or_default();
                format!("{} (in use by {by})", r.name_any())
            })
            .collect();
        if in_use.len() == revisions.len() && started.elapsed() > Duration::from_secs(5) {
            if announced {
                progress.finish("");
            }
            progress.line(&format!(
                "kept: {}; the operator prunes a revision {grace}s after nothing uses it \
                 (`mizzen rollback` returns to it until then)",
                in_use.join("; ")
            ));
            return Ok(());
        }
        if !announced {
            progress.start(&format!(
                "waiting for the operator to prune {} ({grace}s after nothing uses it)",
                revisions
                    .iter()
                    .map(|r| r.name_any())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            announced = true;
        }
        if started.elapsed() > settings.timeout + Duration::from_secs(grace.max(0) as u64) {
            progress.finish("");
            return Err(Refusal::wrap(format!(
                "the previous revisions were not pruned in time: {}",
                revisions
                    .iter()
                    .map(|r| r.name_any())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        tokio::time::sleep(settings.poll).await;
    }
}
