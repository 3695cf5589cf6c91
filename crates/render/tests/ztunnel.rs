//! ztunnel: objects, addresses and revision binding, OpenShift, and every value reaching
//! the DaemonSet.

mod common;

use common::{container, env, env_value, find, has, pod_spec, ztunnel};
use mizzen_render::{MeshSettings, Object, Platform, render_ztunnel};
use serde_json::{Value, json};

fn render(version: &str, platform: Platform, user: Option<Value>) -> Vec<Object> {
    render_ztunnel(&ztunnel(version, platform, user)).unwrap()
}

#[test]
fn objects_and_defaults() {
    let objects = render("v1.27.3", Platform::Kubernetes, None);
    let keys: Vec<String> = objects.iter().map(Object::key).collect();
    assert_eq!(
        keys,
        [
            "/ServiceAccount/ztunnel/ztunnel",
            "apps/DaemonSet/ztunnel/ztunnel"
        ]
    );
    let ds = find(&objects, "DaemonSet", "ztunnel");
    assert_eq!(
        ds.pointer("/spec/selector/matchLabels").unwrap(),
        &json!({"app": "ztunnel"})
    );
    assert_eq!(
        ds.pointer("/spec/updateStrategy").unwrap(),
        &json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    );
    assert_eq!(
        ds.pointer("/spec/template/metadata/labels/istio.io~1dataplane-mode")
            .unwrap(),
        "none"
    );
    let (c, pod) = (container(ds), pod_spec(ds));
    assert_eq!(c["image"], "docker.io/istio/ztunnel:1.27.3-distroless");
    assert_eq!(c["args"], json!(["proxy", "ztunnel"]));
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/healthz/ready", "port": 15021})
    );
    assert_eq!(c["securityContext"]["runAsGroup"], 1337);
    assert_eq!(
        c["securityContext"]["capabilities"]["add"],
        json!(["NET_ADMIN", "SYS_ADMIN", "NET_RAW"])
    );
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        env_value(ds, "XDS_ADDRESS"),
        Some("istiod.istio-system.svc:15012")
    );
    assert_eq!(
        env_value(ds, "CA_ADDRESS"),
        Some("istiod.istio-system.svc:15012")
    );
    assert_eq!(
        env_value(ds, "TERMINATION_GRACE_PERIOD_SECONDS"),
        Some("30")
    );
    assert_eq!(env_value(ds, "ISTIO_META_ENABLE_HBONE"), Some("true"));
    assert_eq!(env_value(ds, "RUST_LOG"), Some("info"));
    assert_eq!(env_value(ds, "INPOD_ENABLED"), Some("true"));
    assert!(env(ds, "ZTUNNEL_CPU_LIMIT").is_some());
    assert!(env(ds, "NETWORK").is_none());
    assert!(ds.pointer("/metadata/annotations").is_none());
    let volumes: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        [
            "istiod-ca-cert",
            "istio-token",
            "cni-ztunnel-sock-dir",
            "tmp"
        ]
    );
    assert_eq!(
        pod["volumes"][1]["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "istio-ca"
    );
    assert!(
        env(
            &render("v1.26.3", Platform::Kubernetes, None)[1],
            "ZTUNNEL_CPU_LIMIT"
        )
        .is_none()
    );
}

