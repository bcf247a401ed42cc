//! CPU time of the load generator and of the server, so a run can show
//! that the tool is not the bottleneck: on a shared machine its CPU per
//! received message must stay below the server's CPU per delivery.

use std::time::Duration;

use serde::Serialize;

/// CPU seconds per message, for the tool and (with `--server-pid`) the server.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CpuFigures {
    pub loadtest_cpu_s: f64,
    /// Microseconds of the load generator's CPU per message it received.
    pub loadtest_us_per_message: f64,
    pub server_cpu_s: Option<f64>,
    /// Microseconds of the server's CPU per delivery.
    pub server_us_per_delivery: Option<f64>,
}

/// CPU times at the start of the measured phase.
pub struct CpuMeter {
    own: Duration,
    server_pid: Option<u32>,
    server: Option<Duration>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            own: own_cpu(),
            server_pid,
            server: server_pid.and_then(process_cpu),
        }
    }

    /// The CPU used since [`CpuMeter::start`], per `messages` received.
    pub fn finish(&self, messages: u64) -> CpuFigures {
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / messages.max(1) as f64;
        let own = own_cpu().saturating_sub(self.own);
        let server = match (self.server_pid.and_then(process_cpu), self.server) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then)),
            _ => None,
        };
        CpuFigures {
            loadtest_cpu_s: own.as_secs_f64(),
            loadtest_us_per_message: per(own),
            server_cpu_s: server.map(|s| s.as_secs_f64()),
            server_us_per_delivery: server.map(per),
        }
    }
}

/// User + system CPU of this process.
fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a zeroed rusage and a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// User + system CPU of another process, from /proc/PID/stat.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_millis(ticks * 1000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_own_and_another_process_cpu() {
        let meter = CpuMeter::start(Some(std::process::id()));
        // Burn some CPU so both clocks move.
        let mut x = 0u64;
        let begun = std::time::Instant::now();
        while begun.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let figures = meter.finish(1000);
        assert!(figures.loadtest_cpu_s > 0.1, "{figures:?}");
        assert!(
            (figures.loadtest_us_per_message - figures.loadtest_cpu_s * 1000.0).abs() < 1.0,
            "{figures:?}"
        );
        // /proc ticks are 10 ms coarse: the same process read both ways.
        let server = figures.server_cpu_s.unwrap();
        assert!(
            server > 0.1 && (server - figures.loadtest_cpu_s).abs() < 0.1,
            "{figures:?}"
        );
    }
}
