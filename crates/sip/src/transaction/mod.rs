//! The transaction layer (RFC 3261 §17, with the RFC 6026 fix), sans-IO.
//!
//! One [`TransactionLayer`] holds every transaction of an endpoint. The shell feeds it parsed
//! messages ([`TransactionLayer::handle_message`]) and the time
//! ([`TransactionLayer::handle_timeout`] when [`TransactionLayer::poll_timeout`] is reached);
//! the transaction user (TU) answers requests ([`TransactionLayer::respond`]) and sends its own
//! ([`TransactionLayer::send_request`]). Bytes to send come out of
//! [`TransactionLayer::poll_transmit`], news for the TU out of
//! [`TransactionLayer::poll_event`]. Drain both after every input.
//!
//! The four machines live in files named after them: `ist.rs` (INVITE server), `nist.rs`
//! (non-INVITE server), `ict.rs` (INVITE client), `nict.rs` (non-INVITE client).
//!
//! What the layer does on its own:
//! - answers a new INVITE with `100 Trying` when the transaction user has not answered it
//!   within 200 ms (§17.2.1), so INVITEs refused or answered at once get no 100;
//! - answers retransmitted requests with the last response (absorbs them when there is none);
//! - retransmits over UDP: requests (Timers A, E), non-2xx finals to INVITE (Timer G), and the
//!   2xx to an INVITE until its ACK arrives (T1 doubling to T2, §13.3.1.4);
//! - answers a CANCEL: `200` when it matches a live INVITE transaction (and tells the TU, which
//!   must then send `487` on the INVITE), `481` when it matches none;
//! - sends the ACK of a non-2xx final response to our INVITE;
//! - stamps `received`/`rport` on the top Via of received requests (RFC 3581) and sends
//!   responses where §18.2.2 says;
//! - answers `400` to requests that fail [`crate::validate_request`] (drops such ACKs and
//!   responses), and `503` to new requests beyond [`Config::max_transactions`];
//! - reliable provisional responses (RFC 3262, [`TransactionLayer::respond_reliably`]): adds
//!   `Require: 100rel` and `RSeq`, retransmits each at T1, 2T1, 4T1 ... until its PRACK, gives
//!   up after 64*T1 ([`Event::ReliableTimeout`]), holds a 2xx until every reliable 1xx is
//!   acknowledged;
//! - answers every PRACK but those that acknowledge a live reliable provisional response
//!   (which come as [`Event::Prack`]): `400` without a well-formed `RAck` or when the RAck
//!   names an RSeq never sent, `481` when it matches no unacknowledged response.
//!
//! Where requests go is the transaction user's choice: [`TransactionLayer::send_request`]
//! sends to the [`Peer`] it is given. For a request with a Route set that is the first Route's
//! host and port when that route is a loose router (`;lr`), else the Request-URI's (RFC 3261
//! §8.1.2, §12.2.1.1); [`crate::Dialog::next_hop`] gives that URI for in-dialog requests.

mod ict;
mod ist;
mod matching;
mod nict;
mod nist;
mod reliable;
mod transport;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a new INVITE waits for the transaction user before the layer sends `100 Trying`
/// itself (RFC 3261 §17.2.1).
const TRYING_DELAY: Duration = Duration::from_millis(200);

use self::ict::Ict;
use self::ist::Ist;
use self::matching::{AckKey, ClientKey, PrackKey, ServerKey};
use self::nict::Nict;
use self::nist::Nist;
use self::reliable::PrackMatch;
pub use self::transport::{Peer, Transmit, Transport};
use crate::reliable::{MAX_RSEQ, OPTION_TAG_100REL, has_option_tag, supports_100rel};
use crate::validation::error_response;
use crate::{Message, Method, RAck, Request, Response, validate_request};

/// Identifies a server transaction (a request we received).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(u64);

/// Identifies a client transaction (a request we sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(u64);

/// Settings of a [`TransactionLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// RTT estimate (RFC 3261 default 500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (default 4 s).
    pub t2: Duration,
    /// How long a message may stay in the network (default 5 s).
    pub t4: Duration,
    /// Our sent-by (`host[:port]`) in the Via of requests sent over UDP.
    pub sent_by_udp: String,
    /// Our sent-by (`host[:port]`) in the Via of requests sent over TCP.
    pub sent_by_tcp: String,
    /// Seed of the generator of branches and tags. Use a random seed in production (branches
    /// must not repeat across restarts); a fixed one in tests.
    pub seed: u64,
    /// Most live transactions; new requests beyond it get `503` without a transaction.
    pub max_transactions: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            sent_by_udp: "127.0.0.1:5060".to_owned(),
            sent_by_tcp: "127.0.0.1:5060".to_owned(),
            seed: 0,
            max_transactions: 10_000,
        }
    }
}

