//! One task per call: it owns the call's dialog, its media session handle and its flow
//! interpreter. Everything else talks to it by message.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use flow::{Command as FlowCommand, EndReason, Input as FlowInput, Interpreter};
use flow::{RecordingEndKey, RecordingFormat};
use media::{MediaEvent, MediaSession, SessionConfig};
use sip::{Dialog, Method, Peer, Request, Response, ServerTxId, Transport, Uri};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::endpoint::{ALLOW, CallKey, Command, EndpointHandle};
use crate::media_engine::{EngineEvent, MediaHandle, RtpPorts};
use crate::metrics::{Direction, WebhookOutcome};
use crate::recording::{self, Recorder, RecordingEnd, RecordingSpec};
use crate::{Shared, audio, flow_io, now, outbound};

/// What the endpoint forwards to a call.
#[derive(Debug)]
pub(crate) enum CallInput {
    /// A request inside the dialog (BYE, re-INVITE, INFO, ...).
    Request { tx: ServerTxId, request: Request },
    /// The ACK for our 2xx.
    Ack(Request),
    /// The caller cancelled before we answered (the CANCEL itself is answered already).
    Cancelled,
    /// Our 2xx was never acknowledged.
    AckTimeout,
    /// A reliable provisional response was never PRACKed (our 2xx was dropped).
    ReliableTimeout,
    /// A response to a request we sent (our BYE).
    Response(Response),
    /// A request we sent got no final response.
    RequestTimeout,
    /// The platform is stopping: hang up.
    Shutdown,
    /// Hang up (asked through the API, or by the call a `connect` leg or `chained` call
    /// belongs to).
    Hangup,
    /// Read or steer this call's activeflow (`GET /activeflows/{id}`, `stop`, `continue`).
    Activeflow {
        op: crate::ActiveflowOp,
        reply:
            tokio::sync::oneshot::Sender<Result<store::ActiveflowRecord, crate::ActiveflowError>>,
    },
    /// A `connect` leg of this call answered: bridge it (it runs on `worker`, as `key`).
    LegAnswered { leg: Uuid, key: u64, worker: usize },
    /// A `connect` leg of this call is over (answered or not, with its hangup reason).
    LegEnded {
        leg: Uuid,
        answered: bool,
        reason: String,
    },
}

/// What ties a `connect` leg to the call it was placed for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BridgeLeg {
    /// The call that ran `connect`.
    pub(crate) master: Uuid,
    /// Its media worker (a bridge needs both sessions on one).
    pub(crate) worker: Option<usize>,
}

/// Completions of work a call started off its task (HTTP, store, placing calls).
#[derive(Debug)]
enum Task {
    /// An input for the flow.
    Flow(FlowInput),
    /// A call of `call` was placed; `chained` ones end with this call.
    Placed { call: Uuid, chained: bool },
    /// A `connect` leg was placed (`Ok`) or could not be (`Err` with the reason).
    LegPlaced {
        media_id: u64,
        result: Result<Uuid, String>,
    },
}

/// A running `connect`.
#[derive(Debug)]
struct Connecting {
    media_id: u64,
    /// Legs placed and not over yet.
    legs: Vec<Uuid>,
    /// Legs still being placed.
    placing: usize,
    /// The leg that answered first, once bridged.
    winner: Option<Uuid>,
    /// The most telling hangup reason among the legs that failed.
    reason: String,
}

/// How a call relates to other calls and to work in flight.
struct Links {
    tasks: mpsc::UnboundedSender<Task>,
    /// This call is a `connect` leg.
    bridge_leg: Option<BridgeLeg>,
    connect: Option<Connecting>,
    /// `call` children with `chained: true`.
    chained: Vec<Uuid>,
    /// This flow run's id (sent by `fetch`).
    activeflow_id: Uuid,
    /// When the run was created, on both clocks (for the executed actions' times).
    created: (std::time::Instant, std::time::SystemTime),
    /// Whether the activeflow record was written (at the start) and closed (at the end).
    activeflow_saved: bool,
    activeflow_closed: bool,
    /// `execute_count` of the last `activeflow_updated` event.
    published_count: u32,
    /// How many flows ran before this one through `on_complete_flow_id` (0: the call's own).
    chain_depth: u8,
    /// The flow running now, once a chained one took over.
    chained_flow_id: Option<Uuid>,
    /// This call's inbox, to register a chained activeflow's id under.
    live: Option<mpsc::UnboundedSender<CallInput>>,
    /// An outgoing call whose flow starts when it rings.
    early_execution: bool,
}

impl Links {
    fn new(tasks: mpsc::UnboundedSender<Task>, bridge_leg: Option<BridgeLeg>) -> Self {
        Self {
            tasks,
            bridge_leg,
            connect: None,
            chained: Vec::new(),
            activeflow_id: Uuid::new_v4(),
            created: (now(), std::time::SystemTime::now()),
            activeflow_saved: false,
            activeflow_closed: false,
            published_count: 0,
            chain_depth: 0,
            chained_flow_id: None,
            live: None,
            early_execution: false,
        }
    }
}

/// Flows chained by `on_complete_flow_id` after the call's own, at most (VoIPBIN's limit).
const MAX_ON_COMPLETE_CHAIN: u8 = 5;
/// How long `connect` lets its destinations ring.
const CONNECT_RING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// How long the calls of `call` ring.
const CALL_RING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Media id of the ringback played while `connect` rings (no flow media id is this large).
const RINGBACK_MEDIA_ID: u64 = u64::MAX - 2;

/// Everything a new inbound call starts from.
pub(crate) struct Incoming {
    pub(crate) shared: Arc<Shared>,
    pub(crate) endpoint: EndpointHandle,
    pub(crate) key: CallKey,
    pub(crate) invite: Request,
    pub(crate) invite_tx: ServerTxId,
    pub(crate) peer: Peer,
    pub(crate) local_sip: Option<SocketAddr>,
    pub(crate) inbox: mpsc::UnboundedReceiver<CallInput>,
}

/// Start the call's task.
pub(crate) fn spawn(incoming: Incoming) {
    let key = incoming.key.clone();
    let endpoint = incoming.endpoint.clone();
    let span = tracing::info_span!("call", sip_call_id = %key.call_id);
    tokio::spawn(
        async move {
            run(incoming).await;
            endpoint.send(Command::Forget { call: key });
        }
        .instrument(span),
    );
}

/// Which side of the INVITE we are.
#[derive(Debug)]
enum Role {
    /// We were called: the INVITE's server transaction.
    Uas { invite_tx: ServerTxId },
    /// We called: the ACK for the 2xx (kept to resend on 2xx retransmissions) and when to give
    /// up ringing.
    Uac {
        ack: Option<Box<Request>>,
        ring_deadline: tokio::time::Instant,
        cancelled: bool,
        /// Credentials for a 401/407; taken when used (one retry per call).
        credentials: Option<(String, String)>,
        /// Redirects followed so far.
        redirects: u8,
    },
}

/// A running session timer (RFC 4028).
#[derive(Debug, Clone, Copy)]
struct SessionTimer {
    /// The agreed session interval.
    interval: std::time::Duration,
    /// We refresh (with UPDATE); otherwise the peer must, or we hang up.
    we_refresh: bool,
    /// When to refresh, or when the session expires without the peer's refresh.
    deadline: tokio::time::Instant,
}

/// Redirects (3xx) an outbound call follows at most.
const MAX_REDIRECTS: u8 = 3;

/// Minimum session interval we accept (RFC 4028 §4: at least 90 s).
const MIN_SE: u32 = 90;

/// Audio prepared off the call task for a media id, or why it could not be.
type Prepared = (u64, Result<Arc<[i16]>, String>);

/// Where the call stands in SIP terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// INVITE received, no final response yet.
    Early,
    /// 200 sent, waiting for the ACK.
    Answering,
    /// ACK received: the dialog is confirmed.
    Confirmed,
    /// BYE sent, waiting for its response.
    Ending,
    /// Over.
    Ended,
}

struct Call {
    shared: Arc<Shared>,
    endpoint: EndpointHandle,
    key: CallKey,
    invite: Request,
    role: Role,
    peer: Peer,
    local_sip: SocketAddr,
    phase: Phase,
    dialog: Option<Dialog>,
    record: Option<store::CallRecord>,
    /// The local RTP and RTCP sockets until media is attached at answer time.
    rtp_socket: Option<RtpPorts>,
    local_rtp: SocketAddr,
    negotiated: Option<sdp::Negotiated>,
    local_sdp: Option<String>,
    /// Session id and version of our SDP (the version goes up with each new description).
    origin: sdp::Origin,
    media: Option<MediaHandle>,
    media_tx: mpsc::UnboundedSender<EngineEvent>,
    interp: Option<Interpreter>,
    /// The recording being written, if any.
    recording: Option<ActiveRecording>,
    /// Recordings stopped whose recorder has not come back from the worker yet.
    closing: Vec<ActiveRecording>,
    /// A recording created and waiting for its beep (or, briefly, for `begin_recording`).
    new_recording: Option<ActiveRecording>,
    /// The recorder to start when the beep ends, and the flow's media id to answer.
    beep_then_record: Option<(Recorder, u64)>,
    /// Media ids whose audio is being prepared (TTS, downloads); stale ones are dropped.
    preparing: HashSet<u64>,
    prepared_tx: mpsc::UnboundedSender<Prepared>,
    flow_answered: bool,
    /// The session timer agreed (RFC 4028) and when it next needs attention.
    session: Option<SessionTimer>,
    links: Links,
}

async fn run(incoming: Incoming) {
    let Incoming {
        shared,
        endpoint,
        key,
        invite,
        invite_tx,
        peer,
        local_sip,
        inbox,
    } = incoming;
    let local_sip = local_sip.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
    let (media_tx, media_rx) = mpsc::unbounded_channel();
    let (prepared_tx, prepared_rx) = mpsc::unbounded_channel();
    let (tasks_tx, tasks_rx) = mpsc::unbounded_channel();
    let mut call = Call {
        links: Links::new(tasks_tx, None),
        shared,
        endpoint,
        key,
        invite,
        role: Role::Uas { invite_tx },
        peer,
        local_sip,
        phase: Phase::Early,
        dialog: None,
        record: None,
        rtp_socket: None,
        local_rtp: local_sip,
        negotiated: None,
        local_sdp: None,
        origin: sdp::Origin::from(1),
        media: None,
        media_tx,
        interp: None,
        preparing: HashSet::new(),
        prepared_tx,
        flow_answered: false,
        session: None,
        recording: None,
        closing: Vec::new(),
        new_recording: None,
        beep_then_record: None,
    };
    if !call.setup().await {
        return;
    }
    let shared = call.shared.clone();
    let _active = shared.metrics.call_started(Direction::Incoming);
    let call_id = call.record.as_ref().map(|r| r.id);
    let (live_tx, inbox) = live_inbox(inbox);
    if let Some(id) = call_id {
        call.shared.live.insert(id, live_tx.clone());
    }
    call.shared
        .live
        .insert(call.links.activeflow_id, live_tx.clone());
    call.links.live = Some(live_tx);
    call.drive_flow(FlowInput::Start).await;
    call.run(inbox, media_rx, prepared_rx, tasks_rx).await;
    // Every way out of `run` should have closed the record; one that did not (a dialog that
    // could not be formed, say) still ends it, so its account's call slot comes back.
    call.set_hangup("failed", "local").await;
    call.close_activeflow().await;
    call.shared.live.remove(call.links.activeflow_id);
    if let Some(id) = call_id {
        call.shared.live.remove(id);
    }
}

