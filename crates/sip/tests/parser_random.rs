//! Random and mutated input: the parser, validation, the 400 builder and the stream framer must
//! never panic, and whatever parses must print to something that parses to the same bytes.
#![allow(clippy::unwrap_used)]

use voxflow_sip::{
    Message, Response, StreamFramer, bad_request_response, uas_dialog_id, validate_request,
};

/// xorshift64*: deterministic, so a failure is reproducible from its iteration number.
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

const CORPUS: [&str; 4] = [
    "INVITE sip:bob@biloxi.example.com;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport, SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK2\r\nMax-Forwards: 70\r\nTo: \"Bob \\\"B\\\"\" <sip:bob@biloxi.example.com>\r\nFrom: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@pc33.atlanta.example.com;ob>;expires=60\r\nRecord-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\ns=-\r\n",
    "SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds8;received=192.0.2.1\r\nt: <sip:bob@example.com>;tag=8321234356\r\nf: <sip:alice@example.com>;tag=9fxced76sl\r\ni: 3848276298220188511@atlanta.example.com\r\nCSeq: 1 INVITE\r\nm: <tel:+1-201-555-0123>\r\nl: 0\r\n\r\n",
    "BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\nVia  : SIP  /  2.0\r\n /UDP 192.0.2.4 ; branch = z9hG4bKnashds10\r\nMax-Forwards: 70\r\nFrom: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\nTo: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710\r\nCSeq: 231 BYE\r\nContent-Length: 0\r\n\r\n",
    "\r\nREGISTER sips:ss2.biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/TLS client.biloxi.example.com:5061;branch=z9hG4bKnashds7\r\nMax-Forwards: 70\r\nFrom: Bob <sips:bob@biloxi.example.com>;tag=a73kszlfl\r\nTo: Bob <sips:bob@biloxi.example.com>\r\nCall-ID: 1j9FpLxk3uxtm8tn@biloxi.example.com\r\nCSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\nAuthorization: Digest username=\"bob\", realm=\"atlanta.example.com\", nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", response=\"dfe56131d1958046689d83306477ecc\"\r\nContent-Length: 0\r\n\r\n",
];

const SNIPPETS: [&[u8]; 24] = [
    b"\r\n",
    b"\n",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b"\"",
    b"\\",
    b"=",
    b"%",
    b"@",
    b"[",
    b"]",
    b"sip:",
    b"SIP/2.0",
    b"Content-Length: 99999\r\n",
    b"l: 3\r\n",
    b"\r\n\r\n",
    b"\xff\xfe",
    b"\x00",
    b";tag=",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 => {
                if let Some(b) = out.get_mut(at) {
                    *b = rng.next() as u8;
                }
            }
            1 => {
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                out.splice(at..at, s.iter().copied());
            }
            2 => {
                let end = (at + rng.below(40)).min(out.len());
                out.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(60)).min(out.len());
                let chunk = out[at..end].to_vec();
                out.splice(at..at, chunk);
            }
            4 => out.truncate(at),
            5 => {
                if let Some(b) = out.get_mut(at) {
                    *b = b.to_ascii_lowercase();
                }
            }
            _ => {
                let n = rng.below(8);
                out.splice(at..at, std::iter::repeat_n(b' ', n));
            }
        }
    }
    out
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(600);
    let sip_ish = rng.below(2) == 0;
    (0..len)
        .map(|_| {
            if sip_ish {
                let alphabet = b"INVITE sip:@;=<>\",: \r\n/2.0Via CSeq1zZ9%";
                alphabet[rng.below(alphabet.len())]
            } else {
                rng.next() as u8
            }
        })
        .collect()
}

/// Returns whether the input parsed.
fn exercise(buf: &[u8]) -> bool {
    match Message::parse(buf) {
        Ok(msg) => {
            let printed = msg.to_bytes();
            let again = Message::parse(&printed).unwrap_or_else(|e| {
                panic!(
                    "printed message does not parse ({e}):\n{}",
                    String::from_utf8_lossy(&printed)
                )
            });
            assert_eq!(again.to_bytes(), printed, "printing is not stable");
            let h = msg.headers();
            let _ = (
                h.call_id(),
                h.cseq(),
                h.from(),
                h.to(),
                h.vias(),
                h.top_via(),
            );
            let _ = (
                h.contact(),
                h.contacts(),
                h.routes(),
                h.record_routes(),
                h.max_forwards(),
            );
            if let Message::Request(req) = &msg {
                let _ = validate_request(req);
                let _ = uas_dialog_id(req);
                let mut r = Response::for_request(req, 200);
                r.set_to_tag("abc");
                assert!(Message::parse(&r.to_bytes()).is_ok());
            }
            true
        }
        Err(err) => {
            if let Some(r) = bad_request_response(buf, &err) {
                let printed = r.to_bytes();
                assert!(
                    matches!(Message::parse(&printed), Ok(Message::Response(_))),
                    "400 does not parse:\n{}",
                    String::from_utf8_lossy(&printed)
                );
            }
            false
        }
    }
}

#[test]
fn corpus_parses() {
    for text in CORPUS {
        let msg = Message::parse(text.as_bytes()).expect("corpus message parses");
        if let Message::Request(req) = &msg {
            assert_eq!(validate_request(req), Ok(()));
        }
    }
}

#[test]
fn mutated_messages_never_panic() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut parsed = 0;
    for i in 0..20_000 {
        let base = CORPUS[i % CORPUS.len()].as_bytes();
        let input = mutate(&mut rng, base);
        parsed += usize::from(exercise(&input));
    }
    // the mutations must leave enough messages parseable to exercise the printer
    assert!(parsed > 2_000, "only {parsed} parsed");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    for _ in 0..5_000 {
        let _ = exercise(&random_bytes(&mut rng));
    }
}

#[test]
fn framer_never_panics_and_frames_whole_messages() {
    let mut rng = Rng(42);
    for i in 0..2_000 {
        let mut stream = Vec::new();
        for j in 0..3 {
            let base = CORPUS[(i + j) % CORPUS.len()].as_bytes();
            if rng.below(4) == 0 {
                stream.extend(mutate(&mut rng, base));
            } else {
                stream.extend_from_slice(base);
            }
        }
        let mut framer = StreamFramer::new();
        let mut at = 0;
        while at < stream.len() {
            let n = 1 + rng.below(200);
            let end = (at + n).min(stream.len());
            framer.push(&stream[at..end]);
            at = end;
            while let Some(frame) = framer.next_message() {
                if let Ok(frame) = frame {
                    let _ = exercise(&frame);
                }
            }
        }
    }
}
