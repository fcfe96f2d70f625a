//! The sliding window of convs and pools as a gather: which input element each tap of each window reads.
//!
//! Values are `[N, H * W * C]` tensors (one image per row, channel fastest, as the runtime lays them out).
//! A window op first appends one zero column, then selects, for every output pixel `p`, tap `(ky, kx)`
//! and channel `c`, the input element it reads, or the zero column where the tap falls in the padding.
//! The result, `[N, P * taps * C]`, reshapes to one `taps x C` patch per output pixel.

use burn_backend::Backend;

use qfd_runtime::format::Window;

use crate::tensor::Ints;

/// Where each window tap reads, for one input shape.
#[derive(Debug)]
pub(crate) struct Gather<B: Backend> {
    /// Output pixels `Ho * Wo`.
    pub pixels: usize,
    /// Taps per window `kh * kw`.
    pub taps: usize,
    /// Input channels `C`.
    pub channels: usize,
    /// `[P * taps * C]` indices into the input row with the zero column appended; `None` when every
    /// window is one element and the gather is the identity (a 1x1 window, stride 1, no padding).
    index: Option<Ints<B>>,
    device: B::Device,
}

impl<B: Backend> Gather<B> {
    /// The gather of `window` over an `[H, W, C]` input giving `[Ho, Wo]` outputs.
    pub fn new(window: &Window, input: [usize; 3], output: [usize; 2], device: &B::Device) -> Self {
        let [h, w, c] = input;
        let [kh, kw] = window.kernel.map(usize::from);
        let [sh, sw] = window.stride.map(usize::from);
        let (top, left) = (window.padding.top as isize, window.padding.left as isize);
        let input_len = h * w * c;
        let pixels = output[0] * output[1];
        let identity = kh == 1 && kw == 1 && sh == 1 && sw == 1 && top == 0 && left == 0 && pixels == h * w;
        let index = (!identity).then(|| {
            let mut index = Vec::with_capacity(pixels * kh * kw * c);
            for oy in 0..output[0] {
                for ox in 0..output[1] {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * sh + ky) as isize - top;
                            let ix = (ox * sw + kx) as isize - left;
                            let inside = (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix);
                            let first = if inside { (iy as usize * w + ix as usize) * c } else { input_len };
                            index.extend((0..c).map(|ch| if inside { first + ch } else { input_len } as i32));
                        }
                    }
                }
            }
            let len = index.len();
            Ints::new(index, &[len], device)
        });
        Gather { pixels, taps: kh * kw, channels: c, index, device: device.clone() }
    }

    /// `[N, H * W * C]` input rows to `[N * P, taps, C]` patches.
    pub fn patches(&self, x: Ints<B>) -> Ints<B> {
        let n = x.dims()[0];
        let shape = [n * self.pixels, self.taps, self.channels];
        match &self.index {
            None => x.reshape(&shape),
            Some(index) => {
                let zero = Ints::zeros(&[n, 1], &self.device);
                x.cat(zero, 1).select(1, index).reshape(&shape)
            }
        }
    }
}
