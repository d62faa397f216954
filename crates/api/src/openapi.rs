//! `GET /v1.0/openapi.json`: the OpenAPI 3.1 document of this API, and `GET /v1.0/docs`: a
//! browsable page that renders it (self-contained: no CDN, works offline).
//!
//! The document is built from one table of operations ([`operations`]) and a few shared
//! schemas. The tests keep it honest: every documented operation must be routed, every route in
//! `lib.rs` must be documented, and real responses must match their documented schemas.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value, json};

/// The document, built once.
static DOCUMENT: LazyLock<Value> = LazyLock::new(build);
/// The document as sent.
static DOCUMENT_TEXT: LazyLock<String> = LazyLock::new(|| document().to_string());

/// The whole OpenAPI 3.1 document.
pub(crate) fn document() -> &'static Value {
    &DOCUMENT
}

/// `GET /v1.0/openapi.json` (no token).
pub(crate) async fn json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT_TEXT.as_str(),
    )
        .into_response()
}

/// `GET /v1.0/docs` (no token): the page that renders `./openapi.json`.
pub(crate) async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

// ---------------------------------------------------------------------------------------------
// Schema helpers

fn sref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

fn uuid_or_null() -> Value {
    json!({"type": ["string", "null"], "format": "uuid"})
}

/// A UTC time as the API writes it.
fn time() -> Value {
    json!({"type": "string", "format": "date-time", "examples": ["2026-01-01T09:30:00.000000Z"]})
}

fn time_or_null() -> Value {
    json!({"type": ["string", "null"], "format": "date-time"})
}

fn text(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn int(description: &str) -> Value {
    json!({"type": "integer", "minimum": 0, "description": description})
}

fn one_of_text(values: &[&str], description: &str) -> Value {
    json!({"type": "string", "enum": values, "description": description})
}

/// An object with these properties, `required` of them always present.
fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties})
}

/// [`object`] that refuses unknown fields.
fn strict(required: &[&str], properties: Value) -> Value {
    let mut schema = object(required, properties);
    schema["additionalProperties"] = json!(false);
    schema
}

/// `{"result": [...], "next_page_token": ...}` of `item`.
fn list_of(item: &str) -> Value {
    object(
        &["result", "next_page_token"],
        json!({
            "result": {"type": "array", "items": sref(item)},
            "next_page_token": {
                "type": ["string", "null"],
                "description": "Pass as `page_token` for the next page; null on the last page."
            }
        }),
    )
}

/// Digits with an optional leading `+`, 1 to 20 digits.
fn e164ish(description: &str) -> Value {
    json!({"type": "string", "pattern": "^\\+?[0-9]{1,20}$", "description": description})
}

fn ip_list() -> Value {
    json!({"type": "array", "items": {"type": "string"},
           "description": "IP addresses or CIDR blocks (IPv4 or IPv6)."})
}

fn action_types() -> Vec<&'static str> {
    flow::ActionType::ALL
        .iter()
        .filter(|t| t.is_supported())
        .map(|t| t.as_str())
        .collect()
}

fn event_types() -> Vec<&'static str> {
    runtime::events::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Operations

/// One operation of the document.
struct Op {
    method: &'static str,
    path: &'static str,
    id: &'static str,
    tag: &'static str,
    summary: &'static str,
    description: &'static str,
    auth: bool,
    params: Vec<Value>,
    body: Option<(bool, Value)>,
    responses: Map<String, Value>,
    errors: Vec<u16>,
}

fn op(method: &'static str, path: &'static str, id: &'static str, tag: &'static str) -> Op {
    Op {
        method,
        path,
        id,
        tag,
        summary: "",
        description: "",
        auth: true,
        params: Vec::new(),
        body: None,
        responses: Map::new(),
        errors: Vec::new(),
    }
}

impl Op {
    fn summary(mut self, summary: &'static str) -> Self {
        self.summary = summary;
        self
    }

    fn describe(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    fn public(mut self) -> Self {
        self.auth = false;
        self
    }

    /// A JSON request body (`required`: whether it may be left empty).
    fn body(mut self, required: bool, schema: Value) -> Self {
        self.body = Some((required, schema));
        self.errors.push(400);
        self
    }

    /// A response with a JSON body.
    fn ok(self, status: u16, description: &str, schema: Value) -> Self {
        self.content(status, description, "application/json", schema)
    }

    /// A 200 with one record of `schema`.
    fn one(self, schema: &str) -> Self {
        self.ok(200, schema, sref(schema))
    }

    /// A response with a body of `media` type.
    fn content(mut self, status: u16, description: &str, media: &str, schema: Value) -> Self {
        let response = self
            .responses
            .entry(status.to_string())
            .or_insert_with(|| json!({"description": description, "content": {}}));
        if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
            content.insert(media.to_owned(), json!({"schema": schema}));
        }
        self
    }

    /// A response without a body.
    fn empty(mut self, status: u16, description: &str) -> Self {
        self.responses
            .insert(status.to_string(), json!({"description": description}));
        self
    }

    /// A paged list of `item`.
    fn list(mut self, item: &str) -> Self {
        self.params
            .push(json!({"$ref": "#/components/parameters/page_size"}));
        self.params
            .push(json!({"$ref": "#/components/parameters/page_token"}));
        self.errors.push(400);
        self.ok(200, "One page, newest first.", list_of(item))
    }

    fn param(mut self, param: Value) -> Self {
        self.params.push(param);
        self
    }

    /// Error statuses besides the ones every operation gets (401 with a token, 404 with a path
    /// id, 500).
    fn fails(mut self, statuses: &[u16]) -> Self {
        self.errors.extend_from_slice(statuses);
        self
    }

    fn to_json(&self) -> Value {
        let mut params: Vec<Value> = path_params(self.path)
            .into_iter()
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": uuid(),
                       "description": "A malformed id is answered like an unknown one: 404."})
            })
            .collect();
        params.extend(self.params.iter().cloned());
        let mut errors = self.errors.clone();
        if self.auth {
            errors.extend([401, 500]);
        }
        if self.path.contains('{') {
            errors.push(404);
        }
        errors.sort_unstable();
        errors.dedup();
        let mut responses = self.responses.clone();
        for status in errors {
            if let Some(name) = error_response_name(status) {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| json!({"$ref": format!("#/components/responses/{name}")}));
            }
        }
        let mut operation = json!({
            "operationId": self.id,
            "tags": [self.tag],
            "summary": self.summary,
            "responses": responses,
        });
        if !self.description.is_empty() {
            operation["description"] = json!(self.description);
        }
        if !params.is_empty() {
            operation["parameters"] = json!(params);
        }
        if let Some((required, schema)) = &self.body {
            operation["requestBody"] = json!({
                "required": required,
                "content": {"application/json": {"schema": schema}},
            });
        }
        if !self.auth {
            operation["security"] = json!([]);
        }
        operation
    }
}

/// The `{name}`s of a path template, in order.
fn path_params(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The shared error responses: status, component name, description.
const ERRORS: [(u16, &str, &str); 8] = [
    (
        400,
        "invalid_request",
        "The request is malformed or invalid (`invalid_request`); `path` names the (first) bad field, `details` lists every one when there are several.",
    ),
    (
        401,
        "unauthorized",
        "No API token, or an unknown or revoked one (`unauthorized`).",
    ),
    (403, "forbidden", "The token may not do this (`forbidden`)."),
    (
        404,
        "not_found",
        "No such record in the caller's account, or a malformed id (`not_found`).",
    ),
    (
        409,
        "conflict",
        "A uniqueness rule or the record's state refuses this (`conflict`).",
    ),
    (
        416,
        "range_not_satisfiable",
        "The `Range` misses the file (`range_not_satisfiable`); `Content-Range: bytes */LEN`.",
    ),
    (
        429,
        "limit_exceeded",
        "An account limit refused the request (`limit_exceeded`).",
    ),
    (
        500,
        "internal",
        "Something failed on the server (`internal`); details are logged, not sent.",
    ),
];

fn error_response_name(status: u16) -> Option<&'static str> {
    ERRORS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, name, _)| *name)
}

