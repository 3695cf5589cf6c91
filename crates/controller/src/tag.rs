//! The `IstioRevisionTag` controller: resolves a tag's target (an Istio's active revision, or
//! a fixed IstioRevision), refuses a name that an older IstioRevision holds, renders the tag
//! webhook (and from 1.28 the tag Service; for tag `default` also the default validator and
//! the reader ServiceAccount) for the target's version and values, prunes what a retarget
//! leaves behind, and reports `Reconciled` and `InUse`.
//!
//! Tags follow their target by *spec*: an Istio or IstioRevision event enqueues the tags whose
//! `spec.targetRef` names it (and the tag of the same name, for the clash rule), never by the
//! revision a tag's status last recorded, which is stale exactly when it matters (upstream
//! issue #2089).

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::core::GroupVersionKind;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use mizzen_api::condition_types::{IN_USE, RECONCILED};
use mizzen_api::{
    Condition, ConditionStatus, Conditions, Istio, IstioRevision, IstioRevisionTag,
    IstioRevisionTagStatus, TargetKind, derive_state,
};

use crate::context::{Context, now, patch_status};
use crate::inuse::enables_namespaces_by_default;
use crate::revision::{Failure, cached_workloads, is_remote, takes_precedence};
use crate::wiring::{Wiring, fingerprint};
use crate::{Error, owner_of};

/// The tag that also renders the default validator and accepts `istio-injection=enabled`.
pub const DEFAULT_TAG: &str = "default";

/// Reason of `Reconciled=False` when the target (or its active revision) does not exist.
pub const REF_NOT_FOUND: &str = "RefNotFound";
/// Reason of `Reconciled=False` when an older IstioRevision holds the tag's name.
pub const NAME_ALREADY_EXISTS: &str = "NameAlreadyExists";
/// Reason of `Reconciled=False` for anything else that stops the tag from being rendered.
pub const RECONCILE_ERROR: &str = "ReconcileError";

/// The kinds a tag renders; objects of these kinds with the tag's inventory label that a
/// render no longer produces (a retarget to another namespace, or to a version without the
/// tag Service) are pruned.
pub fn prunable_kinds(tag: &str) -> Vec<GroupVersionKind> {
    let mut kinds = vec![
        GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
        ),
        GroupVersionKind::gvk("", "v1", "Service"),
    ];
    if tag == DEFAULT_TAG {
        kinds.push(GroupVersionKind::gvk(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        ));
        kinds.push(GroupVersionKind::gvk("", "v1", "ServiceAccount"));
    }
    kinds
}

/// The IstioRevisionTag controller: tags, their children, their targets, and the namespaces
/// and pods that use them.
pub fn controller(w: &Wiring) -> BoxFuture<'static, ()> {
    let _c = &w.client;
    let own = &w.ctx.own;
    let store = own.tags.store();
    let by_istio = store.clone();
    let for_usage = store.clone();
    let controller = Controller::for_shared_stream(own.tags.changes(), store.clone())
        .reconcile_on(w.ctx.children.owned_by(for_usage.clone()))
        .watches_shared_stream(own.istios.changes(), move |istio: Arc<Istio>| {
            tags_where(&by_istio, |t| follows_istio(t, &istio.name_any()))
        })
        .watches_shared_stream(own.revisions.changes(), move |rev: Arc<IstioRevision>| {
            tags_where(&store, |t| affected_by_revision(t, &rev))
        })
        .reconcile_on(w.usage_changes_of(for_usage, usage_fingerprints));
    w.start("IstioRevisionTag", controller, reconcile)
}

fn tags_where(
    store: &Store<IstioRevisionTag>,
    f: impl Fn(&IstioRevisionTag) -> bool,
) -> Vec<ObjectRef<IstioRevisionTag>> {
    store
        .state()
        .iter()
        .filter(|t| f(t))
        .map(|t| ObjectRef::from_obj(t.as_ref()))
        .collect()
}

/// Whether `tag` floats with Istio `istio`.
pub fn follows_istio(tag: &IstioRevisionTag, istio: &str) -> bool {
    let r = &tag.spec.target_ref;
    r.kind == TargetKind::Istio && r.name == istio
}

