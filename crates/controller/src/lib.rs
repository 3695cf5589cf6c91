//! mizzen's controllers and the machinery they share: server-side apply of rendered objects
//! with an inventory label, pruning of what the render no longer produces, the in-use index,
//! and status.

pub mod apply;
pub mod children;
pub mod cni;
pub mod context;
pub mod dataplane;
pub mod desired;
pub mod inuse;
pub mod istio;
pub mod metrics;
pub mod own;
pub mod permissions;
pub mod revision;
pub mod rollout;
pub mod run;
pub mod tag;
pub mod waves;
pub mod wiring;
pub mod workloads;
pub mod ztunnel;

use kube::{Resource, ResourceExt};

pub use context::Context;
pub use run::{RunOptions, run};
pub use wiring::Health;

/// Errors a reconcile can end with; each is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server failed a request.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// Applying rendered objects failed.
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    /// Rendering failed (invalid values).
    #[error(transparent)]
    Render(#[from] mizzen_render::RenderError),
}

impl Error {
    /// Whether retrying cannot help until the input changes: the API server rejected what
    /// was rendered (a value the schema of a child does not accept).
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::Apply(apply::ApplyError::Rejected { .. }))
    }

    /// A short, stable reason for metrics: the API server's reason (`Conflict`, `Forbidden`,
    /// `Invalid`, ...) where it answered, else the kind of failure.
    pub fn metric_label(&self) -> String {
        let kube = match self {
            Error::Kube(e) => e,
            Error::Apply(apply::ApplyError::Api { source, .. }) => source,
            Error::Apply(apply::ApplyError::Incomplete(_)) => return "IncompleteRender".into(),
            Error::Apply(apply::ApplyError::Rejected { .. }) => return "Rejected".into(),
            Error::Render(_) => return "InvalidValues".into(),
        };
        match kube {
            kube::Error::Api(s) if !s.reason.is_empty() => s.reason.clone(),
            kube::Error::Api(s) => format!("HTTP{}", s.code),
            _ => "Transport".into(),
        }
    }
}

/// The owner reference data of a (cluster-scoped) custom resource.
pub fn owner_of<K: Resource<DynamicType = ()>>(obj: &K) -> apply::Owner {
    apply::Owner {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: obj.name_any(),
        uid: obj.uid().unwrap_or_default(),
    }
}

/// The version enums the CRDs publish for a catalog.
pub fn crd_versions(c: &mizzen_catalog::Catalog) -> mizzen_api::crds::VersionEnums {
    let owned = |v: Vec<&str>| v.into_iter().map(String::from).collect();
    mizzen_api::crds::VersionEnums {
        all: owned(c.all_names()),
        concrete: owned(c.concrete_names()),
        ztunnel: owned(c.ztunnel_names()),
        default: c.default_version().to_string(),
    }
}
