//! `mizzen status`: the whole mesh lifecycle on one screen (pure: from a [`Mesh`] snapshot,
//! the catalog and the time).

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::{Resource, ResourceExt};
use mizzen_api::condition_types::{IN_USE, READY};
use mizzen_api::{Condition, ConditionStatus, Istio, IstioRevision, UpdateStrategyType};
use mizzen_catalog::{Catalog, Component, Version, check_dataplane};
use serde::Serialize;

use crate::mesh::Mesh;
use crate::plan::DATA_PLANE_RULE;

/// Everything `mizzen status` shows.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Every Istio, with its revisions.
    pub istios: Vec<IstioReport>,
    /// The IstioCNI, when there is one.
    pub istio_cni: Option<DataPlaneReport>,
    /// The ZTunnel, when there is one.
    pub ztunnel: Option<DataPlaneReport>,
    /// Every IstioRevisionTag.
    pub tags: Vec<TagReport>,
    /// The skew verdict of every pair of a data-plane component and a control plane it serves.
    pub skew: Vec<SkewReport>,
    /// Versions in use that are end of life, or the oldest the catalog supports.
    pub end_of_life: Vec<String>,
    /// What to do next, in one line.
    pub next: String,
}

/// One Istio.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioReport {
    /// Name.
    pub name: String,
    /// Its control plane's namespace.
    pub namespace: String,
    /// `InPlace` or `RevisionBased`.
    pub strategy: String,
    /// `spec.version` as written.
    pub version: String,
    /// What it resolves to in the catalog, or why it does not.
    pub resolved: String,
    /// `status.state`.
    pub state: String,
    /// `Ready` is True for the current generation.
    pub ready: bool,
    /// The operator has not observed the current generation.
    pub unobserved: bool,
    /// `status.activeRevisionName`.
    pub active_revision: String,
    /// Its revisions, oldest first.
    pub revisions: Vec<RevisionReport>,
}

/// One IstioRevision.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionReport {
    /// Name.
    pub name: String,
    /// `spec.version`.
    pub version: String,
    /// The active revision of its Istio.
    pub active: bool,
    /// `Ready`: True, False or Unknown.
    pub ready: String,
    /// `InUse`: True, False or Unknown.
    pub in_use: String,
    /// What keeps it in use.
    pub in_use_by: Vec<String>,
    /// Seconds until the operator prunes it, when it is unused and inactive.
    pub pruned_in_seconds: Option<i64>,
}

/// The IstioCNI or the ZTunnel.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataPlaneReport {
    /// `IstioCNI` or `ZTunnel`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace of its DaemonSet.
    pub namespace: String,
    /// `spec.version`.
    pub version: String,
    /// `status.state`.
    pub state: String,
    /// `Ready` is True for the current generation.
    pub ready: bool,
    /// `Ready`'s message (rollout progress, refusal).
    pub message: String,
    /// The operator has not observed the current generation.
    pub unobserved: bool,
    /// Nodes whose pod runs the current spec.
    pub nodes_updated: i32,
    /// Nodes that should run a pod.
    pub nodes_total: i32,
    /// The revisions it works with.
    pub control_planes: Vec<String>,
}

/// One IstioRevisionTag.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagReport {
    /// Name.
    pub name: String,
    /// `Istio default`, `IstioRevision default-v1-26-4`.
    pub target: String,
    /// `status.istioRevision`.
    pub revision: String,
    /// `InUse`.
    pub in_use: String,
}

/// The skew rule for one pair.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkewReport {
    /// `IstioCNI` or `ZTunnel`.
    pub component: String,
    /// Its version.
    pub version: String,
    /// The revision it is compared with.
    pub control_plane: String,
    /// That revision's version.
    pub control_plane_version: String,
    /// Whether the pair keeps the rule.
    pub ok: bool,
    /// The rule.
    pub rule: String,
    /// Why not, when it does not.
    pub detail: String,
}

fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn condition_status(conditions: &[Condition], type_: &str) -> String {
    condition(conditions, type_)
        .map(|c| format!("{:?}", c.status))
        .unwrap_or_else(|| "Unknown".into())
}

/// Whether `Ready` is True and was computed for `generation`.
fn ready_now(conditions: &[Condition], generation: Option<i64>) -> bool {
    condition(conditions, READY).is_some_and(|c| {
        c.status == ConditionStatus::True
            && (c.observed_generation.is_none() || c.observed_generation == generation)
    })
}

fn version_of(rev: &IstioRevision) -> Option<Version> {
    rev.spec.version.parse().ok()
}

