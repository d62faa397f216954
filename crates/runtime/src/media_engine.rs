//! The media engine: a few worker threads, each owning many RTP sessions.
//!
//! Each session is serviced once per 20 ms tick. The tick is cut into [`PHASES`] phases, each
//! with its own sessions: a worker wakes for one phase every 5 ms on absolute deadlines, drains
//! those sessions' sockets (non-blocking), feeds the packets to the sans-IO [`media::MediaSession`], sends each session's
//! next packet, and forwards media events to the owning call. There is no task, timer or wake-up per
//! call or per packet: the cost of a call is its share of one loop iteration (ADR 0003).
//!
//! A worker also writes the call's recording, if one runs, from the session's received and sent
//! frames of the tick, and sends RTCP reports; it reads a session's RTCP socket only every
//! [`RTCP_READ_EVERY`] ticks, as reports come every few seconds — a different tenth of the
//! sessions each tick, so the cost is the same in every tick (ADR 0005).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use media::{MediaEvent, MediaSession};
use tokio::sync::mpsc::UnboundedSender;

use crate::metrics::{FLUSH_EVERY_TICKS, MediaCounters, RtpAccount, RtpCounts};
use crate::recording::{Recorder, RecordingEnd};

/// How often every session is serviced: one G.711 packet of 20 ms.
const TICK_MS: u64 = 20;
/// Each tick is cut into this many phases; a session is serviced in one of them (its `phase`),
/// so a worker wakes every 5 ms for a quarter of its sessions. A phase's work is a quarter of a
/// tick's, so how late a session's packet leaves within it varies four times less with the load.
const PHASES: u8 = 4;
/// The worker's wake-up period: one phase.
const PHASE_TICK: Duration = Duration::from_millis(TICK_MS / PHASES as u64);
/// A worker more than this far behind re-anchors its clock instead of bursting packets.
const MAX_LAG: Duration = Duration::from_millis(200);
/// Datagrams read per session per tick at most (a flood cannot starve the other sessions).
const MAX_READS_PER_TICK: usize = 32;
/// RTCP sockets are read once per this many ticks (reports come every ~5 s).
const RTCP_READ_EVERY: u64 = 10;

/// What the engine tells the call that owns a session.
#[derive(Debug)]
pub(crate) enum EngineEvent {
    /// From the media session.
    Media(MediaEvent),
    /// Answering-machine detection decided (`StartAmd` with this id).
    Amd {
        /// The id given to `start_amd`.
        id: u64,
        /// The decision.
        decision: media::amd::AmdDecision,
    },
    /// A recording ended (stopped, a limit, an error, or the session detached); the call
    /// finalises the file and the record.
    RecordingDone {
        /// The recorder, to finish.
        recorder: Box<Recorder>,
        /// Why it ended.
        end: RecordingEnd,
    },
}

/// A call's RTP socket and the RTCP socket on the next port.
#[derive(Debug)]
pub(crate) struct RtpPorts {
    pub(crate) rtp: UdpSocket,
    pub(crate) rtcp: UdpSocket,
}

impl RtpPorts {
    /// The RTP socket's address.
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.rtp.local_addr()
    }
}

enum WorkerCommand {
    Attach {
        key: u64,
        ports: RtpPorts,
        session: Box<MediaSession>,
        events: UnboundedSender<EngineEvent>,
    },
    SendDigits {
        key: u64,
        id: u64,
        digits: String,
        duration_ms: u32,
        interval_ms: u32,
    },
    Echo {
        key: u64,
        id: u64,
        duration_ms: Option<u32>,
        dtmf: bool,
    },
    StopEcho {
        key: u64,
    },
    Receiving {
        key: u64,
        receiving: bool,
    },
    StartRecording {
        key: u64,
        recorder: Box<Recorder>,
    },
    StopRecording {
        key: u64,
        end: RecordingEnd,
    },
    Play {
        key: u64,
        id: u64,
        pcm: Arc<[i16]>,
    },
    Stop {
        key: u64,
    },
    SetRemote {
        key: u64,
        addr: SocketAddr,
    },
    Detach {
        key: u64,
    },
    /// Bridge two sessions of this worker (PCM both ways, DTMF forwarded).
    Bridge {
        a: u64,
        b: u64,
    },
    /// End the bridge this session is in, if any.
    Unbridge {
        key: u64,
    },
    Mute {
        key: u64,
        inbound: bool,
        outbound: bool,
    },
    StartExternal {
        key: u64,
        external: Box<ExternalMedia>,
    },
    StopExternal {
        key: u64,
    },
    StartAmd {
        key: u64,
        id: u64,
    },
}

/// `external_media_start`: the call's received audio goes out as RTP to `dest` from `socket`,
/// and RTP arriving on `socket` is what the caller hears (when `receive`).
#[derive(Debug)]
pub(crate) struct ExternalMedia {
    pub(crate) socket: UdpSocket,
    pub(crate) dest: SocketAddr,
    pub(crate) codec: media::Codec,
    /// Send the caller's audio (`both`, `in`).
    pub(crate) send: bool,
    /// Play what comes back (`both`, `out`).
    pub(crate) receive: bool,
    pub(crate) ssrc: u32,
    pub(crate) sequence: u16,
    pub(crate) timestamp: u32,
    /// Audio received and not played yet (a burst of packets is played out one tick at a
    /// time; at most [`EXTERNAL_BUFFER_SAMPLES`]).
    pub(crate) pending: std::collections::VecDeque<i16>,
}

