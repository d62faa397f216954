//! The SIP endpoint: owns the signalling sockets (UDP, and TCP on the same port) and the sans-IO
//! transaction layer, answers what needs no call (OPTIONS, 481, 501, ...), and hands everything of a
//! call to the task that owns it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use sip::{
    ClientTxId, Event, Message, Method, Peer, Request, Response, ServerTxId, TransactionLayer,
    Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use crate::call::{self, CallInput};
use crate::{Shared, now};

/// Methods we answer; sent in `Allow`.
pub(crate) const ALLOW: &str =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, REGISTER";
/// Extensions we support; sent in `Supported`.
pub(crate) const SUPPORTED: &str = "100rel";
/// TCP connections open at once at most, and from one address at most; more are refused.
const MAX_TCP_CONNECTIONS: usize = 4096;
const MAX_TCP_PER_ADDRESS: usize = 128;
/// After an accept error (out of file descriptors), stop accepting for this long rather than
/// spinning on the error.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);
/// A TCP connection that never sends a whole message is closed after this long ...
const TCP_FIRST_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// ... and any connection after this long without traffic either way.
const TCP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
/// Largest SIP message accepted from a datagram or a stream.
const MAX_MESSAGE: usize = 65_535;

/// What call tasks (and the runtime) ask of the endpoint.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a response on a server transaction.
    Respond {
        tx: ServerTxId,
        response: Box<Response>,
    },
    /// Send a provisional response reliably (RFC 3262); falls back to unreliable if refused.
    RespondReliably {
        tx: ServerTxId,
        response: Box<Response>,
    },
    /// Send a request in a call's dialog; the response is routed back to `call`.
    Send {
        call: CallKey,
        peer: Peer,
        request: Box<Request>,
    },
    /// Route a new outbound call's dialog (Call-ID, our From tag) to its task.
    Register {
        call: CallKey,
        inbox: mpsc::UnboundedSender<CallInput>,
    },
    /// Send an outbound call's INVITE (an INVITE client transaction).
    SendInvite {
        call: CallKey,
        peer: Peer,
        request: Box<Request>,
    },
    /// CANCEL the outbound call's INVITE (sent once a provisional response came, §9.1).
    CancelInvite { call: CallKey },
    /// Send a request outside any call (keep-alives, trunk registrations); its final response,
    /// or its timeout, goes to `reply` with `token`.
    Request {
        peer: Peer,
        request: Box<Request>,
        reply: mpsc::UnboundedSender<(u64, ClientReply)>,
        token: u64,
    },
    /// Send (or resend) the ACK for a 2xx to our INVITE.
    SendAck { peer: Peer, ack: Box<Request> },
    /// The call is over: forget its routes.
    Forget { call: CallKey },
    /// Hang up every call, then reply when they are all gone.
    Shutdown { done: oneshot::Sender<()> },
}

/// How the endpoint knows a call: the Call-ID and our tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CallKey {
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
}

/// The outcome of a request sent with [`Command::Request`].
#[derive(Debug)]
pub(crate) enum ClientReply {
    /// Its final response.
    Final(Box<Response>),
    /// No final response came (Timer F).
    Timeout,
}

/// A cheap handle for sending commands to the endpoint.
#[derive(Debug, Clone)]
pub(crate) struct EndpointHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl EndpointHandle {
    pub(crate) fn send(&self, cmd: Command) {
        let _ = self.tx.send(cmd);
    }

