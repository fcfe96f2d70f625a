//! 2-D convolution (grouped, depthwise and pointwise included) followed by per-channel requantization.
//! The kernel variant that runs it is chosen by [`crate::kernels::select`].

use serde::{Deserialize, Serialize};

use super::checks::{self, I32_MAX};
use super::{
    code_bits, hwc, one_input, room, store, weight_tables, Inputs, Op, OpInputs, OpTables, OpTablesMut,
    OpValues,
};
use crate::codes::{Codes, CodesMut};
use crate::error::{LoadError, RunError};
use crate::format::{Clamp, Window};
use crate::kernels::select::Core;
use crate::kernels::{self, select, ConvGeometry};
use crate::requant::ChannelRequant;
use crate::weights::{max_code, PackedWeights};

/// 2-D convolution (grouped, depthwise and pointwise included) followed by per-channel requantization.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conv2dDesc<'a> {
    /// Input value (codes).
    pub input: u16,
    /// Kernel, stride, padding.
    pub window: Window,
    /// Channel groups: `Cin` and `Cout` are multiples of it; depthwise is `groups == Cin`.
    pub groups: u16,
    /// Weights `[Cout][kh][kw][Cin / groups]`.
    #[serde(borrow)]
    pub weights: PackedWeights<'a>,
    /// One entry per output channel.
    #[serde(borrow)]
    pub requant: ChannelRequant<'a>,
    /// Output code range.
    pub clamp: Clamp,
}

impl Conv2dDesc<'_> {
    /// The shapes as the kernels see them.
    pub fn geometry(&self, values: OpValues<'_>) -> ConvGeometry {
        let input = values.get(self.input);
        ConvGeometry {
            input: hwc(input),
            output: hwc(values.out()),
            window: self.window,
            groups: self.groups as usize,
            input_bits: code_bits(input),
        }
    }

    /// Weights per output channel: `kh * kw * Cin / groups`.
    fn fan_in(&self, values: OpValues<'_>) -> u64 {
        let cin = values.get(self.input).shape[2] as u64;
        checks::taps(&self.window) * cin / self.groups as u64
    }
}

impl<'a> Op<'a> for Conv2dDesc<'a> {
    const KIND: &'static str = "conv2d";

    fn inputs(&self) -> Inputs {
        one_input(self.input)
    }

    fn check(&self, at: u16, values: OpValues<'_>, _max_abs: &[u64]) -> Result<u64, LoadError> {
        let (inp, in_max) = checks::codes_in(at, &values, self.input)?;
        let [ih, iw, ic] = inp.shape.map(|d| d as usize);
        let [h, w, c] = values.out().shape.map(|d| d as usize);
        let groups = self.groups as usize;
        if groups == 0 || ic % groups != 0 || c % groups != 0 {
            return Err(LoadError::BadGeometry { op: at });
        }
        let hw = self.window.output_hw(ih, iw).ok_or(LoadError::BadGeometry { op: at })?;
        if hw != [h, w] {
            return Err(LoadError::ShapeMismatch { op: at });
        }
        let bits = checks::clamped_out(at, &values, self.clamp)?;
        let fan_in = self.fan_in(values);
        checks::weights(at, &self.weights, c as u64 * fan_in)?;
        checks::requant_table(at, &self.requant, c)?;
        if fan_in * in_max * max_code(self.weights.bits) as u64 > I32_MAX {
            return Err(LoadError::AccumulatorOverflow { op: at });
        }
        Ok(max_code(bits) as u64)
    }

    fn work(&self, values: OpValues<'_>) -> u64 {
        let out = values.out();
        let cin = values.get(self.input).shape[2] as u64;
        // The patch sum visits each window once per group; the dot products once per output channel.
        let pixels = checks::elems(out) / out.shape[2] as u64;
        checks::elems(out) * self.fan_in(values) + pixels * checks::taps(&self.window) * cin
    }

    fn macs(&self, values: OpValues<'_>) -> u64 {
        checks::elems(values.out()) * self.fan_in(values)
    }

    fn params(&self, values: OpValues<'_>) -> u64 {
        values.out().shape[2] as u64 * self.fan_in(values)
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

    fn window(&self) -> Option<&Window> {
        Some(&self.window)
    }

    fn scratch_bytes(&self, values: OpValues<'_>, core: Core) -> usize {
        select::conv_scratch_bytes_on(&self.geometry(values), self.weights.bits, core)
    }

    fn variant(&self, values: OpValues<'_>) -> &'static str {
        match select::conv_variant(&self.geometry(values), self.weights.bits) {
            select::ConvVariant::Reference => "reference",
            select::ConvVariant::Gemm(p) if p.format.is_dot2() => "im2col-2codes",
            select::ConvVariant::Gemm(_) => "im2col",
            select::ConvVariant::Depthwise3x3 { .. } => "depthwise-3x3",
        }
    }

    fn run(&self, inputs: &OpInputs<'_, '_>, out: &mut [u8], scratch: &mut [u8]) {
        let geo = self.geometry(inputs.values);
        let out = CodesMut::new(out, code_bits(inputs.values.out()));
        kernels::conv2d(inputs.codes(self.input), &geo, self.weights, self.requant, self.clamp, out, scratch);
    }

    fn accumulators<'v>(
        &self,
        values: OpValues<'_>,
        read: &dyn Fn(u16) -> Result<Codes<'v>, RunError>,
        out: &mut [i32],
    ) -> Result<usize, RunError> {
        let count = values.out().elems();
        room(out, count)?;
        let geo = self.geometry(values);
        kernels::conv2d_accumulate(read(self.input)?, &geo, self.weights, {
            let mut put = store(out);
            move |i, _, acc| put(i, acc)
        });
        Ok(count)
    }

    #[cfg(feature = "emit")]
    fn emit_call(&self, cx: &super::emit::EmitCx<'_>) -> std::string::String {
        use super::emit;
        use std::format;
        let input = cx.value(self.input);
        let geometry = format!(
            "&qfd_runtime::kernels::ConvGeometry {{ input: {}, output: {}, window: {}, groups: {}, input_bits: {} }}",
            emit::hwc(input),
            emit::hwc(cx.out()),
            emit::window(&self.window),
            self.groups,
            code_bits(input)
        );
        emit::call(
            "qfd_runtime::kernels::conv2d",
            &[
                cx.input(self.input),
                geometry,
                cx.weights(self.weights.bits),
                cx.requant_table(),
                emit::clamp(self.clamp),
                cx.out_codes(),
                "scratch".into(),
            ],
        )
    }
}