/// Everything a new outbound call starts from (see `outbound::originate`).
pub(crate) struct Outgoing {
    pub(crate) shared: Arc<Shared>,
    pub(crate) endpoint: EndpointHandle,
    pub(crate) key: CallKey,
    /// Our INVITE, without Via (the transaction layer adds it).
    pub(crate) invite: Request,
    pub(crate) peer: Peer,
    pub(crate) local_sip: SocketAddr,
    pub(crate) rtp_socket: RtpPorts,
    pub(crate) local_rtp: SocketAddr,
    pub(crate) origin: sdp::Origin,
    pub(crate) record: store::CallRecord,
    pub(crate) program: Arc<flow::Program>,
    pub(crate) variables: flow::Variables,
    pub(crate) ring_timeout: std::time::Duration,
    /// User name and password to answer a 401/407 with (a trunk's), if any.
    pub(crate) credentials: Option<(String, String)>,
    pub(crate) inbox: mpsc::UnboundedReceiver<CallInput>,
    /// Set for a `connect` leg: no flow of its own; answered, it is bridged with the master.
    pub(crate) bridge_leg: Option<BridgeLeg>,
    /// Start the flow when the callee rings (180/183), not when it answers (`call`'s
    /// `early_execution`).
    pub(crate) early_execution: bool,
}

/// Start an outbound call's task: it sends the INVITE and runs the flow once answered.
pub(crate) fn spawn_outgoing(outgoing: Outgoing) {
    let key = outgoing.key.clone();
    let endpoint = outgoing.endpoint.clone();
    let span = tracing::info_span!("call", sip_call_id = %key.call_id, direction = "outgoing");
    tokio::spawn(
        async move {
            let Outgoing {
                shared,
                endpoint: ep,
                key: k,
                invite,
                peer,
                local_sip,
                rtp_socket,
                local_rtp,
                origin,
                record,
                program,
                variables,
                ring_timeout,
                credentials,
                inbox,
                bridge_leg,
                early_execution,
            } = outgoing;
            let (media_tx, media_rx) = mpsc::unbounded_channel();
            let (prepared_tx, prepared_rx) = mpsc::unbounded_channel();
            let (tasks_tx, tasks_rx) = mpsc::unbounded_channel();
            let limits = shared.flow_limits;
            let counted = shared.clone();
            let _active = counted.metrics.call_started(Direction::Outgoing);
            let local_sdp = Some(String::from_utf8_lossy(&invite.body).into_owned());
            let call_id = record.id;
            let mut call = Call {
                shared,
                endpoint: ep,
                key: k,
                invite,
                role: Role::Uac {
                    ack: None,
                    ring_deadline: tokio::time::Instant::now() + ring_timeout,
                    cancelled: false,
                    credentials,
                    redirects: 0,
                },
                peer,
                local_sip,
                phase: Phase::Early,
                dialog: None,
                record: Some(record),
                rtp_socket: Some(rtp_socket),
                local_rtp,
                negotiated: None,
                local_sdp,
                origin,
                media: None,
                media_tx,
                interp: bridge_leg
                    .is_none()
                    .then(|| new_interpreter(program, variables, limits)),
                preparing: HashSet::new(),
                prepared_tx,
                flow_answered: false,
                session: None,
                recording: None,
                closing: Vec::new(),
                new_recording: None,
                beep_then_record: None,
                links: Links {
                    early_execution,
                    ..Links::new(tasks_tx, bridge_leg)
                },
            };
            let (live_tx, inbox) = live_inbox(inbox);
            call.shared.live.insert(call_id, live_tx.clone());
            if call.interp.is_some() {
                call.shared
                    .live
                    .insert(call.links.activeflow_id, live_tx.clone());
                call.links.live = Some(live_tx);
            }
            call.endpoint.send(Command::SendInvite {
                call: call.key.clone(),
                peer: call.peer,
                request: Box::new(call.invite.clone()),
            });
            call.run(inbox, media_rx, prepared_rx, tasks_rx).await;
            call.set_hangup("failed", "local").await;
            call.close_activeflow().await;
            call.shared.live.remove(call.links.activeflow_id);
            call.shared.live.remove(call_id);
            if let (Some(leg), Some(record)) = (bridge_leg, &call.record) {
                call.shared.live.send(
                    leg.master,
                    CallInput::LegEnded {
                        leg: call_id,
                        answered: record.tm_progressing.is_some(),
                        reason: record.hangup_reason.clone(),
                    },
                );
            }
            endpoint.send(Command::Forget { call: key });
        }
        .instrument(span),
    );
}

/// The inbox a call reads: what the endpoint routes to it, plus what the API sends it by id.
fn live_inbox(
    endpoint_inbox: mpsc::UnboundedReceiver<CallInput>,
) -> (mpsc::UnboundedSender<CallInput>, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        tx,
        Inbox {
            endpoint: endpoint_inbox,
            api: rx,
        },
    )
}

/// A call's two input channels.
struct Inbox {
    endpoint: mpsc::UnboundedReceiver<CallInput>,
    api: mpsc::UnboundedReceiver<CallInput>,
}

impl Call {
    /// The call's event loop, until it has ended.
    async fn run(
        &mut self,
        mut inbox: Inbox,
        mut media_rx: mpsc::UnboundedReceiver<EngineEvent>,
        mut prepared_rx: mpsc::UnboundedReceiver<Prepared>,
        mut tasks_rx: mpsc::UnboundedReceiver<Task>,
    ) {
        let call = self;
        while call.phase != Phase::Ended {
            let timeout = call
                .interp
                .as_ref()
                .and_then(Interpreter::poll_timeout)
                .map(tokio::time::Instant::from_std);
            let ring_deadline = match &call.role {
                Role::Uac { ring_deadline, .. } if call.phase == Phase::Early => {
                    Some(*ring_deadline)
                }
                _ => None,
            };
            let session_deadline = call.session.map(|t| t.deadline);
            tokio::select! {
                Some(input) = inbox.api.recv() => call.handle_input(input).await,
                () = sleep_until(session_deadline) => call.handle_session_deadline().await,
                () = sleep_until(ring_deadline) => {
                    if matches!(call.role, Role::Uac { cancelled: true, .. }) {
                        // Our CANCEL got no 487 either: the far end is gone.
                        call.phase = Phase::Ended;
                    } else {
                        tracing::info!("no answer in time; cancelling");
                        call.cancel_invite("noanswer").await;
                    }
                }
                Some(input) = inbox.endpoint.recv() => call.handle_input(input).await,
                Some(event) = media_rx.recv() => call.handle_media(event).await,
                Some((id, audio)) = prepared_rx.recv() => call.handle_prepared(id, audio).await,
                Some(task) = tasks_rx.recv() => call.handle_task(task).await,
                () = sleep_until(timeout) => {
                    if let Some(interp) = call.interp.as_mut() {
                        interp.handle_timeout(now());
                    }
                    call.drain_flow().await;
                }
                else => break,
            }
        }
        call.close_recording(&mut media_rx).await;
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Flow variables every inbound call starts with.
fn call_variables(id: Uuid, invite: &Request, destination: &str, source: &str) -> flow::Variables {
    let mut vars = flow::Variables::new();
    let from_name = invite
        .from()
        .and_then(|f| f.display_name().map(str::to_owned))
        .unwrap_or_default();
    for (k, v) in [
        ("voipbin.call.id", id.to_string()),
        ("voipbin.call.direction", "incoming".to_owned()),
        ("voipbin.call.source.type", address_type(source).to_owned()),
        ("voipbin.call.source.target", source.to_owned()),
        ("voipbin.call.source.name", from_name),
        (
            "voipbin.call.destination.type",
            address_type(destination).to_owned(),
        ),
        ("voipbin.call.destination.target", destination.to_owned()),
        ("voipbin.call.digits", String::new()),
    ] {
        vars.insert(k.to_owned(), v);
    }
    vars
}

/// `tel` for a phone number, `sip` for anything else.
fn address_type(target: &str) -> &'static str {
    let digits = target.strip_prefix('+').unwrap_or(target);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        "tel"
    } else {
        "sip"
    }
}

/// The user part of a URI, or the whole URI when it has none.
fn user_or_uri(uri: &Uri) -> String {
    uri.user().map_or_else(|| uri.to_string(), str::to_owned)
}

impl Call {
    fn respond(&self, tx: ServerTxId, response: Response) {
        self.endpoint.send(Command::Respond {
            tx,
            response: Box::new(response),
        });
    }

    /// Send a response to the INVITE we received (nothing for an outbound call).
    fn respond_invite(&self, response: Response) {
        if let Role::Uas { invite_tx } = self.role {
            self.respond(invite_tx, response);
        }
    }

    /// A response to the INVITE, with our To-tag.
    fn invite_response(&self, status: u16) -> Response {
        let mut response = Response::for_request(&self.invite, status);
        response.set_to_tag(&self.key.local_tag);
        response
    }

