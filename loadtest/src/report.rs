//! The run's figures: printed as a table for people, written as JSON for
//! tools (`--json FILE`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use hdrhistogram::Histogram;

use crate::stats::{Deliveries, Percentiles};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Connections {
    pub attempted: u64,
    pub opened: u64,
    pub failed: BTreeMap<String, u64>,
    pub connect_latency: Percentiles,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub url: String,
    pub duration_s: f64,
    pub connections: Connections,
    /// Messages published (fan-out scenario).
    pub published: u64,
    pub publish_rate_target: f64,
    pub deliveries: Option<Deliveries>,
    pub deliveries_per_s: f64,
    pub delivery_latency: Option<Percentiles>,
    pub server_rss_kib_before: Option<u64>,
    pub server_rss_kib_after: Option<u64>,
    pub server_rss_bytes_per_connection: Option<f64>,
    /// Once a second: connections, sends, deliveries, p99 of that second.
    pub timeline: Vec<crate::scenario::Sample>,
    /// Delivery latency by percentile, (percentile, ms), for plots.
    pub latency_curve: Vec<(f64, f64)>,
    /// Room, churn and typing figures of the chat scenario.
    pub chat: Option<crate::scenario::chat::ChatFigures>,
    /// CPU of the tool per received message and of the server per delivery.
    pub cpu: Option<crate::cpu::CpuFigures>,
    /// Reconnect figures of the storm scenario.
    pub storm: Option<crate::scenario::storm::StormFigures>,
    /// A worker's histograms, for the parent to merge (`--workers`); not in
    /// a merged or single-process report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawHistograms>,
}

/// Histograms as (value µs, count) pairs of their recorded buckets: what
/// percentiles of several processes are computed from.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RawHistograms {
    pub connect: Vec<(u64, u64)>,
    pub delivery: Vec<(u64, u64)>,
}

impl RawHistograms {
    pub fn dump(h: &Histogram<u64>) -> Vec<(u64, u64)> {
        h.iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    /// Adds `pairs` into `h`.
    pub fn load(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
        for &(value, count) in pairs {
            let _ = h.record_n(value.max(1), count);
        }
    }
}

impl Report {
    /// A plain table of the figures that matter.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("scenario".into(), self.scenario.clone()),
            ("url".into(), self.url.clone()),
            ("duration".into(), format!("{:.1} s", self.duration_s)),
            (
                "connections".into(),
                format!(
                    "{} opened / {} attempted",
                    self.connections.opened, self.connections.attempted
                ),
            ),
        ];
        for (cause, n) in &self.connections.failed {
            rows.push((format!("  failed: {cause}"), n.to_string()));
        }
        let c = &self.connections.connect_latency;
        rows.push((
            "connect latency".into(),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                c.p50_ms, c.p99_ms, c.max_ms
            ),
        ));
        if let Some(d) = &self.deliveries {
            rows.push((
                "published".into(),
                format!(
                    "{} (target {:.0}/s)",
                    self.published, self.publish_rate_target
                ),
            ));
            rows.push((
                "deliveries".into(),
                format!("{} of {} expected", d.received, d.expected),
            ));
            rows.push((
                "deliveries/s".into(),
                format!("{:.0}", self.deliveries_per_s),
            ));
            rows.push((
                "lost / duplicated / out of order".into(),
                format!("{} / {} / {}", d.lost, d.duplicates, d.out_of_order),
            ));
        }
        if let Some(l) = &self.delivery_latency {
            rows.push((
                "delivery latency".into(),
                format!(
                    "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
                ),
            ));
        }
        if let Some(c) = &self.chat {
            rows.push((
                "users / rooms".into(),
                format!(
                    "{} users in {} rooms each, {} rooms (largest {} members, smallest {})",
                    c.users, c.rooms_per_user, c.rooms, c.largest_room, c.smallest_room
                ),
            ));
            rows.push((
                "churn".into(),
                format!(
                    "{} reconnects ({} failed) over {} users, {} messages not typed while offline",
                    c.reconnects, c.reconnect_failures, c.churned_users, c.skipped_offline
                ),
            ));
        }
        if let Some(s) = &self.storm {
            let what = if s.clients_on_killed_node > 0 {
                format!(
                    "{} nodes, {} clients disconnected, {} back; those the kill cut off all back \
                     {:.2} s after it; {} moved later by rebalancing; {} reconnect attempts \
                     refused or failed",
                    s.nodes,
                    s.disconnected,
                    s.back,
                    s.all_back_after_s,
                    s.moved_later,
                    s.reconnect_failures
                )
            } else {
                format!(
                    "{} nodes, no kill; {} clients disconnected (drains, rebalancing), {} back; \
                     {} reconnect attempts refused or failed",
                    s.nodes, s.disconnected, s.back, s.reconnect_failures
                )
            };
            rows.push(("storm".into(), what));
            rows.push((
                "resubscribed".into(),
                format!(
                    "{} resumed:true, {} resumed:false",
                    s.resumed_complete, s.resumed_gap
                ),
            ));
            rows.push((
                "reconnect time".into(),
                format!(
                    "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                    s.reconnect.p50_ms, s.reconnect.p99_ms, s.reconnect.max_ms
                ),
            ));
            let rates: Vec<String> = s
                .connects_per_s_by_node
                .iter()
                .map(|r| format!("{r:.0}"))
                .collect();
            let peaks: Vec<String> = s
                .peak_connects_per_s_by_node
                .iter()
                .map(u64::to_string)
                .collect();
            if !rates.is_empty() && s.clients_on_killed_node > 0 {
                rows.push((
                    "reconnects/s by node".into(),
                    format!(
                        "mean {} (peak second {})",
                        rates.join(" / "),
                        peaks.join(" / ")
                    ),
                ));
            }
        }
        if let Some(cpu) = &self.cpu {
            let server = match (cpu.server_cpu_s, cpu.server_us_per_delivery) {
                (Some(s), Some(per)) => format!("; server {s:.2} s = {per:.2} µs per delivery"),
                _ => String::new(),
            };
            rows.push((
                "CPU".into(),
                format!(
                    "loadtest {:.2} s = {:.2} µs per received message{server}",
                    cpu.loadtest_cpu_s, cpu.loadtest_us_per_message
                ),
            ));
        }
        if let (Some(before), Some(after)) = (self.server_rss_kib_before, self.server_rss_kib_after)
        {
            rows.push((
                "server RSS".into(),
                format!("{before} KiB before, {after} KiB with connections"),
            ));
        }
        if let Some(per) = self.server_rss_bytes_per_connection {
            rows.push((
                "server RSS per connection".into(),
                format!("{per:.0} bytes"),
            ));
        }
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Latency at percentiles from 0 to 99.999 %, spaced for a log-scaled
/// "nines" axis.
pub fn latency_curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points = Vec::new();
    let mut nines = 0.0f64;
    while nines <= 5.0 {
        let q = 1.0 - 10f64.powf(-nines);
        points.push((q * 100.0, h.value_at_quantile(q) as f64 / 1000.0));
        nines += 0.125;
    }
    points
}