/// What the transaction layer tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new request (not ACK, not CANCEL). Answer it with [`TransactionLayer::respond`].
    /// Its top Via already carries `received`/`rport`, so [`Response::for_request`] copies
    /// them. An INVITE the transaction user leaves unanswered for 200 ms gets `100 Trying`.
    Request {
        /// The server transaction to respond on.
        tx: ServerTxId,
        /// The request.
        request: Request,
        /// Where it came from.
        peer: Peer,
    },
    /// An ACK for a 2xx (it has its own branch), or an ACK that matches no transaction (the
    /// TU decides by dialog). An ACK for a 2xx stops that INVITE's 2xx retransmissions; it is
    /// reported once per transaction.
    Ack {
        /// The ACK.
        request: Request,
        /// Where it came from.
        peer: Peer,
    },
    /// A CANCEL matched an INVITE transaction still without a final response. The layer has
    /// answered the CANCEL `200`; the TU must send `487` on `invite_tx`.
    Cancelled {
        /// The INVITE's transaction.
        invite_tx: ServerTxId,
        /// The CANCEL.
        request: Request,
    },
    /// A response to one of our requests: every provisional, the final one, and for an
    /// INVITE every further 2xx (forks, retransmissions, which the TU must ACK). Retransmitted
    /// non-2xx finals are absorbed.
    Response {
        /// Our client transaction.
        tx: ClientTxId,
        /// The response.
        response: Response,
    },
    /// Timer B or F fired: no final response came. Treat as `408 Request Timeout`.
    ClientTimeout {
        /// Our client transaction.
        tx: ClientTxId,
    },
    /// Our 2xx to an INVITE was not ACKed within 64*T1: the TU should send BYE.
    AckTimeout {
        /// The INVITE's transaction.
        tx: ServerTxId,
    },
    /// A PRACK acknowledged one of our reliable provisional responses (RFC 3262 §3): its
    /// retransmissions have stopped. Answer the PRACK `200` on `tx` (with an SDP answer if it
    /// carried an offer). PRACKs that match nothing never get here: the layer answers them.
    Prack {
        /// The PRACK's own server transaction.
        tx: ServerTxId,
        /// The PRACK.
        request: Request,
        /// The INVITE whose provisional response it acknowledges.
        invite_tx: ServerTxId,
    },
    /// A reliable provisional response on `tx` went 64*T1 without PRACK. Its retransmissions
    /// have stopped and a 2xx held for it was dropped; the TU should reject the INVITE with a
    /// 5xx (RFC 3262 §3).
    ReliableTimeout {
        /// The INVITE's transaction.
        tx: ServerTxId,
    },
}

/// Why [`TransactionLayer::respond_reliably`] refused a response (nothing was sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReliableError {
    /// The transaction is gone, or is not an INVITE server transaction.
    #[error("no INVITE server transaction with this id")]
    NoTransaction,
    /// Only 101..=199 can be sent reliably (never `100 Trying`, RFC 3262 §3).
    #[error("status {0} cannot be sent reliably")]
    NotProvisional(u16),
    /// The INVITE had no `100rel` in Supported or Require: send the 1xx unreliably.
    #[error("the INVITE does not support 100rel")]
    NotSupported,
    /// A final response was already sent.
    #[error("a final response was already sent")]
    FinalSent,
    /// The response lacks something a PRACK is matched with (a To tag, Call-ID, CSeq).
    #[error("the response has no {0}")]
    MissingHeader(&'static str),
}

/// All transactions of one endpoint. See the [module docs](self).
#[derive(Debug)]
pub struct TransactionLayer {
    config: Config,
    timers: Timers,
    rng: u64,
    next_id: u64,
    transactions: HashMap<u64, Entry>,
    server_keys: HashMap<ServerKey, u64>,
    client_keys: HashMap<ClientKey, u64>,
    ack_keys: HashMap<AckKey, u64>,
    prack_keys: HashMap<PrackKey, u64>,
    /// INVITE server transactions by (Call-ID, From tag, CSeq number): how a CANCEL whose branch
    /// differs from its INVITE's (RFC 2543 style, or a sloppy UAC) still finds it.
    cancel_keys: HashMap<CancelKey, u64>,
    deadlines: BTreeSet<(Instant, u64)>,
    out: Outbox,
    /// The RSeq of each transaction's first reliable provisional response; `None` = random.
    rseq_start: Option<u32>,
}

