//! The embedded SQLite backend (WAL mode), with its own migrations.

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow,
};
use uuid::Uuid;

use crate::{
    Account, AccountLimits, ActiveflowRecord, CallRecord, DeliveryRecord, DeviceRecord, FlowRecord,
    NumberRecord, Page, RecordingRecord, RegistrationRecord, Store, StoreError, TokenRecord,
    TrunkRecord, WebhookRecord, hash_token, normalize_number,
};

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

/// Migrations in order; each runs once, inside a transaction, and is recorded in `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_sip.sql")),
    (3, include_str!("../migrations/sqlite/0003_device_ips.sql")),
    (4, include_str!("../migrations/sqlite/0004_recordings.sql")),
    (5, include_str!("../migrations/sqlite/0005_activeflows.sql")),
    (
        6,
        include_str!("../migrations/sqlite/0006_flow_on_complete.sql"),
    ),
    (7, include_str!("../migrations/sqlite/0007_platform.sql")),
];

/// [`Store`] on an SQLite file (or `sqlite::memory:` in tests).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Open (creating if missing) the database at `url` (`sqlite://path` or `sqlite::memory:`) and
    /// apply pending migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        let applied = store.migrate(MIGRATIONS).await?;
        if applied == 0 || url.contains(":memory:") {
            return Ok(store);
        }
        // A pooled connection that was idle while another migrated keeps the old schema until
        // its next statement runs; a statement prepared on it against a changed table would be
        // described with the old columns. Start the pool again on the migrated schema.
        store.pool.close().await;
        Self::connect(url).await
    }

    /// Open the database without migrating it.
    async fn connect(url: &str) -> Result<Self, StoreError> {
        let memory = url.contains(":memory:");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(if memory {
                SqliteJournalMode::Memory
            } else {
                SqliteJournalMode::Wal
            })
            .busy_timeout(std::time::Duration::from_secs(5));
        // Each in-memory connection is its own database: keep exactly one.
        let pool = SqlitePoolOptions::new()
            .max_connections(if memory { 1 } else { 4 })
            .connect_with(options)
            .await
            .map_err(backend)?;
        Ok(SqliteStore { pool })
    }

    /// Apply those of `migrations` not yet recorded in `schema_migrations`; how many were.
    async fn migrate(&self, migrations: &[(i64, &str)]) -> Result<usize, StoreError> {
        let mut applied = 0;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        for &(version, sql) in migrations {
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend)?;
            if done.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await.map_err(backend)?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query("INSERT INTO schema_migrations (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            tracing::info!(version, "applied sqlite migration");
            applied += 1;
        }
        Ok(applied)
    }
}

/// The statements of an account-scoped table, from its name at compile time (sqlx takes
/// `&'static str` SQL, which keeps these free of injected text).
macro_rules! scoped_sql {
    (one $table:literal) => {
        concat!("SELECT * FROM ", $table, " WHERE id = ? AND account_id = ?")
    };
    (page $table:literal) => {
        scoped_sql!(page $table by "tm_create")
    };
    (page $table:literal by $time:literal) => {
        concat!(
            "SELECT * FROM ",
            $table,
            " WHERE account_id = ? AND (",
            $time,
            " < ? OR (",
            $time,
            " = ? AND id < ?)) ORDER BY ",
            $time,
            " DESC, id DESC LIMIT ?"
        )
    };
    (delete $table:literal) => {
        concat!("DELETE FROM ", $table, " WHERE id = ? AND account_id = ?")
    };
}

type ReadRow<T> = fn(&SqliteRow) -> Result<T, StoreError>;

