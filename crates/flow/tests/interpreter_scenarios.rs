//! Interpreter scenarios: scripted inputs, simulated time, exact expected commands.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use voxflow_flow::{
    self as flow, Command, EndReason, Input, Interpreter, Limits, Program, Variables,
};

// ---------------------------------------------------------------------------------------------
// Harness

fn program(actions: Value) -> Arc<Program> {
    Arc::new(flow::compile(&actions).unwrap_or_else(|d| panic!("does not compile: {d:#?}")))
}

fn fixture(name: &str) -> Arc<Program> {
    let path = format!("{}/tests/flows/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    program(serde_json::from_str(&text).unwrap())
}

fn vars(pairs: &[(&str, &str)]) -> Variables {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Run {
    interp: Interpreter,
    t0: Instant,
}

impl Run {
    fn new(program: Arc<Program>) -> Self {
        Self::with(program, Variables::new(), Limits::default())
    }

    fn with(program: Arc<Program>, variables: Variables, limits: Limits) -> Self {
        Self {
            interp: Interpreter::new(program, variables, limits),
            t0: Instant::now(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    /// Feed `input` at `ms` and return every command it produced.
    fn input(&mut self, ms: u64, input: Input) -> Vec<Command> {
        let now = self.at(ms);
        self.interp.handle_input(now, input);
        self.drain()
    }

    fn timeout(&mut self, ms: u64) -> Vec<Command> {
        let now = self.at(ms);
        self.interp.handle_timeout(now);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Command> {
        std::iter::from_fn(|| self.interp.poll_command()).collect()
    }

    /// The timer as milliseconds after t0.
    fn timer_ms(&self) -> Option<u64> {
        self.interp
            .poll_timeout()
            .map(|t| u64::try_from(t.duration_since(self.t0).as_millis()).unwrap())
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.interp.variables().get(name).map(String::as_str)
    }

    /// The executed path as ids (or `#index` for id-less actions).
    fn path(&self) -> Vec<String> {
        self.interp
            .executed_actions()
            .iter()
            .map(|e| match &e.action_id {
                Some(id) => id.to_string(),
                None => format!("#{}", e.index),
            })
            .collect()
    }
}

fn talk(media_id: u64, text: &str) -> Command {
    Command::Talk {
        media_id,
        text: text.into(),
        language: None,
        gender: None,
    }
}

const MENU: &str = "Press 1 for sales or 2 for support.";

fn menu(media_id: u64) -> Command {
    Command::Talk {
        media_id,
        text: MENU.into(),
        language: Some("en-US".into()),
        gender: Some("female".into()),
    }
}

fn finished(reason: EndReason) -> Command {
    Command::Finished { reason }
}

fn hangup_normal() -> Vec<Command> {
    vec![
        Command::Hangup {
            reason: "normal".into(),
            reference_id: None,
        },
        finished(EndReason::Hangup),
    ]
}

/// Start the IVR and play the menu to its end at 3000 ms: digits_receive is then armed until
/// 8000 ms.
fn ivr_at_collect() -> Run {
    let mut run = Run::new(fixture("ivr.json"));
    assert_eq!(run.input(0, Input::Start), [Command::Answer]);
    assert_eq!(run.interp.current_action_id(), Some("answer"));
    assert_eq!(run.timer_ms(), None);
    assert_eq!(run.input(100, Input::Answered), [menu(1)]);
    assert_eq!(run.interp.current_action_id(), Some("menu"));
    assert_eq!(run.input(3000, Input::MediaFinished { media_id: 1 }), []);
    assert_eq!(run.interp.current_action_id(), Some("collect"));
    assert_eq!(run.timer_ms(), Some(8000));
    run
}

// ---------------------------------------------------------------------------------------------
// The IVR: answer, menu, digits_receive, branch, talks, hangup

#[test]
fn ivr_digit_1_goes_to_sales() {
    let mut run = ivr_at_collect();
    assert_eq!(
        run.input(4000, Input::Digit('1')),
        [talk(2, "Connecting you to sales.")]
    );
    assert_eq!(run.timer_ms(), None);
    assert_eq!(
        run.var("voipbin.call.digits"),
        Some(""),
        "branch clears the digits"
    );
    assert_eq!(
        run.input(6000, Input::MediaFinished { media_id: 2 }),
        hangup_normal()
    );
    assert!(run.interp.is_finished());
    assert_eq!(
        run.path(),
        ["answer", "menu", "collect", "route", "sales", "bye"]
    );
    let at: Vec<Instant> = run.interp.executed_actions().iter().map(|e| e.at).collect();
    assert_eq!(
        at,
        [0, 100, 3000, 4000, 4000, 6000].map(|ms| run.at(ms)),
        "each start is stamped with the input's time"
    );
}

#[test]
fn ivr_digit_2_goes_to_support() {
    let mut run = ivr_at_collect();
    assert_eq!(
        run.input(3500, Input::Digit('2')),
        [talk(2, "Connecting you to support.")]
    );
    assert_eq!(
        run.input(5000, Input::MediaFinished { media_id: 2 }),
        hangup_normal()
    );
    assert_eq!(
        run.path(),
        ["answer", "menu", "collect", "route", "support", "bye"]
    );
}

#[test]
fn ivr_other_digit_repeats_the_menu() {
    let mut run = ivr_at_collect();
    // '9' is not in target_ids: default → retry (goto menu, 2 loops left → 1).
    assert_eq!(run.input(3500, Input::Digit('9')), [menu(2)]);
    assert_eq!(run.var("voipbin.call.digits"), Some(""));
    assert_eq!(run.input(6500, Input::MediaFinished { media_id: 2 }), []);
    assert_eq!(run.timer_ms(), Some(11_500));
    assert_eq!(
        run.input(7000, Input::Digit('1')),
        [talk(3, "Connecting you to sales.")]
    );
    assert_eq!(
        run.path(),
        [
            "answer", "menu", "collect", "route", "retry", "menu", "collect", "route", "sales"
        ]
    );
}

#[test]
fn ivr_no_digit_retries_twice_then_says_sorry() {
    let mut run = ivr_at_collect();
    // 1st timeout at 8000: branch sees "" → retry → menu again.
    assert_eq!(run.timeout(7999), [], "not before the deadline");
    assert_eq!(run.timer_ms(), Some(8000));
    assert_eq!(run.timeout(8000), [menu(2)]);
    assert_eq!(run.timer_ms(), None);
    assert_eq!(run.input(11_000, Input::MediaFinished { media_id: 2 }), []);
    assert_eq!(run.timer_ms(), Some(16_000));
    // 2nd timeout, handled late: the next timer counts from the real time.
    assert_eq!(run.timeout(16_250), [menu(3)]);
    assert_eq!(run.input(19_000, Input::MediaFinished { media_id: 3 }), []);
    assert_eq!(run.timer_ms(), Some(24_000));
    // 3rd timeout: the goto's loop_count is used up, it falls through.
    assert_eq!(
        run.timeout(24_000),
        [talk(4, "Sorry, we did not get that. Goodbye.")]
    );
    assert_eq!(
        run.input(26_000, Input::MediaFinished { media_id: 4 }),
        hangup_normal()
    );
    assert_eq!(
        run.path(),
        [
            "answer", "menu", "collect", "route", "retry", //
            "menu", "collect", "route", "retry", //
            "menu", "collect", "route", "retry", "sorry", "bye"
        ]
    );
}

#[test]
fn ivr_type_ahead_during_menu() {
    let mut run = Run::new(fixture("ivr.json"));
    run.input(0, Input::Start);
    run.input(0, Input::Answered);
    // Keys during the (non-interruptible) menu overwrite the buffer; the talk goes on.
    assert_eq!(run.input(500, Input::Digit('1')), []);
    assert_eq!(run.var("voipbin.call.digits"), Some("1"));
    assert_eq!(run.input(900, Input::Digit('2')), []);
    assert_eq!(
        run.var("voipbin.call.digits"),
        Some("2"),
        "overwritten, not appended"
    );
    // At the end of the menu, digits_receive finds its length already reached.
    assert_eq!(
        run.input(3000, Input::MediaFinished { media_id: 1 }),
        [talk(2, "Connecting you to support.")]
    );
    assert_eq!(run.timer_ms(), None);
    assert_eq!(
        run.path(),
        ["answer", "menu", "collect", "route", "support"]
    );
}

#[test]
fn ivr_call_ended_mid_menu() {
    let mut run = ivr_at_collect();
    assert_eq!(
        run.input(3100, Input::CallEnded),
        [finished(EndReason::CallEnded)]
    );
    assert!(run.interp.is_finished());
    assert_eq!(run.timer_ms(), None);
    // Nothing more, whatever comes.
    assert_eq!(run.input(3200, Input::Digit('1')), []);
    assert_eq!(run.timeout(9000), []);
    assert_eq!(run.input(9000, Input::CallEnded), []);
    assert_eq!(run.input(9000, Input::Start), []);
}

// ---------------------------------------------------------------------------------------------
// goto, branch, conditions, variables

#[test]
fn goto_loop_count_2_jumps_exactly_twice() {
    let mut run = Run::new(fixture("goto_loop.json"));
    assert_eq!(run.input(0, Input::Start), [Command::Beep { media_id: 1 }]);
    assert_eq!(
        run.input(10, Input::MediaFinished { media_id: 1 }),
        [Command::Beep { media_id: 2 }]
    );
    assert_eq!(
        run.input(20, Input::MediaFinished { media_id: 2 }),
        [Command::Beep { media_id: 3 }]
    );
    assert_eq!(
        run.input(30, Input::MediaFinished { media_id: 3 }),
        [finished(EndReason::Stopped)]
    );
    assert_eq!(
        run.path(),
        ["tick", "again", "tick", "again", "tick", "again", "done"]
    );
}

#[test]
fn goto_loop_count_is_per_run() {
    let program = fixture("goto_loop.json");
    for _ in 0..2 {
        let mut run = Run::new(Arc::clone(&program));
        run.input(0, Input::Start);
        let mut beeps = 1;
        for media_id in 1.. {
            let out = run.input(media_id * 10, Input::MediaFinished { media_id });
            if out.contains(&finished(EndReason::Stopped)) {
                break;
            }
            beeps += 1;
        }
        assert_eq!(beeps, 3, "each run starts with the program's loop_count");
    }
}

#[test]
fn goto_without_loop_count_never_jumps() {
    let mut run = Run::new(program(json!([
        {"id": "a", "type": "variable_set", "option": {"key": "x", "value": "${x}a"}},
        {"type": "goto", "option": {"target_id": "a"}},
        {"type": "goto", "option": {"target_id": "a", "loop_count": -1}},
    ])));
    assert_eq!(run.input(0, Input::Start), [finished(EndReason::Completed)]);
    assert_eq!(run.var("x"), Some("a"));
}

#[test]
fn branch_clears_its_variable_and_falls_back() {
    let p = program(json!([
        {"type": "branch", "option": {"variable": "choice", "target_ids": {"red": "r"}}},
        {"type": "talk", "option": {"text": "no match: '${choice}'"}},
        {"type": "stop"},
        {"id": "r", "type": "talk", "option": {"text": "red, now '${choice}'"}},
    ]));
    // Match: jumps, and the variable is "" afterwards.
    let mut run = Run::with(
        Arc::clone(&p),
        vars(&[("choice", "red")]),
        Limits::default(),
    );
    assert_eq!(run.input(0, Input::Start), [talk(1, "red, now ''")]);
    assert_eq!(run.var("choice"), Some(""));
    // No match and no default_target_id: next action.
    let mut run = Run::with(
        Arc::clone(&p),
        vars(&[("choice", "blue")]),
        Limits::default(),
    );
    assert_eq!(run.input(0, Input::Start), [talk(1, "no match: ''")]);
    assert_eq!(run.var("choice"), Some(""));
    // Unset variable: "" → no match.
    let mut run = Run::new(p);
    assert_eq!(run.input(0, Input::Start), [talk(1, "no match: ''")]);
}

#[test]
fn branch_on_empty_string_target() {
    // A target for "" catches "no digits".
    let mut run = Run::new(program(json!([
        {"type": "branch", "option": {"target_ids": {"": "none", "5": "five"}}},
        {"type": "stop"},
        {"id": "none", "type": "talk", "option": {"text": "none"}},
        {"id": "five", "type": "talk", "option": {"text": "five"}},
    ])));
    assert_eq!(run.input(0, Input::Start), [talk(1, "none")]);
}

#[test]
fn conditions_fixture_number_and_length() {
    let p = fixture("conditions.json");
    let script = |start: &str| {
        let mut run = Run::with(Arc::clone(&p), vars(&[("start", start)]), Limits::default());
        let mut said = Vec::new();
        let mut out = run.input(0, Input::Start);
        let mut t = 0;
        loop {
            match out.as_slice() {
                [Command::Talk { media_id, text, .. }] => {
                    said.push(text.clone());
                    t += 1000;
                    out = run.input(
                        t,
                        Input::MediaFinished {
                            media_id: *media_id,
                        },
                    );
                }
                [Command::Finished { reason }] => {
                    assert_eq!(reason, &EndReason::Stopped);
                    return said;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    assert_eq!(script("12"), ["big"]);
    assert_eq!(script("9"), ["small", "short"]);
    assert_eq!(script("100"), ["big"]);
    assert_eq!(script("5.5"), ["small"], "\"5.5\" has length 3");
    assert_eq!(script("x"), ["small", "short"], "not a number: false");
}

#[test]
fn condition_variable_all_operators() {
    let cases = [
        ("==", "string", json!("abc"), "abc", true),
        ("==", "string", json!("abc"), "abd", false),
        ("!=", "string", json!("abc"), "abd", true),
        ("<", "string", json!("b"), "a", true),
        (">", "string", json!("b"), "a", false),
        (">=", "string", json!("a"), "a", true),
        ("<=", "string", json!("a"), "b", false),
        ("==", "number", json!(3), "3.0", true),
        ("!=", "number", json!(3), "3", false),
        (">", "number", json!(2.5), "10", true),
        (">=", "number", json!(-1), "-1", true),
        ("<", "number", json!(0), "-0.5", true),
        ("<=", "number", json!(0), "1", false),
        ("==", "number", json!(1), "", false),
        ("!=", "number", json!(1), "one", false),
        ("==", "length", json!(4), "1234", true),
        ("!=", "length", json!(4), "1234", false),
        (">", "length", json!(2), "日本語", true),
        (">=", "length", json!(4), "日本語", false),
        ("<", "length", json!(1), "", true),
        ("<=", "length", json!(0), "x", false),
    ];
    for (op, value_type, operand, subject, expected) in cases {
        let value_key = format!("value_{value_type}");
        let mut option = json!({
            "condition": op, "variable": "v", "value_type": value_type, "false_target_id": "f"
        });
        option[value_key] = operand.clone();
        let mut run = Run::with(
            program(json!([
                {"type": "condition_variable", "option": option},
                {"type": "stop"},
                {"id": "f", "type": "hangup"},
            ])),
            vars(&[("v", subject)]),
            Limits::default(),
        );
        let out = run.input(0, Input::Start);
        let took_true = out == [finished(EndReason::Stopped)];
        assert_eq!(
            took_true, expected,
            "{subject:?} {op} {operand} ({value_type}) → {out:?}"
        );
    }
}

#[test]
fn condition_variable_templated_subject_and_value() {
    let mut run = Run::with(
        program(json!([
            {"type": "condition_variable", "option": {
                "condition": "==", "variable": "${a}-${b}", "value_type": "string",
                "value_string": "${expect}", "false_target_id": "f"}},
            {"type": "stop"},
            {"id": "f", "type": "hangup"},
        ])),
        vars(&[("a", "1"), ("b", "2"), ("expect", "1-2")]),
        Limits::default(),
    );
    assert_eq!(run.input(0, Input::Start), [finished(EndReason::Stopped)]);
}

#[test]
fn variable_set_may_clear_the_digit_buffer() {
    // A flow's own variable_set may write voipbin.* (here: drop stale type-ahead).
    let mut run = Run::new(program(json!([
        {"type": "talk", "option": {"text": "menu"}},
        {"type": "variable_set", "option": {"key": "voipbin.call.digits", "value": ""}},
        {"type": "digits_receive", "option": {"length": 1, "duration": 2000}},
        {"type": "talk", "option": {"text": "got '${voipbin.call.digits}'"}},
    ])));
    run.input(0, Input::Start);
    run.input(10, Input::Digit('7'));
    assert_eq!(run.input(1000, Input::MediaFinished { media_id: 1 }), []);
    assert_eq!(run.var("voipbin.call.digits"), Some(""));
    assert_eq!(run.timer_ms(), Some(3000));
    assert_eq!(run.timeout(3000), [talk(2, "got ''")]);
}

#[test]
fn variable_limits_skip_writes_and_continue() {
    let limits = Limits {
        max_variables: 2,
        max_value_len: 4,
        ..Limits::default()
    };
    let mut run = Run::with(
        program(json!([
            {"type": "variable_set", "option": {"key": "a", "value": "1234"}},
            {"type": "variable_set", "option": {"key": "b", "value": "12345"}},
            {"type": "variable_set", "option": {"key": "c", "value": "x"}},
            {"type": "variable_set", "option": {"key": "a", "value": "new"}},
            {"type": "variable_set", "option": {"key": "${empty}", "value": "x"}},
        ])),
        vars(&[("seed", "s")]),
        limits,
    );
    assert_eq!(run.input(0, Input::Start), [finished(EndReason::Completed)]);
    assert_eq!(
        run.interp.variables(),
        &vars(&[("seed", "s"), ("a", "new")])
    );
}

#[test]
fn digits_stop_accumulating_at_max_value_len() {
    let limits = Limits {
        max_value_len: 3,
        ..Limits::default()
    };
    let mut run = Run::with(
        program(json!([{"type": "digits_receive", "option": {"duration": 1000}}])),
        Variables::new(),
        limits,
    );
    run.input(0, Input::Start);
    for key in "12345".chars() {
        assert_eq!(run.input(10, Input::Digit(key)), []);
    }
    assert_eq!(run.var("voipbin.call.digits"), Some("123"));
    assert_eq!(run.timeout(1000), [finished(EndReason::Completed)]);
}

// ---------------------------------------------------------------------------------------------
// digits_receive and timers

#[test]
fn digits_receive_terminator_stays_in_the_variable() {
    let p = fixture("pin_entry.json");
    let mut run = Run::with(p, vars(&[("caller.name", "Ann")]), Limits::default());
    assert_eq!(run.input(0, Input::Start), [Command::Answer]);
    assert_eq!(
        run.input(0, Input::Answered),
        [talk(1, "Enter your PIN, then press the pound key.")]
    );
    // digits_handle "next": the first key stops the prompt and is kept as type-ahead.
    assert_eq!(
        run.input(700, Input::Digit('1')),
        [Command::StopMedia { media_id: 1 }]
    );
    assert_eq!(run.timer_ms(), Some(10_700));
    assert_eq!(
        run.input(800, Input::MediaFinished { media_id: 1 }),
        [],
        "stale"
    );
    for (ms, key) in [(1000, '2'), (1200, '3'), (1400, '4')] {
        assert_eq!(run.input(ms, Input::Digit(key)), []);
    }
    assert_eq!(run.timer_ms(), Some(10_700), "keys do not re-arm the timer");
    assert_eq!(
        run.input(1600, Input::Digit('#')),
        [talk(2, "Welcome, Ann.")]
    );
    assert_eq!(run.var("pin"), Some("1234#"));
    assert_eq!(
        run.input(3000, Input::MediaFinished { media_id: 2 }),
        [finished(EndReason::Stopped)]
    );
}

#[test]
fn digits_receive_wrong_pin_hangs_up_with_reason() {
    let mut run = Run::new(fixture("pin_entry.json"));
    run.input(0, Input::Start);
    run.input(0, Input::Answered);
    run.input(3000, Input::MediaFinished { media_id: 1 });
    assert_eq!(run.timer_ms(), Some(13_000));
    for key in "99".chars() {
        run.input(4000, Input::Digit(key));
    }
    assert_eq!(run.timeout(13_000), [talk(2, "Wrong PIN 99.")]);
    assert_eq!(
        run.input(14_000, Input::MediaFinished { media_id: 2 }),
        [
            Command::Hangup {
                reason: "busy".into(),
                reference_id: None,
            },
            finished(EndReason::Hangup)
        ]
    );
}

#[test]
fn digits_receive_entry_check_sees_a_buffered_terminator() {
    let mut run = Run::with(
        program(json!([
            {"type": "digits_receive", "option": {"key": "#*", "length": 10}},
            {"type": "stop"},
        ])),
        vars(&[("voipbin.call.digits", "12*3")]),
        Limits::default(),
    );
    assert_eq!(run.input(0, Input::Start), [finished(EndReason::Stopped)]);
    assert_eq!(
        run.var("voipbin.call.digits"),
        Some("12*3"),
        "not cleared on entry"
    );
}

#[test]
fn digits_receive_default_duration_is_5000_ms() {
    for option in [json!({}), json!({"duration": 0}), json!({"length": 2})] {
        let mut run = Run::new(program(
            json!([{"type": "digits_receive", "option": option}, {"type": "stop"}]),
        ));
        assert_eq!(run.input(100, Input::Start), []);
        assert_eq!(run.timer_ms(), Some(5100), "{option}");
        assert_eq!(run.timeout(5099), []);
        assert_eq!(run.timeout(5100), [finished(EndReason::Stopped)]);
    }
}

#[test]
fn digits_receive_without_length_or_key_waits_for_the_timer() {
    let mut run = Run::new(program(json!([
        {"type": "digits_receive", "option": {"duration": 3000}},
        {"type": "talk", "option": {"text": "${voipbin.call.digits}"}},
    ])));
    run.input(0, Input::Start);
    for (ms, key) in [(100, '1'), (200, '2'), (300, 'a'), (400, 'x'), (500, '*')] {
        assert_eq!(run.input(ms, Input::Digit(key)), []);
    }
    assert_eq!(run.timer_ms(), Some(3000));
    assert_eq!(
        run.timeout(3000),
        [talk(1, "12A*")],
        "'a' is taken as 'A', 'x' ignored"
    );
}

#[test]
fn digit_and_timer_at_the_same_instant() {
    // The key arrives first: it completes the collection and the timer disappears.
    let mut run = Run::new(program(json!([
        {"type": "digits_receive", "option": {"duration": 1000, "length": 1}},
        {"type": "sleep", "option": {"duration": 500}},
    ])));
    run.input(0, Input::Start);
    assert_eq!(run.input(1000, Input::Digit('5')), []);
    assert_eq!(
        run.timer_ms(),
        Some(1500),
        "the sleep's timer, not the old one"
    );
    assert_eq!(run.timeout(1000), [], "a stale wake-up does nothing");
    assert_eq!(run.timeout(1500), [finished(EndReason::Completed)]);
}

#[test]
fn sleep_uses_a_timer_and_zero_is_immediate() {
    let mut run = Run::new(program(json!([
        {"type": "sleep", "option": {"duration": 0}},
        {"type": "sleep"},
        {"type": "sleep", "option": {"duration": 2500}},
        {"type": "beep"},
    ])));
    assert_eq!(run.input(0, Input::Start), []);
    assert_eq!(run.timer_ms(), Some(2500));
    assert_eq!(run.timeout(2499), []);
    // A key during sleep is type-ahead only.
    assert_eq!(run.input(2000, Input::Digit('3')), []);
    assert_eq!(run.var("voipbin.call.digits"), Some("3"));
    assert_eq!(run.timeout(2500), [Command::Beep { media_id: 1 }]);
    assert_eq!(run.timer_ms(), None);
    assert_eq!(run.timeout(10_000), []);
}

#[test]
fn huge_durations_do_not_overflow() {
    let mut run = Run::new(program(json!([
        {"type": "sleep", "option": {"duration": u64::MAX}},
    ])));
    assert_eq!(run.input(0, Input::Start), []);
    // Either a far deadline or none; never a panic.
    run.timeout(1_000_000);
    assert!(!run.interp.is_finished());
    assert_eq!(
        run.input(5, Input::CallEnded),
        [finished(EndReason::CallEnded)]
    );
}

// ---------------------------------------------------------------------------------------------
// talk / media

#[test]
fn talk_digits_handle_next_stops_media_and_ignores_its_completion() {
    let mut run = Run::new(program(json!([
        {"type": "talk", "option": {"text": "long prompt", "digits_handle": "next"}},
        {"type": "talk", "option": {"text": "second"}},
        {"type": "talk", "option": {"text": "third"}},
    ])));
    assert_eq!(run.input(0, Input::Start), [talk(1, "long prompt")]);
    assert_eq!(
        run.input(300, Input::Digit('4')),
        [Command::StopMedia { media_id: 1 }, talk(2, "second")]
    );
    assert_eq!(run.var("voipbin.call.digits"), Some("4"));
    // The stopped talk's completion must not end "second".
    assert_eq!(run.input(310, Input::MediaFinished { media_id: 1 }), []);
    assert_eq!(
        run.input(
            320,
            Input::MediaFailed {
                media_id: 1,
                reason: "stopped".into()
            }
        ),
        []
    );
    // "second" has no digits_handle: a key does not interrupt it.
    assert_eq!(run.input(400, Input::Digit('5')), []);
    assert_eq!(
        run.input(900, Input::MediaFinished { media_id: 2 }),
        [talk(3, "third")]
    );
}

#[test]
fn media_failure_ends_the_flow_with_an_error() {
    let mut run = Run::new(program(json!([
        {"type": "play", "option": {"stream_urls": ["https://x/${file}.wav"]}},
        {"type": "hangup"},
    ])));
    assert_eq!(
        run.input(0, Input::Start),
        [Command::Play {
            media_id: 1,
            urls: vec!["https://x/.wav".into()]
        }]
    );
    assert_eq!(
        run.input(
            5,
            Input::MediaFailed {
                media_id: 7,
                reason: "unknown id".into()
            }
        ),
        [],
        "not ours"
    );
    assert_eq!(
        run.input(
            10,
            Input::MediaFailed {
                media_id: 1,
                reason: "404 Not Found".into()
            }
        ),
        [finished(EndReason::Error(
            "play failed: 404 Not Found".into()
        ))]
    );
}

#[test]
fn answer_is_skipped_when_already_answered() {
    let p = program(json!([{"type": "answer"}, {"type": "beep"}]));
    let mut run = Run::new(Arc::clone(&p));
    assert_eq!(run.input(0, Input::Answered), []);
    assert_eq!(run.input(0, Input::Start), [Command::Beep { media_id: 1 }]);
    // And waits otherwise; a stray MediaFinished does not complete it.
    let mut run = Run::new(p);
    assert_eq!(run.input(0, Input::Start), [Command::Answer]);
    assert_eq!(run.input(1, Input::MediaFinished { media_id: 0 }), []);
    assert_eq!(
        run.input(2, Input::Answered),
        [Command::Beep { media_id: 1 }]
    );
    assert_eq!(
        run.input(3, Input::Answered),
        [],
        "a second Answered is harmless"
    );
}

#[test]
fn templating_right_before_each_action() {
    let mut run = Run::with(
        program(json!([
            {"type": "talk", "option": {"text": "Hi ${name}", "language": "${lang}", "gender": "${nope}"}},
            {"type": "variable_set", "option": {"key": "name", "value": "${name} ${surname}"}},
            {"type": "talk", "option": {"text": "Bye ${name}"}},
            {"type": "talk", "option": {"text": "${nothing}"}},
            {"type": "hangup", "option": {"reason": "${why}"}},
        ])),
        vars(&[
            ("name", "Ada"),
            ("surname", "Lovelace"),
            ("lang", "en-GB"),
            ("why", "busy"),
        ]),
        Limits::default(),
    );
    assert_eq!(
        run.input(0, Input::Start),
        [Command::Talk {
            media_id: 1,
            text: "Hi Ada".into(),
            language: Some("en-GB".into()),
            gender: None
        }]
    );
    assert_eq!(
        run.input(1, Input::MediaFinished { media_id: 1 }),
        [talk(2, "Bye Ada Lovelace")]
    );
    // A talk whose text renders empty says nothing and moves on.
    assert_eq!(
        run.input(2, Input::MediaFinished { media_id: 2 }),
        [
            Command::Hangup {
                reason: "busy".into(),
                reference_id: None,
            },
            finished(EndReason::Hangup)
        ]
    );
}

#[test]
fn uuid_fixture_plays_templated_urls_and_branches_on_terminated_input() {
    let mut run = Run::with(
        fixture("voipbin_uuid_ids.json"),
        vars(&[("voipbin.call.destination.target", "+15550100")]),
        Limits::default(),
    );
    assert_eq!(run.input(0, Input::Start), [Command::Answer]);
    assert_eq!(
        run.input(0, Input::Answered),
        [Command::Play {
            media_id: 1,
            urls: vec![
                "https://example.com/welcome.wav".into(),
                "https://example.com/+15550100.wav".into()
            ]
        }]
    );
    run.input(2000, Input::MediaFinished { media_id: 1 });
    run.input(2100, Input::Digit('2'));
    assert_eq!(run.input(2200, Input::Digit('#')), []);
    assert_eq!(
        run.interp.current_action_id(),
        Some("dc87123e-c524-11ec-89c6-5fb18da14034"),
        "\"2#\" → the sleep"
    );
    assert_eq!(run.timer_ms(), Some(3200));
    assert_eq!(run.timeout(3200), hangup_normal());
}

// ---------------------------------------------------------------------------------------------
// Ends and limits

#[test]
fn execution_cap_stops_a_tight_loop() {
    let mut run = Run::new(program(json!([
        {"id": "a", "type": "variable_set", "option": {"key": "n", "value": "${n}."}, "next_id": "a"},
    ])));
    assert_eq!(
        run.input(0, Input::Start),
        [finished(EndReason::ExecutionLimit)]
    );
    assert_eq!(run.interp.executed_actions().len(), 100);
    assert_eq!(run.var("n").map(str::len), Some(100));
}

#[test]
fn execution_cap_counts_waiting_actions_too() {
    let limits = Limits {
        max_executions: 3,
        ..Limits::default()
    };
    let mut run = Run::with(
        program(json!([
            {"id": "a", "type": "beep", "next_id": "a"},
        ])),
        Variables::new(),
        limits,
    );
    assert_eq!(run.input(0, Input::Start), [Command::Beep { media_id: 1 }]);
    assert_eq!(
        run.input(1, Input::MediaFinished { media_id: 1 }),
        [Command::Beep { media_id: 2 }]
    );
    assert_eq!(
        run.input(2, Input::MediaFinished { media_id: 2 }),
        [Command::Beep { media_id: 3 }]
    );
    assert_eq!(
        run.input(3, Input::MediaFinished { media_id: 3 }),
        [finished(EndReason::ExecutionLimit)]
    );
    assert_eq!(run.path(), ["a", "a", "a"]);
}

#[test]
fn starts_in_one_input_are_bounded_even_with_a_huge_cap() {
    let limits = Limits {
        max_executions: u32::MAX,
        ..Limits::default()
    };
    let mut run = Run::with(
        program(json!([{"id": "a", "type": "stop", "next_id": "a"}])),
        Variables::new(),
        limits,
    );
    // stop ends at once; use a goto self-loop instead to spin.
    assert_eq!(run.input(0, Input::Start), [finished(EndReason::Stopped)]);
    let mut run = Run::with(
        program(json!([
            {"id": "a", "type": "branch", "option": {"default_target_id": "a"}},
        ])),
        Variables::new(),
        limits,
    );
    assert_eq!(
        run.input(0, Input::Start),
        [finished(EndReason::ExecutionLimit)]
    );
    assert_eq!(run.interp.executed_actions().len(), 1000);
}

#[test]
fn running_off_the_end_completes() {
    let mut run = Run::new(program(json!([{"type": "answer"}])));
    assert_eq!(run.input(0, Input::Start), [Command::Answer]);
    assert_eq!(
        run.input(1, Input::Answered),
        [finished(EndReason::Completed)]
    );
    assert!(run.interp.is_finished());
    assert_eq!(
        run.interp.current_action_id(),
        None,
        "the answer action has no id"
    );
    assert_eq!(run.interp.current_action_index(), Some(0));
}

#[test]
fn empty_program_completes_at_start() {
    let mut run = Run::new(program(json!([])));
    assert_eq!(run.input(0, Input::Start), [finished(EndReason::Completed)]);
}

#[test]
fn call_ended_before_start_and_discards_queued_commands() {
    let mut run = Run::new(program(json!([{"type": "beep"}])));
    assert_eq!(
        run.input(0, Input::CallEnded),
        [finished(EndReason::CallEnded)]
    );
    assert_eq!(run.input(0, Input::Start), []);

    let mut run = Run::new(program(json!([{"type": "answer"}, {"type": "beep"}])));
    run.interp.handle_input(run.at(0), Input::Start);
    run.interp.handle_input(run.at(0), Input::CallEnded);
    assert_eq!(
        run.drain(),
        [finished(EndReason::CallEnded)],
        "Answer was never polled"
    );
}

#[test]
fn start_is_idempotent_and_digits_before_start_are_type_ahead() {
    let mut run = Run::new(program(json!([
        {"type": "digits_receive", "option": {"length": 1}},
        {"type": "talk", "option": {"text": "${voipbin.call.digits}"}},
    ])));
    assert_eq!(run.input(0, Input::Digit('8')), []);
    assert_eq!(run.input(0, Input::Start), [talk(1, "8")]);
    assert_eq!(run.input(1, Input::Start), []);
}

// ---------------------------------------------------------------------------------------------
// digits_send, echo, stream_echo, recording_start, recording_stop

const BAD_KEY: &str = "allowed: 0-9, A-D, # and *";

fn send(media_id: u64, digits: &str, duration_ms: u32, interval_ms: u32) -> Command {
    Command::SendDigits {
        media_id,
        digits: digits.into(),
        duration_ms,
        interval_ms,
    }
}

fn echo(media_id: u64, ms: u64, dtmf: bool) -> Command {
    Command::Echo {
        media_id,
        duration: Some(Duration::from_millis(ms)),
        dtmf,
    }
}

#[test]
fn digits_send_waits_for_the_shell_and_keeps_digit_semantics() {
    let mut run = Run::new(program(json!([
        {"type": "digits_send", "option": {"digits": "1234#", "duration": 500, "interval": 500}},
        {"type": "digits_send", "option": {"digits": "9"}},
        {"type": "hangup"},
    ])));
    assert_eq!(run.input(0, Input::Start), [send(1, "1234#", 500, 500)]);
    assert_eq!(run.timer_ms(), None, "the shell times the keys");
    // A key from the caller meanwhile overwrites the buffer and does not end the send.
    assert_eq!(run.input(100, Input::Digit('7')), []);
    assert_eq!(run.input(200, Input::Digit('8')), []);
    assert_eq!(run.var("voipbin.call.digits"), Some("8"));
    assert_eq!(run.input(300, Input::MediaFinished { media_id: 9 }), []);
    assert_eq!(
        run.input(4500, Input::MediaFinished { media_id: 1 }),
        [send(2, "9", 250, 100)],
        "absent duration and interval default to 250 and 100 ms"
    );
    assert_eq!(
        run.input(4800, Input::MediaFinished { media_id: 2 }),
        hangup_normal()
    );
}

#[test]
fn digits_send_templates_are_checked_when_the_action_runs() {
    let p = program(json!([
        {"type": "digits_send", "option": {"digits": "${pin}", "interval": 0}},
        {"type": "hangup"},
    ]));
    let run_with = |pin: &str| {
        let mut run = Run::with(Arc::clone(&p), vars(&[("pin", pin)]), Limits::default());
        run.input(0, Input::Start)
    };
    assert_eq!(run_with("99#*"), [send(1, "99#*", 250, 0)]);
    assert_eq!(
        run_with("12x4"),
        [finished(EndReason::Error(format!(
            "digits_send: invalid DTMF key 'x' at position 3; {BAD_KEY}"
        )))]
    );
    assert_eq!(
        run_with("1a"),
        [finished(EndReason::Error(format!(
            "digits_send: invalid DTMF key 'a' at position 2; {BAD_KEY}"
        )))],
        "lowercase is not in the allowed set"
    );
    assert_eq!(
        run_with(&"5".repeat(101)),
        [finished(EndReason::Error(
            "digits_send: 101 keys; at most 100 can be sent".into()
        ))]
    );
    assert_eq!(
        run_with(""),
        hangup_normal(),
        "nothing to send: move on at once"
    );
}

#[test]
fn digits_send_can_replay_what_the_caller_typed() {
    let mut run = Run::new(program(json!([
        {"type": "digits_receive", "option": {"length": 3}},
        {"type": "digits_send", "option": {"digits": "${voipbin.call.digits}"}},
    ])));
    assert_eq!(run.input(0, Input::Start), []);
    run.input(10, Input::Digit('4'));
    run.input(20, Input::Digit('b'));
    assert_eq!(run.input(30, Input::Digit('#')), [send(1, "4B#", 250, 100)]);
    assert_eq!(
        run.input(
            40,
            Input::MediaFailed {
                media_id: 1,
                reason: "no telephone-event negotiated".into()
            }
        ),
        [finished(EndReason::Error(
            "digits_send failed: no telephone-event negotiated".into()
        ))]
    );
}

#[test]
fn echo_runs_until_the_shell_reports_its_end_and_digits_overwrite() {
    let mut run = Run::new(program(json!([
        {"type": "echo", "option": {"duration": 30000}},
        {"type": "stream_echo"},
        {"type": "digits_receive", "option": {"length": 1}},
        {"type": "branch", "option": {"target_ids": {"2": "two"}}},
        {"type": "hangup"},
        {"id": "two", "type": "stop"},
    ])));
    assert_eq!(run.input(0, Input::Start), [echo(1, 30_000, false)]);
    assert_eq!(run.timer_ms(), None);
    assert_eq!(run.input(1000, Input::Digit('1')), []);
    assert_eq!(run.input(2000, Input::Digit('2')), []);
    assert_eq!(
        run.var("voipbin.call.digits"),
        Some("2"),
        "echo is not digits_receive: each key overwrites"
    );
    assert_eq!(
        run.input(30_000, Input::MediaFinished { media_id: 1 }),
        [echo(2, 180_000, true)],
        "stream_echo echoes DTMF too; absent duration is 180 s"
    );
    assert_eq!(run.input(31_000, Input::Digit('5')), []);
    assert_eq!(run.input(32_000, Input::Digit('2')), []);
    // The last key before the end is type-ahead for digits_receive, which completes on entry.
    assert_eq!(
        run.input(210_000, Input::MediaFinished { media_id: 2 }),
        [finished(EndReason::Stopped)]
    );
    assert_eq!(run.path(), ["#0", "#1", "#2", "#3", "two"]);
}

#[test]
fn echo_ends_with_the_call_or_a_failure() {
    let p = program(json!([{"type": "echo", "option": {"duration": 0}}, {"type": "hangup"}]));
    let mut run = Run::new(Arc::clone(&p));
    assert_eq!(run.input(0, Input::Start), [echo(1, 180_000, false)]);
    assert_eq!(
        run.input(500, Input::CallEnded),
        [finished(EndReason::CallEnded)]
    );
    let mut run = Run::new(p);
    run.input(0, Input::Start);
    assert_eq!(
        run.input(
            5,
            Input::MediaFailed {
                media_id: 1,
                reason: "no media session".into()
            }
        ),
        [finished(EndReason::Error(
            "echo failed: no media session".into()
        ))]
    );
}

#[test]
fn voicemail_records_in_the_background() {
    let mut run = Run::with(
        fixture("voicemail.json"),
        vars(&[("voicemail.flow_id", "5e0c1cbe-0d44-4c1a-9df3-1d8e2c6a0f11")]),
        Limits::default(),
    );
    assert_eq!(run.input(0, Input::Start), [Command::Answer]);
    let greeting = "Please leave a message after the beep, then press the pound key.";
    assert_eq!(run.input(10, Input::Answered), [talk(1, greeting)]);
    let start = Command::RecordingStart {
        media_id: 2,
        format: flow::RecordingFormat::Wav,
        end_of_silence: Some(Duration::from_secs(5)),
        end_of_key: Some(flow::RecordingEndKey::Hash),
        max_duration: Some(Duration::from_secs(120)),
        beep_start: true,
        channels: 2,
        on_end_flow_id: Some("5e0c1cbe-0d44-4c1a-9df3-1d8e2c6a0f11".into()),
    };
    assert_eq!(
        run.input(4000, Input::MediaFinished { media_id: 1 }),
        [start]
    );
    assert_eq!(run.interp.current_action_id(), Some("record"));
    // Only RecordingStarted for this id moves on; a key meanwhile is type-ahead as usual.
    assert_eq!(run.input(4100, Input::MediaFinished { media_id: 2 }), []);
    let stale = Input::RecordingStarted {
        media_id: 1,
        recording_id: "stale".into(),
    };
    assert_eq!(run.input(4200, stale), []);
    assert_eq!(run.input(4300, Input::Digit('3')), []);
    assert_eq!(run.var("voipbin.recording.id"), None);
    let started = Input::RecordingStarted {
        media_id: 2,
        recording_id: "rec-42".into(),
    };
    assert_eq!(run.input(4500, started.clone()), []);
    assert_eq!(run.var(flow::VARIABLE_RECORDING_ID), Some("rec-42"));
    assert_eq!(run.interp.current_action_id(), Some("wait"));
    assert_eq!(run.timer_ms(), Some(124_500));
    // A repeated reply changes nothing.
    assert_eq!(run.input(4600, started), []);
    run.input(9000, Input::Digit('5'));
    let out = run.input(20_000, Input::Digit('#'));
    assert_eq!(
        out,
        [
            Command::RecordingStop,
            talk(3, "Thank you. Your message rec-42 was saved."),
        ],
        "recording_stop completes at once"
    );
    assert_eq!(
        run.var("voipbin.recording.id"),
        Some("rec-42"),
        "kept after stop"
    );
    assert_eq!(
        run.input(23_000, Input::MediaFinished { media_id: 3 }),
        hangup_normal()
    );
    assert_eq!(
        run.path(),
        [
            "answer", "greeting", "record", "wait", "stop", "thanks", "bye"
        ]
    );
}

#[test]
fn recording_start_failure_ends_the_flow() {
    let mut run = Run::new(program(json!([
        {"type": "recording_start", "option": {"format": "mp3", "end_of_key": "any",
                                               "on_end_flow_id": "00000000-0000-0000-0000-000000000000"}},
        {"type": "hangup"},
    ])));
    assert_eq!(
        run.input(0, Input::Start),
        [Command::RecordingStart {
            media_id: 1,
            format: flow::RecordingFormat::Mp3,
            end_of_silence: None,
            end_of_key: Some(flow::RecordingEndKey::Any),
            max_duration: None,
            beep_start: false,
            channels: 2,
            on_end_flow_id: None,
        }]
    );
    assert_eq!(
        run.input(
            5,
            Input::MediaFailed {
                media_id: 1,
                reason: "mp3 encoding is not available".into()
            }
        ),
        [finished(EndReason::Error(
            "recording_start failed: mp3 encoding is not available".into()
        ))]
    );
    assert_eq!(run.var("voipbin.recording.id"), None);
}

#[test]
fn recording_stop_alone_moves_on() {
    let mut run = Run::new(program(json!([
        {"type": "recording_stop"},
        {"type": "recording_stop"},
    ])));
    assert_eq!(
        run.input(0, Input::Start),
        [
            Command::RecordingStop,
            Command::RecordingStop,
            finished(EndReason::Completed)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness

/// A tiny deterministic generator (xorshift64), so the test needs no RNG crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

#[test]
fn random_inputs_never_panic_and_finish_exactly_once() {
    let fixtures = [
        "ivr.json",
        "goto_loop.json",
        "pin_entry.json",
        "voipbin_uuid_ids.json",
        "conditions.json",
        "voicemail.json",
        "echo_test.json",
    ];
    let keys = b"0123456789*#ABCDax!";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for name in fixtures {
        let p = fixture(name);
        for _ in 0..300 {
            let mut run = Run::with(Arc::clone(&p), vars(&[("start", "11")]), Limits::default());
            let (mut ms, mut last_media, mut done) = (0u64, 0u64, false);
            for _ in 0..120 {
                ms += rng.below(4000);
                let out = match rng.below(10) {
                    0 => run.input(ms, Input::Start),
                    1 => run.input(ms, Input::Answered),
                    2 | 3 => {
                        let key = keys[usize::try_from(rng.below(keys.len() as u64)).unwrap()];
                        run.input(ms, Input::Digit(char::from(key)))
                    }
                    4 | 5 => {
                        let media_id = last_media.saturating_sub(rng.below(2));
                        run.input(ms, Input::MediaFinished { media_id })
                    }
                    6 if rng.below(10) == 0 => run.input(
                        ms,
                        Input::MediaFailed {
                            media_id: last_media,
                            reason: "boom".into(),
                        },
                    ),
                    7 if rng.below(30) == 0 => run.input(ms, Input::CallEnded),
                    8 if rng.below(2) == 0 => run.input(
                        ms,
                        Input::RecordingStarted {
                            media_id: last_media.saturating_sub(rng.below(2)),
                            recording_id: "rec".into(),
                        },
                    ),
                    _ => {
                        if let Some(t) = run.timer_ms() {
                            ms = ms.max(t);
                        }
                        run.timeout(ms)
                    }
                };
                for command in out {
                    assert!(!done, "{name}: {command:?} after Finished");
                    match command {
                        Command::Talk { media_id, .. }
                        | Command::Play { media_id, .. }
                        | Command::Beep { media_id }
                        | Command::SendDigits { media_id, .. }
                        | Command::Echo { media_id, .. }
                        | Command::RecordingStart { media_id, .. } => {
                            assert!(media_id > last_media, "media ids are fresh");
                            last_media = media_id;
                        }
                        Command::Finished { .. } => done = true,
                        _ => {}
                    }
                }
                assert_eq!(run.interp.is_finished(), done);
                if done {
                    assert_eq!(run.timer_ms(), None);
                }
            }
            assert!(run.interp.executed_actions().len() <= 100);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Stacks, HTTP, bridging, detection and the other call-side actions

#[test]
fn fetch_runs_the_fetched_actions_as_a_new_stack_then_returns() {
    let mut run = Run::new(program(json!([
        {"id": "f", "type": "fetch", "option": {"event_url": "http://127.0.0.1:1/next", "event_method": "get"}},
        {"id": "after", "type": "talk", "option": {"text": "back"}},
    ])));
    assert_eq!(
        run.input(0, Input::Start),
        [Command::Fetch {
            request_id: 1,
            method: flow::HttpMethod::Get,
            url: "http://127.0.0.1:1/next".into()
        }]
    );
    // A stale or foreign reply changes nothing.
    assert_eq!(
        run.input(
            1,
            Input::Fetched {
                request_id: 9,
                actions: json!([])
            }
        ),
        []
    );
    let fetched = json!([
        {"id": "x1", "type": "variable_set", "option": {"key": "k", "value": "v"}},
        {"id": "x2", "type": "goto", "option": {"target_id": "x1", "loop_count": 1}},
        {"id": "x3", "type": "talk", "option": {"text": "fetched ${k}"}},
    ]);
    assert_eq!(
        run.input(
            2,
            Input::Fetched {
                request_id: 1,
                actions: fetched
            }
        ),
        [talk(2, "fetched v")]
    );
    assert_eq!(run.interp.stack_depth(), 2);
    assert_eq!(run.interp.current_action_id(), Some("x3"));
    assert_eq!(
        run.input(3, Input::MediaFinished { media_id: 2 }),
        [talk(3, "back")]
    );
    assert_eq!(run.interp.stack_depth(), 1);
    assert_eq!(run.path(), ["f", "x1", "x2", "x1", "x2", "x3", "after"]);
    let stacks: Vec<usize> = run
        .interp
        .executed_actions()
        .iter()
        .map(|e| e.stack)
        .collect();
    assert_eq!(stacks, [0, 1, 1, 1, 1, 1, 0]);
    assert_eq!(
        run.input(4, Input::MediaFinished { media_id: 3 }),
        [finished(EndReason::Completed)]
    );
}

#[test]
fn fetched_actions_are_validated_and_bad_replies_end_the_flow() {
    let flow = json!([
        {"type": "fetch_flow", "option": {"flow_id": "${next_flow}"}},
        {"type": "hangup"},
    ]);
    let mut run = Run::with(
        program(flow.clone()),
        vars(&[("next_flow", "abc")]),
        Limits::default(),
    );
    assert_eq!(
        run.input(0, Input::Start),
        [Command::FetchFlow {
            request_id: 1,
            flow_id: "abc".into()
        }]
    );
    assert_eq!(
        run.input(1, Input::Fetched {
            request_id: 1,
            actions: json!([{"type": "talk"}, {"type": "goto", "option": {"target_id": "nowhere"}}]),
        }),
        [finished(EndReason::Error(
            "fetch_flow: the fetched actions are invalid: actions[0].option.text: talk needs a non-empty text".into()
        ))]
    );

    let mut run = Run::with(
        program(flow.clone()),
        vars(&[("next_flow", "abc")]),
        Limits::default(),
    );
    run.input(0, Input::Start);
    assert_eq!(
        run.input(
            1,
            Input::FetchFailed {
                request_id: 1,
                reason: "HTTP 500".into()
            }
        ),
        [finished(EndReason::Error(
            "fetch_flow failed: HTTP 500".into()
        ))]
    );

    // An empty fetched array returns at once.
    let mut run = Run::with(
        program(flow.clone()),
        vars(&[("next_flow", "abc")]),
        Limits::default(),
    );
    run.input(0, Input::Start);
    assert_eq!(
        run.input(
            1,
            Input::Fetched {
                request_id: 1,
                actions: json!([])
            }
        ),
        hangup_normal()
    );

    // A flow id that renders empty is an error, not a request.
    let mut run = Run::new(program(flow));
    assert_eq!(
        run.input(0, Input::Start),
        [finished(EndReason::Error(
            "fetch_flow: flow_id is empty after substitution".into()
        ))]
    );
}

#[test]
fn fetch_loops_are_capped_at_one_hundred_stacks() {
    let limits = Limits {
        max_executions: 10_000,
        ..Limits::default()
    };
    let mut run = Run::with(
        program(json!([{"type": "fetch", "option": {"event_url": "http://127.0.0.1:1/"}}])),
        Variables::new(),
        limits,
    );
    let mut commands = run.input(0, Input::Start);
    let mut rounds = 0;
    while let [Command::Fetch { request_id, .. }] = commands.as_slice() {
        rounds += 1;
        assert!(rounds <= 200, "unbounded");
        let again = json!([{"type": "fetch", "option": {"event_url": "http://127.0.0.1:1/"}}]);
        commands = run.input(
            rounds,
            Input::Fetched {
                request_id: *request_id,
                actions: again,
            },
        );
    }
    assert_eq!(rounds, 100);
    assert_eq!(
        commands,
        [finished(EndReason::Error(
            "fetch: more than 100 stacks".into()
        ))]
    );
}

#[test]
fn webhook_send_waits_only_when_sync_and_escapes_json_values() {
    let mut run = Run::with(
        program(json!([
            {"type": "webhook_send", "option": {
                "uri": "http://127.0.0.1:9/hook/${id}",
                "data": "{\"digits\": \"${voipbin.call.digits}\"}",
                "sync": true
            }},
            {"type": "webhook_send", "option": {
                "uri": "http://127.0.0.1:9/plain", "method": "put", "data_type": "text/plain",
                "data": "said ${voipbin.call.digits}"
            }},
            {"type": "hangup"},
        ])),
        vars(&[("id", "7"), ("voipbin.call.digits", "1\"}\\")]),
        Limits::default(),
    );
    let commands = run.input(0, Input::Start);
    let [
        Command::WebhookSend {
            request_id,
            method,
            uri,
            content_type,
            body,
            wait,
        },
    ] = commands.as_slice()
    else {
        panic!("{commands:?}")
    };
    assert_eq!(
        (*request_id, *method, *wait),
        (1, flow::HttpMethod::Post, true)
    );
    assert_eq!(uri, "http://127.0.0.1:9/hook/7");
    assert_eq!(content_type, "application/json");
    let parsed: Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed, json!({"digits": "1\"}\\"}));

    let mut expected = vec![Command::WebhookSend {
        request_id: 2,
        method: flow::HttpMethod::Put,
        uri: "http://127.0.0.1:9/plain".into(),
        content_type: "text/plain".into(),
        body: "said 1\"}\\".into(),
        wait: false,
    }];
    expected.extend(hangup_normal());
    assert_eq!(
        run.input(50, Input::WebhookDone { request_id: 1 }),
        expected
    );
}

#[test]
fn block_parks_until_continued_with_the_current_action_id() {
    let mut run = Run::new(program(json!([
        {"id": "b", "type": "block"},
        {"id": "t", "type": "talk", "option": {"text": "released"}},
    ])));
    assert_eq!(run.input(0, Input::Start), []);
    assert!(run.interp.is_blocked());
    assert_eq!(run.timer_ms(), None);
    let t = run.at(10);
    assert_eq!(
        run.interp.continue_block(t, "t"),
        Err(flow::ContinueError::OtherAction {
            current: "b".into()
        })
    );
    assert_eq!(run.drain(), []);
    run.interp.continue_block(t, "b").unwrap();
    assert_eq!(run.drain(), [talk(1, "released")]);
    assert_eq!(
        run.interp.continue_block(t, "b"),
        Err(flow::ContinueError::NotBlocked)
    );
}

#[test]
fn condition_datetime_uses_the_wall_clock_and_needs_one() {
    let flow = json!([
        {"type": "condition_datetime", "option": {
            "condition": ">=", "hour": 9, "minute": 0, "day": -1, "month": 0,
            "weekdays": [1, 2, 3, 4, 5], "false_target_id": "closed"
        }},
        {"type": "condition_datetime", "option": {
            "condition": "<", "hour": 17, "minute": 30, "day": -1, "month": 0,
            "false_target_id": "closed"
        }},
        {"id": "open", "type": "talk", "option": {"text": "open"}},
        {"type": "stop"},
        {"id": "closed", "type": "talk", "option": {"text": "closed"}},
    ]);
    // Monday 2026-11-23: 08:59:30 UTC is before opening; 30 s later is open.
    let monday_0859_30 = 1_795_424_370_000_i64;
    let mut run = Run::new(program(flow.clone()));
    let t0 = run.t0;
    run.interp.set_wall_clock(t0, monday_0859_30);
    assert_eq!(run.input(0, Input::Start), [talk(1, "closed")]);

    let mut run = Run::new(program(flow.clone()));
    let t0 = run.t0;
    run.interp.set_wall_clock(t0, monday_0859_30);
    assert_eq!(run.input(30_000, Input::Start), [talk(1, "open")]);

    // 17:30 exactly is closed; Sunday is closed.
    for at in [
        1_795_454_400_000_i64 - 1_800_000 + 3_600_000,
        1_795_352_820_000,
    ] {
        let mut run = Run::new(program(flow.clone()));
        let t0 = run.t0;
        run.interp.set_wall_clock(t0, at);
        assert_eq!(run.input(0, Input::Start), [talk(1, "closed")], "at {at}");
    }

    let mut run = Run::new(program(flow));
    assert_eq!(
        run.input(0, Input::Start),
        [finished(EndReason::Error(
            "condition_datetime: the run has no wall clock".into()
        ))]
    );
}

#[test]
fn deprecated_digit_and_status_conditions() {
    let flow = json!([
        {"type": "condition_call_status", "option": {"status": "progressing", "false_target_id": "no"}},
        {"type": "condition_call_digits", "option": {"length": 3, "key": "#", "false_target_id": "no"}},
        {"type": "talk", "option": {"text": "yes"}},
        {"type": "stop"},
        {"id": "no", "type": "talk", "option": {"text": "no"}},
    ]);
    let mut run = Run::with(
        program(flow.clone()),
        vars(&[("voipbin.call.digits", "12#")]),
        Limits::default(),
    );
    run.input(0, Input::Answered);
    assert_eq!(run.input(0, Input::Start), [talk(1, "yes")]);

    // Not answered yet: the status is ringing.
    let mut run = Run::with(
        program(flow.clone()),
        vars(&[("voipbin.call.digits", "12#")]),
        Limits::default(),
    );
    assert_eq!(run.input(0, Input::Start), [talk(1, "no")]);

    // Wrong length.
    let mut run = Run::with(
        program(flow),
        vars(&[("voipbin.call.digits", "1#")]),
        Limits::default(),
    );
    run.input(0, Input::Answered);
    assert_eq!(run.input(0, Input::Start), [talk(1, "no")]);
}

fn tel(target: &str) -> flow::Address {
    flow::Address {
        kind: "tel".into(),
        target: target.into(),
        target_name: String::new(),
    }
}

#[test]
fn connect_waits_for_the_bridge_then_moves_on_or_relays_the_reason() {
    let flow = |relay: bool| {
        json!([
            {"type": "connect", "option": {
                "source": {"type": "tel", "target": "+1000"},
                "destinations": [{"type": "tel", "target": "${agent}"}, {"type": "sip", "target": "sip:b@127.0.0.1"}],
                "early_media": true, "relay_reason": relay
            }},
            {"type": "talk", "option": {"text": "after ${voipbin.connect.result} ${voipbin.connect.reason}"}},
        ])
    };
    let mut run = Run::with(
        program(flow(false)),
        vars(&[("agent", "+2000")]),
        Limits::default(),
    );
    assert_eq!(
        run.input(0, Input::Start),
        [Command::Connect {
            media_id: 1,
            source: Some(tel("+1000")),
            destinations: vec![
                tel("+2000"),
                flow::Address {
                    kind: "sip".into(),
                    target: "sip:b@127.0.0.1".into(),
                    target_name: String::new()
                }
            ],
            early_media: true,
            relay_reason: false,
        }]
    );
    // Digits during the bridge do not end it.
    assert_eq!(run.input(5, Input::Digit('5')), []);
    assert_eq!(
        run.input(
            60_000,
            Input::ConnectEnded {
                media_id: 1,
                answered: false,
                reason: "busy".into()
            }
        ),
        [talk(2, "after unanswered busy")]
    );

    let mut run = Run::with(
        program(flow(true)),
        vars(&[("agent", "+2000")]),
        Limits::default(),
    );
    run.input(0, Input::Start);
    assert_eq!(
        run.input(
            9,
            Input::ConnectEnded {
                media_id: 1,
                answered: true,
                reason: "normal".into()
            }
        ),
        [
            Command::Hangup {
                reason: "normal".into(),
                reference_id: None
            },
            finished(EndReason::Hangup)
        ]
    );

    // The caller hangs up during the bridge.
    let mut run = Run::with(
        program(flow(false)),
        vars(&[("agent", "+2000")]),
        Limits::default(),
    );
    run.input(0, Input::Start);
    assert_eq!(
        run.input(9, Input::CallEnded),
        [finished(EndReason::CallEnded)]
    );
}

#[test]
fn agent_call_is_connect_to_the_agent() {
    let mut run = Run::new(program(json!([
        {"type": "agent_call", "option": {"agent_id": "eb1ac5c0-ff63-47e2-bcdb-5da9c336eb4b"}},
    ])));
    let commands = run.input(0, Input::Start);
    let [Command::Connect { destinations, .. }] = commands.as_slice() else {
        panic!("{commands:?}")
    };
    assert_eq!(destinations[0].kind, "agent");
    assert_eq!(
        destinations[0].target,
        "eb1ac5c0-ff63-47e2-bcdb-5da9c336eb4b"
    );
}

#[test]
fn amd_sync_async_and_machine_hangup() {
    // Synchronous, machine, continue: the result lands in variables and the flow moves on.
    let mut run = Run::new(program(json!([
        {"type": "amd", "option": {"machine_handle": "continue", "async": false}},
        {"type": "talk", "option": {"text": "${voipbin.amd.result} ${voipbin.amd.cause}"}},
    ])));
    assert_eq!(run.input(0, Input::Start), [Command::Amd { media_id: 1 }]);
    assert_eq!(
        run.input(
            3_000,
            Input::AmdResult {
                media_id: 1,
                result: "MACHINE".into(),
                cause: "long_greeting".into()
            }
        ),
        [talk(2, "MACHINE long_greeting")]
    );

    // Synchronous, machine, hangup.
    let mut run = Run::new(program(json!([
        {"type": "amd", "option": {"machine_handle": "hangup"}},
        {"type": "talk", "option": {"text": "human"}},
    ])));
    run.input(0, Input::Start);
    assert_eq!(
        run.input(
            3_000,
            Input::AmdResult {
                media_id: 1,
                result: "MACHINE".into(),
                cause: "max_words".into()
            }
        ),
        [
            Command::StopMedia { media_id: 1 },
            Command::Hangup {
                reason: "amd_machine".into(),
                reference_id: None
            },
            finished(EndReason::Hangup)
        ]
    );

    // Asynchronous: the flow goes on at once; a machine found later hangs up mid-talk.
    let mut run = Run::new(program(json!([
        {"type": "amd", "option": {"machine_handle": "hangup", "async": true}},
        {"type": "talk", "option": {"text": "hello"}},
    ])));
    assert_eq!(
        run.input(0, Input::Start),
        [Command::Amd { media_id: 1 }, talk(2, "hello")]
    );
    assert_eq!(
        run.input(
            2_500,
            Input::AmdResult {
                media_id: 1,
                result: "MACHINE".into(),
                cause: "long_greeting".into()
            }
        ),
        [
            Command::StopMedia { media_id: 1 },
            Command::Hangup {
                reason: "amd_machine".into(),
                reference_id: None
            },
            finished(EndReason::Hangup)
        ]
    );

    // Asynchronous, human: only the variables change.
    let mut run = Run::new(program(json!([
        {"type": "amd", "option": {"machine_handle": "hangup", "async": true}},
        {"type": "talk", "option": {"text": "hello"}},
    ])));
    run.input(0, Input::Start);
    assert_eq!(
        run.input(
            900,
            Input::AmdResult {
                media_id: 1,
                result: "HUMAN".into(),
                cause: "silence_after_greeting".into()
            }
        ),
        []
    );
    assert_eq!(run.var("voipbin.amd.result"), Some("HUMAN"));
}

#[test]
fn call_places_independent_calls_and_moves_on() {
    let mut run = Run::with(
        program(json!([
            {"type": "call", "option": {
                "source": {"type": "tel", "target": "+1000"},
                "destinations": [{"type": "tel", "target": "${who}"}],
                "actions": [{"type": "talk", "option": {"text": "message for ${who}"}}],
                "chained": true
            }},
            {"type": "call", "option": {
                "destinations": [{"type": "sip", "target": "sip:x@127.0.0.1"}],
                "flow_id": "${flow}", "early_execution": true
            }},
            {"type": "hangup"},
        ])),
        vars(&[("who", "+3000"), ("flow", "f-1")]),
        Limits::default(),
    );
    let mut expected = vec![
        Command::Call {
            source: Some(tel("+1000")),
            destinations: vec![tel("+3000")],
            flow_id: None,
            actions: Some(json!([{"type": "talk", "option": {"text": "message for +3000"}}])),
            chained: true,
            early_execution: false,
        },
        Command::Call {
            source: None,
            destinations: vec![flow::Address {
                kind: "sip".into(),
                target: "sip:x@127.0.0.1".into(),
                target_name: String::new(),
            }],
            flow_id: Some("f-1".into()),
            actions: None,
            chained: false,
            early_execution: true,
        },
    ];
    expected.extend(hangup_normal());
    assert_eq!(run.input(0, Input::Start), expected);
}

#[test]
fn hangup_with_reference_stop_input_mute_and_external_media() {
    let mut run = Run::new(program(json!([
        {"type": "mute", "option": {"direction": "in"}},
        {"type": "external_media_start", "option": {"external_host": "127.0.0.1:40000"}},
        {"type": "external_media_stop"},
        {"type": "empty"},
        {"type": "hangup_relay", "option": {"reference_id": "c-1"}},
    ])));
    assert_eq!(
        run.input(0, Input::Start),
        [
            Command::Mute {
                direction: flow::MuteDirection::In
            },
            Command::ExternalMediaStart {
                media_id: 1,
                host: "127.0.0.1:40000".into(),
                encapsulation: "rtp".into(),
                transport: "udp".into(),
                connection_type: "client".into(),
                format: "ulaw".into(),
                direction: "both".into(),
            }
        ]
    );
    assert_eq!(
        run.input(1, Input::MediaFinished { media_id: 1 }),
        [
            Command::ExternalMediaStop,
            Command::Hangup {
                reason: "normal".into(),
                reference_id: Some("c-1".into())
            },
            finished(EndReason::Hangup)
        ]
    );

    let mut run = Run::new(program(
        json!([{"type": "sleep", "option": {"duration": 10000}}]),
    ));
    run.input(0, Input::Start);
    assert_eq!(run.input(5, Input::Stop), [finished(EndReason::Stopped)]);
    assert_eq!(run.input(6, Input::Stop), []);
}

#[test]
fn new_action_options_are_validated_with_paths() {
    let errors = |actions: Value| -> Vec<(String, String)> {
        flow::compile(&actions)
            .unwrap_err()
            .into_iter()
            .filter(|d| d.severity == flow::Severity::Error)
            .map(|d| (d.path, d.message))
            .collect()
    };
    let e = errors(json!([
        {"type": "connect", "option": {"destinations": [{"type": "tel"}, 5]}},
        {"type": "call", "option": {"destinations": [{"type": "tel", "target": "1"}], "actions": [{"type": "talk"}]}},
        {"type": "webhook_send", "option": {"uri": "ftp://x", "method": "BREW"}},
        {"type": "condition_datetime", "option": {"condition": "~", "hour": 24, "weekdays": [7]}},
        {"type": "fetch", "option": {}},
        {"type": "external_media_start", "option": {"external_host": "nohost", "format": "opus"}},
        {"type": "amd", "option": {"machine_handle": "delay"}},
        {"type": "mute", "option": {"direction": "sideways"}},
        {"type": "call", "option": {"destinations": []}},
    ]));
    let expected: Vec<(String, String)> = [
        (
            "actions[0].option.destinations[0].target",
            "address needs a target",
        ),
        (
            "actions[0].option.destinations[1]",
            r#"must be an address object: {"type", "target"}"#,
        ),
        (
            "actions[1].option.actions[0].option.text",
            "talk needs a non-empty text",
        ),
        (
            "actions[2].option.uri",
            "must be an http:// or https:// URL",
        ),
        (
            "actions[2].option.method",
            r#"must be one of "GET", "POST", "PUT", "PATCH" or "DELETE""#,
        ),
        (
            "actions[3].option.condition",
            r#"must be one of "==", "!=", ">", ">=", "<" or "<=""#,
        ),
        ("actions[3].option.hour", "must be -1 (any hour) or 0-23"),
        (
            "actions[3].option.weekdays[0]",
            "must be a weekday number, 0 (Sunday) to 6 (Saturday)",
        ),
        ("actions[4].option.event_url", "fetch needs an event_url"),
        (
            "actions[5].option.external_host",
            "must be host:port, e.g. 127.0.0.1:40000",
        ),
        ("actions[5].option.format", r#"must be "ulaw" or "alaw""#),
        (
            "actions[6].option.machine_handle",
            r#"must be "hangup" or "continue""#,
        ),
        (
            "actions[7].option.direction",
            r#"must be one of "both", "in", "out" or "none""#,
        ),
        (
            "actions[8].option.destinations",
            "needs at least one destination address",
        ),
        (
            "actions[8].option.flow_id",
            "call needs a flow_id or inline actions for the new calls",
        ),
    ]
    .iter()
    .map(|(p, m)| (p.to_string(), m.to_string()))
    .collect();
    assert_eq!(e, expected);
}

#[test]
fn inject_cuts_the_current_action_short_and_returns_after_it() {
    let flow = json!([
        {"id": "a", "type": "talk", "option": {"text": "first"}},
        {"id": "b", "type": "talk", "option": {"text": "second"}},
    ]);
    let mut run = Run::new(program(flow));
    assert_eq!(run.input(0, Input::Start), [talk(1, "first")]);
    let injected = json!([
        {"id": "x", "type": "talk", "option": {"text": "news"}},
        {"id": "y", "type": "variable_set", "option": {"key": "pushed", "value": "yes"}},
    ]);
    run.interp.inject(run.at(500), &injected).unwrap();
    assert_eq!(
        run.drain(),
        [Command::StopMedia { media_id: 1 }, talk(2, "news")]
    );
    // The stopped talk's end is stale and ignored; the injected one's end goes on after "a".
    assert_eq!(run.input(600, Input::MediaFinished { media_id: 1 }), []);
    assert_eq!(
        run.input(900, Input::MediaFinished { media_id: 2 }),
        [talk(3, "second")]
    );
    assert_eq!(run.var("pushed"), Some("yes"));
    assert_eq!(
        run.input(1500, Input::MediaFinished { media_id: 3 }),
        [finished(EndReason::Completed)]
    );
    assert_eq!(
        run.interp.inject(run.at(1600), &injected),
        Err(flow::InjectError::NotRunning)
    );
}

#[test]
fn inject_refuses_invalid_actions_with_their_path_and_changes_nothing() {
    let mut run = Run::new(program(
        json!([{"type": "sleep", "option": {"duration": 1000}}]),
    ));
    assert_eq!(run.input(0, Input::Start), []);
    let bad = json!([{"type": "goto", "option": {"target_id": "nowhere"}}]);
    match run.interp.inject(run.at(10), &bad) {
        Err(flow::InjectError::Invalid { path, .. }) => {
            assert!(path.ends_with("[0].option.target_id"), "{path}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(run.drain(), []);
    assert_eq!(run.timeout(1000), [finished(EndReason::Completed)]);
}