/// Every operation of the API.
#[allow(clippy::too_many_lines)] // one table, read top to bottom
fn operations() -> Vec<Op> {
    let any_object = json!({"type": "object"});
    vec![
        // --- operations (no token)
        op("get", "/health", "health", "operations")
            .public()
            .summary("Liveness: always `ok`")
            .content(200, "The text `ok`.", "text/plain", json!({"type": "string", "const": "ok"})),
        op("get", "/healthz", "healthz", "operations")
            .public()
            .summary("Readiness: store, media workers, SIP")
            .describe("No token; keep it on an internal network.")
            .ok(200, "Everything works.", sref("Health"))
            .ok(503, "A part is failing; `checks` says which.", sref("Health")),
        op("get", "/metrics", "metrics", "operations")
            .public()
            .summary("Prometheus metrics")
            .describe("Every runtime counter and gauge in the Prometheus text format (0.0.4). No token; keep it on an internal network.")
            .content(200, "Prometheus text exposition.", "text/plain", json!({"type": "string"})),
        op("get", "/v1.0/openapi.json", "openapi", "operations")
            .public()
            .summary("This OpenAPI 3.1 document")
            .ok(200, "The document.", any_object.clone()),
        op("get", "/v1.0/docs", "docs", "operations")
            .public()
            .summary("Browsable API reference (HTML)")
            .content(200, "A self-contained page that renders `openapi.json`.", "text/html", json!({"type": "string"})),
        // --- accounts and tokens
        op("get", "/v1.0/accounts", "listAccounts", "accounts")
            .summary("List accounts")
            .describe("Every account for an administrator's token; otherwise only the caller's own.")
            .list("Account"),
        op("post", "/v1.0/accounts", "createAccount", "accounts")
            .summary("Create an account (administrators)")
            .describe("Answers the account with its first API token in `token` (shown only here).")
            .body(true, sref("AccountCreate"))
            .one("Account")
            .fails(&[403, 409]),
        op("get", "/v1.0/accounts/{id}", "getAccount", "accounts")
            .summary("Get an account")
            .describe("The caller's own account, or any for an administrator (others are 404).")
            .one("Account"),
        op("put", "/v1.0/accounts/{id}", "updateAccount", "accounts")
            .summary("Change an account's name and limits (administrators)")
            .describe("Fields left out keep their value; `null` clears a limit. A non-administrator gets 403 for its own account and 404 for others.")
            .body(true, sref("AccountUpdate"))
            .one("Account")
            .fails(&[403]),
        op("get", "/v1.0/tokens", "listTokens", "accounts")
            .summary("List the API tokens of the caller's account")
            .list("Token"),
        op("post", "/v1.0/tokens", "createToken", "accounts")
            .summary("Create an API token")
            .describe("The body may be empty. The secret is in `token`, shown only here. `admin: true` needs an administrator's token (else 403).")
            .body(false, sref("TokenCreate"))
            .one("Token")
            .fails(&[403]),
        op("delete", "/v1.0/tokens/{id}", "deleteToken", "accounts")
            .summary("Revoke an API token")
            .describe("At once: the next request with it is a 401. Only an administrator may revoke an administrator's token (403).")
            .ok(200, "Revoked.", strict(&["id", "revoked"], json!({"id": uuid(), "revoked": {"type": "boolean", "const": true}})))
            .fails(&[403]),
        // --- flows
        op("get", "/v1.0/flows", "listFlows", "flows")
            .summary("List flows")
            .list("Flow"),
        op("post", "/v1.0/flows", "createFlow", "flows")
            .summary("Create a flow")
            .describe("The actions are validated: every problem is reported with its JSON path (e.g. `actions[3].option.target_ids[\"2\"]`) in `details`. Actions without an `id` get one.")
            .body(true, sref("FlowWrite"))
            .one("Flow"),
        op("get", "/v1.0/flows/{id}", "getFlow", "flows")
            .summary("Get a flow")
            .one("Flow"),
        op("put", "/v1.0/flows/{id}", "updateFlow", "flows")
            .summary("Replace a flow")
            .describe("Replaces name, detail, actions and on_complete_flow_id (fields left out become empty), validated as on create. Calls already running keep the version they started with.")
            .body(true, sref("FlowWrite"))
            .one("Flow"),
        op("delete", "/v1.0/flows/{id}", "deleteFlow", "flows")
            .summary("Delete a flow")
            .describe("Answers the flow as it was. Calls running it go on.")
            .one("Flow"),
        op("post", "/v1.0/flows/{id}/simulate", "simulateFlow", "flows")
            .summary("Dry-run a stored flow in simulated time")
            .describe("No call is placed and nothing is sent: HTTP replies, called parties and DTMF come from the script. An empty body runs with the defaults. Flows that `fetch_flow`/`call` name by a literal id and the script does not give are taken from the account's flows. 400 also when the stored flow no longer compiles.")
            .body(false, sref("SimulationScript"))
            .one("SimulationReport"),
        // --- numbers
        op("get", "/v1.0/numbers", "listNumbers", "numbers")
            .summary("List numbers")
            .list("Number"),
        op("post", "/v1.0/numbers", "createNumber", "numbers")
            .summary("Route a number to a flow")
            .describe("409 when the number is already taken.")
            .body(true, sref("NumberCreate"))
            .one("Number")
            .fails(&[409]),
        op("get", "/v1.0/numbers/{id}", "getNumber", "numbers")
            .summary("Get a number")
            .one("Number"),
        op("put", "/v1.0/numbers/{id}", "updateNumber", "numbers")
            .summary("Change a number, its flow or its name")
            .describe("Fields left out keep their value.")
            .body(true, sref("NumberUpdate"))
            .one("Number")
            .fails(&[409]),
        op("delete", "/v1.0/numbers/{id}", "deleteNumber", "numbers")
            .summary("Delete a number")
            .describe("Inbound calls to it are refused from now on. Answers the number as it was.")
            .one("Number"),
        // --- devices
        op("get", "/v1.0/devices", "listDevices", "devices")
            .summary("List SIP devices")
            .list("Device"),
        op("post", "/v1.0/devices", "createDevice", "devices")
            .summary("Create a SIP device (registrar user)")
            .describe("A device authenticates by digest (`password`), by source address (`allowed_ips`), or both. 409 when the username is taken.")
            .body(true, sref("DeviceCreate"))
            .one("Device")
            .fails(&[409]),
        op("get", "/v1.0/devices/{id}", "getDevice", "devices")
            .summary("Get a device with its current registrations")
            .one("Device"),
        op("delete", "/v1.0/devices/{id}", "deleteDevice", "devices")
            .summary("Delete a device")
            .empty(204, "Deleted."),
        // --- trunks
        op("get", "/v1.0/trunks", "listTrunks", "trunks")
            .summary("List SIP trunks")
            .list("Trunk"),
        op("post", "/v1.0/trunks", "createTrunk", "trunks")
            .summary("Create a SIP trunk")
            .body(true, sref("TrunkCreate"))
            .one("Trunk"),
        op("get", "/v1.0/trunks/{id}", "getTrunk", "trunks")
            .summary("Get a trunk with its registration state")
            .one("Trunk"),
        op("delete", "/v1.0/trunks/{id}", "deleteTrunk", "trunks")
            .summary("Delete a trunk")
            .empty(204, "Deleted."),
        // --- calls
        op("get", "/v1.0/calls", "listCalls", "calls")
            .summary("List calls")
            .list("Call"),
        op("post", "/v1.0/calls", "createCalls", "calls")
            .summary("Place calls and run a flow on each when it answers")
            .describe("One call per destination, running `flow_id` or the inline `actions`. All or nothing: when one destination cannot be placed, the calls already placed are hung up and the request fails naming `destinations[i]` (400; 403 for a destination outside the account's allowed prefixes; 429 for the concurrent-call or calls-per-second limit).")
            .body(true, sref("CallCreate"))
            .ok(200, "The calls placed, one per destination, in order (a plain array, not a page).", json!({"type": "array", "items": sref("Call")}))
            .fails(&[403, 429]),
        op("get", "/v1.0/calls/{id}", "getCall", "calls")
            .summary("Get a call (with its recording ids)")
            .one("Call"),
        op("post", "/v1.0/calls/{id}/hangup", "hangupCall", "calls")
            .summary("Hang up a call")
            .describe("Asks the live call to hang up and answers the record as it stands (the hangup shows a moment later). A call already over is answered unchanged.")
            .one("Call"),
        op("post", "/v1.0/calls/{id}/actions", "injectCallActions", "calls")
            .summary("Run actions on a live call now")
            .describe("The action in progress is cut short (its prompt stops), the given actions run, then the call's flow goes on after the interrupted action. Answers the call's activeflow. 409 when the call is not in progress or its flow is answering, starting a recording, bridged by `connect` or detecting an answering machine.")
            .body(true, strict(&["actions"], json!({"actions": {"type": "array", "items": sref("Action"), "minItems": 1}})))
            .one("Activeflow")
            .fails(&[409]),
        // --- activeflows
        op("get", "/v1.0/activeflows", "listActiveflows", "activeflows")
            .summary("List flow runs")
            .list("Activeflow"),
        op("get", "/v1.0/activeflows/{id}", "getActiveflow", "activeflows")
            .summary("Get a flow run (live while it runs)")
            .one("Activeflow"),
        op("post", "/v1.0/activeflows/{id}/stop", "stopActiveflow", "activeflows")
            .summary("Stop a flow run (the call is hung up)")
            .describe("409 once the run has ended.")
            .one("Activeflow")
            .fails(&[409]),
        op("post", "/v1.0/activeflows/{id}/continue", "continueActiveflow", "activeflows")
            .summary("Release a run parked in a `block` action")
            .describe("409 when the run is not blocked in that action (a stale request) or has ended.")
            .body(true, strict(&["current_action_id"], json!({
                "current_action_id": text("The id of the `block` action the run is parked in.")
            })))
            .one("Activeflow")
            .fails(&[409]),
        // --- recordings
        op("get", "/v1.0/recordings", "listRecordings", "recordings")
            .summary("List recordings")
            .param(json!({"name": "call_id", "in": "query", "required": false, "schema": uuid(),
                          "description": "Only this call's recordings."}))
            .list("Recording"),
        op("get", "/v1.0/recordings/{id}", "getRecording", "recordings")
            .summary("Get a recording")
            .one("Recording"),
        op("delete", "/v1.0/recordings/{id}", "deleteRecording", "recordings")
            .summary("Delete a recording and its file")
            .describe("409 while it is still being recorded.")
            .empty(204, "Deleted.")
            .fails(&[409]),
        op("get", "/v1.0/recordings/{id}/file", "getRecordingFile", "recordings")
            .summary("Download the recording's file (WAV, MP3 or OGG)")
            .describe("Streamed; one `Range: bytes=` range is honoured (several ranges or other units get the whole file). 409 while still recording; 404 also when the file is missing on this node.")
            .param(json!({"name": "Range", "in": "header", "required": false,
                          "schema": {"type": "string", "examples": ["bytes=0-1023"]}}))
            .content(200, "The whole file (`Accept-Ranges: bytes`, `Content-Disposition: attachment`), typed by the recording's `format`.", "audio/wav", json!({"type": "string", "contentMediaType": "audio/wav"}))
            .content(200, "", "audio/mpeg", json!({"type": "string", "contentMediaType": "audio/mpeg"}))
            .content(200, "", "audio/ogg", json!({"type": "string", "contentMediaType": "audio/ogg"}))
            .content(206, "The range asked for (`Content-Range`).", "audio/wav", json!({"type": "string", "contentMediaType": "audio/wav"}))
            .content(206, "", "audio/mpeg", json!({"type": "string", "contentMediaType": "audio/mpeg"}))
            .content(206, "", "audio/ogg", json!({"type": "string", "contentMediaType": "audio/ogg"}))
            .fails(&[409, 416]),
        // --- webhooks
        op("get", "/v1.0/webhooks", "listWebhooks", "webhooks")
            .summary("List webhooks")
            .list("Webhook"),
        op("post", "/v1.0/webhooks", "createWebhook", "webhooks")
            .summary("Create a webhook")
            .describe("The signing secret is in `secret`, shown only here (generated when not given).")
            .body(true, sref("WebhookCreate"))
            .one("Webhook"),
        op("get", "/v1.0/webhooks/{id}", "getWebhook", "webhooks")
            .summary("Get a webhook")
            .one("Webhook"),
        op("put", "/v1.0/webhooks/{id}", "updateWebhook", "webhooks")
            .summary("Change a webhook")
            .describe("Fields left out keep their value. `secret` is in the answer only when this request sets a new one.")
            .body(true, sref("WebhookUpdate"))
            .one("Webhook"),
        op("delete", "/v1.0/webhooks/{id}", "deleteWebhook", "webhooks")
            .summary("Delete a webhook")
            .describe("Its pending deliveries go with it. Answers the webhook as it was.")
            .one("Webhook"),
        op("post", "/v1.0/webhooks/{id}/resume", "resumeWebhook", "webhooks")
            .summary("End a pause now and send what it held back")
            .one("Webhook"),
        op("post", "/v1.0/webhooks/{id}/test", "testWebhook", "webhooks")
            .summary("Send a `ping` event to this webhook alone")
            .ok(200, "The event queued.", strict(&["event_id"], json!({"event_id": uuid()}))),
        op("get", "/v1.0/webhooks/{id}/deliveries", "listWebhookDeliveries", "webhooks")
            .summary("List a webhook's deliveries")
            .list("Delivery"),
        op("get", "/v1.0/webhooks/{id}/deliveries/{delivery_id}", "getWebhookDelivery", "webhooks")
            .summary("Get a delivery with its attempt log")
            .one("Delivery"),
        op("post", "/v1.0/webhooks/{id}/deliveries/{delivery_id}/retry", "retryWebhookDelivery", "webhooks")
            .summary("Send a failed delivery again now")
            .describe("409 when it is delivered, or pending (already queued; an attempt may be on the wire).")
            .one("Delivery")
            .fails(&[409]),
        // --- events
        op("get", "/v1.0/ws", "eventStream", "events")
            .summary("Event stream over a WebSocket")
            .describe(WS_PROTOCOL)
            .empty(101, "Switching Protocols: the WebSocket is open.")
            .content(400, "Not a WebSocket upgrade request (plain text, not the JSON error shape).", "text/plain", json!({"type": "string"}))
            .content(426, "The connection cannot be upgraded (plain text).", "text/plain", json!({"type": "string"})),
    ]
}

