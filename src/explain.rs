//! `socklab explain -- CMD [ARGS...]`: any program's system calls, printed and explained as the lessons print theirs.
//!
//! The command runs under `strace -f`, which writes its report into a FIFO in a private
//! temporary directory (`-o PATH`). strace opens that path itself, close-on-exec, so the
//! command keeps exactly the descriptors it has when it runs alone (a Python program's first
//! socket is still 3), and its stdin, stdout and stderr are socklab's own, untouched: its
//! output appears as it would alone, the trace's lines between its lines. `trace::strace`
//! turns strace's lines into the trace, with the lessons' notes, in the human, json or plain
//! form (`--trace`, or `SOCKLAB_TRACE`; human by default, colour only on a terminal and never
//! with `NO_COLOR`).
//!
//! The exit status is the command's (128 + N if signal N ended it, as a shell reports it).
//! socklab's own failures use the statuses env(1) and timeout(1) use for theirs, so that they
//! cannot be taken for the command's: 125 (bad arguments; strace missing, or not allowed to
//! trace), 126 (the command cannot be run), 127 (no such command).

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigHandler, Signal};
use nix::sys::stat::Mode as Permissions;

use crate::trace::strace::{Reader, TAUGHT};
use crate::trace::{self, Mode};

/// One line of help, for errors.
const USAGE: &str = "usage: socklab explain [--trace human|json|plain] [--all] -- CMD [ARGS...]";

const HELP: &str = "Runs CMD under `strace -f` and prints its system calls as the lessons print theirs: the
call as strace printed it, who made it (the program's name, numbered from its second thread or
process on), when, and the lessons' note where it is true. CMD's stdin, stdout and stderr are
its own; the trace goes to stdout.
  --trace MODE   human (the default; SOCKLAB_TRACE also chooses), json, plain, or off
  --all          every call, not only the ones the lessons teach (sockets, I/O on descriptors,
                 select/poll/epoll, fcntl/ioctl, close, fork/clone/exec/wait, signals)
The exit status is CMD's (128 + N if signal N ended it); 125 if explain itself failed (bad
arguments, strace missing or not allowed to trace), 126 if CMD cannot run, 127 if not found.";

/// Exit statuses for socklab's own failures (env's and timeout's).
const FAILED: i32 = 125;
const CANNOT_RUN: i32 = 126;
const NOT_FOUND: i32 = 127;

/// How often the reader looks for a call that has been running long enough to show.
const TICK_MS: u16 = 10;

/// What the command line asked for.
struct Request {
    mode: Mode,
    /// Every call, not only the ones the lessons teach.
    all: bool,
    command: Vec<String>,
}

/// Runs `socklab explain` with its words (after `explain`); returns the exit status.
pub fn run(words: &[String]) -> i32 {
    match explain(words) {
        Ok(status) => status,
        Err((status, message)) => {
            eprintln!("socklab explain: {message}");
            status
        }
    }
}

fn explain(words: &[String]) -> Result<i32, (i32, String)> {
    let Some(request) = parse(words).map_err(|message| (FAILED, format!("{message}; {USAGE}")))? else {
        println!("{USAGE}\n{HELP}");
        return Ok(0);
    };
    let strace = find_program("strace").ok_or((
        FAILED,
        "strace is not installed (it is what watches the command's system calls); install it: make deps".to_string(),
    ))?;
    check_command(&request.command[0])?;
    check_ptrace(&strace)?;
    let fifo = Fifo::new().map_err(|error| (FAILED, format!("cannot make a FIFO for strace's report: {error}")))?;
    // Opened before strace starts, without waiting for a writer; close-on-exec, as std opens
    // every file, so neither strace nor the command inherits it.
    let report = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo.path)
        .map_err(|error| (FAILED, format!("cannot open {}: {error}", fifo.path.display())))?;

    let origin = realtime_ns();
    let mut child = strace_command(&strace, &fifo.path, &request)
        .spawn()
        .map_err(|error| (FAILED, format!("cannot start strace: {error}")))?;
    // Ctrl-C reaches the whole process group: the command stops, strace reports how, and
    // this process prints what arrived before it goes. Ignored only now, so that strace and
    // the command keep the default.
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: SIG_IGN runs no code in this process.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigIgn) };
    }
    let mut reader = request
        .mode
        .prints()
        .then(|| Reader::new(request.mode, origin, &request.command[0]));
    read_report(&report, &mut reader, &mut child);
    if let Some(reader) = reader.as_mut() {
        reader.end();
    }
    let status = child
        .wait()
        .map_err(|error| (FAILED, format!("waiting for strace: {error}")))?;
    Ok(exit_code(status))
}

