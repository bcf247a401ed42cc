//! `--plot FILE.svg`: the latency distribution (by percentile, on a
//! "nines" axis) and throughput over time, as a self-contained SVG.

use std::fmt::Write;

use crate::report::Report;

const W: f64 = 460.0;
const H: f64 = 320.0;
const PAD: f64 = 50.0;

/// A named, coloured line of (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Renders the report's latency curve and timeline.
pub fn svg(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="11">"#,
        2.0 * W,
        H
    );
    out.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    // Left: latency by percentile; x is the number of nines.
    let nines = |p: f64| -(1.0 - p / 100.0).max(1e-6).log10();
    let curve: Vec<(f64, f64)> = report
        .latency_curve
        .iter()
        .map(|&(p, ms)| (nines(p), ms))
        .collect();
    chart(
        &mut out,
        0.0,
        &format!("{}: delivery latency by percentile", report.scenario),
        "ms",
        &[("latency", "#1f6feb", curve)],
        &[
            (0.0, "0%"),
            (1.0, "90%"),
            (2.0, "99%"),
            (3.0, "99.9%"),
            (4.0, "99.99%"),
            (5.0, "99.999%"),
        ],
    );
    // Right: throughput over time.
    let sent: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .map(|s| (s.t_s, s.sent_per_s as f64))
        .collect();
    let delivered: Vec<(f64, f64)> = report
        .timeline
        .iter()
        .map(|s| (s.t_s, s.delivered_per_s as f64))
        .collect();
    let end = report.timeline.last().map_or(1.0, |s| s.t_s);
    let ticks: Vec<(f64, String)> = (0..=4)
        .map(|i| {
            (
                end * i as f64 / 4.0,
                format!("{:.0}s", end * i as f64 / 4.0),
            )
        })
        .collect();
    let ticks: Vec<(f64, &str)> = ticks.iter().map(|(x, l)| (*x, l.as_str())).collect();
    chart(
        &mut out,
        W,
        "throughput over time",
        "per second",
        &[
            ("delivered", "#2da44e", delivered),
            ("sent", "#cf222e", sent),
        ],
        &ticks,
    );
    out.push_str("</svg>\n");
    out
}

/// One chart at horizontal offset `x0`: series of (x, y) points scaled to
/// the chart, x ticks given, y from 0 to the largest value.
fn chart(
    out: &mut String,
    x0: f64,
    title: &str,
    unit: &str,
    series: &[Series<'_>],
    x_ticks: &[(f64, &str)],
) {
    let points = series.iter().flat_map(|(_, _, p)| p.iter());
    let x_max = points
        .clone()
        .map(|p| p.0)
        .chain(x_ticks.iter().map(|t| t.0))
        .fold(f64::MIN, f64::max)
        .max(1e-9);
    let x_min = x_ticks.first().map_or(0.0, |t| t.0);
    let y_max = points.map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let sx = |x: f64| x0 + PAD + (x - x_min) / (x_max - x_min).max(1e-9) * (W - 2.0 * PAD);
    let sy = |y: f64| H - PAD - y / y_max * (H - 2.0 * PAD);
    let _ = write!(
        out,
        r#"<text x="{}" y="20" font-size="13">{}</text>"#,
        x0 + PAD,
        escape(title)
    );
    let _ = write!(
        out,
        r##"<line x1="{l}" y1="{b}" x2="{r}" y2="{b}" stroke="#333"/><line x1="{l}" y1="{t}" x2="{l}" y2="{b}" stroke="#333"/>"##,
        l = x0 + PAD,
        r = x0 + W - PAD,
        t = PAD,
        b = H - PAD
    );
    for (x, label) in x_ticks {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            sx(*x),
            H - PAD + 15.0,
            escape(label)
        );
    }
    for i in 0..=4 {
        let y = y_max / 1.1 * i as f64 / 4.0;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 + PAD - 4.0,
            sy(y) + 4.0,
            compact(y)
        );
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}">{}</text>"#,
        x0 + 4.0,
        PAD - 8.0,
        escape(unit)
    );
    for (i, (name, color, pts)) in series.iter().enumerate() {
        let coords: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            coords.join(" ")
        );
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}">{}</text>"#,
            x0 + W - PAD - 90.0,
            PAD + 14.0 * i as f64,
            escape(name)
        );
    }
}

fn compact(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v if v >= 10.0 => format!("{v:.0}"),
        v => format!("{v:.2}"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Sample;

    #[test]
    fn svg_has_both_charts_with_every_point() {
        let report = Report {
            scenario: "fanout".into(),
            latency_curve: vec![(0.0, 1.0), (90.0, 2.0), (99.0, 5.0), (99.9, 9.0)],
            timeline: (1..=3)
                .map(|t| Sample {
                    t_s: t as f64,
                    sent_per_s: 100,
                    delivered_per_s: 1000,
                    ..Sample::default()
                })
                .collect(),
            ..Report::default()
        };
        let svg = svg(&report);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            3,
            "latency, delivered, sent"
        );
        let latency = svg.split("<polyline").nth(1).unwrap();
        assert_eq!(
            latency
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .split(' ')
                .count(),
            4
        );
        assert!(svg.contains("99.9%") && svg.contains("throughput over time"));
    }
}
