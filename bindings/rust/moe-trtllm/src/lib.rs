//! Safe Rust API of moe-trtllm, a fused Mixture-of-Experts inference library with a C ABI.
//!
//! Host tensors are borrowed slices: inputs are [`Tensor`]s over shared slices
//! ([`Tensor::bf16`], [`Tensor::f32`], ...), outputs are [`TensorMut`]s over mutable slices
//! ([`TensorMut::bf16`], ...), so read-only memory can never be written through. Device
//! tensors, device workspaces and CUDA streams go through `unsafe` entry points that take raw
//! pointers ([`Tensor::from_raw`], [`Runner::prepare_routing_raw`], ...). Every failure is an
//! [`Error`] carrying the library's [`Status`] and message. The enums ([`Status`],
//! [`Backend`], [`RoutingMethod`], [`Activation`], [`Layout`], [`Weights`], [`PlanTable`])
//! take their values from the `MOE_*` constants of `moe-trtllm-sys` (bindgen output of the C
//! header). [`Runner::run_grouped`] runs the local experts on tokens a dispatcher already
//! grouped ([`GroupedArgs`], docs/ep.md).
//!
//! A [`Runner`] is `Send + Sync`: threads may share `&Runner`, each call with its own
//! workspace and outputs (the borrow checker and `TensorMut: !Sync` keep those unshared).
//!
//! ```no_run
//! use moe_trtllm::*;
//! # fn main() -> Result<()> {
//! let r = Runner::new(&Options { backend: Backend::Cpu, ..Options::default() })?;
//! let p = Problem::new(8, 4, 2, 64, 32);
//! # let (w1c, w2c, x, logits) = (vec![0u16; 8*64*64], vec![0u16; 8*64*32], vec![0u16; 4*64], vec![0f32; 4*8]);
//! let w1 = r.prepare_weights_host(&p, Weights::Gemm1, &Tensor::bf16(&w1c, &[8, 64, 64])?)?;
//! let w2 = r.prepare_weights_host(&p, Weights::Gemm2, &Tensor::bf16(&w2c, &[8, 64, 32])?)?;
//! let out: Vec<u16> = r.forward_host(&p,
//!     &RoutingArgs::new().logits(&Tensor::f32(&logits, &[4, 8])?),
//!     &Tensor::bf16(&x, &[4, 64])?, &w1, &w2)?;
//! # Ok(()) }
//! ```
//!
//! An output must be a [`TensorMut`]; a tensor over a shared slice is rejected at compile time:
//!
//! ```compile_fail,E0308
//! use moe_trtllm::*;
//! let y = vec![0u16; 4 * 64];
//! let out = Tensor::bf16(&y, &[4, 64]).unwrap(); // read-only
//! let args = RunArgs { output: Some(&out), ..RunArgs::default() };
//! ```
//!
//! ```compile_fail,E0308
//! use moe_trtllm::*;
//! static PREPARED: [u8; 16] = [0; 16];
//! fn prep(r: &Runner, p: &Problem, w: &Tensor) -> Result<()> {
//!     let dst = Tensor::u8(&PREPARED, &[16])?; // read-only static
//!     r.prepare_weights(p, Weights::Gemm1, w, &dst)
//! }
//! ```
//!
//! The same with a mutable slice compiles:
//!
//! ```no_run
//! use moe_trtllm::*;
//! let mut y = vec![0u16; 4 * 64];
//! let out = TensorMut::bf16(&mut y, &[4, 64]).unwrap();
//! let args = RunArgs { output: Some(&out), ..RunArgs::default() };
//! ```
//!
//! An output cannot be shared with another thread (two calls would write it at once):
//!
//! ```compile_fail,E0277
//! use moe_trtllm::*;
//! let mut y = vec![0u16; 4 * 64];
//! let out = TensorMut::bf16(&mut y, &[4, 64]).unwrap();
//! std::thread::scope(|s| {
//!     s.spawn(|| RunArgs { output: Some(&out), ..RunArgs::default() }.do_finalize);
//! });
//! ```
#![deny(missing_docs)]

use std::ffi::CStr;
use std::fmt;
use std::marker::PhantomData;
use std::os::raw::c_void;
use std::ptr::{self, NonNull};

pub use moe_trtllm_sys as sys;

/// A CUDA stream (`cudaStream_t`); null is the legacy default stream (and required on the CPU).
pub type Stream = sys::moe_cuda_stream_t;

/// Defines a `#[repr(i32)]` enum whose discriminants are `moe-trtllm-sys` constants (so the
/// values come from the C header, never retyped), with `ALL`, `raw`, `from_raw` and `c_name`.
macro_rules! c_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $sys:ident,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum $name {
            $($(#[$vm])* $var = sys::$sys,)*
        }
        impl $name {
            /// Every value, in header order.
            pub const ALL: &'static [$name] = &[$($name::$var,)*];
            /// The C value.
            pub fn raw(self) -> i32 {
                self as i32
            }
            /// The value with this C value, if any.
            pub fn from_raw(v: i32) -> Option<$name> {
                match v {
                    $(x if x == sys::$sys => Some($name::$var),)*
                    _ => None,
                }
            }
            /// The C macro name, e.g. `"MOE_STATUS_INVALID_ARGUMENT"`.
            pub fn c_name(self) -> &'static str {
                match self {
                    $($name::$var => stringify!($sys),)*
                }
            }
        }
    };
}

c_enum! {
    /// Status of a call (`moe_status_t`). Its name is the macro's without `MOE_STATUS_`.
    Status {
        /// The call did what it says.
        Success = MOE_STATUS_SUCCESS,
        /// An argument is NULL, out of range or mismatched.
        InvalidArgument = MOE_STATUS_INVALID_ARGUMENT,
        /// Valid but beyond this build's limits.
        NotSupported = MOE_STATUS_NOT_SUPPORTED,
        /// Host allocation failed.
        OutOfMemory = MOE_STATUS_OUT_OF_MEMORY,
        /// A CUDA call failed.
        CudaError = MOE_STATUS_CUDA_ERROR,
        /// No CUDA device or driver.
        NoDevice = MOE_STATUS_NO_DEVICE,
        /// The workspace is smaller than required.
        InsufficientWorkspace = MOE_STATUS_INSUFFICIENT_WORKSPACE,
        /// Unknown struct version.
        VersionMismatch = MOE_STATUS_VERSION_MISMATCH,
        /// Config unknown, invalid for the problem, or not the plan's.
        InvalidConfig = MOE_STATUS_INVALID_CONFIG,
        /// A bug in the library.
        Internal = MOE_STATUS_INTERNAL,
    }
}

c_enum! {
    /// Backend of a runner.
    Backend {
        /// CUDA when a device is usable, else CPU.
        Auto = MOE_BACKEND_AUTO,
        /// The CPU reference backend.
        Cpu = MOE_BACKEND_CPU,
        /// The CUDA backend.
        Cuda = MOE_BACKEND_CUDA,
    }
}

c_enum! {
    /// Routing method.
    RoutingMethod {
        /// Softmax over E, top-K, no renormalisation.
        Default = MOE_ROUTING_DEFAULT,
        /// Top-K of logits, softmax over the K.
        Renormalize = MOE_ROUTING_RENORMALIZE,
        /// DeepSeek-V3 grouped routing.
        DeepSeekV3 = MOE_ROUTING_DEEPSEEK_V3,
        /// Llama-4: top-1, sigmoid.
        Llama4 = MOE_ROUTING_LLAMA4,
        /// Softmax over E, top-K, renormalise.
        RenormalizeNaive = MOE_ROUTING_RENORMALIZE_NAIVE,
        /// Top-K with raw logits as weights.
        TopK = MOE_ROUTING_TOPK,
    }
}

