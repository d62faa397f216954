//! The platform's one event stream.
//!
//! Calls, activeflows, recordings and `webhook_send` publish [`Event`]s here as they happen. Two
//! consumers read them: live subscribers (the WebSocket API) through a broadcast channel that
//! may drop for a subscriber that falls far behind, and the webhook outbox (see `webhooks`)
//! through an unbounded queue that never drops, which writes one delivery per matching webhook
//! to the store before anything is sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::views::{ActiveflowView, CallView, RecordingView};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A call record was created (inbound INVITE taken, or an outbound call placed).
    CallCreated,
    /// The call is ringing (inbound: we sent 180; outbound: the callee rings).
    CallRinging,
    /// The call was answered.
    CallAnswered,
    /// The call ended; `hangup_reason` and `hangup_by` say why and by whom.
    CallHangup,
    /// A flow started running on a call.
    ActiveflowStarted,
    /// An activeflow moved to its next action (opt-in: only when asked for by name).
    ActiveflowUpdated,
    /// A flow run ended; `end_reason` says why.
    ActiveflowEnded,
    /// A recording started.
    RecordingStarted,
    /// A recording ended and its file is complete.
    RecordingFinished,
    /// A recording was cut short (write error, restart).
    RecordingFailed,
    /// A flow's `webhook_send` action got an answer or failed.
    WebhookSendResult,
    /// A webhook target kept failing and its deliveries are held back for a while (none are
    /// dropped).
    WebhookPaused,
    /// A paused webhook target answered again; held deliveries are going out.
    WebhookResumed,
    /// A test event sent on request (`POST /v1.0/webhooks/{id}/test`).
    Ping,
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [EventType; 14] = [
        EventType::CallCreated,
        EventType::CallRinging,
        EventType::CallAnswered,
        EventType::CallHangup,
        EventType::ActiveflowStarted,
        EventType::ActiveflowUpdated,
        EventType::ActiveflowEnded,
        EventType::RecordingStarted,
        EventType::RecordingFinished,
        EventType::RecordingFailed,
        EventType::WebhookSendResult,
        EventType::WebhookPaused,
        EventType::WebhookResumed,
        EventType::Ping,
    ];

    /// The name used in payloads, filters and topics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CallCreated => "call_created",
            EventType::CallRinging => "call_ringing",
            EventType::CallAnswered => "call_answered",
            EventType::CallHangup => "call_hangup",
            EventType::ActiveflowStarted => "activeflow_started",
            EventType::ActiveflowUpdated => "activeflow_updated",
            EventType::ActiveflowEnded => "activeflow_ended",
            EventType::RecordingStarted => "recording_started",
            EventType::RecordingFinished => "recording_finished",
            EventType::RecordingFailed => "recording_failed",
            EventType::WebhookSendResult => "webhook_send_result",
            EventType::WebhookPaused => "webhook_paused",
            EventType::WebhookResumed => "webhook_resumed",
            EventType::Ping => "ping",
        }
    }

    /// The type with this name.
    #[must_use]
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Sent only to those who name it: `*` does not include it (it fires on every action).
    #[must_use]
    pub fn opt_in(self) -> bool {
        self == EventType::ActiveflowUpdated
    }

    /// Whether a filter list (`["call_hangup", ...]` or `["*"]`) selects this type.
    #[must_use]
    pub fn selected_by(self, filter: &[String]) -> bool {
        filter
            .iter()
            .any(|f| f == self.as_str() || (f == "*" && !self.opt_in()))
    }
}

/// One thing that happened, as every consumer sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Event id (the same in every delivery of it).
    pub id: Uuid,
    /// The type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The account it belongs to.
    #[serde(rename = "customer_id")]
    pub account_id: Uuid,
    /// The call it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<Uuid>,
    /// The activeflow it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activeflow_id: Option<Uuid>,
    /// When it happened, UTC ISO-8601.
    pub tm_create: String,
    /// The record as the API shows it (a call, activeflow, recording, ...).
    pub data: Value,
}

