//! The media engine: a few worker threads, each owning many RTP sessions.
//!
//! Each worker wakes once per 20 ms tick on absolute deadlines, drains every session's socket
//! (non-blocking), feeds the packets to the sans-IO [`media::MediaSession`], sends each session's
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

use crate::recording::{Recorder, RecordingEnd};

/// How often every session is serviced: one G.711 packet of 20 ms.
const TICK: Duration = Duration::from_millis(20);
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
}

/// Owner of the media worker threads and the RTP port range.
#[derive(Debug)]
pub(crate) struct MediaEngine {
    workers: Vec<mpsc::Sender<WorkerCommand>>,
    next_worker: AtomicUsize,
    next_key: AtomicU64,
    ports: PortAllocator,
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
        for n in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel();
            thread::Builder::new()
                .name(format!("media-{n}"))
                .spawn(move || run_worker(&rx))?;
            senders.push(tx);
        }
        Ok(MediaEngine {
            workers: senders,
            next_worker: AtomicUsize::new(0),
            next_key: AtomicU64::new(1),
            ports: PortAllocator::new(bind_ip, low, high),
        })
    }

    /// Bind a fresh RTP socket (even port) from the range, and RTCP on the next port.
    pub(crate) fn bind_rtp(&self) -> std::io::Result<RtpPorts> {
        self.ports.bind()
    }

    /// Hand a session and its socket to a worker. The call drives it through the returned handle;
    /// dropping the handle detaches it and frees the port.
    pub(crate) fn attach(
        &self,
        ports: RtpPorts,
        session: MediaSession,
        events: UnboundedSender<EngineEvent>,
    ) -> std::io::Result<MediaHandle> {
        ports.rtp.set_nonblocking(true)?;
        ports.rtcp.set_nonblocking(true)?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let n = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let worker = self.workers[n].clone();
        worker
            .send(WorkerCommand::Attach {
                key,
                ports,
                session: Box::new(session),
                events,
            })
            .map_err(|_| std::io::Error::other("media worker stopped"))?;
        Ok(MediaHandle { key, worker })
    }
}

/// A call's grip on its media session inside a worker.
#[derive(Debug)]
pub(crate) struct MediaHandle {
    key: u64,
    worker: mpsc::Sender<WorkerCommand>,
}

impl MediaHandle {
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
}

impl Slot {
    /// Hands the running recording back to the call.
    fn end_recording(&mut self, end: RecordingEnd) {
        if let Some(recorder) = self.recorder.take() {
            let _ = self
                .events
                .send(EngineEvent::RecordingDone { recorder, end });
        }
    }
}

fn run_worker(commands: &mpsc::Receiver<WorkerCommand>) {
    let mut sessions: HashMap<u64, Slot> = HashMap::new();
    let mut recv_buf = vec![0u8; 2048];
    let mut send_buf = Vec::with_capacity(512);
    let mut deadline = Instant::now();
    let mut tick: u64 = 0;
    loop {
        tick += 1;
        let ntp = ntp_now();
        loop {
            match commands.try_recv() {
                Ok(cmd) => apply(&mut sessions, cmd),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let rtcp_turn = tick % RTCP_READ_EVERY;
        for (key, slot) in &mut sessions {
            let read_rtcp = key % RTCP_READ_EVERY == rtcp_turn;
            service(slot, &mut recv_buf, &mut send_buf, read_rtcp, ntp);
        }
        deadline += TICK;
        let now = Instant::now();
        if let Some(wait) = deadline.checked_duration_since(now) {
            // Block on the command channel until the next tick: a new call is attached at once.
            match commands.recv_timeout(wait) {
                Ok(cmd) => {
                    apply(&mut sessions, cmd);
                    // Drain the rest and sleep out the tick.
                    while let Ok(cmd) = commands.try_recv() {
                        apply(&mut sessions, cmd);
                    }
                    if let Some(rest) = deadline.checked_duration_since(Instant::now()) {
                        thread::sleep(rest);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        } else if now.duration_since(deadline) > MAX_LAG {
            tracing::warn!(
                lag_ms = now.duration_since(deadline).as_millis() as u64,
                "media worker behind; re-anchoring"
            );
            deadline = now;
        }
    }
}

fn apply(sessions: &mut HashMap<u64, Slot>, cmd: WorkerCommand) {
    match cmd {
        WorkerCommand::Attach {
            key,
            ports,
            session,
            events,
        } => {
            sessions.insert(
                key,
                Slot {
                    ports,
                    session,
                    events,
                    recorder: None,
                },
            );
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
                slot.end_recording(RecordingEnd::Hangup);
            }
        }
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
    if let Some(dest) = slot.session.poll_rtcp(ntp, send_buf) {
        let _ = slot.ports.rtcp.send_to(send_buf, dest);
    }
    flush_events(slot);
}

fn flush_events(slot: &mut Slot) {
    while let Some(event) = slot.session.poll_event() {
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
}