impl TransactionLayer {
    /// A layer with no transactions. T1 is clamped to 1 ms..=60 s, T2 to T1..=1 h and T4 to
    /// at most 1 h, so that timer arithmetic cannot overflow.
    pub fn new(config: Config) -> TransactionLayer {
        const HOUR: Duration = Duration::from_secs(3_600);
        let t1 = config
            .t1
            .clamp(Duration::from_millis(1), Duration::from_secs(60));
        let timers = Timers {
            t1,
            t2: config.t2.clamp(t1, HOUR),
            t4: config.t4.min(HOUR),
        };
        TransactionLayer {
            rng: config.seed,
            config,
            timers,
            next_id: 1,
            transactions: HashMap::new(),
            server_keys: HashMap::new(),
            client_keys: HashMap::new(),
            ack_keys: HashMap::new(),
            prack_keys: HashMap::new(),
            cancel_keys: HashMap::new(),
            deadlines: BTreeSet::new(),
            out: Outbox::default(),
            rseq_start: None,
        }
    }

    /// Sets the RSeq of the first reliable provisional response of every INVITE transaction
    /// (clamped to 1 ..= 2**31 - 1). `None`, the default, draws it from the seeded generator,
    /// as RFC 3262 §3 recommends; `Some(1)` suits peers that expect `RAck: 1 ...`, such as the
    /// SIPp `prack.xml` scenario.
    pub fn set_rseq_start(&mut self, first: Option<u32>) {
        self.rseq_start = first.map(|n| n.clamp(1, MAX_RSEQ));
    }

    // ---- getters ----

    /// The number of live transactions.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    /// Whether there are no live transactions.
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---- inputs ----

    /// A message received from `peer`. Requests are matched per §17.2.3 (branch, sent-by and
    /// method; Call-ID, CSeq and From tag for RFC 2543 peers; Call-ID, CSeq number and To tag
    /// for the ACK of a 2xx), responses per §17.1.3 (branch and CSeq method).
    pub fn handle_message(&mut self, now: Instant, peer: Peer, msg: Message) {
        match msg {
            Message::Request(request) => self.handle_request(now, peer, request),
            Message::Response(response) => self.handle_response(now, response),
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .deadlines
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|&(_, id)| id)
            .collect();
        for id in due {
            if let Some(entry) = self.transactions.get_mut(&id) {
                match &mut entry.machine {
                    Machine::Ist(m) => m.handle_timeout(now, &mut self.out),
                    Machine::Nist(m) => m.handle_timeout(now),
                    Machine::Ict(m) => m.handle_timeout(now, &mut self.out),
                    Machine::Nict(m) => m.handle_timeout(now, &mut self.out),
                }
            }
            self.settle_pending_cancel(now, id);
            self.reschedule(id);
        }
    }

    // ---- mutators (TU actions) ----

    /// Sends a response on a server transaction (and retransmits it as the RFC says). Ignored
    /// if the transaction is gone or the response is not allowed in its state (a provisional
    /// or non-2xx after a final).
    ///
    /// A 2xx to an INVITE whose reliable provisional responses are not all PRACKed yet is held
    /// and sent when the last PRACK arrives (RFC 3262 §3 forbids it when one carried SDP; the
    /// layer waits in every case), or dropped with [`Event::ReliableTimeout`]. A non-2xx final
    /// is sent at once and stops the reliable provisionals' retransmissions.
    pub fn respond(&mut self, now: Instant, tx: ServerTxId, response: Response) {
        let Some(entry) = self.transactions.get_mut(&tx.0) else {
            return;
        };
        match &mut entry.machine {
            Machine::Ist(ist) => {
                if response.is_success() && ist.hold_2xx(&response) {
                    // sent when the last reliable provisional response is PRACKed
                } else if ist.respond(now, &response, &mut self.out)
                    && response.is_success()
                    && entry.ack_key.is_none()
                {
                    let to = response.to();
                    let key = AckKey::for_message(
                        response.call_id(),
                        response.cseq().map(|c| c.seq),
                        to.as_ref().and_then(|t| t.tag()),
                    );
                    if let Some(key) = key {
                        self.ack_keys.insert(key.clone(), tx.0);
                        entry.ack_key = Some(key);
                    }
                }
            }
            Machine::Nist(nist) => {
                nist.respond(now, &response, &mut self.out);
            }
            Machine::Ict(_) | Machine::Nict(_) => {}
        }
        self.reschedule(tx.0);
    }

