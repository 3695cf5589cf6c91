//! mizzen-render: pure functions from (values, version, platform, catalog images) to the
//! Kubernetes objects of Istio in ambient mode. No Helm and no Kubernetes client: the
//! controllers apply the returned [`Object`]s with server-side apply and prune, by the
//! inventory label ([`Owner`], [`INVENTORY_LABEL`]), what a render no longer returns.
//!
//! - [`revision_values`], [`cni_values`], [`ztunnel_values`]: the values pipeline
//!   (defaults, profiles, platform, user values).
//! - [`render_revision`]: istiod of one revision; [`render_tag`]: a revision tag;
//!   [`render_base`]: the default validator and the reader ServiceAccount;
//!   [`render_istio_crds`]: the Istio CRDs.
//! - [`render_cni`]: the istio-cni node agent; [`render_ztunnel`]: ztunnel.
//!
//! Every object carries `app.kubernetes.io/managed-by: mizzen`,
//! `app.kubernetes.io/part-of: istio`, `app.kubernetes.io/version: <X.Y.Z>` and
//! `mizzen.io/owner: <kind>.<name>`. Output is deterministic: maps are sorted and objects
//! come in apply order (CRDs, then ServiceAccounts, RBAC and ConfigMaps, then Services and
//! workloads, then autoscalers, budgets and webhooks).
//!
//! Values that only exist from some Istio minor on appear in the built-in defaults of that
//! minor; a value a user sets always reaches the objects, whatever the minor.
//!
//! ```
//! use mizzen_catalog::Catalog;
//! use mizzen_render::{Owner, Platform, RevisionInput, RevisionValuesInput, render_revision, revision_values};
//!
//! let resolved = Catalog::embedded()?.resolve("v1.27.3")?;
//! let values = revision_values(&RevisionValuesInput {
//!     values: None,
//!     profile: Some("ambient"),
//!     platform: Platform::Kubernetes,
//!     revision: "default",
//!     namespace: "istio-system",
//!     version: &resolved.version,
//! })?;
//! let objects = render_revision(&RevisionInput {
//!     owner: Owner::istio_revision("default"),
//!     revision: "default".into(),
//!     namespace: "istio-system".into(),
//!     version: resolved.version,
//!     values,
//!     images: resolved.images,
//!     platform: Platform::Kubernetes,
//!     custom_hosts: vec![],
//! })?;
//! let istiod = objects.iter().find(|o| o.kind() == "Deployment").unwrap();
//! assert_eq!(istiod.key(), "apps/Deployment/istio-system/istiod");
//! assert_eq!(istiod.label("mizzen.io/owner"), Some("istiorevision.default"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod base;
mod cni;
mod error;
mod image;
mod istiod;
mod json;
mod labels;
mod names;
mod object;
mod platform;
mod pod;
mod rbac;
mod tag;
mod values;
mod webhooks;
mod ztunnel;

pub use base::{render_base, render_istio_crds};
pub use cni::{CniInput, render_cni};
pub use error::RenderError;
pub use istiod::{RevisionInput, render_revision};
pub use labels::{
    INVENTORY_LABEL, Labels, MANAGED_BY, MANAGED_BY_LABEL, Owner, PART_OF_LABEL, VERSION_LABEL,
    managed_selector,
};
pub use names::{helm_revision, istiod_address};
pub use object::{Object, to_yaml};
pub use platform::Platform;
pub use tag::render_tag;
pub use values::{
    CniValuesInput, RevisionValuesInput, ZTunnelValuesInput, cni_values, revision_values,
    ztunnel_values,
};
pub use ztunnel::{MeshSettings, ZTunnelInput, render_ztunnel};
