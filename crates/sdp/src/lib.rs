//! voxflow SDP: RFC 4566 session descriptions and RFC 3264 offer/answer for one audio stream
//! (G.711 PCMU/PCMA and RFC 4733 telephone-event).
//!
//! # What this crate owns
//!
//! - A tolerant parser for what carriers and softphones send: CRLF or bare LF, unknown lines and
//!   attributes, several `m=` lines, `c=` at session or media level, static payload types 0/8
//!   without `a=rtpmap`, `a=ptime`, direction attributes and the `c=IN IP4 0.0.0.0` hold.
//!   Nothing a peer sends can make it panic; unusable bodies are a [`NegotiationError`].
//! - The three offer/answer steps a call needs: [`answer_offer`] (a peer's offer in an INVITE),
//!   [`create_offer`] (our offer in a 200 to an INVITE without SDP, or in an outbound INVITE)
//!   and [`accept_answer`] (the peer's answer to our offer). Each yields a [`Negotiated`] that the
//!   media session is configured from.
//!
//! It does no IO and keeps no state: the caller keeps the session id/version and the
//! [`Negotiated`] result of the last exchange.
//!
//! # How to drive it
//!
//! ```
//! # use voxflow_sdp as sdp;
//! use sdp::{answer_offer, Codec, NegotiationError};
//! let offer = b"v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8 0\r\n";
//! let local = "192.0.2.1:40000".parse().unwrap();
//! match answer_offer(offer, &[Codec::Pcmu, Codec::Pcma], local, 1) {
//!     Ok((negotiated, answer_sdp)) => {
//!         assert_eq!(negotiated.codec, Codec::Pcma); // the offer's order wins
//!         assert!(answer_sdp.contains("m=audio 40000 RTP/AVP 8\r\n"));
//!     }
//!     Err(NegotiationError::Malformed(_) | NegotiationError::NoAudio | NegotiationError::NoCommonCodec) => {
//!         // reply 488 Not Acceptable Here
//!     }
//! }
//! ```
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod description;
mod offer_answer;

pub use offer_answer::{
    Codec, Direction, Negotiated, NegotiationError, Origin, accept_answer, answer_offer,
    create_offer,
};
