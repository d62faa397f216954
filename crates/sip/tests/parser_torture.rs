//! Messages in the spirit of RFC 4475 ("SIP Torture Test Messages"): ones a parser must accept
//! and understand, and ones it must reject (or that validation must reject).
#![allow(clippy::unwrap_used)]

use voxflow_sip::{
    Message, Method, ParseError, Request, Response, Scheme, bad_request_response, validate_request,
};

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn request(s: &str) -> Request {
    match Message::parse(&crlf(s)) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn response(s: &str) -> Response {
    match Message::parse(&crlf(s)) {
        Ok(Message::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

/// A message that parses must print to something that parses to the same thing.
fn assert_round_trip(msg: &Message) {
    let again = Message::parse(&msg.to_bytes()).expect("printed message parses");
    assert_eq!(again.to_bytes(), msg.to_bytes());
}

#[test]
fn short_tortuous_invite() {
    let text = "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";
    let req = request(text);
    assert_eq!(req.method, Method::Invite);
    assert_eq!(req.uri.param("unknownparam"), Some(""));
    assert_eq!(req.to().unwrap().tag(), Some("1918181833n"));
    let from = req.from().unwrap();
    assert_eq!(from.display_name(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(req.max_forwards(), Some(68));
    assert_eq!(req.cseq().unwrap().seq, 9);
    let vias = req.vias();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].sent_by(), ("192.0.2.2", None));
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(req.headers.get("Subject"), Some(""));
    assert_eq!(
        req.headers.get("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        req.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let contact = req.contact().unwrap();
    assert_eq!(contact.display_name(), Some("Quoted string \"\""));
    assert_eq!(contact.param("newparam"), Some("newvalue"));
    assert_eq!(contact.param("secondparam"), Some(""));
    assert_eq!(contact.param("q"), Some("0.33"));
    assert_eq!(req.headers.values("Route").count(), 1);
    assert_eq!(req.body.len(), 150);
    assert_eq!(validate_request(&req), Ok(()));
    assert_round_trip(&Message::Request(req));
}

#[test]
fn wide_range_of_valid_characters() {
    let text = "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\u{7} NUL:\\\u{0} DEL:\\\u{7f}\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\u{feff}\u{5927}\u{505c}\u{96fb}
Content-Length: 0

";
    // control characters inside the quoted display name are not allowed in our header section;
    // the RFC's version escapes them, which we model with a backslash before each.
    let text = text.replace(['\u{7}', '\u{0}', '\u{7f}'], "x");
    let req = request(&text);
    assert_eq!(
        req.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    assert_eq!(req.uri.host(), "example.com");
    assert_eq!(req.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let from = req.from().unwrap();
    assert_eq!(from.display_name(), Some("token1~` token2'+_ token3*%!.-"));
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(from.param("fromParam''~+*_!.-%"), Some("\"работающий\""));
    assert_eq!(
        req.to().unwrap().uri().user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        req.headers.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
    assert_eq!(validate_request(&req), Ok(()));
    assert_round_trip(&Message::Request(req));
}

#[test]
fn escapes_and_percent_signs() {
    let req = request(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact: <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 0

",
    );
    assert_eq!(
        req.uri.user_decoded().as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(
        req.to().unwrap().uri().user_decoded().as_deref(),
        Some("user")
    );
    assert_eq!(
        req.from().unwrap().uri().user_decoded().as_deref(),
        Some("I have spaces")
    );
    assert_eq!(
        req.contact().unwrap().uri().param("n%61me"),
        Some("v%61lue%25%34%31")
    );
    assert_eq!(req.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    assert_eq!(req.content_type(), Some("application/sdp"));
    assert_eq!(validate_request(&req), Ok(()));

    let req = request(
        "RE%47IST%45R sip:registrar.example.com SIP/2.0
To: \"%Z%45\" <sip:resource@example.com>
From: \"%Z%45\" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

",
    );
    assert_eq!(req.method, Method::Extension("RE%47IST%45R".into()));
    assert_eq!(req.from().unwrap().display_name(), Some("%Z%45"));
    assert_eq!(req.headers.contacts().len(), 2);
    assert_eq!(
        req.headers.get("C%6Fntact"),
        Some("<sip:alias2@host2.example.com>")
    );
    assert_eq!(validate_request(&req), Ok(()));
}

#[test]
fn escaped_nulls_no_lws_before_angle_and_semicolons_in_user() {
    let req = request(
        "REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

",
    );
    assert_eq!(
        req.to().unwrap().uri().user_decoded().as_deref(),
        Some("null-\0-null")
    );
    assert_eq!(validate_request(&req), Ok(()));

    let req = request(
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

",
    );
    assert_eq!(req.uri.user(), Some("user;par=u%40example.net"));
    assert_eq!(req.from().unwrap().display_name(), Some("caller"));
    assert_eq!(validate_request(&req), Ok(()));
}

#[test]
fn long_values_and_many_vias() {
    let long_token = "unknowheadervalue".repeat(60);
    let mut text = format!(
        "INVITE sip:user@example.com SIP/2.0
To: \"I have a user name of {0} proportion\" <sip:user@example.com:6000;unknownparam1=very{0}longvalue;longparam{0}name=shortvalue;very{0}longParameterNameWithNoValue>
F: sip:{0}@example.net;tag=12982424;unknownheaderparam{0}name=unknowheaderparamvalue{0};unknownValueless{0}paramname
Call-ID: longreq.one{0}really{0}longcallid
CSeq: 3882340 INVITE
Unknown-{0}-Header: {0}
Max-Forwards: 70
Contact: <sip:amazinglylongcallername{0}@host5.example.net>
Content-Length: 0
",
        "long".repeat(20)
    );
    for i in 0..40 {
        text.push_str(&format!(
            "Via: SIP/2.0/TCP sip{i}.example.com;branch=z9hG4bK{i}{long_token}\n"
        ));
    }
    text.push('\n');
    let req = request(&text);
    assert_eq!(req.vias().len(), 40);
    assert!(req.to().unwrap().display_name().unwrap().len() > 80);
    assert_eq!(validate_request(&req), Ok(()));
    assert_round_trip(&Message::Request(req));
}

#[test]
fn extra_octets_in_a_datagram_are_ignored() {
    let req = request(
        "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0


INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
",
    );
    assert_eq!(req.method, Method::Register);
    assert!(req.body.is_empty());
}

#[test]
fn unknown_transports_multipart_and_unusual_reasons() {
    let req = request(
        "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

",
    );
    let transports: Vec<String> = req
        .vias()
        .iter()
        .map(|v| v.transport().to_owned())
        .collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(req.call_id(), Some("transports.kijh4akdnaqjkwendsasfdj"));

    let body = "--boundary42\r\nContent-Type: text/plain\r\n\r\nhello\r\n--boundary42--\r\n";
    let text = format!(
        "MESSAGE sip:kumiko@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:kumiko@example.org>\r\nCall-ID: mpart\r\nCSeq: 1 MESSAGE\r\nContent-Type: multipart/mixed;boundary=boundary42\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let Ok(Message::Request(req)) = Message::parse(text.as_bytes()) else {
        panic!("multipart message must parse");
    };
    assert_eq!(req.body, body.as_bytes());

    let r = response(
        "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 0

",
    );
    assert_eq!(r.status, 200);
    assert!(r.reason.starts_with("= 2**3"));
    let r = response(
        "SIP/2.0 100 \nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: noreason.asndj203insdf99223ndf\nCSeq: 35 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\nContent-Length: 0\n\n",
    );
    assert_eq!(r.reason, "");
}

#[test]
fn unknown_schemes_are_parsed() {
    let req = request(
        "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

",
    );
    assert_eq!(
        req.uri.scheme(),
        &Scheme::Other("nobodyknowsthisscheme".into())
    );
    assert_eq!(validate_request(&req), Ok(()));
}

/// Messages the parser itself must reject; each can still be answered with a 400 (or 505).
#[test]
fn invalid_messages_rejected_by_the_parser() {
    let common = "To: sip:user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: bad.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
";
    for (start, extra, err) in [
        // Content-Length larger than the message
        (
            "INVITE sip:user@example.com SIP/2.0",
            "Content-Length: 9999\n\nv=0\n",
            ParseError::BodyTruncated,
        ),
        // negative Content-Length
        (
            "INVITE sip:user@example.com SIP/2.0",
            "Content-Length: -999\n\n",
            ParseError::InvalidContentLength,
        ),
        // <> around the Request-URI
        (
            "INVITE <sip:user@example.com> SIP/2.0",
            "l: 0\n\n",
            ParseError::InvalidUri,
        ),
        // LWS inside the Request-URI
        (
            "INVITE sip:user@example.com; lr SIP/2.0",
            "l: 0\n\n",
            ParseError::InvalidStartLine,
        ),
        // several SP between Request-Line elements
        (
            "INVITE  sip:user@example.com  SIP/2.0",
            "l: 0\n\n",
            ParseError::InvalidStartLine,
        ),
        // SP at the end of the Request-Line
        (
            "INVITE sip:user@example.com SIP/2.0 ",
            "l: 0\n\n",
            ParseError::InvalidStartLine,
        ),
        // unknown protocol version
        (
            "INVITE sip:user@example.com SIP/7.0",
            "l: 0\n\n",
            ParseError::UnsupportedVersion,
        ),
        // conflicting Content-Length
        (
            "INVITE sip:user@example.com SIP/2.0",
            "Content-Length: 0\nContent-Length: 3\n\nabc",
            ParseError::ConflictingContentLength,
        ),
    ] {
        let buf = crlf(&format!("{start}\n{common}{extra}"));
        assert_eq!(Message::parse(&buf), Err(err.clone()), "{start} / {extra}");
        let r = bad_request_response(&buf, &err).expect("salvageable");
        assert_eq!(
            r.status,
            if err == ParseError::UnsupportedVersion {
                505
            } else {
                400
            }
        );
    }
    // overlarge status code in a response: rejected, never answered
    let buf = crlf(
        "SIP/2.0 4294967301 better not break the receiver\nCall-ID: bigcode\nCSeq: 1 INVITE\nl: 0\n\n",
    );
    assert_eq!(Message::parse(&buf), Err(ParseError::InvalidStatusCode));
    assert_eq!(
        bad_request_response(&buf, &ParseError::InvalidStatusCode),
        None
    );
}

/// Messages that parse but that validation must reject (a UAS answers 400).
#[test]
fn invalid_messages_rejected_by_validation() {
    let base = "INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: bad.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
Content-Length: 0

";
    for (from, to, err) in [
        // extraneous header field separators
        (
            "Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw",
            "Via: SIP/2.0/UDP 192.0.2.15;;,;,,",
            ParseError::InvalidHeader("Via"),
        ),
        // overlarge CSeq
        (
            "CSeq: 8 INVITE",
            "CSeq: 36893488147419103232 INVITE",
            ParseError::InvalidHeader("CSeq"),
        ),
        // unterminated quoted display name
        (
            "To: sip:j.user@example.com",
            "To: \"Mr. J. User <sip:j.user@example.com>",
            ParseError::InvalidHeader("To"),
        ),
        // spaces inside an addr-spec
        (
            "To: sip:j.user@example.com",
            "To: <sip:j.user @example.com>",
            ParseError::InvalidHeader("To"),
        ),
        // non-token characters in an unquoted display name
        (
            "From: sip:caller@example.net;tag=134161461246",
            "From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            ParseError::InvalidHeader("From"),
        ),
        // an addr-spec with URI headers not enclosed in <>
        (
            "Max-Forwards: 7",
            "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            ParseError::InvalidHeader("Contact"),
        ),
        // start line and CSeq method mismatch
        (
            "CSeq: 8 INVITE",
            "CSeq: 8 OPTIONS",
            ParseError::CSeqMismatch,
        ),
        // a single-valued header repeated
        (
            "Call-ID: bad.0ha0isndaksdjasdf3234nas",
            "Call-ID: a\nCall-ID: b",
            ParseError::DuplicateHeader("Call-ID"),
        ),
        // missing mandatory header
        (
            "Call-ID: bad.0ha0isndaksdjasdf3234nas\n",
            "",
            ParseError::MissingHeader("Call-ID"),
        ),
    ] {
        assert!(base.contains(from), "{from}");
        let buf = crlf(&base.replacen(from, to, 1));
        let Ok(Message::Request(req)) = Message::parse(&buf) else {
            panic!("{to} should parse");
        };
        assert_eq!(validate_request(&req), Err(err.clone()), "{to}");
    }
    // unknown method whose CSeq names another method
    let req = request(&base.replacen("INVITE sip:", "NEWMETHOD sip:", 1));
    assert_eq!(validate_request(&req), Err(ParseError::CSeqMismatch));
}
