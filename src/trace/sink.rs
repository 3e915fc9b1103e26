//! Where events go: the mode, the printer that orders and formats them, and the two routes.
//!
//! - In `wire` mode (a demo's processes, see `collector.rs`) each event is written at once to
//!   fd 1 as one record, for the collector to order and print.
//! - In `human`, `json` and `plain` mode a process prints its own trace (a lesson's server or
//!   client mode, `socklab chat-server`): events go over a channel to a printer thread, which
//!   holds them back [`HOLDBACK`] before printing so that calls from other threads sort in.
//!   [`finish`] prints what is held when the program ends.
//! - `off` records nothing: each traced call costs one relaxed atomic load.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::Duration;

use nix::errno::Errno;

use super::event::{Event, encode};
use super::human::Human;
use super::json::Json;
use super::order::Order;
use super::plain;

/// The environment variable that chooses the mode.
pub const TRACE_ENV: &str = "SOCKLAB_TRACE";

/// Where the trace goes, from `SOCKLAB_TRACE=human|json|plain|off` or `--trace`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Nothing is recorded.
    Off = 1,
    /// Times, actors, strace lines, notes; colour when stdout is a terminal and NO_COLOR is unset.
    Human,
    /// One JSON object a line, for tools and tests.
    Json,
    /// Actors, strace lines and notes, normalised, without times: what `expected.trace` holds.
    Plain,
    /// Records on fd 1 for a collector to print: how a demo's processes report.
    Wire,
}

impl Mode {
    const ALL: [Mode; 5] = [Mode::Off, Mode::Human, Mode::Json, Mode::Plain, Mode::Wire];

    /// The word `SOCKLAB_TRACE` takes for this mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Human => "human",
            Mode::Json => "json",
            Mode::Plain => "plain",
            Mode::Wire => "wire",
        }
    }

    /// Whether this mode prints a trace (rather than recording nothing, or reporting to a
    /// collector).
    pub fn prints(self) -> bool {
        matches!(self, Mode::Human | Mode::Json | Mode::Plain)
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(text: &str) -> Result<Mode, String> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.name() == text)
            .ok_or_else(|| format!("unknown trace mode {text:?}: use human, json, plain or off"))
    }
}

/// Not chosen yet: the first look reads `SOCKLAB_TRACE`.
const UNSET: u8 = 0;
static MODE: AtomicU8 = AtomicU8::new(UNSET);

/// Whether calls are recorded: one relaxed load when the mode is known.
#[inline]
pub fn is_on() -> bool {
    match MODE.load(Ordering::Relaxed) {
        code if code == Mode::Off as u8 => false,
        UNSET => mode() != Mode::Off,
        _ => true,
    }
}

