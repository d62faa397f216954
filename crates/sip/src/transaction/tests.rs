//! Transaction layer tests in simulated time: exact instants, byte-level input.

use super::*;
use crate::{Dialog, Uri, uas_dialog_id};

const T0_MS: u64 = 0;

fn udp(addr: &str) -> Peer {
    Peer {
        transport: Transport::Udp,
        addr: addr.parse().unwrap(),
        conn: None,
    }
}

fn tcp(addr: &str, conn: u64) -> Peer {
    Peer {
        transport: Transport::Tcp,
        addr: addr.parse().unwrap(),
        conn: Some(conn),
    }
}

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn parse(bytes: &[u8]) -> Message {
    Message::parse(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn response_of(t: &Transmit) -> Response {
    match parse(&t.data) {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

fn request_of(t: &Transmit) -> Request {
    match parse(&t.data) {
        Message::Request(r) => r,
        Message::Response(r) => panic!("expected a request, got {}", r.status),
    }
}

/// A layer, a simulated clock, and helpers to collect what comes out.
struct Harness {
    layer: TransactionLayer,
    start: Instant,
    now: Instant,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(Config {
            sent_by_udp: "192.0.2.10:5060".into(),
            sent_by_tcp: "192.0.2.10:5060".into(),
            seed: 7,
            ..Config::default()
        })
    }

    fn with(config: Config) -> Harness {
        let start = Instant::now();
        Harness {
            layer: TransactionLayer::new(config),
            start,
            now: start,
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from((t - self.start).as_millis()).unwrap()
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    /// Parses `text` (LF line ends) and hands it to the layer at the current time.
    fn input(&mut self, peer: Peer, text: &str) {
        let msg = parse(&crlf(text));
        self.layer.handle_message(self.now, peer, msg);
    }

    fn respond(&mut self, tx: ServerTxId, response: Response) {
        self.layer.respond(self.now, tx, response);
    }

    fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.layer.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.layer.poll_event()).collect()
    }

    /// Steps from deadline to deadline up to `until_ms`, and returns the times (ms) of the
    /// transmissions and of the events on the way.
    fn run_until(&mut self, until_ms: u64) -> (Vec<u64>, Vec<(u64, Event)>) {
        let until = self.at(until_ms);
        let mut sent = Vec::new();
        let mut events = Vec::new();
        while let Some(t) = self.layer.poll_timeout() {
            if t > until {
                break;
            }
            assert!(t >= self.now, "deadline in the past");
            self.now = t;
            self.layer.handle_timeout(t);
            let ms = self.ms(t);
            sent.extend(self.transmits().iter().map(|_| ms));
            events.extend(self.events().into_iter().map(|e| (ms, e)));
        }
        self.now = until;
        (sent, events)
    }

    /// A new request reaches the TU; a new INVITE is answered `100 Trying` at once, as the
    /// runtime does for new calls (the layer's own delayed 100 has tests of its own).
    fn new_request(&mut self, peer: Peer, text: &str) -> (ServerTxId, Request) {
        let (tx, request) = self.new_request_silent(peer, text);
        if request.method == Method::Invite {
            self.respond(tx, Response::for_request(&request, 100));
        }
        (tx, request)
    }

    /// A new request reaches the TU, which does not answer yet.
    fn new_request_silent(&mut self, peer: Peer, text: &str) -> (ServerTxId, Request) {
        self.input(peer, text);
        let events = self.events();
        match events.as_slice() {
            [Event::Request { tx, request, .. }] => (*tx, request.clone()),
            other => panic!("expected one request event, got {other:?}"),
        }
    }
}

// The INVITE, ACK and BYE of SIPp's `invite_bye.xml` scenario (UAC side), as SIPp fills them
// in: local 192.0.2.20:5061, remote (us) 192.0.2.10:5060, service `voxflow`, call number 1.
const SIPP_INVITE: &str = "INVITE sip:voxflow@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-4242-1-0
Max-Forwards: 70
From: <sip:sipp@192.0.2.20>;tag=1
To: <sip:voxflow@192.0.2.10>
Call-ID: 1-4242@192.0.2.20
CSeq: 1 INVITE
Contact: <sip:sipp@192.0.2.20:5061>
Content-Type: application/sdp
Content-Length: 131

v=0
o=user1 53655765 2353687637 IN IP4 192.0.2.20
s=-
c=IN IP4 192.0.2.20
t=0 0
m=audio 9000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
";

const SIPP_ACK: &str = "ACK sip:voxflow@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-4242-1-0-ack
Max-Forwards: 70
From: <sip:sipp@192.0.2.20>;tag=1
To: <sip:voxflow@192.0.2.10>;tag=vx1
Call-ID: 1-4242@192.0.2.20
CSeq: 1 ACK
Content-Length: 0

";

const SIPP_BYE: &str = "BYE sip:voxflow@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-4242-1-0-bye
Max-Forwards: 70
From: <sip:sipp@192.0.2.20>;tag=1
To: <sip:voxflow@192.0.2.10>;tag=vx1
Call-ID: 1-4242@192.0.2.20
CSeq: 2 BYE
Content-Length: 0

";

fn sipp() -> Peer {
    udp("192.0.2.20:5061")
}

fn ok_with_tag(request: &Request, status: u16) -> Response {
    let mut r = Response::for_request(request, status);
    r.set_to_tag("vx1");
    r
}

fn cancel_of(invite: &str) -> String {
    invite
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        .replace("Content-Type: application/sdp\n", "")
        .split("Content-Length:")
        .next()
        .unwrap()
        .to_owned()
        + "Content-Length: 0\n\n"
}

#[test]
fn sipp_invite_bye_end_to_end() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.body.len(), 131);

    // 100 Trying at once, to the Via's sent-by
    let sent = h.transmits();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].peer, sipp());
    let trying = response_of(&sent[0]);
    assert_eq!((trying.status, trying.reason.as_str()), (100, "Trying"));
    assert_eq!(trying.to().unwrap().tag(), None);
    assert_eq!(trying.call_id(), Some("1-4242@192.0.2.20"));

    // the TU rings, then answers; it keeps a dialog
    let contact = Uri::parse("sip:voxflow@192.0.2.10:5060").unwrap();
    let mut dialog = Dialog::uas(&invite, "vx1", &contact).unwrap();
    h.respond(tx, ok_with_tag(&invite, 180));
    let mut ok = ok_with_tag(&invite, 200);
    ok.headers.push("Contact", "<sip:voxflow@192.0.2.10:5060>");
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = b"v=0\r\n".to_vec();
    h.respond(tx, ok);
    let sent = h.transmits();
    assert_eq!(
        sent.iter()
            .map(|t| response_of(t).status)
            .collect::<Vec<_>>(),
        [180, 200]
    );

    // SIPp ACKs after 100 ms with a new branch: reported once, retransmissions stop
    let (retransmits, _) = h.run_until(100);
    assert!(retransmits.is_empty());
    h.input(sipp(), SIPP_ACK);
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [Event::Ack { request, .. }] if request.method == Method::Ack)
    );
    let ack_request = match &events[0] {
        Event::Ack { request, .. } => request.clone(),
        _ => unreachable!(),
    };
    assert_eq!(uas_dialog_id(&ack_request).as_ref(), Some(dialog.id()));
    assert_eq!(dialog.handle_remote_request(&ack_request), Ok(()));

    // BYE 500 ms later
    let (retransmits, events) = h.run_until(600);
    assert!(
        retransmits.is_empty(),
        "2xx retransmitted after ACK: {retransmits:?}"
    );
    assert!(events.is_empty());
    let (bye_tx, bye) = h.new_request(sipp(), SIPP_BYE);
    assert_eq!(uas_dialog_id(&bye).as_ref(), Some(dialog.id()));
    assert_eq!(dialog.handle_remote_request(&bye), Ok(()));
    h.respond(bye_tx, Response::for_request(&bye, 200));
    let sent = h.transmits();
    assert_eq!(sent.len(), 1);
    let bye_ok = response_of(&sent[0]);
    assert_eq!(
        (bye_ok.status, bye_ok.cseq().unwrap().method),
        (200, Method::Bye)
    );
    assert_eq!(bye_ok.to().unwrap().tag(), Some("vx1"));

    // Timer L (INVITE) and Timer J (BYE) clean up; no AckTimeout
    assert_eq!(h.layer.len(), 2);
    let (retransmits, events) = h.run_until(40_000);
    assert!(retransmits.is_empty());
    assert!(events.is_empty(), "{events:?}");
    assert!(h.layer.is_empty());
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn two_xx_retransmitted_until_ack_timeout() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    h.transmits();
    h.respond(tx, ok_with_tag(&invite, 200));
    assert_eq!(h.transmits().len(), 1);
    let (retransmits, events) = h.run_until(40_000);
    assert_eq!(
        retransmits,
        [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(events, [(32_000, Event::AckTimeout { tx })]);
    assert!(h.layer.is_empty());
}

#[test]
fn ack_stops_two_xx_retransmission() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    h.respond(tx, ok_with_tag(&invite, 200));
    h.transmits();
    let (retransmits, _) = h.run_until(2_000);
    assert_eq!(retransmits, [500, 1_500]);
    h.input(sipp(), SIPP_ACK);
    assert_eq!(h.events().len(), 1);
    // a retransmitted ACK is absorbed, a retransmitted INVITE too (RFC 6026 Accepted)
    h.input(sipp(), SIPP_ACK);
    h.input(sipp(), SIPP_INVITE);
    assert!(h.events().is_empty());
    assert!(h.transmits().is_empty());
    let (retransmits, events) = h.run_until(40_000);
    assert!(retransmits.is_empty());
    assert!(events.is_empty());
    assert!(h.layer.is_empty());
    // after the transaction is gone, an ACK is passed up as is
    h.input(sipp(), SIPP_ACK);
    assert!(matches!(h.events().as_slice(), [Event::Ack { .. }]));
}

