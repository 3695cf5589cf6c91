//! The objects of an installation, built from [`InstallValues`]: the one source of the plain
//! manifests, the Helm chart's templates and the OLM bundle's install strategy.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
    EnvVarSource, HTTPGetAction, Namespace, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::values::{InstallValues, Platform, VERSION};

/// Name of the ServiceAccount, the ClusterRole and its binding, and the Deployment.
pub const NAME: &str = "mizzen";
/// Name of the Role and RoleBinding for the leader-election Lease.
pub const LEADER_ELECTION_ROLE: &str = "mizzen-leader-election";
/// Name of the ConfigMap holding a user's version catalog.
pub const CATALOG_CONFIGMAP: &str = "mizzen-catalog";
/// Key of the catalog in that ConfigMap.
pub const CATALOG_KEY: &str = "versions.yaml";
/// Where the catalog ConfigMap is mounted.
pub const CATALOG_DIR: &str = "/etc/mizzen/catalog";
/// Name of the metrics Service.
pub const METRICS_SERVICE: &str = "mizzen-metrics";
/// Pod template annotation holding the SHA-256 of the catalog, so that a catalog change
/// rolls the Deployment.
pub const CATALOG_CHECKSUM_ANNOTATION: &str = "mizzen.dev/catalog-sha256";
/// Port of `/metrics`.
pub const METRICS_PORT: i32 = 8080;
/// Port of `/healthz` and `/readyz`.
pub const HEALTH_PORT: i32 = 8081;
/// User and group the container runs as (the conventional "nonroot" of distroless images).
pub const RUN_AS_USER: i64 = 65532;

/// One object of an installation. Serializes as the object itself.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    /// The operator's namespace (plain manifests only).
    Namespace(Namespace),
    /// A CRD of the `sailoperator.io` API.
    CustomResourceDefinition(CustomResourceDefinition),
    /// The operator's ServiceAccount.
    ServiceAccount(ServiceAccount),
    /// The operator's cluster-wide permissions.
    ClusterRole(ClusterRole),
    /// Binds the ClusterRole to the ServiceAccount.
    ClusterRoleBinding(ClusterRoleBinding),
    /// The operator's permissions in its namespace (the Lease).
    Role(Role),
    /// Binds the Role to the ServiceAccount.
    RoleBinding(RoleBinding),
    /// A user's version catalog.
    ConfigMap(ConfigMap),
    /// The metrics Service.
    Service(Service),
    /// The operator.
    Deployment(Deployment),
    /// Keeps one replica up during voluntary disruptions.
    PodDisruptionBudget(PodDisruptionBudget),
    /// A Prometheus Operator ServiceMonitor.
    ServiceMonitor(ServiceMonitor),
}

/// A `monitoring.coreos.com/v1` ServiceMonitor (no Rust type of it exists in k8s-openapi).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitor {
    /// `monitoring.coreos.com/v1`.
    pub api_version: String,
    /// `ServiceMonitor`.
    pub kind: String,
    /// Name, namespace and labels.
    pub metadata: ObjectMeta,
    /// The selector and endpoints.
    pub spec: serde_json::Value,
}

impl Object {
    /// The object's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Namespace(_) => "Namespace",
            Self::CustomResourceDefinition(_) => "CustomResourceDefinition",
            Self::ServiceAccount(_) => "ServiceAccount",
            Self::ClusterRole(_) => "ClusterRole",
            Self::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Self::Role(_) => "Role",
            Self::RoleBinding(_) => "RoleBinding",
            Self::ConfigMap(_) => "ConfigMap",
            Self::Service(_) => "Service",
            Self::Deployment(_) => "Deployment",
            Self::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Self::ServiceMonitor(_) => "ServiceMonitor",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Namespace(o) => &o.metadata,
            Self::CustomResourceDefinition(o) => &o.metadata,
            Self::ServiceAccount(o) => &o.metadata,
            Self::ClusterRole(o) => &o.metadata,
            Self::ClusterRoleBinding(o) => &o.metadata,
            Self::Role(o) => &o.metadata,
            Self::RoleBinding(o) => &o.metadata,
            Self::ConfigMap(o) => &o.metadata,
            Self::Service(o) => &o.metadata,
            Self::Deployment(o) => &o.metadata,
            Self::PodDisruptionBudget(o) => &o.metadata,
            Self::ServiceMonitor(o) => &o.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// The object as one YAML document (without the `---` separator).
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("Kubernetes objects serialize to YAML")
    }
}

