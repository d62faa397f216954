//! One task per call: it owns the call's dialog, its media session handle and its flow
//! interpreter. Everything else talks to it by message.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use flow::{Command as FlowCommand, EndReason, Input as FlowInput, Interpreter};
use media::{MediaEvent, MediaSession, SessionConfig};
use sip::{Dialog, Method, Peer, Request, Response, ServerTxId, Transport, Uri};
use tokio::sync::mpsc;
use tracing::Instrument;
use uuid::Uuid;

use crate::endpoint::{ALLOW, CallKey, Command, EndpointHandle};
use crate::media_engine::MediaHandle;
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
    /// A response to a request we sent (our BYE).
    Response(Response),
    /// A request we sent got no final response.
    RequestTimeout,
    /// The platform is stopping: hang up.
    Shutdown,
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
    invite_tx: ServerTxId,
    peer: Peer,
    local_sip: SocketAddr,
    phase: Phase,
    dialog: Option<Dialog>,
    record: Option<store::CallRecord>,
    /// The local RTP socket until media is attached at answer time.
    rtp_socket: Option<std::net::UdpSocket>,
    local_rtp: SocketAddr,
    negotiated: Option<sdp::Negotiated>,
    local_sdp: Option<String>,
    sdp_version: u64,
    media: Option<MediaHandle>,
    media_tx: mpsc::UnboundedSender<MediaEvent>,
    interp: Option<Interpreter>,
    /// Media ids whose audio is being prepared (TTS, downloads); stale ones are dropped.
    preparing: HashSet<u64>,
    prepared_tx: mpsc::UnboundedSender<Prepared>,
    flow_answered: bool,
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
        mut inbox,
    } = incoming;
    let local_sip = local_sip.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5060)));
    let (media_tx, mut media_rx) = mpsc::unbounded_channel();
    let (prepared_tx, mut prepared_rx) = mpsc::unbounded_channel();
    let mut call = Call {
        shared,
        endpoint,
        key,
        invite,
        invite_tx,
        peer,
        local_sip,
        phase: Phase::Early,
        dialog: None,
        record: None,
        rtp_socket: None,
        local_rtp: local_sip,
        negotiated: None,
        local_sdp: None,
        sdp_version: 1,
        media: None,
        media_tx,
        interp: None,
        preparing: HashSet::new(),
        prepared_tx,
        flow_answered: false,
    };
    if !call.setup().await {
        return;
    }
    call.drive_flow(FlowInput::Start).await;
    while call.phase != Phase::Ended {
        let timeout = call
            .interp
            .as_ref()
            .and_then(Interpreter::poll_timeout)
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            Some(input) = inbox.recv() => call.handle_input(input).await,
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

    /// A response to the INVITE, with our To-tag.
    fn invite_response(&self, status: u16) -> Response {
        let mut response = Response::for_request(&self.invite, status);
        response.set_to_tag(&self.key.local_tag);
        response
    }

    fn reject(&mut self, status: u16) {
        let response = self.invite_response(status);
        self.respond(self.invite_tx, response);
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
        let session_id = u64::from(
            self.key
                .local_tag
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))),
        );
        if has_sdp(&self.invite.headers, &self.invite.body) {
            match sdp::answer_offer(
                &self.invite.body,
                &self.shared.codecs,
                self.local_rtp,
                session_id,
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
                    self.respond(self.invite_tx, response);
                    self.phase = Phase::Ended;
                    return false;
                }
            }
        } else {
            self.local_sdp = Some(sdp::create_offer(
                self.local_rtp,
                &self.shared.codecs,
                session_id,
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

        let ringing = self.invite_response(180);
        self.respond(self.invite_tx, ringing);

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
        self.respond(self.invite_tx, response);
        self.phase = Phase::Answering;
        self.attach_media();
        if let Some(record) = self.record.as_mut() {
            record.status = "progressing".into();
            record.tm_progressing = Some(store::utc_now());
        }
        self.save().await;
    }

    fn attach_media(&mut self) {
        let Some(socket) = self.rtp_socket.take() else {
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
        });
        match self
            .shared
            .media
            .attach(socket, session, self.media_tx.clone())
        {
            Ok(handle) => self.media = Some(handle),
            Err(e) => tracing::error!(error = %e, "could not start media"),
        }
    }

    /// Hang up from our side: BYE when answered, a final error response when not.
    async fn hangup(&mut self, reason: &str, status_if_early: u16) {
        match self.phase {
            Phase::Early => {
                let response = self.invite_response(status_if_early);
                self.respond(self.invite_tx, response);
                self.phase = Phase::Ended;
            }
            Phase::Answering | Phase::Confirmed => self.send_bye(),
            Phase::Ending | Phase::Ended => return,
        }
        self.media = None;
        self.set_hangup(reason, "local").await;
        self.finish_flow();
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

    /// Where in-dialog requests go: the remote target when it is an IP literal, else where the
    /// INVITE came from (the usual NAT-friendly choice).
    fn target_peer(&self) -> Peer {
        let target = self.dialog.as_ref().map(Dialog::remote_target);
        let addr = target.and_then(|uri| {
            let ip: IpAddr = uri
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()?;
            Some(SocketAddr::new(ip, uri.port().unwrap_or(5060)))
        });
        match addr {
            Some(addr) if self.peer.transport == Transport::Udp => Peer {
                transport: Transport::Udp,
                addr,
                conn: None,
            },
            _ => self.peer,
        }
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
                    self.respond(self.invite_tx, response);
                    self.phase = Phase::Ended;
                    self.set_hangup("cancel", "remote").await;
                    self.finish_flow();
                }
            }
            CallInput::AckTimeout => {
                tracing::info!("no ACK for our 200; hanging up");
                self.send_bye();
                self.media = None;
                self.set_hangup("timeout", "local").await;
                self.finish_flow();
            }
            CallInput::Response(response) => {
                if self.phase == Phase::Ending && response.status >= 200 {
                    self.phase = Phase::Ended;
                }
            }
            CallInput::RequestTimeout => {
                if self.phase == Phase::Ending {
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
            Method::Invite => self.handle_reinvite(tx, &request),
            Method::Info => {
                let digit = dtmf_from_info(&request);
                self.respond(tx, Response::for_request(&request, 200));
                if let Some(d) = digit {
                    self.drive_flow(FlowInput::Digit(d)).await;
                }
            }
            Method::Options | Method::Update | Method::Message => {
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

    /// Re-INVITE: answer a new offer (hold, a moved media address) or, without one, repeat ours.
    fn handle_reinvite(&mut self, tx: ServerTxId, request: &Request) {
        if !matches!(self.phase, Phase::Answering | Phase::Confirmed) {
            self.respond(tx, Response::for_request(request, 491));
            return;
        }
        let session_id = u64::from(self.local_rtp.port());
        self.sdp_version += 1;
        if has_sdp(&request.headers, &request.body) {
            match sdp::answer_offer(
                &request.body,
                &self.shared.codecs,
                self.local_rtp,
                session_id,
            ) {
                Ok((n, answer)) => {
                    if let (Some(media), Some(addr)) = (&self.media, usable(n.remote_rtp)) {
                        media.set_remote(addr);
                    }
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
        if let Some(sdp) = &self.local_sdp {
            response.headers.push("Content-Type", "application/sdp");
            response.body = sdp.clone().into_bytes();
        }
        self.respond(tx, response);
    }

    async fn handle_media(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::Dtmf { digit, .. } => {
                tracing::debug!(%digit, "dtmf");
                self.drive_flow(FlowInput::Digit(digit)).await;
            }
            MediaEvent::PlaybackFinished { id } => {
                self.drive_flow(FlowInput::MediaFinished { media_id: id })
                    .await;
            }
            MediaEvent::PlaybackStopped { .. } => {}
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
            }
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

fn rand_u32() -> u32 {
    let bytes = Uuid::new_v4();
    let b = bytes.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn fmt_host(ip: IpAddr, port: u16) -> String {
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