#[test]
fn ack_for_two_xx_needs_matching_to_tag() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    h.respond(tx, ok_with_tag(&invite, 200));
    h.transmits();
    h.input(sipp(), &SIPP_ACK.replace("tag=vx1", "tag=other"));
    // reported (stray, for the TU to judge), but the 2xx keeps being retransmitted
    assert_eq!(h.events().len(), 1);
    let (retransmits, _) = h.run_until(1_000);
    assert_eq!(retransmits, [500]);
}

#[test]
fn retransmitted_invite_answered_with_last_provisional() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    let trying = h.transmits().remove(0).data;
    h.input(sipp(), SIPP_INVITE);
    assert!(
        h.events().is_empty(),
        "retransmission must not reach the TU"
    );
    assert_eq!(h.transmits().remove(0).data, trying);

    h.respond(tx, ok_with_tag(&invite, 180));
    let ringing = h.transmits().remove(0).data;
    h.input(sipp(), SIPP_INVITE);
    let again = h.transmits();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].data, ringing);
    assert_eq!(again[0].peer, sipp());
    assert!(h.events().is_empty());
}

#[test]
fn non_2xx_final_timer_g_and_h() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    h.respond(tx, ok_with_tag(&invite, 486));
    let sent = h.transmits();
    assert_eq!(response_of(sent.last().unwrap()).status, 486);
    // a provisional after a final is refused
    h.respond(tx, ok_with_tag(&invite, 180));
    assert!(h.transmits().is_empty());
    let (retransmits, events) = h.run_until(40_000);
    assert_eq!(
        retransmits,
        [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert!(events.is_empty(), "Timer H is not an event: {events:?}");
    assert!(h.layer.is_empty());
}

#[test]
fn ack_for_non_2xx_absorbed_then_timer_i() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    h.respond(tx, ok_with_tag(&invite, 486));
    h.transmits();
    let (retransmits, _) = h.run_until(1_000);
    assert_eq!(retransmits, [500]);
    // the ACK of a non-2xx carries the INVITE's branch
    h.input(
        sipp(),
        &SIPP_ACK.replace("z9hG4bK-4242-1-0-ack", "z9hG4bK-4242-1-0"),
    );
    assert!(h.events().is_empty());
    // Confirmed: absorbs INVITE and ACK retransmissions until Timer I (T4 = 5 s)
    h.input(sipp(), SIPP_INVITE);
    assert!(h.transmits().is_empty());
    assert_eq!(h.layer.poll_timeout(), Some(h.at(6_000)));
    let (retransmits, events) = h.run_until(6_000);
    assert!(retransmits.is_empty() && events.is_empty());
    assert!(h.layer.is_empty());
}

#[test]
fn tcp_has_no_retransmissions_and_zero_wait_timers() {
    let mut h = Harness::new();
    let peer = tcp("192.0.2.20:40000", 9);
    let invite_text = SIPP_INVITE.replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let (tx, invite) = h.new_request(peer, &invite_text);
    let trying = h.transmits();
    assert_eq!(
        trying[0].peer, peer,
        "TCP responses go back on the same connection"
    );
    h.respond(tx, ok_with_tag(&invite, 486));
    h.transmits();
    h.input(
        peer,
        &SIPP_ACK
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .replace("-ack", ""),
    );
    // Timer I is zero over TCP
    assert_eq!(h.layer.poll_timeout(), Some(h.now));
    let (retransmits, _) = h.run_until(0);
    assert!(retransmits.is_empty());
    assert!(h.layer.is_empty());

    // a 2xx is not retransmitted over TCP, but the ACK is still awaited
    let (tx, invite) = h.new_request(peer, &invite_text.replace("z9hG4bK-4242-1-0", "z9hG4bK-2"));
    h.respond(tx, ok_with_tag(&invite, 200));
    h.transmits();
    let (retransmits, events) = h.run_until(40_000);
    assert!(retransmits.is_empty());
    assert_eq!(events, [(32_000, Event::AckTimeout { tx })]);
}

const OPTIONS: &str = "OPTIONS sip:voxflow@192.0.2.10 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-opt-1
Max-Forwards: 70
From: <sip:sipp@192.0.2.20>;tag=9
To: <sip:voxflow@192.0.2.10>
Call-ID: options-1@192.0.2.20
CSeq: 1 OPTIONS
Content-Length: 0

";

