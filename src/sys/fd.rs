//! Descriptors themselves: close, fcntl flags (O_NONBLOCK), dup, pipes, and how many we may hold.

use std::os::fd::{AsFd, IntoRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::resource::{Resource, getrlimit as nix_getrlimit, setrlimit as nix_setrlimit};

use super::raw;
use crate::trace::{self, Args, Finish, Piece, Spec, context, render};

/// `close(fd)`: gives the descriptor back. Takes the `OwnedFd`, so it cannot be closed twice.
///
/// # Errors
/// `EINTR`, `EIO`; the descriptor is gone even then (on Linux).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/close.2.html>
pub fn close(fd: OwnedFd) -> nix::Result<()> {
    let number = raw(&fd);
    trace::syscall(
        &Spec::new("close"),
        || Args::new().fd(number),
        || nix::unistd::close(fd.into_raw_fd()),
        // What closing does depends on what the descriptor was: FIN, a reset queue, nothing.
        |result| Finish::of(result).noted_as(context::table().closed(number)),
    )
}

const OPEN_FLAGS: &trace::pieces::FlagTable = &[
    (libc::O_APPEND as i64, "O_APPEND"),
    (libc::O_NONBLOCK as i64, "O_NONBLOCK"),
    (libc::O_DSYNC as i64, "O_DSYNC"),
    (libc::O_ASYNC as i64, "O_ASYNC"),
    (libc::O_DIRECT as i64, "O_DIRECT"),
    (libc::O_LARGEFILE as i64, "O_LARGEFILE"),
    (libc::O_NOATIME as i64, "O_NOATIME"),
];

/// `O_RDWR|O_NONBLOCK`: the access mode first, then the other flags.
fn open_flags(bits: i32) -> String {
    let access = match bits & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        _ => "O_RDWR",
    };
    let rest = (bits & !libc::O_ACCMODE) as i64;
    if rest == 0 {
        access.to_string()
    } else {
        format!("{access}|{}", render::flags(rest, OPEN_FLAGS))
    }
}

/// `fcntl(fd, F_GETFL)`: the file status flags, O_NONBLOCK among them.
///
/// # Errors
/// `EBADF`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/fcntl.2.html>
pub fn fcntl_getfl(fd: impl AsFd) -> nix::Result<OFlag> {
    trace::syscall(
        &Spec::new("fcntl"),
        || Args::new().fd(raw(&fd)).text("F_GETFL"),
        || nix::fcntl::fcntl(&fd, FcntlArg::F_GETFL),
        |result| {
            Finish::with(result, |bits| {
                vec![Piece::text(format!("{bits:#x} (flags {})", open_flags(*bits)))]
            })
        },
    )
    .map(OFlag::from_bits_truncate)
}

/// `fcntl(fd, F_SETFL, flags)`: replaces the file status flags.
///
/// # Errors
/// `EBADF`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/fcntl.2.html>
pub fn fcntl_setfl(fd: impl AsFd, flags: OFlag) -> nix::Result<()> {
    trace::syscall(
        &Spec::new("fcntl"),
        || Args::new().fd(raw(&fd)).text("F_SETFL").text(open_flags(flags.bits())),
        || nix::fcntl::fcntl(&fd, FcntlArg::F_SETFL(flags)).map(drop),
        Finish::of,
    )
}

/// Turns O_NONBLOCK on or off: F_GETFL, then F_SETFL with the bit changed (two calls, as in C).
///
/// # Errors
/// As [`fcntl_getfl`] and [`fcntl_setfl`].
pub fn set_nonblocking(fd: impl AsFd, on: bool) -> nix::Result<()> {
    let mut flags = fcntl_getfl(&fd)?;
    flags.set(OFlag::O_NONBLOCK, on);
    fcntl_setfl(&fd, flags)
}

/// `dup(fd)`: a second descriptor for the same open socket.
///
/// # Errors
/// `EMFILE`, `EBADF`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/dup.2.html>
pub fn dup(fd: impl AsFd) -> nix::Result<OwnedFd> {
    trace::syscall(
        &Spec::new("dup"),
        || Args::new().fd(raw(&fd)),
        || nix::unistd::dup(&fd),
        |result| {
            if let Ok(copy) = result {
                context::table().duplicated(raw(&fd), raw(copy));
            }
            Finish::of(result)
        },
    )
}

/// pipe2's flags, in strace's order.
const PIPE_FLAGS: &trace::pieces::FlagTable = &[
    (libc::O_NONBLOCK as i64, "O_NONBLOCK"),
    (libc::O_CLOEXEC as i64, "O_CLOEXEC"),
];

