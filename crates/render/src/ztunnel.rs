//! ztunnel: the per-node L4 proxy of ambient mode. One DaemonSet per cluster; which istiod
//! it talks to is decided by the caller (the addresses in [`ZTunnelInput`]).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, LocalObjectReference, PodDNSConfig, PodSpec, PodTemplateSpec,
    SecurityContext, ServiceAccount, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mizzen_api::values::{GlobalValues, Values, ZTunnelConfig, ZTunnelValues};
use mizzen_catalog::{Images, Version};
use serde::Deserialize;
use serde_json::Value;

use crate::image::{self, ImageValues};
use crate::json::get;
use crate::labels::{
    DATAPLANE_MODE_LABEL, INJECT_LABEL, Labels, NAME_LABEL, REV_LABEL, check_label_value, labels,
    with_user,
};
use crate::object::{Object, Stamp, annotated, namespaced, sorted};
use crate::pod::{self, EnvList, extras};
use crate::rbac::{Account, cluster_role, privileged_scc};
use crate::values::{
    Component, ZTUNNEL_GRACE_SECONDS, ZTUNNEL_LOG_LEVEL, ZTUNNEL_NAME, at_least, complete,
};
use crate::{Owner, Platform, RenderError, helm_revision, istiod_address};

/// The mesh settings ztunnel takes from the control plane it follows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshSettings {
    /// The mesh trust domain (env `TRUST_DOMAIN`, ztunnel's own identity); `None` keeps
    /// ztunnel's default, `cluster.local`.
    pub trust_domain: Option<String>,
    /// `meshConfig.defaultConfig.proxyMetadata`: each entry becomes an environment
    /// variable of ztunnel.
    pub proxy_metadata: BTreeMap<String, String>,
}

impl MeshSettings {
    /// The settings in a revision's values (`meshConfig.trustDomain`,
    /// `meshConfig.defaultConfig.proxyMetadata`).
    pub fn from_values(values: &Values) -> Result<Self, RenderError> {
        let mesh = values.mesh_config.as_ref();
        let trust_domain = mesh
            .and_then(|m| m.get("trustDomain"))
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        Ok(Self {
            trust_domain,
            proxy_metadata: proxy_metadata(mesh, "meshConfig.defaultConfig.proxyMetadata")?,
        })
    }
}

/// Everything ztunnel is rendered from.
#[derive(Debug, Clone)]
pub struct ZTunnelInput {
    /// The owner recorded in the inventory label, normally the ZTunnel.
    pub owner: Owner,
    /// The namespace of the DaemonSet.
    pub namespace: String,
    /// The Istio version.
    pub version: Version,
    /// The ZTunnel's values (normally from [`crate::ztunnel_values`]); completed with
    /// defaults and platform settings before use.
    pub values: ZTunnelValues,
    /// The catalog images of the version.
    pub images: Images,
    /// The platform the operator runs on.
    pub platform: Platform,
    /// `XDS_ADDRESS`. `values.ztunnel.xdsAddress` wins when set; when both are empty,
    /// `istiod{R}.<istio namespace>.svc:15012` of `revision`.
    pub xds_address: String,
    /// `CA_ADDRESS`, chosen like `xds_address`.
    pub ca_address: String,
    /// The IstioRevision ztunnel is bound to: a non-default revision is recorded in the
    /// `istio.io/rev` annotation. `values.ztunnel.revision` is used when `None`.
    pub revision: Option<String>,
    /// The control-plane namespace (for the default addresses).
    pub istio_namespace: String,
    /// Trust domain and proxy metadata of the mesh.
    pub mesh: MeshSettings,
}

/// Renders ztunnel: ServiceAccount and DaemonSet, and on OpenShift the ClusterRole and
/// binding that allow the privileged SCC.
pub fn render_ztunnel(input: &ZTunnelInput) -> Result<Vec<Object>, RenderError> {
    let ztunnel = ZTunnel::new(input)?;
    let mut objects = vec![ztunnel.service_account()?, ztunnel.daemon_set()?];
    if ztunnel.platform == Platform::OpenShift {
        let account = Account {
            name: &ztunnel.name,
            namespace: &input.namespace,
        };
        let labels = ztunnel.labels();
        let rules = vec![privileged_scc()];
        objects.extend(cluster_role(
            &ztunnel.stamp,
            (&ztunnel.name, &labels),
            (&ztunnel.name, &labels),
            rules,
            &account,
        )?);
    }
    Ok(sorted(objects))
}

