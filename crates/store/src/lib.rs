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

mod record;
mod sqlite;

pub use record::{
    Account, ActiveflowRecord, CallRecord, DeviceRecord, FlowRecord, NumberRecord, Page,
    RecordingRecord, RegistrationRecord, TrunkRecord,
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
    /// The account an API token belongs to.
    async fn account_by_token(&self, token: &str) -> Result<Option<Account>, StoreError>;

    /// Insert a new flow.
    async fn create_flow(&self, flow: &FlowRecord) -> Result<(), StoreError>;
    /// One flow of `account`.
    async fn flow(&self, account: Uuid, id: Uuid) -> Result<Option<FlowRecord>, StoreError>;
    /// Flows of `account`, newest first.
    async fn list_flows(&self, account: Uuid, page: &Page) -> Result<Vec<FlowRecord>, StoreError>;

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

/// Hex SHA-256 of an API token: tokens are stored only hashed.
#[must_use]
pub fn hash_token(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
