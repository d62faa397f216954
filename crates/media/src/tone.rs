//! Generated 8 kHz tones.

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

/// `ms` milliseconds of digital silence at 8 kHz.
#[must_use]
pub fn silence(ms: u32) -> Vec<i16> {
    vec![0; ms as usize * SAMPLES_PER_MS]
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
}
