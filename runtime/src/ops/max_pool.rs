//! Max pool over codes.

use serde::{Deserialize, Serialize};

use super::checks;
use super::{code_bits, hwc, one_input, Inputs, Op, OpInputs, OpValues};
use crate::codes::CodesMut;
use crate::error::LoadError;
use crate::format::Window;
use crate::kernels::{self, PoolGeometry};

/// Max pool over codes; padding cells are ignored. The output has the input's bit-width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxPoolDesc {
    /// Input value (codes).
    pub input: u16,
    /// Kernel, stride, padding.
    pub window: Window,
}

impl Op<'_> for MaxPoolDesc {
    const KIND: &'static str = "max_pool";

    fn inputs(&self) -> Inputs {
        one_input(self.input)
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (inp, _) = checks::codes_in(at, &values, self.input)?;
        let out = values.out();
        checks::pool_shape(at, &self.window, inp, out)?;
        if inp.elem != out.elem {
            return Err(LoadError::BadGeometry { op: at });
        }
        Ok(checks::value_max(out, 0))
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        checks::elems(values.out()) * checks::taps(&self.window)
    }

    fn window(&self) -> Option<&Window> {
        Some(&self.window)
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let values = inputs.values;
        let geo = PoolGeometry {
            input: hwc(values.get(self.input)),
            output: hwc(values.out()),
            window: self.window,
        };
        kernels::max_pool(inputs.codes(self.input), &geo, CodesMut::new(out, code_bits(values.out())));
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        let geometry = emit::pool_geometry(cx.value(self.input), cx.out(), &self.window);
        emit::call(
            "qfd_runtime::kernels::max_pool",
            &[cx.input(self.input), std::format!("&{geometry}"), cx.out_codes()],
        )
    }
}