    /// Sends a provisional response (101..=199) to an INVITE reliably (RFC 3262 §3) and
    /// returns its RSeq. Adds `Require: 100rel` and `RSeq` (the first of the transaction from
    /// [`TransactionLayer::set_rseq_start`], then one more each time). The response is
    /// retransmitted at T1, 2T1, 4T1 ... (unreliable transports) until a PRACK acknowledges it
    /// ([`Event::Prack`]), a final response is sent, or 64*T1 pass ([`Event::ReliableTimeout`]).
    /// While the first is unacknowledged, later ones are queued and sent when its PRACK
    /// arrives. The response must carry the To tag of the early dialog.
    ///
    /// Refused, with nothing sent, when the INVITE did not offer `100rel` (check
    /// [`crate::supports_100rel`]; if it *requires* it, every 1xx but 100 must go this way).
    pub fn respond_reliably(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        mut response: Response,
    ) -> Result<u32, ReliableError> {
        if !(101..200).contains(&response.status) {
            return Err(ReliableError::NotProvisional(response.status));
        }
        let to_tag = response.to().and_then(|to| to.tag().map(str::to_owned));
        let cseq = response
            .cseq()
            .ok_or(ReliableError::MissingHeader("CSeq"))?;
        let from_tag = response.from().and_then(|f| f.tag().map(str::to_owned));
        let key = PrackKey::new(response.call_id(), from_tag.as_deref(), cseq.seq)
            .ok_or(ReliableError::MissingHeader("Call-ID"))?;
        if to_tag.is_none() {
            return Err(ReliableError::MissingHeader("To tag"));
        }
        let start = match self.rseq_start {
            Some(n) => n,
            None => {
                let r = self.random() % u64::from(MAX_RSEQ);
                u32::try_from(r).unwrap_or(0) + 1
            }
        };
        let Some(entry) = self.transactions.get_mut(&tx.0) else {
            return Err(ReliableError::NoTransaction);
        };
        let Machine::Ist(ist) = &mut entry.machine else {
            return Err(ReliableError::NoTransaction);
        };
        if ist.state() != ist::State::Proceeding {
            return Err(ReliableError::FinalSent);
        }
        if !ist.offers_100rel {
            return Err(ReliableError::NotSupported);
        }
        let rseq = ist.reliable_mut(|| start).allocate_rseq();
        if !has_option_tag(&response.headers, "Require", OPTION_TAG_100REL) {
            response.headers.push("Require", OPTION_TAG_100REL);
        }
        response.headers.set("RSeq", rseq.to_string());
        if !ist.respond_reliably(now, rseq, &response, &mut self.out) {
            return Err(ReliableError::FinalSent);
        }
        if entry.prack_key.is_none() {
            self.prack_keys.insert(key.clone(), tx.0);
            entry.prack_key = Some(key);
        }
        self.reschedule(tx.0);
        Ok(rseq)
    }

    /// Sends a request in a new client transaction (INVITE or non-INVITE). Inserts the top
    /// Via (our sent-by for the transport, a fresh `z9hG4bK` branch, `rport`) and
    /// Max-Forwards: 70 if absent. The request goes to `peer` whatever its Route header says:
    /// choosing the next hop is the TU's job (see the [module docs](self)). An ACK is sent
    /// without a transaction (prefer [`TransactionLayer::send_ack`]); a CANCEL of our INVITE
    /// should use [`TransactionLayer::cancel`].
    pub fn send_request(&mut self, now: Instant, peer: Peer, mut request: Request) -> ClientTxId {
        let id = self.allocate_id();
        let branch = self.add_via(peer, &mut request);
        if !request.headers.contains("Max-Forwards") {
            request.headers.push("Max-Forwards", "70");
        }
        let method = request.method.clone();
        let machine = match method {
            Method::Ack => {
                self.out.send(peer, request.to_bytes());
                return ClientTxId(id);
            }
            Method::Invite => {
                let mut ict = Box::new(Ict::new(ClientTxId(id), peer, self.timers, request));
                ict.start(now, &mut self.out);
                Machine::Ict(ict)
            }
            _ => {
                let mut nict = Nict::new(ClientTxId(id), peer, self.timers, request.to_bytes());
                nict.start(now, &mut self.out);
                Machine::Nict(nict)
            }
        };
        self.insert(id, machine, Key::Client(ClientKey { branch, method }));
        ClientTxId(id)
    }