/// Most external-media audio buffered (1 s); older samples are dropped beyond it.
const EXTERNAL_BUFFER_SAMPLES: usize = 8000;

/// Media id of DTMF forwarded across a bridge (its `DigitsSent` means nothing to a flow).
pub(crate) const FORWARDED_DTMF_ID: u64 = u64::MAX - 1;

/// Owner of the media worker threads and the RTP port range.
#[derive(Debug)]
pub(crate) struct MediaEngine {
    workers: Vec<mpsc::Sender<WorkerCommand>>,
    next_worker: AtomicUsize,
    next_key: AtomicU64,
    ports: PortAllocator,
    /// What the workers count (RTP packets, late ticks, liveness).
    counters: Arc<MediaCounters>,
}

impl MediaEngine {
    /// Start `workers` threads; RTP ports are taken from `low..=high` on `bind_ip`.
    pub(crate) fn start(
        workers: usize,
        bind_ip: IpAddr,
        low: u16,
        high: u16,
    ) -> std::io::Result<Self> {
        let mut senders = Vec::new();
        let counters = Arc::new(MediaCounters::new(workers.max(1)));
        for n in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel();
            let worker_counters = counters.clone();
            thread::Builder::new()
                .name(format!("media-{n}"))
                .spawn(move || run_worker(&rx, &worker_counters, n))?;
            senders.push(tx);
        }
        Ok(MediaEngine {
            workers: senders,
            next_worker: AtomicUsize::new(0),
            next_key: AtomicU64::new(1),
            ports: PortAllocator::new(bind_ip, low, high),
            counters,
        })
    }

    /// What the workers count.
    pub(crate) fn counters(&self) -> &MediaCounters {
        &self.counters
    }

    /// Bind a fresh RTP socket (even port) from the range, and RTCP on the next port.
    pub(crate) fn bind_rtp(&self) -> std::io::Result<RtpPorts> {
        self.ports.bind()
    }

    /// Hand a session and its socket to a worker: the given one (that of the call this one
    /// will be bridged with), or the next in turn. The call drives it through the returned
    /// handle; dropping the handle detaches it and frees the port.
    pub(crate) fn attach_on(
        &self,
        worker: Option<usize>,
        ports: RtpPorts,
        session: MediaSession,
        events: UnboundedSender<EngineEvent>,
    ) -> std::io::Result<MediaHandle> {
        ports.rtp.set_nonblocking(true)?;
        ports.rtcp.set_nonblocking(true)?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let n = match worker {
            Some(n) if n < self.workers.len() => n,
            _ => self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len(),
        };
        let worker = self.workers[n].clone();
        worker
            .send(WorkerCommand::Attach {
                key,
                ports,
                session: Box::new(session),
                events,
            })
            .map_err(|_| std::io::Error::other("media worker stopped"))?;
        Ok(MediaHandle {
            key,
            worker,
            worker_index: n,
        })
    }
}

/// A call's grip on its media session inside a worker.
#[derive(Debug)]
pub(crate) struct MediaHandle {
    key: u64,
    worker: mpsc::Sender<WorkerCommand>,
    worker_index: usize,
}

impl MediaHandle {
    /// The worker this session runs on (bridge partners are attached to the same one).
    pub(crate) fn worker_index(&self) -> usize {
        self.worker_index
    }

    /// The session's key inside its worker.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Bridge this session with the session `other_key` of worker `other_worker`: each hears
    /// the other, DTMF included. False (and nothing done) when they run on different workers.
    pub(crate) fn bridge(&self, other_key: u64, other_worker: usize) -> bool {
        if other_worker != self.worker_index {
            return false;
        }
        let _ = self.worker.send(WorkerCommand::Bridge {
            a: self.key,
            b: other_key,
        });
        true
    }

    /// End this session's bridge, if any.
    pub(crate) fn unbridge(&self) {
        let _ = self.worker.send(WorkerCommand::Unbridge { key: self.key });
    }

    /// `mute`: drop what the peer says (`inbound`) and/or send it silence (`outbound`).
    pub(crate) fn set_mute(&self, inbound: bool, outbound: bool) {
        let _ = self.worker.send(WorkerCommand::Mute {
            key: self.key,
            inbound,
            outbound,
        });
    }

    /// Fork the call's audio to an external RTP endpoint and play what it sends back.
    pub(crate) fn start_external(&self, external: ExternalMedia) {
        let _ = self.worker.send(WorkerCommand::StartExternal {
            key: self.key,
            external: Box::new(external),
        });
    }

    /// Run answering-machine detection on what the peer says; `EngineEvent::Amd` follows.
    pub(crate) fn start_amd(&self, id: u64) {
        let _ = self
            .worker
            .send(WorkerCommand::StartAmd { key: self.key, id });
    }

    /// Stop the external media, if any.
    pub(crate) fn stop_external(&self) {
        let _ = self
            .worker
            .send(WorkerCommand::StopExternal { key: self.key });
    }

    /// Queue audio (8 kHz mono) to play; `id` comes back in the events.
    pub(crate) fn play(&self, id: u64, pcm: Arc<[i16]>) {
        let _ = self.worker.send(WorkerCommand::Play {
            key: self.key,
            id,
            pcm,
        });
    }

