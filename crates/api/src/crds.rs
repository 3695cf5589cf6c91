//! The CustomResourceDefinitions of the five kinds, with the version enums and defaults of a
//! catalog and the CEL rules of the upstream API.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::core::crd::merge_crds;
use serde_json::{Value, json};

use crate::{Istio, IstioCNI, IstioRevision, IstioRevisionTag, RolloutPolicy, ZTunnel, ztunnel};

/// The version names the CRDs accept, taken from a version catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionEnums {
    /// Every name `Istio` and `IstioCNI` accept: concrete, aliases and end-of-life.
    pub all: Vec<String>,
    /// Concrete names only (for `IstioRevision`), end-of-life included.
    pub concrete: Vec<String>,
    /// Names `ZTunnel` accepts (1.24 and newer).
    pub ztunnel: Vec<String>,
    /// The default of `spec.version`.
    pub default: String,
}

/// A CEL rule of a schema.
fn rule(rule: &str, message: &str) -> Value {
    json!({ "rule": rule, "message": message })
}

const IMMUTABLE: &str = "Value is immutable";
const NAME_DEFAULT: &str = "self.metadata.name == 'default'";
const NAME_DEFAULT_MSG: &str = "metadata.name must be 'default'";

/// Every CRD mizzen serves, in a stable order.
pub fn crds(v: &VersionEnums) -> Vec<CustomResourceDefinition> {
    let istio = edit(Istio::crd(), |root| {
        let spec = &mut root["properties"]["spec"];
        versions(spec, &v.all, Some(&v.default));
        spec["default"] = json!({
            "version": v.default, "namespace": "istio-system",
            "updateStrategy": {"type": "InPlace"}
        });
        spec["required"] = json!(["namespace", "version"]);
        spec["properties"]["updateStrategy"]["default"] = json!({"type": "InPlace"});
        spec["properties"]["updateStrategy"]["properties"]["type"]["default"] = json!("InPlace");
        immutable(spec, "namespace");
        push_rule(
            spec,
            rule(
                "!has(self.values) || !has(self.values.global) || !has(self.values.global.istioNamespace) || self.values.global.istioNamespace == self.namespace",
                "spec.values.global.istioNamespace must match spec.namespace",
            ),
        );
    });
    let revision = edit(IstioRevision::crd(), |root| {
        let spec = &mut root["properties"]["spec"];
        versions(spec, &v.concrete, None);
        immutable(spec, "namespace");
        push_rule(
            spec,
            rule(
                "!has(self.values) || !has(self.values.global) || !has(self.values.global.istioNamespace) || self.values.global.istioNamespace == self.namespace",
                "spec.values.global.istioNamespace must match spec.namespace",
            ),
        );
        push_rule(
            root,
            rule(
                "self.metadata.name == 'default' ? (!has(self.spec.values) || !has(self.spec.values.revision) || size(self.spec.values.revision) == 0) : (has(self.spec.values) && has(self.spec.values.revision) && self.spec.values.revision == self.metadata.name)",
                "spec.values.revision must match metadata.name or be empty when the name is 'default'",
            ),
        );
    });
    let tag = IstioRevisionTag::crd();
    let cni = edit(IstioCNI::crd(), |root| {
        let spec = &mut root["properties"]["spec"];
        versions(spec, &v.all, Some(&v.default));
        spec["default"] = json!({"version": v.default, "namespace": "istio-cni"});
        spec["required"] = json!(["namespace", "version"]);
        immutable(spec, "namespace");
        push_rule(root, rule(NAME_DEFAULT, NAME_DEFAULT_MSG));
    });
    let ztunnel_v1 = edit(ZTunnel::crd(), |root| {
        let spec = &mut root["properties"]["spec"];
        versions(spec, &v.ztunnel, Some(&v.default));
        spec["default"] = json!({"version": v.default, "namespace": "ztunnel"});
        spec["required"] = json!(["namespace", "version"]);
        push_rule(root, rule(NAME_DEFAULT, NAME_DEFAULT_MSG));
    });
    let ztunnel_v1alpha1 = edit(ztunnel::v1alpha1::ZTunnel::crd(), |root| {
        let spec = &mut root["properties"]["spec"];
        versions(spec, &v.ztunnel, Some(&v.default));
        spec["properties"]["profile"]["default"] = json!("ambient");
        spec["default"] =
            json!({"version": v.default, "namespace": "ztunnel", "profile": "ambient"});
        spec["required"] = json!(["namespace", "version"]);
        push_rule(root, rule(NAME_DEFAULT, NAME_DEFAULT_MSG));
    });
    let ztunnel = merge_crds(vec![ztunnel_v1alpha1, ztunnel_v1], "v1")
        .expect("the two ZTunnel versions share names, group and scope");
    // mizzen's own API group: how the data plane's DaemonSets roll out (docs/rollout.md). A
    // bad wave size is reported by the operator as a condition that names it.
    let rollout = edit(RolloutPolicy::crd(), |root| {
        let spec = &mut root["properties"]["spec"];
        spec["required"] = json!(["targetRef"]);
        immutable(spec, "targetRef");
    });
    vec![istio, revision, tag, cni, ztunnel, rollout]
}

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml(v: &VersionEnums) -> String {
    crds(v)
        .iter()
        .map(|crd| serde_saphyr::to_string(crd).expect("CRDs serialize"))
        .map(|doc| format!("---\n{doc}"))
        .collect()
}

/// The OpenAPI schema of `spec.values` of a kind, as published (for [`crate::values::unknown_keys`]).
pub fn values_schema(crd: &CustomResourceDefinition) -> Value {
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.storage)
        .expect("a storage version");
    let schema = serde_json::to_value(&v.schema).expect("schema serializes");
    schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["values"].clone()
}

/// Applies `f` to the root OpenAPI schema of the (only) version of `crd`, then cleans it up.
fn edit(crd: CustomResourceDefinition, f: impl FnOnce(&mut Value)) -> CustomResourceDefinition {
    let mut json = serde_json::to_value(&crd).expect("CRD serializes");
    let root = &mut json["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    f(root);
    structural(root);
    serde_json::from_value(json).expect("edited CRD deserializes")
}

fn versions(spec: &mut Value, names: &[String], default: Option<&str>) {
    let version = &mut spec["properties"]["version"];
    version["enum"] = json!(names);
    if let Some(d) = default {
        version["default"] = json!(d);
    }
}

fn immutable(spec: &mut Value, field: &str) {
    push_rule(
        &mut spec["properties"][field],
        rule("self == oldSelf", IMMUTABLE),
    );
}

fn push_rule(schema: &mut Value, r: Value) {
    match schema
        .get_mut("x-kubernetes-validations")
        .and_then(Value::as_array_mut)
    {
        Some(rules) => rules.push(r),
        None => schema["x-kubernetes-validations"] = json!([r]),
    }
}

/// Makes a schema structural where schemars output is not: an object that both lists
/// properties and preserves unknown fields must not also carry `additionalProperties`,
/// and `nullable` enums need `null` removed from the enum list.
fn structural(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.contains_key("properties")
                && map.contains_key("x-kubernetes-preserve-unknown-fields")
            {
                map.remove("additionalProperties");
            }
            if let Some(Value::Array(e)) = map.get_mut("enum") {
                e.retain(|x| !x.is_null());
            }
            for v in map.values_mut() {
                structural(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(structural),
        _ => {}
    }
}
