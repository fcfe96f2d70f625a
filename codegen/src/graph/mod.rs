//! An owned model graph and its builder.
//!
//! The builder infers every output shape, packs weight codes and encodes requantization tables, so a graph
//! that builds is one the runtime can run (encoding loads it back to prove it). Ops are kept as the runtime's
//! own [`OpDesc`] with empty data slices; their bytes live beside them and are attached when encoding, so
//! there is one definition of each op.

mod transformer;

pub use transformer::{AttentionSpec, LayerNormSpec};

use qfd_runtime::format::{
    AddDesc, AvgPoolDesc, Clamp, Conv2dDesc, ElemType, FcOutput, FullyConnectedDesc, GlobalSumPoolDesc,
    MaxPoolDesc, OpDesc, Window,
};
use qfd_runtime::requant::{ChannelRequant, RequantParams};
use qfd_runtime::weights::{max_code, pack_codes, packed_len, PackedWeights};

/// Index of a value: 0 is the model input, `i + 1` the output of node `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueId(pub usize);

/// Shape and element type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueInfo {
    /// `[H, W, C]`.
    pub shape: [usize; 3],
    /// Element type.
    pub elem: ElemType,
}

impl ValueInfo {
    /// Bytes the value takes in the arena.
    pub fn bytes(&self) -> usize {
        self.elem.bytes(self.shape.iter().product::<usize>())
    }
}

/// One op with its data.
#[derive(Debug, Clone)]
pub struct Node {
    /// Layer name, following the training module path (e.g. `layer1.0.conv1`).
    pub name: String,
    /// The op, with empty table slices.
    pub op: OpDesc<'static>,
    /// The bytes of the op's tables, in the order of [`OpDesc::tables`] (for a convolution: packed weight
    /// codes, then requantization records).
    pub tables: Vec<Vec<u8>>,
    /// The value this node writes.
    pub output: ValueInfo,
}

/// What the model file records besides the ops.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphMeta {
    /// Architecture name.
    pub arch: String,
    /// Dataset name.
    pub dataset: String,
    /// Inner weight bits.
    pub weight_bits: u8,
    /// Inner activation bits.
    pub act_bits: u8,
    /// Per-channel mean of `pixel / 255`.
    pub mean: Vec<f32>,
    /// Per-channel std of `pixel / 255`.
    pub std: Vec<f32>,
    /// Real logit per integer logit.
    pub logit_scale: f32,
    /// Class names.
    pub class_names: Vec<String>,
    /// Fake-quant accuracy, if measured.
    pub fake_quant_accuracy: Option<f32>,
    /// Integer accuracy, if measured.
    pub integer_accuracy: Option<f32>,
}

/// A model under construction.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The input value (value 0).
    pub input: ValueInfo,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Metadata.
    pub meta: GraphMeta,
}

/// Why an op could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// The value id does not exist yet.
    #[error("layer {layer}: input value {value} does not exist")]
    UnknownValue {
        /// Layer name.
        layer: String,
        /// The id.
        value: usize,
    },
    /// Shapes, counts or bit-widths do not fit together.
    #[error("layer {layer}: {reason}")]
    Invalid {
        /// Layer name.
        layer: String,
        /// What is wrong.
        reason: String,
    },
}

/// A convolution to add.
#[derive(Debug, Clone)]
pub struct ConvSpec {
    /// Output channels.
    pub out_channels: usize,
    /// Kernel, stride, padding.
    pub window: Window,
    /// Channel groups.
    pub groups: usize,
    /// Weight bit-width.
    pub weight_bits: u8,
    /// Unpacked weight codes `[Cout][kh][kw][Cin / groups]`.
    pub weight_codes: Vec<u8>,
    /// One entry per output channel.
    pub requant: Vec<RequantParams>,
    /// Output code range.
    pub clamp: Clamp,
    /// Output bit-width.
    pub out_bits: u8,
}

/// A fully connected layer to add.
#[derive(Debug, Clone)]
pub struct FcSpec {
    /// Output features.
    pub outputs: usize,
    /// Weight bit-width.
    pub weight_bits: u8,
    /// Unpacked weight codes `[outputs][inputs]`.
    pub weight_codes: Vec<u8>,
    /// One entry per output.
    pub requant: Vec<RequantParams>,
    /// Codes (with clamp and `out_bits`) or logits.
    pub output: FcOutput,
    /// Output bit-width for codes output (ignored for logits).
    pub out_bits: u8,
}

fn invalid(layer: &str, reason: impl Into<String>) -> GraphError {
    GraphError::Invalid { layer: layer.to_string(), reason: reason.into() }
}

