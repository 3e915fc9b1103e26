//! Where records go: human lines (colour on a terminal), JSON lines, plain lines, or nowhere.
//!
//! Blocking is shown the way `strace -f` shows it. A call that is still running when another
//! actor prints something (or after a moment on its own) gets an `<unfinished ...>` line, and
//! when it returns a `<... name resumed>` line with how long it blocked.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::notes;

/// Where the trace goes, from `SOCKLAB_TRACE=human|json|plain|off` or `--trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Times, actors, strace lines, notes; colour when stdout is a terminal and NO_COLOR is unset.
    Human,
    /// One JSON object a line, for tools and tests.
    Json,
    /// Actors, strace lines and notes without times or splits: what `expected.trace` holds.
    Plain,
    /// Nothing is rendered or recorded.
    Off,
}

impl Mode {
    /// The word `SOCKLAB_TRACE` takes for this mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Human => "human",
            Mode::Json => "json",
            Mode::Plain => "plain",
            Mode::Off => "off",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(text: &str) -> Result<Mode, String> {
        match text {
            "human" => Ok(Mode::Human),
            "json" => Ok(Mode::Json),
            "plain" => Ok(Mode::Plain),
            "off" => Ok(Mode::Off),
            other => Err(format!("unknown trace mode {other:?}: use human, json, plain or off")),
        }
    }
}

const MODE_UNSET: u8 = 0;
static MODE: AtomicU8 = AtomicU8::new(MODE_UNSET);

fn mode_code(mode: Mode) -> u8 {
    match mode {
        Mode::Human => 1,
        Mode::Json => 2,
        Mode::Plain => 3,
        Mode::Off => 4,
    }
}

/// The current mode: what `set_mode` chose, else `SOCKLAB_TRACE`, else human.
pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        1 => Mode::Human,
        2 => Mode::Json,
        3 => Mode::Plain,
        4 => Mode::Off,
        _ => {
            let chosen = std::env::var("SOCKLAB_TRACE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(Mode::Human);
            MODE.store(mode_code(chosen), Ordering::Relaxed);
            chosen
        }
    }
}

pub fn set_mode(mode: Mode) {
    MODE.store(mode_code(mode), Ordering::Relaxed);
}

/// A call that has entered and not yet returned.
struct Running {
    id: u64,
    tid: i32,
    actor: String,
    name: &'static str,
    entry: String,
    filling: bool,
    started: Instant,
    announced: bool,
}

#[derive(Default)]
struct State {
    seq: u64,
    next_id: u64,
    running: Vec<Running>,
    /// (actor, syscall, errno) whose table note was already printed.
    noted: HashSet<(String, &'static str, Option<i32>)>,
    /// The thread that announces long calls, while it runs; woken when a call begins.
    watchdog: Option<std::thread::Thread>,
}

/// After this long in a call with nobody else printing, its `<unfinished ...>` line appears
/// (other processes of a demo print without our knowing, so this is kept short).
const ANNOUNCE_AFTER: Duration = Duration::from_micros(500);
/// A call that took at least this long is marked `[blocked …]`.
const BLOCKED_AT_LEAST: Duration = Duration::from_millis(1);

static START: OnceLock<Instant> = OnceLock::new();

/// A child process started by a demo shares its parent's clock through this variable: the
/// parent's start, in nanoseconds of CLOCK_MONOTONIC.
pub const CLOCK_ENV: &str = "SOCKLAB_CLOCK_ORIGIN";

fn monotonic_nanos() -> u128 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write into; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128
}

fn start() -> Instant {
    *START.get_or_init(|| {
        let now = Instant::now();
        let origin: Option<u128> = std::env::var(CLOCK_ENV).ok().and_then(|v| v.parse().ok());
        let ago = origin.map_or(0, |o| monotonic_nanos().saturating_sub(o));
        now.checked_sub(Duration::from_nanos(ago as u64)).unwrap_or(now)
    })
}

/// This process's trace start in CLOCK_MONOTONIC nanoseconds, for [`CLOCK_ENV`].
pub fn clock_origin() -> u128 {
    monotonic_nanos().saturating_sub(start().elapsed().as_nanos())
}
// A pointer rather than a static Mutex so that a forked child can start a fresh one: the
// parent's lock may have been held by a thread that does not exist in the child.
static STATE: AtomicPtr<Mutex<State>> = AtomicPtr::new(std::ptr::null_mut());