fn istio_report(istio: &Istio, mesh: &Mesh, catalog: &Catalog, now: Timestamp) -> IstioReport {
    let status = istio.status.clone().unwrap_or_default();
    let active = status.active_revision_name.clone().unwrap_or_default();
    let grace = mizzen_controller::istio::grace(istio);
    let name = istio.name_any();
    let mut revisions: Vec<&IstioRevision> = mesh.revisions_of(&name).collect();
    revisions.sort_by_key(|r| {
        (
            r.metadata.creation_timestamp.clone().map(|t| t.0),
            r.name_any(),
        )
    });
    IstioReport {
        name: istio.name_any(),
        namespace: istio.spec.namespace.clone(),
        strategy: format!(
            "{:?}",
            istio
                .spec
                .update_strategy
                .as_ref()
                .map(|s| s.type_)
                .unwrap_or(UpdateStrategyType::InPlace)
        ),
        version: istio.spec.version.clone(),
        resolved: match catalog.resolve(&istio.spec.version) {
            Ok(r) => r.version.to_string(),
            Err(e) => e.to_string(),
        },
        state: status.state.clone().unwrap_or_default(),
        ready: ready_now(&status.conditions, istio.meta().generation),
        unobserved: status.observed_generation != istio.meta().generation,
        revisions: revisions
            .iter()
            .map(|r| {
                let s = r.status.clone().unwrap_or_default();
                RevisionReport {
                    name: r.name_any(),
                    version: r.spec.version.clone(),
                    active: r.name_any() == active,
                    ready: condition_status(&s.conditions, READY),
                    in_use: condition_status(&s.conditions, IN_USE),
                    in_use_by: s.in_use_by.clone(),
                    pruned_in_seconds: mizzen_controller::istio::prune_at(r, Some(&active), grace)
                        .map(|at| at.duration_since(now).as_secs().max(0)),
                }
            })
            .collect(),
        active_revision: active,
    }
}

/// The `(rollout progress)` of a DaemonSet: nodes updated and nodes that should run it.
fn nodes(ds: Option<&DaemonSet>) -> (i32, i32) {
    ds.map(mizzen_controller::dataplane::daemonset_progress)
        .map(|p| (p.updated, p.desired))
        .unwrap_or((0, 0))
}

/// The status of the mesh.
pub fn status(mesh: &Mesh, catalog: &Catalog, now: Timestamp) -> Status {
    let istios: Vec<IstioReport> = mesh
        .istios
        .iter()
        .map(|i| istio_report(i, mesh, catalog, now))
        .collect();
    let active_revisions: Vec<&IstioRevision> = istios
        .iter()
        .filter_map(|i| {
            mesh.revisions
                .iter()
                .find(|r| r.name_any() == i.active_revision)
        })
        .collect();
    let revision = |name: &str| mesh.revisions.iter().find(|r| r.name_any() == name);
    let istio_cni = mesh.cni.as_ref().map(|c| {
        let s = c.status.clone().unwrap_or_default();
        let (updated, total) = nodes(mesh.cni_daemonset.as_ref());
        DataPlaneReport {
            kind: "IstioCNI".into(),
            name: c.name_any(),
            namespace: c.spec.namespace.clone(),
            version: c.spec.version.clone(),
            state: s.state.clone().unwrap_or_default(),
            ready: ready_now(&s.conditions, c.meta().generation),
            message: ready_message(&s.conditions),
            unobserved: s.observed_generation != c.meta().generation,
            nodes_updated: updated,
            nodes_total: total,
            control_planes: active_revisions.iter().map(|r| r.name_any()).collect(),
        }
    });
    let ztunnel = mesh.ztunnel.as_ref().map(|z| {
        let s = z.status.clone().unwrap_or_default();
        let (updated, total) = nodes(mesh.ztunnel_daemonset.as_ref());
        DataPlaneReport {
            kind: "ZTunnel".into(),
            name: z.name_any(),
            namespace: z.spec.namespace.clone(),
            version: z.spec.version.clone(),
            state: s.state.clone().unwrap_or_default(),
            ready: ready_now(&s.conditions, z.meta().generation),
            message: ready_message(&s.conditions),
            unobserved: s.observed_generation != z.meta().generation,
            nodes_updated: updated,
            nodes_total: total,
            control_planes: s.istio_revision.clone().into_iter().collect(),
        }
    });
    let mut skew = Vec::new();
    for (component, report) in [
        (Component::IstioCni, &istio_cni),
        (Component::ZTunnel, &ztunnel),
    ] {
        let Some(report) = report else { continue };
        let Ok(dp) = catalog.resolve(&report.version).map(|r| r.version) else {
            continue;
        };
        for cp_name in &report.control_planes {
            let Some(cp) = revision(cp_name).and_then(version_of) else {
                continue;
            };
            let result = check_dataplane(component, &cp, &dp);
            skew.push(SkewReport {
                component: report.kind.clone(),
                version: dp.to_string(),
                control_plane: cp_name.clone(),
                control_plane_version: cp.to_string(),
                ok: result.is_ok(),
                rule: DATA_PLANE_RULE.into(),
                detail: result.err().map(|e| e.to_string()).unwrap_or_default(),
            });
        }
    }
    let tags = mesh
        .tags
        .iter()
        .map(|t| {
            let s = t.status.clone().unwrap_or_default();
            TagReport {
                name: t.name_any(),
                target: format!("{:?} {}", t.spec.target_ref.kind, t.spec.target_ref.name),
                revision: s.istio_revision.clone(),
                in_use: condition_status(&s.conditions, IN_USE),
            }
        })
        .collect();
    let end_of_life = end_of_life(&istios, [&istio_cni, &ztunnel], catalog);
    let mut status = Status {
        istios,
        istio_cni,
        ztunnel,
        tags,
        skew,
        end_of_life,
        next: String::new(),
    };
    status.next = next_step(&status, catalog);
    status
}

