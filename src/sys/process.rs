//! Processes: fork (clone in the kernel) and waiting for a child (wait4).

use nix::sys::wait::WaitStatus;
use nix::unistd::{ForkResult, Pid};

use crate::trace;

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
    let call = trace::enter("clone", || {
        vec![
            "child_stack=NULL".into(),
            "flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD".into(),
            "child_tidptr=0xADDR".into(),
        ]
    });
    // SAFETY: the caller upholds fork's contract (see above).
    let result = unsafe { nix::unistd::fork() };
    if let Ok(ForkResult::Child) = result {
        trace::after_fork_in_child();
        return result;
    }
    call.exit(&result, Vec::new, |r| match r {
        ForkResult::Parent { child } => child.to_string(),
        ForkResult::Child => "0".into(),
    });
    result
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
    let call = trace::enter_filling("wait4", || vec![pid.to_string()]);
    let result = nix::sys::wait::waitpid(pid, None);
    call.exit(
        &result,
        || {
            vec![
                result.as_ref().map_or_else(|_| "0xADDR".into(), show_status),
                "0".into(),
                "NULL".into(),
            ]
        },
        |status| status.pid().map_or_else(|| "0".into(), |p| p.to_string()),
    );
    result
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
    let call = trace::enter("exit_group", || vec![code.to_string()]);
    call.exit(&Ok::<(), nix::Error>(()), Vec::new, |()| "?".into());
    std::process::exit(code)
}
