//! The `Istio` controller: resolves the version, names and writes the active IstioRevision,
//! keeps a stable Service pointed at it, prunes inactive revisions once unused for the grace
//! period, and reports status as upstream computes it.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use mizzen_api::condition_types::{DEPENDENCIES_HEALTHY, IN_USE, READY, RECONCILED};
use mizzen_api::{
    Condition, ConditionStatus, Conditions, Istio, IstioRevision, IstioStatus, RevisionSummary,
    UpdateStrategyType, derive_state,
};
use mizzen_catalog::{Catalog, Version, check_inplace_move, revision_name};
use serde_json::json;

use crate::apply::Owner;
use crate::context::{Context, now, patch_status};
use crate::inuse::ACTIVE_SINCE_ANNOTATION;
use crate::wiring::Wiring;
use crate::{Error, owner_of};
use futures::future::BoxFuture;
use kube::runtime::Controller;

/// Default grace period before an unused inactive revision is deleted.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// Name of the Service that always selects the active revision's istiod. ztunnel reaches the
/// control plane through it, so a control-plane canary does not restart ztunnel; its name is
/// in every revision's serving certificate (`ISTIOD_CUSTOM_HOST`).
pub fn stable_service_name(istio: &str) -> String {
    format!("istiod-active-{istio}")
}

/// The host of [`stable_service_name`] in `namespace`.
pub fn stable_host(istio: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc", stable_service_name(istio))
}

/// What the Istio asks for, or why it is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Name of the active revision.
    pub revision: String,
    /// The resolved version.
    pub version: Version,
}

/// A spec mizzen will not act on: the condition reason and a message saying what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Condition reason, e.g. `UpdateRefused`.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// Decides the active revision of `istio` (pure). `existing` is the live revision of the same
/// name, if any, whose version an InPlace update moves from.
pub fn plan(
    istio: &Istio,
    catalog: &Catalog,
    existing: Option<&IstioRevision>,
) -> Result<Plan, Refusal> {
    let resolved = catalog.resolve(&istio.spec.version).map_err(|e| Refusal {
        reason: "VersionNotSupported",
        message: e.to_string(),
    })?;
    let revision_based = strategy(istio) == UpdateStrategyType::RevisionBased;
    let revision =
        revision_name(&istio.name_any(), revision_based, &resolved.version).map_err(|e| {
            Refusal {
                reason: "InvalidRevisionName",
                message: e.to_string(),
            }
        })?;
    if !revision_based
        && let Some(old) = existing.and_then(|r| r.spec.version.parse::<Version>().ok())
    {
        check_inplace_move(&old, &resolved.version).map_err(|e| Refusal {
            reason: "UpdateRefused",
            message: format!("{e}; revision {revision} keeps running {old}"),
        })?;
    }
    Ok(Plan {
        revision,
        version: resolved.version,
    })
}

fn strategy(istio: &Istio) -> UpdateStrategyType {
    istio
        .spec
        .update_strategy
        .as_ref()
        .map(|s| s.type_)
        .unwrap_or_default()
}

/// `spec.updateStrategy.inactiveRevisionDeletionGracePeriodSeconds`, defaulted.
pub fn grace(istio: &Istio) -> i64 {
    istio
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.inactive_revision_deletion_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(0)
}

/// Which inactive revisions to delete now, and when the next one expires (pure). A revision is
/// deleted only when its `InUse` condition is explicitly `False` and has been so for `grace`
/// seconds; `True`, `Unknown` or a missing condition keep it.
pub fn prune_plan(
    revisions: &[IstioRevision],
    active: Option<&str>,
    grace: i64,
    now: Timestamp,
) -> (Vec<String>, Option<Duration>) {
    let mut delete = Vec::new();
    let mut next: Option<Duration> = None;
    for rev in revisions {
        let Some(expiry) = prune_at(rev, active, grace) else {
            continue;
        };
        if expiry <= now {
            delete.push(rev.name_any());
        } else {
            let wait = Duration::try_from(expiry.duration_since(now)).unwrap_or_default();
            next = Some(next.map_or(wait, |n| n.min(wait)));
        }
    }
    (delete, next)
}

