//! Which burn backend runs the model, and opening its device.

use std::fmt;
use std::str::FromStr;

use burn_backend::Backend as BurnBackend;

use crate::tensor::Ints;
use crate::AccelError;

/// A burn backend. [`Backend::Flex`] is always built; the GPU backends are behind cargo features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (SIMD kernels on every core). burn 0.22 replaced its `ndarray`
    /// backend by this one, so `ndarray` parses as `Flex`.
    Flex,
    /// GPUs through wgpu (Vulkan, Metal, DX12); cargo feature `wgpu`.
    Wgpu,
    /// NVIDIA GPUs through CUDA; cargo feature `cuda`.
    Cuda,
}

impl Backend {
    /// Every backend, built or not.
    pub const ALL: [Backend; 3] = [Backend::Flex, Backend::Wgpu, Backend::Cuda];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// The cargo feature that builds the backend (`None`: always built).
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Backend::Flex => None,
            Backend::Wgpu => Some("wgpu"),
            Backend::Cuda => Some("cuda"),
        }
    }

    /// Whether this build has the backend.
    pub fn is_built(self) -> bool {
        match self {
            Backend::Flex => true,
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Images per batch that suit the backend: small on the CPU, where a batch's tensors should stay in
    /// the caches (on 2 cores, ResNet-8 ran 923 images/s in batches of 32 and 490 in batches of 256), large
    /// on a GPU, which needs thousands of threads' work per kernel.
    pub fn default_batch(self) -> usize {
        match self {
            Backend::Flex => 32,
            Backend::Wgpu | Backend::Cuda => 1024,
        }
    }

    /// Whether the backend has 64-bit integers. Without them the requantization splits each 64-bit value
    /// into 32-bit halves (`crate::requant`); WGSL, wgpu's shading language, has none.
    pub fn has_i64(self) -> bool {
        !matches!(self, Backend::Wgpu)
    }

    /// Opens the backend's device; a GPU backend is checked with a small integer computation.
    pub(crate) fn open(self) -> Result<OpenDevice, AccelError> {
        match self {
            Backend::Flex => Ok(OpenDevice::Flex(burn_flex::FlexDevice)),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => self.probe::<burn_wgpu::Wgpu>(Default::default()).map(OpenDevice::Wgpu),
            #[cfg(feature = "cuda")]
            Backend::Cuda => {
                self.probe::<burn_cuda::Cuda>(burn_cuda::CudaDevice::new(0).into()).map(OpenDevice::Cuda)
            }
            #[allow(unreachable_patterns)] // Every backend may be built.
            other => {
                Err(AccelError::NotBuilt { backend: other, feature: other.feature().unwrap_or_default() })
            }
        }
    }

    /// `device` if it squares two integers right. GPU backends panic when they find no adapter or driver;
    /// that becomes an error naming the backend.
    #[allow(dead_code)] // Used by the GPU backends only.
    fn probe<B: BurnBackend>(self, device: B::Device) -> Result<B::Device, AccelError> {
        let probe = device.clone();
        let previous_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let t = Ints::<B>::new(vec![2, 3], &[2], &probe);
            t.clone().mul(&t).into_i32()
        }));
        std::panic::set_hook(previous_hook);
        let unavailable = |reason: String| AccelError::DeviceUnavailable { backend: self, reason };
        match outcome {
            Ok(Ok(v)) if v == [4, 9] => Ok(device),
            Ok(Ok(v)) => Err(unavailable(format!("2 * 2 and 3 * 3 gave {v:?}"))),
            Ok(Err(reason)) => Err(unavailable(reason)),
            Err(panic) => Err(unavailable(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "it panicked".into()),
            )),
        }
    }
}

/// An opened device of one of the built backends.
pub(crate) enum OpenDevice {
    Flex(burn_flex::FlexDevice),
    #[cfg(feature = "wgpu")]
    Wgpu(<burn_wgpu::Wgpu as burn_backend::BackendTypes>::Device),
    #[cfg(feature = "cuda")]
    Cuda(<burn_cuda::Cuda as burn_backend::BackendTypes>::Device),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ndarray" => Ok(Backend::Flex),
            _ => Backend::ALL.into_iter().find(|b| b.name() == s).ok_or_else(|| {
                format!("unknown backend '{s}' (expected flex, wgpu or cuda; ndarray is a name for flex)")
            }),
        }
    }
}