fn state() -> MutexGuard<'static, State> {
    let mut current = STATE.load(Ordering::Acquire);
    if current.is_null() {
        start();
        let fresh = Box::into_raw(Box::default());
        current = match STATE.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(existing) => {
                // SAFETY: `fresh` came from Box::into_raw just above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        };
    }
    // SAFETY: a non-null STATE always points to a leaked Box that is never freed.
    let mutex = unsafe { &*current };
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Call in a forked child before it traces anything: it gets a lock of its own.
pub fn after_fork_in_child() {
    super::forget_thread_state();
    let fresh: *mut Mutex<State> = Box::into_raw(Box::default());
    // The parent's state is leaked on purpose: another thread may have held its lock.
    STATE.store(fresh, Ordering::Release);
}

fn since_start(at: Instant) -> Duration {
    at.saturating_duration_since(start())
}

pub fn begin(name: &'static str, entry: String, filling: bool, started: Instant) -> u64 {
    let tid = super::tid();
    let actor = super::actor();
    let mut st = state();
    st.next_id += 1;
    let id = st.next_id;
    st.running.push(Running {
        id,
        tid,
        actor,
        name,
        entry,
        filling,
        started,
        announced: false,
    });
    if mode() == Mode::Human {
        match &st.watchdog {
            Some(thread) => thread.unpark(),
            None => {
                let handle = std::thread::Builder::new()
                    .name("socklab-trace".into())
                    .spawn(watchdog)
                    .expect("starting the trace watchdog");
                st.watchdog = Some(handle.thread().clone());
            }
        }
    }
    id
}

/// What a wrapper knows once its call returned.
pub struct Finish {
    pub id: u64,
    pub note_key: &'static str,
    pub out_args: String,
    pub ret: String,
    pub errno: Option<Errno>,
    pub explained: Option<String>,
    pub elapsed: Duration,
}

pub fn end(finish: Finish) {
    let tid = super::tid();
    let mut st = state();
    let Some(index) = st.running.iter().position(|r| r.id == finish.id) else {
        return;
    };
    let call = st.running.remove(index);
    announce_others(&mut st, tid);
    let note = finish.explained.clone().or_else(|| {
        let key = (call.actor.clone(), finish.note_key, finish.errno.map(|e| e as i32));
        let first = st.noted.insert(key);
        first
            .then(|| notes::lookup(finish.note_key, finish.errno))
            .flatten()
            .map(String::from)
    });
    st.seq += 1;
    let seq = st.seq;
    let args = join_args(&call.entry, &finish.out_args);
    let line = strace_line(&format!("{}({args})", call.name), &finish.ret);
    let text = match mode() {
        Mode::Off => return,
        Mode::Json => json_record(seq, &call, &line, &finish, note.as_deref()),
        Mode::Plain => plain_record(&call.actor, &line, note.as_deref()),
        Mode::Human => {
            let body = if call.announced {
                let resumed = format!("<... {} resumed>{})", call.name, finish.out_args);
                strace_line(&resumed, &finish.ret)
            } else {
                line
            };
            let at = if call.announced {
                call.started + finish.elapsed
            } else {
                call.started
            };
            human_record(at, &call.actor, &body, &finish, note.as_deref())
        }
    };
    write_out(&text);
}

pub fn narrate(text: &str, measured: bool) {
    if mode() == Mode::Off {
        return; // before the lock: off costs nothing
    }
    let tid = super::tid();
    let actor = super::actor();
    let mut st = state();
    announce_others(&mut st, tid);
    st.seq += 1;
    let seq = st.seq;
    let out = match mode() {
        Mode::Off => return,
        Mode::Plain => {
            let marker = if measured { "» ~ " } else { "» " };
            text.lines().map(|l| format!("{actor:<10}{marker}{l}\n")).collect()
        }
        Mode::Json => format!(
            "{{\"seq\":{seq},\"t\":{:.6},\"pid\":{},\"tid\":{tid},\"actor\":{},\"say\":{},\"measured\":{measured}}}\n",
            since_start(Instant::now()).as_secs_f64(),
            std::process::id(),
            json_string(&actor),
            json_string(text)
        ),
        Mode::Human => {
            let stamp = format!("+{:.6}", since_start(Instant::now()).as_secs_f64());
            text.lines()
                .map(|l| {
                    format!(
                        "{} {}{}\n",
                        paint("2", &stamp),
                        paint_actor(&actor),
                        paint("1", &format!("» {l}"))
                    )
                })
                .collect()
        }
    };
    write_out(&out);
}

/// Prints `<unfinished ...>` for other threads' calls still in progress, once each, so the
/// order on screen is the order things happened.
fn announce_others(st: &mut State, my_tid: i32) {
    if mode() != Mode::Human {
        return;
    }
    let mut text = String::new();
    for call in st.running.iter_mut().filter(|c| c.tid != my_tid && !c.announced) {
        call.announced = true;
        text.push_str(&unfinished_line(call));
    }
    write_out(&text);
}

fn unfinished_line(call: &Running) -> String {
    let separator = if call.filling && !call.entry.is_empty() {
        ", "
    } else {
        ""
    };
    let body = format!("{}({}{separator} <unfinished ...>", call.name, call.entry);
    let stamp = format!("+{:.6}", since_start(call.started).as_secs_f64());
    format!("{} {}{}\n", paint("2", &stamp), paint_actor(&call.actor), body)
}

/// Announces calls that have been running a while with nobody else printing, so a server
/// waiting alone in accept4 shows that it waits. Stops itself when idle.
fn watchdog() {
    const IDLE_TICK: Duration = Duration::from_millis(50);
    const IDLE_TICKS_BEFORE_EXIT: u32 = 40;
    let mut idle_ticks = 0;
    let mut nap = ANNOUNCE_AFTER;
    loop {
        std::thread::park_timeout(nap);
        let mut st = state();
        // Wake next when the earliest unannounced call is due, or at the idle pace.
        nap = st
            .running
            .iter()
            .filter(|c| !c.announced)
            .map(|c| ANNOUNCE_AFTER.saturating_sub(c.started.elapsed()))
            .min()
            .map_or(IDLE_TICK, |due| due.max(Duration::from_micros(200)));
        idle_ticks = if st.running.is_empty() { idle_ticks + 1 } else { 0 };
        if idle_ticks >= IDLE_TICKS_BEFORE_EXIT {
            st.watchdog = None;
            return;
        }
        let mut text = String::new();
        for call in st
            .running
            .iter_mut()
            .filter(|c| !c.announced && c.started.elapsed() >= ANNOUNCE_AFTER)
        {
            call.announced = true;
            text.push_str(&unfinished_line(call));
        }
        write_out(&text);
    }
}

fn join_args(entry: &str, out: &str) -> String {
    match (entry.is_empty(), out.is_empty()) {
        (_, true) => entry.to_string(),
        (true, false) => out.to_string(),
        (false, false) => format!("{entry}, {out}"),
    }
}

/// strace puts `=` at column 40: `format!("{call:<39} = {ret}")`.
pub fn strace_line(call: &str, ret: &str) -> String {
    format!("{call:<39} = {ret}")
}

const NOTE_INDENT: &str = "          ";

fn plain_record(actor: &str, line: &str, note: Option<&str>) -> String {
    let mut text = format!("{actor:<10}{line}\n");
    if let Some(note) = note {
        let _ = writeln!(text, "{NOTE_INDENT}# {note}");
    }
    text
}

fn human_record(at: Instant, actor: &str, body: &str, finish: &Finish, note: Option<&str>) -> String {
    let stamp = format!("+{:.6}", since_start(at).as_secs_f64());
    let body = match finish.errno {
        Some(_) => match body.rfind(" = -1 ") {
            Some(cut) => format!("{}{}", &body[..cut + 3], paint("31", &body[cut + 3..])),
            None => body.to_string(),
        },
        None => body.to_string(),
    };
    let mut text = format!("{} {}{}", paint("2", &stamp), paint_actor(actor), body);
    if finish.elapsed >= BLOCKED_AT_LEAST {
        text.push_str(&paint("33", &format!("   [blocked {}]", duration(finish.elapsed))));
    }
    text.push('\n');
    if let Some(note) = note {
        let _ = writeln!(text, "{NOTE_INDENT}          {}", paint("2;3", &format!("# {note}")));
    }
    text
}

fn json_record(seq: u64, call: &Running, line: &str, finish: &Finish, note: Option<&str>) -> String {
    let errno = finish
        .errno
        .map_or("null".to_string(), |e| json_string(&format!("{e:?}")));
    format!(
        "{{\"seq\":{seq},\"t\":{:.6},\"pid\":{},\"tid\":{},\"actor\":{},\"syscall\":{},\"line\":{},\"ret\":{},\"errno\":{errno},\"note\":{},\"blocked_us\":{}}}\n",
        since_start(call.started).as_secs_f64(),
        std::process::id(),
        call.tid,
        json_string(&call.actor),
        json_string(call.name),
        json_string(line),
        json_string(&finish.ret),
        note.map_or("null".to_string(), json_string),
        finish.elapsed.as_micros()
    )
}

fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

fn colour_on() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        !no_color && std::io::stdout().is_terminal()
    })
}

