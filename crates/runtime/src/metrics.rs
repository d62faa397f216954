//! Operational metrics (Prometheus text format) and the health check.
//!
//! Every counter is an atomic bumped where the event happens: a call's task when the call starts
//! and when its record is hung up, the `webhook_send` task when the request is over, the call when
//! an activeflow closes. Media never touches an atomic per packet: each worker keeps what it has
//! already counted per session ([`RtpAccount`]) and adds the sessions' growth to the shared
//! [`MediaCounters`] once every [`FLUSH_EVERY_TICKS`] ticks (1 s), and a session's remainder
//! when it detaches. [`crate::Runtime::metrics_text`] renders everything; label sets are fixed,
//! so the output has a bounded size whatever the traffic.

use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Media workers publish their sessions' RTP counts every this many ticks (1 s).
pub(crate) const FLUSH_EVERY_TICKS: u64 = 50;

/// A media worker that has not ticked for this long is not alive.
const WORKER_STALE: Duration = Duration::from_secs(1);

/// How long the health check waits for the store.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Which way a call goes (the `direction` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// We were called.
    Incoming,
    /// We called.
    Outgoing,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::Incoming, Direction::Outgoing];

    fn label(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }

    /// From a call record's `direction`.
    fn of_record(direction: &str) -> Direction {
        if direction == "outgoing" {
            Direction::Outgoing
        } else {
            Direction::Incoming
        }
    }
}

/// The `result` label of `voxflow_calls_total`: the hangup reasons voxflow itself records; any
/// other reason (a word a flow's `hangup` chose, a relayed one) is `other`.
const CALL_RESULTS: [&str; 10] = [
    "normal",
    "busy",
    "noanswer",
    "failed",
    "cancel",
    "timeout",
    "rtp_timeout",
    "shutdown",
    "amd_machine",
    "other",
];

/// How a `webhook_send` request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebhookOutcome {
    /// A 2xx status.
    Delivered,
    /// Any other status.
    Refused,
    /// No status: no connection, a timeout, a refused URL.
    Failed,
}

const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "refused", "failed"];

/// How an attempt to deliver an event to an account webhook ended.
const WEBHOOK_ATTEMPT_OUTCOMES: [&str; 3] = ["delivered", "retry", "failed"];

/// The `end_reason` label of `voxflow_flow_runs_total` (an `error: …` reason is `error`).
const FLOW_END_REASONS: [&str; 6] = [
    "completed",
    "stopped",
    "hangup",
    "call_ended",
    "execution_limit",
    "error",
];

/// The runtime's counters (held in `Shared`; media counts live in [`MediaCounters`]).
#[derive(Debug)]
pub(crate) struct Metrics {
    started: Instant,
    calls_active: [AtomicI64; 2],
    calls_total: [[AtomicU64; CALL_RESULTS.len()]; 2],
    webhooks: [AtomicU64; WEBHOOK_OUTCOMES.len()],
    webhook_attempts: [AtomicU64; WEBHOOK_ATTEMPT_OUTCOMES.len()],
    flow_actions: AtomicU64,
    flow_runs: [AtomicU64; FLOW_END_REASONS.len()],
}

/// A call counted in `voxflow_calls_active` until this is dropped.
#[must_use = "the call stops being active when this is dropped"]
#[derive(Debug)]
pub(crate) struct ActiveCall<'a> {
    metrics: &'a Metrics,
    direction: Direction,
}