c_enum! {
    /// Expert FFN activation (fixes the prepared-weight layout).
    Activation {
        /// Gated: up * silu(gate).
        SwiGlu = MOE_ACTIVATION_SWIGLU,
        /// Gated: up * gelu(gate).
        GeGlu = MOE_ACTIVATION_GEGLU,
        /// relu(x)^2.
        Relu2 = MOE_ACTIVATION_RELU2,
        /// x.
        Identity = MOE_ACTIVATION_IDENTITY,
    }
}

c_enum! {
    /// Activation / weight dtype of a runner.
    RunnerDtype {
        /// bfloat16.
        Bf16 = MOE_DTYPE_BF16,
        /// float8 e4m3fn (needs a [`Scaling`] mode; docs/formats.md "FP8").
        Fp8E4m3 = MOE_DTYPE_FP8_E4M3,
        /// MXFP4 weights (weight dtype only, with [`Scaling::Mx`]; docs/formats.md "MXFP4").
        Mxfp4 = MOE_DTYPE_MXFP4,
    }
}

c_enum! {
    /// Scaling mode of an FP8 or MXFP4 runner (docs/formats.md "FP8", "MXFP4").
    Scaling {
        /// BF16: no scales.
        None = MOE_SCALING_NONE,
        /// One fp32 scale per expert for W1 and for W2; static activation scales per call
        /// ([`RunArgs::gemm1_input_scale`], [`RunArgs::gemm2_input_scale`]).
        PerTensor = MOE_SCALING_PER_TENSOR,
        /// fp32 scales per 128x128 weight block; activations per token per 128 columns.
        Block = MOE_SCALING_BLOCK,
        /// MXFP4 weights: ue8m0 scales per 32 weights along K, given with the weights;
        /// W4A8 takes the static activation scales of `PerTensor`.
        Mx = MOE_SCALING_MX,
    }
}

c_enum! {
    /// Token layout of the grouped run (C `moe_runner_run_grouped`; docs/ep.md).
    Layout {
        /// hidden [N, H], rows grouped by local expert in order.
        Contiguous = MOE_LAYOUT_CONTIGUOUS,
        /// hidden [E_l, capacity, H], count[e] valid rows per expert.
        Masked = MOE_LAYOUT_MASKED,
    }
}

c_enum! {
    /// Which weights to prepare.
    Weights {
        /// Canonical W1 [E_l, f*I, H].
        Gemm1 = MOE_WEIGHTS_GEMM1,
        /// Canonical W2 [E_l, H, I].
        Gemm2 = MOE_WEIGHTS_GEMM2,
        /// MXFP4, gated: W1 [E_l, 2I, H] with gpt-oss's interleaved rows (2f gate, 2f+1 up).
        Gemm1GateUpInterleaved = MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED,
    }
}

c_enum! {
    /// A table of a routing plan (`Plan::read_i32`).
    PlanTable {
        /// `[T*K]` expert ids.
        TopkIds = MOE_PLAN_TOPK_IDS,
        /// `[T*K]` bf16 weights (`Plan::read_weights`).
        ExpertWeights = MOE_PLAN_EXPERT_WEIGHTS,
        /// `[T*K]` permuted row of each slot.
        ExpandedToPermuted = MOE_PLAN_EXPANDED_TO_PERMUTED,
        /// `[P]` token of each permuted row.
        PermutedToToken = MOE_PLAN_PERMUTED_TO_TOKEN,
        /// `[P]` slot of each permuted row.
        PermutedToExpanded = MOE_PLAN_PERMUTED_TO_EXPANDED,
        /// `[N]` local expert of each CTA.
        CtaToBatch = MOE_PLAN_CTA_TO_BATCH,
        /// `[N]` row limit of each CTA.
        CtaToMnLimit = MOE_PLAN_CTA_TO_MN_LIMIT,
        /// `[1]` number of CTAs.
        NumCtas = MOE_PLAN_NUM_CTAS,
        /// `[1]` permuted size.
        PermutedSize = MOE_PLAN_PERMUTED_SIZE,
        /// `[E]` slots per expert.
        ExpertCounts = MOE_PLAN_EXPERT_COUNTS,
    }
}

impl Status {
    /// The status name, e.g. `"INVALID_ARGUMENT"` (the C macro name without `MOE_STATUS_`:
    /// this binding's one status-name table is the header's).
    pub fn name(self) -> &'static str {
        &self.c_name()["MOE_STATUS_".len()..]
    }
    /// The library's static text (`moe_status_string`).
    pub fn text(self) -> String {
        status_string(self.raw())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed call: the library's status and message (the `moe_get_last_error()` of the failing
/// call, read on the same thread).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: i32,
    message: String,
}

impl Error {
    /// The status; `None` for a code this binding does not know (see [`Error::code`]).
    pub fn status(&self) -> Option<Status> {
        Status::from_raw(self.code)
    }
    /// The raw status code.
    pub fn code(&self) -> i32 {
        self.code
    }
    /// The library's message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The status name, e.g. `"INVALID_ARGUMENT"` (`"UNKNOWN"` for an unknown code).
    pub fn status_name(&self) -> &'static str {
        status_name(self.code)
    }
    /// An error of this binding (not of a library call), e.g. for a slice that does not match
    /// its shape.
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            code: status.raw(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{} ({})]",
            self.message,
            self.status_name(),
            self.code
        )
    }
}

impl std::error::Error for Error {}

/// Result of every fallible call.
pub type Result<T> = std::result::Result<T, Error>;

/// Name of a status code (`"INVALID_ARGUMENT"`), `"UNKNOWN"` for others.
pub fn status_name(status: i32) -> &'static str {
    Status::from_raw(status).map_or("UNKNOWN", Status::name)
}

/// Static text of a status code (`moe_status_string`).
pub fn status_string(status: i32) -> String {
    unsafe { CStr::from_ptr(sys::moe_status_string(status)) }
        .to_string_lossy()
        .into_owned()
}

/// Turns a status into a Result, reading the thread-local message on this same thread.
fn check(status: sys::moe_status_t) -> Result<()> {
    if status == sys::MOE_STATUS_SUCCESS {
        return Ok(());
    }
    let msg = unsafe { CStr::from_ptr(sys::moe_get_last_error()) }
        .to_string_lossy()
        .into_owned();
    Err(Error {
        code: status,
        message: if msg.is_empty() {
            status_string(status)
        } else {
            msg
        },
    })
}

/// Library version (major, minor, patch).
pub fn version() -> (i32, i32, i32) {
    let (mut a, mut b, mut c) = (0, 0, 0);
    unsafe { sys::moe_get_version(&mut a, &mut b, &mut c) };
    (a, b, c)
}

/// Number of usable CUDA devices (0 without a GPU or in a CPU-only build).
pub fn cuda_device_count() -> Result<i32> {
    let mut n = 0;
    check(unsafe { sys::moe_cuda_device_count(&mut n) })?;
    Ok(n)
}

