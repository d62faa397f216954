//! The PostgreSQL backend, for deployments that run several nodes on one database. Same
//! semantics as the SQLite backend (the conformance tests run against both); its own migrations.
//!
//! Ids and timestamps are kept as text with the "C" collation, so that every ordering (and so
//! keyset pagination) compares bytes exactly as SQLite does. JSON columns are text too.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, Postgres, Row};
use uuid::Uuid;

use crate::{
    Account, AccountLimits, ActiveflowRecord, CallRecord, DeliveryRecord, DeviceRecord, FlowRecord,
    NumberRecord, Page, RecordingRecord, RegistrationRecord, Store, StoreError, TokenRecord,
    TrunkRecord, WebhookRecord, hash_token, normalize_number, token_prefix,
};

/// Migrations in order; all pending ones run in one transaction and are recorded in
/// `schema_migrations`.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/postgres/0001_init.sql"))];

/// The advisory lock key that serialises migrations of nodes starting together ("voxflow" + 1).
const MIGRATION_LOCK: i64 = 0x766f_7866_6c6f_7701;

/// Connections per node.
const POOL_SIZE: u32 = 8;

/// How long a statement waits for a free connection (or a new one) before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// [`Store`] on a PostgreSQL database (`postgres://user:password@host:port/database`).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://` or `postgresql://`) and apply pending
    /// migrations. Nodes opening the same database at once take turns (an advisory lock), so
    /// each migration runs exactly once.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse().map_err(backend)?;
        // One connection made directly first: a wrong address or password fails at once, with
        // its reason (the pool would retry until its timeout and report only that).
        PgConnection::connect_with(&options)
            .await
            .map_err(backend)?
            .close()
            .await
            .map_err(backend)?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(backend)?;
        let store = PostgresStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Apply the migrations not yet recorded in `schema_migrations`, all in one transaction
    /// holding the migration lock (released when it ends, even if this node dies).
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, \
             tm_apply TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        let done: HashSet<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?
            .into_iter()
            .collect();
        for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| !done.contains(v)) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Backend(format!("migration {version}: {e}")))?;
            sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            tracing::info!(version, "applied postgres migration");
        }
        tx.commit().await.map_err(backend)
    }
}

