//! istiod of one revision: names, labels, selectors, webhooks, version and platform
//! differences, images, and every `pilot`/`global` value reaching the objects.

mod common;

use common::{ISTIO_NS, container, env, env_value, find, has, pod_spec, resolve, revision};
use mizzen_catalog::ImageRef;
use mizzen_render::{Object, Owner, Platform, RenderError, render_revision, render_tag};
use serde_json::{Value, json};

fn render(version: &str, rev: &str, user: Option<Value>) -> Vec<Object> {
    render_revision(&revision(version, rev, Platform::Kubernetes, user)).unwrap()
}

fn deployment<'a>(objects: &'a [Object], name: &str) -> &'a Object {
    find(objects, "Deployment", name)
}

fn webhook_names(object: &Object) -> Vec<String> {
    object
        .pointer("/webhooks")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn names_follow_the_revision() {
    let objects = render("v1.27.3", "default", None);
    for (kind, name) in [
        ("ServiceAccount", "istiod"),
        ("Deployment", "istiod"),
        ("Service", "istiod"),
        ("HorizontalPodAutoscaler", "istiod"),
        ("PodDisruptionBudget", "istiod"),
        ("ConfigMap", "istio"),
        ("ConfigMap", "istio-sidecar-injector"),
        ("ConfigMap", "values"),
        ("MutatingWebhookConfiguration", "istio-sidecar-injector"),
        (
            "ValidatingWebhookConfiguration",
            "istio-validator-istio-system",
        ),
        ("ClusterRole", "istiod-clusterrole-istio-system"),
        (
            "ClusterRoleBinding",
            "istiod-gateway-controller-istio-system",
        ),
        ("ClusterRole", "istio-reader-clusterrole-istio-system"),
        ("Role", "istiod"),
        ("RoleBinding", "istiod"),
    ] {
        assert!(has(&objects, kind, name), "{kind} {name}");
    }
    let objects = render("v1.27.3", "default-v1-27-3", None);
    for (kind, name) in [
        ("Deployment", "istiod-default-v1-27-3"),
        ("ConfigMap", "istio-default-v1-27-3"),
        ("ConfigMap", "istio-sidecar-injector-default-v1-27-3"),
        ("ConfigMap", "values-default-v1-27-3"),
        (
            "MutatingWebhookConfiguration",
            "istio-sidecar-injector-default-v1-27-3",
        ),
        (
            "ValidatingWebhookConfiguration",
            "istio-validator-default-v1-27-3-istio-system",
        ),
        (
            "ClusterRole",
            "istiod-clusterrole-default-v1-27-3-istio-system",
        ),
        ("Role", "istiod-default-v1-27-3"),
    ] {
        assert!(has(&objects, kind, name), "{kind} {name}");
    }
    assert_eq!(objects.len(), 18);
}

#[test]
fn webhook_names_carry_the_namespace_outside_istio_system() {
    let mut input = revision("v1.27.3", "canary", Platform::Kubernetes, None);
    input.namespace = "mesh".into();
    let objects = render_revision(&input).unwrap();
    assert!(has(
        &objects,
        "MutatingWebhookConfiguration",
        "istio-sidecar-injector-canary-mesh"
    ));
    assert!(has(
        &objects,
        "ValidatingWebhookConfiguration",
        "istio-validator-canary-mesh"
    ));
    assert!(
        objects
            .iter()
            .filter(|o| o.namespace().is_some())
            .all(|o| o.namespace() == Some("mesh"))
    );
}

#[test]
fn selectors_and_pod_labels() {
    let objects = render("v1.28.3", "default", None);
    let d = deployment(&objects, "istiod");
    assert_eq!(
        d.pointer("/spec/selector/matchLabels").unwrap(),
        &json!({"istio": "pilot"})
    );
    let pod_labels = d.pointer("/spec/template/metadata/labels").unwrap();
    assert_eq!(pod_labels["istio"], "pilot");
    assert_eq!(pod_labels["istio.io/rev"], "default");
    assert_eq!(pod_labels["istio.io/dataplane-mode"], "none");
    assert_eq!(pod_labels["sidecar.istio.io/inject"], "false");
    assert_eq!(pod_labels["app"], "istiod");
    let svc = find(&objects, "Service", "istiod");
    assert_eq!(
        svc.pointer("/spec/selector").unwrap(),
        &json!({"app": "istiod", "istio": "pilot"})
    );

    let objects = render("v1.28.3", "canary", None);
    let d = deployment(&objects, "istiod-canary");
    let selector = json!({"app": "istiod", "istio.io/rev": "canary"});
    assert_eq!(d.pointer("/spec/selector/matchLabels").unwrap(), &selector);
    assert_eq!(
        d.pointer("/spec/template/metadata/labels/istio").unwrap(),
        "istiod"
    );
    assert_eq!(
        find(&objects, "Service", "istiod-canary")
            .pointer("/spec/selector")
            .unwrap(),
        &selector
    );
    assert_eq!(d.label("istio.io/rev"), Some("canary"));
}

#[test]
fn service_ports() {
    let objects = render("v1.26.3", "default", None);
    let ports = find(&objects, "Service", "istiod")
        .pointer("/spec/ports")
        .unwrap()
        .clone();
    assert_eq!(
        ports,
        json!([
            {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
            {"name": "https-dns", "port": 15012, "protocol": "TCP"},
            {"name": "https-webhook", "port": 443, "protocol": "TCP", "targetPort": 15017},
            {"name": "http-monitoring", "port": 15014, "protocol": "TCP"},
        ])
    );
    let c = container(deployment(&objects, "istiod"));
    let ports: Vec<i64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [8080, 15010, 15012, 15017, 15014]);
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/ready", "port": 8080})
    );
}

