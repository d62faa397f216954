//! Every flow in `examples/flows` compiles and, simulated with the script next to it
//! (`NAME.script.json`), takes the expected path, says the expected things and ends as expected.
//! A few more scenarios per example vary the script inline.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use voxflow_flow::{self as flow, Program, Report, Script};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/flows")
}

fn read_json(name: &str) -> Value {
    let path = examples_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example flow `name` (without `.json`), compiled without warnings.
fn example(name: &str) -> Arc<Program> {
    let doc = read_json(&format!("{name}.json"));
    assert!(
        doc["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{name}: needs a name"
    );
    let program = flow::compile(&doc["actions"]).unwrap_or_else(|d| panic!("{name}: {d:#?}"));
    assert_eq!(program.warnings(), [], "{name}");
    Arc::new(program)
}

/// The script kept next to the example.
fn example_script(name: &str) -> Script {
    let text = std::fs::read_to_string(examples_dir().join(format!("{name}.script.json"))).unwrap();
    Script::from_json(&text).unwrap_or_else(|e| panic!("{name}.script.json: {e}"))
}

/// The script next to the example, with `changes` merged into it at the top level.
fn script_with(name: &str, changes: Value) -> Script {
    let mut base = read_json(&format!("{name}.script.json"));
    for (k, v) in changes.as_object().unwrap() {
        base[k] = v.clone();
    }
    Script::from_value(&base).unwrap()
}

/// The ids of the actions run, in order (fetched actions as `stack N: id`).
fn path(report: &Report) -> Vec<String> {
    report
        .executed
        .iter()
        .map(|e| {
            let id = e.id.clone().unwrap_or_else(|| e.action_type.clone());
            if e.stack == 0 {
                id
            } else {
                format!("stack {}: {id}", e.stack)
            }
        })
        .collect()
}

const EXAMPLES: [&str; 4] = [
    "ivr-menu",
    "notification-call",
    "time-of-day-router",
    "fetch-driven",
];

#[test]
fn every_example_has_a_script_and_is_covered_here() {
    let mut flows = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".json")
            && !stem.ends_with(".script")
        {
            flows.push(stem.to_owned());
            assert!(
                examples_dir().join(format!("{stem}.script.json")).exists(),
                "{stem} has no script"
            );
        }
    }
    flows.sort();
    let mut expected: Vec<String> = EXAMPLES.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(flows, expected);
    for name in EXAMPLES {
        let report = flow::simulate(example(name), &example_script(name));
        assert!(!report.executed.is_empty(), "{name}");
        assert_eq!(
            report,
            flow::simulate(example(name), &example_script(name)),
            "{name}: deterministic"
        );
    }
}

#[test]
fn ivr_menu_wrong_key_then_sales() {
    let report = flow::simulate(example("ivr-menu"), &example_script("ivr-menu"));
    assert_eq!(
        path(&report),
        [
            "answer",
            "clear",
            "menu",
            "collect",
            "route",
            "retry",
            "invalid",
            "menu",
            "collect",
            "route",
            "sales",
            "sales_connect",
            "bye"
        ]
    );
    assert_eq!(
        report.spoken,
        [
            "Welcome to Acme. For sales press 1. For support press 2.",
            "That is not a valid choice.",
            "Welcome to Acme. For sales press 1. For support press 2.",
            "Connecting you to sales.",
        ]
    );
    let connect = &report.connects[0];
    assert_eq!(connect.answered_by.as_deref(), Some("+15550101"));
    assert_eq!(report.end_reason, "hangup");
    // The 1 at 9 s interrupts the second menu; sales talks 24 chars (1740 ms); then 4 s of
    // ringing and a minute bridged.
    assert_eq!(report.duration_ms, 9000 + 1740 + 4000 + 60_000);
}

#[test]
fn ivr_menu_support_and_silence() {
    let s = script_with(
        "ivr-menu",
        json!({"dtmf": [{"digits": "2", "at_ms": 1000}]}),
    );
    let report = flow::simulate(example("ivr-menu"), &s);
    assert_eq!(
        path(&report),
        [
            "answer", "clear", "menu", "collect", "route", "support", "bye"
        ]
    );
    assert_eq!(report.end_reason, "hangup");

    // Nobody presses anything: the menu is heard three times, then the apology.
    let s = script_with("ivr-menu", json!({"dtmf": []}));
    let report = flow::simulate(example("ivr-menu"), &s);
    let menus = report
        .spoken
        .iter()
        .filter(|t| t.starts_with("Welcome"))
        .count();
    assert_eq!(menus, 3);
    assert_eq!(
        report.spoken.last().map(String::as_str),
        Some("Sorry, we did not get a valid choice. Goodbye.")
    );
    assert_eq!(path(&report).last().map(String::as_str), Some("bye"));
    assert_eq!(report.end_reason, "hangup");
}

#[test]
fn notification_call_unacknowledged_escalates() {
    let report = flow::simulate(
        example("notification-call"),
        &example_script("notification-call"),
    );
    assert_eq!(
        path(&report),
        [
            "detect",
            "is_machine",
            "message",
            "collect",
            "acknowledged",
            "repeat",
            "message",
            "collect",
            "acknowledged",
            "repeat",
            "message",
            "collect",
            "acknowledged",
            "repeat",
            "escalate",
            "escalated",
            "bye"
        ]
    );
    let message = "This is Acme operations. Server db-1 is down. Press 1 to acknowledge.";
    assert_eq!(report.spoken[..3], [message, message, message]);
    assert_eq!(report.amd[0].result, "HUMAN");
    let leg = &report.calls[0].legs[0];
    assert_eq!(leg.destination.target, "+15550199");
    let escalation = leg.run.as_ref().unwrap();
    assert_eq!(
        escalation.spoken,
        ["Escalation from Acme operations: server db-1 is down and nobody acknowledged it."]
    );
    assert_eq!(escalation.end_reason, "hangup");
    assert!(report.webhooks.is_empty());
    assert_eq!(report.end_reason, "hangup");
}

