//! Admission webhooks: the sidecar-injector entries (per revision and per tag) and the
//! config validation entry. Never `caBundle` (istiod writes it). Validating webhooks start at
//! `failurePolicy: Ignore`, as upstream's do, so that Istio configuration can be written
//! before istiod serves; istiod sets `Fail` once it does, and the applier then leaves the
//! field to it (`mizzen_controller::apply`, docs/DESIGN.md decision 3).

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, RuleWithOperations, ServiceReference, ValidatingWebhook, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::labels::{INJECT_LABEL, REV_LABEL};

/// The Istio API groups whose objects istiod validates.
const VALIDATED_GROUPS: [&str; 4] = [
    "security.istio.io",
    "networking.istio.io",
    "telemetry.istio.io",
    "extensions.istio.io",
];
/// The legacy per-namespace injection label.
const INJECTION_LABEL: &str = "istio-injection";
/// Namespaces the `auto.` entry never injects into.
const SYSTEM_NAMESPACES: [&str; 4] = [
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// What a set of injector entries matches and where they send requests.
pub(crate) struct Injector<'a> {
    /// The istiod Service (`istiod{R}`).
    pub service: &'a str,
    pub namespace: &'a str,
    /// `istio.io/rev` values that select this injector: the revision, or a tag.
    pub revision_values: &'a [&'a str],
    /// Also the legacy entries of the default revision (`istio-injection=enabled`, and
    /// pods labelled `sidecar.istio.io/inject=true` without a revision).
    pub legacy: bool,
    /// Also inject into every namespace without labels (`enableNamespacesByDefault`).
    pub by_default: bool,
    /// `reinvocationPolicy` (`Never` by default).
    pub reinvocation: &'a str,
}

impl Injector<'_> {
    /// The webhook entries, in a fixed order.
    pub(crate) fn webhooks(&self) -> Vec<MutatingWebhook> {
        let rev_in = || requirement(REV_LABEL, "In", self.revision_values);
        let not_opted_out = || requirement(INJECT_LABEL, "NotIn", &["false"]);
        let mut entries = vec![
            self.entry(
                "rev.namespace.sidecar-injector.istio.io",
                vec![rev_in(), absent(INJECTION_LABEL)],
                vec![not_opted_out()],
            ),
            self.entry(
                "rev.object.sidecar-injector.istio.io",
                vec![absent(REV_LABEL), absent(INJECTION_LABEL)],
                vec![not_opted_out(), rev_in()],
            ),
        ];
        if self.legacy {
            entries.push(self.entry(
                "namespace.sidecar-injector.istio.io",
                vec![requirement(INJECTION_LABEL, "In", &["enabled"])],
                vec![not_opted_out()],
            ));
            entries.push(self.entry(
                "object.sidecar-injector.istio.io",
                vec![absent(INJECTION_LABEL), absent(REV_LABEL)],
                vec![
                    requirement(INJECT_LABEL, "In", &["true"]),
                    absent(REV_LABEL),
                ],
            ));
        }
        if self.by_default {
            entries.push(self.entry(
                "auto.sidecar-injector.istio.io",
                vec![
                    absent(INJECTION_LABEL),
                    absent(REV_LABEL),
                    requirement("kubernetes.io/metadata.name", "NotIn", &SYSTEM_NAMESPACES),
                ],
                vec![absent(INJECTION_LABEL), absent(REV_LABEL)],
            ));
        }
        entries
    }

    fn entry(
        &self,
        name: &str,
        namespace: Vec<LabelSelectorRequirement>,
        object: Vec<LabelSelectorRequirement>,
    ) -> MutatingWebhook {
        MutatingWebhook {
            name: name.to_owned(),
            client_config: client(self.service, self.namespace, "/inject"),
            rules: Some(vec![rules(&["CREATE"], &[""], &["v1"], &["pods"])]),
            failure_policy: Some("Fail".to_owned()),
            side_effects: "None".to_owned(),
            reinvocation_policy: Some(self.reinvocation.to_owned()),
            admission_review_versions: vec!["v1".to_owned()],
            namespace_selector: Some(selector(namespace)),
            object_selector: Some(selector(object)),
            ..MutatingWebhook::default()
        }
    }
}

/// The `failurePolicy` a validating webhook is created with; istiod tightens it to `Fail`.
pub(crate) const INITIAL_VALIDATION_POLICY: &str = "Ignore";

/// A config validation entry calling `service` at `/validate`, optionally limited to
/// objects labelled with one of `revision_values`.
pub(crate) fn validation(
    name: &str,
    service: &str,
    namespace: &str,
    revision_values: Option<&[&str]>,
) -> ValidatingWebhook {
    ValidatingWebhook {
        name: name.to_owned(),
        client_config: client(service, namespace, "/validate"),
        rules: Some(vec![rules(
            &["CREATE", "UPDATE"],
            &VALIDATED_GROUPS,
            &["*"],
            &["*"],
        )]),
        failure_policy: Some(INITIAL_VALIDATION_POLICY.to_owned()),
        side_effects: "None".to_owned(),
        admission_review_versions: vec!["v1".to_owned()],
        object_selector: revision_values
            .map(|values| selector(vec![requirement(REV_LABEL, "In", values)])),
        ..ValidatingWebhook::default()
    }
}

fn client(service: &str, namespace: &str, path: &str) -> WebhookClientConfig {
    WebhookClientConfig {
        service: Some(ServiceReference {
            name: service.to_owned(),
            namespace: namespace.to_owned(),
            path: Some(path.to_owned()),
            port: Some(443),
        }),
        ca_bundle: None,
        url: None,
    }
}

fn rules(
    operations: &[&str],
    groups: &[&str],
    versions: &[&str],
    resources: &[&str],
) -> RuleWithOperations {
    let own = |items: &[&str]| Some(items.iter().map(|s| (*s).to_owned()).collect());
    RuleWithOperations {
        operations: own(operations),
        api_groups: own(groups),
        api_versions: own(versions),
        resources: own(resources),
        scope: None,
    }
}

fn selector(requirements: Vec<LabelSelectorRequirement>) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(requirements),
        match_labels: None,
    }
}

/// A label selector requirement `key <operator> values`.
pub(crate) fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: Some(values.iter().map(|s| (*s).to_owned()).collect()),
    }
}

/// `key DoesNotExist`.
fn absent(key: &str) -> LabelSelectorRequirement {
    LabelSelectorRequirement {
        key: key.to_owned(),
        operator: "DoesNotExist".to_owned(),
        values: None,
    }
}
