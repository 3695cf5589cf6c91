//! The `spec.values` trees of `Istio`/`IstioRevision`, `IstioCNI` and `ZTunnel`.
//!
//! Every key mizzen renders is a typed field. Any other key is kept (in the Rust `other` maps,
//! and by the API server through `x-kubernetes-preserve-unknown-fields`), so no user input is
//! lost, and [`unknown_keys`] names those keys so that the controllers can report them.
//! Sections that mizzen passes through verbatim (`meshConfig`, `sidecarInjectorWebhook`, …) are
//! open objects: every key in them is acted upon.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;
use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, SELinuxOptions, SeccompProfile,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Keys a typed section does not know, kept verbatim.
pub type Other = BTreeMap<String, Value>;
/// A string map (labels, annotations, env, node selectors).
pub type StringMap = BTreeMap<String, String>;

/// Schema of a section that is passed through verbatim: any object.
fn open_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Declares a values section: camelCase keys, all optional, unknown keys kept in `other`.
macro_rules! section {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        #[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
        pub struct $name {
            $($body)*
            /// Keys mizzen does not act on; kept and reported, never dropped.
            #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
            #[schemars(skip)]
            pub other: Other,
        }
    };
}

section! {
    /// Values of an `Istio` or `IstioRevision`: the istiod and base settings.
    pub struct Values {
        /// Built-in configuration profile applied by the charts' logic, e.g. `ambient`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub profile: Option<String>,
        /// Restore the defaults of an older minor, e.g. `1.26`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub compatibility_version: Option<String>,
        /// Revision name; set by mizzen from the IstioRevision name (empty for `default`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revision: Option<String>,
        /// Revision tags rendered with this revision.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revision_tags: Option<Vec<String>>,
        /// Default revision for the cluster-wide validator; always cleared by mizzen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub default_revision: Option<String>,
        /// Settings shared by all components.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub global: Option<GlobalValues>,
        /// istiod settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pilot: Option<PilotValues>,
        /// Mesh-wide configuration (Istio MeshConfig), rendered into the mesh ConfigMap.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub mesh_config: Option<Value>,
        /// Sidecar injector settings, rendered into the injector ConfigMap and webhook.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub sidecar_injector_webhook: Option<Value>,
        /// Base chart settings (validation webhook, CRD templates).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub base: Option<Value>,
        /// Telemetry settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub telemetry: Option<Value>,
        /// Remote istiod settings (multicluster).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub istiod_remote: Option<Value>,
        /// Experimental settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub experimental: Option<Value>,
        /// Per-GatewayClass deployment defaults.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub gateway_classes: Option<Value>,
    }
}

section! {
    /// `values.global`: settings shared by every component.
    pub struct GlobalValues {
        /// Image registry, e.g. `docker.io/istio`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hub: Option<String>,
        /// Image tag; defaults to the version.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tag: Option<String>,
        /// Image variant suffix, e.g. `distroless`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub variant: Option<String>,
        /// Pull policy of every image.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image_pull_policy: Option<String>,
        /// Pull secrets of every pod.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image_pull_secrets: Option<Vec<String>>,
        /// `openshift`, `gcp`, … (empty on plain Kubernetes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub platform: Option<String>,
        /// The control-plane namespace; must equal `spec.namespace` when set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub istio_namespace: Option<String>,
        /// PriorityClass of the control-plane pods.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub priority_class_name: Option<String>,
        /// Resources for containers that set none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub default_resources: Option<ResourceRequirements>,
        /// Log settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub logging: Option<LoggingValues>,
        /// Log as JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log_as_json: Option<bool>,
        /// Mesh ID.
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "meshID")]
        pub mesh_id: Option<String>,
        /// Network name of this cluster.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub network: Option<String>,
        /// Multicluster settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub multi_cluster: Option<MultiClusterValues>,
        /// ConfigMap holding the trust bundle (1.27+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub trust_bundle_name: Option<String>,
        /// Proxy settings (sidecars, gateways, waypoints); `image` may be a full reference.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub proxy: Option<Value>,
        /// Proxy init settings; `image` may be a full reference.
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "proxy_init")]
        #[schemars(schema_with = "open_object")]
        pub proxy_init: Option<Value>,
        /// Waypoint pod settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub waypoint: Option<Value>,
        /// Render the per-revision validating webhook.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub config_validation: Option<bool>,
        /// Leave webhook configurations to an external manager.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub operator_manage_webhooks: Option<bool>,
        /// Do not render the injector ConfigMap.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub omit_sidecar_injector_config_map: Option<bool>,
        /// istiod PodDisruptionBudget.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub default_pod_disruption_budget: Option<EnabledValues>,
        /// Use native nftables (1.27+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub native_nftables: Option<bool>,
        /// istiod NetworkPolicy (1.28+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub network_policy: Option<EnabledValues>,
    }
}

