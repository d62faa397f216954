//! RTP packets (RFC 3550 §5.1): zero-copy parsing and header writing.
//!
//! [`RtpPacket::parse`] validates version 2 and walks the CSRC list, the header extension and
//! the padding, returning the payload as a borrowed slice; every malformed packet is an
//! [`RtpError`], never a panic. [`RtpHeader::write`] appends a fixed 12-byte header (no CSRC, no
//! extension) to a reused buffer.

/// The fields of an RTP fixed header that a receiver or sender cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RtpHeader {
    /// The marker bit (M).
    pub marker: bool,
    /// The payload type (PT), 0..=127.
    pub payload_type: u8,
    /// The sequence number.
    pub sequence_number: u16,
    /// The RTP timestamp, in the payload's clock.
    pub timestamp: u32,
    /// The synchronisation source.
    pub ssrc: u32,
}

/// A parsed RTP packet borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// The fixed header fields.
    pub header: RtpHeader,
    /// Number of CSRC identifiers that were present (skipped).
    pub csrc_count: u8,
    /// Whether a header extension was present (skipped).
    pub has_extension: bool,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

/// Why a datagram is not a valid RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("datagram shorter than an RTP header")]
    TooShort,
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    /// The CSRC list runs past the end of the datagram.
    #[error("CSRC list longer than the datagram")]
    CsrcOverrun,
    /// The header extension runs past the end of the datagram.
    #[error("header extension longer than the datagram")]
    ExtensionOverrun,
    /// The padding count is zero or larger than what follows the header.
    #[error("bad padding length")]
    BadPadding,
}

impl<'a> RtpPacket<'a> {
    /// Parses one datagram as an RTP packet.
    pub fn parse(data: &'a [u8]) -> Result<Self, RtpError> {
        let (fixed, mut rest) = data
            .split_first_chunk::<{ RtpHeader::LEN }>()
            .ok_or(RtpError::TooShort)?;
        let [b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3] = *fixed;
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let csrc_count = b0 & 0x0F;

        rest = rest
            .get(usize::from(csrc_count) * 4..)
            .ok_or(RtpError::CsrcOverrun)?;
        if has_extension {
            let (ext, after) = rest
                .split_first_chunk::<4>()
                .ok_or(RtpError::ExtensionOverrun)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            rest = after.get(words * 4..).ok_or(RtpError::ExtensionOverrun)?;
        }
        let payload = if has_padding {
            let padding = usize::from(*rest.last().ok_or(RtpError::BadPadding)?);
            if padding == 0 || padding > rest.len() {
                return Err(RtpError::BadPadding);
            }
            rest.get(..rest.len() - padding)
                .ok_or(RtpError::BadPadding)?
        } else {
            rest
        };

        Ok(RtpPacket {
            header: RtpHeader {
                marker: b1 & 0x80 != 0,
                payload_type: b1 & 0x7F,
                sequence_number: u16::from_be_bytes([s0, s1]),
                timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
                ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
            },
            csrc_count,
            has_extension,
            payload,
        })
    }
}

impl RtpHeader {
    /// Length of the fixed header in bytes.
    pub const LEN: usize = 12;

    /// Appends this header (version 2, no padding, no extension, no CSRC) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0x80);
        out.push(u8::from(self.marker) << 7 | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// Whether a datagram on an RTP port is RTCP (RFC 5761 §4: second byte 192..=223 with version 2),
/// to be demultiplexed before [`RtpPacket::parse`].
#[must_use]
pub fn is_rtcp(data: &[u8]) -> bool {
    matches!(data, [b0, b1, ..] if b0 >> 6 == 2 && (192..=223).contains(b1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RtpHeader {
        RtpHeader {
            marker: true,
            payload_type: 101,
            sequence_number: 0xABCD,
            timestamp: 0x0102_0304,
            ssrc: 0xDEAD_BEEF,
        }
    }

    #[test]
    fn write_then_parse_round_trips() {
        let mut buf = Vec::new();
        header().write(&mut buf);
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            buf[..12],
            [0x80, 0xE5, 0xAB, 0xCD, 1, 2, 3, 4, 0xDE, 0xAD, 0xBE, 0xEF]
        );
        let packet = RtpPacket::parse(&buf).unwrap();
        assert_eq!(packet.header, header());
        assert_eq!(packet.payload, [1, 2, 3]);
        assert_eq!((packet.csrc_count, packet.has_extension), (0, false));
    }

    #[test]
    fn skips_csrc_extension_and_padding() {
        let mut buf = Vec::new();
        header().write(&mut buf);
        buf[0] = 0x80 | 0x20 | 0x10 | 2; // padding, extension, 2 CSRCs
        buf.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]); // CSRCs
        buf.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]); // one-word extension
        buf.extend_from_slice(&[7, 7]); // payload
        buf.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let packet = RtpPacket::parse(&buf).unwrap();
        assert_eq!(packet.payload, [7, 7]);
        assert_eq!((packet.csrc_count, packet.has_extension), (2, true));
    }

    #[test]
    fn malformed_packets_are_errors() {
        let mut ok = Vec::new();
        header().write(&mut ok);
        assert_eq!(RtpPacket::parse(&ok[..11]), Err(RtpError::TooShort));
        assert_eq!(RtpPacket::parse(&[]), Err(RtpError::TooShort));

        let mut v1 = ok.clone();
        v1[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v1), Err(RtpError::BadVersion(1)));

        let mut csrc = ok.clone();
        csrc[0] |= 0x0F;
        assert_eq!(RtpPacket::parse(&csrc), Err(RtpError::CsrcOverrun));

        let mut ext = ok.clone();
        ext[0] |= 0x10;
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::ExtensionOverrun));
        ext.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::ExtensionOverrun));

        let mut pad = ok.clone();
        pad[0] |= 0x20;
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        pad.extend_from_slice(&[1, 5]);
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        pad.push(0);
        assert_eq!(RtpPacket::parse(&pad), Err(RtpError::BadPadding));
        // Padding may eat the whole payload.
        let last = pad.len() - 1;
        pad[last] = 3;
        assert_eq!(RtpPacket::parse(&pad).unwrap().payload, []);
    }

    #[test]
    fn never_panics_on_any_short_datagram() {
        let mut buf = Vec::new();
        header().write(&mut buf);
        buf.extend_from_slice(&[0xFF; 20]);
        for first in 0..=255u8 {
            buf[0] = first;
            for len in 0..buf.len() {
                let _ = RtpPacket::parse(&buf[..len]);
                let _ = is_rtcp(&buf[..len]);
            }
        }
    }

    #[test]
    fn rtcp_demultiplexing() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 201]));
        assert!(!is_rtcp(&[0x80, 0]));
        assert!(!is_rtcp(&[0x80, 0xE5])); // marker + PT 101
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[0x00, 200]));
    }
}
