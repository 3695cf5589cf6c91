//! The layers the values pipeline merges: built-in defaults per component and Istio minor,
//! profiles, and platform settings. Version differences of defaults live here (a key
//! present only from a minor on), so that renderers act on what the values say.
//!
//! Written from the facts of Istio's charts and Sail's profiles (see
//! `reference/istio-components.md`); no chart text is used.

use mizzen_catalog::Version;
use serde_json::{Value, json};

use super::Component;
use crate::RenderError;
use crate::pod::node_agent_tolerations;

/// Default log level of istiod and the istio-cni agent (`--log_output_level`).
pub(crate) const LOG_LEVEL: &str = "default:info";
/// istiod autoscaling defaults.
pub(crate) const ISTIOD_AUTOSCALE_MIN: i32 = 1;
pub(crate) const ISTIOD_AUTOSCALE_MAX: i32 = 5;
pub(crate) const ISTIOD_REPLICAS: i32 = 1;
pub(crate) const ISTIOD_CPU_UTILIZATION: i32 = 80;
/// Default log level of the istio-cni agent (its chart's `global.logging.level`).
pub(crate) const CNI_LOG_LEVEL: &str = "info";
/// istio-cni agent grace period (5 s up to 1.28, 30 s from 1.29) and rollout step.
pub(crate) const CNI_GRACE_SECONDS: i64 = 5;
pub(crate) const CNI_GRACE_SECONDS_1_29: i64 = 30;
pub(crate) const CNI_MAX_UNAVAILABLE: i32 = 1;
/// ztunnel grace period and log level.
pub(crate) const ZTUNNEL_GRACE_SECONDS: i64 = 30;
pub(crate) const ZTUNNEL_LOG_LEVEL: &str = "info";
/// The name of the ztunnel DaemonSet and ServiceAccount.
pub(crate) const ZTUNNEL_NAME: &str = "ztunnel";

/// Profiles mizzen knows (the `spec.profile` enum of the API).
const PROFILES: [&str; 10] = [
    "ambient",
    "default",
    "demo",
    "empty",
    "external",
    "openshift",
    "openshift-ambient",
    "preview",
    "remote",
    "stable",
];

/// Whether `version` is at least `1.<minor>`.
pub(crate) fn at_least(version: &Version, minor: u32) -> bool {
    (version.major, version.minor) >= (1, minor)
}

/// The built-in defaults of a component at an Istio minor.
pub(crate) fn defaults(component: Component, version: &Version) -> Value {
    match component {
        Component::Istiod => istiod_defaults(version),
        Component::Cni => cni_defaults(version),
        Component::ZTunnel => ztunnel_defaults(),
    }
}

fn istiod_defaults(version: &Version) -> Value {
    let mut values = json!({
        "global": {
            "istioNamespace": "istio-system",
            "configValidation": true,
            "defaultPodDisruptionBudget": {"enabled": true},
            "logging": {"level": LOG_LEVEL},
            "proxy": proxy_defaults(),
            "proxy_init": {"image": "proxyv2", "forceApplyIptables": false},
            "waypoint": {"resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "2", "memory": "1Gi"},
            }},
            "defaultResources": {"requests": {"cpu": "10m"}},
            "pilotCertProvider": "istiod",
            "sds": {"token": {"aud": "istio-ca"}},
            "sts": {"servicePort": 0},
            "caAddress": "",
            "caName": "",
            "configCluster": false,
            "externalIstiod": false,
            "imagePullPolicy": "",
            "istiod": {"enableAnalysis": false},
            "logAsJson": false,
            "meshID": "",
            "mountMtlsCerts": false,
            "multiCluster": {"clusterName": ""},
            "network": "",
            "omitSidecarInjectorConfigMap": false,
            "operatorManageWebhooks": false,
            "priorityClassName": "",
            "remotePilotAddress": "",
            "variant": "",
        },
        "pilot": {
            "autoscaleEnabled": true,
            "autoscaleMin": ISTIOD_AUTOSCALE_MIN,
            "autoscaleMax": ISTIOD_AUTOSCALE_MAX,
            "replicaCount": ISTIOD_REPLICAS,
            "rollingMaxSurge": "100%",
            "rollingMaxUnavailable": "25%",
            "cpu": {"targetAverageUtilization": ISTIOD_CPU_UTILIZATION},
            "resources": {"requests": {"cpu": "500m", "memory": "2048Mi"}},
            "keepaliveMaxServerConnectionAge": "30m",
            "traceSampling": 1.0,
            "cni": {"enabled": false, "provider": "default"},
        },
        "pdb": {"minAvailable": 1},
        "meshConfig": {"enablePrometheusMerge": true},
        "sidecarInjectorWebhook": {
            "enableNamespacesByDefault": false,
            "reinvocationPolicy": "Never",
            "rewriteAppHTTPProbe": true,
        },
        "telemetry": {"enabled": true, "v2": {"enabled": true, "prometheus": {"enabled": true}}},
    });
    let global = &mut values["global"];
    if at_least(version, 27) {
        global["nativeNftables"] = json!(false);
    } else {
        global["multiCluster"]["enabled"] = json!(false);
    }
    if at_least(version, 28) {
        global["networkPolicy"] = json!({"enabled": false});
        global["resourceScope"] = json!("all");
    }
    values
}