/// When revision `rev` is pruned: `grace` seconds after its `InUse` turned explicitly
/// `False`; `None` when it is the active one, already being deleted, or not known to be unused.
pub fn prune_at(rev: &IstioRevision, active: Option<&str>, grace: i64) -> Option<Timestamp> {
    if Some(rev.name_any().as_str()) == active || rev.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let in_use = rev.status.as_ref()?.conditions.get_condition(IN_USE)?;
    if in_use.status != ConditionStatus::False {
        return None;
    }
    let since: Timestamp = in_use.last_transition_time.as_deref()?.parse().ok()?;
    Some(since + jiff::SignedDuration::from_secs(grace))
}

/// The Istio controller: Istios, the revisions and Services they own.
pub fn controller(w: &Wiring) -> BoxFuture<'static, ()> {
    let _c = &w.client;
    let own = &w.ctx.own;
    let store = own.istios.store();
    let controller = Controller::for_shared_stream(own.istios.changes(), store.clone())
        .owns_shared_stream(own.revisions.changes())
        .reconcile_on(w.ctx.children.owned_by(store));
    w.start("Istio", controller, reconcile)
}

/// Reconciles one Istio.
pub async fn reconcile(istio: Arc<Istio>, ctx: Arc<Context>) -> Result<Action, Error> {
    let name = istio.name_any();
    ctx.report_unknown_values(
        istio.as_ref(),
        &istio.spec.values,
        istio.spec.profile.as_deref(),
    )
    .await;
    let owner = owner_of(istio.as_ref());
    let owned: Result<Vec<IstioRevision>, kube::Error> =
        ctx.own.revisions.list(&ctx.client).await.map(|all| {
            crate::own::unshared(all)
                .into_iter()
                .filter(|r| is_owned_by(r, &owner.uid))
                .collect()
        });

    let previous_active = istio
        .status
        .as_ref()
        .and_then(|s| s.active_revision_name.clone());
    let mut revision_written = false;
    let mut reconciled: Result<String, Refusal> = Err(Refusal {
        reason: "ReconcileError",
        message: "could not list IstioRevisions".into(),
    });
    let paused = crate::context::paused(istio.as_ref());
    if let Some(message) = &paused {
        reconciled = Err(Refusal {
            reason: crate::context::PAUSED_REASON,
            message: message.clone(),
        });
    } else if let Ok(owned) = &owned {
        let tentative = plan(&istio, &ctx.catalog, None);
        let existing = tentative
            .as_ref()
            .ok()
            .and_then(|p| owned.iter().find(|r| r.name_any() == p.revision));
        reconciled = match plan(&istio, &ctx.catalog, existing) {
            Ok(p) => write_revision(
                &istio,
                &ctx,
                &owner,
                &p,
                existing,
                previous_active.as_deref(),
            )
            .await
            .map(|written| {
                revision_written = written;
                p.revision
            })
            .map_err(|e| Refusal {
                reason: match e {
                    Error::Render(_) => "InvalidValues",
                    _ => "ReconcileError",
                },
                message: e.to_string(),
            }),
            Err(refusal) => {
                let already = istio
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.get_condition(RECONCILED));
                if already.and_then(|c| c.message.as_deref()) != Some(refusal.message.as_str()) {
                    ctx.metrics.refused("Istio", refusal.reason);
                    ctx.event(
                        istio.as_ref(),
                        EventType::Warning,
                        refusal.reason,
                        refusal.message.clone(),
                    )
                    .await;
                }
                Err(refusal)
            }
        };
    }
    let active = reconciled.as_ref().ok().cloned().or(previous_active);

    // Prune even when the spec is refused: other revisions may still expire.
    let mut requeue = None;
    let mut owned = owned;
    if let Ok(owned) = &mut owned
        && paused.is_none()
    {
        let (delete, next) = prune_plan(owned, active.as_deref(), grace(&istio), Timestamp::now());
        let revisions_api: Api<IstioRevision> = Api::all(ctx.client.clone());
        for rev in delete {
            // The plan was made from the shared store: the deletion only goes through if the
            // revision is still the version the plan saw (a newer status, say InUse, wins).
            let seen = owned.iter().find(|r| r.name_any() == rev);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: seen.and_then(|r| r.resource_version()),
                    uid: seen.and_then(|r| r.uid()),
                }),
                ..DeleteParams::background()
            };
            match revisions_api.delete(&rev, &params).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(revision = rev, "revision changed since planned; not pruned");
                }
                Ok(_) => {
                    owned.retain(|r| r.name_any() != rev);
                    ctx.event(
                        istio.as_ref(),
                        EventType::Normal,
                        "RevisionPruned",
                        format!("deleted IstioRevision {rev}: unused for {}s", grace(&istio)),
                    )
                    .await
                }
                Err(e) => tracing::warn!(revision = rev, error = %e, "pruning failed"),
            }
        }
        requeue = next;
    }

    let status = status(
        &istio,
        owned.as_deref().ok(),
        active.as_deref(),
        &reconciled,
        revision_written,
    );
    patch_status(&ctx.client, istio.as_ref(), istio.status.as_ref(), &status).await?;
    tracing::debug!(istio = name, ?requeue, "reconciled");
    Ok(requeue.map_or_else(Action::await_change, |d| {
        Action::requeue(d + Duration::from_millis(500))
    }))
}

