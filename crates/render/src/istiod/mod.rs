//! istiod of one revision: every object of the control plane that belongs to a revision
//! (ServiceAccount, Deployment, Service, autoscaler, disruption budget, ConfigMaps, RBAC,
//! injector and validator webhooks).

mod config;
mod deployment;
mod injection;
mod rbac;
mod templates;

pub(crate) use rbac::{READER_ACCOUNT, reader_labels};

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerBehavior;
use k8s_openapi::api::core::v1::{
    Container, EnvVar, LocalObjectReference, SeccompProfile, Service, ServiceAccount, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mizzen_api::values::{GlobalValues, PilotValues, Values};
use mizzen_catalog::{Images, Version};
use serde::Deserialize;
use serde_json::Value;

use crate::labels::{COMPONENT_LABEL, Labels, NAME_LABEL, REV_LABEL, check_label_value, labels};
use crate::names::RevisionNames;
use crate::object::{Object, Stamp, annotated, cluster, namespaced, sorted};
use crate::pod::{extras, section};
use crate::values::{Component, complete};
use crate::webhooks::{Injector, validation};
use crate::{Owner, Platform, RenderError};

/// Everything istiod of one revision is rendered from.
#[derive(Debug, Clone)]
pub struct RevisionInput {
    /// The owner recorded in the inventory label, normally the IstioRevision.
    pub owner: Owner,
    /// The IstioRevision name; `default` renders Istio's unnamed revision.
    pub revision: String,
    /// The control-plane namespace.
    pub namespace: String,
    /// The Istio version.
    pub version: Version,
    /// The revision's values (normally from [`crate::revision_values`]); completed with
    /// defaults, profile and platform settings before use.
    pub values: Values,
    /// The catalog images of the version.
    pub images: Images,
    /// The platform the operator runs on.
    pub platform: Platform,
    /// Extra DNS names for istiod's serving certificate (env `ISTIOD_CUSTOM_HOST`), e.g. a
    /// stable Service that always points at the active revision.
    pub custom_hosts: Vec<String>,
}

/// Renders every object of one istiod revision.
pub fn render_revision(input: &RevisionInput) -> Result<Vec<Object>, RenderError> {
    let rev = Revision::new(input)?;
    let mut objects = vec![rev.service_account()?, rev.deployment()?, rev.service()?];
    objects.extend(rev.autoscaler()?);
    objects.extend(rev.disruption_budget()?);
    objects.extend(rev.config_maps()?);
    objects.extend(rev.rbac()?);
    objects.push(rev.injector_webhook()?);
    if rev.global.config_validation.unwrap_or(true) {
        objects.push(rev.validator()?);
    }
    Ok(sorted(objects))
}

/// `pilot` settings the API keeps in `pilot.other`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PilotExtras {
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    pub seccomp_profile: Option<SeccompProfile>,
    pub volumes: Option<Vec<Volume>>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
    pub init_containers: Option<Vec<Container>>,
    pub env_var_from: Option<Vec<EnvVar>>,
    pub ip_family_policy: Option<String>,
    pub ip_families: Option<Vec<String>>,
    pub traffic_distribution: Option<String>,
    pub service_account_annotations: Option<BTreeMap<String, String>>,
    pub cpu: Option<Utilization>,
    pub memory: Option<Utilization>,
    pub autoscale_behavior: Option<HorizontalPodAutoscalerBehavior>,
    pub keepalive_max_server_connection_age: Option<String>,
    pub trace_sampling: Option<f64>,
    /// `pilot.terminationMessagePolicy` of istiod's container (OpenShift's platform sets
    /// `FallbackToLogsOnError` from 1.31).
    pub termination_message_policy: Option<String>,
}

/// `pilot.cpu` / `pilot.memory`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Utilization {
    pub target_average_utilization: Option<i32>,
}

/// Top-level settings the API keeps in `other`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TopExtras {
    pub pdb: Option<PdbSettings>,
}

/// `pdb` (1.27+ in upstream charts; honoured for every version).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PdbSettings {
    pub min_available: Option<IntOrString>,
    pub max_unavailable: Option<IntOrString>,
    pub unhealthy_pod_eviction_policy: Option<String>,
}

/// `sidecarInjectorWebhook`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct InjectorSettings {
    pub enable_namespaces_by_default: Option<bool>,
    pub reinvocation_policy: Option<String>,
    pub templates: Option<BTreeMap<String, String>>,
    pub default_templates: Option<Vec<String>>,
    pub never_inject_selector: Option<Vec<Value>>,
    pub always_inject_selector: Option<Vec<Value>>,
    pub injected_annotations: Option<BTreeMap<String, String>>,
}

impl InjectorSettings {
    pub(crate) fn read(values: &Values) -> Result<Self, RenderError> {
        section(
            values.sidecar_injector_webhook.as_ref(),
            "sidecarInjectorWebhook",
        )
    }

    /// The injector webhook entries pointing at `service` for `revision_values`.
    pub(crate) fn injector<'a>(
        &'a self,
        service: &'a str,
        namespace: &'a str,
        revision_values: &'a [&'a str],
        legacy: bool,
    ) -> Injector<'a> {
        Injector {
            service,
            namespace,
            revision_values,
            legacy,
            by_default: legacy && self.enable_namespaces_by_default.unwrap_or(false),
            reinvocation: self.reinvocation_policy.as_deref().unwrap_or("Never"),
        }
    }
}

/// One revision being rendered: its input, names and completed values.
pub(crate) struct Revision<'a> {
    pub input: &'a RevisionInput,
    pub names: RevisionNames,
    pub values: Values,
    pub global: GlobalValues,
    pub pilot: PilotValues,
    pub extras: PilotExtras,
    pub platform: Platform,
    pub stamp: Stamp,
}

