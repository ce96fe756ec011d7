//! Every Prometheus metric pgplane exports (DESIGN.md "Metrics"), registered
//! in one registry. Route labels are route templates, never raw paths, so the
//! number of series stays bounded.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::model::State;

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub databases: IntGaugeVec,
    pub transitions: IntCounterVec,
    pub backend_duration: HistogramVec,
    pub audit_records: IntCounterVec,
    pub loki_push_dropped: prometheus::IntCounter,
    pub records_unreadable: IntCounterVec,
    pub streams_open: IntGauge,
    pub stream_events_dropped: prometheus::IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("pgplane".into()), None).expect("a valid prefix");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            &["method", "route"],
        )
        .expect("valid metric");
        let http_in_flight =
            IntGauge::new("http_requests_in_flight", "HTTP requests being handled")
                .expect("valid metric");
        let databases = IntGaugeVec::new(Opts::new("databases", "Databases by state"), &["state"])
            .expect("valid metric");
        let transitions = IntCounterVec::new(
            Opts::new("state_transitions_total", "Database state transitions"),
            &["from", "to"],
        )
        .expect("valid metric");
        let backend_duration = HistogramVec::new(
            HistogramOpts::new(
                "backend_operation_duration_seconds",
                "Backend operation duration",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
            ]),
            &["operation"],
        )
        .expect("valid metric");
        let audit_records = IntCounterVec::new(
            Opts::new("audit_records_total", "Audit records written"),
            &["action", "outcome"],
        )
        .expect("valid metric");
        let loki_push_dropped = prometheus::IntCounter::new(
            "loki_push_dropped_total",
            "Records dropped from a full Loki push buffer",
        )
        .expect("valid metric");
        let records_unreadable = IntCounterVec::new(
            Opts::new(
                "records_unreadable_total",
                "Lines of a record store that are not records (skipped)",
            ),
            &["store"],
        )
        .expect("valid metric");
        let streams_open =
            IntGauge::new("streams_open", "Change streams open").expect("valid metric");
        let stream_events_dropped = prometheus::IntCounter::new(
            "stream_events_dropped_total",
            "Changes not sent to stream clients that did not keep up (each was then cut off)",
        )
        .expect("valid metric");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(http_in_flight.clone()),
            Box::new(databases.clone()),
            Box::new(transitions.clone()),
            Box::new(backend_duration.clone()),
            Box::new(audit_records.clone()),
            Box::new(loki_push_dropped.clone()),
            Box::new(records_unreadable.clone()),
            Box::new(streams_open.clone()),
            Box::new(stream_events_dropped.clone()),
        ] {
            registry
                .register(c)
                .expect("each metric is registered once");
        }
        for store in ["local", "loki"] {
            records_unreadable.with_label_values(&[store]).inc_by(0);
        }
        for state in State::ALL {
            databases.with_label_values(&[state.as_str()]).set(0);
        }
        Metrics {
            registry,
            http_requests,
            http_duration,
            http_in_flight,
            databases,
            transitions,
            backend_duration,
            audit_records,
            loki_push_dropped,
            records_unreadable,
            streams_open,
            stream_events_dropped,
        }
    }

    /// Sets `databases{state}` from a count per state.
    pub fn set_database_counts(&self, states: impl IntoIterator<Item = State>) {
        let mut counts = [0i64; State::ALL.len()];
        for s in states {
            counts[State::ALL
                .iter()
                .position(|x| *x == s)
                .expect("every state is listed")] += 1;
        }
        for (state, n) in State::ALL.iter().zip(counts) {
            self.databases.with_label_values(&[state.as_str()]).set(n);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encoding to memory cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