    /// Cancels our INVITE (§9.1): builds the CANCEL from the INVITE and sends it in its own
    /// client transaction, at once if a provisional response has arrived, else when the first
    /// one does (and not at all if a final response comes first). Its responses come as
    /// [`Event::Response`] with the returned id; the INVITE should then end with `487`.
    /// `None` if `invite_tx` is not an INVITE still without a final response.
    pub fn cancel(&mut self, now: Instant, invite_tx: ClientTxId) -> Option<ClientTxId> {
        let Machine::Ict(ict) = &self.transactions.get(&invite_tx.0)?.machine else {
            return None;
        };
        if let Some(pending) = ict.pending_cancel {
            return Some(ClientTxId(pending));
        }
        let state = ict.state();
        if !matches!(state, ict::State::Calling | ict::State::Proceeding) {
            return None;
        }
        let cancel = ict.cancel_request();
        let peer = ict.peer();
        let branch = cancel.top_via()?.branch()?.to_owned();
        let key = ClientKey {
            branch,
            method: Method::Cancel,
        };
        if let Some(&existing) = self.client_keys.get(&key) {
            return Some(ClientTxId(existing));
        }
        let id = self.allocate_id();
        let mut nict = Nict::new(ClientTxId(id), peer, self.timers, cancel.to_bytes());
        if state == ict::State::Proceeding {
            nict.start(now, &mut self.out);
        } else if let Some(Entry {
            machine: Machine::Ict(ict),
            ..
        }) = self.transactions.get_mut(&invite_tx.0)
        {
            ict.pending_cancel = Some(id);
        }
        self.insert(id, Machine::Nict(nict), Key::Client(key));
        Some(ClientTxId(id))
    }

    /// Sends a message outside any transaction: an ACK for a 2xx (a request without Via gets
    /// ours with a fresh branch, and Max-Forwards: 70 if absent), or a response such as
    /// [`crate::bad_request_response`].
    pub fn send_stateless(&mut self, peer: Peer, msg: Message) {
        let bytes = match msg {
            Message::Request(mut request) => {
                if !request.headers.contains("Via") {
                    self.add_via(peer, &mut request);
                }
                if !request.headers.contains("Max-Forwards") {
                    request.headers.push("Max-Forwards", "70");
                }
                request.to_bytes()
            }
            Message::Response(response) => response.to_bytes(),
        };
        self.out.send(peer, bytes);
    }

    /// Sends the ACK for a 2xx to our INVITE (RFC 3261 §13.2.2.4), built by
    /// [`crate::Dialog::create_ack`], without a transaction. Adds our Via with a fresh branch
    /// unless `ack` already has a Via, and Max-Forwards: 70 if absent, in `ack` itself: keep
    /// it, and pass it again for each retransmission of that 2xx ([`Event::Response`]) so the
    /// same ACK is re-sent.
    pub fn send_ack(&mut self, peer: Peer, ack: &mut Request) {
        if !ack.headers.contains("Via") {
            self.add_via(peer, ack);
        }
        if !ack.headers.contains("Max-Forwards") {
            ack.headers.push("Max-Forwards", "70");
        }
        self.out.send(peer, ack.to_bytes());
    }

    /// A fresh random tag (for From/To), from the seeded generator.
    pub fn new_tag(&mut self) -> String {
        format!("{:016x}", self.random())
    }

    /// A fresh random Call-ID (32 hex digits), from the seeded generator.
    pub fn new_call_id(&mut self) -> String {
        format!("{:016x}{:016x}", self.random(), self.random())
    }

    // ---- outputs ----

