//! Cluster-wide objects installed once: the Istio CRDs, the default validator that marks
//! the default revision, and the reader ServiceAccount.

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use mizzen_catalog::Version;
use serde_json::json;

use crate::istiod::{READER_ACCOUNT, reader_labels};
use crate::labels::{Labels, NAME_LABEL, REV_LABEL, check_label_value, labels};
use crate::names::RevisionNames;
use crate::object::{Object, Stamp, cluster, namespaced, sorted};
use crate::values::at_least;
use crate::webhooks::validation;
use crate::{Owner, RenderError};

/// The name istiod's tag watcher looks for.
const DEFAULT_VALIDATOR: &str = "istiod-default-validator";

/// The default validator `istiod-default-validator` (validates unlabelled Istio config
/// through the default revision's istiod, and tells istiod which revision is the default)
/// and the ServiceAccount `istio-reader-service-account`.
///
/// `default_revision` is an IstioRevision name; `default` means the unnamed revision.
pub fn render_base(
    owner: &Owner,
    default_revision: &str,
    namespace: &str,
    version: &Version,
) -> Result<Vec<Object>, RenderError> {
    check_label_value("default revision", default_revision)?;
    check_label_value("namespace", namespace)?;
    let stamp = Stamp::new(owner, version);
    let names = RevisionNames::new(default_revision, namespace);
    let validator = ValidatingWebhookConfiguration {
        metadata: cluster(
            DEFAULT_VALIDATOR,
            labels([
                ("app", "istiod"),
                ("istio", "istiod"),
                (REV_LABEL, names.label()),
                (NAME_LABEL, "istiod"),
            ]),
        ),
        webhooks: Some(vec![validation(
            "validation.istio.io",
            &names.istiod(),
            namespace,
            None,
        )]),
    };
    let reader = ServiceAccount {
        metadata: namespaced(READER_ACCOUNT, namespace, reader_labels()),
        ..ServiceAccount::default()
    };
    Ok(sorted(vec![
        stamp.object(&reader)?,
        stamp.object(&validator)?,
    ]))
}

/// One Istio CRD: group, kind, plural, short names, served versions, where it is stored
/// (`storage` until the minor `v1_since`, `v1` from then on), the columns `kubectl get`
/// prints, and the first minor that has it.
struct Crd {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    versions: &'static [&'static str],
    storage: &'static str,
    v1_since: Option<u32>,
    columns: &'static [Column],
    since: u32,
}

/// A printer column: name, JSON path, type.
type Column = (&'static str, &'static str, &'static str);

const AGE: Column = ("Age", ".metadata.creationTimestamp", "date");
const HOSTS: Column = ("Hosts", ".spec.hosts", "string");

const NETWORKING: &[&str] = &["v1", "v1alpha3", "v1beta1"];
const SECURITY: &[&str] = &["v1", "v1beta1"];

/// The oldest minor mizzen renders: every CRD below exists from it on unless it says.
const OLDEST: u32 = 26;

/// A networking CRD served at v1, v1alpha3 and v1beta1, stored at v1 from 1.27.
const fn networking(
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    columns: &'static [Column],
) -> Crd {
    Crd {
        group: "networking.istio.io",
        kind,
        plural,
        short_names,
        versions: NETWORKING,
        storage: "v1beta1",
        v1_since: Some(27),
        columns,
        since: OLDEST,
    }
}

/// A security CRD served at v1 and v1beta1, stored at v1 from 1.28.
const fn security(
    kind: &'static str,
    plural: &'static str,
    short_name: &'static [&'static str],
    columns: &'static [Column],
) -> Crd {
    Crd {
        group: "security.istio.io",
        kind,
        plural,
        short_names: short_name,
        versions: SECURITY,
        storage: "v1beta1",
        v1_since: Some(28),
        columns,
        since: OLDEST,
    }
}

