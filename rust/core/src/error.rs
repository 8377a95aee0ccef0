//! One error type for the core; the Python layer maps each kind to an exception.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad argument or input from the caller (-> ValueError).
    #[error("{0}")]
    Invalid(String),
    /// A file that is not ours, truncated, or fails its checksum (-> ValueError, "corrupt").
    #[error("{path}: {msg}")]
    Corrupt { path: PathBuf, msg: String },
    /// Operating-system error with the file it concerns (-> OSError).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    pub fn corrupt(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