    /// Whether the endpoint task has stopped.
    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

struct TcpIn {
    conn: u64,
    addr: SocketAddr,
    data: Option<Vec<u8>>, // None: the connection closed
}

struct CallRoute {
    inbox: mpsc::UnboundedSender<CallInput>,
    /// The INVITE server transaction of an inbound call.
    invite_tx: Option<ServerTxId>,
    /// The INVITE client transaction of an outbound call.
    invite_ctx: Option<ClientTxId>,
}

struct Endpoint {
    shared: Arc<Shared>,
    layer: TransactionLayer,
    udp: Arc<UdpSocket>,
    tcp_writers: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    /// Open TCP connections per remote address, and each connection's address.
    tcp_per_ip: HashMap<std::net::IpAddr, usize>,
    tcp_conn_ip: HashMap<u64, std::net::IpAddr>,
    calls: HashMap<CallKey, CallRoute>,
    by_invite: HashMap<ServerTxId, CallKey>,
    by_client_tx: HashMap<ClientTxId, CallKey>,
    /// Requests sent for tasks other than calls, and where their outcome goes.
    replies: HashMap<ClientTxId, (mpsc::UnboundedSender<(u64, ClientReply)>, u64)>,
    handle: EndpointHandle,
    tcp_in: mpsc::UnboundedSender<TcpIn>,
    next_conn: u64,
    rng: u64,
    shutdown: Option<oneshot::Sender<()>>,
}

/// Bind the signalling sockets and start the endpoint task.
pub(crate) async fn start(
    shared: Arc<Shared>,
    listen: SocketAddr,
) -> std::io::Result<(EndpointHandle, SocketAddr, tokio::task::JoinHandle<()>)> {
    let (udp, tcp) = bind_pair(listen).await?;
    let udp = Arc::new(udp);
    let local = udp.local_addr()?;
    let sent_by = format!("{}:{}", shared.advertised_ip(local.ip()), local.port());
    let mut layer = TransactionLayer::new(sip::Config {
        t1: std::time::Duration::from_millis(500),
        t2: std::time::Duration::from_secs(4),
        t4: std::time::Duration::from_secs(5),
        sent_by_udp: sent_by.clone(),
        sent_by_tcp: sent_by,
        seed: seed(),
        max_transactions: 200_000,
    });
    // RFC 3262 §3 allows any first RSeq from 1; peers' test suites (SIPp's prack scenario)
    // hard-code 1.
    layer.set_rseq_start(Some(1));
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = EndpointHandle { tx };
    let (tcp_in, tcp_rx) = mpsc::unbounded_channel();
    let endpoint = Endpoint {
        shared,
        layer,
        udp,
        tcp_writers: HashMap::new(),
        tcp_per_ip: HashMap::new(),
        tcp_conn_ip: HashMap::new(),
        calls: HashMap::new(),
        by_invite: HashMap::new(),
        by_client_tx: HashMap::new(),
        replies: HashMap::new(),
        handle: handle.clone(),
        tcp_in,
        next_conn: 1,
        rng: seed() | 1,
        shutdown: None,
    };
    let task = tokio::spawn(endpoint.run(rx, tcp_rx, tcp));
    Ok((handle, local, task))
}

/// UDP and TCP on the same port. With port 0 the UDP bind picks the port, and TCP on that
/// number may be taken (by anything, even an outgoing connection's ephemeral port): then try
/// another port, a bounded number of times.
async fn bind_pair(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let mut last_error = None;
    for _ in 0..if listen.port() == 0 { 20 } else { 1 } {
        let udp = UdpSocket::bind(listen).await?;
        match TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
    u64::from_le_bytes(bytes)
}

impl Endpoint {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut tcp_rx: mpsc::UnboundedReceiver<TcpIn>,
        tcp: TcpListener,
    ) {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        let mut accept_resume: Option<tokio::time::Instant> = None;
        loop {
            let timeout = self
                .layer
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                received = self.udp.recv_from(&mut buf) => match received {
                    Ok((n, from)) => {
                        let peer = Peer { transport: Transport::Udp, addr: from, conn: None };
                        if let Some(data) = buf.get(..n).filter(|_| n <= MAX_MESSAGE) {
                            let data = data.to_vec();
                            self.handle_bytes(peer, &data);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "udp receive failed"),
                },
                accepted = tcp.accept(), if accept_resume.is_none() => match accepted {
                    Ok((stream, addr)) => {
                        let from_addr = self.tcp_per_ip.get(&addr.ip()).copied().unwrap_or(0);
                        if self.tcp_writers.len() >= MAX_TCP_CONNECTIONS || from_addr >= MAX_TCP_PER_ADDRESS {
                            tracing::debug!(%addr, "too many TCP connections; refused");
                            drop(stream);
                        } else {
                            let (conn, wrx) = self.new_tcp_conn(addr);
                            let to_endpoint = self.tcp_in.clone();
                            tokio::spawn(tcp_connection(stream, conn, addr, to_endpoint, wrx));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TCP accept failed; pausing accepts");
                        accept_resume = Some(tokio::time::Instant::now() + ACCEPT_BACKOFF);
                    }
                },
                () = sleep_until(accept_resume) => accept_resume = None,
                Some(input) = tcp_rx.recv() => match input.data {
                    Some(data) => {
                        let peer = Peer { transport: Transport::Tcp, addr: input.addr, conn: Some(input.conn) };
                        self.handle_bytes(peer, &data);
                    }
                    None => self.forget_tcp_conn(input.conn),
                },
                Some(cmd) = commands.recv() => self.handle_command(cmd),
                () = sleep_until(timeout) => self.layer.handle_timeout(now()),
            }
            self.flush().await;
            if self.calls.is_empty()
                && let Some(done) = self.shutdown.take()
            {
                let _ = done.send(());
            }
        }
    }

    fn handle_bytes(&mut self, peer: Peer, data: &[u8]) {
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return; // keep-alive
        }
        match Message::parse(data) {
            // The layer validates requests itself and answers 400 to broken ones.
            Ok(msg) => self.layer.handle_message(now(), peer, msg),
            Err(err) => {
                tracing::debug!(error = %err, from = %peer.addr, "unparsable SIP message");
                if let Some(resp) = sip::bad_request_response(data, &err) {
                    self.layer.send_stateless(peer, Message::Response(resp));
                }
            }
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Respond { tx, response } => self.layer.respond(now(), tx, *response),
            Command::RespondReliably { tx, response } => {
                let response = *response;
                if let Err(e) = self.layer.respond_reliably(now(), tx, response.clone()) {
                    tracing::debug!(error = %e, "sending the provisional unreliably");
                    self.layer.respond(now(), tx, response);
                }
            }
            Command::Send {
                call,
                peer,
                request,
            } => {
                let tx = self.layer.send_request(now(), peer, *request);
                self.by_client_tx.insert(tx, call);
            }
            Command::Register { call, inbox } => {
                let route = CallRoute {
                    inbox,
                    invite_tx: None,
                    invite_ctx: None,
                };
                self.calls.insert(call, route);
            }
            Command::SendInvite {
                call,
                peer,
                request,
            } => {
                let tx = self.layer.send_request(now(), peer, *request);
                self.by_client_tx.insert(tx, call.clone());
                if let Some(route) = self.calls.get_mut(&call) {
                    route.invite_ctx = Some(tx);
                }
            }
            Command::CancelInvite { call } => {
                if let Some(tx) = self.calls.get(&call).and_then(|r| r.invite_ctx)
                    && let Some(cancel) = self.layer.cancel(now(), tx)
                {
                    self.by_client_tx.insert(cancel, call);
                }
            }
            Command::SendAck { peer, mut ack } => self.layer.send_ack(peer, &mut ack),
            Command::Request {
                peer,
                request,
                reply,
                token,
            } => {
                let tx = self.layer.send_request(now(), peer, *request);
                self.replies.insert(tx, (reply, token));
            }
            Command::Forget { call } => {
                if let Some(tx) = self.calls.remove(&call).and_then(|r| r.invite_tx) {
                    self.by_invite.remove(&tx);
                }
                self.by_client_tx.retain(|_, key| *key != call);
            }
            Command::Shutdown { done } => {
                for route in self.calls.values() {
                    let _ = route.inbox.send(CallInput::Shutdown);
                }
                self.shutdown = Some(done);
            }
        }
    }

    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.layer.poll_transmit() {
                progressed = true;
                self.transmit(transmit).await;
            }
            while let Some(event) = self.layer.poll_event() {
                progressed = true;
                self.handle_event(event);
            }
            if !progressed {
                break;
            }
        }
    }

    async fn transmit(&mut self, transmit: sip::Transmit) {
        match transmit.peer.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.send_to(&transmit.data, transmit.peer.addr).await {
                    tracing::debug!(error = %e, to = %transmit.peer.addr, "udp send failed");
                }
            }
            Transport::Tcp => {
                let writer = transmit.peer.conn.and_then(|c| self.tcp_writers.get(&c));
                match writer {
                    Some(w) => {
                        let _ = w.send(transmit.data);
                    }
                    None => {
                        // No open connection to that peer: open one (RFC 3261 §18.2.2).
                        let (conn, wrx) = self.new_tcp_conn(transmit.peer.addr);
                        if let Some(w) = self.tcp_writers.get(&conn) {
                            let _ = w.send(transmit.data);
                        }
                        let addr = transmit.peer.addr;
                        let to_endpoint = self.tcp_in.clone();
                        tokio::spawn(async move {
                            match TcpStream::connect(addr).await {
                                Ok(stream) => {
                                    tcp_connection(stream, conn, addr, to_endpoint, wrx).await
                                }
                                Err(e) => {
                                    tracing::debug!(error = %e, %addr, "TCP connect failed");
                                    let _ = to_endpoint.send(TcpIn {
                                        conn,
                                        addr,
                                        data: None,
                                    });
                                }
                            }
                        });
                    }
                }
            }
        }
    }

    /// Register a new TCP connection id and its writer queue.
    fn new_tcp_conn(&mut self, addr: SocketAddr) -> (u64, mpsc::UnboundedReceiver<Vec<u8>>) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let (wtx, wrx) = mpsc::unbounded_channel();
        self.tcp_writers.insert(conn, wtx);
        *self.tcp_per_ip.entry(addr.ip()).or_insert(0) += 1;
        self.tcp_conn_ip.insert(conn, addr.ip());
        (conn, wrx)
    }

    /// A TCP connection closed: forget its writer and its count.
    fn forget_tcp_conn(&mut self, conn: u64) {
        self.tcp_writers.remove(&conn);
        if let Some(ip) = self.tcp_conn_ip.remove(&conn)
            && let Some(count) = self.tcp_per_ip.get_mut(&ip)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.tcp_per_ip.remove(&ip);
            }
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Request { tx, request, peer } => self.handle_request(tx, request, peer),
            Event::Ack { request, .. } => {
                if let Some(route) = self.route_of(&request) {
                    let _ = route.inbox.send(CallInput::Ack(request));
                }
            }
            Event::Cancelled { invite_tx, .. } => {
                if let Some(route) = self
                    .by_invite
                    .get(&invite_tx)
                    .and_then(|k| self.calls.get(k))
                {
                    let _ = route.inbox.send(CallInput::Cancelled);
                }
            }
            Event::AckTimeout { tx } => {
                if let Some(route) = self.by_invite.get(&tx).and_then(|k| self.calls.get(k)) {
                    let _ = route.inbox.send(CallInput::AckTimeout);
                }
            }
            Event::Response { tx, response } if self.replies.contains_key(&tx) => {
                if response.status >= 200
                    && let Some((reply, token)) = self.replies.remove(&tx)
                {
                    let _ = reply.send((token, ClientReply::Final(Box::new(response))));
                }
            }
            Event::ClientTimeout { tx } if self.replies.contains_key(&tx) => {
                if let Some((reply, token)) = self.replies.remove(&tx) {
                    let _ = reply.send((token, ClientReply::Timeout));
                }
            }
            Event::Response { tx, response } => {
                // An INVITE's transaction forwards forked and retransmitted 2xx until Timer M:
                // keep its route until the call is forgotten.
                let done = response.status >= 200
                    && response.cseq().is_none_or(|c| c.method != Method::Invite);
                if let Some(route) = self.by_client_tx.get(&tx).and_then(|k| self.calls.get(k)) {
                    let _ = route.inbox.send(CallInput::Response(response));
                }
                if done {
                    self.by_client_tx.remove(&tx);
                }
            }
            // A PRACK for one of our reliable 180s (the layer matched it by RAck): acknowledge.
            // We put no SDP in provisionals, so a PRACK carries no offer/answer for the call.
            Event::Prack { tx, request, .. } => {
                self.layer
                    .respond(now(), tx, Response::for_request(&request, 200));
            }
            Event::ReliableTimeout { tx } => {
                if let Some(route) = self.by_invite.get(&tx).and_then(|k| self.calls.get(k)) {
                    let _ = route.inbox.send(CallInput::ReliableTimeout);
                }
            }
            Event::ClientTimeout { tx } => {
                if let Some(route) = self
                    .by_client_tx
                    .remove(&tx)
                    .and_then(|k| self.calls.get(&k))
                {
                    let _ = route.inbox.send(CallInput::RequestTimeout);
                }
            }
        }
    }

    fn route_of(&self, request: &Request) -> Option<&CallRoute> {
        let id = sip::uas_dialog_id(request)?;
        self.calls.get(&CallKey {
            call_id: id.call_id,
            local_tag: id.local_tag,
        })
    }

    /// Answer a request no call owns. A final response carries a To tag (§8.2.6.2).
    fn respond(&mut self, tx: ServerTxId, request: &Request, status: u16) {
        let mut response = Response::for_request(request, status);
        if status >= 200 {
            let tag = self.new_tag();
            response.set_to_tag(&tag);
        }
        if status == 405 || status == 501 || request.method == Method::Options {
            response.headers.push("Allow", ALLOW);
        }
        self.layer.respond(now(), tx, response);
    }

    fn handle_request(&mut self, tx: ServerTxId, request: Request, peer: Peer) {
        let in_dialog = request
            .to()
            .and_then(|to| to.tag().map(str::to_owned))
            .is_some();
        if in_dialog {
            match self.route_of(&request) {
                Some(route) => {
                    let _ = route.inbox.send(CallInput::Request { tx, request });
                }
                None => {
                    let status = if matches!(request.method, Method::Extension(_)) {
                        501
                    } else {
                        481
                    };
                    self.respond(tx, &request, status);
                }
            }
            return;
        }
        if request.max_forwards() == Some(0) && request.method != Method::Options {
            self.respond(tx, &request, 483);
            return;
        }
        match request.method {
            Method::Invite => {
                if self.shutdown.is_some() {
                    self.respond(tx, &request, 503);
                    return;
                }
                self.new_call(tx, request, peer);
            }
            Method::Options => {
                let mut response = Response::for_request(&request, 200);
                let tag = self.new_tag();
                response.set_to_tag(&tag);
                response.headers.push("Allow", ALLOW);
                response.headers.push("Accept", "application/sdp");
                response.headers.push("Supported", SUPPORTED);
                self.layer.respond(now(), tx, response);
            }
            Method::Register => {
                crate::registrar::spawn(
                    self.shared.clone(),
                    self.handle.clone(),
                    tx,
                    request,
                    peer,
                );
            }
            // A page-mode message (RFC 3428): accepted. Delivering it to flows is later work.
            Method::Message => self.respond(tx, &request, 200),
            // Requests that need a dialog and have none.
            Method::Bye | Method::Info | Method::Update | Method::Prack => {
                self.respond(tx, &request, 481)
            }
            Method::Extension(_) => self.respond(tx, &request, 501),
            _ => self.respond(tx, &request, 405),
        }
    }

    fn new_call(&mut self, tx: ServerTxId, request: Request, peer: Peer) {
        let Some(call_id) = request.call_id().map(str::to_owned) else {
            self.respond(tx, &request, 400);
            return;
        };
        let local_tag = self.new_tag();
        let key = CallKey {
            call_id,
            local_tag: local_tag.clone(),
        };
        let (inbox, rx) = mpsc::unbounded_channel();
        self.calls.insert(
            key.clone(),
            CallRoute {
                inbox,
                invite_tx: Some(tx),
                invite_ctx: None,
            },
        );
        self.by_invite.insert(tx, key.clone());
        call::spawn(call::Incoming {
            shared: self.shared.clone(),
            endpoint: self.handle.clone(),
            key,
            invite: request,
            invite_tx: tx,
            peer,
            local_sip: self.udp.local_addr().ok(),
            inbox: rx,
        });
    }

    fn new_tag(&mut self) -> String {
        // xorshift64*: tags need to be unique, not secret.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        format!("{:016x}", self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d))
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One TCP connection: frames incoming messages for the endpoint and writes what it sends.
async fn tcp_connection(
    stream: TcpStream,
    conn: u64,
    addr: SocketAddr,
    to_endpoint: mpsc::UnboundedSender<TcpIn>,
    mut outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let mut framer = sip::StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut got_message = false;
    let mut idle_until = tokio::time::Instant::now() + TCP_FIRST_MESSAGE_TIMEOUT;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(idle_until) => {
                tracing::debug!(%addr, got_message, "closing an idle TCP connection");
                break;
            }
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    framer.push(buf.get(..n).unwrap_or_default());
                    while let Some(frame) = framer.next_message() {
                        match frame {
                            Ok(data) => {
                                got_message = true;
                                let _ = to_endpoint.send(TcpIn { conn, addr, data: Some(data) });
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, %addr, "closing TCP connection: bad framing");
                                let _ = to_endpoint.send(TcpIn { conn, addr, data: None });
                                return;
                            }
                        }
                    }
                }
            },
            Some(data) = outgoing.recv() => {
                if writer.write_all(&data).await.is_err() {
                    break;
                }
                got_message = true;
            }
        }
        if got_message {
            idle_until = tokio::time::Instant::now() + TCP_IDLE_TIMEOUT;
        }
    }
    let _ = to_endpoint.send(TcpIn {
        conn,
        addr,
        data: None,
    });
}