#[test]
fn nist_retransmissions_and_timer_j() {
    let mut h = Harness::new();
    let (tx, options) = h.new_request(sipp(), OPTIONS);
    assert!(h.transmits().is_empty(), "no 100 for non-INVITE");
    // Trying: a retransmission is absorbed silently
    h.input(sipp(), OPTIONS);
    assert!(h.transmits().is_empty() && h.events().is_empty());
    h.respond(tx, ok_with_tag(&options, 200));
    let ok = h.transmits().remove(0).data;
    h.run_until(10_000);
    h.input(sipp(), OPTIONS);
    assert_eq!(h.transmits().remove(0).data, ok);
    assert!(h.events().is_empty());
    // a second final is refused
    h.respond(tx, ok_with_tag(&options, 500));
    assert!(h.transmits().is_empty());
    assert_eq!(h.layer.poll_timeout(), Some(h.at(32_000)));
    h.run_until(32_000);
    assert!(h.layer.is_empty());

    // over TCP Timer J is zero
    let peer = tcp("192.0.2.20:40000", 3);
    let (tx, options) = h.new_request(peer, &OPTIONS.replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    h.respond(tx, ok_with_tag(&options, 200));
    assert_eq!(h.transmits()[0].peer, peer);
    h.run_until(32_000);
    assert!(h.layer.is_empty());
}

#[test]
fn unanswered_nist_is_dropped_after_64_t1() {
    let mut h = Harness::new();
    let (tx, options) = h.new_request(sipp(), OPTIONS);
    let (sent, events) = h.run_until(32_000);
    assert!(sent.is_empty() && events.is_empty());
    assert!(h.layer.is_empty());
    h.respond(tx, ok_with_tag(&options, 200));
    assert!(h.transmits().is_empty());
}

#[test]
fn cancel_matching_live_invite() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    h.respond(tx, ok_with_tag(&invite, 180));
    h.transmits();
    let cancel = cancel_of(SIPP_INVITE);
    h.input(sipp(), &cancel);
    let sent = h.transmits();
    assert_eq!(sent.len(), 1);
    let ok = response_of(&sent[0]);
    assert_eq!(
        (ok.status, ok.cseq().unwrap().method),
        (200, Method::Cancel)
    );
    assert_eq!(
        ok.to().unwrap().tag(),
        Some("vx1"),
        "same To tag as the INVITE's responses"
    );
    let events = h.events();
    assert!(
        matches!(events.as_slice(), [Event::Cancelled { invite_tx, request }] if *invite_tx == tx && request.method == Method::Cancel)
    );
    // a retransmitted CANCEL gets the same 200 and no new event
    h.input(sipp(), &cancel);
    assert_eq!(h.transmits()[0].data, sent[0].data);
    assert!(h.events().is_empty());
    // the TU ends the INVITE with 487, the ACK is absorbed
    h.respond(tx, ok_with_tag(&invite, 487));
    assert_eq!(response_of(&h.transmits()[0]).status, 487);
    h.input(sipp(), &SIPP_ACK.replace("-ack", ""));
    assert!(h.events().is_empty());
}

#[test]
fn cancel_without_invite_gets_481_and_after_final_gets_200_only() {
    let mut h = Harness::new();
    h.input(sipp(), &cancel_of(SIPP_INVITE));
    let sent = h.transmits();
    let r = response_of(&sent[0]);
    assert_eq!(r.status, 481);
    assert!(r.to().unwrap().tag().is_some());
    assert!(h.events().is_empty());

    let (tx, invite) = h.new_request(sipp(), &SIPP_INVITE.replace("-4242-1-0", "-4242-2-0"));
    h.respond(tx, ok_with_tag(&invite, 200));
    h.transmits();
    h.input(
        sipp(),
        &cancel_of(&SIPP_INVITE.replace("-4242-1-0", "-4242-2-0")),
    );
    assert_eq!(response_of(&h.transmits()[0]).status, 200);
    assert!(h.events().is_empty());
}

#[test]
fn cancel_before_any_tu_response_gets_a_fresh_tag() {
    let mut h = Harness::new();
    let (tx, _) = h.new_request(sipp(), SIPP_INVITE);
    h.transmits();
    h.input(sipp(), &cancel_of(SIPP_INVITE));
    let ok = response_of(&h.transmits()[0]);
    assert_eq!(ok.status, 200);
    assert!(ok.to().unwrap().tag().is_some());
    assert!(
        matches!(h.events().as_slice(), [Event::Cancelled { invite_tx, .. }] if *invite_tx == tx)
    );
}

#[test]
fn rport_and_received() {
    let mut h = Harness::new();
    let nat = udp("198.51.100.7:31000");
    let text = SIPP_INVITE.replace(
        "Via: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-4242-1-0",
        "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-4242-1-0;rport",
    );
    let (tx, invite) = h.new_request(nat, &text);
    let trying = h.transmits().remove(0);
    assert_eq!(
        trying.peer, nat,
        "rport: back to the source address and port"
    );
    let via = response_of(&trying).top_via().unwrap();
    assert_eq!(via.param("rport"), Some("31000"));
    assert_eq!(via.param("received"), Some("198.51.100.7"));
    // the request handed to the TU carries the stamped Via, so its responses do too
    assert_eq!(
        invite.top_via().unwrap().param("received"),
        Some("198.51.100.7")
    );
    h.respond(tx, ok_with_tag(&invite, 200));
    assert_eq!(h.transmits()[0].peer, nat);
    // a retransmission (with the original, unstamped Via) still matches
    h.input(nat, &text);
    assert!(h.events().is_empty());

    // no rport: the source IP (received) with the Via port
    let text = OPTIONS.replace("192.0.2.20:5061;branch", "10.0.0.5:5062;branch");
    let (tx, options) = h.new_request(udp("198.51.100.7:31000"), &text);
    h.respond(tx, ok_with_tag(&options, 200));
    assert_eq!(
        h.transmits()[0].peer.addr,
        "198.51.100.7:5062".parse().unwrap()
    );
}

#[test]
fn invalid_requests_get_400_without_reaching_the_tu() {
    let mut h = Harness::new();
    h.input(
        sipp(),
        &OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
    );
    let sent = h.transmits();
    let r = response_of(&sent[0]);
    assert_eq!(r.status, 400);
    assert_eq!(r.reason, "Bad Request");
    assert!(
        r.headers.get("Warning").is_some_and(|w| w.contains("CSeq")),
        "{r:?}"
    );
    assert_eq!(sent[0].peer, sipp());
    assert!(h.events().is_empty());
    assert!(h.layer.is_empty());
    // an invalid ACK is dropped silently, as is a response without Via
    h.input(sipp(), &SIPP_ACK.replace("CSeq: 1 ACK", "CSeq: x ACK"));
    h.input(sipp(), "SIP/2.0 200 OK\nCSeq: 1 OPTIONS\nl: 0\n\n");
    assert!(h.transmits().is_empty() && h.events().is_empty());
}

#[test]
fn full_layer_answers_503() {
    let mut h = Harness::with(Config {
        max_transactions: 1,
        ..Config::default()
    });
    h.new_request(sipp(), OPTIONS);
    h.input(sipp(), &OPTIONS.replace("z9hG4bK-opt-1", "z9hG4bK-opt-2"));
    assert_eq!(response_of(&h.transmits()[0]).status, 503);
    assert!(h.events().is_empty());
    assert_eq!(h.layer.len(), 1);
}

fn outbound_options() -> Request {
    let mut req = Request::new(
        Method::Options,
        Uri::parse("sip:sipp@192.0.2.20:5061").unwrap(),
    );
    req.headers
        .push("From", "<sip:voxflow@192.0.2.10>;tag=ours");
    req.headers.push("To", "<sip:sipp@192.0.2.20>");
    req.headers.push("Call-ID", "out-1");
    req.headers.push("CSeq", "1 OPTIONS");
    req
}

fn outbound_invite() -> Request {
    let mut req = outbound_options();
    req.method = Method::Invite;
    req.headers.set("CSeq", "1 INVITE");
    req.headers.push("Route", "<sip:proxy.example.com;lr>");
    req.headers.push("Contact", "<sip:voxflow@192.0.2.10>");
    req
}