    /// The earliest instant at which [`TransactionLayer::handle_timeout`] must be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(t, _)| t)
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the transaction user.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.events.pop_front()
    }

    // ---- internals ----

    fn handle_request(&mut self, now: Instant, source: Peer, mut request: Request) {
        let dest = transport::stamp_top_via(&mut request, source);
        if let Err(err) = validate_request(&request) {
            if let Some(response) = error_response(&request.method, &request.headers, &err) {
                self.out.send(dest, response.to_bytes());
            }
            return;
        }
        let Some(key) = ServerKey::for_request(&request) else {
            return;
        };
        match request.method {
            Method::Ack => self.handle_ack(now, source, key, request),
            Method::Cancel => self.handle_cancel(now, dest, key, request),
            _ => {
                if let Some(&id) = self.server_keys.get(&key) {
                    self.handle_retransmission(now, id);
                    return;
                }
                if self.transactions.len() >= self.config.max_transactions {
                    self.respond_stateless(dest, &request, 503);
                    return;
                }
                if request.method == Method::Prack {
                    self.handle_prack(now, dest, key, request);
                    return;
                }
                let id = self.allocate_id();
                let cancel_key = (request.method == Method::Invite)
                    .then(|| cancel_key(&request))
                    .flatten();
                let machine = if request.method == Method::Invite {
                    let mut ist = Ist::new(ServerTxId(id), dest, self.timers);
                    ist.offers_100rel = supports_100rel(&request);
                    // §17.2.1: a 100 only if the transaction user is silent for 200 ms (so a
                    // request refused or answered at once gets no 100 before it).
                    ist.arm_trying(now + TRYING_DELAY, Response::for_request(&request, 100));
                    Machine::Ist(ist)
                } else {
                    Machine::Nist(Nist::new(now, dest, self.timers))
                };
                self.insert(id, machine, Key::Server(key));
                if let (Some(ck), Some(entry)) = (cancel_key, self.transactions.get_mut(&id)) {
                    self.cancel_keys.insert(ck.clone(), id);
                    entry.cancel_key = Some(ck);
                }
                self.out.emit(Event::Request {
                    tx: ServerTxId(id),
                    request,
                    peer: source,
                });
            }
        }
    }

    /// A new PRACK (RFC 3262 §3): to the TU if it acknowledges a live reliable provisional
    /// response, else answered here.
    fn handle_prack(&mut self, now: Instant, dest: Peer, key: ServerKey, request: Request) {
        let rack = match request.headers.get("RAck").map(RAck::parse) {
            Some(Ok(rack)) => rack,
            Some(Err(_)) => {
                return self.answer_prack(
                    now,
                    dest,
                    key,
                    &request,
                    400,
                    "Bad Request (malformed RAck)",
                );
            }
            None => {
                return self.answer_prack(
                    now,
                    dest,
                    key,
                    &request,
                    400,
                    "Bad Request (missing RAck)",
                );
            }
        };
        let from_tag = request.from().and_then(|f| f.tag().map(str::to_owned));
        let to_tag = request.to().and_then(|t| t.tag().map(str::to_owned));
        let invite = (rack.method == Method::Invite)
            .then(|| PrackKey::new(request.call_id(), from_tag.as_deref(), rack.cseq))
            .flatten()
            .and_then(|k| self.prack_keys.get(&k).copied());
        let outcome = invite.and_then(|invite_id| {
            match &mut self.transactions.get_mut(&invite_id)?.machine {
                Machine::Ist(ist) => {
                    let to_tag = to_tag.as_deref().unwrap_or("");
                    Some((
                        invite_id,
                        ist.handle_prack(now, rack.rseq, to_tag, &mut self.out),
                    ))
                }
                _ => None,
            }
        });
        match outcome {
            Some((invite_id, (PrackMatch::Acknowledged, release))) => {
                self.reschedule(invite_id);
                let id = self.allocate_id();
                self.insert(
                    id,
                    Machine::Nist(Nist::new(now, dest, self.timers)),
                    Key::Server(key),
                );
                self.out.emit(Event::Prack {
                    tx: ServerTxId(id),
                    request,
                    invite_tx: ServerTxId(invite_id),
                });
                if let Some(ok) = release {
                    self.respond(now, ServerTxId(invite_id), ok);
                }
            }
            Some((_, (PrackMatch::NeverSent, _))) => self.answer_prack(
                now,
                dest,
                key,
                &request,
                400,
                "Bad Request (RAck matches no response sent)",
            ),
            Some((_, (PrackMatch::NoMatch, _))) | None => {
                self.answer_prack(now, dest, key, &request, 481, crate::reason_phrase(481))
            }
        }
    }

    /// Answers a PRACK in its own server transaction (so retransmissions get the same answer).
    fn answer_prack(
        &mut self,
        now: Instant,
        dest: Peer,
        key: ServerKey,
        request: &Request,
        status: u16,
        reason: &str,
    ) {
        let mut response = Response::for_request(request, status);
        response.reason = reason.to_owned();
        let tag = self.new_tag();
        response.set_to_tag(&tag);
        let id = self.allocate_id();
        let mut nist = Nist::new(now, dest, self.timers);
        nist.respond(now, &response, &mut self.out);
        self.insert(id, Machine::Nist(nist), Key::Server(key));
    }

    fn handle_retransmission(&mut self, now: Instant, id: u64) {
        match self.transactions.get_mut(&id).map(|e| &mut e.machine) {
            Some(Machine::Ist(ist)) => ist.handle_retransmission(now, &mut self.out),
            Some(Machine::Nist(nist)) => nist.handle_retransmission(&mut self.out),
            _ => {}
        }
    }

    fn handle_ack(&mut self, now: Instant, source: Peer, key: ServerKey, request: Request) {
        let by_branch = self.server_keys.get(&key).copied();
        let by_dialog = || {
            let to = request.to();
            let key = AckKey::for_message(
                request.call_id(),
                request.cseq().map(|c| c.seq),
                to.as_ref().and_then(|t| t.tag()),
            )?;
            self.ack_keys.get(&key).copied()
        };
        let Some(id) = by_branch.or_else(by_dialog) else {
            // no transaction: an ACK for a 2xx whose transaction is gone, or a stray one
            self.out.emit(Event::Ack {
                request,
                peer: source,
            });
            return;
        };
        if let Some(Entry {
            machine: Machine::Ist(ist),
            ..
        }) = self.transactions.get_mut(&id)
            && ist.handle_ack(now)
        {
            self.out.emit(Event::Ack {
                request,
                peer: source,
            });
        }
        self.reschedule(id);
    }

    fn handle_cancel(&mut self, now: Instant, dest: Peer, key: ServerKey, request: Request) {
        if let Some(&id) = self.server_keys.get(&key) {
            self.handle_retransmission(now, id);
            return;
        }
        let invite = self
            .server_keys
            .get(&key.with_method(Method::Invite))
            .or_else(|| self.cancel_keys.get(&cancel_key(&request)?))
            .and_then(|id| match &self.transactions.get(id)?.machine {
                Machine::Ist(ist) => Some((*id, ist.state(), ist.to_tag().map(str::to_owned))),
                _ => None,
            });
        let (status, cancelled, to_tag) = match invite {
            Some((id, state, to_tag)) => {
                let live = state == ist::State::Proceeding;
                (200, live.then_some(ServerTxId(id)), to_tag)
            }
            None => (481, None, None),
        };
        let mut response = Response::for_request(&request, status);
        let tag = to_tag.unwrap_or_else(|| self.new_tag());
        response.set_to_tag(&tag);
        if self.transactions.len() >= self.config.max_transactions {
            self.out.send(dest, response.to_bytes());
        } else {
            let id = self.allocate_id();
            let mut nist = Nist::new(now, dest, self.timers);
            nist.respond(now, &response, &mut self.out);
            self.insert(id, Machine::Nist(nist), Key::Server(key));
        }
        if let Some(invite_tx) = cancelled {
            self.out.emit(Event::Cancelled { invite_tx, request });
        }
    }

    fn handle_response(&mut self, now: Instant, response: Response) {
        let Some(key) = ClientKey::for_response(&response) else {
            return;
        };
        let Some(&id) = self.client_keys.get(&key) else {
            return; // stray response (§18.1.2): drop
        };
        match self.transactions.get_mut(&id).map(|e| &mut e.machine) {
            Some(Machine::Ict(ict)) => ict.handle_response(now, response, &mut self.out),
            Some(Machine::Nict(nict)) => nict.handle_response(now, response, &mut self.out),
            _ => {}
        }
        self.settle_pending_cancel(now, id);
        self.reschedule(id);
    }

    /// Sends a CANCEL held by INVITE transaction `id` once it has had a provisional response,
    /// or drops it if the INVITE ended first.
    fn settle_pending_cancel(&mut self, now: Instant, id: u64) {
        let Some(Entry {
            machine: Machine::Ict(ict),
            ..
        }) = self.transactions.get_mut(&id)
        else {
            return;
        };
        let state = ict.state();
        if state == ict::State::Calling {
            return;
        }
        let Some(cancel_id) = ict.pending_cancel.take() else {
            return;
        };
        if let Some(Entry {
            machine: Machine::Nict(nict),
            ..
        }) = self.transactions.get_mut(&cancel_id)
        {
            if state == ict::State::Proceeding {
                nict.start(now, &mut self.out);
            } else {
                nict.abandon();
            }
        }
        self.reschedule(cancel_id);
    }

    /// A response sent without a transaction (with a To tag).
    fn respond_stateless(&mut self, dest: Peer, request: &Request, status: u16) {
        let mut response = Response::for_request(request, status);
        let tag = self.new_tag();
        response.set_to_tag(&tag);
        self.out.send(dest, response.to_bytes());
    }

    /// Prepends our Via for `peer`'s transport; returns the branch.
    fn add_via(&mut self, peer: Peer, request: &mut Request) -> String {
        let branch = format!("{}{:016x}", crate::BRANCH_MAGIC_COOKIE, self.random());
        let sent_by = match peer.transport {
            Transport::Udp => &self.config.sent_by_udp,
            Transport::Tcp => &self.config.sent_by_tcp,
        };
        request.headers.prepend(
            "Via",
            format!(
                "SIP/2.0/{} {sent_by};branch={branch};rport",
                peer.transport.via_name()
            ),
        );
        branch
    }

    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// splitmix64
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn insert(&mut self, id: u64, machine: Machine, key: Key) {
        match &key {
            Key::Server(k) => self.server_keys.insert(k.clone(), id),
            Key::Client(k) => self.client_keys.insert(k.clone(), id),
        };
        self.transactions.insert(
            id,
            Entry {
                machine,
                deadline: None,
                key,
                ack_key: None,
                prack_key: None,
                cancel_key: None,
            },
        );
        self.reschedule(id);
    }

    /// Re-files transaction `id` under its next deadline, or removes it if it terminated.
    fn reschedule(&mut self, id: u64) {
        let Some(entry) = self.transactions.get_mut(&id) else {
            return;
        };
        if let Some(old) = entry.deadline.take() {
            self.deadlines.remove(&(old, id));
        }
        if entry.machine.is_terminated() {
            self.remove(id);
            return;
        }
        if let Some(t) = entry.machine.poll_timeout() {
            entry.deadline = Some(t);
            self.deadlines.insert((t, id));
        }
    }

    fn remove(&mut self, id: u64) {
        let Some(entry) = self.transactions.remove(&id) else {
            return;
        };
        if let Some(t) = entry.deadline {
            self.deadlines.remove(&(t, id));
        }
        match &entry.key {
            Key::Server(k) => {
                if self.server_keys.get(k) == Some(&id) {
                    self.server_keys.remove(k);
                }
            }
            Key::Client(k) => {
                if self.client_keys.get(k) == Some(&id) {
                    self.client_keys.remove(k);
                }
            }
        }
        if let Some(k) = &entry.ack_key
            && self.ack_keys.get(k) == Some(&id)
        {
            self.ack_keys.remove(k);
        }
        if let Some(k) = &entry.prack_key
            && self.prack_keys.get(k) == Some(&id)
        {
            self.prack_keys.remove(k);
        }
        if let Some(k) = &entry.cancel_key
            && self.cancel_keys.get(k) == Some(&id)
        {
            self.cancel_keys.remove(k);
        }
        // an INVITE that ends with a CANCEL still waiting takes the CANCEL with it
        if let Machine::Ict(ict) = &entry.machine
            && let Some(cancel_id) = ict.pending_cancel
        {
            self.remove(cancel_id);
        }
    }
}

