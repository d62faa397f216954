//! Account-level webhooks: a persistent outbox, signed deliveries, retries with backoff, and a
//! circuit breaker that pauses a failing target without dropping anything.
//!
//! Two tasks. The *outbox* takes every event from the bus's never-dropping queue and writes one
//! `pending` delivery per matching webhook to the store (in one transaction per batch), so a
//! delivery exists on disk before any attempt is made and survives a restart. The *dispatcher*
//! owns every attempt: it reads due deliveries, sends them (a bounded number at once), and is the
//! only writer of delivery results and breaker state, so the two never race.
//!
//! Each attempt is a JSON `POST` (or `PUT`) of the event with
//! `X-Voxflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A 2xx
//! delivers. A connection error, timeout, 408, 429 or 5xx is retried after
//! `first_retry · 2^(attempts-1)` (capped at `max_retry_delay`, with ±20 % jitter) until the
//! delivery is `give_up_after` old; any other 4xx fails it at once (retrying cannot fix it).
//! After `breaker_failures` failed attempts in a row a webhook is `paused` for `breaker_pause`
//! (doubling while it keeps failing, up to `max_breaker_pause`): its deliveries wait, one probe
//! goes out when the pause ends, and the first success resumes it and sends everything held
//! back at once. Pauses and resumes are events (`webhook_paused`, `webhook_resumed`) and show
//! on the webhook itself (`status`, `paused_until`, `last_error`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, mpsc, watch};
use uuid::Uuid;

use crate::Shared;
use crate::events::{Event, EventType};
use crate::url_guard::HttpClient;

/// How deliveries are attempted and retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookConfig {
    /// One attempt's limit, from connect to the end of the response head.
    pub attempt_timeout: Duration,
    /// The wait before the first retry; doubles with each attempt.
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    pub max_retry_delay: Duration,
    /// A delivery still failing this long after its event is marked `failed`.
    pub give_up_after: Duration,
    /// Failed attempts in a row that pause a webhook.
    pub breaker_failures: u32,
    /// The first pause; doubles while the probes keep failing.
    pub breaker_pause: Duration,
    /// The longest pause.
    pub max_breaker_pause: Duration,
    /// Attempts in flight at once, across all webhooks.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            attempt_timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(60),
            give_up_after: Duration::from_secs(24 * 3600),
            breaker_failures: 5,
            breaker_pause: Duration::from_secs(30),
            max_breaker_pause: Duration::from_secs(600),
            concurrency: 32,
        }
    }
}

/// The value of `X-Voxflow-Signature` for `body` sent at `unix` seconds.
#[must_use]
pub fn signature(secret: &str, unix: i64, body: &str) -> String {
    let signed = format!("{unix}.{body}");
    format!(
        "t={unix},v1={}",
        hex(&hmac_sha256(secret.as_bytes(), signed.as_bytes()))
    )
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
#[must_use]
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn utc_ms(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    store::format_utc(at)
}

fn parse_utc_ms(text: &str) -> Option<i64> {
    let at =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The delay before attempt `attempts + 1`, given a jitter sample in [0, 1).
#[must_use]
pub fn retry_delay(config: &WebhookConfig, attempts: u32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let base = config
        .first_retry
        .saturating_mul(1u32 << doublings)
        .min(config.max_retry_delay);
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// The next pause of a webhook: the first when it trips, then double the last (while probes
/// keep failing), up to the cap.
fn next_pause(config: &WebhookConfig, last: Option<Duration>) -> Duration {
    last.map_or(config.breaker_pause, |last| last.saturating_mul(2))
        .min(config.max_breaker_pause)
}

fn jitter() -> f64 {
    f64::from(Uuid::new_v4().as_u128() as u16) / 65536.0
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// Worth retrying: connection error, timeout, 408, 429, 5xx.
    Retry(Option<u16>, String),
    /// Retrying cannot help (another 4xx, a URL the guard refuses).
    Fail(Option<u16>, String),
}

fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered(status),
        408 | 429 | 500..=599 => Outcome::Retry(Some(status), format!("HTTP {status}")),
        _ => Outcome::Fail(Some(status), format!("HTTP {status}")),
    }
}

async fn attempt(
    http: &HttpClient,
    config: &WebhookConfig,
    webhook: &store::WebhookRecord,
    delivery: &store::DeliveryRecord,
) -> Outcome {
    let method = if webhook.method.eq_ignore_ascii_case("PUT") {
        reqwest::Method::PUT
    } else {
        reqwest::Method::POST
    };
    let request = match http.request(method, &webhook.uri) {
        Ok(request) => request,
        Err(refused) => return Outcome::Fail(None, refused.to_string()),
    };
    let unix = now_ms() / 1000;
    let sent = request
        .timeout(config.attempt_timeout)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("voxflow/", env!("CARGO_PKG_VERSION")))
        .header(
            "X-Voxflow-Signature",
            signature(&webhook.secret, unix, &delivery.payload),
        )
        .header("X-Voxflow-Event", delivery.event_type.as_str())
        .header("X-Voxflow-Event-Id", delivery.event_id.to_string())
        .header("X-Voxflow-Delivery", delivery.id.to_string())
        .header("X-Voxflow-Attempt", (delivery.attempts + 1).to_string())
        .body(delivery.payload.clone())
        .send()
        .await;
    match sent {
        Ok(response) => classify(response.status().as_u16()),
        Err(e) => {
            if let Some(refused) = crate::url_guard::refusal(&e) {
                Outcome::Fail(None, refused)
            } else if e.is_timeout() {
                Outcome::Retry(
                    None,
                    format!("timed out after {} s", config.attempt_timeout.as_secs()),
                )
            } else if e.is_connect() {
                Outcome::Retry(None, "could not connect".into())
            } else {
                Outcome::Retry(None, e.to_string())
            }
        }
    }
}

