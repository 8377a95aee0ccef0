//! The one way the bindings run core code without the GIL: [`Guarded::guarded`]
//! releases the GIL (as `Python::allow_threads`) and turns a Rust panic into
//! `densparse.InternalError`, an ordinary `Exception` (a `RuntimeError`), instead
//! of PyO3's `PanicException`, which derives from `BaseException` and so escapes
//! `except Exception` in a user's service. `clippy.toml` in this crate forbids
//! `allow_threads` itself, so no binding can release the GIL around core code
//! without the guard. The panic-to-message part is `densparse_core::error::catch_panic`
//! (tested there).

use densparse_core::error::catch_panic;
use pyo3::create_exception;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

create_exception!(
    _core,
    InternalError,
    PyRuntimeError,
    "An internal error (a bug) in densparse: a check inside the Rust core failed.\n    Please report it with the call that raised it."
);

/// `Python::allow_threads` with the panic guard.
pub trait Guarded {
    /// Release the GIL, run `f`, take the GIL back; a panic becomes `InternalError`.
    fn guarded<T: Send, F: Send + FnOnce() -> T>(self, f: F) -> PyResult<T>;
}

impl Guarded for Python<'_> {
    #[inline]
    fn guarded<T: Send, F: Send + FnOnce() -> T>(self, f: F) -> PyResult<T> {
        #[allow(clippy::disallowed_methods)] // the one permitted call
        self.allow_threads(|| catch_panic(f)).map_err(InternalError::new_err)
    }
}