impl Event {
    /// A new event now.
    #[must_use]
    pub fn new(event_type: EventType, account_id: Uuid, data: Value) -> Event {
        Event {
            id: Uuid::new_v4(),
            event_type,
            account_id,
            call_id: None,
            activeflow_id: None,
            tm_create: store::utc_now(),
            data,
        }
    }

    /// The JSON body of a webhook delivery (and of a WebSocket event message's `event`).
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

fn to_value(view: impl Serialize) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// Live subscribers fall behind by at most this many events before they lose the oldest.
const LIVE_BUFFER: usize = 4096;

/// Where events are published. Cheap to share; publishing never blocks.
pub struct EventBus {
    live: broadcast::Sender<Arc<Event>>,
    durable: mpsc::UnboundedSender<Arc<Event>>,
    /// The last status published per live call, to turn record updates into transitions.
    call_status: Mutex<HashMap<Uuid, String>>,
}

impl EventBus {
    /// A bus and the receiving end of its never-dropping queue (for the webhook outbox).
    #[must_use]
    pub fn new() -> (EventBus, mpsc::UnboundedReceiver<Arc<Event>>) {
        let (live, _) = broadcast::channel(LIVE_BUFFER);
        let (durable, queue) = mpsc::unbounded_channel();
        let bus = EventBus {
            live,
            durable,
            call_status: Mutex::new(HashMap::new()),
        };
        (bus, queue)
    }

    /// Every event from now on (for a live subscriber).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.live.subscribe()
    }

