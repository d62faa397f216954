//! The store conformance suite: every test is written once against `&dyn Store` and run
//! against each backend (module `sqlite` and module `postgres`).
//!
//! SQLite runs in memory, always. PostgreSQL runs when `VOXFLOW_TEST_POSTGRES_URL` names a server
//! where that user may create databases (`scripts/pg-test.sh start` makes one): each test gets a
//! database of its own, dropped afterwards. Without the variable the PostgreSQL tests are skipped
//! with a note on stderr, except under CI (`CI` set), where they fail so a CI run cannot skip them
//! silently.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

use std::future::Future;
use std::sync::Arc;

use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use uuid::Uuid;
use voxflow_store::{
    Account, AccountLimits, ActiveflowRecord, CallRecord, DeliveryRecord, DeviceRecord, FlowRecord,
    NumberRecord, Page, PostgresStore, RecordingRecord, RegistrationRecord, Store, StoreError,
    TokenRecord, TrunkRecord, WebhookRecord, hash_token, token_prefix,
};

const NOW: &str = "2026-11-21T10:00:00.000000Z";
const LATER: &str = "2026-11-21T11:00:00.000000Z";
const PG_URL_VAR: &str = "VOXFLOW_TEST_POSTGRES_URL";

// ---- backends --------------------------------------------------------------------------------

/// Run `test` on a fresh in-memory SQLite store.
async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    test(voxflow_store::open("sqlite::memory:").await.unwrap()).await;
}

/// Run `test` on a store over a fresh PostgreSQL database (see the module docs).
async fn with_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_postgres_database(|url| async move {
        test(voxflow_store::open(&url).await.unwrap()).await;
    })
    .await;
}

/// The admin URL of the PostgreSQL test server, or `None` when the test should be skipped.
fn postgres_admin_url() -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{PG_URL_VAR} is not set, and CI is: the PostgreSQL conformance tests must run in CI \
             (start a server with scripts/pg-test.sh start)"
        ),
        _ => {
            eprintln!("skipping the PostgreSQL variant: {PG_URL_VAR} is not set");
            None
        }
    }
}

/// Run `test` with the URL of a database created for it alone, and drop that database after,
/// whether the test passed or panicked (the panic is then raised again).
async fn with_postgres_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(admin_url) = postgres_admin_url() else {
        return;
    };
    let name = format!("voxflow_conformance_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let outcome = tokio::spawn(test(with_database(&admin_url, &name))).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    if let Err(err) = outcome {
        match err.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(err) => panic!("test task failed: {err}"),
        }
    }
}

/// `url` with its database (path) replaced by `database`, keeping any `?` parameters.
fn with_database(url: &str, database: &str) -> String {
    let (base, params) = url.split_once('?').map_or((url, ""), |(b, p)| (b, p));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let sep = if params.is_empty() { "" } else { "?" };
    format!("{}/{database}{sep}{params}", &base[..path])
}

/// One `#[tokio::test]` per backend for each conformance test named.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $test() {
                crate::with_sqlite(|s| async move { crate::$test(&*s).await }).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $test() {
                crate::with_postgres(|s| async move { crate::$test(&*s).await }).await;
            })*
        }
    };
}

conformance!(
    bootstrap_once_then_authenticate,
    bootstrap_generates_a_token,
    bootstrap_racing_itself_creates_one_account,
    accounts_crud_limits_and_paging,
    tokens_create_list_delete_hashed,
    flows_crud_scoped_to_their_account,
    numbers_crud_conflicts_and_inbound_lookup,
    calls_insert_update_page_and_close_live,
    devices_registrations_and_trunks,
    recordings_round_trip_page_and_close_live,
    activeflows_upsert_scope_and_close_live,
    webhooks_crud_and_breaker_state,
    deliveries_outbox,
    delete_webhook_drops_its_pending_deliveries,
);

// ---- fixtures --------------------------------------------------------------------------------

/// `2026-11-21T10:00:0<second>.000000Z`
fn at(second: u32) -> String {
    format!("2026-11-21T10:00:{second:02}.000000Z")
}

async fn account(s: &dyn Store, name: &str) -> Account {
    let a = Account {
        id: Uuid::new_v4(),
        name: name.into(),
        limits: AccountLimits::default(),
        tm_create: NOW.into(),
        tm_update: NOW.into(),
    };
    s.create_account(&a).await.unwrap();
    a
}

fn flow(account: Uuid, tm: &str) -> FlowRecord {
    FlowRecord {
        id: Uuid::new_v4(),
        account_id: account,
        name: "main".into(),
        detail: "the main menu".into(),
        actions: json!([
            {"id": "a1", "type": "answer"},
            {"id": "a2", "type": "talk", "option": {"text": "héllo \"there\" ☎", "speed": 1.25}},
            {"id": "a3", "type": "sleep", "option": {"duration": 9_007_199_254_740_993_u64,
             "neg": -3, "empty": {}, "none": null, "list": [true, false]}}
        ]),
        on_complete_flow_id: None,
        tm_create: tm.into(),
        tm_update: tm.into(),
    }
}

