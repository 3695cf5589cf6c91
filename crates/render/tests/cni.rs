//! istio-cni: objects, ConfigMap keys per version, OpenShift, and every value reaching the
//! DaemonSet.

mod common;

use common::{cni, container, env_value, find, has, pod_spec};
use mizzen_render::{Object, Platform, render_cni};
use serde_json::{Value, json};

fn render(version: &str, platform: Platform, user: Option<Value>) -> Vec<Object> {
    render_cni(&cni(version, platform, user)).unwrap()
}

fn data(objects: &[Object]) -> Value {
    find(objects, "ConfigMap", "istio-cni-config")
        .pointer("/data")
        .unwrap()
        .clone()
}

#[test]
fn objects_on_kubernetes() {
    let objects = render("v1.27.3", Platform::Kubernetes, None);
    let keys: Vec<String> = objects.iter().map(Object::key).collect();
    assert_eq!(
        keys,
        [
            "/ServiceAccount/istio-cni/istio-cni",
            "rbac.authorization.k8s.io/ClusterRole//istio-cni",
            "rbac.authorization.k8s.io/ClusterRole//istio-cni-ambient",
            "rbac.authorization.k8s.io/ClusterRole//istio-cni-repair-role",
            "rbac.authorization.k8s.io/ClusterRoleBinding//istio-cni",
            "rbac.authorization.k8s.io/ClusterRoleBinding//istio-cni-ambient",
            "rbac.authorization.k8s.io/ClusterRoleBinding//istio-cni-repair-rolebinding",
            "/ConfigMap/istio-cni/istio-cni-config",
            "apps/DaemonSet/istio-cni/istio-cni-node",
        ]
    );
    assert!(
        !serde_json::to_string(find(&objects, "ClusterRole", "istio-cni").as_json())
            .unwrap()
            .contains("securitycontextconstraints")
    );
    let ds = find(&objects, "DaemonSet", "istio-cni-node");
    assert_eq!(
        ds.pointer("/spec/selector/matchLabels").unwrap(),
        &json!({"k8s-app": "istio-cni-node"})
    );
    assert_eq!(
        ds.pointer("/spec/updateStrategy").unwrap(),
        &json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
    );
    let pod = pod_spec(ds);
    assert_eq!(pod["terminationGracePeriodSeconds"], 5);
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["serviceAccountName"], "istio-cni");
    assert!(pod.get("hostNetwork").is_none());
    let c = container(ds);
    assert_eq!(c["image"], "docker.io/istio/install-cni:1.27.3-distroless");
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": 8000})
    );
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], "istio-cni-config");
    assert_eq!(env_value(ds, "ALLOW_SWITCH_TO_HOST_NS"), Some("true"));
    assert_eq!(
        c["securityContext"]["capabilities"]["add"],
        json!([
            "NET_ADMIN",
            "NET_RAW",
            "SYS_PTRACE",
            "SYS_ADMIN",
            "DAC_OVERRIDE"
        ])
    );
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        mounts,
        [
            "/host/opt/cni/bin",
            "/host/etc/cni/net.d",
            "/var/run/istio-cni",
            "/host/proc",
            "/host/var/run/netns",
            "/var/run/ztunnel"
        ]
    );
}

#[test]
fn config_keys_per_version() {
    let d26 = data(&render("v1.26.3", Platform::Kubernetes, None));
    let d27 = data(&render("v1.27.3", Platform::Kubernetes, None));
    let d28 = data(&render("v1.28.3", Platform::Kubernetes, None));
    for d in [&d26, &d27, &d28] {
        assert_eq!(d["AMBIENT_ENABLED"], "true");
        assert_eq!(d["AMBIENT_DNS_CAPTURE"], "true");
        assert_eq!(d["CHAINED_CNI_PLUGIN"], "true");
        assert_eq!(d["EXCLUDE_NAMESPACES"], "kube-system");
        assert_eq!(d["REPAIR_INIT_CONTAINER_NAME"], "istio-validation");
        assert!(d.get("CNI_CONF_NAME").is_none());
    }
    assert_eq!(d26["CURRENT_AGENT_VERSION"], "1.26.3");
    assert!(d26.get("AMBIENT_ENABLEMENT_SELECTOR").is_none());
    assert!(d26.get("NATIVE_NFTABLES").is_none());
    assert!(d26.get("ISTIO_OWNED_CNI_CONFIG").is_none());
    let selector: Value =
        serde_saphyr::from_str(d27["AMBIENT_ENABLEMENT_SELECTOR"].as_str().unwrap()).unwrap();
    assert_eq!(
        selector[0]["podSelector"]["matchLabels"]["istio.io/dataplane-mode"],
        "ambient"
    );
    assert_eq!(d27["NATIVE_NFTABLES"], "false");
    assert_eq!(d27["ISTIO_OWNED_CNI_CONFIG"], "false");
    assert!(d27.get("ENABLE_AMBIENT_DETECTION_RETRY").is_none());
    assert_eq!(d28["ENABLE_AMBIENT_DETECTION_RETRY"], "false");
}