/// Every object of an installation with `values`, in apply order: Namespace, CRDs,
/// ServiceAccount, RBAC, ConfigMap (when a catalog is given), Service, Deployment,
/// PodDisruptionBudget (when more than one replica), ServiceMonitor (when enabled).
pub fn objects(values: &InstallValues, crds: Vec<CustomResourceDefinition>) -> Vec<Object> {
    let mut out = vec![Object::Namespace(namespace(values))];
    out.extend(crds.into_iter().map(Object::CustomResourceDefinition));
    out.extend(namespaced_objects(values, &Markers::NONE));
    out
}

/// The objects as one YAML stream, each document preceded by `---` (the style of
/// `mizzen crds`).
pub fn to_yaml_stream(objects: &[Object]) -> String {
    objects
        .iter()
        .map(|o| format!("---\n{}", o.to_yaml()))
        .collect()
}

/// The operator's Deployment alone (the OLM bundle's install strategy uses its spec).
pub fn deployment(values: &InstallValues) -> Deployment {
    build_deployment(values, &Markers::NONE)
}

/// How the chart generator marks the places that become template expressions. With
/// [`Markers::NONE`], optional parts follow the values; with the chart's markers, every
/// optional part is present and carries a marker.
#[derive(Clone, Copy)]
pub(crate) struct Markers {
    pub(crate) on: bool,
}

impl Markers {
    pub(crate) const NONE: Markers = Markers { on: false };
    pub(crate) const CHART: Markers = Markers { on: true };
}

/// Marker strings the chart generator replaces with Helm expressions.
pub(crate) mod marker {
    pub const NAMESPACE: &str = "__MIZZEN_NAMESPACE__";
    pub const INSTANCE: &str = "__MIZZEN_INSTANCE__";
    pub const IMAGE: &str = "__MIZZEN_IMAGE__";
    pub const PULL_POLICY: &str = "__MIZZEN_PULL_POLICY__";
    pub const PRIORITY_CLASS: &str = "__MIZZEN_PRIORITY_CLASS__";
    pub const PLATFORM_ARG: &str = "--platform=__MIZZEN_PLATFORM__";
    pub const CATALOG_CHECKSUM: &str = "__MIZZEN_CATALOG_CHECKSUM__";
    pub const CATALOG: &str = "__MIZZEN_CATALOG__";
    /// A replica count nobody sets.
    pub const REPLICAS: i32 = 987_654_321;
}

