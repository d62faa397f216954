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

    /// Drives a new request in and returns its server transaction.
    fn new_request(&mut self, peer: Peer, text: &str) -> (ServerTxId, Request) {
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
    assert!(r.reason.contains("CSeq"), "{}", r.reason);
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