#[test]
fn openshift_differences() {
    let objects = render("v1.28.3", Platform::OpenShift, None);
    let nad = find(&objects, "NetworkAttachmentDefinition", "istio-cni");
    assert_eq!(nad.api_version(), "k8s.cni.cncf.io/v1");
    assert_eq!(nad.namespace(), Some("default"));
    assert!(nad.pointer("/spec").is_none());
    let d = data(&objects);
    assert_eq!(d["CHAINED_CNI_PLUGIN"], "false");
    assert_eq!(d["CNI_CONF_NAME"], "istio-cni.conf");
    let ds = find(&objects, "DaemonSet", "istio-cni-node");
    let volumes = &pod_spec(ds)["volumes"];
    assert_eq!(volumes[0]["hostPath"]["path"], "/var/lib/cni/bin");
    assert_eq!(volumes[1]["hostPath"]["path"], "/etc/cni/multus/net.d");
    assert_eq!(
        container(ds)["securityContext"]["seLinuxOptions"],
        json!({"type": "spc_t"})
    );
    let rules = find(&objects, "ClusterRole", "istio-cni")
        .pointer("/rules")
        .unwrap()
        .clone();
    assert!(rules.as_array().unwrap().contains(&json!({
        "apiGroups": ["security.openshift.io"],
        "resources": ["securitycontextconstraints"],
        "resourceNames": ["privileged"],
        "verbs": ["use"],
    })));
    assert!(!has(
        &render("v1.28.3", Platform::Kubernetes, None),
        "NetworkAttachmentDefinition",
        "istio-cni"
    ));
}

