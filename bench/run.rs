//! `make bench`: socklab's echo loops against the same loops written plainly in C and against
//! mio, on the same loads from `socklab load`, interleaved, 5 repetitions; then the chat room's
//! fan-out under every loop, 3 times. Prints the tables and writes target/bench/results.json.
//!
//! Servers are pinned to CPU 0 with taskset when there are two CPUs, the load (`socklab load`)
//! to CPU 1, and every server is killed by its PID. Within one repetition every loop and every
//! reference meets the same cell, so noise from other work on the machine falls on all of them
//! alike; how closely in time depends on the cell:
//! - a cell with no idle connections starts all its servers at once (each blocked in its wait
//!   while another is measured) and cuts the repetition into short slices that go round the
//!   servers ([`SLICES`]): a machine whose speed changes from one second to the next (other
//!   work, a virtual CPU's neighbours) slows them all alike;
//! - a cell with idle connections gives each server one run of its own, a fresh server each
//!   time: thousands of idle connections are too many to open again for every slice.
//!
//! `bench [--quick] [--reps N] [--secs S] [--loops select,poll,...]`; `--reps N` repeats the echo
//! cells N times and the chat min(N, 3) times; `--quick` (make bench QUICK=1) is one repetition
//! of short runs and a small room, for development.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use socklab::load::json::Json;

mod report;

const LOOPS: [&str; 4] = ["select", "poll", "epoll", "epoll-et"];

/// The servers measured: socklab's loop, the C loop of the same kind, and mio (epoll only,
/// edge-triggered whatever the row; measured once per cell and repetition, compared with both
/// epoll rows).
#[derive(Clone, Copy, PartialEq)]
enum Server {
    Socklab,
    C,
    Mio,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Socklab => "socklab",
            Server::C => "c",
            Server::Mio => "mio",
        }
    }
}

/// One load the echo servers meet.
struct Cell {
    key: &'static str,
    title: &'static str,
    /// `socklab load` arguments (before --port, --server-pid, --json).
    args: &'static [&'static str],
    /// The figure compared: msgs_per_s or mb_per_s.
    metric: &'static str,
    /// select cannot hold this many descriptors (FD_SETSIZE is 1024): no run, "—".
    beyond_select: bool,
}

impl Cell {
    /// Whether its repetitions are cut into slices that go round its servers (no idle
    /// connections to open again for every slice).
    fn sliced(&self) -> bool {
        !self.args.contains(&"--idle")
    }
}

/// The slices a repetition of a sliced cell is cut into: each server is measured this many
/// times, for `secs / SLICES` each, in turn with the others.
const SLICES: usize = 5;

const CELLS: &[Cell] = &[
    Cell {
        key: "pingpong-1",
        title: "ping-pong C=1",
        args: &["pingpong", "--conns", "1"],
        metric: "msgs_per_s",
        beyond_select: false,
    },
    Cell {
        key: "pingpong-50",
        title: "C=50",
        args: &["pingpong", "--conns", "50"],
        metric: "msgs_per_s",
        beyond_select: false,
    },
    Cell {
        key: "pingpong-500",
        title: "C=500",
        args: &["pingpong", "--conns", "500"],
        metric: "msgs_per_s",
        beyond_select: false,
    },
    Cell {
        key: "bulk-1",
        title: "bulk 1 conn",
        args: &["bulk", "--chunk", "65536"],
        metric: "mb_per_s",
        beyond_select: false,
    },
    Cell {
        key: "pingpong-50-idle-900",
        title: "C=50 + 900 idle",
        args: &["pingpong", "--conns", "50", "--idle", "900"],
        metric: "msgs_per_s",
        beyond_select: false,
    },
    Cell {
        key: "pingpong-50-idle-10000",
        title: "C=50 + 10,000 idle",
        args: &["pingpong", "--conns", "50", "--idle", "10000"],
        metric: "msgs_per_s",
        beyond_select: true,
    },
];

/// The chat fan-out's windows (`socklab load chat --window`). 0, no window: every client sends
/// all its lines at once and only TCP and the server's flow control pace it; what issue 7 asks
/// to see delivered with no loss. 2: a client says line k only once (k - 2) x 499 deliveries
/// of its lines have been made, which keeps what waits in the room for any one client near
/// 500 x 2 lines (45 KB, under today's 64 KiB queue), so a room without flow control can be
/// measured too.
const CHAT_WINDOWS: [usize; 2] = [0, 2];

/// The runs of one server (socklab's loop `lp`, the C loop `lp`, or mio) in one echo cell.
struct EchoRuns {
    cell: &'static Cell,
    lp: &'static str,
    server: Server,
    runs: Vec<Run>,
}

