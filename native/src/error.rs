//! The crate's one error enum, turned into the Python exceptions of `ringdrop.errors` at the
//! boundary, so Python code sees a single exception tree.

use std::io;
use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::{import_exception, PyErr};

import_exception!(ringdrop.errors, IntegrityError);
import_exception!(ringdrop.errors, ProtocolError);

#[derive(Debug)]
pub enum Error {
    /// Bytes did not match their hash; `group` is the 16 KiB chunk group, when known.
    Integrity {
        message: String,
        group: Option<u64>,
    },
    /// The peer's bytes are not a valid encoding (not a hash mismatch).
    Protocol(String),
    /// A caller passed an argument that cannot be right.
    Value(String),
    Io(io::Error),
    /// An OS error about a named file: becomes the matching OSError subclass with `filename`.
    File(io::Error, PathBuf),
    /// A Python callback raised; its exception is passed on unchanged.
    Python(PyErr),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn integrity(message: impl Into<String>, group: Option<u64>) -> Self {
        Error::Integrity {
            message: message.into(),
            group,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<PyErr> for Error {
    fn from(e: PyErr) -> Self {
        Error::Python(e)
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> Self {
        match e {
            Error::Integrity { message, group } => IntegrityError::new_err((message, group)),
            Error::Protocol(message) => ProtocolError::new_err(message),
            Error::Value(message) => PyValueError::new_err(message),
            // pyo3 keeps the OS error's subclass (FileNotFoundError, …) and errno.
            Error::Io(e) => PyErr::from(e),
            Error::File(e, path) => match e.raw_os_error() {
                // OSError(errno, strerror, filename) picks the subclass (FileNotFoundError, …).
                Some(errno) => PyOSError::new_err((errno, strerror(&e), path)),
                None => PyErr::from(e),
            },
            Error::Python(e) => e,
        }
    }
}

/// Wraps an OS error with the file it concerns, for messages that say which file.
pub fn at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::File(e, path.to_path_buf())
}

/// The OS's text for an error, without Rust's " (os error N)" suffix.
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}
