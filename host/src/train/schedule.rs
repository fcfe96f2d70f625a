//! Learning-rate schedule: linear warm-up, then cosine decay to a fraction of the base rate, evaluated per
//! optimiser step so that the rate changes smoothly within an epoch.

/// A schedule whose parameters make no sense.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// The base learning rate is not a positive finite number.
    #[error("learning-rate schedule: base_lr must be positive and finite, got {0}")]
    BaseLr(f64),
    /// The warm-up is negative, not finite, or longer than the whole run.
    #[error(
        "learning-rate schedule: warmup_epochs must be in 0..={total} (the number of epochs), got {warmup}"
    )]
    Warmup {
        /// The warm-up asked for, in epochs.
        warmup: f64,
        /// The number of epochs of the run.
        total: usize,
    },
    /// The run has no epochs.
    #[error("learning-rate schedule: total_epochs must be at least 1")]
    NoEpochs,
    /// The final fraction is outside `[0, 1]`.
    #[error("learning-rate schedule: final_lr_fraction must be in [0, 1], got {0}")]
    FinalFraction(f64),
}

/// Cosine schedule with linear warm-up.
///
/// With `W` warm-up steps (`round(warmup_epochs * steps_per_epoch)`) and `T` steps in all:
/// - step `s < W`: `base_lr * (s + 1) / W` (the first step already moves; step `W - 1` is at `base_lr`);
/// - step `s >= W`: `final + (base_lr - final) * (1 + cos(pi * (s - W) / (T - W))) / 2` with
///   `final = base_lr * final_lr_fraction`, which starts at `base_lr` and approaches `final` at the end;
/// - steps past the end stay at `final`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate, reached at the end of the warm-up.
    pub base_lr: f64,
    /// Length of the linear warm-up in epochs (fractions allowed); 0 for none.
    pub warmup_epochs: f64,
    /// Number of epochs of the whole run.
    pub total_epochs: usize,
    /// Learning rate at the end, as a fraction of `base_lr`.
    pub final_lr_fraction: f64,
}

impl LrSchedule {
    /// A checked schedule.
    pub fn new(
        base_lr: f64,
        warmup_epochs: f64,
        total_epochs: usize,
        final_lr_fraction: f64,
    ) -> Result<LrSchedule, ScheduleError> {
        let s = LrSchedule { base_lr, warmup_epochs, total_epochs, final_lr_fraction };
        s.validate()?;
        Ok(s)
    }

    /// Checks the parameters (fields are public, so a schedule built by hand may be wrong).
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if !(self.base_lr.is_finite() && self.base_lr > 0.0) {
            return Err(ScheduleError::BaseLr(self.base_lr));
        }
        if self.total_epochs == 0 {
            return Err(ScheduleError::NoEpochs);
        }
        if !(self.warmup_epochs.is_finite()
            && self.warmup_epochs >= 0.0
            && self.warmup_epochs <= self.total_epochs as f64)
        {
            return Err(ScheduleError::Warmup { warmup: self.warmup_epochs, total: self.total_epochs });
        }
        if !(0.0..=1.0).contains(&self.final_lr_fraction) {
            return Err(ScheduleError::FinalFraction(self.final_lr_fraction));
        }
        Ok(())
    }

    /// Learning rate for optimiser step `step` (counted from 0 over the whole run).
    pub fn lr_at(&self, step: u64, steps_per_epoch: u64) -> f64 {
        self.base_lr * self.factor_at(step, steps_per_epoch)
    }

    /// The schedule as a multiple of `base_lr`, in `[0, 1]`: the same curve for any parameter group, e.g.
    /// `quant_lr * factor_at(step, steps_per_epoch)` for the quantizer parameters.
    pub fn factor_at(&self, step: u64, steps_per_epoch: u64) -> f64 {
        let spe = steps_per_epoch.max(1) as f64;
        let total = (self.total_epochs as f64 * spe).round();
        let warmup = (self.warmup_epochs * spe).round().min(total);
        let s = step as f64;
        if s < warmup {
            return (s + 1.0) / warmup;
        }
        let last = self.final_lr_fraction;
        if total <= warmup {
            return last;
        }
        let progress = ((s - warmup) / (total - warmup)).min(1.0);
        last + (1.0 - last) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn warm_up_is_linear_and_reaches_the_base_rate() {
        let s = LrSchedule::new(0.1, 1.0, 10, 0.0).unwrap();
        assert!(close(s.lr_at(0, 100), 0.1 / 100.0));
        assert!(close(s.lr_at(49, 100), 0.1 * 50.0 / 100.0));
        assert!(close(s.lr_at(99, 100), 0.1));
        // The first cosine step is the base rate too.
        assert!(close(s.lr_at(100, 100), 0.1));
    }

    #[test]
    fn fractional_warm_up_rounds_to_steps() {
        let s = LrSchedule::new(1.0, 0.5, 2, 0.0).unwrap();
        assert!(close(s.factor_at(0, 10), 0.2));
        assert!(close(s.factor_at(4, 10), 1.0));
        assert!(close(s.factor_at(5, 10), 1.0));
    }

    #[test]
    fn cosine_decays_to_the_final_fraction() {
        let s = LrSchedule::new(0.2, 0.0, 4, 0.1).unwrap();
        assert!(close(s.lr_at(0, 25), 0.2));
        // Half way, the cosine is at its midpoint between base and final.
        assert!(close(s.lr_at(50, 25), 0.02 + 0.18 * 0.5));
        let end = s.lr_at(99, 25);
        assert!(end > 0.02 && end < 0.0201, "{end}");
        assert!(close(s.lr_at(100, 25), 0.02));
        assert!(close(s.lr_at(1_000_000, 25), 0.02));
    }

    #[test]
    fn rates_never_increase_after_warm_up() {
        let s = LrSchedule::new(0.05, 1.5, 7, 0.0).unwrap();
        let spe = 13;
        let w = (1.5 * spe as f64).round() as u64;
        let rates: Vec<f64> = (0..7 * spe).map(|i| s.lr_at(i, spe)).collect();
        assert!(rates[..w as usize].windows(2).all(|p| p[0] < p[1]));
        assert!(rates[w as usize..].windows(2).all(|p| p[0] >= p[1]));
        assert!(rates.iter().all(|&r| r > 0.0 && r <= 0.05));
    }

    #[test]
    fn warm_up_over_the_whole_run_and_zero_steps_do_not_divide_by_zero() {
        let s = LrSchedule::new(1.0, 2.0, 2, 0.5).unwrap();
        assert!(close(s.factor_at(19, 10), 1.0));
        assert!(close(s.factor_at(20, 10), 0.5));
        assert!(s.factor_at(0, 0).is_finite());
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = LrSchedule::new(0.0, 0.0, 1, 0.0).unwrap_err();
        assert!(e.to_string().contains("base_lr"), "{e}");
        let e = LrSchedule::new(0.1, 3.0, 2, 0.0).unwrap_err();
        assert!(e.to_string().contains("warmup_epochs"), "{e}");
        assert_eq!(LrSchedule::new(0.1, 0.0, 0, 0.0).unwrap_err(), ScheduleError::NoEpochs);
        assert_eq!(LrSchedule::new(0.1, 0.0, 1, 1.5).unwrap_err(), ScheduleError::FinalFraction(1.5));
        assert!(LrSchedule::new(f64::NAN, 0.0, 1, 0.0).is_err());
    }
}
