//! The flow interpreter: one run of a [`Program`] on one call, as a sans-IO state machine.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::action::{
    ActionId, ActionType, Operand, RecordingEndKey, RecordingFormat, Step, Subject,
    check_dtmf_keys, is_unset_id,
};
use crate::program::Program;
use crate::variable::{VARIABLE_CALL_DIGITS, VARIABLE_RECORDING_ID, Variables, substitute_bounded};

/// Caps on one run, after VoIPBIN's activeflow limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Action starts allowed in one run; the next start ends it with
    /// [`EndReason::ExecutionLimit`]. Default 100.
    pub max_executions: u32,
    /// Distinct variables a run may hold; `variable_set` of a new key beyond this is skipped.
    /// Default 100.
    pub max_variables: usize,
    /// Longest variable value in bytes; longer `variable_set` values are skipped and DTMF stops
    /// being appended. Default 32 KiB.
    pub max_value_len: usize,
}

/// Something that happened to the call, fed to [`Interpreter::handle_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin at the first action. Ignored after the first time.
    Start,
    /// The call is answered: the reply to [`Command::Answer`], or unprompted (an outbound call
    /// that was answered before the flow started), after which `answer` actions complete at once.
    Answered,
    /// A DTMF key from the caller (`0`-`9`, `*`, `#`, `A`-`D`; lowercase `a`-`d` are taken as
    /// uppercase; anything else is ignored). The shell forwards every key, whatever runs.
    Digit(char),
    /// The Talk/Play/Beep/SendDigits/Echo with this id finished (played, sent, elapsed) or was
    /// stopped.
    MediaFinished {
        /// The `media_id` of the command.
        media_id: u64,
    },
    /// The background recording of [`Command::RecordingStart`] with this id has begun (after
    /// its beep, if it asked for one). Sets `voipbin.recording.id` and moves on.
    RecordingStarted {
        /// The `media_id` of the command.
        media_id: u64,
        /// The new recording's id.
        recording_id: String,
    },
    /// The media command with this id could not be carried out (TTS error, URL not found, DTMF
    /// not sendable, recording refused, …).
    MediaFailed {
        /// The `media_id` of the command.
        media_id: u64,
        /// Why, for the end reason.
        reason: String,
    },
    /// The call is gone (the caller hung up). The flow ends with [`EndReason::CallEnded`].
    CallEnded,
}

/// An intent for the shell, from [`Interpreter::poll_command`].
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Answer the call, then reply [`Input::Answered`] (at once if it already is answered).
    Answer,
    /// Speak `text` (plain or SSML); reply [`Input::MediaFinished`] or [`Input::MediaFailed`].
    Talk {
        /// Unique within this run.
        media_id: u64,
        /// The text after `${}` substitution.
        text: String,
        /// BCP-47 language, if set.
        language: Option<String>,
        /// `male`, `female` or `neutral`, if set.
        gender: Option<String>,
    },
    /// Play these URLs in order; reply like [`Command::Talk`].
    Play {
        /// Unique within this run.
        media_id: u64,
        /// The URLs after `${}` substitution.
        urls: Vec<String>,
    },
    /// Play the beep tone; reply like [`Command::Talk`].
    Beep {
        /// Unique within this run.
        media_id: u64,
    },
    /// Send these DTMF keys to the caller, one after the other (`digits_send`); reply
    /// [`Input::MediaFinished`] once the last key is out, or [`Input::MediaFailed`]. Keys the
    /// caller presses meanwhile are still forwarded as [`Input::Digit`].
    SendDigits {
        /// Unique within this run.
        media_id: u64,
        /// The keys after `${}` substitution: 1 to 100 of `0`-`9`, `A`-`D`, `#`, `*`.
        digits: String,
        /// Tone length per key, 100-1000 ms.
        duration_ms: u32,
        /// Pause between two keys, 0-5000 ms.
        interval_ms: u32,
    },
    /// Send the caller's audio back to them (`echo`, `stream_echo`); reply
    /// [`Input::MediaFinished`] when `duration` has elapsed, or [`Input::MediaFailed`]. Keys the
    /// caller presses are still forwarded as [`Input::Digit`] (so they land in
    /// `voipbin.call.digits` as at any other time).
    Echo {
        /// Unique within this run.
        media_id: u64,
        /// How long to echo; `None` means until the call ends or [`Command::StopMedia`]. Native
        /// flows always give a duration (absent or `0` is 180 s, as in VoIPBIN).
        duration: Option<Duration>,
        /// Also send received DTMF events back (`stream_echo`); `false` for `echo`.
        dtmf: bool,
    },
    /// Start recording the call in the background (`recording_start`). If `beep_start`, play
    /// the beep first. Then reply [`Input::RecordingStarted`] with the recording's id, or
    /// [`Input::MediaFailed`] (format not available, a recording already running, …), which
    /// ends the flow with an error. The recording then runs on its own while the flow moves on,
    /// until [`Command::RecordingStop`], one of its limits, or the end of the call.
    RecordingStart {
        /// Unique within this run.
        media_id: u64,
        /// The audio format to write.
        format: RecordingFormat,
        /// Stop after this much continuous silence; `None`: no silence limit.
        end_of_silence: Option<Duration>,
        /// Stop when the caller presses this key; `None`: keys do not stop it. The key is
        /// forwarded as [`Input::Digit`] too.
        end_of_key: Option<RecordingEndKey>,
        /// Stop after this long; `None`: no limit.
        max_duration: Option<Duration>,
        /// Play the beep before recording starts.
        beep_start: bool,
        /// The flow to run when the recording ends (after `${}` substitution); `None` if unset.
        on_end_flow_id: Option<String>,
    },
    /// Stop the call's running recording, if any (`recording_stop`). No reply; the flow has
    /// already moved on.
    RecordingStop,
    /// Stop this media now (a `talk` with `digits_handle: "next"` was interrupted by a key). The
    /// interpreter has already moved on and ignores any later completion of this id.
    StopMedia {
        /// The media to stop.
        media_id: u64,
    },
    /// Hang up the call with this reason (the `hangup` action; default `"normal"`). A
    /// [`Command::Finished`] with [`EndReason::Hangup`] follows.
    Hangup {
        /// The hangup reason.
        reason: String,
    },
    /// The flow has ended; nothing more will be emitted. The shell hangs up if the call is still
    /// up.
    Finished {
        /// Why it ended.
        reason: EndReason,
    },
}