const WS_PROTOCOL: &str = "Token as `?token=` (browsers cannot set headers on a WebSocket) or `Authorization`. \
The client sends JSON text messages: `{\"type\":\"subscribe\",\"topics\":[...]}`, \
`{\"type\":\"unsubscribe\",\"topics\":[...]}`, `{\"type\":\"ping\"}`. Topics: `account` (every \
event of the account except the opt-in `activeflow_updated`; `customer_id:<own id>` is an alias), \
`call:<id>`, `activeflow:<id>` (includes `activeflow_updated`); at most 1000 per connection. The \
server answers `{\"type\":\"subscribed\"|\"unsubscribed\",\"topics\":[...]}` and \
`{\"type\":\"pong\"}`, sends each matching event once as `{\"type\":\"event\",\"topic\",\"event\"}` \
(`event` is an `Event`, the body a webhook gets), and reports problems as \
`{\"type\":\"error\",\"error\":{\"code\",\"message\",\"path\"?}}` (codes `invalid_request`, \
`limit_exceeded`, `lagged`). The server pings every 20 s and closes a connection silent for 60 s; \
messages are limited to 64 KiB.";

// ---------------------------------------------------------------------------------------------
// Shared schemas

fn error_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "FieldError".into(),
        object(
            &["path", "message"],
            json!({
                "path": text("JSON path of the bad field, e.g. `actions[3].option.target_ids[\"2\"]`; `$` for the whole body."),
                "message": text("What is wrong.")
            }),
        ),
    );
    let codes: Vec<&str> = ERRORS
        .iter()
        .map(|(_, code, _)| *code)
        .chain(["method_not_allowed"])
        .collect();
    schemas.insert(
        "Error".into(),
        object(
            &["error"],
            json!({"error": object(&["code", "message"], json!({
                "code": one_of_text(&codes, "Stable machine-readable code."),
                "message": text("Human-readable summary."),
                "path": text("The path of the (first) bad field (400 only)."),
                "details": {"type": "array", "items": sref("FieldError"),
                            "description": "Every bad field, when there are several (400 only)."}
            }))}),
        ),
    );
}

