//! The flow interpreter: one run of a [`Program`] on one call, as a sans-IO state machine.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::action::{
    ActionId, ActionType, Address, CallFlow, CallStatus, HttpMethod, MAX_STACKS, MuteDirection,
    Operand, RecordingEndKey, RecordingFormat, Step, Subject, check_dtmf_keys, is_unset_id,
};
use crate::compile::{Severity, compile};
use crate::program::Program;
use crate::variable::{
    VARIABLE_AMD_CAUSE, VARIABLE_AMD_RESULT, VARIABLE_CALL_DIGITS, VARIABLE_CONNECT_REASON,
    VARIABLE_CONNECT_RESULT, VARIABLE_RECORDING_ID, Variables, substitute_bounded,
    substitute_value,
};

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
    /// A synchronous `webhook_send` ([`Command::WebhookSend`] with `wait`) is done, whatever
    /// its outcome: a failed webhook never stops the flow.
    WebhookDone {
        /// The `request_id` of the command.
        request_id: u64,
    },
    /// The actions a [`Command::Fetch`] or [`Command::FetchFlow`] got: a JSON array of actions
    /// (ids given by the shell, e.g. with [`assign_ids`](crate::assign_ids)). They are validated
    /// here; invalid ones end the run with [`EndReason::Error`] naming the bad field. Valid ones
    /// run as a new stack, after which the flow returns to the action after the fetch.
    Fetched {
        /// The `request_id` of the command.
        request_id: u64,
        /// The fetched action array.
        actions: Value,
    },
    /// A fetch failed (HTTP error, timeout, not JSON, flow not found); ends the run with
    /// [`EndReason::Error`].
    FetchFailed {
        /// The `request_id` of the command.
        request_id: u64,
        /// Why, for the end reason.
        reason: String,
    },
    /// The `connect` of [`Command::Connect`] is over: nobody answered, or the bridge ended
    /// with the caller still on the line. Sets `voipbin.connect.result` (`answered` or
    /// `unanswered`) and `voipbin.connect.reason`; with `relay_reason` the caller is then hung up
    /// with `reason`, otherwise the flow moves on.
    ConnectEnded {
        /// The `media_id` of the command.
        media_id: u64,
        /// Whether a destination answered and was bridged.
        answered: bool,
        /// The hangup reason of the other side (`normal`, `busy`, `noanswer`, `failed`, …).
        reason: String,
    },
    /// The decision of [`Command::Amd`]: `result` is `HUMAN`, `MACHINE` or `NOTSURE`, stored in
    /// `voipbin.amd.result` (and `cause` in `voipbin.amd.cause`). With `machine_handle: hangup`
    /// a `MACHINE` hangs the call up (reason `amd_machine`).
    AmdResult {
        /// The `media_id` of the command.
        media_id: u64,
        /// `HUMAN`, `MACHINE` or `NOTSURE`.
        result: String,
        /// Why, e.g. `long_greeting`.
        cause: String,
    },
    /// `POST /activeflows/{id}/stop`: end the run with [`EndReason::Stopped`] wherever it is.
    Stop,
}

/// Why [`Interpreter::continue_block`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContinueError {
    /// The run is not parked in a `block` action.
    #[error("the flow is not waiting in a block action")]
    NotBlocked,
    /// The run is parked in another `block` action than the one named (a stale request).
    #[error("the flow is blocked at action '{current}', not at the given one")]
    OtherAction {
        /// The id of the block action it is parked in.
        current: String,
    },
}

