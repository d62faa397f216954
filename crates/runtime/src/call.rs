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
use crate::recording::{self, Recorder, RecordingEnd, RecordingSpec};
use crate::{Shared, audio, now};

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
    /// Hang up (asked through the API).
    Hangup,
}

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
    let mut call = Call {
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
    let call_id = call.record.as_ref().map(|r| r.id);
    let (live_tx, inbox) = live_inbox(inbox);
    if let Some(id) = call_id {
        call.shared.live.insert(id, live_tx);
    }
    call.drive_flow(FlowInput::Start).await;
    call.run(inbox, media_rx, prepared_rx).await;
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
            } = outgoing;
            let (media_tx, media_rx) = mpsc::unbounded_channel();
            let (prepared_tx, prepared_rx) = mpsc::unbounded_channel();
            let limits = shared.flow_limits;
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
                interp: Some(Interpreter::new(program, variables, limits)),
                preparing: HashSet::new(),
                prepared_tx,
                flow_answered: false,
                session: None,
                recording: None,
                closing: Vec::new(),
                new_recording: None,
                beep_then_record: None,
            };
            let (live_tx, inbox) = live_inbox(inbox);
            call.shared.live.insert(call_id, live_tx);
            call.endpoint.send(Command::SendInvite {
                call: call.key.clone(),
                peer: call.peer,
                request: Box::new(call.invite.clone()),
            });
            call.run(inbox, media_rx, prepared_rx).await;
            call.shared.live.remove(call_id);
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
            self.reject(500);
            return false;
        }
        let _ = self.shared.events.send(crate::CallUpdate {
            record: record.clone(),
        });
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
        self.interp = Some(Interpreter::new(program, vars, self.shared.flow_limits));
        true
    }

    async fn save(&mut self) {
        if let Some(record) = self.record.as_mut() {
            record.tm_update = store::utc_now();
            if let Err(e) = self.shared.store.update_call(record).await {
                tracing::error!(error = %e, "could not update the call record");
            }
            let _ = self.shared.events.send(crate::CallUpdate {
                record: record.clone(),
            });
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
            tracing::info!(reason, by, "call ended");
        }
        self.save().await;
    }

    /// Send the 200 with our SDP and start media.
    async fn answer(&mut self) {
        if self.phase != Phase::Early {
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
        match self
            .shared
            .media
            .attach(ports, session, self.media_tx.clone())
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
        self.flow_answered = true;
        if let Some(interp) = self.interp.as_mut() {
            interp.handle_input(now(), FlowInput::Start);
            interp.handle_input(now(), FlowInput::Answered);
        }
        self.drain_flow().await;
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
        };
        match event {
            MediaEvent::Dtmf { digit, source, .. } => {
                tracing::debug!(%digit, ?source, "dtmf");
                self.handle_digit(digit).await;
            }
            MediaEvent::PlaybackFinished { id: BEEP_MEDIA_ID }
            | MediaEvent::PlaybackStopped { id: BEEP_MEDIA_ID } => self.beep_done().await,
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
        let spec = RecordingSpec {
            path: recording::path_for(&self.shared.data_dir, id),
            channels: 2,
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
            format: "wav".to_owned(),
            channels: 2,
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
        if request.format != RecordingFormat::Wav {
            tracing::info!(format = ?request.format, "recording as WAV: no encoder for the format");
        }
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
        let Some(mut active) = active else {
            return;
        };
        let record = &mut active.record;
        let now_text = store::utc_now();
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
        record.tm_end = Some(now_text.clone());
        record.tm_update = now_text;
        tracing::info!(recording = %id, reason = %record.end_reason, duration_ms = record.duration_ms, "recording ended");
        if let Err(e) = self.shared.store.update_recording(record).await {
            tracing::error!(error = %e, "could not update the recording");
        }
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
                Ok(Some(EngineEvent::Media(_))) => {}
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
        self.drain_flow().await;
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
                FlowCommand::Hangup { reason } => {
                    let (reason, status) = hangup_reason(&reason);
                    self.hangup(reason, status).await;
                }
                FlowCommand::Finished { reason } => {
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
                    on_end_flow_id: _,
                } => {
                    self.answer().await;
                    let request = RecordingRequest {
                        format,
                        end_of_silence,
                        end_of_key,
                        max_duration,
                        beep_start,
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

/// Media id of the beep that starts a recording (no flow media id is this large).
const BEEP_MEDIA_ID: u64 = u64::MAX;
/// How long a finished call waits for its recording to come back from the media worker.
const RECORDING_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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
fn hangup_reason(reason: &str) -> (&'static str, u16) {
    match reason {
        "busy" => ("busy", 486),
        "noanswer" => ("noanswer", 480),
        "failed" => ("failed", 500),
        "cancel" => ("cancel", 487),
        _ => ("normal", 603),
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