#[test]
fn every_value_reaches_the_objects() {
    let user = json!({
        "global": {"imagePullSecrets": ["pull"], "logAsJson": true, "nativeNftables": true, "hub": "quay.io/g"},
        "cni": {
            "tag": "1.27.4",
            "variant": "debug",
            "pullPolicy": "Always",
            "resources": {"limits": {"cpu": "1"}},
            "tolerations": [{"key": "only", "operator": "Exists"}],
            "nodeSelector": {"pool": "edge"},
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"topologyKey": "zone", "labelSelector": {}}}]}},
            "updateStrategy": {"type": "OnDelete"},
            "terminationGracePeriodSeconds": 17,
            "podAnnotations": {"note": "x"},
            "podLabels": {"team": "net"},
            "daemonSetLabels": {"dl": "1"},
            "env": {"EXTRA": "1"},
            "logging": {"level": "cni:debug"},
            "seccompProfile": {"type": "RuntimeDefault"},
            "seLinuxOptions": {"level": "s0"},
            "cniBinDir": "/bin/cni",
            "cniConfDir": "/conf/cni",
            "cniNetnsDir": "/netns",
            "cniConfFileName": "x.conf",
            "chained": false,
            "excludeNamespaces": ["a", "b"],
            "istioOwnedCNIConfig": true,
            "privileged": true,
            "repair": {"deletePods": true, "labelPods": true},
            "ambient": {"dnsCapture": false, "ipv6": false, "reconcileIptablesOnStartup": true, "enablementSelectors": [{"podSelector": {"matchLabels": {"x": "y"}}}], "shareHostNetworkNamespace": true, "enableAmbientDetectionRetry": true},
        },
    });
    let objects = render("v1.27.3", Platform::Kubernetes, Some(user));
    let ds = find(&objects, "DaemonSet", "istio-cni-node");
    let (c, pod) = (container(ds), pod_spec(ds));
    assert_eq!(c["image"], "quay.io/g/install-cni:1.27.4-debug");
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["resources"]["limits"]["cpu"], "1");
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "only", "operator": "Exists"}])
    );
    assert_eq!(
        pod["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "pool": "edge"})
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["labelSelector"],
        json!({})
    );
    assert_eq!(
        ds.pointer("/spec/updateStrategy").unwrap(),
        &json!({"type": "OnDelete"})
    );
    assert_eq!(pod["terminationGracePeriodSeconds"], 17);
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert!(env_value(ds, "ALLOW_SWITCH_TO_HOST_NS").is_none());
    assert_eq!(
        ds.pointer("/spec/template/metadata/annotations/note")
            .unwrap(),
        "x"
    );
    assert_eq!(
        ds.pointer("/spec/template/metadata/labels/team").unwrap(),
        "net"
    );
    assert_eq!(ds.label("dl"), Some("1"));
    assert_eq!(env_value(ds, "EXTRA"), Some("1"));
    assert_eq!(
        c["args"],
        json!(["--log_output_level=cni:debug", "--log_as_json"])
    );
    assert_eq!(
        c["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(c["securityContext"]["seLinuxOptions"]["level"], "s0");
    assert_eq!(c["securityContext"]["privileged"], true);
    let paths: Vec<&str> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["hostPath"]["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"/bin/cni") && paths.contains(&"/conf/cni") && paths.contains(&"/netns")
    );
    let d = data(&objects);
    assert_eq!(d["CURRENT_AGENT_VERSION"], "1.27.4");
    assert_eq!(d["CNI_CONF_NAME"], "x.conf");
    assert_eq!(d["CHAINED_CNI_PLUGIN"], "false");
    assert_eq!(d["EXCLUDE_NAMESPACES"], "a,b");
    assert_eq!(d["ISTIO_OWNED_CNI_CONFIG"], "true");
    assert_eq!(d["ISTIO_OWNED_CNI_CONF_FILENAME"], "02-istio-cni.conflist");
    assert_eq!(d["NATIVE_NFTABLES"], "true");
    assert_eq!(d["AMBIENT_DNS_CAPTURE"], "false");
    assert_eq!(d["AMBIENT_IPV6"], "false");
    assert_eq!(d["AMBIENT_RECONCILE_POD_RULES_ON_STARTUP"], "true");
    assert_eq!(d["ENABLE_AMBIENT_DETECTION_RETRY"], "true");
    assert_eq!(d["REPAIR_DELETE_PODS"], "true");
    assert_eq!(d["EXTRA"], "1");
    let selector: Value =
        serde_saphyr::from_str(d["AMBIENT_ENABLEMENT_SELECTOR"].as_str().unwrap()).unwrap();
    assert_eq!(
        selector,
        json!([{"podSelector": {"matchLabels": {"x": "y"}}}])
    );
    let repair =
        serde_json::to_string(find(&objects, "ClusterRole", "istio-cni-repair-role").as_json())
            .unwrap();
    assert!(repair.contains("\"delete\"") && repair.contains("pods/status"));
    let sa = find(&objects, "ServiceAccount", "istio-cni");
    assert_eq!(sa.pointer("/imagePullSecrets/0/name").unwrap(), "pull");

    let objects = render(
        "v1.27.3",
        Platform::Kubernetes,
        Some(
            json!({"cni": {"rollingMaxUnavailable": "20%", "image": "quay.io/x/cni@sha256:1111111111111111111111111111111111111111111111111111111111111111"}}),
        ),
    );
    let ds = find(&objects, "DaemonSet", "istio-cni-node");
    assert_eq!(
        ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable")
            .unwrap(),
        "20%"
    );
    assert_eq!(
        container(ds)["image"],
        "quay.io/x/cni@sha256:1111111111111111111111111111111111111111111111111111111111111111"
    );
}

#[test]
fn without_ambient_or_repair_their_roles_go() {
    let user = json!({"cni": {"ambient": {"enabled": false}, "repair": {"enabled": false, "repairPods": false}}});
    let objects = render("v1.27.3", Platform::Kubernetes, Some(user));
    assert!(!has(&objects, "ClusterRole", "istio-cni-ambient"));
    assert!(!has(&objects, "ClusterRole", "istio-cni-repair-role"));
    let c = container(find(&objects, "DaemonSet", "istio-cni-node"));
    assert_eq!(c["volumeMounts"].as_array().unwrap().len(), 3);
}

#[test]
fn wrong_shapes_are_errors() {
    let mut input = cni("v1.27.3", Platform::Kubernetes, None);
    input
        .values
        .cni
        .as_mut()
        .unwrap()
        .ambient
        .as_mut()
        .unwrap()
        .enablement_selectors = Some(json!("x"));
    assert!(render_cni(&input).is_err());
    let mut input = cni("v1.27.3", Platform::Kubernetes, None);
    input.values.cni.as_mut().unwrap().repair = Some(json!({"enabled": "yes"}));
    assert!(render_cni(&input).is_err());
}

/// 1.29 changed istio-cni's defaults: a 30 s grace period, and iptables rules reconciled on
/// start; the agent logs at `info` in every minor.
#[test]
fn defaults_per_minor() {
    for (version, grace, reconcile) in [("v1.28.3", 5, "false"), ("v1.29.6", 30, "true")] {
        let objects = render(version, Platform::Kubernetes, None);
        let ds = find(&objects, "DaemonSet", "istio-cni-node");
        assert_eq!(
            pod_spec(ds)["terminationGracePeriodSeconds"],
            grace,
            "{version}"
        );
        assert_eq!(
            data(&objects)["AMBIENT_RECONCILE_POD_RULES_ON_STARTUP"],
            reconcile,
            "{version}"
        );
        assert_eq!(
            container(ds)["args"][0],
            "--log_output_level=info",
            "{version}"
        );
    }
}
