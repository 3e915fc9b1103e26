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

/// CPU time (user + system, all threads) of this process and, when its PID is known, of the
/// server: read from /proc/PID/stat at the start and the end of the measured interval, so a
/// report can show whether the load or the server was the busy one.
pub struct CpuWatch {
    server: Option<i32>,
    started: Instant,
    load_ticks: u64,
    server_ticks: Option<u64>,
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
            load_ticks: ticks_of("self").unwrap_or(0),
            server_ticks: server.and_then(|pid| ticks_of(&pid.to_string())),
        }
    }

    pub fn stop(&self) -> CpuUse {
        let seconds = self.started.elapsed().as_secs_f64().max(1e-9);
        let per_second = clock_ticks_per_second();
        let cores = |before: u64, after: u64| after.saturating_sub(before) as f64 / per_second / seconds;
        let load = ticks_of("self").map_or(0.0, |after| cores(self.load_ticks, after));
        let server = match (self.server, self.server_ticks) {
            (Some(pid), Some(before)) => ticks_of(&pid.to_string()).map(|after| cores(before, after)),
            _ => None,
        };
        CpuUse { load, server }
    }
}

/// utime + stime of a process, in clock ticks: fields 14 and 15 of /proc/PID/stat (proc(5)),
/// counted after the command name, which is in parentheses and may hold spaces.
fn ticks_of(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// `sysconf(_SC_CLK_TCK)`: the unit of /proc's CPU times (nix has sysconf only behind a
/// feature this crate does not turn on).
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant from the C library and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
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
        let watch = CpuWatch::start(Some(sleeper.id() as i32));
        // Spin until the kernel has charged us 5 ticks (50 ms here), however busy the machine.
        let before = ticks_of("self").unwrap();
        let give_up = Instant::now() + Duration::from_secs(5);
        let mut spins = 0u64;
        while ticks_of("self").unwrap() < before + 5 && Instant::now() < give_up {
            spins = std::hint::black_box(spins + 1);
        }
        let used = watch.stop();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        assert!(used.load > 0.0, "spinning counted as {} of a core", used.load);
        assert!(used.server.is_some_and(|cores| cores < 0.2), "{:?}", used.server);
    }
}
