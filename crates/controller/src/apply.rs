//! Server-side apply of rendered objects under one field manager.
//!
//! Every applied object gets the owner's reference and a hash of its desired content. An object
//! whose live copy carries the same hash and still contains every desired field is left alone,
//! so a reconcile with nothing to change sends no write. Anything else (new object, changed
//! render, someone else's edit of a field mizzen owns) is applied with `force`, which repairs
//! drift. Objects with the owner's inventory label that the render no longer produces are
//! deleted.
//!
//! Live copies and the pruning inventory come from the shared caches of rendered kinds
//! ([`Children`]), so a no-op apply sends no request at all; the API server is asked only
//! where a cache cannot answer (kind not cached, not listed yet, watch failing, object not in
//! it). The applier remembers the object each of its writes returned until the cache has
//! caught up with it, so a reconcile that runs before its own write's watch event arrives
//! does not write again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope, pinned_kind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::children::Children;

/// The field manager of every write mizzen makes.
pub const FIELD_MANAGER: &str = "mizzen";
/// Annotation holding the hash of the desired content of an object.
pub const HASH_ANNOTATION: &str = "mizzen.io/applied-hash";

/// Whether an API error answering an apply is the object's own fault, so resending it cannot
/// succeed: 400, 413 and 422, and the 500 the API server gives when it cannot even convert
/// the applied object to its kind's type (a malformed quantity in `resources`, for example:
/// "failed to convert new object ... quantities must match the regular expression").
pub(crate) fn is_rejection(code: u16, message: &str) -> bool {
    matches!(code, 400 | 413 | 422)
        || (code == 500 && message.starts_with("failed to convert new object"))
}

