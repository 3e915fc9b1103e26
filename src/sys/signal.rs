//! Signal dispositions: what SIGPIPE (and friends) do to this process.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::trace;

fn show_handler(handler: SigHandler) -> String {
    match handler {
        SigHandler::SigDfl => "SIG_DFL".into(),
        SigHandler::SigIgn => "SIG_IGN".into(),
        SigHandler::Handler(f) => format!("{:p}", f as *const ()),
        SigHandler::SigAction(f) => format!("{:p}", f as *const ()),
    }
}

fn show_mask(mask: &SigSet) -> String {
    let names: Vec<String> = mask.iter().map(|s| s.as_str().trim_start_matches("SIG").to_string()).collect();
    format!("[{}]", names.join(" "))
}

fn show_flags(flags: SaFlags) -> String {
    // glibc adds SA_RESTORER to every action it installs; strace shows it.
    let mut names = vec!["SA_RESTORER"];
    if flags.contains(SaFlags::SA_RESTART) {
        names.push("SA_RESTART");
    }
    if flags.contains(SaFlags::SA_SIGINFO) {
        names.insert(0, "SA_SIGINFO");
    }
    names.join("|")
}

fn show_action(action: &SigAction) -> String {
    format!(
        "{{sa_handler={}, sa_mask={}, sa_flags={}, sa_restorer=0xADDR}}",
        show_handler(action.handler()),
        show_mask(&action.mask()),
        show_flags(action.flags())
    )
}

/// `sigaction(signal, {handler, mask=[], flags=0}, &old)`, which the kernel sees as
/// `rt_sigaction`. Returns the previous handler.
///
/// A Rust program starts with SIGPIPE ignored (the runtime does it before `main`); set it
/// back to `SigDfl` to see what a C or Python program gets by default.
///
/// # Errors
/// `EINVAL` for SIGKILL and SIGSTOP, which cannot be caught or ignored.
///
/// # References
/// <https://man7.org/linux/man-pages/man2/sigaction.2.html>, <https://man7.org/linux/man-pages/man7/signal.7.html>
pub fn sigaction(signal: Signal, handler: SigHandler) -> nix::Result<SigHandler> {
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    let call = trace::enter_filling("rt_sigaction", || vec![signal.as_str().into(), show_action(&action)]);
    // SAFETY: the handlers lessons install are SIG_DFL, SIG_IGN or functions that only store
    // to an atomic, which is async-signal-safe.
    let result = unsafe { nix::sys::signal::sigaction(signal, &action) };
    call.exit(
        &result,
        || vec![result.as_ref().map_or_else(|_| "0xADDR".into(), show_action), "8".into()],
        |_| "0".into(),
    );
    result.map(|old| old.handler())
}
