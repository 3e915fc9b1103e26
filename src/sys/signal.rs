//! Signals: what each does to this process (sigaction), which a thread blocks (sigprocmask),
//! sending one (kill), reading them from a descriptor (signalfd), and a timer that sends one
//! (setitimer).

use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::SfdFlags;
use nix::unistd::Pid;

use super::raw;
use crate::trace::{self, Args, Finish, Piece, Spec, render};

fn show_handler(handler: SigHandler) -> Piece {
    match handler {
        SigHandler::SigDfl => Piece::text("SIG_DFL"),
        SigHandler::SigIgn => Piece::text("SIG_IGN"),
        SigHandler::Handler(f) => Piece::pointer(f as *const ()),
        SigHandler::SigAction(f) => Piece::pointer(f as *const ()),
    }
}

/// A signal set as strace prints it: `[INT USR1 TERM]`, by number, without the `SIG`.
pub fn show_mask(mask: &SigSet) -> String {
    let names: Vec<String> = mask
        .iter()
        .map(|s| s.as_str().trim_start_matches("SIG").to_string())
        .collect();
    format!("[{}]", names.join(" "))
}

/// An action as strace shows it. glibc adds SA_RESTORER (and a restorer address) to every
/// action it installs; an action never installed, the kernel's default, has neither.
fn show_action(action: &SigAction, installed_by_glibc: bool) -> Vec<Piece> {
    let handler = show_handler(action.handler());
    let mask = show_mask(&action.mask());
    let flags = action.flags();
    if !installed_by_glibc {
        return vec![
            Piece::text("{sa_handler="),
            handler,
            Piece::text(format!(", sa_mask={mask}, sa_flags=0}}")),
        ];
    }
    // In strace's order (its xlat/sigact_flags.in).
    let mut names = vec!["SA_RESTORER"];
    for (flag, name) in [
        (SaFlags::SA_ONSTACK, "SA_ONSTACK"),
        (SaFlags::SA_RESTART, "SA_RESTART"),
        (SaFlags::SA_NODEFER, "SA_NODEFER"),
        (SaFlags::SA_RESETHAND, "SA_RESETHAND"),
        (SaFlags::SA_SIGINFO, "SA_SIGINFO"),
    ] {
        if flags.contains(flag) {
            names.push(name);
        }
    }
    vec![
        Piece::text("{sa_handler="),
        handler,
        Piece::text(format!(", sa_mask={mask}, sa_flags={}, sa_restorer=", names.join("|"))),
        // glibc's own restorer function: the program never sees its address.
        Piece::Pointer(None),
        Piece::text("}"),
    ]
}

/// Whether an old action was installed through glibc, which gives every action it installs a
/// restorer and SA_RESTORER (a flag nix drops: look at the raw struct). The kernel's default
/// has neither, nor has a SIG_IGN inherited across exec (exec keeps it, and clears the rest).
fn was_installed(action: &SigAction) -> bool {
    libc::sigaction::from(*action).sa_restorer.is_some()
}

/// `sigaction(signal, {handler, mask=[], flags=0}, &old)`, which the kernel sees as
/// `rt_sigaction`. Returns the previous handler.
///
/// A Rust program starts with SIGPIPE ignored (the runtime does it before `main`), and so does
/// a Python one (the interpreter does it at start-up); set it back to `SigDfl` to see what a C
/// program gets by default.
///
/// # Errors
/// `EINVAL` for SIGKILL and SIGSTOP, which cannot be caught or ignored.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/sigaction.2.html>, <https://man7.org/linux/man-pages/man7/signal.7.html>
pub fn sigaction(signal: Signal, handler: SigHandler) -> nix::Result<SigHandler> {
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handlers lessons install with this are SIG_DFL, SIG_IGN or functions that
    // only store to an atomic, which is async-signal-safe.
    unsafe { sigaction_with(signal, &action) }.map(|old| old.handler())
}

