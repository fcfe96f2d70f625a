//! The residual add: two code tensors of one shape, each on its own scale, summed and requantized.

use serde::{Deserialize, Serialize};

use super::checks::{self, I32_MAX};
use super::{code_bits, room, store, Inputs, Op, OpInputs, OpValues};
use crate::codes::{Codes, CodesMut};
use crate::error::{LoadError, RunError};
use crate::format::Clamp;
use crate::kernels;
use crate::requant::RequantParams;
use crate::weights::max_code;

/// Element-wise `clamp(requant(a * weights[0] + b * weights[1]))`: the residual add. `requant.offset` holds
/// the constant term of both branches, so each input keeps its own scale and zero point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddDesc {
    /// The two input values (codes of the same shape).
    pub inputs: [u16; 2],
    /// Integer weight of each input on the common scale.
    pub input_weights: [i32; 2],
    /// Requantization of the sum.
    pub requant: RequantParams,
    /// Output code range.
    pub clamp: Clamp,
}

impl Op<'_> for AddDesc {
    const KIND: &'static str = "add";

    fn inputs(&self) -> Inputs {
        Inputs::from_slice(&self.inputs).unwrap_or_default()
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (a, a_max) = checks::codes_in(at, &values, self.inputs[0])?;
        let (b, b_max) = checks::codes_in(at, &values, self.inputs[1])?;
        let out = values.out();
        if a.shape != out.shape || b.shape != out.shape {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let bits = checks::clamped_out(at, &values, self.clamp)?;
        checks::params(at, &self.requant)?;
        let [wa, wb] = self.input_weights.map(|x| x.unsigned_abs() as u64);
        if a_max * wa + b_max * wb > I32_MAX {
            return Err(LoadError::AccumulatorOverflow { op: at });
        }
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        checks::elems(values.out())
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let out_value = inputs.values.out();
        let (x, y) = (inputs.codes(self.inputs[0]), inputs.codes(self.inputs[1]));
        let out = CodesMut::new(out, code_bits(out_value));
        kernels::add(x, y, out_value.elems(), self.input_weights, self.requant, self.clamp, out);
    }

    fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let count = values.out().elems();
        room(out, count)?;
        let (x, y) = (read(self.inputs[0])?, read(self.inputs[1])?);
        kernels::add_accumulate(x, y, count, self.input_weights, store(out));
        Ok(count)
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        use std::format;
        use std::string::ToString;
        emit::call(
            "qfd_runtime::kernels::add",
            &[
                cx.input(self.inputs[0]),
                cx.input(self.inputs[1]),
                cx.out().elems().to_string(),
                format!("[{}, {}]", self.input_weights[0], self.input_weights[1]),
                emit::requant(self.requant),
                emit::clamp(self.clamp),
                cx.out_codes(),
            ],
        )
    }
}