/// Why a flow run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// It ran past its last action.
    Completed,
    /// A `stop` action.
    Stopped,
    /// A `hangup` action.
    Hangup,
    /// [`Input::CallEnded`].
    CallEnded,
    /// [`Limits::max_executions`] action starts (or 1000 starts in a row without waiting).
    ExecutionLimit,
    /// An action failed, e.g. its media could not be played.
    Error(String),
}

/// One action start, for the run's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutedAction {
    /// The action's index in the program.
    pub index: usize,
    /// The action's id, if it has one.
    pub action_id: Option<ActionId>,
    /// The action's type.
    pub action_type: ActionType,
    /// When it started.
    pub at: Instant,
}

/// One run of a [`Program`] (VoIPBIN's "activeflow"): a sans-IO state machine. See the crate
/// docs for the run loop and the semantics.
#[derive(Debug)]
pub struct Interpreter {
    program: Arc<Program>,
    variables: Variables,
    limits: Limits,
    state: State,
    current: Option<usize>,
    answered: bool,
    last_media_id: u64,
    execute_count: u32,
    /// Remaining `loop_count` per `goto` action index, for this run.
    loop_counts: BTreeMap<usize, i64>,
    executed: Vec<ExecutedAction>,
    commands: VecDeque<Command>,
}

impl Interpreter {
    /// A run of `program` that has not started yet; `variables` are its initial variables (the
    /// runtime's `voipbin.*` call data and the client's own, already filtered).
    pub fn new(program: Arc<Program>, variables: Variables, limits: Limits) -> Self {
        Self {
            program,
            variables,
            limits,
            state: State::NotStarted,
            current: None,
            answered: false,
            last_media_id: 0,
            execute_count: 0,
            loop_counts: BTreeMap::new(),
            executed: Vec::new(),
            commands: VecDeque::new(),
        }
    }

    // Getters.

    /// The program this run executes.
    pub fn program(&self) -> &Arc<Program> {
        &self.program
    }

    /// The run's variables as they are now.
    pub fn variables(&self) -> &Variables {
        &self.variables
    }

    /// Every action start so far, in order.
    pub fn executed_actions(&self) -> &[ExecutedAction] {
        &self.executed
    }

    /// The id of the action running now (or the last one, once finished); `None` before the
    /// start or if that action has no id.
    pub fn current_action_id(&self) -> Option<&str> {
        let index = self.current?;
        self.program
            .actions()
            .get(index)
            .and_then(|a| a.id())
            .map(ActionId::as_str)
    }

    /// The index of the action running now (or the last one, once finished).
    pub fn current_action_index(&self) -> Option<usize> {
        self.current
    }