/// Why [`Interpreter::inject`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// The run has not started or is over.
    #[error("the flow is not running")]
    NotRunning,
    /// The run is in a step that cannot be cut short (answering, starting a recording, a
    /// `connect` bridge, answering machine detection); try again in a moment.
    #[error("the flow is {0}; try again when it is done")]
    Busy(&'static str),
    /// The actions do not compile; the first error, with its path.
    #[error("{path}: {message}")]
    Invalid {
        /// JSON path of the bad field.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The run already has [`MAX_STACKS`] stacks.
    #[error("more than {MAX_STACKS} stacks")]
    TooDeep,
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
        /// 1: both directions mixed into one channel; 2: the caller left, the callee right.
        channels: u16,
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
        /// `hangup` with a `reference_id` (and `hangup_relay`): use the hangup reason of this
        /// call instead, if it is known (else `reason`).
        reference_id: Option<String>,
    },
    /// Mute the call (`mute`); no reply.
    Mute {
        /// Which way; [`MuteDirection::None`] unmutes.
        direction: MuteDirection,
    },
    /// Send an HTTP request (`webhook_send`). With `wait`, reply [`Input::WebhookDone`] when it
    /// is over (success or not); otherwise no reply. Failures are the shell's to log and report.
    WebhookSend {
        /// Unique within this run.
        request_id: u64,
        /// The method.
        method: HttpMethod,
        /// The URL after `${}` substitution.
        uri: String,
        /// The `Content-Type` (`data_type`, default `application/json`).
        content_type: String,
        /// The body after `${}` substitution (values JSON-escaped when the type is JSON).
        body: String,
        /// Whether the flow waits (`sync: true`).
        wait: bool,
    },
    /// Fetch actions from `url` (`fetch`): send `{"activeflow_id", "reference_id"}` as JSON with
    /// `method`, expect HTTP 200 and a JSON array of actions; reply [`Input::Fetched`] or
    /// [`Input::FetchFailed`].
    Fetch {
        /// Unique within this run.
        request_id: u64,
        /// The method.
        method: HttpMethod,
        /// The URL after `${}` substitution.
        url: String,
    },
    /// Load the actions of the stored flow `flow_id` (`fetch_flow`); reply like
    /// [`Command::Fetch`].
    FetchFlow {
        /// Unique within this run.
        request_id: u64,
        /// The flow id after `${}` substitution.
        flow_id: String,
    },
    /// Place new, independent outgoing calls (`call`), one per destination, each running
    /// `flow_id` or `actions`; no reply, the flow moves on at once.
    Call {
        /// The caller id to present, if given (target rendered).
        source: Option<Address>,
        /// Where to call (targets rendered).
        destinations: Vec<Address>,
        /// The flow the new calls run, if given by id (rendered).
        flow_id: Option<String>,
        /// Or the inline actions they run (`${}` already substituted with this run's variables).
        actions: Option<Value>,
        /// Hang the new calls up when this call ends.
        chained: bool,
        /// Start their flow while they ring, not on answer.
        early_execution: bool,
    },
    /// Call the destinations (all at once; the first to answer wins, the others are
    /// cancelled) and bridge the answering one with this call (`connect`, `agent_call`). Reply
    /// [`Input::ConnectEnded`] when nobody answered or when the bridge ends with this call still
    /// up; if this call hangs up first, [`Input::CallEnded`] instead.
    Connect {
        /// Unique within this run.
        media_id: u64,
        /// The caller id to present, if given.
        source: Option<Address>,
        /// Where to call (targets rendered).
        destinations: Vec<Address>,
        /// Let this caller hear the destinations' early media (ringback) before answer.
        early_media: bool,
        /// Whether the flow will relay the other side's hangup reason (for information; the
        /// interpreter acts on it).
        relay_reason: bool,
    },
    /// Run answering-machine detection on the caller's audio; reply [`Input::AmdResult`].
    Amd {
        /// Unique within this run.
        media_id: u64,
    },
    /// Fork the call's audio to `host` as RTP and play what comes back (`external_media_start`);
    /// reply [`Input::MediaFinished`] once started, or [`Input::MediaFailed`].
    ExternalMediaStart {
        /// Unique within this run.
        media_id: u64,
        /// `host:port` after `${}` substitution.
        host: String,
        /// `rtp`.
        encapsulation: String,
        /// `udp`.
        transport: String,
        /// `client`.
        connection_type: String,
        /// `ulaw` or `alaw`.
        format: String,
        /// `both`, `in` (send the caller's audio only) or `out` (only play what comes back).
        direction: String,
    },
    /// Stop the external media of this call, if any (`external_media_stop`); no reply.
    ExternalMediaStop,
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
    /// A `stop` action or [`Input::Stop`].
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
    /// The stack it ran in: 0 for the flow's own actions, 1 for actions fetched from there, …
    pub stack: usize,
    /// The action's index in its stack's program.
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
    /// The stacks: `[0]` is the flow's own program, each `fetch`/`fetch_flow` pushes one.
    frames: Vec<Frame>,
    variables: Variables,
    limits: Limits,
    state: State,
    /// The running action's index in the top frame's program.
    current: Option<usize>,
    answered: bool,
    last_media_id: u64,
    execute_count: u32,
    executed: Vec<ExecutedAction>,
    commands: VecDeque<Command>,
    /// `(instant, Unix milliseconds)` of one moment, for `condition_datetime`.
    wall_clock: Option<(Instant, i64)>,
    /// An `amd` with `async: true` still running: its media id and whether a machine hangs up.
    pending_amd: Option<(u64, bool)>,
    /// Why the run ended, once it has.
    end_reason: Option<EndReason>,
}

