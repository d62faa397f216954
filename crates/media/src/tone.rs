//! Generated 8 kHz tones: the prompt beep, sines, silence and DTMF key tones (ITU-T Q.23).

use std::f64::consts::TAU;
use std::sync::Arc;

/// The prompt beep (e.g. before recording): 1000 Hz for 250 ms at about -12 dBFS, with 10 ms
/// linear fades so that it starts and stops without a click.
#[must_use]
pub fn beep() -> Arc<[i16]> {
    let mut samples = sine(1000.0, 250, 8000);
    let fade = (10 * SAMPLES_PER_MS).min(samples.len() / 2);
    let len = samples.len();
    for i in 0..fade {
        let gain = i as f64 / fade as f64;
        for index in [i, len - 1 - i] {
            if let Some(s) = samples.get_mut(index) {
                *s = (f64::from(*s) * gain).round() as i16;
            }
        }
    }
    samples.into()
}

/// `ms` milliseconds of a sine at `freq_hz` with peak `amplitude`, 8 kHz mono, starting at
/// phase 0 (no fades).
#[must_use]
pub fn sine(freq_hz: f32, ms: u32, amplitude: i16) -> Vec<i16> {
    let step = TAU * f64::from(freq_hz) / f64::from(SAMPLE_RATE);
    let amplitude = f64::from(amplitude);
    (0..ms as usize * SAMPLES_PER_MS)
        .map(|i| (amplitude * (step * i as f64).sin()).round() as i16)
        .collect()
}

/// `ms` milliseconds of the DTMF tone of `digit` (`0`-`9`, `*`, `#`, `A`-`D`) for in-band
/// sending: the sum of its row and column sines (ITU-T Q.23), each with peak `amplitude`, 8 kHz
/// mono, starting at phase 0. `None` if `digit` is not a DTMF key.
///
/// The sum saturates at the `i16` range, so an `amplitude` above 16383 clips; about 7200
/// (-10 dBm0 per tone) is usual.
#[must_use]
pub fn dtmf(digit: char, ms: u32, amplitude: i16) -> Option<Vec<i16>> {
    let (row_hz, column_hz) = dtmf_frequencies(digit)?;
    let row = sine(row_hz, ms, amplitude);
    let column = sine(column_hz, ms, amplitude);
    Some(
        row.iter()
            .zip(&column)
            .map(|(r, c)| r.saturating_add(*c))
            .collect(),
    )
}

/// `cycles` of ringback as callers in North America hear it while a call rings: 440 Hz plus
/// 480 Hz for 2 s, then 4 s of silence (each tone peak `amplitude`), 8 kHz mono.
#[must_use]
pub fn ringback(cycles: u32, amplitude: i16) -> Vec<i16> {
    let on: Vec<i16> = sine(440.0, 2000, amplitude)
        .iter()
        .zip(sine(480.0, 2000, amplitude))
        .map(|(a, b)| a.saturating_add(b))
        .collect();
    let mut out = Vec::with_capacity(cycles as usize * 6000 * SAMPLES_PER_MS);
    for _ in 0..cycles {
        out.extend_from_slice(&on);
        out.extend(std::iter::repeat_n(0, 4000 * SAMPLES_PER_MS));
    }
    out
}

/// `ms` milliseconds of digital silence at 8 kHz.
#[must_use]
pub fn silence(ms: u32) -> Vec<i16> {
    vec![0; ms as usize * SAMPLES_PER_MS]
}

/// The low-group (row) frequencies of the DTMF keypad, in Hz (ITU-T Q.23).
pub(crate) const DTMF_ROW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// The high-group (column) frequencies of the DTMF keypad, in Hz (ITU-T Q.23).
pub(crate) const DTMF_COLUMN_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// The DTMF keypad: `DTMF_KEYPAD[row][column]`.
pub(crate) const DTMF_KEYPAD: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// The (row, column) frequencies of a DTMF key.
fn dtmf_frequencies(digit: char) -> Option<(f32, f32)> {
    DTMF_KEYPAD
        .iter()
        .zip(DTMF_ROW_HZ)
        .find_map(|(keys, row_hz)| {
            let column = keys.iter().position(|k| *k == digit)?;
            Some((row_hz, *DTMF_COLUMN_HZ.get(column)?))
        })
}

const SAMPLE_RATE: u32 = 8000;
const SAMPLES_PER_MS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    fn zero_crossings(s: &[i16]) -> usize {
        s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn sine_length_frequency_and_amplitude() {
        let s = sine(440.0, 1000, 1000);
        assert_eq!(s.len(), 8000);
        // 440 Hz crosses zero 880 times a second (±1 at the edges).
        assert!(
            (879..=881).contains(&zero_crossings(&s)),
            "{}",
            zero_crossings(&s)
        );
        assert_eq!(s.iter().copied().max(), Some(1000));
        assert_eq!(sine(1000.0, 0, 100), Vec::<i16>::new());
    }

    #[test]
    fn beep_fades_in_and_out() {
        let b = beep();
        assert_eq!(b.len(), 2000);
        assert_eq!(b[0], 0);
        assert!(b[1].abs() < 1000);
        assert!(b[b.len() - 1].abs() < 100);
        let peak = b.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((7900..=8000).contains(&peak), "{peak}");
        assert!((490..=510).contains(&zero_crossings(&b)));
        assert_eq!(silence(20), vec![0; 160]);
    }

    #[test]
    fn dtmf_is_the_sum_of_row_and_column_sines() {
        let five = dtmf('5', 50, 4000).unwrap();
        assert_eq!(five.len(), 400);
        let row = sine(770.0, 50, 4000);
        let column = sine(1336.0, 50, 4000);
        for ((s, r), c) in five.iter().zip(&row).zip(&column) {
            assert_eq!(*s, r + c);
        }
        assert_eq!(dtmf_frequencies('1'), Some((697.0, 1209.0)));
        assert_eq!(dtmf_frequencies('#'), Some((941.0, 1477.0)));
        assert_eq!(dtmf_frequencies('D'), Some((941.0, 1633.0)));
        assert_eq!(dtmf_frequencies('0'), Some((941.0, 1336.0)));
    }

    #[test]
    fn dtmf_covers_the_sixteen_keys_only() {
        let keys: String = "0123456789*#ABCDabcdE+ 1"
            .chars()
            .filter(|c| dtmf(*c, 10, 1000).is_some())
            .collect();
        assert_eq!(keys, "0123456789*#ABCD1");
    }

    #[test]
    fn dtmf_saturates_instead_of_wrapping() {
        let loud = dtmf('D', 100, i16::MAX).unwrap();
        assert!(loud.contains(&i16::MAX));
        assert!(loud.contains(&i16::MIN));
        // Peaks of the sum never wrap to the other sign.
        let sum: Vec<i32> = sine(941.0, 100, i16::MAX)
            .iter()
            .zip(&sine(1633.0, 100, i16::MAX))
            .map(|(a, b)| i32::from(*a) + i32::from(*b))
            .collect();
        for (s, exact) in loud.iter().zip(&sum) {
            assert_eq!(i32::from(*s), (*exact).clamp(-32768, 32767));
        }
    }
}
