//! What each step of a [`Plan`] does to the cluster, before anything changes: the objects the
//! operator will create, change or delete (its own render for the step's version, compared
//! with the live objects the way its applier compares them), and the pods that restart and
//! on how many nodes.
//!
//! Every step is compared with the cluster as it is now; in a plan of several hops, a later
//! hop's changes are therefore counted from today's objects, not from the previous hop's.

use std::collections::{BTreeSet, HashMap};

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use mizzen_api::rollout::RolloutTargetKind;
use mizzen_api::{Istio, UpdateStrategyType};
use mizzen_catalog::{Catalog, revision_name};
use mizzen_controller::apply::{Owner, gvk_of, would_change};
use mizzen_render::{Object, Platform};
use serde_json::Value;

use crate::mesh::Mesh;
use crate::plan::{Plan, Step, StepKind};

/// Objects a step creates, changes and deletes, as `Kind namespace/name`.
#[derive(Debug, Default)]
struct Changes {
    created: Vec<String>,
    changed: Vec<String>,
    deleted: Vec<String>,
    unchanged: usize,
}

impl Changes {
    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (verb, list) in [
            ("creates", &self.created),
            ("changes", &self.changed),
            ("deletes", &self.deleted),
        ] {
            if !list.is_empty() {
                lines.push(format!("{verb} {}: {}", list.len(), list.join(", ")));
            }
        }
        if self.unchanged > 0 {
            lines.push(format!("leaves {} objects as they are", self.unchanged));
        }
        lines
    }
}

fn describe(obj: &Value) -> String {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Reads live objects of any kind, with one discovery request per kind.
struct Live<'a> {
    client: &'a Client,
    kinds: HashMap<GroupVersionKind, ApiResource>,
}

impl<'a> Live<'a> {
    fn new(client: &'a Client) -> Self {
        Self {
            client,
            kinds: HashMap::new(),
        }
    }

    async fn resource(&mut self, gvk: &GroupVersionKind) -> kube::Result<ApiResource> {
        if let Some(r) = self.kinds.get(gvk) {
            return Ok(r.clone());
        }
        let (r, _) = kube::discovery::pinned_kind(self.client, gvk).await?;
        self.kinds.insert(gvk.clone(), r.clone());
        Ok(r)
    }

    fn api(&self, r: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, r),
            None => Api::all_with(self.client.clone(), r),
        }
    }

    /// What applying `desired` for `owner` (`None`: an owner that does not exist yet, so
    /// every object is new) does, and what pruning by the owner's inventory label deletes.
    async fn compare(
        &mut self,
        desired: &[Value],
        owner: Option<(&Owner, (&str, &str))>,
        prunable: &[GroupVersionKind],
    ) -> anyhow::Result<Changes> {
        let mut changes = Changes::default();
        let Some((owner_ref, inventory)) = owner else {
            changes.created = desired.iter().map(describe).collect();
            return Ok(changes);
        };
        let mut kept = BTreeSet::new();
        for obj in desired {
            let gvk = gvk_of(obj)?;
            let r = self.resource(&gvk).await?;
            let name = obj["metadata"]["name"].as_str().unwrap_or_default();
            let namespace = obj["metadata"]["namespace"].as_str();
            kept.insert((
                gvk.kind.clone(),
                namespace.map(str::to_string),
                name.to_string(),
            ));
            match self.api(&r, namespace).get_opt(name).await? {
                None => changes.created.push(describe(obj)),
                Some(live) => match would_change(obj, Some((owner_ref, inventory)), &live) {
                    Some(_) => changes.changed.push(describe(obj)),
                    None => changes.unchanged += 1,
                },
            }
        }
        let selector = format!("{}={}", inventory.0, inventory.1);
        for gvk in prunable {
            let Ok(r) = self.resource(gvk).await else {
                continue; // a kind the cluster does not serve has nothing to prune
            };
            let live = self
                .api(&r, None)
                .list_metadata(&ListParams::default().labels(&selector))
                .await?;
            for o in live.items {
                let key = (gvk.kind.clone(), o.namespace(), o.name_any());
                if !kept.contains(&key) && o.metadata.deletion_timestamp.is_none() {
                    changes.deleted.push(match &key.1 {
                        Some(ns) => format!("{} {ns}/{}", key.0, key.2),
                        None => format!("{} {}", key.0, key.2),
                    });
                }
            }
        }
        Ok(changes)
    }
}