/// One stack of a run.
#[derive(Debug)]
struct Frame {
    program: Arc<Program>,
    /// Where the stack below goes on when this one runs out (the action after the fetch).
    return_to: Option<usize>,
    /// Remaining `loop_count` per `goto` action index, for this stack.
    loop_counts: BTreeMap<usize, i64>,
}

impl Frame {
    fn new(program: Arc<Program>, return_to: Option<usize>) -> Self {
        Self {
            program,
            return_to,
            loop_counts: BTreeMap::new(),
        }
    }
}

impl Interpreter {
    /// A run of `program` that has not started yet; `variables` are its initial variables (the
    /// runtime's `voipbin.*` call data and the client's own, already filtered).
    pub fn new(program: Arc<Program>, variables: Variables, limits: Limits) -> Self {
        Self {
            frames: vec![Frame::new(program, None)],
            variables,
            limits,
            state: State::NotStarted,
            current: None,
            answered: false,
            last_media_id: 0,
            execute_count: 0,
            executed: Vec::new(),
            commands: VecDeque::new(),
            wall_clock: None,
            pending_amd: None,
            end_reason: None,
        }
    }

    /// Tell the run what the wall clock (UTC) read at `at`, in Unix milliseconds; from then on
    /// `condition_datetime` evaluates `unix_millis + (now - at)`. Without it that action ends
    /// the run with an error. The simulator sets a scripted start time here.
    pub fn set_wall_clock(&mut self, at: Instant, unix_millis: i64) {
        self.wall_clock = Some((at, unix_millis));
    }

    // Getters.

    /// The program this run was started with (stack 0).
    pub fn program(&self) -> &Arc<Program> {
        // `frames` is never empty: frame 0 is never popped.
        &self.frames[0].program
    }

    /// The program of the stack running now (a fetched one, or [`Interpreter::program`]).
    pub fn current_program(&self) -> &Arc<Program> {
        &self.top().program
    }

    /// How many stacks are open (1 until a `fetch` or `fetch_flow`).
    pub fn stack_depth(&self) -> usize {
        self.frames.len()
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
        self.current_action()
            .and_then(|a| a.id())
            .map(ActionId::as_str)
    }

    /// The index of the action running now (or the last one, once finished), in
    /// [`Interpreter::current_program`].
    pub fn current_action_index(&self) -> Option<usize> {
        self.current
    }

    /// Whether the run is parked in a `block` action.
    pub fn is_blocked(&self) -> bool {
        matches!(self.state, State::Blocked)
    }

    /// Whether the run has ended ([`Command::Finished`] is queued or was emitted).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// Why the run ended; `None` while it runs.
    pub fn end_reason(&self) -> Option<&EndReason> {
        self.end_reason.as_ref()
    }

    /// Whether the run has started ([`Input::Start`] was fed).
    pub fn is_started(&self) -> bool {
        !matches!(self.state, State::NotStarted)
    }

