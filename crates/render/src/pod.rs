//! Building blocks of pod specs shared by istiod, istio-cni and ztunnel: environment
//! lists, volumes, probes, ports, and typed access to values mizzen keeps in `other` maps.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, HostPathVolumeSource, ObjectFieldSelector, Probe, ProjectedVolumeSource,
    ResourceFieldSelector, ResourceRequirements, SecretVolumeSource, ServiceAccountTokenProjection,
    Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mizzen_api::values::{GlobalValues, Other, StringMap};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::RenderError;

/// An ordered list of environment variables with unique names: setting a name again
/// replaces its value in place (server-side apply rejects duplicate names).
#[derive(Debug, Default)]
pub(crate) struct EnvList(Vec<EnvVar>);

impl EnvList {
    /// Sets `var`, replacing an earlier variable of the same name.
    pub(crate) fn set(&mut self, var: EnvVar) -> &mut Self {
        match self.0.iter_mut().find(|v| v.name == var.name) {
            Some(existing) => *existing = var,
            None => self.0.push(var),
        }
        self
    }

    /// A literal value (an empty value is sent as no value, which the API stores alike).
    pub(crate) fn value(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        let value: String = value.into();
        self.set(EnvVar {
            name: name.to_owned(),
            value: (!value.is_empty()).then_some(value),
            value_from: None,
        })
    }

    /// A downward-API field, e.g. `metadata.name`.
    pub(crate) fn field(&mut self, name: &str, path: &str) -> &mut Self {
        self.from(
            name,
            EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.to_owned(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            },
        )
    }

    /// A container resource, e.g. `limits.cpu`, with divisor 1.
    pub(crate) fn resource(&mut self, name: &str, resource: &str) -> &mut Self {
        self.from(
            name,
            EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: resource.to_owned(),
                    divisor: Some(Quantity("1".into())),
                    container_name: None,
                }),
                ..EnvVarSource::default()
            },
        )
    }

    fn from(&mut self, name: &str, source: EnvVarSource) -> &mut Self {
        self.set(EnvVar {
            name: name.to_owned(),
            value: None,
            value_from: Some(source),
        })
    }

    /// Every entry of a values `env` map, in key order; they win over earlier entries.
    pub(crate) fn values(&mut self, env: Option<&StringMap>) -> &mut Self {
        for (name, value) in env.into_iter().flatten() {
            self.value(name, value.clone());
        }
        self
    }

    /// The literal value of a variable, if set.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value.as_deref())
    }

    pub(crate) fn into_vec(self) -> Vec<EnvVar> {
        self.0
    }
}

/// A hostPath volume.
pub(crate) fn host_path(name: &str, path: &str, type_: Option<&str>) -> Volume {
    Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_owned(),
            type_: type_.map(str::to_owned),
        }),
        ..Volume::default()
    }
}

/// An emptyDir volume, optionally in memory.
pub(crate) fn empty_dir(name: &str, medium: Option<&str>) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(str::to_owned),
            size_limit: None,
        }),
        ..Volume::default()
    }
}

/// A ConfigMap volume.
pub(crate) fn config_map(
    name: &str,
    config_map: &str,
    optional: bool,
    mode: Option<i32>,
) -> Volume {
    Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            optional: optional.then_some(true),
            default_mode: mode,
            items: None,
        }),
        ..Volume::default()
    }
}

/// An optional Secret volume.
pub(crate) fn optional_secret(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            optional: Some(true),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// `istio-token`: a projected ServiceAccount token for audience `istio-ca`, valid 12 hours,
/// at path `istio-token`; what istiod's CA authenticates istiod and ztunnel with.
pub(crate) fn istio_token() -> Volume {
    Volume {
        name: "istio-token".to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    audience: Some("istio-ca".to_owned()),
                    expiration_seconds: Some(43200),
                    path: "istio-token".to_owned(),
                }),
                ..VolumeProjection::default()
            }]),
            default_mode: None,
        }),
        ..Volume::default()
    }
}

/// A volume mount.
pub(crate) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// A TCP container port.
pub(crate) fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: number,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

/// An HTTP GET readiness probe; timings left to the API defaults when `None`.
pub(crate) fn http_probe(path: &str, port: i32, timings: Option<(i32, i32, i32)>) -> Probe {
    let (initial, period, timeout) = match timings {
        Some((i, p, t)) => (Some(i), Some(p), Some(t)),
        None => (None, None, None),
    };
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: initial,
        period_seconds: period,
        timeout_seconds: timeout,
        ..Probe::default()
    }
}

/// Container resources: the component's (`<section>.resources`), else
/// `global.defaultResources`. Every quantity is checked: the API server cannot even decode a
/// workload with a malformed one, so it would never roll out.
pub(crate) fn resources(
    own: Option<&ResourceRequirements>,
    global: Option<&GlobalValues>,
    section: &str,
) -> Result<Option<ResourceRequirements>, RenderError> {
    let (chosen, path) = match own {
        Some(r) => (Some(r), format!("{section}.resources")),
        None => (
            global.and_then(|g| g.default_resources.as_ref()),
            "global.defaultResources".to_owned(),
        ),
    };
    if let Some(r) = chosen {
        for (part, map) in [("limits", &r.limits), ("requests", &r.requests)] {
            for (name, q) in map.iter().flatten() {
                check_quantity(&q.0)
                    .map_err(|m| RenderError::value(format!("{path}.{part}.{name}"), m))?;
            }
        }
    }
    Ok(chosen.cloned())
}

