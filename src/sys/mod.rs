//! Traced wrappers over nix: every system call a lesson makes, one file per man-page family.
//!
//! - `socket`: socket, socketpair, bind, listen, accept4, connect, shutdown, names, options;
//! - `io`: send/recv (sendto/recvfrom in the kernel), sendto, recvfrom, read, write;
//! - `msg`: sendmsg/recvmsg, passing descriptors between processes (SCM_RIGHTS);
//! - `fd`: close, fcntl (O_NONBLOCK), dup, pipe2, the descriptor limit;
//! - `fs`: unlink, for the file an AF_UNIX socket's bind made;
//! - `select`, `poll`, `epoll`: the three ways to wait for many descriptors, and their
//!   variants with a signal mask (pselect, ppoll, epoll_pwait);
//! - `signal`: sigaction, sigprocmask, kill, signalfd, setitimer; `process`: fork and wait;
//! - `netdb`: getaddrinfo, a libc function rather than a syscall: its own syscalls are staged.
//!
//! Each function makes its nix call through `trace::syscall` (or `trace::syscall_into`), the
//! one place a record is made. Creators return `OwnedFd`; everything else takes `AsFd`.
//! Names are C's.

pub mod epoll;
pub mod fd;
pub mod fs;
pub mod io;
pub mod msg;
pub mod netdb;
pub mod poll;
pub mod process;
pub mod select;
pub mod signal;
pub mod socket;

pub use fd::*;
pub use fs::*;
pub use io::*;
pub use msg::*;
pub use process::*;
pub use signal::*;
pub use socket::*;

pub use nix::Result;
pub use nix::errno::Errno;

use std::os::fd::{AsFd, AsRawFd, RawFd};

/// The number behind a descriptor, as a syscall sees it.
pub(crate) fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}
