//! What `make bench` prints and keeps: the echo table, the ratio tables, the chat table, the
//! failed checks, and target/bench/results.json.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socklab::load::json::Json;

use crate::{CELLS, CHAT_WINDOWS, Cell, ChatRuns, EchoRuns, LOAD_BOUND, Run, Server, Settings, human};

/// The middle value (the lower middle of an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// One server in one cell, over its runs. Figures are medians of the runs that passed every
/// check; the runs that failed are counted, never averaged in.
pub struct Summary {
    /// Each run's figure and its figure per server CPU-second, in the order of the
    /// repetitions; None for a run that failed.
    each: Vec<Option<(f64, Option<f64>)>>,
    /// The cell's figure (msgs/s or MB/s).
    median: Option<f64>,
    /// The same figure per second of the server's own CPU time: what a message costs the
    /// server, which other work on a shared machine disturbs much less than the throughput.
    per_cpu: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    server_cpu: Option<f64>,
    load_cpu: Option<f64>,
    failed: usize,
    runs: usize,
}

fn summarize(runs: &[Run], metric: &str) -> Summary {
    let passing: Vec<&Run> = runs.iter().filter(|run| run.ok()).collect();
    let median_of = |name: &str| median(passing.iter().filter_map(|run| run.figure(name)).collect());
    let each: Vec<_> = runs
        .iter()
        .map(|run| {
            let figure = run.figure(metric).filter(|_| run.ok())?;
            let cpu = run.figure("server_cpu").filter(|cpu| *cpu > 0.01);
            Some((figure, cpu.map(|cpu| figure / cpu)))
        })
        .collect();
    Summary {
        median: median_of(metric),
        per_cpu: median(each.iter().filter_map(|run| (*run)?.1).collect()),
        each,
        p50: median_of("p50_us"),
        p99: median_of("p99_us"),
        server_cpu: median_of("server_cpu"),
        load_cpu: median_of("load_cpu"),
        failed: runs.len() - passing.len(),
        runs: runs.len(),
    }
}

impl Summary {
    /// `123.4k msgs/s`, with `FAILED 2/3` when runs failed their checks.
    fn show(&self, metric: &str) -> String {
        let value = self.median.map_or("—".into(), |value| human(value, metric));
        if self.failed > 0 {
            format!("{value} FAILED {}/{}", self.failed, self.runs)
        } else {
            value
        }
    }

    fn load_bound(&self) -> bool {
        self.load_cpu.is_some_and(|cpu| cpu >= LOAD_BOUND)
    }

    fn to_json(&self) -> Json {
        let number = |value: Option<f64>| value.map_or(Json::Null, Json::Number);
        Json::Object(vec![
            ("median".into(), number(self.median)),
            ("per_server_cpu_second".into(), number(self.per_cpu)),
            ("p50_us".into(), number(self.p50)),
            ("p99_us".into(), number(self.p99)),
            ("server_cpu".into(), number(self.server_cpu)),
            ("load_cpu".into(), number(self.load_cpu)),
            ("failed_runs".into(), Json::Number(self.failed as f64)),
            ("runs".into(), Json::Number(self.runs as f64)),
        ])
    }
}

/// A ratio `socklab ÷ reference`, of the throughput or of the throughput per server CPU-second:
/// the median, over the repetitions, of the ratio of the two runs of the same repetition. Those
/// ran one after the other, seconds apart, so other work on a shared machine that slows a
/// stretch of the bench down falls on both; the ratio of two medians could pair a run from a
/// busy moment with one from a quiet one.
struct Ratio {
    value: Option<f64>,
    /// The load may have held the reference back (throughput only).
    load_bound: bool,
    /// A run of either failed a check.
    failed: bool,
}

impl Ratio {
    fn of(socklab: &Summary, reference: &Summary, per_cpu: bool) -> Ratio {
        let figure = |run: (f64, Option<f64>)| if per_cpu { run.1 } else { Some(run.0) };
        let ratios = socklab
            .each
            .iter()
            .zip(&reference.each)
            .filter_map(|(ours, theirs)| {
                let (ours, theirs) = (figure((*ours)?)?, figure((*theirs)?)?);
                (theirs > 0.0).then(|| ours / theirs)
            })
            .collect();
        Ratio {
            value: median(ratios),
            load_bound: !per_cpu && reference.load_bound(),
            failed: socklab.failed > 0 || reference.failed > 0,
        }
    }

    /// `0.93`, `0.93†`, `0.93!`, `—`.
    fn show(&self) -> String {
        let mut text = self.value.map_or("—".into(), |v| format!("{v:.2}"));
        if self.load_bound {
            text.push('†');
        }
        if self.failed {
            text.push('!');
        }
        text
    }
}

