//! The model, one way or the other: generated code ([`generated_model!`](crate::generated_model)) or the
//! interpreter on a `.qfdm` file ([`Interpreter`]). The protocols see only the [`Model`] trait.

use qfd_link::Engine;
use qfd_runtime::LayerOutput;

/// What the protocols need to know about the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    /// Bytes of one input (its codes).
    pub input_len: usize,
    /// Bits of each input code.
    pub input_bits: u32,
    /// Logits per result.
    pub num_classes: usize,
    /// Layers (the length of per-layer breakdowns).
    pub num_layers: usize,
    /// Bytes of the activation arena.
    pub arena_bytes: usize,
    /// The payload CRC-32 of the `.qfdm` file, which the host checks to refuse a stale firmware.
    pub model_crc: u32,
    /// How the model runs.
    pub engine: Engine,
}

/// A model the device can run.
pub trait Model {
    /// Its sizes and identity.
    fn info(&self) -> ModelInfo;

    /// Runs one inference: `input` is `input_len` codes, `logits` has `num_classes` entries, and
    /// `on_layer(index, output)` is called after every layer. Returns the class, or `None` when the
    /// model refuses the input (the protocols check lengths and codes first, so this is a bug).
    fn infer(
        &mut self,
        input: &[u8],
        logits: &mut [i32],
        on_layer: &mut dyn FnMut(usize, LayerOutput<'_>),
    ) -> Option<usize>;
}

/// A model compiled by `qfd-codegen`, from the module that includes its `model.rs`:
/// `let mut model = qfd_device::generated_model!(model);`
#[macro_export]
macro_rules! generated_model {
    ($module:ident) => {{
        struct Generated;
        impl $crate::Model for Generated {
            fn info(&self) -> $crate::ModelInfo {
                $crate::ModelInfo {
                    input_len: $module::INPUT_LEN,
                    input_bits: $module::INPUT_BITS as u32,
                    num_classes: $module::NUM_CLASSES,
                    num_layers: $module::NUM_LAYERS,
                    arena_bytes: $module::ARENA_SIZE,
                    model_crc: $module::MODEL_CRC,
                    engine: $crate::Engine::Generated,
                }
            }
            fn infer(
                &mut self,
                input: &[u8],
                logits: &mut [i32],
                on_layer: &mut dyn FnMut(usize, $crate::LayerOutput<'_>),
            ) -> Option<usize> {
                let input = <&[u8; $module::INPUT_LEN]>::try_from(input).ok()?;
                let logits = <&mut [i32; $module::NUM_CLASSES]>::try_from(logits).ok()?;
                Some($module::infer_traced(input, logits, on_layer))
            }
        }
        Generated
    }};
}

/// A `.qfdm` file run by the `qfd-runtime` interpreter, in an arena the firmware provides.
pub struct Interpreter<'a> {
    model: &'a qfd_runtime::Model<'a>,
    arena: &'a mut [u8],
    model_crc: u32,
}

impl<'a> Interpreter<'a> {
    /// The loaded (checked) `model`, its `arena` (at least `model.arena_size()` bytes) and the file's
    /// payload CRC. `None` if the arena is too small.
    pub fn new(model: &'a qfd_runtime::Model<'a>, arena: &'a mut [u8], model_crc: u32) -> Option<Self> {
        (arena.len() >= model.arena_size()).then_some(Interpreter { model, arena, model_crc })
    }
}

impl Model for Interpreter<'_> {
    fn info(&self) -> ModelInfo {
        let input_bits = match self.model.desc().values[0].elem {
            qfd_runtime::format::ElemType::Codes { bits } => u32::from(bits),
            qfd_runtime::format::ElemType::I32 => 32,
        };
        ModelInfo {
            input_len: self.model.input_len(),
            input_bits,
            num_classes: self.model.num_classes(),
            num_layers: self.model.desc().ops.len(),
            arena_bytes: self.arena.len(),
            model_crc: self.model_crc,
            engine: Engine::Interpreter,
        }
    }

    fn infer(
        &mut self,
        input: &[u8],
        logits: &mut [i32],
        on_layer: &mut dyn FnMut(usize, LayerOutput<'_>),
    ) -> Option<usize> {
        self.model.run_traced(input, self.arena, logits, |i, _, out| on_layer(i, out)).ok()
    }
}