/// Whether a `DrainWaves` policy drives the data-plane component of `kind` (both are
/// singletons named `default`).
fn drives(mesh: &Mesh, kind: RolloutTargetKind) -> bool {
    mizzen_controller::rollout::drives(&mesh.policies, kind, "default")
}

fn json_of(objects: Vec<Object>) -> Vec<Value> {
    objects.into_iter().map(Object::into_json).collect()
}

fn owner_of<K: kube::Resource<DynamicType = ()>>(obj: &K) -> Owner {
    mizzen_controller::owner_of(obj)
}

/// Fills in each step's effects from the live cluster.
pub async fn fill(
    client: &Client,
    catalog: &Catalog,
    platform: Platform,
    mesh: &Mesh,
    plan: &mut Plan,
) -> anyhow::Result<()> {
    let mut live = Live::new(client);
    let istio = mesh
        .istios
        .iter()
        .find(|i| i.name_any() == plan.istio)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("Istio {} not found", plan.istio))?;
    let revision_based = istio.spec.update_strategy.as_ref().map(|s| s.type_)
        == Some(UpdateStrategyType::RevisionBased);
    for step in &mut plan.steps {
        let effects = match step.kind {
            StepKind::ControlPlane => {
                control_plane(
                    &mut live,
                    catalog,
                    platform,
                    mesh,
                    &istio,
                    revision_based,
                    step,
                )
                .await
            }
            StepKind::IstioCni => istio_cni(&mut live, catalog, platform, mesh, step).await,
            StepKind::Ztunnel => ztunnel(&mut live, catalog, platform, mesh, step).await,
            StepKind::Prune => Ok(prune(mesh, &istio, catalog, step)),
        };
        // A user who may patch the mesh's resources but not read their children (or a render
        // that fails) still gets the plan, with the reason its effects are missing.
        step.effects = effects.unwrap_or_else(|e| {
            vec![format!(
                "what it changes could not be worked out: {}",
                e.root_cause()
            )]
        });
    }
    Ok(())
}

async fn control_plane(
    live: &mut Live<'_>,
    catalog: &Catalog,
    platform: Platform,
    mesh: &Mesh,
    istio: &Istio,
    revision_based: bool,
    step: &Step,
) -> anyhow::Result<Vec<String>> {
    let resolved = catalog.resolve(&step.to)?;
    let name = revision_name(&istio.name_any(), revision_based, &resolved.version)?;
    let existing = mesh.revisions.iter().find(|r| r.name_any() == name);
    let rev = mizzen_controller::desired::revision_of(istio, &name, &resolved.version, platform)?;
    let objects = json_of(mizzen_controller::desired::revision_objects(
        &rev, &resolved, platform,
    )?);
    let mut lines = vec![match existing {
        Some(_) => format!(
            "IstioRevision {name}: spec.version {} -> {}",
            step.from, step.to
        ),
        None => format!("creates IstioRevision {name}"),
    }];
    let owner = existing.map(owner_of);
    let inventory = mizzen_render::Owner::istio_revision(&name).label();
    let changes = live
        .compare(
            &objects,
            owner
                .as_ref()
                .map(|o| (o, (inventory.0, inventory.1.as_str()))),
            &mizzen_controller::revision::prunable_kinds(),
        )
        .await?;
    lines.extend(changes.lines().into_iter().map(|l| format!("  {l}")));
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or("istiod")
        .to_string();
    lines.push(match existing {
        Some(_) => {
            let replicas = live_replicas(live, &istio.spec.namespace, &deployment).await;
            format!(
                "pods: Deployment {deployment} rolls out, {replicas} pod(s) replaced; workloads \
                 reconnect to the new ones"
            )
        }
        None => format!(
            "pods: a second istiod (Deployment {deployment}) starts beside the running one; \
             ambient workloads move to it through the Service istiod-active-{}",
            istio.name_any()
        ),
    });
    Ok(lines)
}

async fn live_replicas(live: &Live<'_>, namespace: &str, name: &str) -> i32 {
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(live.client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.status.and_then(|s| s.replicas))
        .unwrap_or(0)
}

fn nodes(ds: Option<&k8s_openapi::api::apps::v1::DaemonSet>) -> i32 {
    ds.and_then(|d| d.status.as_ref())
        .map(|s| s.desired_number_scheduled)
        .unwrap_or(0)
}