/// Runner options (`moe_runner_options`).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Backend.
    pub backend: Backend,
    /// CUDA device ordinal.
    pub device_id: i32,
    /// 0 = ask the device; e.g. 90 for CUDA config queries without a GPU.
    pub sm_version: i32,
    /// Activation (fixes the prepared-weight layout).
    pub activation: Activation,
    /// CPU worker threads (0 = one per core).
    pub num_threads: i32,
    /// Activation dtype, and the weight dtype too unless `weight_dtype` is set (the single-dtype
    /// convenience).
    pub dtype: RunnerDtype,
    /// Weight dtype when it differs from `dtype` (e.g. [`RunnerDtype::Mxfp4`] with `dtype`
    /// `Bf16` for W4A16 or `Fp8E4m3` for W4A8); `None` = `dtype`.
    pub weight_dtype: Option<RunnerDtype>,
    /// Scaling mode: [`Scaling::None`] for BF16, `PerTensor` or `Block` for FP8, `Mx` for
    /// MXFP4.
    pub scaling: Scaling,
}

impl Options {
    /// The activation dtype (`dtype`).
    pub fn activation_dtype(&self) -> RunnerDtype {
        self.dtype
    }

    /// The weight dtype (`weight_dtype`, else `dtype`).
    pub fn weight_dtype(&self) -> RunnerDtype {
        self.weight_dtype.unwrap_or(self.dtype)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Auto,
            device_id: 0,
            sm_version: 0,
            activation: Activation::SwiGlu,
            num_threads: 0,
            dtype: RunnerDtype::Bf16,
            weight_dtype: None,
            scaling: Scaling::None,
        }
    }
}

/// Shape of one MoE layer call (`moe_problem`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    /// E.
    pub num_experts: i32,
    /// T (for workspace sizing: T_max).
    pub num_tokens: i64,
    /// K.
    pub top_k: i32,
    /// H.
    pub hidden_size: i64,
    /// I.
    pub intermediate_size: i64,
    /// First local expert.
    pub local_expert_offset: i32,
    /// E_l (0 = E).
    pub local_num_experts: i32,
}

impl Problem {
    /// A problem without expert parallelism.
    pub fn new(num_experts: i32, num_tokens: i64, top_k: i32, hidden: i64, inter: i64) -> Self {
        Problem {
            num_experts,
            num_tokens,
            top_k,
            hidden_size: hidden,
            intermediate_size: inter,
            local_expert_offset: 0,
            local_num_experts: 0,
        }
    }

    fn raw(&self) -> sys::moe_problem {
        let mut p: sys::moe_problem = unsafe { std::mem::zeroed() };
        unsafe { sys::moe_problem_init(&mut p, sys::MOE_PROBLEM_VERSION as u32) };
        p.num_experts = self.num_experts;
        p.num_tokens = self.num_tokens;
        p.top_k = self.top_k;
        p.local_expert_offset = self.local_expert_offset;
        p.local_num_experts = self.local_num_experts;
        p.hidden_size = self.hidden_size;
        p.intermediate_size = self.intermediate_size;
        p
    }
}

/// Description of a kernel config (`moe_config_info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigInfo {
    /// Config index.
    pub index: i32,
    /// Cluster tile in tokens.
    pub tile: i32,
    /// Tokens per CTA.
    pub cta_tile: i32,
    /// Cluster size C.
    pub cluster_size: i32,
    /// GEMM1 weight rows per CTA tile.
    pub gemm1_block_m: i32,
    /// GEMM2 weight rows per CTA tile.
    pub gemm2_block_m: i32,
    /// K elements per stage.
    pub block_k: i32,
    /// Pipeline stages.
    pub stages: i32,
    /// Architecture of the catalogue.
    pub sm_version: i32,
    /// Name, e.g. "sm90_bf16_t64_c2_m128_s6".
    pub name: String,
}

/// Element types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// bfloat16 (bit patterns in u16).
    BF16,
    /// float32.
    F32,
    /// int32.
    I32,
    /// uint8 (prepared weights, workspaces).
    U8,
    /// float8 e4m3fn codes in u8 (FP8 hidden states and canonical weights).
    FP8E4M3,
    /// float8 e8m0fnu codes in u8 (MXFP4 ue8m0 scales, 2^(s-127)).
    E8M0,
    /// float4 e2m1fn x 2 lanes: one u8 element holds two MXFP4 values (low nibble = even
    /// column), so W [E_l, R, C] is a tensor of shape [E_l, R, C/2].
    FP4E2M1X2,
}

impl DType {
    fn dl(self) -> sys::DLDataType {
        let (code, bits) = match self {
            DType::BF16 => (sys::DLDataTypeCode::kDLBfloat, 16),
            DType::F32 => (sys::DLDataTypeCode::kDLFloat, 32),
            DType::I32 => (sys::DLDataTypeCode::kDLInt, 32),
            DType::U8 => (sys::DLDataTypeCode::kDLUInt, 8),
            DType::FP8E4M3 => (sys::DLDataTypeCode::kDLFloat8_e4m3fn, 8),
            DType::E8M0 => (sys::DLDataTypeCode::kDLFloat8_e8m0fnu, 8),
            DType::FP4E2M1X2 => (sys::DLDataTypeCode::kDLFloat4_e2m1fn, 4),
        };
        sys::DLDataType {
            code: code.0 as u8,
            bits,
            lanes: if self == DType::FP4E2M1X2 { 2 } else { 1 },
        }
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
            DType::U8 | DType::FP8E4M3 | DType::E8M0 | DType::FP4E2M1X2 => 1,
        }
    }
}

/// A borrowed input tensor: a shared host slice, or (unsafe) a raw pointer on any device.
/// Compact row-major, up to 4 dimensions. The library only reads it, so it may be shared by
/// threads (`Sync`). Outputs are [`TensorMut`].
pub struct Tensor<'a> {
    data: *mut c_void,
    device: sys::DLDevice,
    dtype: DType,
    shape: [i64; 4],
    ndim: usize,
    _borrow: PhantomData<&'a [u8]>,
}

// An input only borrows memory the library reads: moving or sharing the descriptor between
// threads is what `&[T]` allows.
unsafe impl Send for Tensor<'_> {}
unsafe impl Sync for Tensor<'_> {}

/// A borrowed output tensor: an exclusively borrowed (mutable) host slice, or (unsafe) a raw
/// pointer on any device. `Send` but not `Sync`: a `&TensorMut` cannot reach another thread,
/// so two calls can never write one output at the same time.
pub struct TensorMut<'a> {
    inner: Tensor<'a>,
    _borrow: PhantomData<&'a mut [u8]>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// The output's slice is exclusively borrowed for 'a: moving that borrow to another thread is
// what `&mut [T]: Send` allows.
unsafe impl Send for TensorMut<'_> {}

fn elements(shape: &[i64]) -> Result<usize> {
    if shape.len() > 4 {
        return Err(Error::new(
            Status::InvalidArgument,
            "tensor: at most 4 dimensions",
        ));
    }
    let mut n: i64 = 1;
    for &s in shape {
        if s < 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                "tensor: negative dimension",
            ));
        }
        n = n
            .checked_mul(s)
            .ok_or_else(|| Error::new(Status::InvalidArgument, "tensor: overflow"))?;
    }
    Ok(n as usize)
}

macro_rules! host_ctor {
    ($name:ident, $t:ty, $dt:expr, $doc:literal) => {
        #[doc = concat!("A host ", $doc, " input tensor over a slice (length = product of shape).")]
        pub fn $name(data: &'a [$t], shape: &[i64]) -> Result<Self> {
            Self::host(data.as_ptr() as *mut c_void, data.len(), $dt, shape)
        }
    };
}

macro_rules! host_ctor_mut {
    ($name:ident, $t:ty, $dt:expr, $doc:literal) => {
        #[doc = concat!("A host ", $doc, " output tensor over a mutable slice.")]
        pub fn $name(data: &'a mut [$t], shape: &[i64]) -> Result<Self> {
            Tensor::host(data.as_mut_ptr() as *mut c_void, data.len(), $dt, shape)
                .map(TensorMut::wrap)
        }
    };
}