    /// Stop whatever plays.
    pub(crate) fn stop(&self) {
        let _ = self.worker.send(WorkerCommand::Stop { key: self.key });
    }

    /// Send DTMF digits (RFC 4733 or in-band, as negotiated); `DigitsSent { id }` follows.
    pub(crate) fn send_digits(&self, id: u64, digits: String, duration_ms: u32, interval_ms: u32) {
        let _ = self.worker.send(WorkerCommand::SendDigits {
            key: self.key,
            id,
            digits,
            duration_ms,
            interval_ms,
        });
    }

    /// Echo the caller's audio (and DTMF with `dtmf`); `EchoFinished { id }` follows.
    pub(crate) fn echo(&self, id: u64, duration_ms: Option<u32>, dtmf: bool) {
        let _ = self.worker.send(WorkerCommand::Echo {
            key: self.key,
            id,
            duration_ms,
            dtmf,
        });
    }

    /// End a running echo.
    pub(crate) fn stop_echo(&self) {
        let _ = self.worker.send(WorkerCommand::StopEcho { key: self.key });
    }

    /// Whether the peer should be sending RTP (not on hold): the RTP timeout runs only then.
    pub(crate) fn set_receiving(&self, receiving: bool) {
        let _ = self.worker.send(WorkerCommand::Receiving {
            key: self.key,
            receiving,
        });
    }

    /// Start writing the call's audio to `recorder` (replacing, and ending, one that runs).
    pub(crate) fn start_recording(&self, recorder: Recorder) {
        let _ = self.worker.send(WorkerCommand::StartRecording {
            key: self.key,
            recorder: Box::new(recorder),
        });
    }

    /// Stop the recording (`end` says why); it comes back in `RecordingDone`.
    pub(crate) fn stop_recording(&self, end: RecordingEnd) {
        let _ = self
            .worker
            .send(WorkerCommand::StopRecording { key: self.key, end });
    }

    /// The peer moved its media (new SDP).
    pub(crate) fn set_remote(&self, addr: SocketAddr) {
        let _ = self.worker.send(WorkerCommand::SetRemote {
            key: self.key,
            addr,
        });
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        let _ = self.worker.send(WorkerCommand::Detach { key: self.key });
    }
}

struct Slot {
    ports: RtpPorts,
    session: Box<MediaSession>,
    events: UnboundedSender<EngineEvent>,
    recorder: Option<Box<Recorder>>,
    /// The session this one is bridged with.
    bridged_with: Option<u64>,
    /// The bridge relays packets (same codec both sides, nothing that needs our own audio):
    /// what the peer sends is queued here and sent on by the partner's session, unchanged but
    /// for the header, after the phase. Both partners have it on or off together.
    relaying: bool,
    /// This phase's packets from the peer to relay: their bytes end to end, and each length.
    relay_in: Vec<u8>,
    relay_lens: Vec<usize>,
    /// Keys the peer pressed this tick, to send on to the bridged session.
    forward_dtmf: String,
    external: Option<Box<ExternalMedia>>,
    /// Answering-machine detection running, with the id to report.
    amd: Option<(u64, Box<media::amd::AmdDetector>)>,
    /// The session's RTP counts already published to the metrics.
    rtp: RtpAccount,
}

impl Slot {
    /// A newly attached session: not bridged, recording, relaying or sending anywhere else.
    fn new(
        ports: RtpPorts,
        session: Box<MediaSession>,
        events: UnboundedSender<EngineEvent>,
    ) -> Slot {
        Slot {
            ports,
            session,
            events,
            recorder: None,
            bridged_with: None,
            relaying: false,
            relay_in: Vec::new(),
            relay_lens: Vec::new(),
            forward_dtmf: String::new(),
            external: None,
            amd: None,
            rtp: RtpAccount::default(),
        }
    }

    /// Hands the running recording back to the call.
    fn end_recording(&mut self, end: RecordingEnd) {
        if let Some(recorder) = self.recorder.take() {
            let _ = self
                .events
                .send(EngineEvent::RecordingDone { recorder, end });
        }
    }
}

/// A worker's sessions, one map per phase, so that a phase walks only its own sessions.
#[derive(Default)]
struct Sessions {
    by_phase: [HashMap<u64, Slot>; PHASES as usize],
    /// Which phase of the tick services each session (bridge partners share one).
    phase_of: HashMap<u64, usize>,
}

impl Sessions {
    fn len(&self) -> usize {
        self.phase_of.len()
    }

    fn contains_key(&self, key: &u64) -> bool {
        self.phase_of.contains_key(key)
    }

    fn get(&self, key: &u64) -> Option<&Slot> {
        let phase = *self.phase_of.get(key)?;
        self.by_phase.get(phase)?.get(key)
    }

    fn get_mut(&mut self, key: &u64) -> Option<&mut Slot> {
        let phase = *self.phase_of.get(key)?;
        self.by_phase.get_mut(phase)?.get_mut(key)
    }

    /// Two distinct sessions, both mutably (`None` if either is missing or `a == b`).
    fn pair_mut(&mut self, a: u64, b: u64) -> Option<[&mut Slot; 2]> {
        if a == b {
            return None; // `get_disjoint_mut` panics on overlapping keys
        }
        let (&pa, &pb) = (self.phase_of.get(&a)?, self.phase_of.get(&b)?);
        if pa == pb {
            let [Some(x), Some(y)] = self.by_phase.get_mut(pa)?.get_disjoint_mut([&a, &b]) else {
                return None;
            };
            return Some([x, y]);
        }
        let [x, y] = self.by_phase.get_disjoint_mut([pa, pb]).ok()?;
        Some([x.get_mut(&a)?, y.get_mut(&b)?])
    }