/// One loop in one cell: socklab, the C loop of the same kind, and mio for the epoll loops.
pub struct EchoRow {
    lp: &'static str,
    cell: &'static Cell,
    socklab: Summary,
    c: Summary,
    mio: Option<Summary>,
    runs: Vec<Json>,
}

impl EchoRow {
    fn versus(&self, mio: bool, per_cpu: bool) -> Option<Ratio> {
        let reference = if mio { self.mio.as_ref()? } else { &self.c };
        Some(Ratio::of(&self.socklab, reference, per_cpu))
    }
}

/// A row per loop and cell that was run, in the order of the loops, then the cells.
pub fn echo_rows(loops: &[&'static str], echo: &[EchoRuns]) -> Vec<EchoRow> {
    let find = |cell: &Cell, lp: &str, server: Server| {
        echo.iter()
            .find(|entry| entry.cell.key == cell.key && entry.lp == lp && entry.server == server)
    };
    let mut rows = Vec::new();
    for &lp in loops {
        for cell in CELLS {
            let (Some(ours), Some(theirs)) = (find(cell, lp, Server::Socklab), find(cell, lp, Server::C)) else {
                continue;
            };
            let mio = find(cell, "epoll", Server::Mio).filter(|_| lp.starts_with("epoll"));
            let mut runs = Vec::new();
            for entry in [Some(ours), Some(theirs), mio].into_iter().flatten() {
                runs.extend(entry.runs.iter().map(|run| run_json(entry.server.name(), run)));
            }
            rows.push(EchoRow {
                lp,
                cell,
                socklab: summarize(&ours.runs, cell.metric),
                c: summarize(&theirs.runs, cell.metric),
                mio: mio.map(|entry| summarize(&entry.runs, cell.metric)),
                runs,
            });
        }
    }
    rows
}

/// Every loop and cell: socklab's figure, its ratios, its latency and CPU, the references'.
pub fn echo_table(out: &mut String, rows: &[EchoRow], reps: usize) {
    let _ = writeln!(
        out,
        "\nEcho: median of {reps} run(s) each; socklab's figure, ÷ the C loop of the same kind, ÷ mio (epoll rows)"
    );
    let _ = writeln!(
        out,
        "{:<9} {:<19} {:>22} {:>7} {:>7} {:>13} {:>13} {:>22} {:>22}",
        "loop", "cell", "socklab", "÷ C", "÷ mio", "p50/p99 µs", "CPU srv/load", "C", "mio"
    );
    let mut last_loop = "";
    for row in rows {
        if row.lp != last_loop && !last_loop.is_empty() {
            let _ = writeln!(out);
        }
        last_loop = row.lp;
        let metric = row.cell.metric;
        let latency = match (row.socklab.p50, row.socklab.p99) {
            (Some(p50), Some(p99)) => format!("{p50:.0}/{p99:.0}"),
            _ => String::new(),
        };
        let cpu = match (row.socklab.server_cpu, row.socklab.load_cpu) {
            (Some(server), Some(load)) => format!("{server:.2}/{load:.2}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<9} {:<19} {:>22} {:>7} {:>7} {latency:>13} {cpu:>13} {:>22} {:>22}",
            row.lp,
            row.cell.title,
            row.socklab.show(metric),
            row.versus(false, false).map_or(String::new(), |r| r.show()),
            row.versus(true, false).map_or(String::new(), |r| r.show()),
            row.c.show(metric),
            row.mio.as_ref().map_or(String::new(), |mio| mio.show(metric)),
        );
    }
    for cell in CELLS.iter().filter(|cell| cell.beyond_select) {
        if rows.iter().any(|row| row.lp == "select") {
            let _ = writeln!(out, "(select, {}: — , beyond FD_SETSIZE = 1024)", cell.title);
        }
    }
}

/// The ratios as markdown tables, loops down, cells across (issue 7's layout): of the
/// throughput, then of the throughput per server CPU-second.
pub fn ratio_tables(out: &mut String, rows: &[EchoRow], loops: &[&'static str]) {
    let tables = [
        ("socklab ÷ C, throughput", false, false),
        ("socklab ÷ mio, throughput", true, false),
        ("socklab ÷ C, per second of server CPU", false, true),
        ("socklab ÷ mio, per second of server CPU", true, true),
    ];
    for (title, mio, per_cpu) in tables {
        let _ = write!(out, "\n{title}:\n\n| loop |");
        for cell in CELLS {
            let _ = write!(out, " {} |", cell.title);
        }
        let _ = writeln!(out, "\n|---|{}", "---|".repeat(CELLS.len()));
        for &lp in loops.iter().filter(|lp| !mio || lp.starts_with("epoll")) {
            let name = match lp {
                "epoll" => "epoll LT",
                "epoll-et" => "epoll ET",
                other => other,
            };
            let _ = write!(out, "| {name} |");
            for cell in CELLS {
                let ratio = rows
                    .iter()
                    .find(|row| row.lp == lp && row.cell.key == cell.key)
                    .and_then(|row| row.versus(mio, per_cpu));
                let _ = write!(out, " {} |", ratio.map_or("—".into(), |r| r.show()));
            }
            let _ = writeln!(out);
        }
    }
    let _ = writeln!(
        out,
        "\n† the load used ≥ {LOAD_BOUND} of its CPU while measuring the reference: the reference may be \
         faster than measured,\n  so the ratio is an upper bound.\
         \nA ratio is the median, over the repetitions, of socklab's run ÷ the reference's run of the same repetition\
         \n  (without idle connections, both servers run at once and the load goes from one to the other every\
         \n  fifth of a run; with them, one run after the other: either way other work on the machine falls on both).\
         \n! a run failed a correctness check (listed below); figures are medians of the runs that passed.\
         \nPer second of server CPU: the figure divided by the CPU time the server used, which waiting for a \
         CPU taken by\n  other work does not inflate; the fairer comparison on a busy machine."
    );
}

/// The chat fan-out per loop and window.
pub fn chat_table(out: &mut String, chat: &[ChatRuns], settings: &Settings) {
    let _ = writeln!(
        out,
        "\nChat fan-out: socklab chat-server, {} clients x {} lines, every line to the {} others, median of {} run(s).\
         \nWindow 0: each client sends all its lines at once, TCP paces it. Window {}: a client says line k \
         once (k - window) x\n(clients - 1) deliveries of its lines have been made.",
        settings.chat_clients,
        settings.chat_lines,
        settings.chat_clients - 1,
        settings.chat_reps,
        CHAT_WINDOWS[CHAT_WINDOWS.len() - 1],
    );
    let _ = writeln!(
        out,
        "{:<9} {:>6} {:>26} {:>26} {:>10} {:>8} {:>13}",
        "loop", "window", "lines/s", "delivered (worst run)", "lost", "dropped", "CPU srv/load"
    );
    for entry in chat {
        let passing = || entry.runs.iter().filter(|run| run.ok());
        let figures = |name: &str| passing().filter_map(|run| run.figure(name)).collect();
        let failed = entry.runs.len() - passing().count();
        let mut rate = median(figures("lines_per_s")).map_or("—".into(), |r| human(r, "lines_per_s"));
        if median(figures("load_cpu")).is_some_and(|cpu| cpu >= LOAD_BOUND) {
            rate.push('†'); // the room may be faster than the load could count
        }
        if failed > 0 {
            rate = format!("{rate} FAILED {failed}/{}", entry.runs.len());
        }
        let worst = entry.runs.iter().min_by(|a, b| {
            let delivered = |run: &Run| run.figure("delivered").unwrap_or(0.0);
            f64::total_cmp(&delivered(a), &delivered(b))
        });
        let figure = |name: &str| {
            worst
                .and_then(|run| run.figure(name))
                .map_or("—".into(), |v| format!("{v:.0}"))
        };
        let all = |name: &str| entry.runs.iter().filter_map(|run| run.figure(name)).collect();
        let cpu = match (median(all("server_cpu")), median(all("load_cpu"))) {
            (Some(server), Some(load)) => format!("{server:.2}/{load:.2}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<9} {:>6} {:>26} {:>26} {:>10} {:>8} {cpu:>13}",
            entry.lp,
            entry.window,
            rate,
            format!("{} of {}", figure("delivered"), figure("expected")),
            figure("lost"),
            figure("dropped"),
        );
    }
}

/// Every run that failed a check, one line each, or a line saying none did.
pub fn failures(out: &mut String, echo: &[EchoRuns], chat: &[ChatRuns]) {
    let mut lines = Vec::new();
    for entry in echo {
        let lp = if entry.server == Server::Mio { "" } else { entry.lp };
        for (rep, run) in entry.runs.iter().enumerate() {
            let who = format!("{} {lp} {} #{}", entry.cell.title, entry.server.name(), rep + 1);
            lines.extend(run.failure_line(&who));
        }
    }
    for entry in chat {
        for (rep, run) in entry.runs.iter().enumerate() {
            let who = format!("chat window {} {} #{}", entry.window, entry.lp, rep + 1);
            lines.extend(run.failure_line(&who));
        }
    }
    if lines.is_empty() {
        let _ = writeln!(out, "\nEvery run passed every check.");
    } else {
        let _ = writeln!(out, "\nFAILED CHECKS, {} run(s):", lines.len());
        for line in lines {
            let _ = writeln!(out, "  {line}");
        }
    }
}

/// How busy the machine was: the load average before each run. The bench keeps about two
/// processes running (a server and a load); more is other work, which takes CPU time from the
/// servers and the loads and disturbs what they measure.
pub fn machine(out: &mut String, load_averages: &[f64]) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (Some(median), Some(low), Some(high)) = (
        median(load_averages.to_vec()),
        load_averages.iter().copied().reduce(f64::min),
        load_averages.iter().copied().reduce(f64::max),
    ) else {
        return;
    };
    let _ = writeln!(
        out,
        "Machine: {cpus} CPUs; 1-minute load average before each run: median {median:.1} (from {low:.1} to {high:.1}); \
         the bench keeps about 2 busy, the rest was other work."
    );
}

fn run_json(server: &str, run: &Run) -> Json {
    Json::Object(vec![
        ("server".into(), Json::Text(server.into())),
        ("ok".into(), Json::Bool(run.ok())),
        (
            "failures".into(),
            Json::List(run.failures.iter().cloned().map(Json::Text).collect()),
        ),
        ("report".into(), run.report.clone().unwrap_or(Json::Null)),
    ])
}

/// results.json: the settings, then a row per loop and echo cell (each server's summary, the
/// ratios, every run's report) and a row per loop and chat window.
pub fn results_json(
    settings: &Settings,
    pinned: bool,
    elapsed: Duration,
    load_averages: &[f64],
    rows: &[EchoRow],
    chat: &[ChatRuns],
) -> Json {
    let number = |value: Option<f64>| value.map_or(Json::Null, Json::Number);
    let ratio = |row: &EchoRow, mio: bool, per_cpu: bool| number(row.versus(mio, per_cpu).and_then(|r| r.value));
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_default();
    let finished = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let echo_rows = rows
        .iter()
        .map(|row| {
            Json::Object(vec![
                ("loop".into(), Json::Text(row.lp.into())),
                ("cell".into(), Json::Text(row.cell.key.into())),
                ("title".into(), Json::Text(row.cell.title.into())),
                ("metric".into(), Json::Text(row.cell.metric.into())),
                ("socklab".into(), row.socklab.to_json()),
                ("c".into(), row.c.to_json()),
                ("mio".into(), row.mio.as_ref().map_or(Json::Null, Summary::to_json)),
                ("socklab_over_c".into(), ratio(row, false, false)),
                ("socklab_over_mio".into(), ratio(row, true, false)),
                ("socklab_over_c_per_cpu".into(), ratio(row, false, true)),
                ("socklab_over_mio_per_cpu".into(), ratio(row, true, true)),
                ("runs".into(), Json::List(row.runs.clone())),
            ])
        })
        .collect();
    let chat_rows = chat
        .iter()
        .map(|entry| {
            let rates = entry
                .runs
                .iter()
                .filter(|run| run.ok())
                .filter_map(|run| run.figure("lines_per_s"))
                .collect();
            Json::Object(vec![
                ("loop".into(), Json::Text(entry.lp.into())),
                ("window".into(), Json::Number(entry.window as f64)),
                ("median_lines_per_s".into(), number(median(rates))), // of the runs that passed
                ("ok".into(), Json::Bool(entry.runs.iter().all(Run::ok))),
                (
                    "runs".into(),
                    Json::List(entry.runs.iter().map(|run| run_json("socklab", run)).collect()),
                ),
            ])
        })
        .collect();
    Json::Object(vec![
        ("commit".into(), Json::Text(commit)),
        ("finished_unix".into(), Json::Number(finished as f64)),
        ("elapsed_s".into(), Json::Number(elapsed.as_secs_f64().round())),
        ("quick".into(), Json::Bool(settings.quick)),
        ("reps".into(), Json::Number(settings.reps as f64)),
        ("chat_reps".into(), Json::Number(settings.chat_reps as f64)),
        ("secs".into(), Json::Number(settings.secs)),
        ("pinned".into(), Json::Bool(pinned)),
        (
            "load_averages".into(),
            Json::List(load_averages.iter().copied().map(Json::Number).collect()),
        ),
        ("chat_clients".into(), Json::Number(settings.chat_clients as f64)),
        ("chat_lines".into(), Json::Number(settings.chat_lines as f64)),
        ("echo".into(), Json::List(echo_rows)),
        ("chat".into(), Json::List(chat_rows)),
    ])
}
