//! `--workers N`: one run over several processes, each under the
//! per-process open-file limit, merged into one report.
//!
//! The parent starts N copies of itself with `--worker I`; each drives its
//! share of the connections, spread over every `--url` like a single
//! process's (for `fanout`, its share of the publishers and the rate; for
//! `chat`, its share of the users, rooms and churn; for `storm`, its share
//! of the clients and publishers; all on destinations of its own,
//! `<prefix>w<I>.…`, so each stream is judged where all its subscribers
//! are), prints a machine
//! progress line every second, and writes its report with its raw
//! histograms. The parent adds the progress lines up into the usual one,
//! then merges the reports: counts add up, percentiles come from the
//! merged histograms, the timeline adds up second by second.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    report::{latency_curve, RawHistograms, Report},
    scenario::Sample,
    stats::{latency_histogram, Percentiles},
};

/// The share of `total` that worker `index` of `count` takes, and where
/// its share starts in the whole run's numbering.
pub fn share(total: usize, index: usize, count: usize) -> (usize, usize) {
    let count = count.max(1);
    let part = |j: usize| total / count + usize::from(j < total % count);
    (part(index), (0..index).map(part).sum())
}

/// A worker's latest progress line.
#[derive(Debug, Default, Clone, Copy)]
struct Latest {
    connections: u64,
    sent: u64,
    delivered: u64,
    p99_ms: f64,
}