/// Errors of apply and prune.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A rendered object lacks apiVersion, kind or name.
    #[error("rendered object is incomplete: {0}")]
    Incomplete(String),
    /// The API server rejected an object as invalid (400, 413, 422): the input's fault, not
    /// worth retrying until the desired objects change.
    #[error("rejected by the API server: {message}")]
    Rejected {
        /// Which object.
        key: String,
        /// The API server's message (it names the field).
        message: String,
    },
    /// The API server refused or failed a request.
    #[error("{action} {key}: {source}")]
    Api {
        /// What was attempted.
        action: &'static str,
        /// Which object.
        key: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

/// The object that owns what is applied (always cluster-scoped in mizzen's API).
#[derive(Clone, Debug)]
pub struct Owner {
    /// e.g. `sailoperator.io/v1`.
    pub api_version: String,
    /// e.g. `IstioRevision`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

impl Owner {
    fn reference(&self) -> Value {
        json!({
            "apiVersion": self.api_version, "kind": self.kind, "name": self.name,
            "uid": self.uid, "controller": true, "blockOwnerDeletion": true,
        })
    }
}

/// What one [`Applier::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Objects written (created or patched), by key.
    pub written: Vec<String>,
    /// Objects left alone because they already matched.
    pub unchanged: usize,
    /// Objects deleted by pruning, by key.
    pub pruned: Vec<String>,
}

/// A desired set the API server rejected: its hash, the object and the message.
struct Rejection {
    set: String,
    key: String,
    message: String,
}

/// Applies rendered objects; caches API discovery per kind.
pub struct Applier {
    client: Client,
    children: Arc<Children>,
    resources: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    /// Per owner UID: the hash of a desired set the API server rejected, and the rejection.
    /// The same set is not sent again (it would be rejected again); a changed one is.
    rejected: Mutex<HashMap<String, Rejection>>,
    /// Kinds the cluster did not serve, and when that was last asked.
    not_served: Mutex<HashMap<GroupVersionKind, Instant>>,
}

/// How long the answer "not served" is trusted: a kind installed later (multus on
/// OpenShift) is seen within this time of the next reconcile that asks.
const NOT_SERVED_FOR: Duration = Duration::from_secs(300);

impl Applier {
    /// An applier using `client` that reads live objects from `children` where it can.
    pub fn new(client: Client, children: Arc<Children>) -> Self {
        Self {
            client,
            children,
            resources: Mutex::new(HashMap::new()),
            rejected: Mutex::new(HashMap::new()),
            not_served: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the cluster serves `gvk`. A kind that is served is remembered (as every
    /// discovery answer is); one that is not is asked again after [`NOT_SERVED_FOR`], so a
    /// reconcile does not cost a discovery request.
    pub async fn served(&self, gvk: &GroupVersionKind) -> bool {
        if let Some(at) = self.not_served.lock().expect("not poisoned").get(gvk)
            && at.elapsed() < NOT_SERVED_FOR
        {
            return false;
        }
        let served = self.resource(gvk).await.is_ok();
        let mut not_served = self.not_served.lock().expect("not poisoned");
        if served {
            not_served.remove(gvk);
        } else {
            not_served.insert(gvk.clone(), Instant::now());
        }
        served
    }

    /// Applies `desired` for `owner`, then deletes every object of the `prunable` kinds that
    /// carries `inventory` (a `key=value` label) and is not in `desired`.
    pub async fn apply(
        &self,
        owner: &Owner,
        inventory: (&str, &str),
        desired: Vec<Value>,
        prunable: &[GroupVersionKind],
    ) -> Result<ApplyReport, ApplyError> {
        let set = content_hash(&Value::Array(desired.clone()));
        if let Some(r) = self.rejected.lock().expect("not poisoned").get(&owner.uid)
            && r.set == set
        {
            return Err(ApplyError::Rejected {
                key: r.key.clone(),
                message: r.message.clone(),
            });
        }
        let result = self
            .apply_inner(Some((owner, inventory)), desired, prunable)
            .await;
        let mut rejected = self.rejected.lock().expect("not poisoned");
        match &result {
            Err(ApplyError::Rejected { key, message }) => {
                rejected.insert(
                    owner.uid.clone(),
                    Rejection {
                        set,
                        key: key.clone(),
                        message: message.clone(),
                    },
                );
            }
            _ => {
                rejected.remove(&owner.uid);
            }
        }
        result
    }

    /// Applies objects that nothing owns and nothing prunes (Istio's CRDs, which must outlive
    /// every revision: deleting them would delete every user's Istio configuration).
    pub async fn apply_unowned(&self, desired: Vec<Value>) -> Result<ApplyReport, ApplyError> {
        self.apply_inner(None, desired, &[]).await
    }

    async fn apply_inner(
        &self,
        owner: Option<(&Owner, (&str, &str))>,
        desired: Vec<Value>,
        prunable: &[GroupVersionKind],
    ) -> Result<ApplyReport, ApplyError> {
        let mut report = ApplyReport::default();
        let mut keep = BTreeSet::new();
        for mut obj in desired {
            prepare(&mut obj, owner);
            let key = key_of(&obj)?;
            let gvk = gvk_of(&obj)?;
            let api = self.api_for(&obj).await?;
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            keep.insert(key.clone());
            let cached = self
                .children
                .live(&gvk, obj["metadata"]["namespace"].as_str(), &name)
                .flatten();
            let live = match cached {
                Some(cached) => Some(cached),
                None => api
                    .get_opt(&name)
                    .await
                    .map_err(|source| ApplyError::Api {
                        action: "get",
                        key: key.clone(),
                        source,
                    })?
                    .map(Arc::new),
            };
            if let Some(l) = &live {
                if ignored(&l.metadata) {
                    report.unchanged += 1;
                    continue;
                }
                // After the content hash: a field handed over changes nothing mizzen wants.
                hand_over(&mut obj, l);
                match difference(&obj, l) {
                    None => {
                        report.unchanged += 1;
                        continue;
                    }
                    Some(path) => tracing::debug!(key, path, "live object differs; applying"),
                }
            }
            let written = api
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&obj),
                )
                .await
                .map_err(|source| match source {
                    kube::Error::Api(s) if is_rejection(s.code, &s.message) => {
                        ApplyError::Rejected {
                            key: key.clone(),
                            message: s.message,
                        }
                    }
                    source => ApplyError::Api {
                        action: "apply",
                        key: key.clone(),
                        source,
                    },
                })?;
            self.children.wrote(&gvk, written);
            report.written.push(key);
        }
        let Some((_, inventory)) = owner else {
            return Ok(report);
        };
        let selector = format!("{}={}", inventory.0, inventory.1);
        for gvk in prunable {
            let (ar, caps) = self.resource(gvk).await?;
            // (namespace, name, leave it: being deleted, or ignored)
            let items: Vec<(Option<String>, String, bool)> =
                match self.children.labelled(gvk, inventory) {
                    Some(cached) => cached
                        .iter()
                        .map(|o| {
                            (
                                o.namespace(),
                                o.name_any(),
                                o.metadata.deletion_timestamp.is_some() || ignored(&o.metadata),
                            )
                        })
                        .collect(),
                    None => Api::<DynamicObject>::all_with(self.client.clone(), &ar)
                        .list_metadata(&ListParams::default().labels(&selector))
                        .await
                        .map_err(|source| ApplyError::Api {
                            action: "list",
                            key: ar.kind.clone(),
                            source,
                        })?
                        .items
                        .into_iter()
                        .map(|o| {
                            (
                                o.namespace(),
                                o.name_any(),
                                o.metadata.deletion_timestamp.is_some() || ignored(&o.metadata),
                            )
                        })
                        .collect(),
                };
            for (ns, name, leave) in items {
                let key = format!(
                    "{}/{}/{}/{}",
                    ar.group,
                    ar.kind,
                    ns.as_deref().unwrap_or(""),
                    name
                );
                if keep.contains(&key) || leave {
                    continue;
                }
                let api: Api<DynamicObject> = match (&caps.scope, &ns) {
                    (Scope::Namespaced, Some(ns)) => {
                        Api::namespaced_with(self.client.clone(), ns, &ar)
                    }
                    _ => Api::all_with(self.client.clone(), &ar),
                };
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(source) => {
                        return Err(ApplyError::Api {
                            action: "prune",
                            key,
                            source,
                        });
                    }
                }
                self.children.forget(gvk, ns.as_deref(), &name);
                report.pruned.push(key);
            }
        }
        Ok(report)
    }

    async fn api_for(&self, obj: &Value) -> Result<Api<DynamicObject>, ApplyError> {
        let gvk = gvk_of(obj)?;
        let (ar, caps) = self.resource(&gvk).await?;
        Ok(match (caps.scope, obj["metadata"]["namespace"].as_str()) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &ar),
            _ => Api::all_with(self.client.clone(), &ar),
        })
    }

    async fn resource(
        &self,
        gvk: &GroupVersionKind,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        if let Some(r) = self.resources.lock().expect("not poisoned").get(gvk) {
            return Ok(r.clone());
        }
        let r = pinned_kind(&self.client, gvk)
            .await
            .map_err(|source| ApplyError::Api {
                action: "discover",
                key: format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind),
                source,
            })?;
        self.resources
            .lock()
            .expect("not poisoned")
            .insert(gvk.clone(), r.clone());
        Ok(r)
    }
}

