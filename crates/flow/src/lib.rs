//! The voxflow flow language: the native (VoIPBIN-shaped) action model, static validation into a
//! [`Program`], `${name}` templating, and the flow [`Interpreter`] as a sans-IO state machine.
//!
//! # What this crate owns
//!
//! - **The action model** ([`ActionType`], [`Action`]): `{id, next_id, type, option}` objects as
//!   VoIPBIN defines them. Every VoIPBIN type name is recognised; the ones this version can run are
//!   those for which [`ActionType::is_supported`] is true: every call-side action (`answer`,
//!   `amd`, `beep`, `block`, `branch`, `call`, the `condition_*` family, `connect` and its alias
//!   `agent_call`, `digits_receive`, `digits_send`, `echo`, `empty`, `external_media_start`/
//!   `stop`, `fetch`, `fetch_flow`, `goto`, `hangup` and `hangup_relay`, `mute`, `play`,
//!   `recording_start`/`stop`, `sleep`, `stop`, `stream_echo`, `talk`, `variable_set`,
//!   `webhook_send`). Conferences, queues, transcription, AI and messaging types are refused.
//! - **[`compile`]**: parse-don't-validate. A JSON array of actions becomes an immutable
//!   [`Program`] in which every `next_id` and target id is already resolved, or a list of
//!   [`Diagnostic`]s, each with the JSON path of the bad field (`actions[3].option.target_ids["2"]`).
//!   [`assign_ids`] gives id-less actions fresh ids before a flow is stored.
//! - **Variables and templating** ([`Variables`], [`substitute`], [`substitute_value`]).
//! - **The interpreter** ([`Interpreter`]): one run of a program on one call (VoIPBIN's
//!   "activeflow"). It never does IO, never reads the clock and holds no randomness: inputs come in
//!   through `handle_*` with the current [`Instant`](std::time::Instant), intents come out of
//!   [`Interpreter::poll_command`], and the only timer is [`Interpreter::poll_timeout`].
//!
//! It does **not** own calls, media, HTTP, storage or speech: the runtime performs each
//! [`Command`] and reports back with an [`Input`].
//!
//! # How to drive it
//!
//! ```
//! # use voxflow_flow as flow;
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use flow::{Command, Input, Interpreter, Limits, Variables};
//!
//! let actions = serde_json::json!([
//!     {"type": "answer"},
//!     {"type": "talk", "option": {"text": "Hello ${name}"}},
//!     {"type": "hangup"}
//! ]);
//! let program = Arc::new(flow::compile(&actions).expect("valid flow"));
//! let mut vars = Variables::new();
//! vars.insert("name".into(), "Ada".into());
//! let mut interp = Interpreter::new(program, vars, Limits::default());
//!
//! let t0 = Instant::now();
//! interp.handle_input(t0, Input::Start);
//! // The shell loop: drain commands, perform them, feed results back, arm the timer.
//! assert_eq!(interp.poll_command(), Some(Command::Answer));
//! assert_eq!(interp.poll_command(), None);
//! interp.handle_input(t0, Input::Answered);
//! let Some(Command::Talk { media_id, text, .. }) = interp.poll_command() else { panic!() };
//! assert_eq!(text, "Hello Ada");
//! interp.handle_input(t0 + Duration::from_secs(2), Input::MediaFinished { media_id });
//! assert_eq!(
//!     interp.poll_command(),
//!     Some(Command::Hangup { reason: "normal".into(), reference_id: None })
//! );
//! assert!(matches!(interp.poll_command(), Some(Command::Finished { .. })));
//! assert!(interp.is_finished());
//! ```
//!
//! The shell's loop is: after every `handle_input`/`handle_timeout`, drain `poll_command` until
//! `None`, then sleep until `poll_timeout()` (if any) or the next event, and call
//! `handle_timeout(now)` when it passes. After [`Command::Finished`] nothing else is emitted.
//!
//! # Semantics (VoIPBIN activeflow, see LANDSCAPE §1.1)
//!
//! - A missing, empty or nil-UUID `next_id` means "the next element of the array"; running off the
//!   end finishes the flow with [`EndReason::Completed`].
//! - `goto` jumps while its per-run `loop_count` is positive, decrementing it each time; at `<= 0`,
//!   **or when `loop_count` is absent**, it falls through to the next action (compile warns).
//!   `loop_count: 2` therefore jumps exactly twice.
//! - `branch` reads its variable (default `voipbin.call.digits`), resets it to `""`, then jumps to
//!   `target_ids[value]`, else `default_target_id`, else the next action.
//! - DTMF keys ([`Input::Digit`]) are **appended** to `voipbin.call.digits` while a `digits_receive`
//!   runs and **overwrite** it with the single key at any other time (one key of type-ahead).
//! - `digits_receive` checks its end condition on entry without clearing the buffer (`length`
//!   reached, or any key of the `key` set present), otherwise arms one `duration` timer from entry
//!   (absent or `0` means 5000 ms) and ends on length, on a terminator key (which stays in the
//!   variable) or on the timer. With neither `length` nor `key` only the timer ends it.
//! - `talk` with `digits_handle: "next"`: a key during the talk emits [`Command::StopMedia`] and
//!   moves on. Media ids are unique per run, so stale completions are ignored.
//! - `${name}` is substituted into the free-text string options of an action right before it runs
//!   (`text`, `language`, `gender`, `stream_urls`, `key`, `value`, `value_string`, `reason`,
//!   `digits`, `on_end_flow_id`; see [`substitute`]). Ids and enumerated options (`condition`,
//!   `value_type`, `digits_handle`, `format`, `end_of_key`) are resolved by `compile` and not
//!   templated. The `variable` of `branch` and `condition_variable`
//!   is a variable name; `"${name}"` is accepted as the same name, and any other template in a
//!   `condition_variable`'s `variable` is rendered and compared as text (VoIPBIN's code
//!   substitutes the whole option first, so both spellings occur in the wild).
//! - `answer` completes at once if [`Input::Answered`] was already seen; a `talk` whose text
//!   renders empty says nothing and moves on; `sleep` with no or `0` duration moves on at once.
//! - `condition_variable` goes to the next action when the condition holds, else to
//!   `false_target_id` (or the next action if unset). `number` parses the variable as `f64` (not a
//!   number: the condition is false); `length` compares the character count; `string` compares
//!   text lexicographically.
//! - `digits_send` emits [`Command::SendDigits`] and waits for its [`Input::MediaFinished`].
//!   `digits` may hold only `0`-`9`, `A`-`D`, `#`, `*`, at most 100 keys: checked by `compile`
//!   when the option has no `${}`, otherwise after rendering, where a bad key ends the run with
//!   [`EndReason::Error`] naming it (digits that render empty send nothing and move on).
//!   `duration` is 100-1000 ms per key (absent or `0`: 250 ms), `interval` 0-5000 ms between
//!   keys (absent: 100 ms; `0` means no pause). VoIPBIN leaves both defaults to Asterisk, so
//!   these are voxflow's choices.
//! - `echo` and `stream_echo` emit [`Command::Echo`] (`dtmf: true` for `stream_echo`, which
//!   sends the caller's DTMF back as well) and wait for its [`Input::MediaFinished`]; `duration`
//!   in ms, absent or `0` meaning 180 s as in VoIPBIN's call-manager. Keys pressed meanwhile
//!   overwrite `voipbin.call.digits` as during any action other than `digits_receive`.
//! - `recording_start` emits [`Command::RecordingStart`] and waits only for the recording to
//!   begin: [`Input::RecordingStarted`] stores its id in `voipbin.recording.id`
//!   ([`VARIABLE_RECORDING_ID`]) and moves on while the shell keeps recording in the background.
//!   `format` is `wav` (default), `mp3` or `ogg`; `end_of_silence` and `duration` are seconds
//!   (`0`: no limit); `end_of_key` is `""`/`"none"`, `"any"`, `"*"` or `"#"`, anything else a
//!   compile error; `on_end_flow_id` is carried in the command (unset: `None`). The shell may
//!   refuse a format it cannot write with [`Input::MediaFailed`], which ends the run.
//!   `recording_stop` emits [`Command::RecordingStop`] and moves on at once (no reply);
//!   `voipbin.recording.id` keeps the last recording's id.
//! - Known options this version cannot honour are refused by `compile` rather than ignored:
//!   `talk` with `async: true`.
//! - `fetch` and `fetch_flow` emit [`Command::Fetch`]/[`Command::FetchFlow`] and wait; the
//!   actions that come back ([`Input::Fetched`]) are validated with [`compile`] and run as a new
//!   stack, after which execution returns to the action after the fetch (at most 100 stacks).
//!   Invalid actions or [`Input::FetchFailed`] end the run with [`EndReason::Error`].
//! - `webhook_send` emits [`Command::WebhookSend`]; with `sync: true` it waits for
//!   [`Input::WebhookDone`], and a failed request never stops the flow. In JSON bodies the
//!   substituted values are JSON-escaped.
//! - `connect` (and `agent_call`) emit [`Command::Connect`] and wait for
//!   [`Input::ConnectEnded`], which sets `voipbin.connect.result`/`.reason`; with
//!   `relay_reason` the caller is then hung up with the other side's reason.
//! - `call` emits [`Command::Call`] (inline actions rendered with this run's variables) and
//!   moves on at once.
//! - `amd` emits [`Command::Amd`] and waits for [`Input::AmdResult`] unless `async`;
//!   `machine_handle: hangup` hangs a `MACHINE` up with reason `amd_machine`.
//! - `condition_datetime` needs [`Interpreter::set_wall_clock`]; it compares the set fields of
//!   (month, day, hour, minute) in UTC as one tuple, after the `weekdays` filter.
//! - `condition_call_digits` holds when `voipbin.call.digits` has exactly `length` keys (if set)
//!   and contains `key` (if set); `condition_call_status` compares `progressing` (answered) or
//!   `ringing`.
//! - `block` parks the run until [`Interpreter::continue_block`] names it; [`Input::Stop`] ends
//!   a run from outside.
//! - `variable_set` may write any key, including the reserved `voipbin.*` namespace (so a flow can,
//!   for example, clear `voipbin.call.digits` before collecting). Dropping externally supplied
//!   `voipbin.*` keys is the API's job ([`is_reserved_variable`]). Writes beyond
//!   [`Limits::max_variables`] keys or [`Limits::max_value_len`] bytes are skipped and the flow
//!   continues (VoIPBIN logs `variable_set` errors and continues).
//! - Each action start counts towards [`Limits::max_executions`]; the next start beyond it ends the
//!   flow with [`EndReason::ExecutionLimit`].
//! - [`Input::MediaFailed`] for the running action (talk, play, beep, digits_send, echo,
//!   stream_echo, recording_start) ends the flow with [`EndReason::Error`] (most VoIPBIN action
//!   errors stop the activeflow).
//! - [`Input::CallEnded`] at any point discards unpolled commands and ends the flow with
//!   [`EndReason::CallEnded`].
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod action;
mod compile;
mod graph;
mod interpreter;
mod program;
mod sim;
mod variable;

pub use action::{
    ActionId, ActionType, Address, CallStatus, HttpMethod, MuteDirection, RecordingEndKey,
    RecordingFormat,
};
pub use compile::{Diagnostic, Severity, assign_ids, compile, compile_without_call};
pub use graph::{to_dot, to_mermaid};
pub use interpreter::{
    Command, ContinueError, EndReason, ExecutedAction, InjectError, Input, Interpreter, Limits,
};
pub use program::{Action, Program};
pub use sim::{
    AmdRecord, AmdScript, AmdVerdict, CallLeg, CallRecord, CallResult, CallScript, ConnectRecord,
    DtmfPress, Executed, FetchRecord, HangupRecord, HttpReply, RecordingRecord, Report, Script,
    ScriptError, ScriptLimits, StartTime, WebhookRecord, simulate, simulate_value,
};
pub use variable::{
    RESERVED_PREFIX, VARIABLE_AMD_CAUSE, VARIABLE_AMD_RESULT, VARIABLE_CALL_DIGITS,
    VARIABLE_CONNECT_REASON, VARIABLE_CONNECT_RESULT, VARIABLE_RECORDING_ID, Variables,
    is_reserved_variable, substitute, substitute_value,
};
