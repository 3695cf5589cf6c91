//! Properties every render must have: common labels, apply order, no fields istiod owns,
//! nothing the API server stores as absent, determinism.

mod common;

use common::{ISTIO_NS, cni, resolve, revision, ztunnel};
use mizzen_render::{
    INVENTORY_LABEL, Object, Owner, Platform, render_base, render_cni, render_istio_crds,
    render_revision, render_tag, render_ztunnel,
};
use serde_json::Value;

/// Every render of the crate, for one version and platform.
fn everything(version: &str, platform: Platform) -> Vec<(Owner, Vec<Object>)> {
    let default = revision(version, "default", platform, None);
    let canary = revision(version, "canary", platform, None);
    let (v, _) = resolve(version);
    let tag_owner = Owner::istio_revision_tag("default");
    let base_owner = Owner::istio("default");
    vec![
        (default.owner.clone(), render_revision(&default).unwrap()),
        (canary.owner.clone(), render_revision(&canary).unwrap()),
        (
            tag_owner.clone(),
            render_tag(
                &tag_owner,
                "default",
                "canary",
                ISTIO_NS,
                &v,
                &canary.values,
            )
            .unwrap(),
        ),
        (
            base_owner.clone(),
            render_base(&base_owner, "canary", ISTIO_NS, &v).unwrap(),
        ),
        (
            base_owner.clone(),
            render_istio_crds(&base_owner, &v).unwrap(),
        ),
        (
            Owner::istio_cni("default"),
            render_cni(&cni(version, platform, None)).unwrap(),
        ),
        (
            Owner::ztunnel("default"),
            render_ztunnel(&ztunnel(version, platform, None)).unwrap(),
        ),
    ]
}

fn all_renders() -> impl Iterator<Item = (Owner, Vec<Object>)> {
    ["v1.26.3", "v1.27.3", "v1.28.3"]
        .into_iter()
        .flat_map(|version| {
            [Platform::Kubernetes, Platform::OpenShift]
                .into_iter()
                .flat_map(move |platform| everything(version, platform))
        })
}

#[test]
fn every_object_carries_the_common_labels() {
    for (owner, objects) in all_renders() {
        for object in &objects {
            let key = object.key();
            assert_eq!(
                object.label("app.kubernetes.io/managed-by"),
                Some("mizzen"),
                "{key}"
            );
            assert_eq!(
                object.label("app.kubernetes.io/part-of"),
                Some("istio"),
                "{key}"
            );
            let version = object.label("app.kubernetes.io/version").unwrap();
            assert!(
                version.starts_with("1.2") && !version.starts_with('v'),
                "{key}: {version}"
            );
            assert_eq!(
                object.label(INVENTORY_LABEL),
                Some(owner.label_value().as_str()),
                "{key}"
            );
        }
    }
}

#[test]
fn objects_come_in_apply_order_with_unique_keys() {
    let rank = |kind: &str| {
        [
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "NetworkAttachmentDefinition",
            "Service",
            "Deployment|DaemonSet",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ]
        .iter()
        .position(|k| k.split('|').any(|k| k == kind))
        .unwrap_or_else(|| panic!("unexpected kind {kind}"))
    };
    for (_, objects) in all_renders() {
        let ranks: Vec<usize> = objects.iter().map(|o| rank(o.kind())).collect();
        assert!(
            ranks.windows(2).all(|w| w[0] <= w[1]),
            "{:?}",
            objects.iter().map(Object::key).collect::<Vec<_>>()
        );
        let mut keys: Vec<String> = objects.iter().map(Object::key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), objects.len());
    }
}

/// Every (path, value) of a JSON tree.
fn walk<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    out.push((path.clone(), value));
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| walk(v, format!("{path}/{k}"), out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| walk(v, format!("{path}/{i}"), out)),
        _ => {}
    }
}

/// No `caBundle` (istiod writes it), no status, and every validating webhook created at
/// `failurePolicy: Ignore` (istiod tightens it; the applier then leaves it to istiod).
#[test]
fn no_ca_bundle_validating_webhooks_start_ignored_no_status() {
    for (_, objects) in all_renders() {
        for object in &objects {
            let mut nodes = Vec::new();
            walk(object.as_json(), String::new(), &mut nodes);
            for (path, _) in &nodes {
                assert!(!path.ends_with("/caBundle"), "{}: {path}", object.key());
            }
            assert!(object.pointer("/status").is_none(), "{}", object.key());
            if object.kind() == "ValidatingWebhookConfiguration" {
                let hooks = object.pointer("/webhooks").unwrap().as_array().unwrap();
                assert!(
                    hooks.iter().all(|h| h["failurePolicy"] == "Ignore"),
                    "{}",
                    object.key()
                );
            }
        }
    }
}

#[test]
fn no_empty_maps_or_lists_except_meaningful_ones() {
    for (_, objects) in all_renders() {
        for object in &objects {
            let mut nodes = Vec::new();
            walk(object.as_json(), String::new(), &mut nodes);
            for (path, value) in nodes {
                let empty = match value {
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    Value::Null => true,
                    _ => false,
                };
                let allowed = path.ends_with("/emptyDir") || path.ends_with("/subresources/status");
                assert!(!empty || allowed, "{}: empty value at {path}", object.key());
            }
        }
    }
}

#[test]
fn namespaced_objects_have_a_namespace_and_cluster_objects_none() {
    let cluster_kinds = [
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    for (_, objects) in all_renders() {
        for object in &objects {
            assert_eq!(
                object.namespace().is_none(),
                cluster_kinds.contains(&object.kind()),
                "{}",
                object.key()
            );
        }
    }
}

#[test]
fn rendering_twice_gives_equal_output() {
    let first: Vec<_> = all_renders().collect();
    let second: Vec<_> = all_renders().collect();
    assert_eq!(first, second);
    let yaml = |objects: &[Object]| mizzen_render::to_yaml(objects).unwrap();
    for ((_, a), (_, b)) in first.iter().zip(&second) {
        assert_eq!(yaml(a), yaml(b));
    }
}
