//! Fully connected layer over the whole input tensor, to codes or to the model's logits.

use serde::{Deserialize, Serialize};

use super::checks::{self, I32_MAX};
use super::{
    code_bits, one_input, room, store, weight_tables, Inputs, Op, OpInputs, OpTables, OpTablesMut, OpValues,
};
use crate::codes::Codes;
use crate::error::{LoadError, RunError};
use crate::format::{Clamp, ElemType, ValueDesc};
use crate::kernels::{self, FcInput};
use crate::requant::ChannelRequant;
use crate::weights::{max_code, PackedWeights};

/// What a fully connected layer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FcOutput {
    /// Requantized and clamped codes.
    Codes(Clamp),
    /// `saturate_i32(acc + offset)` (logits, `offset` in accumulator units); multiplier and shift are not used.
    Logits,
}

/// Fully connected layer over the whole input tensor, flattened in `H x W x C` order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FullyConnectedDesc<'a> {
    /// Input value (codes or `i32` sums).
    pub input: u16,
    /// Weights `[Cout][N]`, `N` the input's element count.
    #[serde(borrow)]
    pub weights: PackedWeights<'a>,
    /// One entry per output.
    #[serde(borrow)]
    pub requant: ChannelRequant<'a>,
    /// Codes or raw logits.
    pub output: FcOutput,
}

/// The kernel's view of the input value: codes, or the `i32` sums of a global sum pool.
fn fc_input<'b>(value: &ValueDesc, bytes: &'b [u8]) -> FcInput<'b> {
    match value.elem {
        ElemType::Codes { bits } => FcInput::Codes { codes: Codes::new(bytes, bits), len: value.elems() },
        ElemType::I32 => FcInput::SumsLe(bytes),
    }
}

impl<'a> Op<'a> for FullyConnectedDesc<'a> {
    const KIND: &'static str = "fully_connected";

    fn inputs(&self) -> Inputs {
        one_input(self.input)
    }

    fn check(&self, at: u16, values: OpValues<'_>, max_abs: &[u64]) -> Result<u64, LoadError> {
        let (inp, out) = (values.get(self.input), values.out());
        let in_max = checks::value_max(inp, max_abs[self.input as usize]);
        let [h, w, c] = out.shape.map(|d| d as usize);
        if [h, w] != [1, 1] {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let fan_in = inp.elems() as u64;
        checks::weights(at, &self.weights, c as u64 * fan_in)?;
        let max_offset = checks::requant_table(at, &self.requant, c)?;
        let acc_bound = fan_in * in_max * max_code(self.weights.bits) as u64;
        match self.output {
            FcOutput::Codes(clamp) => {
                if acc_bound > I32_MAX {
                    return Err(LoadError::AccumulatorOverflow { op: at });
                }
                checks::clamp(at, clamp.min, clamp.max, checks::out_codes(at, &values)?)?;
                Ok(clamp.max as u64)
            }
            FcOutput::Logits if out.elem == ElemType::I32 => {
                // The logit is `acc + offset`: the bound covers both, so no logit saturates.
                let bound = acc_bound.saturating_add(max_offset);
                if bound > I32_MAX {
                    return Err(LoadError::AccumulatorOverflow { op: at });
                }
                Ok(bound)
            }
            FcOutput::Logits => Err(LoadError::ShapeMismatch { op: at }),
        }
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        self.macs(values)
    }

    fn macs(&self, values: OpValues<'_>) -> u64 {
        checks::elems(values.out()) * checks::elems(values.get(self.input))
    }

    fn params(&self, values: OpValues<'_>) -> u64 {
        self.macs(values)
    }

    fn tables(&self) -> OpTables<'a> {
        weight_tables(&self.weights, &self.requant)
    }

    fn tables_mut(&mut self) -> OpTablesMut<'_, 'a> {
        [&mut self.weights.data, &mut self.requant.records].into_iter().collect()
    }

    fn weight_bits(&self) -> Option<u8> {
        Some(self.weights.bits)
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let out_value = inputs.values.out();
        let input = fc_input(inputs.values.get(self.input), inputs.bytes(self.input));
        let outputs = out_value.shape[2] as usize;
        kernels::fully_connected(
            input,
            self.weights,
            self.requant,
            self.output,
            outputs,
            code_bits(out_value),
            out,
        );
    }

    fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let count = values.out().elems();
        room(out, count)?;
        let input = fc_input(values.get(self.input), read(self.input)?.bytes());
        kernels::fully_connected_accumulate(input, self.weights, count, store(out));
        Ok(count)
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        use std::format;
        use std::string::ToString;
        let source = match cx.value(self.input).elem {
            ElemType::Codes { .. } => {
                format!("Codes {{ codes: {}, len: {} }}", cx.input(self.input), cx.value(self.input).elems())
            }
            ElemType::I32 => format!("SumsLe({})", cx.bytes(self.input)),
        };
        let kind = match self.output {
            FcOutput::Codes(c) => format!("qfd_runtime::format::FcOutput::Codes({})", emit::clamp(c)),
            FcOutput::Logits => "qfd_runtime::format::FcOutput::Logits".into(),
        };
        emit::call(
            "qfd_runtime::kernels::fully_connected",
            &[
                format!("qfd_runtime::kernels::FcInput::{source}"),
                cx.weights(self.weights.bits),
                cx.requant_table(),
                kind,
                cx.out().shape[2].to_string(),
                code_bits(cx.out()).to_string(),
                "out".into(),
            ],
        )
    }
}
