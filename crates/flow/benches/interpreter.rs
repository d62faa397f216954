//! Flow interpreter throughput: actions started per second on one core, and the memory of one
//! activeflow. Run with `cargo bench -p voxflow-flow --bench interpreter` (results in
//! `bench/RESULTS.md`).
//!
//! Each simulated call runs an IVR loop — `talk`, `digits_receive`, `branch`, `variable_set`,
//! `condition_variable`, `goto` with a loop count — and the shell's replies (media finished, a
//! digit) are fed back at once, so what is measured is the interpreter alone: compile once,
//! then per call: create, start, poll commands, answer them, until `Finished`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use voxflow_flow as flow;

use flow::{Command, Input, Interpreter, Limits, Variables};

/// The process's resident memory in bytes (Linux `/proc/self/statm`; 0 elsewhere).
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn ivr() -> serde_json::Value {
    serde_json::json!([
        {"id": "answer", "type": "answer"},
        {"id": "menu", "type": "talk", "option": {"text": "press 1 for sales, 2 for support ${voipbin.call.source.target}", "language": "en-US"}},
        {"id": "read", "type": "digits_receive", "option": {"duration": 5000, "length": 1}},
        {"id": "route", "type": "branch", "option": {"variable": "voipbin.call.digits", "default_target_id": "again", "target_ids": {"1": "sales", "2": "support"}}},
        {"id": "sales", "type": "variable_set", "option": {"key": "choice", "value": "sales-${voipbin.call.source.target}"}, "next_id": "check"},
        {"id": "support", "type": "variable_set", "option": {"key": "choice", "value": "support"}, "next_id": "check"},
        {"id": "check", "type": "condition_variable", "option": {"condition": "==", "variable": "choice", "value_type": "string", "value_string": "sales-+15550001", "false_target_id": "again"}},
        {"id": "again", "type": "goto", "option": {"target_id": "menu", "loop_count": 12}},
        {"id": "bye", "type": "hangup"}
    ])
}

/// Runs one call to its end; returns the number of actions started.
fn run_call(program: &Arc<flow::Program>, digit: char) -> usize {
    let mut vars = Variables::new();
    vars.insert(
        "voipbin.call.source.target".to_owned(),
        "+15550001".to_owned(),
    );
    let limits = Limits {
        max_executions: 1_000,
        ..Limits::default()
    };
    let mut interp = Interpreter::new(program.clone(), vars, limits);
    let now = Instant::now();
    interp.handle_input(now, Input::Start);
    while let Some(cmd) = interp.poll_command() {
        match cmd {
            Command::Answer => interp.handle_input(now, Input::Answered),
            Command::Talk { media_id, text, .. } => {
                black_box(text);
                interp.handle_input(now, Input::MediaFinished { media_id });
                interp.handle_input(now, Input::Digit(digit));
            }
            Command::Finished { reason } => {
                black_box(reason);
                break;
            }
            other => {
                black_box(other);
            }
        }
    }
    interp.executed_actions().len()
}

fn main() {
    let program = Arc::new(flow::compile(&ivr()).expect("the benchmark flow compiles"));

    // Footprint: a started activeflow waiting in its menu.
    const PARKED: usize = 100_000;
    let mut parked = Vec::with_capacity(PARKED);
    let before = rss_bytes();
    for _ in 0..PARKED {
        let mut vars = Variables::new();
        vars.insert(
            "voipbin.call.source.target".to_owned(),
            "+15550001".to_owned(),
        );
        let mut interp = Interpreter::new(program.clone(), vars, Limits::default());
        interp.handle_input(Instant::now(), Input::Start);
        while let Some(cmd) = interp.poll_command() {
            if cmd == Command::Answer {
                interp.handle_input(Instant::now(), Input::Answered);
            }
            if matches!(cmd, Command::Talk { .. }) {
                break;
            }
        }
        parked.push(interp);
    }
    let per_flow = rss_bytes().saturating_sub(before) / parked.len();
    drop(parked);

    // Throughput: calls alternate between the two branches.
    let mut actions = 0usize;
    let warmup = Instant::now();
    while warmup.elapsed().as_millis() < 300 {
        actions += run_call(&program, '1');
    }
    black_box(actions);
    let mut runs = Vec::new();
    for _ in 0..5 {
        let mut actions = 0usize;
        let start = Instant::now();
        let mut calls = 0u64;
        while start.elapsed().as_millis() < 1_000 {
            actions += run_call(&program, if calls.is_multiple_of(2) { '1' } else { '2' });
            calls += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        runs.push((actions as f64 / secs, calls as f64 / secs));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median_actions, median_calls) = runs[runs.len() / 2];
    println!(
        "flow interpreter: {:.2} M actions/s (median of 5 one-second runs; min {:.2}, max {:.2}), {:.0} flow runs/s, {} bytes of RSS per waiting activeflow (100,000 parked)",
        median_actions / 1e6,
        runs[0].0 / 1e6,
        runs[runs.len() - 1].0 / 1e6,
        median_calls,
        per_flow
    );
}
