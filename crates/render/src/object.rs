//! [`Object`]: one rendered Kubernetes object, ready for server-side apply, and the
//! [`Stamp`] every object is built with (common labels, pruning, canonical order).

use std::any::TypeId;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{NamespaceResourceScope, Resource};
use mizzen_catalog::Version;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::RenderError;
use crate::json;
use crate::labels::{
    INVENTORY_LABEL, Labels, MANAGED_BY, MANAGED_BY_LABEL, Owner, PART_OF_LABEL, VERSION_LABEL,
};

/// A rendered Kubernetes object: `apiVersion`, `kind`, `metadata` (name, namespace for
/// namespaced kinds, labels) and the fields mizzen owns, nothing else: no `status`, no
/// empty lists or maps, no webhook `caBundle`. Maps are in sorted key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Object(Value);

impl Object {
    /// `apiVersion`, e.g. `apps/v1` or `v1`.
    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"]).unwrap_or_default()
    }

    /// The API group: the part of `apiVersion` before `/`, empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// `kind`, e.g. `Deployment`.
    pub fn kind(&self) -> &str {
        self.str_at(&["kind"]).unwrap_or_default()
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"]).unwrap_or_default()
    }

    /// `metadata.namespace`; `None` for cluster-scoped kinds.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at(&["metadata", "namespace"])
    }

    /// `metadata.labels`.
    pub fn labels(&self) -> Labels {
        json::get(&self.0, &["metadata", "labels"])
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One label's value.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.str_at(&["metadata", "labels", key])
    }

    /// A stable identity, `group/kind/namespace/name`: the group is empty for the core
    /// group and the namespace empty for cluster-scoped kinds, e.g. `/ConfigMap/istio-system/istio`
    /// or `rbac.authorization.k8s.io/ClusterRole//istio-cni`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.group(),
            self.kind(),
            self.namespace().unwrap_or_default(),
            self.name()
        )
    }

    /// The JSON document.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// The JSON document, by value.
    pub fn into_json(self) -> Value {
        self.0
    }

    /// The value at a JSON pointer (`/spec/template/spec`), for inspection.
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    /// The object as a YAML document.
    pub fn to_yaml(&self) -> Result<String, RenderError> {
        serde_saphyr::to_string(&self.0)
            .map_err(|e| RenderError::serialize(format!("{} as YAML", self.key()), e))
    }

    fn str_at(&self, path: &[&str]) -> Option<&str> {
        json::get(&self.0, path).and_then(Value::as_str)
    }

    /// Position in the apply order: CRDs, then identities, RBAC and configuration, then
    /// Services and workloads, then what depends on workloads (autoscalers, budgets,
    /// webhooks).
    fn rank(&self) -> u8 {
        match self.kind() {
            "CustomResourceDefinition" => 0,
            "ServiceAccount" => 1,
            "ClusterRole" => 2,
            "ClusterRoleBinding" => 3,
            "Role" => 4,
            "RoleBinding" => 5,
            "ConfigMap" => 6,
            "NetworkAttachmentDefinition" => 7,
            "Service" => 8,
            "Deployment" | "DaemonSet" => 9,
            "HorizontalPodAutoscaler" => 10,
            "PodDisruptionBudget" => 11,
            "MutatingWebhookConfiguration" => 12,
            "ValidatingWebhookConfiguration" => 13,
            _ => 14,
        }
    }
}