/// Checks a Kubernetes quantity: a decimal number with an optional sign, then nothing, a
/// binary suffix (Ki … Ei), a decimal suffix (n u m k M G T P E) or an exponent (e3, E-2).
pub(crate) fn check_quantity(q: &str) -> Result<(), String> {
    let body = q.strip_prefix(['+', '-']).unwrap_or(q);
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let number_ok = !number.is_empty()
        && number != "."
        && !fraction.contains('.')
        && whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit());
    let suffix_ok = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        _ => suffix
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())),
    };
    if number_ok && suffix_ok {
        Ok(())
    } else {
        Err(format!(
            "{q:?} is not a quantity (e.g. 100m, 0.5, 128Mi, 1Gi, 2e3)"
        ))
    }
}

/// The tolerations node agents (istio-cni, ztunnel) default to: every NoSchedule and
/// NoExecute taint, and `CriticalAddonsOnly`.
pub(crate) fn node_agent_tolerations() -> Value {
    json!([
        {"effect": "NoSchedule", "operator": "Exists"},
        {"key": "CriticalAddonsOnly", "operator": "Exists"},
        {"effect": "NoExecute", "operator": "Exists"},
    ])
}

/// The `kubernetes.io/os: linux` node selector with the user's entries added.
pub(crate) fn linux_node_selector(user: Option<&StringMap>) -> BTreeMap<String, String> {
    let mut out = user.cloned().unwrap_or_default();
    out.entry("kubernetes.io/os".to_owned())
        .or_insert_with(|| "linux".to_owned());
    out
}

/// Typed settings read from an `other` map (keys mizzen acts on that the API types keep
/// open). A value of the wrong shape is a [`RenderError::InvalidValue`] at `path`.
pub(crate) fn extras<T: DeserializeOwned + Default>(
    other: &Other,
    path: &str,
) -> Result<T, RenderError> {
    if other.is_empty() {
        return Ok(T::default());
    }
    let map: serde_json::Map<String, Value> =
        other.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_json::from_value(Value::Object(map)).map_err(|e| RenderError::value(path, e))
}

/// Typed settings read from an open values section (`meshConfig`, `cni.repair`, …).
pub(crate) fn section<T: DeserializeOwned + Default>(
    value: Option<&Value>,
    path: &str,
) -> Result<T, RenderError> {
    match value {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| RenderError::value(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_checked_as_kubernetes_parses_them() {
        for q in [
            "100m", "0.5", ".5", "1", "128Mi", "1Gi", "2e3", "1E-2", "+1k", "-1",
        ] {
            assert_eq!(check_quantity(q), Ok(()), "{q}");
        }
        for q in ["", "lots", "1 Gi", "1GB", "1..2", ".", "1e", "Mi", "1Mi2"] {
            assert!(check_quantity(q).is_err(), "{q}");
        }
    }

    #[test]
    fn a_bad_quantity_is_named_by_its_field() {
        let own: ResourceRequirements =
            serde_json::from_value(json!({"requests": {"cpu": "lots"}})).unwrap();
        let e = resources(Some(&own), None, "pilot")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`pilot.resources.requests.cpu`"), "{e}");
        let global: GlobalValues =
            serde_json::from_value(json!({"defaultResources": {"limits": {"memory": "1GB"}}}))
                .unwrap();
        let e = resources(None, Some(&global), "cni")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`global.defaultResources.limits.memory`"), "{e}");
    }

    #[test]
    fn env_names_are_unique_and_later_values_win() {
        let mut env = EnvList::default();
        env.value("A", "1")
            .field("B", "metadata.name")
            .value("EMPTY", "");
        let user: StringMap = [
            ("A".to_owned(), "2".to_owned()),
            ("C".to_owned(), "3".to_owned()),
        ]
        .into_iter()
        .collect();
        env.values(Some(&user));
        let names: Vec<_> = env.0.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "EMPTY", "C"]);
        assert_eq!(env.get("A"), Some("2"));
        assert_eq!(env.get("EMPTY"), None);
        assert!(env.0.iter().any(|v| v.name == "EMPTY" && v.value.is_none()));
    }

    #[test]
    fn extras_report_wrong_shapes() {
        #[derive(serde::Deserialize, Default)]
        struct Extras {
            #[serde(default)]
            volumes: Option<Vec<Volume>>,
        }
        let mut other = Other::new();
        other.insert("volumes".into(), json!("not a list"));
        let err = extras::<Extras>(&other, "pilot").err().unwrap();
        assert!(
            matches!(err, RenderError::InvalidValue { ref path, .. } if path == "pilot"),
            "{err}"
        );
        other.insert("volumes".into(), json!([{"name": "x", "emptyDir": {}}]));
        assert_eq!(
            extras::<Extras>(&other, "pilot").unwrap().volumes.unwrap()[0].name,
            "x"
        );
    }
}
