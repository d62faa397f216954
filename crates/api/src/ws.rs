//! `GET /v1.0/ws?token=…`: the event stream over a WebSocket.
//!
//! The client sends JSON text messages:
//! `{"type":"subscribe","topics":[...]}`, `{"type":"unsubscribe","topics":[...]}`,
//! `{"type":"ping"}`. Topics: `account` (every event of the caller's account except the opt-in
//! `activeflow_updated`), `call:<id>` (the events of one call), `activeflow:<id>` (one flow
//! run, `activeflow_updated` included). The server answers `subscribed` / `unsubscribed` /
//! `pong`, sends each matching event once as `{"type":"event","topic":…,"event":{…}}` (the
//! same body a webhook gets), and reports problems as `{"type":"error","error":{code,message,
//! path?}}`. Events of other accounts never reach a socket, whatever it subscribes to.
//!
//! Keep-alive: the server sends a WebSocket ping every [`PING_EVERY`] and closes a connection
//! that has sent nothing (not even a pong) for [`IDLE_LIMIT`].

use std::collections::BTreeSet;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::AppState;
use crate::auth::Auth;
use runtime::events::Event;

/// How often the server pings.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(20);
/// How long a silent client is kept.
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Most topics one connection may hold.
const MAX_TOPICS: usize = 1000;
/// Largest client message accepted.
const MAX_MESSAGE: usize = 64 * 1024;

/// A subscription topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Topic {
    Account,
    Call(Uuid),
    Activeflow(Uuid),
}

impl Topic {
    fn parse(text: &str, account: Uuid) -> Option<Topic> {
        if text == "account" || text == format!("customer_id:{account}") {
            return Some(Topic::Account);
        }
        let (kind, id) = text.split_once(':')?;
        let id = Uuid::parse_str(id).ok()?;
        match kind {
            "call" => Some(Topic::Call(id)),
            "activeflow" => Some(Topic::Activeflow(id)),
            _ => None,
        }
    }

    fn name(self) -> String {
        match self {
            Topic::Account => "account".into(),
            Topic::Call(id) => format!("call:{id}"),
            Topic::Activeflow(id) => format!("activeflow:{id}"),
        }
    }

    /// Whether this topic carries `event` (already known to be of the socket's account).
    fn matches(self, event: &Event) -> bool {
        match self {
            Topic::Account => !event.event_type.opt_in(),
            Topic::Call(id) => event.call_id == Some(id) && !event.event_type.opt_in(),
            Topic::Activeflow(id) => event.activeflow_id == Some(id),
        }
    }
}

/// The upgrade handler.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Auth(account): Auth,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| serve(state, account.id, socket))
}

fn text(value: &Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn error(code: &str, message: &str, path: Option<&str>) -> Message {
    let mut error = json!({"code": code, "message": message});
    if let Some(path) = path {
        error["path"] = json!(path);
    }
    text(&json!({"type": "error", "error": error}))
}

/// What a client message asks for; the reply (if any) to send.
fn handle(message: &str, account: Uuid, topics: &mut BTreeSet<Topic>) -> Message {
    let Ok(Value::Object(request)) = serde_json::from_str::<Value>(message) else {
        return error(
            "invalid_request",
            "messages must be JSON objects",
            Some("$"),
        );
    };
    let kind = request.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "ping" => text(&json!({"type": "pong"})),
        "subscribe" | "unsubscribe" => {
            let Some(Value::Array(list)) = request.get("topics") else {
                return error(
                    "invalid_request",
                    "topics must be an array of topic names",
                    Some("topics"),
                );
            };
            let mut parsed = Vec::with_capacity(list.len());
            for (i, item) in list.iter().enumerate() {
                match item.as_str().and_then(|t| Topic::parse(t, account)) {
                    Some(topic) => parsed.push(topic),
                    None => {
                        return error(
                            "invalid_request",
                            "unknown topic: use account, call:<id> or activeflow:<id>",
                            Some(&format!("topics[{i}]")),
                        );
                    }
                }
            }
            if kind == "subscribe" {
                if topics.len() + parsed.len() > MAX_TOPICS {
                    return error(
                        "limit_exceeded",
                        &format!("at most {MAX_TOPICS} topics per connection"),
                        Some("topics"),
                    );
                }
                topics.extend(parsed.iter().copied());
            } else {
                for topic in &parsed {
                    topics.remove(topic);
                }
            }
            let names: Vec<String> = parsed.iter().map(|t| t.name()).collect();
            let reply = if kind == "subscribe" {
                "subscribed"
            } else {
                "unsubscribed"
            };
            text(&json!({"type": reply, "topics": names}))
        }
        _ => error(
            "invalid_request",
            "type must be subscribe, unsubscribe or ping",
            Some("type"),
        ),
    }
}

