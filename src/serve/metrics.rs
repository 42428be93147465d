//! Prometheus text metrics: request counts by route, method and status; latency histograms by
//! route and method.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::queue::QueueStatus;

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

    /// The Prometheus text exposition, with the gauges given.
    pub(crate) fn render(
        &self,
        entries: usize,
        model: &str,
        fingerprint: &str,
        queue: &QueueStatus,
        (waited_s, described): (f64, u64),
        in_flight: usize,
    ) -> String {
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
# HELP dolg_http_requests_in_flight Requests being handled (this one included).\n# TYPE dolg_http_requests_in_flight gauge\ndolg_http_requests_in_flight {in_flight}\n\
# HELP dolg_describe_queue_waiting Photos waiting for a describing worker.\n# TYPE dolg_describe_queue_waiting gauge\ndolg_describe_queue_waiting {}\n\
# HELP dolg_describe_queue_running Photos being described.\n# TYPE dolg_describe_queue_running gauge\ndolg_describe_queue_running {}\n\
# HELP dolg_describe_expected_wait_seconds Expected wait of a photo queued now (work ahead times the measured service time).\n# TYPE dolg_describe_expected_wait_seconds gauge\ndolg_describe_expected_wait_seconds {}\n\
# HELP dolg_describe_service_seconds Measured worker seconds per photo (moving average).\n# TYPE dolg_describe_service_seconds gauge\ndolg_describe_service_seconds {}\n\
# HELP dolg_describe_queue_wait_seconds Time described photos waited in the queue.\n# TYPE dolg_describe_queue_wait_seconds summary\ndolg_describe_queue_wait_seconds_sum {waited_s}\ndolg_describe_queue_wait_seconds_count {described}\n\
# HELP dolg_describe_workers Describing workers, and photos each takes at once.\n# TYPE dolg_describe_workers gauge\ndolg_describe_workers {}\ndolg_describe_max_batch {}\n\
# HELP dolg_describe_refused_total Requests answered 429: the work ahead would not let them finish within the time limit.\n# TYPE dolg_describe_refused_total counter\ndolg_describe_refused_total {}\n\
# HELP dolg_describe_abandoned_total Queued photos dropped undescribed because their client left or their time ran out.\n# TYPE dolg_describe_abandoned_total counter\ndolg_describe_abandoned_total {}\n",
            esc(model),
            esc(fingerprint),
            queue.waiting,
            queue.running,
            queue.expected_wait_s,
            queue.service_s,
            queue.workers,
            queue.max_batch,
            queue.refused,
            queue.abandoned,
        );
        o
    }
}