impl<'a> Tensor<'a> {
    /// The descriptor of `data` on `device`; `shape` has passed [`elements`] (at most 4
    /// dimensions).
    fn from_parts(data: *mut c_void, device: sys::DLDevice, dtype: DType, shape: &[i64]) -> Self {
        let mut s = [0i64; 4];
        s[..shape.len()].copy_from_slice(shape);
        Tensor {
            data,
            device,
            dtype,
            shape: s,
            ndim: shape.len(),
            _borrow: PhantomData,
        }
    }

    fn host(data: *mut c_void, len: usize, dtype: DType, shape: &[i64]) -> Result<Self> {
        let n = elements(shape)?;
        if n != len {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("tensor: slice has {len} elements, shape {shape:?} needs {n}"),
            ));
        }
        let cpu = sys::DLDevice {
            device_type: sys::DLDeviceType::kDLCPU,
            device_id: 0,
        };
        Ok(Self::from_parts(data, cpu, dtype, shape))
    }

    host_ctor!(bf16, u16, DType::BF16, "bf16 (bit patterns)");
    host_ctor!(f32, f32, DType::F32, "f32");
    host_ctor!(i32, i32, DType::I32, "i32");
    host_ctor!(u8, u8, DType::U8, "u8");
    host_ctor!(e4m3, u8, DType::FP8E4M3, "float8 e4m3fn (codes)");
    host_ctor!(e8m0, u8, DType::E8M0, "float8 e8m0fnu (ue8m0 scale codes)");
    host_ctor!(
        e2m1x2,
        u8,
        DType::FP4E2M1X2,
        "float4 e2m1fn x2 (MXFP4 values, two per byte)"
    );

    /// An input tensor over a raw pointer on any device (e.g. CUDA memory: device_type 2).
    ///
    /// # Safety
    /// `data` must point to memory of the given shape and type on that device, valid and not
    /// written by anyone for `'a` and until the stream work reading it completes.
    pub unsafe fn from_raw(
        data: *const c_void,
        device_type: u32,
        device_id: i32,
        dtype: DType,
        shape: &[i64],
    ) -> Result<Tensor<'a>> {
        elements(shape)?;
        let device = sys::DLDevice {
            device_type: sys::DLDeviceType(device_type),
            device_id,
        };
        Ok(Self::from_parts(data as *mut c_void, device, dtype, shape))
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[i64] {
        &self.shape[..self.ndim]
    }

    /// The DLTensor view; valid while `self` is borrowed (shape points into `self`).
    fn dl(&self) -> sys::DLTensor {
        sys::DLTensor {
            data: self.data,
            device: self.device,
            ndim: self.ndim as i32,
            dtype: self.dtype.dl(),
            shape: self.shape.as_ptr() as *mut i64,
            strides: ptr::null_mut(),
            byte_offset: 0,
        }
    }
}

impl<'a> TensorMut<'a> {
    fn wrap(inner: Tensor<'a>) -> Self {
        TensorMut {
            inner,
            _borrow: PhantomData,
            _not_sync: PhantomData,
        }
    }

    host_ctor_mut!(bf16, u16, DType::BF16, "bf16 (bit patterns)");
    host_ctor_mut!(f32, f32, DType::F32, "f32");
    host_ctor_mut!(i32, i32, DType::I32, "i32");
    host_ctor_mut!(u8, u8, DType::U8, "u8");

    /// An output tensor over a raw pointer on any device (e.g. CUDA memory: device_type 2).
    ///
    /// # Safety
    /// `data` must point to memory of the given shape and type on that device, valid (and not
    /// otherwise accessed while the library writes it) for `'a` and until the stream work
    /// using it completes.
    pub unsafe fn from_raw(
        data: *mut c_void,
        device_type: u32,
        device_id: i32,
        dtype: DType,
        shape: &[i64],
    ) -> Result<TensorMut<'a>> {
        Tensor::from_raw(data, device_type, device_id, dtype, shape).map(TensorMut::wrap)
    }

    /// The same memory as an input (e.g. prepared weights once written), for as long as this
    /// output stays borrowed.
    pub fn as_input(&mut self) -> Tensor<'_> {
        Tensor {
            _borrow: PhantomData,
            ..self.inner
        }
    }

    /// Turns the output into an input for the rest of its borrow.
    pub fn into_input(self) -> Tensor<'a> {
        self.inner
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.inner.dtype
    }

    /// Shape.
    pub fn shape(&self) -> &[i64] {
        self.inner.shape()
    }

    fn dl(&self) -> sys::DLTensor {
        self.inner.dl()
    }
}

/// A zeroed host byte buffer aligned to 256 bytes (workspaces, prepared weights).
pub struct AlignedBuffer {
    buf: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuffer {
    /// `len` zero bytes, 256-byte aligned.
    pub fn new(len: usize) -> Self {
        let buf = vec![0u8; len + 256];
        let off = buf.as_ptr().align_offset(256);
        AlignedBuffer { buf, off, len }
    }
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.off..self.off + self.len]
    }
    /// The bytes, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Routing inputs (`moe_routing_args`): logits, or topk ids + weights, or packed top-k.
#[derive(Clone, Copy)]
pub struct RoutingArgs<'t> {
    /// Routing method (default Renormalize).
    pub method: RoutingMethod,
    /// `[T, E]` fp32 or bf16.
    pub logits: Option<&'t Tensor<'t>>,
    /// `[E]` routing bias (DeepSeekV3).
    pub bias: Option<&'t Tensor<'t>>,
    /// `[T, K]` int32 pre-routed ids.
    pub topk_ids: Option<&'t Tensor<'t>>,
    /// `[T, K]` bf16/fp32 pre-routed weights.
    pub topk_weights: Option<&'t Tensor<'t>>,
    /// `[T, K]` int32 packed (id << 16) | bf16 bits.
    pub topk_packed: Option<&'t Tensor<'t>>,
    /// DeepSeekV3 groups.
    pub n_group: i32,
    /// DeepSeekV3 groups kept (0 = n_group).
    pub topk_group: i32,
    /// DeepSeekV3 output scale.
    pub routed_scaling_factor: f32,
    /// Programmatic dependent launch.
    pub enable_pdl: bool,
}

impl Default for RoutingArgs<'_> {
    fn default() -> Self {
        RoutingArgs {
            method: RoutingMethod::Renormalize,
            logits: None,
            bias: None,
            topk_ids: None,
            topk_weights: None,
            topk_packed: None,
            n_group: 1,
            topk_group: 0,
            routed_scaling_factor: 1.0,
            enable_pdl: true,
        }
    }
}

fn opt(t: Option<&Tensor>) -> Option<sys::DLTensor> {
    t.map(|t| t.dl())
}
fn optp(t: &Option<sys::DLTensor>) -> *const sys::DLTensor {
    t.as_ref()
        .map_or(ptr::null(), |t| t as *const sys::DLTensor)
}

impl<'t> RoutingArgs<'t> {
    /// Defaults (RENORMALIZE, no inputs).
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the method.
    pub fn method(mut self, m: RoutingMethod) -> Self {
        self.method = m;
        self
    }
    /// Sets the logits.
    pub fn logits(mut self, t: &'t Tensor<'t>) -> Self {
        self.logits = Some(t);
        self
    }