fn dim(layer: &str, d: usize) -> Result<u16, GraphError> {
    u16::try_from(d).map_err(|_| invalid(layer, format!("dimension {d} exceeds 65535")))
}

impl Graph {
    /// A graph reading `shape` codes of `input_bits` bits.
    pub fn new(shape: [usize; 3], input_bits: u8, meta: GraphMeta) -> Self {
        Graph {
            input: ValueInfo { shape, elem: ElemType::Codes { bits: input_bits } },
            nodes: Vec::new(),
            meta,
        }
    }

    /// The model input.
    pub fn input_id(&self) -> ValueId {
        ValueId(0)
    }

    /// Shape and type of a value.
    pub fn value(&self, id: ValueId) -> Option<ValueInfo> {
        match id.0 {
            0 => Some(self.input),
            i => self.nodes.get(i - 1).map(|n| n.output),
        }
    }

    /// All values: the input, then each node's output.
    pub fn values(&self) -> Vec<ValueInfo> {
        std::iter::once(self.input).chain(self.nodes.iter().map(|n| n.output)).collect()
    }

    fn input_value(&self, layer: &str, id: ValueId) -> Result<ValueInfo, GraphError> {
        self.value(id).ok_or(GraphError::UnknownValue { layer: layer.to_string(), value: id.0 })
    }

    fn codes_input(&self, layer: &str, id: ValueId) -> Result<([usize; 3], u8), GraphError> {
        let v = self.input_value(layer, id)?;
        match v.elem {
            ElemType::Codes { bits } => Ok((v.shape, bits)),
            ElemType::I32 => Err(invalid(layer, "input must be activation codes")),
        }
    }

    fn push(&mut self, name: &str, op: OpDesc<'static>, tables: Vec<Vec<u8>>, output: ValueInfo) -> ValueId {
        self.nodes.push(Node { name: name.to_string(), op, tables, output });
        ValueId(self.nodes.len())
    }

    /// Adds a convolution; returns its output.
    pub fn conv2d(&mut self, name: &str, input: ValueId, spec: ConvSpec) -> Result<ValueId, GraphError> {
        let ([h, w, cin], _) = self.codes_input(name, input)?;
        let g = spec.groups;
        if g == 0 || cin % g != 0 || !spec.out_channels.is_multiple_of(g) {
            return Err(invalid(
                name,
                format!("groups {g} must divide Cin {cin} and Cout {}", spec.out_channels),
            ));
        }
        let [ho, wo] = spec
            .window
            .output_hw(h, w)
            .ok_or_else(|| invalid(name, format!("window {:?} does not fit a {h}x{w} input", spec.window)))?;
        let k = spec.window.kernel[0] as usize * spec.window.kernel[1] as usize;
        let count = spec.out_channels * k * (cin / g);
        let weights = pack(name, &spec.weight_codes, spec.weight_bits, count)?;
        let requant = records(name, &spec.requant, spec.out_channels)?;
        check_clamp(name, spec.clamp, spec.out_bits)?;
        let op = OpDesc::Conv2d(Conv2dDesc {
            input: dim(name, input.0)?,
            window: spec.window,
            groups: dim(name, g)?,
            weights: PackedWeights { bits: spec.weight_bits, data: &[] },
            requant: ChannelRequant { records: &[] },
            clamp: spec.clamp,
        });
        let out =
            ValueInfo { shape: [ho, wo, spec.out_channels], elem: ElemType::Codes { bits: spec.out_bits } };
        Ok(self.push(name, op, vec![weights, requant], out))
    }

    /// Adds a fully connected layer over the whole (flattened) input; returns its output.
    pub fn fully_connected(
        &mut self,
        name: &str,
        input: ValueId,
        spec: FcSpec,
    ) -> Result<ValueId, GraphError> {
        let v = self.input_value(name, input)?;
        let n: usize = v.shape.iter().product();
        let weights = pack(name, &spec.weight_codes, spec.weight_bits, spec.outputs * n)?;
        let requant = records(name, &spec.requant, spec.outputs)?;
        let elem = match spec.output {
            FcOutput::Codes(clamp) => {
                check_clamp(name, clamp, spec.out_bits)?;
                ElemType::Codes { bits: spec.out_bits }
            }
            FcOutput::Logits => ElemType::I32,
        };
        let op = OpDesc::FullyConnected(FullyConnectedDesc {
            input: dim(name, input.0)?,
            weights: PackedWeights { bits: spec.weight_bits, data: &[] },
            requant: ChannelRequant { records: &[] },
            output: spec.output,
        });
        Ok(self.push(name, op, vec![weights, requant], ValueInfo { shape: [1, 1, spec.outputs], elem }))
    }

