//! voxflow storage.
//!
//! Owns the [`Store`] trait — the only way the rest of the platform reads or writes durable state —
//! the domain records it speaks in, and its backends (SQLite today; PostgreSQL implements the same
//! trait and passes the same conformance tests). Backend errors never leak upward: every method
//! returns [`StoreError`].
//!
//! Records carry timestamps as UTC ISO-8601 strings chosen by the caller, so the store never reads
//! the clock and tests stay deterministic.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod postgres;
mod record;
mod sqlite;

pub use postgres::PostgresStore;
pub use record::{
    Account, AccountLimits, ActiveflowRecord, CallRecord, DeliveryRecord, DeviceRecord, FlowRecord,
    NumberRecord, Page, RecordingRecord, RegistrationRecord, TokenRecord, TrunkRecord,
    WebhookRecord,
};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use uuid::Uuid;

/// What can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. the number is already bound).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The stored data could not be read back (a bug or a hand-edited database).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database could not be reached or refused the statement.
    #[error("database error: {0}")]
    Backend(String),
}

/// Durable state of the platform, scoped by account.
///
/// Every read that takes an `account` returns `None` for a record of another account: callers
/// answer 404 and never learn that it exists.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// On an empty database, create the first account and an API token for it: `token` if given,
    /// else a generated one. Returns the token when one was created now (to be printed once), or
    /// `None` when accounts already existed.
    async fn bootstrap(&self, token: Option<&str>, now: &str)
    -> Result<Option<String>, StoreError>;
    /// The oldest account (the one bootstrap created), if any.
    async fn first_account(&self) -> Result<Option<Account>, StoreError>;
    /// The token (by its secret) and the account it belongs to.
    async fn authenticate(&self, token: &str)
    -> Result<Option<(Account, TokenRecord)>, StoreError>;
    /// The account an API token belongs to.
    async fn account_by_token(&self, token: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.authenticate(token).await?.map(|(account, _)| account))
    }

    /// Insert a new account.
    async fn create_account(&self, account: &Account) -> Result<(), StoreError>;
    /// One account.
    async fn account(&self, id: Uuid) -> Result<Option<Account>, StoreError>;
    /// Every account, newest first.
    async fn list_accounts(&self, page: &Page) -> Result<Vec<Account>, StoreError>;
    /// Overwrite an account's name and limits; false when there was none.
    async fn update_account(&self, account: &Account) -> Result<bool, StoreError>;

    /// Insert a token (hashed by the caller).
    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Tokens of `account`, newest first.
    async fn list_tokens(&self, account: Uuid, page: &Page)
    -> Result<Vec<TokenRecord>, StoreError>;
    /// Revoke (delete) a token of `account`; false when there was none.
    async fn delete_token(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError>;

    /// Insert a new flow.
    async fn create_flow(&self, flow: &FlowRecord) -> Result<(), StoreError>;
    /// One flow of `account`.
    async fn flow(&self, account: Uuid, id: Uuid) -> Result<Option<FlowRecord>, StoreError>;
    /// Flows of `account`, newest first.
    async fn list_flows(&self, account: Uuid, page: &Page) -> Result<Vec<FlowRecord>, StoreError>;
    /// Overwrite a flow (name, detail, actions, on_complete_flow_id, tm_update) matched by id
    /// within its account; false when there was none.
    async fn update_flow(&self, flow: &FlowRecord) -> Result<bool, StoreError>;
    /// Delete a flow of `account`; false when there was none.
    async fn delete_flow(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError>;

    /// Bind a number to a flow; [`StoreError::Conflict`] when the number is taken (by anyone).
    async fn create_number(&self, number: &NumberRecord) -> Result<(), StoreError>;
    /// One number of `account`.
    async fn number(&self, account: Uuid, id: Uuid) -> Result<Option<NumberRecord>, StoreError>;
    /// Numbers of `account`, newest first.
    async fn list_numbers(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<NumberRecord>, StoreError>;
    /// Overwrite a number (number, call_flow_id, name, tm_update) matched by id within its
    /// account; false when there was none; [`StoreError::Conflict`] when the new number is taken.
    async fn update_number(&self, number: &NumberRecord) -> Result<bool, StoreError>;
    /// Delete a number of `account`; false when there was none.
    async fn delete_number(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError>;
    /// The number an inbound call dialled, by its digits without `+` (see [`normalize_number`]).
    async fn number_for_inbound(&self, digits: &str) -> Result<Option<NumberRecord>, StoreError>;

    /// Insert a call record (written as soon as the call exists).
    async fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError>;
    /// Overwrite a call record with its new state.
    async fn update_call(&self, call: &CallRecord) -> Result<(), StoreError>;
    /// One call of `account`.
    async fn call(&self, account: Uuid, id: Uuid) -> Result<Option<CallRecord>, StoreError>;
    /// Calls of `account`, newest first.
    async fn list_calls(&self, account: Uuid, page: &Page) -> Result<Vec<CallRecord>, StoreError>;
    /// Insert a device; [`StoreError::Conflict`] when the username is taken.
    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError>;
    /// One device of `account`.
    async fn device(&self, account: Uuid, id: Uuid) -> Result<Option<DeviceRecord>, StoreError>;
    /// Devices of `account`, newest first.
    async fn list_devices(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<DeviceRecord>, StoreError>;
    /// The device with this SIP username (any account: usernames are global).
    async fn device_by_username(&self, username: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// Delete a device of `account` and its registrations; false when there was none.
    async fn delete_device(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError>;

    /// The registrations of a device.
    async fn registrations(&self, device: Uuid) -> Result<Vec<RegistrationRecord>, StoreError>;
    /// Replace all registrations of a device with `current` (the registrar's new binding set).
    async fn replace_registrations(
        &self,
        device: Uuid,
        current: &[RegistrationRecord],
    ) -> Result<(), StoreError>;
    /// Every registration still valid at `now_unix` (for keep-alives).
    async fn live_registrations(
        &self,
        now_unix: i64,
    ) -> Result<Vec<RegistrationRecord>, StoreError>;
    /// Delete registrations expired at `now_unix`; returns how many.
    async fn expire_registrations(&self, now_unix: i64) -> Result<u64, StoreError>;

    /// Insert a trunk.
    async fn create_trunk(&self, trunk: &TrunkRecord) -> Result<(), StoreError>;
    /// One trunk of `account`.
    async fn trunk(&self, account: Uuid, id: Uuid) -> Result<Option<TrunkRecord>, StoreError>;
    /// Trunks of `account`, newest first.
    async fn list_trunks(&self, account: Uuid, page: &Page)
    -> Result<Vec<TrunkRecord>, StoreError>;
    /// Overwrite a trunk's settings (matched by id within its account); false when there was none.
    async fn update_trunk(&self, trunk: &TrunkRecord) -> Result<bool, StoreError>;
    /// Every trunk of every account (for inbound source matching and outbound registration).
    async fn all_trunks(&self) -> Result<Vec<TrunkRecord>, StoreError>;
    /// Delete a trunk of `account`; false when there was none.
    async fn delete_trunk(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError>;

    /// Close every call not in status `hangup` (left over by a crash) with the given reason.
    /// Returns how many were closed.
    async fn close_live_calls(&self, reason: &str, now: &str) -> Result<u64, StoreError>;

    /// Insert a recording (written when recording starts).
    async fn create_recording(&self, recording: &RecordingRecord) -> Result<(), StoreError>;
    /// Overwrite a recording with its new state (status, duration, end, path); matched by id
    /// within its account.
    async fn update_recording(&self, recording: &RecordingRecord) -> Result<(), StoreError>;
    /// One recording of `account`.
    async fn recording(
        &self,
        account: Uuid,
        id: Uuid,
    ) -> Result<Option<RecordingRecord>, StoreError>;
    /// Recordings of `account`, newest first by `tm_start` (the page cursor is `(tm_start, id)`).
    async fn list_recordings(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<RecordingRecord>, StoreError>;
    /// Every recording of one call of `account`, oldest first.
    async fn recordings_of_call(
        &self,
        account: Uuid,
        call: Uuid,
    ) -> Result<Vec<RecordingRecord>, StoreError>;
    /// Delete a recording of `account` (the record only: the caller removes the file); false
    /// when there was none.
    async fn delete_recording(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError>;
    /// Mark every recording still in status `recording` (left over by a crash) `failed`, with
    /// `reason` as its end reason and `now` as its end. Returns how many were closed.
    async fn close_live_recordings(&self, reason: &str, now: &str) -> Result<u64, StoreError>;

    /// Insert or overwrite an activeflow (matched by id).
    async fn save_activeflow(&self, activeflow: &ActiveflowRecord) -> Result<(), StoreError>;
    /// One activeflow of `account`.
    async fn activeflow(
        &self,
        account: Uuid,
        id: Uuid,
    ) -> Result<Option<ActiveflowRecord>, StoreError>;
    /// Activeflows of `account`, newest first.
    async fn list_activeflows(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<ActiveflowRecord>, StoreError>;
    /// End every activeflow still `running` (left over by a crash) with `reason`. Returns how
    /// many were closed.
    async fn close_live_activeflows(&self, reason: &str, now: &str) -> Result<u64, StoreError>;

    /// Insert a webhook.
    async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError>;
    /// One webhook of `account`.
    async fn webhook(&self, account: Uuid, id: Uuid) -> Result<Option<WebhookRecord>, StoreError>;
    /// Webhooks of `account`, newest first.
    async fn list_webhooks(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<WebhookRecord>, StoreError>;
    /// Every webhook of `account` (to match an event against), oldest first.
    async fn webhooks_of_account(&self, account: Uuid) -> Result<Vec<WebhookRecord>, StoreError>;
    /// Overwrite a webhook's settings (`name`, `uri`, `method`, `secret`, `event_types`,
    /// `tm_update`), matched by id within its account, leaving its breaker state as it is (the
    /// dispatcher may be changing it); false when there was none.
    async fn update_webhook_settings(&self, webhook: &WebhookRecord) -> Result<bool, StoreError>;
    /// Overwrite a webhook's breaker state (`status`, `consecutive_failures`, `paused_until`,
    /// `last_error`, `tm_update`), matched by id within its account, leaving its settings as they
    /// are (the API may be changing them); false when there was none.
    async fn update_webhook_breaker(&self, webhook: &WebhookRecord) -> Result<bool, StoreError>;
    /// Delete a webhook of `account` and its pending deliveries; false when there was none.
    async fn delete_webhook(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError>;

    /// Put deliveries in the outbox (one transaction: all or none).
    async fn enqueue_deliveries(&self, deliveries: &[DeliveryRecord]) -> Result<(), StoreError>;
    /// Pending deliveries due at `now_ms` (unix milliseconds), oldest `next_attempt_at` first.
    async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// The earliest `next_attempt_at` of any pending delivery.
    async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError>;
    /// Overwrite a delivery's state (status, attempts, next_attempt_at, last_*, attempt_log,
    /// tm_update, tm_delivered), matched by id.
    async fn update_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError>;
    /// Make every pending delivery of `webhook` due at `now_ms` (a paused target answered
    /// again: send what was held back). Returns how many.
    async fn retry_deliveries_now(&self, webhook: Uuid, now_ms: i64) -> Result<u64, StoreError>;
    /// Send a `failed` delivery of `account` again: `pending`, due at `now_ms`, its attempts
    /// and log kept. False when there is no such delivery or it is not `failed` (pending ones
    /// belong to the dispatcher, which may have an attempt on the wire).
    async fn retry_delivery(
        &self,
        account: Uuid,
        id: Uuid,
        now_ms: i64,
        tm_update: &str,
    ) -> Result<bool, StoreError>;
    /// One delivery of `account`.
    async fn delivery(&self, account: Uuid, id: Uuid)
    -> Result<Option<DeliveryRecord>, StoreError>;
    /// Deliveries of `account` (of one webhook when given), newest first.
    async fn list_deliveries(
        &self,
        account: Uuid,
        webhook: Option<Uuid>,
        page: &Page,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
}

/// Open the store at `url`, choosing the backend by its scheme: `sqlite:` (a file, or
/// `sqlite::memory:`) or `postgres://` / `postgresql://`. Pending migrations are applied.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::open(url).await?))
    } else {
        // Name only a plausible scheme: the rest of a URL may hold a password.
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).filter(|s| {
            !s.is_empty()
                && s.len() <= 16
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        let named = scheme.map_or_else(String::new, |s| format!(" `{s}:`"));
        Err(StoreError::Backend(format!(
            "unsupported database url scheme{named}: expected sqlite: or postgres://"
        )))
    }
}

/// The key a number is stored and looked up by: the digits without a leading `+`.
#[must_use]
pub fn normalize_number(number: &str) -> String {
    number.trim().trim_start_matches('+').to_owned()
}

/// The current time as stored: UTC ISO-8601 with microseconds (`2026-11-21T10:00:00.123456Z`),
/// fixed width so that text order is time order.
#[must_use]
pub fn utc_now() -> String {
    format_utc(time::OffsetDateTime::now_utc())
}

/// Format a time the way the store keeps it (see [`utc_now`]).
#[must_use]
pub fn format_utc(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// The first characters of a token, kept in the clear so lists can tell tokens apart.
#[must_use]
pub fn token_prefix(token: &str) -> String {
    token.chars().take(7).collect()
}

/// Hex SHA-256 of an API token: tokens are stored only hashed.
#[must_use]
pub fn hash_token(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