    /// Publish one event to both consumers.
    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let _ = self.durable.send(Arc::clone(&event));
        let _ = self.live.send(event);
    }

    /// A call record was written: publish the transitions since the last one seen
    /// (`call_created`, then `call_ringing` / `call_answered` / `call_hangup` as its status
    /// reaches them). When this update ends a call seen live before, `on_end` runs first, so
    /// whoever reacts to `call_hangup` finds what the call held already given back.
    pub fn call_changed(&self, record: &store::CallRecord, on_end: impl FnOnce()) {
        let previous = {
            let mut seen = self
                .call_status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if record.status == "hangup" {
                seen.remove(&record.id)
            } else {
                seen.insert(record.id, record.status.clone())
            }
        };
        if previous.as_deref() == Some(record.status.as_str()) {
            return;
        }
        if previous.is_some() && record.status == "hangup" {
            on_end();
        }
        let mut types = Vec::with_capacity(2);
        if previous.is_none() && record.status != "hangup" {
            types.push(EventType::CallCreated);
        }
        match record.status.as_str() {
            "ringing" => types.push(EventType::CallRinging),
            "progressing" => types.push(EventType::CallAnswered),
            "hangup" => types.push(EventType::CallHangup),
            _ => {}
        }
        for event_type in types {
            let mut event = Event::new(
                event_type,
                record.account_id,
                to_value(CallView::from(record.clone())),
            );
            event.call_id = Some(record.id);
            self.publish(event);
        }
    }

    /// An activeflow record was written at its start or end.
    pub fn activeflow_changed(&self, record: &store::ActiveflowRecord) {
        let event_type = if record.status == store::ActiveflowRecord::RUNNING {
            EventType::ActiveflowStarted
        } else {
            EventType::ActiveflowEnded
        };
        self.publish_activeflow(event_type, record);
    }

    /// A running activeflow moved to its next action (`activeflow_updated`, opt-in).
    pub fn activeflow_updated(&self, record: &store::ActiveflowRecord) {
        self.publish_activeflow(EventType::ActiveflowUpdated, record);
    }

    fn publish_activeflow(&self, event_type: EventType, record: &store::ActiveflowRecord) {
        let mut event = Event::new(
            event_type,
            record.account_id,
            to_value(ActiveflowView::from(record.clone())),
        );
        event.call_id = Some(record.call_id);
        event.activeflow_id = Some(record.id);
        self.publish(event);
    }

    /// A recording record was written (started, finished or failed).
    pub fn recording_changed(&self, record: &store::RecordingRecord) {
        let event_type = match record.status.as_str() {
            store::RecordingRecord::RECORDING => EventType::RecordingStarted,
            store::RecordingRecord::ENDED => EventType::RecordingFinished,
            _ => EventType::RecordingFailed,
        };
        let mut event = Event::new(
            event_type,
            record.account_id,
            to_value(RecordingView::from(record.clone())),
        );
        event.call_id = Some(record.call_id);
        self.publish(event);
    }

    /// Whether anyone listens live (lets callers skip building opt-in events nobody reads).
    #[must_use]
    pub fn has_live_subscribers(&self) -> bool {
        self.live.receiver_count() > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(status: &str) -> store::CallRecord {
        store::CallRecord {
            id: Uuid::nil(),
            account_id: Uuid::nil(),
            flow_id: None,
            direction: "outgoing".into(),
            status: status.into(),
            source_type: "tel".into(),
            source_target: "+15550100".into(),
            destination_type: "tel".into(),
            destination_target: "+15550101".into(),
            hangup_reason: String::new(),
            hangup_by: String::new(),
            sip_call_id: "x".into(),
            tm_create: "2026-11-22T00:00:00.000000Z".into(),
            tm_ringing: None,
            tm_progressing: None,
            tm_hangup: None,
            tm_update: "2026-11-22T00:00:00.000000Z".into(),
        }
    }

    fn drain(queue: &mut mpsc::UnboundedReceiver<Arc<Event>>) -> Vec<&'static str> {
        let mut types = Vec::new();
        while let Ok(event) = queue.try_recv() {
            types.push(event.event_type.as_str());
        }
        types
    }

    #[test]
    fn events_call_updates_become_transitions_once_each() {
        let (bus, mut queue) = EventBus::new();
        bus.call_changed(&call("dialing"), || {});
        assert_eq!(drain(&mut queue), ["call_created"]);
        bus.call_changed(&call("ringing"), || {});
        bus.call_changed(&call("ringing"), || {});
        assert_eq!(drain(&mut queue), ["call_ringing"]);
        bus.call_changed(&call("progressing"), || {});
        bus.call_changed(&call("progressing"), || {});
        assert_eq!(drain(&mut queue), ["call_answered"]);
        bus.call_changed(&call("terminating"), || {});
        bus.call_changed(&call("hangup"), || {});
        assert_eq!(drain(&mut queue), ["call_hangup"]);
        assert!(bus.call_status.lock().unwrap().is_empty());
    }

    #[test]
    fn events_a_call_is_ended_before_its_hangup_is_published() {
        let (bus, mut queue) = EventBus::new();
        bus.call_changed(&call("progressing"), || panic!("the call has not ended"));
        drain(&mut queue);
        let queued_at_end = std::cell::Cell::new(None);
        bus.call_changed(&call("hangup"), || queued_at_end.set(Some(queue.len())));
        assert_eq!(
            queued_at_end.get(),
            Some(0),
            "on_end ran before call_hangup was queued"
        );
        assert_eq!(drain(&mut queue), ["call_hangup"]);
        // A record that was never seen live frees nothing.
        bus.call_changed(&call("hangup"), || panic!("not seen live"));
    }

    #[test]
    fn events_inbound_ringing_at_creation_gives_both() {
        let (bus, mut queue) = EventBus::new();
        bus.call_changed(&call("ringing"), || {});
        assert_eq!(drain(&mut queue), ["call_created", "call_ringing"]);
    }

    #[test]
    fn events_filters_star_skips_opt_in_types() {
        let star = vec!["*".to_owned()];
        assert!(EventType::CallHangup.selected_by(&star));
        assert!(!EventType::ActiveflowUpdated.selected_by(&star));
        assert!(EventType::ActiveflowUpdated.selected_by(&["activeflow_updated".to_owned()]));
        assert!(!EventType::CallCreated.selected_by(&["call_hangup".to_owned()]));
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn events_envelope_names_type_and_customer() {
        let (bus, mut queue) = EventBus::new();
        bus.call_changed(&call("hangup"), || {});
        let event = queue.try_recv().unwrap();
        let json: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(json["type"], "call_hangup");
        assert_eq!(json["customer_id"], Uuid::nil().to_string());
        assert_eq!(json["data"]["status"], "hangup");
        assert_eq!(json["data"]["source"]["target"], "+15550100");
    }
}
