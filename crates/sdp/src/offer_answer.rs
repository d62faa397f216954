//! RFC 3264 offer/answer for one audio stream: PCMU, PCMA and RFC 4733 telephone-event.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::description::{MediaDescription, SessionDescription};

/// An audio codec voxflow can send and receive (both G.711, 8 kHz, static payload types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, static payload type 0.
    Pcmu,
    /// G.711 A-law, static payload type 8.
    Pcma,
}

/// The direction of a media stream (RFC 3264 §5.1), from the point of view of whoever it
/// describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sends and receives (the default).
    SendRecv,
    /// Only sends.
    SendOnly,
    /// Only receives.
    RecvOnly,
    /// Neither sends nor receives.
    Inactive,
}

/// The outcome of a negotiation: everything the media session needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where the peer wants to receive RTP (its `c=` address and `m=` port). The address is
    /// unspecified (`0.0.0.0`) when the peer put the call on hold the RFC 2543 way.
    pub remote_rtp: SocketAddr,
    /// The codec to send and expect.
    pub codec: Codec,
    /// The RTP payload type of `codec` on this session.
    pub payload_type: u8,
    /// The RTP payload type of telephone-event/8000, if both sides do RFC 4733.
    pub dtmf_payload_type: Option<u8>,
    /// Packetisation time in milliseconds: the peer's `a=ptime` when it is a multiple of 10 from
    /// 10 to 60, else 20. The media session sends one packet of this length per tick.
    pub ptime_ms: u32,
    /// OUR direction: `SendOnly`/`SendRecv` mean we should send audio, `RecvOnly`/`SendRecv`
    /// that we should expect it. It mirrors the peer's (its `sendonly` is our `RecvOnly`).
    pub direction: Direction,
}

/// Why an SDP body cannot be used. Every variant maps to SIP 488 Not Acceptable Here when it
/// comes from an offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// The body is not a session description.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// There is no active audio stream.
    #[error("no audio stream in SDP")]
    NoAudio,
    /// There is an audio stream but no codec in common with ours.
    #[error("no common audio codec")]
    NoCommonCodec,
}

/// The `o=` line's session id and version. The id stays for the whole session; the version
/// goes up by one with every new offer or answer we send in it (RFC 3264 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Session id.
    pub session_id: u64,
    /// Session version.
    pub version: u64,
}

impl Origin {
    /// The origin of the next description of the same session.
    #[must_use]
    pub fn next(self) -> Origin {
        Origin {
            version: self.version.wrapping_add(1),
            ..self
        }
    }
}

impl From<u64> for Origin {
    /// A new session: version equal to the id.
    fn from(session_id: u64) -> Origin {
        Origin {
            session_id,
            version: session_id,
        }
    }
}

/// Answers a remote offer.
///
/// The codec is the first one in the OFFER's order that is also in `prefs`; telephone-event/8000
/// is accepted if offered (with the offerer's payload type); our direction mirrors the offerer's
/// (`sendonly` → `recvonly`, `c=0.0.0.0` hold → `recvonly`/`inactive`). The first usable audio
/// stream is accepted; every other `m=` line is rejected with port 0, as RFC 3264 §6 requires.
/// Returns the negotiated parameters and the answer SDP text (CRLF line ends).
pub fn answer_offer(
    offer: &[u8],
    prefs: &[Codec],
    local_rtp: SocketAddr,
    origin: impl Into<Origin>,
) -> Result<(Negotiated, String), NegotiationError> {
    let sdp = parse(offer)?;
    let mut accepted = None;
    for (index, media) in sdp.media.iter().enumerate() {
        if media.port == 0 || !media.is_rtp_audio() {
            continue;
        }
        if let Some(choice) = choose_codec(media, prefs) {
            accepted = Some((index, media, choice));
            break;
        }
    }
    let Some((accepted_index, media, (codec, payload_type))) = accepted else {
        return Err(no_stream_error(&sdp));
    };

    let negotiated = negotiated(&sdp, media, codec, payload_type)?;
    let dtmf_events = negotiated
        .dtmf_payload_type
        .map(|pt| media.fmtp(pt).unwrap_or(DTMF_EVENTS).to_owned());

    let mut answer = session_header(local_rtp.ip(), origin.into());
    for (index, offered) in sdp.media.iter().enumerate() {
        if index == accepted_index {
            write_audio_section(
                &mut answer,
                local_rtp.port(),
                &offered.proto,
                &[(codec, payload_type)],
                negotiated.dtmf_payload_type.zip(dtmf_events.as_deref()),
                negotiated.ptime_ms,
                negotiated.direction,
            );
        } else {
            let formats = if offered.formats.is_empty() {
                "0".to_owned()
            } else {
                offered.formats.join(" ")
            };
            line(
                &mut answer,
                format_args!("m={} 0 {} {formats}", offered.media, offered.proto),
            );
        }
    }
    Ok((negotiated, answer))
}