    /// Calls `f` with the C struct (the DLTensors live on this stack frame).
    fn with_raw<R>(&self, f: impl FnOnce(&sys::moe_routing_args) -> R) -> R {
        let (l, b, i, w, p) = (
            opt(self.logits),
            opt(self.bias),
            opt(self.topk_ids),
            opt(self.topk_weights),
            opt(self.topk_packed),
        );
        let mut a: sys::moe_routing_args = unsafe { std::mem::zeroed() };
        unsafe { sys::moe_routing_args_init(&mut a, sys::MOE_ROUTING_ARGS_VERSION as u32) };
        a.method = self.method.raw();
        a.logits = optp(&l);
        a.bias = optp(&b);
        a.topk_ids = optp(&i);
        a.topk_weights = optp(&w);
        a.topk_packed = optp(&p);
        a.n_group = self.n_group;
        a.topk_group = self.topk_group;
        a.routed_scaling_factor = self.routed_scaling_factor;
        a.enable_pdl = self.enable_pdl as i32;
        f(&a)
    }
}

/// Inputs and outputs of the GEMM stages (`moe_run_args`).
#[derive(Clone, Copy, Default)]
pub struct RunArgs<'t> {
    /// `[T, H]` bf16 (FP8 runners: bf16 or e4m3).
    pub hidden_states: Option<&'t Tensor<'t>>,
    /// Prepared W1 (u8).
    pub gemm1_weights: Option<&'t Tensor<'t>>,
    /// Prepared W2 (u8).
    pub gemm2_weights: Option<&'t Tensor<'t>>,
    /// `[E_l, f*I]` fp32.
    pub gemm1_bias: Option<&'t Tensor<'t>>,
    /// `[E_l, H]` fp32.
    pub gemm2_bias: Option<&'t Tensor<'t>>,
    /// `[E_l]` fp32 SwiGLU alpha.
    pub gemm1_alpha: Option<&'t Tensor<'t>>,
    /// `[E_l]` fp32 SwiGLU beta.
    pub gemm1_beta: Option<&'t Tensor<'t>>,
    /// `[E_l]` fp32 SwiGLU clamp limit.
    pub gemm1_clamp_limit: Option<&'t Tensor<'t>>,
    /// `[T, H]` bf16 output (finalize).
    pub output: Option<&'t TensorMut<'t>>,
    /// `[>= max_padded_rows, H]` bf16 permuted output (no finalize).
    pub permuted_output: Option<&'t TensorMut<'t>>,
    /// FP8 BLOCK with e4m3 hidden states: `[T, H/128]` fp32 scales.
    pub hidden_states_scale: Option<&'t Tensor<'t>>,
    /// FP8 PER_TENSOR: `[1]` fp32 static scale of GEMM1's input (required there).
    pub gemm1_input_scale: Option<&'t Tensor<'t>>,
    /// FP8 PER_TENSOR: `[1]` fp32 static scale of GEMM2's input (required there).
    pub gemm2_input_scale: Option<&'t Tensor<'t>>,
    /// Finalize; None = `output.is_some()`.
    pub do_finalize: Option<bool>,
    /// Programmatic dependent launch (default on when None).
    pub disable_pdl: bool,
}

impl<'t> RunArgs<'t> {
    fn with_raw<R>(&self, f: impl FnOnce(&sys::moe_run_args) -> R) -> R {
        let ts = [
            opt(self.hidden_states),
            opt(self.gemm1_weights),
            opt(self.gemm2_weights),
            opt(self.gemm1_bias),
            opt(self.gemm2_bias),
            opt(self.gemm1_alpha),
            opt(self.gemm1_beta),
            opt(self.gemm1_clamp_limit),
            self.output.map(TensorMut::dl),
            self.permuted_output.map(TensorMut::dl),
            opt(self.hidden_states_scale),
            opt(self.gemm1_input_scale),
            opt(self.gemm2_input_scale),
        ];
        let mut a: sys::moe_run_args = unsafe { std::mem::zeroed() };
        unsafe { sys::moe_run_args_init(&mut a, sys::MOE_RUN_ARGS_VERSION as u32) };
        a.do_finalize = self.do_finalize.unwrap_or(self.output.is_some()) as i32;
        a.hidden_states = optp(&ts[0]);
        a.gemm1_weights = optp(&ts[1]);
        a.gemm2_weights = optp(&ts[2]);
        a.gemm1_bias = optp(&ts[3]);
        a.gemm2_bias = optp(&ts[4]);
        a.gemm1_alpha = optp(&ts[5]);
        a.gemm1_beta = optp(&ts[6]);
        a.gemm1_clamp_limit = optp(&ts[7]);
        a.output = optp(&ts[8]);
        a.permuted_output = optp(&ts[9]);
        a.hidden_states_scale = optp(&ts[10]);
        a.gemm1_input_scale = optp(&ts[11]);
        a.gemm2_input_scale = optp(&ts[12]);
        a.enable_pdl = (!self.disable_pdl) as i32;
        f(&a)
    }
}

/// Inputs and outputs of the grouped run (`moe_grouped_args`; docs/ep.md): tokens a
/// dispatcher already grouped by local expert. [`Layout::Contiguous`]: hidden `[N, H]`, the rows
/// of local expert e after those of e - 1, `capacity` 0; [`Layout::Masked`]: hidden
/// `[E_l, capacity, H]`, `count[e]` valid rows per expert. The output rows are unweighted (no
/// routing, no finalize); rows past the counts are not written.
#[derive(Clone, Copy)]
pub struct GroupedArgs<'t> {
    /// Token layout.
    pub layout: Layout,
    /// Masked: rows per expert (N = E_l * capacity); contiguous: 0.
    pub capacity: i64,
    /// bf16 hidden states in the layout's shape (FP8 runners: bf16 or e4m3).
    pub hidden_states: Option<&'t Tensor<'t>>,
    /// `[E_l]` int32 rows per local expert, on the runner's device.
    pub expert_counts: Option<&'t Tensor<'t>>,
    /// Prepared W1 (u8).
    pub gemm1_weights: Option<&'t Tensor<'t>>,
    /// Prepared W2 (u8).
    pub gemm2_weights: Option<&'t Tensor<'t>>,
    /// `[E_l, f*I]` fp32.
    pub gemm1_bias: Option<&'t Tensor<'t>>,
    /// `[E_l, H]` fp32.
    pub gemm2_bias: Option<&'t Tensor<'t>>,
    /// `[E_l]` fp32 SwiGLU alpha.
    pub gemm1_alpha: Option<&'t Tensor<'t>>,
    /// `[E_l]` fp32 SwiGLU beta.
    pub gemm1_beta: Option<&'t Tensor<'t>>,
    /// `[E_l]` fp32 SwiGLU clamp limit.
    pub gemm1_clamp_limit: Option<&'t Tensor<'t>>,
    /// bf16 output in the shape of the hidden states.
    pub output: Option<&'t TensorMut<'t>>,
    /// FP8 BLOCK with e4m3 hidden states: `[N, H/128]` fp32 scales (masked:
    /// `[E_l * capacity, H/128]`). FP8 grouped runs: CPU and CUDA backends.
    pub hidden_states_scale: Option<&'t Tensor<'t>>,
    /// FP8 PER_TENSOR: `[1]` fp32 static scale of GEMM1's input (required there).
    pub gemm1_input_scale: Option<&'t Tensor<'t>>,
    /// FP8 PER_TENSOR: `[1]` fp32 static scale of GEMM2's input (required there).
    pub gemm2_input_scale: Option<&'t Tensor<'t>>,
    /// Programmatic dependent launch (default on).
    pub disable_pdl: bool,
}

