//! Names in the filesystem: unlink, for the file an AF_UNIX socket's bind made.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::trace::{self, Args, Finish, Spec};

/// `unlink(path)`: removes a name from its directory.
///
/// For an AF_UNIX socket's file: bind made it, close leaves it, and bind will not reuse it
/// (`EADDRINUSE`) until it is unlinked. A socket bound to it keeps working; only its name is gone.
///
/// # Errors
/// `ENOENT` (no such name), `EACCES`, `EISDIR`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/unlink.2.html>, <https://man7.org/linux/man-pages/man7/unix.7.html>
pub fn unlink(path: impl AsRef<Path>) -> nix::Result<()> {
    let path = path.as_ref();
    trace::syscall(
        &Spec::new("unlink"),
        || Args::new().path(path.as_os_str().as_bytes()),
        || nix::unistd::unlink(path),
        Finish::of,
    )
}