    /// Whether the run has ended ([`Command::Finished`] is queued or was emitted).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    // Inputs.

    /// Feed an event that happened at `now`.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.is_finished() {
            return;
        }
        match input {
            Input::Start => {
                if matches!(self.state, State::NotStarted) {
                    let first = (!self.program.is_empty()).then_some(0);
                    self.run_from(now, first);
                }
            }
            Input::Answered => {
                self.answered = true;
                if matches!(self.state, State::Answering) {
                    self.advance(now);
                }
            }
            Input::Digit(key) => self.handle_digit(now, key),
            Input::MediaFinished { media_id } => {
                if matches!(self.state, State::Playing { media_id: m, .. } if m == media_id) {
                    self.advance(now);
                }
            }
            Input::RecordingStarted {
                media_id,
                recording_id,
            } => {
                if matches!(self.state, State::StartingRecording { media_id: m } if m == media_id) {
                    self.variables
                        .insert(VARIABLE_RECORDING_ID.to_owned(), recording_id);
                    self.advance(now);
                }
            }
            Input::MediaFailed { media_id, reason } => {
                if self.state.media_id() == Some(media_id) {
                    let what = self
                        .current
                        .and_then(|i| self.program.actions().get(i))
                        .map_or("media", |a| a.action_type().as_str());
                    self.finish(EndReason::Error(format!("{what} failed: {reason}")));
                }
            }
            Input::CallEnded => {
                self.commands.clear();
                self.finish(EndReason::CallEnded);
            }
        }
    }

    /// Fire the timer if `now` has reached it (`sleep` and `digits_receive` timeouts).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.advance(now);
        }
    }

    // Outputs.

    /// When [`Interpreter::handle_timeout`] should be called next, if a timer is armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Sleeping { until } => *until,
            State::Receiving { until, .. } => *until,
            _ => None,
        }
    }

    /// The next command for the shell; drain until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    // Internals.

    fn handle_digit(&mut self, now: Instant, key: char) {
        let key = key.to_ascii_uppercase();
        if !matches!(key, '0'..='9' | '*' | '#' | 'A'..='D') {
            return;
        }
        match &self.state {
            State::Receiving { length, keys, .. } => {
                let (length, keys) = (*length, keys.clone());
                let max = self.limits.max_value_len;
                let digits = self
                    .variables
                    .entry(VARIABLE_CALL_DIGITS.to_owned())
                    .or_default();
                if digits.len() < max {
                    digits.push(key);
                }
                if digits_complete(digits, length, &keys) {
                    self.advance(now);
                }
            }
            State::Playing {
                media_id,
                next_on_digit: true,
            } => {
                let media_id = *media_id;
                self.set_digits(key);
                self.commands.push_back(Command::StopMedia { media_id });
                self.advance(now);
            }
            _ => self.set_digits(key),
        }
    }

    /// Type-ahead: outside `digits_receive` a key replaces the buffer.
    fn set_digits(&mut self, key: char) {
        self.variables
            .insert(VARIABLE_CALL_DIGITS.to_owned(), key.to_string());
    }

    /// The running action is done: go where it leads.
    fn advance(&mut self, now: Instant) {
        let next = self.current.and_then(|i| self.program.next_index(i));
        self.run_from(now, next);
    }

    /// Start actions from `cursor` until one has to wait or the flow ends.
    fn run_from(&mut self, now: Instant, mut cursor: Option<usize>) {
        let program = Arc::clone(&self.program);
        let mut starts_in_a_row = 0u32;
        loop {
            let Some(index) = cursor else {
                return self.finish(EndReason::Completed);
            };
            let Some(action) = program.actions().get(index) else {
                return self.finish(EndReason::Error(format!("no action at index {index}")));
            };
            if self.execute_count >= self.limits.max_executions
                || starts_in_a_row >= MAX_STARTS_IN_A_ROW
            {
                return self.finish(EndReason::ExecutionLimit);
            }
            self.execute_count += 1;
            starts_in_a_row += 1;
            self.current = Some(index);
            self.executed.push(ExecutedAction {
                index,
                action_id: action.id().cloned(),
                action_type: action.action_type(),
                at: now,
            });
            match self.start_step(now, index, &action.step) {
                Flow::Next => cursor = program.next_index(index),
                Flow::Jump(target) => cursor = Some(target),
                Flow::Wait(state) => {
                    self.state = state;
                    return;
                }
                Flow::End(reason) => return self.finish(reason),
            }
        }
    }

    /// Run one action's start: emit its commands and say what happens next.
    fn start_step(&mut self, now: Instant, index: usize, step: &Step) -> Flow {
        match step {
            Step::Answer => {
                if self.answered {
                    return Flow::Next;
                }
                self.commands.push_back(Command::Answer);
                Flow::Wait(State::Answering)
            }
            Step::Talk(talk) => {
                let text = self.render(&talk.text);
                if text.is_empty() {
                    return Flow::Next;
                }
                let media_id = self.new_media_id();
                let language = Some(self.render(&talk.language)).filter(|s| !s.is_empty());
                let gender = Some(self.render(&talk.gender)).filter(|s| !s.is_empty());
                self.commands.push_back(Command::Talk {
                    media_id,
                    text,
                    language,
                    gender,
                });
                Flow::Wait(State::Playing {
                    media_id,
                    next_on_digit: talk.next_on_digit,
                })
            }
            Step::Play { urls } => {
                let media_id = self.new_media_id();
                let urls = urls.iter().map(|u| self.render(u)).collect();
                self.commands.push_back(Command::Play { media_id, urls });
                Flow::Wait(State::Playing {
                    media_id,
                    next_on_digit: false,
                })
            }
            Step::Beep => {
                let media_id = self.new_media_id();
                self.commands.push_back(Command::Beep { media_id });
                Flow::Wait(State::Playing {
                    media_id,
                    next_on_digit: false,
                })
            }
            Step::DigitsSend(send) => {
                let digits = self.render(&send.digits);
                if digits.is_empty() {
                    return Flow::Next;
                }
                if let Err(message) = check_dtmf_keys(&digits) {
                    return Flow::End(EndReason::Error(format!("digits_send: {message}")));
                }
                let media_id = self.new_media_id();
                self.commands.push_back(Command::SendDigits {
                    media_id,
                    digits,
                    duration_ms: send.duration_ms,
                    interval_ms: send.interval_ms,
                });
                Flow::Wait(State::Playing {
                    media_id,
                    next_on_digit: false,
                })
            }
            Step::Echo { duration, dtmf } => {
                let media_id = self.new_media_id();
                self.commands.push_back(Command::Echo {
                    media_id,
                    duration: Some(*duration),
                    dtmf: *dtmf,
                });
                Flow::Wait(State::Playing {
                    media_id,
                    next_on_digit: false,
                })
            }
            Step::RecordingStart(start) => {
                let media_id = self.new_media_id();
                let on_end_flow_id =
                    Some(self.render(&start.on_end_flow_id)).filter(|id| !is_unset_id(id));
                self.commands.push_back(Command::RecordingStart {
                    media_id,
                    format: start.format,
                    end_of_silence: start.end_of_silence,
                    end_of_key: start.end_of_key,
                    max_duration: start.max_duration,
                    beep_start: start.beep_start,
                    on_end_flow_id,
                });
                Flow::Wait(State::StartingRecording { media_id })
            }
            Step::RecordingStop => {
                self.commands.push_back(Command::RecordingStop);
                Flow::Next
            }
            Step::Sleep { duration } => {
                if duration.is_zero() {
                    return Flow::Next;
                }
                Flow::Wait(State::Sleeping {
                    until: now.checked_add(*duration),
                })
            }
            Step::DigitsReceive(receive) => {
                let keys = self.render(&receive.keys);
                let digits = self
                    .variables
                    .get(VARIABLE_CALL_DIGITS)
                    .map(String::as_str)
                    .unwrap_or_default();
                if digits_complete(digits, receive.length, &keys) {
                    return Flow::Next;
                }
                Flow::Wait(State::Receiving {
                    until: now.checked_add(receive.duration),
                    length: receive.length,
                    keys,
                })
            }
            Step::Branch(branch) => {
                let value = match self.variables.get_mut(&branch.variable) {
                    Some(v) => std::mem::take(v),
                    None => {
                        if self.variables.len() < self.limits.max_variables {
                            self.variables
                                .insert(branch.variable.clone(), String::new());
                        }
                        String::new()
                    }
                };
                match branch
                    .targets
                    .get(&value)
                    .copied()
                    .or(branch.default_target)
                {
                    Some(target) => Flow::Jump(target),
                    None => Flow::Next,
                }
            }
            Step::Goto { target, loop_count } => {
                let remaining = self.loop_counts.entry(index).or_insert(*loop_count);
                if *remaining <= 0 {
                    return Flow::Next;
                }
                *remaining -= 1;
                Flow::Jump(*target)
            }
            Step::VariableSet { key, value } => {
                let key = self.render(key);
                let value = self.render(value);
                self.set_variable(key, value);
                Flow::Next
            }
            Step::ConditionVariable(condition) => {
                let subject = match &condition.subject {
                    Subject::Variable(name) => {
                        self.variables.get(name).cloned().unwrap_or_default()
                    }
                    Subject::Template(template) => self.render(template),
                };
                let value_string = match &condition.operand {
                    Operand::String(s) => self.render(s),
                    _ => String::new(),
                };
                if condition.evaluate(&subject, &value_string) {
                    Flow::Next
                } else {
                    condition.false_target.map_or(Flow::Next, Flow::Jump)
                }
            }
            Step::Hangup { reason } => {
                let reason = Some(self.render(reason))
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "normal".to_owned());
                self.commands.push_back(Command::Hangup { reason });
                Flow::End(EndReason::Hangup)
            }
            Step::Stop => Flow::End(EndReason::Stopped),
        }
    }

    fn finish(&mut self, reason: EndReason) {
        self.state = State::Finished;
        self.commands.push_back(Command::Finished { reason });
    }

    fn new_media_id(&mut self) -> u64 {
        self.last_media_id += 1;
        self.last_media_id
    }

    fn render(&self, template: &str) -> String {
        substitute_bounded(template, &self.variables, MAX_RENDERED_LEN)
    }

    /// `variable_set`: skipped (the flow continues) when the key is empty, the value is too long,
    /// or the key is new and the run already holds `max_variables` keys.
    fn set_variable(&mut self, key: String, value: String) {
        if key.is_empty() || value.len() > self.limits.max_value_len {
            return;
        }
        if !self.variables.contains_key(&key) && self.variables.len() >= self.limits.max_variables {
            return;
        }
        self.variables.insert(key, value);
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_executions: 100,
            max_variables: 100,
            max_value_len: 32 * 1024,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completed => f.write_str("completed"),
            Self::Stopped => f.write_str("stopped"),
            Self::Hangup => f.write_str("hangup"),
            Self::CallEnded => f.write_str("call_ended"),
            Self::ExecutionLimit => f.write_str("execution_limit"),
            Self::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// Action starts allowed within one `handle_*` call, whatever `max_executions` says (VoIPBIN's
/// `maxNextActionLoopCount`), so that one input can never spin for long.
const MAX_STARTS_IN_A_ROW: u32 = 1000;

/// Longest string a `${}` substitution may produce for one option.
const MAX_RENDERED_LEN: usize = 256 * 1024;

/// What the run is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NotStarted,
    /// For [`Input::Answered`].
    Answering,
    /// For the end of this media (talk, play, beep, digits_send, echo).
    Playing {
        media_id: u64,
        next_on_digit: bool,
    },
    /// For [`Input::RecordingStarted`] (or the failure) of this recording.
    StartingRecording {
        media_id: u64,
    },
    /// For the timer (`None`: a duration too long to represent, so never).
    Sleeping {
        until: Option<Instant>,
    },
    /// For digits or the timer.
    Receiving {
        until: Option<Instant>,
        length: usize,
        keys: String,
    },
    Finished,
}

