//! The non-INVITE server transaction (RFC 3261 §17.2.2).
//!
//! ```text
//!  request ─► Trying ──1xx──► Proceeding ──final──► Completed ──Timer J──► Terminated
//!               └──────────────final─────────────────┘
//! ```

use std::time::{Duration, Instant};

use super::{Outbox, Peer, Timers};
use crate::Response;

/// The states of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// One non-INVITE server transaction.
#[derive(Debug)]
pub(super) struct Nist {
    peer: Peer,
    timers: Timers,
    state: State,
    last_response: Option<Vec<u8>>,
    /// Timer J: how long Completed absorbs request retransmissions.
    timer_j: Option<Instant>,
    /// Not in the RFC: a transaction the transaction user never answers is dropped after
    /// 64*T1, when the client has given up anyway (its Timer F), so it cannot leak.
    give_up: Option<Instant>,
}

impl Nist {
    pub(super) fn new(now: Instant, peer: Peer, timers: Timers) -> Nist {
        Nist {
            peer,
            timers,
            state: State::Trying,
            last_response: None,
            timer_j: None,
            give_up: Some(now + timers.t1 * 64),
        }
    }

    /// The request arrived again: answer with the last response, if any.
    pub(super) fn handle_retransmission(&mut self, out: &mut Outbox) {
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(bytes) = &self.last_response
        {
            out.send(self.peer, bytes.clone());
        }
    }

    /// A response from the transaction user; `false` if a final one was already sent.
    pub(super) fn respond(&mut self, now: Instant, response: &Response, out: &mut Outbox) -> bool {
        if !matches!(self.state, State::Trying | State::Proceeding) {
            return false;
        }
        if response.status < 200 {
            self.state = State::Proceeding;
        } else {
            self.state = State::Completed;
            self.give_up = None;
            let wait = if self.peer.transport.is_reliable() {
                Duration::ZERO
            } else {
                self.timers.t1 * 64
            };
            self.timer_j = Some(now + wait);
        }
        let bytes = response.to_bytes();
        out.send(self.peer, bytes.clone());
        self.last_response = Some(bytes);
        true
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if [self.timer_j, self.give_up]
            .into_iter()
            .flatten()
            .any(|t| t <= now)
        {
            self.state = State::Terminated;
            self.timer_j = None;
            self.give_up = None;
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [self.timer_j, self.give_up].into_iter().flatten().min()
    }

    pub(super) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }
}
