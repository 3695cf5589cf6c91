//! What every reconciler shares: the client, the applier, the catalog, the platform, event
//! publishing, the index of namespaces and pods, and small status helpers.

use std::sync::Arc;

use jiff::{Timestamp, Unit};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use mizzen_catalog::Catalog;
use mizzen_render::Platform;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::apply::Applier;
use crate::children::Children;
use crate::workloads::{NamespaceState, Workloads};

/// Shared state of the controllers.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Server-side apply and prune.
    pub applier: Applier,
    /// The caches of rendered objects.
    pub children: Arc<Children>,
    /// The shared watches and stores of mizzen's own kinds.
    pub own: crate::own::OwnKinds,
    /// The version catalog.
    pub catalog: Arc<Catalog>,
    /// Kubernetes or OpenShift.
    pub platform: Platform,
    /// Event publishing.
    pub recorder: Recorder,
    /// Every namespace and the non-terminal pods that can use a revision, as the in-use
    /// rules read them.
    pub workloads: Arc<Workloads>,
    /// The controllers' metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Watch and start-up health.
    pub health: Arc<crate::wiring::Health>,
    /// Consecutive failures per object, for the retry backoff.
    pub(crate) retries: crate::wiring::Retries,
    /// The key tree of the published `spec.values` schema of each kind (for naming keys mizzen
    /// ignores).
    values_schemas: std::collections::HashMap<String, serde_json::Value>,
    /// The unknown keys last reported per object UID, so each set is reported once.
    reported_unknown: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

impl Context {
    /// A context over `workloads`, which [`crate::run`] fills.
    pub fn new(
        client: Client,
        catalog: Arc<Catalog>,
        platform: Platform,
        workloads: Arc<Workloads>,
        metrics: Arc<crate::metrics::Metrics>,
        health: Arc<crate::wiring::Health>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "mizzen".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        let own = crate::own::OwnKinds::new(health.clone());
        // The Istio controller applies IstioRevisions: they are read from the shared store.
        let children = Arc::new(
            Children::new(&crate::run::cached_kinds(), health.clone()).with_lookup(
                GroupVersionKind::gvk("sailoperator.io", "v1", "IstioRevision"),
                own.revisions.lookup(),
            ),
        );
        let values_schemas = mizzen_api::crds::crds(&crate::crd_versions(&catalog))
            .iter()
            .map(|crd| {
                (
                    crd.spec.names.kind.clone(),
                    mizzen_api::values::key_tree(&mizzen_api::crds::values_schema(crd)),
                )
            })
            .collect();
        Self {
            values_schemas,
            reported_unknown: Default::default(),
            applier: Applier::new(client.clone(), children.clone()),
            children,
            own,
            client,
            catalog,
            platform,
            recorder,
            workloads,
            metrics,
            health,
            retries: Default::default(),
        }
    }

    /// Publishes an event on `obj`; failures are logged, never fatal.
    ///
    /// kube's recorder folds events with the same reason and action into one series that
    /// keeps the first note, so a later event with a different note would go unseen. The
    /// action is therefore the reason plus a hash of the note: events with different notes
    /// are distinct events, and a repeated note counts up one series.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let action = format!(
            "{reason}-{}",
            crate::apply::content_hash(&note.as_str().into())
        );
        self.publish(obj, type_, reason, action, note).await
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: String,
        note: String,
    ) {
        let reference: ObjectReference = obj.object_ref(&());
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action,
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }

    /// Reports, with a Warning Event, the keys of `values` that mizzen keeps but does not act
    /// on (typos, keys of newer Istio releases, features not rendered yet), and a `profile`
    /// whose settings are not all applied. Each distinct set is reported once per object.
    pub async fn report_unknown_values<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        values: &impl serde::Serialize,
        profile: Option<&str>,
    ) {
        let kind = K::kind(&()).into_owned();
        let (Some(schema), Ok(json)) =
            (self.values_schemas.get(&kind), serde_json::to_value(values))
        else {
            return;
        };
        let mut keys = mizzen_api::values::unknown_keys(&json, schema);
        keys.sort();
        keys.extend(mizzen_api::values::ineffective_keys(&json));
        let named = json["profile"]
            .as_str()
            .filter(|p| !p.is_empty())
            .or(profile);
        keys.extend(mizzen_api::values::ineffective_profile(named));
        let uid = obj.meta().uid.clone().unwrap_or_default();
        {
            let mut seen = self.reported_unknown.lock().expect("not poisoned");
            if seen.get(&uid) == Some(&keys) {
                return;
            }
            seen.insert(uid, keys.clone());
        }
        if !keys.is_empty() {
            let note = format!(
                "spec.values keys that mizzen keeps but does not act on: {}",
                keys.join(", ")
            );
            self.event(obj, EventType::Warning, "UnknownValues", note)
                .await;
        }
    }

    /// Whether namespace `name` exists and is not being deleted.
    pub fn namespace_ready(&self, name: &str) -> Result<(), String> {
        match self.workloads.namespace(name) {
            NamespaceState::Missing => Err(format!(
                "namespace \"{name}\" doesn't exist; create it and mizzen continues"
            )),
            NamespaceState::Deleting => Err(format!("namespace \"{name}\" is being deleted")),
            NamespaceState::Present => Ok(()),
        }
    }
}

/// The annotation that pauses an Istio, IstioCNI or ZTunnel: while it is `"true"`, mizzen
/// writes none of that resource's children (docs/rollout.md, "Pausing a resource").
pub const PAUSED_ANNOTATION: &str = "mizzen.io/paused";
/// The condition reason (of `Reconciled`) and `state` of a paused resource.
pub const PAUSED_REASON: &str = "Paused";

/// Why `obj` is paused, when it is.
pub fn paused<K: Resource<DynamicType = ()>>(obj: &K) -> Option<String> {
    let on = obj
        .meta()
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSED_ANNOTATION))
        .is_some_and(|v| v == "true");
    on.then(|| {
        format!(
            "{PAUSED_ANNOTATION} is \"true\": mizzen writes none of this {}'s children; remove \
             the annotation to go on",
            K::kind(&())
        )
    })
}

/// Now, cut to the second as the API server cuts its own timestamps, in the RFC 3339 form of
/// condition timestamps (a time rounded up would lie in the future).
pub fn now() -> String {
    Timestamp::now()
        .round(
            jiff::TimestampRound::new()
                .smallest(Unit::Second)
                .mode(jiff::RoundMode::Trunc),
        )
        .expect("cutting to seconds")
        .to_string()
}

/// Writes `desired` as the status of a cluster-scoped object when it differs from `current`
/// (no request otherwise). Top-level fields that disappeared are removed.
pub async fn patch_status<K, S>(
    client: &Client,
    obj: &K,
    current: Option<&S>,
    desired: &S,
) -> kube::Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(desired) {
        return Ok(());
    }
    let mut status = serde_json::to_value(desired).expect("status serializes");
    if let (Some(old), Some(new)) = (
        current.map(|c| serde_json::to_value(c).expect("status serializes")),
        status.as_object_mut(),
    ) && let Some(old) = old.as_object()
    {
        for key in old.keys() {
            new.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    let api: Api<K> = Api::all(client.clone());
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_cut_to_the_second_never_rounded_up() {
        let before = jiff::Timestamp::now();
        let now: jiff::Timestamp = super::now().parse().unwrap();
        assert_eq!(now.subsec_nanosecond(), 0);
        assert!(now <= before, "{now} is later than {before}");
        assert!(before.as_second() - now.as_second() <= 1);
    }
}