/// Everything but the Namespace and the CRDs, for the plain manifests and the chart.
pub(crate) fn namespaced_objects(values: &InstallValues, m: &Markers) -> Vec<Object> {
    let ns = if m.on {
        marker::NAMESPACE.to_owned()
    } else {
        values.namespace.clone()
    };
    let labels = common_labels(values, m);
    let meta = |name: &str, namespaced: bool| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespaced.then(|| ns.clone()),
        labels: Some(labels.clone()),
        ..Default::default()
    };
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: NAME.into(),
        namespace: Some(ns.clone()),
        ..Default::default()
    };
    let mut out = vec![
        Object::ServiceAccount(ServiceAccount {
            metadata: meta(NAME, true),
            automount_service_account_token: Some(true),
            ..Default::default()
        }),
        Object::ClusterRole(ClusterRole {
            metadata: meta(NAME, false),
            rules: Some(mizzen_controller::permissions::cluster_rules()),
            ..Default::default()
        }),
        Object::ClusterRoleBinding(ClusterRoleBinding {
            metadata: meta(NAME, false),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: NAME.into(),
            },
            subjects: Some(vec![subject.clone()]),
        }),
        Object::Role(Role {
            metadata: meta(LEADER_ELECTION_ROLE, true),
            rules: Some(mizzen_controller::permissions::namespace_rules()),
        }),
        Object::RoleBinding(RoleBinding {
            metadata: meta(LEADER_ELECTION_ROLE, true),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: LEADER_ELECTION_ROLE.into(),
            },
            subjects: Some(vec![subject]),
        }),
    ];
    if m.on || !values.catalog.is_empty() {
        let content = if m.on {
            marker::CATALOG.to_owned()
        } else {
            values.catalog.clone()
        };
        out.push(Object::ConfigMap(ConfigMap {
            metadata: meta(CATALOG_CONFIGMAP, true),
            data: Some(BTreeMap::from([(CATALOG_KEY.to_owned(), content)])),
            ..Default::default()
        }));
    }
    out.push(Object::Service(Service {
        metadata: meta(METRICS_SERVICE, true),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(values, m)),
            ports: Some(vec![ServicePort {
                name: Some("http-metrics".into()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::String("http-metrics".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }));
    out.push(Object::Deployment(build_deployment(values, m)));
    if m.on || values.replicas > 1 {
        out.push(Object::PodDisruptionBudget(PodDisruptionBudget {
            metadata: meta(NAME, true),
            spec: Some(PodDisruptionBudgetSpec {
                min_available: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(values, m)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    if m.on || values.service_monitor.enabled {
        out.push(Object::ServiceMonitor(ServiceMonitor {
            api_version: "monitoring.coreos.com/v1".into(),
            kind: "ServiceMonitor".into(),
            metadata: meta(NAME, true),
            spec: json!({
                "selector": {"matchLabels": selector_labels(values, m)},
                "endpoints": [{"port": "http-metrics", "path": "/metrics"}],
            }),
        }));
    }
    out
}

fn namespace(values: &InstallValues) -> Namespace {
    let mut labels = common_labels(values, &Markers::NONE);
    // The operator is written for the restricted Pod Security Standard.
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    Namespace {
        metadata: ObjectMeta {
            name: Some(values.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn instance(values: &InstallValues, m: &Markers) -> String {
    if m.on {
        marker::INSTANCE.into()
    } else {
        values.instance.clone()
    }
}

/// The labels that select the operator's pods.
fn selector_labels(values: &InstallValues, m: &Markers) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), NAME.into()),
        ("app.kubernetes.io/instance".into(), instance(values, m)),
    ])
}

/// The labels of every object (and of the pods).
fn common_labels(values: &InstallValues, m: &Markers) -> BTreeMap<String, String> {
    let mut labels = selector_labels(values, m);
    labels.insert("app.kubernetes.io/version".into(), VERSION.into());
    labels.insert("app.kubernetes.io/component".into(), "operator".into());
    labels
}

/// The hex SHA-256 of a catalog (what Helm's `sha256sum` gives).
pub fn catalog_checksum(catalog: &str) -> String {
    Sha256::digest(catalog.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn build_deployment(values: &InstallValues, m: &Markers) -> Deployment {
    let with_catalog = m.on || !values.catalog.is_empty();
    let mut args: Vec<String> = [
        "run",
        "--leader-elect",
        "--health-addr=0.0.0.0:8081",
        "--metrics-addr=0.0.0.0:8080",
        "--log-format=json",
    ]
    .map(String::from)
    .to_vec();
    if m.on {
        args.push(marker::PLATFORM_ARG.into());
    } else if values.platform != Platform::Auto {
        args.push(format!("--platform={}", values.platform.as_str()));
    }
    if with_catalog {
        args.push(format!("--versions-file={CATALOG_DIR}/{CATALOG_KEY}"));
    }
    let mut annotations = BTreeMap::from([(
        "kubectl.kubernetes.io/default-container".to_owned(),
        NAME.to_owned(),
    )]);
    if with_catalog {
        let sum = if m.on {
            marker::CATALOG_CHECKSUM.to_owned()
        } else {
            catalog_checksum(&values.catalog)
        };
        annotations.insert(CATALOG_CHECKSUM_ANNOTATION.into(), sum);
    }
    let field_env = |name: &str, path: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("health".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    };
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    // Optional blocks: present (empty) when marking, so the generator finds them.
    let non_empty_or_marked = |empty: bool| m.on || !empty;
    let resources =
        non_empty_or_marked(values.resources == ResourceRequirements::default()).then(|| {
            if m.on {
                ResourceRequirements::default()
            } else {
                values.resources.clone()
            }
        });
    let container = Container {
        name: NAME.into(),
        image: Some(if m.on {
            marker::IMAGE.into()
        } else {
            values.image.reference()
        }),
        image_pull_policy: Some(if m.on {
            marker::PULL_POLICY.into()
        } else {
            values.image.pull_policy.clone()
        }),
        args: Some(args),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![
            port("http-metrics", METRICS_PORT),
            port("health", HEALTH_PORT),
        ]),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(15),
            ..probe("/healthz", 20)
        }),
        readiness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            ..probe("/readyz", 10)
        }),
        resources,
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: with_catalog.then(|| {
            vec![VolumeMount {
                name: "catalog".into(),
                mount_path: CATALOG_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(NAME.into()),
        automount_service_account_token: Some(true),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        containers: vec![container],
        node_selector: non_empty_or_marked(values.node_selector.is_empty()).then(|| {
            if m.on {
                BTreeMap::new()
            } else {
                values.node_selector.clone()
            }
        }),
        tolerations: non_empty_or_marked(values.tolerations.is_empty()).then(|| {
            if m.on {
                Vec::new()
            } else {
                values.tolerations.clone()
            }
        }),
        affinity: non_empty_or_marked(values.affinity == Affinity::default()).then(|| {
            if m.on {
                Affinity::default()
            } else {
                values.affinity.clone()
            }
        }),
        image_pull_secrets: non_empty_or_marked(values.image_pull_secrets.is_empty()).then(|| {
            if m.on {
                Vec::new()
            } else {
                values.image_pull_secrets.clone()
            }
        }),
        priority_class_name: if m.on {
            Some(marker::PRIORITY_CLASS.into())
        } else {
            Some(values.priority_class_name.clone()).filter(|p| !p.is_empty())
        },
        volumes: with_catalog.then(|| {
            vec![Volume {
                name: "catalog".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: CATALOG_CONFIGMAP.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let labels = common_labels(values, m);
    Deployment {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            namespace: Some(if m.on {
                marker::NAMESPACE.into()
            } else {
                values.namespace.clone()
            }),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(if m.on {
                marker::REPLICAS
            } else {
                values.replicas
            }),
            selector: LabelSelector {
                match_labels: Some(selector_labels(values, m)),
                ..Default::default()
            },
            // A new pod is Ready (a standby) before an old one stops, so a rollout never
            // has fewer replicas than asked and never violates the budget; the leader's Lease
            // moves when the old leader stops.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_of(values: &InstallValues) -> Deployment {
        deployment(values)
    }

    #[test]
    fn defaults() {
        let values = InstallValues::default();
        let objs = objects(&values, Vec::new());
        let kinds: Vec<_> = objs
            .iter()
            .map(|o| (o.kind(), o.name().to_owned()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("Namespace", "mizzen-system"),
                ("ServiceAccount", "mizzen"),
                ("ClusterRole", "mizzen"),
                ("ClusterRoleBinding", "mizzen"),
                ("Role", "mizzen-leader-election"),
                ("RoleBinding", "mizzen-leader-election"),
                ("Service", "mizzen-metrics"),
                ("Deployment", "mizzen"),
                ("PodDisruptionBudget", "mizzen"),
            ]
            .map(|(k, n)| (k, n.to_owned()))
        );
        for o in &objs {
            let labels = o.metadata().labels.as_ref().unwrap();
            assert_eq!(labels["app.kubernetes.io/component"], "operator");
            assert!(!labels.contains_key("app.kubernetes.io/managed-by"));
        }
        let d = deployment_of(&values);
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some(&*format!("mizzen/mizzen:{VERSION}"))
        );
        assert!(
            !c.args
                .as_ref()
                .unwrap()
                .iter()
                .any(|a| a.starts_with("--platform"))
        );
        assert!(
            !c.args
                .as_ref()
                .unwrap()
                .iter()
                .any(|a| a.starts_with("--versions-file"))
        );
        assert!(pod.volumes.is_none() && pod.affinity.is_none() && pod.node_selector.is_none());
        assert_eq!(pod.security_context.unwrap().run_as_user, Some(65532));
    }

    #[test]
    fn optional_parts_follow_the_values() {
        let values = InstallValues {
            replicas: 1,
            catalog: "versions:\n  - name: v1.27.2\n".into(),
            platform: Platform::Openshift,
            priority_class_name: "system-cluster-critical".into(),
            ..Default::default()
        };
        let objs = objects(&values, Vec::new());
        assert!(!objs.iter().any(|o| o.kind() == "PodDisruptionBudget"));
        assert!(objs.iter().any(|o| o.kind() == "ConfigMap"));
        let d = deployment_of(&values);
        let template = d.spec.unwrap().template;
        let annotations = template.metadata.unwrap().annotations.unwrap();
        assert_eq!(
            annotations[CATALOG_CHECKSUM_ANNOTATION],
            catalog_checksum("versions:\n  - name: v1.27.2\n")
        );
        let pod = template.spec.unwrap();
        let args = pod.containers[0].args.clone().unwrap();
        assert!(args.contains(&"--platform=openshift".to_owned()));
        assert!(args.contains(&"--versions-file=/etc/mizzen/catalog/versions.yaml".to_owned()));
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-cluster-critical")
        );
        assert_eq!(
            pod.volumes.unwrap()[0].config_map.as_ref().unwrap().name,
            CATALOG_CONFIGMAP
        );
    }

    #[test]
    fn checksum_is_hex_sha256() {
        assert_eq!(
            catalog_checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
