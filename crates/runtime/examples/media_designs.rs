//! Media socket/threading designs, measured: CPU per RTP packet on one core (ADR 0003 follow-up).
//!
//! Emulates N G.711 calls: every call receives one 172-byte RTP-sized datagram every 20 ms from a
//! load generator and sends one 172-byte datagram every 20 ms back to it. The server copies each
//! received payload into its call (the echo it sends next), so every design does the same
//! (minimal) per-packet work and differs only in how sockets, timers and threads are arranged:
//!
//! - `tick-per-socket`: one thread, one socket per call; every 20 ms tick, per call, `recv_from`
//!   until WouldBlock, then one `send_to` (today's `media_engine`).
//! - `task-per-call`: a tokio current-thread runtime, one task per call with
//!   `tokio::time::interval(20 ms)` (phases spread over the tick) and a tokio `UdpSocket`:
//!   readiness-driven receive, periodic send.
//! - `tick-shared-socket`: one socket for all calls, demultiplexed by source address (a
//!   `HashMap`); per tick `recv_from` until WouldBlock, then one `send_to` per call.
//! - `tick-per-socket-mmsg`: like `tick-per-socket`, but one `recvmmsg` (MSG_DONTWAIT, vlen 4) per
//!   socket per tick, which also stands for the trailing WouldBlock read.
//! - `tick-shared-mmsg`: the shared socket with `recvmmsg`/`sendmmsg` in batches of 64.
//!
//! The generator (`--role client`) binds one socket per call (distinct source ports, which the
//! shared designs need to tell calls apart), sends N datagrams per 20 ms on absolute deadlines,
//! spread over `--slots` (20) 1 ms slots as independent calls would be, and drains the replies.
//!
//! The server reports, over the 10 s after a 2.5 s warm-up from its first packet: its CPU time
//! (utime+stime from `/proc/self/stat`, and the summed per-thread `schedstat` run time; the
//! `schedstat` run-queue wait shows how much another process on the core held it off), packets
//! received and sent, µs of CPU per packet pair ((received + sent) / 2), the longest tick and the
//! host's UDP receive-buffer drops (`/proc/net/snmp`, host-wide). It exits `--secs` after its first
//! packet. The client reports what it sent and what came back in the same window.
//!
//! Run (one core each; everything on 127.0.0.1; each process holds N sockets, so raise the
//! open-files limit with `ulimit -n 65536` in the shell for N beyond ~15000):
//!
//! ```text
//! cargo build --release -p voxflow-runtime --example media_designs
//! EX=target/release/examples/media_designs
//! taskset -c 1 timeout 40 $EX --role server --design tick-per-socket --n 1000 &
//! sleep 0.5
//! taskset -c 0 timeout 40 $EX --role client --design tick-per-socket --n 1000
//! wait
//! ```

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg, setsockopt, sockopt,
};

/// One G.711 packet of audio.
const TICK: Duration = Duration::from_millis(20);
/// 12-byte RTP header + 160 bytes of 8 kHz G.711.
const PKT: usize = 172;
const WARMUP: Duration = Duration::from_millis(2500);
const WINDOW: Duration = Duration::from_secs(10);
/// Reads per socket per tick at most (as in `media_engine`).
const MAX_READS: usize = 32;
/// A tick loop this far behind re-anchors instead of bursting.
const MAX_LAG: Duration = Duration::from_millis(200);
const BATCH: usize = 64;
const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

type Error = Box<dyn std::error::Error>;

static RX: AtomicU64 = AtomicU64::new(0);
static TX: AtomicU64 = AtomicU64::new(0);
static SEND_ERRORS: AtomicU64 = AtomicU64::new(0);
static MAX_BUSY_US: AtomicU64 = AtomicU64::new(0);
static STARTED: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Design {
    TickPerSocket,
    TaskPerCall,
    TickShared,
    TickPerSocketMmsg,
    TickSharedMmsg,
}

impl Design {
    fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "tick-per-socket" => Design::TickPerSocket,
            "task-per-call" => Design::TaskPerCall,
            "tick-shared-socket" => Design::TickShared,
            "tick-per-socket-mmsg" => Design::TickPerSocketMmsg,
            "tick-shared-mmsg" => Design::TickSharedMmsg,
            _ => return Err(format!("unknown design {s}").into()),
        })
    }

    fn shared(self) -> bool {
        matches!(self, Design::TickShared | Design::TickSharedMmsg)
    }
}