fn is_owned_by(rev: &IstioRevision, uid: &str) -> bool {
    rev.owner_references().iter().any(|o| o.uid == uid)
}

/// Writes the active IstioRevision and the stable Service.
async fn write_revision(
    istio: &Istio,
    ctx: &Context,
    owner: &Owner,
    plan: &Plan,
    existing: Option<&IstioRevision>,
    previous_active: Option<&str>,
) -> Result<bool, Error> {
    let namespace = &istio.spec.namespace;
    let values =
        crate::desired::revision_values(istio, &plan.revision, &plan.version, ctx.platform)?;
    let kept = existing
        .and_then(|r| r.annotations().get(ACTIVE_SINCE_ANNOTATION).cloned())
        .filter(|_| previous_active == Some(plan.revision.as_str()));
    // Sub-second, so that two activations in one second are ordered (inuse::ztunnel_binding).
    let active_since = kept.unwrap_or_else(|| jiff::Timestamp::now().to_string());
    let revision = json!({
        "apiVersion": "sailoperator.io/v1",
        "kind": "IstioRevision",
        "metadata": {
            "name": plan.revision,
            "annotations": { ACTIVE_SINCE_ANNOTATION: active_since },
        },
        "spec": {
            "version": plan.version.to_string(),
            "namespace": namespace,
            "values": values,
        },
    });
    let inventory = mizzen_render::Owner::istio(&istio.name_any()).label();
    // The revision reports a missing namespace itself; the Service follows once it exists
    // (the revision's status change brings the Istio back here).
    let mut desired = vec![revision];
    if ctx.namespace_ready(namespace).is_ok() {
        desired.push(crate::desired::stable_service(istio, &plan.revision));
    }
    let report = ctx
        .applier
        .apply(owner, (inventory.0, &inventory.1), desired, &[])
        .await?;
    let written = report
        .written
        .iter()
        .any(|k| k.ends_with(&format!("/IstioRevision//{}", plan.revision)));
    if existing.is_none() && written {
        ctx.event(
            istio,
            EventType::Normal,
            "RevisionCreated",
            format!("created IstioRevision {} ({})", plan.revision, plan.version),
        )
        .await;
    }
    Ok(written)
}

