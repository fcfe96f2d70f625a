//! Table lookup: any function of one activation code (a GELU).

use serde::{Deserialize, Serialize};

use super::checks;
use super::{
    code_bits, one_input, op_tables, Inputs, Op, OpInputs, OpTable, OpTables, OpTablesMut, OpValues,
};
use crate::codes::CodesMut;
use crate::error::LoadError;
use crate::kernels;
use crate::weights::max_code;

/// `out = table[x]` element by element, one table entry per input code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupDesc<'a> {
    /// Input value (codes).
    pub input: u16,
    /// The output code of each input code (`2^bits_in` entries, none above the output's largest code).
    pub table: &'a [u8],
}

impl<'a> Op<'a> for LookupDesc<'a> {
    const KIND: &'static str = "lookup";

    fn inputs(&self) -> Inputs {
        one_input(self.input)
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (inp, in_max) = checks::codes_in(at, &values, self.input)?;
        if inp.shape != values.out().shape {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let bits = checks::out_codes(at, &values)?;
        if self.table.len() as u64 != in_max + 1 || self.table.iter().any(|&k| k as i32 > max_code(bits)) {
            return Err(LoadError::BadParams { op: at });
        }
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        checks::elems(values.out())
    }

    fn tables(&self) -> OpTables<'a> {
        op_tables(&[OpTable { tag: "T", what: "output code of each input code", bytes: self.table }])
    }

    fn tables_mut(&mut self) -> OpTablesMut<'_, 'a> {
        [&mut self.table].into_iter().collect()
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let out_value = inputs.values.out();
        let out = CodesMut::new(out, code_bits(out_value));
        kernels::lookup(inputs.codes(self.input), out_value.elems(), self.table, out);
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use std::string::ToString;
        super::emit::call(
            "qfd_runtime::kernels::lookup",
            &[cx.input(self.input), cx.out().elems().to_string(), cx.table("T"), cx.out_codes()],
        )
    }
}