section! {
    /// `logging`.
    pub struct LoggingValues {
        /// Log level, e.g. `default:info`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub level: Option<String>,
    }
}

section! {
    /// `global.multiCluster`.
    pub struct MultiClusterValues {
        /// Name of this cluster (`CLUSTER_ID`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cluster_name: Option<String>,
    }
}

section! {
    /// A section with a single `enabled` switch.
    pub struct EnabledValues {
        /// Whether the feature is on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enabled: Option<bool>,
    }
}

section! {
    /// `values.pilot`: the istiod Deployment.
    pub struct PilotValues {
        /// Image name, or a full reference when it contains `/`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image: Option<String>,
        /// Registry for istiod only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hub: Option<String>,
        /// Tag for istiod only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tag: Option<String>,
        /// Variant for istiod only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub variant: Option<String>,
        /// Extra environment of istiod, e.g. `PILOT_ENABLE_AMBIENT`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub env: Option<StringMap>,
        /// Replicas when autoscaling is off.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0))]
        pub replica_count: Option<i32>,
        /// Render a HorizontalPodAutoscaler.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub autoscale_enabled: Option<bool>,
        /// HPA minimum.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub autoscale_min: Option<i32>,
        /// HPA maximum.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub autoscale_max: Option<i32>,
        /// Rolling update surge.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rolling_max_surge: Option<IntOrString>,
        /// Rolling update unavailability.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rolling_max_unavailable: Option<IntOrString>,
        /// Container resources.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub resources: Option<ResourceRequirements>,
        /// Node selector.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub node_selector: Option<StringMap>,
        /// Tolerations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tolerations: Option<Vec<Toleration>>,
        /// Affinity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub affinity: Option<Affinity>,
        /// Pod annotations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pod_annotations: Option<StringMap>,
        /// Pod labels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pod_labels: Option<StringMap>,
        /// Deployment labels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub deployment_labels: Option<StringMap>,
        /// Deployment annotations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub deployment_annotations: Option<StringMap>,
        /// Service annotations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub service_annotations: Option<StringMap>,
        /// Namespace of the ztunnel ServiceAccount istiod trusts (`CA_TRUSTED_NODE_ACCOUNTS`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub trusted_ztunnel_namespace: Option<String>,
        /// Name of that ServiceAccount.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub trusted_ztunnel_name: Option<String>,
        /// istio-cni integration of sidecar injection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cni: Option<PilotCniValues>,
        /// Extra istiod arguments.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub extra_container_args: Option<Vec<String>>,
    }
}

section! {
    /// `values.pilot.cni`.
    pub struct PilotCniValues {
        /// istio-cni is in use.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enabled: Option<bool>,
        /// `default` or `multus`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub provider: Option<String>,
    }
}

section! {
    /// Values of an `IstioCNI`.
    pub struct CniValues {
        /// Built-in profile, e.g. `ambient`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub profile: Option<String>,
        /// The istio-cni node agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cni: Option<CniConfig>,
        /// Shared settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub global: Option<GlobalValues>,
    }
}

