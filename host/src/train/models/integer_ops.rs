//! The integer graph a network becomes, op by op, with the training modules each op folds: what
//! [`Net::integer_ops`](super::Net::integer_ops) lists and the exporter turns into the `.qfdm` graph.

use qfd_runtime::kernels::ProbCodes;

use super::vit::{ptf::PtfQuant, LayerNormQ};
use super::ConvBnQ;
use crate::train::quant::{ActQuant, QLinear};

/// One op of the integer graph a network becomes, in execution order, with the training modules it folds.
/// Inputs are value indices as in the runtime: 0 is the input pixels, `i + 1` the output of op `i`.
#[derive(Debug)]
pub enum IntegerOp<'a> {
    /// A convolution with its BatchNorm, optional ReLU and the quantizer of its output.
    Conv {
        /// Layer name (the training module path).
        name: String,
        /// The value it reads.
        input: usize,
        /// The layer.
        layer: &'a ConvBnQ,
    },
    /// `quant(relu?(value(a) + value(b)))`.
    Add {
        /// Layer name.
        name: String,
        /// The two values added.
        inputs: [usize; 2],
        /// The quantizer of the sum.
        quant: &'a ActQuant,
        /// Whether a ReLU precedes the quantizer.
        relu: bool,
    },
    /// Sum of every pixel of each channel (the pooled feature times `H * W`).
    GlobalPool {
        /// The value it reads.
        input: usize,
    },
    /// A residual add onto the transformer's stream: `quant(value(a) + value(b))`, `a` the stream (or the
    /// patch embedding), `quant` with power-of-two factors.
    StreamAdd {
        /// Layer name.
        name: String,
        /// The two values added.
        inputs: [usize; 2],
        /// The stream's quantizer.
        quant: &'a PtfQuant,
    },
    /// A LayerNorm of the stream and its quantizer.
    LayerNorm {
        /// Layer name.
        name: String,
        /// The stream it reads.
        input: usize,
        /// The layer.
        norm: &'a LayerNormQ,
    },
    /// The quantized attention logits `Q K^T / sqrt(d)` of each head.
    AttentionScores {
        /// Layer name.
        name: String,
        /// `[Q, K]`.
        inputs: [usize; 2],
        /// Heads.
        heads: usize,
        /// The logits' quantizer.
        quant: &'a ActQuant,
    },
    /// The integer softmax of each row of logits.
    Softmax {
        /// Layer name.
        name: String,
        /// The logits.
        input: usize,
        /// The probability codes.
        probs: ProbCodes,
    },
    /// Probabilities times `V`, quantized.
    AttentionValues {
        /// Layer name.
        name: String,
        /// `[probabilities, V]`.
        inputs: [usize; 2],
        /// Heads.
        heads: usize,
        /// The probability codes.
        probs: ProbCodes,
        /// The output's quantizer.
        quant: &'a ActQuant,
    },
    /// `quant(function(value))`, one table entry per input code.
    Lookup {
        /// Layer name.
        name: String,
        /// The value it reads.
        input: usize,
        /// The function.
        function: fn(f64) -> f64,
        /// The output's quantizer.
        quant: &'a ActQuant,
    },
    /// The classifier, reading the pool's sums.
    Classifier {
        /// The value it reads.
        input: usize,
        /// The layer.
        fc: &'a QLinear,
    },
}

/// The integer ops of a network, built in order; each `push` returns the value the op writes.
#[derive(Debug, Default)]
pub struct IntegerOps<'a> {
    /// The ops so far.
    pub ops: Vec<IntegerOp<'a>>,
}

impl<'a> IntegerOps<'a> {
    pub(crate) fn push(&mut self, op: IntegerOp<'a>) -> usize {
        self.ops.push(op);
        self.ops.len()
    }

    pub(crate) fn conv(&mut self, name: String, input: usize, layer: &'a ConvBnQ) -> usize {
        self.push(IntegerOp::Conv { name, input, layer })
    }

    pub(crate) fn stream_add(&mut self, name: String, inputs: [usize; 2], quant: &'a PtfQuant) -> usize {
        self.push(IntegerOp::StreamAdd { name, inputs, quant })
    }

    pub(crate) fn add(&mut self, name: String, inputs: [usize; 2], quant: &'a ActQuant, relu: bool) -> usize {
        self.push(IntegerOp::Add { name, inputs, quant, relu })
    }
}