    /// A new session goes to the phase with the fewest.
    fn insert(&mut self, key: u64, slot: Slot) {
        self.remove(&key);
        let phase = (0..self.by_phase.len())
            .min_by_key(|p| self.by_phase.get(*p).map_or(0, HashMap::len))
            .unwrap_or(0);
        if let Some(map) = self.by_phase.get_mut(phase) {
            map.insert(key, slot);
            self.phase_of.insert(key, phase);
        }
    }

    fn remove(&mut self, key: &u64) -> Option<Slot> {
        let phase = self.phase_of.remove(key)?;
        self.by_phase.get_mut(phase)?.remove(key)
    }

    /// Service `key` in `other`'s phase from now on.
    fn join_phase(&mut self, key: u64, other: u64) {
        let Some(&phase) = self.phase_of.get(&other) else {
            return;
        };
        if self.phase_of.get(&key) != Some(&phase)
            && let Some(slot) = self.remove(&key)
            && let Some(map) = self.by_phase.get_mut(phase)
        {
            map.insert(key, slot);
            self.phase_of.insert(key, phase);
        }
    }

    fn phase_mut(&mut self, phase: usize) -> Option<&mut HashMap<u64, Slot>> {
        self.by_phase.get_mut(phase)
    }

    fn values_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.by_phase.iter_mut().flat_map(HashMap::values_mut)
    }
}

fn run_worker(commands: &mpsc::Receiver<WorkerCommand>, counters: &MediaCounters, index: usize) {
    let mut sessions = Sessions::default();
    let mut recv_buf = vec![0u8; 2048];
    let mut send_buf = Vec::with_capacity(512);
    // Bridged pairs of this phase (each once, smaller key first); reused every phase.
    let mut bridged: Vec<(u64, u64)> = Vec::new();
    let mut deadline = Instant::now();
    // Phases run so far; `phases / PHASES` counts whole ticks.
    let mut phases: u64 = 0;
    loop {
        let phase = (phases % u64::from(PHASES)) as usize;
        let tick = phases / u64::from(PHASES);
        phases += 1;
        let ntp = ntp_now();
        loop {
            match commands.try_recv() {
                Ok(cmd) => apply(&mut sessions, cmd, counters),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let rtcp_turn = tick % RTCP_READ_EVERY;
        bridged.clear();
        let flush = phase == 0 && tick.is_multiple_of(FLUSH_EVERY_TICKS);
        if flush {
            let mut counts = RtpCounts::default();
            for slot in sessions.values_mut() {
                counts += slot.rtp.take_delta(&slot.session);
            }
            counters.add(&counts);
        }
        for (key, slot) in sessions.phase_mut(phase).into_iter().flatten() {
            let read_rtcp = key % RTCP_READ_EVERY == rtcp_turn;
            service(slot, &mut recv_buf, &mut send_buf, read_rtcp, ntp);
            if let Some(other) = slot.bridged_with.filter(|other| key < other) {
                bridged.push((*key, other));
            }
        }
        exchange_bridged(&mut sessions, &bridged, &mut send_buf);
        deadline += PHASE_TICK;
        let now = Instant::now();
        counters.tick(index, now, sessions.len());
        if let Some(wait) = deadline.checked_duration_since(now) {
            // Block on the command channel until the next phase: a new call is attached at once.
            match commands.recv_timeout(wait) {
                Ok(cmd) => {
                    apply(&mut sessions, cmd, counters);
                    // Drain the rest and sleep out the phase.
                    while let Ok(cmd) = commands.try_recv() {
                        apply(&mut sessions, cmd, counters);
                    }
                    if let Some(rest) = deadline.checked_duration_since(Instant::now()) {
                        thread::sleep(rest);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else if now.duration_since(deadline) > MAX_LAG {
            counters.late_tick(true);
            tracing::warn!(
                lag_ms = now.duration_since(deadline).as_millis() as u64,
                "media worker behind; re-anchoring"
            );
            deadline = now;
        } else {
            counters.late_tick(false);
        }
    }
}

fn apply(sessions: &mut Sessions, cmd: WorkerCommand, counters: &MediaCounters) {
    if let Some(key) = needs_own_audio(&cmd) {
        end_relay(sessions, key);
    }
    match cmd {
        WorkerCommand::Attach {
            key,
            ports,
            session,
            events,
        } => {
            sessions.insert(key, Slot::new(ports, session, events));
        }
        WorkerCommand::SendDigits {
            key,
            id,
            digits,
            duration_ms,
            interval_ms,
        } => {
            if let Some(slot) = sessions.get_mut(&key)
                && slot
                    .session
                    .send_digits(id, &digits, duration_ms, interval_ms)
                    .is_err()
            {
                // The flow checked the digits; report it done rather than hang.
                let _ = slot
                    .events
                    .send(EngineEvent::Media(MediaEvent::DigitsSent { id }));
            }
        }
        WorkerCommand::Echo {
            key,
            id,
            duration_ms,
            dtmf,
        } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.session.start_echo(id, duration_ms, dtmf);
                flush_events(slot);
            }
        }
        WorkerCommand::StopEcho { key } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.session.stop_echo();
                flush_events(slot);
            }
        }
        WorkerCommand::Receiving { key, receiving } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.session.set_receiving(receiving);
            }
        }
        WorkerCommand::StartRecording { key, recorder } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.end_recording(RecordingEnd::Stopped);
                slot.recorder = Some(recorder);
            }
        }
        WorkerCommand::StopRecording { key, end } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.end_recording(end);
            }
        }
        WorkerCommand::Play { key, id, pcm } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.session.play(id, pcm);
            }
        }
        WorkerCommand::Stop { key } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.session.stop_playback();
                flush_events(slot);
            }
        }
        WorkerCommand::SetRemote { key, addr } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.session.set_remote(addr);
            }
        }
        WorkerCommand::Detach { key } => {
            if let Some(mut slot) = sessions.remove(&key) {
                counters.add(&slot.rtp.take_delta(&slot.session));
                slot.end_recording(RecordingEnd::Hangup);
                if let Some(other) = slot.bridged_with {
                    unbridge_one(sessions, other);
                }
            }
        }
        WorkerCommand::Bridge { a, b } => {
            if a == b || !sessions.contains_key(&a) || !sessions.contains_key(&b) {
                return;
            }
            for (this, other) in [(a, b), (b, a)] {
                if let Some(previous) = sessions.get(&this).and_then(|s| s.bridged_with) {
                    unbridge_one(sessions, previous);
                }
                if let Some(slot) = sessions.get_mut(&this) {
                    slot.bridged_with = Some(other);
                    slot.session.set_bridged(true);
                }
            }
            // Partners are serviced in the same phase, so each frame crosses the bridge once.
            sessions.join_phase(b, a);
            start_relay(sessions, a, b);
        }
        WorkerCommand::Unbridge { key } => {
            if let Some(other) = sessions.get(&key).and_then(|s| s.bridged_with) {
                unbridge_one(sessions, other);
            }
            unbridge_one(sessions, key);
        }
        WorkerCommand::Mute {
            key,
            inbound,
            outbound,
        } => {
            if let Some(slot) = sessions.get_mut(&key) {
                slot.session.set_mute(inbound, outbound);
            }
        }
        WorkerCommand::StartExternal { key, external } => {
            if let Some(slot) = sessions.get_mut(&key) {
                if external.receive {
                    slot.session.set_bridged(true);
                }
                slot.external = Some(external);
            }
        }
        WorkerCommand::StartAmd { key, id } => {
            if let Some(slot) = sessions.get_mut(&key) {
                let detector = media::amd::AmdDetector::new(media::amd::AmdConfig::default());
                slot.amd = Some((id, Box::new(detector)));
            }
        }
        WorkerCommand::StopExternal { key } => {
            if let Some(slot) = sessions.get_mut(&key)
                && slot.external.take().is_some()
                && slot.bridged_with.is_none()
            {
                slot.session.set_bridged(false);
            }
        }
    }
}

