//! The crate's error type.

use std::path::PathBuf;

/// Why a cluster could not be located, started, used or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The control-plane binaries could not be found or built.
    #[error("cluster binaries: {0}")]
    Binaries(String),

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Generating the cluster's certificates or keys failed.
    #[error("generating certificates: {0}")]
    Certificates(#[from] rcgen::Error),

    /// A component exited early or did not become ready in time.
    #[error(
        "{component} {problem}\n  log: {log}\n  state directory kept: {dir}\n  last lines of the log:\n{tail}",
        log = log.display(),
        dir = dir.display()
    )]
    Component {
        /// The component (`etcd`, `kube-apiserver`, ..., or `cluster` for cluster-wide waits).
        component: String,
        /// What went wrong.
        problem: String,
        /// The component's log file.
        log: PathBuf,
        /// The state directory, kept for inspection.
        dir: PathBuf,
        /// The last lines of the log file.
        tail: String,
    },

    /// The state directory is unusable (for example a cluster is already running in it).
    #[error("state directory {dir}: {problem}", dir = dir.display())]
    StateDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        problem: String,
    },

    /// Reading the generated kubeconfig failed.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),

    /// A Kubernetes API call failed.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The crate's result type.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;
