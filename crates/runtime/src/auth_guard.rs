//! Brute-force guard: counts failed digest authentications per source IP and blocks a source
//! that fails too often. Time is an input, so it is tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures allowed per source within [`WINDOW`] before it is blocked.
const MAX_FAILURES: u32 = 10;
/// The window failures are counted in.
const WINDOW: Duration = Duration::from_secs(60);
/// How long a source stays blocked.
const BLOCK: Duration = Duration::from_secs(300);
/// Sources tracked at most (a flood of spoofed sources cannot exhaust memory).
const MAX_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Per-source failure counts.
#[derive(Debug, Default)]
pub(crate) struct AuthGuard {
    sources: HashMap<IpAddr, Record>,
}

impl AuthGuard {
    /// Whether `ip` is blocked at `now`.
    pub(crate) fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|r| r.blocked_until)
            .is_some_and(|until| now < until)
    }

    /// A failed authentication from `ip`. Returns true when it gets `ip` blocked.
    pub(crate) fn handle_failure(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&ip) {
            self.forget_old(now);
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let record = self.sources.entry(ip).or_insert(Record {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(record.window_start) > WINDOW {
            *record = Record {
                window_start: now,
                failures: 0,
                blocked_until: record.blocked_until,
            };
        }
        record.failures += 1;
        if record.failures >= MAX_FAILURES && record.blocked_until.is_none_or(|u| u <= now) {
            record.blocked_until = Some(now + BLOCK);
            return true;
        }
        false
    }

    /// A successful authentication from `ip` clears its count.
    pub(crate) fn handle_success(&mut self, ip: IpAddr) {
        if self
            .sources
            .get(&ip)
            .is_some_and(|r| r.blocked_until.is_none())
        {
            self.sources.remove(&ip);
        }
    }

    fn forget_old(&mut self, now: Instant) {
        self.sources.retain(|_, r| {
            now.duration_since(r.window_start) <= WINDOW || r.blocked_until.is_some_and(|u| now < u)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_failures_in_a_minute_block_for_five_minutes() {
        let mut guard = AuthGuard::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..9 {
            assert!(!guard.handle_failure(ip, t0 + Duration::from_secs(i)));
        }
        assert!(!guard.is_blocked(ip, t0 + Duration::from_secs(9)));
        assert!(guard.handle_failure(ip, t0 + Duration::from_secs(9)));
        assert!(guard.is_blocked(ip, t0 + Duration::from_secs(10)));
        assert!(guard.is_blocked(ip, t0 + Duration::from_secs(308)));
        assert!(!guard.is_blocked(ip, t0 + Duration::from_secs(310)));
        // Other sources are unaffected.
        assert!(!guard.is_blocked("192.0.2.8".parse().unwrap(), t0));
    }

    #[test]
    fn slow_failures_never_block_and_success_clears() {
        let mut guard = AuthGuard::default();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..30 {
            assert!(!guard.handle_failure(ip, t0 + Duration::from_secs(i * 10)));
            if i % 5 == 4 {
                guard.handle_success(ip);
            }
        }
        assert!(!guard.is_blocked(ip, t0 + Duration::from_secs(300)));
    }
}
