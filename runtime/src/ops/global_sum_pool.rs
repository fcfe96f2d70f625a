//! Global sum pool: a feature map to one `i32` sum per channel.

use serde::{Deserialize, Serialize};

use super::checks::{self, I32_MAX};
use super::{hwc, one_input, Inputs, Op, OpInputs, OpValues};
use crate::error::LoadError;
use crate::format::ElemType;
use crate::kernels;

/// Global sum pool: `H x W x C` codes to `1 x 1 x C` `i32` sums (the `1 / HW` goes to the next layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalSumPoolDesc {
    /// Input value (codes).
    pub input: u16,
}

impl Op<'_> for GlobalSumPoolDesc {
    const KIND: &'static str = "global_sum_pool";

    fn inputs(&self) -> Inputs {
        one_input(self.input)
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (inp, in_max) = checks::codes_in(at, &values, self.input)?;
        let out = values.out();
        if out.elem != ElemType::I32 || out.shape != [1, 1, inp.shape[2]] {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let bound = (inp.shape[0] as u64 * inp.shape[1] as u64) * in_max;
        if bound > I32_MAX {
            return Err(LoadError::AccumulatorOverflow { op: at });
        }
        Ok(bound)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        checks::elems(values.get(self.input))
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        kernels::global_sum_pool(inputs.codes(self.input), hwc(inputs.values.get(self.input)), out);
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        emit::call(
            "qfd_runtime::kernels::global_sum_pool",
            &[cx.input(self.input), emit::hwc(cx.value(self.input)), "out".into()],
        )
    }
}
