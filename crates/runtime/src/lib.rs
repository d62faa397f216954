//! voxflow runtime: the only crate with sockets, tasks and timers.
//!
//! It drives the sans-IO cores: the SIP endpoint task owns the signalling sockets and the
//! [`sip::TransactionLayer`]; each call is one task owning its [`sip::Dialog`], its media session
//! handle and its [`flow::Interpreter`]; media runs on a few worker threads that tick every RTP
//! session on a shared 20 ms clock (see `media_engine`). No protocol logic lives here.
//!
//! Start it with [`Runtime::start`]; stop it with [`Runtime::shutdown`], which hangs up every call
//! (BYE) before returning.
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod allow_list;
mod audio;
mod audio_cache;
mod auth_guard;
mod call;
mod digest;
mod dns;
mod endpoint;
pub mod events;
mod flow_io;
mod limits;
mod maintenance;
mod media_engine;
mod metrics;
mod outbound;
mod recording;
mod registrar;
mod trunk_registration;
mod url_guard;
pub mod views;
pub mod webhooks;

pub use allow_list::{allows as ip_allowed, parse_cidr};
pub use digest::device_ha1;
pub use limits::LimitError;
pub use metrics::Health;
pub use outbound::{Address, Originate, OriginateError};
pub use trunk_registration::TrunkRegistration;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// SIP listen address (UDP, and TCP on the same port).
    pub sip_listen: SocketAddr,
    /// RTP port range, inclusive.
    pub rtp_ports: (u16, u16),
    /// Where caches live (TTS audio under `cache/`).
    pub data_dir: PathBuf,
    /// Media worker threads (default: one per core).
    pub media_workers: usize,
    /// The address put in SDP and Contact when listening on an unspecified address.
    pub advertise_ip: Option<IpAddr>,
    /// Caps for every flow run.
    pub flow_limits: flow::Limits,
    /// The digest realm devices authenticate in (their stored HA1 values depend on it).
    pub realm: String,
    /// Digest algorithms challenged with, most preferred first (MD5 and/or SHA-256).
    pub digest_algorithms: Vec<sip::auth::Algorithm>,
    /// Which inbound INVITEs are taken.
    pub inbound_policy: InboundPolicy,
    /// A proxy every outbound sip/tel call is sent through (its SIP URI), if any.
    pub outbound_proxy: Option<sip::Uri>,
    /// How often the registration upkeep runs: registrations expired, contacts sent an OPTIONS
    /// keep-alive, trunks that register checked.
    pub keepalive_interval: Duration,
    /// Most bytes of downloaded audio (`play` URLs) kept under `data_dir/cache/audio`; the
    /// least recently used files go first. 0 keeps none.
    pub audio_cache_max_bytes: u64,
    /// Directories `play` may read local files from (absolute paths, `file://`), besides
    /// `DATA_DIR/media`; files elsewhere are refused.
    pub media_dirs: Vec<PathBuf>,
    /// A call whose peer sends no RTP (nor RTCP) for this long while it should is hung up with
    /// reason `rtp_timeout`; zero never does. Calls on hold are exempt.
    pub rtp_timeout: Duration,
    /// Let `play`, `fetch` and `webhook_send` reach private, loopback, link-local and other
    /// non-public addresses (`--allow-private-urls`). Off by default: those targets are refused
    /// (the outbound URL guard, see docs/configuration.md).
    pub allow_private_urls: bool,
    /// How account webhooks are attempted, retried and paused.
    pub webhooks: webhooks::WebhookConfig,
}

/// Which inbound INVITEs are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InboundPolicy {
    /// Any source may call a bound number (devices still authenticate). Good for a demo, or
    /// behind an SBC that filters.
    #[default]
    Open,
    /// Only devices of the number's account (authenticated) and addresses on that account's
    /// trunks' allow-lists may call its numbers; everyone else gets 403.
    Restricted,
}

