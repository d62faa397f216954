//! The registrar's IO side: a REGISTER is authenticated against the device named in its To
//! header, its bindings are worked out by `sip::registrar` (RFC 3261 §10.3) and stored.

use std::sync::Arc;

use sip::registrar::{Binding, RegisterOutcome, RegistrarPolicy, process_register};
use sip::{Peer, Request, Response, ServerTxId, Transport};

use crate::digest::{self, Verdict};
use crate::endpoint::{Command, EndpointHandle};
use crate::{Shared, call};

/// Handle one REGISTER off the endpoint task (it needs the store).
pub(crate) fn spawn(
    shared: Arc<Shared>,
    endpoint: EndpointHandle,
    tx: ServerTxId,
    request: Request,
    peer: Peer,
) {
    tokio::spawn(async move {
        let response = register(&shared, &request, peer).await;
        endpoint.send(Command::Respond {
            tx,
            response: Box::new(response),
        });
    });
}

/// `udp:IP:PORT` / `tcp:IP:PORT`: where a REGISTER came from.
pub(crate) fn source_text(peer: Peer) -> String {
    let transport = if peer.transport == Transport::Tcp {
        "tcp"
    } else {
        "udp"
    };
    format!("{transport}:{}", peer.addr)
}

async fn register(shared: &Shared, request: &Request, peer: Peer) -> Response {
    let local_tag = format!("{:08x}{:08x}", call::rand_u32(), call::rand_u32());
    let reply = |status: u16| {
        let mut response = Response::for_request(request, status);
        response.set_to_tag(&local_tag);
        response
    };
    let Some(username) = request
        .to()
        .and_then(|to| to.uri().user().map(str::to_owned))
    else {
        return reply(400);
    };
    let device = match shared.store.device_by_username(&username).await {
        Ok(Some(device)) => device,
        Ok(None) => return reply(404),
        Err(e) => {
            tracing::error!(error = %e, "device lookup failed");
            return reply(500);
        }
    };
    if let Verdict::Refuse(response) =
        digest::authenticate(shared, request, peer.addr.ip(), &device, &local_tag)
    {
        return response;
    }
    let current = match shared.store.registrations(device.id).await {
        Ok(records) => records,
        Err(e) => {
            tracing::error!(error = %e, "registration lookup failed");
            return reply(500);
        }
    };
    let bindings: Vec<Binding> = current
        .iter()
        .map(|r| Binding {
            contact: r.contact.clone(),
            expires_at: u64::try_from(r.expires_at).unwrap_or(0),
            call_id: r.call_id.clone(),
            cseq: r.cseq,
            q: r.q,
            instance: r.instance.clone(),
        })
        .collect();
    let now_unix = digest::unix_now();
    match process_register(request, &bindings, now_unix, &RegistrarPolicy::default()) {
        RegisterOutcome::Accepted { bindings, response } => {
            let this_source = source_text(peer);
            let stamp = store::utc_now();
            let records: Vec<store::RegistrationRecord> = bindings
                .into_iter()
                .map(|b| {
                    // A binding this REGISTER did not touch keeps the source it came from.
                    let refreshed = b.call_id == request.call_id().unwrap_or_default()
                        && Some(b.cseq) == request.cseq().map(|c| c.seq);
                    let old = current.iter().find(|r| r.contact == b.contact);
                    let source = match old {
                        Some(old) if !refreshed => old.source.clone(),
                        _ => this_source.clone(),
                    };
                    store::RegistrationRecord {
                        device_id: device.id,
                        contact: b.contact,
                        expires_at: i64::try_from(b.expires_at).unwrap_or(i64::MAX),
                        call_id: b.call_id,
                        cseq: b.cseq,
                        q: b.q,
                        instance: b.instance,
                        source,
                        tm_update: if refreshed {
                            stamp.clone()
                        } else {
                            old.map_or_else(|| stamp.clone(), |o| o.tm_update.clone())
                        },
                    }
                })
                .collect();
            if let Err(e) = shared
                .store
                .replace_registrations(device.id, &records)
                .await
            {
                tracing::error!(error = %e, "could not store the registration");
                return reply(500);
            }
            tracing::info!(user = %device.username, contacts = records.len(), "registered");
            let mut response = response;
            response.set_to_tag(&local_tag);
            response
        }
        RegisterOutcome::Rejected { response } => response,
    }
}