#[test]
fn bound_revision_and_addresses() {
    let mut input = ztunnel("v1.28.3", Platform::Kubernetes, None);
    input.revision = Some("default-v1-28-3".into());
    input.xds_address = String::new();
    input.ca_address = "istiod-stable.istio-system.svc:15012".into();
    let objects = render_ztunnel(&input).unwrap();
    let ds = find(&objects, "DaemonSet", "ztunnel");
    assert_eq!(
        env_value(ds, "XDS_ADDRESS"),
        Some("istiod-default-v1-28-3.istio-system.svc:15012")
    );
    assert_eq!(
        env_value(ds, "CA_ADDRESS"),
        Some("istiod-stable.istio-system.svc:15012")
    );
    assert_eq!(
        ds.pointer("/metadata/annotations/istio.io~1rev").unwrap(),
        "default-v1-28-3"
    );
    assert_eq!(
        ds.pointer("/spec/template/metadata/annotations/istio.io~1rev")
            .unwrap(),
        "default-v1-28-3"
    );
    assert_eq!(
        find(&objects, "ServiceAccount", "ztunnel")
            .pointer("/metadata/annotations/istio.io~1rev")
            .unwrap(),
        "default-v1-28-3"
    );

    let mut input = ztunnel(
        "v1.28.3",
        Platform::Kubernetes,
        Some(json!({"ztunnel": {"xdsAddress": "x:1", "caAddress": "c:2"}})),
    );
    input.mesh = MeshSettings {
        trust_domain: Some("corp".into()),
        proxy_metadata: [("DNS_CAPTURE".to_owned(), "false".to_owned())].into(),
    };
    let ds = render_ztunnel(&input).unwrap().remove(1);
    assert_eq!(env_value(&ds, "XDS_ADDRESS"), Some("x:1"));
    assert_eq!(env_value(&ds, "CA_ADDRESS"), Some("c:2"));
    assert_eq!(env_value(&ds, "TRUST_DOMAIN"), Some("corp"));
    assert_eq!(env_value(&ds, "DNS_CAPTURE"), Some("false"));
    assert_eq!(env_value(&ds, "ISTIO_META_ENABLE_HBONE"), Some("true"));
}

#[test]
fn openshift_differences() {
    let objects = render("v1.28.3", Platform::OpenShift, None);
    assert!(has(&objects, "ClusterRole", "ztunnel"));
    let binding = find(&objects, "ClusterRoleBinding", "ztunnel");
    assert_eq!(
        binding.pointer("/subjects/0").unwrap(),
        &json!({"kind": "ServiceAccount", "name": "ztunnel", "namespace": "ztunnel"})
    );
    let role = find(&objects, "ClusterRole", "ztunnel");
    assert_eq!(
        role.pointer("/rules/0/resourceNames").unwrap(),
        &json!(["privileged"])
    );
    let ds = find(&objects, "DaemonSet", "ztunnel");
    assert_eq!(
        container(ds)["securityContext"]["seLinuxOptions"],
        json!({"type": "spc_t"})
    );
    assert!(!has(
        &render("v1.28.3", Platform::Kubernetes, None),
        "ClusterRole",
        "ztunnel"
    ));
}