impl Config {
    /// Defaults for everything but where to listen for SIP and where to keep data: RTP on
    /// 20000-29999, a media worker per core, realm `voxflow`, MD5 then SHA-256 challenges,
    /// keep-alives every 30 s, the default flow limits, 512 MiB of downloaded audio, a 60 s RTP
    /// timeout, private URL targets refused.
    #[must_use]
    pub fn new(sip_listen: SocketAddr, data_dir: PathBuf) -> Config {
        Config {
            sip_listen,
            rtp_ports: (20000, 29999),
            data_dir,
            media_workers: 0,
            advertise_ip: None,
            flow_limits: flow::Limits::default(),
            realm: "voxflow".to_owned(),
            digest_algorithms: Vec::new(),
            keepalive_interval: Duration::from_secs(30),
            inbound_policy: InboundPolicy::Open,
            outbound_proxy: None,
            audio_cache_max_bytes: audio_cache::DEFAULT_MAX_TOTAL_BYTES,
            media_dirs: Vec::new(),
            rtp_timeout: Duration::from_secs(60),
            allow_private_urls: false,
            webhooks: webhooks::WebhookConfig::default(),
        }
    }
}

/// A call record changed (created, ringing, answered, hung up); sent after the store has it.
#[derive(Debug, Clone)]
pub struct CallUpdate {
    /// The record as stored.
    pub record: store::CallRecord,
}

/// What the API may do to a live activeflow.
#[derive(Debug, Clone, PartialEq)]
pub enum ActiveflowOp {
    /// Read it.
    Get,
    /// End it (`POST /activeflows/{id}/stop`); the call is then hung up.
    Stop,
    /// Release it from the `block` action `action_id` (`POST /activeflows/{id}/continue`).
    Continue {
        /// The id of the block action it must be parked in.
        action_id: String,
    },
    /// Run these actions now, cutting the current action short; the flow then goes on after
    /// it (`POST /calls/{id}/actions`). The actions are compiled again by the flow.
    Inject {
        /// The action array (ids assigned).
        actions: serde_json::Value,
    },
}

/// Why an activeflow operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActiveflowError {
    /// No live activeflow has that id (it ended; read the stored record).
    #[error("no live activeflow with that id")]
    NotFound,
    /// The operation does not apply now (e.g. continue when not blocked, or a stale action id).
    #[error("{0}")]
    Refused(String),
}

/// The live calls by id (and by their activeflow's id), so the API can reach a call's task.
#[derive(Default)]
pub(crate) struct LiveCalls(std::sync::Mutex<std::collections::HashMap<uuid::Uuid, CallSender>>);

type CallSender = tokio::sync::mpsc::UnboundedSender<call::CallInput>;

impl LiveCalls {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<uuid::Uuid, CallSender>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, id: uuid::Uuid, sender: CallSender) {
        self.lock().insert(id, sender);
    }

    pub(crate) fn remove(&self, id: uuid::Uuid) {
        self.lock().remove(&id);
    }

    fn send(&self, id: uuid::Uuid, input: call::CallInput) -> bool {
        self.lock().get(&id).is_some_and(|s| s.send(input).is_ok())
    }
}

/// The directories `play` may read local files from: `DATA_DIR/media` (created) and
/// `Config::media_dirs`, as canonical paths (a directory that does not exist is left out).
async fn media_roots(config: &Config) -> Vec<PathBuf> {
    let own = config.data_dir.join("media");
    if let Err(e) = tokio::fs::create_dir_all(&own).await {
        tracing::warn!(dir = %own.display(), error = %e, "cannot create the media directory");
    }
    let mut roots = Vec::new();
    for dir in std::iter::once(&own).chain(&config.media_dirs) {
        match tokio::fs::canonicalize(dir).await {
            Ok(real) => roots.push(real),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "media directory not usable")
            }
        }
    }
    roots
}