/// The chat fan-out runs of one loop and window.
struct ChatRuns {
    lp: &'static str,
    window: usize,
    runs: Vec<Run>,
}

/// A load that used this much of its CPU may itself have set the pace: the figure it measured
/// is then a lower bound for that server.
const LOAD_BOUND: f64 = 0.9;

struct Settings {
    /// Repetitions of every echo cell: five, so that the median of the paired ratios shrugs off
    /// a run or two disturbed by other work on the machine.
    reps: usize,
    /// Repetitions of the chat fan-out, a check of delivery with figures of its own (no ratio).
    chat_reps: usize,
    secs: f64,
    warmup: f64,
    chat_clients: usize,
    chat_lines: usize,
    loops: Vec<&'static str>,
    quick: bool,
}

/// Where the programs are: next to this one (target/release), and under target/.
struct Programs {
    socklab: PathBuf,
    echo_c: PathBuf,
    mio: PathBuf,
    out: PathBuf,
    /// `taskset -c N` prefixes, when there are two CPUs to pin to.
    pin: bool,
}

/// One run: the load's report, or why there is none.
struct Run {
    report: Option<Json>,
    failures: Vec<String>,
}

impl Run {
    fn figure(&self, name: &str) -> Option<f64> {
        self.report.as_ref()?.number(name).filter(|n| n.is_finite())
    }

    fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// `WHO: the first failure (and N more)`, if the run failed.
    fn failure_line(&self, who: &str) -> Option<String> {
        match self.failures.as_slice() {
            [] => None,
            [only] => Some(format!("{who}: {only}")),
            [first, rest @ ..] => Some(format!("{who}: {first} (and {} more)", rest.len())),
        }
    }
}

fn main() {
    let settings = match parse(std::env::args().skip(1).collect()) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("bench: {message}");
            std::process::exit(2);
        }
    };
    let programs = match find_programs() {
        Ok(programs) => programs,
        Err(message) => {
            eprintln!("bench: {message}");
            std::process::exit(1);
        }
    };
    raise_descriptor_limit();
    let started = Instant::now();
    let pinning = if programs.pin {
        "servers on CPU 0, load on CPU 1"
    } else {
        "not pinned (one CPU, or no taskset)"
    };
    eprintln!(
        "bench: {} repetition(s) of {} s echo runs, {} of the chat, {pinning}; a line per run below, the tables at the end",
        settings.reps, settings.secs, settings.chat_reps
    );

    let mut load_averages = Vec::new();
    let mut echo: Vec<EchoRuns> = Vec::new();
    for cell in CELLS {
        let mut servers: Vec<(&'static str, Server)> = Vec::new();
        for &lp in &settings.loops {
            if !(cell.beyond_select && lp == "select") {
                servers.extend([(lp, Server::Socklab), (lp, Server::C)]);
            }
            // mio right after the first epoll loop, so that both epoll loops' runs are near
            // mio's in time (the ratios pair runs of the same repetition).
            if lp.starts_with("epoll") && !servers.iter().any(|&(_, server)| server == Server::Mio) {
                servers.push(("epoll", Server::Mio));
            }
        }
        let first = echo.len();
        echo.extend(servers.iter().map(|&(lp, server)| EchoRuns {
            cell,
            lp,
            server,
            runs: Vec::new(),
        }));
        for rep in 0..settings.reps {
            // Every other repetition in the opposite order: a machine getting busier (or
            // quieter) during a repetition then favours neither run of a pair.
            let entries = &mut echo[first..];
            if rep % 2 == 1 {
                entries.reverse();
            }
            if cell.sliced() {
                load_averages.extend(load_average());
                let servers: Vec<(&str, Server)> = entries.iter().map(|entry| (entry.lp, entry.server)).collect();
                let runs = sliced_runs(&programs, &settings, cell, &servers);
                for (entry, run) in entries.iter_mut().zip(runs) {
                    progress(cell.title, rep, entry.lp, entry.server, &run, cell.metric);
                    entry.runs.push(run);
                }
            } else {
                for entry in entries.iter_mut() {
                    load_averages.extend(load_average());
                    let run = echo_run(&programs, &settings, cell, entry.lp, entry.server);
                    progress(cell.title, rep, entry.lp, entry.server, &run, cell.metric);
                    entry.runs.push(run);
                }
            }
            if rep % 2 == 1 {
                entries.reverse();
            }
        }
    }
    let mut chat: Vec<ChatRuns> = Vec::new();
    for window in CHAT_WINDOWS {
        chat.extend(settings.loops.iter().map(|&lp| ChatRuns {
            lp,
            window,
            runs: Vec::new(),
        }));
    }
    for rep in 0..settings.chat_reps {
        for entry in &mut chat {
            load_averages.extend(load_average());
            let run = chat_run(&programs, &settings, entry.lp, entry.window);
            let title = format!("chat, window {}", entry.window);
            progress(&title, rep, entry.lp, Server::Socklab, &run, "lines_per_s");
            entry.runs.push(run);
        }
    }
    let elapsed = started.elapsed();

    let rows = report::echo_rows(&settings.loops, &echo);
    let mut out = String::new();
    report::echo_table(&mut out, &rows, settings.reps);
    report::ratio_tables(&mut out, &rows, &settings.loops);
    report::chat_table(&mut out, &chat, &settings);
    report::failures(&mut out, &echo, &chat);
    let count = echo.iter().map(|entry| entry.runs.len()).sum::<usize>()
        + chat.iter().map(|entry| entry.runs.len()).sum::<usize>();
    let _ = writeln!(
        out,
        "\n{count} runs in {:.0} s ({:.1} min).",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / 60.0
    );
    report::machine(&mut out, &load_averages);
    print!("{out}");
    let file = programs.out.join("results.json");
    let document = report::results_json(&settings, programs.pin, elapsed, &load_averages, &rows, &chat);
    match fs::write(&file, format!("{document}\n")) {
        Ok(()) => println!("Results: {}", file.display()),
        Err(e) => eprintln!("bench: writing {}: {e}", file.display()),
    }
}