#[test]
fn notification_call_acknowledged_or_voicemail() {
    let s = script_with(
        "notification-call",
        json!({"dtmf": [{"digits": "1", "at_ms": 3000}], "http": {"http://127.0.0.1:8089/alerts/db-1/ack": {"status": 200}}}),
    );
    let report = flow::simulate(example("notification-call"), &s);
    assert_eq!(
        path(&report),
        [
            "detect",
            "is_machine",
            "message",
            "collect",
            "acknowledged",
            "ack",
            "thanks",
            "bye"
        ]
    );
    assert_eq!(
        report.webhooks[0].uri,
        "http://127.0.0.1:8089/alerts/db-1/ack"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&report.webhooks[0].body).unwrap(),
        json!({"server": "db-1", "acknowledged": true})
    );
    assert_eq!(report.webhooks[0].status, Some(200));
    assert!(report.calls.is_empty());

    let s = script_with(
        "notification-call",
        json!({"amd": {"result": "MACHINE", "cause": "long_greeting"}}),
    );
    let report = flow::simulate(example("notification-call"), &s);
    assert_eq!(path(&report), ["detect", "is_machine", "voicemail", "bye"]);
    assert_eq!(
        report.spoken,
        ["This is an automated notice from Acme operations about db-1. Please call us back."]
    );
}

#[test]
fn time_of_day_router_open_hours_connect() {
    let report = flow::simulate(
        example("time-of-day-router"),
        &example_script("time-of-day-router"),
    );
    assert_eq!(
        path(&report),
        [
            "answer",
            "weekday_morning",
            "before_five",
            "open",
            "front_desk",
            "reached",
            "done"
        ]
    );
    assert_eq!(
        report.spoken,
        ["Thank you for calling Acme. Connecting you to the front desk."]
    );
    assert_eq!(report.connects[0].answered_by.as_deref(), Some("+15550111"));
    assert_eq!(report.end_reason, "hangup");
}

#[test]
fn time_of_day_router_closed_takes_a_message() {
    let closed_path = [
        "answer",
        "weekday_morning",
        "closed",
        "record",
        "wait_hash",
        "record_stop",
        "goodbye",
        "bye",
    ];
    // Saturday morning, and a weekday evening.
    for start in ["2026-11-28T10:30:00Z", "2026-11-23T17:00:00Z"] {
        let s = script_with(
            "time-of-day-router",
            json!({"start_time": start, "dtmf": [{"digits": "#", "at_ms": 30000}]}),
        );
        let report = flow::simulate(example("time-of-day-router"), &s);
        let mut expected: Vec<&str> = closed_path.to_vec();
        if start.starts_with("2026-11-23") {
            expected.insert(2, "before_five");
        }
        assert_eq!(path(&report), expected, "{start}");
        assert_eq!(
            report.spoken.last().map(String::as_str),
            Some("Thank you. Goodbye.")
        );
        let recording = &report.recordings[0];
        assert_eq!(recording.id, "rec-1");
        assert_eq!(recording.stopped_at_ms, Some(30_000));
        assert_eq!(recording.stop_reason.as_deref(), Some("end_of_key"));
        assert_eq!(report.end_reason, "hangup");
    }

    // Nobody at the front desk: the caller may leave a message.
    let s = script_with(
        "time-of-day-router",
        json!({"calls": {"+15550110": {"result": "busy"}, "+15550111": {"result": "no_answer"}}, "hangup_at_ms": 60000}),
    );
    let report = flow::simulate(example("time-of-day-router"), &s);
    assert_eq!(
        path(&report)[4..],
        ["front_desk", "reached", "closed", "record", "wait_hash"]
    );
    assert_eq!(report.variables["voipbin.connect.reason"], "busy");
    assert_eq!(report.end_reason, "call_ended");
}

#[test]
fn fetch_driven_runs_the_fetched_actions() {
    let report = flow::simulate(example("fetch-driven"), &example_script("fetch-driven"));
    assert_eq!(
        path(&report),
        [
            "answer",
            "ask",
            "collect",
            "remember",
            "fetch_next",
            "stack 1: greet",
            "stack 1: notify",
            "goodbye",
            "bye"
        ]
    );
    assert_eq!(
        report.spoken,
        [
            "Please enter your four digit customer number.",
            "Welcome back, customer 4711. Your order has shipped.",
            "Thank you for calling. Goodbye.",
        ]
    );
    assert_eq!(
        report.fetches[0].url.as_deref(),
        Some("http://127.0.0.1:8089/ivr/next?customer=4711")
    );
    assert_eq!(report.webhooks[0].body, r#"{"customer": "4711"}"#);
    assert_eq!(report.variables["customer"], "4711");
    // The last key at 4000 + 3 * 400 ms, then the 120 ms fetch.
    let greet = report
        .executed
        .iter()
        .find(|e| e.id.as_deref() == Some("greet"))
        .unwrap();
    assert_eq!(greet.at_ms, 5320);
    assert_eq!(report.end_reason, "hangup");

    // An unknown customer: no scripted reply, the fetch fails and ends the run.
    let s = script_with(
        "fetch-driven",
        json!({"dtmf": [{"digits": "0000", "at_ms": 4000}]}),
    );
    let report = flow::simulate(example("fetch-driven"), &s);
    assert_eq!(
        report.end_reason,
        "error: fetch failed: no scripted reply for URL"
    );
}
