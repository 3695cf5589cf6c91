//! mizzen's controllers and the machinery they share: server-side apply of rendered objects
//! with an inventory label, pruning of what the render no longer produces, the in-use index,
//! and status.

pub mod apply;
pub mod cni;
pub mod context;
pub mod dataplane;
pub mod inuse;
pub mod istio;
pub mod permissions;
pub mod revision;
pub mod run;
pub mod tag;
pub mod ztunnel;

use kube::{Resource, ResourceExt};

pub use context::Context;
pub use run::{RunOptions, run};

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