    /// Adds a residual add of two code tensors of one shape; returns its output.
    pub fn add(
        &mut self,
        name: &str,
        inputs: [ValueId; 2],
        input_weights: [i32; 2],
        requant: RequantParams,
        clamp: Clamp,
        out_bits: u8,
    ) -> Result<ValueId, GraphError> {
        let (a, _) = self.codes_input(name, inputs[0])?;
        let (b, _) = self.codes_input(name, inputs[1])?;
        if a != b {
            return Err(invalid(name, format!("shapes {a:?} and {b:?} differ")));
        }
        check_clamp(name, clamp, out_bits)?;
        let op = OpDesc::Add(AddDesc {
            inputs: [dim(name, inputs[0].0)?, dim(name, inputs[1].0)?],
            input_weights,
            requant,
            clamp,
        });
        Ok(self.push(name, op, Vec::new(), ValueInfo { shape: a, elem: ElemType::Codes { bits: out_bits } }))
    }

    fn pool_shape(
        &self,
        name: &str,
        input: ValueId,
        window: &Window,
    ) -> Result<([usize; 3], u8), GraphError> {
        let ([h, w, c], bits) = self.codes_input(name, input)?;
        let [ho, wo] = window
            .output_hw(h, w)
            .ok_or_else(|| invalid(name, format!("window does not fit a {h}x{w} input")))?;
        Ok(([ho, wo, c], bits))
    }

    /// Adds a max pool; returns its output (same bit-width as the input).
    pub fn max_pool(&mut self, name: &str, input: ValueId, window: Window) -> Result<ValueId, GraphError> {
        let (shape, bits) = self.pool_shape(name, input, &window)?;
        let op = OpDesc::MaxPool(MaxPoolDesc { input: dim(name, input.0)?, window });
        Ok(self.push(name, op, Vec::new(), ValueInfo { shape, elem: ElemType::Codes { bits } }))
    }

    /// Adds an average pool; `requant` carries `1 / (kh * kw)`. Returns its output.
    pub fn avg_pool(
        &mut self,
        name: &str,
        input: ValueId,
        window: Window,
        requant: RequantParams,
        clamp: Clamp,
        out_bits: u8,
    ) -> Result<ValueId, GraphError> {
        let (shape, _) = self.pool_shape(name, input, &window)?;
        check_clamp(name, clamp, out_bits)?;
        let op = OpDesc::AvgPool(AvgPoolDesc { input: dim(name, input.0)?, window, requant, clamp });
        Ok(self.push(name, op, Vec::new(), ValueInfo { shape, elem: ElemType::Codes { bits: out_bits } }))
    }

    /// Adds a global sum pool (`H x W x C` codes to `1 x 1 x C` `i32`); returns its output.
    pub fn global_sum_pool(&mut self, name: &str, input: ValueId) -> Result<ValueId, GraphError> {
        let ([_, _, c], _) = self.codes_input(name, input)?;
        let op = OpDesc::GlobalSumPool(GlobalSumPoolDesc { input: dim(name, input.0)? });
        Ok(self.push(name, op, Vec::new(), ValueInfo { shape: [1, 1, c], elem: ElemType::I32 }))
    }
}

fn pack(layer: &str, codes: &[u8], bits: u8, count: usize) -> Result<Vec<u8>, GraphError> {
    if !(1..=8).contains(&bits) {
        return Err(invalid(layer, format!("weight bits {bits} outside 1-8")));
    }
    if codes.len() != count {
        return Err(invalid(layer, format!("{} weight codes given, {count} needed", codes.len())));
    }
    if let Some(&k) = codes.iter().find(|&&k| k as i32 > max_code(bits)) {
        return Err(invalid(layer, format!("weight code {k} exceeds {bits} bits")));
    }
    let mut out = vec![0u8; packed_len(count, bits)];
    pack_codes(codes, bits, &mut out);
    Ok(out)
}

fn records(layer: &str, params: &[RequantParams], channels: usize) -> Result<Vec<u8>, GraphError> {
    if params.len() != channels {
        return Err(invalid(layer, format!("{} requant entries given, {channels} needed", params.len())));
    }
    if let Some(p) = params.iter().find(|p| !p.is_valid()) {
        return Err(invalid(layer, format!("requant shift {} out of range", p.shift)));
    }
    Ok(params.iter().flat_map(|p| p.to_record()).collect())
}

fn check_clamp(layer: &str, clamp: Clamp, bits: u8) -> Result<(), GraphError> {
    if !(1..=8).contains(&bits) || clamp.min > clamp.max || clamp.max as i32 > max_code(bits) {
        return Err(invalid(layer, format!("clamp {clamp:?} does not fit {bits}-bit codes")));
    }
    Ok(())
}
