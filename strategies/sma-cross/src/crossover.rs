//! The crossover decision, free of host calls (compiled natively by the benchmarks too).

use qtm_guest_sdk::indicators::Sma;
use qtm_guest_sdk::state::{Snapshot, StateError, StateReader, StateWriter};

/// The signal a bar produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cross {
    Up,
    Down,
}

/// Two SMAs and the previous bar's values: the whole decision state.
#[derive(Debug, Clone)]
pub struct Crossover {
    fast: Sma,
    slow: Sma,
    prev: Option<(f64, f64)>,
}

impl Crossover {
    /// Fast and slow periods in bars.
    pub fn new(fast: usize, slow: usize) -> Self {
        Self {
            fast: Sma::new(fast),
            slow: Sma::new(slow),
            prev: None,
        }
    }

    /// Feed one close; returns the cross it completes, if any.
    #[inline]
    pub fn update(&mut self, close: f64) -> Option<Cross> {
        let f = self.fast.update(close);
        let s = self.slow.update(close);
        let (Some(f), Some(s)) = (f, s) else {
            return None;
        };
        let cross = match self.prev {
            Some((pf, ps)) if pf <= ps && f > s => Some(Cross::Up),
            Some((pf, ps)) if pf >= ps && f < s => Some(Cross::Down),
            _ => None,
        };
        self.prev = Some((f, s));
        cross
    }
}

impl Snapshot for Crossover {
    fn save(&self, w: &mut StateWriter) {
        self.fast.save(w);
        self.slow.save(w);
        w.opt_f64(self.prev.map(|p| p.0))
            .opt_f64(self.prev.map(|p| p.1));
    }
    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.fast.load(r)?;
        self.slow.load(r)?;
        self.prev = match (r.opt_f64()?, r.opt_f64()?) {
            (Some(f), Some(s)) => Some((f, s)),
            _ => None,
        };
        Ok(())
    }
}