/// The peer's response to `req` (as sent by us), with To tag `their`.
fn peer_response(req: &Request, status: u16) -> Message {
    let mut r = Response::for_request(req, status);
    if status > 100 {
        r.set_to_tag("theirs");
    }
    Message::Response(r)
}

#[test]
fn send_request_adds_via_and_max_forwards() {
    let mut h = Harness::new();
    h.layer.send_request(h.now, sipp(), outbound_options());
    let sent = h.transmits();
    assert_eq!(sent[0].peer, sipp());
    let req = request_of(&sent[0]);
    let via = req.top_via().unwrap();
    assert_eq!(via.transport(), "UDP");
    assert_eq!(via.sent_by(), ("192.0.2.10", Some(5060)));
    assert!(via.branch().unwrap().starts_with("z9hG4bK"));
    assert_eq!(via.param("rport"), Some(""));
    assert_eq!(req.max_forwards(), Some(70));
    // the same seed gives the same branches and tags; another seed others
    let mut again = Harness::new();
    again
        .layer
        .send_request(again.now, sipp(), outbound_options());
    assert_eq!(again.transmits()[0].data, sent[0].data);
    let mut other = Harness::with(Config {
        seed: 8,
        ..Config::default()
    });
    other
        .layer
        .send_request(other.now, sipp(), outbound_options());
    assert_ne!(
        request_of(&other.transmits()[0])
            .top_via()
            .unwrap()
            .branch(),
        via.branch()
    );
    assert_ne!(h.layer.new_tag(), h.layer.new_tag());
    assert_eq!(h.layer.new_call_id().len(), 32);
}

#[test]
fn nict_timer_e_and_f() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_options());
    assert_eq!(h.transmits().len(), 1);
    let (retransmits, events) = h.run_until(40_000);
    assert_eq!(
        retransmits,
        [
            500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert_eq!(events, [(32_000, Event::ClientTimeout { tx })]);
    assert!(h.layer.is_empty());
}

#[test]
fn nict_provisional_switches_timer_e_to_t2_then_final_and_timer_k() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_options());
    let sent = request_of(&h.transmits()[0]);
    let (retransmits, _) = h.run_until(1_000);
    assert_eq!(retransmits, [500]);
    h.layer
        .handle_message(h.now, sipp(), peer_response(&sent, 100));
    assert!(
        matches!(h.events().as_slice(), [Event::Response { tx: t, response }] if *t == tx && response.status == 100)
    );
    let (retransmits, _) = h.run_until(10_000);
    assert_eq!(retransmits, [1_500, 5_500, 9_500]);
    h.layer
        .handle_message(h.now, sipp(), peer_response(&sent, 200));
    assert!(
        matches!(h.events().as_slice(), [Event::Response { response, .. }] if response.status == 200)
    );
    // retransmitted final absorbed; Timer K (T4) ends the transaction
    h.layer
        .handle_message(h.now, sipp(), peer_response(&sent, 200));
    assert!(h.events().is_empty());
    assert_eq!(h.layer.poll_timeout(), Some(h.at(15_000)));
    let (retransmits, events) = h.run_until(15_000);
    assert!(retransmits.is_empty() && events.is_empty());
    assert!(h.layer.is_empty());
}

#[test]
fn ict_timer_a_and_b() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_invite());
    assert_eq!(h.transmits().len(), 1);
    let (retransmits, events) = h.run_until(40_000);
    assert_eq!(retransmits, [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    assert_eq!(events, [(32_000, Event::ClientTimeout { tx })]);
    assert!(h.layer.is_empty());
}

#[test]
fn ict_non_2xx_sends_ack_and_timer_d() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_invite());
    let invite = request_of(&h.transmits()[0]);
    h.layer
        .handle_message(h.now, sipp(), peer_response(&invite, 180));
    h.layer
        .handle_message(h.now, sipp(), peer_response(&invite, 486));
    let statuses: Vec<u16> = h
        .events()
        .into_iter()
        .map(|e| match e {
            Event::Response { tx: t, response } if t == tx => response.status,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(statuses, [180, 486]);
    let sent = h.transmits();
    assert_eq!(sent.len(), 1);
    let ack = request_of(&sent[0]);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    assert_eq!(ack.vias(), vec![invite.top_via().unwrap()]);
    assert_eq!(ack.to().unwrap().tag(), Some("theirs"));
    assert_eq!(ack.from(), invite.from());
    assert_eq!(ack.call_id(), invite.call_id());
    assert_eq!(
        ack.cseq(),
        Some(crate::CSeq {
            seq: 1,
            method: Method::Ack
        })
    );
    assert_eq!(ack.headers.get("Route"), Some("<sip:proxy.example.com;lr>"));
    // the retransmitted final gets the ACK again, and is not reported
    h.layer
        .handle_message(h.now, sipp(), peer_response(&invite, 486));
    assert_eq!(h.transmits()[0].data, sent[0].data);
    assert!(h.events().is_empty());
    // no retransmission after a provisional; Timer D (32 s) ends it
    let (retransmits, events) = h.run_until(32_000);
    assert!(retransmits.is_empty() && events.is_empty());
    assert!(h.layer.is_empty());
}

#[test]
fn ict_2xx_accepted_passes_every_2xx_until_timer_m() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_invite());
    let invite = request_of(&h.transmits()[0]);
    h.layer
        .handle_message(h.now, sipp(), peer_response(&invite, 200));
    h.layer
        .handle_message(h.now, sipp(), peer_response(&invite, 200));
    assert_eq!(
        h.events().len(),
        2,
        "retransmitted 2xx go to the TU, which ACKs them"
    );
    assert!(
        h.transmits().is_empty(),
        "the transaction does not ACK a 2xx"
    );
    // the TU ACKs statelessly
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    ack.headers.push("CSeq", "1 ACK");
    h.layer.send_stateless(sipp(), Message::Request(ack));
    let ack = request_of(&h.transmits()[0]);
    assert!(
        ack.top_via()
            .unwrap()
            .branch()
            .unwrap()
            .starts_with("z9hG4bK")
    );
    assert_ne!(
        ack.top_via().unwrap().branch(),
        invite.top_via().unwrap().branch()
    );
    assert_eq!(ack.max_forwards(), Some(70));
    let (_, events) = h.run_until(32_000);
    assert!(events.is_empty());
    assert!(h.layer.is_empty());
    let _ = tx;
}

#[test]
fn ict_over_tcp_does_not_retransmit() {
    let mut h = Harness::new();
    let peer = tcp("192.0.2.20:5061", 1);
    let tx = h.layer.send_request(h.now, peer, outbound_invite());
    let invite = request_of(&h.transmits()[0]);
    assert_eq!(invite.top_via().unwrap().transport(), "TCP");
    let (retransmits, events) = h.run_until(40_000);
    assert!(retransmits.is_empty());
    assert_eq!(events, [(32_000, Event::ClientTimeout { tx })]);
}

