//! ITU-T G.711 µ-law (PCMU) and A-law (PCMA) sample coding.
//!
//! Pure functions on single samples; decoding reads a 256-entry table built at compile time. Silence is `0xFF` in µ-law and `0xD5`
//! in A-law.

/// Encodes one 16-bit linear sample as µ-law.
#[must_use]
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample);
    let sign: u8 = if magnitude < 0 {
        magnitude = -magnitude;
        0x80
    } else {
        0x00
    };
    let biased = magnitude.min(ULAW_CLIP) + ULAW_BIAS;
    // biased >> 7 is in 1..=255: the exponent is the position of its highest set bit.
    let exponent = 31 - ((biased >> 7) as u32).leading_zeros();
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    !(sign | ((exponent as u8) << 4) | mantissa as u8)
}

/// Decodes one µ-law byte to a 16-bit linear sample.
#[must_use]
#[inline]
pub fn ulaw_decode(byte: u8) -> i16 {
    ULAW_DECODE[byte as usize]
}

/// Every µ-law byte decoded, built at compile time.
static ULAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = ulaw_decode_computed(i as u8);
        i += 1;
    }
    table
};

/// Every A-law byte decoded, built at compile time.
static ALAW_DECODE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = alaw_decode_computed(i as u8);
        i += 1;
    }
    table
};

const fn ulaw_decode_computed(byte: u8) -> i16 {
    let b = !byte;
    let exponent = (b >> 4) & 0x07;
    let mantissa = (b & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    // |magnitude| <= 32124, always in range.
    if b & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one 16-bit linear sample as A-law.
#[must_use]
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let value = i32::from(sample) >> 3;
    let (mask, magnitude) = if value >= 0 {
        (0xD5u8, value)
    } else {
        (0x55u8, -value - 1)
    };
    // Segment: how many times the magnitude doubled past 0x1F (0..=7 for a 12-bit magnitude),
    // i.e. floor(log2(magnitude)) - 4, and 0 below 0x20.
    let segment = (32 - ((magnitude >> 4) as u32).leading_zeros()).saturating_sub(1);
    let mantissa = if segment < 2 {
        (magnitude >> 1) & 0x0F
    } else {
        (magnitude >> segment) & 0x0F
    };
    ((segment << 4) as u8 | mantissa as u8) ^ mask
}

/// Decodes one A-law byte to a 16-bit linear sample.
#[must_use]
#[inline]
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_DECODE[byte as usize]
}

const fn alaw_decode_computed(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mantissa = ((a & 0x0F) as i32) << 4;
    let segment = (a >> 4) & 0x07;
    let magnitude = match segment {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        s => (mantissa + 0x108) << (s - 1),
    };
    // magnitude <= 32256, always in range.
    if a & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

/// The µ-law code of silence (`ulaw_encode(0)`).
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law code of silence (`alaw_encode(0)`).
pub const ALAW_SILENCE: u8 = 0xD5;

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32635;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_encode(0), ULAW_SILENCE);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0x7E), -8);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(1000), 0xCE);
        assert_eq!(ulaw_decode(0xCE), 988);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_encode(1000), 0xFA);
        assert_eq!(alaw_decode(0xFA), 1008);
    }

    #[test]
    fn all_256_codes_round_trip() {
        for byte in 0..=255u8 {
            // µ-law has two zeros (0x7F is "negative zero"); it re-encodes as 0xFF.
            let expected = if byte == 0x7F { 0xFF } else { byte };
            assert_eq!(ulaw_encode(ulaw_decode(byte)), expected, "ulaw {byte:#04x}");
            assert_eq!(alaw_encode(alaw_decode(byte)), byte, "alaw {byte:#04x}");
        }
    }

    #[test]
    fn every_sample_decodes_close_and_monotonic() {
        let mut previous = (i16::MIN, i16::MIN);
        for sample in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(sample));
            let a = alaw_decode(alaw_encode(sample));
            // Quantisation error is at most half the largest step (1024 µ-law, 1024 A-law),
            // plus clipping at the extremes.
            let s = i32::from(sample);
            assert!(
                (i32::from(u) - s).abs() <= 1024 || s.abs() > 32124,
                "ulaw {sample}"
            );
            assert!((i32::from(a) - s).abs() <= 1024, "alaw {sample}");
            assert!(u >= previous.0 && a >= previous.1, "monotonic at {sample}");
            previous = (u, a);
        }
    }
}
