//! The model as a list of tensor layers, run on batches of images.

use burn_backend::Backend as BurnBackend;

use qfd_runtime::arena::predicted_class;
use qfd_runtime::format::ElemType;
use qfd_runtime::Model;

use crate::backend::OpenDevice;
use crate::layers::Layer;
use crate::tensor::Ints;
use crate::{AccelError, Backend};

/// The ops [`Engine`] runs; a model with any other op is refused by [`Engine::new`].
pub const SUPPORTED_OPS: [&str; 6] =
    ["conv2d", "fully_connected", "add", "max_pool", "avg_pool", "global_sum_pool"];

/// How the engine requantizes; both forms give the codes of `docs/arithmetic.md`, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequantForm {
    /// The formula in 64-bit integers (backends that have them).
    Wide,
    /// Counting each channel's steps with 32-bit comparisons, found at load time by the runtime's own
    /// requantization (backends without 64-bit integers, such as wgpu; any backend may use it).
    Thresholds,
}

impl RequantForm {
    /// The form for `backend`: [`RequantForm::Wide`] where it has 64-bit integers.
    pub fn for_backend(backend: Backend) -> Self {
        if backend.has_i64() {
            RequantForm::Wide
        } else {
            RequantForm::Thresholds
        }
    }
}

/// A loaded model on a burn device. It owns its weights, so the model file may be dropped.
#[derive(Debug)]
pub struct Engine {
    backend: Backend,
    net: AnyNet,
    input_len: usize,
    input_bits: u8,
    classes: usize,
}

/// The layers on the backend's tensor type.
#[derive(Debug)]
enum AnyNet {
    Flex(Net<burn_flex::Flex>),
    #[cfg(feature = "wgpu")]
    Wgpu(Net<burn_wgpu::Wgpu>),
    #[cfg(feature = "cuda")]
    Cuda(Net<burn_cuda::Cuda>),
}

impl Engine {
    /// Prepares `model` (validated by [`Model::load`]) on `backend`'s device. Refuses a model with an op the
    /// engine does not run (the transformer ops), and a backend that is not built or has no device.
    pub fn new(model: &Model<'_>, backend: Backend) -> Result<Engine, AccelError> {
        Self::with_requant(model, backend, RequantForm::for_backend(backend))
    }

    /// [`new`](Self::new) with the requantization in `form` (the tests run both forms on the CPU).
    pub fn with_requant(
        model: &Model<'_>,
        backend: Backend,
        form: RequantForm,
    ) -> Result<Engine, AccelError> {
        let desc = model.desc();
        // Refuse an unsupported op before opening a device.
        if let Some((op, kind)) =
            desc.ops.iter().map(|op| op.kind()).enumerate().find(|(_, kind)| !SUPPORTED_OPS.contains(kind))
        {
            return Err(AccelError::UnsupportedOp { op, kind });
        }
        let net = match backend.open()? {
            OpenDevice::Flex(device) => AnyNet::Flex(Net::new(model, form, device)?),
            #[cfg(feature = "wgpu")]
            OpenDevice::Wgpu(device) => AnyNet::Wgpu(Net::new(model, form, device)?),
            #[cfg(feature = "cuda")]
            OpenDevice::Cuda(device) => AnyNet::Cuda(Net::new(model, form, device)?),
        };
        let input_bits = match desc.values[0].elem {
            ElemType::Codes { bits } => bits,
            ElemType::I32 => 32,
        };
        Ok(Engine { backend, net, input_len: model.input_len(), input_bits, classes: model.num_classes() })
    }

    /// The backend the engine runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Bytes of one image: `H * W * C` input codes, one per byte (raw pixels for a trained model).
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Logits per image.
    pub fn num_classes(&self) -> usize {
        self.classes
    }

    /// The logits of every image in `images` (whole images of [`input_len`](Self::input_len) bytes, run as
    /// one batch), [`num_classes`](Self::num_classes) per image, in order: what [`Model::run`] writes for each.
    pub fn logits(&self, images: &[u8]) -> Result<Vec<i32>, AccelError> {
        let n = self.check_input(images)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let logits = match &self.net {
            AnyNet::Flex(net) => net.logits(images, n),
            #[cfg(feature = "wgpu")]
            AnyNet::Wgpu(net) => net.logits(images, n),
            #[cfg(feature = "cuda")]
            AnyNet::Cuda(net) => net.logits(images, n),
        };
        logits.map_err(|reason| AccelError::Backend { backend: self.backend, reason })
    }

    /// The predicted class of every image (the first largest logit, as [`Model::run`] returns it).
    pub fn predict(&self, images: &[u8]) -> Result<Vec<usize>, AccelError> {
        Ok(self.logits(images)?.chunks_exact(self.classes).map(predicted_class).collect())
    }

    /// The number of images, after checking that `images` holds whole images of valid codes.
    fn check_input(&self, images: &[u8]) -> Result<usize, AccelError> {
        if !images.len().is_multiple_of(self.input_len) {
            return Err(AccelError::InputLength { image_len: self.input_len, found: images.len() });
        }
        if self.input_bits < 8 {
            if let Some(at) = images.iter().position(|&c| c >> self.input_bits != 0) {
                return Err(AccelError::InputCodeOutOfRange {
                    image: at / self.input_len,
                    index: at % self.input_len,
                    code: images[at],
                    bits: self.input_bits,
                });
            }
        }
        Ok(images.len() / self.input_len)
    }
}

/// The layers of a model on backend `B`.
#[derive(Debug)]
struct Net<B: BurnBackend> {
    device: B::Device,
    layers: Vec<Layer<B>>,
    /// For each value, the last layer that reads it: its tensor is dropped after that layer.
    last_use: Vec<usize>,
    input_len: usize,
}

impl<B: BurnBackend> Net<B> {
    fn new(model: &Model<'_>, form: RequantForm, device: B::Device) -> Result<Self, AccelError> {
        let desc = model.desc();
        let wide = form == RequantForm::Wide;
        let layers =
            (0..desc.ops.len()).map(|i| Layer::new(desc, i, wide, &device)).collect::<Result<Vec<_>, _>>()?;
        let mut last_use = vec![0; desc.values.len()];
        for (i, layer) in layers.iter().enumerate() {
            for v in layer.inputs() {
                last_use[v as usize] = i;
            }
        }
        Ok(Net { device, layers, last_use, input_len: model.input_len() })
    }

    fn logits(&self, images: &[u8], n: usize) -> Result<Vec<i32>, String> {
        let input =
            Ints::new(images.iter().map(|&b| i32::from(b)).collect(), &[n, self.input_len], &self.device);
        let mut values: Vec<Option<Ints<B>>> = vec![None; self.layers.len() + 1];
        values[0] = Some(input);
        for (i, layer) in self.layers.iter().enumerate() {
            // A validated model reads only values produced before, and never one after its last use.
            let out = layer.run(|v| values[v as usize].clone().expect("the value is alive"));
            for v in layer.inputs() {
                if self.last_use[v as usize] == i {
                    values[v as usize] = None;
                }
            }
            values[i + 1] = Some(out);
        }
        values.pop().flatten().expect("a validated model has at least one op").into_i32()
    }
}