/// Starts `count` workers running `args` (the command line without
/// `--workers`, `--json`, `--plot`, `--quiet`), shows their summed
/// progress unless `quiet`, and merges their reports.
pub fn drive(args: &[String], count: usize, quiet: bool) -> Result<Report, String> {
    let dir = std::env::temp_dir().join(format!("loadtest-workers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let latest = Arc::new(Mutex::new(vec![Latest::default(); count]));
    let mut children: Vec<(Child, std::path::PathBuf)> = Vec::with_capacity(count);
    let mut readers = Vec::with_capacity(count);
    for index in 0..count {
        let json = dir.join(format!("worker-{index}.json"));
        let mut child = Command::new(&exe)
            .args(args)
            .args([
                "--workers",
                &count.to_string(),
                "--worker",
                &index.to_string(),
            ])
            .arg("--json")
            .arg(&json)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting worker {index}: {e}"))?;
        let stdout = child.stdout.take().expect("piped");
        let latest = latest.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let ["progress", _, connections, sent, delivered, p99] = fields[..] {
                    latest.lock().unwrap()[index] = Latest {
                        connections: connections.parse().unwrap_or(0),
                        sent: sent.parse().unwrap_or(0),
                        delivered: delivered.parse().unwrap_or(0),
                        p99_ms: p99.parse().unwrap_or(0.0),
                    };
                }
            }
        }));
        children.push((child, json));
    }
    let started = std::time::Instant::now();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = (!quiet).then(|| {
        let (latest, done) = (latest.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(Duration::from_secs(1));
                let all = latest.lock().unwrap().clone();
                let sample = Sample {
                    t_s: started.elapsed().as_secs_f64(),
                    connections: all.iter().map(|l| l.connections).sum(),
                    sent_per_s: all.iter().map(|l| l.sent).sum(),
                    delivered_per_s: all.iter().map(|l| l.delivered).sum(),
                    p99_ms: all.iter().map(|l| l.p99_ms).fold(0.0, f64::max),
                };
                eprintln!("{} ({count} workers)", sample.line());
            }
        })
    });
    let mut reports = Vec::with_capacity(count);
    let mut failed = Vec::new();
    for (index, (mut child, json)) in children.into_iter().enumerate() {
        let status = child.wait().map_err(|e| format!("worker {index}: {e}"))?;
        let report = std::fs::read_to_string(&json)
            .ok()
            .and_then(|text| serde_json::from_str::<Report>(&text).ok());
        match report {
            Some(report) if status.success() => reports.push(report),
            _ => failed.push(format!("worker {index} ({status})")),
        }
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    for reader in readers {
        let _ = reader.join();
    }
    if let Some(ticker) = ticker {
        let _ = ticker.join();
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !failed.is_empty() {
        return Err(format!("failed: {}", failed.join(", ")));
    }
    Ok(merge(reports))
}

/// One report out of the workers' reports.
pub fn merge(reports: Vec<Report>) -> Report {
    let mut merged = Report::default();
    let mut connect = latency_histogram();
    let mut delivery = latency_histogram();
    let mut timeline: BTreeMap<usize, Sample> = BTreeMap::new();
    let mut urls: Vec<String> = Vec::new();
    let mut cpu = Vec::new();
    for (index, r) in reports.into_iter().enumerate() {
        if index == 0 {
            merged.scenario = r.scenario.clone();
            merged.server_rss_kib_before = r.server_rss_kib_before;
        }
        cpu.extend(r.cpu.clone());
        if !urls.contains(&r.url) {
            urls.push(r.url.clone());
        }
        merged.duration_s = merged.duration_s.max(r.duration_s);
        let c = &mut merged.connections;
        c.attempted += r.connections.attempted;
        c.opened += r.connections.opened;
        for (cause, n) in &r.connections.failed {
            *c.failed.entry(cause.clone()).or_default() += n;
        }
        if let Some(c) = &r.chat {
            let total = merged
                .chat
                .get_or_insert_with(|| crate::scenario::chat::ChatFigures {
                    rooms_per_user: c.rooms_per_user,
                    smallest_room: u64::MAX,
                    ..Default::default()
                });
            total.users += c.users;
            total.rooms += c.rooms;
            total.largest_room = total.largest_room.max(c.largest_room);
            total.smallest_room = total.smallest_room.min(c.smallest_room);
            total.reconnects += c.reconnects;
            total.reconnect_failures += c.reconnect_failures;
            total.churned_users += c.churned_users;
            total.skipped_offline += c.skipped_offline;
        }
        if let Some(s) = &r.storm {
            merged.storm.get_or_insert_with(Default::default).absorb(s);
        }
        merged.published += r.published;
        merged.publish_rate_target += r.publish_rate_target;
        merged.deliveries_per_s += r.deliveries_per_s;
        if let Some(d) = &r.deliveries {
            let total = merged.deliveries.get_or_insert_with(Default::default);
            total.expected += d.expected;
            total.received += d.received;
            total.lost += d.lost;
            total.duplicates += d.duplicates;
            total.out_of_order += d.out_of_order;
        }
        // The last worker to measure the server saw it with every
        // connection open.
        merged.server_rss_kib_after = r.server_rss_kib_after.max(merged.server_rss_kib_after);
        if let Some(raw) = &r.raw {
            RawHistograms::load(&mut connect, &raw.connect);
            RawHistograms::load(&mut delivery, &raw.delivery);
        }
        for (second, s) in r.timeline.iter().enumerate() {
            let slot = timeline.entry(second).or_insert_with(|| Sample {
                t_s: s.t_s,
                ..Sample::default()
            });
            slot.connections += s.connections;
            slot.sent_per_s += s.sent_per_s;
            slot.delivered_per_s += s.delivered_per_s;
            slot.p99_ms = slot.p99_ms.max(s.p99_ms);
        }
    }
    merged.url = urls.join(",");
    // CPU: the tool's adds up over the workers; the server's (measured by
    // each worker over the same run) is the largest measurement.
    let received = merged.deliveries.as_ref().map_or(0, |d| d.received).max(1) as f64;
    if !cpu.is_empty() {
        let tool: f64 = cpu.iter().map(|c| c.loadtest_cpu_s).sum();
        let server = cpu
            .iter()
            .filter_map(|c| c.server_cpu_s)
            .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
        merged.cpu = Some(crate::cpu::CpuFigures {
            loadtest_cpu_s: tool,
            loadtest_us_per_message: tool * 1e6 / received,
            server_cpu_s: server,
            server_us_per_delivery: server.map(|s| s * 1e6 / received),
        });
    }
    merged.connections.connect_latency = Percentiles::of(&connect);
    if !delivery.is_empty() {
        merged.delivery_latency = Some(Percentiles::of(&delivery));
        merged.latency_curve = latency_curve(&delivery);
    }
    merged.timeline = timeline.into_values().collect();
    if let (Some(before), Some(after)) = (merged.server_rss_kib_before, merged.server_rss_kib_after)
    {
        if merged.connections.opened > 0 && merged.scenario == "connect" {
            merged.server_rss_bytes_per_connection = Some(
                (after.saturating_sub(before) * 1024) as f64 / merged.connections.opened as f64,
            );
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Connections;

    #[test]
    fn shares_cover_the_total_once() {
        let shares: Vec<_> = (0..4).map(|i| share(10, i, 4)).collect();
        assert_eq!(shares, [(3, 0), (3, 3), (2, 6), (2, 8)]);
        assert_eq!(share(5, 0, 1), (5, 0));
    }

    #[test]
    fn merged_percentiles_come_from_all_workers_samples() {
        let worker = |values: &[u64], opened: u64| {
            let mut h = latency_histogram();
            for v in values {
                h.record(*v).unwrap();
            }
            Report {
                scenario: "fanout".into(),
                connections: Connections {
                    attempted: opened,
                    opened,
                    ..Connections::default()
                },
                published: 10,
                raw: Some(RawHistograms {
                    connect: RawHistograms::dump(&h),
                    delivery: RawHistograms::dump(&h),
                }),
                ..Report::default()
            }
        };
        // Alone, each worker's median is 1 ms or 100 ms; together the
        // 99th percentile is the slow worker's.
        let fast = worker(&[1_000; 99], 99);
        let slow = worker(&[100_000], 1);
        let merged = merge(vec![fast, slow]);
        assert_eq!(merged.connections.opened, 100);
        assert_eq!(merged.published, 20);
        let d = merged.delivery_latency.unwrap();
        assert_eq!(d.count, 100);
        assert!((d.p50_ms - 1.0).abs() < 0.01, "{d:?}");
        assert!(d.max_ms >= 99.0, "{d:?}");
    }
}