/// `sigaction(signal, action, &old)`, the whole action: a handler, its flags (`SA_RESTART`:
/// the kernel restarts a slow call the handler interrupted, rather than failing it with
/// `EINTR`) and the signals blocked while it runs. Returns the previous action.
///
/// # Safety
/// A handler runs between any two instructions of the thread it interrupts: it may only do
/// what is async-signal-safe (signal-safety(7)): store to an atomic, `write(2)` a byte. No
/// allocation, no lock, no printing, and so no trace: its calls do not appear in ours.
///
/// # Errors
/// `EINVAL` for SIGKILL and SIGSTOP, which cannot be caught or ignored.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/sigaction.2.html>, <https://man7.org/linux/man-pages/man7/signal-safety.7.html>
pub unsafe fn sigaction_with(signal: Signal, action: &SigAction) -> nix::Result<SigAction> {
    trace::syscall(
        &Spec::new("rt_sigaction").fills(),
        || Args::new().text(signal.as_str()).arg(show_action(action, true)),
        // SAFETY: the caller promises the handler is async-signal-safe.
        || unsafe { nix::sys::signal::sigaction(signal, action) },
        |result| {
            let old = match result {
                Ok(old) => Args::new().arg(show_action(old, was_installed(old))),
                Err(_) => Args::new().unknown_pointer(),
            };
            Finish::with(result, |_| vec![Piece::Int(0)]).args(old.int(8))
        },
    )
}

fn how_name(how: SigmaskHow) -> &'static str {
    match how {
        SigmaskHow::SIG_BLOCK => "SIG_BLOCK",
        SigmaskHow::SIG_UNBLOCK => "SIG_UNBLOCK",
        _ => "SIG_SETMASK",
    }
}

/// `sigprocmask(how, set, &old)`, the calling thread's signal mask (`pthread_sigmask` in a
/// program with threads: the same call, `rt_sigprocmask`). A blocked signal is not lost: it
/// waits, pending, until the thread unblocks it (then its handler runs at once), or until a
/// signalfd or sigwait takes it. `old`, when given, receives the mask as it was.
///
/// A signal sent to the process (kill) goes to one of its threads that does not block it;
/// a new thread starts with its creator's mask.
///
/// # Errors
/// `EINVAL` for a bad `how`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/sigprocmask.2.html>, <https://man7.org/linux/man-pages/man3/pthread_sigmask.3.html>
pub fn sigprocmask(how: SigmaskHow, set: &SigSet, mut old: Option<&mut SigSet>) -> nix::Result<()> {
    trace::syscall_into(
        &Spec::new("rt_sigprocmask").fills(),
        &mut old,
        |_| Args::new().text(how_name(how)).text(show_mask(set)),
        |old| nix::sys::signal::pthread_sigmask(how, Some(set), old.as_deref_mut()),
        |old, result| {
            let previous = match (old, result) {
                (Some(old), Ok(())) => Args::new().text(show_mask(old)),
                (Some(_), Err(_)) => Args::new().unknown_pointer(),
                (None, _) => Args::new().text("NULL"),
            };
            Finish::of(result).args(previous.int(8))
        },
    )
}

/// `kill(pid, signal)`: sends `signal` to process `pid`. The kernel hands it to one of that
/// process's threads that does not block it; if every thread blocks it, it waits, pending.
///
/// # Errors
/// `ESRCH` (no such process), `EPERM` (not ours to signal).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/kill.2.html>
pub fn kill(pid: Pid, signal: Signal) -> nix::Result<()> {
    trace::syscall(
        &Spec::new("kill"),
        || Args::new().pid(pid.as_raw()).text(signal.as_str()),
        || nix::sys::signal::kill(pid, signal),
        Finish::of,
    )
}

const SFD_FLAGS: &trace::pieces::FlagTable = &[
    (libc::SFD_CLOEXEC as i64, "SFD_CLOEXEC"),
    (libc::SFD_NONBLOCK as i64, "SFD_NONBLOCK"),
];

/// `signalfd(-1, mask, flags)`, which the kernel sees as `signalfd4(-1, mask, 8, flags)`: a new
/// descriptor that is readable while one of the signals in `mask` is pending. Block them first
/// (`sigprocmask`), in every thread: a signal that is not blocked is delivered as usual, and the
/// signalfd never sees it. Then a loop waits for it with select, poll or epoll like any socket.
///
/// # Errors
/// `EMFILE`, `EINVAL` (bad flags).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/signalfd.2.html>
pub fn signalfd(mask: &SigSet, flags: SfdFlags) -> nix::Result<OwnedFd> {
    trace::syscall(
        &Spec::new("signalfd4"),
        || {
            Args::new()
                .int(-1)
                .text(show_mask(mask))
                .int(8)
                .flags(i64::from(flags.bits()), SFD_FLAGS)
        },
        || {
            // SAFETY: the mask is a valid sigset_t borrowed for the call; -1 asks for a new
            // descriptor, which we own from here on.
            let fd = unsafe { libc::signalfd(-1, mask.as_ref(), flags.bits()) };
            Errno::result(fd).map(|fd| {
                // SAFETY: the kernel just made `fd`, and nothing else holds it.
                unsafe { OwnedFd::from_raw_fd(fd) }
            })
        },
        Finish::of,
    )
}

