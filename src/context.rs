//! Errors as one line: what was being done, then what went wrong, named as strace names it.

use std::fmt::Display;

/// Adds what was being done to an error: `bind 127.0.0.1:7000: EADDRINUSE: Address already in use`.
pub trait Context<T> {
    /// # Errors
    /// The original error with `what` in front.
    fn context(self, what: impl Display) -> Result<T, String>;
}

impl<T, E: Display + 'static> Context<T> for Result<T, E> {
    fn context(self, what: impl Display) -> Result<T, String> {
        self.map_err(|e| {
            // nix says "EAGAIN: Try again"; say what strace and glibc say.
            match (&e as &dyn std::any::Any).downcast_ref::<nix::errno::Errno>() {
                Some(errno) => format!(
                    "{what}: {}",
                    crate::trace::render::error(*errno).trim_start_matches("-1 ")
                ),
                None => format!("{what}: {e}"),
            }
        })
    }
}