#[test]
fn injector_entries_by_revision() {
    let objects = render("v1.27.3", "default", None);
    let mwc = find(
        &objects,
        "MutatingWebhookConfiguration",
        "istio-sidecar-injector",
    );
    assert_eq!(
        webhook_names(mwc),
        [
            "rev.namespace.sidecar-injector.istio.io",
            "rev.object.sidecar-injector.istio.io",
            "namespace.sidecar-injector.istio.io",
            "object.sidecar-injector.istio.io",
        ]
    );
    assert_eq!(mwc.label("istio.io/rev"), Some("default"));
    for webhook in mwc.pointer("/webhooks").unwrap().as_array().unwrap() {
        assert_eq!(webhook["failurePolicy"], "Fail");
        assert_eq!(webhook["sideEffects"], "None");
        assert_eq!(webhook["reinvocationPolicy"], "Never");
        assert_eq!(
            webhook["clientConfig"]["service"],
            json!({"name": "istiod", "namespace": ISTIO_NS, "path": "/inject", "port": 443})
        );
        assert!(webhook["clientConfig"].get("caBundle").is_none());
    }
    let rev_ns = mwc
        .pointer("/webhooks/0/namespaceSelector/matchExpressions/0")
        .unwrap();
    assert_eq!(
        rev_ns,
        &json!({"key": "istio.io/rev", "operator": "In", "values": ["default"]})
    );

    let objects = render(
        "v1.27.3",
        "canary",
        Some(
            json!({"sidecarInjectorWebhook": {"enableNamespacesByDefault": true, "reinvocationPolicy": "IfNeeded"}}),
        ),
    );
    let mwc = find(
        &objects,
        "MutatingWebhookConfiguration",
        "istio-sidecar-injector-canary",
    );
    assert_eq!(
        webhook_names(mwc),
        [
            "rev.namespace.sidecar-injector.istio.io",
            "rev.object.sidecar-injector.istio.io"
        ]
    );
    assert_eq!(
        mwc.pointer("/webhooks/0/reinvocationPolicy").unwrap(),
        "IfNeeded"
    );

    let objects = render(
        "v1.27.3",
        "default",
        Some(json!({"sidecarInjectorWebhook": {"enableNamespacesByDefault": true}})),
    );
    let mwc = find(
        &objects,
        "MutatingWebhookConfiguration",
        "istio-sidecar-injector",
    );
    assert_eq!(
        webhook_names(mwc).last().unwrap(),
        "auto.sidecar-injector.istio.io"
    );
}

#[test]
fn validator_selects_its_revision_and_leaves_failure_policy_to_istiod() {
    let objects = render("v1.28.3", "canary", None);
    let vwc = find(
        &objects,
        "ValidatingWebhookConfiguration",
        "istio-validator-canary-istio-system",
    );
    let webhook = vwc.pointer("/webhooks/0").unwrap();
    assert_eq!(webhook["name"], "rev.validation.istio.io");
    // Created at Ignore; istiod tightens it once it serves.
    assert_eq!(webhook["failurePolicy"], "Ignore");
    assert!(webhook["clientConfig"].get("caBundle").is_none());
    assert_eq!(
        webhook["objectSelector"]["matchExpressions"][0],
        json!({"key": "istio.io/rev", "operator": "In", "values": ["canary"]})
    );
    assert_eq!(
        webhook["rules"][0]["operations"],
        json!(["CREATE", "UPDATE"])
    );
    let objects = render(
        "v1.28.3",
        "canary",
        Some(json!({"global": {"configValidation": false}})),
    );
    assert!(
        !objects
            .iter()
            .any(|o| o.kind() == "ValidatingWebhookConfiguration")
    );
}

