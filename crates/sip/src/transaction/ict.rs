//! The INVITE client transaction (RFC 3261 §17.1.1, with the Accepted state of RFC 6026 §7.2).
//!
//! ```text
//!  INVITE ─► Calling ──1xx──► Proceeding ──2xx──► Accepted ──Timer M──► Terminated
//!              │ Timer A retransmits,  └──300-699──► Completed ──Timer D──► Terminated
//!              │ Timer B gives up (ClientTimeout)     (ACK sent, re-sent per retransmitted final)
//! ```

use std::time::{Duration, Instant};

use super::{ClientTxId, Event, Outbox, Peer, Timers};
use crate::{CSeq, Method, Request, Response};

/// Timer D on unreliable transports (RFC 3261 Table 4: "> 32 s").
const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// The states of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// One INVITE client transaction.
#[derive(Debug)]
pub(super) struct Ict {
    id: ClientTxId,
    peer: Peer,
    timers: Timers,
    state: State,
    /// The INVITE as sent (with our Via).
    request: Request,
    request_bytes: Vec<u8>,
    /// The ACK for a non-2xx final response, re-sent when that response is retransmitted.
    ack: Option<Vec<u8>>,
    /// Timer A: retransmits the INVITE (unreliable transports).
    timer_a: Option<Instant>,
    interval_a: Duration,
    /// Timer B: gives up on the INVITE.
    timer_b: Option<Instant>,
    /// Timer D: how long Completed absorbs retransmitted finals.
    timer_d: Option<Instant>,
    /// Timer M (RFC 6026): how long Accepted passes further 2xx to the transaction user.
    timer_m: Option<Instant>,
    /// A CANCEL (non-INVITE client transaction id) waiting for the first provisional.
    pub(super) pending_cancel: Option<u64>,
}

impl Ict {
    pub(super) fn new(id: ClientTxId, peer: Peer, timers: Timers, request: Request) -> Ict {
        let request_bytes = request.to_bytes();
        Ict {
            id,
            peer,
            timers,
            state: State::Calling,
            request,
            request_bytes,
            ack: None,
            timer_a: None,
            interval_a: timers.t1,
            timer_b: None,
            timer_d: None,
            timer_m: None,
            pending_cancel: None,
        }
    }

    pub(super) fn start(&mut self, now: Instant, out: &mut Outbox) {
        out.send(self.peer, self.request_bytes.clone());
        if !self.peer.transport.is_reliable() {
            self.interval_a = self.timers.t1;
            self.timer_a = Some(now + self.interval_a);
        }
        self.timer_b = Some(now + self.timers.t1 * 64);
    }

    pub(super) fn state(&self) -> State {
        self.state
    }

    pub(super) fn peer(&self) -> Peer {
        self.peer
    }

    pub(super) fn handle_response(&mut self, now: Instant, response: Response, out: &mut Outbox) {
        let status = response.status;
        match self.state {
            State::Calling | State::Proceeding if status < 200 => {
                self.state = State::Proceeding;
                self.timer_a = None;
                self.timer_b = None;
            }
            State::Calling | State::Proceeding if status < 300 => {
                self.state = State::Accepted;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_m = Some(now + self.timers.t1 * 64);
            }
            State::Accepted if (200..300).contains(&status) => {}
            State::Calling | State::Proceeding => {
                self.state = State::Completed;
                self.timer_a = None;
                self.timer_b = None;
                let ack = self.ack_for(&response).to_bytes();
                out.send(self.peer, ack.clone());
                self.ack = Some(ack);
                let wait = if self.peer.transport.is_reliable() {
                    Duration::ZERO
                } else {
                    TIMER_D_UNRELIABLE
                };
                self.timer_d = Some(now + wait);
            }
            State::Completed if status >= 300 => {
                if let Some(ack) = &self.ack {
                    out.send(self.peer, ack.clone());
                }
                return;
            }
            _ => return,
        }
        out.emit(Event::Response {
            tx: self.id,
            response,
        });
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.timer_b) {
            out.emit(Event::ClientTimeout { tx: self.id });
            self.terminate();
            return;
        }
        if due(self.timer_d) || due(self.timer_m) {
            self.terminate();
            return;
        }
        if due(self.timer_a) {
            out.send(self.peer, self.request_bytes.clone());
            self.interval_a *= 2;
            self.timer_a = Some(now + self.interval_a);
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [self.timer_a, self.timer_b, self.timer_d, self.timer_m]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// The ACK for a non-2xx final response (§17.1.1.3).
    fn ack_for(&self, response: &Response) -> Request {
        let mut ack = self.derived_request(Method::Ack);
        if let Some(to) = response.headers.get("To") {
            ack.headers.set("To", to);
        }
        ack
    }

    /// The CANCEL of this INVITE (§9.1).
    pub(super) fn cancel_request(&self) -> Request {
        self.derived_request(Method::Cancel)
    }

    /// A request with the INVITE's Request-URI, top Via, From, To, Call-ID, CSeq number and
    /// Route set.
    fn derived_request(&self, method: Method) -> Request {
        let original = &self.request;
        let mut req = Request::new(method.clone(), original.uri.clone());
        if let Some(via) = original.headers.values("Via").next() {
            req.headers.push("Via", via);
        }
        for name in ["From", "To", "Call-ID"] {
            if let Some(value) = original.headers.get(name) {
                req.headers.push(name, value);
            }
        }
        let seq = original.cseq().map_or(1, |c| c.seq);
        req.headers.push("CSeq", CSeq { seq, method }.to_string());
        for route in original.headers.get_all("Route") {
            req.headers.push("Route", route);
        }
        req.headers.push("Max-Forwards", "70");
        req
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.timer_m = None;
    }
}