fn account_schemas(schemas: &mut Map<String, Value>) {
    let limit = |what: &str| {
        json!({"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000,
               "description": format!("{what}; null: no limit.")})
    };
    let prefixes = json!({"type": "array", "items": e164ish("e.g. `+1555`"),
        "description": "Destination prefixes outbound calls may dial (toll-fraud guard); empty: any."});
    let limits = json!({
        "max_concurrent_calls": limit("Calls at once"),
        "max_calls_per_second": limit("New outbound calls per second"),
        "destination_prefixes": prefixes,
    });
    let mut view = limits.clone();
    let mut create = limits.clone();
    let mut update = limits;
    update["destination_prefixes"]["type"] = json!(["array", "null"]);
    for (key, value) in [
        ("id", uuid()),
        ("name", text("")),
        ("tm_create", time()),
        ("tm_update", time()),
        (
            "token",
            text("The account's first API token: only in the answer to its creation."),
        ),
    ] {
        view[key] = value;
    }
    view["destination_prefixes"]["description"] =
        json!("Allowed destination prefixes; empty: any.");
    schemas.insert(
        "Account".into(),
        object(
            &[
                "id",
                "name",
                "max_concurrent_calls",
                "max_calls_per_second",
                "destination_prefixes",
                "tm_create",
                "tm_update",
            ],
            view,
        ),
    );
    create["name"] = json!({"type": "string", "minLength": 1});
    update["name"] = json!({"type": "string", "minLength": 1});
    schemas.insert("AccountCreate".into(), object(&["name"], create));
    schemas.insert("AccountUpdate".into(), object(&[], update));
    schemas.insert(
        "Token".into(),
        object(
            &["id", "customer_id", "name", "prefix", "admin", "tm_create"],
            json!({
                "id": uuid(), "customer_id": uuid(), "name": text(""),
                "prefix": text("The first characters of the secret, to tell tokens apart."),
                "admin": {"type": "boolean", "description": "May administer accounts."},
                "tm_create": time(),
                "token": text("The secret (`vf_…`): only in the answer to its creation.")
            }),
        ),
    );
    schemas.insert(
        "TokenCreate".into(),
        object(
            &[],
            json!({
                "name": {"type": ["string", "null"]},
                "admin": {"type": ["boolean", "null"], "default": false,
                          "description": "true needs an administrator's token."}
            }),
        ),
    );
}

fn flow_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "Action".into(),
        object(
            &["type"],
            json!({
                "id": text("Unique in the flow; assigned when absent. Branch targets and `next_id` name it."),
                "next_id": text("The action to go to next (default: the following one)."),
                "type": one_of_text(&action_types(), "The action type (the types this version supports; see docs/flows.md for each one's options)."),
                "option": {"type": ["object", "null"], "description": "The options of this type."}
            }),
        ),
    );
    let actions = json!({"type": "array", "items": sref("Action")});
    schemas.insert(
        "Flow".into(),
        object(
            &[
                "id",
                "customer_id",
                "name",
                "detail",
                "actions",
                "on_complete_flow_id",
                "tm_create",
                "tm_update",
            ],
            json!({
                "id": uuid(), "customer_id": uuid(), "name": text(""), "detail": text(""),
                "actions": actions,
                "on_complete_flow_id": uuid_or_null(),
                "tm_create": time(), "tm_update": time()
            }),
        ),
    );
    schemas.insert(
        "FlowWrite".into(),
        object(
            &["actions"],
            json!({
                "name": {"type": ["string", "null"]},
                "detail": {"type": ["string", "null"]},
                "actions": actions,
                "on_complete_flow_id": {"type": ["string", "null"],
                    "description": "A flow of this account (not this one) to run when this one completes; empty, null or the nil UUID: none."}
            }),
        ),
    );
}

fn number_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "Number".into(),
        object(
            &[
                "id",
                "customer_id",
                "number",
                "call_flow_id",
                "name",
                "tm_create",
                "tm_update",
            ],
            json!({
                "id": uuid(), "customer_id": uuid(), "number": text(""),
                "call_flow_id": uuid(), "name": text(""),
                "tm_create": time(), "tm_update": time()
            }),
        ),
    );
    let fields = json!({
        "number": e164ish("Digits with an optional leading `+`, e.g. `+15550100`."),
        "call_flow_id": {"type": "string", "format": "uuid", "description": "A flow of this account."},
        "name": {"type": ["string", "null"]}
    });
    schemas.insert(
        "NumberCreate".into(),
        object(&["number", "call_flow_id"], fields.clone()),
    );
    schemas.insert("NumberUpdate".into(), object(&[], fields));
}

fn sip_schemas(schemas: &mut Map<String, Value>) {
    let mut registration = object(
        &["state"],
        json!({
            "state": one_of_text(&["registering", "registered", "failed"], ""),
            "expires": int("Seconds granted (registered)."),
            "reason": text("Why it failed (failed).")
        }),
    );
    registration["description"] =
        json!("The outbound registration (trunks with `register: true`).");
    schemas.insert(
        "Device".into(),
        object(
            &["id", "customer_id", "username", "realm", "name", "allowed_ips", "password_set", "tm_create", "tm_update"],
            json!({
                "id": uuid(), "customer_id": uuid(), "username": text(""),
                "realm": text("The digest realm."), "name": text(""),
                "allowed_ips": ip_list(),
                "password_set": {"type": "boolean"},
                "registrations": {"type": "array", "description": "Current registrations (on `GET /v1.0/devices/{id}` only).",
                    "items": object(&["contact", "expires_at", "source", "tm_update"], json!({
                        "contact": text("The Contact URI."),
                        "expires_at": {"type": "integer", "description": "Unix seconds."},
                        "source": text("`udp:IP:PORT` or `tcp:IP:PORT`."),
                        "tm_update": time()
                    }))},
                "tm_create": time(), "tm_update": time()
            }),
        ),
    );
    schemas.insert(
        "DeviceCreate".into(),
        object(
            &["username"],
            json!({
                "username": {"type": "string", "pattern": "^[A-Za-z0-9._+-]{1,64}$"},
                "password": {"type": ["string", "null"], "minLength": 8, "maxLength": 128,
                             "description": "Required unless `allowed_ips` is given."},
                "allowed_ips": ip_list(),
                "name": {"type": ["string", "null"]}
            }),
        ),
    );
    schemas.insert(
        "Trunk".into(),
        object(
            &[
                "id",
                "customer_id",
                "name",
                "host",
                "port",
                "transport",
                "username",
                "password_set",
                "register",
                "register_expires",
                "caller_id",
                "allowed_ips",
                "tm_create",
                "tm_update",
            ],
            json!({
                "id": uuid(), "customer_id": uuid(), "name": text(""), "host": text(""),
                "port": {"type": ["integer", "null"]},
                "transport": one_of_text(&["udp", "tcp"], ""),
                "username": text(""), "password_set": {"type": "boolean"},
                "register": {"type": "boolean"}, "register_expires": int("Seconds."),
                "caller_id": text(""), "allowed_ips": ip_list(),
                "registration": registration,
                "tm_create": time(), "tm_update": time()
            }),
        ),
    );
    schemas.insert(
        "TrunkCreate".into(),
        object(
            &["host"],
            json!({
                "host": {"type": "string", "maxLength": 253, "description": "Host name or IP address."},
                "port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
                "transport": {"type": ["string", "null"], "enum": ["udp", "tcp", null], "default": "udp",
                              "description": "Case-insensitive."},
                "username": {"type": ["string", "null"], "description": "Required when `register` is true."},
                "password": {"type": ["string", "null"]},
                "register": {"type": ["boolean", "null"], "default": false},
                "register_expires": {"type": ["integer", "null"], "minimum": 60, "maximum": 86400, "default": 600},
                "caller_id": {"type": ["string", "null"]},
                "allowed_ips": ip_list(),
                "name": {"type": ["string", "null"]}
            }),
        ),
    );
}

