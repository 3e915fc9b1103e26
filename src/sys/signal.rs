//! Signal dispositions: what SIGPIPE (and friends) do to this process.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::trace::{self, Args, Finish, Piece, Spec};

fn show_handler(handler: SigHandler) -> Piece {
    match handler {
        SigHandler::SigDfl => Piece::text("SIG_DFL"),
        SigHandler::SigIgn => Piece::text("SIG_IGN"),
        SigHandler::Handler(f) => Piece::pointer(f as *const ()),
        SigHandler::SigAction(f) => Piece::pointer(f as *const ()),
    }
}

fn show_mask(mask: &SigSet) -> String {
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
    let mut names = vec!["SA_RESTORER"];
    if flags.contains(SaFlags::SA_RESTART) {
        names.push("SA_RESTART");
    }
    if flags.contains(SaFlags::SA_SIGINFO) {
        names.insert(0, "SA_SIGINFO");
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

/// nix drops the SA_RESTORER bit when it reads an action back; an old action that is
/// anything but the untouched default was installed through glibc.
fn was_installed(action: &SigAction) -> bool {
    !(matches!(action.handler(), SigHandler::SigDfl)
        && action.flags().is_empty()
        && action.mask().iter().next().is_none())
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
    trace::syscall(
        &Spec::new("rt_sigaction").fills(),
        || Args::new().text(signal.as_str()).arg(show_action(&action, true)),
        // SAFETY: the handlers lessons install are SIG_DFL, SIG_IGN or functions that only
        // store to an atomic, which is async-signal-safe.
        || unsafe { nix::sys::signal::sigaction(signal, &action) },
        |result| {
            let old = match result {
                Ok(old) => Args::new().arg(show_action(old, was_installed(old))),
                Err(_) => Args::new().unknown_pointer(),
            };
            Finish::with(result, |_| vec![Piece::Int(0)]).args(old.int(8))
        },
    )
    .map(|old| old.handler())
}
