//! The non-INVITE client transaction (RFC 3261 §17.1.2).
//!
//! ```text
//!  (Waiting) ─► Trying ──1xx──► Proceeding ──final──► Completed ──Timer K──► Terminated
//!                 │ Timer E retransmits, Timer F gives up (ClientTimeout)
//! ```
//! `Waiting` is not in the RFC: a CANCEL held until its INVITE has had a provisional response
//! (§9.1).

use std::time::{Duration, Instant};

use super::{ClientTxId, Event, Outbox, Peer, Timers};
use crate::Response;

/// The states of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Waiting,
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// One non-INVITE client transaction.
#[derive(Debug)]
pub(super) struct Nict {
    id: ClientTxId,
    peer: Peer,
    timers: Timers,
    state: State,
    request: Vec<u8>,
    /// Timer E: retransmits the request (unreliable transports).
    timer_e: Option<Instant>,
    interval_e: Duration,
    /// Timer F: gives up on the request.
    timer_f: Option<Instant>,
    /// Timer K: how long Completed absorbs response retransmissions.
    timer_k: Option<Instant>,
}

impl Nict {
    /// A transaction in `Waiting`; [`Nict::start`] sends the request.
    pub(super) fn new(id: ClientTxId, peer: Peer, timers: Timers, request: Vec<u8>) -> Nict {
        Nict {
            id,
            peer,
            timers,
            state: State::Waiting,
            request,
            timer_e: None,
            interval_e: timers.t1,
            timer_f: None,
            timer_k: None,
        }
    }

    pub(super) fn start(&mut self, now: Instant, out: &mut Outbox) {
        if self.state != State::Waiting {
            return;
        }
        self.state = State::Trying;
        out.send(self.peer, self.request.clone());
        if !self.peer.transport.is_reliable() {
            self.interval_e = self.timers.t1;
            self.timer_e = Some(now + self.interval_e);
        }
        self.timer_f = Some(now + self.timers.t1 * 64);
    }

    /// Drops a transaction still `Waiting` (its INVITE ended before any provisional).
    pub(super) fn abandon(&mut self) {
        if self.state == State::Waiting {
            self.state = State::Terminated;
        }
    }

    pub(super) fn handle_response(&mut self, now: Instant, response: Response, out: &mut Outbox) {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return; // Completed absorbs retransmitted finals
        }
        if response.status < 200 {
            self.state = State::Proceeding;
        } else {
            self.state = State::Completed;
            self.timer_e = None;
            self.timer_f = None;
            let wait = if self.peer.transport.is_reliable() {
                Duration::ZERO
            } else {
                self.timers.t4
            };
            self.timer_k = Some(now + wait);
        }
        out.emit(Event::Response {
            tx: self.id,
            response,
        });
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.timer_f) {
            out.emit(Event::ClientTimeout { tx: self.id });
            self.terminate();
            return;
        }
        if due(self.timer_k) {
            self.terminate();
            return;
        }
        if due(self.timer_e) {
            out.send(self.peer, self.request.clone());
            self.interval_e = if self.state == State::Proceeding {
                self.timers.t2
            } else {
                (self.interval_e * 2).min(self.timers.t2)
            };
            self.timer_e = Some(now + self.interval_e);
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [self.timer_e, self.timer_f, self.timer_k]
            .into_iter()
            .flatten()
            .min()
    }

    pub(super) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
    }
}