section! {
    /// `values.cni`: the `istio-cni-node` DaemonSet and its ConfigMap.
    pub struct CniConfig {
        /// Registry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hub: Option<String>,
        /// Tag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tag: Option<String>,
        /// Variant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub variant: Option<String>,
        /// Image name, or a full reference when it contains `/`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image: Option<String>,
        /// Pull policy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pull_policy: Option<String>,
        /// Host directory of CNI binaries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cni_bin_dir: Option<String>,
        /// Host directory of CNI configuration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cni_conf_dir: Option<String>,
        /// Name of a standalone CNI configuration file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cni_conf_file_name: Option<String>,
        /// Host directory of network namespaces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cni_netns_dir: Option<String>,
        /// Chain into the primary CNI configuration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub chained: Option<bool>,
        /// `default` or `multus`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub provider: Option<String>,
        /// Namespaces the plugin ignores.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub exclude_namespaces: Option<Vec<String>>,
        /// Ambient redirection settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ambient: Option<CniAmbientValues>,
        /// Pod repair settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub repair: Option<Value>,
        /// Container resources.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub resources: Option<ResourceRequirements>,
        /// Tolerations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tolerations: Option<Vec<Toleration>>,
        /// Node selector.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub node_selector: Option<StringMap>,
        /// Affinity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub affinity: Option<Affinity>,
        /// DaemonSet update strategy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub update_strategy: Option<DaemonSetUpdateStrategy>,
        /// Rolling update unavailability.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub rolling_max_unavailable: Option<IntOrString>,
        /// SELinux options of the agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub se_linux_options: Option<SELinuxOptions>,
        /// Seccomp profile of the agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub seccomp_profile: Option<SeccompProfile>,
        /// Pod annotations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pod_annotations: Option<StringMap>,
        /// Pod labels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pod_labels: Option<StringMap>,
        /// DaemonSet labels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub daemon_set_labels: Option<StringMap>,
        /// Termination grace period of the agent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub termination_grace_period_seconds: Option<i64>,
        /// Log settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub logging: Option<LoggingValues>,
        /// Extra environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub env: Option<StringMap>,
        /// Write an Istio-owned CNI configuration file (1.27+).
        #[serde(default, skip_serializing_if = "Option::is_none", rename = "istioOwnedCNIConfig")]
        pub istio_owned_cni_config: Option<bool>,
        /// Its file name.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            rename = "istioOwnedCNIConfigFileName"
        )]
        pub istio_owned_cni_config_file_name: Option<String>,
    }
}

section! {
    /// `values.cni.ambient`.
    pub struct CniAmbientValues {
        /// Ambient redirection on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enabled: Option<bool>,
        /// Capture DNS.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dns_capture: Option<bool>,
        /// IPv6 rules.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ipv6: Option<bool>,
        /// Reconcile pod rules on agent start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub reconcile_iptables_on_startup: Option<bool>,
        /// Run the agent in the host network namespace.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub share_host_network_namespace: Option<bool>,
        /// Retry ambient detection (1.28+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub enable_ambient_detection_retry: Option<bool>,
        /// Which pods are enrolled (1.27+).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_list")]
        pub enablement_selectors: Option<Value>,
        /// Configuration directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub config_dir: Option<String>,
    }
}

/// Schema of a list passed through verbatim.
fn open_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true },
    })
}

section! {
    /// Values of a `ZTunnel`.
    pub struct ZTunnelValues {
        /// The ztunnel DaemonSet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ztunnel: Option<ZTunnelConfig>,
        /// Shared settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub global: Option<GlobalValues>,
    }
}

