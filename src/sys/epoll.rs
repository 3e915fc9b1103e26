//! epoll(7): an interest list kept in the kernel, and a wait that returns only ready descriptors.

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollTimeout};
use nix::sys::signal::SigSet;

use super::raw;
use crate::trace::{self, Args, Finish, Piece, Spec, render};

/// strace's names for epoll event bits, in its order.
pub const EPOLL_FLAGS: &trace::pieces::FlagTable = &[
    (libc::EPOLLIN as i64, "EPOLLIN"),
    (libc::EPOLLPRI as i64, "EPOLLPRI"),
    (libc::EPOLLOUT as i64, "EPOLLOUT"),
    (libc::EPOLLERR as i64, "EPOLLERR"),
    (libc::EPOLLHUP as i64, "EPOLLHUP"),
    (libc::EPOLLRDNORM as i64, "EPOLLRDNORM"),
    (libc::EPOLLRDBAND as i64, "EPOLLRDBAND"),
    (libc::EPOLLWRNORM as i64, "EPOLLWRNORM"),
    (libc::EPOLLWRBAND as i64, "EPOLLWRBAND"),
    (libc::EPOLLMSG as i64, "EPOLLMSG"),
    (libc::EPOLLRDHUP as i64, "EPOLLRDHUP"),
    (libc::EPOLLEXCLUSIVE as i64, "EPOLLEXCLUSIVE"),
    (libc::EPOLLWAKEUP as i64, "EPOLLWAKEUP"),
    (libc::EPOLLONESHOT as i64, "EPOLLONESHOT"),
    (libc::EPOLLET as u32 as i64, "EPOLLET"),
];

/// `{events=EPOLLIN|EPOLLET, data={u32=5, u64=5}}`, strace 6.1's form.
fn show_event(event: &EpollEvent) -> String {
    let bits = event.events().bits() as u32 as i64;
    let data = event.data();
    format!(
        "{{events={}, data={{u32={}, u64={data}}}}}",
        render::flags(bits, EPOLL_FLAGS),
        data as u32
    )
}

fn epoll_fd(ep: &Epoll) -> i32 {
    ep.0.as_raw_fd()
}

/// `epoll_create1(flags)`: a new epoll instance, itself a descriptor.
///
/// # Errors
/// `EMFILE`, `ENOMEM`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/epoll_create1.2.html>
pub fn epoll_create1(flags: EpollCreateFlags) -> nix::Result<Epoll> {
    let shown = if flags.is_empty() { "0" } else { "EPOLL_CLOEXEC" };
    trace::syscall(
        &Spec::new("epoll_create1"),
        || Args::new().text(shown),
        || Epoll::new(flags),
        |result| Finish::with(result, |ep| vec![Piece::Fd(epoll_fd(ep))]),
    )
}

fn ctl(
    ep: &Epoll,
    op: &str,
    fd: i32,
    event: Option<EpollEvent>,
    run: impl FnOnce() -> nix::Result<()>,
) -> nix::Result<()> {
    trace::syscall(
        &Spec::new("epoll_ctl"),
        || {
            let shown = event.as_ref().map_or_else(|| "NULL".into(), show_event);
            Args::new().fd(epoll_fd(ep)).text(op.to_string()).fd(fd).text(shown)
        },
        run,
        Finish::of,
    )
}

/// `epoll_ctl(ep, EPOLL_CTL_ADD, fd, event)`: adds `fd` to the interest list.
/// Pass a borrow (`&sock`, `sock.as_fd()`): nix's `add` takes its argument by value, and an
/// `OwnedFd` moved in would be closed on the spot.
///
/// # Errors
/// `EEXIST` (already there), `EPERM` (a regular file), `ENOSPC`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/epoll_ctl.2.html>
pub fn epoll_ctl_add(ep: &Epoll, fd: impl AsFd, event: EpollEvent) -> nix::Result<()> {
    ctl(ep, "EPOLL_CTL_ADD", raw(&fd), Some(event), || ep.add(fd.as_fd(), event))
}

