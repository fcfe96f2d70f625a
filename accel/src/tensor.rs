//! The integer tensor operations the engine uses, on any burn backend.
//!
//! A thin typed layer over burn's backend ops (`burn_backend::ops::IntTensorOps`), so the layers read like
//! tensor code and one engine serves every backend. (burn's own `Tensor` type would pull in every backend
//! burn has as an optional dependency, among them a libtorch binding whose native library clashes with the
//! one `qfd-host` trains with.)

use burn_backend::tensor::IntTensor;
use burn_backend::{
    get_device_settings, try_read_sync, Backend, IntDType, Scalar, Shape, TensorData, TensorMetadata,
};

/// An integer tensor of backend `B`.
#[derive(Debug)]
pub(crate) struct Ints<B: Backend>(IntTensor<B>);

impl<B: Backend> Clone for Ints<B> {
    fn clone(&self) -> Self {
        Ints(self.0.clone())
    }
}

impl<B: Backend> Ints<B> {
    /// An `i32` tensor of `values` in `shape`.
    pub fn new(values: Vec<i32>, shape: &[usize], device: &B::Device) -> Self {
        Ints(B::int_from_data(TensorData::new(values, shape.to_vec()), device))
    }

    /// An `i64` tensor of `values` in `shape`.
    pub fn new_i64(values: Vec<i64>, shape: &[usize], device: &B::Device) -> Self {
        Ints(B::int_from_data(TensorData::new(values, shape.to_vec()), device))
    }

    /// `i32` zeros.
    pub fn zeros(shape: &[usize], device: &B::Device) -> Self {
        Ints(B::int_zeros(Shape::from(shape.to_vec()), device, IntDType::I32))
    }

    /// The device the tensor lives on.
    pub fn device(&self) -> B::Device {
        self.0.device()
    }

    /// The extent of each dimension.
    pub fn dims(&self) -> Vec<usize> {
        self.0.shape().to_vec()
    }

    pub fn reshape(self, shape: &[usize]) -> Self {
        Ints(B::int_reshape(self.0, Shape::from(shape.to_vec())))
    }

    pub fn permute(self, axes: &[usize]) -> Self {
        Ints(B::int_permute(self.0, axes))
    }

    /// Broadcasts dimensions of extent 1 to `shape`.
    pub fn expand(self, shape: &[usize]) -> Self {
        Ints(B::int_expand(self.0, Shape::from(shape.to_vec())))
    }

    /// The elements at `index` (1-D) along `dim`.
    pub fn select(self, dim: usize, index: &Self) -> Self {
        Ints(B::int_select(self.0, dim, index.0.clone()))
    }

    /// `self` and `other` joined along `dim`.
    pub fn cat(self, other: Self, dim: usize) -> Self {
        Ints(B::int_cat(vec![self.0, other.0], dim))
    }

    pub fn matmul(self, rhs: &Self) -> Self {
        Ints(B::int_matmul(self.0, rhs.0.clone()))
    }

    /// Element-wise product, broadcasting dimensions of extent 1.
    pub fn mul(self, rhs: &Self) -> Self {
        Ints(B::int_mul(self.0, rhs.0.clone()))
    }

    /// Element-wise sum, broadcasting dimensions of extent 1.
    pub fn add(self, rhs: &Self) -> Self {
        Ints(B::int_add(self.0, rhs.0.clone()))
    }

    pub fn mul_scalar(self, k: i64) -> Self {
        Ints(B::int_mul_scalar(self.0, Scalar::Int(k)))
    }

    pub fn add_scalar(self, k: i64) -> Self {
        Ints(B::int_add_scalar(self.0, Scalar::Int(k)))
    }

    /// Sum over `dim`, kept with extent 1.
    pub fn sum_dim(self, dim: usize) -> Self {
        Ints(B::int_sum_dim(self.0, dim))
    }

    /// Maximum over `dim`, kept with extent 1.
    pub fn max_dim(self, dim: usize) -> Self {
        Ints(B::int_max_dim(self.0, dim))
    }

    pub fn clamp(self, min: i64, max: i64) -> Self {
        Ints(B::int_clamp(self.0, Scalar::Int(min), Scalar::Int(max)))
    }

    pub fn cast(self, dtype: IntDType) -> Self {
        Ints(B::int_cast(self.0, dtype))
    }

    /// Arithmetic shift right by the same-shaped `rhs`, element by element.
    pub fn shift_right(self, rhs: &Self) -> Self {
        Ints(B::bitwise_right_shift(self.0, rhs.0.clone()))
    }

    /// Arithmetic shift right by `k`.
    pub fn shift_right_scalar(self, k: i64) -> Self {
        Ints(B::bitwise_right_shift_scalar(self.0, Scalar::Int(k)))
    }

    pub fn and_scalar(self, k: i64) -> Self {
        Ints(B::bitwise_and_scalar(self.0, Scalar::Int(k)))
    }

    /// `1` where `self > rhs`, `0` elsewhere, as `i32`.
    pub fn greater(self, rhs: &Self) -> Self {
        let bool_dtype = get_device_settings::<B>(&self.device()).bool_dtype;
        Ints(B::bool_into_int(B::int_greater(self.0, rhs.0.clone(), bool_dtype), IntDType::I32))
    }

    /// The elements as `i32`, in row-major order.
    pub fn into_i32(self) -> Result<Vec<i32>, String> {
        let data = try_read_sync(B::int_into_data(B::int_cast(self.0, IntDType::I32)))
            .ok_or_else(|| "the backend cannot be read synchronously".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        data.try_into_vec::<i32>().map_err(|e| format!("{e:?}"))
    }
}