async fn serve(state: AppState, account: Uuid, mut socket: WebSocket) {
    let mut events = state.engine.events().subscribe();
    let mut topics = BTreeSet::new();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let out = tokio::select! {
            incoming = socket.recv() => {
                last_heard = tokio::time::Instant::now();
                match incoming {
                    Some(Ok(Message::Text(message))) => Some(handle(&message, account, &mut topics)),
                    Some(Ok(Message::Binary(_))) => Some(error("invalid_request", "send JSON text messages", None)),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                }
            }
            event = events.recv() => match event {
                Ok(event) if event.account_id == account => topics
                    .iter()
                    .find(|t| t.matches(&event))
                    .map(|topic| text(&json!({"type": "event", "topic": topic.name(), "event": &*event}))),
                Ok(_) => None,
                Err(RecvError::Lagged(missed)) => Some(error(
                    "lagged",
                    &format!("{missed} events were dropped: this connection reads too slowly"),
                    None,
                )),
                Err(RecvError::Closed) => return,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_LIMIT {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Some(Message::Ping(axum::body::Bytes::from_static(b"voxflow")))
            }
        };
        if let Some(message) = out
            && socket.send(message).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::events::EventType;

    #[test]
    fn ws_topics_parse_and_match_only_what_they_name() {
        let account = Uuid::new_v4();
        let call = Uuid::new_v4();
        assert_eq!(Topic::parse("account", account), Some(Topic::Account));
        assert_eq!(
            Topic::parse(&format!("customer_id:{account}"), account),
            Some(Topic::Account)
        );
        assert_eq!(
            Topic::parse(&format!("call:{call}"), account),
            Some(Topic::Call(call))
        );
        assert_eq!(Topic::parse("call:nope", account), None);
        assert_eq!(Topic::parse(&format!("customer_id:{call}"), account), None);

        let mut event = Event::new(EventType::CallHangup, account, Value::Null);
        event.call_id = Some(call);
        assert!(Topic::Call(call).matches(&event));
        assert!(!Topic::Call(Uuid::new_v4()).matches(&event));
        assert!(Topic::Account.matches(&event));
        let mut update = Event::new(EventType::ActiveflowUpdated, account, Value::Null);
        update.activeflow_id = Some(call);
        assert!(!Topic::Account.matches(&update), "opt-in");
        assert!(Topic::Activeflow(call).matches(&update));
    }

    #[test]
    fn ws_requests_are_answered_or_refused_with_a_path() {
        let account = Uuid::new_v4();
        let mut topics = BTreeSet::new();
        let reply = |m: Message| match m {
            Message::Text(t) => serde_json::from_str::<Value>(&t).unwrap(),
            other => panic!("{other:?}"),
        };
        let r = reply(handle(
            r#"{"type":"subscribe","topics":["account"]}"#,
            account,
            &mut topics,
        ));
        assert_eq!(r["type"], "subscribed");
        assert_eq!(topics.len(), 1);
        let r = reply(handle(
            r#"{"type":"subscribe","topics":["account","bogus"]}"#,
            account,
            &mut topics,
        ));
        assert_eq!(r["error"]["path"], "topics[1]");
        let r = reply(handle(r#"{"type":"ping"}"#, account, &mut topics));
        assert_eq!(r["type"], "pong");
        let r = reply(handle("nope", account, &mut topics));
        assert_eq!(r["error"]["code"], "invalid_request");
        let r = reply(handle(
            r#"{"type":"unsubscribe","topics":["account"]}"#,
            account,
            &mut topics,
        ));
        assert_eq!(r["type"], "unsubscribed");
        assert!(topics.is_empty());
    }
}
