//! The error type of every render function.

/// Why a render could not produce objects. Every variant describes invalid input; none is
/// retried by the controllers, because the same input gives the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A value in `spec.values` has the wrong shape or content, e.g. `meshConfig: "x"`.
    #[error("invalid value at `{path}`: {message}")]
    InvalidValue {
        /// Dotted path of the value, e.g. `pilot.topologySpreadConstraints`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// An argument of the render call is not acceptable, e.g. a revision name that is not a
    /// valid label value.
    #[error("invalid {what} {value:?}: {message}")]
    InvalidInput {
        /// Which input, e.g. `revision name`.
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why it is rejected.
        message: String,
    },
    /// A profile name mizzen does not know.
    #[error("unknown profile {name:?}; expected one of {expected}")]
    UnknownProfile {
        /// The rejected profile.
        name: String,
        /// The accepted profiles, comma-separated.
        expected: String,
    },
    /// An object could not be turned into JSON or YAML (a bug, not an input problem).
    #[error("cannot serialize {what}: {message}")]
    Serialize {
        /// What was being serialized.
        what: String,
        /// The serializer's message.
        message: String,
    },
}

impl RenderError {
    /// An [`RenderError::InvalidValue`] at `path`.
    pub(crate) fn value(path: impl Into<String>, message: impl ToString) -> Self {
        Self::InvalidValue {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// A [`RenderError::Serialize`] for `what`.
    pub(crate) fn serialize(what: impl Into<String>, message: impl ToString) -> Self {
        Self::Serialize {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
