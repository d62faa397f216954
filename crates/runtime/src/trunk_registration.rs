//! Outbound registration of trunks that ask for it (`register: true`): one task keeps each such
//! trunk registered — REGISTER, answer the 401/407 with the trunk's credentials, refresh at 80 %
//! of the granted interval, retry a minute after a failure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sip::{Method, Request, Response, Uri};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use crate::endpoint::{ClientReply, Command, EndpointHandle};
use crate::{Shared, call};

/// How long to wait after a failed registration before trying again.
const RETRY: Duration = Duration::from_secs(60);

/// Where a trunk's registration stands, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrunkRegistration {
    /// A REGISTER is on its way.
    Registering,
    /// Registered until about the given number of seconds from the last answer.
    Registered {
        /// The interval the registrar granted.
        expires: u32,
    },
    /// The last attempt failed; another comes after a minute.
    Failed {
        /// Why, in a sentence.
        reason: String,
    },
}

/// What the API can read: the registration state of each registering trunk.
pub(crate) type States = Arc<Mutex<HashMap<Uuid, TrunkRegistration>>>;

struct Trunk {
    record: store::TrunkRecord,
    call_id: String,
    tag: String,
    cseq: u32,
    /// When to send the next REGISTER.
    due: Instant,
    /// Whether the REGISTER in flight already answered a challenge.
    answered_challenge: bool,
}

/// Start the task; it checks the store for trunks every `period` and ends with the endpoint.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    endpoint: EndpointHandle,
    local_sip: std::net::SocketAddr,
    period: Duration,
) {
    tokio::spawn(async move {
        let (reply, mut replies) = mpsc::unbounded_channel::<(u64, ClientReply)>();
        let mut trunks: HashMap<Uuid, Trunk> = HashMap::new();
        // Tokens name the trunk a reply is for.
        let mut tokens: HashMap<u64, Uuid> = HashMap::new();
        let mut next_token = 0u64;
        let mut ticks = tokio::time::interval(period.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if endpoint.is_closed() {
                        return;
                    }
                    let Ok(records) = shared.store.all_trunks().await else { continue };
                    let wanted: HashMap<Uuid, store::TrunkRecord> =
                        records.into_iter().filter(|t| t.register).map(|t| (t.id, t)).collect();
                    trunks.retain(|id, _| wanted.contains_key(id));
                    shared.trunk_states().retain(|id, _| wanted.contains_key(id));
                    for (id, record) in wanted {
                        let trunk = trunks.entry(id).or_insert_with(|| Trunk {
                            record: record.clone(),
                            call_id: format!("{:08x}{:08x}@voxflow", call::rand_u32(), call::rand_u32()),
                            tag: format!("{:08x}", call::rand_u32()),
                            cseq: 0,
                            due: Instant::now(),
                            answered_challenge: false,
                        });
                        trunk.record = record;
                        if trunk.due <= Instant::now() {
                            // Nothing more is due until this attempt's answer (or Timer F).
                            trunk.due = Instant::now() + Duration::from_secs(3600);
                            trunk.answered_challenge = false;
                            match register_request(&shared, trunk, local_sip, None) {
                                Some(request) => {
                                    send(&shared, &endpoint, trunk, request, &reply, &mut tokens, &mut next_token).await;
                                }
                                None => {
                                    let reason = format!("bad trunk host {:?}", trunk.record.host);
                                    shared.set_trunk_state(id, TrunkRegistration::Failed { reason });
                                    trunk.due = Instant::now() + RETRY;
                                }
                            }
                        }
                    }
                }
                Some((token, outcome)) = replies.recv() => {
                    let Some(id) = tokens.remove(&token) else { continue };
                    let Some(trunk) = trunks.get_mut(&id) else { continue };
                    let next = handle_reply(&shared, trunk, local_sip, outcome);
                    if let Some(request) = next {
                        send(&shared, &endpoint, trunk, request, &reply, &mut tokens, &mut next_token).await;
                    }
                }
            }
        }
    });
}