/// What every task of the runtime shares (read-only).
pub(crate) struct Shared {
    pub(crate) live: LiveCalls,
    pub(crate) store: Arc<dyn store::Store>,
    pub(crate) events: tokio::sync::broadcast::Sender<CallUpdate>,
    /// The event stream (webhooks, WebSocket).
    pub(crate) bus: Arc<events::EventBus>,
    pub(crate) media: media_engine::MediaEngine,
    pub(crate) tts: Arc<dyn speech::TtsEngine>,
    /// The HTTP client of `play`, `fetch` and `webhook_send`, with the outbound URL guard.
    pub(crate) http: url_guard::HttpClient,
    /// Audio for `play`: downloads on disk, decoded PCM in memory.
    pub(crate) audio_cache: audio_cache::AudioCache,
    /// DNS for trunk hosts (RFC 3263); `None` when the system has no resolver configuration.
    pub(crate) resolver: Option<hickory_resolver::TokioResolver>,
    pub(crate) codecs: Vec<sdp::Codec>,
    pub(crate) flow_limits: flow::Limits,
    /// Digest realm of our devices.
    pub(crate) realm: String,
    /// Which inbound INVITEs are taken.
    pub(crate) inbound_policy: InboundPolicy,
    /// The proxy outbound sip/tel calls go through.
    pub(crate) outbound_proxy: Option<sip::Uri>,
    /// Algorithms challenged with, most preferred first.
    pub(crate) digest_algorithms: Vec<sip::auth::Algorithm>,
    /// Issues and checks digest nonces (stateless; the key lives for this process).
    pub(crate) nonces: sip::auth::NonceIssuer,
    guard: std::sync::Mutex<auth_guard::AuthGuard>,
    trunk_states: trunk_registration::States,
    /// Bumped on every trunk registration change (tests and API watchers wait on it).
    trunk_changes: tokio::sync::watch::Sender<u64>,
    advertise_ip: Option<IpAddr>,
    /// Where recordings and caches live.
    pub(crate) data_dir: std::path::PathBuf,
    /// `Config::rtp_timeout` in ms (0: none).
    pub(crate) rtp_timeout_ms: u32,
    /// Counters for `/metrics` (media's live in `media`).
    pub(crate) metrics: metrics::Metrics,
    /// Per-account call slots and rates.
    pub(crate) limits: limits::Limiter,
}

impl Shared {
    /// A call record was written: tell the call watchers and the event stream.
    pub(crate) fn call_changed(&self, record: &store::CallRecord) {
        // The call's slot is given back before `call_hangup` goes out.
        self.bus.call_changed(record, || {
            self.limits.release(
                record.account_id,
                time::OffsetDateTime::now_utc().unix_timestamp(),
            );
        });
        let _ = self.events.send(CallUpdate {
            record: record.clone(),
        });
    }