/// A CRD with one fixed storage version.
const fn fixed(
    group: &'static str,
    (kind, plural): (&'static str, &'static str),
    short_names: &'static [&'static str],
    (versions, storage): (&'static [&'static str], &'static str),
    columns: &'static [Column],
    since: u32,
) -> Crd {
    Crd {
        group,
        kind,
        plural,
        short_names,
        versions,
        storage,
        v1_since: None,
        columns,
        since,
    }
}

/// The Istio CRDs: 14 up to 1.29, TrafficExtension from 1.30.
const CRDS: [Crd; 15] = [
    fixed(
        "extensions.istio.io",
        ("WasmPlugin", "wasmplugins"),
        &[],
        (&["v1alpha1"], "v1alpha1"),
        &[AGE],
        OLDEST,
    ),
    networking(
        "DestinationRule",
        "destinationrules",
        &["dr"],
        &[("Host", ".spec.host", "string"), AGE],
    ),
    fixed(
        "networking.istio.io",
        ("EnvoyFilter", "envoyfilters"),
        &[],
        (&["v1alpha3"], "v1alpha3"),
        &[],
        OLDEST,
    ),
    networking("Gateway", "gateways", &["gw"], &[]),
    fixed(
        "networking.istio.io",
        ("ProxyConfig", "proxyconfigs"),
        &[],
        (&["v1beta1"], "v1beta1"),
        &[],
        OLDEST,
    ),
    networking(
        "ServiceEntry",
        "serviceentries",
        &["se"],
        &[
            HOSTS,
            ("Location", ".spec.location", "string"),
            ("Resolution", ".spec.resolution", "string"),
            AGE,
        ],
    ),
    networking("Sidecar", "sidecars", &[], &[]),
    networking(
        "VirtualService",
        "virtualservices",
        &["vs"],
        &[("Gateways", ".spec.gateways", "string"), HOSTS, AGE],
    ),
    networking(
        "WorkloadEntry",
        "workloadentries",
        &["we"],
        &[AGE, ("Address", ".spec.address", "string")],
    ),
    networking("WorkloadGroup", "workloadgroups", &["wg"], &[AGE]),
    security(
        "AuthorizationPolicy",
        "authorizationpolicies",
        &["ap"],
        &[("Action", ".spec.action", "string"), AGE],
    ),
    security(
        "PeerAuthentication",
        "peerauthentications",
        &["pa"],
        &[("Mode", ".spec.mtls.mode", "string"), AGE],
    ),
    security(
        "RequestAuthentication",
        "requestauthentications",
        &["ra"],
        &[],
    ),
    fixed(
        "telemetry.istio.io",
        ("Telemetry", "telemetries"),
        &["telemetry"],
        (&["v1", "v1alpha1"], "v1alpha1"),
        &[AGE],
        OLDEST,
    ),
    fixed(
        "extensions.istio.io",
        ("TrafficExtension", "trafficextensions"),
        &[],
        (&["v1alpha1"], "v1alpha1"),
        &[AGE],
        30,
    ),
];