    /// Take one of the account's call slots for this inbound call, or refuse it (486 when the
    /// account is at its concurrent-call limit).
    async fn admit(&mut self, account: Uuid) -> bool {
        let account = match self.shared.store.account(account).await {
            Ok(Some(account)) => account,
            Ok(None) => {
                tracing::warn!(%account, "number of a missing account");
                self.reject(404);
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "account lookup failed");
                self.reject(500);
                return false;
            }
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match self.shared.limits.admit(&account, false, now) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(account = %account.id, error = %e, "inbound call refused by account limits");
                let mut response = self.invite_response(486);
                response
                    .headers
                    .push("Warning", format!("399 voxflow \"{e}\""));
                self.respond_invite(response);
                self.phase = Phase::Ended;
                false
            }
        }
    }

    fn reject(&mut self, status: u16) {
        let response = self.invite_response(status);
        self.respond_invite(response);
        self.phase = Phase::Ended;
    }

    fn contact_uri(&self) -> Uri {
        let transport = if self.peer.transport == Transport::Tcp {
            ";transport=tcp"
        } else {
            ""
        };
        let ip = self.shared.advertised_ip(self.local_sip.ip());
        let text = format!(
            "sip:voxflow@{}{}",
            fmt_host(ip, self.local_sip.port()),
            transport
        );
        Uri::parse(&text).unwrap_or_else(|_| self.invite.uri.clone())
    }

    /// Number lookup, SDP negotiation, call record, 180, interpreter. Returns false when the call
    /// was refused.
    async fn setup(&mut self) -> bool {
        let destination = user_or_uri(&self.invite.uri);
        let source = self
            .invite
            .from()
            .map(|f| user_or_uri(f.uri()))
            .unwrap_or_default();

        // A call from one of our devices must prove it is that device (digest, 401).
        let mut trusted_account = None;
        match self.shared.store.device_by_username(&source).await {
            Ok(Some(device)) => {
                trusted_account = Some(device.account_id);
                let verdict = crate::digest::authenticate(
                    &self.shared,
                    &self.invite,
                    self.peer.addr.ip(),
                    &device,
                    &self.key.local_tag,
                );
                if let crate::digest::Verdict::Refuse(response) = verdict {
                    self.respond_invite(response);
                    self.phase = Phase::Ended;
                    return false;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "device lookup failed");
                self.reject(500);
                return false;
            }
        }
        // Authenticated (or no device): say 100 before the number lookup and the 180 (peers
        // expect it first; a challenge above goes out without one).
        // A session interval below our minimum is refused now, before anything rings (422).
        if let Err(min_se) = sip::session_timer::negotiate_uas(&self.invite, MIN_SE) {
            let mut response = sip::session_timer::interval_too_small(&self.invite, min_se);
            response.set_to_tag(&self.key.local_tag);
            self.respond_invite(response);
            self.phase = Phase::Ended;
            return false;
        }
        self.respond_invite(Response::for_request(&self.invite, 100));

        let number = match self.shared.store.number_for_inbound(&destination).await {
            Ok(Some(n)) => n,
            Ok(None) => {
                tracing::info!("no number bound; 404");
                self.reject(404);
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "number lookup failed");
                self.reject(500);
                return false;
            }
        };
        if self.shared.inbound_policy == crate::InboundPolicy::Restricted
            && !self.trusted_for(number.account_id, trusted_account).await
        {
            tracing::info!(source = %self.peer.addr, "inbound call from an untrusted source; 403");
            self.reject(403);
            return false;
        }
        let flow = match self
            .shared
            .store
            .flow(number.account_id, number.call_flow_id)
            .await
        {
            Ok(Some(f)) => f,
            Ok(None) => {
                tracing::warn!(flow_id = %number.call_flow_id, "number bound to a missing flow");
                self.reject(404);
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "flow lookup failed");
                self.reject(500);
                return false;
            }
        };
        let program = match flow::compile(&flow.actions) {
            Ok(p) => Arc::new(p),
            Err(errors) => {
                tracing::error!(?errors, "stored flow no longer compiles");
                self.reject(500);
                return false;
            }
        };

        // Media: a local RTP port, then the SDP answer (or our offer when the INVITE had none).
        let socket = match self.shared.media.bind_rtp() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "no RTP port");
                self.reject(503);
                return false;
            }
        };
        let rtp_ip = self.shared.advertised_ip(self.local_sip.ip());
        self.local_rtp =
            SocketAddr::new(rtp_ip, socket.local_addr().map(|a| a.port()).unwrap_or(0));
        self.rtp_socket = Some(socket);
        self.origin = sdp::Origin::from(u64::from(rand_u32()));
        if has_sdp(&self.invite.headers, &self.invite.body) {
            match sdp::answer_offer(
                &self.invite.body,
                &self.shared.codecs,
                self.local_rtp,
                self.origin,
            ) {
                Ok((negotiated, answer)) => {
                    self.negotiated = Some(negotiated);
                    self.local_sdp = Some(answer);
                }
                Err(e) => {
                    tracing::info!(error = %e, "unusable SDP offer; 488");
                    let mut response = self.invite_response(488);
                    response
                        .headers
                        .push("Warning", format!("399 voxflow \"{e}\""));
                    self.respond_invite(response);
                    self.phase = Phase::Ended;
                    return false;
                }
            }
        } else {
            self.local_sdp = Some(sdp::create_offer(
                self.local_rtp,
                &self.shared.codecs,
                self.origin,
            ));
        }

        if !self.admit(number.account_id).await {
            return false;
        }
        let id = Uuid::new_v4();
        let now_text = store::utc_now();
        let record = store::CallRecord {
            id,
            account_id: number.account_id,
            flow_id: Some(flow.id),
            direction: "incoming".into(),
            status: "ringing".into(),
            source_type: address_type(&source).into(),
            source_target: source.clone(),
            destination_type: address_type(&destination).into(),
            destination_target: destination.clone(),
            hangup_reason: String::new(),
            hangup_by: String::new(),
            sip_call_id: self.key.call_id.clone(),
            tm_create: now_text.clone(),
            tm_ringing: Some(now_text.clone()),
            tm_progressing: None,
            tm_hangup: None,
            tm_update: now_text,
        };
        if let Err(e) = self.shared.store.insert_call(&record).await {
            tracing::error!(error = %e, "could not record the call");
            self.shared.limits.release(
                record.account_id,
                time::OffsetDateTime::now_utc().unix_timestamp(),
            );
            self.reject(500);
            return false;
        }
        self.shared.call_changed(&record);
        self.record = Some(record);
        tracing::info!(%id, flow_id = %flow.id, "inbound call ringing");

        let ringing = Box::new(self.invite_response(180));
        let Role::Uas { invite_tx: tx } = self.role else {
            return true;
        };
        if sip::supports_100rel(&self.invite) {
            self.endpoint.send(Command::RespondReliably {
                tx,
                response: ringing,
            });
        } else {
            self.endpoint.send(Command::Respond {
                tx,
                response: ringing,
            });
        }

        let vars = call_variables(id, &self.invite, &destination, &source);
        self.interp = Some(new_interpreter(program, vars, self.shared.flow_limits));
        true
    }

    async fn save(&mut self) {
        if let Some(record) = self.record.as_mut() {
            record.tm_update = store::utc_now();
            if let Err(e) = self.shared.store.update_call(record).await {
                tracing::error!(error = %e, "could not update the call record");
            }
            self.shared.call_changed(record);
        }
    }

    async fn set_hangup(&mut self, reason: &str, by: &str) {
        if let Some(record) = self.record.as_mut() {
            if record.status == "hangup" {
                return;
            }
            record.status = "hangup".into();
            record.hangup_reason = reason.into();
            record.hangup_by = by.into();
            record.tm_hangup = Some(store::utc_now());
            self.shared.metrics.call_ended(&record.direction, reason);
            tracing::info!(reason, by, "call ended");
        }
        self.save().await;
    }

    /// Send the 200 with our SDP and start media.
    async fn answer(&mut self) {
        // Only a call we received is answered by us; an outgoing one waits for the callee.
        if self.phase != Phase::Early || matches!(self.role, Role::Uac { .. }) {
            return;
        }
        let contact = self.contact_uri();
        let mut response = self.invite_response(200);
        response.headers.push("Contact", format!("<{contact}>"));
        response.headers.push("Allow", ALLOW);
        if let Some(sdp) = &self.local_sdp {
            response.headers.push("Content-Type", "application/sdp");
            response.body = sdp.clone().into_bytes();
        }
        match Dialog::uas(&self.invite, &self.key.local_tag, &contact) {
            Ok(d) => self.dialog = Some(d),
            Err(e) => {
                tracing::info!(error = %e, "cannot form a dialog; 400");
                self.reject(400);
                return;
            }
        }
        if let Ok(Some(timer)) = sip::session_timer::negotiate_uas(&self.invite, MIN_SE) {
            sip::session_timer::apply_to_response(&timer, &mut response);
            self.arm_session_timer(timer);
        }
        self.respond_invite(response);
        self.phase = Phase::Answering;
        self.attach_media();
        if let Some(record) = self.record.as_mut() {
            record.status = "progressing".into();
            record.tm_progressing = Some(store::utc_now());
        }
        self.save().await;
    }

    fn attach_media(&mut self) {
        let Some(ports) = self.rtp_socket.take() else {
            return;
        };
        let (codec, payload_type, dtmf_payload_type, remote) = match &self.negotiated {
            Some(n) => (
                n.codec,
                n.payload_type,
                n.dtmf_payload_type,
                usable(n.remote_rtp),
            ),
            // Late offer: our offer's first codec until the ACK brings the answer.
            None => (sdp::Codec::Pcmu, 0, Some(101), None),
        };
        let ssrc = rand_u32();
        let session = MediaSession::new(SessionConfig {
            codec,
            payload_type,
            dtmf_payload_type,
            ssrc,
            initial_seq: (rand_u32() & 0x7fff) as u16,
            initial_timestamp: rand_u32(),
            remote,
            // The media workers tick every 20 ms; peers accept any ptime we send (RFC 3264 §6.1
            // makes a=ptime a preference), so we always send 20 ms packets.
            ptime_ms: 20,
            rtp_timeout_ms: self.shared.rtp_timeout_ms,
        });
        let worker = self.links.bridge_leg.and_then(|leg| leg.worker);
        match self
            .shared
            .media
            .attach_on(worker, ports, session, self.media_tx.clone())
        {
            Ok(handle) => {
                if let Some(n) = &self.negotiated {
                    handle.set_receiving(expects_media(n));
                }
                self.media = Some(handle);
            }
            Err(e) => tracing::error!(error = %e, "could not start media"),
        }
    }

    /// Hang up from our side: BYE when answered, a final error response (or our CANCEL) when not.
    async fn hangup(&mut self, reason: &str, status_if_early: u16) {
        match self.phase {
            Phase::Early if matches!(self.role, Role::Uac { .. }) => {
                self.cancel_invite(reason).await;
                return;
            }
            Phase::Early => {
                let response = self.invite_response(status_if_early);
                self.respond_invite(response);
                self.phase = Phase::Ended;
            }
            Phase::Answering | Phase::Confirmed => self.send_bye(),
            Phase::Ending | Phase::Ended => return,
        }
        self.media = None;
        self.set_hangup(reason, "local").await;
        self.finish_flow();
    }

    /// Give up our ringing INVITE: CANCEL it; the 487 (or a racing 200, which we BYE) ends it.
    async fn cancel_invite(&mut self, reason: &str) {
        if let Role::Uac {
            cancelled,
            ring_deadline,
            ..
        } = &mut self.role
        {
            if *cancelled {
                return;
            }
            *cancelled = true;
            // How long to wait for the 487 before giving the call up (64*T1).
            *ring_deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(32);
        }
        self.endpoint.send(Command::CancelInvite {
            call: self.key.clone(),
        });
        self.set_hangup(reason, "local").await;
        self.finish_flow();
    }

    /// A response to our INVITE: progress, the answer (ACK, media, flow), or the failure.
    async fn handle_invite_response(&mut self, response: Response) {
        let status = response.status;
        if status < 200 {
            if status > 100
                && self.phase == Phase::Early
                && let Some(record) = self.record.as_mut()
                && record.status == "dialing"
            {
                record.status = "ringing".into();
                record.tm_ringing = Some(store::utc_now());
                self.save().await;
            }
            if status > 100
                && self.phase == Phase::Early
                && self.links.early_execution
                && self.interp.as_ref().is_some_and(|i| !i.is_started())
            {
                tracing::info!(status, "early execution: the flow starts while it rings");
                self.drive_flow(FlowInput::Start).await;
            }
            return;
        }
        if (status == 401 || status == 407)
            && self.phase == Phase::Early
            && self.retry_with_credentials(&response)
        {
            return;
        }
        if (300..400).contains(&status)
            && self.phase == Phase::Early
            && self.follow_redirect(&response).await
        {
            return;
        }
        if status >= 300 {
            if self.phase == Phase::Early {
                self.phase = Phase::Ended;
                let (reason, by) = failure_reason(status);
                tracing::info!(status, reason, "outbound call failed");
                self.set_hangup(reason, by).await;
                self.finish_flow();
            }
            return;
        }
        // A 2xx: ours, a retransmission, or another fork's.
        let Ok(dialog) = Dialog::uac(&self.invite, &response) else {
            tracing::debug!("2xx without the dialog's tags; ignored");
            return;
        };
        let same_dialog = self.dialog.as_ref().is_none_or(|d| d.id() == dialog.id());
        if !same_dialog {
            // A second fork answered: ACK it and hang it up (RFC 3261 §13.2.2.4).
            let mut extra = dialog;
            let peer = self.peer_for(&extra);
            let cseq = self.invite.cseq().map_or(1, |c| c.seq);
            self.endpoint.send(Command::SendAck {
                peer,
                ack: Box::new(extra.create_ack(cseq)),
            });
            let bye = extra.create_request(Method::Bye);
            self.endpoint.send(Command::Send {
                call: self.key.clone(),
                peer,
                request: Box::new(bye),
            });
            return;
        }
        let cseq = self.invite.cseq().map_or(1, |c| c.seq);
        if let Role::Uac { ack: Some(ack), .. } = &self.role {
            // A retransmitted 2xx: the same ACK again.
            let peer = self.dialog.as_ref().map_or(self.peer, |d| self.peer_for(d));
            self.endpoint.send(Command::SendAck {
                peer,
                ack: ack.clone(),
            });
            return;
        }
        let mut ack = Box::new(dialog.create_ack(cseq));
        // Our own Via, fixed once: every resend of this ACK is then byte-identical.
        ack.headers.prepend("Via", self.via());
        let peer = self.peer_for(&dialog);
        self.endpoint.send(Command::SendAck {
            peer,
            ack: ack.clone(),
        });
        let cancelled = matches!(
            self.role,
            Role::Uac {
                cancelled: true,
                ..
            }
        );
        if let Role::Uac { ack: slot, .. } = &mut self.role {
            *slot = Some(ack);
        }
        self.dialog = Some(dialog);
        if cancelled || self.phase != Phase::Early {
            // Answered after we gave up (the 200 crossed our CANCEL): hang it up.
            self.phase = Phase::Confirmed;
            self.send_bye();
            return;
        }
        match sdp::accept_answer(&response.body, &self.shared.codecs) {
            Ok(n) => self.negotiated = Some(n),
            Err(e) => {
                tracing::info!(error = %e, "unusable SDP answer; hanging up");
                self.phase = Phase::Confirmed;
                self.send_bye();
                self.set_hangup("failed", "local").await;
                self.finish_flow();
                return;
            }
        }
        self.phase = Phase::Confirmed;
        self.attach_media();
        if let Some(record) = self.record.as_mut() {
            record.status = "progressing".into();
            record.tm_progressing = Some(store::utc_now());
        }
        self.save().await;
        tracing::info!("outbound call answered");
        if let Some(leg) = self.links.bridge_leg {
            let answered = match (&self.media, &self.record) {
                (Some(media), Some(record)) => self.shared.live.send(
                    leg.master,
                    CallInput::LegAnswered {
                        leg: record.id,
                        key: media.key(),
                        worker: media.worker_index(),
                    },
                ),
                _ => false,
            };
            if !answered {
                // The call it was for is gone, or we have no media to bridge.
                self.hangup("normal", 603).await;
            }
            return;
        }
        self.flow_answered = true;
        if let Some(interp) = self.interp.as_mut() {
            interp.handle_input(now(), FlowInput::Start);
        }
        self.drive_flow(FlowInput::Answered).await;
    }

    /// A Via for a request we send outside a transaction (the ACK of a 2xx).
    fn via(&self) -> String {
        let transport = if self.peer.transport == Transport::Tcp {
            "TCP"
        } else {
            "UDP"
        };
        let host = fmt_host(
            self.shared.advertised_ip(self.local_sip.ip()),
            self.local_sip.port(),
        );
        format!(
            "SIP/2.0/{transport} {host};branch=z9hG4bK{:08x}{:08x};rport",
            rand_u32(),
            rand_u32()
        )
    }

    /// A 3xx to our INVITE: retry at the first `sip:` Contact it gives (RFC 3261 §8.1.3.4: same
    /// Call-ID and From tag, next CSeq), at most [`MAX_REDIRECTS`] times per call.
    async fn follow_redirect(&mut self, response: &Response) -> bool {
        let Role::Uac {
            redirects,
            cancelled: false,
            ..
        } = &mut self.role
        else {
            return false;
        };
        if *redirects >= MAX_REDIRECTS {
            return false;
        }
        let target = response
            .headers
            .get_all("Contact")
            .filter_map(|c| sip::NameAddr::parse(c).ok())
            .map(|c| c.uri().clone())
            .find(|uri| matches!(uri.scheme(), sip::Scheme::Sip));
        let Some(target) = target else { return false };
        let port = target.port().unwrap_or(5060);
        let Ok(addr) = crate::outbound::lookup(target.host(), port).await else {
            return false;
        };
        *redirects += 1;
        let mut invite = self.invite.clone();
        let cseq = invite.cseq().map_or(1, |c| c.seq) + 1;
        invite.headers.set("CSeq", format!("{cseq} INVITE"));
        invite.headers.set("To", format!("<{target}>"));
        invite.uri = target;
        self.invite = invite;
        self.peer = Peer {
            transport: self.peer.transport,
            addr,
            conn: None,
        };
        tracing::info!(status = response.status, to = %self.invite.uri, "following a redirect");
        self.endpoint.send(Command::SendInvite {
            call: self.key.clone(),
            peer: self.peer,
            request: Box::new(self.invite.clone()),
        });
        true
    }

    /// Answer a 401/407 to our INVITE with the trunk's credentials: the same INVITE again with
    /// the next CSeq and an `Authorization`/`Proxy-Authorization` (RFC 3261 §22.2). Once per
    /// call; false when there is nothing to answer with.
    fn retry_with_credentials(&mut self, response: &Response) -> bool {
        let Role::Uac {
            credentials,
            cancelled: false,
            ..
        } = &mut self.role
        else {
            return false;
        };
        let Some((user, password)) = credentials.take() else {
            return false;
        };
        let uri = self.invite.uri.to_string();
        let (answer_header, answer) = match crate::digest::answer_challenge(
            response,
            &Method::Invite,
            &uri,
            &user,
            &password,
        ) {
            Ok(answer) => answer,
            Err(reason) => {
                tracing::info!(%reason, "cannot answer the trunk's challenge");
                return false;
            }
        };
        let mut invite = self.invite.clone();
        let cseq = invite.cseq().map_or(1, |c| c.seq) + 1;
        invite.headers.set("CSeq", format!("{cseq} INVITE"));
        invite.headers.set(answer_header, answer);
        self.invite = invite;
        tracing::info!(
            status = response.status,
            "answering the challenge with the trunk's credentials"
        );
        self.endpoint.send(Command::SendInvite {
            call: self.key.clone(),
            peer: self.peer,
            request: Box::new(self.invite.clone()),
        });
        true
    }

    /// Under the restricted inbound policy: the call comes from an authenticated device of the
    /// number's account, or from an allowed address of one of that account's trunks.
    async fn trusted_for(&self, account: Uuid, device_account: Option<Uuid>) -> bool {
        if device_account == Some(account) {
            return true;
        }
        let ip = self.peer.addr.ip();
        match self.shared.store.all_trunks().await {
            Ok(trunks) => trunks
                .iter()
                .any(|t| t.account_id == account && crate::allow_list::allows(&t.allowed_ips, ip)),
            Err(e) => {
                tracing::error!(error = %e, "trunk lookup failed");
                false
            }
        }
    }

    /// Start (or restart) the session timer agreed with the peer.
    fn arm_session_timer(&mut self, timer: sip::session_timer::SessionTimer) {
        let interval = std::time::Duration::from_secs(u64::from(timer.interval));
        let we_refresh = timer.refresher == sip::session_timer::Refresher::Uas;
        // We refresh at half the interval; the peer gets until the interval minus
        // min(32 s, a third of it) (RFC 4028 §10).
        let wait = if we_refresh {
            interval / 2
        } else {
            interval - (interval / 3).min(std::time::Duration::from_secs(32))
        };
        self.session = Some(SessionTimer {
            interval,
            we_refresh,
            deadline: tokio::time::Instant::now() + wait,
        });
    }

    /// The session timer fired: refresh it ourselves, or end a session the peer let expire.
    async fn handle_session_deadline(&mut self) {
        let Some(timer) = self.session else { return };
        if !matches!(self.phase, Phase::Answering | Phase::Confirmed) {
            self.session = None;
            return;
        }
        if timer.we_refresh {
            if let Some(dialog) = self.dialog.as_mut() {
                let mut update = dialog.create_request(Method::Update);
                update.headers.push(
                    "Session-Expires",
                    format!("{};refresher=uac", timer.interval.as_secs()),
                );
                update.headers.push("Supported", "timer");
                let peer = self.target_peer();
                self.endpoint.send(Command::Send {
                    call: self.key.clone(),
                    peer,
                    request: Box::new(update),
                });
            }
            self.session = Some(SessionTimer {
                deadline: tokio::time::Instant::now() + timer.interval / 2,
                ..timer
            });
        } else {
            tracing::info!("session expired without a refresh; hanging up");
            self.session = None;
            self.hangup("timeout", 408).await;
        }
    }

    /// Where requests of `dialog` go.
    fn peer_for(&self, dialog: &Dialog) -> Peer {
        let hop = dialog.next_hop();
        let addr = hop
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        match addr {
            Some(ip) if self.peer.transport == Transport::Udp => Peer {
                transport: Transport::Udp,
                addr: SocketAddr::new(ip, hop.port().unwrap_or(5060)),
                conn: None,
            },
            _ => self.peer,
        }
    }

    fn send_bye(&mut self) {
        let Some(dialog) = self.dialog.as_mut() else {
            self.phase = Phase::Ended;
            return;
        };
        let request = dialog.create_request(Method::Bye);
        let peer = self.target_peer();
        self.endpoint.send(Command::Send {
            call: self.key.clone(),
            peer,
            request: Box::new(request),
        });
        self.phase = Phase::Ending;
    }

    /// Where in-dialog requests go: the dialog's next hop (first Route, else the remote target)
    /// when it is an IP literal, else where the call's signalling comes from (NAT-friendly).
    fn target_peer(&self) -> Peer {
        self.dialog.as_ref().map_or(self.peer, |d| self.peer_for(d))
    }

    fn finish_flow(&mut self) {
        if let Some(interp) = self.interp.as_mut() {
            interp.handle_input(now(), FlowInput::CallEnded);
            while interp.poll_command().is_some() {}
        }
        self.preparing.clear();
        // The calls that live and die with this one.
        let connect_legs = self
            .links
            .connect
            .take()
            .map(|c| c.legs)
            .unwrap_or_default();
        for id in connect_legs.into_iter().chain(self.links.chained.drain(..)) {
            self.shared.live.send(id, CallInput::Hangup);
        }
    }

    async fn handle_input(&mut self, input: CallInput) {
        match input {
            CallInput::Ack(ack) => {
                if self.phase == Phase::Answering {
                    self.phase = Phase::Confirmed;
                    // Late offer: the ACK carries the answer to our offer.
                    if self.negotiated.is_none() && has_sdp(&ack.headers, &ack.body) {
                        match sdp::accept_answer(&ack.body, &self.shared.codecs) {
                            Ok(n) => {
                                if let (Some(media), Some(addr)) =
                                    (&self.media, usable(n.remote_rtp))
                                {
                                    media.set_remote(addr);
                                }
                                if let Some(media) = &self.media {
                                    media.set_receiving(expects_media(&n));
                                }
                                self.negotiated = Some(n);
                            }
                            Err(e) => {
                                tracing::info!(error = %e, "unusable SDP in ACK; hanging up");
                                self.hangup("failed", 488).await;
                                return;
                            }
                        }
                    }
                    if !self.flow_answered {
                        self.flow_answered = true;
                        self.drive_flow(FlowInput::Answered).await;
                    }
                }
            }
            CallInput::Cancelled => {
                if self.phase == Phase::Early {
                    let response = self.invite_response(487);
                    self.respond_invite(response);
                    self.phase = Phase::Ended;
                    self.set_hangup("cancel", "remote").await;
                    self.finish_flow();
                }
            }
            CallInput::ReliableTimeout => {
                // RFC 3262 §3: reject the INVITE with a 5xx; the held 200 was dropped.
                tracing::info!("our reliable 180 was never PRACKed; 500");
                self.phase = Phase::Early;
                self.media = None;
                self.hangup("failed", 500).await;
            }
            CallInput::AckTimeout => {
                tracing::info!("no ACK for our 200; hanging up");
                self.send_bye();
                self.media = None;
                self.set_hangup("timeout", "local").await;
                self.finish_flow();
            }
            CallInput::Response(response) => {
                let to_invite = response.cseq().is_some_and(|c| c.method == Method::Invite);
                if to_invite && matches!(self.role, Role::Uac { .. }) {
                    self.handle_invite_response(response).await;
                } else if self.phase == Phase::Ending && response.status >= 200 {
                    self.phase = Phase::Ended;
                }
            }
            CallInput::Hangup => self.hangup("normal", 603).await,
            CallInput::RequestTimeout => {
                if self.phase == Phase::Early && matches!(self.role, Role::Uac { .. }) {
                    // Timer B: nobody answered our INVITE at all.
                    self.phase = Phase::Ended;
                    self.set_hangup("failed", "remote").await;
                    self.finish_flow();
                } else if self.phase == Phase::Ending {
                    self.phase = Phase::Ended;
                }
            }
            CallInput::Request { tx, request } => self.handle_request(tx, request).await,
            CallInput::Shutdown => self.hangup("shutdown", 503).await,
            CallInput::Activeflow { op, reply } => {
                let result = self.activeflow_op(op).await;
                let _ = reply.send(result);
            }
            CallInput::LegAnswered { leg, key, worker } => {
                self.leg_answered(leg, key, worker).await;
            }
            CallInput::LegEnded {
                leg,
                answered,
                reason,
            } => self.leg_ended(leg, answered, reason).await,
        }
    }

    async fn handle_request(&mut self, tx: ServerTxId, request: Request) {
        if let Some(dialog) = self.dialog.as_mut()
            && let Err(e) = dialog.handle_remote_request(&request)
        {
            tracing::debug!(error = %e, "in-dialog request refused");
            self.respond(tx, Response::for_request(&request, e.status()));
            return;
        }
        match request.method {
            Method::Bye => {
                self.respond(tx, Response::for_request(&request, 200));
                if matches!(
                    self.phase,
                    Phase::Answering | Phase::Confirmed | Phase::Ending
                ) {
                    self.phase = Phase::Ended;
                    self.media = None;
                    self.set_hangup("normal", "remote").await;
                    self.finish_flow();
                }
            }
            Method::Invite | Method::Update => self.handle_session_change(tx, &request),
            Method::Info => {
                let digit = dtmf_from_info(&request);
                self.respond(tx, Response::for_request(&request, 200));
                if let Some(d) = digit {
                    self.handle_digit(d).await;
                }
            }
            Method::Options | Method::Message => {
                let mut response = Response::for_request(&request, 200);
                if request.method == Method::Options {
                    response.headers.push("Allow", ALLOW);
                }
                self.respond(tx, response);
            }
            Method::Extension(_) => {
                let mut response = Response::for_request(&request, 501);
                response.headers.push("Allow", ALLOW);
                self.respond(tx, response);
            }
            _ => {
                let mut response = Response::for_request(&request, 405);
                response.headers.push("Allow", ALLOW);
                self.respond(tx, response);
            }
        }
    }

    /// A re-INVITE or an UPDATE (RFC 3311): answer a new offer (hold, a moved media address)
    /// with the next version of our description; a re-INVITE without one gets ours again.
    fn handle_session_change(&mut self, tx: ServerTxId, request: &Request) {
        if !matches!(self.phase, Phase::Answering | Phase::Confirmed) {
            // Glare or a change before the dialog is up (RFC 3261 §14.2, RFC 3311 §5.2).
            let status = if request.method == Method::Invite {
                491
            } else {
                500
            };
            self.respond(tx, Response::for_request(request, status));
            return;
        }
        let offered = has_sdp(&request.headers, &request.body);
        if offered {
            let origin = self.origin.next();
            match sdp::answer_offer(&request.body, &self.shared.codecs, self.local_rtp, origin) {
                Ok((n, answer)) => {
                    if let (Some(media), Some(addr)) = (&self.media, usable(n.remote_rtp)) {
                        media.set_remote(addr);
                    }
                    if let Some(media) = &self.media {
                        media.set_receiving(expects_media(&n));
                    }
                    self.origin = origin;
                    self.negotiated = Some(n);
                    self.local_sdp = Some(answer);
                }
                Err(e) => {
                    let mut response = Response::for_request(request, 488);
                    response
                        .headers
                        .push("Warning", format!("399 voxflow \"{e}\""));
                    self.respond(tx, response);
                    return;
                }
            }
        }
        let mut response = Response::for_request(request, 200);
        response
            .headers
            .push("Contact", format!("<{}>", self.contact_uri()));
        // A refresh (RFC 4028 §9): the new interval and refresher, or none any more.
        match sip::session_timer::negotiate_uas(request, MIN_SE) {
            Ok(Some(timer)) => {
                sip::session_timer::apply_to_response(&timer, &mut response);
                self.arm_session_timer(timer);
            }
            Ok(None) => self.session = None,
            Err(min_se) => {
                self.respond(tx, sip::session_timer::interval_too_small(request, min_se));
                return;
            }
        }
        let send_sdp = offered || request.method == Method::Invite;
        if let Some(sdp) = self.local_sdp.as_ref().filter(|_| send_sdp) {
            response.headers.push("Content-Type", "application/sdp");
            response.body = sdp.clone().into_bytes();
        }
        self.respond(tx, response);
    }

    async fn handle_media(&mut self, event: EngineEvent) {
        let event = match event {
            EngineEvent::Media(event) => event,
            EngineEvent::RecordingDone { recorder, end } => {
                self.recording_done(*recorder, end).await;
                return;
            }
            EngineEvent::Amd { id, decision } => {
                tracing::info!(result = %decision.result, cause = %decision.cause, after_ms = decision.after_ms, "amd");
                self.drive_flow(FlowInput::AmdResult {
                    media_id: id,
                    result: decision.result.as_str().to_owned(),
                    cause: decision.cause.as_str().to_owned(),
                })
                .await;
                return;
            }
        };
        match event {
            MediaEvent::Dtmf { digit, source, .. } => {
                tracing::debug!(%digit, ?source, "dtmf");
                self.handle_digit(digit).await;
            }
            MediaEvent::PlaybackFinished { id: BEEP_MEDIA_ID }
            | MediaEvent::PlaybackStopped { id: BEEP_MEDIA_ID } => self.beep_done().await,
            MediaEvent::PlaybackFinished {
                id: RINGBACK_MEDIA_ID,
            }
            | MediaEvent::PlaybackStopped {
                id: RINGBACK_MEDIA_ID,
            } => {}
            MediaEvent::PlaybackFinished { id }
            | MediaEvent::DigitsSent { id }
            | MediaEvent::EchoFinished { id } => {
                self.drive_flow(FlowInput::MediaFinished { media_id: id })
                    .await;
            }
            MediaEvent::PlaybackStopped { .. } => {}
            MediaEvent::RtpTimeout { silent_ms } => {
                tracing::info!(silent_ms, "no RTP from the peer; hanging up");
                self.hangup("rtp_timeout", 408).await;
            }
        }
    }

    /// A key from the caller (RFC 4733, in-band or SIP INFO): it may end the recording, and it
    /// goes to the flow.
    async fn handle_digit(&mut self, digit: char) {
        if let Some(active) = &self.recording
            && active.end_of_key.is_some_and(|k| k.matches(digit))
            && let Some(media) = &self.media
        {
            media.stop_recording(RecordingEnd::Key);
        }
        self.drive_flow(FlowInput::Digit(digit)).await;
    }

    /// `recording_start`: opens the file and the record, and hands the recorder to the media
    /// worker — after the beep, with `beep_start`. The reply to the flow is `RecordingStarted`
    /// (`None` here while the beep plays: it comes when the beep ends) or `MediaFailed`.
    async fn start_recording(
        &mut self,
        media_id: u64,
        request: RecordingRequest,
    ) -> Option<FlowInput> {
        let failed = |reason: String| Some(FlowInput::MediaFailed { media_id, reason });
        let (Some(media), Some(call)) = (&self.media, &self.record) else {
            return failed("the call has no media to record".into());
        };
        let id = Uuid::new_v4();
        let channels = request.channels.clamp(1, 2);
        let spec = RecordingSpec {
            path: recording::path_for(&self.shared.data_dir, id),
            channels,
            max_duration: request.max_duration,
            end_of_silence: request.end_of_silence,
        };
        let path = spec.path.clone();
        let recorder = match tokio::task::spawn_blocking(move || Recorder::create(id, &spec)).await
        {
            Ok(Ok(recorder)) => recorder,
            Ok(Err(e)) => return failed(format!("cannot create {}: {e}", path.display())),
            Err(e) => return failed(format!("recording task failed: {e}")),
        };
        let now_text = store::utc_now();
        let record = store::RecordingRecord {
            id,
            account_id: call.account_id,
            call_id: call.id,
            status: store::RecordingRecord::RECORDING.to_owned(),
            format: request.format.as_str().to_owned(),
            channels,
            path: path.display().to_string(),
            duration_ms: 0,
            end_reason: String::new(),
            tm_start: now_text.clone(),
            tm_end: None,
            tm_update: now_text,
        };
        if let Err(e) = self.shared.store.create_recording(&record).await {
            tracing::error!(error = %e, "could not store the recording");
            drop(recorder);
            let _ = tokio::fs::remove_file(&path).await;
            return failed(format!("could not store the recording: {e}"));
        }
        self.shared.bus.recording_changed(&record);
        if let Some(previous) = self.recording.take() {
            // One at a time: the running one ends; its recorder comes back as usual.
            media.stop_recording(RecordingEnd::Stopped);
            self.closing.push(previous);
        }
        self.new_recording = Some(ActiveRecording {
            id,
            record,
            end_of_key: request.end_of_key,
        });
        if request.beep_start {
            media.play(BEEP_MEDIA_ID, media::tone::beep());
            self.beep_then_record = Some((recorder, media_id));
            return None;
        }
        Some(self.begin_recording(recorder, media_id))
    }

    /// Hands the prepared recorder to the worker; the flow's `RecordingStarted`.
    fn begin_recording(&mut self, recorder: Recorder, media_id: u64) -> FlowInput {
        let id = recorder.id;
        if let Some(media) = &self.media {
            media.start_recording(recorder);
        }
        tracing::info!(recording = %id, "recording started");
        self.recording = self.new_recording.take();
        FlowInput::RecordingStarted {
            media_id,
            recording_id: id.to_string(),
        }
    }

    /// The recording beep ended (or was stopped): recording starts now.
    async fn beep_done(&mut self) {
        if let Some((recorder, media_id)) = self.beep_then_record.take() {
            let reply = self.begin_recording(recorder, media_id);
            self.drive_flow(reply).await;
        }
    }

    /// The media worker gave a recording back: finish the file and the record.
    async fn recording_done(&mut self, recorder: Recorder, end: RecordingEnd) {
        let id = recorder.id;
        let active = if self.recording.as_ref().is_some_and(|a| a.id == id) {
            self.recording.take()
        } else {
            let pos = self.closing.iter().position(|a| a.id == id);
            pos.map(|pos| self.closing.swap_remove(pos))
        };
        let finished = tokio::task::spawn_blocking(move || recorder.finish()).await;
        let Some(active) = active else {
            return;
        };
        let mut record = active.record;
        // The WAV is encoded to the format asked for, when there is audio to encode.
        let encoding = match finished {
            Ok(Ok(duration))
                if duration > std::time::Duration::ZERO
                    && !matches!(end, RecordingEnd::Error(_)) =>
            {
                recording::Encoding::for_format(&record.format)
            }
            _ => None,
        };
        match finished {
            Ok(Ok(duration)) => {
                record.duration_ms = duration.as_millis() as u64;
                record.status = if matches!(end, RecordingEnd::Error(_)) {
                    "failed".to_owned()
                } else {
                    "ended".to_owned()
                };
                record.end_reason = end.as_reason();
            }
            Ok(Err(e)) => {
                record.status = "failed".to_owned();
                record.end_reason = RecordingEnd::Error(e.to_string()).as_reason();
            }
            Err(e) => {
                record.status = "failed".to_owned();
                record.end_reason = RecordingEnd::Error(e.to_string()).as_reason();
            }
        }
        let shared = self.shared.clone();
        let Some(encoding) = encoding else {
            record.format = "wav".to_owned();
            finish_record(&shared, record).await;
            return;
        };
        // Encoding takes a while (a subprocess): off the call task, so the call goes on. The
        // record says `recording` until the file is in its final format.
        tokio::spawn(async move {
            let wav = std::path::PathBuf::from(&record.path);
            match recording::encode(&wav, encoding).await {
                Ok(path) => {
                    record.path = path.display().to_string();
                    // The WAV goes only once the record names the encoded file.
                    if finish_record(&shared, record).await
                        && let Err(e) = tokio::fs::remove_file(&wav).await
                    {
                        tracing::warn!(path = %wav.display(), error = %e, "could not remove the WAV after encoding");
                    }
                }
                Err(e) => {
                    tracing::warn!(recording = %record.id, error = %e, "kept the recording as WAV");
                    record.format = "wav".to_owned();
                    finish_record(&shared, record).await;
                }
            }
        });
    }

    /// The call is over: a recording still running comes back from the worker once the media
    /// is detached; wait for it (bounded) so its file and record are complete.
    async fn close_recording(&mut self, media_rx: &mut mpsc::UnboundedReceiver<EngineEvent>) {
        self.media = None;
        if let Some((recorder, _)) = self.beep_then_record.take() {
            // Hung up during the beep: an empty recording, closed as such.
            self.recording = self.new_recording.take();
            self.recording_done(recorder, RecordingEnd::Hangup).await;
        }
        let deadline = tokio::time::Instant::now() + RECORDING_CLOSE_WAIT;
        while self.recording.is_some() || !self.closing.is_empty() {
            match tokio::time::timeout_at(deadline, media_rx.recv()).await {
                Ok(Some(EngineEvent::RecordingDone { recorder, end })) => {
                    self.recording_done(*recorder, end).await;
                }
                Ok(Some(EngineEvent::Media(_) | EngineEvent::Amd { .. })) => {}
                Ok(None) | Err(_) => {
                    tracing::warn!("recording not returned by the media worker");
                    break;
                }
            }
        }
    }

    async fn handle_prepared(&mut self, id: u64, audio: Result<Arc<[i16]>, String>) {
        if !self.preparing.remove(&id) {
            return; // stopped or superseded while it was being prepared
        }
        match audio {
            Ok(pcm) => match &self.media {
                Some(media) => media.play(id, pcm),
                None => {
                    self.drive_flow(FlowInput::MediaFailed {
                        media_id: id,
                        reason: "no media".into(),
                    })
                    .await
                }
            },
            Err(reason) => {
                tracing::warn!(%reason, media_id = id, "media could not be prepared");
                self.drive_flow(FlowInput::MediaFailed {
                    media_id: id,
                    reason,
                })
                .await;
            }
        }
    }

    async fn drive_flow(&mut self, input: FlowInput) {
        if let Some(interp) = self.interp.as_mut() {
            interp.handle_input(now(), input);
        }
        if !self.links.activeflow_saved && self.interp.as_ref().is_some_and(Interpreter::is_started)
        {
            self.links.activeflow_saved = true;
            self.save_activeflow().await;
        }
        self.publish_progress();
        self.drain_flow().await;
        self.publish_progress();
    }

    /// `activeflow_updated` (opt-in) when the run moved to another action: a small summary,
    /// not the whole record (it fires on every action).
    fn publish_progress(&mut self) {
        let (Some(interp), Some(record)) = (self.interp.as_ref(), self.record.as_ref()) else {
            return;
        };
        let count = interp.execute_count();
        if count == self.links.published_count || interp.end_reason().is_some() {
            return;
        }
        self.links.published_count = count;
        let last = interp.executed_actions().last();
        let data = serde_json::json!({
            "id": self.links.activeflow_id,
            "customer_id": record.account_id,
            "reference_type": "call",
            "reference_id": record.id,
            "flow_id": self.current_flow_id(),
            "status": store::ActiveflowRecord::RUNNING,
            "current_action_id": interp.current_action_id().unwrap_or_default(),
            "current_action_type": last.map(|e| e.action_type.as_str()),
            "execute_count": count,
        });
        let mut event = crate::events::Event::new(
            crate::events::EventType::ActiveflowUpdated,
            record.account_id,
            data,
        );
        event.call_id = Some(record.id);
        event.activeflow_id = Some(self.links.activeflow_id);
        self.shared.bus.publish(event);
    }

    /// Carry out every command the interpreter has for us.
    async fn drain_flow(&mut self) {
        loop {
            if matches!(self.phase, Phase::Ending | Phase::Ended) {
                return;
            }
            let Some(cmd) = self.interp.as_mut().and_then(Interpreter::poll_command) else {
                return;
            };
            match cmd {
                FlowCommand::Answer => {
                    if self.phase == Phase::Early {
                        self.answer().await;
                    } else if self.phase == Phase::Confirmed && !self.flow_answered {
                        self.flow_answered = true;
                        if let Some(interp) = self.interp.as_mut() {
                            interp.handle_input(now(), FlowInput::Answered);
                        }
                    }
                }
                FlowCommand::Talk {
                    media_id,
                    text,
                    language,
                    gender,
                } => {
                    self.answer().await;
                    let request = speech::TtsRequest {
                        text,
                        language,
                        gender,
                    };
                    self.prepare(media_id, audio::Source::Speech(request));
                }
                FlowCommand::Play { media_id, urls } => {
                    self.answer().await;
                    self.prepare(media_id, audio::Source::Urls(urls));
                }
                FlowCommand::Beep { media_id } => {
                    self.answer().await;
                    self.prepare(media_id, audio::Source::Beep);
                }
                FlowCommand::StopMedia { media_id } => {
                    self.preparing.remove(&media_id);
                    if let Some(media) = &self.media {
                        media.stop();
                        media.stop_echo();
                    }
                }
                FlowCommand::Hangup {
                    reason,
                    reference_id,
                } => {
                    let reason = match reference_id {
                        Some(id) => self.reason_of(&id).await.unwrap_or(reason),
                        None => reason,
                    };
                    let (reason, status) = hangup_reason(&reason);
                    self.hangup(&reason, status).await;
                }
                FlowCommand::Mute { direction } => {
                    use flow::MuteDirection as D;
                    let (inbound, outbound) = match direction {
                        D::None => (false, false),
                        D::In => (true, false),
                        D::Out => (false, true),
                        D::Both => (true, true),
                    };
                    if let Some(media) = &self.media {
                        media.set_mute(inbound, outbound);
                    }
                }
                FlowCommand::WebhookSend {
                    request_id,
                    method,
                    uri,
                    content_type,
                    body,
                    wait,
                } => {
                    let tasks = self.links.tasks.clone();
                    let shared = self.shared.clone();
                    let call = self.record.as_ref().map(|r| (r.account_id, r.id));
                    let activeflow = self.links.activeflow_id;
                    tokio::spawn(async move {
                        let result =
                            flow_io::send_webhook(&shared.http, method, &uri, &content_type, body)
                                .await;
                        if let Some((account, call_id)) = call {
                            let (status, error) = match &result {
                                Ok(status) => (Some(*status), None),
                                Err(error) => (None, Some(error.clone())),
                            };
                            let data = serde_json::json!({
                                "uri": uri, "method": format!("{method:?}").to_uppercase(),
                                "status": status, "error": error,
                            });
                            let mut event = crate::events::Event::new(
                                crate::events::EventType::WebhookSendResult,
                                account,
                                data,
                            );
                            event.call_id = Some(call_id);
                            event.activeflow_id = Some(activeflow);
                            shared.bus.publish(event);
                        }
                        match result {
                            Ok(status) if (200..300).contains(&status) => {
                                shared.metrics.webhook(WebhookOutcome::Delivered);
                                tracing::info!(%uri, status, "webhook_send delivered");
                            }
                            Ok(status) => {
                                shared.metrics.webhook(WebhookOutcome::Refused);
                                tracing::warn!(%uri, status, "webhook_send refused");
                            }
                            Err(error) => {
                                shared.metrics.webhook(WebhookOutcome::Failed);
                                tracing::warn!(%uri, %error, "webhook_send failed");
                            }
                        }
                        if wait {
                            let _ = tasks.send(Task::Flow(FlowInput::WebhookDone { request_id }));
                        }
                    });
                }
                FlowCommand::Fetch {
                    request_id,
                    method,
                    url,
                } => {
                    let http = self.shared.http.clone();
                    let tasks = self.links.tasks.clone();
                    let activeflow = self.links.activeflow_id;
                    let reference = self.record.as_ref().map(|r| r.id);
                    tokio::spawn(async move {
                        let result =
                            flow_io::fetch_actions(&http, method, &url, activeflow, reference)
                                .await;
                        let _ = tasks.send(Task::Flow(fetched(request_id, result)));
                    });
                }
                FlowCommand::FetchFlow {
                    request_id,
                    flow_id,
                } => {
                    let store = self.shared.store.clone();
                    let tasks = self.links.tasks.clone();
                    let account = self.record.as_ref().map(|r| r.account_id);
                    tokio::spawn(async move {
                        let result = match account {
                            Some(account) => {
                                flow_io::flow_actions(store.as_ref(), account, &flow_id).await
                            }
                            None => Err("the call has no account".to_owned()),
                        };
                        let _ = tasks.send(Task::Flow(fetched(request_id, result)));
                    });
                }
                FlowCommand::Call {
                    source,
                    destinations,
                    flow_id,
                    actions,
                    chained,
                    early_execution,
                } => {
                    self.place_calls(
                        source,
                        destinations,
                        flow_id,
                        actions,
                        chained,
                        early_execution,
                    );
                }
                FlowCommand::Connect {
                    media_id,
                    source,
                    destinations,
                    early_media: _,
                    relay_reason: _,
                } => {
                    self.answer().await;
                    self.start_connect(media_id, source, destinations);
                }
                FlowCommand::Amd { media_id } => {
                    self.answer().await;
                    match &self.media {
                        Some(media) => media.start_amd(media_id),
                        None => self.reply_no_media(media_id),
                    }
                }
                FlowCommand::ExternalMediaStart {
                    media_id,
                    host,
                    format,
                    direction,
                    ..
                } => {
                    self.answer().await;
                    let reply = self
                        .start_external(media_id, &host, &format, &direction)
                        .await;
                    if let Some(interp) = self.interp.as_mut() {
                        interp.handle_input(now(), reply);
                    }
                }
                FlowCommand::ExternalMediaStop => {
                    if let Some(media) = &self.media {
                        media.stop_external();
                    }
                }
                FlowCommand::Finished { reason } => {
                    self.close_activeflow().await;
                    if reason == EndReason::Completed && self.chain_next_flow().await {
                        continue;
                    }
                    let reason = match reason {
                        EndReason::Error(e) => {
                            tracing::warn!(error = %e, "flow ended with an error");
                            "failed"
                        }
                        EndReason::ExecutionLimit => {
                            tracing::warn!("flow hit its execution limit");
                            "failed"
                        }
                        _ => "normal",
                    };
                    self.hangup(reason, 480).await;
                }
                FlowCommand::SendDigits {
                    media_id,
                    digits,
                    duration_ms,
                    interval_ms,
                } => {
                    self.answer().await;
                    match &self.media {
                        Some(media) => {
                            media.send_digits(media_id, digits, duration_ms, interval_ms)
                        }
                        None => self.reply_no_media(media_id),
                    }
                }
                FlowCommand::Echo {
                    media_id,
                    duration,
                    dtmf,
                } => {
                    self.answer().await;
                    let duration_ms =
                        duration.map(|d| d.as_millis().min(u128::from(u32::MAX)) as u32);
                    match &self.media {
                        Some(media) => media.echo(media_id, duration_ms, dtmf),
                        None => self.reply_no_media(media_id),
                    }
                }
                FlowCommand::RecordingStart {
                    media_id,
                    format,
                    end_of_silence,
                    end_of_key,
                    max_duration,
                    beep_start,
                    channels,
                    on_end_flow_id: _,
                } => {
                    self.answer().await;
                    let request = RecordingRequest {
                        format,
                        end_of_silence,
                        end_of_key,
                        max_duration,
                        beep_start,
                        channels,
                    };
                    if let Some(reply) = self.start_recording(media_id, request).await
                        && let Some(interp) = self.interp.as_mut()
                    {
                        interp.handle_input(now(), reply);
                    }
                }
                FlowCommand::RecordingStop => {
                    if let (Some(media), Some(_)) = (&self.media, &self.recording) {
                        media.stop_recording(RecordingEnd::Stopped);
                    }
                }
            }
        }
    }

    /// A media command arrived when the call has no media (it failed to start): the flow hears
    /// of it at once rather than waiting forever.
    fn reply_no_media(&mut self, media_id: u64) {
        if let Some(interp) = self.interp.as_mut() {
            interp.handle_input(
                now(),
                FlowInput::MediaFailed {
                    media_id,
                    reason: "no media".into(),
                },
            );
        }
    }

    fn prepare(&mut self, media_id: u64, source: audio::Source) {
        self.preparing.insert(media_id);
        let tx = self.prepared_tx.clone();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let result = audio::load(&shared, source).await;
            let _ = tx.send((media_id, result));
        });
    }
}