    /// Registration state of the trunks that register (held only for a map operation).
    pub(crate) fn trunk_states(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<uuid::Uuid, TrunkRegistration>> {
        self.trunk_states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record a trunk's registration state and tell the watchers.
    pub(crate) fn set_trunk_state(&self, trunk: uuid::Uuid, state: TrunkRegistration) {
        self.trunk_states().insert(trunk, state);
        self.trunk_changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Where to send to a trunk: RFC 3263 over DNS (the first target), or the host as an IP.
    pub(crate) async fn trunk_peer(&self, trunk: &store::TrunkRecord) -> Result<sip::Peer, String> {
        let transport = if trunk.transport == "tcp" {
            sip::Transport::Tcp
        } else {
            sip::Transport::Udp
        };
        let found = match &self.resolver {
            Some(resolver) => {
                dns::resolve(resolver, &trunk.host, trunk.port, Some(transport)).await?
            }
            None => {
                let ip: IpAddr =
                    trunk.host.trim_matches(['[', ']']).parse().map_err(|_| {
                        format!("cannot resolve {}: no DNS configuration", trunk.host)
                    })?;
                vec![(transport, SocketAddr::new(ip, trunk.port.unwrap_or(5060)))]
            }
        };
        let (transport, addr) = found
            .into_iter()
            .next()
            .ok_or_else(|| format!("{}: no address", trunk.host))?;
        Ok(sip::Peer {
            transport,
            addr,
            conn: None,
        })
    }

    /// The brute-force guard (held only for a few map operations).
    pub(crate) fn guard(&self) -> std::sync::MutexGuard<'_, auth_guard::AuthGuard> {
        self.guard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The IP to put in SDP/Contact for a socket bound to `bound`.
    pub(crate) fn advertised_ip(&self, bound: IpAddr) -> IpAddr {
        if !bound.is_unspecified() {
            return bound;
        }
        self.advertise_ip
            .unwrap_or_else(|| route_ip().unwrap_or(IpAddr::from([127, 0, 0, 1])))
    }
}

/// The local address the kernel would use to reach the outside (no packet is sent).
fn route_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    socket.connect(("192.0.2.1", 9)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// A fresh random key for nonces.
fn nonce_secret() -> [u8; 32] {
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret
}

/// The clock of the shell: tokio's, so that paused-time tests cover the stack.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Errors starting the runtime.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
}

/// A running runtime.
pub struct Runtime {
    shared: Arc<Shared>,
    endpoint: endpoint::EndpointHandle,
    sip_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    events: tokio::sync::broadcast::Sender<CallUpdate>,
    webhooks: webhooks::Webhooks,
}

impl Runtime {
    /// Bind the SIP sockets, start the media workers and the endpoint.
    pub async fn start(
        config: Config,
        store: Arc<dyn store::Store>,
    ) -> Result<Runtime, StartError> {
        let workers = if config.media_workers == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            config.media_workers
        };
        let (low, high) = config.rtp_ports;
        let media = media_engine::MediaEngine::start(workers, config.sip_listen.ip(), low, high)
            .map_err(|source| StartError::Bind {
                what: "media workers",
                addr: format!("{low}-{high}"),
                source,
            })?;
        // reqwest's rustls uses the process-wide crypto provider (ring; see ADR 0002).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = url_guard::HttpClient::build(
            url_guard::UrlPolicy {
                allow_private: config.allow_private_urls,
            },
            reqwest::Client::builder().connect_timeout(Duration::from_secs(5)),
        )
        .map_err(|e| StartError::Http(e.to_string()))?;
        let tts: Arc<dyn speech::TtsEngine> =
            Arc::new(speech::Espeak::new(config.data_dir.join("cache")));
        let audio_cache = audio_cache::AudioCache::open(
            config.data_dir.join("cache").join("audio"),
            audio_cache::Limits {
                max_total_bytes: config.audio_cache_max_bytes,
                local_roots: Some(media_roots(&config).await),
                ..audio_cache::Limits::default()
            },
        )
        .await;
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let (bus, outbox_queue) = events::EventBus::new();
        let shared = Arc::new(Shared {
            live: LiveCalls::default(),
            store,
            events: events.clone(),
            bus: Arc::new(bus),
            media,
            tts,
            http,
            audio_cache,
            resolver: match hickory_resolver::TokioResolver::builder_tokio().and_then(|b| b.build())
            {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "no DNS resolver configuration; trunk hosts must be IPs");
                    None
                }
            },
            codecs: vec![sdp::Codec::Pcmu, sdp::Codec::Pcma],
            flow_limits: config.flow_limits,
            realm: config.realm.clone(),
            inbound_policy: config.inbound_policy,
            outbound_proxy: config.outbound_proxy.clone(),
            digest_algorithms: if config.digest_algorithms.is_empty() {
                vec![sip::auth::Algorithm::Md5, sip::auth::Algorithm::Sha256]
            } else {
                config.digest_algorithms.clone()
            },
            nonces: sip::auth::NonceIssuer::new(nonce_secret()),
            guard: std::sync::Mutex::default(),
            trunk_states: trunk_registration::States::default(),
            trunk_changes: tokio::sync::watch::Sender::new(0),
            advertise_ip: config.advertise_ip,
            data_dir: config.data_dir.clone(),
            rtp_timeout_ms: config.rtp_timeout.as_millis().min(u128::from(u32::MAX)) as u32,
            metrics: metrics::Metrics::new(),
            limits: limits::Limiter::default(),
        });
        let (endpoint, sip_addr, task) = endpoint::start(shared.clone(), config.sip_listen)
            .await
            .map_err(|source| StartError::Bind {
            what: "SIP (UDP+TCP)",
            addr: config.sip_listen.to_string(),
            source,
        })?;
        maintenance::spawn(
            shared.clone(),
            endpoint.clone(),
            sip_addr,
            config.keepalive_interval,
        );
        trunk_registration::spawn(
            shared.clone(),
            endpoint.clone(),
            sip_addr,
            config.keepalive_interval,
        );
        let webhooks = webhooks::Webhooks::start(shared.clone(), outbox_queue, config.webhooks);
        Ok(Runtime {
            shared,
            endpoint,
            sip_addr,
            task,
            events,
            webhooks,
        })
    }

    /// Every call record change from now on. A receiver that falls more than 1024 updates behind
    /// loses the oldest (and is told so by `RecvError::Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<CallUpdate> {
        self.events.subscribe()
    }

    /// Where a registering trunk's registration stands (None for trunks that do not register,
    /// or before the first attempt).
    pub fn trunk_registration(&self, trunk: uuid::Uuid) -> Option<TrunkRegistration> {
        self.shared.trunk_states().get(&trunk).cloned()
    }

    /// The platform's event stream (calls, activeflows, recordings, webhook_send, webhooks),
    /// for live subscribers.
    pub fn events(&self) -> &events::EventBus {
        &self.shared.bus
    }

    /// Whether the platform would fetch or post to `url` (scheme, and unless private targets
    /// are allowed, a literal private or loopback host): the reason when not.
    pub fn check_outbound_url(&self, url: &str) -> Result<(), String> {
        self.shared
            .http
            .policy()
            .check(url)
            .map_err(|e| e.to_string())
    }

    /// A webhook was created, changed or resumed: look at the outbox again now.
    pub fn webhooks_changed(&self) {
        self.webhooks.wake();
    }

    /// A receiver that sees every webhook delivery attempt once its outcome is in the delivery
    /// log (and the webhook's breaker state): a way to wait for the log to change.
    pub fn watch_webhook_attempts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.webhooks.watch_attempts()
    }

    /// A receiver that sees every change of any trunk's registration state.
    pub fn watch_trunk_registrations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.trunk_changes.subscribe()
    }

    /// The digest realm devices authenticate in.
    pub fn realm(&self) -> &str {
        &self.shared.realm
    }

    /// The SIP address actually bound.
    pub fn sip_addr(&self) -> SocketAddr {
        self.sip_addr
    }

    /// Place a call: resolve the destination, send the INVITE, and run `actions` once it is
    /// answered. Returns the call record as created (status `dialing`); its progress comes as
    /// [`CallUpdate`]s and in the store.
    pub async fn originate(&self, req: Originate) -> Result<store::CallRecord, OriginateError> {
        outbound::originate(
            &self.shared,
            &self.endpoint,
            self.sip_addr,
            req,
            None,
            false,
        )
        .await
    }

    /// Read or steer a live activeflow. [`ActiveflowError::NotFound`] when no live call runs it
    /// (it ended: the store has its final record). The caller checks the account first.
    pub async fn activeflow(
        &self,
        id: uuid::Uuid,
        op: ActiveflowOp,
    ) -> Result<store::ActiveflowRecord, ActiveflowError> {
        let (reply, wait) = oneshot::channel();
        if !self
            .shared
            .live
            .send(id, call::CallInput::Activeflow { op, reply })
        {
            return Err(ActiveflowError::NotFound);
        }
        wait.await.unwrap_or(Err(ActiveflowError::NotFound))
    }

    /// Hang up a live call (BYE when answered, CANCEL or a final response when not). False when
    /// no live call has that id.
    pub fn hangup(&self, call_id: uuid::Uuid) -> bool {
        self.shared.live.send(call_id, call::CallInput::Hangup)
    }

    /// Hang up every call (BYE to answered ones, 503 to ringing ones) and stop, waiting at most
    /// `grace` for the calls to finish.
    pub async fn shutdown(&self, grace: Duration) {
        let (done, wait) = oneshot::channel();
        self.endpoint.send(endpoint::Command::Shutdown { done });
        if tokio::time::timeout(grace, wait).await.is_err() {
            tracing::warn!("calls still up after the shutdown grace period");
        }
        self.task.abort();
    }
}
