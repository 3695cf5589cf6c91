//! The istio-cni node agent: one DaemonSet per cluster that sets up traffic redirection
//! for ambient pods and serves ztunnel the pods' network namespaces. Not revisioned.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, EnvFromSource, LocalObjectReference,
    PodSpec, PodTemplateSpec, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mizzen_api::values::{CniAmbientValues, CniConfig, CniValues, GlobalValues};
use mizzen_catalog::{Images, Version};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::image::{self, ImageValues};
use crate::labels::{
    COMPONENT_LABEL, DATAPLANE_MODE_LABEL, INJECT_LABEL, Labels, NAME_LABEL, REV_LABEL,
    check_label_value, labels, with_user,
};
use crate::object::{Object, Stamp, namespaced, sorted};
use crate::pod::{self, EnvList, extras, section};
use crate::rbac::{Account, cluster_role, named_rule, privileged_scc, rule};
use crate::values::{CNI_GRACE_SECONDS, CNI_LOG_LEVEL, CNI_MAX_UNAVAILABLE, Component, complete};
use crate::{Owner, Platform, RenderError};

/// Fixed names: the plugin and its cleanup look for the DaemonSet by name.
const NAME: &str = "istio-cni";
const DAEMONSET: &str = "istio-cni-node";
const CONFIG: &str = "istio-cni-config";
/// Directory of the agent's sockets and the plugin's kubeconfig on the node.
const SOCKET_DIR: &str = "/var/run/istio-cni";
/// Directory of the ZDS socket istio-cni serves and ztunnel connects to.
const ZTUNNEL_SOCKET_DIR: &str = "/var/run/ztunnel";

/// Everything istio-cni is rendered from.
#[derive(Debug, Clone)]
pub struct CniInput {
    /// The owner recorded in the inventory label, normally the IstioCNI.
    pub owner: Owner,
    /// The namespace of the DaemonSet.
    pub namespace: String,
    /// The Istio version.
    pub version: Version,
    /// The IstioCNI's values (normally from [`crate::cni_values`]); completed with
    /// defaults, profile and platform settings before use.
    pub values: CniValues,
    /// The catalog images of the version.
    pub images: Images,
    /// The platform the operator runs on.
    pub platform: Platform,
}

/// Renders the istio-cni node agent: ServiceAccount, ConfigMap, DaemonSet, ClusterRoles
/// and bindings, and on multus (OpenShift) the NetworkAttachmentDefinition
/// `default/istio-cni`.
pub fn render_cni(input: &CniInput) -> Result<Vec<Object>, RenderError> {
    let cni = Cni::new(input)?;
    let mut objects = vec![cni.service_account()?, cni.config_map()?, cni.daemon_set()?];
    objects.extend(cni.rbac()?);
    if cni.config.provider.as_deref() == Some("multus") {
        objects.push(cni.network_attachment()?);
    }
    Ok(sorted(objects))
}

/// `cni` settings the API keeps in `cni.other`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct CniExtras {
    privileged: Option<bool>,
}

/// `cni.repair`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Repair {
    enabled: Option<bool>,
    label_pods: Option<bool>,
    delete_pods: Option<bool>,
    repair_pods: Option<bool>,
    init_container_name: Option<String>,
    broken_pod_label_key: Option<String>,
    broken_pod_label_value: Option<String>,
}

struct Cni<'a> {
    input: &'a CniInput,
    config: CniConfig,
    global: GlobalValues,
    ambient: CniAmbientValues,
    repair: Repair,
    extras: CniExtras,
    platform: Platform,
    stamp: Stamp,
}