impl Call {
    /// The activeflow as it stands now.
    fn activeflow_record(&self) -> Option<store::ActiveflowRecord> {
        let interp = self.interp.as_ref()?;
        let record = self.record.as_ref()?;
        let (at0, wall0) = self.links.created;
        let wall = |at: std::time::Instant| {
            let t = wall0 + at.saturating_duration_since(at0);
            store::format_utc(time::OffsetDateTime::from(t))
        };
        let executed: Vec<serde_json::Value> = interp
            .executed_actions()
            .iter()
            .map(|e| {
                serde_json::json!({
                    "stack": e.stack,
                    "index": e.index,
                    "id": e.action_id.as_ref().map(|id| id.as_str()),
                    "type": e.action_type.as_str(),
                    "tm_execute": wall(e.at),
                })
            })
            .collect();
        let variables: serde_json::Map<String, serde_json::Value> = interp
            .variables()
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let now_text = store::utc_now();
        let end_reason = interp.end_reason().map(ToString::to_string);
        Some(store::ActiveflowRecord {
            id: self.links.activeflow_id,
            account_id: record.account_id,
            call_id: record.id,
            flow_id: self.current_flow_id(),
            status: if end_reason.is_some() {
                store::ActiveflowRecord::ENDED.into()
            } else {
                store::ActiveflowRecord::RUNNING.into()
            },
            current_action_id: interp.current_action_id().unwrap_or_default().to_owned(),
            execute_count: interp.execute_count(),
            executed_actions: serde_json::Value::Array(executed),
            variables: serde_json::Value::Object(variables),
            tm_create: store::format_utc(time::OffsetDateTime::from(wall0)),
            tm_end: end_reason.as_ref().map(|_| now_text.clone()),
            end_reason: end_reason.unwrap_or_default(),
            tm_update: now_text,
        })
    }