/// A command after which the session sends audio of its own (a prompt, keys, echo, a
/// recording of what it sends, mute, external media): it cannot stay in a packet relay.
fn needs_own_audio(cmd: &WorkerCommand) -> Option<u64> {
    match cmd {
        WorkerCommand::SendDigits { key, .. }
        | WorkerCommand::Echo { key, .. }
        | WorkerCommand::StartRecording { key, .. }
        | WorkerCommand::Play { key, .. }
        | WorkerCommand::Mute { key, .. }
        | WorkerCommand::StartExternal { key, .. } => Some(*key),
        _ => None,
    }
}

/// Relay packets between two freshly bridged sessions when nothing needs the PCM bridge: the
/// same codec both ways, telephone-event on both sides or on neither (so keys cross as they
/// are), and no recording, mute or external media on either.
fn start_relay(sessions: &mut Sessions, a: u64, b: u64) {
    let Some([x, y]) = sessions.pair_mut(a, b) else {
        return;
    };
    let (xc, yc) = (x.session.config(), y.session.config());
    let allowed = x.session.can_relay_from(yc)
        && y.session.can_relay_from(xc)
        && xc.dtmf_payload_type.is_some() == yc.dtmf_payload_type.is_some()
        && [&*x, &*y]
            .iter()
            .all(|s| s.recorder.is_none() && s.external.is_none() && !s.session.is_muted());
    if !allowed {
        return;
    }
    let (x_types, y_types) = (
        (xc.payload_type, xc.dtmf_payload_type),
        (yc.payload_type, yc.dtmf_payload_type),
    );
    // Each sends on what the other's peer sends, in its own payload types.
    x.session.set_relaying(Some(y_types));
    y.session.set_relaying(Some(x_types));
    x.relaying = true;
    y.relaying = true;
    tracing::debug!(a, b, "bridge relays packets (same codec)");
}

/// Back from packet relay to the PCM bridge, for `key` and its partner (no-op unless relaying).
fn end_relay(sessions: &mut Sessions, key: u64) {
    let partner = sessions
        .get(&key)
        .filter(|s| s.relaying)
        .and_then(|s| s.bridged_with);
    for k in std::iter::once(key).chain(partner) {
        if let Some(slot) = sessions.get_mut(&k) {
            stop_relaying(slot);
        }
    }
}

