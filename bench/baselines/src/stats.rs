//! Latency samples, nearest-rank percentiles and the one-line JSON report.

use std::fmt::Write as _;
use std::time::Duration;

/// Nearest-rank percentile of an ascending-sorted slice: the smallest sample
/// such that at least `p` percent of the samples are less than or equal to it.
pub fn nearest_rank(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// One benchmark result; `None` fields are omitted from the JSON line.
#[derive(Debug, Default)]
pub struct Report {
    pub name: &'static str,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub throughput_per_s: Option<f64>,
    pub calls: Option<usize>,
}

impl Report {
    /// Builds a report from per-call samples and the wall time of the run.
    pub fn from_samples(name: &'static str, mut samples: Vec<Duration>, elapsed: Duration) -> Self {
        samples.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let secs = elapsed.as_secs_f64();
        Report {
            name,
            p50_us: nearest_rank(&samples, 50.0).map(us),
            p99_us: nearest_rank(&samples, 99.0).map(us),
            throughput_per_s: (secs > 0.0).then(|| samples.len() as f64 / secs),
            calls: Some(samples.len()),
        }
    }

    pub fn to_json(&self) -> String {
        // Names are fixed ASCII identifiers, so no escaping is needed.
        let mut out = format!("{{\"name\": \"{}\"", self.name);
        let mut field = |key: &str, v: Option<f64>| {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                let _ = write!(out, ", \"{key}\": {v:.3}");
            }
        };
        field("p50_us", self.p50_us);
        field("p99_us", self.p99_us);
        field("throughput_per_s", self.throughput_per_s);
        if let Some(calls) = self.calls {
            let _ = write!(out, ", \"calls\": {calls}");
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_micros(x)).collect()
    }

    #[test]
    fn nearest_rank_matches_definition() {
        let s = us(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(nearest_rank(&s, 50.0), Some(Duration::from_micros(5)));
        assert_eq!(nearest_rank(&s, 99.0), Some(Duration::from_micros(10)));
        assert_eq!(nearest_rank(&s, 0.0), Some(Duration::from_micros(1)));
        assert_eq!(
            nearest_rank(&us(&[7]), 99.0),
            Some(Duration::from_micros(7))
        );
        assert_eq!(nearest_rank(&[], 50.0), None);
    }

    #[test]
    fn json_omits_missing_fields() {
        let r = Report {
            name: "x",
            throughput_per_s: Some(2.0),
            calls: Some(3),
            ..Default::default()
        };
        assert_eq!(
            r.to_json(),
            "{\"name\": \"x\", \"throughput_per_s\": 2.000, \"calls\": 3}"
        );
    }
}
