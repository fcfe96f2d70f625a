//! Average pool: the window sum requantized.

use serde::{Deserialize, Serialize};

use super::checks::{self, I32_MAX};
use super::{code_bits, hwc, one_input, room, store, Inputs, Op, OpInputs, OpValues};
use crate::codes::{Codes, CodesMut};
use crate::error::{LoadError, RunError};
use crate::format::{Clamp, Window};
use crate::kernels::{self, PoolGeometry};
use crate::requant::RequantParams;
use crate::weights::max_code;

/// Average pool: the window sum (padding counts as code 0) is requantized, so `1 / (kh * kw)` and any change
/// of scale live in `requant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvgPoolDesc {
    /// Input value (codes).
    pub input: u16,
    /// Kernel, stride, padding.
    pub window: Window,
    /// Requantization of the window sum.
    pub requant: RequantParams,
    /// Output code range.
    pub clamp: Clamp,
}

impl AvgPoolDesc {
    fn geometry(&self, values: OpValues<'_>) -> PoolGeometry {
        PoolGeometry { input: hwc(values.get(self.input)), output: hwc(values.out()), window: self.window }
    }
}

impl Op<'_> for AvgPoolDesc {
    const KIND: &'static str = "avg_pool";

    fn inputs(&self) -> Inputs {
        one_input(self.input)
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (inp, in_max) = checks::codes_in(at, &values, self.input)?;
        checks::pool_shape(at, &self.window, inp, values.out())?;
        let bits = checks::clamped_out(at, &values, self.clamp)?;
        checks::params(at, &self.requant)?;
        if checks::taps(&self.window) * in_max > I32_MAX {
            return Err(LoadError::AccumulatorOverflow { op: at });
        }
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        checks::elems(values.out()) * checks::taps(&self.window)
    }

    fn window(&self) -> Option<&Window> {
        Some(&self.window)
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let out = CodesMut::new(out, code_bits(inputs.values.out()));
        let geo = self.geometry(inputs.values);
        kernels::avg_pool(inputs.codes(self.input), &geo, self.requant, self.clamp, out);
    }

    fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let count = values.out().elems();
        room(out, count)?;
        kernels::avg_pool_accumulate(read(self.input)?, &self.geometry(values), store(out));
        Ok(count)
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        let geometry = emit::pool_geometry(cx.value(self.input), cx.out(), &self.window);
        emit::call(
            "qfd_runtime::kernels::avg_pool",
            &[
                cx.input(self.input),
                std::format!("&{geometry}"),
                emit::requant(self.requant),
                emit::clamp(self.clamp),
                cx.out_codes(),
            ],
        )
    }
}