impl<'a> Cni<'a> {
    fn new(input: &'a CniInput) -> Result<Self, RenderError> {
        check_label_value("namespace", &input.namespace)?;
        let values = complete(
            Component::Cni,
            &input.version,
            input.platform,
            &input.values,
        )?;
        let config = values.cni.unwrap_or_default();
        let global = values.global.unwrap_or_default();
        Ok(Self {
            ambient: config.ambient.clone().unwrap_or_default(),
            repair: section(config.repair.as_ref(), "cni.repair")?,
            extras: extras(&config.other, "cni")?,
            platform: input.platform.with_value(global.platform.as_deref()),
            stamp: Stamp::new(&input.owner, &input.version),
            input,
            config,
            global,
        })
    }

    fn labels(&self) -> Labels {
        labels([
            (REV_LABEL, "default"),
            (COMPONENT_LABEL, "Cni"),
            (NAME_LABEL, NAME),
        ])
    }

    /// Labels of the agent's ServiceAccount, ConfigMap and RBAC: also `app: istio-cni`.
    fn object_labels(&self) -> Labels {
        let mut labels = self.labels();
        labels.insert("app".into(), NAME.into());
        labels
    }

    fn ambient_enabled(&self) -> bool {
        self.ambient.enabled.unwrap_or(false)
    }

    fn service_account(&self) -> Result<Object, RenderError> {
        let pull_secrets = self.global.image_pull_secrets.as_ref().map(|names| {
            names
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        });
        self.stamp.object(&ServiceAccount {
            metadata: namespaced(NAME, &self.input.namespace, self.object_labels()),
            image_pull_secrets: pull_secrets,
            ..ServiceAccount::default()
        })
    }

    fn config_map(&self) -> Result<Object, RenderError> {
        self.stamp.object(&ConfigMap {
            metadata: namespaced(CONFIG, &self.input.namespace, self.object_labels()),
            data: Some(self.config_data()?),
            ..ConfigMap::default()
        })
    }