fn call_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "Address".into(),
        object(
            &["type", "target"],
            json!({"type": {"type": "string", "minLength": 1}, "target": {"type": "string", "minLength": 1}}),
        ),
    );
    let mut dialable = schemas["Address"].clone();
    dialable["properties"]["type"] = one_of_text(
        &["tel", "sip", "endpoint", "extension"],
        "`sip` URIs are dialled directly, `tel` numbers through the account's trunk, `endpoint` reaches a registered device.",
    );
    schemas.insert(
        "Call".into(),
        object(
            &["id", "customer_id", "flow_id", "direction", "status", "source", "destination", "hangup_reason", "hangup_by", "duration_ms", "talk_duration_ms", "tm_create", "tm_ringing", "tm_progressing", "tm_hangup", "tm_update"],
            json!({
                "id": uuid(), "customer_id": uuid(), "flow_id": uuid_or_null(),
                "duration_ms": {"type": ["integer", "null"], "minimum": 0, "description": "From creation to hangup; null while live."},
                "talk_duration_ms": {"type": ["integer", "null"], "minimum": 0, "description": "From answer to hangup; null while live or when never answered."},
                "direction": one_of_text(&["incoming", "outgoing"], ""),
                "status": one_of_text(&["dialing", "ringing", "progressing", "terminating", "canceling", "hangup"], "`progressing`: answered."),
                "source": sref("Address"), "destination": sref("Address"),
                "hangup_reason": text("Why it ended (`normal`, `cancel`, `failed`, `timeout`, …); empty while live."),
                "hangup_by": text("`local` or `remote`; empty while live."),
                "tm_create": time(), "tm_ringing": time_or_null(),
                "tm_progressing": time_or_null(), "tm_hangup": time_or_null(), "tm_update": time(),
                "recording_ids": {"type": "array", "items": uuid(),
                                  "description": "Recordings, oldest first (on `GET /v1.0/calls/{id}` only)."}
            }),
        ),
    );
    schemas.insert(
        "CallCreate".into(),
        object(
            &["source", "destinations"],
            json!({
                "source": sref("Address"),
                "destinations": {"type": "array", "minItems": 1, "maxItems": 100, "items": dialable},
                "ring_timeout": {"type": ["integer", "null"], "minimum": 1, "maximum": 600, "default": 60,
                                 "description": "Seconds to ring before giving up."},
                "flow_id": {"type": ["string", "null"], "format": "uuid",
                            "description": "A flow of this account to run; when given, `actions` is ignored."},
                "actions": {"type": "array", "items": sref("Action"),
                            "description": "Inline flow, validated like a flow's; required without `flow_id`."}
            }),
        ),
    );
    schemas.insert(
        "Activeflow".into(),
        object(
            &["id", "customer_id", "flow_id", "reference_type", "reference_id", "status", "end_reason", "current_action_id", "execute_count", "executed_actions", "variables", "tm_create", "tm_end", "tm_update"],
            json!({
                "id": uuid(), "customer_id": uuid(), "flow_id": uuid_or_null(),
                "reference_type": {"type": "string", "const": "call"},
                "reference_id": {"type": "string", "format": "uuid", "description": "The call."},
                "status": one_of_text(&["running", "ended"], ""),
                "end_reason": text("`completed`, `stopped`, `hangup`, `call_ended`, `execution_limit`, `error: …`, `restart`; empty while running."),
                "current_action_id": text("The action running now (or the last one)."),
                "execute_count": int("Action starts so far."),
                "executed_actions": {"type": "array", "items": object(&["stack", "index", "id", "type", "tm_execute"], json!({
                    "stack": int("0 for the flow's own actions, 1 for fetched ones, …"),
                    "index": int("Index in its stack's program."),
                    "id": {"type": ["string", "null"]}, "type": text("Action type."), "tm_execute": time()
                }))},
                "variables": {"type": "object", "additionalProperties": {"type": "string"}},
                "tm_create": time(), "tm_end": time_or_null(), "tm_update": time()
            }),
        ),
    );
    schemas.insert(
        "Recording".into(),
        object(
            &[
                "id",
                "customer_id",
                "call_id",
                "status",
                "format",
                "channels",
                "duration_ms",
                "end_reason",
                "tm_start",
                "tm_end",
                "tm_update",
            ],
            json!({
                "id": uuid(), "customer_id": uuid(), "call_id": uuid(),
                "status": one_of_text(&["recording", "ended", "failed"], ""),
                "format": {"type": "string", "enum": ["wav", "mp3", "ogg"]},
                "channels": int(""), "duration_ms": int(""), "end_reason": text(""),
                "tm_start": time(), "tm_end": time_or_null(), "tm_update": time()
            }),
        ),
    );
}

fn webhook_schemas(schemas: &mut Map<String, Value>) {
    let mut types = vec!["*"];
    types.extend(event_types());
    let subscribed = json!({"type": "array", "minItems": 1, "items": {"type": "string", "enum": types},
        "description": "Event types to deliver; `*`: all except the opt-in `activeflow_updated`."});
    let fields = json!({
        "uri": {"type": "string", "description": "http(s) URL; private and loopback hosts are refused unless the server allows them."},
        "method": {"type": ["string", "null"], "enum": ["POST", "PUT", null], "default": "POST", "description": "Case-insensitive."},
        "secret": {"type": ["string", "null"], "minLength": 16, "maxLength": 256,
                   "description": "Signing secret; generated (`whsec_…`) when a new webhook has none."},
        "event_types": subscribed,
        "name": {"type": ["string", "null"]}
    });
    schemas.insert(
        "WebhookCreate".into(),
        object(&["uri", "event_types"], fields.clone()),
    );
    schemas.insert("WebhookUpdate".into(), object(&[], fields));
    schemas.insert(
        "Webhook".into(),
        object(
            &["id", "customer_id", "name", "uri", "method", "event_types", "status", "consecutive_failures", "paused_until", "last_error", "tm_create", "tm_update"],
            json!({
                "id": uuid(), "customer_id": uuid(), "name": text(""), "uri": text(""),
                "method": one_of_text(&["POST", "PUT"], ""),
                "event_types": strings(),
                "status": one_of_text(&["active", "paused"], "`paused` while the circuit breaker holds deliveries back."),
                "consecutive_failures": int(""), "paused_until": time_or_null(),
                "last_error": text(""), "tm_create": time(), "tm_update": time(),
                "secret": text("Only in the answer to its creation, or to an update that sets one.")
            }),
        ),
    );
    schemas.insert(
        "Delivery".into(),
        object(
            &["id", "webhook_id", "event_id", "event_type", "status", "attempts", "next_attempt_at", "last_status", "last_error", "attempt_log", "payload", "tm_create", "tm_update", "tm_delivered"],
            json!({
                "id": uuid(), "webhook_id": uuid(), "event_id": uuid(), "event_type": text(""),
                "status": one_of_text(&["pending", "delivered", "failed"], ""),
                "attempts": int(""),
                "next_attempt_at": {"type": ["string", "null"], "format": "date-time", "description": "When the next attempt is due (pending only)."},
                "last_status": {"type": ["integer", "null"], "description": "HTTP status of the last attempt."},
                "last_error": text(""),
                "attempt_log": {"type": "array", "items": {"type": "object", "description": "`{attempt, tm, status, error, duration_ms}`"}},
                "payload": sref("Event"),
                "tm_create": time(), "tm_update": time(), "tm_delivered": time_or_null()
            }),
        ),
    );
    schemas.insert(
        "Event".into(),
        object(
            &["id", "type", "customer_id", "tm_create", "data"],
            json!({
                "id": {"type": "string", "format": "uuid", "description": "The same in every delivery of the event."},
                "type": one_of_text(&event_types(), ""),
                "customer_id": uuid(), "call_id": uuid(), "activeflow_id": uuid(),
                "tm_create": time(),
                "data": {"description": "The record as the API shows it (a Call, Activeflow, Recording, …)."}
            }),
        ),
    );
}

fn ops_schemas(schemas: &mut Map<String, Value>) {
    schemas.insert(
        "Health".into(),
        object(
            &["status", "checks"],
            json!({
                "status": one_of_text(&["ok", "degraded"], ""),
                "checks": object(&["store", "media_workers", "media_workers_started", "sip"], json!({
                    "store": text("`ok` or the error."),
                    "media_workers": int("Workers that tick."),
                    "media_workers_started": int(""),
                    "sip": text("The SIP listen address, or `down`.")
                }))
            }),
        ),
    );
}

