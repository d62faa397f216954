//! The UAS side of reliable provisional responses (RFC 3262 §3), kept by one INVITE server
//! transaction: RSeq numbering, retransmission of each reliable 1xx (T1, doubling, no T2 cap)
//! until its PRACK, the 64*T1 give-up, the 1xx held back until the first is acknowledged, and
//! the 2xx held back until every reliable 1xx is.
//!
//! ```text
//!  respond_reliably ─► Unacknowledged ──PRACK──► acknowledged (removed)
//!                        │ retransmit at T1, 2T1, 4T1 ... (unreliable transports)
//!                        └ 64*T1 without PRACK: ReliableTimeout, everything dropped
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::Response;

/// What became of a PRACK's RAck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PrackMatch {
    /// It acknowledged an unacknowledged reliable provisional response.
    Acknowledged,
    /// It names an RSeq this transaction never sent: the PRACK is malformed (400).
    NeverSent,
    /// It matches no unacknowledged reliable provisional response (481).
    NoMatch,
}

/// The reliable provisional responses of one INVITE server transaction.
#[derive(Debug)]
pub(super) struct ReliableProvisionals {
    /// The RSeq of the first one (1 ..= 2**31 - 1).
    first_rseq: u32,
    /// The RSeq the next one gets.
    next_rseq: u32,
    /// Whether a PRACK has come for the first one (until then the others wait, §3).
    first_acknowledged: bool,
    /// Sent and not yet acknowledged.
    unacknowledged: Vec<Unacknowledged>,
    /// Numbered, waiting for the first one's PRACK.
    queued: VecDeque<Queued>,
    /// A 2xx to the INVITE held until every reliable provisional response is acknowledged.
    pub(super) held_2xx: Option<Response>,
    /// Set once a final response is sent or the PRACK wait timed out: no more retransmissions.
    finished: bool,
}

/// One reliable provisional response waiting for its PRACK.
#[derive(Debug)]
struct Unacknowledged {
    rseq: u32,
    to_tag: String,
    bytes: Vec<u8>,
    /// When to retransmit next (unreliable transports).
    retransmit: Option<Instant>,
    interval: Duration,
    /// 64*T1 after it was first sent.
    give_up: Option<Instant>,
}

/// One reliable provisional response numbered but not sent yet.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) rseq: u32,
    pub(super) to_tag: String,
    pub(super) bytes: Vec<u8>,
}

impl ReliableProvisionals {
    /// No reliable provisional response yet; the first will have RSeq `first_rseq`.
    pub(super) fn new(first_rseq: u32) -> ReliableProvisionals {
        ReliableProvisionals {
            first_rseq,
            next_rseq: first_rseq,
            first_acknowledged: false,
            unacknowledged: Vec::new(),
            queued: VecDeque::new(),
            held_2xx: None,
            finished: false,
        }
    }

    /// Numbers the next reliable provisional response.
    pub(super) fn allocate_rseq(&mut self) -> u32 {
        let rseq = self.next_rseq;
        self.next_rseq = if rseq >= crate::reliable::MAX_RSEQ {
            1
        } else {
            rseq + 1
        };
        rseq
    }

    /// Whether a new reliable provisional response must wait for the first one's PRACK.
    pub(super) fn must_queue(&self) -> bool {
        !self.first_acknowledged && self.has_outstanding()
    }

    pub(super) fn queue(&mut self, queued: Queued) {
        self.queued.push_back(queued);
    }

    /// Records a reliable provisional response just sent at `now`.
    pub(super) fn sent(&mut self, now: Instant, queued: Queued, t1: Duration, retransmit: bool) {
        self.unacknowledged.push(Unacknowledged {
            rseq: queued.rseq,
            to_tag: queued.to_tag,
            bytes: queued.bytes,
            retransmit: retransmit.then(|| now + t1),
            interval: t1,
            give_up: Some(now + t1 * 64),
        });
    }

    /// Whether reliable provisional responses are sent and not all acknowledged (so a 2xx
    /// must wait).
    pub(super) fn pending(&self) -> bool {
        !self.finished && self.has_outstanding()
    }