/// The current mode: what `set_mode` chose, else `SOCKLAB_TRACE`, else human.
pub fn mode() -> Mode {
    let code = MODE.load(Ordering::Relaxed);
    if let Some(mode) = Mode::ALL.into_iter().find(|m| *m as u8 == code) {
        return mode;
    }
    let chosen = std::env::var(TRACE_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(Mode::Human);
    MODE.store(chosen as u8, Ordering::Relaxed);
    chosen
}

/// Chooses the mode. A process reporting to a collector (wire) keeps doing so: a demo's
/// `--trace plain` is the collector's choice, and reaches the child only as its arguments.
pub fn set_mode(chosen: Mode) {
    if mode() != Mode::Wire {
        MODE.store(chosen as u8, Ordering::Relaxed);
    }
}

/// How long a printing process holds events back before printing them: long enough for
/// another thread's or process's event from the same moment to arrive and sort in, short
/// enough not to be noticed. A call open longer than this shows `<unfinished ...>`.
pub const HOLDBACK: Duration = Duration::from_millis(40);
/// How often a printer looks at what is due.
pub const TICK: Duration = Duration::from_millis(10);

/// Orders events, formats them in one mode, and writes them to stdout.
pub struct Printer {
    order: Order,
    format: Format,
    /// None: print only at the end, everything in its exact order.
    holdback: Option<Duration>,
}

enum Format {
    Human(Human),
    Json(Json),
    Plain,
}

impl Printer {
    /// A printer for `mode` (human, json or plain) whose times count from `origin`.
    pub fn new(mode: Mode, origin: u64, holdback: Option<Duration>) -> Printer {
        let format = match mode {
            Mode::Json => Format::Json(Json::new(origin)),
            Mode::Plain => Format::Plain,
            _ => Format::Human(Human::new(origin)),
        };
        Printer {
            order: Order::new(),
            format,
            holdback,
        }
    }

    pub fn push(&mut self, event: Event) {
        self.order.push(event);
    }

    /// Prints what is due: events older than the hold-back time.
    pub fn tick(&mut self) {
        if let Some(holdback) = self.holdback {
            let limit = super::now_ns().saturating_sub(holdback.as_nanos() as u64);
            let items = self.order.release(Some(limit));
            self.print(&items);
        }
    }

    /// Prints items whose shape was decided elsewhere (strace's own lines, read back by
    /// `strace.rs`), with notes once per run and repeats folded, as for any other.
    pub fn print_shaped(&mut self, items: Vec<super::order::Item>) {
        let mut out = Vec::new();
        for item in items {
            out.extend(self.order.shaped(item));
        }
        self.print(&out);
    }

    /// Prints everything: the stream has ended.
    pub fn end(&mut self) {
        let items = self.order.release(None);
        self.print(&items);
    }

    fn print(&mut self, items: &[super::order::Item]) {
        let mut text = String::new();
        for item in items {
            match &mut self.format {
                Format::Human(human) => text.push_str(&human.item(item)),
                Format::Json(json) => text.push_str(&json.item(item)),
                Format::Plain => text.push_str(&plain::item(item)),
            }
        }
        write_stdout(text.as_bytes());
    }
}

/// Sends an event where the mode says.
pub fn emit(event: Event) {
    match mode() {
        Mode::Off => {}
        Mode::Wire => write_stdout(&encode(&event)),
        printing => {
            let _ = printer_thread(printing).send(Message::Event(event));
        }
    }
}

enum Message {
    Event(Event),
    /// Print everything now, and say so.
    Finish(mpsc::SyncSender<()>),
}

// A pointer rather than a static so that a forked child can start a printer of its own: the
// parent's printer thread does not exist in the child.
static PRINTER: AtomicPtr<Sender<Message>> = AtomicPtr::new(std::ptr::null_mut());

fn printer_thread(mode: Mode) -> &'static Sender<Message> {
    let mut current = PRINTER.load(Ordering::Acquire);
    if current.is_null() {
        let (sender, receiver) = mpsc::channel();
        let fresh = Box::into_raw(Box::new(sender));
        current = match PRINTER.compare_exchange(std::ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                let origin = super::now_ns();
                std::thread::Builder::new()
                    .name("socklab-trace".into())
                    .spawn(move || print_until_dropped(receiver, Printer::new(mode, origin, Some(HOLDBACK))))
                    .expect("starting the trace printer");
                fresh
            }
            Err(existing) => {
                // SAFETY: `fresh` came from Box::into_raw just above and was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                existing
            }
        };
    }
    // SAFETY: a non-null PRINTER always points to a leaked Box that is never freed.
    unsafe { &*current }
}

fn print_until_dropped(receiver: mpsc::Receiver<Message>, mut printer: Printer) {
    loop {
        match receiver.recv_timeout(TICK) {
            Ok(Message::Event(event)) => printer.push(event),
            Ok(Message::Finish(done)) => {
                printer.end();
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                printer.end();
                return;
            }
        }
        printer.tick();
    }
}

/// Prints what this process's printer holds; call before the program ends. A process that
/// reports to a collector, or prints nothing, has nothing to do.
pub fn finish() {
    let current = PRINTER.load(Ordering::Acquire);
    if current.is_null() {
        return;
    }
    // SAFETY: a non-null PRINTER always points to a leaked Box that is never freed.
    let sender = unsafe { &*current };
    let (done, finished) = mpsc::sync_channel(1);
    if sender.send(Message::Finish(done)).is_ok() {
        // Bounded: a printer stuck on a full terminal must not keep the program alive.
        let _ = finished.recv_timeout(Duration::from_secs(2));
    }
}

/// In a forked child: the parent's printer thread is not here; the next event starts one.
pub fn after_fork_in_child() {
    // The parent's sender is leaked on purpose: its channel's other end is in the parent.
    PRINTER.store(std::ptr::null_mut(), Ordering::Release);
}

/// Whether colour is wanted on stdout: a terminal, and NO_COLOR unset or empty.
pub fn colour_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stdout().is_terminal()
}

/// Writes all of `bytes` to fd 1. A record (under PIPE_BUF) goes in one write. A closed pipe
/// (`| head`) or a failing terminal loses the trace, and the lesson goes on.
pub fn write_stdout(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        match nix::unistd::write(std::io::stdout(), bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_name() {
        for mode in Mode::ALL {
            assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
        }
        assert!("loud".parse::<Mode>().is_err());
        assert!(Mode::Plain.prints() && !Mode::Wire.prints() && !Mode::Off.prints());
    }
}