/// Whether an event on `rev` can change `tag`: the tag pins it, floats with the Istio that
/// owns it, or has its name (the clash rule).
pub fn affected_by_revision(tag: &IstioRevisionTag, rev: &IstioRevision) -> bool {
    let r = &tag.spec.target_ref;
    let name = rev.name_any();
    (r.kind == TargetKind::IstioRevision && r.name == name)
        || tag.name_any() == name
        || rev
            .owner_references()
            .iter()
            .any(|o| o.kind == "Istio" && follows_istio(tag, &o.name))
}

/// Upstream's name-clash rule, from the tag's side: an IstioRevision of the same name that is
/// older (or, at the same age, has the smaller UID) wins, and the tag renders nothing.
pub fn check_clash(
    tag: &IstioRevisionTag,
    same_name: Option<&IstioRevision>,
) -> Result<(), Refusal> {
    match same_name {
        Some(rev) if takes_precedence(rev.meta(), tag.meta()) => Err(Refusal {
            reason: NAME_ALREADY_EXISTS,
            message: format!(
                "an IstioRevision named {} exists and is older; rename one of them",
                tag.name_any()
            ),
        }),
        _ => Ok(()),
    }
}

/// A target mizzen cannot act on: the condition reason and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// `RefNotFound`, `NameAlreadyExists` or `ReconcileError`.
    pub reason: &'static str,
    /// What is wrong.
    pub message: String,
}

impl From<Refusal> for Failure {
    fn from(r: Refusal) -> Self {
        Failure::Invalid(r.reason, r.message)
    }
}

/// The name of the IstioRevision a tag points at (pure): the pinned revision, or the active
/// revision of the Istio it floats with (`istio` is that Istio, if it exists).
pub fn target_revision_name(
    tag: &IstioRevisionTag,
    istio: Option<&Istio>,
) -> Result<String, Refusal> {
    let r = &tag.spec.target_ref;
    match r.kind {
        TargetKind::IstioRevision => Ok(r.name.clone()),
        TargetKind::Istio => {
            let istio = istio.ok_or_else(|| Refusal {
                reason: REF_NOT_FOUND,
                message: format!("Istio {} not found", r.name),
            })?;
            istio
                .status
                .as_ref()
                .and_then(|s| s.active_revision_name.clone())
                .filter(|a| !a.is_empty())
                .ok_or_else(|| Refusal {
                    reason: REF_NOT_FOUND,
                    message: format!("Istio {} has no active revision yet", r.name),
                })
        }
    }
}

/// Checks the revision a tag resolved to (pure): it must exist, not be going away, and run
/// istiod in this cluster.
pub fn check_target(
    tag: &IstioRevisionTag,
    name: &str,
    rev: Option<&IstioRevision>,
) -> Result<(), Refusal> {
    let via = match tag.spec.target_ref.kind {
        TargetKind::Istio => format!(" (active revision of Istio {})", tag.spec.target_ref.name),
        TargetKind::IstioRevision => String::new(),
    };
    let rev = rev.ok_or_else(|| Refusal {
        reason: REF_NOT_FOUND,
        message: format!("IstioRevision {name}{via} not found"),
    })?;
    if rev.metadata.deletion_timestamp.is_some() {
        return Err(Refusal {
            reason: REF_NOT_FOUND,
            message: format!("IstioRevision {name}{via} is being deleted"),
        });
    }
    if is_remote(rev.spec.values.as_ref()) {
        return Err(Refusal {
            reason: RECONCILE_ERROR,
            message: "IstioRevisionTag cannot reference a remote IstioRevision".into(),
        });
    }
    Ok(())
}

/// What a tag's reconcile reads from namespaces and pods (its users), per tag, from the caches
/// (its target's namespace and settings come through the revision watch).
fn usage_fingerprints(ctx: &Context, tags: &[Arc<IstioRevisionTag>]) -> Vec<u64> {
    let usage = cached_workloads(ctx);
    tags.iter()
        .map(|t| fingerprint(&usage.tag_users(&t.name_any(), false)))
        .collect()
}

