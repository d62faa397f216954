//! `Message::parse` never panics; whatever parses prints to bytes that parse back to the same
//! message (Content-Length aside, which printing rewrites) and print identically; the stream
//! framer cuts the same frames however the bytes are chunked. The typed values read from a
//! parsed message (Digest headers, Session-Expires) round-trip too, and the registrar and the
//! session timer negotiation never panic and produce responses that parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxflow_sip::auth::{Challenge, Credentials, NonceIssuer, PasswordOrHa1};
use voxflow_sip::registrar::{RegisterOutcome, RegistrarPolicy, process_register};
use voxflow_sip::session_timer::{self, MinSe, SessionExpires};
use voxflow_sip::{
    CSeq, Headers, Message, Method, NameAddr, StreamFramer, Uri, Via, bad_request_response,
    validate_request,
};

fuzz_target!(|data: &[u8]| {
    match Message::parse(data) {
        Ok(message) => {
            if let Message::Request(request) = &message {
                assert_eq!(
                    Uri::parse(&request.uri.to_string()).as_ref(),
                    Ok(&request.uri)
                );
                let _ = validate_request(request);
                check_request_logic(request);
            }
            check_typed_headers(message.headers());
            let printed = message.to_bytes();
            let again = match Message::parse(&printed) {
                Ok(again) => again,
                Err(err) => panic!("printed message does not parse: {err}"),
            };
            assert_same(&message, &again);
            assert_eq!(again.to_bytes(), printed, "printing is not stable");
        }
        Err(err) => {
            let _ = bad_request_response(data, &err);
        }
    }
    let whole = frames(data, &[data.len()]);
    let split = usize::from(data.first().copied().unwrap_or(0)) % (data.len() + 1);
    let chunked = frames(data, &[split, 1, 7, data.len()]);
    assert_eq!(whole, chunked, "framing depends on chunking");
});

/// Typed values print to what they were parsed from: addresses, Via, CSeq, Digest headers,
/// Session-Expires and Min-SE.
fn check_typed_headers(headers: &Headers) {
    for name in ["From", "To", "Contact", "Route", "Record-Route"] {
        for value in headers.values(name) {
            if let Ok(addr) = NameAddr::parse(value) {
                assert_eq!(
                    NameAddr::parse(&addr.to_string()),
                    Ok(addr.clone()),
                    "{value:?}"
                );
                let uri = addr.uri();
                assert_eq!(Uri::parse(&uri.to_string()).as_ref(), Ok(uri), "{value:?}");
            }
        }
    }
    for value in headers.values("Via") {
        if let Ok(via) = Via::parse(value) {
            assert_eq!(Via::parse(&via.to_string()), Ok(via), "{value:?}");
        }
    }
    if let Some(Ok(cseq)) = headers.get("CSeq").map(CSeq::parse) {
        assert_eq!(CSeq::parse(&cseq.to_string()), Ok(cseq));
    }
    for name in ["WWW-Authenticate", "Proxy-Authenticate"] {
        for value in headers.get_all(name) {
            if let Ok(challenge) = Challenge::parse(value) {
                assert_eq!(Challenge::parse(&challenge.to_string()), Ok(challenge));
            }
        }
    }
    for name in ["Authorization", "Proxy-Authorization"] {
        for value in headers.get_all(name) {
            if let Ok(creds) = Credentials::parse(value) {
                assert_eq!(Credentials::parse(&creds.to_string()), Ok(creds.clone()));
                let issuer = NonceIssuer::new([1; 32]);
                let _ = issuer.verify(
                    &creds,
                    &Method::Register,
                    &creds.realm,
                    PasswordOrHa1::Password("pw"),
                    1_700_000_000,
                );
            }
        }
    }
    if let Some(Ok(se)) = headers.get("Session-Expires").map(SessionExpires::parse) {
        assert_eq!(SessionExpires::parse(&se.to_string()), Ok(se));
    }
    if let Some(Ok(min_se)) = headers.get("Min-SE").map(MinSe::parse) {
        assert_eq!(MinSe::parse(&min_se.to_string()), Ok(min_se));
    }
}

/// The registrar and the session timer negotiation answer with responses that parse.
fn check_request_logic(request: &voxflow_sip::Request) {
    let outcome = process_register(request, &[], 1_700_000_000, &RegistrarPolicy::default());
    let response = outcome.response();
    let reparsed = Message::parse(&response.to_bytes());
    assert!(
        reparsed.is_ok(),
        "registrar response does not parse: {reparsed:?}"
    );
    if let RegisterOutcome::Accepted { bindings, response } = &outcome {
        assert_eq!(response.headers.get_all("Contact").count(), bindings.len());
        for value in response.headers.get_all("Contact") {
            assert!(
                NameAddr::parse(value).is_ok(),
                "unparsable Contact {value:?}"
            );
        }
        // registering the same request again on top of its result is out of order
        if !bindings.is_empty() {
            let again = process_register(
                request,
                bindings,
                1_700_000_000,
                &RegistrarPolicy::default(),
            );
            assert_eq!(again.response().status, 500);
        }
    }
    match session_timer::negotiate_uas(request, 90) {
        Ok(Some(timer)) => {
            let mut ok = voxflow_sip::Response::for_request(request, 200);
            session_timer::apply_to_response(&timer, &mut ok);
            assert!(Message::parse(&ok.to_bytes()).is_ok());
        }
        Ok(None) => {}
        Err(min_se) => assert!(min_se >= session_timer::MIN_SESSION_INTERVAL),
    }
}

/// The frames a StreamFramer cuts from `data` pushed in chunks of the given sizes (cycled).
fn frames(data: &[u8], sizes: &[usize]) -> Vec<Result<Vec<u8>, voxflow_sip::FrameError>> {
    let mut framer = StreamFramer::new();
    let mut out = Vec::new();
    let mut rest = data;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*size).clamp(1, rest.len()));
        rest = tail;
        framer.push(chunk);
        while let Some(frame) = framer.next_message() {
            if let Ok(bytes) = &frame {
                let _ = Message::parse(bytes);
            }
            out.push(frame);
        }
    }
    out
}

fn assert_same(a: &Message, b: &Message) {
    match (a, b) {
        (Message::Request(a), Message::Request(b)) => {
            assert_eq!(a.method, b.method);
            assert_eq!(a.uri, b.uri);
            assert_eq!(a.body, b.body);
            assert_eq!(without_length(&a.headers), without_length(&b.headers));
        }
        (Message::Response(a), Message::Response(b)) => {
            assert_eq!(a.status, b.status);
            assert_eq!(a.reason, b.reason);
            assert_eq!(a.body, b.body);
            assert_eq!(without_length(&a.headers), without_length(&b.headers));
        }
        _ => panic!("a request printed as a response or the reverse"),
    }
}

/// The header fields but Content-Length (printing writes it from the body).
fn without_length(headers: &Headers) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| {
            !name.eq_ignore_ascii_case("Content-Length") && !name.eq_ignore_ascii_case("l")
        })
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}