/// The statements of an account-scoped table, from its name at compile time (sqlx takes
/// `&'static str` SQL, which keeps these free of injected text). Pages bind `$1` account, `$2`
/// and `$3` the cursor, `$4` the size, and `$5` the optional filter value.
macro_rules! scoped_sql {
    (one $table:literal) => {
        concat!("SELECT * FROM ", $table, " WHERE id = $1 AND account_id = $2")
    };
    (page $table:literal) => {
        scoped_sql!(page $table by "tm_create" where "TRUE")
    };
    (page $table:literal by $time:literal) => {
        scoped_sql!(page $table by $time where "TRUE")
    };
    (page $table:literal where $filter:literal) => {
        scoped_sql!(page $table by "tm_create" where $filter)
    };
    (page $table:literal by $time:literal where $filter:literal) => {
        concat!(
            "SELECT * FROM ", $table, " WHERE account_id = $1 AND ", $filter, " AND (",
            $time, ", id) < ($2, $3) ORDER BY ", $time, " DESC, id DESC LIMIT $4"
        )
    };
    (delete $table:literal) => {
        concat!("DELETE FROM ", $table, " WHERE id = $1 AND account_id = $2")
    };
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;
type ReadRow<T> = fn(&PgRow) -> Result<T, StoreError>;

impl PostgresStore {
    /// One record of `account` by id (`scoped_sql!(one ..)`).
    async fn one<T>(
        &self,
        sql: &'static str,
        account: Uuid,
        id: Uuid,
        read: ReadRow<T>,
    ) -> Result<Option<T>, StoreError> {
        let q = sqlx::query(sql)
            .bind(id.to_string())
            .bind(account.to_string());
        self.fetch_optional(q, read).await
    }

    /// A page of `account`'s records, newest first (`scoped_sql!(page ..)`), with `filter` bound
    /// as `$5` when the statement has one.
    async fn page<T>(
        &self,
        sql: &'static str,
        account: Uuid,
        page: &Page,
        filter: Option<String>,
        read: ReadRow<T>,
    ) -> Result<Vec<T>, StoreError> {
        let (tm, id) = cursor(page);
        let mut q = sqlx::query(sql)
            .bind(account.to_string())
            .bind(tm)
            .bind(id)
            .bind(i64::from(page.size));
        if let Some(filter) = filter {
            q = q.bind(filter);
        }
        self.fetch_all(q, read).await
    }

    /// Delete one record of `account` (`scoped_sql!(delete ..)`); false when there was none.
    async fn delete(&self, sql: &'static str, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        let q = sqlx::query(sql)
            .bind(id.to_string())
            .bind(account.to_string());
        self.changed(q).await
    }

    /// End the rows a crash left live: `sql` sets the end reason (`$1`) and the end and update
    /// times (`$2`) where the status says live. Returns how many.
    async fn close_live(
        &self,
        sql: &'static str,
        reason: &str,
        now: &str,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(reason)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    /// Run an INSERT; [`StoreError::Conflict`] naming `what` on a uniqueness violation.
    async fn insert(&self, q: PgQuery<'_>, what: &'static str) -> Result<(), StoreError> {
        q.execute(&self.pool)
            .await
            .map_err(|e| unique_violation(e, what))?;
        Ok(())
    }

    /// Run an UPDATE or DELETE; true when it touched a row.
    async fn changed(&self, q: PgQuery<'_>) -> Result<bool, StoreError> {
        let done = q.execute(&self.pool).await.map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn fetch_optional<T>(
        &self,
        q: PgQuery<'_>,
        read: ReadRow<T>,
    ) -> Result<Option<T>, StoreError> {
        q.fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .as_ref()
            .map(read)
            .transpose()
    }

    async fn fetch_all<T>(&self, q: PgQuery<'_>, read: ReadRow<T>) -> Result<Vec<T>, StoreError> {
        q.fetch_all(&self.pool)
            .await
            .map_err(backend)?
            .iter()
            .map(read)
            .collect()
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

fn corrupt(col: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{col}: {err}"))
}

fn to_json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A number for a BIGINT column.
fn big(value: u64, col: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Backend(format!("{col} out of range")))
}

/// `(tm_create, id)` of the last record seen, or a sentinel that sorts after everything.
fn cursor(page: &Page) -> (String, String) {
    page.after
        .clone()
        .unwrap_or_else(|| ("\u{10FFFF}".to_owned(), String::new()))
}

/// Typed reads of one row's columns, mapping failures to [`StoreError`].
struct Cols<'r>(&'r PgRow);

impl Cols<'_> {
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.0.try_get(col).map_err(backend)
    }

    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.0.try_get(col).map_err(backend)
    }

    fn uuid(&self, col: &str) -> Result<Uuid, StoreError> {
        Uuid::parse_str(&self.text(col)?).map_err(|e| corrupt(col, e))
    }

    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>, StoreError> {
        self.opt_text(col)?
            .map(|t| Uuid::parse_str(&t).map_err(|e| corrupt(col, e)))
            .transpose()
    }

    fn bool(&self, col: &str) -> Result<bool, StoreError> {
        self.0.try_get(col).map_err(backend)
    }

    /// A BIGINT column as the integer type of the record.
    fn int<T>(&self, col: &str) -> Result<T, StoreError>
    where
        T: TryFrom<i64>,
        T::Error: std::fmt::Display,
    {
        let value: i64 = self.0.try_get(col).map_err(backend)?;
        T::try_from(value).map_err(|e| corrupt(col, e))
    }

    fn opt_int<T>(&self, col: &str) -> Result<Option<T>, StoreError>
    where
        T: TryFrom<i64>,
        T::Error: std::fmt::Display,
    {
        let value: Option<i64> = self.0.try_get(col).map_err(backend)?;
        value
            .map(|v| T::try_from(v).map_err(|e| corrupt(col, e)))
            .transpose()
    }

    fn json<T: serde::de::DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        serde_json::from_str(&self.text(col)?).map_err(|e| corrupt(col, e))
    }
}

fn account_from_row(row: &PgRow) -> Result<Account, StoreError> {
    let r = Cols(row);
    Ok(Account {
        id: r.uuid("id")?,
        name: r.text("name")?,
        limits: AccountLimits {
            max_concurrent_calls: r.opt_int("max_concurrent_calls")?,
            max_calls_per_second: r.opt_int("max_calls_per_second")?,
            destination_prefixes: r.json("destination_prefixes")?,
        },
        tm_create: r.text("tm_create")?,
        tm_update: r.text("tm_update")?,
    })
}

fn token_from_row(row: &PgRow) -> Result<TokenRecord, StoreError> {
    let r = Cols(row);
    Ok(TokenRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        name: r.text("name")?,
        token_hash: r.text("token_hash")?,
        prefix: r.text("prefix")?,
        admin: r.bool("admin")?,
        tm_create: r.text("tm_create")?,
    })
}

fn flow_from_row(row: &PgRow) -> Result<FlowRecord, StoreError> {
    let r = Cols(row);
    Ok(FlowRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        name: r.text("name")?,
        detail: r.text("detail")?,
        actions: r.json("actions")?,
        on_complete_flow_id: r.opt_uuid("on_complete_flow_id")?,
        tm_create: r.text("tm_create")?,
        tm_update: r.text("tm_update")?,
    })
}