/// Where a tag points after a successful reconcile.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The IstioRevision.
    pub revision: String,
    /// Its control-plane namespace.
    pub namespace: String,
    /// Whether it injects into every namespace (`enableNamespacesByDefault`).
    pub enables_namespaces_by_default: bool,
}

/// Reconciles one IstioRevisionTag.
pub async fn reconcile(tag: Arc<IstioRevisionTag>, ctx: Arc<Context>) -> Result<Action, Error> {
    if tag.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let applied = apply(&tag, &ctx).await;
    let usage = cached_workloads(&ctx);
    let by_default = applied
        .as_ref()
        .is_ok_and(|t| t.enables_namespaces_by_default);
    let users = usage.tag_users(&tag.name_any(), by_default);
    let outcome = match &applied {
        Ok(t) => Ok(t.clone()),
        Err(Failure::Invalid(reason, message)) => Err((*reason, message.clone())),
        Err(Failure::Transient(e)) => Err((RECONCILE_ERROR, e.to_string())),
    };
    let status = status(&tag, &outcome, &users, &now());
    if let Some((type_, reason, note)) = transition(&tag, tag.status.as_ref(), &status) {
        ctx.event(tag.as_ref(), type_, reason, note).await;
    }
    patch_status(&ctx.client, tag.as_ref(), tag.status.as_ref(), &status).await?;
    match applied {
        Err(Failure::Transient(e)) => Err(e),
        _ => Ok(Action::await_change()),
    }
}

/// Resolves, checks, renders and applies the tag's objects.
async fn apply(tag: &IstioRevisionTag, ctx: &Context) -> Result<Target, Failure> {
    let name = tag.name_any();
    let revisions = &ctx.own.revisions;
    check_clash(tag, revisions.get(&ctx.client, &name).await?.as_deref())?;
    let istio = match tag.spec.target_ref.kind {
        TargetKind::Istio => {
            ctx.own
                .istios
                .get(&ctx.client, &tag.spec.target_ref.name)
                .await?
        }
        TargetKind::IstioRevision => None,
    };
    let revision = target_revision_name(tag, istio.as_deref())?;
    let rev = revisions.get(&ctx.client, &revision).await?;
    check_target(tag, &revision, rev.as_deref())?;
    let rev = rev.expect("checked");
    let namespace = rev.spec.namespace.clone();
    let refuse = |e: &dyn std::fmt::Display| {
        Failure::Invalid(RECONCILE_ERROR, format!("IstioRevision {revision}: {e}"))
    };
    let resolved = ctx
        .catalog
        .resolve(&rev.spec.version)
        .map_err(|e| refuse(&e))?;
    let owner = mizzen_render::Owner::istio_revision_tag(&name);
    let objects = crate::desired::tag_objects(&name, &rev, &resolved).map_err(|e| refuse(&e))?;
    let inventory = owner.label();
    ctx.applier
        .apply(
            &owner_of(tag),
            (inventory.0, &inventory.1),
            objects
                .into_iter()
                .map(mizzen_render::Object::into_json)
                .collect(),
            &prunable_kinds(&name),
        )
        .await?;
    Ok(Target {
        revision,
        namespace,
        enables_namespaces_by_default: enables_namespaces_by_default(rev.spec.values.as_ref()),
    })
}

