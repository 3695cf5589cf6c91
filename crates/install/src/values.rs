//! The settings of an installation: [`InstallValues`]. Its serde form is the Helm chart's
//! `values.yaml` (camelCase keys); the namespace and the instance name come from the Helm
//! release and are not values.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};

/// The version of mizzen this crate installs: the default image tag, the chart's version and
/// appVersion, the CSV's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Default namespace of the operator.
pub const DEFAULT_NAMESPACE: &str = "mizzen-system";

/// Default image repository of the operator.
pub const DEFAULT_REPOSITORY: &str = "mizzen/mizzen";

/// Everything an installation of mizzen can vary. [`Default`] gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct InstallValues {
    /// Namespace of the operator (the Helm chart uses the release namespace).
    #[serde(skip)]
    pub namespace: String,
    /// Value of the `app.kubernetes.io/instance` label (the Helm chart uses the release name).
    #[serde(skip)]
    pub instance: String,
    /// The operator's image.
    pub image: Image,
    /// Secrets for pulling the image.
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Replicas of the Deployment; one holds the leader Lease, the others wait.
    pub replicas: i32,
    /// Resources of the operator container.
    pub resources: ResourceRequirements,
    /// Node selector of the pods.
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods.
    pub tolerations: Vec<Toleration>,
    /// Affinity of the pods; empty (the default) sets none: the scheduler's default topology
    /// spreading already prefers placing the replicas on different nodes.
    pub affinity: Affinity,
    /// PriorityClass of the pods (none when empty).
    pub priority_class_name: String,
    /// A version catalog (the content of a `versions.yaml`) replacing the embedded one: put
    /// in the ConfigMap `mizzen-catalog` and passed as `--versions-file`. Empty: none.
    pub catalog: String,
    /// The platform the operator renders for (`--platform`; not passed when `auto`).
    pub platform: Platform,
    /// A Prometheus Operator ServiceMonitor for `/metrics`.
    pub service_monitor: ServiceMonitorValues,
}

/// The operator's image: `<repository>@<digest>` when a digest is given, else
/// `<repository>:<tag>` (the tag defaults to [`VERSION`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Image {
    /// Registry and repository, e.g. `quay.io/example/mizzen`.
    pub repository: String,
    /// Tag; empty means the version of mizzen.
    pub tag: String,
    /// Digest (`sha256:...`); when set, it is used instead of the tag.
    pub digest: String,
    /// `imagePullPolicy` of the container.
    pub pull_policy: String,
}

/// The platform argument of the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Detected by the operator at start (no argument passed).
    #[default]
    Auto,
    /// Plain Kubernetes.
    Kubernetes,
    /// OpenShift.
    Openshift,
}

impl Platform {
    /// The value of `--platform`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Kubernetes => "kubernetes",
            Self::Openshift => "openshift",
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "kubernetes" => Ok(Self::Kubernetes),
            "openshift" => Ok(Self::Openshift),
            other => Err(format!(
                "unknown platform {other:?}: expected auto, kubernetes or openshift"
            )),
        }
    }
}

/// The ServiceMonitor switch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ServiceMonitorValues {
    /// Whether to create a `monitoring.coreos.com/v1` ServiceMonitor (needs its CRD).
    pub enabled: bool,
}

impl Default for Image {
    fn default() -> Self {
        Self {
            repository: DEFAULT_REPOSITORY.into(),
            tag: String::new(),
            digest: String::new(),
            pull_policy: "IfNotPresent".into(),
        }
    }
}

impl Image {
    /// The full reference of the image.
    pub fn reference(&self) -> String {
        if !self.digest.is_empty() {
            format!("{}@{}", self.repository, self.digest)
        } else if self.tag.is_empty() {
            format!("{}:{VERSION}", self.repository)
        } else {
            format!("{}:{}", self.repository, self.tag)
        }
    }

    /// Parses a reference `repo[:tag]` or `repo@digest` (a bare repository gets the default
    /// tag). Keeps the pull policy of `self`.
    pub fn with_reference(&self, reference: &str) -> Result<Self, InvalidImage> {
        let bad = || InvalidImage(reference.to_owned());
        if reference.is_empty() || reference.contains(char::is_whitespace) {
            return Err(bad());
        }
        let (repository, tag, digest) = if let Some((repo, digest)) = reference.split_once('@') {
            (repo, "", digest)
        } else {
            // A colon after the last slash separates the tag (a colon before it is a port).
            let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
            match reference[last_slash..].rfind(':') {
                Some(i) => (
                    &reference[..last_slash + i],
                    &reference[last_slash + i + 1..],
                    "",
                ),
                None => (reference, "", ""),
            }
        };
        if repository.is_empty()
            || repository.ends_with('/')
            || (reference.contains('@') && digest.is_empty())
            || (!reference.contains('@') && reference.ends_with(':'))
        {
            return Err(bad());
        }
        Ok(Self {
            repository: repository.into(),
            tag: tag.into(),
            digest: digest.into(),
            pull_policy: self.pull_policy.clone(),
        })
    }
}