    /// The agent's configuration, read as environment (`envFrom`).
    fn config_data(&self) -> Result<BTreeMap<String, String>, RenderError> {
        let flag = |v: Option<bool>, default: bool| v.unwrap_or(default).to_string();
        let (config, ambient, repair) = (&self.config, &self.ambient, &self.repair);
        let agent_version = [config.tag.as_deref(), self.global.tag.as_deref()]
            .into_iter()
            .flatten()
            .find(|t| !t.is_empty())
            .map_or_else(|| self.input.version.tag(), str::to_owned);
        let mut data = BTreeMap::from([
            ("CURRENT_AGENT_VERSION", agent_version),
            ("AMBIENT_ENABLED", flag(ambient.enabled, false)),
            ("AMBIENT_DNS_CAPTURE", flag(ambient.dns_capture, true)),
            ("AMBIENT_IPV6", flag(ambient.ipv6, true)),
            (
                "AMBIENT_RECONCILE_POD_RULES_ON_STARTUP",
                flag(ambient.reconcile_iptables_on_startup, false),
            ),
            ("CHAINED_CNI_PLUGIN", flag(config.chained, true)),
            (
                "EXCLUDE_NAMESPACES",
                config
                    .exclude_namespaces
                    .clone()
                    .unwrap_or_default()
                    .join(","),
            ),
            ("REPAIR_ENABLED", flag(repair.enabled, true)),
            ("REPAIR_LABEL_PODS", flag(repair.label_pods, false)),
            ("REPAIR_DELETE_PODS", flag(repair.delete_pods, false)),
            ("REPAIR_REPAIR_PODS", flag(repair.repair_pods, true)),
            (
                "REPAIR_INIT_CONTAINER_NAME",
                repair
                    .init_container_name
                    .clone()
                    .unwrap_or_else(|| "istio-validation".into()),
            ),
            (
                "REPAIR_BROKEN_POD_LABEL_KEY",
                repair
                    .broken_pod_label_key
                    .clone()
                    .unwrap_or_else(|| "cni.istio.io/uninitialized".into()),
            ),
            (
                "REPAIR_BROKEN_POD_LABEL_VALUE",
                repair
                    .broken_pod_label_value
                    .clone()
                    .unwrap_or_else(|| "true".into()),
            ),
        ])
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect::<BTreeMap<_, _>>();
        let mut optional = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                data.insert(key.to_owned(), value);
            }
        };
        optional(
            "CNI_CONF_NAME",
            config.cni_conf_file_name.clone().filter(|n| !n.is_empty()),
        );
        optional(
            "ENABLE_AMBIENT_DETECTION_RETRY",
            ambient
                .enable_ambient_detection_retry
                .map(|b| b.to_string()),
        );
        optional(
            "ISTIO_OWNED_CNI_CONFIG",
            config.istio_owned_cni_config.map(|b| b.to_string()),
        );
        if config.istio_owned_cni_config == Some(true) {
            let file = config
                .istio_owned_cni_config_file_name
                .clone()
                .filter(|n| !n.is_empty());
            optional(
                "ISTIO_OWNED_CNI_CONF_FILENAME",
                Some(file.unwrap_or_else(|| "02-istio-cni.conflist".into())),
            );
        }
        optional(
            "NATIVE_NFTABLES",
            self.global.native_nftables.map(|b| b.to_string()),
        );
        optional("AMBIENT_ENABLEMENT_SELECTOR", self.enablement_selector()?);
        for (key, value) in config.env.iter().flatten() {
            data.insert(key.clone(), value.clone());
        }
        Ok(data)
    }

    /// `AMBIENT_ENABLEMENT_SELECTOR`: the selectors as YAML.
    fn enablement_selector(&self) -> Result<Option<String>, RenderError> {
        match &self.ambient.enablement_selectors {
            None | Some(Value::Null) => Ok(None),
            Some(list @ Value::Array(_)) => {
                serde_saphyr::to_string(&crate::json::canonical(list.clone()))
                    .map(Some)
                    .map_err(|e| RenderError::serialize("cni.ambient.enablementSelectors", e))
            }
            Some(_) => Err(RenderError::value(
                "cni.ambient.enablementSelectors",
                "expected a list",
            )),
        }
    }

    fn daemon_set(&self) -> Result<Object, RenderError> {
        let selector = labels([("k8s-app", DAEMONSET)]);
        let mut meta_labels = self.labels();
        meta_labels.extend(selector.clone());
        let meta_labels = with_user(meta_labels, self.config.daemon_set_labels.as_ref());
        let strategy =
            self.config
                .update_strategy
                .clone()
                .unwrap_or_else(|| DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_unavailable: Some(
                            self.config
                                .rolling_max_unavailable
                                .clone()
                                .unwrap_or(IntOrString::Int(CNI_MAX_UNAVAILABLE)),
                        ),
                        max_surge: None,
                    }),
                });
        self.stamp.object(&DaemonSet {
            metadata: namespaced(DAEMONSET, &self.input.namespace, meta_labels),
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(selector),
                    match_expressions: None,
                },
                update_strategy: Some(strategy),
                template: self.pod_template()?,
                ..DaemonSetSpec::default()
            }),
            status: None,
        })
    }

    fn pod_template(&self) -> Result<PodTemplateSpec, RenderError> {
        let mut pod_labels = labels([
            ("k8s-app", DAEMONSET),
            (INJECT_LABEL, "false"),
            (DATAPLANE_MODE_LABEL, "none"),
            (NAME_LABEL, NAME),
        ]);
        pod_labels.extend(self.stamp.pod_labels());
        let annotations = labels([
            (INJECT_LABEL, "false"),
            ("prometheus.io/scrape", "true"),
            ("prometheus.io/port", "15014"),
            ("prometheus.io/path", "/metrics"),
            (
                "container.apparmor.security.beta.kubernetes.io/install-cni",
                "unconfined",
            ),
        ]);
        let host_network = self.ambient.share_host_network_namespace.unwrap_or(false);
        Ok(PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(with_user(pod_labels, self.config.pod_labels.as_ref())),
                annotations: Some(with_user(annotations, self.config.pod_annotations.as_ref())),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(NAME.into()),
                host_network: host_network.then_some(true),
                dns_policy: host_network.then(|| "ClusterFirstWithHostNet".into()),
                node_selector: Some(pod::linux_node_selector(self.config.node_selector.as_ref())),
                affinity: self.config.affinity.clone(),
                tolerations: self.config.tolerations.clone(),
                priority_class_name: Some("system-node-critical".into()),
                termination_grace_period_seconds: Some(
                    self.config
                        .termination_grace_period_seconds
                        .unwrap_or(CNI_GRACE_SECONDS),
                ),
                containers: vec![self.container(host_network)?],
                volumes: Some(self.volumes()),
                ..PodSpec::default()
            }),
        })
    }

    fn container(&self, host_network: bool) -> Result<Container, RenderError> {
        let config = &self.config;
        let image = image::resolve(
            &self.input.images.cni,
            ImageValues {
                image: config.image.as_deref(),
                hub: config.hub.as_deref(),
                tag: config.tag.as_deref(),
                variant: config.variant.as_deref(),
            },
            Some(&self.global),
            "cni",
        )?;
        let level = [config.logging.as_ref(), self.global.logging.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|l| l.level.clone().filter(|l| !l.is_empty()))
            .unwrap_or_else(|| CNI_LOG_LEVEL.to_owned());
        let mut args = vec![format!("--log_output_level={level}")];
        if self.global.log_as_json.unwrap_or(false) {
            args.push("--log_as_json".into());
        }
        let mut env = EnvList::default();
        env.field("REPAIR_NODE_NAME", "spec.nodeName")
            .value("REPAIR_RUN_AS_DAEMON", "true")
            .value("REPAIR_SIDECAR_ANNOTATION", "sidecar.istio.io/status");
        if !host_network {
            env.value("ALLOW_SWITCH_TO_HOST_NS", "true");
        }
        env.field("NODE_NAME", "spec.nodeName")
            .resource("GOMEMLIMIT", "limits.memory")
            .resource("GOMAXPROCS", "limits.cpu")
            .field("POD_NAME", "metadata.name")
            .field("POD_NAMESPACE", "metadata.namespace")
            .values(config.env.as_ref());
        Ok(Container {
            name: "install-cni".into(),
            image: Some(image),
            image_pull_policy: image::pull_policy(
                config.pull_policy.as_deref(),
                Some(&self.global),
            ),
            command: Some(vec!["install-cni".into()]),
            args: Some(args),
            ports: Some(vec![pod::port("metrics", 15014)]),
            readiness_probe: Some(pod::http_probe("/readyz", 8000, None)),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: CONFIG.into(),
                    optional: None,
                }),
                ..EnvFromSource::default()
            }]),
            env: Some(env.into_vec()),
            resources: pod::resources(config.resources.as_ref(), Some(&self.global), "cni")?,
            security_context: Some(SecurityContext {
                privileged: Some(self.extras.privileged.unwrap_or(false)),
                run_as_user: Some(0),
                run_as_group: Some(0),
                run_as_non_root: Some(false),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: Some(
                        [
                            "NET_ADMIN",
                            "NET_RAW",
                            "SYS_PTRACE",
                            "SYS_ADMIN",
                            "DAC_OVERRIDE",
                        ]
                        .map(String::from)
                        .to_vec(),
                    ),
                }),
                se_linux_options: config.se_linux_options.clone(),
                seccomp_profile: config.seccomp_profile.clone(),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(self.volume_mounts()),
            ..Container::default()
        })
    }

    fn dir(&self, value: &Option<String>, default: &str) -> String {
        value
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| default.to_owned())
    }

    fn volumes(&self) -> Vec<Volume> {
        let config = &self.config;
        vec![
            pod::host_path(
                "cni-bin-dir",
                &self.dir(&config.cni_bin_dir, "/opt/cni/bin"),
                None,
            ),
            pod::host_path(
                "cni-net-dir",
                &self.dir(&config.cni_conf_dir, "/etc/cni/net.d"),
                None,
            ),
            pod::host_path("cni-socket-dir", SOCKET_DIR, None),
            pod::host_path("cni-host-procfs", "/proc", Some("Directory")),
            pod::host_path(
                "cni-ztunnel-sock-dir",
                ZTUNNEL_SOCKET_DIR,
                Some("DirectoryOrCreate"),
            ),
            pod::host_path(
                "cni-netns-dir",
                &self.dir(&config.cni_netns_dir, "/var/run/netns"),
                Some("DirectoryOrCreate"),
            ),
        ]
    }

    fn volume_mounts(&self) -> Vec<VolumeMount> {
        let mut mounts = vec![
            pod::mount("cni-bin-dir", "/host/opt/cni/bin", false),
            pod::mount("cni-net-dir", "/host/etc/cni/net.d", false),
            pod::mount("cni-socket-dir", SOCKET_DIR, false),
        ];
        if self.repair.repair_pods.unwrap_or(true) || self.ambient_enabled() {
            mounts.push(pod::mount("cni-host-procfs", "/host/proc", true));
        }
        if self.ambient_enabled() {
            mounts.push(VolumeMount {
                mount_propagation: Some("HostToContainer".into()),
                ..pod::mount("cni-netns-dir", "/host/var/run/netns", false)
            });
            mounts.push(pod::mount(
                "cni-ztunnel-sock-dir",
                ZTUNNEL_SOCKET_DIR,
                false,
            ));
        }
        mounts
    }

    fn rbac(&self) -> Result<Vec<Object>, RenderError> {
        let account = Account {
            name: NAME,
            namespace: &self.input.namespace,
        };
        let labels = self.object_labels();
        // Upstream labels the repair and ambient bindings as the repair controller's.
        let mut repair_labels = self.labels();
        repair_labels.insert("k8s-app".into(), "istio-cni-repair".into());
        let mut base = vec![rule(
            &[""],
            &["pods", "nodes", "namespaces"],
            &["get", "list", "watch"],
        )];
        if self.platform == Platform::OpenShift {
            base.push(privileged_scc());
        }
        let mut roles = vec![(NAME, NAME, base, &labels)];
        if self.repair.enabled.unwrap_or(true) {
            let mut rules = vec![
                rule(&[""], &["events"], &["create", "patch"]),
                rule(&[""], &["pods"], &["watch", "get", "list"]),
            ];
            if self.repair.delete_pods.unwrap_or(false) {
                rules.push(rule(&[""], &["pods"], &["delete"]));
            }
            if self.repair.label_pods.unwrap_or(false) {
                rules.push(rule(&[""], &["pods/status"], &["patch", "update"]));
            }
            roles.push((
                "istio-cni-repair-role",
                "istio-cni-repair-rolebinding",
                rules,
                &repair_labels,
            ));
        }
        if self.ambient_enabled() {
            let rules = vec![
                rule(&[""], &["pods/status"], &["patch", "update"]),
                named_rule(&["apps"], &["daemonsets"], &[DAEMONSET], &["get"]),
            ];
            roles.push((
                "istio-cni-ambient",
                "istio-cni-ambient",
                rules,
                &repair_labels,
            ));
        }
        let mut objects = Vec::new();
        for (role, binding, rules, binding_labels) in roles {
            objects.extend(cluster_role(
                &self.stamp,
                (role, &labels),
                (binding, binding_labels),
                rules,
                &account,
            )?);
        }
        Ok(objects)
    }

    /// The multus NetworkAttachmentDefinition `default/istio-cni` (empty spec).
    fn network_attachment(&self) -> Result<Object, RenderError> {
        self.stamp.custom(
            "k8s.cni.cncf.io/v1",
            "NetworkAttachmentDefinition",
            namespaced(NAME, "default", {
                // Upstream's attachment carries no revision.
                let mut labels = self.labels();
                labels.remove(REV_LABEL);
                labels
            }),
            Map::new(),
        )
    }
}
