//! Revision naming and version skew rules (DESIGN.md, decision 2).

use std::fmt;

use crate::version::Version;

/// A data-plane component whose version is checked against the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The `IstioCNI` resource (istio-cni node agent).
    IstioCni,
    /// The `ZTunnel` resource (ztunnel node proxy).
    ZTunnel,
}

impl Component {
    /// The oldest Istio version the component exists in: 1.24 for ZTunnel (ambient mode did
    /// not exist before), none for IstioCNI.
    pub const fn minimum(self) -> Option<Version> {
        match self {
            Self::IstioCni => None,
            Self::ZTunnel => Some(Version::new(1, 24, 0)),
        }
    }

    /// Whether the component can run `version` (any patch of the minimum minor counts).
    pub fn supports(self, version: &Version) -> bool {
        self.minimum()
            .is_none_or(|min| version.minor_key() >= min.minor_key())
    }
}

/// The Kubernetes kind: `IstioCNI` or `ZTunnel`.
impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::IstioCni => "IstioCNI",
            Self::ZTunnel => "ZTunnel",
        })
    }
}

/// The longest revision name: the istiod Service `istiod-<revision>` must stay a DNS label of
/// at most 63 characters.
pub const MAX_REVISION_NAME_LEN: usize = 63 - "istiod-".len();

/// A revision name that Kubernetes would not accept in the objects derived from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevisionNameError {
    /// Longer than [`MAX_REVISION_NAME_LEN`].
    #[error(
        "revision name {name:?} is {} characters long, but at most {MAX_REVISION_NAME_LEN} fit in the \
         istiod Service name istiod-<revision>; use a shorter Istio name",
        .name.len()
    )]
    TooLong {
        /// The computed revision name.
        name: String,
    },
    /// Not a DNS-1123 label.
    #[error(
        "revision name {name:?} is not a DNS-1123 label (lowercase letters, digits and '-', \
         starting and ending with a letter or digit)"
    )]
    Invalid {
        /// The computed revision name.
        name: String,
    },
}

/// The name of the `IstioRevision` an `Istio` named `istio_name` gets.
///
/// InPlace: the Istio's name. RevisionBased: `<name>-v<major>-<minor>-<patch>` from the
/// *resolved* version, so `default` on `v1.26-latest` resolving to 1.26.4 gives
/// `default-v1-26-4`, and an alias moving to a new patch creates a new revision. The result
/// must be a DNS-1123 label of at most [`MAX_REVISION_NAME_LEN`] characters.
pub fn revision_name(
    istio_name: &str,
    revision_based: bool,
    resolved: &Version,
) -> Result<String, RevisionNameError> {
    let name = if revision_based {
        format!("{istio_name}-v{}", resolved.dashed())
    } else {
        istio_name.to_owned()
    };
    let label = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    if name.len() > MAX_REVISION_NAME_LEN {
        Err(RevisionNameError::TooLong { name })
    } else if !bytes.first().is_some_and(|&b| label(b))
        || !bytes.last().is_some_and(|&b| label(b))
        || !bytes.iter().all(|&b| label(b) || b == b'-')
    {
        Err(RevisionNameError::Invalid { name })
    } else {
        Ok(name)
    }
}

/// A version change or combination that the skew rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkewError {
    /// An InPlace update that changes the major version.
    #[error(
        "cannot update InPlace from {from} to {to}: InPlace updates cannot change the major \
         version; use the RevisionBased strategy"
    )]
    MajorChange {
        /// Current version.
        from: Version,
        /// Requested version.
        to: Version,
    },
    /// An InPlace update by more than one minor version.
    #[error(
        "cannot update InPlace from {from} to {to}: InPlace moves at most one minor version at a \
         time; move to {} first, or use the RevisionBased strategy",
        step(.from, .to)
    )]
    MinorJump {
        /// Current version.
        from: Version,
        /// Requested version.
        to: Version,
    },
    /// A data plane newer than its control plane.
    #[error(
        "{component} {data_plane} is newer than the control plane {control_plane}: the data plane \
         must not run a newer minor version than istiod; update the Istio control plane to {} \
         first, or keep {component} at {}",
        .data_plane.series(),
        .control_plane.series()
    )]
    DataPlaneNewer {
        /// IstioCNI or ZTunnel.
        component: Component,
        /// Version of the Istio control plane.
        control_plane: Version,
        /// Version of the component.
        data_plane: Version,
    },
    /// A data plane more than one minor version older than its control plane.
    #[error(
        "{component} {data_plane} is more than one minor version older than the control plane \
         {control_plane}: {component} 1.x works only with istiod 1.x and 1.x+1; move {component} \
         to {} first",
        step(.data_plane, .control_plane)
    )]
    DataPlaneTooOld {
        /// IstioCNI or ZTunnel.
        component: Component,
        /// Version of the Istio control plane.
        control_plane: Version,
        /// Version of the component.
        data_plane: Version,
    },
}