/// `epoll_ctl(ep, EPOLL_CTL_MOD, fd, event)`: changes what is watched (and re-arms ONESHOT).
///
/// # Errors
/// `ENOENT` (not in the interest list).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/epoll_ctl.2.html>
pub fn epoll_ctl_mod(ep: &Epoll, fd: impl AsFd, mut event: EpollEvent) -> nix::Result<()> {
    ctl(ep, "EPOLL_CTL_MOD", raw(&fd), Some(event), || {
        ep.modify(fd.as_fd(), &mut event)
    })
}

/// `epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL)`: removes `fd` from the interest list.
///
/// # Errors
/// `ENOENT` (not in the interest list).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/epoll_ctl.2.html>
pub fn epoll_ctl_del(ep: &Epoll, fd: impl AsFd) -> nix::Result<()> {
    ctl(ep, "EPOLL_CTL_DEL", raw(&fd), None, || ep.delete(fd.as_fd()))
}

/// `epoll_wait(ep, events, maxevents, timeout)`: fills `events` with ready descriptors.
///
/// # Errors
/// `EINTR` (never restarted), `EBADF`, `EINVAL`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/epoll_wait.2.html>
pub fn epoll_wait(ep: &Epoll, events: &mut [EpollEvent], timeout: EpollTimeout) -> nix::Result<usize> {
    let millis = i32::from(timeout);
    trace::syscall_into(
        &Spec::new("epoll_wait").fills(),
        events,
        |_| Args::new().fd(epoll_fd(ep)),
        |events| ep.wait(events, timeout),
        |events, result| {
            let ready = match result {
                Ok(n) => Args::new().text(format!(
                    "[{}]",
                    events[..*n].iter().map(show_event).collect::<Vec<_>>().join(", ")
                )),
                Err(_) => Args::new().pointer(events.as_ptr()),
            };
            Finish::of(result).args(ready.int(events.len() as i64).int(millis))
        },
    )
}

/// `epoll_pwait(ep, events, maxevents, timeout, sigmask)`: epoll_wait, with `sigmask` as the
/// thread's signal mask while it waits, set and put back by the kernel in the same call (see
/// [`super::select::pselect`] for the race that closes). `None` keeps the thread's own mask.
///
/// strace 6.1 prints the mask after the call, and only if it succeeded: a failed
/// `epoll_pwait` shows both the events array and the mask as addresses.
///
/// # Errors
/// As [`epoll_wait`].
///
/// # References
/// <https://man7.org/linux/man-pages/man2/epoll_pwait.2.html>
pub fn epoll_pwait(
    ep: &Epoll,
    events: &mut [EpollEvent],
    timeout: EpollTimeout,
    sigmask: Option<&SigSet>,
) -> nix::Result<usize> {
    let millis = i32::from(timeout);
    let mask_ptr = sigmask.map_or(std::ptr::null(), |m| m.as_ref() as *const libc::sigset_t);
    trace::syscall_into(
        &Spec::new("epoll_pwait").fills(),
        events,
        |_| Args::new().fd(epoll_fd(ep)),
        |events| {
            // SAFETY: EpollEvent is #[repr(transparent)] over libc::epoll_event (nix 0.31.3),
            // so the pointer and length describe `events`, borrowed mutably for the call; the
            // mask pointer is null or a sigset_t borrowed for the call.
            let ret = unsafe {
                libc::epoll_pwait(
                    epoll_fd(ep),
                    events.as_mut_ptr().cast::<libc::epoll_event>(),
                    events.len() as i32,
                    millis,
                    mask_ptr,
                )
            };
            Errno::result(ret).map(|n| n as usize)
        },
        |events, result| {
            let ready = match result {
                Ok(n) => Args::new().text(format!(
                    "[{}]",
                    events[..*n].iter().map(show_event).collect::<Vec<_>>().join(", ")
                )),
                Err(_) => Args::new().pointer(events.as_ptr()),
            };
            let args = ready.int(events.len() as i64).int(millis);
            let args = match (result, sigmask) {
                (_, None) => args.text("NULL"),
                (Ok(_), Some(mask)) => args.text(super::signal::show_mask(mask)),
                (Err(_), Some(_)) => args.pointer(mask_ptr),
            };
            Finish::of(result).args(args.int(8))
        },
    )
}