/// Our offer, for an INVITE without SDP (sent in our 200) and for outbound calls: the codecs of
/// `prefs` in that order with their static payload types (PCMU and PCMA when `prefs` is empty),
/// telephone-event on payload type 101 with events 0-16, `a=ptime:20`, `a=sendrecv`.
#[must_use]
pub fn create_offer(local_rtp: SocketAddr, prefs: &[Codec], origin: impl Into<Origin>) -> String {
    let mut codecs: Vec<(Codec, u8)> = Vec::with_capacity(2);
    for codec in prefs {
        if !codecs.iter().any(|(c, _)| c == codec) {
            codecs.push((*codec, codec.payload_type()));
        }
    }
    if codecs.is_empty() {
        codecs = vec![(Codec::Pcmu, 0), (Codec::Pcma, 8)];
    }
    let mut offer = session_header(local_rtp.ip(), origin.into());
    write_audio_section(
        &mut offer,
        local_rtp.port(),
        "RTP/AVP",
        &codecs,
        Some((OFFER_DTMF_PAYLOAD_TYPE, DTMF_EVENTS)),
        DEFAULT_PTIME_MS,
        Direction::SendRecv,
    );
    offer
}

/// Reads the peer's answer to our offer: the first codec in the ANSWER's order that is in
/// `offered`, its telephone-event payload type if any, and our direction mirroring the peer's.
/// An answer whose audio stream has port 0 (rejected) gives [`NegotiationError::NoCommonCodec`].
pub fn accept_answer(answer: &[u8], offered: &[Codec]) -> Result<Negotiated, NegotiationError> {
    let sdp = parse(answer)?;
    let media = sdp
        .media
        .iter()
        .find(|m| m.port != 0 && m.is_rtp_audio())
        .ok_or_else(|| no_stream_error(&sdp))?;
    let (codec, payload_type) =
        choose_codec(media, offered).ok_or(NegotiationError::NoCommonCodec)?;
    negotiated(&sdp, media, codec, payload_type)
}

impl Codec {
    /// The static RTP payload type (RFC 3551): 0 for PCMU, 8 for PCMA.
    #[must_use]
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    #[must_use]
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// The RTP clock rate in Hz (8000 for both).
    #[must_use]
    pub fn clock_rate(self) -> u32 {
        8000
    }
}

impl Direction {
    /// The direction the other side has when this side has `self` (`SendOnly` ↔ `RecvOnly`).
    #[must_use]
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether media flows out of this side.
    #[must_use]
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether media flows into this side.
    #[must_use]
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The attribute name (`sendrecv`, `sendonly`, `recvonly`, `inactive`).
    #[must_use]
    pub fn attribute_name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_attribute_name(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.attribute_name()))
    }

    /// This side's direction without the receiving half (what a `c=0.0.0.0` hold means).
    fn without_receive(self) -> Direction {
        match self {
            Direction::SendRecv | Direction::SendOnly => Direction::SendOnly,
            Direction::RecvOnly | Direction::Inactive => Direction::Inactive,
        }
    }
}

const OFFER_DTMF_PAYLOAD_TYPE: u8 = 101;
const DTMF_EVENTS: &str = "0-16";
const DEFAULT_PTIME_MS: u32 = 20;