/// `global.proxy`: what injected sidecars and gateways get unless a pod's annotations say
/// otherwise (istiod's injection templates read these through the injector's `values`).
fn proxy_defaults() -> Value {
    json!({
        "clusterDomain": "cluster.local",
        "autoInject": "enabled",
        "logLevel": "warning",
        "componentLogLevel": "misc:error",
        "includeIPRanges": "*",
        "excludeIPRanges": "",
        "includeInboundPorts": "*",
        "excludeInboundPorts": "",
        "includeOutboundPorts": "",
        "excludeOutboundPorts": "",
        "outlierLogPath": "",
        "privileged": false,
        "statusPort": 15020,
        "readinessInitialDelaySeconds": 0,
        "readinessPeriodSeconds": 15,
        "readinessFailureThreshold": 4,
        "startupProbe": {"enabled": true, "failureThreshold": 600},
        "tracer": "none",
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "2000m", "memory": "1024Mi"},
        },
    })
}

fn cni_defaults(version: &Version) -> Value {
    let mut ambient = json!({
        "enabled": false,
        "dnsCapture": true,
        "ipv6": true,
        "reconcileIptablesOnStartup": false,
        "shareHostNetworkNamespace": false,
    });
    let mut values = json!({
        "global": {"logging": {"level": CNI_LOG_LEVEL}},
        "cni": {
            "cniBinDir": "/opt/cni/bin",
            "cniConfDir": "/etc/cni/net.d",
            "cniNetnsDir": "/var/run/netns",
            "chained": true,
            "provider": "default",
            "excludeNamespaces": ["kube-system"],
            "repair": {
                "enabled": true,
                "labelPods": false,
                "deletePods": false,
                "repairPods": true,
                "initContainerName": "istio-validation",
                "brokenPodLabelKey": "cni.istio.io/uninitialized",
                "brokenPodLabelValue": "true",
            },
            "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}},
            "tolerations": node_agent_tolerations(),
            "rollingMaxUnavailable": CNI_MAX_UNAVAILABLE,
            "terminationGracePeriodSeconds": CNI_GRACE_SECONDS,
        },
    });
    if at_least(version, 27) {
        ambient["enablementSelectors"] = enablement_selectors();
        values["cni"]["istioOwnedCNIConfig"] = json!(false);
        values["global"]["nativeNftables"] = json!(false);
    }
    if at_least(version, 28) {
        ambient["enableAmbientDetectionRetry"] = json!(false);
    }
    if at_least(version, 29) {
        ambient["reconcileIptablesOnStartup"] = json!(true);
        values["cni"]["terminationGracePeriodSeconds"] = json!(CNI_GRACE_SECONDS_1_29);
    }
    values["cni"]["ambient"] = ambient;
    values
}

/// Pods enrolled in ambient: labelled `istio.io/dataplane-mode=ambient`, or in a namespace
/// so labelled and not opted out with `none`.
fn enablement_selectors() -> Value {
    json!([
        {"podSelector": {"matchLabels": {"istio.io/dataplane-mode": "ambient"}}},
        {
            "podSelector": {"matchExpressions": [
                {"key": "istio.io/dataplane-mode", "operator": "NotIn", "values": ["none"]}
            ]},
            "namespaceSelector": {"matchLabels": {"istio.io/dataplane-mode": "ambient"}},
        },
    ])
}

fn ztunnel_defaults() -> Value {
    json!({
        "ztunnel": {
            "resourceName": ZTUNNEL_NAME,
            "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}},
            "tolerations": node_agent_tolerations(),
            "podAnnotations": {"prometheus.io/port": "15020", "prometheus.io/scrape": "true"},
            "terminationGracePeriodSeconds": ZTUNNEL_GRACE_SECONDS,
            "logLevel": ZTUNNEL_LOG_LEVEL,
        },
    })
}

