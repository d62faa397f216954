//! The INVITE server transaction (RFC 3261 §17.2.1, with the Accepted state of RFC 6026 §7.1).
//!
//! ```text
//!  INVITE ─► Proceeding ──2xx──► Accepted ──Timer L──► Terminated
//!               │                 (2xx retransmitted until the ACK; AckTimeout if none)
//!               └─300-699─► Completed ──ACK──► Confirmed ──Timer I──► Terminated
//!                             (Timer G retransmits, Timer H gives up)
//! ```
//!
//! In Proceeding it may also carry reliable provisional responses (RFC 3262, see
//! `reliable.rs`): they are retransmitted until PRACKed, and a 2xx waits for their PRACKs.

use std::time::{Duration, Instant};

use super::reliable::{PrackMatch, Queued, ReliableProvisionals};
use super::{Event, Outbox, Peer, ServerTxId, Timers};
use crate::Response;

/// The states of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// One INVITE server transaction.
#[derive(Debug)]
pub(super) struct Ist {
    id: ServerTxId,
    /// Where responses go (see `transport::stamp_top_via`).
    peer: Peer,
    timers: Timers,
    state: State,
    /// The last response sent, as bytes, to answer retransmitted INVITEs and to retransmit.
    last_response: Option<Vec<u8>>,
    /// The To tag of the last response that had one (reused for the 200 to a CANCEL).
    to_tag: Option<String>,
    /// Timer G: retransmits a non-2xx final response (unreliable transports).
    timer_g: Option<Instant>,
    interval_g: Duration,
    /// Timer H: gives up waiting for the ACK of a non-2xx final response.
    timer_h: Option<Instant>,
    /// Timer I: absorbs ACK retransmissions in Confirmed.
    timer_i: Option<Instant>,
    /// Timer L (RFC 6026): how long Accepted absorbs INVITE retransmissions and waits for the
    /// ACK of the 2xx.
    timer_l: Option<Instant>,
    /// When to retransmit the 2xx next (RFC 3261 §13.3.1.4, unreliable transports).
    retransmit_2xx: Option<Instant>,
    interval_2xx: Duration,
    acked: bool,
    /// Whether the INVITE offered reliable provisional responses (`100rel`).
    pub(super) offers_100rel: bool,
    /// The reliable provisional responses sent so far (RFC 3262), if any.
    reliable: Option<Box<ReliableProvisionals>>,
    /// `100 Trying` to send if the transaction user has not answered by then (§17.2.1: 200 ms).
    trying: Option<(Instant, Box<Response>)>,
}

impl Ist {
    pub(super) fn new(id: ServerTxId, peer: Peer, timers: Timers) -> Ist {
        Ist {
            id,
            peer,
            timers,
            state: State::Proceeding,
            last_response: None,
            to_tag: None,
            timer_g: None,
            interval_g: timers.t1,
            timer_h: None,
            timer_i: None,
            timer_l: None,
            retransmit_2xx: None,
            interval_2xx: timers.t1,
            acked: false,
            offers_100rel: false,
            reliable: None,
            trying: None,
        }
    }

    /// Send `trying` (a `100 Trying`) at `at` unless the transaction user answers first.
    pub(super) fn arm_trying(&mut self, at: Instant, trying: Response) {
        self.trying = Some((at, Box::new(trying)));
    }

    pub(super) fn state(&self) -> State {
        self.state
    }

    pub(super) fn to_tag(&self) -> Option<&str> {
        self.to_tag.as_deref()
    }

    /// The INVITE arrived again: Proceeding and Completed answer with the last response;
    /// Confirmed and Accepted absorb it.
    pub(super) fn handle_retransmission(&mut self, now: Instant, out: &mut Outbox) {
        if self.state == State::Proceeding
            && self.last_response.is_none()
            && let Some((_, trying)) = self.trying.take()
        {
            // Nothing sent yet and the peer is impatient: the 100 now.
            self.respond(now, &trying, out);
            return;
        }
        if matches!(self.state, State::Proceeding | State::Completed)
            && let Some(bytes) = &self.last_response
        {
            out.send(self.peer, bytes.clone());
        }
    }

    /// An ACK for this transaction. Returns whether it is the first ACK of our 2xx (which the
    /// transaction user must hear of).
    pub(super) fn handle_ack(&mut self, now: Instant) -> bool {
        match self.state {
            State::Completed => {
                self.state = State::Confirmed;
                self.timer_g = None;
                self.timer_h = None;
                self.timer_i = Some(now + self.wait(self.timers.t4));
                false
            }
            State::Accepted if !self.acked => {
                self.acked = true;
                self.retransmit_2xx = None;
                true
            }
            _ => false,
        }
    }