#[test]
fn cancel_waits_for_a_provisional() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_invite());
    let invite = request_of(&h.transmits()[0]);
    let cancel_tx = h.layer.cancel(h.now, tx).unwrap();
    assert_eq!(h.layer.cancel(h.now, tx), Some(cancel_tx));
    assert!(h.transmits().is_empty(), "no CANCEL before a provisional");
    h.layer
        .handle_message(h.now, sipp(), peer_response(&invite, 100));
    let sent = h.transmits();
    assert_eq!(sent.len(), 1);
    let cancel = request_of(&sent[0]);
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(
        cancel.top_via(),
        invite.top_via(),
        "same branch as the INVITE"
    );
    assert_eq!(
        cancel.cseq(),
        Some(crate::CSeq {
            seq: 1,
            method: Method::Cancel
        })
    );
    assert_eq!(cancel.headers.get("To"), invite.headers.get("To"));
    h.events();
    // 200 to the CANCEL, then 487 to the INVITE
    h.layer
        .handle_message(h.now, sipp(), peer_response(&cancel, 200));
    h.layer
        .handle_message(h.now, sipp(), peer_response(&invite, 487));
    let events = h.events();
    assert!(
        matches!(&events[0], Event::Response { tx: t, response } if *t == cancel_tx && response.status == 200)
    );
    assert!(
        matches!(&events[1], Event::Response { tx: t, response } if *t == tx && response.status == 487)
    );
    assert_eq!(h.layer.cancel(h.now, tx), None);
}

#[test]
fn cancel_dropped_when_the_invite_ends_first() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_invite());
    let invite = request_of(&h.transmits()[0]);
    h.layer.cancel(h.now, tx).unwrap();
    assert_eq!(h.layer.len(), 2);
    h.layer
        .handle_message(h.now, sipp(), peer_response(&invite, 486));
    let sent = h.transmits();
    assert_eq!(sent.len(), 1);
    assert_eq!(request_of(&sent[0]).method, Method::Ack);
    assert_eq!(h.layer.len(), 1);

    // and when Timer B fires
    let tx = h.layer.send_request(h.now, sipp(), outbound_invite());
    h.layer.cancel(h.now, tx).unwrap();
    h.run_until(40_000);
    assert!(h.layer.is_empty());
}

#[test]
fn stray_responses_are_dropped() {
    let mut h = Harness::new();
    h.input(sipp(), "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnone\nCSeq: 1 OPTIONS\nCall-ID: x\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nl: 0\n\n");
    assert!(h.events().is_empty() && h.transmits().is_empty());
    // a response whose CSeq method differs from the transaction's does not match it
    h.layer.send_request(h.now, sipp(), outbound_options());
    let sent = request_of(&h.transmits()[0]);
    let Message::Response(mut r) = peer_response(&sent, 200) else {
        unreachable!()
    };
    r.headers.set("CSeq", "1 INVITE");
    h.layer.handle_message(h.now, sipp(), Message::Response(r));
    assert!(h.events().is_empty());
}

#[test]
fn unknown_or_wrong_tx_ids_are_ignored() {
    let mut h = Harness::new();
    let (tx, options) = h.new_request(sipp(), OPTIONS);
    h.respond(ServerTxId(tx.0 + 100), ok_with_tag(&options, 200));
    assert!(h.transmits().is_empty());
    assert_eq!(h.layer.cancel(h.now, ClientTxId(tx.0)), None);
    let _ = T0_MS;
}

#[test]
fn late_timeouts_do_not_burst() {
    let mut h = Harness::new();
    h.layer.send_request(h.now, sipp(), outbound_options());
    h.transmits();
    // the shell wakes up 5 s late: one retransmission, then the schedule goes on from there
    h.now = h.at(5_000);
    h.layer.handle_timeout(h.now);
    assert_eq!(h.transmits().len(), 1);
    assert_eq!(h.layer.poll_timeout(), Some(h.at(6_000)));
}

// ---- reliable provisional responses (RFC 3262), UAS side ----

/// SIPp's `prack.xml` INVITE (UAC side), filled in as for `SIPP_INVITE`.
fn prack_invite() -> String {
    SIPP_INVITE.replace(
        "Contact: <sip:sipp@192.0.2.20:5061>\n",
        "Contact: <sip:sipp@192.0.2.20:5061>\nSupported: 100rel\n",
    )
}

/// SIPp's PRACK with the given RAck line (`None`: no RAck, as in `prack_missing_rack.xml`).
fn prack(rack: Option<&str>, branch: &str) -> String {
    let rack = rack.map(|r| format!("RAck: {r}\n")).unwrap_or_default();
    format!(
        "PRACK sip:voxflow@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-4242-1-0-{branch}
Max-Forwards: 70
From: <sip:sipp@192.0.2.20>;tag=1
To: <sip:voxflow@192.0.2.10>;tag=vx1
Call-ID: 1-4242@192.0.2.20
CSeq: 2 PRACK
{rack}Content-Length: 0

"
    )
}

/// A harness with an INVITE offering 100rel received (its 100 Trying drained) and RSeq
/// numbering from 1, as the SIPp scenarios expect.
fn reliable_setup() -> (Harness, ServerTxId, Request) {
    let mut h = Harness::new();
    h.layer.set_rseq_start(Some(1));
    let (tx, invite) = h.new_request(sipp(), &prack_invite());
    assert_eq!(response_of(&h.transmits()[0]).status, 100);
    (h, tx, invite)
}

fn statuses(sent: &[Transmit]) -> Vec<(u16, Method)> {
    sent.iter()
        .map(|t| {
            let r = response_of(t);
            (r.status, r.cseq().unwrap().method)
        })
        .collect()
}

#[test]
fn reliable_provisional_retransmits_until_reliable_timeout() {
    let (mut h, tx, invite) = reliable_setup();
    assert_eq!(
        h.layer
            .respond_reliably(h.now, tx, ok_with_tag(&invite, 180)),
        Ok(1)
    );
    let sent = h.transmits();
    assert_eq!(sent.len(), 1);
    let ringing = response_of(&sent[0]);
    assert_eq!(ringing.headers.get("Require"), Some("100rel"));
    assert_eq!(ringing.headers.get("RSeq"), Some("1"));
    assert_eq!(ringing.to().unwrap().tag(), Some("vx1"));
    // T1, doubling without the T2 cap, until 64*T1
    let (retransmits, events) = h.run_until(40_000);
    assert_eq!(retransmits, [500, 1_500, 3_500, 7_500, 15_500, 31_500]);
    assert_eq!(events, [(32_000, Event::ReliableTimeout { tx })]);
    // the TU rejects the INVITE (RFC 3262 §3: 5xx); a late PRACK matches nothing any more
    h.respond(tx, ok_with_tag(&invite, 500));
    assert_eq!(statuses(&h.transmits()), [(500, Method::Invite)]);
    h.input(sipp(), &prack(Some("1 1 INVITE"), "prack"));
    assert_eq!(statuses(&h.transmits()), [(481, Method::Prack)]);
    assert!(h.events().is_empty());
}