impl<'a> Revision<'a> {
    fn new(input: &'a RevisionInput) -> Result<Self, RenderError> {
        check_label_value("revision name", &input.revision)?;
        check_label_value("namespace", &input.namespace)?;
        let values = complete(
            Component::Istiod,
            &input.version,
            input.platform,
            &input.values,
        )?;
        let global = values.global.clone().unwrap_or_default();
        let pilot = values.pilot.clone().unwrap_or_default();
        let extras = extras(&pilot.other, "pilot")?;
        Ok(Self {
            names: RevisionNames::new(&input.revision, &input.namespace),
            platform: input.platform.with_value(global.platform.as_deref()),
            stamp: Stamp::new(&input.owner, &input.version),
            input,
            values,
            global,
            pilot,
            extras,
        })
    }

    pub(crate) fn version(&self) -> &Version {
        &self.input.version
    }

    /// Labels of istiod-family objects (Deployment, Service, autoscaler, budget).
    pub(crate) fn labels(&self) -> Labels {
        istiod_labels(&self.names)
    }

    /// Labels of istiod's ServiceAccount and RBAC: upstream's carry no revision.
    pub(crate) fn account_labels(&self) -> Labels {
        labels([("app", "istiod"), (NAME_LABEL, "istiod")])
    }

    /// Labels of the revision's ConfigMaps: upstream's carry no `app`.
    pub(crate) fn config_labels(&self) -> Labels {
        let mut labels = self.labels();
        labels.remove("app");
        labels
    }

    fn service_account(&self) -> Result<Object, RenderError> {
        let pull_secrets = self.global.image_pull_secrets.as_ref().map(|names| {
            names
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        });
        let meta = namespaced(
            &self.names.istiod(),
            self.names.namespace(),
            self.account_labels(),
        );
        let annotations = self
            .extras
            .service_account_annotations
            .clone()
            .unwrap_or_default();
        self.stamp.object(&ServiceAccount {
            metadata: annotated(meta, annotations),
            image_pull_secrets: pull_secrets,
            ..ServiceAccount::default()
        })
    }

    fn service(&self) -> Result<Object, RenderError> {
        let mut labels = self.labels();
        labels.insert("istio".into(), "pilot".into());
        let meta = namespaced(&self.names.istiod(), self.names.namespace(), labels);
        let annotations = self.pilot.service_annotations.clone().unwrap_or_default();
        self.stamp.object(&Service {
            metadata: annotated(meta, annotations),
            spec: Some(ServiceSpec {
                ip_family_policy: self.extras.ip_family_policy.clone(),
                ip_families: self.extras.ip_families.clone(),
                traffic_distribution: self.extras.traffic_distribution.clone(),
                ..service_spec(&self.names)
            }),
            status: None,
        })
    }

    fn injector_webhook(&self) -> Result<Object, RenderError> {
        let settings = InjectorSettings::read(&self.values)?;
        let service = self.names.istiod();
        let revision_values = [self.names.label()];
        let webhooks = settings
            .injector(
                &service,
                self.names.namespace(),
                &revision_values,
                self.names.is_default(),
            )
            .webhooks();
        let labels = labels([
            ("app", "sidecar-injector"),
            (REV_LABEL, self.names.label()),
            (COMPONENT_LABEL, "Pilot"),
            (NAME_LABEL, "istiod"),
        ]);
        self.stamp.object(&MutatingWebhookConfiguration {
            metadata: cluster(&self.names.injector_webhook(), labels),
            webhooks: Some(webhooks),
        })
    }

    fn validator(&self) -> Result<Object, RenderError> {
        let labels = labels([
            ("app", "istiod"),
            ("istio", "istiod"),
            (REV_LABEL, self.names.label()),
            (NAME_LABEL, "istiod"),
        ]);
        let webhook = validation(
            "rev.validation.istio.io",
            &self.names.istiod(),
            self.names.namespace(),
            Some(&[self.names.label()]),
        );
        self.stamp.object(&ValidatingWebhookConfiguration {
            metadata: cluster(&self.names.validator(), labels),
            webhooks: Some(vec![webhook]),
        })
    }
}

/// Labels of istiod-family objects of a revision.
pub(crate) fn istiod_labels(names: &RevisionNames) -> Labels {
    labels([
        ("app", "istiod"),
        (REV_LABEL, names.label()),
        (COMPONENT_LABEL, "Pilot"),
        (NAME_LABEL, "istiod"),
    ])
}

/// The labels selecting a revision's istiod pods: `app=istiod` plus `istio.io/rev`, or
/// `istio=pilot` for the default revision (whose Deployment selector predates revisions).
pub(crate) fn pod_selector(names: &RevisionNames) -> Labels {
    if names.is_default() {
        labels([("istio", "pilot")])
    } else {
        labels([("app", "istiod"), (REV_LABEL, names.label())])
    }
}

/// The spec of a Service in front of a revision's istiod (own Service and tag Services).
pub(crate) fn service_spec(names: &RevisionNames) -> ServiceSpec {
    let port = |name: &str, port: i32, target: i32| ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: (port != target).then_some(IntOrString::Int(target)),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    };
    let mut selector = pod_selector(names);
    selector.insert("app".into(), "istiod".into());
    ServiceSpec {
        ports: Some(vec![
            port("grpc-xds", 15010, 15010),
            port("https-dns", 15012, 15012),
            port("https-webhook", 443, 15017),
            port("http-monitoring", 15014, 15014),
        ]),
        selector: Some(selector),
        ..ServiceSpec::default()
    }
}