/// The layer of one profile for a component. What `ambient` means is spelled out here,
/// since there are no charts to interpret `profile: ambient`.
pub(crate) fn profile(
    component: Component,
    name: &str,
    version: &Version,
) -> Result<Value, RenderError> {
    Ok(match name {
        "default" => default_profile(component),
        "ambient" => ambient_profile(component, version),
        "openshift" => openshift_profile(),
        "openshift-ambient" => {
            let mut layer = ambient_profile(component, version);
            crate::json::merge(&mut layer, &openshift_profile());
            layer
        }
        "demo" => demo_profile(component),
        "preview" => match component {
            Component::Istiod => json!({
                "profile": name,
                "meshConfig": {"defaultConfig": {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"}}},
            }),
            Component::Cni => json!({"profile": name}),
            Component::ZTunnel => json!({}),
        },
        // Known by name only: their settings are reported as not applied
        // (`mizzen_api::values::ineffective_profile`).
        "remote" | "stable" | "external" => match component {
            Component::ZTunnel => json!({}),
            _ => json!({"profile": name}),
        },
        "empty" => json!({}),
        _ => {
            return Err(RenderError::UnknownProfile {
                name: name.to_owned(),
                expected: PROFILES.join(", "),
            });
        }
    })
}

/// What each minor changed in istiod's behaviour, as Istio's compatibility profiles undo it:
/// the minor, then istiod environment variables and proxy metadata set back to the earlier
/// behaviour. `compatibilityVersion: 1.X` undoes the changes of every minor after 1.X.
type Settings = &'static [(&'static str, &'static str)];
const BEHAVIOUR_CHANGES: [(u32, Settings, Settings); 7] = [
    (
        24,
        &[
            ("ENABLE_INBOUND_RETRY_POLICY", "false"),
            ("EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY", "false"),
            ("PREFER_DESTINATIONRULE_TLS_FOR_EXTERNAL_SERVICES", "false"),
            ("ENABLE_ENHANCED_DESTINATIONRULE_MERGE", "false"),
            ("PILOT_UNIFIED_SIDECAR_SCOPE", "false"),
        ],
        &[
            ("ENABLE_DEFERRED_STATS_CREATION", "false"),
            ("BYPASS_OVERLOAD_MANAGER_FOR_STATIC_LISTENERS", "false"),
        ],
    ),
    (25, &[("PILOT_ENABLE_IP_AUTOALLOCATE", "false")], &[]),
    (27, &[("ENABLE_NATIVE_SIDECARS", "false")], &[]),
    (
        28,
        &[
            ("DISABLE_SHADOW_HOST_SUFFIX", "false"),
            ("PILOT_SPAWN_UPSTREAM_SPAN_FOR_GATEWAY", "false"),
        ],
        &[],
    ),
    (29, &[("DISABLE_TRACK_REMAINING_CB_METRICS", "false")], &[]),
    (
        30,
        &[("PILOT_SIDECAR_PICK_BEST_SERVICE_NAMESPACE", "false")],
        &[],
    ),
    (
        31,
        &[
            ("PILOT_ENABLE_STRICT_GATEWAY_MERGING", "false"),
            ("PILOT_SPAWN_UPSTREAM_SPAN_FOR_GATEWAY", "false"),
            ("PILOT_AUTO_SEND_UNHEALTHY_ENDPOINTS", "false"),
        ],
        &[],
    ),
];

/// The oldest `compatibilityVersion` a minor accepts (its charts' compatibility profiles).
fn oldest_compatibility(minor: u32) -> u32 {
    match minor {
        ..=26 => minor - 3,
        27 => 24,
        _ => 25,
    }
}

/// The istiod layer of `compatibilityVersion` at `version`: the settings of the minors after
/// it set back. A value that is not an older minor this version accepts is an error naming
/// the accepted ones.
pub(crate) fn compatibility(version: &Version, wanted: &str) -> Result<Value, RenderError> {
    let oldest = oldest_compatibility(version.minor);
    let accepted = format!("one of 1.{oldest} … 1.{}", version.minor - 1);
    let minor = wanted
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok())
        .filter(|m| (oldest..version.minor).contains(m))
        .ok_or_else(|| {
            RenderError::value(
                "compatibilityVersion",
                format!(
                    "{wanted:?} is not an older minor that Istio {}.{} can restore: {accepted}",
                    version.major, version.minor
                ),
            )
        })?;
    let mut env = serde_json::Map::new();
    let mut metadata = serde_json::Map::new();
    for (changed_in, vars, meta) in BEHAVIOUR_CHANGES {
        if changed_in > minor && changed_in <= version.minor {
            env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), json!(v))));
            metadata.extend(meta.iter().map(|(k, v)| ((*k).to_owned(), json!(v))));
        }
    }
    let mut layer = json!({"pilot": {"env": env}});
    if !metadata.is_empty() {
        layer["meshConfig"] = json!({"defaultConfig": {"proxyMetadata": metadata}});
    }
    // The node agent's 1.29 change, as the charts' compatibility profiles give it to istiod's
    // chart (it reaches the injector's values; IstioCNI has no compatibilityVersion).
    if minor < 29 && version.minor >= 29 {
        layer["pilot"]["cni"] = json!({"ambient": {"reconcileIptablesOnStartup": false}});
    }
    Ok(layer)
}