/// Adds the owner reference and the inventory label (when owned) and the content hash.
fn prepare(obj: &mut Value, owner: Option<(&Owner, (&str, &str))>) {
    let meta = &mut obj["metadata"];
    if let Some((owner, inventory)) = owner {
        meta["ownerReferences"] = json!([owner.reference()]);
        meta["labels"][inventory.0] = json!(inventory.1);
    }
    if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        a.remove(HASH_ANNOTATION);
        if a.is_empty() {
            meta.as_object_mut()
                .expect("metadata is an object")
                .remove("annotations");
        }
    }
    let hash = content_hash(obj);
    obj["metadata"]["annotations"][HASH_ANNOTATION] = json!(hash);
}

/// Fields mizzen sets when it creates an object and then leaves to whoever changes them:
/// a validating webhook's `failurePolicy`, created at `Ignore` (as upstream's charts do, so
/// that Istio configuration can be written before istiod serves) and tightened to `Fail` by
/// istiod once it does. While the live value is still the rendered one, it is sent as
/// rendered (a repair must not drop it to the API server's default, `Fail`, before istiod
/// serves); once it differs, it is not sent at all, so mizzen neither reverts istiod (no
/// write war) nor writes because of it (docs/DESIGN.md decision 3).
fn hand_over(desired: &mut Value, live: &DynamicObject) {
    if desired["kind"] != "ValidatingWebhookConfiguration" {
        return;
    }
    let live_hooks = live.data["webhooks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(hooks) = desired["webhooks"].as_array_mut() else {
        return;
    };
    for hook in hooks.iter_mut() {
        let Some(live_hook) = live_hooks.iter().find(|l| l["name"] == hook["name"]) else {
            continue;
        };
        if live_hook["failurePolicy"] != hook["failurePolicy"]
            && let Some(h) = hook.as_object_mut()
        {
            h.remove("failurePolicy");
        }
    }
}