fn number_from_row(row: &PgRow) -> Result<NumberRecord, StoreError> {
    let r = Cols(row);
    Ok(NumberRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        number: r.text("display_number")?,
        call_flow_id: r.uuid("call_flow_id")?,
        name: r.text("name")?,
        tm_create: r.text("tm_create")?,
        tm_update: r.text("tm_update")?,
    })
}

fn call_from_row(row: &PgRow) -> Result<CallRecord, StoreError> {
    let r = Cols(row);
    Ok(CallRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        flow_id: r.opt_uuid("flow_id")?,
        direction: r.text("direction")?,
        status: r.text("status")?,
        source_type: r.text("source_type")?,
        source_target: r.text("source_target")?,
        destination_type: r.text("destination_type")?,
        destination_target: r.text("destination_target")?,
        hangup_reason: r.text("hangup_reason")?,
        hangup_by: r.text("hangup_by")?,
        sip_call_id: r.text("sip_call_id")?,
        tm_create: r.text("tm_create")?,
        tm_ringing: r.opt_text("tm_ringing")?,
        tm_progressing: r.opt_text("tm_progressing")?,
        tm_hangup: r.opt_text("tm_hangup")?,
        tm_update: r.text("tm_update")?,
    })
}

fn device_from_row(row: &PgRow) -> Result<DeviceRecord, StoreError> {
    let r = Cols(row);
    Ok(DeviceRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        username: r.text("username")?,
        realm: r.text("realm")?,
        ha1_md5: r.text("ha1_md5")?,
        ha1_sha256: r.text("ha1_sha256")?,
        name: r.text("name")?,
        allowed_ips: r.json("allowed_ips")?,
        tm_create: r.text("tm_create")?,
        tm_update: r.text("tm_update")?,
    })
}

fn registration_from_row(row: &PgRow) -> Result<RegistrationRecord, StoreError> {
    let r = Cols(row);
    let q: Option<f64> = row.try_get("q").map_err(backend)?;
    Ok(RegistrationRecord {
        device_id: r.uuid("device_id")?,
        contact: r.text("contact")?,
        expires_at: r.int("expires_at")?,
        call_id: r.text("call_id")?,
        cseq: r.int("cseq")?,
        q: q.map(|q| q as f32),
        instance: r.opt_text("instance")?,
        source: r.text("source")?,
        tm_update: r.text("tm_update")?,
    })
}

fn trunk_from_row(row: &PgRow) -> Result<TrunkRecord, StoreError> {
    let r = Cols(row);
    Ok(TrunkRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        name: r.text("name")?,
        host: r.text("host")?,
        port: r.opt_int("port")?,
        transport: r.text("transport")?,
        username: r.text("username")?,
        password: r.text("password")?,
        register: r.bool("register")?,
        register_expires: r.int("register_expires")?,
        caller_id: r.text("caller_id")?,
        allowed_ips: r.json("allowed_ips")?,
        tm_create: r.text("tm_create")?,
        tm_update: r.text("tm_update")?,
    })
}

fn recording_from_row(row: &PgRow) -> Result<RecordingRecord, StoreError> {
    let r = Cols(row);
    Ok(RecordingRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        call_id: r.uuid("call_id")?,
        status: r.text("status")?,
        format: r.text("format")?,
        channels: r.int("channels")?,
        path: r.text("path")?,
        duration_ms: r.int("duration_ms")?,
        end_reason: r.text("end_reason")?,
        tm_start: r.text("tm_start")?,
        tm_end: r.opt_text("tm_end")?,
        tm_update: r.text("tm_update")?,
    })
}

fn activeflow_from_row(row: &PgRow) -> Result<ActiveflowRecord, StoreError> {
    let r = Cols(row);
    Ok(ActiveflowRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        call_id: r.uuid("call_id")?,
        flow_id: r.opt_uuid("flow_id")?,
        status: r.text("status")?,
        end_reason: r.text("end_reason")?,
        current_action_id: r.text("current_action_id")?,
        execute_count: r.int("execute_count")?,
        executed_actions: r.json("executed_actions")?,
        variables: r.json("variables")?,
        tm_create: r.text("tm_create")?,
        tm_end: r.opt_text("tm_end")?,
        tm_update: r.text("tm_update")?,
    })
}

fn webhook_from_row(row: &PgRow) -> Result<WebhookRecord, StoreError> {
    let r = Cols(row);
    Ok(WebhookRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        name: r.text("name")?,
        uri: r.text("uri")?,
        method: r.text("method")?,
        secret: r.text("secret")?,
        event_types: r.json("event_types")?,
        status: r.text("status")?,
        consecutive_failures: r.int("consecutive_failures")?,
        paused_until: r.opt_text("paused_until")?,
        last_error: r.text("last_error")?,
        tm_create: r.text("tm_create")?,
        tm_update: r.text("tm_update")?,
    })
}