/// The status upstream computes: the active revision's conditions, revision counts, state.
fn status(
    istio: &Istio,
    owned: Option<&[IstioRevision]>,
    active: Option<&str>,
    reconciled: &Result<String, Refusal>,
    revision_written: bool,
) -> IstioStatus {
    let old = istio.status.clone().unwrap_or_default();
    let generation = istio.meta().generation;
    let now = now();
    let mut conditions = old.conditions.clone();
    let mut set = |mut c: Condition| {
        c.observed_generation = generation;
        conditions.set_condition(c, &now);
    };
    let active_rev = active.and_then(|a| owned?.iter().find(|r| r.name_any() == a));
    match reconciled {
        Err(r) => set(Condition::new(
            RECONCILED,
            ConditionStatus::False,
            r.reason,
            r.message.clone(),
        )),
        Ok(_) if active_rev.is_none() => set(Condition::new(
            RECONCILED,
            ConditionStatus::False,
            "ActiveRevisionNotFound",
            "active IstioRevision not found",
        )),
        Ok(_) => {}
    }
    // The revision's conditions describe this Istio's spec only once the revision controller
    // has observed the revision as written now; until then Ready waits (so `kubectl wait
    // --for=condition=Ready` never returns on the previous version's readiness).
    let current = active_rev.filter(|r| {
        !revision_written
            && r.status.as_ref().and_then(|s| s.observed_generation) == r.metadata.generation
    });
    // Upstream copies the active revision's Reconciled, Ready and DependenciesHealthy. A spec
    // that was not applied is not Ready, whatever the old revision says, so that `kubectl
    // wait --for=condition=Ready` does not return on a change that was not made.
    let copy = match reconciled {
        Ok(_) => &[RECONCILED, READY, DEPENDENCIES_HEALTHY][..],
        Err(r) => {
            let running = active_rev.map_or_else(
                || "nothing".to_owned(),
                |rev| {
                    format!(
                        "IstioRevision {} keeps running {}",
                        rev.name_any(),
                        rev.spec.version
                    )
                },
            );
            set(Condition::new(
                READY,
                ConditionStatus::False,
                "SpecNotApplied",
                format!(
                    "{running}: this spec was not applied ({}, see the Reconciled condition)",
                    r.reason
                ),
            ));
            &[DEPENDENCIES_HEALTHY][..]
        }
    };
    for &t in copy {
        let copied = match (active_rev, current) {
            (None, _) => Condition::new(
                t,
                ConditionStatus::Unknown,
                "ActiveRevisionNotFound",
                "active IstioRevision not found",
            ),
            (Some(r), None) => Condition::new(
                t,
                ConditionStatus::Unknown,
                "RevisionUpdating",
                format!(
                    "waiting for IstioRevision {} to be reconciled",
                    r.name_any()
                ),
            ),
            (Some(_), Some(r)) => r
                .status
                .as_ref()
                .and_then(|s| s.conditions.get_condition(t).cloned())
                .unwrap_or_else(|| {
                    Condition::new(
                        t,
                        ConditionStatus::Unknown,
                        "RevisionUpdating",
                        "not yet reported",
                    )
                }),
        };
        set(Condition {
            last_transition_time: None,
            ..copied
        });
    }
    let count = |f: &dyn Fn(&IstioRevision) -> bool| -> i32 {
        owned.map_or(-1, |o| o.iter().filter(|r| f(r)).count() as i32)
    };
    let has = |r: &IstioRevision, t: &str| {
        r.status
            .as_ref()
            .and_then(|s| s.conditions.get_condition(t))
            .is_some_and(|c| c.status == ConditionStatus::True)
    };
    let state = derive_state(&conditions, &[RECONCILED, READY, DEPENDENCIES_HEALTHY]);
    IstioStatus {
        observed_generation: generation,
        conditions,
        state: Some(state),
        active_revision_name: active.map(String::from),
        revisions: Some(RevisionSummary {
            total: count(&|_| true),
            ready: count(&|r| has(r, READY)),
            in_use: count(&|r| has(r, IN_USE)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_api::{IstioRevisionSpec, IstioRevisionStatus, IstioSpec, IstioUpdateStrategy};

    fn istio(version: &str, strategy: UpdateStrategyType) -> Istio {
        let mut i = Istio::new(
            "default",
            IstioSpec {
                version: version.into(),
                namespace: "istio-system".into(),
                update_strategy: Some(IstioUpdateStrategy {
                    type_: strategy,
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        i.metadata.generation = Some(1);
        i
    }

    fn revision(name: &str, version: &str) -> IstioRevision {
        IstioRevision::new(
            name,
            IstioRevisionSpec {
                version: version.into(),
                namespace: "istio-system".into(),
                values: None,
            },
        )
    }

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    #[test]
    fn inplace_keeps_the_istio_name_and_moves_one_minor_at_a_time() {
        let c = catalog();
        let p = plan(
            &istio("v1.26.4", UpdateStrategyType::InPlace),
            &c,
            Some(&revision("default", "v1.26.3")),
        )
        .unwrap();
        assert_eq!(
            (p.revision.as_str(), p.version.to_string().as_str()),
            ("default", "v1.26.4")
        );
        assert!(
            plan(
                &istio("v1.27.2", UpdateStrategyType::InPlace),
                &c,
                Some(&revision("default", "v1.26.3"))
            )
            .is_ok()
        );
        let refused = plan(
            &istio("v1.28.1", UpdateStrategyType::InPlace),
            &c,
            Some(&revision("default", "v1.26.3")),
        )
        .unwrap_err();
        assert_eq!(refused.reason, "UpdateRefused");
        assert!(
            refused.message.contains("v1.26.3") && refused.message.contains("v1.28.1"),
            "{}",
            refused.message
        );
        assert!(
            refused.message.contains("RevisionBased"),
            "says what to do: {}",
            refused.message
        );
    }

    #[test]
    fn revision_based_names_come_from_the_resolved_version() {
        let c = catalog();
        let p = plan(
            &istio("v1.26-latest", UpdateStrategyType::RevisionBased),
            &c,
            None,
        )
        .unwrap();
        assert_eq!(p.revision, "default-v1-26-8");
        // RevisionBased may move more than one minor at once.
        assert!(
            plan(
                &istio("v1.28.1", UpdateStrategyType::RevisionBased),
                &c,
                Some(&revision("default-v1-28-1", "v1.26.3"))
            )
            .is_ok()
        );
    }

    #[test]
    fn eol_and_unknown_versions_are_refused_with_the_valid_ones_named() {
        let c = catalog();
        let eol = plan(&istio("v1.24.3", UpdateStrategyType::InPlace), &c, None).unwrap_err();
        assert_eq!(eol.reason, "VersionNotSupported");
        assert!(eol.message.contains("end-of-life"), "{}", eol.message);
    }

    fn with_in_use(mut r: IstioRevision, status: ConditionStatus, since: &str) -> IstioRevision {
        let mut c = Condition::new(IN_USE, status, "x", "");
        c.last_transition_time = Some(since.into());
        r.status = Some(IstioRevisionStatus {
            conditions: vec![c],
            ..Default::default()
        });
        r
    }

    #[test]
    fn only_explicitly_unused_revisions_past_the_grace_period_are_pruned() {
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let revs = vec![
            with_in_use(
                revision("active", "v1.26.3"),
                ConditionStatus::False,
                "2026-01-01T00:00:00Z",
            ),
            with_in_use(
                revision("old", "v1.26.3"),
                ConditionStatus::False,
                "2026-01-01T00:00:00Z",
            ),
            with_in_use(
                revision("young", "v1.26.3"),
                ConditionStatus::False,
                "2026-01-01T00:00:50Z",
            ),
            with_in_use(
                revision("used", "v1.26.3"),
                ConditionStatus::True,
                "2026-01-01T00:00:00Z",
            ),
            with_in_use(
                revision("unknown", "v1.26.3"),
                ConditionStatus::Unknown,
                "2026-01-01T00:00:00Z",
            ),
            revision("no-status", "v1.26.3"),
        ];
        let (delete, next) = prune_plan(&revs, Some("active"), 30, now);
        assert_eq!(delete, ["old"]);
        assert_eq!(next, Some(Duration::from_secs(20)));
        let (delete, _) = prune_plan(&revs, None, 30, now);
        assert_eq!(
            delete,
            ["active", "old"],
            "without an active revision nothing is protected by activity"
        );
    }

    #[test]
    fn status_copies_the_active_revision_and_counts() {
        let mut active = revision("default", "v1.26.3");
        active.metadata.generation = Some(4);
        active.status = Some(IstioRevisionStatus {
            observed_generation: Some(4),
            conditions: vec![
                Condition::healthy(RECONCILED, ""),
                Condition::healthy(READY, ""),
                Condition::new(
                    DEPENDENCIES_HEALTHY,
                    ConditionStatus::False,
                    "ZTunnelNotFound",
                    "no ztunnel",
                ),
                Condition::healthy(IN_USE, ""),
            ],
            ..Default::default()
        });
        let i = istio("v1.26.3", UpdateStrategyType::InPlace);
        let s = status(
            &i,
            Some(&[active.clone()]),
            Some("default"),
            &Ok("default".into()),
            false,
        );
        assert_eq!(s.state.as_deref(), Some("ZTunnelNotFound"));
        assert_eq!(
            s.revisions,
            Some(RevisionSummary {
                total: 1,
                ready: 1,
                in_use: 1
            })
        );
        assert_eq!(
            s.conditions
                .get_condition(RECONCILED)
                .unwrap()
                .observed_generation,
            Some(1)
        );
        // Just written, or not yet observed by the revision controller: Ready waits.
        let written = status(
            &i,
            Some(&[active.clone()]),
            Some("default"),
            &Ok("default".into()),
            true,
        );
        assert_eq!(written.state.as_deref(), Some("RevisionUpdating"));
        let mut stale = active.clone();
        stale.metadata.generation = Some(5);
        let unobserved = status(
            &i,
            Some(&[stale]),
            Some("default"),
            &Ok("default".into()),
            false,
        );
        assert_eq!(
            unobserved.conditions.get_condition(READY).unwrap().status,
            ConditionStatus::Unknown
        );
        assert_eq!(
            unobserved
                .conditions
                .get_condition(READY)
                .unwrap()
                .observed_generation,
            Some(1)
        );
        let refused = status(
            &i,
            Some(&[active]),
            Some("default"),
            &Err(Refusal {
                reason: "UpdateRefused",
                message: "m".into(),
            }),
            false,
        );
        assert_eq!(refused.state.as_deref(), Some("UpdateRefused"));
        assert_eq!(refused.active_revision_name.as_deref(), Some("default"));
        let ready = refused.conditions.get_condition(READY).unwrap();
        assert_eq!(
            (ready.status, ready.reason.as_deref()),
            (ConditionStatus::False, Some("SpecNotApplied")),
            "a refused spec is not Ready even though the old revision is"
        );
        assert!(
            ready
                .message
                .as_deref()
                .unwrap()
                .contains("IstioRevision default keeps running v1.26.3"),
            "{ready:?}"
        );
        let unlisted = status(
            &i,
            None,
            None,
            &Err(Refusal {
                reason: "ReconcileError",
                message: "m".into(),
            }),
            false,
        );
        assert_eq!(
            unlisted.revisions,
            Some(RevisionSummary {
                total: -1,
                ready: -1,
                in_use: -1
            })
        );
    }
}
