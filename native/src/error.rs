//! The crate's one error enum, turned into the Python exceptions of `ringdrop.errors` at the
//! boundary, so Python code sees a single exception tree.

use std::io;
use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::{import_exception, PyErr};

import_exception!(ringdrop.errors, IntegrityError);
import_exception!(ringdrop.errors, ProtocolError);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes did not match their hash; `group` is the 16 KiB chunk group, when known.
    #[error("{message}")]
    Integrity { message: String, group: Option<u64> },
    /// The peer's bytes are not a valid encoding (not a hash mismatch).
    #[error("{0}")]
    Protocol(String),
    /// A caller passed an argument that cannot be right.
    #[error("{0}")]
    Value(String),
    /// Every OS error is about a file, and says which: there is no variant without a path.
    #[error(transparent)]
    File(#[from] FileError),
    /// A Python callback raised; its exception is passed on unchanged.
    #[error(transparent)]
    Python(#[from] PyErr),
    /// The crate broke one of its own rules; never the fault of the caller or of the peer.
    #[error("internal error in ringdrop's native core: {0}")]
    Internal(String),
}

/// An OS error and the file it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn integrity(message: impl Into<String>, group: Option<u64>) -> Self {
        Error::Integrity {
            message: message.into(),
            group,
        }
    }

    /// Recovers the path of an I/O error that passed through a library as an `io::Error`
    /// tagged by [`tagged`].
    pub fn untag(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<FileError>()) {
            let inner = e.into_inner().expect("checked above");
            return Error::File(*inner.downcast::<FileError>().expect("checked above"));
        }
        Error::Internal(format!("an I/O error that names no file: {e}"))
    }
}

impl From<Error> for PyErr {
    fn from(e: Error) -> Self {
        match e {
            Error::Integrity { message, group } => IntegrityError::new_err((message, group)),
            Error::Protocol(message) => ProtocolError::new_err(message),
            Error::Value(message) => PyValueError::new_err(message),
            // OSError(errno, strerror, filename) picks the subclass (FileNotFoundError, …);
            // the name is a str, as in the OSErrors Python raises itself.
            Error::File(FileError { path, source }) => PyOSError::new_err((
                source.raw_os_error(),
                strerror(&source),
                path.into_os_string(),
            )),
            Error::Python(e) => e,
            e @ Error::Internal(_) => PyRuntimeError::new_err(e.to_string()),
        }
    }
}

/// Wraps an OS error with the file it concerns.
pub fn at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::File(FileError::new(path, e))
}

/// The same, kept inside an `io::Error` of the same kind, for errors that must pass through a
/// library's `io::Result` (it still sees `UnexpectedEof` as such); [`Error::untag`] unwraps it.
pub fn tagged(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), FileError::new(path, e))
}

impl FileError {
    fn new(path: &Path, source: io::Error) -> Self {
        FileError {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The OS's text for an error, without Rust's " (os error N)" suffix.
fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_tagged_through_io_keeps_its_path_and_kind() {
        let e = tagged(
            Path::new("/some/file"),
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        match Error::untag(e) {
            Error::File(FileError { path, source }) => {
                assert_eq!(path, Path::new("/some/file"));
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC));
            }
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn an_untagged_io_error_is_an_internal_error() {
        let e = io::Error::from(io::ErrorKind::InvalidData);
        assert!(matches!(Error::untag(e), Error::Internal(_)));
    }

    #[test]
    fn file_errors_name_their_file_and_keep_their_cause() {
        let e = at(Path::new("/d/x"))(io::Error::from_raw_os_error(libc::EACCES));
        assert!(e.to_string().starts_with("/d/x: Permission denied"), "{e}");
        let source = std::error::Error::source(&e).expect("a cause");
        assert!(source.downcast_ref::<io::Error>().is_some());
    }
}
