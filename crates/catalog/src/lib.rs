//! The Istio version catalog of mizzen, as data: which versions can be installed, which
//! `vX.Y-latest` aliases stand for which version, which versions are end-of-life, and the
//! container images of each. Pure logic, no Kubernetes client.
//!
//! - [`Catalog`] loads the embedded `versions.yaml` or a user file (`--versions-file`),
//!   validates it and answers queries: [`Catalog::resolve`], the CRD enums
//!   ([`Catalog::all_names`], [`Catalog::concrete_names`], [`Catalog::ztunnel_names`]) and
//!   [`Catalog::default_version`].
//! - [`Version`] parses `vX.Y.Z` strictly and renders the tag (`1.26.3`) and revision
//!   (`1-26-3`) forms.
//! - [`Images`] and [`ImageRef`] give each component's image, as hub + name + tag or as a
//!   full reference used verbatim.
//! - [`revision_name`], [`check_inplace_move`] and [`check_dataplane`] implement the naming
//!   and version skew rules that mizzen enforces (DESIGN.md, decision 2).
//!
//! ```
//! use mizzen_catalog::{Catalog, Component, check_dataplane, revision_name};
//!
//! let catalog = Catalog::embedded()?;
//! let resolved = catalog.resolve("v1.26-latest")?;
//! assert_eq!(resolved.version.to_string(), "v1.26.8");
//! assert_eq!(revision_name("default", true, &resolved.version)?, "default-v1-26-8");
//! assert_eq!(resolved.images.ztunnel.render(Some("distroless")), "docker.io/istio/ztunnel:1.26.8-distroless");
//! let istio = catalog.resolve("v1.27.3")?;
//! check_dataplane(Component::ZTunnel, &istio.version, &resolved.version)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod catalog;
mod images;
mod rules;
mod version;

pub use catalog::{Catalog, CatalogError, LoadError, LoadProblem, Resolved};
pub use images::{ImageRef, Images};
pub use rules::{
    Component, MAX_REVISION_NAME_LEN, RevisionNameError, SkewError, check_dataplane,
    check_inplace_move, revision_name,
};
pub use version::{ParseVersionError, Version};
