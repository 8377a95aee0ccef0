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

/// Run `f`; a panic inside becomes `Err` with a message saying it is a bug and asking for a
/// report (the bindings raise it as `densparse.InternalError`). Every check of user input
/// and file contents returns an [`Error`]: a panic is always a bug.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    // Unwind safety: callers hold no half-updated state they read afterwards; locks held
    // across the panic are poisoned, and the bindings recover a poisoned lock's data.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| bug_message(&*p))
}

/// The message for a panic with `payload` (`panic!` gives a `&str` or a `String`).
pub fn bug_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!(
        "internal error in densparse (this is a bug, not a problem with your input): {text}. \
         Please report it at https://github.com/densparse/densparse/issues with the call that raised it."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_panic_passes_values_and_turns_panics_into_bug_reports() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        let v = [1u32, 2, 3];
        let i = v.len() + 4;
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let index = catch_panic(|| v[i]);
        let text = catch_panic(|| -> u8 { panic!("a {} message", "formatted") });
        let other = catch_panic(|| std::panic::panic_any(42u8));
        // A panic inside a rayon pool comes back through the caller's closure too.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let pooled = catch_panic(|| pool.install(|| (0..4).map(|x| v[x]).sum::<u32>()));
        std::panic::set_hook(prev);
        let m = index.unwrap_err();
        assert!(m.starts_with("internal error in densparse (this is a bug"), "{m}");
        assert!(m.contains("the len is 3 but the index is 7"), "{m}");
        assert!(m.contains("Please report it"), "{m}");
        assert!(text.unwrap_err().contains("a formatted message"));
        assert!(other.unwrap_err().contains("(no message)"));
        assert!(pooled.unwrap_err().contains("the len is 3 but the index is 3"));
    }
}