fn delivery_from_row(row: &PgRow) -> Result<DeliveryRecord, StoreError> {
    let r = Cols(row);
    Ok(DeliveryRecord {
        id: r.uuid("id")?,
        account_id: r.uuid("account_id")?,
        webhook_id: r.uuid("webhook_id")?,
        event_id: r.uuid("event_id")?,
        event_type: r.text("event_type")?,
        payload: r.text("payload")?,
        status: r.text("status")?,
        attempts: r.int("attempts")?,
        next_attempt_at: r.int("next_attempt_at")?,
        last_status: r.opt_int("last_status")?,
        last_error: r.text("last_error")?,
        attempt_log: r.json("attempt_log")?,
        tm_create: r.text("tm_create")?,
        tm_update: r.text("tm_update")?,
        tm_delivered: r.opt_text("tm_delivered")?,
    })
}

// Each record is bound in one column order, shared by its INSERT (`$1..$n` in that order) and its
// UPDATE (`SET (..) = ($k, ..)` naming the positions it changes; `$1` is always the id and `$2`
// the account where there is one).

const ACCOUNT_INSERT: &str = "INSERT INTO accounts (id, name, max_concurrent_calls, \
     max_calls_per_second, destination_prefixes, tm_create, tm_update) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const ACCOUNT_UPDATE: &str = "UPDATE accounts SET (name, max_concurrent_calls, \
     max_calls_per_second, destination_prefixes, tm_update) = ($2, $3, $4, $5, $7) WHERE id = $1";

fn bind_account<'q>(sql: &'static str, a: &'q Account) -> Result<PgQuery<'q>, StoreError> {
    Ok(sqlx::query(sql)
        .bind(a.id.to_string())
        .bind(&a.name)
        .bind(a.limits.max_concurrent_calls.map(i64::from))
        .bind(a.limits.max_calls_per_second.map(i64::from))
        .bind(to_json(&a.limits.destination_prefixes)?)
        .bind(&a.tm_create)
        .bind(&a.tm_update))
}

const TOKEN_INSERT: &str = "INSERT INTO api_tokens (id, account_id, token_hash, name, prefix, \
     admin, tm_create) VALUES ($1, $2, $3, $4, $5, $6, $7)";

fn bind_token(t: &TokenRecord) -> PgQuery<'_> {
    sqlx::query(TOKEN_INSERT)
        .bind(t.id.to_string())
        .bind(t.account_id.to_string())
        .bind(&t.token_hash)
        .bind(&t.name)
        .bind(&t.prefix)
        .bind(t.admin)
        .bind(&t.tm_create)
}

const FLOW_INSERT: &str = "INSERT INTO flows (id, account_id, name, detail, actions, \
     on_complete_flow_id, tm_create, tm_update) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const FLOW_UPDATE: &str = "UPDATE flows SET (name, detail, actions, on_complete_flow_id, \
     tm_update) = ($3, $4, $5, $6, $8) WHERE id = $1 AND account_id = $2";

fn bind_flow<'q>(sql: &'static str, f: &'q FlowRecord) -> PgQuery<'q> {
    sqlx::query(sql)
        .bind(f.id.to_string())
        .bind(f.account_id.to_string())
        .bind(&f.name)
        .bind(&f.detail)
        .bind(f.actions.to_string())
        .bind(f.on_complete_flow_id.map(|id| id.to_string()))
        .bind(&f.tm_create)
        .bind(&f.tm_update)
}

const NUMBER_INSERT: &str = "INSERT INTO numbers (id, account_id, number, display_number, \
     call_flow_id, name, tm_create, tm_update) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const NUMBER_UPDATE: &str = "UPDATE numbers SET (number, display_number, call_flow_id, name, \
     tm_update) = ($3, $4, $5, $6, $8) WHERE id = $1 AND account_id = $2";

fn bind_number<'q>(sql: &'static str, n: &'q NumberRecord) -> PgQuery<'q> {
    sqlx::query(sql)
        .bind(n.id.to_string())
        .bind(n.account_id.to_string())
        .bind(normalize_number(&n.number))
        .bind(&n.number)
        .bind(n.call_flow_id.to_string())
        .bind(&n.name)
        .bind(&n.tm_create)
        .bind(&n.tm_update)
}

const CALL_INSERT: &str = "INSERT INTO calls (id, account_id, flow_id, direction, status, \
     source_type, source_target, destination_type, destination_target, hangup_reason, hangup_by, \
     sip_call_id, tm_create, tm_ringing, tm_progressing, tm_hangup, tm_update) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";