#[test]
fn every_value_reaches_the_objects() {
    let user = json!({
        "global": {"imagePullSecrets": ["global-pull"], "network": "net-a", "multiCluster": {"clusterName": "east"}, "variant": ""},
        "ztunnel": {
            "hub": "quay.io/z",
            "tag": "1.28.4",
            "imagePullPolicy": "Always",
            "imagePullSecrets": [{"name": "own-pull"}],
            "resources": {"limits": {"memory": "1Gi"}},
            "tolerations": [{"key": "only", "operator": "Exists"}],
            "nodeSelector": {"pool": "edge"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}},
            "updateStrategy": {"type": "OnDelete"},
            "terminationGracePeriodSeconds": 90,
            "env": {"CUSTOM": "1", "RUST_LOG": "debug"},
            "podAnnotations": {"note": "x"},
            "podLabels": {"team": "net", "app": "ignored"},
            "labels": {"dl": "1"},
            "annotations": {"da": "1"},
            "volumes": [{"name": "extra", "emptyDir": {}}],
            "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
            "logLevel": "warn",
            "logAsJson": true,
            "seLinuxOptions": {"level": "s0"},
            "dnsPolicy": "ClusterFirstWithHostNet",
            "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
            "trustBundleName": "bundle",
            "network": "net-b",
            "meshConfig": {"defaultConfig": {"proxyMetadata": {"META": "1"}}},
        },
    });
    let objects = render("v1.28.3", Platform::Kubernetes, Some(user));
    let ds = find(&objects, "DaemonSet", "ztunnel");
    let (c, pod) = (container(ds), pod_spec(ds));
    assert_eq!(c["image"], "quay.io/z/ztunnel:1.28.4");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "only", "operator": "Exists"}])
    );
    assert_eq!(
        pod["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "pool": "edge"})
    );
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "a"
    );
    assert_eq!(
        ds.pointer("/spec/updateStrategy").unwrap(),
        &json!({"type": "OnDelete"})
    );
    assert_eq!(pod["terminationGracePeriodSeconds"], 90);
    assert_eq!(
        env_value(ds, "TERMINATION_GRACE_PERIOD_SECONDS"),
        Some("90")
    );
    assert_eq!(env_value(ds, "CUSTOM"), Some("1"));
    assert_eq!(env_value(ds, "RUST_LOG"), Some("debug"));
    assert_eq!(env_value(ds, "LOG_FORMAT"), Some("json"));
    assert_eq!(env_value(ds, "NETWORK"), Some("net-b"));
    assert_eq!(env_value(ds, "ISTIO_META_CLUSTER_ID"), Some("east"));
    assert_eq!(env_value(ds, "META"), Some("1"));
    assert_eq!(
        ds.pointer("/spec/template/metadata/annotations/note")
            .unwrap(),
        "x"
    );
    assert_eq!(
        ds.pointer("/spec/template/metadata/labels/team").unwrap(),
        "net"
    );
    assert_eq!(
        ds.pointer("/spec/template/metadata/labels/app").unwrap(),
        "ztunnel"
    );
    assert_eq!(ds.label("dl"), Some("1"));
    assert_eq!(ds.pointer("/metadata/annotations/da").unwrap(), "1");
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "extra")
    );
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/extra")
    );
    assert_eq!(pod["volumes"][0]["configMap"]["name"], "bundle");
    assert_eq!(c["securityContext"]["seLinuxOptions"]["level"], "s0");
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["dnsConfig"]["options"][0]["name"], "ndots");
    let sa = find(&objects, "ServiceAccount", "ztunnel");
    assert_eq!(
        sa.pointer("/imagePullSecrets").unwrap(),
        &json!([{"name": "global-pull"}, {"name": "own-pull"}])
    );

    let objects = render(
        "v1.28.3",
        Platform::Kubernetes,
        Some(
            json!({"ztunnel": {"resourceName": "zt", "logLevel": "warn", "image": "quay.io/x/zt@sha256:1111111111111111111111111111111111111111111111111111111111111111"}}),
        ),
    );
    let ds = find(&objects, "DaemonSet", "zt");
    assert_eq!(env_value(ds, "RUST_LOG"), Some("warn"));
    assert_eq!(
        container(ds)["image"],
        "quay.io/x/zt@sha256:1111111111111111111111111111111111111111111111111111111111111111"
    );
    assert_eq!(pod_spec(ds)["serviceAccountName"], "zt");
    assert!(has(&objects, "ServiceAccount", "zt"));
}

#[test]
fn wrong_shapes_are_errors() {
    let mut input = ztunnel("v1.27.3", Platform::Kubernetes, None);
    input.values.ztunnel.as_mut().unwrap().mesh_config =
        Some(json!({"defaultConfig": {"proxyMetadata": ["x"]}}));
    assert!(render_ztunnel(&input).is_err());
    let mut input = ztunnel("v1.27.3", Platform::Kubernetes, None);
    input
        .values
        .ztunnel
        .as_mut()
        .unwrap()
        .other
        .insert("dnsConfig".into(), json!(3));
    assert!(render_ztunnel(&input).is_err());
}

/// From 1.31 ztunnel reads the CPU it was given: a variable for its own CPU request and limit
/// when its resources name them (the default has a request, no limit).
#[test]
fn cpu_variables_from_1_31() {
    let ds = |version: &str, user: Option<Value>| {
        let objects = render(version, Platform::Kubernetes, user);
        find(&objects, "DaemonSet", "ztunnel").clone()
    };
    let default = ds("v1.31.4", None);
    assert!(env(&default, "ZTUNNEL_RESOURCE_CPU_REQUEST").is_some());
    assert!(env(&default, "ZTUNNEL_RESOURCE_CPU_LIMIT").is_none());
    let before = ds("v1.30.3", None);
    assert!(env(&before, "ZTUNNEL_RESOURCE_CPU_REQUEST").is_none());
    let limited = ds(
        "v1.31.4",
        Some(json!({"ztunnel": {"resources": {"limits": {"cpu": "1"}}}})),
    );
    // The user's limit merges with the default request, as Helm merges values.
    assert!(env(&limited, "ZTUNNEL_RESOURCE_CPU_LIMIT").is_some());
    assert!(env(&limited, "ZTUNNEL_RESOURCE_CPU_REQUEST").is_some());
}
