//! Labels: the ones every mizzen object carries (including the inventory label the
//! controllers prune by), the Istio labels of each component, and label-value checks.

use std::collections::BTreeMap;

use crate::RenderError;

/// A label or annotation map, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// `app.kubernetes.io/managed-by`, set to [`MANAGED_BY`] on every object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "mizzen";
/// `app.kubernetes.io/part-of`, set to `istio` on every object.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// `app.kubernetes.io/version`, set to the bare Istio version (`1.27.3`) on every object.
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";
/// The inventory label: its value names the custom resource that owns the object
/// (see [`Owner`]). The controllers list by it and delete what a render no longer produces.
pub const INVENTORY_LABEL: &str = "mizzen.io/owner";

/// Istio's revision label (on webhooks, Services, istiod pods, istio-cni objects).
pub(crate) const REV_LABEL: &str = "istio.io/rev";
/// Istio's revision tag label.
pub(crate) const TAG_LABEL: &str = "istio.io/tag";
/// Keeps pods of the mesh itself out of ambient enrolment.
pub(crate) const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// Keeps pods of the mesh itself out of sidecar injection.
pub(crate) const INJECT_LABEL: &str = "sidecar.istio.io/inject";
/// The operator component label Istio's tooling reads.
pub(crate) const COMPONENT_LABEL: &str = "operator.istio.io/component";
/// `app.kubernetes.io/name`.
pub(crate) const NAME_LABEL: &str = "app.kubernetes.io/name";

/// The custom resource that owns rendered objects, e.g. `IstioRevision/default`.
///
/// Its label value is `<kind>.<name>` in lower case (`istiorevision.default`). A value longer
/// than the 63 characters a label allows is shortened deterministically: a prefix, `-`, and
/// 16 hex digits of a hash of the full value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    kind: String,
    name: String,
}

impl Owner {
    /// The owner `kind`/`name`, e.g. `Owner::new("IstioRevision", "default")`.
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
        }
    }

    /// An `Istio`.
    pub fn istio(name: &str) -> Self {
        Self::new("Istio", name)
    }

    /// An `IstioRevision`.
    pub fn istio_revision(name: &str) -> Self {
        Self::new("IstioRevision", name)
    }

    /// An `IstioRevisionTag`.
    pub fn istio_revision_tag(name: &str) -> Self {
        Self::new("IstioRevisionTag", name)
    }

    /// An `IstioCNI`.
    pub fn istio_cni(name: &str) -> Self {
        Self::new("IstioCNI", name)
    }

    /// A `ZTunnel`.
    pub fn ztunnel(name: &str) -> Self {
        Self::new("ZTunnel", name)
    }

    /// The owner's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The owner's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of [`INVENTORY_LABEL`] for this owner.
    pub fn label_value(&self) -> String {
        let full = format!("{}.{}", self.kind, self.name).to_lowercase();
        if is_label_value(&full) {
            return full;
        }
        shorten(&full)
    }

    /// The inventory label as a key/value pair.
    pub fn label(&self) -> (&'static str, String) {
        (INVENTORY_LABEL, self.label_value())
    }

    /// A label selector (`mizzen.io/owner=<value>`) that lists every object of this owner.
    pub fn selector(&self) -> String {
        format!("{INVENTORY_LABEL}={}", self.label_value())
    }
}

/// A label selector matching every object mizzen manages, of any owner.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY}")
}

/// Shortens `value` to a valid label value: alphanumeric prefix, `-`, 16 hex digits of hash.
fn shorten(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let prefix =
        cleaned[..cleaned.len().min(46)].trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let prefix = if prefix.is_empty() { "owner" } else { prefix };
    format!("{prefix}-{:016x}", fnv1a(value.as_bytes()))
}

/// FNV-1a, 64 bits: small, stable across releases and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether `value` is a valid label value: at most 63 characters of `[A-Za-z0-9-_.]`,
/// beginning and ending with an alphanumeric character (or empty).
pub(crate) fn is_label_value(value: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && alnum(value.chars().next())
            && alnum(value.chars().last()))
}

/// Checks that `value` can be used as a label value (and therefore in object names).
pub(crate) fn check_label_value(what: &'static str, value: &str) -> Result<(), RenderError> {
    if !value.is_empty() && is_label_value(value) {
        return Ok(());
    }
    Err(RenderError::InvalidInput {
        what,
        value: value.to_owned(),
        message: "must be 1 to 63 characters of [A-Za-z0-9-_.], starting and ending with a letter or digit".into(),
    })
}

/// A label map from fixed pairs.
pub(crate) fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `user` labels with `fixed` on top: user values never replace the labels selectors and
/// Istio depend on.
pub(crate) fn with_user(fixed: Labels, user: Option<&Labels>) -> Labels {
    let mut out = user.cloned().unwrap_or_default();
    out.extend(fixed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_label_is_kind_dot_name_in_lower_case() {
        let owner = Owner::istio_revision("Default-v1-27-3");
        assert_eq!(owner.label_value(), "istiorevision.default-v1-27-3");
        assert_eq!(owner.label(), (INVENTORY_LABEL, owner.label_value()));
        assert_eq!(
            owner.selector(),
            "mizzen.io/owner=istiorevision.default-v1-27-3"
        );
        assert_eq!(managed_selector(), "app.kubernetes.io/managed-by=mizzen");
    }

    #[test]
    fn long_owner_labels_are_shortened_stably() {
        let owner = Owner::istio_revision(&"a".repeat(80));
        let value = owner.label_value();
        assert!(is_label_value(&value), "{value}");
        assert_eq!(value, owner.label_value());
        assert_ne!(value, Owner::istio_revision(&"a".repeat(81)).label_value());
        assert!(is_label_value(
            &Owner::new("", "é".repeat(70)).label_value()
        ));
    }

    #[test]
    fn label_values_are_checked() {
        assert!(is_label_value("default-v1-27-3"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-a"));
        assert!(!is_label_value("a/b"));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(check_label_value("revision name", "").is_err());
    }

    #[test]
    fn fixed_labels_win_over_user_labels() {
        let user = labels([("app", "mine"), ("team", "a")]);
        let merged = with_user(labels([("app", "istiod")]), Some(&user));
        assert_eq!(merged, labels([("app", "istiod"), ("team", "a")]));
    }
}
