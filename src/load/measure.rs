//! What a load measures besides counting: latencies, and the CPU time it and the server used.

use std::time::{Duration, Instant};

/// Latencies in a fixed table of buckets, so recording one allocates nothing: exact below
/// 128 ns, then 64 buckets per power of two (within 1.6 % of the true value), up to 2^40 ns
/// (18 minutes).
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

const EXACT: u64 = 128;
const PER_DOUBLING: u64 = 64;
const BUCKETS: usize = (EXACT + (40 - 7) * PER_DOUBLING) as usize;

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let bucket = bucket_of(nanos).min(BUCKETS - 1);
        self.counts[bucket] += 1;
        self.total += 1;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency below which a fraction `q` (0.5, 0.99) of those recorded lie, in
    /// microseconds: the middle of the bucket it fell in. None if nothing was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let rank = ((self.total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank && count > 0 {
                let (low, width) = bounds_of(bucket);
                return Some((low as f64 + width as f64 / 2.0) / 1000.0);
            }
        }
        None
    }
}

/// Below 128: the value itself. Above: the power of two it lies in, then which of its 64
/// equal slices.
fn bucket_of(nanos: u64) -> usize {
    if nanos < EXACT {
        return nanos as usize;
    }
    let power = 63 - u64::from(nanos.leading_zeros()); // 7 or more
    let shift = power - 6;
    let slice = (nanos >> shift) - PER_DOUBLING; // 0..64
    (EXACT + (power - 7) * PER_DOUBLING + slice) as usize
}

/// A bucket's lowest value and its width, in nanoseconds.
fn bounds_of(bucket: usize) -> (u64, u64) {
    let bucket = bucket as u64;
    if bucket < EXACT {
        return (bucket, 1);
    }
    let power = 7 + (bucket - EXACT) / PER_DOUBLING;
    let slice = (bucket - EXACT) % PER_DOUBLING;
    let shift = power - 6;
    ((PER_DOUBLING + slice) << shift, 1 << shift)
}

/// CPU time of this process (all its threads, getrusage) and, when its PID is known, of the
/// server (/proc/PID/task/*/schedstat, in nanoseconds), read at the start and the end of the
/// measured interval, so a report can show whether the load or the server was the busy one.
/// On a machine shared with other work a process can also wait for its CPU: then both use
/// less than a core, and the throughput says less about the server than its CPU per message.
pub struct CpuWatch {
    server: Option<i32>,
    started: Instant,
    load_time: Duration,
    server_time: Option<Duration>,
}

/// What a [`CpuWatch`] saw: cores used, 1.0 being one core busy all the time.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    pub load: f64,
    pub server: Option<f64>,
}

impl CpuWatch {
    pub fn start(server: Option<i32>) -> CpuWatch {
        CpuWatch {
            server,
            started: Instant::now(),
            load_time: own_cpu_time(),
            server_time: server.and_then(cpu_time_of),
        }
    }

    pub fn stop(&self) -> CpuUse {
        self.stop_over(self.started.elapsed())
    }

    /// As [`CpuWatch::stop`], as a share of `active`: the part of the interval the work took
    /// (a chat run ends with a quiet spell in which nobody works).
    pub fn stop_over(&self, active: Duration) -> CpuUse {
        let seconds = active.as_secs_f64().max(1e-9);
        let cores = |before: Duration, after: Duration| after.saturating_sub(before).as_secs_f64() / seconds;
        let load = cores(self.load_time, own_cpu_time());
        let server = match (self.server, self.server_time) {
            (Some(pid), Some(before)) => cpu_time_of(pid).map(|after| cores(before, after)),
            _ => None,
        };
        CpuUse { load, server }
    }
}

/// `getrusage(RUSAGE_SELF)`: user + system time of every thread of this process, those that
/// have ended included.
fn own_cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return Duration::ZERO;
    };
    let micros = |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    micros(usage.user_time()) + micros(usage.system_time())
}

/// The time another process's threads have run: the first field of each thread's
/// /proc/PID/task/TID/schedstat, in nanoseconds (proc(5)). Threads that have ended are not
/// counted; the servers measured here have one.
fn cpu_time_of(pid: i32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = Duration::ZERO;
    for task in tasks.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        let nanos: u64 = schedstat.split(' ').next()?.parse().ok()?;
        total += Duration::from_nanos(nanos);
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_that_holds_it() {
        for nanos in (0..5000).chain([65_535, 1_000_000, 123_456_789, 1 << 39]) {
            let (low, width) = bounds_of(bucket_of(nanos));
            assert!(
                low <= nanos && nanos < low + width,
                "{nanos} not in [{low}, {})",
                low + width
            );
            assert!(
                width as f64 <= (nanos as f64 / 64.0).max(1.0),
                "bucket of {nanos} too wide: {width}"
            );
        }
    }

    #[test]
    fn quantiles_come_from_what_was_recorded() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile_us(0.5), None);
        for micros in 1..=100 {
            histogram.record(Duration::from_micros(micros));
        }
        let p50 = histogram.quantile_us(0.5).unwrap();
        let p99 = histogram.quantile_us(0.99).unwrap();
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
        assert!((98.0..=100.5).contains(&p99), "p99 {p99}");
        assert_eq!(histogram.count(), 100);
    }

    #[test]
    fn this_process_uses_some_cpu_and_a_sleeping_one_none() {
        let mut sleeper = std::process::Command::new("sleep").arg("2").spawn().unwrap();
        // Starting a program takes CPU (exec, the dynamic loader): watch it once it sleeps.
        let stat = format!("/proc/{}/stat", sleeper.id());
        let asleep = || {
            let text = std::fs::read_to_string(&stat).unwrap_or_default();
            text.contains("(sleep) S ")
        };
        let give_up = Instant::now() + Duration::from_secs(5);
        while !asleep() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(1));
        }
        let watch = CpuWatch::start(Some(sleeper.id() as i32));
        // Spin until the kernel has charged us 20 ms, however busy the machine.
        let before = own_cpu_time();
        let give_up = Instant::now() + Duration::from_secs(5);
        let mut spins = 0u64;
        while own_cpu_time() < before + Duration::from_millis(20) && Instant::now() < give_up {
            spins = std::hint::black_box(spins + 1);
        }
        let used = watch.stop();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert!(used.load > 0.0, "spinning counted as {} of a core", used.load);
        assert!(used.server.is_some_and(|cores| cores < 0.2), "{:?}", used.server);
    }
}