const CALL_UPDATE: &str = "UPDATE calls SET (flow_id, status, hangup_reason, hangup_by, \
     tm_ringing, tm_progressing, tm_hangup, tm_update) = ($3, $5, $10, $11, $14, $15, $16, $17) \
     WHERE id = $1";

fn bind_call<'q>(sql: &'static str, c: &'q CallRecord) -> PgQuery<'q> {
    sqlx::query(sql)
        .bind(c.id.to_string())
        .bind(c.account_id.to_string())
        .bind(c.flow_id.map(|f| f.to_string()))
        .bind(&c.direction)
        .bind(&c.status)
        .bind(&c.source_type)
        .bind(&c.source_target)
        .bind(&c.destination_type)
        .bind(&c.destination_target)
        .bind(&c.hangup_reason)
        .bind(&c.hangup_by)
        .bind(&c.sip_call_id)
        .bind(&c.tm_create)
        .bind(&c.tm_ringing)
        .bind(&c.tm_progressing)
        .bind(&c.tm_hangup)
        .bind(&c.tm_update)
}

const DEVICE_INSERT: &str = "INSERT INTO devices (id, account_id, username, realm, ha1_md5, \
     ha1_sha256, name, allowed_ips, tm_create, tm_update) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

fn bind_device(d: &DeviceRecord) -> Result<PgQuery<'_>, StoreError> {
    Ok(sqlx::query(DEVICE_INSERT)
        .bind(d.id.to_string())
        .bind(d.account_id.to_string())
        .bind(&d.username)
        .bind(&d.realm)
        .bind(&d.ha1_md5)
        .bind(&d.ha1_sha256)
        .bind(&d.name)
        .bind(to_json(&d.allowed_ips)?)
        .bind(&d.tm_create)
        .bind(&d.tm_update))
}

const REGISTRATION_INSERT: &str = "INSERT INTO registrations (device_id, contact, expires_at, \
     call_id, cseq, q, instance, source, tm_update) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

fn bind_registration(device: Uuid, r: &RegistrationRecord) -> PgQuery<'_> {
    sqlx::query(REGISTRATION_INSERT)
        .bind(device.to_string())
        .bind(&r.contact)
        .bind(r.expires_at)
        .bind(&r.call_id)
        .bind(i64::from(r.cseq))
        .bind(r.q.map(f64::from))
        .bind(&r.instance)
        .bind(&r.source)
        .bind(&r.tm_update)
}

const TRUNK_INSERT: &str = "INSERT INTO trunks (id, account_id, name, host, port, transport, \
     username, password, register, register_expires, caller_id, allowed_ips, tm_create, \
     tm_update) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
const TRUNK_UPDATE: &str = "UPDATE trunks SET (name, host, port, transport, username, password, \
     register, register_expires, caller_id, allowed_ips, tm_update) \
     = ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $14) WHERE id = $1 AND account_id = $2";

fn bind_trunk<'q>(sql: &'static str, t: &'q TrunkRecord) -> Result<PgQuery<'q>, StoreError> {
    Ok(sqlx::query(sql)
        .bind(t.id.to_string())
        .bind(t.account_id.to_string())
        .bind(&t.name)
        .bind(&t.host)
        .bind(t.port.map(i64::from))
        .bind(&t.transport)
        .bind(&t.username)
        .bind(&t.password)
        .bind(t.register)
        .bind(i64::from(t.register_expires))
        .bind(&t.caller_id)
        .bind(to_json(&t.allowed_ips)?)
        .bind(&t.tm_create)
        .bind(&t.tm_update))
}

const RECORDING_INSERT: &str = "INSERT INTO recordings (id, account_id, call_id, status, \
     format, channels, path, duration_ms, end_reason, tm_start, tm_end, tm_update) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";
const RECORDING_UPDATE: &str = "UPDATE recordings SET (status, format, channels, path, \
     duration_ms, end_reason, tm_end, tm_update) = ($4, $5, $6, $7, $8, $9, $11, $12) \
     WHERE id = $1 AND account_id = $2";

fn bind_recording<'q>(
    sql: &'static str,
    r: &'q RecordingRecord,
) -> Result<PgQuery<'q>, StoreError> {
    Ok(sqlx::query(sql)
        .bind(r.id.to_string())
        .bind(r.account_id.to_string())
        .bind(r.call_id.to_string())
        .bind(&r.status)
        .bind(&r.format)
        .bind(i64::from(r.channels))
        .bind(&r.path)
        .bind(big(r.duration_ms, "duration_ms")?)
        .bind(&r.end_reason)
        .bind(&r.tm_start)
        .bind(&r.tm_end)
        .bind(&r.tm_update))
}