/// The webhook machinery's handle: wakes the dispatcher when new deliveries are due.
#[derive(Clone)]
pub(crate) struct Webhooks {
    wake: Arc<Notify>,
    /// Counts attempts whose outcome is recorded (delivery log and breaker).
    recorded: watch::Sender<u64>,
}

impl Webhooks {
    /// Start the outbox and the dispatcher on the current runtime.
    pub(crate) fn start(
        shared: Arc<Shared>,
        queue: mpsc::UnboundedReceiver<Arc<Event>>,
        config: WebhookConfig,
    ) -> Webhooks {
        let wake = Arc::new(Notify::new());
        let recorded = watch::Sender::new(0);
        tokio::spawn(outbox(Arc::clone(&shared.store), queue, Arc::clone(&wake)));
        let dispatcher = Dispatcher {
            store: Arc::clone(&shared.store),
            shared,
            config,
            in_flight: HashSet::new(),
            probing: HashMap::new(),
            pauses: HashMap::new(),
            recorded: recorded.clone(),
        };
        tokio::spawn(dispatcher.run(Arc::clone(&wake)));
        Webhooks { wake, recorded }
    }

    /// A receiver that sees every attempt once its outcome is recorded.
    pub(crate) fn watch_attempts(&self) -> watch::Receiver<u64> {
        self.recorded.subscribe()
    }