fn ready_message(conditions: &[Condition]) -> String {
    condition(conditions, READY)
        .and_then(|c| c.message.clone())
        .unwrap_or_default()
}

/// Versions in use that are end of life, or of the oldest minor the catalog supports.
fn end_of_life(
    istios: &[IstioReport],
    data_plane: [&Option<DataPlaneReport>; 2],
    catalog: &Catalog,
) -> Vec<String> {
    let oldest = catalog
        .concrete_names()
        .iter()
        .filter(|n| !catalog.is_eol(n))
        .filter_map(|n| n.parse::<Version>().ok())
        .map(|v| (v.major, v.minor))
        .min();
    let mut used: Vec<(String, String)> = Vec::new();
    for i in istios {
        used.push((format!("Istio {}", i.name), i.version.clone()));
        for r in &i.revisions {
            used.push((format!("IstioRevision {}", r.name), r.version.clone()));
        }
    }
    for d in data_plane.into_iter().flatten() {
        used.push((format!("{} {}", d.kind, d.name), d.version.clone()));
    }
    let mut by_version: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (what, version) in used {
        by_version.entry(version).or_default().push(what);
    }
    by_version
        .into_iter()
        .filter_map(|(version, users)| {
            let users = users.join(", ");
            if catalog.is_eol(&version) {
                return Some(format!(
                    "{version} ({users}) is end of life: move to a supported version"
                ));
            }
            let v: Version = version.parse().ok()?;
            (Some((v.major, v.minor)) == oldest).then(|| {
                format!(
                    "{version} ({users}) is of the oldest minor this catalog supports: plan a \
                     move to a newer minor before it reaches end of life"
                )
            })
        })
        .collect()
}

/// What to do next, in one line: the first thing that needs attention.
fn next_step(s: &Status, catalog: &Catalog) -> String {
    let data_plane: Vec<&DataPlaneReport> =
        [&s.istio_cni, &s.ztunnel].into_iter().flatten().collect();
    for i in &s.istios {
        if i.unobserved {
            return format!(
                "wait: the operator has not observed Istio {}'s change yet; is mizzen running?",
                i.name
            );
        }
    }
    for d in &data_plane {
        if d.unobserved {
            return format!(
                "wait: the operator has not observed {} {}'s change yet; is mizzen running?",
                d.kind, d.name
            );
        }
    }
    for i in &s.istios {
        if !i.ready {
            return format!("wait: Istio {} is {}", i.name, i.state);
        }
    }
    for d in &data_plane {
        if !d.ready {
            return format!("wait: {} {} is {}: {}", d.kind, d.name, d.state, d.message);
        }
    }
    if let Some(k) = s.skew.iter().find(|k| !k.ok) {
        return format!("fix the skew: {}", k.detail);
    }
    // A data plane behind its control plane: finish the upgrade.
    for i in &s.istios {
        let Ok(cp) = i.resolved.parse::<Version>() else {
            continue;
        };
        for d in &data_plane {
            if d.version.parse::<Version>().is_ok_and(|v| v < cp) {
                return format!(
                    "update {} {} to {cp} to finish the upgrade: mizzen upgrade --to {cp}",
                    d.kind, d.name
                );
            }
        }
        if let Some(r) = i.revisions.iter().find(|r| !r.active) {
            return match r.pruned_in_seconds {
                Some(secs) => format!(
                    "revision {} is unused and is pruned in {secs}s; `mizzen rollback` returns \
                     to it until then",
                    r.name
                ),
                None => format!(
                    "move the workloads off revision {} ({}); it is pruned once unused",
                    r.name,
                    r.in_use_by.join(", ")
                ),
            };
        }
    }
    // Newer versions in the catalog.
    for i in &s.istios {
        let Ok(cp) = i.resolved.parse::<Version>() else {
            continue;
        };
        let newer = catalog
            .concrete_names()
            .iter()
            .filter(|n| !catalog.is_eol(n))
            .filter_map(|n| n.parse::<Version>().ok())
            .filter(|v| v.pre().is_none() && *v > cp)
            .collect::<Vec<_>>();
        let patch = newer
            .iter()
            .filter(|v| (v.major, v.minor) == (cp.major, cp.minor))
            .max();
        if let Some(p) = patch {
            return format!(
                "{p} is available for Istio {}: mizzen plan --to {p}",
                i.name
            );
        }
        if let Some(n) = newer.iter().max() {
            return format!(
                "{n} is available for Istio {}: mizzen plan --to {n}",
                i.name
            );
        }
    }
    if s.istios.is_empty() {
        return "no Istio: create one (deploy/examples/ambient.yaml)".into();
    }
    "nothing to do: everything runs the newest version the catalog offers".into()
}
