//! The example manifests under deploy/examples (the seed document's) parse into the types.

use kube::api::DynamicObject;
use mizzen_api::{Istio, IstioCNI, UpdateStrategyType, ZTunnel};

fn docs(yaml: &str) -> Vec<DynamicObject> {
    serde_saphyr::from_multiple(yaml).expect("valid YAML")
}

fn typed<K: serde::de::DeserializeOwned>(o: &DynamicObject) -> K {
    serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap()
}

#[test]
fn seed_examples_parse() {
    let inplace = docs(include_str!("../../../deploy/examples/istio-inplace.yaml"));
    let i: Istio = typed(&inplace[0]);
    assert_eq!(i.spec.version, "v1.26.3");
    assert_eq!(
        i.spec.update_strategy.unwrap().type_,
        UpdateStrategyType::InPlace
    );

    let rb = docs(include_str!(
        "../../../deploy/examples/istio-revisionbased.yaml"
    ));
    let i: Istio = typed(&rb[0]);
    let s = i.spec.update_strategy.unwrap();
    assert_eq!(s.type_, UpdateStrategyType::RevisionBased);
    assert_eq!(s.inactive_revision_deletion_grace_period_seconds, Some(30));

    let ambient = docs(include_str!("../../../deploy/examples/ambient.yaml"));
    let kinds: Vec<_> = ambient
        .iter()
        .map(|o| o.types.as_ref().unwrap().kind.clone())
        .collect();
    assert_eq!(kinds, ["Istio", "IstioCNI", "ZTunnel"]);
    let i: Istio = typed(&ambient[0]);
    let pilot = i.spec.values.unwrap().pilot.unwrap();
    assert_eq!(pilot.trusted_ztunnel_namespace.as_deref(), Some("ztunnel"));
    let c: IstioCNI = typed(&ambient[1]);
    assert_eq!(c.spec.profile.as_deref(), Some("ambient"));
    let z: ZTunnel = typed(&ambient[2]);
    assert_eq!(z.spec.namespace, "ztunnel");
}