struct Args {
    server: bool,
    design: Design,
    design_name: String,
    n: usize,
    base_port: u16,
    secs: u64,
    slots: usize,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        server: true,
        design: Design::TickPerSocket,
        design_name: "tick-per-socket".into(),
        n: 1000,
        base_port: 24000,
        secs: 15,
        slots: 20,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [key, value] = pair else {
            return Err("arguments come as --key value".into());
        };
        match key.as_str() {
            "--role" => a.server = value == "server",
            "--design" => {
                a.design = Design::parse(value)?;
                a.design_name.clone_from(value);
            }
            "--n" => a.n = value.parse()?,
            "--base-port" => a.base_port = value.parse()?,
            "--secs" => a.secs = value.parse()?,
            "--slots" => a.slots = value.parse::<usize>()?.clamp(1, 20),
            _ => return Err(format!("unknown argument {key}").into()),
        }
    }
    if a.secs < 13 {
        return Err("--secs must cover the 2.5 s warm-up and the 10 s window".into());
    }
    Ok(a)
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    if args.server {
        server(&args)
    } else {
        client(&args)
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement

/// utime + stime of this process, in seconds.
fn proc_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the ")" of the command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

/// Summed run time and run-queue wait of this process's threads (`schedstat`), in seconds.
fn schedstat_secs() -> (f64, f64) {
    let (mut run, mut wait) = (0u64, 0u64);
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let text = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            let mut fields = text
                .split_whitespace()
                .map(|f| f.parse::<u64>().unwrap_or(0));
            run += fields.next().unwrap_or(0);
            wait += fields.next().unwrap_or(0);
        }
    }
    (run as f64 / 1e9, wait as f64 / 1e9)
}

/// Host-wide UDP RcvbufErrors.
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

struct Snapshot {
    cpu: f64,
    sched: f64,
    runq_wait: f64,
    rx: u64,
    tx: u64,
    drops: u64,
}

fn snapshot() -> Snapshot {
    let (sched, runq_wait) = schedstat_secs();
    Snapshot {
        cpu: proc_cpu_secs(),
        sched,
        runq_wait,
        rx: RX.load(Ordering::Relaxed),
        tx: TX.load(Ordering::Relaxed),
        drops: udp_rcvbuf_errors(),
    }
}

/// Waits for the first packet, measures the window, prints one line and ends the process.
fn spawn_meter(design: String, n: usize, secs: u64) {
    thread::spawn(move || {
        let give_up = Instant::now() + Duration::from_secs(30);
        while RX.load(Ordering::Relaxed) == 0 {
            if Instant::now() > give_up {
                eprintln!("server: no packet in 30 s");
                std::process::exit(2);
            }
            thread::sleep(Duration::from_millis(5));
        }
        let first = Instant::now();
        STARTED.store(true, Ordering::Relaxed);
        thread::sleep(WARMUP);
        let a = snapshot();
        MAX_BUSY_US.store(0, Ordering::Relaxed);
        thread::sleep(WINDOW);
        let b = snapshot();
        let busy = MAX_BUSY_US.load(Ordering::Relaxed);
        let (rx, tx) = (b.rx - a.rx, b.tx - a.tx);
        let expected = n as u64 * (WINDOW.as_millis() / TICK.as_millis()) as u64;
        let pairs = (rx + tx) as f64 / 2.0;
        let us = |secs: f64| secs * 1e6 / pairs.max(1.0);
        println!(
            "server design={design} n={n} cpu_s={:.3} sched_s={:.3} core_util={:.1}% \
             us_per_pair={:.2} us_per_pair_sched={:.2} rx={rx} tx={tx} expected_each={expected} \
             send_errors={} max_tick_busy_ms={:.2} runq_wait_ms={:.0} host_udp_rcvbuf_drops={}",
            b.cpu - a.cpu,
            b.sched - a.sched,
            (b.sched - a.sched) / WINDOW.as_secs_f64() * 100.0,
            us(b.cpu - a.cpu),
            us(b.sched - a.sched),
            SEND_ERRORS.load(Ordering::Relaxed),
            busy as f64 / 1000.0,
            (b.runq_wait - a.runq_wait) * 1000.0,
            b.drops - a.drops,
        );
        if let Some(rest) =
            (first + Duration::from_secs(secs)).checked_duration_since(Instant::now())
        {
            thread::sleep(rest);
        }
        std::process::exit(0);
    });
}

