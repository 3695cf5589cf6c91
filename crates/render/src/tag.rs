//! Revision tags: a stable name (`prod`, `default`) that points at a revision.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Service;
use mizzen_api::values::Values;
use mizzen_catalog::Version;

use crate::istiod::{InjectorSettings, service_spec};
use crate::labels::{REV_LABEL, TAG_LABEL, check_label_value, labels};
use crate::names::{RevisionNames, with_namespace_suffix};
use crate::object::{Object, Stamp, cluster, namespaced, sorted};
use crate::values::at_least;
use crate::{Owner, RenderError};

/// The objects of revision tag `tag` pointing at IstioRevision `revision` (in
/// `namespace`): the MutatingWebhookConfiguration `istio-revision-tag-<tag>[-<ns>]` whose
/// entries inject for `istio.io/rev=<tag>` (tag `default` also takes
/// `istio-injection=enabled`), and from 1.28 the Service `istiod-revision-tag-<tag>`, which
/// istiod also counts as a tag. `values` are the revision's (for the injection settings).
pub fn render_tag(
    owner: &Owner,
    tag: &str,
    revision: &str,
    namespace: &str,
    version: &Version,
    values: &Values,
) -> Result<Vec<Object>, RenderError> {
    check_label_value("tag", tag)?;
    check_label_value("revision name", revision)?;
    check_label_value("namespace", namespace)?;
    let stamp = Stamp::new(owner, version);
    let names = RevisionNames::new(revision, namespace);
    let tag_labels = labels([(TAG_LABEL, tag), (REV_LABEL, names.label())]);

    let settings = InjectorSettings::read(values)?;
    let service = names.istiod();
    let matches = [tag];
    let webhooks = settings
        .injector(&service, namespace, &matches, tag == "default")
        .webhooks();
    let mut webhook_labels = tag_labels.clone();
    webhook_labels.insert("app".into(), "sidecar-injector".into());
    let name = with_namespace_suffix(&format!("istio-revision-tag-{tag}"), namespace);
    let mut objects = vec![stamp.object(&MutatingWebhookConfiguration {
        metadata: cluster(&name, webhook_labels),
        webhooks: Some(webhooks),
    })?];

    if at_least(version, 28) {
        let mut service_labels = tag_labels;
        service_labels.insert("app".into(), "istiod".into());
        objects.push(stamp.object(&Service {
            metadata: namespaced(
                &format!("istiod-revision-tag-{tag}"),
                namespace,
                service_labels,
            ),
            spec: Some(service_spec(&names)),
            status: None,
        })?);
    }
    Ok(sorted(objects))
}
