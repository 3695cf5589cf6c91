//! Fixtures shared by the integration tests: catalog versions, typical inputs, lookups in
//! rendered objects, and the snapshot helper.
#![allow(dead_code)]

use std::path::PathBuf;

use mizzen_api::values::{CniValues, Values, ZTunnelValues};
use mizzen_catalog::{Catalog, Images, Version};
use mizzen_render::{
    CniInput, CniValuesInput, MeshSettings, Object, Owner, Platform, RevisionInput,
    RevisionValuesInput, ZTunnelInput, ZTunnelValuesInput, cni_values, istiod_address,
    revision_values, ztunnel_values,
};
use serde_json::Value;

/// The control-plane namespace of the fixtures.
pub const ISTIO_NS: &str = "istio-system";

/// A concrete version of the embedded catalog and its images.
pub fn resolve(name: &str) -> (Version, Images) {
    let catalog = Catalog::embedded().expect("embedded catalog");
    let resolved = catalog.resolve(name).expect("catalog version");
    (resolved.version, resolved.images)
}

/// Values from JSON.
pub fn values<T: serde::de::DeserializeOwned>(json: Value) -> T {
    serde_json::from_value(json).expect("values")
}

/// The input of istiod revision `revision` at `version`, from an Istio with the ambient
/// profile and `user` values.
pub fn revision(
    version: &str,
    revision: &str,
    platform: Platform,
    user: Option<Value>,
) -> RevisionInput {
    let (version, images) = resolve(version);
    let user: Option<Values> = user.map(values);
    let values = revision_values(&RevisionValuesInput {
        values: user.as_ref(),
        profile: Some("ambient"),
        platform,
        revision,
        namespace: ISTIO_NS,
        version: &version,
    })
    .expect("revision values");
    RevisionInput {
        owner: Owner::istio_revision(revision),
        revision: revision.to_owned(),
        namespace: ISTIO_NS.to_owned(),
        version,
        values,
        images,
        platform,
        custom_hosts: Vec::new(),
    }
}

/// The input of istio-cni at `version` with the ambient profile and `user` values.
pub fn cni(version: &str, platform: Platform, user: Option<Value>) -> CniInput {
    let (version, images) = resolve(version);
    let user: Option<CniValues> = user.map(values);
    let values = cni_values(&CniValuesInput {
        values: user.as_ref(),
        profile: Some("ambient"),
        platform,
        version: &version,
    })
    .expect("cni values");
    CniInput {
        owner: Owner::istio_cni("default"),
        namespace: "istio-cni".to_owned(),
        version,
        values,
        images,
        platform,
    }
}

/// The input of ztunnel at `version`, following the revision `default` of an ambient
/// Istio, with `user` values.
pub fn ztunnel(version: &str, platform: Platform, user: Option<Value>) -> ZTunnelInput {
    let control_plane = revision(version, "default", platform, None);
    let (version, images) = resolve(version);
    let user: Option<ZTunnelValues> = user.map(values);
    let values = ztunnel_values(&ZTunnelValuesInput {
        values: user.as_ref(),
        platform,
        version: &version,
        revision_values: Some(&control_plane.values),
    })
    .expect("ztunnel values");
    let address = istiod_address("default", ISTIO_NS);
    ZTunnelInput {
        owner: Owner::ztunnel("default"),
        namespace: "ztunnel".to_owned(),
        version,
        values,
        images,
        platform,
        xds_address: address.clone(),
        ca_address: address,
        revision: Some("default".to_owned()),
        istio_namespace: ISTIO_NS.to_owned(),
        mesh: MeshSettings::from_values(&control_plane.values).expect("mesh settings"),
    }
}

/// The object of `kind` named `name`; panics with the list of objects if absent.
pub fn find<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| {
            let keys: Vec<String> = objects.iter().map(Object::key).collect();
            panic!("no {kind} {name} in {keys:#?}")
        })
}

/// Whether an object of `kind` named `name` was rendered.
pub fn has(objects: &[Object], kind: &str, name: &str) -> bool {
    objects.iter().any(|o| o.kind() == kind && o.name() == name)
}

/// The first container of a workload.
pub fn container(object: &Object) -> &Value {
    object
        .pointer("/spec/template/spec/containers/0")
        .expect("a container")
}

/// The pod spec of a workload.
pub fn pod_spec(object: &Object) -> &Value {
    object.pointer("/spec/template/spec").expect("a pod spec")
}

/// The env entry `name` of the first container.
pub fn env<'a>(object: &'a Object, name: &str) -> Option<&'a Value> {
    container(object)["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

/// The literal value of env `name` of the first container.
pub fn env_value<'a>(object: &'a Object, name: &str) -> Option<&'a str> {
    env(object, name)?.get("value")?.as_str()
}

/// Fails unless `actual` equals the stored snapshot `tests/snapshots/<name>.yaml`; with
/// `MIZZEN_UPDATE_SNAPSHOTS=1` it (re)writes the file instead.
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.yaml"));
    if std::env::var("MIZZEN_UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let Ok(expected) = std::fs::read_to_string(&path) else {
        panic!(
            "snapshot {} is missing; create it with `MIZZEN_UPDATE_SNAPSHOTS=1 cargo test -p mizzen-render --test snapshots` and review it",
            path.display()
        );
    };
    if expected != actual {
        panic!(
            "snapshot {name} differs from {}:\n{}\nif the change is intended, rerun with MIZZEN_UPDATE_SNAPSHOTS=1 and review the diff",
            path.display(),
            diff(&expected, actual)
        );
    }
}

/// The differing lines of two texts (at most 40), as `-expected`/`+actual` pairs.
fn diff(expected: &str, actual: &str) -> String {
    let (old, new): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = Vec::new();
    for i in 0..old.len().max(new.len()) {
        let (a, b) = (old.get(i), new.get(i));
        if a != b {
            out.push(format!(
                "line {}:\n-{}\n+{}",
                i + 1,
                a.unwrap_or(&"<none>"),
                b.unwrap_or(&"<none>")
            ));
        }
        if out.len() == 40 {
            out.push("…".into());
            break;
        }
    }
    out.join("\n")
}