impl Default for GroupedArgs<'_> {
    fn default() -> Self {
        GroupedArgs {
            layout: Layout::Contiguous,
            capacity: 0,
            hidden_states: None,
            expert_counts: None,
            gemm1_weights: None,
            gemm2_weights: None,
            gemm1_bias: None,
            gemm2_bias: None,
            gemm1_alpha: None,
            gemm1_beta: None,
            gemm1_clamp_limit: None,
            output: None,
            hidden_states_scale: None,
            gemm1_input_scale: None,
            gemm2_input_scale: None,
            disable_pdl: false,
        }
    }
}

impl<'t> GroupedArgs<'t> {
    fn with_raw<R>(&self, f: impl FnOnce(&sys::moe_grouped_args) -> Result<R>) -> Result<R> {
        let ts = [
            opt(self.hidden_states),
            opt(self.expert_counts),
            opt(self.gemm1_weights),
            opt(self.gemm2_weights),
            opt(self.gemm1_bias),
            opt(self.gemm2_bias),
            opt(self.gemm1_alpha),
            opt(self.gemm1_beta),
            opt(self.gemm1_clamp_limit),
            self.output.map(TensorMut::dl),
            opt(self.hidden_states_scale),
            opt(self.gemm1_input_scale),
            opt(self.gemm2_input_scale),
        ];
        let mut a: sys::moe_grouped_args = unsafe { std::mem::zeroed() };
        check(unsafe { sys::moe_grouped_args_init(&mut a, sys::MOE_GROUPED_ARGS_VERSION as u32) })?;
        a.layout = self.layout.raw();
        a.capacity = self.capacity;
        a.hidden_states = optp(&ts[0]);
        a.expert_counts = optp(&ts[1]);
        a.gemm1_weights = optp(&ts[2]);
        a.gemm2_weights = optp(&ts[3]);
        a.gemm1_bias = optp(&ts[4]);
        a.gemm2_bias = optp(&ts[5]);
        a.gemm1_alpha = optp(&ts[6]);
        a.gemm1_beta = optp(&ts[7]);
        a.gemm1_clamp_limit = optp(&ts[8]);
        a.output = optp(&ts[9]);
        a.hidden_states_scale = optp(&ts[10]);
        a.gemm1_input_scale = optp(&ts[11]);
        a.gemm2_input_scale = optp(&ts[12]);
        a.enable_pdl = (!self.disable_pdl) as i32;
        f(&a)
    }
}

/// A prepared routing plan: the `moe_plan` descriptor, tied to its runner and workspace.
pub struct Plan<'a> {
    raw: Box<sys::moe_plan>,
    runner: &'a Runner,
    ws: *mut c_void,
    ws_len: usize,
    stream: Stream,
    _ws: PhantomData<&'a mut [u8]>,
}

impl Plan<'_> {
    /// Config index the plan was prepared with.
    pub fn config(&self) -> i32 {
        self.raw.config
    }
    /// Cluster tile.
    pub fn tile(&self) -> i32 {
        self.raw.tile
    }
    /// Cluster size.
    pub fn cluster_size(&self) -> i32 {
        self.raw.cluster_size
    }
    /// T.
    pub fn num_tokens(&self) -> i64 {
        self.raw.num_tokens
    }
    /// Capacity of permuted-space buffers.
    pub fn max_padded_rows(&self) -> i64 {
        self.raw.max_padded_rows
    }
    /// Capacity of the CTA tables.
    pub fn max_ctas(&self) -> i64 {
        self.raw.max_ctas
    }
    /// The raw descriptor.
    pub fn raw(&self) -> &sys::moe_plan {
        &self.raw
    }

    /// Element count of a plan table; synchronises the stream.
    pub fn read_count(&self, table: PlanTable) -> Result<usize> {
        let mut n = 0i64;
        check(unsafe {
            sys::moe_plan_read_count(
                self.runner.ptr.as_ptr(),
                &*self.raw,
                self.ws,
                self.ws_len,
                table.raw(),
                &mut n,
                self.stream,
            )
        })?;
        Ok(n as usize)
    }

    fn read_into<T: Copy + Default>(&self, table: PlanTable) -> Result<Vec<T>> {
        let n = self.read_count(table)?;
        let mut v = vec![T::default(); n];
        check(unsafe {
            sys::moe_plan_read(
                self.runner.ptr.as_ptr(),
                &*self.raw,
                self.ws,
                self.ws_len,
                table.raw(),
                v.as_mut_ptr() as *mut c_void,
                n * std::mem::size_of::<T>(),
                self.stream,
            )
        })?;
        Ok(v)
    }

    /// An int32 plan table; synchronises the stream.
    pub fn read_i32(&self, table: PlanTable) -> Result<Vec<i32>> {
        if table == PlanTable::ExpertWeights {
            return Err(Error::new(
                Status::InvalidArgument,
                "PlanTable::ExpertWeights is bf16: read_weights",
            ));
        }
        self.read_into(table)
    }

    /// The bf16 expert weights (bit patterns); synchronises the stream.
    pub fn read_weights(&self) -> Result<Vec<u16>> {
        self.read_into(PlanTable::ExpertWeights)
    }
}

/// A `moe_runner`: `Send + Sync`. Threads may share `&Runner`; every call of its own takes its
/// own workspace (a `&mut` borrow or an unsafe raw pointer), plan and outputs, and the runner
/// itself is immutable after creation. It is destroyed when dropped, which the borrow checker
/// orders after every call and plan that borrows it.
pub struct Runner {
    ptr: NonNull<sys::moe_runner>,
}

// The C API allows a runner to be moved between threads and to be used by several threads at
// once (its state is immutable after create; concurrent calls need separate workspaces and
// plans, which `Plan<'a>` and the `&mut [u8]` workspaces of the safe entry points enforce).
unsafe impl Send for Runner {}
unsafe impl Sync for Runner {}

impl Drop for Runner {
    fn drop(&mut self) {
        unsafe { sys::moe_runner_destroy(self.ptr.as_ptr()) };
    }
}

impl Runner {
    /// Creates a runner.
    pub fn new(o: &Options) -> Result<Runner> {
        let mut opts: sys::moe_runner_options = unsafe { std::mem::zeroed() };
        check(unsafe {
            sys::moe_runner_options_init(&mut opts, sys::MOE_RUNNER_OPTIONS_VERSION as u32)
        })?;
        opts.backend = o.backend.raw();
        opts.device_id = o.device_id;
        opts.sm_version = o.sm_version;
        opts.activation = o.activation.raw();
        opts.num_threads = o.num_threads;
        opts.activation_dtype = o.activation_dtype().raw();
        opts.weight_dtype = o.weight_dtype().raw();
        opts.scaling_mode = o.scaling.raw();
        let mut r = ptr::null_mut();
        check(unsafe { sys::moe_runner_create(&opts, &mut r) })?;
        NonNull::new(r)
            .map(|ptr| Runner { ptr })
            .ok_or_else(|| Error::new(Status::Internal, "moe_runner_create returned NULL"))
    }

    /// The raw handle (borrowed).
    pub fn as_ptr(&self) -> *mut sys::moe_runner {
        self.ptr.as_ptr()
    }

    /// `Backend::Cpu` or `Backend::Cuda`.
    pub fn backend(&self) -> Result<Backend> {
        let mut b = 0;
        check(unsafe { sys::moe_runner_get_backend(self.ptr.as_ptr(), &mut b) })?;
        Backend::from_raw(b)
            .ok_or_else(|| Error::new(Status::Internal, format!("unknown backend {b}")))
    }

    /// Number of configs in the catalogue.
    pub fn num_configs(&self) -> Result<i32> {
        let mut n = 0;
        check(unsafe { sys::moe_runner_get_num_configs(self.ptr.as_ptr(), &mut n) })?;
        Ok(n)
    }