/// A stable hash of an object's JSON (serde_json maps are sorted).
pub fn content_hash(obj: &Value) -> String {
    let digest = Sha256::digest(obj.to_string().as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Sail's annotation on a child object that the operator must leave alone.
pub const IGNORE_ANNOTATION: &str = "sailoperator.io/ignore";

/// Whether a live object carries [`IGNORE_ANNOTATION`] `"true"`: it is neither written nor
/// pruned (as Sail does).
fn ignored(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(IGNORE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// Whether applying `desired` for `owner` (with its inventory label) would write to `live`,
/// as the applier decides it: `None` when not, else the path of the first difference. For
/// what an upgrade would change before it starts (`mizzen plan`).
pub fn would_change(
    desired: &Value,
    owner: Option<(&Owner, (&str, &str))>,
    live: &DynamicObject,
) -> Option<String> {
    let mut obj = desired.clone();
    prepare(&mut obj, owner);
    hand_over(&mut obj, live);
    difference(&obj, live)
}

/// Where the live object differs from what `desired` asks for (`None`: nothing to do).
fn difference(desired: &Value, live: &DynamicObject) -> Option<String> {
    let live = serde_json::to_value(live).unwrap_or(Value::Null);
    let hash = |v: &Value| v["metadata"]["annotations"][HASH_ANNOTATION].clone();
    if hash(&live) != hash(desired) {
        return Some(format!("metadata.annotations.{HASH_ANNOTATION}"));
    }
    first_difference(desired, &live, "")
}

/// Whether every field of `want` is present in `have` with the same value. Lists must have the
/// same length and match element by element (the API server adds defaults inside elements).
pub fn is_subset(want: &Value, have: &Value) -> bool {
    first_difference(want, have, "").is_none()
}

/// The path of the first field of `want` that `have` lacks or holds differently.
fn first_difference(want: &Value, have: &Value, path: &str) -> Option<String> {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().find_map(|(k, v)| match h.get(k) {
            Some(hv) => first_difference(v, hv, &format!("{path}.{k}")),
            None if v.is_null() => None,
            None => Some(format!("{path}.{k}")),
        }),
        // Lists of named entries (env, containers, volumes, ports, mounts) are merged by key
        // by server-side apply: entries another manager added stay theirs. Each of mizzen's
        // entries must be there, as rendered; foreign ones are left alone (and cause no
        // write, which could not remove them anyway).
        (Value::Array(w), Value::Array(h)) if list_key(w).is_some() => {
            let key = list_key(w).expect("checked");
            w.iter().find_map(|a| {
                let k = &a[key];
                let at = format!("{path}[{key}={k}]");
                match h.iter().find(|b| &b[key] == k) {
                    Some(b) => first_difference(a, b, &at),
                    None => Some(at),
                }
            })
        }
        (Value::Array(w), Value::Array(h)) if w.len() == h.len() => w
            .iter()
            .zip(h)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]"))),
        (w, h) if w == h => None,
        (Value::Number(w), Value::Number(h)) if w.as_f64() == h.as_f64() => None,
        (Value::String(w), Value::String(h)) if same_quantity(w, h) => None,
        _ => Some(path.to_string()),
    }
}

/// The merge key of a non-empty list whose entries are all objects naming one (`mountPath`
/// for volume mounts, else `name`).
fn list_key(items: &[Value]) -> Option<&'static str> {
    ["mountPath", "name"].into_iter().find(|key| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.get(*key).is_some_and(Value::is_string))
    })
}

/// Whether two strings are the same Kubernetes quantity in different spellings (the API server
/// canonicalises `2048Mi` to `2Gi`, `0.5` to `500m`).
fn same_quantity(a: &str, b: &str) -> bool {
    matches!((quantity(a), quantity(b)), (Some(x), Some(y)) if (x - y).abs() <= f64::EPSILON * x.abs().max(1.0))
}

fn quantity(s: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, f)| s.strip_suffix(suffix).map(|n| (n, *f)))
        .unwrap_or((s, 1.0));
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * factor)
}

/// The group, version and kind of an object.
pub fn gvk_of(obj: &Value) -> Result<GroupVersionKind, ApplyError> {
    let api_version = obj["apiVersion"]
        .as_str()
        .ok_or_else(|| ApplyError::Incomplete(obj.to_string()))?;
    let kind = obj["kind"]
        .as_str()
        .ok_or_else(|| ApplyError::Incomplete(obj.to_string()))?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Ok(GroupVersionKind::gvk(group, version, kind))
}