// ---------------------------------------------------------------------------------------------
// Server

/// A call's media state: where it sends, and the payload it echoes.
#[derive(Clone)]
struct Call {
    remote: Option<SocketAddr>,
    seq: u16,
    payload: [u8; PKT - 12],
}

impl Default for Call {
    fn default() -> Self {
        Call {
            remote: None,
            seq: 0,
            payload: [0xff; PKT - 12],
        }
    }
}

impl Call {
    fn on_rtp(&mut self, from: SocketAddr, data: &[u8]) {
        self.remote = Some(from);
        if let Some(p) = data.get(12..PKT) {
            self.payload.copy_from_slice(p);
        }
    }

    /// Writes the next packet; `None` before the peer's address is known.
    fn next_packet(&mut self, out: &mut [u8; PKT]) -> Option<SocketAddr> {
        let to = self.remote?;
        self.seq = self.seq.wrapping_add(1);
        out[0] = 0x80;
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[12..].copy_from_slice(&self.payload);
        Some(to)
    }
}

fn server(args: &Args) -> Result<(), Error> {
    spawn_meter(args.design_name.clone(), args.n, args.secs);
    match args.design {
        Design::TickPerSocket | Design::TickPerSocketMmsg => tick_per_socket(args),
        Design::TaskPerCall => task_per_call(args),
        Design::TickShared | Design::TickSharedMmsg => tick_shared(args),
    }
}

/// Calls `work` every 20 ms on absolute deadlines, recording the longest tick.
fn tick_loop(mut work: impl FnMut()) -> ! {
    let mut deadline = Instant::now();
    loop {
        let started = Instant::now();
        work();
        let busy = started.elapsed().as_micros() as u64;
        if STARTED.load(Ordering::Relaxed) {
            MAX_BUSY_US.fetch_max(busy, Ordering::Relaxed);
        }
        deadline += TICK;
        let now = Instant::now();
        if let Some(wait) = deadline.checked_duration_since(now) {
            thread::sleep(wait);
        } else if now.duration_since(deadline) > MAX_LAG {
            deadline = now;
        }
    }
}

