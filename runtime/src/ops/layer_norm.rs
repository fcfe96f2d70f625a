//! LayerNorm over each token's channels, on a residual stream coded with power-of-two factors.

use serde::{Deserialize, Serialize};

use super::checks;
use super::{
    code_bits, one_input, op_tables, room, store, Inputs, Op, OpInputs, OpTable, OpTables, OpTablesMut,
    OpValues,
};
use crate::codes::{Codes, CodesMut};
use crate::error::{LoadError, RunError};
use crate::format::Clamp;
use crate::kernels;
use crate::kernels::reference::{PtfInput, MAX_NORM_CHANNELS, MAX_PTF_SHIFT};
use crate::requant::ChannelRequant;
use crate::weights::max_code;

/// LayerNorm: each token (pixel) normalized over its channels, then `gamma` and `beta` as a per-channel
/// requantization (`docs/arithmetic.md`, "Transformer ops").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerNormDesc<'a> {
    /// Input value (codes).
    pub input: u16,
    /// The input's zero point, shared by every channel.
    pub zero: u8,
    /// The input's power-of-two factor per channel (one byte each, at most 7).
    pub shifts: &'a [u8],
    /// Per-channel requantization of the normalized value (16 fraction bits).
    #[serde(borrow)]
    pub requant: ChannelRequant<'a>,
    /// Output code range.
    pub clamp: Clamp,
}

impl LayerNormDesc<'_> {
    fn ptf(&self) -> PtfInput<'_> {
        PtfInput { zero: self.zero, shifts: self.shifts }
    }
}

/// Tokens and channels of a value.
fn tokens_channels(values: OpValues<'_>) -> (usize, usize) {
    let [h, w, c] = values.out().shape.map(|d| d as usize);
    (h * w, c)
}

impl<'a> Op<'a> for LayerNormDesc<'a> {
    const KIND: &'static str = "layer_norm";

    fn inputs(&self) -> Inputs {
        one_input(self.input)
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (inp, in_max) = checks::codes_in(at, &values, self.input)?;
        if inp.shape != values.out().shape {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let bits = checks::clamped_out(at, &values, self.clamp)?;
        let channels = inp.shape[2] as usize;
        if channels > MAX_NORM_CHANNELS
            || self.shifts.len() != channels
            || self.shifts.iter().any(|&s| s > MAX_PTF_SHIFT)
            || self.zero as u64 > in_max
        {
            return Err(LoadError::BadParams { op: at });
        }
        // The normalized value is at most `sqrt(C - 1) * 2^16 + 1 < 2^22`: no accumulator bound to prove.
        checks::requant_table(at, &self.requant, channels)?;
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        // Two passes over the channels, and a square root (32 steps) per token.
        let (tokens, channels) = tokens_channels(values);
        (tokens * (2 * channels + 32)) as u64
    }

    fn tables(&self) -> OpTables<'a> {
        op_tables(&[
            OpTable { tag: "S", what: "power-of-two factor of each input channel", bytes: self.shifts },
            OpTable {
                tag: "R",
                what: "requantization records, one per channel",
                bytes: self.requant.records,
            },
        ])
    }

    fn tables_mut(&mut self) -> OpTablesMut<'_, 'a> {
        [&mut self.shifts, &mut self.requant.records].into_iter().collect()
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let (tokens, channels) = tokens_channels(inputs.values);
        let out = CodesMut::new(out, code_bits(inputs.values.out()));
        let x = inputs.codes(self.input);
        kernels::layer_norm(x, tokens, channels, self.ptf(), self.requant, self.clamp, out);
    }

    fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let (tokens, channels) = tokens_channels(values);
        room(out, tokens * channels)?;
        let x = read(self.input)?;
        kernels::layer_norm_accumulate(x, tokens, channels, self.ptf(), store(out));
        Ok(tokens * channels)
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        use std::format;
        use std::string::ToString;
        let [h, w, c] = cx.out().shape;
        emit::call(
            "qfd_runtime::kernels::layer_norm",
            &[
                cx.input(self.input),
                (h as usize * w as usize).to_string(),
                c.to_string(),
                format!(
                    "qfd_runtime::kernels::PtfInput {{ zero: {}, shifts: {} }}",
                    self.zero,
                    cx.table("S")
                ),
                cx.requant_table(),
                emit::clamp(self.clamp),
                cx.out_codes(),
            ],
        )
    }
}
