//! Per-account outbound safety: concurrent calls, calls per second, and destination prefixes.
//!
//! A call takes a slot when it is admitted (an inbound call before it is answered with 180,
//! an outbound one before its INVITE) and gives it back when its record reaches `hangup` (or
//! when it fails before it had a record). Admission checks and reserves under one lock, so two
//! calls started at once cannot both take the last slot.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The account already has its maximum of live calls.
    #[error("the account has {0} calls in progress, its limit (max_concurrent_calls)")]
    Concurrent(u32),
    /// The account started its maximum of outbound calls this second.
    #[error("the account may start {0} calls per second (max_calls_per_second)")]
    Rate(u32),
    /// The destination does not start with any allowed prefix.
    #[error("destination {0:?} is not allowed: the account allows only {1} (destination_prefixes)")]
    Destination(String, String),
}

#[derive(Debug, Default)]
struct Usage {
    live: u32,
    /// The unix second of `started`, and how many outbound calls started in it.
    second: i64,
    started: u32,
}

/// Slots of every account with live calls.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    usage: Mutex<HashMap<Uuid, Usage>>,
}

/// The digits a prefix is compared with: a `tel` number or the user part of a `sip` URI,
/// without `+` (`sip:+15550100@carrier` → `15550100`).
fn dialled(kind: &str, target: &str) -> Option<String> {
    let number = match kind {
        "tel" => target.trim().trim_start_matches("tel:"),
        "sip" => {
            let rest = target.trim();
            let rest = rest
                .strip_prefix("sips:")
                .or_else(|| rest.strip_prefix("sip:"))
                .unwrap_or(rest);
            rest.split('@').next().unwrap_or(rest)
        }
        // Devices of the account (endpoint, extension) are not the toll-fraud surface.
        _ => return None,
    };
    Some(
        number
            .trim_start_matches('+')
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '(' | ')' | '.'))
            .collect(),
    )
}

/// Whether `limits` let a call go to `kind:target`.
pub(crate) fn check_destination(
    limits: &store::AccountLimits,
    kind: &str,
    target: &str,
) -> Result<(), LimitError> {
    if limits.destination_prefixes.is_empty() {
        return Ok(());
    }
    let Some(digits) = dialled(kind, target) else {
        return Ok(());
    };
    let allowed = limits
        .destination_prefixes
        .iter()
        .any(|p| digits.starts_with(p.trim_start_matches('+')));
    if allowed {
        Ok(())
    } else {
        Err(LimitError::Destination(
            target.to_owned(),
            limits.destination_prefixes.join(", "),
        ))
    }
}

impl Limiter {
    /// Take a slot for a call of `account` if its limits allow one now (`outbound` calls also
    /// count against the per-second rate). `now_unix` is the current unix second.
    pub(crate) fn admit(
        &self,
        account: &store::Account,
        outbound: bool,
        now_unix: i64,
    ) -> Result<(), LimitError> {
        let mut usage = self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = usage.entry(account.id).or_default();
        if let Some(max) = account.limits.max_concurrent_calls
            && entry.live >= max
        {
            return Err(LimitError::Concurrent(max));
        }
        if outbound {
            if entry.second != now_unix {
                entry.second = now_unix;
                entry.started = 0;
            }
            if let Some(max) = account.limits.max_calls_per_second
                && entry.started >= max
            {
                return Err(LimitError::Rate(max));
            }
            entry.started += 1;
        }
        entry.live += 1;
        Ok(())
    }

    /// Give a slot back (the call ended, or never got going). The account's entry goes once
    /// it has no live call and its rate window is over (`now_unix` is the current second), so
    /// hanging up at once does not reset the per-second count.
    pub(crate) fn release(&self, account: Uuid, now_unix: i64) {
        let mut usage = self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = usage.get_mut(&account) {
            entry.live = entry.live.saturating_sub(1);
            if entry.live == 0 && entry.second < now_unix {
                usage.remove(&account);
            }
        }
        // Entries of idle accounts whose window is over (bounded by the accounts seen this
        // second).
        usage.retain(|_, u| u.live > 0 || u.second >= now_unix);
    }

    /// Live calls of `account`.
    #[cfg(test)]
    pub(crate) fn live(&self, account: Uuid) -> u32 {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&account)
            .map_or(0, |u| u.live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(limits: store::AccountLimits) -> store::Account {
        store::Account {
            id: Uuid::new_v4(),
            name: "a".into(),
            limits,
            tm_create: String::new(),
            tm_update: String::new(),
        }
    }

    #[test]
    fn limits_concurrent_calls_are_slots_given_back_on_release() {
        let limiter = Limiter::default();
        let a = account(store::AccountLimits {
            max_concurrent_calls: Some(2),
            ..Default::default()
        });
        assert_eq!(limiter.admit(&a, false, 0), Ok(()));
        assert_eq!(limiter.admit(&a, true, 0), Ok(()));
        assert_eq!(limiter.admit(&a, true, 0), Err(LimitError::Concurrent(2)));
        limiter.release(a.id, 0);
        assert_eq!(limiter.live(a.id), 1);
        assert_eq!(limiter.admit(&a, true, 1), Ok(()));
        limiter.release(a.id, 1);
        limiter.release(a.id, 1);
        limiter.release(a.id, 1);
        assert_eq!(limiter.live(a.id), 0);
    }

    #[test]
    fn limits_rate_counts_outbound_starts_per_second() {
        let limiter = Limiter::default();
        let a = account(store::AccountLimits {
            max_calls_per_second: Some(2),
            ..Default::default()
        });
        assert!(limiter.admit(&a, true, 10).is_ok());
        assert!(limiter.admit(&a, true, 10).is_ok());
        assert_eq!(limiter.admit(&a, true, 10), Err(LimitError::Rate(2)));
        assert!(limiter.admit(&a, false, 10).is_ok(), "inbound is not rated");
        assert!(limiter.admit(&a, true, 11).is_ok(), "a new second");
        assert!(limiter.admit(&a, true, 11).is_ok());
        // Hanging up at once does not reset the count of this second.
        for _ in 0..5 {
            limiter.release(a.id, 11);
        }
        assert_eq!(limiter.live(a.id), 0);
        assert_eq!(limiter.admit(&a, true, 11), Err(LimitError::Rate(2)));
        assert!(limiter.admit(&a, true, 12).is_ok());
    }

    #[test]
    fn limits_destination_prefixes_guard_tel_and_sip_only() {
        let limits = store::AccountLimits {
            destination_prefixes: vec!["+1555".into(), "44".into()],
            ..Default::default()
        };
        assert!(check_destination(&limits, "tel", "+15550100").is_ok());
        assert!(check_destination(&limits, "tel", "+1-555-0100").is_ok());
        assert!(check_destination(&limits, "sip", "sip:+442071234567@carrier.example").is_ok());
        assert!(check_destination(&limits, "tel", "+882123456").is_err());
        assert!(check_destination(&limits, "sip", "sip:900123@premium.example").is_err());
        assert!(check_destination(&limits, "endpoint", "alice").is_ok());
        assert!(check_destination(&store::AccountLimits::default(), "tel", "+882").is_ok());
    }
}