impl State {
    fn media_id(&self) -> Option<u64> {
        match self {
            Self::Playing { media_id, .. } | Self::StartingRecording { media_id } => {
                Some(*media_id)
            }
            _ => None,
        }
    }
}

/// What an action's start decided.
enum Flow {
    /// Go on to the next action.
    Next,
    /// Go to this action.
    Jump(usize),
    /// Wait in this state.
    Wait(State),
    /// End the flow.
    End(EndReason),
}

/// `digits_receive`'s end condition: `length` keys collected (if `length > 0`), or any key of the
/// terminator set present.
fn digits_complete(digits: &str, length: usize, keys: &str) -> bool {
    (length > 0 && digits.chars().count() >= length) || digits.chars().any(|c| keys.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_complete_rules() {
        assert!(!digits_complete("", 0, ""));
        assert!(
            !digits_complete("123", 0, ""),
            "no length, no keys: only the timer ends it"
        );
        assert!(digits_complete("123", 3, ""));
        assert!(!digits_complete("12", 3, "#"));
        assert!(digits_complete("1#", 3, "#"));
        assert!(digits_complete("*", 0, "#*"));
    }

    #[test]
    fn end_reason_display() {
        assert_eq!(EndReason::ExecutionLimit.to_string(), "execution_limit");
        assert_eq!(EndReason::Error("x".into()).to_string(), "error: x");
    }
}
