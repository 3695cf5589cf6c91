//! The platform a component runs on.

/// The platform mizzen renders for. The controller detects it (OpenShift has the
/// `config.openshift.io` API); a `global.platform: openshift` value also selects OpenShift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Platform {
    /// Any conformant Kubernetes.
    #[default]
    Kubernetes,
    /// OpenShift: multus CNI configuration, SCCs, SELinux `spc_t`.
    OpenShift,
}

impl Platform {
    /// The `global.platform` value of this platform (`None` on plain Kubernetes).
    pub fn value_name(self) -> Option<&'static str> {
        match self {
            Self::Kubernetes => None,
            Self::OpenShift => Some("openshift"),
        }
    }

    /// The profile applied when the user chose none (`openshift` on OpenShift).
    pub fn default_profile(self) -> Option<&'static str> {
        self.value_name()
    }

    /// The platform in effect when values say `global.platform` (which wins when set).
    pub(crate) fn with_value(self, global_platform: Option<&str>) -> Self {
        match global_platform.filter(|p| !p.is_empty()) {
            Some("openshift") => Self::OpenShift,
            Some(_) => Self::Kubernetes,
            None => self,
        }
    }

    /// The `global.platform` string in effect: the value when set, else this platform's.
    pub(crate) fn name_with_value(self, global_platform: Option<&str>) -> Option<String> {
        global_platform
            .filter(|p| !p.is_empty())
            .or(self.value_name())
            .map(str::to_owned)
    }
}