/// `group/Kind/namespace/name`, the identity used for pruning.
pub fn key_of(obj: &Value) -> Result<String, ApplyError> {
    let gvk = gvk_of(obj)?;
    let name = obj["metadata"]["name"]
        .as_str()
        .ok_or_else(|| ApplyError::Incomplete(obj.to_string()))?;
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    Ok(format!("{}/{}/{}/{}", gvk.group, gvk.kind, ns, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_objects_are_rejections_server_trouble_is_not() {
        assert!(is_rejection(422, "Deployment.apps is invalid"));
        assert!(is_rejection(
            500,
            "failed to convert new object (ns/istiod; apps/v1, Kind=Deployment) to proper \
             version: quantities must match the regular expression"
        ));
        assert!(!is_rejection(500, "etcdserver: request timed out"));
        assert!(!is_rejection(409, "conflict"));
        assert!(!is_rejection(429, "too many requests"));
    }

    #[test]
    fn subset_ignores_server_defaults_but_not_changes() {
        let want = json!({"spec": {"ports": [{"port": 80}], "a": "b"}});
        let have = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "a": "b", "x": 1}});
        assert!(is_subset(&want, &have));
        assert!(!is_subset(&json!({"spec": {"a": "c"}}), &have));
        assert!(
            !is_subset(&json!({"spec": {"ports": []}}), &have),
            "list length matters"
        );
        assert!(!is_subset(&json!({"spec": {"missing": 1}}), &have));
    }

    #[test]
    fn named_entries_are_matched_by_name_and_foreign_ones_tolerated() {
        let want = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        let foreign = json!({"env": [
            {"name": "B", "value": "2"}, {"name": "X", "value": "theirs"}, {"name": "A", "value": "1"}
        ]});
        assert!(
            is_subset(&want, &foreign),
            "another manager's entry and order do not count"
        );
        let changed = json!({"env": [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]});
        assert_eq!(
            first_difference(&want, &changed, ""),
            Some(".env[name=\"A\"].value".into()),
            "a change to mizzen's own entry does"
        );
        let missing = json!({"env": [{"name": "A", "value": "1"}]});
        assert!(!is_subset(&want, &missing));
        let mounts = json!([{"name": "v", "mountPath": "/a"}, {"name": "v", "mountPath": "/b"}]);
        assert!(
            is_subset(&mounts, &mounts),
            "mounts are keyed by path, not volume name"
        );
    }

    #[test]
    fn server_spellings_of_numbers_and_quantities_are_equal() {
        assert!(is_subset(
            &json!({"memory": "2048Mi", "cpu": "0.5"}),
            &json!({"memory": "2Gi", "cpu": "500m"})
        ));
        assert!(is_subset(&json!({"x": 1.0}), &json!({"x": 1})));
        assert!(!is_subset(
            &json!({"memory": "2048Mi"}),
            &json!({"memory": "2G"})
        ));
        assert!(!is_subset(&json!({"name": "m"}), &json!({"name": "1m"})));
        assert!(!is_subset(
            &json!({"image": "a:1"}),
            &json!({"image": "a:2"})
        ));
    }

    #[test]
    fn hash_changes_with_content_only() {
        let owner = Owner {
            api_version: "v1".into(),
            kind: "X".into(),
            name: "o".into(),
            uid: "u".into(),
        };
        let mut a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "1"}});
        let mut b = a.clone();
        let inv = ("mizzen.io/owner", "x.o");
        prepare(&mut a, Some((&owner, inv)));
        prepare(&mut b, Some((&owner, inv)));
        assert_eq!(a, b);
        let h1 = a["metadata"]["annotations"][HASH_ANNOTATION].clone();
        prepare(&mut a, Some((&owner, inv)));
        assert_eq!(
            a["metadata"]["annotations"][HASH_ANNOTATION], h1,
            "re-preparing is stable"
        );
        b["data"]["k"] = json!("2");
        prepare(&mut b, Some((&owner, inv)));
        assert_ne!(b["metadata"]["annotations"][HASH_ANNOTATION], h1);
        assert_eq!(key_of(&a).unwrap(), "/ConfigMap//c");
    }
}