    /// A response from the transaction user. Returns `false` (and sends nothing) when the
    /// state does not allow it: a provisional after a final, a non-2xx after a final.
    pub(super) fn respond(&mut self, now: Instant, response: &Response, out: &mut Outbox) -> bool {
        self.trying = None;
        let status = response.status;
        match self.state {
            State::Proceeding if status < 200 => {}
            State::Proceeding | State::Accepted if (200..300).contains(&status) => {
                if self.state == State::Proceeding {
                    self.state = State::Accepted;
                    self.timer_l = Some(now + self.timers.t1 * 64);
                    if !self.peer.transport.is_reliable() {
                        self.interval_2xx = self.timers.t1;
                        self.retransmit_2xx = Some(now + self.interval_2xx);
                    }
                }
            }
            State::Proceeding if status >= 300 => {
                self.state = State::Completed;
                if !self.peer.transport.is_reliable() {
                    self.interval_g = self.timers.t1;
                    self.timer_g = Some(now + self.interval_g);
                }
                self.timer_h = Some(now + self.timers.t1 * 64);
            }
            _ => return false,
        }
        if status >= 200
            && let Some(reliable) = &mut self.reliable
        {
            reliable.finish();
        }
        if let Some(tag) = response.to().as_ref().and_then(|to| to.tag()) {
            self.to_tag = Some(tag.to_owned());
        }
        let bytes = response.to_bytes();
        out.send(self.peer, bytes.clone());
        self.last_response = Some(bytes);
        true
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, out: &mut Outbox) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.trying.as_ref().map(|(at, _)| *at))
            && let Some((_, trying)) = self.trying.take()
        {
            self.respond(now, &trying, out);
        }
        if due(self.timer_h) || due(self.timer_i) {
            self.terminate();
            return;
        }
        if due(self.timer_l) {
            if !self.acked {
                out.emit(Event::AckTimeout { tx: self.id });
            }
            self.terminate();
            return;
        }
        if due(self.timer_g) {
            self.resend(out);
            self.interval_g = (self.interval_g * 2).min(self.timers.t2);
            self.timer_g = Some(now + self.interval_g);
        }
        if due(self.retransmit_2xx) {
            self.resend(out);
            self.interval_2xx = (self.interval_2xx * 2).min(self.timers.t2);
            self.retransmit_2xx = Some(now + self.interval_2xx);
        }
        if let Some(reliable) = &mut self.reliable {
            let mut resend = Vec::new();
            if reliable.handle_timeout(now, &mut resend) {
                out.emit(Event::ReliableTimeout { tx: self.id });
            }
            for bytes in resend {
                out.send(self.peer, bytes);
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timer_g,
            self.timer_h,
            self.timer_i,
            self.timer_l,
            self.retransmit_2xx,
            self.reliable.as_ref().and_then(|r| r.poll_timeout()),
            self.trying.as_ref().map(|(at, _)| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The reliable provisional state, created with RSeq `first_rseq` on first use.
    pub(super) fn reliable_mut(
        &mut self,
        first_rseq: impl FnOnce() -> u32,
    ) -> &mut ReliableProvisionals {
        self.reliable
            .get_or_insert_with(|| Box::new(ReliableProvisionals::new(first_rseq())))
    }

    /// Sends a reliable provisional response (already numbered, with Require and RSeq), or
    /// queues it until the first one is PRACKed. `false` if the state does not allow it.
    pub(super) fn respond_reliably(
        &mut self,
        now: Instant,
        rseq: u32,
        response: &Response,
        out: &mut Outbox,
    ) -> bool {
        self.trying = None;
        let Some(reliable) = self.reliable.as_mut() else {
            return false;
        };
        if self.state != State::Proceeding {
            return false;
        }
        let queued = Queued {
            rseq,
            to_tag: response
                .to()
                .as_ref()
                .and_then(|to| to.tag())
                .unwrap_or("")
                .to_owned(),
            bytes: response.to_bytes(),
        };
        if reliable.must_queue() {
            reliable.queue(queued);
        } else {
            self.send_reliable(now, queued, out);
        }
        true
    }

    /// Keeps a 2xx back while reliable provisional responses wait for their PRACK (RFC 3262
    /// §3); `true` if it was kept.
    pub(super) fn hold_2xx(&mut self, response: &Response) -> bool {
        match &mut self.reliable {
            Some(reliable) if self.state == State::Proceeding && reliable.pending() => {
                reliable.held_2xx = Some(response.clone());
                true
            }
            _ => false,
        }
    }

    /// A PRACK for `rseq` from the early dialog `to_tag`. On a match, sends what waited for
    /// it, and returns the held 2xx once nothing is left unacknowledged.
    pub(super) fn handle_prack(
        &mut self,
        now: Instant,
        rseq: u32,
        to_tag: &str,
        out: &mut Outbox,
    ) -> (PrackMatch, Option<Response>) {
        let Some(reliable) = self.reliable.as_mut() else {
            return (PrackMatch::NoMatch, None);
        };
        let (verdict, released) = reliable.handle_prack(rseq, to_tag);
        for queued in released {
            self.send_reliable(now, queued, out);
        }
        let release_2xx = match &mut self.reliable {
            Some(reliable) if !reliable.pending() => reliable.held_2xx.take(),
            _ => None,
        };
        (verdict, release_2xx)
    }

    fn send_reliable(&mut self, now: Instant, queued: Queued, out: &mut Outbox) {
        out.send(self.peer, queued.bytes.clone());
        self.last_response = Some(queued.bytes.clone());
        if !queued.to_tag.is_empty() {
            self.to_tag = Some(queued.to_tag.clone());
        }
        let retransmit = !self.peer.transport.is_reliable();
        if let Some(reliable) = &mut self.reliable {
            reliable.sent(now, queued, self.timers.t1, retransmit);
        }
    }

    pub(super) fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    fn resend(&self, out: &mut Outbox) {
        if let Some(bytes) = &self.last_response {
            out.send(self.peer, bytes.clone());
        }
    }

    /// `unreliable` on UDP, zero on TCP.
    fn wait(&self, unreliable: Duration) -> Duration {
        if self.peer.transport.is_reliable() {
            Duration::ZERO
        } else {
            unreliable
        }
    }

    fn terminate(&mut self) {
        self.state = State::Terminated;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.timer_l = None;
        self.retransmit_2xx = None;
    }
}