    /// The stored flow running now: the call's own, or the last one chained to.
    fn current_flow_id(&self) -> Option<Uuid> {
        if self.links.chain_depth == 0 {
            self.record.as_ref().and_then(|r| r.flow_id)
        } else {
            self.links.chained_flow_id
        }
    }

    /// The flow that just completed names an `on_complete_flow_id`: run it as a new activeflow on
    /// this call, with the variables so far. False (and the call ends as usual) when there is
    /// none, it cannot be loaded, or the chain is already [`MAX_ON_COMPLETE_CHAIN`] long.
    async fn chain_next_flow(&mut self) -> bool {
        let (Some(flow_id), Some(account)) = (
            self.current_flow_id(),
            self.record.as_ref().map(|r| r.account_id),
        ) else {
            return false;
        };
        let next_id = match self.shared.store.flow(account, flow_id).await {
            Ok(Some(flow)) => flow.on_complete_flow_id,
            _ => None,
        };
        let Some(next_id) = next_id else {
            return false;
        };
        if self.links.chain_depth >= MAX_ON_COMPLETE_CHAIN {
            tracing::warn!(%next_id, "on_complete_flow_id chain too long; not followed");
            return false;
        }
        let program = match self.shared.store.flow(account, next_id).await {
            Ok(Some(flow)) => match flow::compile(&flow.actions) {
                Ok(program) => program,
                Err(errors) => {
                    tracing::warn!(%next_id, ?errors, "on_complete flow does not compile");
                    return false;
                }
            },
            Ok(None) => {
                tracing::warn!(%next_id, "on_complete flow not found");
                return false;
            }
            Err(e) => {
                tracing::warn!(%next_id, error = %e, "on_complete flow not readable");
                return false;
            }
        };
        let mut variables = self
            .interp
            .as_ref()
            .map(|i| i.variables().clone())
            .unwrap_or_default();
        self.links.chain_depth += 1;
        variables.insert(
            "voipbin.activeflow.complete_count".into(),
            self.links.chain_depth.to_string(),
        );
        let previous = self.links.activeflow_id;
        self.links.activeflow_id = Uuid::new_v4();
        self.links.created = (now(), std::time::SystemTime::now());
        self.links.activeflow_closed = false;
        self.links.chained_flow_id = Some(next_id);
        if let Some(tx) = &self.links.live {
            self.shared.live.remove(previous);
            self.shared
                .live
                .insert(self.links.activeflow_id, tx.clone());
        }
        tracing::info!(%next_id, depth = self.links.chain_depth, "on_complete: next flow");
        let mut interp = new_interpreter(Arc::new(program), variables, self.shared.flow_limits);
        if self.flow_answered {
            interp.handle_input(now(), FlowInput::Answered);
        }
        interp.handle_input(now(), FlowInput::Start);
        self.interp = Some(interp);
        self.links.activeflow_saved = true;
        self.save_activeflow().await;
        true
    }