/// The bytes of one `struct signalfd_siginfo`.
pub const SIGINFO_SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();

/// `read(fd, &info, 128)` on a signalfd: one pending signal, as a `struct signalfd_siginfo`
/// (`ssi_signo`, `ssi_code`, `ssi_pid` and `ssi_uid` of the sender, ...). Reading it takes the
/// signal off the pending set; no handler runs.
///
/// # Errors
/// `EAGAIN` (non-blocking, nothing pending).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/signalfd.2.html>
pub fn read_siginfo(fd: impl AsFd) -> nix::Result<libc::signalfd_siginfo> {
    let number = raw(&fd);
    let mut buf = [0u8; SIGINFO_SIZE];
    trace::syscall_into(
        &Spec::new("read").noted_as("read.signalfd").fills(),
        &mut buf,
        |_| Args::new().fd(number),
        |buf| nix::unistd::read(&fd, buf),
        |buf, result| {
            let filled = render::buffer_out(buf, result.as_ref().ok().copied());
            Finish::of(result).args(Args::new().arg(vec![filled]).int(SIGINFO_SIZE as i64))
        },
    )
    .and_then(|n| {
        if n < SIGINFO_SIZE {
            return Err(Errno::EIO);
        }
        // SAFETY: signalfd_siginfo is plain integers, any bytes are a valid value, and `buf`
        // holds all of one; read_unaligned needs no alignment.
        Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr().cast::<libc::signalfd_siginfo>()) })
    })
}

/// `setitimer(ITIMER_REAL, {it_interval=0, it_value=after}, NULL)`: the kernel sends this
/// process SIGALRM once, `after` from now (a finer `alarm()`). The kernel sends it itself:
/// its `si_code` is `SI_KERNEL`, and it comes from no process (pid 0).
///
/// # Errors
/// `EINVAL` (a time out of range).
///
/// # References
/// <https://man7.org/linux/man-pages/man2/setitimer.2.html>
pub fn setitimer(after: Duration) -> nix::Result<()> {
    let value = libc::itimerval {
        it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
        it_value: libc::timeval {
            tv_sec: after.as_secs() as libc::time_t,
            tv_usec: libc::suseconds_t::from(after.subsec_micros()),
        },
    };
    trace::syscall(
        &Spec::new("setitimer"),
        || {
            Args::new()
                .text("ITIMER_REAL")
                .text(format!(
                    "{{it_interval={}, it_value={}}}",
                    render::timeval(0, 0),
                    render::timeval(value.it_value.tv_sec, value.it_value.tv_usec)
                ))
                .text("NULL")
        },
        || {
            // SAFETY: `value` is a valid itimerval; the old value is not asked for (NULL).
            let ret = unsafe { libc::setitimer(libc::ITIMER_REAL, &value, std::ptr::null_mut()) };
            Errno::result(ret).map(drop)
        },
        Finish::of,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::render::{Form, pieces};

    #[test]
    fn actions_and_masks_read_as_strace_prints_them() {
        // strace 6.1, for Python's handler of SIGRT_1: SA_RESTORER|SA_ONSTACK|SA_RESTART|SA_SIGINFO.
        extern "C" fn with_info(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
        let flags = SaFlags::SA_RESTART | SaFlags::SA_ONSTACK;
        let action = SigAction::new(SigHandler::SigAction(with_info), flags, SigSet::empty());
        assert_eq!(
            pieces(&show_action(&action, true), Form::Normalised),
            "{sa_handler=0xADDR, sa_mask=[], sa_flags=SA_RESTORER|SA_ONSTACK|SA_RESTART|SA_SIGINFO, sa_restorer=0xADDR}"
        );
        let mask: SigSet = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGALRM, Signal::SIGUSR1]
            .into_iter()
            .collect();
        assert_eq!(
            show_mask(&mask),
            "[INT USR1 ALRM TERM]",
            "by number, as strace orders them"
        );
        assert_eq!(show_mask(&SigSet::empty()), "[]");
    }
}
