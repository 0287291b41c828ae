//! Errors of a reconcile. Each carries what the user must do and a condition reason.

use crate::db::DbError;
use crate::placement::PlacementError;
use crate::secrets::SecretError;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A region database failed.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The tenant cannot be placed.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// A referenced object does not exist or is not usable.
    #[error("{message}")]
    Reference {
        /// Condition reason.
        reason: &'static str,
        /// What to fix.
        message: String,
    },
    /// The spec asks for something this version does not do yet.
    #[error("{0} is not implemented yet in this operator version")]
    NotImplemented(&'static str),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl Error {
    /// The condition reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesAPIError",
            Error::Database(e) => e.reason(),
            Error::Secret(SecretError::NotFound { .. }) => "SecretNotFound",
            Error::Secret(SecretError::MissingKey { .. }) => "SecretKeyMissing",
            Error::Secret(_) => "SecretError",
            Error::Placement(e) => e.reason(),
            Error::Reference { reason, .. } => reason,
            Error::NotImplemented(_) => "NotImplemented",
            Error::Finalizer(_) => "FinalizerError",
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        use kube::runtime::finalizer::Error as F;
        match e {
            F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner,
            other => Error::Finalizer(other.to_string()),
        }
    }
}