section! {
    /// `values.ztunnel`: the `ztunnel` DaemonSet.
    pub struct ZTunnelConfig {
        /// Registry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub hub: Option<String>,
        /// Tag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tag: Option<String>,
        /// Variant.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub variant: Option<String>,
        /// Image name, or a full reference when it contains `/`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image: Option<String>,
        /// Pull policy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image_pull_policy: Option<String>,
        /// Pull secrets.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
        /// Name of the DaemonSet and ServiceAccount (default `ztunnel`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub resource_name: Option<String>,
        /// Control-plane revision to talk to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub revision: Option<String>,
        /// Control-plane namespace.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub istio_namespace: Option<String>,
        /// Explicit xDS address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub xds_address: Option<String>,
        /// Explicit CA address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub ca_address: Option<String>,
        /// Network name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub network: Option<String>,
        /// Multicluster settings.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub multi_cluster: Option<MultiClusterValues>,
        /// Mesh settings ztunnel reads (`defaultConfig.proxyMetadata`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_object")]
        pub mesh_config: Option<Value>,
        /// Trust bundle ConfigMap.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub trust_bundle_name: Option<String>,
        /// Extra environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub env: Option<StringMap>,
        /// Container resources.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub resources: Option<ResourceRequirements>,
        /// Tolerations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub tolerations: Option<Vec<Toleration>>,
        /// Node selector.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub node_selector: Option<StringMap>,
        /// Affinity.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub affinity: Option<Affinity>,
        /// Pod annotations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pod_annotations: Option<StringMap>,
        /// Pod labels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub pod_labels: Option<StringMap>,
        /// DaemonSet labels.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub labels: Option<StringMap>,
        /// DaemonSet annotations.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub annotations: Option<StringMap>,
        /// Extra volumes (schema left open: the full Volume schema would push the CRD past
        /// the size `kubectl apply` can store; the operator validates them when rendering).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_list")]
        pub volumes: Option<Vec<Volume>>,
        /// Extra volume mounts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(schema_with = "open_list")]
        pub volume_mounts: Option<Vec<VolumeMount>>,
        /// Termination grace period (also passed to ztunnel as env).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub termination_grace_period_seconds: Option<i64>,
        /// `RUST_LOG` level.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log_level: Option<String>,
        /// Log as JSON.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub log_as_json: Option<bool>,
        /// SELinux options.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub se_linux_options: Option<SELinuxOptions>,
        /// DaemonSet update strategy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub update_strategy: Option<DaemonSetUpdateStrategy>,
        /// Pod DNS policy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dns_policy: Option<String>,
    }
}

/// Keys of an Istio's or IstioRevision's `values` that are accepted but have no effect under
/// the other settings, each with the reason (reported with the unknown keys).
pub fn ineffective_keys(values: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let pilot = &values["pilot"];
    if !pilot["replicaCount"].is_null() && pilot["autoscaleEnabled"] != Value::Bool(false) {
        out.push(
            "pilot.replicaCount (no effect while pilot.autoscaleEnabled is true, the default: \
             the HorizontalPodAutoscaler sets istiod's replicas; set autoscaleEnabled: false)"
                .to_owned(),
        );
    }
    let set = |v: &Value| match v {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => true,
    };
    for (path, value, why) in [
        (
            "revisionTags",
            &values["revisionTags"],
            "mizzen renders tags from IstioRevisionTag resources: create one per tag",
        ),
        (
            "gatewayClasses",
            &values["gatewayClasses"],
            "the per-class ConfigMaps are not rendered yet",
        ),
        (
            "global.networkPolicy.enabled",
            &values["global"]["networkPolicy"]["enabled"],
            "mizzen renders no NetworkPolicy yet",
        ),
        (
            "experimental.stableValidationPolicy",
            &values["experimental"]["stableValidationPolicy"],
            "the ValidatingAdmissionPolicy is not rendered yet",
        ),
    ] {
        if set(value) {
            out.push(format!("{path} ({why})"));
        }
    }
    out
}

/// Why a profile's settings are not (all) applied, for the profiles mizzen knows only by
/// name (`spec.profile` or `values.profile`).
pub fn ineffective_profile(profile: Option<&str>) -> Option<String> {
    let why = match profile? {
        "stable" => "its ValidatingAdmissionPolicy is not rendered yet",
        "remote" => "a remote control plane's objects are not rendered yet (istiod is)",
        "external" => "an external control plane's objects are not rendered yet",
        _ => return None,
    };
    Some(format!("profile {} ({why})", profile?))
}

/// Paths (dotted, e.g. `pilot.replicaCuont`) of keys in `values` that the given schema does not
/// know, i.e. keys mizzen keeps but does not act on. `schema` is the OpenAPI schema of the
/// values field as published in the CRD (see [`crate::crds`]). Open sections are not entered.
pub fn unknown_keys(values: &Value, schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(values, schema, "", &mut out);
    out
}

/// The part of an OpenAPI schema that [`unknown_keys`] reads: `properties` and `items`, down
/// the tree, without descriptions, types or rules. The published `spec.values` schemas are
/// hundreds of kilobytes of YAML, megabytes as JSON values; the operator keeps this instead.
pub fn key_tree(schema: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let tree = props
            .iter()
            .map(|(k, s)| (k.clone(), key_tree(s)))
            .collect();
        out.insert("properties".into(), Value::Object(tree));
    }
    if let Some(items) = schema.get("items") {
        out.insert("items".into(), key_tree(items));
    }
    Value::Object(out)
}

