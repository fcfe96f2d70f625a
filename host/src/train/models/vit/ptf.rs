//! The residual stream's quantizer with power-of-two factors (PTF, FQ-ViT's LayerNorm-input quantization):
//! 8-bit codes with one zero point and, per channel, the step `s * 2^shift[c]`, `shift[c]` in `0..=K`.
//! The integer model stores the same codes, and its LayerNorm and residual adds shift them onto the common
//! step `s` (`docs/arithmetic.md`, "Transformer ops").
//!
//! MinMax quantization of the stream is the special case `K = 0`: every shift 0, one step for the tensor.

use std::cell::RefCell;

use tch::{nn, Kind, Tensor};

use crate::train::quant::{round_ste, whole_zero_grid, Observer, QTensor, QuantMode};

/// FQ-ViT's `K`: the largest power-of-two factor.
pub const PTF_MAX_SHIFT: u8 = 3;

/// Quantizer of a residual stream `[N, C, H, W]` with a power-of-two factor per channel.
#[derive(Debug)]
pub struct PtfQuant {
    /// The base step `s` (`[1]`).
    pub step: Tensor,
    /// The zero point, a whole code (`[1]`).
    pub zero: Tensor,
    /// `shift[c]` per channel (`[C]`, whole numbers).
    pub shifts: Tensor,
    /// Bit-width.
    pub bits: u8,
    /// What [`QuantMode::Observe`] passes saw.
    pub observer: RefCell<Observer>,
}

impl PtfQuant {
    /// A quantizer of `channels` channels, to be calibrated ([`PtfQuant::calibrate`]).
    pub fn new(path: &nn::Path, channels: i64, bits: u8) -> Self {
        PtfQuant {
            step: path.ones_no_train("step", &[1]),
            zero: path.zeros_no_train("zero", &[1]),
            shifts: path.zeros_no_train("shifts", &[channels]),
            bits,
            observer: RefCell::default(),
        }
    }

    fn levels(&self) -> f64 {
        ((1u32 << self.bits) - 1) as f64
    }

    /// Each channel's step `s * 2^shift[c]`, shaped `[1, C, 1, 1]`.
    fn channel_steps(&self) -> Tensor {
        (&self.step * self.shifts.exp2()).reshape([1, -1, 1, 1])
    }

    /// Quantizes `x`; passes it through in the float modes (recording it in [`QuantMode::Observe`]).
    pub fn forward(&self, x: Tensor, mode: QuantMode) -> QTensor {
        if mode == QuantMode::Observe {
            self.observer.borrow_mut().observe(&x);
        }
        if mode.is_float() {
            return QTensor::float(x);
        }
        let steps = self.channel_steps();
        let codes = round_ste(&(&x / &steps + &self.zero).clamp(0.0, self.levels()));
        let value = (&codes - &self.zero) * &steps;
        QTensor { norm: codes * (1.0 / self.levels()), value, float: x }
    }

    /// Integer codes of `x` (no gradient).
    pub fn codes(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| (x / self.channel_steps() + &self.zero).clamp(0.0, self.levels()).round())
    }

    /// Sets the grid from what was observed (FQ-ViT's PTF): the step `s8` of the whole range over all
    /// channels, the zero point from the smallest value, the base step `s8 / 2^K`, and for each channel the
    /// factor `2^shift` (`shift` in `0..=max_shift`) with the least squared error on the last batch (ties to
    /// the smaller). `max_shift = 0` is per-tensor MinMax. Returns false when nothing was observed.
    pub fn calibrate(&self, max_shift: u8) -> bool {
        let obs = self.observer.borrow();
        let (Some((lo, hi)), Some(last)) = (obs.range(), &obs.last) else {
            return false;
        };
        let l = self.levels();
        let (s8, zero) = whole_zero_grid(lo, hi, l);
        let base = s8 / 2f64.powi(max_shift as i32);
        let channels = last.size()[1];
        let per_channel = last.transpose(0, 1).reshape([channels, -1]).to_kind(Kind::Double);
        let errors: Vec<Tensor> = (0..=max_shift)
            .map(|a| {
                let step = base * 2f64.powi(a as i32);
                let q = ((&per_channel / step).round() + zero).clamp(0.0, l);
                ((q - zero) * step - &per_channel).square().mean_dim(&[1i64][..], false, Kind::Double)
            })
            .collect();
        // `argmin` over the stacked errors returns the first minimum: ties go to the smaller shift.
        let shifts = Tensor::stack(&errors, 0).argmin(0, false).to_kind(Kind::Float);
        tch::no_grad(|| {
            let _ = self.step.shallow_clone().fill_(base);
            let _ = self.zero.shallow_clone().fill_(zero);
            self.shifts.shallow_clone().copy_(&shifts.to_device(self.shifts.device()));
        });
        true
    }

    /// The calibrated grid as numbers: base step, zero point and each channel's shift.
    pub fn grid(&self) -> (f64, f64, Vec<u8>) {
        let shifts = Vec::<f64>::try_from(self.shifts.to_kind(Kind::Double).to_device(tch::Device::Cpu))
            .unwrap_or_default();
        (
            self.step.double_value(&[0]),
            self.zero.double_value(&[0]),
            shifts.into_iter().map(|s| s as u8).collect(),
        )
    }
}