fn parse(body: &[u8]) -> Result<SessionDescription, NegotiationError> {
    SessionDescription::parse(body).map_err(|e| NegotiationError::Malformed(e.to_string()))
}

/// `NoCommonCodec` when some audio stream was offered, `NoAudio` when none was.
fn no_stream_error(sdp: &SessionDescription) -> NegotiationError {
    let any_audio = sdp
        .media
        .iter()
        .any(|m| m.port != 0 && m.media.eq_ignore_ascii_case("audio"));
    if any_audio {
        NegotiationError::NoCommonCodec
    } else {
        NegotiationError::NoAudio
    }
}

/// The first payload type of `media` (in its order) whose codec is in `prefs`.
fn choose_codec(media: &MediaDescription, prefs: &[Codec]) -> Option<(Codec, u8)> {
    media
        .payload_types()
        .filter_map(|pt| codec_of(media, pt).map(|c| (c, pt)))
        .find(|(codec, _)| prefs.contains(codec))
}

/// The codec a payload type stands for: its `a=rtpmap`, or the static assignment (0, 8) when
/// there is none.
fn codec_of(media: &MediaDescription, payload_type: u8) -> Option<Codec> {
    match media.rtpmap(payload_type) {
        Some(map) => {
            let mono = map.channels.is_none_or(|c| c == 1);
            if map.clock_rate != 8000 || !mono {
                None
            } else if map.encoding.eq_ignore_ascii_case("PCMU") {
                Some(Codec::Pcmu)
            } else if map.encoding.eq_ignore_ascii_case("PCMA") {
                Some(Codec::Pcma)
            } else {
                None
            }
        }
        None => match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        },
    }
}

/// The telephone-event/8000 payload type of `media`, if listed.
fn dtmf_payload_type(media: &MediaDescription) -> Option<u8> {
    media.payload_types().find(|pt| {
        media.rtpmap(*pt).is_some_and(|m| {
            m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
        })
    })
}

/// The peer's `a=ptime` (media level, else session level) if usable, else 20.
fn ptime_ms(sdp: &SessionDescription, media: &MediaDescription) -> u32 {
    media
        .attribute("ptime")
        .or_else(|| sdp.attribute("ptime"))
        .and_then(|a| a.value.as_deref())
        .and_then(|v| {
            let whole = v.split_once('.').map_or(v, |(w, _)| w);
            whole.trim().parse::<u32>().ok()
        })
        .filter(|p| (10..=60).contains(p) && p % 10 == 0)
        .unwrap_or(DEFAULT_PTIME_MS)
}

/// The peer's direction for `media`: the media-level attribute, else the session-level one,
/// else sendrecv.
fn peer_direction(sdp: &SessionDescription, media: &MediaDescription) -> Direction {
    let from = |attrs: &[crate::description::Attribute]| {
        attrs
            .iter()
            .filter(|a| a.value.is_none())
            .find_map(|a| Direction::from_attribute_name(&a.name))
    };
    from(&media.attributes)
        .or_else(|| from(&sdp.attributes))
        .unwrap_or(Direction::SendRecv)
}

fn negotiated(
    sdp: &SessionDescription,
    media: &MediaDescription,
    codec: Codec,
    payload_type: u8,
) -> Result<Negotiated, NegotiationError> {
    let address = media
        .connection
        .or(sdp.connection)
        .ok_or_else(|| NegotiationError::Malformed("no connection address (c=)".to_owned()))?;
    let mut peer = peer_direction(sdp, media);
    if address.is_unspecified() {
        peer = peer.without_receive();
    }
    Ok(Negotiated {
        remote_rtp: SocketAddr::new(address, media.port),
        codec,
        payload_type,
        dtmf_payload_type: dtmf_payload_type(media),
        ptime_ms: ptime_ms(sdp, media),
        direction: peer.reverse(),
    })
}

fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
    out.push_str("\r\n");
}

fn address_line(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("IN IP4 {v4}"),
        IpAddr::V6(v6) => format!("IN IP6 {v6}"),
    }
}