/// Several objects as one multi-document YAML stream (`---` between documents).
pub fn to_yaml(objects: &[Object]) -> Result<String, RenderError> {
    let docs = objects
        .iter()
        .map(Object::to_yaml)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

/// Sorts objects into apply order (see [`Object::rank`]), then by namespace and name.
pub(crate) fn sorted(mut objects: Vec<Object>) -> Vec<Object> {
    objects.sort_by(|a, b| {
        (a.rank(), a.namespace(), a.name()).cmp(&(b.rank(), b.namespace(), b.name()))
    });
    objects
}

/// What every object of one render is stamped with: the common labels (managed-by,
/// part-of, version, inventory). Turns typed objects into [`Object`]s.
pub(crate) struct Stamp {
    labels: Labels,
}

impl Stamp {
    /// The stamp of objects owned by `owner` at Istio `version`.
    pub(crate) fn new(owner: &Owner, version: &Version) -> Self {
        let labels = [
            (MANAGED_BY_LABEL, MANAGED_BY.to_owned()),
            (PART_OF_LABEL, "istio".to_owned()),
            (VERSION_LABEL, version.tag()),
            (INVENTORY_LABEL, owner.label_value()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Self { labels }
    }

    /// The labels upstream's charts also put on pods: part-of and version (not the
    /// managed-by and inventory labels, which only mark the objects mizzen applies).
    pub(crate) fn pod_labels(&self) -> Labels {
        self.labels
            .iter()
            .filter(|(k, _)| *k == PART_OF_LABEL || *k == VERSION_LABEL)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A typed object, serialized and stamped.
    pub(crate) fn object<K>(&self, resource: &K) -> Result<Object, RenderError>
    where
        K: Resource + Serialize,
        K::Scope: 'static,
    {
        let value = serde_json::to_value(resource)
            .map_err(|e| RenderError::serialize(format!("a {}", K::KIND), e))?;
        let namespaced = TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>();
        self.finish(value, namespaced)
    }

    /// An object of a kind k8s-openapi does not have (e.g. a NetworkAttachmentDefinition),
    /// from its metadata and body fields.
    pub(crate) fn custom(
        &self,
        api_version: &str,
        kind: &str,
        metadata: ObjectMeta,
        body: Map<String, Value>,
    ) -> Result<Object, RenderError> {
        let namespaced = metadata.namespace.is_some();
        let metadata = serde_json::to_value(metadata)
            .map_err(|e| RenderError::serialize(format!("a {kind}"), e))?;
        let mut doc = Map::new();
        doc.insert("apiVersion".into(), api_version.into());
        doc.insert("kind".into(), kind.into());
        doc.insert("metadata".into(), metadata);
        doc.extend(body);
        self.finish(Value::Object(doc), namespaced)
    }

    fn finish(&self, mut value: Value, namespaced: bool) -> Result<Object, RenderError> {
        for (key, label) in &self.labels {
            json::set(
                &mut value,
                &["metadata", "labels", key],
                Value::String(label.clone()),
            );
        }
        if let Some(map) = value.as_object_mut() {
            map.remove("status");
        }
        json::prune(&mut value);
        let object = Object(json::canonical(value));
        let has_namespace = object.namespace().is_some_and(|ns| !ns.is_empty());
        if object.name().is_empty() || object.kind().is_empty() || has_namespace != namespaced {
            return Err(RenderError::serialize(
                object.key(),
                "an object needs a kind, a name, and a namespace exactly when it is namespaced",
            ));
        }
        Ok(object)
    }
}

/// Metadata of a namespaced object.
pub(crate) fn namespaced(name: &str, namespace: &str, labels: Labels) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// Metadata of a cluster-scoped object.
pub(crate) fn cluster(name: &str, labels: Labels) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// Adds annotations to metadata (nothing when `annotations` is empty).
pub(crate) fn annotated(mut meta: ObjectMeta, annotations: BTreeMap<String, String>) -> ObjectMeta {
    if !annotations.is_empty() {
        meta.annotations = Some(annotations);
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
    use k8s_openapi::api::rbac::v1::ClusterRole;

    fn stamp() -> Stamp {
        Stamp::new(&Owner::istio_cni("default"), &Version::new(1, 27, 3))
    }

    #[test]
    fn stamps_common_labels_and_exposes_identity() {
        let sa = ServiceAccount {
            metadata: namespaced("istio-cni", "istio-cni", Labels::new()),
            ..ServiceAccount::default()
        };
        let object = stamp().object(&sa).unwrap();
        assert_eq!(object.api_version(), "v1");
        assert_eq!(object.group(), "");
        assert_eq!(object.kind(), "ServiceAccount");
        assert_eq!(object.namespace(), Some("istio-cni"));
        assert_eq!(object.key(), "/ServiceAccount/istio-cni/istio-cni");
        assert_eq!(object.label(MANAGED_BY_LABEL), Some("mizzen"));
        assert_eq!(object.label(PART_OF_LABEL), Some("istio"));
        assert_eq!(object.label(VERSION_LABEL), Some("1.27.3"));
        assert_eq!(object.label(INVENTORY_LABEL), Some("istiocni.default"));
    }

    #[test]
    fn rejects_namespace_mismatch() {
        let cm = ConfigMap {
            metadata: cluster("x", Labels::new()),
            ..ConfigMap::default()
        };
        assert!(stamp().object(&cm).is_err());
        let role = ClusterRole {
            metadata: namespaced("x", "ns", Labels::new()),
            ..ClusterRole::default()
        };
        assert!(stamp().object(&role).is_err());
        let role = ClusterRole {
            metadata: cluster("x", Labels::new()),
            ..ClusterRole::default()
        };
        let object = stamp().object(&role).unwrap();
        assert_eq!(object.key(), "rbac.authorization.k8s.io/ClusterRole//x");
        assert!(object.pointer("/rules").is_none());
    }
}