impl Drop for ActiveCall<'_> {
    fn drop(&mut self) {
        self.metrics.calls_active[self.direction as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// All zero; uptime counts from now.
    pub(crate) fn new() -> Metrics {
        Metrics {
            started: Instant::now(),
            calls_active: Default::default(),
            calls_total: Default::default(),
            webhooks: Default::default(),
            webhook_attempts: Default::default(),
            flow_actions: AtomicU64::new(0),
            flow_runs: Default::default(),
        }
    }

    /// A call's task has a call record: it is active until the guard is dropped.
    pub(crate) fn call_started(&self, direction: Direction) -> ActiveCall<'_> {
        self.calls_active[direction as usize].fetch_add(1, Ordering::Relaxed);
        ActiveCall {
            metrics: self,
            direction,
        }
    }

    /// A call record was hung up with `reason` (counted once per call: the record is hung up
    /// once).
    pub(crate) fn call_ended(&self, direction: &str, reason: &str) {
        let result = CALL_RESULTS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(CALL_RESULTS.len() - 1);
        self.calls_total[Direction::of_record(direction) as usize][result]
            .fetch_add(1, Ordering::Relaxed);
    }

    /// An attempt to deliver an event to an account webhook is over: `delivered`, `retry` (it
    /// will be tried again) or `failed` (given up).
    pub(crate) fn webhook_attempt(&self, outcome: &str) {
        if let Some(i) = WEBHOOK_ATTEMPT_OUTCOMES.iter().position(|o| *o == outcome) {
            self.webhook_attempts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A `webhook_send` request is over.
    pub(crate) fn webhook(&self, outcome: WebhookOutcome) {
        self.webhooks[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// An activeflow closed after `executed` action starts, for `reason` (`None`: still
    /// running, which a closed run never is; only its actions are counted then).
    pub(crate) fn flow_run_closed(&self, reason: Option<&flow::EndReason>, executed: u32) {
        use flow::EndReason as R;
        self.flow_actions
            .fetch_add(u64::from(executed), Ordering::Relaxed);
        let Some(reason) = reason else {
            return;
        };
        let index = match reason {
            R::Completed => 0,
            R::Stopped => 1,
            R::Hangup => 2,
            R::CallEnded => 3,
            R::ExecutionLimit => 4,
            R::Error(_) => 5,
        };
        self.flow_runs[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub(crate) fn render(&self, media: &MediaCounters) -> String {
        let mut out = Text::default();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);

        out.family(
            "voxflow_uptime_seconds",
            "gauge",
            "Seconds since the runtime started.",
        );
        let uptime = self.started.elapsed().as_secs_f64();
        out.sample("voxflow_uptime_seconds", &[], format_args!("{uptime:.3}"));

        out.family(
            "voxflow_calls_active",
            "gauge",
            "Calls with a call record whose task still runs, by direction.",
        );
        for d in Direction::ALL {
            let n = self.calls_active[d as usize].load(Ordering::Relaxed).max(0);
            out.sample("voxflow_calls_active", &[("direction", d.label())], n);
        }

        out.family(
            "voxflow_calls_total",
            "counter",
            "Calls hung up, by direction and hangup reason (unlisted reasons are \"other\").",
        );
        for d in Direction::ALL {
            for (result, n) in CALL_RESULTS.iter().zip(&self.calls_total[d as usize]) {
                let labels = [("direction", d.label()), ("result", result)];
                out.sample("voxflow_calls_total", &labels, load(n));
            }
        }

        media.render(&mut out);

        out.family(
            "voxflow_webhook_deliveries_total",
            "counter",
            "webhook_send requests by outcome: delivered (2xx), refused (other status), failed (no status).",
        );
        for (outcome, n) in WEBHOOK_OUTCOMES.iter().zip(&self.webhooks) {
            let labels = [("outcome", *outcome)];
            out.sample("voxflow_webhook_deliveries_total", &labels, load(n));
        }

        out.family(
            "voxflow_webhook_attempts_total",
            "counter",
            "Attempts to deliver events to account webhooks, by outcome: delivered (2xx), retry (will be tried again), failed (given up).",
        );
        for (outcome, n) in WEBHOOK_ATTEMPT_OUTCOMES.iter().zip(&self.webhook_attempts) {
            let labels = [("outcome", *outcome)];
            out.sample("voxflow_webhook_attempts_total", &labels, load(n));
        }

        out.family(
            "voxflow_flow_actions_total",
            "counter",
            "Flow action starts, counted when their activeflow closes.",
        );
        out.sample("voxflow_flow_actions_total", &[], load(&self.flow_actions));

        out.family(
            "voxflow_flow_runs_total",
            "counter",
            "Activeflows closed, by end reason.",
        );
        for (reason, n) in FLOW_END_REASONS.iter().zip(&self.flow_runs) {
            let labels = [("end_reason", *reason)];
            out.sample("voxflow_flow_runs_total", &labels, load(n));
        }
        out.0
    }
}

/// What the media workers count, shared with their threads.
#[derive(Debug)]
pub(crate) struct MediaCounters {
    epoch: Instant,
    packets_sent: AtomicU64,
    packets_received: AtomicU64,
    packets_lost: AtomicU64,
    packets_late: AtomicU64,
    late_ticks: AtomicU64,
    reanchors: AtomicU64,
    workers: Vec<WorkerGauges>,
}

/// One worker's liveness and load.
#[derive(Debug, Default)]
struct WorkerGauges {
    /// When it last ticked, in ms since [`MediaCounters::epoch`].
    beat_ms: AtomicU64,
    /// Sessions it holds.
    sessions: AtomicU64,
}

impl MediaCounters {
    /// Counters for `workers` threads, all alive as of now.
    pub(crate) fn new(workers: usize) -> MediaCounters {
        MediaCounters {
            epoch: Instant::now(),
            packets_sent: AtomicU64::new(0),
            packets_received: AtomicU64::new(0),
            packets_lost: AtomicU64::new(0),
            packets_late: AtomicU64::new(0),
            late_ticks: AtomicU64::new(0),
            reanchors: AtomicU64::new(0),
            workers: (0..workers).map(|_| WorkerGauges::default()).collect(),
        }
    }

    /// Worker `index` ticked at `now` holding `sessions` sessions.
    pub(crate) fn tick(&self, index: usize, now: Instant, sessions: usize) {
        if let Some(w) = self.workers.get(index) {
            let ms = now.saturating_duration_since(self.epoch).as_millis();
            w.beat_ms
                .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
            w.sessions.store(sessions as u64, Ordering::Relaxed);
        }
    }

    /// A tick ended after its deadline; `reanchored` when the worker gave up catching up.
    pub(crate) fn late_tick(&self, reanchored: bool) {
        self.late_ticks.fetch_add(1, Ordering::Relaxed);
        if reanchored {
            self.reanchors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Add RTP counts (a worker's sessions' growth since the last flush).
    pub(crate) fn add(&self, counts: &RtpCounts) {
        for (atomic, n) in [
            (&self.packets_sent, counts.sent),
            (&self.packets_received, counts.received),
            (&self.packets_lost, counts.lost),
            (&self.packets_late, counts.late),
        ] {
            if n > 0 {
                atomic.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Workers that ticked within the last second, of how many started.
    pub(crate) fn workers_alive(&self) -> (usize, usize) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let stale = WORKER_STALE.as_millis() as u64;
        let alive = self
            .workers
            .iter()
            .filter(|w| now.saturating_sub(w.beat_ms.load(Ordering::Relaxed)) <= stale)
            .count();
        (alive, self.workers.len())
    }

    fn render(&self, out: &mut Text) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, help, value) in [
            (
                "voxflow_rtp_packets_sent_total",
                "RTP packets sent to peers (published every second and when a call's media ends).",
                load(&self.packets_sent),
            ),
            (
                "voxflow_rtp_packets_received_total",
                "Valid RTP packets received from peers (published every second and when a call's media ends).",
                load(&self.packets_received),
            ),
            (
                "voxflow_rtp_packets_lost_total",
                "RTP packets missing from peers' streams (RFC 3550 cumulative loss).",
                load(&self.packets_lost),
            ),
            (
                "voxflow_rtp_late_packets_total",
                "RTP packets that arrived too late for the jitter buffer and were dropped.",
                load(&self.packets_late),
            ),
            (
                "voxflow_media_late_ticks_total",
                "20 ms media ticks that ended after their deadline.",
                load(&self.late_ticks),
            ),
            (
                "voxflow_media_worker_reanchors_total",
                "Times a media worker fell more than 200 ms behind and restarted its clock.",
                load(&self.reanchors),
            ),
        ] {
            out.family(name, "counter", help);
            out.sample(name, &[], value);
        }
        let sessions: u64 = self
            .workers
            .iter()
            .map(|w| w.sessions.load(Ordering::Relaxed))
            .sum();
        out.family(
            "voxflow_media_sessions",
            "gauge",
            "RTP sessions held by the media workers.",
        );
        out.sample("voxflow_media_sessions", &[], sessions);
        let (alive, _) = self.workers_alive();
        out.family(
            "voxflow_media_workers_alive",
            "gauge",
            "Media worker threads that ticked within the last second.",
        );
        out.sample("voxflow_media_workers_alive", &[], alive);
    }
}

/// RTP counts of a session, or growth of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RtpCounts {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) lost: u64,
    pub(crate) late: u64,
}

impl std::ops::AddAssign for RtpCounts {
    fn add_assign(&mut self, other: RtpCounts) {
        self.sent += other.sent;
        self.received += other.received;
        self.lost += other.lost;
        self.late += other.late;
    }
}

/// What a worker has already published of one session's counts.
#[derive(Debug, Default)]
pub(crate) struct RtpAccount {
    counted: RtpCounts,
}

impl RtpAccount {
    /// The growth of the session's counts since the last call; they count as published.
    pub(crate) fn take_delta(&mut self, session: &media::MediaSession) -> RtpCounts {
        let stats = session.stats();
        let now = RtpCounts {
            sent: stats.packets_sent,
            received: stats.packets_received,
            lost: session.packets_lost(),
            late: session.jitter_stats().late,
        };
        let before = std::mem::replace(&mut self.counted, now);
        RtpCounts {
            sent: now.sent.saturating_sub(before.sent),
            received: now.received.saturating_sub(before.received),
            // Loss restarts with a new stream (SSRC): its count is all new.
            lost: if now.lost >= before.lost {
                now.lost - before.lost
            } else {
                now.lost
            },
            late: now.late.saturating_sub(before.late),
        }
    }
}

/// What `GET /healthz` reports: each part of the runtime that must work for calls to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The store answered a read within 2 s, or why not.
    pub store: Result<(), String>,
    /// Media worker threads that ticked within the last second.
    pub media_workers_alive: usize,
    /// Media worker threads started.
    pub media_workers: usize,
    /// The SIP address bound, while the SIP endpoint task runs (`None` once it has stopped).
    pub sip: Option<SocketAddr>,
}

impl Health {
    /// Everything works: the store answers, every media worker ticks, SIP runs.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.store.is_ok() && self.media_workers_alive == self.media_workers && self.sip.is_some()
    }
}

impl crate::Runtime {
    /// Every metric in the Prometheus text exposition format (version 0.0.4): calls (active,
    /// total by result), RTP packets (sent, received, lost, late), media worker ticks,
    /// `webhook_send` outcomes, flow actions and runs, uptime. See `docs/operations.md`.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics.render(self.shared.media.counters())
    }

    /// Check the store (one read, at most 2 s), the media workers and the SIP endpoint.
    pub async fn health(&self) -> Health {
        let store =
            match tokio::time::timeout(STORE_PING_TIMEOUT, self.shared.store.first_account()).await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} s",
                    STORE_PING_TIMEOUT.as_secs()
                )),
            };
        let (media_workers_alive, media_workers) = self.shared.media.counters().workers_alive();
        Health {
            store,
            media_workers_alive,
            media_workers,
            sip: (!self.task.is_finished()).then_some(self.sip_addr),
        }
    }
}