/// `ztunnel` settings the API keeps in `ztunnel.other`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ZTunnelExtras {
    dns_config: Option<PodDNSConfig>,
}

struct ZTunnel<'a> {
    input: &'a ZTunnelInput,
    config: ZTunnelConfig,
    global: GlobalValues,
    extras: ZTunnelExtras,
    name: String,
    /// The Helm-level revision (empty for `default`).
    revision: String,
    platform: Platform,
    stamp: Stamp,
}

impl<'a> ZTunnel<'a> {
    fn new(input: &'a ZTunnelInput) -> Result<Self, RenderError> {
        check_label_value("namespace", &input.namespace)?;
        let values = complete(
            Component::ZTunnel,
            &input.version,
            input.platform,
            &input.values,
        )?;
        let config = values.ztunnel.unwrap_or_default();
        let global = values.global.unwrap_or_default();
        let name = config
            .resource_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| ZTUNNEL_NAME.to_owned());
        check_label_value("ztunnel.resourceName", &name)?;
        let revision = input
            .revision
            .clone()
            .or_else(|| config.revision.clone())
            .unwrap_or_default();
        Ok(Self {
            extras: extras(&config.other, "ztunnel")?,
            revision: helm_revision(&revision).to_owned(),
            platform: input.platform.with_value(global.platform.as_deref()),
            stamp: Stamp::new(&input.owner, &input.version),
            input,
            config,
            global,
            name,
        })
    }

    fn labels(&self) -> Labels {
        labels([(NAME_LABEL, "ztunnel")])
    }

    /// `istio.io/rev` when bound to a named revision.
    fn revision_annotation(&self) -> Labels {
        if self.revision.is_empty() {
            Labels::new()
        } else {
            labels([(REV_LABEL, &self.revision)])
        }
    }

    fn service_account(&self) -> Result<Object, RenderError> {
        let mut pull_secrets: Vec<LocalObjectReference> = self
            .global
            .image_pull_secrets
            .iter()
            .flatten()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect();
        pull_secrets.extend(self.config.image_pull_secrets.iter().flatten().cloned());
        let meta = namespaced(&self.name, &self.input.namespace, self.labels());
        self.stamp.object(&ServiceAccount {
            metadata: annotated(meta, self.revision_annotation()),
            image_pull_secrets: Some(pull_secrets),
            ..ServiceAccount::default()
        })
    }

    fn daemon_set(&self) -> Result<Object, RenderError> {
        let config = &self.config;
        let meta_labels = with_user(self.labels(), config.labels.as_ref());
        let mut annotations = config.annotations.clone().unwrap_or_default();
        annotations.extend(self.revision_annotation());
        let meta = namespaced(&self.name, &self.input.namespace, meta_labels);
        let strategy = config
            .update_strategy
            .clone()
            .unwrap_or_else(|| DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            });
        self.stamp.object(&DaemonSet {
            metadata: annotated(meta, annotations),
            spec: Some(DaemonSetSpec {
                selector: LabelSelector {
                    match_labels: Some(labels([("app", "ztunnel")])),
                    match_expressions: None,
                },
                update_strategy: Some(strategy),
                template: self.pod_template()?,
                ..DaemonSetSpec::default()
            }),
            status: None,
        })
    }

    fn grace_seconds(&self) -> i64 {
        self.config
            .termination_grace_period_seconds
            .unwrap_or(ZTUNNEL_GRACE_SECONDS)
    }

    fn pod_template(&self) -> Result<PodTemplateSpec, RenderError> {
        let config = &self.config;
        let mut pod_labels = labels([
            (INJECT_LABEL, "false"),
            (DATAPLANE_MODE_LABEL, "none"),
            ("app", "ztunnel"),
            (NAME_LABEL, "ztunnel"),
        ]);
        pod_labels.extend(self.stamp.pod_labels());
        let mut fixed_annotations = labels([(INJECT_LABEL, "false")]);
        fixed_annotations.extend(self.revision_annotation());
        Ok(PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(with_user(pod_labels, config.pod_labels.as_ref())),
                annotations: Some(with_user(
                    fixed_annotations,
                    config.pod_annotations.as_ref(),
                )),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                service_account_name: Some(self.name.clone()),
                node_selector: Some(pod::linux_node_selector(config.node_selector.as_ref())),
                affinity: config.affinity.clone(),
                tolerations: config.tolerations.clone(),
                priority_class_name: Some("system-node-critical".into()),
                termination_grace_period_seconds: Some(self.grace_seconds()),
                dns_policy: config.dns_policy.clone(),
                dns_config: self.extras.dns_config.clone(),
                containers: vec![self.container()?],
                volumes: Some(self.volumes()),
                ..PodSpec::default()
            }),
        })
    }

    fn container(&self) -> Result<Container, RenderError> {
        let config = &self.config;
        let image = image::resolve(
            &self.input.images.ztunnel,
            ImageValues {
                image: config.image.as_deref(),
                hub: config.hub.as_deref(),
                tag: config.tag.as_deref(),
                variant: config.variant.as_deref(),
            },
            Some(&self.global),
            "ztunnel",
        )?;
        let mut mounts = vec![
            pod::mount("istiod-ca-cert", "/var/run/secrets/istio", false),
            pod::mount("istio-token", "/var/run/secrets/tokens", false),
            pod::mount("cni-ztunnel-sock-dir", "/var/run/ztunnel", false),
            pod::mount("tmp", "/tmp", false),
        ];
        mounts.extend(config.volume_mounts.iter().flatten().cloned());
        Ok(Container {
            name: "istio-proxy".into(),
            image: Some(image),
            image_pull_policy: image::pull_policy(
                config.image_pull_policy.as_deref(),
                Some(&self.global),
            ),
            args: Some(vec!["proxy".into(), "ztunnel".into()]),
            ports: Some(vec![pod::port("ztunnel-stats", 15020)]),
            readiness_probe: Some(pod::http_probe("/healthz/ready", 15021, None)),
            env: Some(self.env()?),
            resources: pod::resources(config.resources.as_ref(), Some(&self.global), "ztunnel")?,
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(true),
                privileged: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_user: Some(0),
                run_as_group: Some(1337),
                run_as_non_root: Some(false),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: Some(
                        ["NET_ADMIN", "SYS_ADMIN", "NET_RAW"]
                            .map(String::from)
                            .to_vec(),
                    ),
                }),
                se_linux_options: config.se_linux_options.clone(),
                ..SecurityContext::default()
            }),
            volume_mounts: Some(mounts),
            ..Container::default()
        })
    }

    /// `XDS_ADDRESS` or `CA_ADDRESS`: the value, else the caller's, else the revision's
    /// istiod Service.
    fn address(&self, value: Option<&String>, given: &str) -> String {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            return value.clone();
        }
        if !given.is_empty() {
            return given.to_owned();
        }
        let namespace = [
            Some(&self.input.istio_namespace),
            self.config.istio_namespace.as_ref(),
            self.global.istio_namespace.as_ref(),
        ]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .map_or("istio-system", String::as_str);
        let revision = if self.revision.is_empty() {
            "default"
        } else {
            &self.revision
        };
        istiod_address(revision, namespace)
    }

    fn env(&self) -> Result<Vec<EnvVar>, RenderError> {
        let config = &self.config;
        let mut env = EnvList::default();
        env.value(
            "CA_ADDRESS",
            self.address(config.ca_address.as_ref(), &self.input.ca_address),
        )
        .value(
            "XDS_ADDRESS",
            self.address(config.xds_address.as_ref(), &self.input.xds_address),
        );
        if config
            .log_as_json
            .or(self.global.log_as_json)
            .unwrap_or(false)
        {
            env.value("LOG_FORMAT", "json");
        }
        let network = [config.network.as_deref(), self.global.network.as_deref()]
            .into_iter()
            .flatten()
            .find(|n| !n.is_empty());
        if let Some(network) = network {
            env.value("NETWORK", network);
        }
        let cluster = [
            config.multi_cluster.as_ref(),
            self.global.multi_cluster.as_ref(),
        ]
        .into_iter()
        .flatten()
        .find_map(|m| m.cluster_name.clone().filter(|c| !c.is_empty()));
        let level = config.log_level.clone().filter(|l| !l.is_empty());
        env.value(
            "RUST_LOG",
            level.unwrap_or_else(|| ZTUNNEL_LOG_LEVEL.to_owned()),
        )
        .value("RUST_BACKTRACE", "1")
        .value(
            "ISTIO_META_CLUSTER_ID",
            cluster.unwrap_or_else(|| "Kubernetes".to_owned()),
        )
        .value("INPOD_ENABLED", "true")
        .value(
            "TERMINATION_GRACE_PERIOD_SECONDS",
            self.grace_seconds().to_string(),
        )
        .field("POD_NAME", "metadata.name")
        .field("POD_NAMESPACE", "metadata.namespace")
        .field("NODE_NAME", "spec.nodeName")
        .field("INSTANCE_IP", "status.podIP")
        .field("SERVICE_ACCOUNT", "spec.serviceAccountName");
        let mut metadata = self.input.mesh.proxy_metadata.clone();
        metadata.extend(proxy_metadata(
            config.mesh_config.as_ref(),
            "ztunnel.meshConfig.defaultConfig.proxyMetadata",
        )?);
        env.values(Some(&metadata));
        if at_least(&self.input.version, 27) {
            env.resource("ZTUNNEL_CPU_LIMIT", "limits.cpu");
        }
        // From 1.31 ztunnel also reads the CPU limit and request it was given, when its own
        // resources name them.
        if at_least(&self.input.version, 31)
            && let Some(r) = self.config.resources.as_ref()
        {
            let cpu = |m: &Option<std::collections::BTreeMap<String, _>>| {
                m.as_ref().is_some_and(|m| m.contains_key("cpu"))
            };
            if cpu(&r.limits) {
                env.resource("ZTUNNEL_RESOURCE_CPU_LIMIT", "limits.cpu");
            }
            if cpu(&r.requests) {
                env.resource("ZTUNNEL_RESOURCE_CPU_REQUEST", "requests.cpu");
            }
        }
        if let Some(domain) = self
            .input
            .mesh
            .trust_domain
            .as_deref()
            .filter(|d| !d.is_empty())
        {
            env.value("TRUST_DOMAIN", domain);
        }
        env.values(config.env.as_ref());
        Ok(env.into_vec())
    }

    fn volumes(&self) -> Vec<Volume> {
        let bundle = [
            self.config.trust_bundle_name.as_deref(),
            self.global.trust_bundle_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find(|n| !n.is_empty())
        .unwrap_or("istio-ca-root-cert");
        let mut volumes = vec![
            pod::config_map("istiod-ca-cert", bundle, false, None),
            pod::istio_token(),
            pod::host_path(
                "cni-ztunnel-sock-dir",
                "/var/run/ztunnel",
                Some("DirectoryOrCreate"),
            ),
            pod::empty_dir("tmp", None),
        ];
        volumes.extend(self.config.volumes.iter().flatten().cloned());
        volumes
    }
}

/// `defaultConfig.proxyMetadata` of a mesh configuration, values as strings.
fn proxy_metadata(
    mesh: Option<&Value>,
    path: &str,
) -> Result<BTreeMap<String, String>, RenderError> {
    let Some(metadata) = mesh.and_then(|m| get(m, &["defaultConfig", "proxyMetadata"])) else {
        return Ok(BTreeMap::new());
    };
    let Value::Object(map) = metadata else {
        return Err(RenderError::value(path, "expected a map of strings"));
    };
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(key, value)| match value {
            Value::String(s) => Ok((key.clone(), s.clone())),
            Value::Bool(_) | Value::Number(_) => Ok((key.clone(), value.to_string())),
            _ => Err(RenderError::value(
                format!("{path}.{key}"),
                "expected a string",
            )),
        })
        .collect()
}
