//! Shape of the published CRDs: names, scope, columns, versions, defaults and rules.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use mizzen_api::crds::{VersionEnums, crds, values_schema};
use mizzen_api::values::{key_tree, unknown_keys};
use serde_json::{Value, json};
use std::sync::LazyLock;

fn enums() -> VersionEnums {
    VersionEnums {
        all: vec![
            "v1.27.1".into(),
            "v1.26.4".into(),
            "v1.26-latest".into(),
            "v1.22.5".into(),
        ],
        concrete: vec!["v1.27.1".into(), "v1.26.4".into(), "v1.22.5".into()],
        ztunnel: vec!["v1.27.1".into(), "v1.26.4".into(), "v1.26-latest".into()],
        default: "v1.27.1".into(),
    }
}

/// Generating the schemas is slow in debug builds: do it once per test binary.
static ALL: LazyLock<Vec<CustomResourceDefinition>> = LazyLock::new(|| crds(&enums()));

fn by_kind(kind: &str) -> CustomResourceDefinition {
    ALL.iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap()
        .clone()
}

/// (name, priority) of the printer columns of a version.
fn columns(crd: &CustomResourceDefinition, version: &str) -> Vec<(String, i32)> {
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .unwrap();
    v.additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.priority.unwrap_or(0)))
        .collect()
}

/// What `kubectl get` prints by default: NAME, then the priority-0 columns upper-cased.
fn default_headers(crd: &CustomResourceDefinition, version: &str) -> String {
    let mut h = vec!["NAME".to_string()];
    h.extend(
        columns(crd, version)
            .into_iter()
            .filter(|(_, p)| *p == 0)
            .map(|(n, _)| n.to_uppercase()),
    );
    h.join(" ")
}

fn root(crd: &CustomResourceDefinition, version: &str) -> Value {
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .unwrap();
    serde_json::to_value(
        v.schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn default_columns_match_the_product_documentation() {
    assert_eq!(
        default_headers(&by_kind("Istio"), "v1"),
        "NAME REVISIONS READY IN USE ACTIVE REVISION STATUS VERSION AGE"
    );
    assert_eq!(
        default_headers(&by_kind("IstioRevision"), "v1"),
        "NAME TYPE READY STATUS IN USE VERSION AGE"
    );
    assert_eq!(
        default_headers(&by_kind("IstioCNI"), "v1"),
        "NAME READY STATUS VERSION AGE"
    );
    assert_eq!(
        default_headers(&by_kind("ZTunnel"), "v1"),
        "NAME READY STATUS VERSION AGE"
    );
    assert_eq!(
        default_headers(&by_kind("ZTunnel"), "v1alpha1"),
        "NAME READY STATUS VERSION AGE"
    );
    assert_eq!(
        default_headers(&by_kind("IstioRevisionTag"), "v1"),
        "NAME STATUS IN USE REVISION AGE"
    );
}

#[test]
fn upstream_columns_stay_available_in_wide_output() {
    let wide = |kind: &str, version: &str| -> Vec<String> {
        columns(&by_kind(kind), version)
            .into_iter()
            .filter(|(_, p)| *p == 1)
            .map(|(n, _)| n)
            .collect()
    };
    assert_eq!(wide("Istio", "v1"), ["Namespace", "Profile"]);
    assert_eq!(wide("IstioRevision", "v1"), ["Namespace", "Profile"]);
    assert_eq!(wide("IstioCNI", "v1"), ["Namespace", "Profile"]);
    assert_eq!(wide("ZTunnel", "v1"), ["Namespace", "Revision"]);
    assert_eq!(wide("ZTunnel", "v1alpha1"), ["Namespace", "Profile"]);
}

#[test]
fn names_scope_and_versions() {
    let all = ALL.clone();
    let names: Vec<_> = all
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "istios.sailoperator.io",
            "istiorevisions.sailoperator.io",
            "istiorevisiontags.sailoperator.io",
            "istiocnis.sailoperator.io",
            "ztunnels.sailoperator.io",
            "rolloutpolicies.mizzen.io"
        ]
    );
    for c in &all {
        assert_eq!(c.spec.scope, "Cluster");
        // mizzen's own kind lives in its own group, never in upstream's.
        let (group, category) = match c.spec.names.kind.as_str() {
            "RolloutPolicy" => ("mizzen.io", "mizzen"),
            _ => ("sailoperator.io", "istio-io"),
        };
        assert_eq!(c.spec.group, group);
        assert_eq!(
            c.spec.names.categories.as_deref(),
            Some(&[category.to_string()][..])
        );
        for v in &c.spec.versions {
            assert!(
                v.subresources.as_ref().unwrap().status.is_some(),
                "{names:?} status"
            );
        }
    }
    assert_eq!(
        by_kind("IstioRevision").spec.names.short_names,
        Some(vec!["istiorev".into()])
    );
    assert_eq!(
        by_kind("IstioRevisionTag").spec.names.short_names,
        Some(vec!["istiorevtag".into()])
    );
    assert_eq!(by_kind("Istio").spec.names.short_names, None);

    let zt = by_kind("ZTunnel");
    let vs: Vec<_> = zt
        .spec
        .versions
        .iter()
        .map(|v| (v.name.as_str(), v.served, v.storage, v.deprecated))
        .collect();
    assert_eq!(
        vs,
        [
            ("v1", true, true, None),
            ("v1alpha1", true, false, Some(true))
        ]
    );
    for c in all.iter().filter(|c| c.spec.names.kind != "ZTunnel") {
        assert_eq!(c.spec.versions.len(), 1);
        let version = if c.spec.group == "mizzen.io" {
            "v1alpha1"
        } else {
            "v1"
        };
        assert_eq!(c.spec.versions[0].name, version);
    }
}

