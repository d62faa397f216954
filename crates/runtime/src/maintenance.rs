//! Periodic upkeep of registrations: expired bindings are deleted on time, and every live
//! contact gets an OPTIONS keep-alive (it keeps NAT bindings open and finds dead phones: a
//! contact that never answers loses its binding).

use std::sync::Arc;
use std::time::Duration;

use sip::{Method, Request, Uri};

use crate::digest::unix_now;
use crate::endpoint::{ClientReply, Command, EndpointHandle};
use crate::{Shared, call, outbound};

/// Start the upkeep task, every `period`; it ends when the endpoint does.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    endpoint: EndpointHandle,
    local_sip: std::net::SocketAddr,
    period: Duration,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if endpoint.is_closed() {
                return;
            }
            run_once(&shared, &endpoint, local_sip).await;
        }
    });
}

async fn run_once(
    shared: &Arc<Shared>,
    endpoint: &EndpointHandle,
    local_sip: std::net::SocketAddr,
) {
    let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    match shared.store.expire_registrations(now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(expired = n, "registrations expired"),
        Err(e) => tracing::warn!(error = %e, "could not expire registrations"),
    }
    let live = match shared.store.live_registrations(now).await {
        Ok(live) => live,
        Err(e) => {
            tracing::warn!(error = %e, "could not list registrations");
            return;
        }
    };
    let host = call::fmt_host(shared.advertised_ip(local_sip.ip()), local_sip.port());
    let (reply, mut replies) = tokio::sync::mpsc::unbounded_channel();
    let mut pending = std::collections::HashMap::new();
    for (token, registration) in (0u64..).zip(live) {
        let (Some(peer), Ok(uri)) = (
            outbound::parse_source(&registration.source),
            Uri::parse(&registration.contact),
        ) else {
            continue;
        };
        let mut options = Request::new(Method::Options, uri.clone());
        options.headers.push("Max-Forwards", "70");
        options.headers.push(
            "From",
            format!("<sip:voxflow@{host}>;tag={:08x}", call::rand_u32()),
        );
        options.headers.push("To", format!("<{uri}>"));
        options.headers.push(
            "Call-ID",
            format!("{:08x}{:08x}@voxflow", call::rand_u32(), call::rand_u32()),
        );
        options.headers.push("CSeq", "1 OPTIONS");
        endpoint.send(Command::Request {
            peer,
            request: Box::new(options),
            reply: reply.clone(),
            token,
        });
        pending.insert(token, (registration.device_id, registration.contact));
    }
    drop(reply);
    // Any answer, even an error, proves the contact is alive; only silence (Timer F) drops it.
    // The sweep's answers are awaited in a task of their own, so the next tick is not delayed.
    let shared = shared.clone();
    tokio::spawn(async move {
        while let Some((token, outcome)) = replies.recv().await {
            if let (ClientReply::Timeout, Some((device, contact))) =
                (outcome, pending.remove(&token))
            {
                drop_contact(&shared, device, contact).await;
            }
        }
    });
}

/// A keep-alive got no answer at all: forget that contact.
async fn drop_contact(shared: &Shared, device: uuid::Uuid, contact: String) {
    let Ok(current) = shared.store.registrations(device).await else {
        return;
    };
    let kept: Vec<_> = current
        .into_iter()
        .filter(|r| r.contact != contact)
        .collect();
    if let Err(e) = shared.store.replace_registrations(device, &kept).await {
        tracing::warn!(error = %e, "could not drop an unreachable contact");
    } else {
        tracing::info!(%contact, "contact did not answer its keep-alive; binding removed");
    }
}