fn stop_relaying(slot: &mut Slot) {
    if slot.relaying {
        slot.relaying = false;
        slot.session.set_relaying(None);
        slot.relay_in.clear();
        slot.relay_lens.clear();
    }
}

/// Take `key` out of its bridge (the partner is untouched).
fn unbridge_one(sessions: &mut Sessions, key: u64) {
    if let Some(slot) = sessions.get_mut(&key) {
        stop_relaying(slot);
        slot.bridged_with = None;
        slot.forward_dtmf.clear();
        if slot.external.as_ref().is_none_or(|e| !e.receive) {
            slot.session.set_bridged(false);
        }
    }
}

/// After a tick: each bridged session gets its partner's received audio for its next packet,
/// and the keys its partner pressed.
fn exchange_bridged(sessions: &mut Sessions, pairs: &[(u64, u64)], send_buf: &mut Vec<u8>) {
    for &(a, b) in pairs {
        let Some([x, y]) = sessions.pair_mut(a, b) else {
            continue;
        };
        if x.relaying && y.relaying {
            // Keys cross inside the relayed packets (RFC 4733, or in-band in the audio).
            x.forward_dtmf.clear();
            y.forward_dtmf.clear();
            relay_queued(x, y, send_buf);
            relay_queued(y, x, send_buf);
            continue;
        }
        x.session.set_bridge_frame(y.session.received_frame());
        y.session.set_bridge_frame(x.session.received_frame());
        forward_keys(x, y);
        forward_keys(y, x);
    }
}

/// The packets `from`'s peer sent this phase go to `to`'s peer, re-headed by `to`'s session.
fn relay_queued(from: &mut Slot, to: &mut Slot, send_buf: &mut Vec<u8>) {
    let mut start = 0;
    for &len in &from.relay_lens {
        let end = start + len;
        if let Some(data) = from.relay_in.get(start..end)
            && let Some(dest) = to.session.relay_packet(data, send_buf)
        {
            let _ = to.ports.rtp.send_to(send_buf, dest);
        }
        start = end;
    }
    from.relay_in.clear();
    from.relay_lens.clear();
}

/// Keys pressed on `from`'s line go out as DTMF on `to`'s.
fn forward_keys(from: &mut Slot, to: &mut Slot) {
    if !from.forward_dtmf.is_empty() {
        let _ = to
            .session
            .send_digits(FORWARDED_DTMF_ID, &from.forward_dtmf, 100, 50);
        from.forward_dtmf.clear();
    }
}

/// External media for one tick: send the caller's audio, play what came back.
fn service_external(slot: &mut Slot, recv_buf: &mut [u8], send_buf: &mut Vec<u8>) {
    let Some(ext) = slot.external.as_mut() else {
        return;
    };
    if ext.send {
        send_buf.clear();
        media::rtp::RtpHeader {
            marker: false,
            payload_type: if ext.codec == media::Codec::Pcma {
                8
            } else {
                0
            },
            sequence_number: ext.sequence,
            timestamp: ext.timestamp,
            ssrc: ext.ssrc,
        }
        .write(send_buf);
        let encode = match ext.codec {
            media::Codec::Pcma => media::g711::alaw_encode,
            media::Codec::Pcmu => media::g711::ulaw_encode,
        };
        send_buf.extend(slot.session.received_frame().iter().map(|s| encode(*s)));
        let _ = ext.socket.send_to(send_buf, ext.dest);
        ext.sequence = ext.sequence.wrapping_add(1);
        ext.timestamp = ext.timestamp.wrapping_add(media::FRAME_SAMPLES as u32);
    }
    for _ in 0..MAX_READS_PER_TICK {
        let Ok((n, _)) = ext.socket.recv_from(recv_buf) else {
            break;
        };
        let Some(packet) = recv_buf
            .get(..n)
            .and_then(|d| media::rtp::RtpPacket::parse(d).ok())
        else {
            continue;
        };
        let decode = match packet.header.payload_type {
            0 => media::g711::ulaw_decode,
            8 => media::g711::alaw_decode,
            _ => continue,
        };
        ext.pending
            .extend(packet.payload.iter().map(|b| decode(*b)));
        let excess = ext.pending.len().saturating_sub(EXTERNAL_BUFFER_SAMPLES);
        ext.pending.drain(..excess);
    }
    if ext.receive && slot.bridged_with.is_none() {
        let mut frame = [0i16; media::FRAME_SAMPLES];
        for (out, sample) in frame.iter_mut().zip(
            ext.pending
                .drain(..ext.pending.len().min(media::FRAME_SAMPLES)),
        ) {
            *out = sample;
        }
        slot.session.set_bridge_frame(&frame);
    }
}