/// Insert an activeflow, or overwrite its run state when it exists in the same account (a row
/// of another account is left alone).
const ACTIVEFLOW_SAVE: &str = "INSERT INTO activeflows (id, account_id, call_id, flow_id, status, \
     end_reason, current_action_id, execute_count, executed_actions, variables, tm_create, \
     tm_end, tm_update) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (id) DO UPDATE SET (status, end_reason, current_action_id, execute_count, \
     executed_actions, variables, tm_end, tm_update) = (excluded.status, excluded.end_reason, \
     excluded.current_action_id, excluded.execute_count, excluded.executed_actions, \
     excluded.variables, excluded.tm_end, excluded.tm_update) \
     WHERE activeflows.account_id = excluded.account_id";

fn bind_activeflow(a: &ActiveflowRecord) -> PgQuery<'_> {
    sqlx::query(ACTIVEFLOW_SAVE)
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
}

const WEBHOOK_INSERT: &str = "INSERT INTO webhooks (id, account_id, name, uri, method, secret, \
     event_types, status, consecutive_failures, paused_until, last_error, tm_create, tm_update) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
const WEBHOOK_SETTINGS_UPDATE: &str = "UPDATE webhooks SET (name, uri, method, secret, \
     event_types, tm_update) = ($3, $4, $5, $6, $7, $13) WHERE id = $1 AND account_id = $2";
const WEBHOOK_BREAKER_UPDATE: &str = "UPDATE webhooks SET (status, consecutive_failures, \
     paused_until, last_error, tm_update) = ($8, $9, $10, $11, $13) \
     WHERE id = $1 AND account_id = $2";

fn bind_webhook<'q>(sql: &'static str, w: &'q WebhookRecord) -> Result<PgQuery<'q>, StoreError> {
    Ok(sqlx::query(sql)
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
        .bind(&w.tm_update))
}

const DELIVERY_INSERT: &str = "INSERT INTO webhook_deliveries (id, account_id, webhook_id, \
     event_id, event_type, payload, status, attempts, next_attempt_at, last_status, last_error, \
     attempt_log, tm_create, tm_update, tm_delivered) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";
const DELIVERY_UPDATE: &str = "UPDATE webhook_deliveries SET (status, attempts, next_attempt_at, \
     last_status, last_error, attempt_log, tm_update, tm_delivered) \
     = ($7, $8, $9, $10, $11, $12, $14, $15) WHERE id = $1";

fn bind_delivery<'q>(sql: &'static str, d: &'q DeliveryRecord) -> PgQuery<'q> {
    sqlx::query(sql)
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
}

#[async_trait]
impl Store for PostgresStore {
    async fn bootstrap(
        &self,
        token: Option<&str>,
        now: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Nodes bootstrapping at once take turns, so only the first finds no account.
        sqlx::query("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
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
        let account = Account {
            id: Uuid::new_v4(),
            name: "default".to_owned(),
            limits: AccountLimits::default(),
            tm_create: now.to_owned(),
            tm_update: now.to_owned(),
        };
        let admin = TokenRecord {
            id: Uuid::new_v4(),
            account_id: account.id,
            name: "bootstrap".to_owned(),
            token_hash: hash_token(&token),
            prefix: token_prefix(&token),
            admin: true,
            tm_create: now.to_owned(),
        };
        bind_account(ACCOUNT_INSERT, &account)?
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        bind_token(&admin)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(Some(token))
    }

    async fn first_account(&self) -> Result<Option<Account>, StoreError> {
        let q = sqlx::query("SELECT * FROM accounts ORDER BY tm_create, id LIMIT 1");
        self.fetch_optional(q, account_from_row).await
    }

    async fn authenticate(
        &self,
        token: &str,
    ) -> Result<Option<(Account, TokenRecord)>, StoreError> {
        let q =
            sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1").bind(hash_token(token));
        let Some(token) = self.fetch_optional(q, token_from_row).await? else {
            return Ok(None);
        };
        Ok(self
            .account(token.account_id)
            .await?
            .map(|account| (account, token)))
    }

    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        self.insert(bind_account(ACCOUNT_INSERT, account)?, "account")
            .await
    }

    async fn account(&self, id: Uuid) -> Result<Option<Account>, StoreError> {
        let q = sqlx::query("SELECT * FROM accounts WHERE id = $1").bind(id.to_string());
        self.fetch_optional(q, account_from_row).await
    }

    async fn list_accounts(&self, page: &Page) -> Result<Vec<Account>, StoreError> {
        let (tm, id) = cursor(page);
        let q = sqlx::query(
            "SELECT * FROM accounts WHERE (tm_create, id) < ($1, $2) \
             ORDER BY tm_create DESC, id DESC LIMIT $3",
        )
        .bind(tm)
        .bind(id)
        .bind(i64::from(page.size));
        self.fetch_all(q, account_from_row).await
    }

