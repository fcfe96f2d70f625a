//! The residual add onto a stream coded with a scale per channel (a transformer's residual stream).

use serde::{Deserialize, Serialize};

use super::checks::{self, I32_MAX};
use super::{
    code_bits, op_tables, room, store, Inputs, Op, OpInputs, OpTable, OpTables, OpTablesMut, OpValues,
};
use crate::codes::{Codes, CodesMut};
use crate::error::{LoadError, RunError};
use crate::format::Clamp;
use crate::kernels;
use crate::kernels::reference::MAX_PTF_SHIFT;
use crate::requant::ChannelRequant;
use crate::weights::max_code;

/// Element-wise `clamp(requant_c((a << shifts_a[c]) * wa + (b << shifts_b[c]) * wb))`: an input coded with
/// power-of-two factors per channel is put on its common scale by its shifts (an empty table: no shifts),
/// and each channel has its own requantization record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAddDesc<'a> {
    /// The two input values (codes of the same shape).
    pub inputs: [u16; 2],
    /// Integer weight of each input on the common scale.
    pub input_weights: [i32; 2],
    /// Left shift of each channel of the first input (empty, or one byte per channel, at most 7).
    pub shifts_a: &'a [u8],
    /// The same for the second input.
    pub shifts_b: &'a [u8],
    /// Per-channel requantization of the sum.
    #[serde(borrow)]
    pub requant: ChannelRequant<'a>,
    /// Output code range.
    pub clamp: Clamp,
}

/// Whether a shift table is empty or has one shift per channel, each at most [`MAX_PTF_SHIFT`]; returns
/// the largest.
fn shift_table(at: u16, shifts: &[u8], channels: usize) -> Result<u32, LoadError> {
    if !(shifts.is_empty() || shifts.len() == channels) || shifts.iter().any(|&s| s > MAX_PTF_SHIFT) {
        return Err(LoadError::BadParams { op: at });
    }
    Ok(shifts.iter().copied().max().unwrap_or(0) as u32)
}

impl<'a> Op<'a> for ChannelAddDesc<'a> {
    const KIND: &'static str = "channel_add";

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
        let channels = out.shape[2] as usize;
        let sa = shift_table(at, self.shifts_a, channels)?;
        let sb = shift_table(at, self.shifts_b, channels)?;
        checks::requant_table(at, &self.requant, channels)?;
        let [wa, wb] = self.input_weights.map(|x| x.unsigned_abs() as u64);
        if (a_max << sa) * wa + (b_max << sb) * wb > I32_MAX {
            return Err(LoadError::AccumulatorOverflow { op: at });
        }
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        checks::elems(values.out())
    }

    fn tables(&self) -> OpTables<'a> {
        op_tables(&[
            OpTable {
                tag: "SA",
                what: "left shift of each channel of the first input",
                bytes: self.shifts_a,
            },
            OpTable {
                tag: "SB",
                what: "left shift of each channel of the second input",
                bytes: self.shifts_b,
            },
            OpTable {
                tag: "R",
                what: "requantization records, one per channel",
                bytes: self.requant.records,
            },
        ])
    }

    fn tables_mut(&mut self) -> OpTablesMut<'_, 'a> {
        [&mut self.shifts_a, &mut self.shifts_b, &mut self.requant.records].into_iter().collect()
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], _scratch: &mut [u8]) {
        let out_value = inputs.values.out();
        let (x, y) = (inputs.codes(self.inputs[0]), inputs.codes(self.inputs[1]));
        let out = CodesMut::new(out, code_bits(out_value));
        let (len, channels) = (out_value.elems(), out_value.shape[2] as usize);
        let shifts = [self.shifts_a, self.shifts_b];
        kernels::channel_add(x, y, len, channels, self.input_weights, shifts, self.requant, self.clamp, out);
    }

    fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let (len, channels) = (values.out().elems(), values.out().shape[2] as usize);
        room(out, len)?;
        let (x, y) = (read(self.inputs[0])?, read(self.inputs[1])?);
        let shifts = [self.shifts_a, self.shifts_b];
        kernels::channel_add_accumulate(x, y, len, channels, self.input_weights, shifts, store(out));
        Ok(len)
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        use std::format;
        use std::string::ToString;
        emit::call(
            "qfd_runtime::kernels::channel_add",
            &[
                cx.input(self.inputs[0]),
                cx.input(self.inputs[1]),
                cx.out().elems().to_string(),
                cx.out().shape[2].to_string(),
                format!("[{}, {}]", self.input_weights[0], self.input_weights[1]),
                format!("[{}, {}]", cx.table("SA"), cx.table("SB")),
                cx.requant_table(),
                emit::clamp(self.clamp),
                cx.out_codes(),
            ],
        )
    }
}