/// An image reference that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {0:?}: expected <repository>[:<tag>] or <repository>@<digest>")]
pub struct InvalidImage(pub String);

impl Default for InstallValues {
    fn default() -> Self {
        let quantities = |cpu: &str, memory: &str| {
            BTreeMap::from([
                ("cpu".to_owned(), Quantity(cpu.into())),
                ("memory".to_owned(), Quantity(memory.into())),
            ])
        };
        Self {
            namespace: DEFAULT_NAMESPACE.into(),
            instance: "mizzen".into(),
            image: Image::default(),
            image_pull_secrets: Vec::new(),
            replicas: 2,
            resources: ResourceRequirements {
                requests: Some(quantities("10m", "64Mi")),
                limits: Some(quantities("500m", "256Mi")),
                ..Default::default()
            },
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: Affinity::default(),
            priority_class_name: String::new(),
            catalog: String::new(),
            platform: Platform::Auto,
            service_monitor: ServiceMonitorValues::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        let base = Image::default();
        assert_eq!(base.reference(), format!("mizzen/mizzen:{VERSION}"));
        let tagged = base
            .with_reference("localhost:5000/team/mizzen:dev")
            .unwrap();
        assert_eq!(tagged.repository, "localhost:5000/team/mizzen");
        assert_eq!(tagged.tag, "dev");
        assert_eq!(tagged.reference(), "localhost:5000/team/mizzen:dev");
        let bare = base.with_reference("localhost:5000/mizzen").unwrap();
        assert_eq!(bare.reference(), format!("localhost:5000/mizzen:{VERSION}"));
        let pinned = base.with_reference("quay.io/x/mizzen@sha256:abcd").unwrap();
        assert_eq!(pinned.reference(), "quay.io/x/mizzen@sha256:abcd");
        for bad in [
            "",
            "a b",
            "quay.io/x:",
            "quay.io/x@",
            "@sha256:1",
            "quay.io/",
        ] {
            assert!(base.with_reference(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_round_trip_through_yaml() {
        let yaml = serde_saphyr::to_string(&InstallValues::default()).unwrap();
        let back: InstallValues = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back, InstallValues::default());
        let partial: InstallValues = serde_saphyr::from_str("replicas: 3\n").unwrap();
        assert_eq!(partial.replicas, 3);
        assert_eq!(partial.image, Image::default());
        assert!(serde_saphyr::from_str::<InstallValues>("replica: 3\n").is_err());
    }
}

impl InstallValues {
    /// The values Helm would use with the user's values file `yaml` on top of the chart's
    /// defaults: maps merge key by key, anything else replaces, and `null` removes a default
    /// (an emptied optional part sets nothing). Unknown keys are refused.
    pub fn from_helm_values(yaml: &str) -> Result<Self, ValuesError> {
        let user: serde_json::Value = serde_saphyr::from_str(yaml).map_err(ValuesError::Yaml)?;
        let mut merged = serde_json::to_value(Self::default()).expect("values serialize");
        merge(&mut merged, user);
        let mut values: Self = serde_json::from_value(merged).map_err(ValuesError::Shape)?;
        let defaults = Self::default();
        values.namespace = defaults.namespace;
        values.instance = defaults.instance;
        Ok(values)
    }
}

/// Helm's coalescing of values: `over` onto `base`.
fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    use serde_json::Value;
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                if value.is_null() {
                    // Helm drops the key; the templates then see nothing, which is what the
                    // empty value of the same type gives here.
                    match base.get(&key) {
                        Some(Value::Object(_)) => {
                            base.insert(key, Value::Object(Default::default()))
                        }
                        Some(Value::Array(_)) => base.insert(key, Value::Array(Vec::new())),
                        Some(Value::String(_)) => base.insert(key, Value::String(String::new())),
                        _ => base.remove(&key),
                    };
                } else if let Some(slot) = base.get_mut(&key) {
                    merge(slot, value);
                } else {
                    base.insert(key, value);
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// A values file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    /// Not YAML.
    #[error("cannot parse the values: {0}")]
    Yaml(serde_saphyr::Error),
    /// YAML, but not of the values' shape (an unknown key, a wrong type).
    #[error("invalid values: {0}")]
    Shape(serde_json::Error),
}