    /// Look at the outbox again now (after the API resumed a webhook or changed it).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Most events written to the outbox in one transaction.
const OUTBOX_BATCH: usize = 256;

/// Write a delivery for every webhook each event matches. A store failure keeps the batch and
/// tries again (events are never dropped while the process lives).
async fn outbox(
    store: Arc<dyn store::Store>,
    mut queue: mpsc::UnboundedReceiver<Arc<Event>>,
    wake: Arc<Notify>,
) {
    let mut events = Vec::with_capacity(OUTBOX_BATCH);
    loop {
        if queue.recv_many(&mut events, OUTBOX_BATCH).await == 0 {
            return;
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match enqueue(store.as_ref(), &events).await {
                Ok(0) => break,
                Ok(_) => {
                    wake.notify_one();
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, events = events.len(), "cannot write webhook deliveries; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        events.clear();
    }
}

async fn enqueue(
    store: &dyn store::Store,
    events: &[Arc<Event>],
) -> Result<usize, store::StoreError> {
    let mut hooks: HashMap<Uuid, Vec<store::WebhookRecord>> = HashMap::new();
    let mut deliveries = Vec::new();
    let now = now_ms();
    let tm = utc_ms(now);
    for event in events {
        if let std::collections::hash_map::Entry::Vacant(slot) = hooks.entry(event.account_id) {
            slot.insert(store.webhooks_of_account(event.account_id).await?);
        }
        let targets = hooks
            .get(&event.account_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for webhook in targets {
            if !event.event_type.selected_by(&webhook.event_types) {
                continue;
            }
            // A ping goes only to the webhook it was asked for.
            if event.event_type == EventType::Ping
                && event.data.get("webhook_id").and_then(Value::as_str)
                    != Some(webhook.id.to_string().as_str())
            {
                continue;
            }
            deliveries.push(store::DeliveryRecord {
                id: Uuid::new_v4(),
                account_id: event.account_id,
                webhook_id: webhook.id,
                event_id: event.id,
                event_type: event.event_type.as_str().to_owned(),
                payload: event.to_json(),
                status: store::DeliveryRecord::PENDING.into(),
                attempts: 0,
                next_attempt_at: now,
                last_status: None,
                last_error: String::new(),
                attempt_log: json!([]),
                tm_create: tm.clone(),
                tm_update: tm.clone(),
                tm_delivered: None,
            });
        }
    }
    if !deliveries.is_empty() {
        store.enqueue_deliveries(&deliveries).await?;
    }
    Ok(deliveries.len())
}

/// Most due deliveries read at once.
const DUE_BATCH: u32 = 128;
/// The longest the dispatcher sleeps without looking at the outbox (it is woken for new work;
/// this covers deliveries another node wrote, and clock changes).
const IDLE_POLL: Duration = Duration::from_secs(5);

struct Dispatcher {
    store: Arc<dyn store::Store>,
    shared: Arc<Shared>,
    config: WebhookConfig,
    /// Deliveries with an attempt on the wire.
    in_flight: HashSet<Uuid>,
    /// Paused webhooks with their probe on the wire: webhook → the probe delivery.
    probing: HashMap<Uuid, Uuid>,
    /// The current pause of each paused webhook (doubles while probes fail).
    pauses: HashMap<Uuid, Duration>,
    /// Bumped after each attempt's outcome is recorded.
    recorded: watch::Sender<u64>,
}

struct Attempted {
    delivery: store::DeliveryRecord,
    webhook: store::WebhookRecord,
    outcome: Outcome,
    started_ms: i64,
    duration: Duration,
}

impl Dispatcher {
    async fn run(mut self, wake: Arc<Notify>) {
        let (done_tx, mut done) = mpsc::channel::<Attempted>(self.config.concurrency.max(1));
        loop {
            let mut wait = IDLE_POLL;
            match self.dispatch(&done_tx).await {
                Ok(Some(next)) => {
                    let until = Duration::from_millis(u64::try_from(next - now_ms()).unwrap_or(0));
                    wait = wait.min(until.max(Duration::from_millis(10)));
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "webhook dispatcher cannot read the outbox"),
            }
            tokio::select! {
                () = wake.notified() => {}
                Some(result) = done.recv() => {
                    self.finish(result).await;
                    while let Ok(more) = done.try_recv() {
                        self.finish(more).await;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Start attempts for what is due; returns when the next pending delivery is due.
    async fn dispatch(
        &mut self,
        done: &mpsc::Sender<Attempted>,
    ) -> Result<Option<i64>, store::StoreError> {
        let now = now_ms();
        let due = self.store.due_deliveries(now, DUE_BATCH).await?;
        let mut webhooks: HashMap<Uuid, Option<store::WebhookRecord>> = HashMap::new();
        for mut delivery in due {
            if self.in_flight.len() >= self.config.concurrency {
                break;
            }
            if self.in_flight.contains(&delivery.id) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(slot) =
                webhooks.entry(delivery.webhook_id)
            {
                slot.insert(
                    self.store
                        .webhook(delivery.account_id, delivery.webhook_id)
                        .await?,
                );
            }
            let Some(Some(webhook)) = webhooks.get(&delivery.webhook_id).cloned() else {
                delivery.status = store::DeliveryRecord::FAILED.into();
                delivery.last_error = "the webhook was deleted".into();
                delivery.tm_update = store::utc_now();
                self.store.update_delivery(&delivery).await?;
                continue;
            };
            if webhook.status == store::WebhookRecord::PAUSED {
                let until = webhook
                    .paused_until
                    .as_deref()
                    .and_then(parse_utc_ms)
                    .unwrap_or(now);
                if until > now || self.probing.contains_key(&webhook.id) {
                    // Held back: due again when the pause ends (or shortly after the probe).
                    delivery.next_attempt_at = until.max(now + 1000);
                    self.store.update_delivery(&delivery).await?;
                    continue;
                }
                self.probing.insert(webhook.id, delivery.id);
            }
            // Not due again while the attempt is on the wire (the outbox is not read as due
            // in a loop, and a restart mid-attempt retries it after the lease).
            let lease = i64::try_from(self.config.attempt_timeout.as_millis()).unwrap_or(i64::MAX);
            delivery.next_attempt_at = now.saturating_add(lease).saturating_add(1000);
            self.store.update_delivery(&delivery).await?;
            self.in_flight.insert(delivery.id);
            let http = self.shared.http.clone();
            let config = self.config;
            let done = done.clone();
            tokio::spawn(async move {
                let started_ms = now_ms();
                let started = tokio::time::Instant::now();
                let outcome = attempt(&http, &config, &webhook, &delivery).await;
                let _ = done
                    .send(Attempted {
                        delivery,
                        webhook,
                        outcome,
                        started_ms,
                        duration: started.elapsed(),
                    })
                    .await;
            });
        }
        self.store.next_delivery_due().await
    }

    /// Record an attempt's outcome on the delivery and the webhook's breaker.
    async fn finish(&mut self, done: Attempted) {
        let Attempted {
            mut delivery,
            webhook,
            outcome,
            started_ms,
            duration,
        } = done;
        self.in_flight.remove(&delivery.id);
        let probe = self.probing.get(&webhook.id) == Some(&delivery.id);
        if probe {
            self.probing.remove(&webhook.id);
        }
        let now = now_ms();
        let tm = utc_ms(now);
        delivery.attempts += 1;
        let (status, error) = match &outcome {
            Outcome::Delivered(status) => (Some(*status), String::new()),
            Outcome::Retry(status, error) | Outcome::Fail(status, error) => {
                (*status, error.clone())
            }
        };
        if let Value::Array(log) = &mut delivery.attempt_log {
            log.push(json!({
                "attempt": delivery.attempts,
                "tm": utc_ms(started_ms),
                "status": status,
                "error": error,
                "duration_ms": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            }));
        }
        delivery.last_status = status;
        delivery.last_error.clone_from(&error);
        delivery.tm_update.clone_from(&tm);
        let created = parse_utc_ms(&delivery.tm_create).unwrap_or(now);
        let give_up_at =
            created + i64::try_from(self.config.give_up_after.as_millis()).unwrap_or(i64::MAX);
        let outcome_name = match &outcome {
            Outcome::Delivered(_) => {
                delivery.status = store::DeliveryRecord::DELIVERED.into();
                delivery.tm_delivered = Some(tm.clone());
                "delivered"
            }
            Outcome::Fail(..) => {
                delivery.status = store::DeliveryRecord::FAILED.into();
                "failed"
            }
            Outcome::Retry(..) => {
                let delay = retry_delay(&self.config, delivery.attempts, jitter());
                let next = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                if next > give_up_at {
                    delivery.status = store::DeliveryRecord::FAILED.into();
                    delivery.last_error =
                        format!("{error} (gave up after {} attempts)", delivery.attempts);
                    "failed"
                } else {
                    delivery.next_attempt_at = next;
                    "retry"
                }
            }
        };
        self.shared.metrics.webhook_attempt(outcome_name);
        if let Err(e) = self.store.update_delivery(&delivery).await {
            tracing::error!(error = %e, delivery = %delivery.id, "cannot record a webhook attempt");
        }
        tracing::debug!(delivery = %delivery.id, webhook = %webhook.id, outcome = outcome_name, %error, "webhook attempt");
        let succeeded = matches!(outcome, Outcome::Delivered(_));
        let counted = !matches!(outcome, Outcome::Fail(None, _)) || probe;
        if counted {
            self.update_breaker(webhook, succeeded, probe, &error, now)
                .await;
        }
        self.recorded.send_modify(|n| *n += 1);
    }

    /// Count a success or failure against the webhook; trip or reset its breaker. While a
    /// webhook is paused only its probe's failure counts (attempts that were already on the
    /// wire when it tripped do not stretch the pause); any success resumes it.
    async fn update_breaker(
        &mut self,
        seen: store::WebhookRecord,
        succeeded: bool,
        probe: bool,
        error: &str,
        now: i64,
    ) {
        // Read it again: the API may have changed it while the attempt was on the wire.
        let mut webhook = match self.store.webhook(seen.account_id, seen.id).await {
            Ok(Some(webhook)) => webhook,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, webhook = %seen.id, "cannot read a webhook");
                return;
            }
        };
        let was_paused = webhook.status == store::WebhookRecord::PAUSED;
        if succeeded {
            if webhook.consecutive_failures == 0 && !was_paused {
                return;
            }
            webhook.consecutive_failures = 0;
            webhook.status = store::WebhookRecord::ACTIVE.into();
            webhook.paused_until = None;
            self.pauses.remove(&webhook.id);
        } else if was_paused && !probe {
            return;
        } else {
            webhook.consecutive_failures = webhook.consecutive_failures.saturating_add(1);
            webhook.last_error = error.to_owned();
            let trips = !was_paused && webhook.consecutive_failures >= self.config.breaker_failures;
            if trips || was_paused {
                let last = if was_paused {
                    self.pauses.get(&webhook.id).copied()
                } else {
                    None
                };
                let pause = next_pause(&self.config, last);
                self.pauses.insert(webhook.id, pause);
                let until = now + i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
                webhook.status = store::WebhookRecord::PAUSED.into();
                webhook.paused_until = Some(utc_ms(until));
            }
        }
        webhook.tm_update = utc_ms(now);
        if let Err(e) = self.store.update_webhook_breaker(&webhook).await {
            tracing::error!(error = %e, webhook = %webhook.id, "cannot record webhook state");
            return;
        }
        let paused = webhook.status == store::WebhookRecord::PAUSED;
        if paused && !was_paused {
            tracing::warn!(webhook = %webhook.id, failures = webhook.consecutive_failures, until = ?webhook.paused_until, error, "webhook paused: its target keeps failing; deliveries are held, not dropped");
            self.publish(EventType::WebhookPaused, &webhook);
        } else if was_paused && !paused {
            tracing::info!(webhook = %webhook.id, "webhook resumed");
            if let Err(e) = self.store.retry_deliveries_now(webhook.id, now).await {
                tracing::error!(error = %e, webhook = %webhook.id, "cannot release held deliveries");
            }
            self.publish(EventType::WebhookResumed, &webhook);
        }
    }

    fn publish(&self, event_type: EventType, webhook: &store::WebhookRecord) {
        let data = json!({
            "webhook_id": webhook.id,
            "uri": webhook.uri,
            "status": webhook.status,
            "consecutive_failures": webhook.consecutive_failures,
            "paused_until": webhook.paused_until,
            "last_error": webhook.last_error,
        });
        self.shared
            .bus
            .publish(Event::new(event_type, webhook.account_id, data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn webhooks_hmac_matches_rfc_4231() {
        // Test case 2 ("Jefe"), and case 6 (a key longer than the block).
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let key = [0xaa_u8; 131];
        assert_eq!(
            hex(&hmac_sha256(
                &key,
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(unhex("0aff"), [10, 255]);
    }

    #[test]
    fn webhooks_signature_signs_time_dot_body() {
        let sig = signature("s3cret", 1_700_000_000, r#"{"a":1}"#);
        let expected = hex(&hmac_sha256(b"s3cret", br#"1700000000.{"a":1}"#));
        assert_eq!(sig, format!("t=1700000000,v1={expected}"));
    }

    #[test]
    fn webhooks_retry_delay_doubles_caps_and_jitters() {
        let config = WebhookConfig::default();
        assert_eq!(retry_delay(&config, 1, 0.5), Duration::from_secs(1));
        assert_eq!(retry_delay(&config, 2, 0.5), Duration::from_secs(2));
        assert_eq!(retry_delay(&config, 4, 0.5), Duration::from_secs(8));
        assert_eq!(retry_delay(&config, 30, 0.5), Duration::from_secs(60));
        assert_eq!(retry_delay(&config, 1, 0.0), Duration::from_millis(800));
        assert_eq!(retry_delay(&config, 1, 1.0), Duration::from_millis(1200));
    }

    #[test]
    fn webhooks_classify_statuses() {
        assert_eq!(classify(204), Outcome::Delivered(204));
        assert!(matches!(classify(503), Outcome::Retry(Some(503), _)));
        assert!(matches!(classify(429), Outcome::Retry(Some(429), _)));
        assert!(matches!(classify(404), Outcome::Fail(Some(404), _)));
    }

    #[test]
    fn webhooks_breaker_pause_doubles_to_its_cap() {
        let config = WebhookConfig::default();
        assert_eq!(next_pause(&config, None), Duration::from_secs(30));
        assert_eq!(
            next_pause(&config, Some(Duration::from_secs(30))),
            Duration::from_secs(60)
        );
        assert_eq!(
            next_pause(&config, Some(Duration::from_secs(480))),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn webhooks_times_round_trip() {
        let ms = 1_763_800_000_123;
        assert_eq!(parse_utc_ms(&utc_ms(ms)), Some(ms));
    }
}
