//! Placing calls: resolve a destination to a Request-URI and a next hop, build the INVITE with our
//! SDP offer, record the call, and hand it to its own task (`call::spawn_outgoing`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sip::{Method, Peer, Request, Transport, Uri};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::endpoint::{ALLOW, CallKey, Command, EndpointHandle};
use crate::{Shared, call};

/// An address as the native API writes it: `{"type": "tel", "target": "+15550100"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `tel` (through a trunk), `sip` (a SIP URI dialled directly), `endpoint` or `extension`
    /// (a registered device, by username).
    pub kind: String,
    /// The number, URI or username.
    pub target: String,
}

/// A call to place.
#[derive(Debug, Clone)]
pub struct Originate {
    /// The account placing it (its trunks and devices are used).
    pub account_id: Uuid,
    /// Who is calling (the From user; a trunk's caller id overrides it).
    pub source: Address,
    /// Who to call.
    pub destination: Address,
    /// The stored flow the actions come from, if any (kept on the call record).
    pub flow_id: Option<Uuid>,
    /// The actions to run once answered (a JSON array with ids).
    pub actions: serde_json::Value,
    /// How long to let it ring before cancelling.
    pub ring_timeout: Duration,
}

/// Why a call could not be placed.
#[derive(Debug, thiserror::Error)]
pub enum OriginateError {
    /// The address type is not one we dial.
    #[error("unsupported address type {0:?}: use tel, sip, endpoint or extension")]
    UnsupportedType(String),
    /// The target does not parse.
    #[error("bad address {0:?}")]
    BadAddress(String),
    /// A `tel` destination needs a trunk and the account has none.
    #[error("no trunk to reach a tel destination: create one with POST /v1.0/trunks")]
    NoTrunk,
    /// No device of the account has that username.
    #[error("no device {0:?}")]
    UnknownEndpoint(String),
    /// The device has no live registration.
    #[error("device {0:?} is not registered")]
    NotRegistered(String),
    /// The host could not be resolved.
    #[error("cannot resolve {0}")]
    Resolve(String),
    /// The flow does not compile.
    #[error("invalid flow: {0}")]
    Flow(String),
    /// The account's limits refuse the call (concurrent calls, rate, destination prefixes).
    #[error("{0}")]
    Limited(#[from] crate::LimitError),
    /// No RTP port is free, or the store failed.
    #[error("cannot place the call now: {0}")]
    Unavailable(String),
}

/// Where a call goes: the Request-URI and the first hop, the From user to present, and the
/// credentials to answer a 401/407 with (a trunk's).
struct Target {
    uri: Uri,
    peer: Peer,
    from_user: String,
    credentials: Option<(String, String)>,
}

pub(crate) async fn originate(
    shared: &Arc<Shared>,
    endpoint: &EndpointHandle,
    local_sip: SocketAddr,
    req: Originate,
    bridge_leg: Option<call::BridgeLeg>,
    early_execution: bool,
) -> Result<store::CallRecord, OriginateError> {
    let program = flow::compile(&req.actions).map_err(|diagnostics| {
        let first = diagnostics
            .first()
            .map(|d| format!("{}: {}", d.path, d.message));
        OriginateError::Flow(first.unwrap_or_default())
    })?;
    let account = shared
        .store
        .account(req.account_id)
        .await
        .map_err(|e| OriginateError::Unavailable(e.to_string()))?
        .ok_or_else(|| OriginateError::Unavailable("the account no longer exists".into()))?;
    crate::limits::check_destination(
        &account.limits,
        &req.destination.kind,
        &req.destination.target,
    )?;
    let mut target = resolve(shared, &req).await?;
    // An outbound proxy takes the dialog-creating INVITE of sip and tel calls (RFC 3261
    // §8.1.2): sent to it, with a loose-routing Route naming it. Registered devices are reached
    // directly.
    let proxy_route = match (&shared.outbound_proxy, req.destination.kind.as_str()) {
        (Some(proxy), "sip" | "tel") => {
            let port = proxy.port().unwrap_or(5060);
            target.peer = Peer {
                transport: transport_of(proxy),
                addr: lookup(proxy.host(), port).await?,
                conn: None,
            };
            Some(format!("<{proxy};lr>"))
        }
        _ => None,
    };

    let socket = shared
        .media
        .bind_rtp()
        .map_err(|e| OriginateError::Unavailable(e.to_string()))?;
    let our_ip = shared.advertised_ip(local_sip.ip());
    let port = socket
        .local_addr()
        .map_err(|e| OriginateError::Unavailable(e.to_string()))?
        .port();
    let local_rtp = SocketAddr::new(our_ip, port);
    let origin = sdp::Origin::from(u64::from(call::rand_u32()));
    let offer = sdp::create_offer(local_rtp, &shared.codecs, origin);

    let call_sip_id = format!("{}@voxflow", Uuid::new_v4().simple());
    let local_tag = format!("{:08x}{:08x}", call::rand_u32(), call::rand_u32());
    let host = call::fmt_host(our_ip, local_sip.port());
    let transport = if target.peer.transport == Transport::Tcp {
        ";transport=tcp"
    } else {
        ""
    };
    let mut invite = Request::new(Method::Invite, target.uri.clone());
    let from_user = sip_user(&target.from_user);
    invite.headers.push("Max-Forwards", "70");
    if let Some(route) = proxy_route {
        invite.headers.push("Route", route);
    }
    invite
        .headers
        .push("From", format!("<sip:{from_user}@{host}>;tag={local_tag}"));
    invite.headers.push("To", format!("<{}>", target.uri));
    invite.headers.push("Call-ID", call_sip_id.clone());
    invite.headers.push("CSeq", "1 INVITE");
    invite
        .headers
        .push("Contact", format!("<sip:voxflow@{host}{transport}>"));
    invite.headers.push("Allow", ALLOW);
    invite.headers.push("Content-Type", "application/sdp");
    invite.body = offer.into_bytes();

    let now = store::utc_now();
    let record = store::CallRecord {
        id: Uuid::new_v4(),
        account_id: req.account_id,
        flow_id: req.flow_id,
        direction: "outgoing".into(),
        status: "dialing".into(),
        source_type: req.source.kind.clone(),
        source_target: req.source.target.clone(),
        destination_type: req.destination.kind.clone(),
        destination_target: req.destination.target.clone(),
        hangup_reason: String::new(),
        hangup_by: String::new(),
        sip_call_id: call_sip_id.clone(),
        tm_create: now.clone(),
        tm_ringing: None,
        tm_progressing: None,
        tm_hangup: None,
        tm_update: now,
    };
    let unix = time::OffsetDateTime::now_utc().unix_timestamp();
    shared.limits.admit(&account, true, unix)?;
    if let Err(e) = shared.store.insert_call(&record).await {
        shared.limits.release(account.id, unix);
        return Err(OriginateError::Unavailable(e.to_string()));
    }
    shared.call_changed(&record);
    tracing::info!(call = %record.id, destination = %req.destination.target, "placing call");

    let variables = variables(&record, &req);
    let key = CallKey {
        call_id: call_sip_id,
        local_tag,
    };
    let (inbox_tx, inbox) = mpsc::unbounded_channel();
    endpoint.send(Command::Register {
        call: key.clone(),
        inbox: inbox_tx,
    });
    call::spawn_outgoing(call::Outgoing {
        shared: shared.clone(),
        endpoint: endpoint.clone(),
        key,
        invite,
        peer: target.peer,
        local_sip,
        rtp_socket: socket,
        local_rtp,
        origin,
        record: record.clone(),
        program: Arc::new(program),
        variables,
        ring_timeout: req.ring_timeout,
        credentials: target.credentials,
        inbox,
        bridge_leg,
        early_execution,
    });
    Ok(record)
}

/// Flow variables an outbound call starts with.
fn variables(record: &store::CallRecord, req: &Originate) -> flow::Variables {
    [
        ("voipbin.call.id", record.id.to_string()),
        ("voipbin.call.direction", "outgoing".to_owned()),
        ("voipbin.call.source.type", req.source.kind.clone()),
        ("voipbin.call.source.target", req.source.target.clone()),
        (
            "voipbin.call.destination.type",
            req.destination.kind.clone(),
        ),
        (
            "voipbin.call.destination.target",
            req.destination.target.clone(),
        ),
        ("voipbin.call.digits", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A From user part made only of characters that need no escaping.
fn sip_user(user: &str) -> String {
    let clean: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_' | '.' | '*' | '#'))
        .collect();
    if clean.is_empty() {
        "voxflow".to_owned()
    } else {
        clean
    }
}

async fn resolve(shared: &Shared, req: &Originate) -> Result<Target, OriginateError> {
    let dest = &req.destination;
    match dest.kind.as_str() {
        "sip" => {
            let text = if dest.target.starts_with("sip:") || dest.target.starts_with("sips:") {
                dest.target.clone()
            } else {
                format!("sip:{}", dest.target)
            };
            let uri =
                Uri::parse(&text).map_err(|_| OriginateError::BadAddress(dest.target.clone()))?;
            let transport = transport_of(&uri);
            let addr = lookup(uri.host(), uri.port().unwrap_or(5060)).await?;
            Ok(Target {
                peer: Peer {
                    transport,
                    addr,
                    conn: None,
                },
                uri,
                from_user: req.source.target.clone(),
                credentials: None,
            })
        }
        "tel" => {
            let number = dest.target.trim();
            let digits = number.strip_prefix('+').unwrap_or(number);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(OriginateError::BadAddress(dest.target.clone()));
            }
            let trunks = shared
                .store
                .list_trunks(
                    req.account_id,
                    &store::Page {
                        size: 1000,
                        after: None,
                    },
                )
                .await
                .map_err(|e| OriginateError::Unavailable(e.to_string()))?;
            // The oldest trunk of the account carries tel calls (routing rules come later).
            let trunk = trunks.last().ok_or(OriginateError::NoTrunk)?;
            let host = match trunk.port {
                Some(port) => format!("{}:{port}", trunk.host),
                None => trunk.host.clone(),
            };
            let uri = Uri::parse(&format!("sip:{number}@{host}"))
                .map_err(|_| OriginateError::BadAddress(dest.target.clone()))?;
            // RFC 3263: NAPTR/SRV/A for a trunk named by host without a port.
            let peer = shared
                .trunk_peer(trunk)
                .await
                .map_err(OriginateError::Resolve)?;
            let from_user = if trunk.caller_id.is_empty() {
                req.source.target.clone()
            } else {
                trunk.caller_id.clone()
            };
            let credentials = (!trunk.username.is_empty())
                .then(|| (trunk.username.clone(), trunk.password.clone()));
            Ok(Target {
                uri,
                peer,
                from_user,
                credentials,
            })
        }
        "endpoint" | "extension" => {
            let device = shared
                .store
                .device_by_username(&dest.target)
                .await
                .map_err(|e| OriginateError::Unavailable(e.to_string()))?
                .filter(|d| d.account_id == req.account_id)
                .ok_or_else(|| OriginateError::UnknownEndpoint(dest.target.clone()))?;
            let now = unix_now();
            let registration = shared
                .store
                .registrations(device.id)
                .await
                .map_err(|e| OriginateError::Unavailable(e.to_string()))?
                .into_iter()
                .filter(|r| r.expires_at > now)
                .max_by(|a, b| a.tm_update.cmp(&b.tm_update))
                .ok_or_else(|| OriginateError::NotRegistered(dest.target.clone()))?;
            let uri = Uri::parse(&registration.contact)
                .map_err(|_| OriginateError::BadAddress(registration.contact.clone()))?;
            // Send where the REGISTER came from (it works through NAT), else to the Contact.
            let peer = match parse_source(&registration.source) {
                Some(peer) => peer,
                None => Peer {
                    transport: transport_of(&uri),
                    addr: lookup(uri.host(), uri.port().unwrap_or(5060)).await?,
                    conn: None,
                },
            };
            Ok(Target {
                uri,
                peer,
                from_user: req.source.target.clone(),
                credentials: None,
            })
        }
        other => Err(OriginateError::UnsupportedType(other.to_owned())),
    }
}

fn transport_of(uri: &Uri) -> Transport {
    match uri.param("transport") {
        Some(t) if t.eq_ignore_ascii_case("tcp") => Transport::Tcp,
        _ => Transport::Udp,
    }
}

/// `udp:IP:PORT` / `tcp:IP:PORT` as registrations store their source.
pub(crate) fn parse_source(text: &str) -> Option<Peer> {
    let (transport, addr) = text.split_once(':')?;
    let transport = match transport {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        _ => return None,
    };
    Some(Peer {
        transport,
        addr: addr.parse().ok()?,
        conn: None,
    })
}

/// Resolve a host (an IP literal, or a name through the system resolver: A/AAAA).
pub(crate) async fn lookup(host: &str, port: u16) -> Result<SocketAddr, OriginateError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let resolved = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::lookup_host((bare, port)),
    )
    .await
    .map_err(|_| OriginateError::Resolve(format!("{host} (timed out)")))?
    .map_err(|e| OriginateError::Resolve(format!("{host}: {e}")))?;
    resolved
        .into_iter()
        .next()
        .ok_or_else(|| OriginateError::Resolve(host.to_owned()))
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