    async fn save_activeflow(&self) {
        if let Some(record) = self.activeflow_record() {
            if let Err(e) = self.shared.store.save_activeflow(&record).await {
                tracing::warn!(error = %e, "cannot save the activeflow");
            }
            self.shared.bus.activeflow_changed(&record);
        }
    }

    /// Write the activeflow's final state once (when it ends, or the call does).
    async fn close_activeflow(&mut self) {
        if !self.links.activeflow_saved || self.links.activeflow_closed {
            return;
        }
        if let Some(interp) = self.interp.as_mut()
            && !interp.is_finished()
        {
            interp.handle_input(now(), FlowInput::CallEnded);
            while interp.poll_command().is_some() {}
        }
        self.links.activeflow_closed = true;
        if let Some(interp) = &self.interp {
            let metrics = &self.shared.metrics;
            metrics.flow_run_closed(interp.end_reason(), interp.execute_count());
        }
        self.save_activeflow().await;
    }

    async fn activeflow_op(
        &mut self,
        op: crate::ActiveflowOp,
    ) -> Result<store::ActiveflowRecord, crate::ActiveflowError> {
        use crate::{ActiveflowError as E, ActiveflowOp as Op};
        match op {
            Op::Get => {}
            Op::Stop => {
                if self.interp.as_ref().is_some_and(|i| !i.is_finished()) {
                    self.drive_flow(FlowInput::Stop).await;
                }
            }
            Op::Continue { action_id } => {
                let Some(interp) = self.interp.as_mut() else {
                    return Err(E::NotFound);
                };
                interp
                    .continue_block(now(), &action_id)
                    .map_err(|e| E::Refused(e.to_string()))?;
                self.drain_flow().await;
            }
            Op::Inject { actions } => {
                let Some(interp) = self.interp.as_mut() else {
                    return Err(E::NotFound);
                };
                interp
                    .inject(now(), &actions)
                    .map_err(|e| E::Refused(e.to_string()))?;
                self.publish_progress();
                self.drain_flow().await;
                self.publish_progress();
            }
        }
        self.activeflow_record().ok_or(E::NotFound)
    }

