//! The media engine: a few worker threads, each owning many RTP sessions.
//!
//! Each worker wakes once per 20 ms tick on absolute deadlines, drains every session's socket
//! (non-blocking), feeds the packets to the sans-IO [`media::MediaSession`], sends each session's
//! next packet, and forwards media events to the owning call. There is no task, timer or wake-up per
//! call or per packet: the cost of a call is its share of one loop iteration (ADR 0003).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use media::{MediaEvent, MediaSession};
use tokio::sync::mpsc::UnboundedSender;

/// How often every session is serviced: one G.711 packet of 20 ms.
const TICK: Duration = Duration::from_millis(20);
/// A worker more than this far behind re-anchors its clock instead of bursting packets.
const MAX_LAG: Duration = Duration::from_millis(200);
/// Datagrams read per session per tick at most (a flood cannot starve the other sessions).
const MAX_READS_PER_TICK: usize = 32;

enum WorkerCommand {
    Attach {
        key: u64,
        socket: UdpSocket,
        session: Box<MediaSession>,
        events: UnboundedSender<MediaEvent>,
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

    /// Bind a fresh RTP socket (even port) from the range.
    pub(crate) fn bind_rtp(&self) -> std::io::Result<UdpSocket> {
        self.ports.bind()
    }

    /// Hand a session and its socket to a worker. The call drives it through the returned handle;
    /// dropping the handle detaches it and frees the port.
    pub(crate) fn attach(
        &self,
        socket: UdpSocket,
        session: MediaSession,
        events: UnboundedSender<MediaEvent>,
    ) -> std::io::Result<MediaHandle> {
        socket.set_nonblocking(true)?;
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let n = self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let worker = self.workers[n].clone();
        worker
            .send(WorkerCommand::Attach {
                key,
                socket,
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
    socket: UdpSocket,
    session: Box<MediaSession>,
    events: UnboundedSender<MediaEvent>,
}

fn run_worker(commands: &mpsc::Receiver<WorkerCommand>) {
    let mut sessions: HashMap<u64, Slot> = HashMap::new();
    let mut recv_buf = vec![0u8; 2048];
    let mut send_buf = Vec::with_capacity(512);
    let mut deadline = Instant::now();
    loop {
        loop {
            match commands.try_recv() {
                Ok(cmd) => apply(&mut sessions, cmd),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        for slot in sessions.values_mut() {
            service(slot, &mut recv_buf, &mut send_buf);
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
            socket,
            session,
            events,
        } => {
            sessions.insert(
                key,
                Slot {
                    socket,
                    session,
                    events,
                },
            );
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
            sessions.remove(&key);
        }
    }
}

fn service(slot: &mut Slot, recv_buf: &mut [u8], send_buf: &mut Vec<u8>) {
    for _ in 0..MAX_READS_PER_TICK {
        match slot.socket.recv_from(recv_buf) {
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
    if let Some(dest) = slot.session.poll_packet(send_buf) {
        let _ = slot.socket.send_to(send_buf, dest);
    }
    flush_events(slot);
}

fn flush_events(slot: &mut Slot) {
    while let Some(event) = slot.session.poll_event() {
        let _ = slot.events.send(event);
    }
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
        PortAllocator {
            ip,
            low,
            high: high.max(low),
            next: Mutex::new(low),
        }
    }

    fn bind(&self) -> std::io::Result<UdpSocket> {
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
            if let Ok(socket) = UdpSocket::bind((self.ip, port)) {
                return Ok(socket);
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
        assert!(alloc.bind().is_err(), "range 40002..=40004 holds two ports");
        drop(a);
        assert_eq!(alloc.bind().unwrap().local_addr().unwrap().port(), pa);
    }
}