fn session_header(ip: IpAddr, origin: Origin) -> String {
    let address = address_line(ip);
    let mut out = String::with_capacity(320);
    line(&mut out, format_args!("v=0"));
    line(
        &mut out,
        format_args!(
            "o=voxflow {} {} {address}",
            origin.session_id, origin.version
        ),
    );
    line(&mut out, format_args!("s=voxflow"));
    line(&mut out, format_args!("c={address}"));
    line(&mut out, format_args!("t=0 0"));
    out
}

fn write_audio_section(
    out: &mut String,
    port: u16,
    proto: &str,
    codecs: &[(Codec, u8)],
    dtmf: Option<(u8, &str)>,
    ptime_ms: u32,
    direction: Direction,
) {
    let mut formats = String::new();
    for (_, pt) in codecs {
        let _ = write!(formats, " {pt}");
    }
    if let Some((pt, _)) = dtmf {
        let _ = write!(formats, " {pt}");
    }
    line(out, format_args!("m=audio {port} {proto}{formats}"));
    for (codec, pt) in codecs {
        line(
            out,
            format_args!(
                "a=rtpmap:{pt} {}/{}",
                codec.encoding_name(),
                codec.clock_rate()
            ),
        );
    }
    if let Some((pt, events)) = dtmf {
        line(out, format_args!("a=rtpmap:{pt} telephone-event/8000"));
        line(out, format_args!("a=fmtp:{pt} {events}"));
    }
    line(out, format_args!("a=ptime:{ptime_ms}"));
    line(out, format_args!("a={}", direction.attribute_name()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "192.0.2.10:40000";

    fn local() -> SocketAddr {
        LOCAL.parse().unwrap()
    }

    fn lines(s: &str) -> Vec<&str> {
        assert!(s.ends_with("\r\n"), "CRLF line ends: {s:?}");
        s.split("\r\n").filter(|l| !l.is_empty()).collect()
    }

    /// The SDP body of a scenario in the shared siphon SIPp suite (beside the repository), with
    /// SIPp's `[local_ip]` keyword substituted by `ip` the way SIPp does, and CRLF line ends.
    fn sipp_sdp(scenario: &str, ip: &str) -> String {
        let path = format!(
            "{}/../../../shared/conformance/siphon-sipp/{scenario}",
            env!("CARGO_MANIFEST_DIR")
        );
        let xml = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read SIPp scenario {path}: {e}"));
        let start = xml.find("v=0").unwrap();
        let end = start + xml[start..].find("]]>").unwrap();
        xml[start..end]
            .trim_end()
            .replace("[local_ip]", ip)
            .replace('\n', "\r\n")
    }

    fn sipp_multi_codec() -> String {
        sipp_sdp("invite_multi_codec.xml", "127.0.0.1")
    }

    #[test]
    fn answers_sipp_multi_codec_offer_line_by_line() {
        let offer = sipp_multi_codec();
        let (neg, answer) =
            answer_offer(offer.as_bytes(), &[Codec::Pcmu, Codec::Pcma], local(), 4242).unwrap();
        assert_eq!(
            neg,
            Negotiated {
                remote_rtp: "127.0.0.1:9000".parse().unwrap(),
                codec: Codec::Pcmu,
                payload_type: 0,
                dtmf_payload_type: None,
                ptime_ms: 20,
                direction: Direction::SendRecv,
            }
        );
        assert_eq!(
            lines(&answer),
            [
                "v=0",
                "o=voxflow 4242 4242 IN IP4 192.0.2.10",
                "s=voxflow",
                "c=IN IP4 192.0.2.10",
                "t=0 0",
                "m=audio 40000 RTP/AVP 0",
                "a=rtpmap:0 PCMU/8000",
                "a=ptime:20",
                "a=sendrecv",
            ]
        );
    }

    #[test]
    fn codec_order_follows_the_offer_not_our_prefs() {
        let offer = sipp_multi_codec();
        let (neg, _) =
            answer_offer(offer.as_bytes(), &[Codec::Pcma, Codec::Pcmu], local(), 1).unwrap();
        assert_eq!(neg.codec, Codec::Pcmu);
        let (neg, answer) = answer_offer(offer.as_bytes(), &[Codec::Pcma], local(), 1).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 8));
        assert!(answer.contains("m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"));
    }

    /// A carrier-style offer: many codecs, LF line ends, session-level c=, telephone-event on
    /// a non-default payload type, a second telephone-event clock rate, ptime 30, extra
    /// attributes and a video stream.
    const CARRIER_OFFER: &str = "v=0\n\
o=Sonus_UAC 421960 1052093 IN IP4 203.0.113.5\n\
s=SIP Media Capabilities\n\
c=IN IP4 203.0.113.7\n\
t=0 0\n\
m=audio 28504 RTP/AVP 18 9 8 0 96 97 100 101\n\
a=rtpmap:18 G729/8000\n\
a=fmtp:18 annexb=no\n\
a=rtpmap:9 G722/8000\n\
a=rtpmap:96 AMR-WB/16000\n\
a=rtpmap:97 telephone-event/16000\n\
a=rtpmap:100 telephone-event/8000\n\
a=fmtp:100 0-15\n\
a=rtpmap:101 CN/8000\n\
a=ptime:30\n\
a=maxptime:40\n\
a=silenceSupp:off - - - -\n\
a=sendrecv\n\
m=video 28506 RTP/AVP 99\n\
a=rtpmap:99 H264/90000\n";

    #[test]
    fn answers_carrier_offer_with_many_codecs() {
        let (neg, answer) = answer_offer(
            CARRIER_OFFER.as_bytes(),
            &[Codec::Pcmu, Codec::Pcma],
            local(),
            7,
        )
        .unwrap();
        assert_eq!(
            neg,
            Negotiated {
                remote_rtp: "203.0.113.7:28504".parse().unwrap(),
                codec: Codec::Pcma,
                payload_type: 8,
                dtmf_payload_type: Some(100),
                ptime_ms: 30,
                direction: Direction::SendRecv,
            }
        );
        assert_eq!(
            lines(&answer),
            [
                "v=0",
                "o=voxflow 7 7 IN IP4 192.0.2.10",
                "s=voxflow",
                "c=IN IP4 192.0.2.10",
                "t=0 0",
                "m=audio 40000 RTP/AVP 8 100",
                "a=rtpmap:8 PCMA/8000",
                "a=rtpmap:100 telephone-event/8000",
                "a=fmtp:100 0-15",
                "a=ptime:30",
                "a=sendrecv",
                "m=video 0 RTP/AVP 99",
            ]
        );
    }

    #[test]
    fn hold_offers_mirror_direction() {
        // RFC 3264 hold: sendonly at media level; static PTs without rtpmap.
        let hold = "v=0\r\no=- 1 2 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8 0\r\na=sendonly\r\n";
        let (neg, answer) = answer_offer(hold.as_bytes(), &[Codec::Pcmu], local(), 1).unwrap();
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert_eq!(neg.codec, Codec::Pcmu);
        assert!(answer.ends_with("a=recvonly\r\n"));

        // Session-level inactive.
        let inactive = hold
            .replace("a=sendonly\r\n", "")
            .replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
        let (neg, answer) = answer_offer(inactive.as_bytes(), &[Codec::Pcmu], local(), 1).unwrap();
        assert_eq!(neg.direction, Direction::Inactive);
        assert!(answer.ends_with("a=inactive\r\n"));

        // RFC 2543 hold: c=0.0.0.0 with (implicit) sendrecv.
        let old = "v=0\r\no=- 1 2 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        let (neg, answer) = answer_offer(old.as_bytes(), &[Codec::Pcmu], local(), 1).unwrap();
        assert_eq!(neg.remote_rtp, "0.0.0.0:5004".parse().unwrap());
        assert_eq!(neg.direction, Direction::RecvOnly);
        assert!(!neg.direction.sends());
        assert!(answer.ends_with("a=recvonly\r\n"));

        // recvonly from them: we only send.
        let recv = hold.replace("a=sendonly", "a=recvonly");
        let (neg, _) = answer_offer(recv.as_bytes(), &[Codec::Pcmu], local(), 1).unwrap();
        assert_eq!(neg.direction, Direction::SendOnly);
    }

    #[test]
    fn only_g722_is_no_common_codec() {
        let offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n";
        assert_eq!(
            answer_offer(offer.as_bytes(), &[Codec::Pcmu, Codec::Pcma], local(), 1),
            Err(NegotiationError::NoCommonCodec)
        );
    }

    #[test]
    fn sipp_malformed_sdp_is_refused() {
        let offer = sipp_sdp("malformed_sdp.xml", "127.0.0.1");
        assert_eq!(
            answer_offer(offer.as_bytes(), &[Codec::Pcmu, Codec::Pcma], local(), 1),
            Err(NegotiationError::NoCommonCodec)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for body in [
            &b""[..],
            b"garbage",
            b"\x00\xff\xfe",
            b"INVITE sip:x SIP/2.0\r\n",
            b"v=0\r\nm=audio notaport RTP/AVP 0\r\n",
        ] {
            assert!(
                matches!(
                    answer_offer(body, &[Codec::Pcmu], local(), 1),
                    Err(NegotiationError::Malformed(_))
                ),
                "{body:?}"
            );
        }
        // Well-formed but without any connection address.
        let no_c = b"v=0\r\nm=audio 5004 RTP/AVP 0\r\n";
        assert!(matches!(
            answer_offer(no_c, &[Codec::Pcmu], local(), 1),
            Err(NegotiationError::Malformed(_))
        ));
    }

    #[test]
    fn no_audio_stream() {
        let video = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 5006 RTP/AVP 31\r\n";
        assert_eq!(
            answer_offer(video.as_bytes(), &[Codec::Pcmu], local(), 1),
            Err(NegotiationError::NoAudio)
        );
        let disabled = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(
            answer_offer(disabled.as_bytes(), &[Codec::Pcmu], local(), 1),
            Err(NegotiationError::NoAudio)
        );
    }

    #[test]
    fn picks_second_audio_stream_when_first_is_srtp() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\nm=audio 5008 RTP/AVP 0 101\r\nc=IN IP4 10.0.0.2\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (neg, answer) = answer_offer(offer.as_bytes(), &[Codec::Pcmu], local(), 3).unwrap();
        assert_eq!(neg.remote_rtp, "10.0.0.2:5008".parse().unwrap());
        assert_eq!(neg.dtmf_payload_type, Some(101));
        let l = lines(&answer);
        assert_eq!(l[5], "m=audio 0 RTP/SAVP 0");
        assert_eq!(l[6], "m=audio 40000 RTP/AVP 0 101");
        assert_eq!(l[8], "a=rtpmap:101 telephone-event/8000");
        assert_eq!(l[9], "a=fmtp:101 0-16");
    }

    #[test]
    fn ipv6_offer_and_answer() {
        let offer = sipp_sdp("invite_bye_ipv6.xml", "::1");
        let local6: SocketAddr = "[2001:db8::1]:40000".parse().unwrap();
        let (neg, answer) = answer_offer(offer.as_bytes(), &[Codec::Pcmu], local6, 9).unwrap();
        assert_eq!(neg.remote_rtp, "[::1]:9000".parse().unwrap());
        assert!(answer.contains("c=IN IP6 2001:db8::1\r\n"));
    }

    #[test]
    fn create_offer_text_and_round_trip_through_answer() {
        let offer = create_offer(local(), &[Codec::Pcmu, Codec::Pcma], 55);
        assert_eq!(
            lines(&offer),
            [
                "v=0",
                "o=voxflow 55 55 IN IP4 192.0.2.10",
                "s=voxflow",
                "c=IN IP4 192.0.2.10",
                "t=0 0",
                "m=audio 40000 RTP/AVP 0 8 101",
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:8 PCMA/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-16",
                "a=ptime:20",
                "a=sendrecv",
            ]
        );
        // The other side answers our offer with our own code; we accept its answer.
        let peer: SocketAddr = "198.51.100.9:7000".parse().unwrap();
        let (peer_neg, answer) = answer_offer(offer.as_bytes(), &[Codec::Pcma], peer, 8).unwrap();
        assert_eq!(peer_neg.remote_rtp, local());
        assert_eq!(peer_neg.codec, Codec::Pcma);
        let neg = accept_answer(answer.as_bytes(), &[Codec::Pcmu, Codec::Pcma]).unwrap();
        assert_eq!(
            neg,
            Negotiated {
                remote_rtp: peer,
                codec: Codec::Pcma,
                payload_type: 8,
                dtmf_payload_type: Some(101),
                ptime_ms: 20,
                direction: Direction::SendRecv,
            }
        );
    }

    #[test]
    fn create_offer_dedupes_and_defaults() {
        let offer = create_offer(local(), &[Codec::Pcma, Codec::Pcma], 1);
        assert!(offer.contains("m=audio 40000 RTP/AVP 8 101\r\n"));
        let offer = create_offer(local(), &[], 1);
        assert!(offer.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"));
    }

    #[test]
    fn accept_answer_errors_and_direction() {
        let rejected = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(
            accept_answer(rejected.as_bytes(), &[Codec::Pcmu]),
            Err(NegotiationError::NoAudio)
        );
        let other = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 8\r\n";
        assert_eq!(
            accept_answer(other.as_bytes(), &[Codec::Pcmu]),
            Err(NegotiationError::NoCommonCodec)
        );
        let recvonly = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\na=recvonly\r\n";
        let neg = accept_answer(recvonly.as_bytes(), &[Codec::Pcmu]).unwrap();
        assert_eq!(neg.direction, Direction::SendOnly);
        assert!(matches!(
            accept_answer(b"\xff\xff", &[Codec::Pcmu]),
            Err(NegotiationError::Malformed(_))
        ));
    }

    #[test]
    fn dynamic_payload_type_for_g711_and_stereo_is_refused() {
        let offer = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 110 111\r\na=rtpmap:110 PCMU/8000/2\r\na=rtpmap:111 pcma/8000\r\n";
        let (neg, answer) =
            answer_offer(offer.as_bytes(), &[Codec::Pcmu, Codec::Pcma], local(), 1).unwrap();
        assert_eq!((neg.codec, neg.payload_type), (Codec::Pcma, 111));
        assert!(answer.contains("a=rtpmap:111 PCMA/8000\r\n"));
    }

    #[test]
    fn shuffled_and_mutated_offers_never_panic() {
        let base: Vec<&str> = CARRIER_OFFER.lines().collect();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5_000 {
            let mut lines = base.clone();
            // Drop, duplicate or swap a few lines, then corrupt one byte.
            for _ in 0..3 {
                let i = (next() % lines.len() as u64) as usize;
                let j = (next() % lines.len() as u64) as usize;
                match next() % 3 {
                    0 => {
                        lines.remove(i);
                    }
                    1 => lines.insert(i, lines[j]),
                    _ => lines.swap(i, j),
                }
                if lines.is_empty() {
                    break;
                }
            }
            let mut body = lines.join("\r\n").into_bytes();
            if !body.is_empty() {
                let k = (next() % body.len() as u64) as usize;
                body[k] = next() as u8;
            }
            let _ = answer_offer(&body, &[Codec::Pcmu, Codec::Pcma], local(), 1);
            let _ = accept_answer(&body, &[Codec::Pcmu]);
        }
    }

    #[test]
    fn bad_ptime_falls_back_to_20() {
        for (ptime, expect) in [("20.0", 20), ("40", 40), ("25", 20), ("0", 20), ("x", 20)] {
            let offer = format!(
                "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5000 RTP/AVP 0\r\na=ptime:{ptime}\r\n"
            );
            let (neg, _) = answer_offer(offer.as_bytes(), &[Codec::Pcmu], local(), 1).unwrap();
            assert_eq!(neg.ptime_ms, expect, "{ptime}");
        }
    }

    #[test]
    fn origin_keeps_the_session_id_and_bumps_the_version() {
        let local: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let origin = Origin::from(42);
        assert!(
            create_offer(local, &[Codec::Pcmu], origin)
                .contains("o=voxflow 42 42 IN IP4 192.0.2.1\r\n")
        );
        assert!(
            create_offer(local, &[Codec::Pcmu], origin.next())
                .contains("o=voxflow 42 43 IN IP4 192.0.2.1\r\n")
        );
    }
}