impl Crd {
    /// The storage version at `version`'s minor.
    fn storage(&self, version: &Version) -> &'static str {
        match self.v1_since {
            Some(minor) if at_least(version, minor) => "v1",
            _ => self.storage,
        }
    }

    fn definition(&self, version: &Version) -> CustomResourceDefinition {
        let storage = self.storage(version);
        let prefix = self.group.trim_end_matches(".istio.io");
        let schema = JSONSchemaProps {
            type_: Some("object".to_owned()),
            x_kubernetes_preserve_unknown_fields: Some(true),
            ..JSONSchemaProps::default()
        };
        let versions = self
            .versions
            .iter()
            .map(|name| CustomResourceDefinitionVersion {
                name: (*name).to_owned(),
                served: true,
                storage: *name == storage,
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(schema.clone()),
                }),
                subresources: Some(CustomResourceSubresources {
                    status: Some(CustomResourceSubresourceStatus(json!({}))),
                    scale: None,
                }),
                additional_printer_columns: (!self.columns.is_empty()).then(|| {
                    self.columns
                        .iter()
                        .map(|(name, path, type_)| CustomResourceColumnDefinition {
                            name: (*name).to_owned(),
                            json_path: (*path).to_owned(),
                            type_: (*type_).to_owned(),
                            ..CustomResourceColumnDefinition::default()
                        })
                        .collect()
                }),
                ..CustomResourceDefinitionVersion::default()
            })
            .collect();
        CustomResourceDefinition {
            metadata: cluster(&format!("{}.{}", self.plural, self.group), Labels::new()),
            spec: CustomResourceDefinitionSpec {
                group: self.group.to_owned(),
                names: CustomResourceDefinitionNames {
                    kind: self.kind.to_owned(),
                    list_kind: Some(format!("{}List", self.kind)),
                    plural: self.plural.to_owned(),
                    singular: Some(self.kind.to_lowercase()),
                    short_names: Some(self.short_names.iter().map(|s| (*s).to_owned()).collect()),
                    categories: Some(vec!["istio-io".to_owned(), format!("{prefix}-istio-io")]),
                },
                scope: "Namespaced".to_owned(),
                versions,
                conversion: None,
                preserve_unknown_fields: None,
            },
            status: None,
        }
    }
}

/// The Istio CRDs of `version`'s minor, with its served and storage versions and the
/// columns `kubectl get` prints. Schemas
/// are permissive (`type: object`, unknown fields preserved); istiod validates content
/// through its webhook.
pub fn render_istio_crds(owner: &Owner, version: &Version) -> Result<Vec<Object>, RenderError> {
    let stamp = Stamp::new(owner, version);
    let objects = CRDS
        .iter()
        .filter(|crd| at_least(version, crd.since))
        .map(|crd| stamp.object(&crd.definition(version)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sorted(objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_versions_follow_the_minor() {
        let at = |minor| Version::new(1, minor, 0);
        let dr = &CRDS[1];
        let ap = &CRDS[10];
        let telemetry = &CRDS[13];
        assert_eq!(
            (
                dr.storage(&at(26)),
                dr.storage(&at(27)),
                dr.storage(&at(28))
            ),
            ("v1beta1", "v1", "v1")
        );
        assert_eq!(
            (
                ap.storage(&at(26)),
                ap.storage(&at(27)),
                ap.storage(&at(28))
            ),
            ("v1beta1", "v1beta1", "v1")
        );
        assert_eq!(telemetry.storage(&at(28)), "v1alpha1");
        assert_eq!(CRDS[2].storage(&at(28)), "v1alpha3");
        assert_eq!(CRDS[4].storage(&at(28)), "v1beta1");
        assert_eq!(CRDS[0].storage(&at(28)), "v1alpha1");
    }

    #[test]
    fn traffic_extension_from_1_30_with_the_columns_kubectl_prints() {
        let names = |minor| {
            render_istio_crds(
                &Owner::istio_revision("default"),
                &Version::new(1, minor, 0),
            )
            .unwrap()
            .iter()
            .map(|o| o.name().to_owned())
            .collect::<Vec<_>>()
        };
        assert_eq!(names(29).len(), 14);
        assert!(!names(29).contains(&"trafficextensions.extensions.istio.io".to_owned()));
        assert_eq!(names(30).len(), 15);
        assert!(names(30).contains(&"trafficextensions.extensions.istio.io".to_owned()));
        let vs = CRDS[7].definition(&Version::new(1, 30, 0));
        let columns: Vec<String> = vs.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| format!("{} {} {}", c.name, c.json_path, c.type_))
            .collect();
        assert_eq!(
            columns,
            [
                "Gateways .spec.gateways string",
                "Hosts .spec.hosts string",
                "Age .metadata.creationTimestamp date"
            ]
        );
        assert!(
            CRDS[3].definition(&Version::new(1, 30, 0)).spec.versions[0]
                .additional_printer_columns
                .is_none()
        );
    }
}
