// Package moe is the Go binding of moe-trtllm, a fused Mixture-of-Experts inference library
// with a C ABI (include/moe_trtllm.h).
//
// Host tensors live in ordinary Go memory (HostBuffer): the garbage collector accounts for and
// frees them like any slice, and views such as Buffer().Uint16s() keep the memory alive. They
// reach C only for the duration of one call, as direct arguments of a C dispatcher that writes
// them into the call's C-allocated DLTensors and clears them before returning (cgo pointer
// rules: no Go pointer is stored in C memory beyond the call). The host backend (CPU) uses host
// memory only during the call. Device pointers and CUDA streams are uintptr. Every failure is
// an *Error with the library's status and message, read on the same OS thread as the failing
// call. Every constant is taken from the C header through cgo.
package moe

/*
#cgo pkg-config: moe_trtllm
#include <stdlib.h>
#include <string.h>
#include "moe_trtllm.h"

// uintptr -> pointer conversions happen in C so that go vet sees no unsafe.Pointer(uintptr).
static inline void *moe_go_ptr(uintptr_t p) { return (void *)p; }
static inline moe_cuda_stream_t moe_go_stream(uintptr_t p) { return (moe_cuda_stream_t)p; }

// One call that takes host memory: everything but the Go pointers lives in this C struct; the
// Go pointers arrive as the direct arguments p[i] and are written to *slot[i] (a DLTensor's
// data or the workspace) for the call only.
enum { MOE_GO_SLOTS = 24 };
enum {
  MOE_GO_WEIGHTS_PREPARE = 1, MOE_GO_ROUTING_PREPARE, MOE_GO_RUN, MOE_GO_FORWARD,
  MOE_GO_AUTOTUNE, MOE_GO_PLAN_READ_COUNT, MOE_GO_PLAN_READ, MOE_GO_WEIGHTS_PREPARE_SCALED,
  MOE_GO_RUN_GROUPED
};
typedef struct moe_go_call {
  int32_t op;
  moe_runner *runner;
  moe_problem problem;
  moe_routing_args routing;
  moe_run_args run;
  moe_grouped_args grouped;
  moe_plan plan;
  const DLTensor *canonical, *canonical_scales, *prepared;
  int32_t config, which, table, iterations, capacity, count;
  int64_t elements;
  void *workspace;
  size_t workspace_bytes;
  void *dst;
  size_t dst_bytes;
  int32_t *configs;
  float *times;
  moe_cuda_stream_t stream;
  void **slot[MOE_GO_SLOTS];
} moe_go_call;

static moe_status_t moe_go_dispatch(moe_go_call *c) {
  switch (c->op) {
    case MOE_GO_WEIGHTS_PREPARE:
      return moe_weights_prepare(c->runner, &c->problem, c->which, c->canonical, c->prepared,
                                 c->stream);
    case MOE_GO_WEIGHTS_PREPARE_SCALED:
      return moe_weights_prepare_scaled(c->runner, &c->problem, c->which, c->canonical,
                                        c->canonical_scales, c->prepared, c->stream);
    case MOE_GO_ROUTING_PREPARE:
      return moe_routing_prepare(c->runner, &c->problem, &c->routing, c->config, c->workspace,
                                 c->workspace_bytes, &c->plan, c->stream);
    case MOE_GO_RUN:
      return moe_runner_run(c->runner, &c->problem, &c->run, c->config, &c->plan, c->workspace,
                            c->workspace_bytes, c->stream);
    case MOE_GO_RUN_GROUPED:
      return moe_runner_run_grouped(c->runner, &c->problem, &c->grouped, c->config, c->workspace,
                                    c->workspace_bytes, c->stream);
    case MOE_GO_FORWARD:
      return moe_forward(c->runner, &c->problem, &c->routing, &c->run, c->workspace,
                         c->workspace_bytes, c->stream);
    case MOE_GO_AUTOTUNE:
      return moe_runner_autotune(c->runner, &c->problem, &c->routing, &c->run, c->workspace,
                                 c->workspace_bytes, c->iterations, c->configs, c->times,
                                 c->capacity, &c->count, c->stream);
    case MOE_GO_PLAN_READ_COUNT:
      return moe_plan_read_count(c->runner, &c->plan, c->workspace, c->workspace_bytes,
                                 c->table, &c->elements, c->stream);
    case MOE_GO_PLAN_READ:
      return moe_plan_read(c->runner, &c->plan, c->workspace, c->workspace_bytes, c->table,
                           c->dst, c->dst_bytes, c->stream);
  }
  return MOE_STATUS_INTERNAL;
}

static moe_status_t moe_go_call_with(moe_go_call *c, void *p0, void *p1, void *p2, void *p3,
                                     void *p4, void *p5, void *p6, void *p7, void *p8, void *p9,
                                     void *p10, void *p11, void *p12, void *p13, void *p14,
                                     void *p15, void *p16, void *p17, void *p18, void *p19,
                                     void *p20, void *p21, void *p22, void *p23) {
  void *p[MOE_GO_SLOTS] = {p0,  p1,  p2,  p3,  p4,  p5,  p6,  p7,  p8,  p9,  p10, p11,
                           p12, p13, p14, p15, p16, p17, p18, p19, p20, p21, p22, p23};
  moe_status_t st;
  int i;
  for (i = 0; i < MOE_GO_SLOTS; ++i)
    if (c->slot[i]) *c->slot[i] = p[i];
  st = moe_go_dispatch(c);
  for (i = 0; i < MOE_GO_SLOTS; ++i)
    if (c->slot[i]) *c->slot[i] = NULL;
  return st;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Status codes (moe_status_t), from the C header.
const (
	StatusSuccess               = C.MOE_STATUS_SUCCESS
	StatusInvalidArgument       = C.MOE_STATUS_INVALID_ARGUMENT
	StatusNotSupported          = C.MOE_STATUS_NOT_SUPPORTED
	StatusOutOfMemory           = C.MOE_STATUS_OUT_OF_MEMORY
	StatusCudaError             = C.MOE_STATUS_CUDA_ERROR
	StatusNoDevice              = C.MOE_STATUS_NO_DEVICE
	StatusInsufficientWorkspace = C.MOE_STATUS_INSUFFICIENT_WORKSPACE
	StatusVersionMismatch       = C.MOE_STATUS_VERSION_MISMATCH
	StatusInvalidConfig         = C.MOE_STATUS_INVALID_CONFIG
	StatusInternal              = C.MOE_STATUS_INTERNAL
)

// Backends, routing methods, activations, weight kinds and plan tables, from the C header.
const (
	BackendAuto = C.MOE_BACKEND_AUTO
	BackendCPU  = C.MOE_BACKEND_CPU
	BackendCUDA = C.MOE_BACKEND_CUDA

	RoutingDefault          = C.MOE_ROUTING_DEFAULT
	RoutingRenormalize      = C.MOE_ROUTING_RENORMALIZE
	RoutingDeepSeekV3       = C.MOE_ROUTING_DEEPSEEK_V3
	RoutingLlama4           = C.MOE_ROUTING_LLAMA4
	RoutingRenormalizeNaive = C.MOE_ROUTING_RENORMALIZE_NAIVE
	RoutingTopK             = C.MOE_ROUTING_TOPK

	ActivationSwiGLU   = C.MOE_ACTIVATION_SWIGLU
	ActivationGeGLU    = C.MOE_ACTIVATION_GEGLU
	ActivationReLU2    = C.MOE_ACTIVATION_RELU2
	ActivationIdentity = C.MOE_ACTIVATION_IDENTITY

	DtypeBF16    = C.MOE_DTYPE_BF16     // runner activation / weight dtype
	DtypeFP8E4M3 = C.MOE_DTYPE_FP8_E4M3 // FP8 e4m3fn: needs a scaling mode
	DtypeMXFP4   = C.MOE_DTYPE_MXFP4    // MXFP4 weights (weight dtype only, ScalingMX)

	ScalingNone      = C.MOE_SCALING_NONE       // BF16: no scales
	ScalingPerTensor = C.MOE_SCALING_PER_TENSOR // FP8: per-expert weight scales, static activation scales
	ScalingBlock     = C.MOE_SCALING_BLOCK      // FP8: 128x128 weight blocks, 1x128 activation scales
	ScalingMX        = C.MOE_SCALING_MX         // MXFP4: ue8m0 scales per 32 weights along K

	LayoutContiguous = C.MOE_LAYOUT_CONTIGUOUS // grouped run (C moe_runner_run_grouped): [N, H] grouped by expert
	LayoutMasked     = C.MOE_LAYOUT_MASKED     // grouped run: [E_l, capacity, H] with per-expert counts

	WeightsGemm1 = C.MOE_WEIGHTS_GEMM1
	WeightsGemm2 = C.MOE_WEIGHTS_GEMM2
	// WeightsGemm1GateUpInterleaved is MXFP4 W1 in gpt-oss's row order (2f gate, 2f+1 up).
	WeightsGemm1GateUpInterleaved = C.MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED

	PlanTopkIDs            = C.MOE_PLAN_TOPK_IDS
	PlanExpertWeights      = C.MOE_PLAN_EXPERT_WEIGHTS
	PlanExpandedToPermuted = C.MOE_PLAN_EXPANDED_TO_PERMUTED
	PlanPermutedToToken    = C.MOE_PLAN_PERMUTED_TO_TOKEN
	PlanPermutedToExpanded = C.MOE_PLAN_PERMUTED_TO_EXPANDED
	PlanCtaToBatch         = C.MOE_PLAN_CTA_TO_BATCH
	PlanCtaToMnLimit       = C.MOE_PLAN_CTA_TO_MN_LIMIT
	PlanNumCtas            = C.MOE_PLAN_NUM_CTAS
	PlanPermutedSize       = C.MOE_PLAN_PERMUTED_SIZE
	PlanExpertCounts       = C.MOE_PLAN_EXPERT_COUNTS

	deviceCPU  = C.kDLCPU
	deviceCUDA = C.kDLCUDA
)

// statusNames is the one status-name table of this binding: each name is the header macro
// MOE_STATUS_<NAME> that gives its value (TestStatusTableMatchesHeader checks it against the
// header, so a status added there and missing here fails the tests).
var statusNames = map[int]string{
	C.MOE_STATUS_SUCCESS:                "SUCCESS",
	C.MOE_STATUS_INVALID_ARGUMENT:       "INVALID_ARGUMENT",
	C.MOE_STATUS_NOT_SUPPORTED:          "NOT_SUPPORTED",
	C.MOE_STATUS_OUT_OF_MEMORY:          "OUT_OF_MEMORY",
	C.MOE_STATUS_CUDA_ERROR:             "CUDA_ERROR",
	C.MOE_STATUS_NO_DEVICE:              "NO_DEVICE",
	C.MOE_STATUS_INSUFFICIENT_WORKSPACE: "INSUFFICIENT_WORKSPACE",
	C.MOE_STATUS_VERSION_MISMATCH:       "VERSION_MISMATCH",
	C.MOE_STATUS_INVALID_CONFIG:         "INVALID_CONFIG",
	C.MOE_STATUS_INTERNAL:               "INTERNAL",
}

// Error is a failed library call: its status and the library's message.
type Error struct {
	Status  int
	Message string
}

// StatusName is the name of a status code ("INVALID_ARGUMENT"), "UNKNOWN" for others.
func StatusName(status int) string {
	if n, ok := statusNames[status]; ok {
		return n
	}
	return "UNKNOWN"
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s [%s (%d)]", e.Message, StatusName(e.Status), e.Status)
}

// StatusName is the name of the error's status.
func (e *Error) StatusName() string { return StatusName(e.Status) }

// call runs f on a locked OS thread and reads the thread-local message there on failure.
func call(f func() C.moe_status_t) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	st := f()
	if st == C.MOE_STATUS_SUCCESS {
		return nil
	}
	msg := C.GoString(C.moe_get_last_error())
	if msg == "" {
		msg = C.GoString(C.moe_status_string(st))
	}
	return &Error{Status: int(st), Message: msg}
}

// StatusString is the library's static text of a status code.
func StatusString(status int) string { return C.GoString(C.moe_status_string(C.int32_t(status))) }

// Version is the library version.
func Version() (major, minor, patch int) {
	var a, b, c C.int32_t
	C.moe_get_version(&a, &b, &c)
	return int(a), int(b), int(c)
}

// CudaDeviceCount is the number of usable CUDA devices (0 without a GPU or CUDA build).
func CudaDeviceCount() (int, error) {
	var n C.int32_t
	err := call(func() C.moe_status_t { return C.moe_cuda_device_count(&n) })
	return int(n), err
}

// ---- host memory -------------------------------------------------------------------------

// HostBuffer is zeroed, 256-byte aligned host memory in the Go heap. The garbage collector
// frees it once nothing refers to it (a view from Bytes, Uint16s, ... refers to it), and counts
// it in its pacing, so memory of dropped buffers is reclaimed like any slice's.
type HostBuffer struct {
	buf []byte // len n + 256; the data starts at off
	off int
	n   int
}

// NewHostBuffer allocates n zero bytes.
func NewHostBuffer(n int) *HostBuffer {
	if n < 0 {
		panic("moe: negative buffer size")
	}
	buf := make([]byte, n+256)
	off := int((256 - uintptr(unsafe.Pointer(&buf[0]))%256) % 256)
	return &HostBuffer{buf: buf, off: off, n: n}
}

// Close drops the buffer's memory (idempotent): the buffer is empty afterwards, and a tensor
// over it reaches the library with NULL data (an error). Views taken before stay valid Go
// memory. Closing is optional.
func (b *HostBuffer) Close() {
	b.buf, b.off, b.n = nil, 0, 0
}

// ptr is the start of the data (nil after Close). Go memory: pass it to C only as a direct
// argument of one call.
func (b *HostBuffer) ptr() unsafe.Pointer {
	if b == nil || b.buf == nil {
		return nil
	}
	return unsafe.Pointer(&b.buf[b.off])
}

// Len is the size in bytes.
func (b *HostBuffer) Len() int { return b.n }

// Bytes is a view of the memory.
func (b *HostBuffer) Bytes() []byte {
	if b.buf == nil {
		return nil
	}
	return b.buf[b.off : b.off+b.n : b.off+b.n]
}

// Uint16s views the memory as uint16 (bf16 bit patterns). The view keeps the memory alive.
func (b *HostBuffer) Uint16s() []uint16 {
	if b.buf == nil {
		return nil
	}
	return unsafe.Slice((*uint16)(b.ptr()), b.n/2)
}

// Float32s views the memory as float32.
func (b *HostBuffer) Float32s() []float32 {
	if b.buf == nil {
		return nil
	}
	return unsafe.Slice((*float32)(b.ptr()), b.n/4)
}

// Int32s views the memory as int32.
func (b *HostBuffer) Int32s() []int32 {
	if b.buf == nil {
		return nil
	}
	return unsafe.Slice((*int32)(b.ptr()), b.n/4)
}

// ---- tensors -------------------------------------------------------------------------------

// DType is an element type.
type DType int

// Element types.
const (
	BF16 DType = iota
	F32
	I32
	U8
	FP8E4M3 // float8 e4m3fn codes, one per byte (FP8 hidden states and canonical weights)
	E8M0    // float8 e8m0fnu codes, one per byte (MXFP4 ue8m0 scales, 2^(s-127))
	// FP4E2M1x2 is float4 e2m1fn x 2 lanes: one byte holds two MXFP4 values (low nibble = even
	// column), so W [E_l, R, C] is a tensor of shape [E_l, R, C/2].
	FP4E2M1x2
)

// lanes is the DLPack lane count (2 for FP4E2M1x2, else 1).
func (d DType) lanes() int {
	if d == FP4E2M1x2 {
		return 2
	}
	return 1
}

func (d DType) dl() (code, bits int) {
	switch d {
	case E8M0:
		return C.kDLFloat8_e8m0fnu, 8
	case FP4E2M1x2:
		return C.kDLFloat4_e2m1fn, 4
	case BF16:
		return C.kDLBfloat, 16
	case F32:
		return C.kDLFloat, 32
	case I32:
		return C.kDLInt, 32
	case FP8E4M3:
		return C.kDLFloat8_e4m3fn, 8
	}
	return C.kDLUInt, 8
}

// Size is the element size in bytes.
func (d DType) Size() int { _, b := d.dl(); return b * d.lanes() / 8 }

// Tensor is a borrowed, compact row-major tensor: a HostBuffer or a device pointer.
type Tensor struct {
	host       *HostBuffer
	device     uintptr
	deviceType int
	deviceID   int
	DType      DType
	Shape      []int64
}

func elems(shape []int64) int64 {
	n := int64(1)
	for _, s := range shape {
		n *= s
	}
	return n
}

// NewHostTensor allocates a zeroed host tensor.
func NewHostTensor(d DType, shape ...int64) *Tensor {
	return &Tensor{host: NewHostBuffer(int(elems(shape)) * d.Size()), deviceType: deviceCPU,
		DType: d, Shape: append([]int64(nil), shape...)}
}

// HostTensor views a HostBuffer as a tensor (the buffer must be large enough).
func HostTensor(b *HostBuffer, d DType, shape ...int64) (*Tensor, error) {
	if need := elems(shape) * int64(d.Size()); int64(b.Len()) < need {
		return nil, &Error{Status: StatusInvalidArgument,
			Message: fmt.Sprintf("tensor: buffer holds %d bytes, shape %v needs %d", b.Len(), shape, need)}
	}
	return &Tensor{host: b, deviceType: deviceCPU, DType: d, Shape: append([]int64(nil), shape...)}, nil
}

// DeviceTensor wraps a CUDA device pointer; the caller keeps the memory valid.
func DeviceTensor(ptr uintptr, deviceID int, d DType, shape ...int64) *Tensor {
	return &Tensor{device: ptr, deviceType: deviceCUDA, deviceID: deviceID, DType: d,
		Shape: append([]int64(nil), shape...)}
}

// Buffer is the host buffer of a host tensor (nil for a device tensor).
func (t *Tensor) Buffer() *HostBuffer { return t.host }

// arena holds one call: the moe_go_call and DLTensors in C memory (freed after the call) and
// the Go pointers that the dispatcher writes into them for the call's duration.
type arena struct {
	ptrs []unsafe.Pointer
	c    *C.moe_go_call
	gop  [C.MOE_GO_SLOTS]unsafe.Pointer
	ns   int
	err  error // a host argument that cannot be passed (closed buffer): the call is not made
}

func newArena(op C.int32_t) *arena {
	a := &arena{}
	a.c = (*C.moe_go_call)(a.alloc(int(unsafe.Sizeof(C.moe_go_call{}))))
	a.c.op = op
	return a
}

func (a *arena) alloc(n int) unsafe.Pointer {
	p := C.calloc(1, C.size_t(n))
	if p == nil {
		panic("moe: out of host memory")
	}
	a.ptrs = append(a.ptrs, p)
	return p
}

func (a *arena) free() {
	for _, p := range a.ptrs {
		C.free(p)
	}
	a.ptrs = nil
}

// bind makes the dispatcher write the Go pointer p to *slot (C memory) for the call.
func (a *arena) bind(slot *unsafe.Pointer, p unsafe.Pointer) {
	if p == nil {
		return
	}
	if a.ns == len(a.gop) {
		panic("moe: too many host buffers in one call")
	}
	a.c.slot[a.ns] = slot
	a.gop[a.ns] = p
	a.ns++
}

// run calls the dispatcher on a locked OS thread (see call).
func (a *arena) run() error {
	if a.err != nil {
		return a.err
	}
	g := &a.gop
	return call(func() C.moe_status_t {
		return C.moe_go_call_with(a.c, g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8],
			g[9], g[10], g[11], g[12], g[13], g[14], g[15], g[16], g[17], g[18], g[19], g[20],
			g[21], g[22], g[23])
	})
}

// dl builds the tensor's DLTensor (and its shape) in C memory; nil for a nil tensor. Host
// data is bound for the call.
func (a *arena) dl(t *Tensor) *C.DLTensor {
	if t == nil {
		return nil
	}
	d := (*C.DLTensor)(a.alloc(int(unsafe.Sizeof(C.DLTensor{}))))
	if len(t.Shape) > 0 {
		shape := unsafe.Slice((*C.int64_t)(a.alloc(8*len(t.Shape))), len(t.Shape))
		for i, s := range t.Shape {
			shape[i] = C.int64_t(s)
		}
		d.shape = &shape[0]
	}
	if t.host != nil {
		if t.host.buf == nil && a.err == nil {
			a.err = &Error{Status: StatusInvalidArgument,
				Message: fmt.Sprintf("tensor %v %v: its HostBuffer is closed", t.DType, t.Shape)}
		}
		a.bind(&d.data, t.host.ptr())
	} else {
		d.data = C.moe_go_ptr(C.uintptr_t(t.device))
	}
	d.device.device_type = C.DLDeviceType(t.deviceType)
	d.device.device_id = C.int32_t(t.deviceID)
	d.ndim = C.int32_t(len(t.Shape))
	code, bits := t.DType.dl()
	d.dtype.code = C.uint8_t(code)
	d.dtype.bits = C.uint8_t(bits)
	d.dtype.lanes = C.uint16_t(t.DType.lanes())
	return d
}

// ---- problem, options, configs -------------------------------------------------------------

// Problem is the shape of one MoE layer call. LocalNumExperts 0 means NumExperts.
type Problem struct {
	NumExperts        int
	NumTokens         int64
	TopK              int
	HiddenSize        int64
	IntermediateSize  int64
	LocalExpertOffset int
	LocalNumExperts   int
}

func (p *Problem) c() *C.moe_problem {
	var r C.moe_problem
	C.moe_problem_init(&r, C.MOE_PROBLEM_VERSION)
	r.num_experts = C.int32_t(p.NumExperts)
	r.num_tokens = C.int64_t(p.NumTokens)
	r.top_k = C.int32_t(p.TopK)
	r.local_expert_offset = C.int32_t(p.LocalExpertOffset)
	r.local_num_experts = C.int32_t(p.LocalNumExperts)
	r.hidden_size = C.int64_t(p.HiddenSize)
	r.intermediate_size = C.int64_t(p.IntermediateSize)
	return &r
}

// Options are the runner options.
type Options struct {
	Backend    int // BackendAuto (default with DefaultOptions), BackendCPU, BackendCUDA
	DeviceID   int
	SMVersion  int // 0 = ask the device
	Activation int // ActivationSwiGLU ...
	NumThreads int // CPU workers, 0 = one per core
	// Dtype is the activation and weight dtype at once: DtypeBF16 (the zero value) or
	// DtypeFP8E4M3; ActivationDtype and WeightDtype, when non-zero, override it.
	Dtype int
	// ActivationDtype is DtypeFP8E4M3 for FP8 activations (e.g. MXFP4 W4A8); 0 = Dtype.
	ActivationDtype int
	// WeightDtype is DtypeFP8E4M3 or DtypeMXFP4 (W4A16 / W4A8 with ScalingMX); 0 = Dtype.
	WeightDtype int
	// ScalingMode is ScalingNone (the zero value, BF16), ScalingPerTensor or ScalingBlock (FP8;
	// docs/formats.md "FP8"), ScalingMX (MXFP4; docs/formats.md "MXFP4").
	ScalingMode int
}

// orDefault is v, or def when v is 0.
func orDefault(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// DefaultOptions are the library defaults (AUTO backend, SwiGLU).
func DefaultOptions() Options {
	return Options{Backend: BackendAuto, Activation: ActivationSwiGLU}
}

// ConfigInfo describes a kernel config.
type ConfigInfo struct {
	Index, Tile, CtaTile, ClusterSize, Gemm1BlockM, Gemm2BlockM, BlockK, Stages, SMVersion int
	Name                                                                                   string
}

// ---- runner ----------------------------------------------------------------------------------

// Runner is a moe_runner, safe for concurrent use by several goroutines (each call with its own
// workspace and plan). Close destroys it once the calls in flight on it have returned (it waits
// for them: calls hold a read lock, Close the write lock) and is idempotent and safe to call
// from several goroutines; every call after Close returns the library's error for a NULL
// runner. A finalizer closes a runner that is dropped unclosed.
type Runner struct {
	mu  sync.RWMutex
	ptr *C.moe_runner
}

// NewRunner creates a runner.
func NewRunner(o Options) (*Runner, error) {
	var opts C.moe_runner_options
	var r *C.moe_runner
	err := call(func() C.moe_status_t {
		if st := C.moe_runner_options_init(&opts, C.MOE_RUNNER_OPTIONS_VERSION); st != 0 {
			return st
		}
		opts.backend = C.int32_t(o.Backend)
		opts.device_id = C.int32_t(o.DeviceID)
		opts.sm_version = C.int32_t(o.SMVersion)
		opts.activation = C.int32_t(o.Activation)
		opts.num_threads = C.int32_t(o.NumThreads)
		opts.activation_dtype = C.int32_t(orDefault(o.ActivationDtype, o.Dtype))
		opts.weight_dtype = C.int32_t(orDefault(o.WeightDtype, o.Dtype))
		opts.scaling_mode = C.int32_t(o.ScalingMode)
		return C.moe_runner_create(&opts, &r)
	})
	if err != nil {
		return nil, err
	}
	run := &Runner{ptr: r}
	runtime.SetFinalizer(run, (*Runner).Close)
	return run, nil
}

// Close destroys the runner after the calls in flight on it return (idempotent).
func (r *Runner) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ptr != nil {
		C.moe_runner_destroy(r.ptr)
		r.ptr = nil
		runtime.SetFinalizer(r, nil)
	}
}

// use runs f with the handle under the read lock, so that Close cannot destroy it meanwhile.
// The handle is nil after Close (the library then reports the NULL runner). f must not call
// another method of the runner (a pending Close would block the nested read lock).
func (r *Runner) use(f func(h *C.moe_runner) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return f(r.ptr)
}

// Backend is BackendCPU or BackendCUDA.
func (r *Runner) Backend() (int, error) {
	var b C.int32_t
	err := r.use(func(h *C.moe_runner) error {
		return call(func() C.moe_status_t { return C.moe_runner_get_backend(h, &b) })
	})
	return int(b), err
}

// NumConfigs is the catalogue size.
func (r *Runner) NumConfigs() (int, error) {
	var n C.int32_t
	err := r.use(func(h *C.moe_runner) error {
		return call(func() C.moe_status_t { return C.moe_runner_get_num_configs(h, &n) })
	})
	return int(n), err
}

// ValidConfigs are the configs valid for the problem, best first.
func (r *Runner) ValidConfigs(p Problem) ([]int, error) {
	cp := p.c()
	var cfgs []C.int32_t
	var n C.int32_t
	err := r.use(func(h *C.moe_runner) error {
		if err := call(func() C.moe_status_t {
			return C.moe_runner_get_valid_configs(h, cp, nil, 0, &n)
		}); err != nil || n == 0 {
			return err
		}
		cfgs = make([]C.int32_t, int(n))
		return call(func() C.moe_status_t {
			return C.moe_runner_get_valid_configs(h, cp, &cfgs[0], n, &n)
		})
	})
	if err != nil || n == 0 {
		return nil, err
	}
	out := make([]int, 0, int(n))
	for i := 0; i < int(n) && i < len(cfgs); i++ {
		out = append(out, int(cfgs[i]))
	}
	return out, nil
}

// DefaultConfig is the default (best-first) config of the problem.
func (r *Runner) DefaultConfig(p Problem) (int, error) {
	cp := p.c()
	var c C.int32_t
	err := r.use(func(h *C.moe_runner) error {
		return call(func() C.moe_status_t { return C.moe_runner_get_default_config(h, cp, &c) })
	})
	return int(c), err
}

// DescribeConfig describes a config.
func (r *Runner) DescribeConfig(config int) (ConfigInfo, error) {
	var i C.moe_config_info
	err := r.use(func(h *C.moe_runner) error {
		return call(func() C.moe_status_t {
			return C.moe_runner_describe_config(h, C.int32_t(config), &i)
		})
	})
	if err != nil {
		return ConfigInfo{}, err
	}
	return ConfigInfo{int(i.index), int(i.tile), int(i.cta_tile), int(i.cluster_size),
		int(i.gemm1_block_m), int(i.gemm2_block_m), int(i.block_k), int(i.stages),
		int(i.sm_version), C.GoString(&i.name[0])}, nil
}

// ClusterSize is the cluster size C of a config.
func (r *Runner) ClusterSize(config int) (int, error) {
	var c C.int32_t
	err := r.use(func(h *C.moe_runner) error {
		return call(func() C.moe_status_t {
			return C.moe_runner_get_cluster_size(h, C.int32_t(config), &c)
		})
	})
	return int(c), err
}

// WorkspaceSize is the workspace bytes for the problem (NumTokens = T_max) and config.
func (r *Runner) WorkspaceSize(p Problem, config int) (int, error) {
	cp := p.c()
	var b C.size_t
	err := r.use(func(h *C.moe_runner) error {
		return call(func() C.moe_status_t {
			return C.moe_runner_get_workspace_size(h, cp, C.int32_t(config), &b)
		})
	})
	return int(b), err
}

// WeightsPreparedSize is the byte size of a prepared weight tensor.
func (r *Runner) WeightsPreparedSize(p Problem, which int) (int, error) {
	cp := p.c()
	var b C.size_t
	err := r.use(func(h *C.moe_runner) error {
		return call(func() C.moe_status_t {
			return C.moe_weights_prepared_size(h, cp, C.int32_t(which), &b)
		})
	})
	return int(b), err
}

// PrepareWeights converts canonical bf16 weights into the prepared u8 tensor on a stream
// (0 = NULL; required on the CPU backend).
func (r *Runner) PrepareWeights(p Problem, which int, canonical, prepared *Tensor, stream uintptr) error {
	a := newArena(C.MOE_GO_WEIGHTS_PREPARE)
	defer a.free()
	a.c.problem = *p.c()
	a.c.which = C.int32_t(which)
	a.c.canonical, a.c.prepared = a.dl(canonical), a.dl(prepared)
	a.c.stream = C.moe_go_stream(C.uintptr_t(stream))
	err := r.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	runtime.KeepAlive(canonical)
	runtime.KeepAlive(prepared)
	return err
}

// PrepareWeightsScaled prepares FP8 weights (moe_weights_prepare_scaled): e4m3 canonical
// weights [E_l, R, C] with their fp32 scales ([E_l] per tensor, [E_l, R/128, C/128] block),
// copied as they are; or bf16 weights with canonicalScales nil, quantized by the library.
// MXFP4 runners: the packed e2m1 blocks [E_l, R, C/2] (U8 or FP4E2M1x2) with their ue8m0
// scales [E_l, R, C/32] (U8 or E8M0, required); which may be WeightsGemm1GateUpInterleaved.
func (r *Runner) PrepareWeightsScaled(p Problem, which int, canonical, canonicalScales, prepared *Tensor, stream uintptr) error {
	a := newArena(C.MOE_GO_WEIGHTS_PREPARE_SCALED)
	defer a.free()
	a.c.problem = *p.c()
	a.c.which = C.int32_t(which)
	a.c.canonical, a.c.prepared = a.dl(canonical), a.dl(prepared)
	a.c.canonical_scales = a.dl(canonicalScales)
	a.c.stream = C.moe_go_stream(C.uintptr_t(stream))
	err := r.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	runtime.KeepAlive(canonical)
	runtime.KeepAlive(canonicalScales)
	runtime.KeepAlive(prepared)
	return err
}

// PrepareWeightsHost prepares host canonical weights into a new host u8 tensor.
func (r *Runner) PrepareWeightsHost(p Problem, which int, canonical *Tensor) (*Tensor, error) {
	n, err := r.WeightsPreparedSize(p, which)
	if err != nil {
		return nil, err
	}
	out := NewHostTensor(U8, int64(n))
	if err := r.PrepareWeights(p, which, canonical, out, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// RoutingArgs are the routing inputs: Logits, or TopkIDs + TopkWeights, or TopkPacked.
type RoutingArgs struct {
	Method              int // RoutingRenormalize by default (NewRoutingArgs)
	Logits, Bias        *Tensor
	TopkIDs             *Tensor
	TopkWeights         *Tensor
	TopkPacked          *Tensor
	NGroup, TopkGroup   int
	RoutedScalingFactor float32
	DisablePDL          bool
}

// NewRoutingArgs has the library defaults (Renormalize, NGroup 1, scale 1).
func NewRoutingArgs() *RoutingArgs {
	return &RoutingArgs{Method: RoutingRenormalize, NGroup: 1, RoutedScalingFactor: 1}
}

// fill writes the arguments into r (C memory) with their DLTensors in the arena.
func (ra *RoutingArgs) fill(a *arena, r *C.moe_routing_args) {
	C.moe_routing_args_init(r, C.MOE_ROUTING_ARGS_VERSION)
	r.method = C.int32_t(ra.Method)
	r.logits = a.dl(ra.Logits)
	r.bias = a.dl(ra.Bias)
	r.topk_ids = a.dl(ra.TopkIDs)
	r.topk_weights = a.dl(ra.TopkWeights)
	r.topk_packed = a.dl(ra.TopkPacked)
	r.n_group = C.int32_t(ra.NGroup)
	r.topk_group = C.int32_t(ra.TopkGroup)
	r.routed_scaling_factor = C.float(ra.RoutedScalingFactor)
	if ra.DisablePDL {
		r.enable_pdl = 0
	}
}

// RunArgs are the inputs and outputs of the GEMM stages.
type RunArgs struct {
	HiddenStates, Gemm1Weights, Gemm2Weights *Tensor
	Gemm1Bias, Gemm2Bias                     *Tensor
	Gemm1Alpha, Gemm1Beta, Gemm1ClampLimit   *Tensor
	Output, PermutedOutput                   *Tensor
	NoFinalize                               bool // write PermutedOutput instead of Output
	DisablePDL                               bool
	// FP8 scales (docs/formats.md "FP8"): HiddenStatesScale fp32 [T, H/128] with e4m3 hidden
	// states in BLOCK mode; Gemm1InputScale, Gemm2InputScale fp32 [1], the static activation
	// scales of PER_TENSOR mode (required there). nil where the mode or input takes none.
	HiddenStatesScale, Gemm1InputScale, Gemm2InputScale *Tensor
}

// fill writes the arguments into r (C memory) with their DLTensors in the arena.
func (ra *RunArgs) fill(a *arena, r *C.moe_run_args) {
	C.moe_run_args_init(r, C.MOE_RUN_ARGS_VERSION)
	if ra.NoFinalize {
		r.do_finalize = 0
	}
	r.hidden_states = a.dl(ra.HiddenStates)
	r.gemm1_weights = a.dl(ra.Gemm1Weights)
	r.gemm2_weights = a.dl(ra.Gemm2Weights)
	r.gemm1_bias = a.dl(ra.Gemm1Bias)
	r.gemm2_bias = a.dl(ra.Gemm2Bias)
	r.gemm1_alpha = a.dl(ra.Gemm1Alpha)
	r.gemm1_beta = a.dl(ra.Gemm1Beta)
	r.gemm1_clamp_limit = a.dl(ra.Gemm1ClampLimit)
	r.output = a.dl(ra.Output)
	r.permuted_output = a.dl(ra.PermutedOutput)
	r.hidden_states_scale = a.dl(ra.HiddenStatesScale)
	r.gemm1_input_scale = a.dl(ra.Gemm1InputScale)
	r.gemm2_input_scale = a.dl(ra.Gemm2InputScale)
	if ra.DisablePDL {
		r.enable_pdl = 0
	}
}

// Plan is a prepared routing plan tied to its runner and workspace.
type Plan struct {
	raw     C.moe_plan // plain data (no pointers): copied into each call
	runner  *Runner
	ws      *HostBuffer
	wsPtr   uintptr
	wsBytes int
	stream  uintptr
}

// bindWorkspace sets the call's workspace: the host buffer (bound for the call) or the
// device pointer.
func (pl *Plan) bindWorkspace(a *arena) {
	if pl.ws != nil {
		if pl.ws.buf == nil && a.err == nil {
			a.err = &Error{Status: StatusInvalidArgument, Message: "workspace: its HostBuffer is closed"}
		}
		a.bind(&a.c.workspace, pl.ws.ptr())
	} else {
		a.c.workspace = C.moe_go_ptr(C.uintptr_t(pl.wsPtr))
	}
	a.c.workspace_bytes = C.size_t(pl.wsBytes)
	a.c.plan = pl.raw
	a.c.stream = C.moe_go_stream(C.uintptr_t(pl.stream))
}

// Config is the config the plan was prepared with.
func (pl *Plan) Config() int { return int(pl.raw.config) }

// Tile is the cluster tile.
func (pl *Plan) Tile() int { return int(pl.raw.tile) }

// ClusterSize is C.
func (pl *Plan) ClusterSize() int { return int(pl.raw.cluster_size) }

// NumTokens is T.
func (pl *Plan) NumTokens() int64 { return int64(pl.raw.num_tokens) }

// MaxPaddedRows is the capacity of permuted-space buffers.
func (pl *Plan) MaxPaddedRows() int64 { return int64(pl.raw.max_padded_rows) }

// ReadCount is the element count of a plan table; synchronises the stream.
func (pl *Plan) ReadCount(table int) (int, error) {
	a := newArena(C.MOE_GO_PLAN_READ_COUNT)
	defer a.free()
	pl.bindWorkspace(a)
	a.c.table = C.int32_t(table)
	err := pl.runner.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	runtime.KeepAlive(pl)
	return int(a.c.elements), err
}

// read copies a table of elem-byte elements into a new host buffer.
func (pl *Plan) read(table, elem int) (*HostBuffer, int, error) {
	n, err := pl.ReadCount(table)
	if err != nil {
		return nil, 0, err
	}
	b := NewHostBuffer(n * elem)
	a := newArena(C.MOE_GO_PLAN_READ)
	defer a.free()
	pl.bindWorkspace(a)
	a.c.table = C.int32_t(table)
	a.bind(&a.c.dst, b.ptr())
	a.c.dst_bytes = C.size_t(n * elem)
	err = pl.runner.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	runtime.KeepAlive(pl)
	return b, n, err
}

// ReadInt32 copies an int32 plan table; synchronises the stream.
func (pl *Plan) ReadInt32(table int) ([]int32, error) {
	b, n, err := pl.read(table, 4)
	if err != nil {
		return nil, err
	}
	return b.Int32s()[:n:n], nil
}

// ReadWeights copies the bf16 expert weights (bit patterns); synchronises the stream.
func (pl *Plan) ReadWeights() ([]uint16, error) {
	b, n, err := pl.read(PlanExpertWeights, 2)
	if err != nil {
		return nil, err
	}
	return b.Uint16s()[:n:n], nil
}

// PrepareRouting routes the problem for a config into a host workspace (CPU backend).
func (r *Runner) PrepareRouting(p Problem, config int, args *RoutingArgs, ws *HostBuffer) (*Plan, error) {
	pl := &Plan{runner: r, ws: ws, wsBytes: ws.Len()}
	return pl, r.prepare(p, config, args, pl)
}

// PrepareRoutingDevice routes into a device workspace on a stream (CUDA backend).
func (r *Runner) PrepareRoutingDevice(p Problem, config int, args *RoutingArgs, ws uintptr, wsBytes int, stream uintptr) (*Plan, error) {
	pl := &Plan{runner: r, wsPtr: ws, wsBytes: wsBytes, stream: stream}
	return pl, r.prepare(p, config, args, pl)
}

func (r *Runner) prepare(p Problem, config int, args *RoutingArgs, pl *Plan) error {
	a := newArena(C.MOE_GO_ROUTING_PREPARE)
	defer a.free()
	a.c.problem = *p.c()
	a.c.config = C.int32_t(config)
	args.fill(a, &a.c.routing)
	pl.bindWorkspace(a)
	C.moe_plan_init(&a.c.plan, C.MOE_PLAN_VERSION)
	err := r.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	pl.raw = a.c.plan
	runtime.KeepAlive(args)
	runtime.KeepAlive(pl)
	return err
}

// Run runs GEMM1, GEMM2 and finalize on a prepared plan (on the plan's stream).
func (r *Runner) Run(p Problem, config int, plan *Plan, args *RunArgs) error {
	a := newArena(C.MOE_GO_RUN)
	defer a.free()
	a.c.problem = *p.c()
	a.c.config = C.int32_t(config)
	args.fill(a, &a.c.run)
	plan.bindWorkspace(a)
	err := r.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	runtime.KeepAlive(args)
	runtime.KeepAlive(plan)
	return err
}

// GroupedArgs are the inputs and outputs of the grouped run (C moe_runner_run_grouped;
// docs/ep.md): tokens a dispatcher already grouped by local expert. LayoutContiguous:
// HiddenStates [N, H], the rows of local expert e after those of e-1, Capacity 0; LayoutMasked:
// HiddenStates [E_l, Capacity, H], count[e] valid rows per expert. ExpertCounts is int32 [E_l]
// on the runner's device. The output rows are unweighted (no routing, no finalize); rows past
// the counts are not written.
type GroupedArgs struct {
	Layout                                 int   // LayoutContiguous (the zero value) or LayoutMasked
	Capacity                               int64 // LayoutMasked: rows per expert; contiguous: 0
	HiddenStates, ExpertCounts             *Tensor
	Gemm1Weights, Gemm2Weights             *Tensor
	Gemm1Bias, Gemm2Bias                   *Tensor
	Gemm1Alpha, Gemm1Beta, Gemm1ClampLimit *Tensor
	Output                                 *Tensor // bf16, the shape of HiddenStates
	DisablePDL                             bool
	// FP8 scales (moe_grouped_args version 3), as RunArgs': HiddenStatesScale fp32 [N, H/128]
	// (masked: [E_l*Capacity, H/128]) with e4m3 HiddenStates in BLOCK mode; Gemm1InputScale,
	// Gemm2InputScale fp32 [1], the static activation scales of PER_TENSOR mode (required
	// there). nil where the mode or input takes none. FP8 grouped runs: CPU and CUDA backends.
	HiddenStatesScale, Gemm1InputScale, Gemm2InputScale *Tensor
}

// fill writes the arguments into g (C memory) with their DLTensors in the arena.
func (ga *GroupedArgs) fill(a *arena, g *C.moe_grouped_args) {
	C.moe_grouped_args_init(g, C.MOE_GROUPED_ARGS_VERSION)
	g.layout = C.int32_t(ga.Layout)
	g.capacity = C.int64_t(ga.Capacity)
	g.hidden_states = a.dl(ga.HiddenStates)
	g.expert_counts = a.dl(ga.ExpertCounts)
	g.gemm1_weights = a.dl(ga.Gemm1Weights)
	g.gemm2_weights = a.dl(ga.Gemm2Weights)
	g.gemm1_bias = a.dl(ga.Gemm1Bias)
	g.gemm2_bias = a.dl(ga.Gemm2Bias)
	g.gemm1_alpha = a.dl(ga.Gemm1Alpha)
	g.gemm1_beta = a.dl(ga.Gemm1Beta)
	g.gemm1_clamp_limit = a.dl(ga.Gemm1ClampLimit)
	g.output = a.dl(ga.Output)
	g.hidden_states_scale = a.dl(ga.HiddenStatesScale)
	g.gemm1_input_scale = a.dl(ga.Gemm1InputScale)
	g.gemm2_input_scale = a.dl(ga.Gemm2InputScale)
	if ga.DisablePDL {
		g.enable_pdl = 0
	}
}

// GroupedWorkspaceSize is the workspace bytes of the grouped run for the problem (NumTokens =
// the largest N; masked: E_l * capacity) and config.
func (r *Runner) GroupedWorkspaceSize(p Problem, config int) (int, error) {
	cp := p.c()
	var b C.size_t
	err := r.use(func(h *C.moe_runner) error {
		return call(func() C.moe_status_t {
			return C.moe_runner_get_grouped_workspace_size(h, cp, C.int32_t(config), &b)
		})
	})
	return int(b), err
}

// RunGrouped runs GEMM1 (+activation) and GEMM2 on tokens already grouped by local expert with
// host tensors (CPU backend). With ws nil a host workspace is allocated; with args.Output nil a
// zeroed host bf16 output in the shape of args.HiddenStates is allocated. Returns the output
// tensor. args is not modified.
func (r *Runner) RunGrouped(p Problem, config int, args *GroupedArgs, ws *HostBuffer) (*Tensor, error) {
	if ws == nil {
		n, err := r.GroupedWorkspaceSize(p, config)
		if err != nil {
			return nil, err
		}
		ws = NewHostBuffer(n)
	}
	if ws.buf == nil {
		return nil, &Error{Status: StatusInvalidArgument, Message: "workspace: its HostBuffer is closed"}
	}
	g := *args
	if g.Output == nil && g.HiddenStates != nil {
		g.Output = NewHostTensor(BF16, g.HiddenStates.Shape...)
	}
	a := newArena(C.MOE_GO_RUN_GROUPED)
	defer a.free()
	a.bind(&a.c.workspace, ws.ptr())
	a.c.workspace_bytes = C.size_t(ws.Len())
	err := r.runGrouped(a, p, config, &g)
	runtime.KeepAlive(ws)
	if err != nil {
		return nil, err
	}
	return g.Output, nil
}

// RunGroupedDevice is RunGrouped with device tensors, a device workspace and a stream (CUDA
// backend); the tensors stay valid until the stream work completes.
func (r *Runner) RunGroupedDevice(p Problem, config int, args *GroupedArgs, ws uintptr, wsBytes int, stream uintptr) error {
	a := newArena(C.MOE_GO_RUN_GROUPED)
	defer a.free()
	a.c.workspace = C.moe_go_ptr(C.uintptr_t(ws))
	a.c.workspace_bytes = C.size_t(wsBytes)
	a.c.stream = C.moe_go_stream(C.uintptr_t(stream))
	return r.runGrouped(a, p, config, args)
}

func (r *Runner) runGrouped(a *arena, p Problem, config int, args *GroupedArgs) error {
	a.c.problem = *p.c()
	a.c.config = C.int32_t(config)
	args.fill(a, &a.c.grouped)
	err := r.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	runtime.KeepAlive(args)
	return err
}

// Forward is the one-shot forward with the default config and a host workspace; with
// args.Output nil a host bf16 [T, H] output is allocated (Go memory, owned by the caller like
// any slice). Returns the output tensor. args is not modified.
func (r *Runner) Forward(p Problem, routing *RoutingArgs, args *RunArgs, ws *HostBuffer) (*Tensor, error) {
	if ws == nil {
		cfg, err := r.DefaultConfig(p)
		if err != nil {
			return nil, err
		}
		n, err := r.WorkspaceSize(p, cfg)
		if err != nil {
			return nil, err
		}
		ws = NewHostBuffer(n)
	}
	run := *args
	if run.Output == nil {
		run.Output = NewHostTensor(BF16, p.NumTokens, p.HiddenSize)
	}
	a := newArena(C.MOE_GO_FORWARD)
	defer a.free()
	a.c.problem = *p.c()
	routing.fill(a, &a.c.routing)
	run.fill(a, &a.c.run)
	if ws.buf == nil {
		return nil, &Error{Status: StatusInvalidArgument, Message: "workspace: its HostBuffer is closed"}
	}
	a.bind(&a.c.workspace, ws.ptr())
	a.c.workspace_bytes = C.size_t(ws.Len())
	err := r.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	runtime.KeepAlive(routing)
	runtime.KeepAlive(&run)
	runtime.KeepAlive(ws)
	if err != nil {
		return nil, err
	}
	return run.Output, nil
}

// Tuned is one timed config of Autotune.
type Tuned struct {
	Config int
	TimeUs float32
}

// Autotune times every valid config (moe_runner_autotune: prepare + run, median of iterations)
// and returns them fastest first. With ws nil a host workspace large enough for every valid
// config is allocated; with args.Output nil a host output is allocated. Synchronises.
func (r *Runner) Autotune(p Problem, routing *RoutingArgs, args *RunArgs, ws *HostBuffer, iterations int) ([]Tuned, error) {
	cfgs, err := r.ValidConfigs(p)
	if err != nil {
		return nil, err
	}
	if ws == nil {
		n := 0
		for _, c := range cfgs {
			w, err := r.WorkspaceSize(p, c)
			if err != nil {
				return nil, err
			}
			if w > n {
				n = w
			}
		}
		ws = NewHostBuffer(n)
	}
	run := *args
	if run.Output == nil {
		run.Output = NewHostTensor(BF16, p.NumTokens, p.HiddenSize)
	}
	capacity := len(cfgs)
	a := newArena(C.MOE_GO_AUTOTUNE)
	defer a.free()
	a.c.problem = *p.c()
	routing.fill(a, &a.c.routing)
	run.fill(a, &a.c.run)
	a.bind(&a.c.workspace, ws.ptr())
	a.c.workspace_bytes = C.size_t(ws.Len())
	a.c.iterations = C.int32_t(iterations)
	a.c.configs = (*C.int32_t)(a.alloc(4 * (capacity + 1)))
	a.c.times = (*C.float)(a.alloc(4 * (capacity + 1)))
	a.c.capacity = C.int32_t(capacity)
	err = r.use(func(h *C.moe_runner) error { a.c.runner = h; return a.run() })
	runtime.KeepAlive(routing)
	runtime.KeepAlive(&run)
	runtime.KeepAlive(ws)
	if err != nil {
		return nil, err
	}
	n := int(a.c.count)
	cv := unsafe.Slice(a.c.configs, capacity+1)
	tv := unsafe.Slice(a.c.times, capacity+1)
	res := make([]Tuned, 0, n)
	for i := 0; i < n && i < capacity; i++ {
		res = append(res, Tuned{Config: int(cv[i]), TimeUs: float32(tv[i])})
	}
	return res, nil
}