/// `strace -f -q -ttt -T -o FIFO [-e trace=TAUGHT] -- CMD ARGS...`: every process and thread
/// (`-f`), no attach messages (`-q`), each line's time (`-ttt`) and the time spent in the call
/// (`-T`), which the trace turns into its times and `[blocked …]`.
fn strace_command(strace: &Path, fifo: &Path, request: &Request) -> Command {
    let mut command = Command::new(strace);
    command.args(["-f", "-q", "-ttt", "-T", "-o"]).arg(fifo);
    if !request.all {
        command.arg("-e").arg(format!("trace={}", TAUGHT.join(",")));
    }
    command.arg("--").args(&request.command);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent's.
    unsafe {
        command.pre_exec(|| {
            // If socklab dies, strace goes too (and the command is let go untraced).
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    };
    command
}

/// The command line, or None when it asks for help.
fn parse(words: &[String]) -> Result<Option<Request>, String> {
    let mut mode = None;
    let mut all = false;
    let mut words = words.iter();
    while let Some(word) = words.next() {
        match word.as_str() {
            "--" => break,
            "--all" => all = true,
            "--trace" => {
                let value = words.next().ok_or("--trace needs a value")?;
                mode = Some(printing_mode(value)?);
            }
            "-h" | "--help" => return Ok(None),
            option if option.starts_with('-') => return Err(format!("unknown option {option:?}")),
            _ => {
                // The command starts here; `--` is only needed before a command that looks
                // like an option.
                let command = std::iter::once(word).chain(words).cloned().collect();
                return Ok(Some(Request {
                    mode: mode.unwrap_or_else(default_mode),
                    all,
                    command,
                }));
            }
        }
    }
    let command: Vec<String> = words.cloned().collect();
    if command.is_empty() {
        return Err("which command? Give it after --".into());
    }
    Ok(Some(Request {
        mode: mode.unwrap_or_else(default_mode),
        all,
        command,
    }))
}

fn printing_mode(value: &str) -> Result<Mode, String> {
    match value.parse::<Mode>() {
        Ok(mode) if mode.prints() || mode == Mode::Off => Ok(mode),
        _ => Err(format!("--trace {value:?} is not a form: use human, json or plain")),
    }
}

/// `SOCKLAB_TRACE` when it names a form (or off), else human.
fn default_mode() -> Mode {
    std::env::var(trace::TRACE_ENV)
        .ok()
        .and_then(|value| printing_mode(&value).ok())
        .unwrap_or(Mode::Human)
}

/// Where `name` is on PATH (or `name` itself if it has a slash), as execvp would find it.
fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| p.exists());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The command exists and can be run: otherwise strace would say so in its own words, and
/// exit 1, which could be the command's.
fn check_command(name: &str) -> Result<(), (i32, String)> {
    let Some(path) = find_program(name) else {
        return Err((NOT_FOUND, format!("{name}: command not found")));
    };
    if path.is_dir() {
        return Err((CANNOT_RUN, format!("{name}: is a directory")));
    }
    if !is_executable(&path) {
        return Err((CANNOT_RUN, format!("{name}: permission denied (not executable)")));
    }
    Ok(())
}

/// Runs strace once on this program's help (output thrown away) to learn whether it may trace
/// here: many containers forbid ptrace(2), and strace then fails before the command starts.
fn check_ptrace(strace: &Path) -> Result<(), (i32, String)> {
    let me = std::env::current_exe().map_err(|error| (FAILED, format!("cannot find this program: {error}")))?;
    let output = Command::new(strace)
        .args(["-o", "/dev/null", "--"])
        .arg(me)
        .arg("help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|error| (FAILED, format!("cannot run strace: {error}")))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    if said.contains("ptrace") && said.contains("Operation not permitted") {
        return Err((
            FAILED,
            "strace may not trace here: ptrace(2) is not permitted (a container without \
             CAP_SYS_PTRACE, a seccomp profile, or kernel.yama.ptrace_scope); try \
             `docker run --cap-add=SYS_PTRACE ...`, or run it outside the container"
                .into(),
        ));
    }
    let first = said.lines().next().unwrap_or("no message");
    Err((FAILED, format!("strace does not work here: {first}")))
}

/// A FIFO in a private temporary directory (mode 0700), removed when dropped.
struct Fifo {
    dir: PathBuf,
    path: PathBuf,
}

impl Fifo {
    fn new() -> std::io::Result<Fifo> {
        // A new directory or an error, never one that was already there: nobody else can
        // have put anything in it.
        let name = format!("socklab-explain-{}-{}", std::process::id(), realtime_ns());
        let dir = std::env::temp_dir().join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join("strace.fifo");
        let fifo = Fifo { dir, path };
        nix::unistd::mkfifo(&fifo.path, Permissions::S_IRUSR | Permissions::S_IWUSR)?;
        Ok(fifo)
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Reads strace's report until strace closes it (or ends without ever opening it).
fn read_report(report: &File, reader: &mut Option<Reader>, strace: &mut std::process::Child) {
    let mut chunk = vec![0u8; 64 * 1024];
    let mut opened = false;
    loop {
        let mut fds = [PollFd::new(report.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, PollTimeout::from(TICK_MS)) {
            // A FIFO no writer has opened yet reports nothing, not end of file.
            Ok(0) => {
                if !opened && matches!(strace.try_wait(), Ok(Some(_))) {
                    return;
                }
            }
            Ok(_) => match nix::unistd::read(report, &mut chunk) {
                // Every writer (strace) has closed it.
                Ok(0) => return,
                Ok(n) => {
                    opened = true;
                    if let Some(reader) = reader.as_mut() {
                        reader.feed(&chunk[..n]);
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => return,
            },
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        if let Some(reader) = reader.as_mut() {
            reader.tick();
        }
    }
}

/// strace -f exits as the command did: with its status, or killed by the same signal.
fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// CLOCK_REALTIME in nanoseconds: the clock strace's `-ttt` prints.
fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
