//! The HTTP and store side of flow actions: `webhook_send`, `fetch` and `fetch_flow`. Each runs
//! off the call's task and reports back with a flow input; nothing here can hang a call (every
//! request has a timeout and a size cap). Every URL passes the outbound URL guard first
//! ([`url_guard`]).

use std::time::Duration;

use flow::HttpMethod;
use serde_json::Value;
use uuid::Uuid;

use crate::url_guard::{self, HttpClient};

/// Timeout of one `webhook_send` or `fetch` request, connection included.
pub(crate) const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `fetch` reply read.
const MAX_FETCH_BYTES: usize = 1024 * 1024;

fn method(m: HttpMethod) -> reqwest::Method {
    match m {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
        HttpMethod::Delete => reqwest::Method::DELETE,
    }
}

/// `webhook_send`: one request; the HTTP status, or why there was none. A GET carries no body.
pub(crate) async fn send_webhook(
    http: &HttpClient,
    m: HttpMethod,
    uri: &str,
    content_type: &str,
    body: String,
) -> Result<u16, String> {
    let mut request = http
        .request(method(m), uri)
        .map_err(|e| e.to_string())?
        .timeout(HTTP_TIMEOUT);
    if m != HttpMethod::Get {
        request = request.header("Content-Type", content_type).body(body);
    }
    let response = request.send().await.map_err(describe)?;
    Ok(response.status().as_u16())
}

/// `fetch`: send `{"activeflow_id", "reference_id"}` as JSON (as query parameters for GET) and
/// read the actions: HTTP 200 with a JSON array of actions, or an object with an `actions`
/// array. Actions without ids get fresh ones.
pub(crate) async fn fetch_actions(
    http: &HttpClient,
    m: HttpMethod,
    url: &str,
    activeflow_id: Uuid,
    reference_id: Option<Uuid>,
) -> Result<Value, String> {
    let activeflow = activeflow_id.to_string();
    let reference = reference_id.map(|id| id.to_string()).unwrap_or_default();
    let mut request = if m == HttpMethod::Get {
        let separator = if url.contains('?') { '&' } else { '?' };
        let with_query =
            format!("{url}{separator}activeflow_id={activeflow}&reference_id={reference}");
        http.request(method(m), &with_query)
            .map_err(|e| e.to_string())?
    } else {
        http.request(method(m), url)
            .map_err(|e| e.to_string())?
            .json(&serde_json::json!({
                "activeflow_id": activeflow,
                "reference_id": reference,
            }))
    };
    request = request.timeout(HTTP_TIMEOUT);
    let mut response = request.send().await.map_err(describe)?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("{url} answered HTTP {status}, not 200"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if body.len() + chunk.len() > MAX_FETCH_BYTES {
            return Err(format!("{url} sent more than {MAX_FETCH_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url} did not send JSON: {e}"))?;
    actions_of(value).ok_or_else(|| {
        format!("{url} sent JSON that is not an array of actions (nor an object with \"actions\")")
    })
}

/// `fetch_flow`: the actions of the account's stored flow `flow_id`.
pub(crate) async fn flow_actions(
    store: &dyn store::Store,
    account: Uuid,
    flow_id: &str,
) -> Result<Value, String> {
    let id = Uuid::parse_str(flow_id).map_err(|_| format!("flow id {flow_id:?} is not a UUID"))?;
    let record = store
        .flow(account, id)
        .await
        .map_err(|e| format!("reading flow {id}: {e}"))?
        .ok_or_else(|| format!("no flow {id}"))?;
    actions_of(record.actions).ok_or_else(|| format!("flow {id} has no action array"))
}

/// An action array (or an object's `actions`), with ids given to the actions that lack one.
fn actions_of(value: Value) -> Option<Value> {
    let mut actions = match value {
        Value::Array(_) => value,
        Value::Object(mut map) => match map.remove("actions") {
            Some(a @ Value::Array(_)) => a,
            _ => return None,
        },
        _ => return None,
    };
    flow::assign_ids(&mut actions, || Uuid::new_v4().to_string());
    Some(actions)
}

/// A request error as a sentence (timeouts and the URL guard's refusals named as such).
fn describe(e: reqwest::Error) -> String {
    if let Some(refused) = url_guard::refusal(&e) {
        refused
    } else if e.is_timeout() {
        format!("timed out after {} s", HTTP_TIMEOUT.as_secs())
    } else if e.is_connect() {
        format!("could not connect: {e}")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn actions_are_taken_from_arrays_or_an_actions_field_and_given_ids() {
        let a = actions_of(serde_json::json!([{"type": "answer"}])).unwrap();
        assert!(a[0]["id"].as_str().is_some_and(|id| id.len() == 36));
        let b =
            actions_of(serde_json::json!({"actions": [{"id": "x", "type": "hangup"}]})).unwrap();
        assert_eq!(b[0]["id"], "x");
        assert!(actions_of(serde_json::json!({"actions": 3})).is_none());
        assert!(actions_of(serde_json::json!("hello")).is_none());
    }

    /// A loopback server answering every request with an action array, counting them.
    async fn serve() -> (String, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(serde_json::json!([{"type": "hangup"}])) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("127.0.0.1:{port}"), hits)
    }

    fn client(allow_private: bool) -> HttpClient {
        HttpClient::build(
            url_guard::UrlPolicy { allow_private },
            reqwest::Client::builder(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn fetch_and_webhooks_to_private_targets_are_refused_unless_allowed() {
        let (addr, hits) = serve().await;
        let port = addr.rsplit(':').next().unwrap();
        let id = Uuid::new_v4();
        let guarded = client(false);
        for url in [
            format!("http://{addr}/flow"),
            format!("http://localhost:{port}/flow"),
            format!("http://[::ffff:127.0.0.1]:{port}/flow"),
        ] {
            for m in [HttpMethod::Get, HttpMethod::Post] {
                let err = fetch_actions(&guarded, m, &url, id, None)
                    .await
                    .unwrap_err();
                assert!(err.starts_with("refused: "), "{url}: {err}");
                assert!(err.contains("--allow-private-urls"), "{err}");
                let err = send_webhook(&guarded, m, &url, "text/plain", "x".into())
                    .await
                    .unwrap_err();
                assert!(err.starts_with("refused: "), "{url}: {err}");
            }
        }
        assert_eq!(
            send_webhook(
                &guarded,
                HttpMethod::Post,
                "http://127.0.0.1:9/",
                "text/plain",
                String::new()
            )
            .await
            .unwrap_err(),
            "refused: 127.0.0.1 is a loopback address; start voxflow with --allow-private-urls to \
             allow private and loopback targets"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");

        let allowed = client(true);
        let url = format!("http://{addr}/flow");
        let actions = fetch_actions(&allowed, HttpMethod::Get, &url, id, None)
            .await
            .unwrap();
        assert_eq!(actions[0]["type"], "hangup");
        assert_eq!(
            send_webhook(&allowed, HttpMethod::Post, &url, "text/plain", "x".into()).await,
            Ok(200)
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }
}