    async fn handle_task(&mut self, task: Task) {
        match task {
            Task::Flow(input) => self.drive_flow(input).await,
            Task::Placed { call, chained } => {
                if chained {
                    if matches!(self.phase, Phase::Ending | Phase::Ended) {
                        self.shared.live.send(call, CallInput::Hangup);
                    } else {
                        self.links.chained.push(call);
                    }
                }
            }
            Task::LegPlaced { media_id, result } => {
                let Some(connect) = self
                    .links
                    .connect
                    .as_mut()
                    .filter(|c| c.media_id == media_id)
                else {
                    // The connect is over (or the call is): this leg is not wanted.
                    if let Ok(leg) = result {
                        self.shared.live.send(leg, CallInput::Hangup);
                    }
                    return;
                };
                connect.placing = connect.placing.saturating_sub(1);
                match result {
                    Ok(leg) => connect.legs.push(leg),
                    Err(reason) => {
                        tracing::info!(%reason, "connect: a destination could not be called");
                        if more_telling("failed", &connect.reason) {
                            connect.reason = "failed".into();
                        }
                        self.connect_maybe_over().await;
                    }
                }
            }
        }
    }

    /// The hangup reason of call `id` of this account (for `hangup` with `reference_id`).
    async fn reason_of(&self, id: &str) -> Option<String> {
        let id = Uuid::parse_str(id).ok()?;
        let account = self.record.as_ref()?.account_id;
        let record = self.shared.store.call(account, id).await.ok()??;
        (!record.hangup_reason.is_empty()).then_some(record.hangup_reason)
    }

    /// An `Originate` for a destination of `call`/`connect`, from this call's account; the
    /// source defaults to the number this call was made to (inbound) or from (outbound).
    fn originate_request(
        &self,
        source: Option<&flow::Address>,
        destination: &flow::Address,
        flow_id: Option<Uuid>,
        actions: serde_json::Value,
        ring_timeout: std::time::Duration,
    ) -> Option<crate::Originate> {
        let record = self.record.as_ref()?;
        let source = match source {
            Some(a) => crate::Address {
                kind: a.kind.clone(),
                target: a.target.clone(),
            },
            None if record.direction == "incoming" => crate::Address {
                kind: record.destination_type.clone(),
                target: record.destination_target.clone(),
            },
            None => crate::Address {
                kind: record.source_type.clone(),
                target: record.source_target.clone(),
            },
        };
        Some(crate::Originate {
            account_id: record.account_id,
            source,
            destination: crate::Address {
                kind: destination.kind.clone(),
                target: destination.target.clone(),
            },
            flow_id,
            actions,
            ring_timeout,
        })
    }

    /// `call`: one independent outgoing call per destination, placed off this task.
    fn place_calls(
        &mut self,
        source: Option<flow::Address>,
        destinations: Vec<flow::Address>,
        flow_id: Option<String>,
        actions: Option<serde_json::Value>,
        chained: bool,
        early_execution: bool,
    ) {
        let Some(account) = self.record.as_ref().map(|r| r.account_id) else {
            return;
        };
        let flow_uuid = flow_id.as_deref().and_then(|id| Uuid::parse_str(id).ok());
        let requests: Vec<crate::Originate> = destinations
            .iter()
            .filter_map(|d| {
                self.originate_request(
                    source.as_ref(),
                    d,
                    flow_uuid,
                    serde_json::Value::Null,
                    CALL_RING_TIMEOUT,
                )
            })
            .collect();
        let shared = self.shared.clone();
        let endpoint = self.endpoint.clone();
        let local_sip = self.local_sip;
        let tasks = self.links.tasks.clone();
        tokio::spawn(async move {
            let actions = match (actions, flow_id) {
                (Some(actions), _) => actions,
                (None, Some(id)) => {
                    match flow_io::flow_actions(shared.store.as_ref(), account, &id).await {
                        Ok(actions) => actions,
                        Err(reason) => {
                            tracing::warn!(%reason, "call: cannot load the flow");
                            return;
                        }
                    }
                }
                (None, None) => return,
            };
            for mut req in requests {
                req.actions = actions.clone();
                let target = req.destination.target.clone();
                match outbound::originate(&shared, &endpoint, local_sip, req, None, early_execution)
                    .await
                {
                    Ok(record) => {
                        let _ = tasks.send(Task::Placed {
                            call: record.id,
                            chained,
                        });
                    }
                    Err(e) => tracing::warn!(%target, error = %e, "call: cannot place the call"),
                }
            }
        });
    }