fn walk(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                return; // an open section or a map: every key is acted upon
            };
            for (k, v) in map {
                match props.get(k) {
                    Some(s) => walk(v, s, &join(k), out),
                    None => out.push(join(k)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(v, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replica_count_under_autoscaling_is_reported_as_ineffective() {
        assert_eq!(
            ineffective_keys(&json!({"pilot": {"replicaCount": 2}})).len(),
            1
        );
        assert!(
            ineffective_keys(&json!({"pilot": {"replicaCount": 2, "autoscaleEnabled": true}}))[0]
                .starts_with("pilot.replicaCount")
        );
        assert!(
            ineffective_keys(&json!({"pilot": {"replicaCount": 2, "autoscaleEnabled": false}}))
                .is_empty()
        );
        assert!(ineffective_keys(&json!({"pilot": {"autoscaleEnabled": true}})).is_empty());
    }

    #[test]
    fn unknown_keys_survive_a_round_trip() {
        let input = json!({
            "profile": "ambient",
            "pilot": {"env": {"PILOT_ENABLE_AMBIENT": "true"}, "replicaCuont": 3},
            "futureSection": {"a": 1},
            "meshConfig": {"anything": {"goes": true}},
        });
        let v: Values = serde_json::from_value(input.clone()).unwrap();
        assert_eq!(v.profile.as_deref(), Some("ambient"));
        assert_eq!(v.pilot.as_ref().unwrap().other["replicaCuont"], json!(3));
        assert_eq!(serde_json::to_value(&v).unwrap(), input);
    }

    #[test]
    fn odd_key_names_map_to_upstream_spelling() {
        let v: Values = serde_json::from_value(json!({
            "global": {"meshID": "m1", "proxy_init": {"image": "x/y:z"}}
        }))
        .unwrap();
        let g = v.global.unwrap();
        assert_eq!(g.mesh_id.as_deref(), Some("m1"));
        assert_eq!(g.proxy_init.unwrap()["image"], "x/y:z");
        let c: CniValues = serde_json::from_value(json!({
            "cni": {"istioOwnedCNIConfig": true, "cniBinDir": "/var/lib/cni/bin"}
        }))
        .unwrap();
        let cni = c.cni.unwrap();
        assert_eq!(cni.istio_owned_cni_config, Some(true));
        assert!(cni.other.is_empty());
    }

    #[test]
    fn walk_reports_only_keys_outside_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "pilot": {"type": "object", "properties": {
                    "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    "tolerations": {"type": "array", "items": {"type": "object",
                        "properties": {"key": {"type": "string"}}}}
                }},
                "meshConfig": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        });
        let values = json!({
            "pilot": {"env": {"ANY": "x"}, "replicaCuont": 3,
                      "tolerations": [{"key": "a"}, {"kye": "b"}]},
            "meshConfig": {"whatever": 1},
            "typo": true
        });
        let mut got = unknown_keys(&values, &schema);
        got.sort();
        assert_eq!(
            got,
            vec!["pilot.replicaCuont", "pilot.tolerations[1].kye", "typo"]
        );
    }
}

#[cfg(test)]
mod ineffective_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepted_but_not_acted_on_is_named_with_the_reason() {
        let keys = ineffective_keys(&json!({
            "revisionTags": ["canary"],
            "gatewayClasses": {"istio": {}},
            "global": {"networkPolicy": {"enabled": true}},
            "experimental": {"stableValidationPolicy": true},
        }));
        let paths: Vec<&str> = keys.iter().map(|k| k.split(' ').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "revisionTags",
                "gatewayClasses",
                "global.networkPolicy.enabled",
                "experimental.stableValidationPolicy"
            ]
        );
        // Empty or disabled: nothing to report.
        assert!(
            ineffective_keys(&json!({
                "revisionTags": [],
                "global": {"networkPolicy": {"enabled": false}},
            }))
            .is_empty()
        );
        assert!(
            ineffective_profile(Some("remote"))
                .unwrap()
                .starts_with("profile remote (")
        );
        assert_eq!(ineffective_profile(Some("demo")), None);
        assert_eq!(ineffective_profile(None), None);
    }
}