fn paint(code: &str, text: &str) -> String {
    if colour_on() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Each actor keeps one colour; the column is 10 wide so calls line up.
fn paint_actor(actor: &str) -> String {
    const PALETTE: [&str; 6] = ["36", "33", "35", "32", "34", "91"];
    let base = actor.split('#').next().unwrap_or(actor);
    let number: usize = actor.rsplit('#').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let hue = base.bytes().map(usize::from).sum::<usize>() + number;
    paint(PALETTE[hue % PALETTE.len()], &format!("{actor:<9}")) + " "
}

fn write_out(text: &str) {
    let mut bytes = text.as_bytes();
    while !bytes.is_empty() {
        match nix::unistd::write(std::io::stdout(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            // A closed pipe (`| head`) or a full terminal: the trace is lost, the lesson goes on.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_put_the_result_at_column_40() {
        assert_eq!(
            strace_line("listen(3, 128)", "0"),
            format!("listen(3, 128){} = 0", " ".repeat(25))
        );
        let long = "x".repeat(45);
        assert_eq!(strace_line(&long, "0"), format!("{long} = 0"));
    }

    #[test]
    fn json_strings_escape() {
        assert_eq!(json_string("a\"b\\\n\u{1}"), r#""a\"b\\\n\u0001""#);
    }
}