    /// `connect`: ring every destination at once (ringback meanwhile); the first to answer is
    /// bridged, the others are cancelled.
    fn start_connect(
        &mut self,
        media_id: u64,
        source: Option<flow::Address>,
        destinations: Vec<flow::Address>,
    ) {
        let (Some(media), Some(master)) = (&self.media, self.record.as_ref().map(|r| r.id)) else {
            self.reply_no_media(media_id);
            return;
        };
        media.play(RINGBACK_MEDIA_ID, ringback());
        let leg = BridgeLeg {
            master,
            worker: Some(media.worker_index()),
        };
        let requests: Vec<crate::Originate> = destinations
            .iter()
            .filter_map(|d| {
                self.originate_request(
                    source.as_ref(),
                    d,
                    None,
                    serde_json::json!([]),
                    CONNECT_RING_TIMEOUT,
                )
            })
            .collect();
        self.links.connect = Some(Connecting {
            media_id,
            legs: Vec::new(),
            placing: requests.len(),
            winner: None,
            reason: String::new(),
        });
        for req in requests {
            let shared = self.shared.clone();
            let endpoint = self.endpoint.clone();
            let local_sip = self.local_sip;
            let tasks = self.links.tasks.clone();
            tokio::spawn(async move {
                let result =
                    outbound::originate(&shared, &endpoint, local_sip, req, Some(leg), false)
                        .await
                        .map(|record| record.id)
                        .map_err(|e| e.to_string());
                let _ = tasks.send(Task::LegPlaced { media_id, result });
            });
        }
    }

    /// A `connect` leg answered: the first is bridged, any later one is hung up.
    async fn leg_answered(&mut self, leg: Uuid, key: u64, worker: usize) {
        let Some(connect) = self.links.connect.as_mut() else {
            self.shared.live.send(leg, CallInput::Hangup);
            return;
        };
        if connect.winner.is_some() || !connect.legs.contains(&leg) {
            self.shared.live.send(leg, CallInput::Hangup);
            return;
        }
        let bridged = self
            .media
            .as_ref()
            .is_some_and(|media| media.bridge(key, worker));
        if !bridged {
            tracing::warn!("connect: the answering leg's media is on another worker");
            self.shared.live.send(leg, CallInput::Hangup);
            return;
        }
        if let Some(media) = &self.media {
            media.stop();
        }
        connect.winner = Some(leg);
        tracing::info!(%leg, "connect: answered; bridged");
        for other in connect.legs.iter().filter(|l| **l != leg) {
            self.shared.live.send(*other, CallInput::Hangup);
        }
    }

    /// A `connect` leg is over: the bridge ends with it, or one fewer destination rings.
    async fn leg_ended(&mut self, leg: Uuid, answered: bool, reason: String) {
        let Some(connect) = self.links.connect.as_mut() else {
            return;
        };
        connect.legs.retain(|l| *l != leg);
        if connect.winner == Some(leg) {
            let media_id = connect.media_id;
            self.links.connect = None;
            if let Some(media) = &self.media {
                media.unbridge();
            }
            let reason = if reason.is_empty() {
                "normal".into()
            } else {
                reason
            };
            self.drive_flow(FlowInput::ConnectEnded {
                media_id,
                answered,
                reason,
            })
            .await;
            return;
        }
        if more_telling(&reason, &connect.reason) {
            connect.reason = reason;
        }
        self.connect_maybe_over().await;
    }

    /// Nobody answered and nobody rings any more: tell the flow.
    async fn connect_maybe_over(&mut self) {
        let over = self
            .links
            .connect
            .as_ref()
            .is_some_and(|c| c.winner.is_none() && c.legs.is_empty() && c.placing == 0);
        if !over {
            return;
        }
        let Some(connect) = self.links.connect.take() else {
            return;
        };
        if let Some(media) = &self.media {
            media.stop();
        }
        let reason = if connect.reason.is_empty() {
            "failed".to_owned()
        } else {
            connect.reason
        };
        tracing::info!(%reason, "connect: nobody answered");
        self.drive_flow(FlowInput::ConnectEnded {
            media_id: connect.media_id,
            answered: false,
            reason,
        })
        .await;
    }

    /// `external_media_start`: a socket of our RTP range, RTP to `host`, what comes back played.
    async fn start_external(
        &mut self,
        media_id: u64,
        host: &str,
        format: &str,
        direction: &str,
    ) -> FlowInput {
        let failed = |reason: String| FlowInput::MediaFailed { media_id, reason };
        let Some(media) = &self.media else {
            return failed("no media".into());
        };
        let dest = match host.rsplit_once(':') {
            Some((h, p)) => match p.parse::<u16>() {
                Ok(port) => outbound::lookup(h, port).await.map_err(|e| e.to_string()),
                Err(_) => Err(format!("bad port in {host:?}")),
            },
            None => Err(format!("{host:?} is not host:port")),
        };
        let dest = match dest {
            Ok(dest) => dest,
            Err(reason) => return failed(reason),
        };
        let ports = match self.shared.media.bind_rtp() {
            Ok(ports) => ports,
            Err(e) => return failed(format!("no RTP port: {e}")),
        };
        if let Err(e) = ports.rtp.set_nonblocking(true) {
            return failed(e.to_string());
        }
        media.start_external(crate::media_engine::ExternalMedia {
            socket: ports.rtp,
            dest,
            codec: if format == "alaw" {
                media::Codec::Pcma
            } else {
                media::Codec::Pcmu
            },
            send: direction != "out",
            receive: direction != "in",
            ssrc: rand_u32(),
            sequence: (rand_u32() & 0x7fff) as u16,
            timestamp: rand_u32(),
            pending: std::collections::VecDeque::with_capacity(1600),
        });
        tracing::info!(%dest, format, direction, "external media started");
        FlowInput::MediaFinished { media_id }
    }
}

/// A flow run that knows the wall clock (for `condition_datetime`).
fn new_interpreter(
    program: Arc<flow::Program>,
    variables: flow::Variables,
    limits: flow::Limits,
) -> Interpreter {
    let mut interp = Interpreter::new(program, variables, limits);
    let unix_millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    interp.set_wall_clock(now(), unix_millis);
    interp
}

/// The flow input for a fetch's outcome.
fn fetched(request_id: u64, result: Result<serde_json::Value, String>) -> FlowInput {
    match result {
        Ok(actions) => FlowInput::Fetched {
            request_id,
            actions,
        },
        Err(reason) => {
            tracing::warn!(%reason, "fetch failed");
            FlowInput::FetchFailed { request_id, reason }
        }
    }
}

/// Which of two leg hangup reasons says more about why `connect` failed.
fn more_telling(a: &str, b: &str) -> bool {
    let rank = |r: &str| match r {
        "busy" => 4,
        "noanswer" => 3,
        "failed" => 2,
        "" => 0,
        _ => 1,
    };
    rank(a) > rank(b)
}

/// The shared ringback played while `connect` rings (60 s, made once).
fn ringback() -> Arc<[i16]> {
    static RINGBACK: std::sync::OnceLock<Arc<[i16]>> = std::sync::OnceLock::new();
    RINGBACK
        .get_or_init(|| media::tone::ringback(10, 4000).into())
        .clone()
}

/// Media id of the beep that starts a recording (no flow media id is this large).
const BEEP_MEDIA_ID: u64 = u64::MAX;
/// How long a finished call waits for its recording to come back from the media worker.
const RECORDING_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A recording's file is final: its record says so (store, then events). False when the store
/// could not be updated.
async fn finish_record(shared: &Shared, mut record: store::RecordingRecord) -> bool {
    let now_text = store::utc_now();
    record.tm_end = Some(now_text.clone());
    record.tm_update = now_text;
    tracing::info!(recording = %record.id, reason = %record.end_reason, duration_ms = record.duration_ms, format = %record.format, "recording ended");
    let stored = shared.store.update_recording(&record).await;
    if let Err(e) = &stored {
        tracing::error!(error = %e, "could not update the recording");
    }
    shared.bus.recording_changed(&record);
    stored.is_ok()
}

/// A recording in progress.
struct ActiveRecording {
    id: Uuid,
    record: store::RecordingRecord,
    end_of_key: Option<RecordingEndKey>,
}

/// The options of a `recording_start`.
struct RecordingRequest {
    format: RecordingFormat,
    end_of_silence: Option<std::time::Duration>,
    end_of_key: Option<RecordingEndKey>,
    max_duration: Option<std::time::Duration>,
    beep_start: bool,
    channels: u16,
}

/// Whether the peer should be sending us RTP under this negotiation (not on hold).
fn expects_media(n: &sdp::Negotiated) -> bool {
    matches!(
        n.direction,
        sdp::Direction::SendRecv | sdp::Direction::RecvOnly
    ) && usable(n.remote_rtp).is_some()
}

/// The call record's hangup reason and who ended it, for a final failure to our INVITE.
fn failure_reason(status: u16) -> (&'static str, &'static str) {
    match status {
        486 | 600 => ("busy", "remote"),
        603 => ("busy", "remote"),
        404 | 484 | 604 => ("failed", "remote"),
        408 | 480 => ("noanswer", "remote"),
        487 => ("noanswer", "local"),
        _ => ("failed", "remote"),
    }
}

/// The call record's reason and the SIP status for a hangup before answer.
/// The reason a flow's `hangup` records, and the status it answers an unanswered call with.
/// VoIPBIN's reasons keep their meaning; any other short word (`amd_machine`, a relayed
/// reason) is kept as it is; anything else is `normal`.
fn hangup_reason(reason: &str) -> (String, u16) {
    let status = match reason {
        "busy" => 486,
        "noanswer" => 480,
        "failed" => 500,
        "cancel" => 487,
        _ => 603,
    };
    let word = !reason.is_empty()
        && reason.len() <= 32
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if word {
        (reason.to_owned(), status)
    } else {
        ("normal".to_owned(), 603)
    }
}

fn has_sdp(headers: &sip::Headers, body: &[u8]) -> bool {
    !body.is_empty()
        && headers
            .get("Content-Type")
            .is_none_or(|ct| ct.to_ascii_lowercase().starts_with("application/sdp"))
}

/// `0.0.0.0` (hold) and port 0 are not places to send media.
fn usable(addr: SocketAddr) -> Option<SocketAddr> {
    (!addr.ip().is_unspecified() && addr.port() != 0).then_some(addr)
}

pub(crate) fn rand_u32() -> u32 {
    let bytes = Uuid::new_v4();
    let b = bytes.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn fmt_host(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// A DTMF key from a SIP INFO body: `application/dtmf-relay` (`Signal=5`) or `application/dtmf` (`5`).
fn dtmf_from_info(request: &Request) -> Option<char> {
    let ct = request.content_type()?.to_ascii_lowercase();
    let body = std::str::from_utf8(&request.body).ok()?;
    let signal = if ct.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| v.trim().to_owned())
        })?
    } else if ct.starts_with("application/dtmf") {
        body.trim().to_owned()
    } else {
        return None;
    };
    let digit = match signal.as_str() {
        "10" => '*',
        "11" => '#',
        s if s.len() == 1 => s.chars().next()?.to_ascii_uppercase(),
        _ => return None,
    };
    matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D').then_some(digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sip::Message;

    fn info(ct: &str, body: &str) -> Request {
        let text = format!(
            "INFO sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n\
             From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>;tag=2\r\nCall-ID: x\r\n\
             CSeq: 2 INFO\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn info_dtmf_relay_and_plain_dtmf_give_digits() {
        assert_eq!(
            dtmf_from_info(&info(
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n"
            )),
            Some('5')
        );
        assert_eq!(
            dtmf_from_info(&info("application/dtmf-relay", "Signal= 11\r\n")),
            Some('#')
        );
        assert_eq!(dtmf_from_info(&info("application/dtmf", "*")), Some('*'));
        assert_eq!(
            dtmf_from_info(&info("application/dtmf-relay", "Signal=Z\r\n")),
            None
        );
        assert_eq!(dtmf_from_info(&info("text/plain", "5")), None);
    }

    #[test]
    fn address_types() {
        assert_eq!(address_type("+15550100"), "tel");
        assert_eq!(address_type("15550100"), "tel");
        assert_eq!(address_type("alice"), "sip");
        assert_eq!(address_type(""), "sip");
    }
}