/// `prack.xml`: INVITE, 100, reliable 180, PRACK, 200 (PRACK), 200 (INVITE), ACK, BYE.
#[test]
fn sipp_prack_scenario_end_to_end() {
    let (mut h, tx, invite) = reliable_setup();
    h.layer
        .respond_reliably(h.now, tx, ok_with_tag(&invite, 180))
        .unwrap();
    h.transmits();
    let (retransmits, _) = h.run_until(1_000);
    assert_eq!(retransmits, [500]);
    // the TU answers before the PRACK came: the 2xx is held
    let mut ok = ok_with_tag(&invite, 200);
    ok.headers.push("Contact", "<sip:voxflow@192.0.2.10:5060>");
    h.respond(tx, ok);
    assert!(h.transmits().is_empty(), "2xx sent before the PRACK");
    h.input(sipp(), &prack(Some("1 1 INVITE"), "prack"));
    let events = h.events();
    let (prack_tx, prack_request) = match events.as_slice() {
        [
            Event::Prack {
                tx: p,
                request,
                invite_tx,
            },
        ] if *invite_tx == tx => (*p, request.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(prack_request.headers.get("RAck"), Some("1 1 INVITE"));
    // the PRACK released the 2xx; the TU answers the PRACK
    assert_eq!(statuses(&h.transmits()), [(200, Method::Invite)]);
    h.respond(prack_tx, Response::for_request(&prack_request, 200));
    assert_eq!(statuses(&h.transmits()), [(200, Method::Prack)]);
    // a retransmitted PRACK gets the same 200 and no event
    h.input(sipp(), &prack(Some("1 1 INVITE"), "prack"));
    assert_eq!(statuses(&h.transmits()), [(200, Method::Prack)]);
    assert!(h.events().is_empty());
    // no more 180s; the 2xx is retransmitted until the ACK
    let (retransmits, _) = h.run_until(1_500);
    assert_eq!(retransmits, [1_500]);
    assert_eq!(statuses(&h.transmits()), []);
    h.input(sipp(), SIPP_ACK);
    assert!(matches!(h.events().as_slice(), [Event::Ack { .. }]));
    let (bye_tx, bye) = h.new_request(sipp(), &SIPP_BYE.replace("CSeq: 2 BYE", "CSeq: 3 BYE"));
    h.respond(bye_tx, Response::for_request(&bye, 200));
    assert_eq!(statuses(&h.transmits()), [(200, Method::Bye)]);
    let (retransmits, events) = h.run_until(40_000);
    assert!(retransmits.is_empty() && events.is_empty(), "{events:?}");
    assert!(h.layer.is_empty());
}

/// `prack_bad_rack.xml` (an RSeq never sent) and `prack_missing_rack.xml` expect 400.
#[test]
fn prack_with_bad_or_missing_rack_gets_400() {
    for (rack, reason) in [
        (Some("999 1 INVITE"), "RAck matches no response sent"),
        (None, "missing RAck"),
        (Some("1 INVITE"), "malformed RAck"),
        (Some("x 1 INVITE"), "malformed RAck"),
    ] {
        let (mut h, tx, invite) = reliable_setup();
        h.layer
            .respond_reliably(h.now, tx, ok_with_tag(&invite, 180))
            .unwrap();
        h.transmits();
        h.input(sipp(), &prack(rack, "prack"));
        let sent = h.transmits();
        assert_eq!(statuses(&sent), [(400, Method::Prack)], "{rack:?}");
        let r = response_of(&sent[0]);
        assert!(r.reason.contains(reason), "{}", r.reason);
        assert_eq!(r.to().unwrap().tag(), Some("vx1"));
        assert!(h.events().is_empty());
        // retransmitted: the same 400; the 180 is still awaiting its PRACK
        h.input(sipp(), &prack(rack, "prack"));
        assert_eq!(h.transmits()[0].data, sent[0].data);
        let (retransmits, _) = h.run_until(600);
        assert_eq!(retransmits, [500]);
    }
}

#[test]
fn prack_matching_nothing_gets_481() {
    // no INVITE at all
    let mut h = Harness::new();
    h.input(sipp(), &prack(Some("1 1 INVITE"), "prack"));
    assert_eq!(statuses(&h.transmits()), [(481, Method::Prack)]);
    assert!(h.events().is_empty());

    let (mut h, tx, invite) = reliable_setup();
    h.layer
        .respond_reliably(h.now, tx, ok_with_tag(&invite, 180))
        .unwrap();
    h.transmits();
    for (n, (text, why)) in [
        (
            prack(Some("1 1 INVITE"), "a").replace("tag=vx1", "tag=other"),
            "another early dialog",
        ),
        (prack(Some("1 7 INVITE"), "b"), "another INVITE"),
        (prack(Some("1 1 UPDATE"), "c"), "another method"),
        (
            prack(Some("1 1 INVITE"), "d").replace("Call-ID: 1-4242", "Call-ID: 2-4242"),
            "another call",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        h.input(sipp(), &text);
        assert_eq!(
            statuses(&h.transmits()),
            [(481, Method::Prack)],
            "{n}: {why}"
        );
        assert!(h.events().is_empty(), "{why}");
    }
    // the right one matches; a second PRACK (new branch) for the same RSeq then gets 481
    h.input(sipp(), &prack(Some("1 1 INVITE"), "e"));
    assert!(matches!(h.events().as_slice(), [Event::Prack { .. }]));
    h.input(sipp(), &prack(Some("1 1 INVITE"), "f"));
    assert_eq!(statuses(&h.transmits()), [(481, Method::Prack)]);
    assert!(h.events().is_empty());
}

#[test]
fn later_reliable_provisionals_wait_for_the_first_prack() {
    let (mut h, tx, invite) = reliable_setup();
    assert_eq!(
        h.layer
            .respond_reliably(h.now, tx, ok_with_tag(&invite, 183)),
        Ok(1)
    );
    assert_eq!(
        h.layer
            .respond_reliably(h.now, tx, ok_with_tag(&invite, 180)),
        Ok(2)
    );
    assert_eq!(statuses(&h.transmits()), [(183, Method::Invite)]);
    // a PRACK for the queued one is for a response never sent
    h.run_until(700);
    h.transmits();
    h.input(sipp(), &prack(Some("2 1 INVITE"), "early"));
    assert_eq!(statuses(&h.transmits()), [(400, Method::Prack)]);
    h.input(sipp(), &prack(Some("1 1 INVITE"), "p1"));
    assert!(matches!(h.events().as_slice(), [Event::Prack { .. }]));
    let sent = h.transmits();
    assert_eq!(statuses(&sent), [(180, Method::Invite)]);
    assert_eq!(response_of(&sent[0]).headers.get("RSeq"), Some("2"));
    // the 180's own schedule starts when it is sent (700 ms)
    let (retransmits, _) = h.run_until(2_500);
    assert_eq!(retransmits, [1_200, 2_200]);
    // once the first is acknowledged, more may be outstanding at once
    assert_eq!(
        h.layer
            .respond_reliably(h.now, tx, ok_with_tag(&invite, 182)),
        Ok(3)
    );
    assert_eq!(statuses(&h.transmits()), [(182, Method::Invite)]);
    // a retransmitted INVITE gets the last provisional
    h.input(sipp(), &prack_invite());
    assert_eq!(statuses(&h.transmits()), [(182, Method::Invite)]);
}

#[test]
fn non_2xx_final_stops_reliable_retransmissions() {
    let (mut h, tx, invite) = reliable_setup();
    h.layer
        .respond_reliably(h.now, tx, ok_with_tag(&invite, 180))
        .unwrap();
    h.transmits();
    h.run_until(600);
    h.transmits();
    h.respond(tx, ok_with_tag(&invite, 486));
    assert_eq!(statuses(&h.transmits()), [(486, Method::Invite)]);
    // only Timer G retransmits (the 486); no ReliableTimeout
    let (retransmits, events) = h.run_until(40_000);
    assert_eq!(retransmits.first(), Some(&1_100));
    assert!(events.is_empty(), "{events:?}");
    assert!(h.layer.is_empty());
}

#[test]
fn late_prack_after_final_still_matches() {
    let (mut h, tx, invite) = reliable_setup();
    h.layer
        .respond_reliably(h.now, tx, ok_with_tag(&invite, 180))
        .unwrap();
    h.respond(tx, ok_with_tag(&invite, 486));
    h.transmits();
    h.input(sipp(), &prack(Some("1 1 INVITE"), "late"));
    assert!(matches!(h.events().as_slice(), [Event::Prack { invite_tx, .. }] if *invite_tx == tx));
    assert!(h.transmits().is_empty(), "the TU answers a matching PRACK");
}

#[test]
fn respond_reliably_refusals() {
    let (mut h, tx, invite) = reliable_setup();
    let l = &mut h.layer;
    let now = h.now;
    assert_eq!(
        l.respond_reliably(now, tx, ok_with_tag(&invite, 100)),
        Err(ReliableError::NotProvisional(100))
    );
    assert_eq!(
        l.respond_reliably(now, tx, ok_with_tag(&invite, 200)),
        Err(ReliableError::NotProvisional(200))
    );
    assert_eq!(
        l.respond_reliably(now, tx, Response::for_request(&invite, 180)),
        Err(ReliableError::MissingHeader("To tag"))
    );
    assert_eq!(
        l.respond_reliably(now, ServerTxId(tx.0 + 50), ok_with_tag(&invite, 180)),
        Err(ReliableError::NoTransaction)
    );
    assert!(h.transmits().is_empty());
    h.respond(tx, ok_with_tag(&invite, 486));
    assert_eq!(
        h.layer
            .respond_reliably(h.now, tx, ok_with_tag(&invite, 180)),
        Err(ReliableError::FinalSent)
    );
    // an INVITE without 100rel
    let (tx, invite) = h.new_request(sipp(), &SIPP_INVITE.replace("-4242-1-0", "-4242-9-0"));
    assert_eq!(
        h.layer
            .respond_reliably(h.now, tx, ok_with_tag(&invite, 180)),
        Err(ReliableError::NotSupported)
    );
    // a non-INVITE transaction
    let (tx, options) = h.new_request(sipp(), OPTIONS);
    assert_eq!(
        h.layer
            .respond_reliably(h.now, tx, ok_with_tag(&options, 180)),
        Err(ReliableError::NoTransaction)
    );
    // Require: 100rel also counts; a Require already naming 100rel is not repeated
    let text = SIPP_INVITE
        .replace("-4242-1-0", "-4242-8-0")
        .replace("Content-Type:", "Require: 100rel\nContent-Type:");
    let (tx, invite) = h.new_request(sipp(), &text);
    h.transmits();
    let mut ringing = ok_with_tag(&invite, 180);
    ringing.headers.push("Require", "100rel");
    assert!(h.layer.respond_reliably(h.now, tx, ringing).is_ok());
    let sent = response_of(&h.transmits()[0]);
    assert_eq!(sent.headers.get_all("Require").count(), 1);
}

#[test]
fn rseq_start_is_random_from_the_seed_by_default() {
    let first_rseq = |seed: u64| {
        let mut h = Harness::with(Config {
            seed,
            ..Config::default()
        });
        let (tx, invite) = h.new_request(sipp(), &prack_invite());
        let rseq = h
            .layer
            .respond_reliably(h.now, tx, ok_with_tag(&invite, 180))
            .unwrap();
        assert_eq!(
            h.layer
                .respond_reliably(h.now, tx, ok_with_tag(&invite, 183)),
            Ok(rseq % 0x7fff_ffff + 1)
        );
        rseq
    };
    let a = first_rseq(7);
    assert!((1..=0x7fff_ffff).contains(&a));
    assert_eq!(first_rseq(7), a);
    assert_ne!(first_rseq(8), a);
}

#[test]
fn reliable_provisional_over_tcp_is_not_retransmitted_but_times_out() {
    let mut h = Harness::new();
    let peer = tcp("192.0.2.20:40000", 4);
    let (tx, invite) = h.new_request(peer, &prack_invite().replace("SIP/2.0/UDP", "SIP/2.0/TCP"));
    h.layer
        .respond_reliably(h.now, tx, ok_with_tag(&invite, 180))
        .unwrap();
    assert_eq!(h.transmits().len(), 2);
    let (retransmits, events) = h.run_until(40_000);
    assert!(retransmits.is_empty());
    assert_eq!(events, [(32_000, Event::ReliableTimeout { tx })]);
}

// ---- UAC: dialogs, forked 2xx, ACK ----

/// The responses of SIPp's `uas_invite.xml` (call number 1, SIPp at 192.0.2.20:5061) to our
/// INVITE as sent.
fn sipp_uas_response(invite: &Request, status: u16, tag: &str) -> Message {
    let mut r = Response::for_request(invite, status);
    r.set_to_tag(tag);
    if status > 100 {
        r.headers.push("Contact", "<sip:uas@192.0.2.20:5061>");
    }
    Message::Response(r)
}

#[test]
fn uac_dialog_from_the_uas_invite_exchange() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_invite());
    let invite = request_of(&h.transmits()[0]);
    for status in [100, 180, 200] {
        let msg = sipp_uas_response(&invite, status, "1");
        h.layer.handle_message(h.now, sipp(), msg);
    }
    let responses: Vec<Response> = h
        .events()
        .into_iter()
        .map(|e| match e {
            Event::Response { tx: t, response } if t == tx => response,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(responses.len(), 3);
    // the 100 (with a tag, as SIPp sends it) makes no dialog: not a 101..=299
    assert!(crate::Dialog::uac(&invite, &responses[0]).is_err());
    let mut dialog = crate::Dialog::uac(&invite, &responses[1]).unwrap();
    assert_eq!(dialog.state(), crate::DialogState::Early);
    assert_eq!(
        crate::uac_dialog_id(&responses[2]).as_ref(),
        Some(dialog.id())
    );
    assert_eq!(dialog.handle_response(&responses[2]), Ok(()));
    assert_eq!(dialog.state(), crate::DialogState::Confirmed);
    let mut ack = dialog.create_ack(invite.cseq().unwrap().seq);
    h.layer.send_ack(sipp(), &mut ack);
    let sent = h.transmits();
    assert_eq!(sent[0].peer, sipp());
    let text = String::from_utf8(sent[0].data.clone()).unwrap();
    let branch = ack.top_via().unwrap().branch().unwrap().to_owned();
    assert_ne!(Some(branch.as_str()), invite.top_via().unwrap().branch());
    assert_eq!(
        text,
        format!(
            "ACK sip:uas@192.0.2.20:5061 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport\r\n\
             From: <sip:voxflow@192.0.2.10>;tag=ours\r\n\
             To: <sip:sipp@192.0.2.20>;tag=1\r\n\
             Call-ID: out-1\r\n\
             CSeq: 1 ACK\r\n\
             Max-Forwards: 70\r\n\
             Contact: <sip:voxflow@192.0.2.10>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    );
    // the 2xx retransmitted: the TU sends the same ACK again
    h.layer
        .handle_message(h.now, sipp(), sipp_uas_response(&invite, 200, "1"));
    assert_eq!(h.events().len(), 1);
    h.layer.send_ack(sipp(), &mut ack);
    assert_eq!(h.transmits()[0].data, sent[0].data);
    // BYE in the dialog, in its own client transaction
    let bye = dialog.create_request(Method::Bye);
    assert_eq!(bye.cseq().unwrap().seq, 2);
    let bye_tx = h.layer.send_request(h.now, sipp(), bye);
    let bye = request_of(&h.transmits()[0]);
    assert_eq!(bye.uri.to_string(), "sip:uas@192.0.2.20:5061");
    h.layer
        .handle_message(h.now, sipp(), peer_response(&bye, 200));
    assert!(
        matches!(h.events().as_slice(), [Event::Response { tx, response }] if *tx == bye_tx && response.status == 200)
    );
}

#[test]
fn forked_2xx_each_reach_the_tu_until_timer_m() {
    let mut h = Harness::new();
    let tx = h.layer.send_request(h.now, sipp(), outbound_invite());
    let invite = request_of(&h.transmits()[0]);
    let fork_a = udp("192.0.2.31:5060");
    let fork_b = udp("192.0.2.32:5060");
    h.layer
        .handle_message(h.now, fork_a, sipp_uas_response(&invite, 180, "a"));
    h.layer
        .handle_message(h.now, fork_b, sipp_uas_response(&invite, 200, "b"));
    h.run_until(1_000);
    // after the first 2xx: another fork's 2xx, a retransmission, a late 1xx (dropped)
    h.layer
        .handle_message(h.now, fork_a, sipp_uas_response(&invite, 200, "a"));
    h.layer
        .handle_message(h.now, fork_b, sipp_uas_response(&invite, 200, "b"));
    h.layer
        .handle_message(h.now, fork_a, sipp_uas_response(&invite, 183, "a"));
    let got: Vec<(u16, String)> = h
        .events()
        .into_iter()
        .map(|e| match e {
            Event::Response { tx: t, response } if t == tx => (
                response.status,
                response.to().unwrap().tag().unwrap().to_owned(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (180, "a".to_owned()),
            (200, "b".to_owned()),
            (200, "a".to_owned()),
            (200, "b".to_owned())
        ]
    );
    assert!(h.transmits().is_empty(), "the ICT does not ACK 2xx");
    // two dialogs: each gets its ACK (and the TU BYEs the one it does not want)
    let Message::Response(ok_a) = sipp_uas_response(&invite, 200, "a") else {
        unreachable!()
    };
    let Message::Response(ok_b) = sipp_uas_response(&invite, 200, "b") else {
        unreachable!()
    };
    let mut a = crate::Dialog::uac(&invite, &ok_a).unwrap();
    let b = crate::Dialog::uac(&invite, &ok_b).unwrap();
    assert_ne!(a.id(), b.id());
    assert_eq!(
        a.handle_response(&ok_b),
        Err(crate::DialogError::NotInDialog)
    );
    for d in [&a, &b] {
        let mut ack = d.create_ack(1);
        h.layer.send_ack(sipp(), &mut ack);
    }
    let acks: Vec<Request> = h.transmits().iter().map(request_of).collect();
    assert_eq!(acks[0].to().unwrap().tag(), Some("a"));
    assert_eq!(acks[1].to().unwrap().tag(), Some("b"));
    assert_ne!(acks[0].top_via(), acks[1].top_via());
    let bye = a.create_request(Method::Bye);
    assert_eq!(bye.to().unwrap().tag(), Some("a"));
    // Timer M (64*T1 after the first 2xx) ends the transaction; later 2xx are strays
    assert_eq!(h.layer.poll_timeout(), Some(h.at(32_000)));
    let (_, events) = h.run_until(32_000);
    assert!(events.is_empty());
    assert!(h.layer.is_empty());
    h.layer
        .handle_message(h.now, fork_a, sipp_uas_response(&invite, 200, "a"));
    assert!(h.events().is_empty());
}

#[test]
fn uac_prack_for_a_reliable_provisional() {
    let mut h = Harness::new();
    let mut request = outbound_invite();
    request.headers.push("Supported", "100rel");
    h.layer.send_request(h.now, sipp(), request);
    let invite = request_of(&h.transmits()[0]);
    let Message::Response(mut ringing) = sipp_uas_response(&invite, 180, "1") else {
        unreachable!()
    };
    ringing.headers.push("Require", "100rel");
    ringing.headers.push("RSeq", "4711");
    let mut dialog = crate::Dialog::uac(&invite, &ringing).unwrap();
    let prack = dialog.create_prack(&ringing).unwrap();
    assert_eq!(prack.method, Method::Prack);
    assert_eq!(prack.headers.get("RAck"), Some("4711 1 INVITE"));
    assert_eq!(prack.cseq().unwrap().seq, 2);
    assert_eq!(prack.uri.to_string(), "sip:uas@192.0.2.20:5061");
    // the retransmitted 180 is not PRACKed again
    assert_eq!(dialog.create_prack(&ringing), None);
    h.layer.send_request(h.now, sipp(), prack);
    let prack = request_of(&h.transmits()[0]);
    assert_eq!(prack.max_forwards(), Some(70));
    assert!(prack.top_via().is_some());
}

#[test]
fn trying_is_sent_only_when_the_tu_is_silent_for_200_ms() {
    let mut h = Harness::new();
    let (_tx, _invite) = h.new_request_silent(sipp(), SIPP_INVITE);
    assert!(h.transmits().is_empty(), "no 100 at once");
    assert_eq!(
        h.layer.poll_timeout(),
        Some(h.now + Duration::from_millis(200))
    );
    let (sent, _) = h.run_until(199);
    assert!(sent.is_empty());
    let (sent, _) = h.run_until(200);
    assert_eq!(sent, [200], "the 100 goes out at 200 ms");
}

#[test]
fn an_invite_refused_at_once_gets_no_trying() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request_silent(sipp(), SIPP_INVITE);
    h.respond(tx, ok_with_tag(&invite, 483));
    let sent = h.transmits();
    assert_eq!(statuses(&sent), [(483, Method::Invite)]);
    let (sent, _) = h.run_until(1_000);
    assert_eq!(
        sent,
        [500],
        "Timer G retransmits the 483; no 100 comes after it"
    );
}

#[test]
fn a_retransmitted_invite_before_any_answer_gets_the_trying_at_once() {
    let mut h = Harness::new();
    let (_tx, _invite) = h.new_request_silent(sipp(), SIPP_INVITE);
    h.input(sipp(), SIPP_INVITE);
    let sent = h.transmits();
    assert_eq!(statuses(&sent), [(100, Method::Invite)]);
    let (sent, _) = h.run_until(1_000);
    assert!(sent.is_empty(), "the 100 is not sent twice");
}

#[test]
fn cancel_with_another_branch_still_finds_its_invite() {
    let mut h = Harness::new();
    let (tx, invite) = h.new_request(sipp(), SIPP_INVITE);
    h.respond(tx, ok_with_tag(&invite, 180));
    h.transmits();
    let cancel = "CANCEL sip:voxflow@192.0.2.10:5060 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.20:5061;branch=z9hG4bK-other-branch
Max-Forwards: 70
From: <sip:sipp@192.0.2.20>;tag=1
To: <sip:voxflow@192.0.2.10>
Call-ID: 1-4242@192.0.2.20
CSeq: 1 CANCEL
Content-Length: 0

";
    h.input(sipp(), cancel);
    assert_eq!(statuses(&h.transmits()), [(200, Method::Cancel)]);
    assert!(
        matches!(h.events().as_slice(), [Event::Cancelled { invite_tx, .. }] if *invite_tx == tx)
    );
    // Another Call-ID matches nothing.
    h.input(
        sipp(),
        &cancel
            .replace("1-4242@", "9-9999@")
            .replace("other-branch", "third"),
    );
    assert_eq!(statuses(&h.transmits()), [(481, Method::Cancel)]);
}
