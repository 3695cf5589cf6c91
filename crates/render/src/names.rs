//! Object names of one istiod revision.
//!
//! Sail maps the revision named `default` to Istio's unnamed revision (`""`): its objects
//! have no suffix (`istiod`, `istio-sidecar-injector`), and its `istio.io/rev` label is
//! `default`. Any other revision `r` gives `istiod-r`, `istio-sidecar-injector-r`, ….

/// The namespace whose webhook configurations carry no namespace suffix.
const DEFAULT_NAMESPACE: &str = "istio-system";
/// The istiod port of xDS and CA over mTLS.
const XDS_PORT: u16 = 15012;

/// The value of `values.revision` for an IstioRevision name: empty for `default`.
pub fn helm_revision(revision_name: &str) -> &str {
    if revision_name == "default" {
        ""
    } else {
        revision_name
    }
}

/// `istiod{R}.<namespace>.svc:15012`: the address ztunnel and proxies use to reach the
/// istiod of a revision (a name in that istiod's serving certificate).
pub fn istiod_address(revision_name: &str, namespace: &str) -> String {
    RevisionNames::new(revision_name, namespace).istiod_address()
}

/// The names of one revision's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevisionNames {
    /// The Helm-level revision: empty for `default`.
    rev: String,
    namespace: String,
}

impl RevisionNames {
    pub(crate) fn new(revision_name: &str, namespace: &str) -> Self {
        Self {
            rev: helm_revision(revision_name).to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// Whether this is the unnamed (`default`) revision.
    pub(crate) fn is_default(&self) -> bool {
        self.rev.is_empty()
    }

    /// `values.revision`: empty for the default revision.
    pub(crate) fn helm(&self) -> &str {
        &self.rev
    }

    /// The `istio.io/rev` label value and `REVISION` env: the revision or `default`.
    pub(crate) fn label(&self) -> &str {
        if self.is_default() {
            "default"
        } else {
            &self.rev
        }
    }

    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `base` or `base-<rev>`.
    pub(crate) fn suffixed(&self, base: &str) -> String {
        if self.is_default() {
            base.to_owned()
        } else {
            format!("{base}-{}", self.rev)
        }
    }

    /// `base[-<rev>]-<namespace>`: cluster-scoped names, unique per control plane.
    pub(crate) fn cluster_scoped(&self, base: &str) -> String {
        format!("{}-{}", self.suffixed(base), self.namespace)
    }

    /// Deployment, Service, ServiceAccount, HPA, PDB, Role: `istiod{R}`.
    pub(crate) fn istiod(&self) -> String {
        self.suffixed("istiod")
    }

    /// The mesh ConfigMap `istio{R}`.
    pub(crate) fn mesh_config(&self) -> String {
        self.suffixed("istio")
    }

    /// The injector ConfigMap `istio-sidecar-injector{R}`.
    pub(crate) fn injector_config(&self) -> String {
        self.suffixed("istio-sidecar-injector")
    }

    /// The informational values ConfigMap `values{R}`.
    pub(crate) fn values_config(&self) -> String {
        self.suffixed("values")
    }

    /// The injector MutatingWebhookConfiguration `istio-sidecar-injector{R}[-<ns>]`.
    pub(crate) fn injector_webhook(&self) -> String {
        with_namespace_suffix(&self.injector_config(), &self.namespace)
    }

    /// The per-revision ValidatingWebhookConfiguration `istio-validator{R}-<ns>`.
    pub(crate) fn validator(&self) -> String {
        self.cluster_scoped("istio-validator")
    }

    /// `istiod{R}.<ns>.svc:15012`.
    pub(crate) fn istiod_address(&self) -> String {
        format!("{}.{}.svc:{XDS_PORT}", self.istiod(), self.namespace)
    }
}

/// `name` plus `-<namespace>` unless the namespace is `istio-system` (webhook names).
pub(crate) fn with_namespace_suffix(name: &str, namespace: &str) -> String {
    if namespace == DEFAULT_NAMESPACE {
        name.to_owned()
    } else {
        format!("{name}-{namespace}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_revision_has_no_suffix() {
        let names = RevisionNames::new("default", "istio-system");
        assert_eq!(names.helm(), "");
        assert_eq!(names.label(), "default");
        assert_eq!(names.istiod(), "istiod");
        assert_eq!(names.mesh_config(), "istio");
        assert_eq!(names.injector_webhook(), "istio-sidecar-injector");
        assert_eq!(names.validator(), "istio-validator-istio-system");
        assert_eq!(
            names.cluster_scoped("istiod-clusterrole"),
            "istiod-clusterrole-istio-system"
        );
        assert_eq!(names.istiod_address(), "istiod.istio-system.svc:15012");
    }

    #[test]
    fn named_revisions_are_suffixed() {
        let names = RevisionNames::new("default-v1-27-3", "mesh");
        assert_eq!(names.label(), "default-v1-27-3");
        assert_eq!(names.istiod(), "istiod-default-v1-27-3");
        assert_eq!(names.values_config(), "values-default-v1-27-3");
        assert_eq!(
            names.injector_webhook(),
            "istio-sidecar-injector-default-v1-27-3-mesh"
        );
        assert_eq!(names.validator(), "istio-validator-default-v1-27-3-mesh");
        assert_eq!(
            istiod_address("default-v1-27-3", "mesh"),
            "istiod-default-v1-27-3.mesh.svc:15012"
        );
        assert_eq!(helm_revision("canary"), "canary");
    }
}