fn simulation_schemas(schemas: &mut Map<String, Value>) {
    let ms = int;
    let null_ms = |d: &str| json!({"type": ["integer", "null"], "minimum": 0, "description": d});
    schemas.insert(
        "SimulationScript".into(),
        strict(
            &[],
            json!({
                "dtmf": {"type": "array", "items": strict(&["digits", "at_ms"], json!({
                    "digits": {"type": "string", "pattern": "^[0-9*#A-Da-d]+$"},
                    "at_ms": ms("When the first key is pressed."),
                    "gap_ms": {"type": "integer", "minimum": 0, "default": 100}
                }))},
                "start_time": {"type": "string", "format": "date-time", "default": "2026-01-01T00:00:00Z",
                               "description": "Wall clock at the start, for `condition_datetime`."},
                "variables": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
                "http": {"type": "object", "description": "Replies for `fetch` and `webhook_send`, by URL.",
                    "additionalProperties": strict(&[], json!({
                        "status": {"type": "integer", "default": 200},
                        "body": {"description": "JSON, or a string holding the body text."},
                        "delay_ms": {"type": "integer", "minimum": 0, "default": 0}
                    }))},
                "flows": {"type": "object", "description": "Actions of flows by id, for `fetch_flow` and `call`.",
                          "additionalProperties": {"type": "array", "items": sref("Action")}},
                "calls": {"type": "object", "description": "How each `connect`/`call` destination behaves, by target.",
                    "additionalProperties": strict(&[], json!({
                        "result": {"type": "string", "enum": ["answer", "busy", "no_answer", "fail"], "default": "answer"},
                        "after_ms": null_ms("Default 3000 to answer, 1000 busy, 30000 no answer, 500 fail."),
                        "talk_ms": null_ms("How long the callee stays once answered; default 10000.")
                    }))},
                "amd": strict(&[], json!({
                    "result": {"type": "string", "enum": ["HUMAN", "MACHINE", "NOTSURE"], "default": "HUMAN"},
                    "cause": {"type": "string", "default": ""},
                    "after_ms": {"type": "integer", "minimum": 0, "default": 2000}
                })),
                "hangup_at_ms": null_ms("When the caller hangs up; null: never."),
                "answered": {"type": "boolean", "default": false, "description": "Already answered at the start (an outbound call)."},
                "continue_block_after_ms": {"type": "integer", "minimum": 0, "default": 1000},
                "max_ms": {"type": "integer", "minimum": 0, "maximum": 604_800_000_u64, "default": 3_600_000},
                "speech_ms_per_char": {"type": "integer", "minimum": 0, "default": 60},
                "play_ms": {"type": "integer", "minimum": 0, "default": 5000},
                "limits": strict(&[], json!({
                    "max_executions": null_ms(""), "max_variables": null_ms(""), "max_value_len": null_ms("")
                }))
            }),
        ),
    );
    let address = object(
        &["type", "target"],
        json!({"type": text(""), "target": text(""), "target_name": text("")}),
    );
    let opt_text = json!({"type": ["string", "null"]});
    let records = |required: &[&str], properties: Value| json!({"type": "array", "items": object(required, properties)});
    schemas.insert(
        "SimulationReport".into(),
        object(
            &["executed", "spoken", "played", "digits_sent", "webhooks", "fetches", "calls", "connects", "amd", "recordings", "hangup", "variables", "end_reason", "duration_ms", "log"],
            json!({
                "executed": records(&["at_ms", "stack", "index", "id", "type"], json!({
                    "at_ms": ms(""), "stack": ms(""), "index": ms(""), "id": opt_text, "type": text("")
                })),
                "spoken": strings(), "played": strings(), "digits_sent": strings(),
                "webhooks": records(&["at_ms", "method", "uri", "content_type", "body", "wait"], json!({
                    "at_ms": ms(""), "method": text(""), "uri": text(""), "content_type": text(""),
                    "body": text(""), "wait": {"type": "boolean"}, "status": ms(""), "error": text("")
                })),
                "fetches": records(&["at_ms", "action", "actions"], json!({
                    "at_ms": ms(""), "action": text(""), "method": text(""), "url": text(""),
                    "flow_id": text(""), "status": ms(""), "actions": ms("Actions fetched."), "error": text("")
                })),
                "calls": records(&["at_ms", "source", "flow_id", "actions", "chained", "early_execution", "legs"], json!({
                    "at_ms": ms(""), "source": {"anyOf": [address, {"type": "null"}]}, "flow_id": opt_text,
                    "actions": {"type": ["array", "null"]}, "chained": {"type": "boolean"},
                    "early_execution": {"type": "boolean"},
                    "legs": records(&["destination", "result", "at_ms"], json!({
                        "destination": address, "result": {"type": "string", "enum": ["answer", "busy", "no_answer", "fail"]},
                        "at_ms": ms(""), "run": sref("SimulationReport"), "note": text("")
                    }))
                })),
                "connects": records(&["at_ms", "source", "destinations", "answered", "reason", "ended_at_ms", "caller_hung_up"], json!({
                    "at_ms": ms(""), "source": {"anyOf": [address, {"type": "null"}]},
                    "destinations": {"type": "array", "items": address}, "answered": {"type": "boolean"},
                    "answered_by": text(""), "reason": text(""), "ended_at_ms": ms(""), "caller_hung_up": {"type": "boolean"}
                })),
                "amd": records(&["at_ms", "result", "cause"], json!({"at_ms": ms(""), "result": text(""), "cause": text("")})),
                "recordings": records(&["id", "started_at_ms", "format", "stopped_at_ms", "stop_reason"], json!({
                    "id": text(""), "started_at_ms": ms(""), "format": text(""),
                    "stopped_at_ms": null_ms(""), "stop_reason": opt_text
                })),
                "hangup": {"anyOf": [object(&["at_ms", "reason", "reference_id"], json!({
                    "at_ms": ms(""), "reason": text(""), "reference_id": opt_text
                })), {"type": "null"}]},
                "variables": {"type": "object", "additionalProperties": {"type": "string"}},
                "end_reason": text("`completed`, `stopped`, `hangup`, `call_ended`, `execution_limit`, `error: …`, `simulation_time_limit`, `simulation_event_limit`."),
                "duration_ms": ms("Simulated time at the end."),
                "log": strings()
            }),
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// The document

fn build() -> Value {
    let mut paths = Map::new();
    for op in operations() {
        let item = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method] = op.to_json();
    }
    let mut schemas = Map::new();
    error_schemas(&mut schemas);
    account_schemas(&mut schemas);
    flow_schemas(&mut schemas);
    number_schemas(&mut schemas);
    sip_schemas(&mut schemas);
    call_schemas(&mut schemas);
    webhook_schemas(&mut schemas);
    ops_schemas(&mut schemas);
    simulation_schemas(&mut schemas);
    let responses: Map<String, Value> = ERRORS
        .iter()
        .map(|(_, name, description)| {
            let response = json!({"description": description,
                "content": {"application/json": {"schema": sref("Error")}}});
            ((*name).to_owned(), response)
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "voxflow API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The native HTTP API of voxflow. Authenticate with `Authorization: Bearer <token>` or `?token=<token>`. Lists are paged: `page_size` (1 to 1000, default 100) and `page_token` (the previous page's `next_page_token`). Every error is `{\"error\": {\"code\", \"message\", \"path\"?, \"details\"?}}`; a method the path does not have is a 405 (`method_not_allowed`), an unknown path a 404."
        },
        "security": [{"bearer": []}, {"query_token": []}],
        "tags": [
            {"name": "accounts", "description": "Accounts (tenants), their limits, and API tokens."},
            {"name": "flows", "description": "Call flows: validated action lists."},
            {"name": "numbers", "description": "Numbers routed to flows for inbound calls."},
            {"name": "devices", "description": "SIP devices that register here."},
            {"name": "trunks", "description": "SIP trunks to carriers and PBXs."},
            {"name": "calls", "description": "Calls: place, read, hang up."},
            {"name": "activeflows", "description": "Runs of flows on calls."},
            {"name": "recordings", "description": "Call recordings and their WAV files."},
            {"name": "webhooks", "description": "Event targets and their delivery log."},
            {"name": "events", "description": "The live event stream."},
            {"name": "operations", "description": "Health, metrics and this document (no token)."}
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "query_token": {"type": "apiKey", "in": "query", "name": "token"}
            },
            "parameters": {
                "page_size": {"name": "page_size", "in": "query", "required": false,
                              "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                "page_token": {"name": "page_token", "in": "query", "required": false,
                               "schema": {"type": "string"},
                               "description": "`next_page_token` of the previous page."}
            },
            "responses": responses,
            "schemas": schemas
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    use tower::ServiceExt;
    use uuid::Uuid;

    use super::document;
    use crate::tests::{app, ivr, send};

    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

    /// Every `(path, method)` of the document.
    fn documented() -> BTreeMap<String, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for (path, item) in document()["paths"].as_object().unwrap() {
            let methods = item.as_object().unwrap().keys().cloned().collect();
            out.insert(path.clone(), methods);
        }
        out
    }

    /// The routes `router` in lib.rs declares, with their methods, read from its source.
    fn routes_in_source() -> BTreeMap<String, BTreeSet<String>> {
        let source = include_str!("lib.rs");
        let start = source
            .find("pub fn router(")
            .expect("lib.rs has `pub fn router(`");
        let body = &source[start..];
        let body = &body[..body.find(".fallback(").expect("router has a fallback")];
        let mut routes = BTreeMap::new();
        for chunk in body.split(".route(").skip(1) {
            let chunk = chunk.trim_start();
            let rest = chunk
                .strip_prefix('"')
                .expect("a route path is a string literal");
            let end = rest.find('"').unwrap();
            let (path, handlers) = (&rest[..end], &rest[end + 1..]);
            let mut methods = BTreeSet::new();
            for method in METHODS {
                let needle = format!("{method}(");
                let found = handlers.match_indices(&needle).any(|(i, _)| {
                    let before = handlers[..i].chars().next_back();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if found {
                    methods.insert(method.to_owned());
                }
            }
            assert!(
                !methods.is_empty(),
                "no method found for route {path} in lib.rs"
            );
            assert!(
                routes.insert(path.to_owned(), methods).is_none(),
                "{path} twice"
            );
        }
        routes
    }

    /// `path` with each `{param}` replaced by a fresh UUID.
    fn fill(path: &str) -> String {
        path.split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    Uuid::new_v4().to_string()
                } else {
                    seg.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str() {
            Some(r) => doc
                .pointer(r.strip_prefix('#').unwrap())
                .unwrap_or_else(|| panic!("{r} does not resolve")),
            None => value,
        }
    }

    #[test]
    fn openapi_document_is_well_formed() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let tags: BTreeSet<&str> = doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let at = format!("{method} {path}");
                assert!(METHODS.contains(&method.as_str()), "{at}");
                let id = op["operationId"].as_str().unwrap();
                assert!(ids.insert(id.to_owned()), "operationId {id} twice");
                assert!(!op["summary"].as_str().unwrap().is_empty(), "{at}: summary");
                for tag in op["tags"].as_array().unwrap() {
                    assert!(tags.contains(tag.as_str().unwrap()), "{at}: tag {tag}");
                }
                assert!(!op["responses"].as_object().unwrap().is_empty(), "{at}");
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| resolve(doc, p))
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                let in_path: BTreeSet<&str> = super::path_params(path).into_iter().collect();
                assert_eq!(declared, in_path, "{at}: path parameters");
            }
        }
        // Every $ref resolves.
        let mut stack = vec![doc];
        let mut refs = 0;
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        resolve(doc, value);
                        refs += 1;
                        assert!(r.starts_with("#/components/"), "{r}");
                    }
                    stack.extend(map.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        assert!(refs > 50, "{refs} refs");
        // The action types come from the flow crate.
        let types = &doc["components"]["schemas"]["Action"]["properties"]["type"]["enum"];
        assert!(types.as_array().unwrap().contains(&json!("digits_receive")));
        assert!(!types.as_array().unwrap().contains(&json!("queue_join")));
    }

    #[test]
    fn openapi_documents_exactly_the_routes_of_lib_rs() {
        let source = routes_in_source();
        let documented = documented();
        assert!(
            source.len() > 30,
            "{} routes read from lib.rs",
            source.len()
        );
        let undocumented: Vec<_> = source
            .iter()
            .filter(|(p, m)| documented.get(*p) != Some(*m))
            .collect();
        let stale: Vec<_> = documented
            .iter()
            .filter(|(p, m)| source.get(*p) != Some(*m))
            .collect();
        assert!(
            undocumented.is_empty() && stale.is_empty(),
            "routes in lib.rs not documented as such (add them to openapi::operations): \
             {undocumented:?}; documented but not routed so: {stale:?}"
        );
    }

    #[tokio::test]
    async fn openapi_every_documented_operation_is_routed() {
        let app = app().await;
        for (path, methods) in documented() {
            for method in &methods {
                let uri = fill(&path);
                let (status, body) = send(&app, &method.to_uppercase(), &uri, None).await;
                let at = format!("{method} {uri}");
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{at}: {body}");
                if !path.contains('{') {
                    assert_ne!(status, StatusCode::NOT_FOUND, "{at}: {body}");
                }
            }
            // A method the path does not have is a 405, not the 404 of an unknown path: the
            // path itself is routed (this is what proves it for item paths, whose GET with a
            // random id is a 404 either way).
            let other = METHODS
                .iter()
                .find(|m| !methods.contains(**m))
                .expect("some method is not documented");
            let (status, body) = send(&app, &other.to_uppercase(), &fill(&path), None).await;
            assert_eq!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{other} {path}: {body}"
            );
            assert_eq!(body["error"]["code"], "method_not_allowed");
        }
        // And an unknown path is the fallback's 404.
        let (status, _) = send(&app, "PATCH", "/v1.0/nothing-here", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    /// The problems of `value` against `schema` (a subset of JSON Schema: $ref, anyOf, type,
    /// enum, const, required, properties, additionalProperties, items, format uuid).
    fn check(doc: &Value, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let schema = resolve(doc, schema);
        if let Some(branches) = schema["anyOf"].as_array() {
            let fits = branches.iter().any(|b| {
                let mut errs = Vec::new();
                check(doc, b, value, at, &mut errs);
                errs.is_empty()
            });
            if !fits {
                out.push(format!("{at}: matches no anyOf branch: {value}"));
            }
            return;
        }
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let type_ok = types.is_empty()
            || types.contains(&kind)
            || (kind == "integer" && types.contains(&"number"));
        if !type_ok {
            out.push(format!(
                "{at}: {kind} where {types:?} is documented: {value}"
            ));
            return;
        }
        if let Some(values) = schema["enum"].as_array()
            && !values.contains(value)
        {
            out.push(format!("{at}: {value} is not in the documented enum"));
        }
        if let Some(c) = schema.get("const")
            && c != value
        {
            out.push(format!("{at}: {value} is not the documented {c}"));
        }
        if schema["format"] == "uuid"
            && let Value::String(s) = value
            && Uuid::parse_str(s).is_err()
        {
            out.push(format!("{at}: {s} is not a uuid"));
        }
        match value {
            Value::Object(map) => {
                for key in schema["required"].as_array().into_iter().flatten() {
                    if !map.contains_key(key.as_str().unwrap()) {
                        out.push(format!("{at}: documented-required {key} is missing"));
                    }
                }
                let props = schema["properties"].as_object();
                for (key, v) in map {
                    let path = format!("{at}.{key}");
                    match (
                        props.and_then(|p| p.get(key)),
                        schema.get("additionalProperties"),
                    ) {
                        (Some(s), _) => check(doc, s, v, &path, out),
                        (None, Some(Value::Bool(false))) | (None, None) if props.is_some() => {
                            out.push(format!("{path}: not documented"));
                        }
                        (None, Some(s @ Value::Object(_))) => check(doc, s, v, &path, out),
                        (None, _) => {}
                    }
                }
            }
            Value::Array(items) => {
                if let Some(s) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        check(doc, s, v, &format!("{at}[{i}]"), out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Send a request and check the answer against what the document says of `template`.
    async fn checked(
        app: &axum::Router,
        method: &str,
        template: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let doc = document();
        let body = body.map(|b| b.to_string());
        let (status, answer) = send(app, &method.to_uppercase(), uri, body.as_deref()).await;
        let op = &doc["paths"][template][method];
        assert!(op.is_object(), "{method} {template} is not documented");
        let response = &op["responses"][status.as_str()];
        assert!(
            response.is_object(),
            "{method} {uri}: status {status} is not documented: {answer}"
        );
        let response = resolve(doc, response);
        if let Some(schema) = response.pointer("/content/application~1json/schema") {
            let mut errors = Vec::new();
            check(doc, schema, &answer, "$", &mut errors);
            assert!(
                errors.is_empty(),
                "{method} {uri} ({status}): {errors:#?}\n{answer:#}"
            );
        }
        (status, answer)
    }

    #[tokio::test]
    async fn openapi_responses_match_their_documented_schemas() {
        let app = app().await;

        // The document itself and the page need no token.
        for (uri, kind) in [
            ("/v1.0/openapi.json", "application/json"),
            ("/v1.0/docs", "text/html"),
        ] {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{uri}");
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
            assert!(content_type.starts_with(kind), "{uri}: {content_type}");
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
                .await
                .unwrap();
            if kind == "application/json" {
                let served: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(&served, document());
            } else {
                assert!(String::from_utf8_lossy(&bytes).contains("openapi.json"));
            }
        }

        let (status, _) = checked(&app, "get", "/healthz", "/healthz", None).await;
        assert!(status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE);

        // Accounts and tokens.
        let (status, account) = checked(
            &app,
            "post",
            "/v1.0/accounts",
            "/v1.0/accounts",
            Some(json!({
                "name": "acme", "max_concurrent_calls": 2, "destination_prefixes": ["+1555"]
            })),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let id = account["id"].as_str().unwrap();
        checked(
            &app,
            "put",
            "/v1.0/accounts/{id}",
            &format!("/v1.0/accounts/{id}"),
            Some(json!({"max_concurrent_calls": null})),
        )
        .await;
        checked(&app, "get", "/v1.0/accounts", "/v1.0/accounts", None).await;
        let (_, token) = checked(
            &app,
            "post",
            "/v1.0/tokens",
            "/v1.0/tokens",
            Some(json!({"name": "ci"})),
        )
        .await;
        checked(&app, "get", "/v1.0/tokens", "/v1.0/tokens", None).await;
        let id = token["id"].as_str().unwrap();
        checked(
            &app,
            "delete",
            "/v1.0/tokens/{id}",
            &format!("/v1.0/tokens/{id}"),
            None,
        )
        .await;

        // Flows, numbers, simulation; and the error shape.
        let (status, flow) = checked(&app, "post", "/v1.0/flows", "/v1.0/flows", Some(ivr())).await;
        assert_eq!(status, StatusCode::OK);
        let flow_id = flow["id"].as_str().unwrap().to_owned();
        let item = format!("/v1.0/flows/{flow_id}");
        checked(&app, "put", "/v1.0/flows/{id}", &item, Some(ivr())).await;
        checked(&app, "get", "/v1.0/flows", "/v1.0/flows", None).await;
        let (status, report) = checked(
            &app,
            "post",
            "/v1.0/flows/{id}/simulate",
            &format!("{item}/simulate"),
            Some(json!({"dtmf": [{"digits": "1", "at_ms": 2000}]})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{report}");
        let (status, err) = checked(
            &app,
            "post",
            "/v1.0/flows",
            "/v1.0/flows",
            Some(json!({
                "actions": [{"type": "nope"}, {"type": "goto", "option": {"target_id": "missing"}}]
            })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(err["error"]["details"].is_array(), "{err}");
        let missing = format!("/v1.0/flows/{}", Uuid::new_v4());
        let (status, _) = checked(&app, "get", "/v1.0/flows/{id}", &missing, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, number) = checked(
            &app,
            "post",
            "/v1.0/numbers",
            "/v1.0/numbers",
            Some(json!({"number": "+15550199", "call_flow_id": flow_id})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{number}");
        let (status, _) = checked(
            &app,
            "post",
            "/v1.0/numbers",
            "/v1.0/numbers",
            Some(json!({"number": "+15550199", "call_flow_id": flow_id})),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        checked(&app, "get", "/v1.0/numbers", "/v1.0/numbers", None).await;

        // Devices and trunks.
        let (status, device) = checked(
            &app,
            "post",
            "/v1.0/devices",
            "/v1.0/devices",
            Some(json!({"username": "alice", "password": "correct horse"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{device}");
        let id = device["id"].as_str().unwrap();
        checked(
            &app,
            "get",
            "/v1.0/devices/{id}",
            &format!("/v1.0/devices/{id}"),
            None,
        )
        .await;
        checked(&app, "get", "/v1.0/devices", "/v1.0/devices", None).await;
        let (status, trunk) = checked(
            &app,
            "post",
            "/v1.0/trunks",
            "/v1.0/trunks",
            Some(json!({"host": "sip.example.com", "port": 5060, "transport": "TCP"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{trunk}");
        let id = trunk["id"].as_str().unwrap();
        checked(
            &app,
            "get",
            "/v1.0/trunks/{id}",
            &format!("/v1.0/trunks/{id}"),
            None,
        )
        .await;
        checked(&app, "get", "/v1.0/trunks", "/v1.0/trunks", None).await;

        // Webhooks.
        let (status, hook) = checked(
            &app,
            "post",
            "/v1.0/webhooks",
            "/v1.0/webhooks",
            Some(json!({"uri": "https://hooks.example.com/voxflow", "event_types": ["*"]})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{hook}");
        let item = format!("/v1.0/webhooks/{}", hook["id"].as_str().unwrap());
        checked(
            &app,
            "put",
            "/v1.0/webhooks/{id}",
            &item,
            Some(json!({"method": "put"})),
        )
        .await;
        checked(
            &app,
            "post",
            "/v1.0/webhooks/{id}/test",
            &format!("{item}/test"),
            None,
        )
        .await;
        checked(
            &app,
            "post",
            "/v1.0/webhooks/{id}/resume",
            &format!("{item}/resume"),
            None,
        )
        .await;
        checked(
            &app,
            "get",
            "/v1.0/webhooks/{id}/deliveries",
            &format!("{item}/deliveries"),
            None,
        )
        .await;
        checked(&app, "get", "/v1.0/webhooks", "/v1.0/webhooks", None).await;

        // A call that rings out to a port where nobody answers, then is hung up.
        let (status, placed) = checked(
            &app,
            "post",
            "/v1.0/calls",
            "/v1.0/calls",
            Some(json!({
                "source": {"type": "tel", "target": "+15550100"},
                "destinations": [{"type": "sip", "target": "sip:+15550101@127.0.0.1:9"}],
                "actions": [{"type": "answer"}, {"type": "hangup"}],
            })),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{placed}");
        let item = format!("/v1.0/calls/{}", placed[0]["id"].as_str().unwrap());
        let (_, call) = checked(&app, "get", "/v1.0/calls/{id}", &item, None).await;
        assert!(call["recording_ids"].is_array(), "{call}");
        checked(
            &app,
            "post",
            "/v1.0/calls/{id}/hangup",
            &format!("{item}/hangup"),
            None,
        )
        .await;
        checked(&app, "get", "/v1.0/calls", "/v1.0/calls", None).await;
        checked(&app, "get", "/v1.0/activeflows", "/v1.0/activeflows", None).await;
        checked(&app, "get", "/v1.0/recordings", "/v1.0/recordings", None).await;
        let file = format!("/v1.0/recordings/{}/file", Uuid::new_v4());
        let (status, _) = checked(&app, "get", "/v1.0/recordings/{id}/file", &file, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Not an upgrade request: one of the documented plain-text refusals.
        let (status, _) = checked(&app, "get", "/v1.0/ws", "/v1.0/ws", None).await;
        assert!(status.is_client_error(), "{status}");
    }

    #[test]
    fn openapi_schema_check_catches_drift() {
        let doc = document();
        let flow = json!({
            "id": Uuid::new_v4(), "customer_id": Uuid::new_v4(), "name": "", "detail": "",
            "actions": [{"type": "talk", "option": {"text": "hi"}}], "on_complete_flow_id": null,
            "tm_create": "t", "tm_update": "t"
        });
        let problems = |value: &Value| {
            let mut out = Vec::new();
            check(
                doc,
                &json!({"$ref": "#/components/schemas/Flow"}),
                value,
                "$",
                &mut out,
            );
            out
        };
        assert_eq!(problems(&flow), Vec::<String>::new());
        let mut extra = flow.clone();
        extra["new_field"] = json!(1);
        assert_eq!(problems(&extra), ["$.new_field: not documented"]);
        let mut missing = flow.clone();
        missing.as_object_mut().unwrap().remove("detail");
        assert_eq!(problems(&missing).len(), 1);
        let mut wrong = flow;
        wrong["actions"][0]["type"] = json!("queue_join");
        wrong["on_complete_flow_id"] = json!(5);
        assert_eq!(problems(&wrong).len(), 2, "{:?}", problems(&wrong));
    }
}