/// A data-plane step: the objects of `owner` rendered as `objects`, against the live ones,
/// then `pods`.
async fn data_plane(
    live: &mut Live<'_>,
    objects: Vec<Object>,
    drain_waves: bool,
    owner: &Owner,
    inventory: &mizzen_render::Owner,
    prunable: &[GroupVersionKind],
    pods: String,
) -> anyhow::Result<Vec<String>> {
    let inventory = inventory.label();
    let changes = live
        .compare(
            &mizzen_controller::desired::with_rollout(objects, drain_waves),
            Some((owner, (inventory.0, &inventory.1))),
            prunable,
        )
        .await?;
    let mut lines = changes.lines();
    lines.push(pods);
    Ok(lines)
}

async fn istio_cni(
    live: &mut Live<'_>,
    catalog: &Catalog,
    platform: Platform,
    mesh: &Mesh,
    step: &Step,
) -> anyhow::Result<Vec<String>> {
    let Some(mut cni) = mesh.cni.clone() else {
        return Ok(Vec::new());
    };
    let owner = owner_of(&cni);
    cni.spec.version = step.to.clone();
    let resolved = catalog.resolve(&step.to)?;
    let objects = mizzen_controller::desired::cni_objects(&cni, &resolved, platform)?;
    let pods = format!(
        "pods: istio-cni-node restarts on {} node(s), one node at a time; traffic redirection \
         already set up stays in place",
        nodes(mesh.cni_daemonset.as_ref())
    );
    data_plane(
        live,
        objects,
        drives(mesh, RolloutTargetKind::IstioCNI),
        &owner,
        &mizzen_render::Owner::istio_cni(mizzen_controller::cni::NAME),
        &mizzen_controller::cni::prunable_kinds(true),
        pods,
    )
    .await
}

async fn ztunnel(
    live: &mut Live<'_>,
    catalog: &Catalog,
    platform: Platform,
    mesh: &Mesh,
    step: &Step,
) -> anyhow::Result<Vec<String>> {
    let Some(mut zt) = mesh.ztunnel.clone() else {
        return Ok(Vec::new());
    };
    let owner = owner_of(&zt);
    zt.spec.version = step.to.clone();
    let resolved = catalog.resolve(&step.to)?;
    let target = mizzen_controller::ztunnel::resolve(&zt, &mesh.istios, &mesh.revisions)
        .map_err(|r| anyhow::anyhow!("{}", r.message))?;
    let objects = mizzen_controller::ztunnel::render(&zt, &target, &resolved, platform)?;
    let drained = drives(mesh, RolloutTargetKind::ZTunnel);
    let pods = if drained {
        format!(
            "pods: a DrainWaves RolloutPolicy drains each of the {} node(s), wave by wave, \
             before its ztunnel restarts (docs/rollout.md)",
            nodes(mesh.ztunnel_daemonset.as_ref())
        )
    } else {
        format!(
            "pods: ztunnel restarts on {} node(s), one node at a time; long-lived connections \
             through a node's ztunnel are reset when it restarts",
            nodes(mesh.ztunnel_daemonset.as_ref())
        )
    };
    data_plane(
        live,
        objects,
        drained,
        &owner,
        &mizzen_render::Owner::ztunnel(mizzen_controller::ztunnel::NAME),
        &mizzen_controller::ztunnel::prunable_kinds(),
        pods,
    )
    .await
}

fn prune(mesh: &Mesh, istio: &Istio, catalog: &Catalog, step: &Step) -> Vec<String> {
    let grace = mizzen_controller::istio::grace(istio);
    let keep = catalog
        .resolve(&step.to)
        .ok()
        .and_then(|r| revision_name(&istio.name_any(), true, &r.version).ok());
    let name = istio.name_any();
    let old: Vec<String> = mesh
        .revisions_of(&name)
        .filter(|r| Some(r.name_any()) != keep)
        .map(ResourceExt::name_any)
        .collect();
    vec![format!(
        "the operator deletes {} and {} istiod {grace}s after nothing uses {}; `mizzen rollback` \
         returns to it until then",
        if old.is_empty() {
            "the previous revision".to_string()
        } else {
            format!("IstioRevision {}", old.join(", "))
        },
        if old.len() > 1 { "their" } else { "its" },
        if old.len() > 1 { "them" } else { "it" },
    )]
}