    async fn update_account(&self, account: &Account) -> Result<bool, StoreError> {
        self.changed(bind_account(ACCOUNT_UPDATE, account)?).await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.insert(bind_token(token), "token").await
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
            None,
            token_from_row,
        )
        .await
    }

    async fn delete_token(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "api_tokens"), account, id)
            .await
    }

    async fn create_flow(&self, flow: &FlowRecord) -> Result<(), StoreError> {
        self.insert(bind_flow(FLOW_INSERT, flow), "flow").await
    }

    async fn flow(&self, account: Uuid, id: Uuid) -> Result<Option<FlowRecord>, StoreError> {
        self.one(scoped_sql!(one "flows"), account, id, flow_from_row)
            .await
    }

    async fn list_flows(&self, account: Uuid, page: &Page) -> Result<Vec<FlowRecord>, StoreError> {
        self.page(
            scoped_sql!(page "flows"),
            account,
            page,
            None,
            flow_from_row,
        )
        .await
    }

    async fn update_flow(&self, flow: &FlowRecord) -> Result<bool, StoreError> {
        self.changed(bind_flow(FLOW_UPDATE, flow)).await
    }

    async fn delete_flow(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "flows"), account, id).await
    }

    async fn create_number(&self, number: &NumberRecord) -> Result<(), StoreError> {
        self.insert(bind_number(NUMBER_INSERT, number), "number")
            .await
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
        self.page(
            scoped_sql!(page "numbers"),
            account,
            page,
            None,
            number_from_row,
        )
        .await
    }

    async fn update_number(&self, number: &NumberRecord) -> Result<bool, StoreError> {
        let done = bind_number(NUMBER_UPDATE, number)
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
        let q =
            sqlx::query("SELECT * FROM numbers WHERE number = $1").bind(normalize_number(digits));
        self.fetch_optional(q, number_from_row).await
    }

    async fn insert_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        self.insert(bind_call(CALL_INSERT, call), "call").await
    }

    async fn update_call(&self, call: &CallRecord) -> Result<(), StoreError> {
        self.changed(bind_call(CALL_UPDATE, call)).await.map(drop)
    }

    async fn call(&self, account: Uuid, id: Uuid) -> Result<Option<CallRecord>, StoreError> {
        self.one(scoped_sql!(one "calls"), account, id, call_from_row)
            .await
    }

    async fn list_calls(&self, account: Uuid, page: &Page) -> Result<Vec<CallRecord>, StoreError> {
        self.page(
            scoped_sql!(page "calls"),
            account,
            page,
            None,
            call_from_row,
        )
        .await
    }

    async fn create_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        self.insert(bind_device(device)?, "device username").await
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
        self.page(
            scoped_sql!(page "devices"),
            account,
            page,
            None,
            device_from_row,
        )
        .await
    }

    async fn device_by_username(&self, username: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM devices WHERE username = $1").bind(username);
        self.fetch_optional(q, device_from_row).await
    }

    async fn delete_device(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "devices"), account, id)
            .await
    }

    async fn registrations(&self, device: Uuid) -> Result<Vec<RegistrationRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM registrations WHERE device_id = $1 ORDER BY contact")
            .bind(device.to_string());
        self.fetch_all(q, registration_from_row).await
    }

    async fn replace_registrations(
        &self,
        device: Uuid,
        current: &[RegistrationRecord],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("DELETE FROM registrations WHERE device_id = $1")
            .bind(device.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        for r in current {
            bind_registration(device, r)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn live_registrations(
        &self,
        now_unix: i64,
    ) -> Result<Vec<RegistrationRecord>, StoreError> {
        let q = sqlx::query(
            "SELECT * FROM registrations WHERE expires_at > $1 ORDER BY device_id, contact",
        )
        .bind(now_unix);
        self.fetch_all(q, registration_from_row).await
    }

    async fn expire_registrations(&self, now_unix: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM registrations WHERE expires_at <= $1")
            .bind(now_unix)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn create_trunk(&self, trunk: &TrunkRecord) -> Result<(), StoreError> {
        self.insert(bind_trunk(TRUNK_INSERT, trunk)?, "trunk").await
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
        self.page(
            scoped_sql!(page "trunks"),
            account,
            page,
            None,
            trunk_from_row,
        )
        .await
    }

    async fn update_trunk(&self, trunk: &TrunkRecord) -> Result<bool, StoreError> {
        self.changed(bind_trunk(TRUNK_UPDATE, trunk)?).await
    }

    async fn all_trunks(&self) -> Result<Vec<TrunkRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM trunks ORDER BY tm_create, id");
        self.fetch_all(q, trunk_from_row).await
    }

    async fn delete_trunk(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "trunks"), account, id).await
    }

    async fn close_live_calls(&self, reason: &str, now: &str) -> Result<u64, StoreError> {
        self.close_live(
            "UPDATE calls SET status = 'hangup', hangup_reason = $1, hangup_by = 'local', \
             tm_hangup = $2, tm_update = $2 WHERE status != 'hangup'",
            reason,
            now,
        )
        .await
    }

    async fn create_recording(&self, recording: &RecordingRecord) -> Result<(), StoreError> {
        self.insert(bind_recording(RECORDING_INSERT, recording)?, "recording")
            .await
    }

    async fn update_recording(&self, recording: &RecordingRecord) -> Result<(), StoreError> {
        self.changed(bind_recording(RECORDING_UPDATE, recording)?)
            .await
            .map(drop)
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
            None,
            recording_from_row,
        )
        .await
    }

    async fn recordings_of_call(
        &self,
        account: Uuid,
        call: Uuid,
    ) -> Result<Vec<RecordingRecord>, StoreError> {
        let q = sqlx::query(
            "SELECT * FROM recordings WHERE call_id = $1 AND account_id = $2 \
             ORDER BY tm_start, id",
        )
        .bind(call.to_string())
        .bind(account.to_string());
        self.fetch_all(q, recording_from_row).await
    }

    async fn delete_recording(&self, account: Uuid, id: Uuid) -> Result<bool, StoreError> {
        self.delete(scoped_sql!(delete "recordings"), account, id)
            .await
    }

    async fn close_live_recordings(&self, reason: &str, now: &str) -> Result<u64, StoreError> {
        self.close_live(
            "UPDATE recordings SET status = 'failed', end_reason = $1, tm_end = $2, \
             tm_update = $2 WHERE status = 'recording'",
            reason,
            now,
        )
        .await
    }

    async fn save_activeflow(&self, activeflow: &ActiveflowRecord) -> Result<(), StoreError> {
        self.changed(bind_activeflow(activeflow)).await.map(drop)
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
            None,
            activeflow_from_row,
        )
        .await
    }

    async fn close_live_activeflows(&self, reason: &str, now: &str) -> Result<u64, StoreError> {
        self.close_live(
            "UPDATE activeflows SET status = 'ended', end_reason = $1, tm_end = $2, \
             tm_update = $2 WHERE status = 'running'",
            reason,
            now,
        )
        .await
    }

    async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        self.insert(bind_webhook(WEBHOOK_INSERT, webhook)?, "webhook")
            .await
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
            None,
            webhook_from_row,
        )
        .await
    }

    async fn webhooks_of_account(&self, account: Uuid) -> Result<Vec<WebhookRecord>, StoreError> {
        let q = sqlx::query("SELECT * FROM webhooks WHERE account_id = $1 ORDER BY tm_create, id")
            .bind(account.to_string());
        self.fetch_all(q, webhook_from_row).await
    }

    async fn update_webhook_settings(&self, webhook: &WebhookRecord) -> Result<bool, StoreError> {
        self.changed(bind_webhook(WEBHOOK_SETTINGS_UPDATE, webhook)?)
            .await
    }

    async fn update_webhook_breaker(&self, webhook: &WebhookRecord) -> Result<bool, StoreError> {
        self.changed(bind_webhook(WEBHOOK_BREAKER_UPDATE, webhook)?)
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
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending'")
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
            bind_delivery(DELIVERY_INSERT, d)
                .execute(&mut *tx)
                .await
                .map_err(|e| unique_violation(e, "delivery"))?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let q = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, tm_create, id LIMIT $2",
        )
        .bind(now_ms)
        .bind(i64::from(limit));
        self.fetch_all(q, delivery_from_row).await
    }

    async fn next_delivery_due(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)
    }

    async fn update_delivery(&self, delivery: &DeliveryRecord) -> Result<(), StoreError> {
        self.changed(bind_delivery(DELIVERY_UPDATE, delivery))
            .await
            .map(drop)
    }

    async fn retry_deliveries_now(&self, webhook: Uuid, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET next_attempt_at = $2 \
             WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at > $2",
        )
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
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, tm_update = $4 \
             WHERE id = $1 AND account_id = $2 AND status = 'failed'",
        )
        .bind(id.to_string())
        .bind(account.to_string())
        .bind(now_ms)
        .bind(tm_update)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
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
        match webhook {
            None => {
                self.page(
                    scoped_sql!(page "webhook_deliveries"),
                    account,
                    page,
                    None,
                    delivery_from_row,
                )
                .await
            }
            Some(webhook) => {
                self.page(
                    scoped_sql!(page "webhook_deliveries" where "webhook_id = $5"),
                    account,
                    page,
                    Some(webhook.to_string()),
                    delivery_from_row,
                )
                .await
            }
        }
    }
}