/// The text being written: `# HELP` and `# TYPE` before each family's samples.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape_label(value));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// A strict reader of the text format: every line a `# HELP`, a `# TYPE` or a sample
    /// `name{labels} value`; HELP and TYPE once per family, before its samples; counters end
    /// in `_total`. Returns the samples as `name{labels}` → value (label values unescaped).
    fn parse(text: &str) -> HashMap<String, f64> {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helped: HashSet<String> = HashSet::new();
        let mut samples = HashMap::new();
        assert!(text.ends_with('\n'), "ends with a newline");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(valid_name(name), "{line}");
                assert!(!help.is_empty(), "{line}");
                assert!(helped.insert(name.to_owned()), "HELP twice: {line}");
                assert!(!types.contains_key(name), "HELP after TYPE: {line}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(["counter", "gauge"].contains(&kind), "{line}");
                assert!(helped.contains(name), "TYPE without HELP: {line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{line}"
                );
                continue;
            }
            assert!(!line.starts_with('#'), "unknown comment: {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample name value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value: {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.strip_suffix('}').unwrap())),
                None => (series, Vec::new()),
            };
            assert!(valid_name(name), "{line}");
            assert!(types.contains_key(name), "sample before its TYPE: {line}");
            let key = if labels.is_empty() {
                name.to_owned()
            } else {
                let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{name}{{{}}}", inner.join(","))
            };
            assert!(
                samples.insert(key, value).is_none(),
                "duplicate series: {line}"
            );
        }
        samples
    }

    fn valid_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// `k="v",k2="v2"` → pairs, unescaping the values.
    fn parse_labels(text: &str) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label key=\"");
            assert!(valid_name(key) && !key.contains(':'), "label name {key}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                let (i, c) = chars.next().expect("unterminated label value");
                match c {
                    '"' => break i,
                    '\\' => match chars.next().expect("escape").1 {
                        'n' => value.push('\n'),
                        c @ ('\\' | '"') => value.push(c),
                        c => panic!("bad escape \\{c}"),
                    },
                    '\n' => panic!("raw newline in a label value"),
                    c => value.push(c),
                }
            };
            pairs.push((key.to_owned(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        pairs
    }

    #[test]
    fn fresh_metrics_parse_with_every_label_set_at_zero() {
        let media = MediaCounters::new(2);
        let samples = parse(&Metrics::new().render(&media));
        for d in ["incoming", "outgoing"] {
            assert_eq!(
                samples[&format!("voxflow_calls_active{{direction={d}}}")],
                0.0
            );
            for r in CALL_RESULTS {
                let key = format!("voxflow_calls_total{{direction={d},result={r}}}");
                assert_eq!(samples[&key], 0.0, "{key}");
            }
        }
        assert_eq!(samples["voxflow_rtp_packets_sent_total"], 0.0);
        assert_eq!(samples["voxflow_media_workers_alive"], 2.0);
        assert!(samples["voxflow_uptime_seconds"] >= 0.0);
        for outcome in WEBHOOK_ATTEMPT_OUTCOMES {
            let key = format!("voxflow_webhook_attempts_total{{outcome={outcome}}}");
            assert_eq!(samples[&key], 0.0, "{key}");
        }
        // A bounded set: 1 + 2 + 20 + 8 + 3 + 3 + 1 + 6 series.
        assert_eq!(samples.len(), 44);
    }

    #[test]
    fn counters_move_and_unknown_reasons_are_other() {
        let metrics = Metrics::new();
        let media = MediaCounters::new(1);
        let a = metrics.call_started(Direction::Incoming);
        let b = metrics.call_started(Direction::Outgoing);
        let _c = metrics.call_started(Direction::Outgoing);
        drop(b);
        metrics.call_ended("incoming", "normal");
        metrics.call_ended("outgoing", "busy");
        metrics.call_ended("outgoing", "caller_went_away");
        metrics.call_ended("outgoing", "bad \"reason\"\n");
        metrics.webhook(WebhookOutcome::Delivered);
        metrics.webhook(WebhookOutcome::Failed);
        metrics.webhook(WebhookOutcome::Failed);
        metrics.flow_run_closed(Some(&flow::EndReason::Hangup), 7);
        metrics.flow_run_closed(Some(&flow::EndReason::Error("x".into())), 2);
        metrics.flow_run_closed(None, 1);
        media.add(&RtpCounts {
            sent: 100,
            received: 98,
            lost: 2,
            late: 1,
        });
        media.late_tick(false);
        media.late_tick(true);
        let s = parse(&metrics.render(&media));
        assert_eq!(s["voxflow_calls_active{direction=incoming}"], 1.0);
        assert_eq!(s["voxflow_calls_active{direction=outgoing}"], 1.0);
        drop(a);
        assert_eq!(
            s["voxflow_calls_total{direction=incoming,result=normal}"],
            1.0
        );
        assert_eq!(
            s["voxflow_calls_total{direction=outgoing,result=busy}"],
            1.0
        );
        assert_eq!(
            s["voxflow_calls_total{direction=outgoing,result=other}"],
            2.0
        );
        assert_eq!(
            s["voxflow_webhook_deliveries_total{outcome=delivered}"],
            1.0
        );
        assert_eq!(s["voxflow_webhook_deliveries_total{outcome=refused}"], 0.0);
        assert_eq!(s["voxflow_webhook_deliveries_total{outcome=failed}"], 2.0);
        assert_eq!(s["voxflow_flow_actions_total"], 10.0);
        assert_eq!(s["voxflow_flow_runs_total{end_reason=hangup}"], 1.0);
        assert_eq!(s["voxflow_flow_runs_total{end_reason=error}"], 1.0);
        assert_eq!(s["voxflow_flow_runs_total{end_reason=completed}"], 0.0);
        assert_eq!(s["voxflow_rtp_packets_sent_total"], 100.0);
        assert_eq!(s["voxflow_rtp_packets_received_total"], 98.0);
        assert_eq!(s["voxflow_rtp_packets_lost_total"], 2.0);
        assert_eq!(s["voxflow_rtp_late_packets_total"], 1.0);
        assert_eq!(s["voxflow_media_late_ticks_total"], 2.0);
        assert_eq!(s["voxflow_media_worker_reanchors_total"], 1.0);
        let after = parse(&metrics.render(&media));
        assert_eq!(after["voxflow_calls_active{direction=incoming}"], 0.0);
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut text = Text::default();
        text.family("x_total", "counter", "a \\ b\nc");
        text.sample("x_total", &[("k", "q\"uo\\te\nline"), ("j", "plain")], 3);
        assert_eq!(
            text.0,
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{k=\"q\\\"uo\\\\te\\nline\",j=\"plain\"} 3\n"
        );
        let samples = parse(&text.0);
        assert_eq!(samples["x_total{k=q\"uo\\te\nline,j=plain}"], 3.0);
    }

    #[test]
    fn workers_that_stop_ticking_are_not_alive() {
        let media = MediaCounters::new(2);
        assert_eq!(media.workers_alive(), (2, 2));
        // Worker 1 last ticked at the epoch, which is now more than a second ago.
        let media = MediaCounters {
            epoch: Instant::now() - Duration::from_secs(5),
            ..MediaCounters::new(2)
        };
        media.tick(0, Instant::now(), 3);
        assert_eq!(media.workers_alive(), (1, 2));
        let s = parse(&Metrics::new().render(&media));
        assert_eq!(s["voxflow_media_workers_alive"], 1.0);
        assert_eq!(s["voxflow_media_sessions"], 3.0);
    }

    #[test]
    fn the_account_publishes_growth_and_a_new_streams_loss_in_full() {
        let mut session = media::MediaSession::new(media::SessionConfig {
            codec: media::Codec::Pcmu,
            payload_type: 0,
            dtmf_payload_type: None,
            ssrc: 1,
            initial_seq: 0,
            initial_timestamp: 0,
            remote: None,
            ptime_ms: 20,
            rtp_timeout_ms: 0,
        });
        let from: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let packet = |ssrc: u32, seq: u16| {
            let mut out = Vec::new();
            media::rtp::RtpHeader {
                marker: false,
                payload_type: 0,
                sequence_number: seq,
                timestamp: u32::from(seq) * 160,
                ssrc,
            }
            .write(&mut out);
            out.extend_from_slice(&[0xFF; 160]);
            out
        };
        let mut account = RtpAccount::default();
        session.handle_rtp(from, &packet(7, 10));
        session.handle_rtp(from, &packet(7, 14)); // 11, 12, 13 lost
        let first = account.take_delta(&session);
        assert_eq!((first.received, first.lost), (2, 3));
        assert_eq!(account.take_delta(&session), RtpCounts::default());
        session.handle_rtp(from, &packet(7, 16)); // 15 lost
        assert_eq!(account.take_delta(&session).lost, 1);
        // A new SSRC: its stream's loss (1) counts in full.
        session.handle_rtp(from, &packet(9, 100));
        session.handle_rtp(from, &packet(9, 102));
        assert_eq!(account.take_delta(&session).lost, 1);
    }
}