/// The next minor series on the way from `from` to `to`, e.g. `v1.27.x`.
fn step(from: &Version, to: &Version) -> String {
    if from.major != to.major {
        return to.series();
    }
    let minor = if to.minor > from.minor {
        from.minor + 1
    } else {
        from.minor - 1
    };
    Version::new(from.major, minor, 0).series()
}

/// Checks an InPlace update: any patch change, and at most one minor version up or down
/// within the same major version.
pub fn check_inplace_move(from: &Version, to: &Version) -> Result<(), SkewError> {
    let (from, to) = (from.clone(), to.clone());
    if from.major != to.major {
        Err(SkewError::MajorChange { from, to })
    } else if from.minor.abs_diff(to.minor) > 1 {
        Err(SkewError::MinorJump { from, to })
    } else {
        Ok(())
    }
}

/// Checks a data-plane component against the control plane: the same minor version (any
/// patch), or exactly one minor version older.
pub fn check_dataplane(
    component: Component,
    control_plane: &Version,
    data_plane: &Version,
) -> Result<(), SkewError> {
    let one_older = data_plane.major == control_plane.major
        && data_plane.minor.checked_add(1) == Some(control_plane.minor);
    let (control_plane, data_plane) = (control_plane.clone(), data_plane.clone());
    if data_plane.minor_key() > control_plane.minor_key() {
        Err(SkewError::DataPlaneNewer {
            component,
            control_plane,
            data_plane,
        })
    } else if data_plane.minor_key() < control_plane.minor_key() && !one_older {
        Err(SkewError::DataPlaneTooOld {
            component,
            control_plane,
            data_plane,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn inplace_revision_is_the_istio_name() {
        assert_eq!(
            revision_name("default", false, &v("v1.26.4")).as_deref(),
            Ok("default")
        );
        assert_eq!(
            revision_name("my-mesh", false, &v("v1.31.0-beta.1")).as_deref(),
            Ok("my-mesh")
        );
    }

    #[test]
    fn revision_based_name_uses_the_resolved_version() {
        assert_eq!(
            revision_name("default", true, &v("v1.26.4")).as_deref(),
            Ok("default-v1-26-4")
        );
        assert_eq!(
            revision_name("default", true, &v("v1.28.10")).as_deref(),
            Ok("default-v1-28-10")
        );
        assert_eq!(
            revision_name("default", true, &v("v1.31.0-beta.1")).as_deref(),
            Ok("default-v1-31-0-beta-1")
        );
    }

    #[test]
    fn revision_names_must_fit() {
        let version = v("v1.26.4");
        // 48 + "-v1-26-4" (8) = 56 characters: fits.
        let ok = "a".repeat(48);
        assert_eq!(
            revision_name(&ok, true, &version).map(|n| n.len()),
            Ok(MAX_REVISION_NAME_LEN)
        );
        let long = "a".repeat(49);
        let err = revision_name(&long, true, &version).unwrap_err();
        assert_eq!(
            err,
            RevisionNameError::TooLong {
                name: format!("{long}-v1-26-4")
            }
        );
        assert!(
            err.to_string()
                .contains("is 57 characters long, but at most 56 fit"),
            "{err}"
        );
        assert!(revision_name(&"b".repeat(56), false, &version).is_ok());
        assert!(matches!(
            revision_name(&"b".repeat(57), false, &version),
            Err(RevisionNameError::TooLong { .. })
        ));
    }

    #[test]
    fn revision_names_must_be_labels() {
        let version = v("v1.26.4");
        for bad in ["", "Default", "my.mesh", "-mesh", "mesh-", "mesh_1", "mésh"] {
            assert_eq!(
                revision_name(bad, false, &version),
                Err(RevisionNameError::Invalid {
                    name: bad.to_owned()
                }),
                "{bad:?}"
            );
        }
        assert_eq!(
            revision_name("my.mesh", true, &version),
            Err(RevisionNameError::Invalid {
                name: "my.mesh-v1-26-4".to_owned()
            })
        );
        assert!(revision_name("1mesh", false, &version).is_ok());
    }

    #[test]
    fn inplace_allows_patches_and_one_minor_either_way() {
        for (from, to) in [
            ("v1.26.3", "v1.26.8"),
            ("v1.26.8", "v1.26.3"),
            ("v1.26.3", "v1.26.3"),
            ("v1.26.8", "v1.27.0"),
            ("v1.27.0", "v1.26.8"),
            ("v1.30.3", "v1.31.0-beta.1"),
        ] {
            assert_eq!(
                check_inplace_move(&v(from), &v(to)),
                Ok(()),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn inplace_refuses_minor_jumps() {
        let err = check_inplace_move(&v("v1.26.3"), &v("v1.28.1")).unwrap_err();
        assert_eq!(
            err,
            SkewError::MinorJump {
                from: v("v1.26.3"),
                to: v("v1.28.1")
            }
        );
        assert_eq!(
            err.to_string(),
            "cannot update InPlace from v1.26.3 to v1.28.1: InPlace moves at most one minor version at a \
             time; move to v1.27.x first, or use the RevisionBased strategy"
        );
        let down = check_inplace_move(&v("v1.29.0"), &v("v1.26.8")).unwrap_err();
        assert!(
            down.to_string().contains("from v1.29.0 to v1.26.8")
                && down.to_string().contains("move to v1.28.x first"),
            "{down}"
        );
    }

    #[test]
    fn inplace_refuses_major_changes() {
        for (from, to) in [
            ("v1.30.3", "v2.0.0"),
            ("v2.0.0", "v1.30.3"),
            ("v1.0.0", "v2.0.0"),
        ] {
            let err = check_inplace_move(&v(from), &v(to)).unwrap_err();
            assert_eq!(
                err,
                SkewError::MajorChange {
                    from: v(from),
                    to: v(to)
                }
            );
            assert!(err.to_string().contains(&format!(
                "from {from} to {to}: InPlace updates cannot change the major"
            )));
        }
    }

    #[test]
    fn dataplane_may_match_or_trail_by_one_minor() {
        for component in [Component::IstioCni, Component::ZTunnel] {
            for (cp, dp) in [
                ("v1.27.2", "v1.27.2"),
                ("v1.27.2", "v1.27.9"), // newer patch of the same minor
                ("v1.27.9", "v1.27.0"),
                ("v1.27.0", "v1.26.8"),
                ("v1.31.0-beta.1", "v1.30.3"),
            ] {
                assert_eq!(
                    check_dataplane(component, &v(cp), &v(dp)),
                    Ok(()),
                    "{component} cp {cp} dp {dp}"
                );
            }
        }
    }

    #[test]
    fn dataplane_must_not_be_newer() {
        let err = check_dataplane(Component::ZTunnel, &v("v1.26.3"), &v("v1.27.0")).unwrap_err();
        assert_eq!(
            err,
            SkewError::DataPlaneNewer {
                component: Component::ZTunnel,
                control_plane: v("v1.26.3"),
                data_plane: v("v1.27.0")
            }
        );
        assert_eq!(
            err.to_string(),
            "ZTunnel v1.27.0 is newer than the control plane v1.26.3: the data plane must not run a newer \
             minor version than istiod; update the Istio control plane to v1.27.x first, or keep ZTunnel at v1.26.x"
        );
        assert!(matches!(
            check_dataplane(Component::IstioCni, &v("v1.30.3"), &v("v2.0.0")),
            Err(SkewError::DataPlaneNewer { .. })
        ));
    }

    #[test]
    fn dataplane_must_not_trail_by_more_than_one_minor() {
        let err = check_dataplane(Component::IstioCni, &v("v1.28.1"), &v("v1.26.8")).unwrap_err();
        assert_eq!(
            err,
            SkewError::DataPlaneTooOld {
                component: Component::IstioCni,
                control_plane: v("v1.28.1"),
                data_plane: v("v1.26.8")
            }
        );
        assert_eq!(
            err.to_string(),
            "IstioCNI v1.26.8 is more than one minor version older than the control plane v1.28.1: IstioCNI \
             1.x works only with istiod 1.x and 1.x+1; move IstioCNI to v1.27.x first"
        );
        let major = check_dataplane(Component::ZTunnel, &v("v2.0.0"), &v("v1.30.3")).unwrap_err();
        assert!(matches!(major, SkewError::DataPlaneTooOld { .. }));
        assert!(
            major.to_string().ends_with("move ZTunnel to v2.0.x first"),
            "{major}"
        );
    }

    #[test]
    fn ztunnel_needs_1_24() {
        assert!(!Component::ZTunnel.supports(&v("v1.23.6")));
        assert!(Component::ZTunnel.supports(&v("v1.24.0")));
        assert!(Component::ZTunnel.supports(&v("v1.24.0-beta.1")));
        assert!(Component::IstioCni.supports(&v("v1.21.6")));
        assert_eq!(Component::ZTunnel.to_string(), "ZTunnel");
        assert_eq!(Component::IstioCni.to_string(), "IstioCNI");
    }
}