    /// Configs valid for the problem, best first.
    pub fn valid_configs(&self, p: &Problem) -> Result<Vec<i32>> {
        let raw = p.raw();
        let mut n = 0;
        check(unsafe {
            sys::moe_runner_get_valid_configs(self.ptr.as_ptr(), &raw, ptr::null_mut(), 0, &mut n)
        })?;
        let mut v = vec![0i32; n as usize];
        check(unsafe {
            sys::moe_runner_get_valid_configs(self.ptr.as_ptr(), &raw, v.as_mut_ptr(), n, &mut n)
        })?;
        v.truncate(n as usize);
        Ok(v)
    }

    /// The default (best-first) config.
    pub fn default_config(&self, p: &Problem) -> Result<i32> {
        let raw = p.raw();
        let mut c = 0;
        check(unsafe { sys::moe_runner_get_default_config(self.ptr.as_ptr(), &raw, &mut c) })?;
        Ok(c)
    }

    /// Describes a config.
    pub fn describe_config(&self, config: i32) -> Result<ConfigInfo> {
        let mut i: sys::moe_config_info = unsafe { std::mem::zeroed() };
        check(unsafe { sys::moe_runner_describe_config(self.ptr.as_ptr(), config, &mut i) })?;
        let name = unsafe { CStr::from_ptr(i.name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(ConfigInfo {
            index: i.index,
            tile: i.tile,
            cta_tile: i.cta_tile,
            cluster_size: i.cluster_size,
            gemm1_block_m: i.gemm1_block_m,
            gemm2_block_m: i.gemm2_block_m,
            block_k: i.block_k,
            stages: i.stages,
            sm_version: i.sm_version,
            name,
        })
    }

    /// Cluster size C of a config.
    pub fn cluster_size(&self, config: i32) -> Result<i32> {
        let mut c = 0;
        check(unsafe { sys::moe_runner_get_cluster_size(self.ptr.as_ptr(), config, &mut c) })?;
        Ok(c)
    }

    /// Workspace bytes for the problem (num_tokens = T_max) and config.
    pub fn workspace_size(&self, p: &Problem, config: i32) -> Result<usize> {
        let raw = p.raw();
        let mut b = 0usize;
        check(unsafe {
            sys::moe_runner_get_workspace_size(self.ptr.as_ptr(), &raw, config, &mut b)
        })?;
        Ok(b)
    }

    /// Bytes of a prepared weight tensor.
    pub fn weights_prepared_size(&self, p: &Problem, which: Weights) -> Result<usize> {
        let raw = p.raw();
        let mut b = 0usize;
        check(unsafe {
            sys::moe_weights_prepared_size(self.ptr.as_ptr(), &raw, which.raw(), &mut b)
        })?;
        Ok(b)
    }

    /// Prepares host canonical weights into a host u8 tensor (CPU backend).
    pub fn prepare_weights(
        &self,
        p: &Problem,
        which: Weights,
        canonical: &Tensor,
        prepared: &TensorMut,
    ) -> Result<()> {
        unsafe { self.prepare_weights_on(p, which, canonical, prepared, ptr::null_mut()) }
    }

    /// Prepares weights on a stream (device tensors).
    ///
    /// # Safety
    /// `stream` must be a valid CUDA stream (or null) of the runner's device, and the tensors
    /// must stay valid until the stream work completes.
    pub unsafe fn prepare_weights_on(
        &self,
        p: &Problem,
        which: Weights,
        canonical: &Tensor,
        prepared: &TensorMut,
        stream: Stream,
    ) -> Result<()> {
        let raw = p.raw();
        let (c, d) = (canonical.dl(), prepared.dl());
        check(sys::moe_weights_prepare(
            self.ptr.as_ptr(),
            &raw,
            which.raw(),
            &c,
            &d,
            stream,
        ))
    }

    /// FP8 runners (`moe_weights_prepare_scaled`): e4m3 canonical weights `[E_l, R, C]` with
    /// their fp32 scales (`[E_l]` per tensor, `[E_l, R/128, C/128]` block), copied as they
    /// are; or bf16 weights with `canonical_scales` None, quantized by the library. MXFP4
    /// runners: the packed e2m1 blocks `[E_l, R, C/2]` ([`DType::U8`] or
    /// [`DType::FP4E2M1X2`]) with their ue8m0 scales `[E_l, R, C/32]` ([`DType::U8`] or
    /// [`DType::E8M0`], required); `which` may be [`Weights::Gemm1GateUpInterleaved`]
    /// (gpt-oss rows). Host tensors (CPU backend).
    pub fn prepare_weights_scaled(
        &self,
        p: &Problem,
        which: Weights,
        canonical: &Tensor,
        canonical_scales: Option<&Tensor>,
        prepared: &TensorMut,
    ) -> Result<()> {
        unsafe {
            self.prepare_weights_scaled_on(
                p,
                which,
                canonical,
                canonical_scales,
                prepared,
                ptr::null_mut(),
            )
        }
    }

    /// [`Runner::prepare_weights_scaled`] on a stream (device tensors).
    ///
    /// # Safety
    /// `stream` must be a valid CUDA stream (or null) of the runner's device, and the tensors
    /// must stay valid until the stream work completes.
    pub unsafe fn prepare_weights_scaled_on(
        &self,
        p: &Problem,
        which: Weights,
        canonical: &Tensor,
        canonical_scales: Option<&Tensor>,
        prepared: &TensorMut,
        stream: Stream,
    ) -> Result<()> {
        let raw = p.raw();
        let (c, d) = (canonical.dl(), prepared.dl());
        let s = opt(canonical_scales);
        check(sys::moe_weights_prepare_scaled(
            self.ptr.as_ptr(),
            &raw,
            which.raw(),
            &c,
            optp(&s),
            &d,
            stream,
        ))
    }

    /// CPU convenience: host canonical bf16 weights into a new prepared byte buffer.
    pub fn prepare_weights_host(
        &self,
        p: &Problem,
        which: Weights,
        canonical: &Tensor,
    ) -> Result<AlignedBuffer> {
        let mut out = AlignedBuffer::new(self.weights_prepared_size(p, which)?);
        let n = out.len() as i64;
        {
            let t = TensorMut::u8(out.as_mut_slice(), &[n])?;
            self.prepare_weights(p, which, canonical, &t)?;
        }
        Ok(out)
    }

    /// Routes the problem for a config into a host workspace (CPU backend); returns the plan,
    /// which borrows the workspace until dropped.
    pub fn prepare_routing<'a>(
        &'a self,
        p: &Problem,
        config: i32,
        args: &RoutingArgs,
        workspace: &'a mut [u8],
    ) -> Result<Plan<'a>> {
        unsafe {
            self.prepare_routing_raw(
                p,
                config,
                args,
                workspace.as_mut_ptr() as *mut c_void,
                workspace.len(),
                ptr::null_mut(),
            )
        }
    }