#[test]
fn version_enums_and_defaults_come_from_the_catalog() {
    let istio = root(&by_kind("Istio"), "v1");
    let spec = &istio["properties"]["spec"];
    assert_eq!(spec["properties"]["version"]["enum"], json!(enums().all));
    assert_eq!(
        spec["default"],
        json!({"version": "v1.27.1", "namespace": "istio-system", "updateStrategy": {"type": "InPlace"}})
    );
    let rev = root(&by_kind("IstioRevision"), "v1");
    assert_eq!(
        rev["properties"]["spec"]["properties"]["version"]["enum"],
        json!(enums().concrete)
    );
    assert!(
        rev["properties"]["spec"]["properties"]["version"]
            .get("default")
            .is_none()
    );
    let cni = root(&by_kind("IstioCNI"), "v1");
    assert_eq!(
        cni["properties"]["spec"]["default"],
        json!({"version": "v1.27.1", "namespace": "istio-cni"})
    );
    let zt = root(&by_kind("ZTunnel"), "v1");
    assert_eq!(
        zt["properties"]["spec"]["properties"]["version"]["enum"],
        json!(enums().ztunnel)
    );
    assert_eq!(
        zt["properties"]["spec"]["default"],
        json!({"version": "v1.27.1", "namespace": "ztunnel"})
    );
    let za = root(&by_kind("ZTunnel"), "v1alpha1");
    assert_eq!(za["properties"]["spec"]["default"]["profile"], "ambient");
    let strategy = &spec["properties"]["updateStrategy"]["properties"];
    assert_eq!(
        strategy["type"]["enum"],
        json!(["InPlace", "RevisionBased"])
    );
    assert_eq!(
        strategy["inactiveRevisionDeletionGracePeriodSeconds"]["minimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        spec["properties"]["profile"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
}

fn rules(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["rule"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn cel_rules_sit_where_upstream_has_them() {
    let istio = root(&by_kind("Istio"), "v1");
    assert_eq!(
        rules(&istio["properties"]["spec"]["properties"]["namespace"]),
        ["self == oldSelf"]
    );
    assert!(rules(&istio["properties"]["spec"])[0].contains("istioNamespace == self.namespace"));
    let cni = root(&by_kind("IstioCNI"), "v1");
    assert_eq!(rules(&cni), ["self.metadata.name == 'default'"]);
    assert_eq!(
        rules(&cni["properties"]["spec"]["properties"]["namespace"]),
        ["self == oldSelf"]
    );
    let zt = root(&by_kind("ZTunnel"), "v1");
    assert_eq!(rules(&zt), ["self.metadata.name == 'default'"]);
    assert!(
        rules(&zt["properties"]["spec"]["properties"]["namespace"]).is_empty(),
        "ZTunnel namespace is mutable upstream"
    );
    let rev = root(&by_kind("IstioRevision"), "v1");
    assert!(rules(&rev)[0].contains("self.spec.values.revision == self.metadata.name"));
    let tag = root(&by_kind("IstioRevisionTag"), "v1");
    let kind = &tag["properties"]["spec"]["properties"]["targetRef"]["properties"]["kind"];
    assert_eq!(kind["enum"], json!(["Istio", "IstioRevision"]));
}

#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    for c in ALL.iter() {
        for v in &c.spec.versions {
            let r = root(c, &v.name);
            let conds = &r["properties"]["status"]["properties"]["conditions"];
            assert_eq!(
                conds["x-kubernetes-list-type"], "map",
                "{}",
                c.spec.names.kind
            );
            assert_eq!(conds["x-kubernetes-list-map-keys"], json!(["type"]));
            assert!(
                conds["items"]["properties"]
                    .get("observedGeneration")
                    .is_some()
            );
        }
    }
}

#[test]
fn unknown_values_keys_are_named_using_the_published_schema() {
    let schema = values_schema(&by_kind("Istio"));
    let values = json!({
        "profile": "ambient",
        "pilot": {"env": {"PILOT_ENABLE_AMBIENT": "true"}, "replicaCuont": 2,
                  "resources": {"requests": {"cpu": "1"}, "limitz": {}}},
        "meshConfig": {"discoverySelectors": [], "anythingElse": 1},
        "global": {"hub": "quay.io/x", "notAKey": true},
        "someFutureKey": {}
    });
    let mut got = unknown_keys(&values, &schema);
    got.sort();
    let mut from_tree = unknown_keys(&values, &key_tree(&schema));
    from_tree.sort();
    assert_eq!(from_tree, got, "the key tree answers as the whole schema");
    assert_eq!(
        got,
        [
            "global.notAKey",
            "pilot.replicaCuont",
            "pilot.resources.limitz",
            "someFutureKey"
        ]
    );
    let zt = values_schema(&by_kind("ZTunnel"));
    assert!(
        unknown_keys(
            &json!({"ztunnel": {"env": {"A": "b"}, "terminationGracePeriodSeconds": 60}}),
            &zt
        )
        .is_empty()
    );
}

#[test]
fn typed_objects_keep_unknown_fields_on_the_server() {
    let schema = values_schema(&by_kind("Istio"));
    assert_eq!(schema["x-kubernetes-preserve-unknown-fields"], true);
    assert!(schema.get("additionalProperties").is_none());
    assert_eq!(
        schema["properties"]["pilot"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
    assert_eq!(
        schema["properties"]["meshConfig"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
}