fn bind_call_sockets(args: &Args) -> Result<Vec<UdpSocket>, Error> {
    (0..args.n)
        .map(|i| {
            let port = u16::try_from(usize::from(args.base_port) + i)?;
            let s = UdpSocket::bind((LOCALHOST, port))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

fn count_send(r: std::io::Result<usize>, tx: &mut u64) {
    match r {
        Ok(_) => *tx += 1,
        Err(_) => {
            SEND_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn tick_per_socket(args: &Args) -> Result<(), Error> {
    let socks = bind_call_sockets(args)?;
    let mut calls = vec![Call::default(); args.n];
    let mmsg = args.design == Design::TickPerSocketMmsg;
    let mut buf = [0u8; 2048];
    let mut bufs = [[0u8; 2048]; 4];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(4, None);
    let mut out = [0u8; PKT];
    tick_loop(|| {
        let (mut rx, mut tx) = (0, 0);
        for (sock, call) in socks.iter().zip(calls.iter_mut()) {
            if mmsg {
                // One recvmmsg per socket per tick; only a full batch needs another.
                for _ in 0..MAX_READS / 4 {
                    let got = recv_batch(sock, &mut headers, &mut bufs, |from, data| {
                        call.on_rtp(from, data);
                    });
                    rx += got;
                    if got < bufs.len() as u64 {
                        break;
                    }
                }
            } else {
                for _ in 0..MAX_READS {
                    match sock.recv_from(&mut buf) {
                        Ok((len, from)) => {
                            call.on_rtp(from, &buf[..len]);
                            rx += 1;
                        }
                        Err(_) => break, // WouldBlock (or an ICMP error): next call
                    }
                }
            }
            if let Some(to) = call.next_packet(&mut out) {
                count_send(sock.send_to(&out, to), &mut tx);
            }
        }
        RX.fetch_add(rx, Ordering::Relaxed);
        TX.fetch_add(tx, Ordering::Relaxed);
    })
}

/// One `recvmmsg` (MSG_DONTWAIT) into `bufs`; hands each datagram to `on_packet`.
fn recv_batch<const B: usize>(
    sock: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrIn>,
    bufs: &mut [[u8; 2048]; B],
    mut on_packet: impl FnMut(SocketAddr, &[u8]),
) -> u64 {
    let mut meta = [(0usize, None::<SockaddrIn>); B];
    let mut got = 0;
    {
        let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        if let Ok(results) = recvmmsg(
            sock.as_raw_fd(),
            headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            for (slot, msg) in meta.iter_mut().zip(results) {
                *slot = (msg.bytes, msg.address);
                got += 1;
            }
        }
    }
    for ((len, addr), buf) in meta.iter().zip(bufs.iter()).take(got) {
        if let Some(addr) = addr {
            on_packet(SocketAddr::V4(SocketAddrV4::from(*addr)), &buf[..*len]);
        }
    }
    got as u64
}

fn tick_shared(args: &Args) -> Result<(), Error> {
    let sock = UdpSocket::bind((LOCALHOST, args.base_port))?;
    // A whole tick of every call's packets waits in this one buffer (4 MiB = net.core.rmem_max
    // here; the kernel doubles it).
    setsockopt(&sock, sockopt::RcvBuf, &(4 << 20))?;
    setsockopt(&sock, sockopt::SndBuf, &(4 << 20))?;
    let mmsg = args.design == Design::TickSharedMmsg;
    // The mmsg variant keeps the socket blocking: receives pass MSG_DONTWAIT, and a blocking
    // sendmmsg sends the whole batch.
    sock.set_nonblocking(!mmsg)?;
    let mut index: HashMap<SocketAddr, usize> = HashMap::with_capacity(args.n);
    let mut calls: Vec<Call> = Vec::with_capacity(args.n);
    let mut buf = [0u8; 2048];
    let mut bufs = Box::new([[0u8; 2048]; BATCH]);
    let mut rheaders = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut sheaders = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut out = [0u8; PKT];
    let mut outs = Box::new([[0u8; PKT]; BATCH]);
    let mut dests = [None::<SockaddrIn>; BATCH];
    let max_reads = MAX_READS * args.n.max(1);
    tick_loop(|| {
        let (mut rx, mut tx) = (0u64, 0u64);
        let mut deliver = |from: SocketAddr, data: &[u8]| {
            let next = calls.len();
            let i = *index.entry(from).or_insert(next);
            if i == next {
                calls.push(Call::default());
            }
            calls[i].on_rtp(from, data);
        };
        if mmsg {
            loop {
                let got = recv_batch(&sock, &mut rheaders, &mut bufs, &mut deliver);
                rx += got;
                if got < BATCH as u64 || rx as usize >= max_reads {
                    break;
                }
            }
            let mut k = 0;
            for call in &mut calls {
                if let Some(SocketAddr::V4(to)) = call.next_packet(&mut outs[k]) {
                    dests[k] = Some(SockaddrIn::from(to));
                    k += 1;
                }
                if k == BATCH {
                    tx += send_batch(&sock, &mut sheaders, &outs[..], &dests[..]);
                    k = 0;
                }
            }
            if k > 0 {
                tx += send_batch(&sock, &mut sheaders, &outs[..k], &dests[..k]);
            }
        } else {
            for _ in 0..max_reads {
                match sock.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        deliver(from, &buf[..len]);
                        rx += 1;
                    }
                    Err(_) => break,
                }
            }
            for call in &mut calls {
                if let Some(to) = call.next_packet(&mut out) {
                    count_send(sock.send_to(&out, to), &mut tx);
                }
            }
        }
        RX.fetch_add(rx, Ordering::Relaxed);
        TX.fetch_add(tx, Ordering::Relaxed);
    })
}

/// One `sendmmsg` of `outs[i]` to `dests[i]`; counts the batch as sent when the call succeeds.
fn send_batch(
    sock: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrIn>,
    outs: &[[u8; PKT]],
    dests: &[Option<SockaddrIn>],
) -> u64 {
    let iovs: Vec<[IoSlice<'_>; 1]> = outs.iter().map(|p| [IoSlice::new(p)]).collect();
    let none: [ControlMessage<'_>; 0] = [];
    // The results are not iterated: for sendmmsg, nix's iterator would read unwritten addresses.
    match sendmmsg(
        sock.as_raw_fd(),
        headers,
        iovs.iter(),
        dests,
        none,
        MsgFlags::empty(),
    ) {
        Ok(_) => outs.len() as u64,
        Err(_) => {
            SEND_ERRORS.fetch_add(outs.len() as u64, Ordering::Relaxed);
            0
        }
    }
}

fn task_per_call(args: &Args) -> Result<(), Error> {
    let socks = bind_call_sockets(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(socks.len());
        for (i, sock) in socks.into_iter().enumerate() {
            let sock = tokio::net::UdpSocket::from_std(sock)?;
            // Calls start at random moments: spread their 20 ms phases.
            let phase = Duration::from_millis((i % 20) as u64);
            tasks.push(tokio::spawn(call_task(sock, start + phase)));
        }
        for t in tasks {
            t.await?;
        }
        Ok(())
    })
}

async fn call_task(sock: tokio::net::UdpSocket, first: tokio::time::Instant) {
    let mut interval = tokio::time::interval_at(first, TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut call = Call::default();
    let mut buf = [0u8; 2048];
    let mut out = [0u8; PKT];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let Ok((len, from)) = r {
                    call.on_rtp(from, &buf[..len]);
                    RX.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ = interval.tick() => {
                if let Some(to) = call.next_packet(&mut out) {
                    let mut tx = 0;
                    count_send(sock.send_to(&out, to).await, &mut tx);
                    TX.fetch_add(tx, Ordering::Relaxed);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load generator

fn client(args: &Args) -> Result<(), Error> {
    let n = args.n;
    let mut socks = Vec::with_capacity(n);
    let mut targets = Vec::with_capacity(n);
    for i in 0..n {
        let s = UdpSocket::bind((LOCALHOST, 0))?;
        s.set_nonblocking(true)?;
        socks.push(s);
        let port = if args.design.shared() {
            args.base_port
        } else {
            u16::try_from(usize::from(args.base_port) + i)?
        };
        targets.push(SocketAddr::from((LOCALHOST, port)));
    }
    let slots = args.slots;
    let slot_len = TICK / slots as u32;
    let mut pkt = [0u8; PKT];
    pkt[0] = 0x80;
    let mut buf = [0u8; 2048];
    let (mut sent, mut send_errors, mut received, mut received_window) = (0u64, 0u64, 0u64, 0u64);
    let (mut late_slots, mut max_late) = (0u64, Duration::ZERO);
    let (cpu0, wait0) = schedstat_secs();
    let start = Instant::now();
    let end = start + Duration::from_secs(args.secs);
    let (w0, w1) = (start + WARMUP, start + WARMUP + WINDOW);
    let mut seq: u16 = 0;
    for k in 0u64.. {
        let deadline = start + slot_len * k as u32;
        if deadline >= end {
            break;
        }
        let now = Instant::now();
        match deadline.checked_duration_since(now) {
            Some(wait) => thread::sleep(wait),
            None => {
                let late = now - deadline;
                max_late = max_late.max(late);
                if late > Duration::from_millis(2) {
                    late_slots += 1;
                }
            }
        }
        let phase = (k % slots as u64) as usize;
        if phase == 0 {
            seq = seq.wrapping_add(1);
            pkt[2..4].copy_from_slice(&seq.to_be_bytes());
        }
        for i in (phase..n).step_by(slots) {
            match socks[i].send_to(&pkt, targets[i]) {
                Ok(_) => sent += 1,
                Err(_) => send_errors += 1,
            }
        }
        // Drain the calls half a tick away from the ones just sent.
        let now = Instant::now();
        let in_window = now >= w0 && now < w1;
        for sock in socks
            .iter()
            .skip((phase + slots / 2) % slots)
            .step_by(slots)
        {
            while sock.recv_from(&mut buf).is_ok() {
                received += 1;
                received_window += u64::from(in_window);
            }
        }
    }
    let (cpu1, wait1) = schedstat_secs();
    let (cpu, wait) = (cpu1 - cpu0, wait1 - wait0);
    let expected_window = n as u64 * (WINDOW.as_millis() / TICK.as_millis()) as u64;
    println!(
        "client design={} n={n} sent={sent} send_errors={send_errors} received={received} \
         received_window={received_window} expected_window={expected_window} late_slots={late_slots} \
         max_late_ms={:.2} client_core_util={:.1}% client_runq_wait_ms={:.0}",
        args.design_name,
        max_late.as_secs_f64() * 1000.0,
        cpu / args.secs as f64 * 100.0,
        wait * 1000.0,
    );
    Ok(())
}