/// The status a reconcile computes (pure). `outcome` is where the tag now points, or the
/// reason and message of why it could not be rendered; the target fields keep their last
/// successful values on failure, as upstream.
pub fn status(
    tag: &IstioRevisionTag,
    outcome: &Result<Target, (&'static str, String)>,
    users: &[String],
    now: &str,
) -> IstioRevisionTagStatus {
    let generation = tag.meta().generation;
    let mut status = tag.status.clone().unwrap_or_default();
    let mut set = |mut c: Condition| {
        c.observed_generation = generation;
        status.conditions.set_condition(c, now);
    };
    set(match outcome {
        Ok(_) => Condition::healthy(RECONCILED, ""),
        Err((reason, message)) => {
            Condition::new(RECONCILED, ConditionStatus::False, reason, message.clone())
        }
    });
    set(if users.is_empty() {
        Condition::new(
            IN_USE,
            ConditionStatus::False,
            "NotReferencedByAnything",
            "Not referenced by any namespace or pod",
        )
    } else {
        Condition::new(
            IN_USE,
            ConditionStatus::True,
            "ReferencedByWorkloads",
            format!("in use by {}", users.join(", ")),
        )
    });
    if let Ok(t) = outcome {
        status.istio_revision = t.revision.clone();
        status.istiod_namespace = t.namespace.clone();
    }
    status.state = Some(derive_state(&status.conditions, &[RECONCILED, IN_USE]));
    status.observed_generation = generation;
    status
}

/// The event a status change deserves, if any (pure): the tag got its first target or moved
/// to another revision, or it newly cannot be rendered for a name clash or a missing target.
pub fn transition(
    tag: &IstioRevisionTag,
    old: Option<&IstioRevisionTagStatus>,
    new: &IstioRevisionTagStatus,
) -> Option<(EventType, &'static str, String)> {
    let name = tag.name_any();
    let reconciled = |s: Option<&IstioRevisionTagStatus>| {
        s.and_then(|s| s.conditions.get_condition(RECONCILED))
            .cloned()
    };
    let (before, after) = (reconciled(old), reconciled(Some(new))?);
    let old_target = old
        .map(|s| (s.istio_revision.as_str(), s.istiod_namespace.as_str()))
        .filter(|(r, _)| !r.is_empty());
    let new_target = (new.istio_revision.as_str(), new.istiod_namespace.as_str());
    if after.status == ConditionStatus::True {
        return match old_target {
            None => Some((
                EventType::Normal,
                "Created",
                format!(
                    "tag {name} points at IstioRevision {} in namespace {}",
                    new_target.0, new_target.1
                ),
            )),
            Some(old) if old != new_target => Some((
                EventType::Normal,
                "Retargeted",
                format!(
                    "tag {name} moved from IstioRevision {} ({}) to {} ({})",
                    old.0, old.1, new_target.0, new_target.1
                ),
            )),
            Some(_) => None,
        };
    }
    let reason = after.reason.as_deref()?;
    let repeated = before.is_some_and(|b| b.status == after.status && b.reason == after.reason);
    match reason {
        NAME_ALREADY_EXISTS | REF_NOT_FOUND if !repeated => Some((
            EventType::Warning,
            if reason == NAME_ALREADY_EXISTS {
                NAME_ALREADY_EXISTS
            } else {
                REF_NOT_FOUND
            },
            after.message.clone().unwrap_or_default(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
    use mizzen_api::{
        IstioRevisionSpec, IstioRevisionTagSpec, IstioSpec, IstioStatus, TargetReference, Values,
    };

    fn tag(name: &str, kind: TargetKind, target: &str) -> IstioRevisionTag {
        let mut t = IstioRevisionTag::new(
            name,
            IstioRevisionTagSpec {
                target_ref: TargetReference {
                    kind,
                    name: target.into(),
                },
            },
        );
        t.metadata.generation = Some(3);
        t
    }

    fn revision(name: &str) -> IstioRevision {
        IstioRevision::new(
            name,
            IstioRevisionSpec {
                version: "v1.26.3".into(),
                namespace: "istio-system".into(),
                values: None,
            },
        )
    }

    fn aged<K: Resource>(mut o: K, at: &str, uid: &str) -> K {
        o.meta_mut().creation_timestamp = Some(Time(at.parse().unwrap()));
        o.meta_mut().uid = Some(uid.into());
        o
    }

    fn istio(name: &str, active: Option<&str>) -> Istio {
        let mut i = Istio::new(name, IstioSpec::default());
        i.status = Some(IstioStatus {
            active_revision_name: active.map(String::from),
            ..Default::default()
        });
        i
    }

    #[test]
    fn floating_tags_resolve_to_the_active_revision_and_pinned_tags_to_their_pin() {
        let floating = tag("prod", TargetKind::Istio, "mesh");
        assert_eq!(
            target_revision_name(&floating, Some(&istio("mesh", Some("mesh-v1-26-4")))),
            Ok("mesh-v1-26-4".into())
        );
        let missing = target_revision_name(&floating, None).unwrap_err();
        assert_eq!(missing.reason, REF_NOT_FOUND);
        assert!(
            missing.message.contains("Istio mesh not found"),
            "{}",
            missing.message
        );
        for no_active in [None, Some("")] {
            let r = target_revision_name(&floating, Some(&istio("mesh", no_active))).unwrap_err();
            assert_eq!(r.reason, REF_NOT_FOUND);
            assert!(r.message.contains("no active revision"), "{}", r.message);
        }
        let pinned = tag("prod", TargetKind::IstioRevision, "mesh-v1-26-3");
        assert_eq!(
            target_revision_name(&pinned, None),
            Ok("mesh-v1-26-3".into())
        );
    }

    #[test]
    fn target_must_exist_be_alive_and_local() {
        let floating = tag("prod", TargetKind::Istio, "mesh");
        let gone = check_target(&floating, "mesh-v1", None).unwrap_err();
        assert_eq!(gone.reason, REF_NOT_FOUND);
        assert_eq!(
            gone.message,
            "IstioRevision mesh-v1 (active revision of Istio mesh) not found"
        );
        let mut dying = revision("mesh-v1");
        dying.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        assert_eq!(
            check_target(&floating, "mesh-v1", Some(&dying))
                .unwrap_err()
                .reason,
            REF_NOT_FOUND
        );
        let mut remote = revision("mesh-v1");
        remote.spec.values = Some(Values {
            profile: Some("remote".into()),
            ..Default::default()
        });
        assert_eq!(
            check_target(&floating, "mesh-v1", Some(&remote))
                .unwrap_err()
                .reason,
            RECONCILE_ERROR
        );
        assert!(check_target(&floating, "mesh-v1", Some(&revision("mesh-v1"))).is_ok());
    }

    #[test]
    fn the_older_object_wins_a_name_clash_and_the_uid_breaks_ties() {
        let t = aged(
            tag("prod", TargetKind::Istio, "mesh"),
            "2026-01-01T00:00:10Z",
            "b",
        );
        let older = aged(revision("prod"), "2026-01-01T00:00:05Z", "z");
        let newer = aged(revision("prod"), "2026-01-01T00:00:20Z", "a");
        let tie_smaller = aged(revision("prod"), "2026-01-01T00:00:10Z", "a");
        let tie_larger = aged(revision("prod"), "2026-01-01T00:00:10Z", "c");
        assert_eq!(
            check_clash(&t, Some(&older)).unwrap_err().reason,
            NAME_ALREADY_EXISTS
        );
        assert!(check_clash(&t, Some(&newer)).is_ok());
        assert_eq!(
            check_clash(&t, Some(&tie_smaller)).unwrap_err().reason,
            NAME_ALREADY_EXISTS
        );
        assert!(check_clash(&t, Some(&tie_larger)).is_ok());
        assert!(check_clash(&t, None).is_ok());
        // The revision controller's rule is the mirror image: exactly one side wins.
        for rev in [&older, &newer, &tie_smaller, &tie_larger] {
            assert_ne!(
                takes_precedence(rev.meta(), t.meta()),
                takes_precedence(t.meta(), rev.meta())
            );
        }
    }

    #[test]
    fn watch_events_map_to_tags_by_spec() {
        let floating = tag("prod", TargetKind::Istio, "mesh");
        let pinned = tag("canary", TargetKind::IstioRevision, "mesh-v1-26-3");
        assert!(follows_istio(&floating, "mesh"));
        assert!(!follows_istio(&floating, "other"));
        assert!(!follows_istio(&pinned, "mesh"));
        let mut owned = revision("mesh-v1-26-4");
        owned.metadata.owner_references = Some(vec![OwnerReference {
            kind: "Istio".into(),
            name: "mesh".into(),
            ..Default::default()
        }]);
        assert!(affected_by_revision(&floating, &owned));
        assert!(!affected_by_revision(&pinned, &owned));
        assert!(affected_by_revision(&pinned, &revision("mesh-v1-26-3")));
        assert!(!affected_by_revision(&floating, &revision("mesh-v1-26-3")));
        assert!(
            affected_by_revision(&floating, &revision("prod")),
            "a revision of the tag's name can clash with it"
        );
    }

    #[test]
    fn status_reports_target_use_and_state() {
        let t = tag("prod", TargetKind::Istio, "mesh");
        let target = Target {
            revision: "mesh-v1-26-3".into(),
            namespace: "istio-system".into(),
            enables_namespaces_by_default: false,
        };
        let s = status(&t, &Ok(target.clone()), &[], "t1");
        assert_eq!(s.state.as_deref(), Some("NotReferencedByAnything"));
        assert_eq!(
            (s.istio_revision.as_str(), s.istiod_namespace.as_str()),
            ("mesh-v1-26-3", "istio-system")
        );
        assert_eq!(s.observed_generation, Some(3));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        let mut t = t;
        t.status = Some(s.clone());
        let used = status(&t, &Ok(target), &["namespace app".into()], "t2");
        assert_eq!(used.state.as_deref(), Some("Healthy"));
        assert_eq!(
            used.conditions
                .get_condition(RECONCILED)
                .unwrap()
                .last_transition_time
                .as_deref(),
            Some("t1")
        );
        // Unchanged input gives an unchanged status (nothing to write).
        t.status = Some(used.clone());
        assert_eq!(
            status(&t, &Ok(used_target()), &["namespace app".into()], "t3"),
            used
        );
        // A failure keeps the last target, as upstream.
        let failed = status(
            &t,
            &Err((REF_NOT_FOUND, "Istio mesh not found".into())),
            &[],
            "t4",
        );
        assert_eq!(failed.state.as_deref(), Some(REF_NOT_FOUND));
        assert_eq!(failed.istio_revision, "mesh-v1-26-3");
    }

    fn used_target() -> Target {
        Target {
            revision: "mesh-v1-26-3".into(),
            namespace: "istio-system".into(),
            enables_namespaces_by_default: false,
        }
    }

    #[test]
    fn events_on_creation_retarget_and_new_refusals_only() {
        let t = tag("prod", TargetKind::Istio, "mesh");
        let first = status(&t, &Ok(used_target()), &[], "t1");
        let (ty, reason, note) = transition(&t, None, &first).unwrap();
        assert_eq!((ty, reason), (EventType::Normal, "Created"));
        assert!(note.contains("mesh-v1-26-3"), "{note}");
        assert_eq!(transition(&t, Some(&first), &first), None);
        let mut t2 = t.clone();
        t2.status = Some(first.clone());
        let moved = status(
            &t2,
            &Ok(Target {
                revision: "mesh-v1-26-4".into(),
                ..used_target()
            }),
            &[],
            "t2",
        );
        let (_, reason, note) = transition(&t2, Some(&first), &moved).unwrap();
        assert_eq!(reason, "Retargeted");
        assert!(
            note.contains("mesh-v1-26-3") && note.contains("mesh-v1-26-4"),
            "{note}"
        );
        let clash = status(&t2, &Err((NAME_ALREADY_EXISTS, "older".into())), &[], "t3");
        let (ty, reason, _) = transition(&t2, Some(&first), &clash).unwrap();
        assert_eq!((ty, reason), (EventType::Warning, NAME_ALREADY_EXISTS));
        assert_eq!(transition(&t2, Some(&clash), &clash), None, "not repeated");
        let other = status(&t2, &Err((RECONCILE_ERROR, "x".into())), &[], "t3");
        assert_eq!(transition(&t2, Some(&first), &other), None);
    }

    #[test]
    fn the_default_tag_prunes_its_base_objects_too() {
        assert_eq!(prunable_kinds("prod").len(), 2);
        let kinds: Vec<String> = prunable_kinds(DEFAULT_TAG)
            .into_iter()
            .map(|k| k.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                "MutatingWebhookConfiguration",
                "Service",
                "ValidatingWebhookConfiguration",
                "ServiceAccount"
            ]
        );
    }
}
