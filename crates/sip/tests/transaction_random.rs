//! The transaction layer under random traffic: mutated requests and responses from several
//! peers, a transaction user that answers at random, time jumping ahead. Nothing may panic,
//! and once everything is answered and time has passed, no transaction may be left.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use voxflow_sip::{
    Config, Event, Message, Peer, Response, TransactionLayer, Transport, bad_request_response,
};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TEMPLATES: [&str; 7] = [
    "INVITE sip:voxflow@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-B;rport\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.20>;tag=F\r\nTo: <sip:voxflow@192.0.2.10>\r\nCall-ID: C\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.20:5061>\r\nSupported: 100rel\r\nContent-Length: 0\r\n\r\n",
    "PRACK sip:voxflow@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-B\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.20>;tag=F\r\nTo: <sip:voxflow@192.0.2.10>;tag=T\r\nCall-ID: C\r\nCSeq: 2 PRACK\r\nRAck: R 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    "ACK sip:voxflow@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-B\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.20>;tag=F\r\nTo: <sip:voxflow@192.0.2.10>;tag=T\r\nCall-ID: C\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
    "CANCEL sip:voxflow@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-B;rport\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.20>;tag=F\r\nTo: <sip:voxflow@192.0.2.10>\r\nCall-ID: C\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n",
    "BYE sip:voxflow@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-B\r\nMax-Forwards: 70\r\nFrom: <sip:a@192.0.2.20>;tag=F\r\nTo: <sip:voxflow@192.0.2.10>;tag=T\r\nCall-ID: C\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
    "OPTIONS sip:voxflow@192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.20:5061;branch=B\r\nFrom: <sip:a@192.0.2.20>;tag=F\r\nTo: <sip:voxflow@192.0.2.10>\r\nCall-ID: C\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-B\r\nFrom: <sip:voxflow@192.0.2.10>;tag=F\r\nTo: <sip:a@192.0.2.20>;tag=T\r\nCall-ID: C\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
];

fn message(rng: &mut Rng) -> Vec<u8> {
    let template = TEMPLATES[rng.below(TEMPLATES.len())];
    // few distinct branches, call-ids and tags, so that retransmissions and matches happen
    let text = template
        .replace("-B", &format!("-{}", rng.below(8)))
        .replace("branch=B", &format!("branch={}", rng.below(4)))
        .replace("Call-ID: C", &format!("Call-ID: c{}", rng.below(4)))
        .replace("tag=F", &format!("tag=f{}", rng.below(3)))
        .replace("tag=T", &format!("tag=t{}", rng.below(3)))
        .replace("RAck: R", &format!("RAck: {}", 1 + rng.below(3)));
    let mut bytes = text.into_bytes();
    if rng.below(4) == 0 {
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = rng.next() as u8,
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, b';'),
            }
        }
    }
    bytes
}

fn peer(rng: &mut Rng) -> Peer {
    let tcp = rng.below(3) == 0;
    Peer {
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
        addr: format!("192.0.2.{}:{}", 20 + rng.below(2), 5061 + rng.below(2))
            .parse()
            .unwrap(),
        conn: tcp.then_some(1),
    }
}

fn drain(layer: &mut TransactionLayer) -> Vec<Event> {
    while let Some(t) = layer.poll_transmit() {
        assert!(
            Message::parse(&t.data).is_ok(),
            "we sent something unparseable"
        );
    }
    std::iter::from_fn(|| layer.poll_event()).collect()
}

#[test]
fn random_traffic_never_panics_and_leaves_nothing_behind() {
    let mut pracks = 0;
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut layer = TransactionLayer::new(Config {
            seed,
            max_transactions: 64,
            ..Config::default()
        });
        layer.set_rseq_start(Some(1));
        let start = Instant::now();
        let mut now = start;
        let mut pending = Vec::new();
        // INVITEs with a reliable provisional: the TU answers them again on ReliableTimeout
        let mut reliable = Vec::new();
        for _ in 0..2_000 {
            now += Duration::from_millis(rng.below(400) as u64);
            if layer.poll_timeout().is_some_and(|t| t <= now) {
                layer.handle_timeout(now);
            }
            let bytes = message(&mut rng);
            let from = peer(&mut rng);
            match Message::parse(&bytes) {
                Ok(msg) => layer.handle_message(now, from, msg),
                Err(err) => {
                    if let Some(r) = bad_request_response(&bytes, &err) {
                        layer.send_stateless(from, r.into());
                    }
                }
            }
            for event in drain(&mut layer) {
                match event {
                    Event::Request { tx, request, .. } => pending.push((tx, request)),
                    Event::Prack { tx, request, .. } => {
                        pracks += 1;
                        layer.respond(now, tx, Response::for_request(&request, 200));
                    }
                    Event::ReliableTimeout { tx } => {
                        if let Some((_, invite)) = reliable.iter().find(|(t, _)| *t == tx) {
                            let mut r = Response::for_request(invite, 500);
                            r.set_to_tag("t0");
                            layer.respond(now, tx, r);
                        }
                    }
                    Event::Cancelled { invite_tx, request } => {
                        let _ = request;
                        if let Some((_, invite)) = pending.iter().find(|(t, _)| *t == invite_tx) {
                            let mut r = Response::for_request(invite, 487);
                            r.set_to_tag("t0");
                            layer.respond(now, invite_tx, r);
                        }
                    }
                    _ => {}
                }
            }
            // the TU answers some pending requests, at random
            if !pending.is_empty() && rng.below(2) == 0 {
                let (tx, request) = pending.swap_remove(rng.below(pending.len()));
                let status = [180, 200, 486, 503, 183][rng.below(5)];
                let mut r = Response::for_request(&request, status);
                r.set_to_tag(&format!("t{}", rng.below(3)));
                if status == 183 {
                    // reliably when the INVITE allows it; the PRACKs come at random
                    if layer.respond_reliably(now, tx, r.clone()).is_ok() {
                        reliable.push((tx, request.clone()));
                    }
                }
                layer.respond(now, tx, r.clone());
                if status < 200 {
                    let mut fin = Response::for_request(&request, 200);
                    fin.set_to_tag("t0");
                    layer.respond(now, tx, fin);
                }
            }
            drain(&mut layer);
        }
        // answer everything left, then let all timers run out
        for (tx, request) in pending.drain(..) {
            let mut r = Response::for_request(&request, 500);
            r.set_to_tag("t0");
            layer.respond(now, tx, r);
        }
        drain(&mut layer);
        let mut steps = 0;
        while let Some(t) = layer.poll_timeout() {
            now = now.max(t);
            layer.handle_timeout(now);
            for event in drain(&mut layer) {
                // the TU rejects an INVITE whose reliable provisional was never PRACKed
                if let Event::ReliableTimeout { tx } = event
                    && let Some((_, invite)) = reliable.iter().find(|(t, _)| *t == tx)
                {
                    let mut r = Response::for_request(invite, 500);
                    r.set_to_tag("t0");
                    layer.respond(now, tx, r);
                }
            }
            steps += 1;
            assert!(steps < 1_000_000, "timers never settle");
        }
        assert!(
            layer.is_empty(),
            "seed {seed}: {} transactions leaked",
            layer.len()
        );
        assert!(now - start < Duration::from_secs(2_000));
    }
    assert!(pracks > 0, "no PRACK ever matched a reliable provisional");
}