impl SqliteStore {
    /// One record of `account` by id (`scoped_sql!(one ..)`).
    async fn one<T>(
        &self,
        sql: &'static str,
        account: Uuid,
        id: Uuid,
        read: ReadRow<T>,
    ) -> Result<Option<T>, StoreError> {
        sqlx::query(sql)
            .bind(id.to_string())
            .bind(account.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(read)
            .transpose()
    }

    /// A page of `account`'s records, newest first (`scoped_sql!(page ..)`).
    async fn page<T>(
        &self,
        sql: &'static str,
        account: Uuid,
        page: &Page,
        read: ReadRow<T>,
    ) -> Result<Vec<T>, StoreError> {
        let (tm, id) = cursor(page);
        sqlx::query(sql)
            .bind(account.to_string())
            .bind(&tm)
            .bind(&tm)
            .bind(&id)
            .bind(i64::from(page.size))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(read)
            .collect()
    }

    /// End the rows a crash left live: `sql` sets the end reason, the end and the update time
    /// (three `?`) where the status says live. Returns how many.
    async fn close_live(
        &self,
        sql: &'static str,
        reason: &str,
        now: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(reason)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    /// Run one statement; true when it changed a row.
    async fn changed(&self, q: SqliteQuery<'_>) -> Result<bool, StoreError> {
        let done = q.execute(&self.pool).await.map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    /// Delete one record of `account` (`scoped_sql!(delete ..)`); false when there was none.
    async fn delete(&self, sql: &'static str, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.changed(
            sqlx::query(sql)
                .bind(id.to_string())
                .bind(account.to_string()),
        )
        .await
    }
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn unique_violation(err: sqlx::Error, what: &'static str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => backend(err),
    }
}

fn uuid_col(row: &SqliteRow, col: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(col).map_err(backend)?;
    Uuid::parse_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn opt_uuid_col(row: &SqliteRow, col: &str) -> Result<Option<Uuid>, StoreError> {
    let text: Option<String> = row.try_get(col).map_err(backend)?;
    text.map(|t| Uuid::parse_str(&t).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
        .transpose()
}

fn text(row: &SqliteRow, col: &str) -> Result<String, StoreError> {
    row.try_get(col).map_err(backend)
}

fn opt_text(row: &SqliteRow, col: &str) -> Result<Option<String>, StoreError> {
    row.try_get(col).map_err(backend)
}

fn opt_u32_col(row: &SqliteRow, col: &str) -> Result<Option<u32>, StoreError> {
    let value: Option<i64> = row.try_get(col).map_err(backend)?;
    value
        .map(|v| u32::try_from(v).map_err(|e| StoreError::Corrupt(format!("{col}: {e}"))))
        .transpose()
}

fn u32_col(row: &SqliteRow, col: &str) -> Result<u32, StoreError> {
    let value: i64 = row.try_get(col).map_err(backend)?;
    u32::try_from(value).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn json_col<T: serde::de::DeserializeOwned>(row: &SqliteRow, col: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(col).map_err(backend)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn account_from_row(row: &SqliteRow) -> Result<Account, StoreError> {
    Ok(Account {
        id: uuid_col(row, "id")?,
        name: text(row, "name")?,
        limits: AccountLimits {
            max_concurrent_calls: opt_u32_col(row, "max_concurrent_calls")?,
            max_calls_per_second: opt_u32_col(row, "max_calls_per_second")?,
            destination_prefixes: json_col(row, "destination_prefixes")?,
        },
        tm_create: text(row, "tm_create")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord, StoreError> {
    let admin: i64 = row.try_get("admin").map_err(backend)?;
    Ok(TokenRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        name: text(row, "name")?,
        token_hash: text(row, "token_hash")?,
        prefix: text(row, "prefix")?,
        admin: admin != 0,
        tm_create: text(row, "tm_create")?,
    })
}

fn webhook_from_row(row: &SqliteRow) -> Result<WebhookRecord, StoreError> {
    Ok(WebhookRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        name: text(row, "name")?,
        uri: text(row, "uri")?,
        method: text(row, "method")?,
        secret: text(row, "secret")?,
        event_types: json_col(row, "event_types")?,
        status: text(row, "status")?,
        consecutive_failures: u32_col(row, "consecutive_failures")?,
        paused_until: opt_text(row, "paused_until")?,
        last_error: text(row, "last_error")?,
        tm_create: text(row, "tm_create")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn delivery_from_row(row: &SqliteRow) -> Result<DeliveryRecord, StoreError> {
    let last_status: Option<i64> = row.try_get("last_status").map_err(backend)?;
    Ok(DeliveryRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        webhook_id: uuid_col(row, "webhook_id")?,
        event_id: uuid_col(row, "event_id")?,
        event_type: text(row, "event_type")?,
        payload: text(row, "payload")?,
        status: text(row, "status")?,
        attempts: u32_col(row, "attempts")?,
        next_attempt_at: row.try_get("next_attempt_at").map_err(backend)?,
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error: text(row, "last_error")?,
        attempt_log: json_col(row, "attempt_log")?,
        tm_create: text(row, "tm_create")?,
        tm_update: text(row, "tm_update")?,
        tm_delivered: opt_text(row, "tm_delivered")?,
    })
}

fn flow_from_row(row: &SqliteRow) -> Result<FlowRecord, StoreError> {
    let actions: String = text(row, "actions")?;
    Ok(FlowRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        name: text(row, "name")?,
        detail: text(row, "detail")?,
        actions: serde_json::from_str(&actions)
            .map_err(|e| StoreError::Corrupt(format!("flow actions: {e}")))?,
        on_complete_flow_id: opt_uuid_col(row, "on_complete_flow_id")?,
        tm_create: text(row, "tm_create")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn number_from_row(row: &SqliteRow) -> Result<NumberRecord, StoreError> {
    Ok(NumberRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        number: text(row, "display_number")?,
        call_flow_id: uuid_col(row, "call_flow_id")?,
        name: text(row, "name")?,
        tm_create: text(row, "tm_create")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn call_from_row(row: &SqliteRow) -> Result<CallRecord, StoreError> {
    Ok(CallRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        flow_id: opt_uuid_col(row, "flow_id")?,
        direction: text(row, "direction")?,
        status: text(row, "status")?,
        source_type: text(row, "source_type")?,
        source_target: text(row, "source_target")?,
        destination_type: text(row, "destination_type")?,
        destination_target: text(row, "destination_target")?,
        hangup_reason: text(row, "hangup_reason")?,
        hangup_by: text(row, "hangup_by")?,
        sip_call_id: text(row, "sip_call_id")?,
        tm_create: text(row, "tm_create")?,
        tm_ringing: opt_text(row, "tm_ringing")?,
        tm_progressing: opt_text(row, "tm_progressing")?,
        tm_hangup: opt_text(row, "tm_hangup")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn device_from_row(row: &SqliteRow) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        username: text(row, "username")?,
        realm: text(row, "realm")?,
        ha1_md5: text(row, "ha1_md5")?,
        ha1_sha256: text(row, "ha1_sha256")?,
        name: text(row, "name")?,
        allowed_ips: serde_json::from_str(&text(row, "allowed_ips")?)
            .map_err(|e| StoreError::Corrupt(format!("allowed_ips: {e}")))?,
        tm_create: text(row, "tm_create")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn registration_from_row(row: &SqliteRow) -> Result<RegistrationRecord, StoreError> {
    let cseq: i64 = row.try_get("cseq").map_err(backend)?;
    let q: Option<f64> = row.try_get("q").map_err(backend)?;
    Ok(RegistrationRecord {
        device_id: uuid_col(row, "device_id")?,
        contact: text(row, "contact")?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        call_id: text(row, "call_id")?,
        cseq: u32::try_from(cseq).map_err(|e| StoreError::Corrupt(format!("cseq: {e}")))?,
        q: q.map(|q| q as f32),
        instance: opt_text(row, "instance")?,
        source: text(row, "source")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn trunk_from_row(row: &SqliteRow) -> Result<TrunkRecord, StoreError> {
    let port: Option<i64> = row.try_get("port").map_err(backend)?;
    let expires: i64 = row.try_get("register_expires").map_err(backend)?;
    let register: i64 = row.try_get("register").map_err(backend)?;
    let allowed: String = text(row, "allowed_ips")?;
    Ok(TrunkRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        name: text(row, "name")?,
        host: text(row, "host")?,
        port: port
            .map(|p| u16::try_from(p).map_err(|e| StoreError::Corrupt(format!("port: {e}"))))
            .transpose()?,
        transport: text(row, "transport")?,
        username: text(row, "username")?,
        password: text(row, "password")?,
        register: register != 0,
        register_expires: u32::try_from(expires)
            .map_err(|e| StoreError::Corrupt(format!("register_expires: {e}")))?,
        caller_id: text(row, "caller_id")?,
        allowed_ips: serde_json::from_str(&allowed)
            .map_err(|e| StoreError::Corrupt(format!("allowed_ips: {e}")))?,
        tm_create: text(row, "tm_create")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn activeflow_from_row(row: &SqliteRow) -> Result<ActiveflowRecord, StoreError> {
    let json = |col: &str| -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(&text(row, col)?)
            .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
    };
    let count: i64 = row.try_get("execute_count").map_err(backend)?;
    Ok(ActiveflowRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        call_id: uuid_col(row, "call_id")?,
        flow_id: opt_uuid_col(row, "flow_id")?,
        status: text(row, "status")?,
        end_reason: text(row, "end_reason")?,
        current_action_id: text(row, "current_action_id")?,
        execute_count: u32::try_from(count)
            .map_err(|e| StoreError::Corrupt(format!("execute_count: {e}")))?,
        executed_actions: json("executed_actions")?,
        variables: json("variables")?,
        tm_create: text(row, "tm_create")?,
        tm_end: opt_text(row, "tm_end")?,
        tm_update: text(row, "tm_update")?,
    })
}

fn recording_from_row(row: &SqliteRow) -> Result<RecordingRecord, StoreError> {
    let channels: i64 = row.try_get("channels").map_err(backend)?;
    let duration: i64 = row.try_get("duration_ms").map_err(backend)?;
    Ok(RecordingRecord {
        id: uuid_col(row, "id")?,
        account_id: uuid_col(row, "account_id")?,
        call_id: uuid_col(row, "call_id")?,
        status: text(row, "status")?,
        format: text(row, "format")?,
        channels: u16::try_from(channels)
            .map_err(|e| StoreError::Corrupt(format!("channels: {e}")))?,
        path: text(row, "path")?,
        duration_ms: u64::try_from(duration)
            .map_err(|e| StoreError::Corrupt(format!("duration_ms: {e}")))?,
        end_reason: text(row, "end_reason")?,
        tm_start: text(row, "tm_start")?,
        tm_end: opt_text(row, "tm_end")?,
        tm_update: text(row, "tm_update")?,
    })
}

/// A duration as SQLite stores it (a signed 64-bit integer).
fn duration_col(duration_ms: u64) -> Result<i64, StoreError> {
    i64::try_from(duration_ms).map_err(|_| StoreError::Backend("duration_ms out of range".into()))
}

/// `(tm_create, id)` of the last record seen, or a sentinel that sorts after everything.
fn cursor(page: &Page) -> (String, String) {
    page.after
        .clone()
        .unwrap_or_else(|| ("\u{10FFFF}".to_owned(), String::new()))
}

#[async_trait]
impl Store for SqliteStore {
    async fn bootstrap(
        &self,
        token: Option<&str>,
        now: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if accounts > 0 {
            return Ok(None);
        }
        let token = match token {
            Some(t) => t.to_owned(),
            None => format!("vf_{}", Uuid::new_v4().simple()),
        };
        let account = Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO accounts (id, name, destination_prefixes, tm_create, tm_update) \
             VALUES (?, ?, '[]', ?, ?)",
        )
        .bind(&account)
        .bind("default")
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, account_id, name, prefix, admin, tm_create) \
             VALUES (?, ?, ?, 'bootstrap', ?, 1, ?)",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(hash_token(&token))
        .bind(&account)
        .bind(crate::token_prefix(&token))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(token))
    }

    async fn first_account(&self) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT * FROM accounts ORDER BY tm_create, id LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|row| account_from_row(&row)).transpose()
    }

    async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Option<(Account, TokenRecord)>, StoreError> {
        let Some(row) = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = ?")
            .bind(hash_token(token))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let token = token_from_row(&row)?;
        Ok(self
            .account(token.account_id)
            .await?
            .map(|account| (account, token)))
    }

    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO accounts (id, name, max_concurrent_calls, max_calls_per_second, \
             destination_prefixes, tm_create, tm_update) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(account.id.to_string())
        .bind(&account.name)
        .bind(account.limits.max_concurrent_calls.map(i64::from))
        .bind(account.limits.max_calls_per_second.map(i64::from))
        .bind(to_json(&account.limits.destination_prefixes)?)
        .bind(&account.tm_create)
        .bind(&account.tm_update)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "account"))?;
        Ok(())
    }

    async fn account(&self, id: Uuid) -> Result<Option<Account>, StoreError> {
        sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(account_from_row)
            .transpose()
    }

    async fn list_accounts(&self, page: &Page) -> Result<Vec<Account>, StoreError> {
        let (tm, id) = cursor(page);
        sqlx::query(
            "SELECT * FROM accounts WHERE (tm_create < ? OR (tm_create = ? AND id < ?)) \
             ORDER BY tm_create DESC, id DESC LIMIT ?",
        )
        .bind(&tm)
        .bind(&tm)
        .bind(&id)
        .bind(i64::from(page.size))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(account_from_row)
        .collect()
    }

    async fn update_account(&self, account: &Account) -> Result<bool, StoreError> {
        self.changed(
            sqlx::query(
                "UPDATE accounts SET name = ?, max_concurrent_calls = ?, max_calls_per_second = ?, \
             destination_prefixes = ?, tm_update = ? WHERE id = ?",
            )
            .bind(&account.name)
            .bind(account.limits.max_concurrent_calls.map(i64::from))
            .bind(account.limits.max_calls_per_second.map(i64::from))
            .bind(to_json(&account.limits.destination_prefixes)?)
            .bind(&account.tm_update)
            .bind(account.id.to_string()),
        )
        .await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, token_hash, account_id, name, prefix, admin, tm_create) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(token.id.to_string())
        .bind(&token.token_hash)
        .bind(token.account_id.to_string())
        .bind(&token.name)
        .bind(&token.prefix)
        .bind(i64::from(token.admin))
        .bind(&token.tm_create)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "token"))?;
        Ok(())
    }

    async fn list_tokens(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        self.page(
            scoped_sql!(page "api_tokens"),
            account,
            page,
            token_from_row,
        )
        .await
    }

    async fn delete_token(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "api_tokens"), account, id)
            .await
    }

    async fn create_flow(&self, flow: &FlowRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO flows (id, account_id, name, detail, actions, on_complete_flow_id, \
             tm_create, tm_update) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(flow.id.to_string())
        .bind(flow.account_id.to_string())
        .bind(&flow.name)
        .bind(&flow.detail)
        .bind(flow.actions.to_string())
        .bind(flow.on_complete_flow_id.map(|id| id.to_string()))
        .bind(&flow.tm_create)
        .bind(&flow.tm_update)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "flow"))?;
        Ok(())
    }

    async fn flow(&self, account: Uuid, id: Uuid) -> Result<Option<FlowRecord>, StoreError> {
        self.one(scoped_sql!(one "flows"), account, id, flow_from_row)
            .await
    }

    async fn list_flows(&self, account: Uuid, page: &Page) -> Result<Vec<FlowRecord>, StoreError> {
        self.page(scoped_sql!(page "flows"), account, page, flow_from_row)
            .await
    }

    async fn update_flow(&self, flow: &FlowRecord) -> Result<bool, StoreError> {
        self.changed(
            sqlx::query(
                "UPDATE flows SET name = ?, detail = ?, actions = ?, on_complete_flow_id = ?, \
             tm_update = ? WHERE id = ? AND account_id = ?",
            )
            .bind(&flow.name)
            .bind(&flow.detail)
            .bind(flow.actions.to_string())
            .bind(flow.on_complete_flow_id.map(|id| id.to_string()))
            .bind(&flow.tm_update)
            .bind(flow.id.to_string())
            .bind(flow.account_id.to_string()),
        )
        .await
    }

    async fn delete_flow(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "flows"), account, id).await
    }

    async fn create_number(&self, number: &NumberRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO numbers (id, account_id, number, display_number, call_flow_id, name, \
             tm_create, tm_update) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(number.id.to_string())
        .bind(number.account_id.to_string())
        .bind(normalize_number(&number.number))
        .bind(&number.number)
        .bind(number.call_flow_id.to_string())
        .bind(&number.name)
        .bind(&number.tm_create)
        .bind(&number.tm_update)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "number"))?;
        Ok(())
    }

    async fn number(&self, account: Uuid, id: Uuid) -> Result<Option<NumberRecord>, StoreError> {
        self.one(scoped_sql!(one "numbers"), account, id, number_from_row)
            .await
    }

    async fn list_numbers(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<NumberRecord>, StoreError> {
        self.page(scoped_sql!(page "numbers"), account, page, number_from_row)
            .await
    }

    async fn update_number(&self, number: &NumberRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE numbers SET number = ?, display_number = ?, call_flow_id = ?, name = ?, \
             tm_update = ? WHERE id = ? AND account_id = ?",
        )
        .bind(normalize_number(&number.number))
        .bind(&number.number)
        .bind(number.call_flow_id.to_string())
        .bind(&number.name)
        .bind(&number.tm_update)
        .bind(number.id.to_string())
        .bind(number.account_id.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "number"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_number(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "numbers"), account, id)
            .await
    }

    async fn number_for_inbound(&self, digits: &str) -> Result<Option<NumberRecord>, StoreError> {
        sqlx::query("SELECT * FROM numbers WHERE number = ?")
            .bind(normalize_number(digits))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(number_from_row)
            .transpose()
    }

    async fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO calls (id, account_id, flow_id, direction, status, source_type, source_target, \
             destination_type, destination_target, hangup_reason, hangup_by, sip_call_id, tm_create, \
             tm_ringing, tm_progressing, tm_hangup, tm_update) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(call.id.to_string())
        .bind(call.account_id.to_string())
        .bind(call.flow_id.map(|f| f.to_string()))
        .bind(&call.direction)
        .bind(&call.status)
        .bind(&call.source_type)
        .bind(&call.source_target)
        .bind(&call.destination_type)
        .bind(&call.destination_target)
        .bind(&call.hangup_reason)
        .bind(&call.hangup_by)
        .bind(&call.sip_call_id)
        .bind(&call.tm_create)
        .bind(&call.tm_ringing)
        .bind(&call.tm_progressing)
        .bind(&call.tm_hangup)
        .bind(&call.tm_update)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "call"))?;
        Ok(())
    }

    async fn update_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE calls SET flow_id = ?, status = ?, hangup_reason = ?, hangup_by = ?, \
             tm_ringing = ?, tm_progressing = ?, tm_hangup = ?, tm_update = ? WHERE id = ?",
        )
        .bind(call.flow_id.map(|f| f.to_string()))
        .bind(&call.status)
        .bind(&call.hangup_reason)
        .bind(&call.hangup_by)
        .bind(&call.tm_ringing)
        .bind(&call.tm_progressing)
        .bind(&call.tm_hangup)
        .bind(&call.tm_update)
        .bind(call.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn call(&self, account: Uuid, id: Uuid) -> Result<Option<CallRecord>, StoreError> {
        self.one(scoped_sql!(one "calls"), account, id, call_from_row)
            .await
    }

    async fn list_calls(&self, account: Uuid, page: &Page) -> Result<Vec<CallRecord>, StoreError> {
        self.page(scoped_sql!(page "calls"), account, page, call_from_row)
            .await
    }

    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO devices (id, account_id, username, realm, ha1_md5, ha1_sha256, name, allowed_ips, tm_create, tm_update) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(device.id.to_string())
        .bind(device.account_id.to_string())
        .bind(&device.username)
        .bind(&device.realm)
        .bind(&device.ha1_md5)
        .bind(&device.ha1_sha256)
        .bind(&device.name)
        .bind(serde_json::to_string(&device.allowed_ips).map_err(backend)?)
        .bind(&device.tm_create)
        .bind(&device.tm_update)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "device username"))?;
        Ok(())
    }

    async fn device(&self, account: Uuid, id: Uuid) -> Result<Option<DeviceRecord>, StoreError> {
        self.one(scoped_sql!(one "devices"), account, id, device_from_row)
            .await
    }

    async fn list_devices(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<DeviceRecord>, StoreError> {
        self.page(scoped_sql!(page "devices"), account, page, device_from_row)
            .await
    }

    async fn device_by_username(&self, username: &str) -> Result<Option<DeviceRecord>, StoreError> {
        sqlx::query("SELECT * FROM devices WHERE username = ?")
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(device_from_row)
            .transpose()
    }

    async fn delete_device(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "devices"), account, id)
            .await
    }

    async fn registrations(&self, device: Uuid) -> Result<Vec<RegistrationRecord>, StoreError> {
        sqlx::query("SELECT * FROM registrations WHERE device_id = ? ORDER BY contact")
            .bind(device.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(registration_from_row)
            .collect()
    }

    async fn replace_registrations(
        &self,
        device: Uuid,
        current: &[RegistrationRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM registrations WHERE device_id = ?")
            .bind(device.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for r in current {
            sqlx::query(
                "INSERT INTO registrations (device_id, contact, expires_at, call_id, cseq, q, instance, source, tm_update) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(device.to_string())
            .bind(&r.contact)
            .bind(r.expires_at)
            .bind(&r.call_id)
            .bind(i64::from(r.cseq))
            .bind(r.q.map(f64::from))
            .bind(&r.instance)
            .bind(&r.source)
            .bind(&r.tm_update)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn live_registrations(
        &self,
        now_unix: i64,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        sqlx::query("SELECT * FROM registrations WHERE expires_at > ? ORDER BY device_id, contact")
            .bind(now_unix)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(registration_from_row)
            .collect()
    }

    async fn expire_registrations(&self, now_unix: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM registrations WHERE expires_at <= ?")
            .bind(now_unix)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn create_trunk(&self, trunk: &TrunkRecord) -> Result<(), StoreError> {
        let allowed = serde_json::to_string(&trunk.allowed_ips).map_err(backend)?;
        sqlx::query(
            "INSERT INTO trunks (id, account_id, name, host, port, transport, username, password, register, \
             register_expires, caller_id, allowed_ips, tm_create, tm_update) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(trunk.id.to_string())
        .bind(trunk.account_id.to_string())
        .bind(&trunk.name)
        .bind(&trunk.host)
        .bind(trunk.port.map(i64::from))
        .bind(&trunk.transport)
        .bind(&trunk.username)
        .bind(&trunk.password)
        .bind(i64::from(trunk.register))
        .bind(i64::from(trunk.register_expires))
        .bind(&trunk.caller_id)
        .bind(allowed)
        .bind(&trunk.tm_create)
        .bind(&trunk.tm_update)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "trunk"))?;
        Ok(())
    }

    async fn trunk(&self, account: Uuid, id: Uuid) -> Result<Option<TrunkRecord>, StoreError> {
        self.one(scoped_sql!(one "trunks"), account, id, trunk_from_row)
            .await
    }

    async fn list_trunks(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<TrunkRecord>, StoreError> {
        self.page(scoped_sql!(page "trunks"), account, page, trunk_from_row)
            .await
    }

    async fn update_trunk(&self, trunk: &TrunkRecord) -> Result<bool, StoreError> {
        let allowed = serde_json::to_string(&trunk.allowed_ips).map_err(backend)?;
        self.changed(sqlx::query(
            "UPDATE trunks SET name = ?, host = ?, port = ?, transport = ?, username = ?, password = ?, \
             register = ?, register_expires = ?, caller_id = ?, allowed_ips = ?, tm_update = ? \
             WHERE id = ? AND account_id = ?",
        )
        .bind(&trunk.name)
        .bind(&trunk.host)
        .bind(trunk.port.map(i64::from))
        .bind(&trunk.transport)
        .bind(&trunk.username)
        .bind(&trunk.password)
        .bind(i64::from(trunk.register))
        .bind(i64::from(trunk.register_expires))
        .bind(&trunk.caller_id)
        .bind(allowed)
        .bind(&trunk.tm_update)
        .bind(trunk.id.to_string())
        .bind(trunk.account_id.to_string())).await
    }

    async fn all_trunks(&self) -> Result<Vec<TrunkRecord>, StoreError> {
        sqlx::query("SELECT * FROM trunks ORDER BY tm_create, id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(trunk_from_row)
            .collect()
    }

    async fn delete_trunk(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "trunks"), account, id).await
    }

    async fn close_live_calls(&self, reason: &str, now: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE calls SET status = 'hangup', hangup_reason = ?, hangup_by = 'local', \
             tm_hangup = ?, tm_update = ? WHERE status != 'hangup'",
        )
        .bind(reason)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn create_recording(&self, recording: &RecordingRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO recordings (id, account_id, call_id, status, format, channels, path, \
             duration_ms, end_reason, tm_start, tm_end, tm_update) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(recording.id.to_string())
        .bind(recording.account_id.to_string())
        .bind(recording.call_id.to_string())
        .bind(&recording.status)
        .bind(&recording.format)
        .bind(i64::from(recording.channels))
        .bind(&recording.path)
        .bind(duration_col(recording.duration_ms)?)
        .bind(&recording.end_reason)
        .bind(&recording.tm_start)
        .bind(&recording.tm_end)
        .bind(&recording.tm_update)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "recording"))?;
        Ok(())
    }

    async fn update_recording(&self, recording: &RecordingRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE recordings SET status = ?, format = ?, channels = ?, path = ?, duration_ms = ?, \
             end_reason = ?, tm_end = ?, tm_update = ? WHERE id = ? AND account_id = ?",
        )
        .bind(&recording.status)
        .bind(&recording.format)
        .bind(i64::from(recording.channels))
        .bind(&recording.path)
        .bind(duration_col(recording.duration_ms)?)
        .bind(&recording.end_reason)
        .bind(&recording.tm_end)
        .bind(&recording.tm_update)
        .bind(recording.id.to_string())
        .bind(recording.account_id.to_string())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn recording(
        &self,
        account: Uuid,
        id: Uuid,
    ) -> Result<Option<RecordingRecord>, StoreError> {
        self.one(
            scoped_sql!(one "recordings"),
            account,
            id,
            recording_from_row,
        )
        .await
    }

    async fn list_recordings(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        self.page(
            scoped_sql!(page "recordings" by "tm_start"),
            account,
            page,
            recording_from_row,
        )
        .await
    }

    async fn recordings_of_call(
        &self,
        account: Uuid,
        call: Uuid,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM recordings WHERE call_id = ? AND account_id = ? ORDER BY tm_start, id",
        )
        .bind(call.to_string())
        .bind(account.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(recording_from_row)
        .collect()
    }

    async fn delete_recording(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "recordings"), account, id)
            .await
    }

    async fn close_live_recordings(&self, reason: &str, now: &str) -> Result<u64, StoreError> {
        self.close_live(
            "UPDATE recordings SET status = 'failed', end_reason = ?, tm_end = ?, tm_update = ? \
             WHERE status = 'recording'",
            reason,
            now,
        )
        .await
    }

    async fn save_activeflow(&self, a: &ActiveflowRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO activeflows (id, account_id, call_id, flow_id, status, end_reason, \
             current_action_id, execute_count, executed_actions, variables, tm_create, tm_end, \
             tm_update) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, \
             end_reason = excluded.end_reason, current_action_id = excluded.current_action_id, \
             execute_count = excluded.execute_count, executed_actions = excluded.executed_actions, \
             variables = excluded.variables, tm_end = excluded.tm_end, \
             tm_update = excluded.tm_update WHERE activeflows.account_id = excluded.account_id",
        )
        .bind(a.id.to_string())
        .bind(a.account_id.to_string())
        .bind(a.call_id.to_string())
        .bind(a.flow_id.map(|id| id.to_string()))
        .bind(&a.status)
        .bind(&a.end_reason)
        .bind(&a.current_action_id)
        .bind(i64::from(a.execute_count))
        .bind(a.executed_actions.to_string())
        .bind(a.variables.to_string())
        .bind(&a.tm_create)
        .bind(&a.tm_end)
        .bind(&a.tm_update)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn activeflow(
        &self,
        account: Uuid,
        id: Uuid,
    ) -> Result<Option<ActiveflowRecord>, StoreError> {
        self.one(
            scoped_sql!(one "activeflows"),
            account,
            id,
            activeflow_from_row,
        )
        .await
    }

    async fn list_activeflows(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<ActiveflowRecord>, StoreError> {
        self.page(
            scoped_sql!(page "activeflows"),
            account,
            page,
            activeflow_from_row,
        )
        .await
    }

    async fn close_live_activeflows(&self, reason: &str, now: &str) -> Result<u64, StoreError> {
        self.close_live(
            "UPDATE activeflows SET status = 'ended', end_reason = ?, tm_end = ?, tm_update = ? \
             WHERE status = 'running'",
            reason,
            now,
        )
        .await
    }

    async fn create_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (id, account_id, name, uri, method, secret, event_types, status, \
             consecutive_failures, paused_until, last_error, tm_create, tm_update) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(w.id.to_string())
        .bind(w.account_id.to_string())
        .bind(&w.name)
        .bind(&w.uri)
        .bind(&w.method)
        .bind(&w.secret)
        .bind(to_json(&w.event_types)?)
        .bind(&w.status)
        .bind(i64::from(w.consecutive_failures))
        .bind(&w.paused_until)
        .bind(&w.last_error)
        .bind(&w.tm_create)
        .bind(&w.tm_update)
        .execute(&self.pool)
        .await
        .map_err(|e| unique_violation(e, "webhook"))?;
        Ok(())
    }

    async fn webhook(&self, account: Uuid, id: Uuid) -> Result<Option<WebhookRecord>, StoreError> {
        self.one(scoped_sql!(one "webhooks"), account, id, webhook_from_row)
            .await
    }

    async fn list_webhooks(
        &self,
        account: Uuid,
        page: &Page,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        self.page(
            scoped_sql!(page "webhooks"),
            account,
            page,
            webhook_from_row,
        )
        .await
    }

    async fn webhooks_of_account(&self, account: Uuid) -> Result<Vec<WebhookRecord>, StoreError> {
        sqlx::query("SELECT * FROM webhooks WHERE account_id = ? ORDER BY tm_create, id")
            .bind(account.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(webhook_from_row)
            .collect()
    }

    async fn update_webhook_settings(&self, w: &WebhookRecord) -> Result<bool, StoreError> {
        self.changed(
            sqlx::query(
                "UPDATE webhooks SET name = ?, uri = ?, method = ?, secret = ?, event_types = ?, \
             tm_update = ? WHERE id = ? AND account_id = ?",
            )
            .bind(&w.name)
            .bind(&w.uri)
            .bind(&w.method)
            .bind(&w.secret)
            .bind(to_json(&w.event_types)?)
            .bind(&w.tm_update)
            .bind(w.id.to_string())
            .bind(w.account_id.to_string()),
        )
        .await
    }

    async fn update_webhook_breaker(&self, w: &WebhookRecord) -> Result<bool, StoreError> {
        self.changed(
            sqlx::query(
                "UPDATE webhooks SET status = ?, consecutive_failures = ?, paused_until = ?, \
             last_error = ?, tm_update = ? WHERE id = ? AND account_id = ?",
            )
            .bind(&w.status)
            .bind(i64::from(w.consecutive_failures))
            .bind(&w.paused_until)
            .bind(&w.last_error)
            .bind(&w.tm_update)
            .bind(w.id.to_string())
            .bind(w.account_id.to_string()),
        )
        .await
    }

    async fn delete_webhook(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = sqlx::query(scoped_sql!(delete "webhooks"))
            .bind(id.to_string())
            .bind(account.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = ? AND status = 'pending'")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn enqueue_deliveries(&self, deliveries: &[DeliveryRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for d in deliveries {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, account_id, webhook_id, event_id, event_type, \
                 payload, status, attempts, next_attempt_at, last_status, last_error, attempt_log, \
                 tm_create, tm_update, tm_delivered) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(d.id.to_string())
            .bind(d.account_id.to_string())
            .bind(d.webhook_id.to_string())
            .bind(d.event_id.to_string())
            .bind(&d.event_type)
            .bind(&d.payload)
            .bind(&d.status)
            .bind(i64::from(d.attempts))
            .bind(d.next_attempt_at)
            .bind(d.last_status.map(i64::from))
            .bind(&d.last_error)
            .bind(d.attempt_log.to_string())
            .bind(&d.tm_create)
            .bind(&d.tm_update)
            .bind(&d.tm_delivered)
            .execute(&mut *tx)
            .await
            .map_err(|e| unique_violation(e, "delivery"))?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(())
    }

    async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? \
             ORDER BY next_attempt_at, tm_create, id LIMIT ?",
        )
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)
    }

    async fn update_delivery(&self, d: &DeliveryRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, attempts = ?, next_attempt_at = ?, \
             last_status = ?, last_error = ?, attempt_log = ?, tm_update = ?, tm_delivered = ? \
             WHERE id = ?",
        )
        .bind(&d.status)
        .bind(i64::from(d.attempts))
        .bind(d.next_attempt_at)
        .bind(d.last_status.map(i64::from))
        .bind(&d.last_error)
        .bind(d.attempt_log.to_string())
        .bind(&d.tm_update)
        .bind(&d.tm_delivered)
        .bind(d.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn retry_deliveries_now(&self, webhook: Uuid, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = ? \
             WHERE webhook_id = ? AND status = 'pending' AND next_attempt_at > ?",
        )
        .bind(now_ms)
        .bind(webhook.to_string())
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn retry_delivery(
        &self,
        account: Uuid,
        id: Uuid,
        now_ms: i64,
        tm_update: &str,
    ) -> Result<bool, StoreError> {
        self.changed(sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?, tm_update = ? \
             WHERE id = ? AND account_id = ? AND status = 'failed'",
        )
        .bind(now_ms)
        .bind(tm_update)
        .bind(id.to_string())
        .bind(account.to_string())).await
    }

    async fn delivery(
        &self,
        account: Uuid,
        id: Uuid,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        self.one(
            scoped_sql!(one "webhook_deliveries"),
            account,
            id,
            delivery_from_row,
        )
        .await
    }

    async fn list_deliveries(
        &self,
        account: Uuid,
        webhook: Option<Uuid>,
        page: &Page,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let Some(webhook) = webhook else {
            return self
                .page(
                    scoped_sql!(page "webhook_deliveries"),
                    account,
                    page,
                    delivery_from_row,
                )
                .await;
        };
        let (tm, id) = cursor(page);
        sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE account_id = ? AND webhook_id = ? AND \
             (tm_create < ? OR (tm_create = ? AND id < ?)) ORDER BY tm_create DESC, id DESC LIMIT ?",
        )
        .bind(account.to_string())
        .bind(webhook.to_string())
        .bind(&tm)
        .bind(&tm)
        .bind(&id)
        .bind(i64::from(page.size))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?
        .iter()
        .map(delivery_from_row)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-21T10:00:00.000000Z";

    async fn store() -> SqliteStore {
        SqliteStore::open("sqlite::memory:").await.unwrap()
    }

    async fn account(store: &SqliteStore) -> Account {
        let token = store.bootstrap(Some("tok"), NOW).await.unwrap().unwrap();
        store.account_by_token(&token).await.unwrap().unwrap()
    }

    fn call(account: Uuid, tm: &str) -> CallRecord {
        CallRecord {
            id: Uuid::new_v4(),
            account_id: account,
            flow_id: None,
            direction: "incoming".into(),
            status: "ringing".into(),
            source_type: "tel".into(),
            source_target: "+15550001".into(),
            destination_type: "tel".into(),
            destination_target: "+15550100".into(),
            hangup_reason: String::new(),
            hangup_by: String::new(),
            sip_call_id: "abc@host".into(),
            tm_create: tm.into(),
            tm_ringing: Some(tm.into()),
            tm_progressing: None,
            tm_hangup: None,
            tm_update: tm.into(),
        }
    }

    fn recording(account: Uuid, call: Uuid, tm: &str) -> RecordingRecord {
        let id = Uuid::new_v4();
        RecordingRecord {
            id,
            account_id: account,
            call_id: call,
            status: RecordingRecord::RECORDING.into(),
            format: "wav".into(),
            channels: 2,
            path: format!("/var/lib/voxflow/recordings/{id}.wav"),
            duration_ms: 0,
            end_reason: String::new(),
            tm_start: tm.into(),
            tm_end: None,
            tm_update: tm.into(),
        }
    }

    #[tokio::test]
    async fn store_bootstrap_only_once_and_tokens_are_hashed() {
        let s = store().await;
        assert_eq!(
            s.bootstrap(Some("secret"), NOW).await.unwrap().as_deref(),
            Some("secret")
        );
        assert_eq!(s.bootstrap(Some("other"), NOW).await.unwrap(), None);
        assert!(s.account_by_token("secret").await.unwrap().is_some());
        assert!(s.account_by_token("other").await.unwrap().is_none());
        let stored: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
            .fetch_one(&s.pool)
            .await
            .unwrap();
        assert_eq!(stored, hash_token("secret"));
        assert_ne!(stored, "secret");
    }

    #[tokio::test]
    async fn store_generates_a_token_when_none_given() {
        let s = store().await;
        let token = s.bootstrap(None, NOW).await.unwrap().unwrap();
        assert!(token.len() > 20);
        assert!(s.account_by_token(&token).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn store_numbers_match_with_or_without_plus_and_are_unique() {
        let s = store().await;
        let a = account(&s).await;
        let n = NumberRecord {
            id: Uuid::new_v4(),
            account_id: a.id,
            number: "+15550100".into(),
            call_flow_id: Uuid::new_v4(),
            name: String::new(),
            tm_create: NOW.into(),
            tm_update: NOW.into(),
        };
        s.create_number(&n).await.unwrap();
        assert_eq!(
            s.number_for_inbound("15550100").await.unwrap(),
            Some(n.clone())
        );
        assert_eq!(
            s.number_for_inbound("+15550100").await.unwrap(),
            Some(n.clone())
        );
        assert!(s.number_for_inbound("15550199").await.unwrap().is_none());
        let dup = NumberRecord {
            id: Uuid::new_v4(),
            number: "15550100".into(),
            ..n
        };
        assert!(matches!(
            s.create_number(&dup).await,
            Err(StoreError::Conflict("number"))
        ));
    }

    #[tokio::test]
    async fn store_records_are_scoped_to_their_account() {
        let s = store().await;
        let a = account(&s).await;
        let c = call(a.id, NOW);
        s.insert_call(&c).await.unwrap();
        assert_eq!(s.call(a.id, c.id).await.unwrap(), Some(c.clone()));
        assert_eq!(s.call(Uuid::new_v4(), c.id).await.unwrap(), None);
        assert!(
            s.list_calls(Uuid::new_v4(), &Page::default())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn store_lists_page_newest_first_without_gaps() {
        let s = store().await;
        let a = account(&s).await;
        for i in 0..5 {
            s.insert_call(&call(a.id, &format!("2026-11-21T10:00:0{i}.000000Z")))
                .await
                .unwrap();
        }
        // Two with the same timestamp must not be skipped across a page boundary.
        s.insert_call(&call(a.id, "2026-11-21T10:00:02.000000Z"))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let mut page = Page {
            size: 2,
            after: None,
        };
        loop {
            let got = s.list_calls(a.id, &page).await.unwrap();
            let Some(last) = got.last() else { break };
            page.after = Some((last.tm_create.clone(), last.id.to_string()));
            seen.extend(got);
        }
        assert_eq!(seen.len(), 6);
        assert!(seen.windows(2).all(|w| w[0].tm_create >= w[1].tm_create));
    }

    #[tokio::test]
    async fn store_close_live_calls_marks_restart() {
        let s = store().await;
        let a = account(&s).await;
        let live = call(a.id, NOW);
        let mut ended = call(a.id, NOW);
        ended.status = "hangup".into();
        ended.hangup_reason = "normal".into();
        s.insert_call(&live).await.unwrap();
        s.insert_call(&ended).await.unwrap();
        assert_eq!(s.close_live_calls("restart", NOW).await.unwrap(), 1);
        let got = s.call(a.id, live.id).await.unwrap().unwrap();
        assert_eq!(
            (got.status.as_str(), got.hangup_reason.as_str()),
            ("hangup", "restart")
        );
        let untouched = s.call(a.id, ended.id).await.unwrap().unwrap();
        assert_eq!(untouched.hangup_reason, "normal");
    }

    #[tokio::test]
    async fn store_devices_registrations_and_trunks() {
        let s = store().await;
        let a = account(&s).await;
        let d = DeviceRecord {
            id: Uuid::new_v4(),
            account_id: a.id,
            username: "alice".into(),
            realm: "voxflow".into(),
            ha1_md5: "m".into(),
            ha1_sha256: "s".into(),
            name: "Alice".into(),
            allowed_ips: vec!["127.0.0.1".into()],
            tm_create: NOW.into(),
            tm_update: NOW.into(),
        };
        s.create_device(&d).await.unwrap();
        let dup = DeviceRecord {
            id: Uuid::new_v4(),
            ..d.clone()
        };
        assert!(matches!(
            s.create_device(&dup).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            s.device_by_username("alice").await.unwrap(),
            Some(d.clone())
        );
        assert_eq!(s.device(Uuid::new_v4(), d.id).await.unwrap(), None);

        let reg = |contact: &str, expires_at: i64| RegistrationRecord {
            device_id: d.id,
            contact: contact.into(),
            expires_at,
            call_id: "c".into(),
            cseq: 7,
            q: Some(0.5),
            instance: None,
            source: "udp:127.0.0.1:5062".into(),
            tm_update: NOW.into(),
        };
        s.replace_registrations(d.id, &[reg("sip:a@1", 100), reg("sip:a@2", 200)])
            .await
            .unwrap();
        assert_eq!(s.registrations(d.id).await.unwrap().len(), 2);
        assert_eq!(
            s.live_registrations(150).await.unwrap(),
            vec![reg("sip:a@2", 200)]
        );
        assert_eq!(s.expire_registrations(150).await.unwrap(), 1);
        s.replace_registrations(d.id, &[]).await.unwrap();
        assert!(s.registrations(d.id).await.unwrap().is_empty());

        let t = TrunkRecord {
            id: Uuid::new_v4(),
            account_id: a.id,
            name: "carrier".into(),
            host: "sip.example.net".into(),
            port: Some(5080),
            transport: "udp".into(),
            username: "u".into(),
            password: "p".into(),
            register: true,
            register_expires: 600,
            caller_id: "+15550100".into(),
            allowed_ips: vec!["192.0.2.0/24".into()],
            tm_create: NOW.into(),
            tm_update: NOW.into(),
        };
        s.create_trunk(&t).await.unwrap();
        assert_eq!(s.trunk(a.id, t.id).await.unwrap(), Some(t.clone()));
        assert_eq!(s.all_trunks().await.unwrap(), vec![t.clone()]);
        let changed = TrunkRecord {
            host: "sip2.example.net".into(),
            register: false,
            ..t.clone()
        };
        assert!(s.update_trunk(&changed).await.unwrap());
        assert_eq!(s.trunk(a.id, t.id).await.unwrap(), Some(changed));
        let stranger = TrunkRecord {
            account_id: Uuid::new_v4(),
            ..t.clone()
        };
        assert!(!s.update_trunk(&stranger).await.unwrap());
        assert!(s.delete_trunk(a.id, t.id).await.unwrap());
        assert!(!s.delete_trunk(a.id, t.id).await.unwrap());
        assert!(s.delete_device(a.id, d.id).await.unwrap());
    }

    #[tokio::test]
    async fn store_recordings_round_trip_and_are_scoped() {
        let s = store().await;
        let a = account(&s).await;
        let call = Uuid::new_v4();
        let r = recording(a.id, call, NOW);
        s.create_recording(&r).await.unwrap();
        assert_eq!(s.recording(a.id, r.id).await.unwrap(), Some(r.clone()));
        assert!(matches!(
            s.create_recording(&r).await,
            Err(StoreError::Conflict("recording"))
        ));

        let ended = RecordingRecord {
            status: RecordingRecord::ENDED.into(),
            duration_ms: 61_020,
            end_reason: "silence".into(),
            tm_end: Some("2026-11-21T10:01:01.020000Z".into()),
            tm_update: "2026-11-21T10:01:01.020000Z".into(),
            ..r.clone()
        };
        s.update_recording(&ended).await.unwrap();
        assert_eq!(s.recording(a.id, r.id).await.unwrap(), Some(ended.clone()));
        assert!(!ended.is_recording());

        // Another account sees nothing, and cannot change or delete it.
        let stranger = Uuid::new_v4();
        assert_eq!(s.recording(stranger, r.id).await.unwrap(), None);
        assert!(
            s.list_recordings(stranger, &Page::default())
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            s.recordings_of_call(stranger, call)
                .await
                .unwrap()
                .is_empty()
        );
        let hijack = RecordingRecord {
            account_id: stranger,
            status: RecordingRecord::FAILED.into(),
            ..ended.clone()
        };
        s.update_recording(&hijack).await.unwrap();
        assert_eq!(s.recording(a.id, r.id).await.unwrap(), Some(ended.clone()));
        assert!(!s.delete_recording(stranger, r.id).await.unwrap());

        assert!(s.delete_recording(a.id, r.id).await.unwrap());
        assert!(!s.delete_recording(a.id, r.id).await.unwrap());
        assert_eq!(s.recording(a.id, r.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn store_recordings_page_newest_first_and_group_by_call() {
        let s = store().await;
        let a = account(&s).await;
        let (first_call, second_call) = (Uuid::new_v4(), Uuid::new_v4());
        let mut made = Vec::new();
        for i in 0..5 {
            let call = if i % 2 == 0 { first_call } else { second_call };
            let r = recording(a.id, call, &format!("2026-11-21T10:00:0{i}.000000Z"));
            s.create_recording(&r).await.unwrap();
            made.push(r);
        }
        // Same start as another: must not be skipped across a page boundary.
        let twin = recording(a.id, first_call, "2026-11-21T10:00:02.000000Z");
        s.create_recording(&twin).await.unwrap();
        made.push(twin);

        let mut seen = Vec::new();
        let mut page = Page {
            size: 2,
            after: None,
        };
        loop {
            let got = s.list_recordings(a.id, &page).await.unwrap();
            let Some(last) = got.last() else { break };
            page.after = Some((last.tm_start.clone(), last.id.to_string()));
            seen.extend(got);
        }
        let mut expected = made.clone();
        expected.sort_by(|x, y| (&y.tm_start, y.id).cmp(&(&x.tm_start, x.id)));
        assert_eq!(seen, expected);

        let of_first = s.recordings_of_call(a.id, first_call).await.unwrap();
        let starts: Vec<&str> = of_first.iter().map(|r| r.tm_start.as_str()).collect();
        assert_eq!(
            starts,
            [
                "2026-11-21T10:00:00.000000Z",
                "2026-11-21T10:00:02.000000Z",
                "2026-11-21T10:00:02.000000Z",
                "2026-11-21T10:00:04.000000Z"
            ]
        );
        assert_eq!(
            s.recordings_of_call(a.id, second_call).await.unwrap().len(),
            2
        );
        assert!(
            s.recordings_of_call(a.id, Uuid::new_v4())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn store_close_live_recordings_marks_them_failed() {
        let s = store().await;
        let a = account(&s).await;
        let live = recording(a.id, Uuid::new_v4(), NOW);
        let done = RecordingRecord {
            status: RecordingRecord::ENDED.into(),
            end_reason: "stop".into(),
            duration_ms: 1_000,
            tm_end: Some(NOW.into()),
            ..recording(a.id, Uuid::new_v4(), NOW)
        };
        s.create_recording(&live).await.unwrap();
        s.create_recording(&done).await.unwrap();
        let later = "2026-11-21T11:00:00.000000Z";
        assert_eq!(
            s.close_live_recordings("error: restart", later)
                .await
                .unwrap(),
            1
        );
        let got = s.recording(a.id, live.id).await.unwrap().unwrap();
        assert_eq!(
            got,
            RecordingRecord {
                status: "failed".into(),
                end_reason: "error: restart".into(),
                tm_end: Some(later.into()),
                tm_update: later.into(),
                ..live
            }
        );
        assert_eq!(s.recording(a.id, done.id).await.unwrap(), Some(done));
        assert_eq!(
            s.close_live_recordings("error: restart", later)
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn store_migrates_a_version_3_database_keeping_its_rows() {
        let dir = std::env::temp_dir().join(format!("voxflow-store-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("voxflow.db").display());

        // A database as the previous release left it: migrations 1 to 3, with data.
        let old = SqliteStore::connect(&url).await.unwrap();
        old.migrate(&MIGRATIONS[..3]).await.unwrap();
        // The account and token as the old schema kept them.
        let account_id = Uuid::new_v4();
        sqlx::query("INSERT INTO accounts (id, name, tm_create) VALUES (?, 'default', ?)")
            .bind(account_id.to_string())
            .bind(NOW)
            .execute(&old.pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO api_tokens (token_hash, account_id, tm_create) VALUES (?, ?, ?)")
            .bind(hash_token("old-token"))
            .bind(account_id.to_string())
            .bind(NOW)
            .execute(&old.pool)
            .await
            .unwrap();
        let c = call(account_id, NOW);
        old.insert_call(&c).await.unwrap();
        assert!(
            sqlx::query("SELECT * FROM recordings")
                .fetch_all(&old.pool)
                .await
                .is_err()
        );
        old.pool.close().await;

        let s = SqliteStore::open(&url).await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&s.pool)
                .await
                .unwrap();
        assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7]);
        // The old token still works, as the administrator's, and the account got its new
        // columns.
        let (a, token) = s.authenticate("old-token").await.unwrap().unwrap();
        assert_eq!(a.id, account_id);
        assert!(token.admin);
        assert_eq!(token.name, "bootstrap");
        assert_eq!(a.tm_update, NOW);
        assert_eq!(a.limits, AccountLimits::default());
        assert_eq!(s.call(a.id, c.id).await.unwrap(), Some(c.clone()));
        let r = recording(a.id, c.id, NOW);
        s.create_recording(&r).await.unwrap();
        assert_eq!(s.recordings_of_call(a.id, c.id).await.unwrap(), vec![r]);
        s.pool.close().await;

        // Opening again applies nothing twice.
        let again = SqliteStore::open(&url).await.unwrap();
        assert_eq!(
            again
                .list_recordings(a.id, &Page::default())
                .await
                .unwrap()
                .len(),
            1
        );
        again.pool.close().await;
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn store_activeflows_upsert_read_scope_and_close() {
        let store = store().await;
        let acct = account(&store).await;
        let mut a = ActiveflowRecord {
            id: Uuid::new_v4(),
            account_id: acct.id,
            call_id: Uuid::new_v4(),
            flow_id: Some(Uuid::new_v4()),
            status: ActiveflowRecord::RUNNING.into(),
            end_reason: String::new(),
            current_action_id: "a1".into(),
            execute_count: 1,
            executed_actions: serde_json::json!([{"id": "a1", "type": "answer"}]),
            variables: serde_json::json!({"voipbin.call.digits": ""}),
            tm_create: NOW.into(),
            tm_end: None,
            tm_update: NOW.into(),
        };
        store.save_activeflow(&a).await.unwrap();
        assert_eq!(
            store.activeflow(acct.id, a.id).await.unwrap(),
            Some(a.clone())
        );
        a.execute_count = 3;
        a.current_action_id = "a3".into();
        a.variables = serde_json::json!({"x": "1"});
        store.save_activeflow(&a).await.unwrap();
        assert_eq!(
            store.activeflow(acct.id, a.id).await.unwrap(),
            Some(a.clone())
        );
        // Another account neither reads nor overwrites it.
        assert_eq!(store.activeflow(Uuid::new_v4(), a.id).await.unwrap(), None);
        let mut foreign = a.clone();
        foreign.account_id = Uuid::new_v4();
        foreign.status = "ended".into();
        store.save_activeflow(&foreign).await.unwrap();
        assert_eq!(
            store.activeflow(acct.id, a.id).await.unwrap(),
            Some(a.clone())
        );
        let page = Page {
            size: 10,
            after: None,
        };
        assert_eq!(
            store.list_activeflows(acct.id, &page).await.unwrap(),
            vec![a.clone()]
        );
        assert_eq!(
            store.close_live_activeflows("restart", NOW).await.unwrap(),
            1
        );
        let closed = store.activeflow(acct.id, a.id).await.unwrap().unwrap();
        assert_eq!(
            (closed.status.as_str(), closed.end_reason.as_str()),
            ("ended", "restart")
        );
        assert_eq!(closed.tm_end.as_deref(), Some(NOW));
    }
}