/// (Call-ID, From tag, CSeq number) of an INVITE, or of the CANCEL meant for it.
type CancelKey = (String, String, u32);

fn cancel_key(request: &Request) -> Option<CancelKey> {
    let from_tag = request.from()?.tag()?.to_owned();
    Some((request.call_id()?.to_owned(), from_tag, request.cseq()?.seq))
}

/// The RFC timer base values in use.
#[derive(Debug, Clone, Copy)]
struct Timers {
    t1: Duration,
    t2: Duration,
    t4: Duration,
}

/// Where the machines put what they produce.
#[derive(Debug, Default)]
struct Outbox {
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Outbox {
    fn send(&mut self, peer: Peer, data: Vec<u8>) {
        self.transmits.push_back(Transmit { peer, data });
    }

    fn emit(&mut self, event: Event) {
        self.events.push_back(event);
    }
}

#[derive(Debug)]
struct Entry {
    machine: Machine,
    deadline: Option<Instant>,
    key: Key,
    ack_key: Option<AckKey>,
    /// How PRACKs find this INVITE server transaction once it sent a reliable provisional.
    prack_key: Option<PrackKey>,
    /// How a CANCEL with another branch finds this INVITE server transaction.
    cancel_key: Option<CancelKey>,
}

#[derive(Debug)]
enum Key {
    Server(ServerKey),
    Client(ClientKey),
}

#[derive(Debug)]
enum Machine {
    Ist(Ist),
    Nist(Nist),
    Ict(Box<Ict>),
    Nict(Nict),
}

impl Machine {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::Ist(m) => m.poll_timeout(),
            Machine::Nist(m) => m.poll_timeout(),
            Machine::Ict(m) => m.poll_timeout(),
            Machine::Nict(m) => m.poll_timeout(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::Ist(m) => m.is_terminated(),
            Machine::Nist(m) => m.is_terminated(),
            Machine::Ict(m) => m.is_terminated(),
            Machine::Nict(m) => m.is_terminated(),
        }
    }
}

#[cfg(test)]
mod tests;