/// `pipe2(fds, flags)`: a pipe, (read end, write end): what is written to the second comes out
/// of the first, in order. With `O_NONBLOCK` neither end ever blocks: a write to a full pipe
/// fails with `EAGAIN` (what a signal handler writing to it needs), a read of an empty one too.
///
/// # Errors
/// `EMFILE`, `ENFILE`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/pipe2.2.html>, <https://man7.org/linux/man-pages/man7/pipe.7.html>
pub fn pipe2(flags: OFlag) -> nix::Result<(OwnedFd, OwnedFd)> {
    trace::syscall(
        &Spec::new("pipe2").fills(),
        Args::new,
        || nix::unistd::pipe2(flags),
        |result| {
            let ends = match result {
                Ok((read, write)) => Args::new().text(format!("[{}, {}]", raw(read), raw(write))),
                Err(_) => Args::new().unknown_pointer(),
            };
            Finish::of(&result.as_ref().map(drop).map_err(|e| *e)).args(ends.flags(i64::from(flags.bits()), PIPE_FLAGS))
        },
    )
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, lowest)`: a copy of the descriptor on the lowest free number at
/// or above `lowest`, close-on-exec. One call puts a socket on a number of your choosing (1024,
/// 1500) where `dup` would take the lowest free one.
///
/// # Errors
/// `EINVAL` when `lowest` is at or past RLIMIT_NOFILE's soft limit; `EMFILE`; `EBADF`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/fcntl.2.html>
pub fn fcntl_dupfd_cloexec(fd: impl AsFd, lowest: i32) -> nix::Result<OwnedFd> {
    trace::syscall(
        &Spec::new("fcntl").noted_as("dup"),
        || Args::new().fd(raw(&fd)).text("F_DUPFD_CLOEXEC").int(lowest),
        || {
            nix::fcntl::fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(lowest)).map(|new| {
                // SAFETY: fcntl just returned this descriptor, a fresh copy that nothing else owns.
                unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(new) }
            })
        },
        |result| {
            if let Ok(copy) = result {
                context::table().duplicated(raw(&fd), raw(copy));
            }
            Finish::of(result)
        },
    )
}

/// strace prints limits that are whole KiB as `4*1024`.
fn rlim(value: libc::rlim_t) -> String {
    if value == libc::RLIM_INFINITY {
        "RLIM64_INFINITY".into()
    } else if value > 1024 && value.is_multiple_of(1024) {
        format!("{}*1024", value / 1024)
    } else {
        value.to_string()
    }
}

fn rlimit_pair(soft: libc::rlim_t, hard: libc::rlim_t) -> String {
    format!("{{rlim_cur={}, rlim_max={}}}", rlim(soft), rlim(hard))
}

/// `getrlimit(RLIMIT_NOFILE)`, which glibc issues as `prlimit64(0, RLIMIT_NOFILE, NULL, &old)`:
/// (soft, hard), how many descriptors this process may hold.
///
/// # Errors
/// None in practice.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/getrlimit.2.html>
pub fn getrlimit_nofile() -> nix::Result<(libc::rlim_t, libc::rlim_t)> {
    trace::syscall(
        &Spec::new("prlimit64").fills(),
        || Args::new().int(0).text("RLIMIT_NOFILE").text("NULL"),
        || nix_getrlimit(Resource::RLIMIT_NOFILE),
        |result| {
            let limits = match result {
                Ok((soft, hard)) => Args::new().text(rlimit_pair(*soft, *hard)),
                Err(_) => Args::new().unknown_pointer(),
            };
            Finish::with(result, |_| vec![Piece::Int(0)]).args(limits)
        },
    )
}

/// `setrlimit(RLIMIT_NOFILE, {soft, hard})`, issued as `prlimit64(0, RLIMIT_NOFILE, &new, NULL)`.
/// Anyone may move the soft limit up to the hard one; raising the hard limit needs privilege.
///
/// # Errors
/// `EPERM` raising the hard limit without CAP_SYS_RESOURCE; `EINVAL` if soft > hard.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/getrlimit.2.html>
pub fn setrlimit_nofile(soft: libc::rlim_t, hard: libc::rlim_t) -> nix::Result<()> {
    trace::syscall(
        &Spec::new("prlimit64"),
        || {
            Args::new()
                .int(0)
                .text("RLIMIT_NOFILE")
                .text(rlimit_pair(soft, hard))
                .text("NULL")
        },
        || nix_setrlimit(Resource::RLIMIT_NOFILE, soft, hard),
        Finish::of,
    )
}