fn number(account: Uuid, number: &str, tm: &str) -> NumberRecord {
    NumberRecord {
        id: Uuid::new_v4(),
        account_id: account,
        number: number.into(),
        call_flow_id: Uuid::new_v4(),
        name: format!("line {number}"),
        tm_create: tm.into(),
        tm_update: tm.into(),
    }
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

fn webhook(account: Uuid, tm: &str) -> WebhookRecord {
    WebhookRecord {
        id: Uuid::new_v4(),
        account_id: account,
        name: "events".into(),
        uri: "http://127.0.0.1:9/hook".into(),
        method: "POST".into(),
        secret: "s3cret".into(),
        event_types: vec!["call_created".into(), "call_hangup".into()],
        status: WebhookRecord::ACTIVE.into(),
        consecutive_failures: 0,
        paused_until: None,
        last_error: String::new(),
        tm_create: tm.into(),
        tm_update: tm.into(),
    }
}

fn delivery(w: &WebhookRecord, next_attempt_at: i64, tm: &str) -> DeliveryRecord {
    DeliveryRecord {
        id: Uuid::new_v4(),
        account_id: w.account_id,
        webhook_id: w.id,
        event_id: Uuid::new_v4(),
        event_type: "call_created".into(),
        payload: r#"{"type":"call_created","data":{"id":"x","n":1.50}}"#.into(),
        status: DeliveryRecord::PENDING.into(),
        attempts: 0,
        next_attempt_at,
        last_status: None,
        last_error: String::new(),
        attempt_log: json!([]),
        tm_create: tm.into(),
        tm_update: tm.into(),
        tm_delivered: None,
    }
}

/// Every record of a list, page after page of `size`, following the cursor `key` gives.
async fn all_pages<T, F, Fut>(size: u32, mut fetch: F, key: fn(&T) -> (String, String)) -> Vec<T>
where
    F: FnMut(Page) -> Fut,
    Fut: Future<Output = Vec<T>>,
{
    let mut page = Page { size, after: None };
    let mut seen = Vec::new();
    for _ in 0..100 {
        let got = fetch(page.clone()).await;
        assert!(got.len() <= size as usize, "a page is at most its size");
        let Some(last) = got.last() else {
            return seen;
        };
        page.after = Some(key(last));
        seen.extend(got);
    }
    panic!("paging did not end within 100 pages");
}

/// `items` in list order: newest first by `key`, ties broken by the id (byte order).
fn newest_first<T>(mut items: Vec<T>, key: fn(&T) -> (String, String)) -> Vec<T> {
    items.sort_by_key(|item| std::cmp::Reverse(key(item)));
    items
}

fn by_created_call(c: &CallRecord) -> (String, String) {
    (c.tm_create.clone(), c.id.to_string())
}

// ---- tests -----------------------------------------------------------------------------------

async fn bootstrap_once_then_authenticate(s: &dyn Store) {
    assert_eq!(s.first_account().await.unwrap(), None);
    assert_eq!(s.authenticate("secret").await.unwrap(), None);
    assert_eq!(
        s.bootstrap(Some("secret"), NOW).await.unwrap().as_deref(),
        Some("secret")
    );
    assert_eq!(s.bootstrap(Some("other"), LATER).await.unwrap(), None);
    assert_eq!(s.bootstrap(None, LATER).await.unwrap(), None);

    let first = s.first_account().await.unwrap().unwrap();
    assert_eq!(first.tm_create, NOW);
    assert_eq!(first.limits, AccountLimits::default());
    let (account, token) = s.authenticate("secret").await.unwrap().unwrap();
    assert_eq!(account, first);
    assert_eq!(token.account_id, first.id);
    assert!(token.admin);
    assert_eq!(token.name, "bootstrap");
    assert_eq!(token.token_hash, hash_token("secret"));
    assert_ne!(token.token_hash, "secret");
    assert_eq!(token.prefix, token_prefix("secret"));
    assert_eq!(token.tm_create, NOW);
    assert_eq!(s.account_by_token("secret").await.unwrap(), Some(first));
    assert_eq!(s.account_by_token("other").await.unwrap(), None);
    assert_eq!(s.list_accounts(&Page::default()).await.unwrap().len(), 1);
    assert_eq!(
        s.list_tokens(account.id, &Page::default()).await.unwrap(),
        vec![token]
    );
}

async fn bootstrap_generates_a_token(s: &dyn Store) {
    let token = s.bootstrap(None, NOW).await.unwrap().unwrap();
    assert!(token.len() > 20, "a generated token is long: {token}");
    let (account, record) = s.authenticate(&token).await.unwrap().unwrap();
    assert_eq!(record.token_hash, hash_token(&token));
    assert_eq!(record.prefix, token_prefix(&token));
    assert_eq!(s.first_account().await.unwrap(), Some(account));
}

async fn bootstrap_racing_itself_creates_one_account(s: &dyn Store) {
    let (a, b, c) = tokio::join!(
        s.bootstrap(Some("one"), NOW),
        s.bootstrap(Some("two"), NOW),
        s.bootstrap(Some("three"), NOW)
    );
    let created: Vec<String> = [a, b, c].into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(created.len(), 1, "exactly one bootstrap wins: {created:?}");
    assert_eq!(s.list_accounts(&Page::default()).await.unwrap().len(), 1);
    assert!(s.authenticate(&created[0]).await.unwrap().is_some());
}

async fn accounts_crud_limits_and_paging(s: &dyn Store) {
    let mut made = Vec::new();
    for (i, second) in [0, 1, 2, 2, 2, 3, 4].into_iter().enumerate() {
        let a = Account {
            id: Uuid::new_v4(),
            name: format!("tenant {i}"),
            limits: AccountLimits {
                max_concurrent_calls: Some(10 + i as u32),
                max_calls_per_second: (i % 2 == 0).then_some(2),
                destination_prefixes: vec!["1555".into(), format!("44{i}")],
            },
            tm_create: at(second),
            tm_update: at(second),
        };
        s.create_account(&a).await.unwrap();
        made.push(a);
    }
    assert_eq!(s.account(made[3].id).await.unwrap(), Some(made[3].clone()));
    assert_eq!(s.account(Uuid::new_v4()).await.unwrap(), None);
    assert!(matches!(
        s.create_account(&made[0]).await,
        Err(StoreError::Conflict("account"))
    ));

    let key = |a: &Account| (a.tm_create.clone(), a.id.to_string());
    let seen = all_pages(
        2,
        |p| async move { s.list_accounts(&p).await.unwrap() },
        key,
    )
    .await;
    assert_eq!(seen, newest_first(made.clone(), key));
    assert_eq!(
        s.first_account().await.unwrap(),
        Some(made[0].clone()),
        "the oldest"
    );

    let changed = Account {
        name: "renamed".into(),
        limits: AccountLimits {
            max_concurrent_calls: None,
            max_calls_per_second: Some(u32::MAX),
            destination_prefixes: Vec::new(),
        },
        tm_update: LATER.into(),
        ..made[1].clone()
    };
    assert!(s.update_account(&changed).await.unwrap());
    assert_eq!(s.account(changed.id).await.unwrap(), Some(changed.clone()));
    let unknown = Account {
        id: Uuid::new_v4(),
        ..changed
    };
    assert!(!s.update_account(&unknown).await.unwrap());
    assert_eq!(s.account(unknown.id).await.unwrap(), None);
}

async fn tokens_create_list_delete_hashed(s: &dyn Store) {
    let a = account(s, "a").await;
    let b = account(s, "b").await;
    let mut made = Vec::new();
    for (i, second) in [1, 2, 2, 3].into_iter().enumerate() {
        let secret = format!("vf_secret_number_{i}");
        let t = TokenRecord {
            id: Uuid::new_v4(),
            account_id: a.id,
            name: format!("ci {i}"),
            token_hash: hash_token(&secret),
            prefix: token_prefix(&secret),
            admin: i == 0,
            tm_create: at(second),
        };
        s.create_token(&t).await.unwrap();
        made.push((secret, t));
    }
    let key = |t: &TokenRecord| (t.tm_create.clone(), t.id.to_string());
    let seen = all_pages(
        3,
        |p| async move { s.list_tokens(a.id, &p).await.unwrap() },
        key,
    )
    .await;
    let tokens: Vec<TokenRecord> = made.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(seen, newest_first(tokens, key));
    assert!(
        s.list_tokens(b.id, &Page::default())
            .await
            .unwrap()
            .is_empty()
    );

    let (secret, token) = &made[1];
    assert_eq!(
        s.authenticate(secret).await.unwrap(),
        Some((a.clone(), token.clone()))
    );
    assert!(!token.admin);
    assert_eq!(s.authenticate(&token.token_hash).await.unwrap(), None);
    let same_secret = TokenRecord {
        id: Uuid::new_v4(),
        ..token.clone()
    };
    assert!(matches!(
        s.create_token(&same_secret).await,
        Err(StoreError::Conflict("token"))
    ));

    assert!(!s.delete_token(b.id, token.id).await.unwrap());
    assert!(s.authenticate(secret).await.unwrap().is_some());
    assert!(s.delete_token(a.id, token.id).await.unwrap());
    assert!(!s.delete_token(a.id, token.id).await.unwrap());
    assert_eq!(s.authenticate(secret).await.unwrap(), None);
    assert_eq!(
        s.list_tokens(a.id, &Page::default()).await.unwrap().len(),
        3
    );
}

async fn flows_crud_scoped_to_their_account(s: &dyn Store) {
    let a = account(s, "a").await;
    let b = account(s, "b").await;
    let mut made = Vec::new();
    for second in [3, 1, 2, 2] {
        let f = flow(a.id, &at(second));
        s.create_flow(&f).await.unwrap();
        made.push(f);
    }
    let next = made[1].id;
    let f = FlowRecord {
        on_complete_flow_id: Some(next),
        ..made[0].clone()
    };
    assert!(s.update_flow(&f).await.unwrap());
    made[0] = f.clone();
    assert_eq!(s.flow(a.id, f.id).await.unwrap(), Some(f.clone()));
    assert!(matches!(
        s.create_flow(&f).await,
        Err(StoreError::Conflict("flow"))
    ));

    let key = |f: &FlowRecord| (f.tm_create.clone(), f.id.to_string());
    let seen = all_pages(
        3,
        |p| async move { s.list_flows(a.id, &p).await.unwrap() },
        key,
    )
    .await;
    assert_eq!(seen, newest_first(made.clone(), key));

    // Another account neither sees, changes nor deletes it.
    assert_eq!(s.flow(b.id, f.id).await.unwrap(), None);
    assert!(
        s.list_flows(b.id, &Page::default())
            .await
            .unwrap()
            .is_empty()
    );
    let hijack = FlowRecord {
        account_id: b.id,
        name: "hijacked".into(),
        ..f.clone()
    };
    assert!(!s.update_flow(&hijack).await.unwrap());
    assert!(!s.delete_flow(b.id, f.id).await.unwrap());
    assert_eq!(s.flow(a.id, f.id).await.unwrap(), Some(f.clone()));

    let changed = FlowRecord {
        name: "renamed".into(),
        detail: String::new(),
        actions: json!([{"id": "z", "type": "hangup", "option": {"reason": "normal"}}]),
        on_complete_flow_id: None,
        tm_update: LATER.into(),
        ..f.clone()
    };
    assert!(s.update_flow(&changed).await.unwrap());
    let got = s.flow(a.id, f.id).await.unwrap().unwrap();
    assert_eq!(got, changed);
    assert_eq!(got.tm_create, f.tm_create, "update keeps the creation time");

    assert!(s.delete_flow(a.id, f.id).await.unwrap());
    assert!(!s.delete_flow(a.id, f.id).await.unwrap());
    assert_eq!(s.flow(a.id, f.id).await.unwrap(), None);
    assert_eq!(s.list_flows(a.id, &Page::default()).await.unwrap().len(), 3);
}

async fn numbers_crud_conflicts_and_inbound_lookup(s: &dyn Store) {
    let a = account(s, "a").await;
    let b = account(s, "b").await;
    let n = number(a.id, "+15550100", &at(1));
    s.create_number(&n).await.unwrap();
    let other = number(a.id, "15550200", &at(2));
    s.create_number(&other).await.unwrap();

    // Stored as given, found by the digits with or without '+'.
    assert_eq!(s.number(a.id, n.id).await.unwrap(), Some(n.clone()));
    assert_eq!(
        s.number_for_inbound("15550100").await.unwrap(),
        Some(n.clone())
    );
    assert_eq!(
        s.number_for_inbound("+15550100").await.unwrap(),
        Some(n.clone())
    );
    assert_eq!(
        s.number_for_inbound("+15550200").await.unwrap(),
        Some(other.clone())
    );
    assert_eq!(s.number_for_inbound("15550199").await.unwrap(), None);

    // A number is bound once, across accounts, whichever way it is written.
    for taken in ["15550100", "+15550100", " +15550100 "] {
        assert!(matches!(
            s.create_number(&number(b.id, taken, NOW)).await,
            Err(StoreError::Conflict("number"))
        ));
    }
    let onto_taken = NumberRecord {
        number: "+15550200".into(),
        ..n.clone()
    };
    assert!(matches!(
        s.update_number(&onto_taken).await,
        Err(StoreError::Conflict("number"))
    ));
    assert_eq!(s.number(a.id, n.id).await.unwrap(), Some(n.clone()));

    // Scoped: another account neither sees, changes nor deletes it.
    assert_eq!(s.number(b.id, n.id).await.unwrap(), None);
    assert!(
        s.list_numbers(b.id, &Page::default())
            .await
            .unwrap()
            .is_empty()
    );
    let hijack = NumberRecord {
        account_id: b.id,
        number: "+15550999".into(),
        ..n.clone()
    };
    assert!(!s.update_number(&hijack).await.unwrap());
    assert!(!s.delete_number(b.id, n.id).await.unwrap());
    assert_eq!(s.number_for_inbound("15550999").await.unwrap(), None);

    let moved = NumberRecord {
        number: "+15550111".into(),
        call_flow_id: Uuid::new_v4(),
        name: "moved".into(),
        tm_update: LATER.into(),
        ..n.clone()
    };
    assert!(s.update_number(&moved).await.unwrap());
    assert_eq!(s.number(a.id, n.id).await.unwrap(), Some(moved.clone()));
    assert_eq!(s.number_for_inbound("15550100").await.unwrap(), None);
    assert_eq!(
        s.number_for_inbound("15550111").await.unwrap(),
        Some(moved.clone())
    );
    // The old number is free again.
    let reuse = number(b.id, "15550100", &at(3));
    s.create_number(&reuse).await.unwrap();
    assert_eq!(
        s.number_for_inbound("+15550100").await.unwrap(),
        Some(reuse)
    );

    let key = |n: &NumberRecord| (n.tm_create.clone(), n.id.to_string());
    let seen = all_pages(
        1,
        |p| async move { s.list_numbers(a.id, &p).await.unwrap() },
        key,
    )
    .await;
    assert_eq!(seen, vec![other.clone(), moved.clone()]);

    assert!(s.delete_number(a.id, n.id).await.unwrap());
    assert!(!s.delete_number(a.id, n.id).await.unwrap());
    assert_eq!(s.number_for_inbound("15550111").await.unwrap(), None);
}

async fn calls_insert_update_page_and_close_live(s: &dyn Store) {
    let a = account(s, "a").await;
    let b = account(s, "b").await;
    let mut made = Vec::new();
    // Several with the same timestamp must not be skipped across a page boundary.
    for second in [0, 1, 2, 2, 2, 3, 4] {
        let c = call(a.id, &at(second));
        s.insert_call(&c).await.unwrap();
        made.push(c);
    }
    s.insert_call(&call(b.id, &at(9))).await.unwrap();
    assert!(matches!(
        s.insert_call(&made[0]).await,
        Err(StoreError::Conflict("call"))
    ));
    for size in [1, 2, 3, 100] {
        let seen = all_pages(
            size,
            |p| async move { s.list_calls(a.id, &p).await.unwrap() },
            by_created_call,
        )
        .await;
        assert_eq!(
            seen,
            newest_first(made.clone(), by_created_call),
            "size {size}"
        );
    }

    let answered = CallRecord {
        flow_id: Some(Uuid::new_v4()),
        status: "progressing".into(),
        tm_progressing: Some(at(5)),
        tm_update: at(5),
        ..made[0].clone()
    };
    s.update_call(&answered).await.unwrap();
    assert_eq!(
        s.call(a.id, answered.id).await.unwrap(),
        Some(answered.clone())
    );
    assert_eq!(s.call(b.id, answered.id).await.unwrap(), None);

    let ended = CallRecord {
        status: "hangup".into(),
        hangup_reason: "normal".into(),
        hangup_by: "remote".into(),
        tm_hangup: Some(at(6)),
        tm_update: at(6),
        ..made[1].clone()
    };
    s.update_call(&ended).await.unwrap();

    // Every live call of every account is closed; the ended one is left alone.
    assert_eq!(s.close_live_calls("restart", LATER).await.unwrap(), 7);
    let closed = s.call(a.id, answered.id).await.unwrap().unwrap();
    assert_eq!(
        closed,
        CallRecord {
            status: "hangup".into(),
            hangup_reason: "restart".into(),
            hangup_by: "local".into(),
            tm_hangup: Some(LATER.into()),
            tm_update: LATER.into(),
            ..answered
        }
    );
    assert_eq!(s.call(a.id, ended.id).await.unwrap(), Some(ended));
    assert_eq!(s.close_live_calls("restart", LATER).await.unwrap(), 0);
}

async fn devices_registrations_and_trunks(s: &dyn Store) {
    let a = account(s, "a").await;
    let b = account(s, "b").await;
    let d = DeviceRecord {
        id: Uuid::new_v4(),
        account_id: a.id,
        username: "alice".into(),
        realm: "voxflow".into(),
        ha1_md5: "m".into(),
        ha1_sha256: "s".into(),
        name: "Alice".into(),
        allowed_ips: vec!["127.0.0.1".into(), "10.0.0.0/8".into()],
        tm_create: at(1),
        tm_update: at(1),
    };
    s.create_device(&d).await.unwrap();
    let bob = DeviceRecord {
        id: Uuid::new_v4(),
        username: "bob".into(),
        allowed_ips: Vec::new(),
        tm_create: at(2),
        ..d.clone()
    };
    s.create_device(&bob).await.unwrap();
    // Usernames are global: another account cannot take it either.
    let dup = DeviceRecord {
        id: Uuid::new_v4(),
        account_id: b.id,
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
    assert_eq!(s.device_by_username("carol").await.unwrap(), None);
    assert_eq!(s.device(a.id, d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(s.device(b.id, d.id).await.unwrap(), None);
    assert_eq!(
        s.list_devices(a.id, &Page::default()).await.unwrap(),
        vec![bob.clone(), d.clone()]
    );
    assert!(
        s.list_devices(b.id, &Page::default())
            .await
            .unwrap()
            .is_empty()
    );

    let reg = |device: Uuid, contact: &str, expires_at: i64| RegistrationRecord {
        device_id: device,
        contact: contact.into(),
        expires_at,
        call_id: "c".into(),
        cseq: u32::MAX,
        q: Some(0.5),
        instance: Some("<urn:uuid:1>".into()),
        source: "udp:127.0.0.1:5062".into(),
        tm_update: NOW.into(),
    };
    s.replace_registrations(
        d.id,
        &[reg(d.id, "sip:a@2", 200), reg(d.id, "sip:a@1", 100)],
    )
    .await
    .unwrap();
    let bob_reg = RegistrationRecord {
        q: None,
        instance: None,
        ..reg(bob.id, "sip:b@1", 300)
    };
    s.replace_registrations(bob.id, std::slice::from_ref(&bob_reg))
        .await
        .unwrap();
    assert_eq!(
        s.registrations(d.id).await.unwrap(),
        vec![reg(d.id, "sip:a@1", 100), reg(d.id, "sip:a@2", 200)],
        "ordered by contact"
    );
    let mut live = vec![reg(d.id, "sip:a@2", 200), bob_reg.clone()];
    live.sort_by_key(|r| r.device_id.to_string());
    assert_eq!(s.live_registrations(150).await.unwrap(), live);
    assert_eq!(s.expire_registrations(150).await.unwrap(), 1);
    assert_eq!(
        s.registrations(d.id).await.unwrap(),
        vec![reg(d.id, "sip:a@2", 200)]
    );
    s.replace_registrations(d.id, &[]).await.unwrap();
    assert!(s.registrations(d.id).await.unwrap().is_empty());

    // Deleting a device (only by its account) drops its registrations.
    assert!(!s.delete_device(b.id, bob.id).await.unwrap());
    assert!(s.delete_device(a.id, bob.id).await.unwrap());
    assert!(!s.delete_device(a.id, bob.id).await.unwrap());
    assert!(s.registrations(bob.id).await.unwrap().is_empty());
    assert_eq!(s.device_by_username("bob").await.unwrap(), None);

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
        tm_create: at(1),
        tm_update: at(1),
    };
    s.create_trunk(&t).await.unwrap();
    let t2 = TrunkRecord {
        id: Uuid::new_v4(),
        account_id: b.id,
        port: None,
        register: false,
        allowed_ips: Vec::new(),
        tm_create: at(0),
        ..t.clone()
    };
    s.create_trunk(&t2).await.unwrap();
    assert!(matches!(
        s.create_trunk(&t).await,
        Err(StoreError::Conflict("trunk"))
    ));
    assert_eq!(s.trunk(a.id, t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(s.trunk(b.id, t.id).await.unwrap(), None);
    assert_eq!(s.trunk(b.id, t2.id).await.unwrap(), Some(t2.clone()));
    assert_eq!(s.all_trunks().await.unwrap(), vec![t2.clone(), t.clone()]);
    assert_eq!(
        s.list_trunks(a.id, &Page::default()).await.unwrap(),
        vec![t.clone()]
    );
    let changed = TrunkRecord {
        host: "sip2.example.net".into(),
        port: None,
        register: false,
        register_expires: 3600,
        tm_update: LATER.into(),
        ..t.clone()
    };
    assert!(s.update_trunk(&changed).await.unwrap());
    assert_eq!(s.trunk(a.id, t.id).await.unwrap(), Some(changed.clone()));
    let stranger = TrunkRecord {
        account_id: b.id,
        host: "evil.example.net".into(),
        ..t.clone()
    };
    assert!(!s.update_trunk(&stranger).await.unwrap());
    assert_eq!(s.trunk(a.id, t.id).await.unwrap(), Some(changed));
    assert!(!s.delete_trunk(b.id, t.id).await.unwrap());
    assert!(s.delete_trunk(a.id, t.id).await.unwrap());
    assert!(!s.delete_trunk(a.id, t.id).await.unwrap());
    assert_eq!(s.all_trunks().await.unwrap(), vec![t2]);
}

async fn recordings_round_trip_page_and_close_live(s: &dyn Store) {
    let a = account(s, "a").await;
    let b = account(s, "b").await;
    let (first_call, second_call) = (Uuid::new_v4(), Uuid::new_v4());
    let mut made = Vec::new();
    for (i, second) in [0, 1, 2, 3, 4, 2].into_iter().enumerate() {
        let call = if i % 2 == 0 { first_call } else { second_call };
        let r = recording(a.id, call, &at(second));
        s.create_recording(&r).await.unwrap();
        made.push(r);
    }
    assert_eq!(
        s.recording(a.id, made[0].id).await.unwrap(),
        Some(made[0].clone())
    );
    assert!(matches!(
        s.create_recording(&made[0]).await,
        Err(StoreError::Conflict("recording"))
    ));

    let key = |r: &RecordingRecord| (r.tm_start.clone(), r.id.to_string());
    let seen = all_pages(
        2,
        |p| async move { s.list_recordings(a.id, &p).await.unwrap() },
        key,
    )
    .await;
    assert_eq!(seen, newest_first(made.clone(), key));
    let of_first = s.recordings_of_call(a.id, first_call).await.unwrap();
    let mut expected: Vec<RecordingRecord> = made
        .iter()
        .filter(|r| r.call_id == first_call)
        .cloned()
        .collect();
    expected.sort_by_key(key);
    assert_eq!(of_first, expected, "oldest first");
    assert_eq!(
        s.recordings_of_call(a.id, second_call).await.unwrap().len(),
        3
    );
    assert!(
        s.recordings_of_call(a.id, Uuid::new_v4())
            .await
            .unwrap()
            .is_empty()
    );

    let ended = RecordingRecord {
        status: RecordingRecord::ENDED.into(),
        channels: 1,
        duration_ms: 61_020,
        end_reason: "silence".into(),
        tm_end: Some(at(9)),
        tm_update: at(9),
        ..made[0].clone()
    };
    s.update_recording(&ended).await.unwrap();
    assert_eq!(
        s.recording(a.id, ended.id).await.unwrap(),
        Some(ended.clone())
    );

    // Another account sees nothing, and cannot change or delete it.
    assert_eq!(s.recording(b.id, ended.id).await.unwrap(), None);
    assert!(
        s.list_recordings(b.id, &Page::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.recordings_of_call(b.id, first_call)
            .await
            .unwrap()
            .is_empty()
    );
    let hijack = RecordingRecord {
        account_id: b.id,
        status: RecordingRecord::FAILED.into(),
        ..ended.clone()
    };
    s.update_recording(&hijack).await.unwrap();
    assert_eq!(
        s.recording(a.id, ended.id).await.unwrap(),
        Some(ended.clone())
    );
    assert!(!s.delete_recording(b.id, ended.id).await.unwrap());

    // The five still recording are closed as failed; the ended one is left alone.
    assert_eq!(
        s.close_live_recordings("error: restart", LATER)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        s.recording(a.id, made[1].id).await.unwrap(),
        Some(RecordingRecord {
            status: RecordingRecord::FAILED.into(),
            end_reason: "error: restart".into(),
            tm_end: Some(LATER.into()),
            tm_update: LATER.into(),
            ..made[1].clone()
        })
    );
    assert_eq!(
        s.recording(a.id, ended.id).await.unwrap(),
        Some(ended.clone())
    );
    assert_eq!(
        s.close_live_recordings("error: restart", LATER)
            .await
            .unwrap(),
        0
    );

    assert!(s.delete_recording(a.id, ended.id).await.unwrap());
    assert!(!s.delete_recording(a.id, ended.id).await.unwrap());
    assert_eq!(s.recording(a.id, ended.id).await.unwrap(), None);
}

async fn activeflows_upsert_scope_and_close_live(s: &dyn Store) {
    let acct = account(s, "a").await;
    let other = account(s, "b").await;
    let mut a = ActiveflowRecord {
        id: Uuid::new_v4(),
        account_id: acct.id,
        call_id: Uuid::new_v4(),
        flow_id: Some(Uuid::new_v4()),
        status: ActiveflowRecord::RUNNING.into(),
        end_reason: String::new(),
        current_action_id: "a1".into(),
        execute_count: 1,
        executed_actions: json!([{"stack": 0, "index": 0, "id": "a1", "type": "answer"}]),
        variables: json!({"voipbin.call.digits": "", "n": 2.5, "nested": {"k": [1, "2"]}}),
        tm_create: at(1),
        tm_end: None,
        tm_update: at(1),
    };
    s.save_activeflow(&a).await.unwrap();
    assert_eq!(s.activeflow(acct.id, a.id).await.unwrap(), Some(a.clone()));
    a.execute_count = 3;
    a.current_action_id = "a3".into();
    a.variables = json!({"x": "1"});
    a.tm_update = at(2);
    s.save_activeflow(&a).await.unwrap();
    assert_eq!(s.activeflow(acct.id, a.id).await.unwrap(), Some(a.clone()));

    // Another account neither reads nor overwrites it.
    assert_eq!(s.activeflow(other.id, a.id).await.unwrap(), None);
    let foreign = ActiveflowRecord {
        account_id: other.id,
        status: ActiveflowRecord::ENDED.into(),
        ..a.clone()
    };
    s.save_activeflow(&foreign).await.unwrap();
    assert_eq!(s.activeflow(acct.id, a.id).await.unwrap(), Some(a.clone()));
    assert!(
        s.list_activeflows(other.id, &Page::default())
            .await
            .unwrap()
            .is_empty()
    );

    let ended = ActiveflowRecord {
        id: Uuid::new_v4(),
        flow_id: None,
        status: ActiveflowRecord::ENDED.into(),
        end_reason: "completed".into(),
        tm_create: at(3),
        tm_end: Some(at(4)),
        tm_update: at(4),
        ..a.clone()
    };
    s.save_activeflow(&ended).await.unwrap();
    assert_eq!(
        s.list_activeflows(acct.id, &Page::default()).await.unwrap(),
        vec![ended.clone(), a.clone()]
    );
    assert_eq!(s.close_live_activeflows("restart", LATER).await.unwrap(), 1);
    assert_eq!(
        s.activeflow(acct.id, a.id).await.unwrap(),
        Some(ActiveflowRecord {
            status: ActiveflowRecord::ENDED.into(),
            end_reason: "restart".into(),
            tm_end: Some(LATER.into()),
            tm_update: LATER.into(),
            ..a
        })
    );
    assert_eq!(s.activeflow(acct.id, ended.id).await.unwrap(), Some(ended));
    assert_eq!(s.close_live_activeflows("restart", LATER).await.unwrap(), 0);
}

async fn webhooks_crud_and_breaker_state(s: &dyn Store) {
    let a = account(s, "a").await;
    let b = account(s, "b").await;
    let mut made = Vec::new();
    for second in [2, 1, 3, 1] {
        let w = webhook(a.id, &at(second));
        s.create_webhook(&w).await.unwrap();
        made.push(w);
    }
    let theirs = webhook(b.id, &at(0));
    s.create_webhook(&theirs).await.unwrap();
    assert!(matches!(
        s.create_webhook(&made[0]).await,
        Err(StoreError::Conflict("webhook"))
    ));

    let key = |w: &WebhookRecord| (w.tm_create.clone(), w.id.to_string());
    let seen = all_pages(
        3,
        |p| async move { s.list_webhooks(a.id, &p).await.unwrap() },
        key,
    )
    .await;
    assert_eq!(seen, newest_first(made.clone(), key));
    let mut oldest_first = made.clone();
    oldest_first.sort_by_key(key);
    assert_eq!(s.webhooks_of_account(a.id).await.unwrap(), oldest_first);
    assert_eq!(
        s.webhooks_of_account(b.id).await.unwrap(),
        vec![theirs.clone()]
    );

    let w = made[0].clone();
    assert_eq!(s.webhook(a.id, w.id).await.unwrap(), Some(w.clone()));
    assert_eq!(s.webhook(b.id, w.id).await.unwrap(), None);

    // The breaker trips: paused, with its failure count, reopen time and last error. A breaker
    // write leaves the settings alone, even when the record it is given has others.
    let paused = WebhookRecord {
        status: WebhookRecord::PAUSED.into(),
        consecutive_failures: 5,
        paused_until: Some(LATER.into()),
        last_error: "connect: connection refused".into(),
        event_types: vec!["*".into()],
        method: "PUT".into(),
        tm_update: at(9),
        ..w.clone()
    };
    assert!(s.update_webhook_breaker(&paused).await.unwrap());
    let tripped = WebhookRecord {
        event_types: w.event_types.clone(),
        method: w.method.clone(),
        ..paused.clone()
    };
    assert_eq!(s.webhook(a.id, w.id).await.unwrap(), Some(tripped.clone()));
    // New settings leave the breaker state alone (an API edit cannot undo a pause).
    let edited = WebhookRecord {
        uri: "http://127.0.0.1:9/new".into(),
        method: "PUT".into(),
        event_types: vec!["*".into()],
        secret: "another-secret-0123".into(),
        name: "renamed".into(),
        status: WebhookRecord::ACTIVE.into(),
        consecutive_failures: 0,
        paused_until: None,
        last_error: String::new(),
        tm_update: at(10),
        ..tripped.clone()
    };
    assert!(s.update_webhook_settings(&edited).await.unwrap());
    let both = WebhookRecord {
        status: tripped.status.clone(),
        consecutive_failures: tripped.consecutive_failures,
        paused_until: tripped.paused_until.clone(),
        last_error: tripped.last_error.clone(),
        ..edited.clone()
    };
    assert_eq!(s.webhook(a.id, w.id).await.unwrap(), Some(both.clone()));
    let reset = WebhookRecord {
        status: WebhookRecord::ACTIVE.into(),
        consecutive_failures: 0,
        paused_until: None,
        last_error: String::new(),
        tm_update: LATER.into(),
        ..both.clone()
    };
    assert!(s.update_webhook_breaker(&reset).await.unwrap());
    assert_eq!(s.webhook(a.id, w.id).await.unwrap(), Some(reset.clone()));

    let hijack = WebhookRecord {
        account_id: b.id,
        uri: "http://127.0.0.1:9/evil".into(),
        ..reset.clone()
    };
    assert!(!s.update_webhook_settings(&hijack).await.unwrap());
    assert!(!s.update_webhook_breaker(&hijack).await.unwrap());
    assert!(!s.delete_webhook(b.id, w.id).await.unwrap());
    assert_eq!(s.webhook(a.id, w.id).await.unwrap(), Some(reset));
    assert!(s.delete_webhook(a.id, w.id).await.unwrap());
    assert!(!s.delete_webhook(a.id, w.id).await.unwrap());
    assert_eq!(s.webhook(a.id, w.id).await.unwrap(), None);
    assert_eq!(s.webhooks_of_account(a.id).await.unwrap().len(), 3);
}

async fn deliveries_outbox(s: &dyn Store) {
    let a = account(s, "a").await;
    let b = account(s, "b").await;
    let w1 = webhook(a.id, &at(0));
    let w2 = webhook(a.id, &at(1));
    let wb = webhook(b.id, &at(1));
    for w in [&w1, &w2, &wb] {
        s.create_webhook(w).await.unwrap();
    }
    assert_eq!(s.next_delivery_due().await.unwrap(), None);
    assert!(s.due_deliveries(i64::MAX, 10).await.unwrap().is_empty());

    let d1 = delivery(&w1, 3_000, &at(1));
    let d2 = delivery(&w1, 1_000, &at(2));
    let d3 = delivery(&w2, 2_000, &at(2));
    let d4 = delivery(&w1, 2_000, &at(3));
    let d5 = delivery(&wb, 5_000, &at(1));
    s.enqueue_deliveries(&[d1.clone(), d2.clone(), d3.clone(), d4.clone()])
        .await
        .unwrap();
    s.enqueue_deliveries(std::slice::from_ref(&d5))
        .await
        .unwrap();
    s.enqueue_deliveries(&[]).await.unwrap();

    // All or none: a batch with a duplicate leaves no row behind.
    let fresh = delivery(&w2, 100, &at(4));
    assert!(matches!(
        s.enqueue_deliveries(&[fresh.clone(), d1.clone()]).await,
        Err(StoreError::Conflict("delivery"))
    ));
    assert_eq!(s.delivery(a.id, fresh.id).await.unwrap(), None);
    assert_eq!(s.next_delivery_due().await.unwrap(), Some(1_000));

    // Due: oldest next_attempt_at first (then tm_create, then id); bounded by now and limit.
    let mut tied = vec![d3.clone(), d4.clone()];
    tied.sort_by_key(|d| (d.tm_create.clone(), d.id.to_string()));
    let mut expected = vec![d2.clone()];
    expected.extend(tied);
    assert_eq!(s.due_deliveries(2_000, 10).await.unwrap(), expected);
    assert_eq!(
        s.due_deliveries(2_000, 2).await.unwrap(),
        expected[..2].to_vec()
    );
    assert!(s.due_deliveries(999, 10).await.unwrap().is_empty());
    assert_eq!(s.due_deliveries(10_000, 100).await.unwrap().len(), 5);

    // An attempt: delivered, with its log; no longer due.
    let delivered = DeliveryRecord {
        status: DeliveryRecord::DELIVERED.into(),
        attempts: 1,
        last_status: Some(204),
        attempt_log: json!([{"attempt": 1, "tm": LATER, "status": 204, "error": "",
                             "duration_ms": 12.5}]),
        tm_update: LATER.into(),
        tm_delivered: Some(LATER.into()),
        ..d2.clone()
    };
    s.update_delivery(&delivered).await.unwrap();
    assert_eq!(
        s.delivery(a.id, d2.id).await.unwrap(),
        Some(delivered.clone())
    );
    assert_eq!(s.delivery(b.id, d2.id).await.unwrap(), None);
    let retrying = DeliveryRecord {
        attempts: 2,
        next_attempt_at: 60_000,
        last_status: Some(503),
        last_error: "503 Service Unavailable".into(),
        attempt_log: json!([{"attempt": 1}, {"attempt": 2}]),
        tm_update: LATER.into(),
        ..d4.clone()
    };
    s.update_delivery(&retrying).await.unwrap();
    assert_eq!(
        s.delivery(a.id, d4.id).await.unwrap(),
        Some(retrying.clone())
    );
    assert_eq!(s.next_delivery_due().await.unwrap(), Some(2_000));
    assert_eq!(
        s.due_deliveries(10_000, 100).await.unwrap(),
        vec![d3.clone(), d1.clone(), d5.clone()]
    );

    // Held-back deliveries of one webhook become due now; others keep their time.
    assert_eq!(s.retry_deliveries_now(w1.id, 2_500).await.unwrap(), 2);
    assert_eq!(
        s.delivery(a.id, d4.id)
            .await
            .unwrap()
            .unwrap()
            .next_attempt_at,
        2_500
    );
    assert_eq!(
        s.delivery(a.id, d1.id)
            .await
            .unwrap()
            .unwrap()
            .next_attempt_at,
        2_500
    );
    assert_eq!(
        s.delivery(a.id, d2.id).await.unwrap(),
        Some(delivered.clone()),
        "a delivered one is not retried"
    );
    assert_eq!(s.retry_deliveries_now(w1.id, 2_500).await.unwrap(), 0);

    // A manual retry: only of a failed one, which is pending and due again with its attempts
    // and log kept; never of a delivered or pending one; another account's is not found.
    assert!(!s.retry_delivery(a.id, d2.id, 2_600, LATER).await.unwrap());
    assert_eq!(
        s.delivery(a.id, d2.id).await.unwrap(),
        Some(delivered.clone())
    );
    let mut failed = s.delivery(a.id, d4.id).await.unwrap().unwrap();
    assert!(!s.retry_delivery(a.id, d4.id, 2_600, LATER).await.unwrap());
    assert_eq!(
        s.delivery(a.id, d4.id).await.unwrap().as_ref(),
        Some(&failed)
    );
    failed.status = DeliveryRecord::FAILED.into();
    s.update_delivery(&failed).await.unwrap();
    assert!(!s.retry_delivery(b.id, d4.id, 2_600, LATER).await.unwrap());
    assert!(s.retry_delivery(a.id, d4.id, 2_600, &at(8)).await.unwrap());
    assert_eq!(
        s.delivery(a.id, d4.id).await.unwrap(),
        Some(DeliveryRecord {
            status: DeliveryRecord::PENDING.into(),
            next_attempt_at: 2_600,
            tm_update: at(8),
            ..failed
        })
    );

    // Lists: newest first, per account and per webhook.
    let key = |d: &DeliveryRecord| (d.tm_create.clone(), d.id.to_string());
    let seen = all_pages(
        2,
        |p| async move { s.list_deliveries(a.id, None, &p).await.unwrap() },
        key,
    )
    .await;
    let ids: Vec<Uuid> = seen.iter().map(|d| d.id).collect();
    let expected: Vec<Uuid> =
        newest_first(vec![d1.clone(), d2.clone(), d3.clone(), d4.clone()], key)
            .iter()
            .map(|d| d.id)
            .collect();
    assert_eq!(ids, expected);
    let of_w1 = all_pages(
        1,
        |p| async move { s.list_deliveries(a.id, Some(w1.id), &p).await.unwrap() },
        key,
    )
    .await;
    let ids: Vec<Uuid> = of_w1.iter().map(|d| d.id).collect();
    assert_eq!(ids, vec![d4.id, d2.id, d1.id]);
    assert!(
        s.list_deliveries(b.id, Some(w1.id), &Page::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.list_deliveries(b.id, None, &Page::default())
            .await
            .unwrap(),
        vec![d5]
    );
}

async fn delete_webhook_drops_its_pending_deliveries(s: &dyn Store) {
    let a = account(s, "a").await;
    let gone = webhook(a.id, &at(0));
    let kept = webhook(a.id, &at(1));
    s.create_webhook(&gone).await.unwrap();
    s.create_webhook(&kept).await.unwrap();
    let pending = delivery(&gone, 1_000, &at(1));
    let done = DeliveryRecord {
        status: DeliveryRecord::DELIVERED.into(),
        tm_delivered: Some(at(2)),
        ..delivery(&gone, 1_000, &at(2))
    };
    let failed = DeliveryRecord {
        status: DeliveryRecord::FAILED.into(),
        ..delivery(&gone, 1_000, &at(3))
    };
    let other = delivery(&kept, 5_000, &at(1));
    s.enqueue_deliveries(&[pending.clone(), done.clone(), failed.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(s.next_delivery_due().await.unwrap(), Some(1_000));

    assert!(s.delete_webhook(a.id, gone.id).await.unwrap());
    // The pending one is gone with its webhook; the log of finished ones stays.
    assert_eq!(s.delivery(a.id, pending.id).await.unwrap(), None);
    assert_eq!(s.delivery(a.id, done.id).await.unwrap(), Some(done.clone()));
    assert_eq!(
        s.delivery(a.id, failed.id).await.unwrap(),
        Some(failed.clone())
    );
    assert_eq!(
        s.delivery(a.id, other.id).await.unwrap(),
        Some(other.clone())
    );
    assert_eq!(s.next_delivery_due().await.unwrap(), Some(5_000));
    assert_eq!(s.due_deliveries(i64::MAX, 10).await.unwrap(), vec![other]);
    assert_eq!(
        s.list_deliveries(a.id, Some(gone.id), &Page::default())
            .await
            .unwrap(),
        vec![failed, done]
    );
}

// ---- the backend choice and PostgreSQL-only behaviour -----------------------------------------

#[tokio::test]
async fn open_rejects_an_unknown_scheme_without_echoing_the_url() {
    for (url, named) in [
        ("mysql://admin:hunter2@127.0.0.1/voxflow", Some("mysql")),
        ("admin:hunter2@127.0.0.1/voxflow", Some("admin")),
        ("hunter2", None),
        ("", None),
    ] {
        let Err(StoreError::Backend(message)) = voxflow_store::open(url).await else {
            panic!("{url:?} must be refused");
        };
        assert!(
            message.contains("unsupported database url scheme"),
            "{message}"
        );
        assert!(!message.contains("hunter2"), "{message} leaks the password");
        if let Some(scheme) = named {
            assert!(message.contains(scheme), "{message} names the scheme");
        }
    }
}

#[tokio::test]
async fn open_postgres_failure_does_not_echo_the_password() {
    // Nothing listens on loopback port 1: the connection is refused at once.
    let url = "postgres://admin:hunter2@127.0.0.1:1/voxflow";
    let Err(StoreError::Backend(message)) = voxflow_store::open(url).await else {
        panic!("connecting to a closed port must fail");
    };
    assert!(message.contains("refused"), "{message} says why");
    assert!(!message.contains("hunter2"), "{message} leaks the password");
}

#[tokio::test]
async fn postgres_nodes_starting_together_migrate_once() {
    with_postgres_database(|url| async move {
        let (one, two) = tokio::join!(PostgresStore::open(&url), PostgresStore::open(&url));
        let (one, two) = (one.unwrap(), two.unwrap());
        // Opening again applies nothing twice and keeps the rows.
        assert_eq!(
            one.bootstrap(Some("tok"), NOW).await.unwrap().as_deref(),
            Some("tok")
        );
        let again = voxflow_store::open(&url).await.unwrap();
        assert!(again.authenticate("tok").await.unwrap().is_some());
        assert_eq!(two.bootstrap(Some("x"), NOW).await.unwrap(), None);

        let mut conn = PgConnection::connect(&url).await.unwrap();
        let versions: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(versions, [1]);
        conn.close().await.unwrap();
    })
    .await;
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        with_database("postgres://u:p@127.0.0.1:5433/voxflow_test", "x"),
        "postgres://u:p@127.0.0.1:5433/x"
    );
    assert_eq!(
        with_database("postgresql://u@localhost/db?sslmode=disable", "x"),
        "postgresql://u@localhost/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://localhost", "x"),
        "postgres://localhost/x"
    );
}