#[test]
fn disruption_budget_per_version() {
    assert!(has(
        &render("v1.26.3", "default", None),
        "PodDisruptionBudget",
        "istiod"
    ));
    assert!(has(
        &render("v1.27.3", "default", None),
        "PodDisruptionBudget",
        "istiod"
    ));
    assert!(!has(
        &render("v1.28.3", "default", None),
        "PodDisruptionBudget",
        "istiod"
    ));
    assert!(has(
        &render(
            "v1.28.3",
            "default",
            Some(json!({"pilot": {"autoscaleMin": 2}}))
        ),
        "PodDisruptionBudget",
        "istiod"
    ));
    let fixed = json!({"pilot": {"autoscaleEnabled": false, "replicaCount": 3}});
    assert!(has(
        &render("v1.28.3", "default", Some(fixed)),
        "PodDisruptionBudget",
        "istiod"
    ));
    let off = json!({"global": {"defaultPodDisruptionBudget": {"enabled": false}}});
    assert!(!has(
        &render("v1.26.3", "default", Some(off)),
        "PodDisruptionBudget",
        "istiod"
    ));
    let objects = render(
        "v1.27.3",
        "default",
        Some(json!({"pdb": {"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "AlwaysAllow"}})),
    );
    let pdb = find(&objects, "PodDisruptionBudget", "istiod");
    assert_eq!(
        pdb.pointer("/spec").unwrap(),
        &json!({
            "maxUnavailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": "default"}},
        })
    );
}

#[test]
fn autoscaler_or_replicas() {
    let objects = render("v1.27.3", "default", None);
    let hpa = find(&objects, "HorizontalPodAutoscaler", "istiod");
    assert_eq!(hpa.pointer("/spec/minReplicas").unwrap(), 1);
    assert_eq!(hpa.pointer("/spec/maxReplicas").unwrap(), 5);
    assert_eq!(
        hpa.pointer("/spec/metrics/0/resource/target/averageUtilization")
            .unwrap(),
        80
    );
    assert_eq!(hpa.pointer("/spec/scaleTargetRef/name").unwrap(), "istiod");
    assert!(
        deployment(&objects, "istiod")
            .pointer("/spec/replicas")
            .is_none()
    );

    let user = json!({"pilot": {"autoscaleMin": 2, "autoscaleMax": 7, "cpu": {"targetAverageUtilization": 60}, "memory": {"targetAverageUtilization": 70}}});
    let objects = render("v1.27.3", "default", Some(user));
    let hpa = find(&objects, "HorizontalPodAutoscaler", "istiod");
    assert_eq!(hpa.pointer("/spec/minReplicas").unwrap(), 2);
    assert_eq!(hpa.pointer("/spec/maxReplicas").unwrap(), 7);
    assert_eq!(
        hpa.pointer("/spec/metrics/0/resource/target/averageUtilization")
            .unwrap(),
        60
    );
    assert_eq!(
        hpa.pointer("/spec/metrics/1/resource/name").unwrap(),
        "memory"
    );

    let objects = render(
        "v1.27.3",
        "default",
        Some(json!({"pilot": {"autoscaleEnabled": false, "replicaCount": 3}})),
    );
    assert!(!has(&objects, "HorizontalPodAutoscaler", "istiod"));
    assert_eq!(
        deployment(&objects, "istiod")
            .pointer("/spec/replicas")
            .unwrap(),
        3
    );
}

#[test]
fn environment() {
    let objects = render("v1.27.3", "default-v1-27-3", None);
    let d = deployment(&objects, "istiod-default-v1-27-3");
    assert_eq!(env_value(d, "REVISION"), Some("default-v1-27-3"));
    assert_eq!(env_value(d, "PILOT_ENABLE_AMBIENT"), Some("true"));
    assert_eq!(
        env_value(d, "CA_TRUSTED_NODE_ACCOUNTS"),
        Some("istio-system/ztunnel")
    );
    assert_eq!(env_value(d, "CLUSTER_ID"), Some("Kubernetes"));
    assert_eq!(env_value(d, "PILOT_CERT_PROVIDER"), Some("istiod"));
    assert_eq!(
        env(d, "GOMEMLIMIT").unwrap()["valueFrom"]["resourceFieldRef"],
        json!({"resource": "limits.memory", "divisor": "1"})
    );
    assert_eq!(
        env(d, "GOMAXPROCS").unwrap()["valueFrom"]["resourceFieldRef"]["resource"],
        "limits.cpu"
    );
    assert_eq!(
        env(d, "POD_NAME").unwrap()["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert!(env(d, "PLATFORM").is_some() && env_value(d, "PLATFORM").is_none());
    assert!(env(d, "ISTIOD_CUSTOM_HOST").is_none());

    let user = json!({
        "pilot": {
            "trustedZtunnelNamespace": "ztunnel",
            "trustedZtunnelName": "zt",
            "env": {"PILOT_ENABLE_ANALYSIS": "true", "ISTIOD_CUSTOM_HOST": "mine.example"},
        },
        "global": {"multiCluster": {"clusterName": "east"}, "trustBundleName": "bundle"},
    });
    let mut input = revision("v1.27.3", "default", Platform::Kubernetes, Some(user));
    input.custom_hosts = vec!["istiod-stable.istio-system.svc".into()];
    let objects = render_revision(&input).unwrap();
    let d = deployment(&objects, "istiod");
    assert_eq!(env_value(d, "CA_TRUSTED_NODE_ACCOUNTS"), Some("ztunnel/zt"));
    assert_eq!(env_value(d, "CLUSTER_ID"), Some("east"));
    assert_eq!(env_value(d, "PILOT_CA_CERT_CONFIGMAP"), Some("bundle"));
    assert_eq!(env_value(d, "PILOT_ENABLE_ANALYSIS"), Some("true"));
    assert_eq!(
        env_value(d, "ISTIOD_CUSTOM_HOST"),
        Some("mine.example,istiod-stable.istio-system.svc")
    );
    let names: Vec<&str> = container(d)["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    let volume = pod_spec(d)["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "istio-csr-ca-configmap")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "bundle");
}

#[test]
fn images() {
    let image = |user: Option<Value>| {
        let objects = render("v1.27.3", "default", user);
        container(deployment(&objects, "istiod"))["image"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(image(None), "docker.io/istio/pilot:1.27.3-distroless");
    assert_eq!(
        image(Some(
            json!({"global": {"hub": "quay.io/me", "tag": "1.27.4", "variant": ""}})
        )),
        "quay.io/me/pilot:1.27.4"
    );
    assert_eq!(
        image(Some(
            json!({"global": {"hub": "quay.io/g"}, "pilot": {"hub": "quay.io/p", "tag": "x", "variant": "debug", "image": "pilot-fips"}})
        )),
        "quay.io/p/pilot-fips:x-debug"
    );
    let digest = "registry.redhat.io/openshift-service-mesh/istio-pilot-rhel9@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_eq!(
        image(Some(
            json!({"pilot": {"image": digest}, "global": {"hub": "quay.io/g"}})
        )),
        digest
    );

    let mut input = revision("v1.27.3", "default", Platform::Kubernetes, None);
    input.images.istiod = ImageRef::Full(digest.into());
    input.images.proxy =
        ImageRef::Full("registry.redhat.io/x/istio-proxyv2-rhel9@sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd".into());
    let objects = render_revision(&input).unwrap();
    assert_eq!(container(deployment(&objects, "istiod"))["image"], digest);
    let values = find(&objects, "ConfigMap", "istio-sidecar-injector")
        .pointer("/data/values")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let values: Value = serde_json::from_str(&values).unwrap();
    assert_eq!(
        values["global"]["proxy"]["image"],
        "registry.redhat.io/x/istio-proxyv2-rhel9@sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd"
    );
}

#[test]
fn every_pilot_and_global_value_reaches_the_deployment() {
    let user = json!({
        "global": {
            "imagePullPolicy": "Always",
            "imagePullSecrets": ["pull"],
            "priorityClassName": "critical",
            "logging": {"level": "default:debug"},
            "logAsJson": true,
            "proxy": {"clusterDomain": "corp.local"},
        },
        "pilot": {
            "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}},
            "nodeSelector": {"pool": "infra"},
            "tolerations": [{"key": "infra", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}},
            "podAnnotations": {"note": "x"},
            "podLabels": {"team": "mesh", "app": "ignored"},
            "deploymentLabels": {"dl": "1"},
            "deploymentAnnotations": {"da": "1"},
            "serviceAnnotations": {"sa": "1"},
            "serviceAccountAnnotations": {"iam": "role"},
            "rollingMaxSurge": 1,
            "rollingMaxUnavailable": 0,
            "extraContainerArgs": ["--extra"],
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}],
            "volumes": [{"name": "extra", "emptyDir": {}}],
            "volumeMounts": [{"name": "extra", "mountPath": "/extra"}],
            "seccompProfile": {"type": "RuntimeDefault"},
            "ipFamilyPolicy": "PreferDualStack",
            "trafficDistribution": "PreferClose",
            "keepaliveMaxServerConnectionAge": "10m",
            "traceSampling": 0.5,
            "envVarFrom": [{"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        },
    });
    let objects = render("v1.26.3", "default", Some(user));
    let d = deployment(&objects, "istiod");
    let c = container(d);
    let pod = pod_spec(d);
    assert_eq!(c["imagePullPolicy"], "Always");
    // Maps merge with the defaults (as Helm values do): the default memory request stays.
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "1", "memory": "2048Mi"}, "limits": {"memory": "4Gi"}})
    );
    assert_eq!(pod["nodeSelector"], json!({"pool": "infra"}));
    assert_eq!(
        pod["tolerations"][1],
        json!({"key": "infra", "operator": "Exists"})
    );
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "a"
    );
    assert_eq!(pod["priorityClassName"], "critical");
    assert_eq!(pod["topologySpreadConstraints"][0]["topologyKey"], "zone");
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
    assert_eq!(
        c["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(
        d.pointer("/spec/template/metadata/annotations/note")
            .unwrap(),
        "x"
    );
    assert_eq!(
        d.pointer("/spec/template/metadata/labels/team").unwrap(),
        "mesh"
    );
    assert_eq!(
        d.pointer("/spec/template/metadata/labels/app").unwrap(),
        "istiod"
    );
    assert_eq!(d.label("dl"), Some("1"));
    assert_eq!(d.pointer("/metadata/annotations/da").unwrap(), "1");
    assert_eq!(
        d.pointer("/spec/strategy/rollingUpdate").unwrap(),
        &json!({"maxSurge": 1, "maxUnavailable": 0})
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--log_output_level=default:debug"));
    assert!(args.contains(&"--log_as_json"));
    assert!(args.windows(2).any(|w| w == ["--domain", "corp.local"]));
    assert!(
        args.windows(2)
            .any(|w| w == ["--keepaliveMaxServerConnectionAge", "10m"])
    );
    assert_eq!(args.last(), Some(&"--extra"));
    assert_eq!(env_value(d, "PILOT_TRACE_SAMPLING"), Some("0.5"));
    assert_eq!(
        env(d, "FROM_SECRET").unwrap()["valueFrom"]["secretKeyRef"]["key"],
        "k"
    );
    let svc = find(&objects, "Service", "istiod");
    assert_eq!(svc.pointer("/metadata/annotations/sa").unwrap(), "1");
    assert_eq!(
        svc.pointer("/spec/ipFamilyPolicy").unwrap(),
        "PreferDualStack"
    );
    assert_eq!(
        svc.pointer("/spec/trafficDistribution").unwrap(),
        "PreferClose"
    );
    let sa = find(&objects, "ServiceAccount", "istiod");
    assert_eq!(sa.pointer("/imagePullSecrets/0/name").unwrap(), "pull");
    assert_eq!(sa.pointer("/metadata/annotations/iam").unwrap(), "role");
}

fn mesh(objects: &[Object], name: &str) -> Value {
    let text = find(objects, "ConfigMap", name)
        .pointer("/data/mesh")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    serde_saphyr::from_str(&text).unwrap()
}

#[test]
fn mesh_config() {
    let objects = render("v1.26.3", "canary", None);
    let m = mesh(&objects, "istio-canary");
    assert_eq!(
        m["defaultConfig"]["discoveryAddress"],
        "istiod-canary.istio-system.svc:15012"
    );
    assert_eq!(
        m["defaultConfig"]["proxyMetadata"]["ISTIO_META_ENABLE_HBONE"],
        "true"
    );
    assert_eq!(m["defaultConfig"]["image"]["imageType"], "distroless");
    assert_eq!(m["trustDomain"], "cluster.local");
    assert_eq!(m["rootNamespace"], ISTIO_NS);
    assert_eq!(m["enablePrometheusMerge"], true);
    assert_eq!(m["defaultProviders"]["metrics"], json!(["prometheus"]));
    assert!(m.get("serviceScopeConfigs").is_none());
    let networks = find(&objects, "ConfigMap", "istio-canary")
        .pointer("/data/meshNetworks")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        serde_saphyr::from_str::<Value>(&networks).unwrap(),
        json!({"networks": {}})
    );

    let m = mesh(&render("v1.27.3", "default", None), "istio");
    let scope = &m["serviceScopeConfigs"][0];
    assert_eq!(scope["scope"], "GLOBAL");
    assert_eq!(
        scope["servicesSelector"]["matchExpressions"][0],
        json!({"key": "istio.io/global", "operator": "In", "values": ["true"]})
    );

    let user = json!({"meshConfig": {"trustDomain": "corp", "accessLogFile": "/dev/stdout", "defaultProviders": {"tracing": ["otel"]}, "discoverySelectors": [{"matchLabels": {"mesh": "yes"}}]}});
    let m = mesh(&render("v1.28.3", "default", Some(user)), "istio");
    assert_eq!(m["trustDomain"], "corp");
    assert_eq!(m["accessLogFile"], "/dev/stdout");
    assert_eq!(m["defaultProviders"], json!({"tracing": ["otel"]}));
    assert_eq!(m["discoverySelectors"][0]["matchLabels"]["mesh"], "yes");
    assert_eq!(
        m["defaultConfig"]["proxyMetadata"]["ISTIO_META_ENABLE_HBONE"],
        "true"
    );
}

#[test]
fn injector_config_carries_gateway_templates() {
    let user = json!({"sidecarInjectorWebhook": {"templates": {"custom": "kind: Pod"}}});
    let objects = render("v1.28.3", "canary", Some(user));
    let cm = find(&objects, "ConfigMap", "istio-sidecar-injector-canary");
    let config: Value =
        serde_saphyr::from_str(cm.pointer("/data/config").unwrap().as_str().unwrap()).unwrap();
    let templates = config["templates"].as_object().unwrap();
    for name in [
        "waypoint",
        "kube-gateway",
        "sidecar",
        "gateway",
        "grpc-agent",
        "grpc-simple",
        "custom",
    ] {
        assert!(templates.contains_key(name), "{name}");
    }
    assert!(
        templates["sidecar"]
            .as_str()
            .unwrap()
            .contains("istiod-canary.istio-system.svc:15012")
    );
    assert!(
        templates["waypoint"]
            .as_str()
            .unwrap()
            .contains("istiod-canary.istio-system.svc:15012")
    );
    assert!(
        templates["waypoint"]
            .as_str()
            .unwrap()
            .contains("terminationGracePeriodSeconds: 30")
    );
    assert_eq!(config["defaultTemplates"], json!(["sidecar"]));
    assert_eq!(config["policy"], "enabled");
    let values: Value =
        serde_json::from_str(cm.pointer("/data/values").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(values["revision"], "canary");
    assert_eq!(values["global"]["hub"], "docker.io/istio");
    assert_eq!(values["global"]["tag"], "1.28.3");
    assert_eq!(values["global"]["proxy"]["image"], "proxyv2");
    assert_eq!(values["global"]["variant"], "distroless");
    assert_eq!(values["pilot"]["env"]["PILOT_ENABLE_AMBIENT"], "true");

    let objects = render(
        "v1.26.3",
        "default",
        Some(json!({"sidecarInjectorWebhook": {"templates": {"sidecar": "x"}}})),
    );
    let cm = find(&objects, "ConfigMap", "istio-sidecar-injector");
    let config: Value =
        serde_saphyr::from_str(cm.pointer("/data/config").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(config["policy"], "enabled");
    assert_eq!(
        config["templates"]["sidecar"], "x",
        "the user's template wins"
    );
    assert!(
        config["templates"]["waypoint"]
            .as_str()
            .unwrap()
            .contains("terminationGracePeriodSeconds: 2\n")
    );

    // `global.proxy.autoInject` sets the policy.
    let off = json!({"global": {"proxy": {"autoInject": "disabled"}}});
    let cm = find(
        &render("v1.28.3", "default", Some(off)),
        "ConfigMap",
        "istio-sidecar-injector",
    )
    .clone();
    let config: Value =
        serde_saphyr::from_str(cm.pointer("/data/config").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(config["policy"], "disabled");

    // A template istiod could not parse is refused, naming it and where it breaks.
    let refused = |values: Value| {
        render_revision(&revision(
            "v1.28.3",
            "default",
            Platform::Kubernetes,
            Some(values),
        ))
        .unwrap_err()
        .to_string()
    };
    let err = refused(
        json!({"sidecarInjectorWebhook": {"templates": {"custom": "spec:\n{{ if .X }}\n  a: b\n"}}}),
    );
    assert!(
        err.contains("sidecarInjectorWebhook.templates.custom") && err.contains("line 2"),
        "{err}"
    );

    // A default template nobody defined is refused, naming the key and what exists.
    let err =
        refused(json!({"sidecarInjectorWebhook": {"defaultTemplates": ["sidecar", "spire"]}}));
    assert!(
        err.contains("sidecarInjectorWebhook.defaultTemplates")
            && err.contains("\"spire\"")
            && err.contains("grpc-agent"),
        "{err}"
    );
}

#[test]
fn openshift_differences() {
    let objects =
        render_revision(&revision("v1.28.3", "default", Platform::OpenShift, None)).unwrap();
    let d = deployment(&objects, "istiod");
    assert_eq!(env_value(d, "PLATFORM"), Some("openshift"));
    assert_eq!(
        env_value(d, "CA_TRUSTED_NODE_ACCOUNTS"),
        Some("kube-system/ztunnel")
    );
    let cm = find(&objects, "ConfigMap", "istio-sidecar-injector");
    let values: Value =
        serde_json::from_str(cm.pointer("/data/values").unwrap().as_str().unwrap()).unwrap();
    assert_eq!(values["pilot"]["cni"]["enabled"], true);
    assert_eq!(values["pilot"]["cni"]["provider"], "multus");
    assert_eq!(values["global"]["platform"], "openshift");
    let config: Value =
        serde_saphyr::from_str(cm.pointer("/data/config").unwrap().as_str().unwrap()).unwrap();
    // Gateways leave user and group to the SCC; injected pods get the namespace's UID,
    // which istiod reads from the SCC's annotation (`.ProxyUID`).
    for gateway in ["waypoint", "kube-gateway"] {
        assert!(
            !config["templates"][gateway]
                .as_str()
                .unwrap()
                .contains("runAsUser")
        );
    }
    assert!(
        config["templates"]["sidecar"]
            .as_str()
            .unwrap()
            .contains(".ProxyUID")
    );
    assert!(container(d)["securityContext"].get("runAsUser").is_none());

    let user = json!({"pilot": {"trustedZtunnelNamespace": "ztunnel"}});
    let objects = render_revision(&revision(
        "v1.28.3",
        "default",
        Platform::OpenShift,
        Some(user),
    ))
    .unwrap();
    assert_eq!(
        env_value(deployment(&objects, "istiod"), "CA_TRUSTED_NODE_ACCOUNTS"),
        Some("ztunnel/ztunnel")
    );
    let kube = render("v1.28.3", "default", None);
    let config = find(&kube, "ConfigMap", "istio-sidecar-injector")
        .pointer("/data/config")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert!(config.contains("runAsUser: {{ .ProxyUID }}"));
}

#[test]
fn rbac_per_version() {
    let rules = |version: &str, name: &str| {
        let objects = render(version, "default", None);
        serde_json::to_string(
            find(&objects, "ClusterRole", name)
                .pointer("/rules")
                .unwrap(),
        )
        .unwrap()
    };
    let istiod = "istiod-clusterrole-istio-system";
    let reader = "istio-reader-clusterrole-istio-system";
    assert!(!rules("v1.26.3", istiod).contains("xlistenersets/status"));
    assert!(!rules("v1.26.3", istiod).contains("inference"));
    assert!(rules("v1.27.3", istiod).contains("xlistenersets/status"));
    assert!(rules("v1.27.3", istiod).contains("\"inference.networking.x-k8s.io\""));
    assert!(rules("v1.28.3", istiod).contains("\"inference.networking.k8s.io\""));
    assert!(rules("v1.26.3", reader).contains("configmaps"));
    assert!(!rules("v1.27.3", reader).contains("configmaps"));
    // 1.29: the reader reads ConfigMaps again. 1.30: ListenerSet is standard.
    assert!(!rules("v1.28.3", reader).contains("configmaps"));
    assert!(rules("v1.29.6", reader).contains("configmaps"));
    let status = |version: &str, group: &str| -> Vec<String> {
        let objects = render(version, "default", None);
        let rules = find(&objects, "ClusterRole", istiod)
            .pointer("/rules")
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        rules
            .iter()
            .filter(|r| {
                r["apiGroups"] == json!([group]) && r["verbs"] == json!(["update", "patch"])
            })
            .flat_map(|r| r["resources"].as_array().unwrap().clone())
            .map(|r| r.as_str().unwrap().to_owned())
            .collect()
    };
    let experimental = "gateway.networking.x-k8s.io";
    let standard = "gateway.networking.k8s.io";
    assert_eq!(
        status("v1.29.6", experimental),
        ["xbackendtrafficpolicies/status", "xlistenersets/status"]
    );
    assert_eq!(
        status("v1.30.3", experimental),
        ["xbackendtrafficpolicies/status"]
    );
    assert!(!status("v1.29.6", standard).contains(&"listenersets/status".to_owned()));
    assert!(status("v1.30.3", standard).contains(&"listenersets/status".to_owned()));
    assert!(!status("v1.30.3", standard).contains(&"xbackendtrafficpolicies/status".to_owned()));
    let objects = render("v1.27.3", "canary", None);
    let binding = find(
        &objects,
        "ClusterRoleBinding",
        "istio-reader-clusterrole-canary-istio-system",
    );
    assert_eq!(
        binding.pointer("/subjects/0/name").unwrap(),
        "istio-reader-service-account"
    );
    let binding = find(&objects, "RoleBinding", "istiod-canary");
    assert_eq!(
        binding.pointer("/subjects/0").unwrap(),
        &json!({"kind": "ServiceAccount", "name": "istiod-canary", "namespace": ISTIO_NS})
    );
    assert_eq!(binding.pointer("/roleRef/kind").unwrap(), "Role");
}

#[test]
fn wrong_shapes_are_errors_not_panics() {
    let mut input = revision("v1.27.3", "default", Platform::Kubernetes, None);
    input.values.mesh_config = Some(json!("not a map"));
    assert!(
        matches!(render_revision(&input), Err(RenderError::InvalidValue { ref path, .. }) if path == "meshConfig")
    );

    let mut input = revision("v1.27.3", "default", Platform::Kubernetes, None);
    input
        .values
        .pilot
        .as_mut()
        .unwrap()
        .other
        .insert("topologySpreadConstraints".into(), json!({"a": 1}));
    assert!(
        matches!(render_revision(&input), Err(RenderError::InvalidValue { ref path, .. }) if path == "pilot")
    );

    let mut input = revision("v1.27.3", "default", Platform::Kubernetes, None);
    input.values.sidecar_injector_webhook = Some(json!({"templates": ["x"]}));
    assert!(matches!(
        render_revision(&input),
        Err(RenderError::InvalidValue { .. })
    ));

    let mut input = revision("v1.27.3", "default", Platform::Kubernetes, None);
    input.revision = "Bad/Name".into();
    assert!(matches!(
        render_revision(&input),
        Err(RenderError::InvalidInput { .. })
    ));

    let mut input = revision("v1.27.3", "default", Platform::Kubernetes, None);
    input.values.profile = Some("no-such-profile".into());
    assert!(matches!(
        render_revision(&input),
        Err(RenderError::UnknownProfile { .. })
    ));
}

#[test]
fn revision_tags() {
    let canary = revision("v1.27.3", "canary", Platform::Kubernetes, None);
    let owner = Owner::istio_revision_tag("prod");
    let objects = render_tag(
        &owner,
        "prod",
        "canary",
        ISTIO_NS,
        &canary.version,
        &canary.values,
    )
    .unwrap();
    assert_eq!(objects.len(), 1);
    let mwc = find(
        &objects,
        "MutatingWebhookConfiguration",
        "istio-revision-tag-prod",
    );
    assert_eq!(mwc.label("istio.io/tag"), Some("prod"));
    assert_eq!(mwc.label("istio.io/rev"), Some("canary"));
    assert_eq!(webhook_names(mwc).len(), 2);
    assert_eq!(
        mwc.pointer("/webhooks/0/namespaceSelector/matchExpressions/0/values")
            .unwrap(),
        &json!(["prod"])
    );
    assert_eq!(
        mwc.pointer("/webhooks/0/clientConfig/service/name")
            .unwrap(),
        "istiod-canary"
    );

    let (v128, _) = resolve("v1.28.3");
    let objects = render_tag(&owner, "default", "canary", "mesh", &v128, &canary.values).unwrap();
    let mwc = find(
        &objects,
        "MutatingWebhookConfiguration",
        "istio-revision-tag-default-mesh",
    );
    assert_eq!(webhook_names(mwc).len(), 4);
    let svc = find(&objects, "Service", "istiod-revision-tag-default");
    assert_eq!(svc.namespace(), Some("mesh"));
    assert_eq!(svc.label("istio.io/tag"), Some("default"));
    assert_eq!(svc.label("istio.io/rev"), Some("canary"));
    assert_eq!(
        svc.pointer("/spec/selector").unwrap(),
        &json!({"app": "istiod", "istio.io/rev": "canary"})
    );
    assert_eq!(svc.pointer("/spec/ports/2/targetPort").unwrap(), 15017);
    assert!(render_tag(&owner, "", "canary", ISTIO_NS, &v128, &canary.values).is_err());
}

/// istiod's environment per minor: 1.29 dropped GOMEMLIMIT.
#[test]
fn env_per_minor() {
    for (version, gomemlimit) in [("v1.28.3", true), ("v1.29.6", false), ("v1.30.3", false)] {
        let objects = render(version, "default", None);
        let env = find(&objects, "Deployment", "istiod")
            .pointer("/spec/template/spec/containers/0/env")
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(names.contains(&"GOMEMLIMIT"), gomemlimit, "{version}");
        assert!(names.contains(&"GOMAXPROCS"), "{version}");
    }
}