fn parse(words: Vec<String>) -> Result<Settings, String> {
    let mut settings = Settings {
        reps: 5,
        chat_reps: 3,
        secs: 1.0,
        warmup: 0.2,
        chat_clients: 500,
        chat_lines: 200,
        loops: LOOPS.to_vec(),
        quick: false,
    };
    let mut words = words.into_iter();
    while let Some(flag) = words.next() {
        if flag == "--quick" {
            settings.quick = true;
            settings.reps = 1;
            settings.chat_reps = 1;
            settings.secs = 0.3;
            settings.warmup = 0.1;
            settings.chat_clients = 100;
            settings.chat_lines = 50;
            continue;
        }
        let value = words.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--reps" => {
                settings.reps = value.parse().map_err(|_| format!("--reps {value:?}"))?;
                settings.chat_reps = settings.reps.min(3);
            }
            "--secs" => settings.secs = value.parse().map_err(|_| format!("--secs {value:?}"))?,
            "--loops" => {
                settings.loops = value
                    .split(',')
                    .map(|name| {
                        LOOPS
                            .into_iter()
                            .find(|lp| *lp == name)
                            .ok_or(format!("no loop {name:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => {
                return Err(format!(
                    "unknown option {flag}; it takes --quick, --reps N, --secs S, --loops a,b"
                ));
            }
        }
    }
    Ok(settings)
}

fn find_programs() -> Result<Programs, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I? {e}"))?;
    let release = exe.parent().ok_or("no folder around this program")?;
    let target = release.parent().ok_or("no target folder")?;
    let programs = Programs {
        socklab: release.join("socklab"),
        echo_c: target.join("bench").join("echo-c"),
        mio: target.join("mio").join("release").join("mio-echo"),
        out: target.join("bench"),
        pin: std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
            && Command::new("taskset").arg("-V").output().is_ok(),
    };
    for program in [&programs.socklab, &programs.echo_c, &programs.mio] {
        if !program.exists() {
            return Err(format!("{} is not built: run `make bench`", program.display()));
        }
    }
    Ok(programs)
}

/// The servers need a descriptor per idle connection: soft limit up to the hard one, which
/// every process started from here inherits.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The machine's 1-minute load average (/proc/loadavg): how many processes were running or
/// waiting for a CPU, on average. The bench itself keeps about two busy (a server and a load).
fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// `taskset -c CPU program args...`, or the program alone.
fn pinned(pin: bool, cpu: &str, program: &Path, args: &[&str]) -> Command {
    let mut command = if pin {
        let mut taskset = Command::new("taskset");
        taskset.args(["-c", cpu]).arg(program);
        taskset
    } else {
        Command::new(program)
    };
    command.args(args);
    command
}

/// The echo server `server` with the loop `lp`, pinned to CPU 0, on a port the kernel picks.
fn server_command(programs: &Programs, lp: &str, server: Server) -> Command {
    match server {
        Server::Socklab => pinned(
            programs.pin,
            "0",
            &programs.socklab,
            &["echo-server", "--mux", lp, "--port", "0", "--trace", "off"],
        ),
        Server::C => pinned(programs.pin, "0", &programs.echo_c, &[lp]),
        Server::Mio => pinned(programs.pin, "0", &programs.mio, &[]),
    }
}

/// `socklab load` arguments for one run of `cell` lasting `secs` after `warmup`.
fn load_args(cell: &Cell, secs: f64, warmup: f64) -> Vec<String> {
    let mut args: Vec<String> = cell.args.iter().map(|s| s.to_string()).collect();
    args.extend(["--secs".into(), secs.to_string()]);
    if cell.args[0] == "pingpong" {
        args.extend(["--warmup".into(), warmup.to_string()]);
    }
    args
}

fn echo_run(programs: &Programs, settings: &Settings, cell: &Cell, lp: &str, server: Server) -> Run {
    let args = load_args(cell, settings.secs, settings.warmup);
    measure(programs, server_command(programs, lp, server), &args, 60)
}

/// One repetition of a sliced cell: every server started at once, then [`SLICES`] rounds in
/// which the load meets each server in turn (the order reversed every other round), then every
/// server killed. A server's run is its slices taken together: see [`combine`].
fn sliced_runs(programs: &Programs, settings: &Settings, cell: &Cell, servers: &[(&str, Server)]) -> Vec<Run> {
    let mut started = Vec::new();
    let mut failure = None;
    for (index, &(lp, server)) in servers.iter().enumerate() {
        let log_path = programs.out.join(format!("server-{index}.log"));
        match start_server(server_command(programs, lp, server), &log_path) {
            Ok(running) => started.push(running),
            Err(why) => {
                failure = Some(why);
                break;
            }
        }
    }
    let mut slices: Vec<Vec<Run>> = servers.iter().map(|_| Vec::new()).collect();
    if failure.is_none() {
        let args = load_args(cell, settings.secs / SLICES as f64, settings.warmup / SLICES as f64);
        for round in 0..SLICES {
            let mut order: Vec<usize> = (0..servers.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for index in order {
                let (child, port) = &started[index];
                slices[index].push(run_load(programs, &args, *port, child.id(), 60));
            }
        }
    }
    for (mut child, _) in started {
        let _ = child.kill();
        let _ = child.wait();
    }
    match failure {
        Some(why) => servers
            .iter()
            .map(|_| Run {
                report: None,
                failures: vec![why.clone()],
            })
            .collect(),
        None => slices.into_iter().map(|runs| combine(runs, cell.metric)).collect(),
    }
}

/// A server's slices as one run: the figure and the CPU shares weighted by each slice's
/// length (so the figure is what all the slices' messages or bytes make per second of them
/// all), the latencies' medians over the slices, and every slice's failures.
fn combine(slices: Vec<Run>, metric: &str) -> Run {
    let failures: Vec<String> = slices.iter().flat_map(|run| run.failures.iter().cloned()).collect();
    if slices.iter().any(|run| run.report.is_none()) {
        return Run { report: None, failures };
    }
    let secs: Vec<f64> = slices.iter().map(|run| run.figure("secs").unwrap_or(0.0)).collect();
    let total: f64 = secs.iter().sum();
    let weighted = |name: &str| -> Option<f64> {
        let parts: Option<Vec<f64>> = slices.iter().map(|run| run.figure(name)).collect();
        let parts = parts?;
        (total > 0.0).then(|| parts.iter().zip(&secs).map(|(value, s)| value * s).sum::<f64>() / total)
    };
    let median_of = |name: &str| -> Option<f64> {
        let mut values: Vec<f64> = slices.iter().filter_map(|run| run.figure(name)).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    let mut fields = vec![
        ("load".to_string(), Json::Text("sliced".into())),
        ("ok".to_string(), Json::Bool(failures.is_empty())),
        ("secs".to_string(), Json::Number(total)),
        ("slices".to_string(), Json::Number(slices.len() as f64)),
    ];
    for name in [metric, "server_cpu", "load_cpu"] {
        if let Some(value) = weighted(name) {
            fields.push((name.to_string(), Json::Number(value)));
        }
    }
    for name in ["p50_us", "p99_us"] {
        if let Some(value) = median_of(name) {
            fields.push((name.to_string(), Json::Number(value)));
        }
    }
    fields.push((
        "failures".to_string(),
        Json::List(failures.iter().cloned().map(Json::Text).collect()),
    ));
    Run {
        report: Some(Json::Object(fields)),
        failures,
    }
}

fn chat_run(programs: &Programs, settings: &Settings, lp: &str, window: usize) -> Run {
    let command = pinned(
        programs.pin,
        "0",
        &programs.socklab,
        &["chat-server", "--mux", lp, "--port", "0", "--trace", "off"],
    );
    let args: Vec<String> = [
        "chat",
        "--clients",
        &settings.chat_clients.to_string(),
        "--lines",
        &settings.chat_lines.to_string(),
        "--window",
        &window.to_string(),
        "--timeout",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    measure(programs, command, &args, 90)
}

/// Starts the server, waits for the line that says where it listens, runs the load against
/// it, and kills the server. The server's stderr goes to target/bench/server.log.
fn measure(programs: &Programs, server: Command, load_args: &[String], limit_secs: u64) -> Run {
    match start_server(server, &programs.out.join("server.log")) {
        Ok((mut child, port)) => {
            let run = run_load(programs, load_args, port, child.id(), limit_secs);
            let _ = child.kill();
            let _ = child.wait();
            run
        }
        Err(failure) => Run {
            report: None,
            failures: vec![failure],
        },
    }
}

/// Starts a server with its stderr in `log_path` and waits until it says where it listens:
/// the running server and its port (or why not, the server killed).
fn start_server(mut server: Command, log_path: &Path) -> Result<(std::process::Child, u16), String> {
    let log = fs::File::create(log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut child = server
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting the server: {e}"))?;
    match wait_for_port(log_path, &mut child) {
        Ok(port) => Ok((child, port)),
        Err(failure) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(failure)
        }
    }
}

/// The port from the server's `listens on 127.0.0.1:PORT` line (socklab, C and mio all say it).
fn wait_for_port(log_path: &Path, child: &mut std::process::Child) -> Result<u16, String> {
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        let text = fs::read_to_string(log_path).unwrap_or_default();
        if let Some(at) = text.find("listens on 127.0.0.1:") {
            let digits: String = text[at + 21..].chars().take_while(char::is_ascii_digit).collect();
            return digits.parse().map_err(|_| format!("no port in {text:?}"));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited ({status}) before listening: {text}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("the server did not say where it listens within 10 s".into())
}

/// Runs `socklab load ... --json` against the server; its output goes to target/bench/load.out
/// and load.err. The load bounds its own time; `limit_secs` only guards against a bug in it.
fn run_load(programs: &Programs, load_args: &[String], port: u16, pid: u32, limit_secs: u64) -> Run {
    let failed = |failure: String| Run {
        report: None,
        failures: vec![failure],
    };
    let (out_path, err_path) = (programs.out.join("load.out"), programs.out.join("load.err"));
    let files = fs::File::create(&out_path).and_then(|out| Ok((out, fs::File::create(&err_path)?)));
    let (out, err) = match files {
        Ok(files) => files,
        Err(e) => return failed(format!("{}: {e}", programs.out.display())),
    };
    let mut load = pinned(programs.pin, "1", &programs.socklab, &["load"]);
    load.args(load_args)
        .args(["--port", &port.to_string(), "--server-pid", &pid.to_string(), "--json"]);
    let mut child = match load.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("starting the load: {e}")),
    };
    let give_up = Instant::now() + Duration::from_secs(limit_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < give_up => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return failed(format!("the load ran past {limit_secs} s and was killed"));
            }
            Err(e) => return failed(format!("waiting for the load: {e}")),
        }
    };
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let Ok(report) = Json::parse(stdout.trim()) else {
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        return failed(format!("the load gave no report ({status}): {}", stderr.trim()));
    };
    let failures = match report.get("failures") {
        Some(Json::List(items)) => items
            .iter()
            .filter_map(|item| match item {
                Json::Text(text) => Some(text.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Run {
        report: Some(report),
        failures,
    }
}

/// One line per run while the bench goes on.
fn progress(title: &str, rep: usize, lp: &str, server: Server, run: &Run, metric: &str) {
    let figure = run.figure(metric).map_or("-".into(), |value| human(value, metric));
    let cpu = match (run.figure("server_cpu"), run.figure("load_cpu")) {
        (Some(server), Some(load)) => format!("CPU server {server:.2}, load {load:.2}"),
        _ => String::new(),
    };
    let verdict = run.failure_line("  FAILED").unwrap_or_default();
    let lp = if server == Server::Mio { "-" } else { lp };
    eprintln!(
        "  {title:<20} #{} {lp:<8} {:<7} {figure:>14}  {cpu}{verdict}",
        rep + 1,
        server.name()
    );
}

/// `123.4k msgs/s`, `1523 MB/s`, `4.05M lines/s`.
fn human(value: f64, metric: &str) -> String {
    match metric {
        "mb_per_s" => format!("{value:.0} MB/s"),
        "lines_per_s" => format!("{:.2}M lines/s", value / 1e6),
        _ => format!("{:.1}k msgs/s", value / 1e3),
    }
}