    /// Routes into a raw (device) workspace on a stream.
    ///
    /// # Safety
    /// `workspace` must point to `workspace_bytes` bytes on the runner's device, valid and not
    /// otherwise used while the plan lives; `stream` must be valid (or null); the tensors of
    /// `args` must stay valid until the stream work completes.
    pub unsafe fn prepare_routing_raw<'a>(
        &'a self,
        p: &Problem,
        config: i32,
        args: &RoutingArgs,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: Stream,
    ) -> Result<Plan<'a>> {
        let raw = p.raw();
        let mut plan = Box::new(std::mem::zeroed::<sys::moe_plan>());
        check(sys::moe_plan_init(&mut *plan, sys::MOE_PLAN_VERSION as u32))?;
        args.with_raw(|a| {
            check(sys::moe_routing_prepare(
                self.ptr.as_ptr(),
                &raw,
                a,
                config,
                workspace,
                workspace_bytes,
                &mut *plan,
                stream,
            ))
        })?;
        Ok(Plan {
            raw: plan,
            runner: self,
            ws: workspace,
            ws_len: workspace_bytes,
            stream,
            _ws: PhantomData,
        })
    }

    /// GEMM1, GEMM2 and finalize on a prepared plan (host tensors, CPU backend).
    pub fn run(&self, p: &Problem, config: i32, plan: &Plan, args: &RunArgs) -> Result<()> {
        unsafe { self.run_on(p, config, plan, args, ptr::null_mut()) }
    }

    /// `run` on a stream (device tensors).
    ///
    /// # Safety
    /// `stream` must be valid (or null) for the runner's device; the tensors must stay valid
    /// until the stream work completes.
    pub unsafe fn run_on(
        &self,
        p: &Problem,
        config: i32,
        plan: &Plan,
        args: &RunArgs,
        stream: Stream,
    ) -> Result<()> {
        let raw = p.raw();
        args.with_raw(|a| {
            check(sys::moe_runner_run(
                self.ptr.as_ptr(),
                &raw,
                a,
                config,
                &*plan.raw,
                plan.ws,
                plan.ws_len,
                stream,
            ))
        })
    }

    /// Workspace bytes of the grouped run for the problem (num_tokens = the largest N; masked:
    /// E_l * capacity) and config (`moe_runner_get_grouped_workspace_size`).
    pub fn grouped_workspace_size(&self, p: &Problem, config: i32) -> Result<usize> {
        let raw = p.raw();
        let mut b = 0usize;
        check(unsafe {
            sys::moe_runner_get_grouped_workspace_size(self.ptr.as_ptr(), &raw, config, &mut b)
        })?;
        Ok(b)
    }

    /// GEMM1 (+activation) and GEMM2 on tokens already grouped by local expert
    /// (`moe_runner_run_grouped`; docs/ep.md) with host tensors and a host workspace of
    /// [`Runner::grouped_workspace_size`] bytes (CPU backend).
    pub fn run_grouped(
        &self,
        p: &Problem,
        config: i32,
        args: &GroupedArgs,
        workspace: &mut [u8],
    ) -> Result<()> {
        unsafe {
            self.run_grouped_raw(
                p,
                config,
                args,
                workspace.as_mut_ptr() as *mut c_void,
                workspace.len(),
                ptr::null_mut(),
            )
        }
    }

    /// `run_grouped` with a raw (device) workspace on a stream.
    ///
    /// # Safety
    /// As [`Runner::prepare_routing_raw`]: `workspace` points to `workspace_bytes` bytes on the
    /// runner's device; the tensors (counts included) stay valid until the stream work
    /// completes.
    pub unsafe fn run_grouped_raw(
        &self,
        p: &Problem,
        config: i32,
        args: &GroupedArgs,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: Stream,
    ) -> Result<()> {
        let raw = p.raw();
        args.with_raw(|a| {
            check(sys::moe_runner_run_grouped(
                self.ptr.as_ptr(),
                &raw,
                a,
                config,
                workspace,
                workspace_bytes,
                stream,
            ))
        })
    }

    /// One-shot forward with the default config into `args.output`, using a host workspace
    /// (sized by `workspace_size(p, default_config(p))`).
    pub fn forward(
        &self,
        p: &Problem,
        routing: &RoutingArgs,
        args: &RunArgs,
        workspace: &mut [u8],
    ) -> Result<()> {
        unsafe {
            self.forward_raw(
                p,
                routing,
                args,
                workspace.as_mut_ptr() as *mut c_void,
                workspace.len(),
                ptr::null_mut(),
            )
        }
    }

    /// `forward` with a raw (device) workspace and a stream.
    ///
    /// # Safety
    /// As [`Runner::prepare_routing_raw`].
    pub unsafe fn forward_raw(
        &self,
        p: &Problem,
        routing: &RoutingArgs,
        args: &RunArgs,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: Stream,
    ) -> Result<()> {
        let raw = p.raw();
        routing.with_raw(|r| {
            args.with_raw(|a| {
                check(sys::moe_forward(
                    self.ptr.as_ptr(),
                    &raw,
                    r,
                    a,
                    workspace,
                    workspace_bytes,
                    stream,
                ))
            })
        })
    }

    /// CPU convenience: forward with a fresh workspace; returns the bf16 output [T, H].
    pub fn forward_host(
        &self,
        p: &Problem,
        routing: &RoutingArgs,
        hidden_states: &Tensor,
        gemm1_weights: &AlignedBuffer,
        gemm2_weights: &AlignedBuffer,
    ) -> Result<Vec<u16>> {
        let mut ws = AlignedBuffer::new(self.workspace_size(p, self.default_config(p)?)?);
        let mut out = vec![0u16; (p.num_tokens * p.hidden_size) as usize];
        let w1 = Tensor::u8(gemm1_weights.as_slice(), &[gemm1_weights.len() as i64])?;
        let w2 = Tensor::u8(gemm2_weights.as_slice(), &[gemm2_weights.len() as i64])?;
        {
            let o = TensorMut::bf16(&mut out, &[p.num_tokens, p.hidden_size])?;
            let args = RunArgs {
                hidden_states: Some(hidden_states),
                gemm1_weights: Some(&w1),
                gemm2_weights: Some(&w2),
                output: Some(&o),
                ..RunArgs::default()
            };
            self.forward(p, routing, &args, ws.as_mut_slice())?;
        }
        Ok(out)
    }
    /// Times every valid config (`moe_runner_autotune`: prepare + run, median of
    /// `iterations`) with a host workspace large enough for every valid config; returns
    /// (config, microseconds) fastest first. Outputs in `args` are overwritten.
    pub fn autotune(
        &self,
        p: &Problem,
        routing: &RoutingArgs,
        args: &RunArgs,
        workspace: &mut [u8],
        iterations: i32,
    ) -> Result<Vec<(i32, f32)>> {
        unsafe {
            self.autotune_raw(
                p,
                routing,
                args,
                workspace.as_mut_ptr() as *mut c_void,
                workspace.len(),
                iterations,
                ptr::null_mut(),
            )
        }
    }

    /// `autotune` with a raw (device) workspace and a stream; synchronises the stream.
    ///
    /// # Safety
    /// As [`Runner::prepare_routing_raw`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn autotune_raw(
        &self,
        p: &Problem,
        routing: &RoutingArgs,
        args: &RunArgs,
        workspace: *mut c_void,
        workspace_bytes: usize,
        iterations: i32,
        stream: Stream,
    ) -> Result<Vec<(i32, f32)>> {
        let raw = p.raw();
        let cap = self.valid_configs(p)?.len();
        let mut cfgs = vec![0i32; cap];
        let mut times = vec![0f32; cap];
        let mut n = 0i32;
        routing.with_raw(|r| {
            args.with_raw(|a| {
                check(sys::moe_runner_autotune(
                    self.ptr.as_ptr(),
                    &raw,
                    r,
                    a,
                    workspace,
                    workspace_bytes,
                    iterations,
                    cfgs.as_mut_ptr(),
                    times.as_mut_ptr(),
                    cap as i32,
                    &mut n,
                    stream,
                ))
            })
        })?;
        Ok(cfgs.into_iter().zip(times).take(n as usize).collect())
    }
}
