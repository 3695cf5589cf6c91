//! The istiod Deployment, its autoscaler and its disruption budget.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, PodSpec, PodTemplateSpec, SecurityContext, Toleration, Volume,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Revision, TopExtras, pod_selector};
use crate::RenderError;
use crate::image::{self, ImageValues};
use crate::labels::{DATAPLANE_MODE_LABEL, INJECT_LABEL, Labels, REV_LABEL, labels, with_user};
use crate::object::{Object, annotated, namespaced};
use crate::pod::{self, EnvList, extras};
use crate::values::{
    ISTIOD_AUTOSCALE_MAX, ISTIOD_AUTOSCALE_MIN, ISTIOD_CPU_UTILIZATION, ISTIOD_REPLICAS, LOG_LEVEL,
    at_least,
};

/// istiod's ports: debug and readiness, plaintext xDS, mTLS xDS and CA, webhooks, metrics.
const PORTS: [(&str, i32); 5] = [
    ("http-debug", 8080),
    ("grpc-xds", 15010),
    ("tls-xds", 15012),
    ("https-webhooks", 15017),
    ("http-monitoring", 15014),
];

impl Revision<'_> {
    pub(super) fn deployment(&self) -> Result<Object, RenderError> {
        let mut meta_labels = self.labels();
        meta_labels.insert("istio".into(), "pilot".into());
        let meta_labels = with_user(meta_labels, self.pilot.deployment_labels.as_ref());
        let meta = namespaced(&self.names.istiod(), self.names.namespace(), meta_labels);
        let annotations = self
            .pilot
            .deployment_annotations
            .clone()
            .unwrap_or_default();
        let autoscaled = self.pilot.autoscale_enabled.unwrap_or(true);
        self.stamp.object(&Deployment {
            metadata: annotated(meta, annotations),
            spec: Some(DeploymentSpec {
                replicas: (!autoscaled)
                    .then(|| self.pilot.replica_count.unwrap_or(ISTIOD_REPLICAS)),
                selector: LabelSelector {
                    match_labels: Some(pod_selector(&self.names)),
                    match_expressions: None,
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: self.pilot.rolling_max_surge.clone(),
                        max_unavailable: self.pilot.rolling_max_unavailable.clone(),
                    }),
                }),
                template: self.pod_template()?,
                ..DeploymentSpec::default()
            }),
            status: None,
        })
    }

    fn pod_template(&self) -> Result<PodTemplateSpec, RenderError> {
        let mut fixed = self.labels();
        fixed.extend(self.stamp.pod_labels());
        fixed.extend(labels([
            (INJECT_LABEL, "false"),
            (DATAPLANE_MODE_LABEL, "none"),
            (
                "istio",
                if self.names.is_default() {
                    "pilot"
                } else {
                    "istiod"
                },
            ),
        ]));
        let mut annotations = self.pilot.pod_annotations.clone().unwrap_or_default();
        annotations.extend(labels([
            ("prometheus.io/port", "15014"),
            ("prometheus.io/scrape", "true"),
            (INJECT_LABEL, "false"),
        ]));
        let mut tolerations = vec![Toleration {
            key: Some("cni.istio.io/not-ready".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        }];
        tolerations.extend(self.pilot.tolerations.iter().flatten().cloned());
        Ok(PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(with_user(fixed, self.pilot.pod_labels.as_ref())),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(self.names.istiod()),
                containers: vec![self.container()?],
                init_containers: self.extras.init_containers.clone(),
                volumes: Some(self.volumes()),
                tolerations: Some(tolerations),
                node_selector: self.pilot.node_selector.clone(),
                affinity: self.pilot.affinity.clone(),
                topology_spread_constraints: self.extras.topology_spread_constraints.clone(),
                priority_class_name: self
                    .global
                    .priority_class_name
                    .clone()
                    .filter(|p| !p.is_empty()),
                ..PodSpec::default()
            }),
        })
    }

    fn container(&self) -> Result<Container, RenderError> {
        let pilot = &self.pilot;
        let image = image::resolve(
            &self.input.images.istiod,
            ImageValues {
                image: pilot.image.as_deref(),
                hub: pilot.hub.as_deref(),
                tag: pilot.tag.as_deref(),
                variant: pilot.variant.as_deref(),
            },
            Some(&self.global),
            "pilot",
        )?;
        let mut mounts = vec![
            pod::mount("local-certs", "/var/run/secrets/istio-dns", false),
            pod::mount("istio-token", "/var/run/secrets/tokens", true),
            pod::mount("cacerts", "/etc/cacerts", true),
            pod::mount("istio-kubeconfig", "/var/run/secrets/remote", true),
            pod::mount("istio-csr-dns-cert", "/var/run/secrets/istiod/tls", true),
            pod::mount("istio-csr-ca-configmap", "/var/run/secrets/istiod/ca", true),
        ];
        mounts.extend(self.extras.volume_mounts.iter().flatten().cloned());
        Ok(Container {
            name: "discovery".into(),
            image: Some(image),
            image_pull_policy: image::pull_policy(None, Some(&self.global)),
            termination_message_policy: self
                .extras
                .termination_message_policy
                .clone()
                .filter(|p| !p.is_empty()),
            args: Some(self.args()),
            ports: Some(
                PORTS
                    .iter()
                    .map(|(name, number)| pod::port(name, *number))
                    .collect(),
            ),
            readiness_probe: Some(pod::http_probe("/ready", 8080, Some((1, 3, 5)))),
            env: Some(self.env()?),
            resources: pod::resources(pilot.resources.as_ref(), Some(&self.global), "pilot")?,
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                seccomp_profile: self.extras.seccomp_profile.clone(),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(mounts),
            ..Container::default()
        })
    }

    fn args(&self) -> Vec<String> {
        let level = self
            .global
            .logging
            .as_ref()
            .and_then(|l| l.level.as_deref())
            .unwrap_or(LOG_LEVEL);
        let domain = self.cluster_domain();
        let mut args = vec![
            "discovery".to_owned(),
            "--monitoringAddr=:15014".to_owned(),
            format!("--log_output_level={level}"),
        ];
        if self.global.log_as_json.unwrap_or(false) {
            args.push("--log_as_json".into());
        }
        args.extend(["--domain".to_owned(), domain]);
        if let Some(age) = &self.extras.keepalive_max_server_connection_age {
            args.extend(["--keepaliveMaxServerConnectionAge".to_owned(), age.clone()]);
        }
        args.extend(self.pilot.extra_container_args.iter().flatten().cloned());
        args
    }

    /// `global.proxy.clusterDomain`, `cluster.local` by default.
    pub(super) fn cluster_domain(&self) -> String {
        self.global
            .proxy
            .as_ref()
            .and_then(|p| p.get("clusterDomain"))
            .and_then(|d| d.as_str())
            .filter(|d| !d.is_empty())
            .unwrap_or("cluster.local")
            .to_owned()
    }

    fn env(&self) -> Result<Vec<EnvVar>, RenderError> {
        let pilot = &self.pilot;
        let mut env = EnvList::default();
        env.value("REVISION", self.names.label())
            .value("PILOT_CERT_PROVIDER", "istiod")
            .field("POD_NAME", "metadata.name")
            .field("POD_NAMESPACE", "metadata.namespace")
            .field("SERVICE_ACCOUNT", "spec.serviceAccountName")
            .value("KUBECONFIG", "/var/run/secrets/remote/config");
        let ztunnel_ns =
            non_empty(pilot.trusted_ztunnel_namespace.as_deref()).unwrap_or(self.names.namespace());
        let ztunnel_sa = non_empty(pilot.trusted_ztunnel_name.as_deref()).unwrap_or("ztunnel");
        env.value(
            "CA_TRUSTED_NODE_ACCOUNTS",
            format!("{ztunnel_ns}/{ztunnel_sa}"),
        );
        for var in self.extras.env_var_from.iter().flatten() {
            env.set(var.clone());
        }
        if let Some(sampling) = self.extras.trace_sampling {
            env.value("PILOT_TRACE_SAMPLING", number(sampling));
        }
        if let Some(bundle) = non_empty(self.global.trust_bundle_name.as_deref()) {
            env.value("PILOT_CA_CERT_CONFIGMAP", bundle);
        }
        let cluster = self
            .global
            .multi_cluster
            .as_ref()
            .and_then(|m| m.cluster_name.as_deref());
        env.value("PILOT_ENABLE_ANALYSIS", "false")
            .value("CLUSTER_ID", non_empty(cluster).unwrap_or("Kubernetes"));
        // Up to 1.28 istiod's GOMEMLIMIT follows its memory limit; 1.29 dropped the variable.
        if !at_least(self.version(), 29) {
            env.resource("GOMEMLIMIT", "limits.memory");
        }
        env.resource("GOMAXPROCS", "limits.cpu")
            .value("PLATFORM", self.platform_name());
        env.values(pilot.env.as_ref());
        let hosts = custom_hosts(env.get("ISTIOD_CUSTOM_HOST"), &self.input.custom_hosts);
        if !hosts.is_empty() {
            env.value("ISTIOD_CUSTOM_HOST", hosts);
        }
        Ok(env.into_vec())
    }

    /// `global.platform`, or `openshift` when rendering for OpenShift.
    fn platform_name(&self) -> String {
        let name = self
            .input
            .platform
            .name_with_value(self.global.platform.as_deref());
        name.unwrap_or_default()
    }

    fn volumes(&self) -> Vec<Volume> {
        let ca_bundle =
            non_empty(self.global.trust_bundle_name.as_deref()).unwrap_or("istio-ca-root-cert");
        let mut volumes = vec![
            pod::empty_dir("local-certs", Some("Memory")),
            pod::istio_token(),
            pod::optional_secret("cacerts", "cacerts"),
            pod::optional_secret("istio-kubeconfig", "istio-kubeconfig"),
            pod::optional_secret("istio-csr-dns-cert", "istiod-tls"),
            pod::config_map("istio-csr-ca-configmap", ca_bundle, true, Some(420)),
        ];
        volumes.extend(self.extras.volumes.iter().flatten().cloned());
        volumes
    }

    pub(super) fn autoscaler(&self) -> Result<Option<Object>, RenderError> {
        if !self.pilot.autoscale_enabled.unwrap_or(true) {
            return Ok(None);
        }
        let metric = |name: &str, utilization: i32| MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: name.into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(utilization),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        };
        let cpu = self
            .extras
            .cpu
            .as_ref()
            .and_then(|c| c.target_average_utilization);
        let memory = self
            .extras
            .memory
            .as_ref()
            .and_then(|m| m.target_average_utilization);
        let mut metrics = vec![metric("cpu", cpu.unwrap_or(ISTIOD_CPU_UTILIZATION))];
        metrics.extend(memory.map(|m| metric("memory", m)));
        let hpa = HorizontalPodAutoscaler {
            metadata: namespaced(&self.names.istiod(), self.names.namespace(), self.labels()),
            spec: HorizontalPodAutoscalerSpec {
                min_replicas: Some(self.pilot.autoscale_min.unwrap_or(ISTIOD_AUTOSCALE_MIN)),
                max_replicas: self.pilot.autoscale_max.unwrap_or(ISTIOD_AUTOSCALE_MAX),
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".into()),
                    kind: "Deployment".into(),
                    name: self.names.istiod(),
                },
                metrics: Some(metrics),
                behavior: self.extras.autoscale_behavior.clone(),
            },
            status: None,
        };
        self.stamp.object(&hpa).map(Some)
    }

    /// The PodDisruptionBudget: rendered when `global.defaultPodDisruptionBudget.enabled`
    /// (default true), and from 1.28 on only when more than one replica is wanted.
    pub(super) fn disruption_budget(&self) -> Result<Option<Object>, RenderError> {
        let enabled = self
            .global
            .default_pod_disruption_budget
            .as_ref()
            .and_then(|p| p.enabled)
            .unwrap_or(true);
        if !enabled || (at_least(self.version(), 28) && self.min_replicas() <= 1) {
            return Ok(None);
        }
        let settings = extras::<TopExtras>(&self.values.other, "values")?
            .pdb
            .unwrap_or_default();
        let (min_available, max_unavailable) = match settings.max_unavailable {
            Some(max) => (None, Some(max)),
            None => (
                Some(settings.min_available.unwrap_or(IntOrString::Int(1))),
                None,
            ),
        };
        let selector: Labels = labels([("app", "istiod"), (REV_LABEL, self.names.label())]);
        let mut meta_labels = self.labels();
        if !at_least(self.version(), 28) {
            // Up to 1.27 upstream's budget also carries (and selected by) `istio: pilot`.
            meta_labels.insert("istio".into(), "pilot".into());
        }
        let pdb = PodDisruptionBudget {
            metadata: namespaced(&self.names.istiod(), self.names.namespace(), meta_labels),
            spec: Some(PodDisruptionBudgetSpec {
                min_available,
                max_unavailable,
                unhealthy_pod_eviction_policy: settings.unhealthy_pod_eviction_policy,
                selector: Some(LabelSelector {
                    match_labels: Some(selector),
                    match_expressions: None,
                }),
            }),
            status: None,
        };
        self.stamp.object(&pdb).map(Some)
    }

    /// The replicas istiod runs with at least: the autoscaler minimum, or the fixed count.
    fn min_replicas(&self) -> i32 {
        if self.pilot.autoscale_enabled.unwrap_or(true) {
            self.pilot.autoscale_min.unwrap_or(ISTIOD_AUTOSCALE_MIN)
        } else {
            self.pilot.replica_count.unwrap_or(ISTIOD_REPLICAS)
        }
    }
}

/// `ISTIOD_CUSTOM_HOST`: the user's hosts and the given ones, comma-separated, without
/// duplicates.
fn custom_hosts(user: Option<&str>, extra: &[String]) -> String {
    let mut hosts: Vec<&str> = Vec::new();
    let all = user
        .into_iter()
        .flat_map(|u| u.split(','))
        .chain(extra.iter().map(String::as_str));
    for host in all.map(str::trim).filter(|h| !h.is_empty()) {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts.join(",")
}

/// A number as Helm prints it: `1` for 1.0, `0.5` for 0.5.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        value.to_string()
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_hosts_are_merged_without_duplicates() {
        assert_eq!(custom_hosts(None, &[]), "");
        assert_eq!(
            custom_hosts(Some("a.svc, b.svc"), &["b.svc".into(), "c.svc".into()]),
            "a.svc,b.svc,c.svc"
        );
    }

    #[test]
    fn numbers_print_like_helm() {
        assert_eq!(number(1.0), "1");
        assert_eq!(number(0.5), "0.5");
    }
}