async fn send(
    shared: &Shared,
    endpoint: &EndpointHandle,
    trunk: &Trunk,
    request: Request,
    reply: &mpsc::UnboundedSender<(u64, ClientReply)>,
    tokens: &mut HashMap<u64, Uuid>,
    next_token: &mut u64,
) {
    let peer = match shared.trunk_peer(&trunk.record).await {
        Ok(peer) => peer,
        Err(reason) => {
            shared.set_trunk_state(trunk.record.id, TrunkRegistration::Failed { reason });
            return;
        }
    };
    shared.set_trunk_state(trunk.record.id, TrunkRegistration::Registering);
    *next_token += 1;
    tokens.insert(*next_token, trunk.record.id);
    endpoint.send(Command::Request {
        peer,
        request: Box::new(request),
        reply: reply.clone(),
        token: *next_token,
    });
}

/// The REGISTER for `trunk` (the next CSeq), with credentials when answering a challenge.
fn register_request(
    shared: &Shared,
    trunk: &mut Trunk,
    local_sip: std::net::SocketAddr,
    authorization: Option<(&str, String)>,
) -> Option<Request> {
    let record = &trunk.record;
    let host = match record.port {
        Some(port) => format!("{}:{port}", record.host),
        None => record.host.clone(),
    };
    let registrar = Uri::parse(&format!("sip:{host}")).ok()?;
    let aor = format!("sip:{}@{}", record.username, record.host);
    let ours = call::fmt_host(shared.advertised_ip(local_sip.ip()), local_sip.port());
    let transport = if record.transport == "tcp" {
        ";transport=tcp"
    } else {
        ""
    };
    trunk.cseq += 1;
    let mut request = Request::new(Method::Register, registrar);
    request.headers.push("Max-Forwards", "70");
    request
        .headers
        .push("From", format!("<{aor}>;tag={}", trunk.tag));
    request.headers.push("To", format!("<{aor}>"));
    request.headers.push("Call-ID", trunk.call_id.clone());
    request
        .headers
        .push("CSeq", format!("{} REGISTER", trunk.cseq));
    request.headers.push(
        "Contact",
        format!("<sip:{}@{ours}{transport}>", record.username),
    );
    request
        .headers
        .push("Expires", record.register_expires.to_string());
    if let Some((name, value)) = authorization {
        request.headers.push(name, value);
    }
    Some(request)
}

/// What a REGISTER's outcome means for the trunk; a request to send at once (answering a
/// challenge), if any.
fn handle_reply(
    shared: &Shared,
    trunk: &mut Trunk,
    local_sip: std::net::SocketAddr,
    outcome: ClientReply,
) -> Option<Request> {
    let id = trunk.record.id;
    let fail = |trunk: &mut Trunk, reason: String| {
        tracing::warn!(trunk = %id, %reason, "trunk registration failed");
        shared.set_trunk_state(id, TrunkRegistration::Failed { reason });
        trunk.due = Instant::now() + RETRY;
        None
    };
    let response = match outcome {
        ClientReply::Timeout => return fail(trunk, "no answer from the registrar".into()),
        ClientReply::Final(response) => response,
    };
    match response.status {
        200..=299 => {
            let expires = granted(&response)
                .unwrap_or(trunk.record.register_expires)
                .max(1);
            shared.set_trunk_state(id, TrunkRegistration::Registered { expires });
            trunk.due = Instant::now() + Duration::from_secs(u64::from(expires) * 4 / 5);
            tracing::info!(trunk = %id, expires, "trunk registered");
            None
        }
        401 | 407 if !trunk.answered_challenge && !trunk.record.username.is_empty() => {
            let host = match trunk.record.port {
                Some(port) => format!("sip:{}:{port}", trunk.record.host),
                None => format!("sip:{}", trunk.record.host),
            };
            let record = &trunk.record;
            match crate::digest::answer_challenge(
                &response,
                &Method::Register,
                &host,
                &record.username,
                &record.password,
            ) {
                Ok(answer) => {
                    trunk.answered_challenge = true;
                    register_request(shared, trunk, local_sip, Some(answer))
                }
                Err(reason) => fail(trunk, reason),
            }
        }
        status => fail(trunk, format!("{status} {}", response.reason)),
    }
}

/// The interval the registrar granted: our Contact's `expires`, else the Expires header.
fn granted(response: &Response) -> Option<u32> {
    let from_contact = response
        .headers
        .get_all("Contact")
        .filter_map(|c| sip::NameAddr::parse(c).ok())
        .find_map(|c| c.param("expires").and_then(|e| e.parse().ok()));
    from_contact.or_else(|| {
        response
            .headers
            .get("Expires")
            .and_then(|e| e.trim().parse().ok())
    })
}