    /// How many actions were started (what [`Limits::max_executions`] counts).
    pub fn execute_count(&self) -> u32 {
        self.execute_count
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
                    let first = (!self.program().is_empty()).then_some(0);
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
                        .current_action()
                        .map_or("media", |a| a.action_type().as_str());
                    self.finish(EndReason::Error(format!("{what} failed: {reason}")));
                } else if self.pending_amd.is_some_and(|(m, _)| m == media_id) {
                    // An async amd that failed: the flow has moved on; leave it be.
                    self.pending_amd = None;
                }
            }
            Input::CallEnded => {
                self.commands.clear();
                self.finish(EndReason::CallEnded);
            }
            Input::Stop => self.finish(EndReason::Stopped),
            Input::WebhookDone { request_id } => {
                if matches!(self.state, State::Requesting { request_id: r } if r == request_id) {
                    self.advance(now);
                }
            }
            Input::Fetched {
                request_id,
                actions,
            } => {
                if matches!(self.state, State::Fetching { request_id: r } if r == request_id) {
                    self.push_fetched(now, &actions);
                }
            }
            Input::FetchFailed { request_id, reason } => {
                if matches!(self.state, State::Fetching { request_id: r } if r == request_id) {
                    let what = self
                        .current_action()
                        .map_or("fetch", |a| a.action_type().as_str());
                    self.finish(EndReason::Error(format!("{what} failed: {reason}")));
                }
            }
            Input::ConnectEnded {
                media_id,
                answered,
                reason,
            } => {
                let State::Connecting {
                    media_id: m,
                    relay_reason,
                } = self.state
                else {
                    return;
                };
                if m != media_id {
                    return;
                }
                let result = if answered { "answered" } else { "unanswered" };
                self.variables
                    .insert(VARIABLE_CONNECT_RESULT.to_owned(), result.to_owned());
                self.variables
                    .insert(VARIABLE_CONNECT_REASON.to_owned(), reason.clone());
                if relay_reason {
                    let reason = if reason.is_empty() {
                        "normal".into()
                    } else {
                        reason
                    };
                    self.commands.push_back(Command::Hangup {
                        reason,
                        reference_id: None,
                    });
                    self.finish(EndReason::Hangup);
                } else {
                    self.advance(now);
                }
            }
            Input::AmdResult {
                media_id,
                result,
                cause,
            } => self.handle_amd(now, media_id, result, cause),
        }
    }

    /// `POST /activeflows/{id}/continue`: release a run parked in the `block` action
    /// `action_id`, which then moves on. A request naming another action (stale) or a run that
    /// is not blocked is refused and changes nothing.
    pub fn continue_block(&mut self, now: Instant, action_id: &str) -> Result<(), ContinueError> {
        if !self.is_blocked() {
            return Err(ContinueError::NotBlocked);
        }
        let current = self.current_action_id().unwrap_or_default();
        if current != action_id {
            return Err(ContinueError::OtherAction {
                current: current.to_owned(),
            });
        }
        self.advance(now);
        Ok(())
    }

    /// Run `actions` now (`POST /calls/{id}/actions`): the action in progress is cut short (its
    /// media stops; a pending request or key collection is abandoned), the actions run as a new
    /// stack, and the flow then goes on after the interrupted action.
    pub fn inject(&mut self, now: Instant, actions: &Value) -> Result<(), InjectError> {
        let busy = match self.state {
            State::NotStarted | State::Finished => return Err(InjectError::NotRunning),
            State::Answering => Some("answering the call"),
            State::StartingRecording { .. } => Some("starting a recording"),
            State::Connecting { .. } => Some("in a connect bridge"),
            State::Detecting { .. } => Some("detecting an answering machine"),
            _ => None,
        };
        if let Some(what) = busy {
            return Err(InjectError::Busy(what));
        }
        let program = compile(actions).map_err(|diags| {
            let first = diags.into_iter().find(|d| d.severity == Severity::Error);
            InjectError::Invalid {
                path: first.as_ref().map(|d| d.path.clone()).unwrap_or_default(),
                message: first.map_or_else(|| "invalid actions".to_owned(), |d| d.message),
            }
        })?;
        if self.frames.len() >= MAX_STACKS {
            return Err(InjectError::TooDeep);
        }
        if let Some(media_id) = self.state.media_id() {
            self.commands.push_back(Command::StopMedia { media_id });
        }
        let return_to = self.current.and_then(|i| self.top().program.next_index(i));
        let first = (!program.is_empty()).then_some(0);
        self.frames.push(Frame::new(Arc::new(program), return_to));
        self.current = None;
        self.state = State::NotStarted;
        self.run_from(now, first);
        Ok(())
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

    fn top(&self) -> &Frame {
        // `frames` is never empty.
        &self.frames[self.frames.len() - 1]
    }

    fn current_action(&self) -> Option<&crate::program::Action> {
        self.current
            .and_then(|i| self.top().program.actions().get(i))
    }

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

    fn handle_amd(&mut self, now: Instant, media_id: u64, result: String, cause: String) {
        let waiting = matches!(self.state, State::Detecting { media_id: m, .. } if m == media_id);
        let hangup_on_machine = match (&self.state, self.pending_amd) {
            (
                State::Detecting {
                    hangup_on_machine, ..
                },
                _,
            ) if waiting => *hangup_on_machine,
            (_, Some((m, hangup))) if m == media_id => hangup,
            _ => return,
        };
        if !waiting {
            self.pending_amd = None;
        }
        let machine = result == "MACHINE";
        self.variables
            .insert(VARIABLE_AMD_RESULT.to_owned(), result);
        self.variables.insert(VARIABLE_AMD_CAUSE.to_owned(), cause);
        if machine && hangup_on_machine {
            self.commands.push_back(Command::StopMedia { media_id });
            self.commands.push_back(Command::Hangup {
                reason: "amd_machine".into(),
                reference_id: None,
            });
            self.finish(EndReason::Hangup);
        } else if waiting {
            self.advance(now);
        }
    }

    /// Type-ahead: outside `digits_receive` a key replaces the buffer.
    fn set_digits(&mut self, key: char) {
        self.variables
            .insert(VARIABLE_CALL_DIGITS.to_owned(), key.to_string());
    }

    /// The running action is done: go where it leads.
    fn advance(&mut self, now: Instant) {
        let next = self.current.and_then(|i| self.top().program.next_index(i));
        self.run_from(now, next);
    }

    /// Validate fetched actions and run them as a new stack.
    fn push_fetched(&mut self, now: Instant, actions: &Value) {
        let what = self
            .current_action()
            .map_or("fetch", |a| a.action_type().as_str());
        let program = match compile(actions) {
            Ok(program) => program,
            Err(diags) => {
                let first = diags
                    .iter()
                    .find(|d| d.severity == Severity::Error)
                    .map_or_else(
                        || "invalid actions".to_owned(),
                        |d| format!("{}: {}", d.path, d.message),
                    );
                return self.finish(EndReason::Error(format!(
                    "{what}: the fetched actions are invalid: {first}"
                )));
            }
        };
        if self.frames.len() >= MAX_STACKS {
            return self.finish(EndReason::Error(format!(
                "{what}: more than {MAX_STACKS} stacks"
            )));
        }
        let return_to = self.current.and_then(|i| self.top().program.next_index(i));
        let first = (!program.is_empty()).then_some(0);
        self.frames.push(Frame::new(Arc::new(program), return_to));
        self.current = None;
        self.run_from(now, first);
    }

    /// Start actions from `cursor` until one has to wait or the flow ends.
    fn run_from(&mut self, now: Instant, mut cursor: Option<usize>) {
        let mut starts_in_a_row = 0u32;
        loop {
            let Some(index) = cursor else {
                // This stack ran out: return to the one below, or finish.
                if self.frames.len() > 1
                    && let Some(frame) = self.frames.pop()
                {
                    self.current = None;
                    cursor = frame.return_to;
                    continue;
                }
                return self.finish(EndReason::Completed);
            };
            let program = Arc::clone(&self.top().program);
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
                stack: self.frames.len() - 1,
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
                Flow::Wait(State::playing(media_id))
            }
            Step::Beep => {
                let media_id = self.new_media_id();
                self.commands.push_back(Command::Beep { media_id });
                Flow::Wait(State::playing(media_id))
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
                Flow::Wait(State::playing(media_id))
            }
            Step::Echo { duration, dtmf } => {
                let media_id = self.new_media_id();
                self.commands.push_back(Command::Echo {
                    media_id,
                    duration: Some(*duration),
                    dtmf: *dtmf,
                });
                Flow::Wait(State::playing(media_id))
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
                    channels: start.channels,
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
                let frame = self.frames.len() - 1;
                let remaining = self.frames[frame]
                    .loop_counts
                    .entry(index)
                    .or_insert(*loop_count);
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
                Self::branch_on(
                    condition.evaluate(&subject, &value_string),
                    condition.false_target,
                )
            }
            Step::ConditionCallDigits {
                length,
                key,
                false_target,
            } => {
                let key = self.render(key);
                let digits = self
                    .variables
                    .get(VARIABLE_CALL_DIGITS)
                    .map(String::as_str)
                    .unwrap_or_default();
                let holds = (*length == 0 || digits.chars().count() == *length)
                    && (key.is_empty() || digits.contains(key.as_str()));
                Self::branch_on(holds, *false_target)
            }
            Step::ConditionCallStatus {
                status,
                false_target,
            } => {
                let now_status = if self.answered {
                    CallStatus::Progressing
                } else {
                    CallStatus::Ringing
                };
                Self::branch_on(now_status == *status, *false_target)
            }
            Step::ConditionDatetime(condition) => {
                let Some((at, unix_millis)) = self.wall_clock else {
                    return Flow::End(EndReason::Error(
                        "condition_datetime: the run has no wall clock".into(),
                    ));
                };
                let elapsed = i64::try_from(now.saturating_duration_since(at).as_millis())
                    .unwrap_or(i64::MAX);
                let seconds = unix_millis.saturating_add(elapsed).div_euclid(1000);
                Self::branch_on(condition.evaluate(seconds), condition.false_target)
            }
            Step::Hangup {
                reason,
                reference_id,
            } => {
                let reason = Some(self.render(reason))
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "normal".to_owned());
                let reference_id = Some(self.render(reference_id)).filter(|id| !is_unset_id(id));
                self.commands.push_back(Command::Hangup {
                    reason,
                    reference_id,
                });
                Flow::End(EndReason::Hangup)
            }
            Step::Stop => Flow::End(EndReason::Stopped),
            Step::Empty => Flow::Next,
            Step::Block => Flow::Wait(State::Blocked),
            Step::Mute { direction } => {
                self.commands.push_back(Command::Mute {
                    direction: *direction,
                });
                Flow::Next
            }
            Step::WebhookSend(send) => {
                let request_id = self.new_media_id();
                let uri = self.render(&send.uri);
                let body = if send.content_type.to_ascii_lowercase().contains("json") {
                    self.render_json_escaped(&send.data)
                } else {
                    self.render(&send.data)
                };
                self.commands.push_back(Command::WebhookSend {
                    request_id,
                    method: send.method,
                    uri,
                    content_type: send.content_type.clone(),
                    body,
                    wait: send.synchronous,
                });
                if send.synchronous {
                    Flow::Wait(State::Requesting { request_id })
                } else {
                    Flow::Next
                }
            }
            Step::Fetch { url, method } => {
                let request_id = self.new_media_id();
                let url = self.render(url);
                self.commands.push_back(Command::Fetch {
                    request_id,
                    method: *method,
                    url,
                });
                Flow::Wait(State::Fetching { request_id })
            }
            Step::FetchFlow { flow_id } => {
                let request_id = self.new_media_id();
                let flow_id = self.render(flow_id);
                if is_unset_id(&flow_id) {
                    return Flow::End(EndReason::Error(
                        "fetch_flow: flow_id is empty after substitution".into(),
                    ));
                }
                self.commands.push_back(Command::FetchFlow {
                    request_id,
                    flow_id,
                });
                Flow::Wait(State::Fetching { request_id })
            }
            Step::Call(call) => {
                let (flow_id, actions) = match &call.flow {
                    CallFlow::FlowId(id) => {
                        (Some(self.render(id)).filter(|id| !is_unset_id(id)), None)
                    }
                    CallFlow::Actions(actions) => {
                        (None, Some(substitute_value(actions, &self.variables)))
                    }
                };
                if flow_id.is_none() && actions.is_none() {
                    return Flow::End(EndReason::Error(
                        "call: flow_id is empty after substitution".into(),
                    ));
                }
                let source = call.source.as_ref().map(|a| self.render_address(a));
                let destinations = call
                    .destinations
                    .iter()
                    .map(|a| self.render_address(a))
                    .collect();
                self.commands.push_back(Command::Call {
                    source,
                    destinations,
                    flow_id,
                    actions,
                    chained: call.chained,
                    early_execution: call.early_execution,
                });
                Flow::Next
            }
            Step::Connect(connect) => {
                let media_id = self.new_media_id();
                let source = connect.source.as_ref().map(|a| self.render_address(a));
                let destinations = connect
                    .destinations
                    .iter()
                    .map(|a| self.render_address(a))
                    .collect();
                self.commands.push_back(Command::Connect {
                    media_id,
                    source,
                    destinations,
                    early_media: connect.early_media,
                    relay_reason: connect.relay_reason,
                });
                Flow::Wait(State::Connecting {
                    media_id,
                    relay_reason: connect.relay_reason,
                })
            }
            Step::Amd {
                hangup_on_machine,
                asynchronous,
            } => {
                let media_id = self.new_media_id();
                self.commands.push_back(Command::Amd { media_id });
                if *asynchronous {
                    self.pending_amd = Some((media_id, *hangup_on_machine));
                    Flow::Next
                } else {
                    Flow::Wait(State::Detecting {
                        media_id,
                        hangup_on_machine: *hangup_on_machine,
                    })
                }
            }
            Step::ExternalMediaStart(external) => {
                let media_id = self.new_media_id();
                let host = self.render(&external.host);
                self.commands.push_back(Command::ExternalMediaStart {
                    media_id,
                    host,
                    encapsulation: external.encapsulation.clone(),
                    transport: external.transport.clone(),
                    connection_type: external.connection_type.clone(),
                    format: external.format.clone(),
                    direction: external.direction.clone(),
                });
                Flow::Wait(State::playing(media_id))
            }
            Step::ExternalMediaStop => {
                self.commands.push_back(Command::ExternalMediaStop);
                Flow::Next
            }
        }
    }

    /// A condition's outcome: on to the next action, or to the false target (or the next
    /// action if it has none).
    fn branch_on(holds: bool, false_target: Option<usize>) -> Flow {
        if holds {
            Flow::Next
        } else {
            false_target.map_or(Flow::Next, Flow::Jump)
        }
    }

    fn finish(&mut self, reason: EndReason) {
        self.state = State::Finished;
        self.end_reason = Some(reason.clone());
        self.commands.push_back(Command::Finished { reason });
    }

    fn new_media_id(&mut self) -> u64 {
        self.last_media_id += 1;
        self.last_media_id
    }

    fn render(&self, template: &str) -> String {
        substitute_bounded(template, &self.variables, MAX_RENDERED_LEN)
    }

    /// [`Interpreter::render`] with every substituted value escaped for use inside a JSON
    /// string, so that `"{\"digits\": \"${voipbin.call.digits}\"}"` stays valid JSON whatever
    /// the caller typed.
    fn render_json_escaped(&self, template: &str) -> String {
        if !template.contains("${") {
            return template.to_owned();
        }
        let escaped: Variables = self
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), json_escape(v)))
            .collect();
        substitute_bounded(template, &escaped, MAX_RENDERED_LEN)
    }

    fn render_address(&self, address: &Address) -> Address {
        Address {
            kind: address.kind.clone(),
            target: self.render(&address.target),
            target_name: self.render(&address.target_name),
        }
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

/// The text of a JSON string literal without its quotes.
fn json_escape(value: &str) -> String {
    let quoted = Value::String(value.to_owned()).to_string();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .map_or_else(String::new, str::to_owned)
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
    /// For [`Interpreter::continue_block`].
    Blocked,
    /// For [`Input::WebhookDone`].
    Requesting {
        request_id: u64,
    },
    /// For [`Input::Fetched`] or [`Input::FetchFailed`].
    Fetching {
        request_id: u64,
    },
    /// For [`Input::ConnectEnded`].
    Connecting {
        media_id: u64,
        relay_reason: bool,
    },
    /// For [`Input::AmdResult`].
    Detecting {
        media_id: u64,
        hangup_on_machine: bool,
    },
    Finished,
}

impl State {
    fn playing(media_id: u64) -> Self {
        Self::Playing {
            media_id,
            next_on_digit: false,
        }
    }

    /// The media id a [`Input::MediaFailed`] may name to fail the running action.
    fn media_id(&self) -> Option<u64> {
        match self {
            Self::Playing { media_id, .. }
            | Self::StartingRecording { media_id }
            | Self::Connecting { media_id, .. }
            | Self::Detecting { media_id, .. } => Some(*media_id),
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