/// Istio's `demo` profile: small requests, access logs, full trace sampling, a fixed
/// istiod replica, and the demo telemetry providers.
fn demo_profile(component: Component) -> Value {
    let small = json!({"requests": {"cpu": "10m", "memory": "40Mi"}});
    let provider = |name: &str, kind: &str, service: &str, port: u16| json!({"name": name, kind: {"service": service, "port": port}});
    let collector = "opentelemetry-collector.observability.svc.cluster.local";
    match component {
        Component::Istiod => json!({
            "profile": "demo",
            "meshConfig": {
                "accessLogFile": "/dev/stdout",
                "extensionProviders": [
                    provider("otel", "envoyOtelAls", collector, 4317),
                    provider("skywalking", "skywalking", "tracing.istio-system.svc.cluster.local", 11800),
                    provider("otel-tracing", "opentelemetry", collector, 4317),
                    provider("jaeger", "opentelemetry", "jaeger-collector.istio-system.svc.cluster.local", 4317),
                ],
            },
            "global": {"proxy": {"resources": small}, "waypoint": {"resources": small}},
            "pilot": {
                "autoscaleEnabled": false,
                "traceSampling": 100,
                "resources": {"requests": {"cpu": "10m", "memory": "100Mi"}},
                // The chart's demo profile sizes the node agent too; in istiod's chart that
                // lands in the injector's values.
                "cni": {"resources": small},
            },
        }),
        Component::Cni => json!({"profile": "demo", "cni": {"resources": small}}),
        Component::ZTunnel => json!({}),
    }
}

fn default_profile(component: Component) -> Value {
    match component {
        Component::Istiod => json!({
            "defaultRevision": "",
            "global": {"istioNamespace": "istio-system", "configValidation": true},
        }),
        Component::Cni => json!({}),
        Component::ZTunnel => json!({"ztunnel": {"resourceName": ZTUNNEL_NAME}}),
    }
}

fn ambient_profile(component: Component, version: &Version) -> Value {
    let hbone = json!({"defaultConfig": {"proxyMetadata": {"ISTIO_META_ENABLE_HBONE": "true"}}});
    match component {
        Component::Istiod => {
            let mut mesh = hbone;
            if at_least(version, 27) {
                mesh["serviceScopeConfigs"] = json!([{
                    "servicesSelector": {"matchExpressions": [
                        {"key": "istio.io/global", "operator": "In", "values": ["true"]}
                    ]},
                    "scope": "GLOBAL",
                }]);
            }
            json!({
                "profile": "ambient",
                "global": {"variant": "distroless"},
                "pilot": {
                    "env": {"PILOT_ENABLE_AMBIENT": "true"},
                    "cni": {"ambient": {"enabled": true}},
                },
                "meshConfig": mesh,
            })
        }
        Component::Cni => json!({
            "profile": "ambient",
            "global": {"variant": "distroless"},
            "cni": {"ambient": {"enabled": true}},
        }),
        Component::ZTunnel => json!({
            "global": {"variant": "distroless"},
            "ztunnel": {"meshConfig": hbone},
        }),
    }
}

/// istiod's settings on OpenShift.
fn openshift_istiod() -> Value {
    json!({
        "pilot": {
            // Istio's OpenShift platform profile gives istiod's chart the node agent's
            // multus settings too (they reach the injector's values).
            "cni": {
                "enabled": true,
                "provider": "multus",
                "chained": false,
                "cniBinDir": "/var/lib/cni/bin",
                "cniConfDir": "/etc/cni/multus/net.d",
                "cniConfFileName": "istio-cni.conf",
            },
            "trustedZtunnelNamespace": "kube-system",
        },
    })
}

fn openshift_profile() -> Value {
    json!({"global": {"platform": "openshift"}})
}

/// The settings of a platform for a component (only OpenShift has any).
pub(crate) fn platform(component: Component, name: &str, version: &Version) -> Value {
    if name != "openshift" {
        return json!({});
    }
    let spc = json!({"type": "spc_t"});
    match component {
        Component::Istiod => {
            let mut layer = openshift_istiod();
            if at_least(version, 31) {
                layer["pilot"]["terminationMessagePolicy"] = json!("FallbackToLogsOnError");
            }
            layer
        }
        Component::Cni => json!({
            "cni": {
                "cniBinDir": "/var/lib/cni/bin",
                "cniConfDir": "/etc/cni/multus/net.d",
                "chained": false,
                "cniConfFileName": "istio-cni.conf",
                "provider": "multus",
                "seLinuxOptions": spc,
            },
        }),
        Component::ZTunnel => json!({"ztunnel": {"seLinuxOptions": spc}}),
    }
}
