//! Prometheus text metrics: request counts by route, method and status; latency histograms by
//! route and method.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
pub(crate) const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (route, method, status) → count.
    requests: BTreeMap<(String, String, u16), u64>,
    /// (route, method) → latency.
    latency: BTreeMap<(String, String), Histogram>,
    /// Requests refused because the describing queue was full.
    rejected: u64,
}

impl Metrics {
    pub fn record(&self, route: &str, method: &str, status: u16, took: Duration) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *m.requests.entry((route.to_owned(), method.to_owned(), status)).or_default() += 1;
        let h = m.latency.entry((route.to_owned(), method.to_owned())).or_default();
        let s = took.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += s;
        h.count += 1;
    }

    pub fn rejected(&self) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).rejected += 1;
    }

    /// The Prometheus text exposition, with the gauges given.
    pub(crate) fn render(&self, entries: usize, model: &str, fingerprint: &str, queue_in_use: usize, queue_size: usize, in_flight: usize) -> String {
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut o = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        o.push_str("# HELP dolg_http_requests_total HTTP requests by route, method and status.\n# TYPE dolg_http_requests_total counter\n");
        for ((r, me, st), n) in &m.requests {
            let _ = writeln!(o, "dolg_http_requests_total{{route=\"{}\",method=\"{me}\",status=\"{st}\"}} {n}", esc(r));
        }
        o.push_str("# HELP dolg_http_request_duration_seconds Request latency by route and method.\n# TYPE dolg_http_request_duration_seconds histogram\n");
        for ((r, me), h) in &m.latency {
            let r = esc(r);
            for (b, c) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(o, "dolg_http_request_duration_seconds_bucket{{route=\"{r}\",method=\"{me}\",le=\"{b}\"}} {c}");
            }
            let _ = writeln!(o, "dolg_http_request_duration_seconds_bucket{{route=\"{r}\",method=\"{me}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(o, "dolg_http_request_duration_seconds_sum{{route=\"{r}\",method=\"{me}\"}} {}", h.sum);
            let _ = writeln!(o, "dolg_http_request_duration_seconds_count{{route=\"{r}\",method=\"{me}\"}} {}", h.count);
        }
        let _ = write!(
            o,
            "# HELP dolg_index_entries Live entries in the index.\n# TYPE dolg_index_entries gauge\ndolg_index_entries {entries}\n\
# HELP dolg_model_info The index's model.\n# TYPE dolg_model_info gauge\ndolg_model_info{{model=\"{}\",fingerprint=\"{}\"}} 1\n\
# HELP dolg_extract_queue_in_use Describing requests admitted (running or waiting).\n# TYPE dolg_extract_queue_in_use gauge\ndolg_extract_queue_in_use {queue_in_use}\n\
# HELP dolg_extract_queue_size Describing requests admitted at most.\n# TYPE dolg_extract_queue_size gauge\ndolg_extract_queue_size {queue_size}\n\
# HELP dolg_http_requests_in_flight Requests being handled (this one included).\n# TYPE dolg_http_requests_in_flight gauge\ndolg_http_requests_in_flight {in_flight}\n\
# HELP dolg_extract_rejected_total Requests answered 429 because the describing queue was full.\n# TYPE dolg_extract_rejected_total counter\ndolg_extract_rejected_total {}\n",
            esc(model),
            esc(fingerprint),
            m.rejected
        );
        o
    }
}
