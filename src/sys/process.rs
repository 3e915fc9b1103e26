//! Processes: fork (clone in the kernel) and waiting for a child (wait4).

use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};

use crate::trace::{self, Args, Finish, Piece, Spec};

/// `fork()`, which glibc issues as `clone(child_stack=NULL, flags=...|SIGCHLD, ...)`.
///
/// The child gets a copy of every descriptor: a listening socket forked into four children
/// is one socket with five descriptors. In the child the trace starts afresh, and the caller
/// should name it with `trace::set_actor`.
///
/// # Safety
/// As for `nix::unistd::fork`: in a process with several threads, the child has only the one
/// that called fork, and any lock another thread held stays locked in the child. The trace's
/// own lock is replaced in the child; call this while no other thread of the lesson is
/// inside a library that holds a lock across calls.
///
/// # Errors
/// `EAGAIN` (process limit), `ENOMEM`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/fork.2.html>
pub unsafe fn fork() -> nix::Result<ForkResult> {
    trace::syscall(
        &Spec::new("clone"),
        || {
            Args::new()
                .text("child_stack=NULL")
                .text("flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD")
                .arg(vec![Piece::text("child_tidptr="), Piece::Pointer(None)])
        },
        || {
            // SAFETY: the caller upholds fork's contract (see above).
            let result = unsafe { nix::unistd::fork() };
            match result {
                // The child's trace starts afresh; the record of this call is the parent's.
                Ok(ForkResult::Child) => trace::after_fork_in_child(),
                Ok(ForkResult::Parent { .. }) => trace::after_fork_in_parent(),
                Err(_) => {}
            }
            result
        },
        |result| {
            Finish::with(result, |r| match r {
                ForkResult::Parent { child } => vec![Piece::Pid(child.as_raw())],
                ForkResult::Child => vec![Piece::Int(0)],
            })
        },
    )
}

fn show_status(status: &WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("[{{WIFEXITED(s) && WEXITSTATUS(s) == {code}}}]"),
        WaitStatus::Signaled(_, signal, core) => {
            let core = if *core { " && WCOREDUMP(s)" } else { "" };
            format!("[{{WIFSIGNALED(s) && WTERMSIG(s) == {}{core}}}]", signal.as_str())
        }
        other => format!("[{other:?}]"),
    }
}

/// `waitpid(pid, &status, 0)`, which the kernel sees as `wait4(pid, &status, 0, NULL)`: blocks
/// until the child ends, and says how (exit code, or the signal that killed it).
///
/// # Errors
/// `ECHILD` (no such child), `EINTR`.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/wait4.2.html>
pub fn waitpid(pid: Pid) -> nix::Result<WaitStatus> {
    trace::syscall(
        &Spec::new("wait4").fills(),
        || Args::new().pid(pid.as_raw()),
        || nix::sys::wait::waitpid(pid, None),
        |result| {
            let status = match result {
                Ok(status) => Args::new().text(show_status(status)),
                Err(_) => Args::new().unknown_pointer(),
            };
            Finish::with(result, |status| {
                vec![status.pid().map_or(Piece::Int(0), |p| Piece::Pid(p.as_raw()))]
            })
            .args(status.int(0).text("NULL"))
        },
    )
}

/// `exit(code)`, which glibc ends with `exit_group(code)`: every thread of the process stops
/// and the kernel closes every descriptor still open (with no `close` line). The parent's
/// `wait4` then reports `WIFEXITED(s) && WEXITSTATUS(s) == code`.
///
/// strace prints `exit_group(0) = ?`: the call never returns, so there is no result. A forked
/// child ends with this rather than by returning into the code it shares with its parent.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/exit_group.2.html>, <https://man7.org/linux/man-pages/man3/exit.3.html>
pub fn exit(code: i32) -> ! {
    // Recorded before it is made: it never returns to say how it went.
    let _ = trace::syscall(
        &Spec::new("exit_group"),
        || Args::new().int(code),
        || Ok(()),
        |result| Finish::with(result, |()| vec![Piece::text("?")]),
    );
    trace::finish();
    std::process::exit(code)
}