fn service(
    slot: &mut Slot,
    recv_buf: &mut [u8],
    send_buf: &mut Vec<u8>,
    read_rtcp: bool,
    ntp: u64,
) {
    for _ in 0..MAX_READS_PER_TICK {
        match slot.ports.rtp.recv_from(recv_buf) {
            Ok((n, from)) => {
                if let Some(data) = recv_buf.get(..n) {
                    slot.session.handle_rtp(from, data);
                    // Only what the session accepted from its (latched) peer is relayed.
                    if slot.relaying
                        && slot.session.remote() == Some(from)
                        && slot.relay_lens.len() < MAX_READS_PER_TICK
                    {
                        slot.relay_in.extend_from_slice(data);
                        slot.relay_lens.push(n);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            // ICMP port unreachable from the peer surfaces here on Linux; keep going.
            Err(_) => break,
        }
    }
    if read_rtcp {
        for _ in 0..MAX_READS_PER_TICK {
            match slot.ports.rtcp.recv_from(recv_buf) {
                Ok((n, from)) => {
                    if let Some(data) = recv_buf.get(..n) {
                        slot.session.handle_rtcp(from, data);
                    }
                }
                Err(_) => break,
            }
        }
    }
    if let Some(dest) = slot.session.poll_packet(send_buf) {
        let _ = slot.ports.rtp.send_to(send_buf, dest);
    }
    if let Some(recorder) = slot.recorder.as_mut()
        && let Some(end) = recorder.write(slot.session.received_frame(), slot.session.sent_frame())
    {
        slot.end_recording(end);
    }
    if slot.external.is_some() {
        service_external(slot, recv_buf, send_buf);
    }
    if let Some((id, detector)) = slot.amd.as_mut()
        && let Some(decision) = detector.process(slot.session.received_frame())
    {
        let _ = slot.events.send(EngineEvent::Amd { id: *id, decision });
        slot.amd = None;
    }
    if let Some(dest) = slot.session.poll_rtcp(ntp, send_buf) {
        let _ = slot.ports.rtcp.send_to(send_buf, dest);
    }
    flush_events(slot);
}

fn flush_events(slot: &mut Slot) {
    while let Some(event) = slot.session.poll_event() {
        match event {
            // Keys on a bridged line go on to the other side too (at most 32 per tick).
            MediaEvent::Dtmf { digit, .. }
                if slot.bridged_with.is_some() && slot.forward_dtmf.len() < 32 =>
            {
                slot.forward_dtmf.push(digit);
            }
            MediaEvent::DigitsSent {
                id: FORWARDED_DTMF_ID,
            } => continue,
            _ => {}
        }
        let _ = slot.events.send(EngineEvent::Media(event));
    }
}

/// The wall clock as a 64-bit NTP timestamp (RFC 3550 §4), for RTCP sender reports.
fn ntp_now() -> u64 {
    const UNIX_TO_NTP_SECS: u64 = 2_208_988_800;
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() + UNIX_TO_NTP_SECS;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Hands out even RTP ports from a range, round-robin, skipping ports in use.
#[derive(Debug)]
struct PortAllocator {
    ip: IpAddr,
    low: u16,
    high: u16,
    next: Mutex<u16>,
}

impl PortAllocator {
    fn new(ip: IpAddr, low: u16, high: u16) -> Self {
        let low = low + (low % 2);
        // The last RTP port needs its RTCP port inside the range too.
        let high = high.saturating_sub(1);
        PortAllocator {
            ip,
            low,
            high: high.max(low),
            next: Mutex::new(low),
        }
    }

    fn bind(&self) -> std::io::Result<RtpPorts> {
        let span = u32::from(self.high - self.low) / 2 + 1;
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for _ in 0..span {
            let port = *next;
            *next = if port.saturating_add(2) > self.high {
                self.low
            } else {
                port + 2
            };
            let Ok(rtp) = UdpSocket::bind((self.ip, port)) else {
                continue;
            };
            if let Ok(rtcp) = UdpSocket::bind((self.ip, port + 1)) {
                return Ok(RtpPorts { rtp, rtcp });
            }
        }
        Err(std::io::Error::new(
            ErrorKind::AddrInUse,
            "no free RTP port in the configured range",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_even_and_reused_after_release() {
        let alloc = PortAllocator::new(IpAddr::from([127, 0, 0, 1]), 40001, 40005);
        let a = alloc.bind().unwrap();
        let b = alloc.bind().unwrap();
        let pa = a.local_addr().unwrap().port();
        let pb = b.local_addr().unwrap().port();
        assert_eq!((pa % 2, pb % 2), (0, 0));
        assert_ne!(pa, pb);
        assert_eq!(a.rtcp.local_addr().unwrap().port(), pa + 1);
        assert!(
            alloc.bind().is_err(),
            "range 40002..=40005 holds two RTP/RTCP pairs"
        );
        drop(a);
        assert_eq!(alloc.bind().unwrap().local_addr().unwrap().port(), pa);
    }

    /// Two sessions on one worker, each with a peer socket on loopback.
    struct Bridge {
        _engine: MediaEngine,
        a: MediaHandle,
        b: MediaHandle,
        peer_a: UdpSocket,
        peer_b: UdpSocket,
        to_a: SocketAddr,
    }

    fn bridge(codec_b: media::Codec) -> Bridge {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let engine = MediaEngine::start(1, ip, 41200, 41299).unwrap();
        let peer_a = UdpSocket::bind((ip, 0)).unwrap();
        let peer_b = UdpSocket::bind((ip, 0)).unwrap();
        peer_b
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        let attach = |peer: &UdpSocket, codec: media::Codec, ssrc: u32| {
            let ports = engine.bind_rtp().unwrap();
            let local = ports.rtp.local_addr().unwrap();
            let config = media::SessionConfig {
                codec,
                payload_type: if codec == media::Codec::Pcmu { 0 } else { 8 },
                dtmf_payload_type: Some(101),
                ssrc,
                initial_seq: 1,
                initial_timestamp: 0,
                remote: Some(peer.local_addr().unwrap()),
                ptime_ms: 20,
                rtp_timeout_ms: 0,
            };
            let handle = engine
                .attach_on(Some(0), ports, MediaSession::new(config), events.clone())
                .unwrap();
            (handle, local)
        };
        let (a, to_a) = attach(&peer_a, media::Codec::Pcmu, 0xAAAA);
        let (b, _) = attach(&peer_b, codec_b, 0xBBBB);
        assert!(a.bridge(b.key(), b.worker_index()));
        Bridge {
            _engine: engine,
            a,
            b,
            peer_a,
            peer_b,
            to_a,
        }
    }

    /// Sends 10 ms PCMU packets (80 bytes: the PCM bridge only ever sends 160) from A's peer
    /// until B's peer gets a packet with that payload, or `limit` packets of B's own went by
    /// first. Returns the relayed packet, if one came.
    fn relayed(bridge: &Bridge, fill: u8, limit: usize) -> Option<media::rtp::RtpHeader> {
        let payload = [fill; 80];
        let mut buf = [0u8; 1500];
        let mut own = 0;
        for seq in 0..limit as u16 {
            let mut packet = Vec::new();
            media::rtp::RtpHeader {
                marker: false,
                payload_type: 0,
                sequence_number: 7000 + seq,
                timestamp: 80 * u32::from(seq),
                ssrc: 0x1234,
            }
            .write(&mut packet);
            packet.extend_from_slice(&payload);
            bridge.peer_a.send_to(&packet, bridge.to_a).unwrap();
            // Whatever B's peer gets next: a relayed packet or one B made itself.
            let n = bridge.peer_b.recv(&mut buf).ok()?;
            let got = media::rtp::RtpPacket::parse(&buf[..n]).ok()?;
            if got.payload == payload {
                return Some(got.header);
            }
            own += 1;
            if own >= limit {
                return None;
            }
        }
        None
    }

    #[test]
    fn a_bridge_of_one_codec_relays_packets_unchanged_but_for_the_header() {
        let bridge = bridge(media::Codec::Pcmu);
        let header =
            relayed(&bridge, 0x5A, 50).expect("A's packet reaches B's peer as it was sent");
        assert_eq!(header.ssrc, 0xBBBB, "sent as B's stream");
        assert_eq!(header.payload_type, 0);
        // Audio of B's own (a prompt) ends the relay: back to the PCM bridge (160-byte frames).
        bridge.b.play(1, vec![0i16; 8000].into());
        // (Another payload: packets relayed before the command are still arriving.)
        assert_eq!(
            relayed(&bridge, 0x33, 20),
            None,
            "no relay while B plays its own audio"
        );
        drop(bridge.a);
    }

    #[test]
    fn a_bridge_across_codecs_goes_through_pcm() {
        let bridge = bridge(media::Codec::Pcma);
        assert_eq!(relayed(&bridge, 0x5A, 20), None);
    }

    fn slot() -> Slot {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let config = media::SessionConfig {
            codec: media::Codec::Pcmu,
            payload_type: 0,
            dtmf_payload_type: Some(101),
            ssrc: 1,
            initial_seq: 1,
            initial_timestamp: 0,
            remote: None,
            ptime_ms: 20,
            rtp_timeout_ms: 0,
        };
        let ports = RtpPorts {
            rtp: UdpSocket::bind((ip, 0)).unwrap(),
            rtcp: UdpSocket::bind((ip, 0)).unwrap(),
        };
        let events = tokio::sync::mpsc::unbounded_channel().0;
        Slot::new(ports, Box::new(MediaSession::new(config)), events)
    }

    fn phase_sizes(sessions: &Sessions) -> Vec<usize> {
        sessions.by_phase.iter().map(HashMap::len).collect()
    }

    #[test]
    fn new_sessions_spread_over_the_phases_and_partners_share_one() {
        let mut sessions = Sessions::default();
        for key in 0..9 {
            sessions.insert(key, slot());
        }
        assert_eq!(phase_sizes(&sessions), [3, 2, 2, 2]);
        assert_eq!(sessions.len(), 9);

        // 1 is in phase 1, 2 in phase 2: across phases, both are reachable at once.
        assert_ne!(sessions.phase_of[&1], sessions.phase_of[&2]);
        let [x, y] = sessions.pair_mut(1, 2).unwrap();
        x.bridged_with = Some(2);
        y.bridged_with = Some(1);
        sessions.join_phase(2, 1);
        assert_eq!(sessions.phase_of[&2], sessions.phase_of[&1]);
        assert_eq!(sessions.get(&2).unwrap().bridged_with, Some(1));
        assert_eq!(phase_sizes(&sessions), [3, 3, 1, 2]);
        assert!(sessions.pair_mut(1, 2).is_some());

        assert!(
            sessions.pair_mut(1, 1).is_none(),
            "one session is not a pair"
        );
        assert!(sessions.pair_mut(1, 99).is_none());
        assert!(sessions.remove(&2).is_some());
        assert!(!sessions.contains_key(&2) && sessions.get_mut(&2).is_none());
        assert_eq!(phase_sizes(&sessions), [3, 2, 1, 2]);
        // The next one fills the emptied phase.
        sessions.insert(10, slot());
        assert_eq!(sessions.phase_of[&10], 2);
        assert_eq!(sessions.values_mut().count(), 9);
    }
}