    /// A PRACK for `rseq` in the early dialog of `to_tag` (its CSeq number and method already
    /// matched). On a match, the responses that waited for the first PRACK are returned, to be
    /// sent now.
    pub(super) fn handle_prack(&mut self, rseq: u32, to_tag: &str) -> (PrackMatch, Vec<Queued>) {
        let position = self
            .unacknowledged
            .iter()
            .position(|u| u.rseq == rseq && u.to_tag == to_tag);
        if let Some(i) = position {
            self.unacknowledged.remove(i);
            let released = if self.first_acknowledged || self.finished {
                Vec::new()
            } else {
                self.first_acknowledged = true;
                self.queued.drain(..).collect()
            };
            return (PrackMatch::Acknowledged, released);
        }
        let sent = self.unacknowledged.iter().any(|u| u.rseq == rseq) || self.was_issued(rseq);
        let queued = self.queued.iter().any(|q| q.rseq == rseq);
        let verdict = if queued || !sent {
            PrackMatch::NeverSent
        } else {
            PrackMatch::NoMatch
        };
        (verdict, Vec::new())
    }

    /// A final response was sent: no more retransmissions, nothing waits any more. PRACKs for
    /// responses still unacknowledged keep matching while the transaction lives.
    pub(super) fn finish(&mut self) {
        self.finished = true;
        self.queued.clear();
        self.held_2xx = None;
        for u in &mut self.unacknowledged {
            u.retransmit = None;
            u.give_up = None;
        }
    }

    /// Retransmits what is due into `resend`; returns `true` if a response went 64*T1 without
    /// PRACK (then everything is dropped: the transaction user must reject the INVITE).
    pub(super) fn handle_timeout(&mut self, now: Instant, resend: &mut Vec<Vec<u8>>) -> bool {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if self.unacknowledged.iter().any(|u| due(u.give_up)) {
            self.finish();
            self.unacknowledged.clear();
            return true;
        }
        for u in &mut self.unacknowledged {
            if due(u.retransmit) {
                resend.push(u.bytes.clone());
                u.interval *= 2;
                u.retransmit = Some(now + u.interval);
            }
        }
        false
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.unacknowledged
            .iter()
            .flat_map(|u| [u.retransmit, u.give_up])
            .flatten()
            .min()
    }

    /// Whether some reliable provisional response is unacknowledged or queued.
    fn has_outstanding(&self) -> bool {
        !self.unacknowledged.is_empty() || !self.queued.is_empty()
    }

    /// Whether `rseq` was handed out (sent, or queued) by this transaction.
    fn was_issued(&self, rseq: u32) -> bool {
        if self.next_rseq >= self.first_rseq {
            (self.first_rseq..self.next_rseq).contains(&rseq)
        } else {
            // wrapped past 2**31 - 1
            rseq >= self.first_rseq || rseq < self.next_rseq
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(rseq: u32) -> Queued {
        Queued {
            rseq,
            to_tag: "t".into(),
            bytes: vec![u8::try_from(rseq % 256).unwrap()],
        }
    }

    #[test]
    fn numbering_wraps_within_range() {
        let mut r = ReliableProvisionals::new(crate::reliable::MAX_RSEQ);
        assert_eq!(r.allocate_rseq(), crate::reliable::MAX_RSEQ);
        assert_eq!(r.allocate_rseq(), 1);
        assert!(r.was_issued(crate::reliable::MAX_RSEQ) && r.was_issued(1));
        assert!(!r.was_issued(2));
    }

    #[test]
    fn second_waits_for_first_prack() {
        let now = Instant::now();
        let t1 = Duration::from_millis(500);
        let mut r = ReliableProvisionals::new(10);
        assert!(!r.must_queue() && !r.pending());
        let first = r.allocate_rseq();
        r.sent(now, queued(first), t1, true);
        assert!(r.must_queue() && r.pending());
        let second = r.allocate_rseq();
        r.queue(queued(second));
        // the queued one was never sent
        assert_eq!(r.handle_prack(second, "t").0, PrackMatch::NeverSent);
        assert_eq!(r.handle_prack(first, "other").0, PrackMatch::NoMatch);
        let (verdict, released) = r.handle_prack(first, "t");
        assert_eq!(verdict, PrackMatch::Acknowledged);
        assert_eq!(released.len(), 1);
        assert!(!r.must_queue());
        // a PRACK for an acknowledged one matches nothing; one never issued is malformed
        assert_eq!(r.handle_prack(first, "t").0, PrackMatch::NoMatch);
        assert_eq!(r.handle_prack(999, "t").0, PrackMatch::NeverSent);
        assert_eq!(r.handle_prack(9, "t").0, PrackMatch::NeverSent);
    }
}
