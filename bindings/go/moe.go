// Package moe is the Go binding of moe-trtllm, a fused Mixture-of-Experts inference library
// with a C ABI (include/moe_trtllm.h).
//
// Host tensors live in C memory (HostBuffer), never in Go memory, so the library may keep using
// them for as long as the caller says (cgo pointer rules). Device pointers and CUDA streams are
// uintptr. Every failure is an *Error with the library's status and message, read on the same
// OS thread as the failing call.
package moe

/*
#cgo pkg-config: moe_trtllm
#include <stdlib.h>
#include <string.h>
#include "moe_trtllm.h"

// uintptr -> pointer conversions happen in C so that go vet sees no unsafe.Pointer(uintptr).
static inline void *moe_go_ptr(uintptr_t p) { return (void *)p; }
static inline moe_cuda_stream_t moe_go_stream(uintptr_t p) { return (moe_cuda_stream_t)p; }
static inline void *moe_go_aligned(size_t n) {
  size_t m = (n + 255) / 256 * 256;
  void *p = aligned_alloc(256, m ? m : 256);
  if (p) memset(p, 0, m ? m : 256);
  return p;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"
)

// Status codes.
const (
	StatusSuccess               = 0
	StatusInvalidArgument       = 1
	StatusNotSupported          = 2
	StatusOutOfMemory           = 3
	StatusCudaError             = 4
	StatusNoDevice              = 5
	StatusInsufficientWorkspace = 6
	StatusVersionMismatch       = 7
	StatusInvalidConfig         = 8
	StatusInternal              = 99
)

// Backends, routing methods, activations, weight kinds and plan tables.
const (
	BackendAuto = -1
	BackendCPU  = 0
	BackendCUDA = 1

	RoutingDefault          = 0
	RoutingRenormalize      = 1
	RoutingDeepSeekV3       = 2
	RoutingLlama4           = 3
	RoutingRenormalizeNaive = 4
	RoutingTopK             = 5

	ActivationSwiGLU   = 3
	ActivationGeGLU    = 4
	ActivationReLU2    = 6
	ActivationIdentity = 7

	WeightsGemm1 = 1
	WeightsGemm2 = 2

	PlanTopkIDs            = 0
	PlanExpertWeights      = 1
	PlanExpandedToPermuted = 2
	PlanPermutedToToken    = 3
	PlanPermutedToExpanded = 4
	PlanCtaToBatch         = 5
	PlanCtaToMnLimit       = 6
	PlanNumCtas            = 7
	PlanPermutedSize       = 8
	PlanExpertCounts       = 9
	deviceCPU              = 1
	deviceCUDA             = 2
)

// Error is a failed library call: its status and the library's message.
type Error struct {
	Status  int
	Message string
}

// StatusName is the name of a status code ("INVALID_ARGUMENT").
func StatusName(status int) string {
	switch status {
	case 0:
		return "SUCCESS"
	case 1:
		return "INVALID_ARGUMENT"
	case 2:
		return "NOT_SUPPORTED"
	case 3:
		return "OUT_OF_MEMORY"
	case 4:
		return "CUDA_ERROR"
	case 5:
		return "NO_DEVICE"
	case 6:
		return "INSUFFICIENT_WORKSPACE"
	case 7:
		return "VERSION_MISMATCH"
	case 8:
		return "INVALID_CONFIG"
	case 99:
		return "INTERNAL"
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

// HostBuffer is zeroed, 256-byte aligned host memory allocated in C (so the library may use
// it without Go pointer restrictions). Close frees it; a finalizer is a safety net.
type HostBuffer struct {
	ptr unsafe.Pointer
	n   int
}

// NewHostBuffer allocates n zero bytes.
func NewHostBuffer(n int) *HostBuffer {
	if n < 0 {
		panic("moe: negative buffer size")
	}
	p := C.moe_go_aligned(C.size_t(n))
	if p == nil {
		panic("moe: out of host memory")
	}
	b := &HostBuffer{ptr: p, n: n}
	runtime.SetFinalizer(b, (*HostBuffer).Close)
	return b
}

// Close frees the memory (idempotent).
func (b *HostBuffer) Close() {
	if b.ptr != nil {
		C.free(b.ptr)
		b.ptr = nil
		b.n = 0
		runtime.SetFinalizer(b, nil)
	}
}

// Len is the size in bytes.
func (b *HostBuffer) Len() int { return b.n }

// Bytes is a view of the memory (valid until Close).
func (b *HostBuffer) Bytes() []byte { return unsafe.Slice((*byte)(b.ptr), b.n) }

// Uint16s views the memory as uint16 (bf16 bit patterns).
func (b *HostBuffer) Uint16s() []uint16 { return unsafe.Slice((*uint16)(b.ptr), b.n/2) }

// Float32s views the memory as float32.
func (b *HostBuffer) Float32s() []float32 { return unsafe.Slice((*float32)(b.ptr), b.n/4) }

// Int32s views the memory as int32.
func (b *HostBuffer) Int32s() []int32 { return unsafe.Slice((*int32)(b.ptr), b.n/4) }

// ---- tensors -------------------------------------------------------------------------------

// DType is an element type.
type DType int

// Element types.
const (
	BF16 DType = iota
	F32
	I32
	U8
)

func (d DType) dl() (code, bits int) {
	switch d {
	case BF16:
		return 4, 16
	case F32:
		return 2, 32
	case I32:
		return 0, 32
	}
	return 1, 8
}

// Size is the element size in bytes.
func (d DType) Size() int { _, b := d.dl(); return b / 8 }

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

// arena holds the C memory of one call's descriptors.
type arena struct{ ptrs []unsafe.Pointer }

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

// dl builds the tensor's DLTensor (and its shape) in C memory; nil for a nil tensor.
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
		d.data = t.host.ptr
	} else {
		d.data = C.moe_go_ptr(C.uintptr_t(t.device))
	}
	d.device.device_type = C.DLDeviceType(t.deviceType)
	d.device.device_id = C.int32_t(t.deviceID)
	d.ndim = C.int32_t(len(t.Shape))
	code, bits := t.DType.dl()
	d.dtype.code = C.uint8_t(code)
	d.dtype.bits = C.uint8_t(bits)
	d.dtype.lanes = 1
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

// Runner is a moe_runner. Close it when done (idempotent); a finalizer is a safety net. After
// Close every call returns the library's error for a NULL runner.
type Runner struct {
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
		return C.moe_runner_create(&opts, &r)
	})
	if err != nil {
		return nil, err
	}
	run := &Runner{ptr: r}
	runtime.SetFinalizer(run, (*Runner).Close)
	return run, nil
}

// Close destroys the runner (idempotent).
func (r *Runner) Close() {
	if r.ptr != nil {
		C.moe_runner_destroy(r.ptr)
		r.ptr = nil
		runtime.SetFinalizer(r, nil)
	}
}

// Backend is BackendCPU or BackendCUDA.
func (r *Runner) Backend() (int, error) {
	var b C.int32_t
	err := call(func() C.moe_status_t { return C.moe_runner_get_backend(r.ptr, &b) })
	runtime.KeepAlive(r)
	return int(b), err
}

// NumConfigs is the catalogue size.
func (r *Runner) NumConfigs() (int, error) {
	var n C.int32_t
	err := call(func() C.moe_status_t { return C.moe_runner_get_num_configs(r.ptr, &n) })
	runtime.KeepAlive(r)
	return int(n), err
}

// ValidConfigs are the configs valid for the problem, best first.
func (r *Runner) ValidConfigs(p Problem) ([]int, error) {
	cp := p.c()
	var n C.int32_t
	err := call(func() C.moe_status_t {
		return C.moe_runner_get_valid_configs(r.ptr, cp, nil, 0, &n)
	})
	if err != nil || n == 0 {
		runtime.KeepAlive(r)
		return nil, err
	}
	cfgs := make([]C.int32_t, int(n))
	err = call(func() C.moe_status_t {
		return C.moe_runner_get_valid_configs(r.ptr, cp, &cfgs[0], n, &n)
	})
	runtime.KeepAlive(r)
	if err != nil {
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
	err := call(func() C.moe_status_t { return C.moe_runner_get_default_config(r.ptr, cp, &c) })
	runtime.KeepAlive(r)
	return int(c), err
}

// DescribeConfig describes a config.
func (r *Runner) DescribeConfig(config int) (ConfigInfo, error) {
	var i C.moe_config_info
	err := call(func() C.moe_status_t {
		return C.moe_runner_describe_config(r.ptr, C.int32_t(config), &i)
	})
	runtime.KeepAlive(r)
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
	err := call(func() C.moe_status_t {
		return C.moe_runner_get_cluster_size(r.ptr, C.int32_t(config), &c)
	})
	runtime.KeepAlive(r)
	return int(c), err
}

// WorkspaceSize is the workspace bytes for the problem (NumTokens = T_max) and config.
func (r *Runner) WorkspaceSize(p Problem, config int) (int, error) {
	cp := p.c()
	var b C.size_t
	err := call(func() C.moe_status_t {
		return C.moe_runner_get_workspace_size(r.ptr, cp, C.int32_t(config), &b)
	})
	runtime.KeepAlive(r)
	return int(b), err
}

// WeightsPreparedSize is the byte size of a prepared weight tensor.
func (r *Runner) WeightsPreparedSize(p Problem, which int) (int, error) {
	cp := p.c()
	var b C.size_t
	err := call(func() C.moe_status_t {
		return C.moe_weights_prepared_size(r.ptr, cp, C.int32_t(which), &b)
	})
	runtime.KeepAlive(r)
	return int(b), err
}

// PrepareWeights converts canonical bf16 weights into the prepared u8 tensor on a stream
// (0 = NULL; required on the CPU backend).
func (r *Runner) PrepareWeights(p Problem, which int, canonical, prepared *Tensor, stream uintptr) error {
	var a arena
	defer a.free()
	cp, dc, dp := p.c(), a.dl(canonical), a.dl(prepared)
	err := call(func() C.moe_status_t {
		return C.moe_weights_prepare(r.ptr, cp, C.int32_t(which), dc, dp,
			C.moe_go_stream(C.uintptr_t(stream)))
	})
	runtime.KeepAlive(r)
	runtime.KeepAlive(canonical)
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
		out.host.Close()
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

func (ra *RoutingArgs) c(a *arena) *C.moe_routing_args {
	r := (*C.moe_routing_args)(a.alloc(int(unsafe.Sizeof(C.moe_routing_args{}))))
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
	return r
}

// RunArgs are the inputs and outputs of the GEMM stages.
type RunArgs struct {
	HiddenStates, Gemm1Weights, Gemm2Weights *Tensor
	Gemm1Bias, Gemm2Bias                     *Tensor
	Gemm1Alpha, Gemm1Beta, Gemm1ClampLimit   *Tensor
	Output, PermutedOutput                   *Tensor
	NoFinalize                               bool // write PermutedOutput instead of Output
	DisablePDL                               bool
}

func (ra *RunArgs) c(a *arena) *C.moe_run_args {
	r := (*C.moe_run_args)(a.alloc(int(unsafe.Sizeof(C.moe_run_args{}))))
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
	if ra.DisablePDL {
		r.enable_pdl = 0
	}
	return r
}

// Plan is a prepared routing plan tied to its runner and workspace.
type Plan struct {
	raw     *C.moe_plan // Go memory without Go pointers: fine to pass to C
	runner  *Runner
	ws      *HostBuffer
	wsPtr   uintptr
	wsBytes int
	stream  uintptr
}

func (pl *Plan) wsC() unsafe.Pointer {
	if pl.ws != nil {
		return pl.ws.ptr
	}
	return C.moe_go_ptr(C.uintptr_t(pl.wsPtr))
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
	var n C.int64_t
	err := call(func() C.moe_status_t {
		return C.moe_plan_read_count(pl.runner.ptr, pl.raw, pl.wsC(), C.size_t(pl.wsBytes),
			C.int32_t(table), &n, C.moe_go_stream(C.uintptr_t(pl.stream)))
	})
	runtime.KeepAlive(pl)
	return int(n), err
}

func (pl *Plan) read(table, elem int) (*HostBuffer, int, error) {
	n, err := pl.ReadCount(table)
	if err != nil {
		return nil, 0, err
	}
	b := NewHostBuffer(n * elem)
	err = call(func() C.moe_status_t {
		return C.moe_plan_read(pl.runner.ptr, pl.raw, pl.wsC(), C.size_t(pl.wsBytes),
			C.int32_t(table), b.ptr, C.size_t(n*elem), C.moe_go_stream(C.uintptr_t(pl.stream)))
	})
	runtime.KeepAlive(pl)
	return b, n, err
}

// ReadInt32 copies an int32 plan table; synchronises the stream.
func (pl *Plan) ReadInt32(table int) ([]int32, error) {
	b, n, err := pl.read(table, 4)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return append([]int32(nil), b.Int32s()[:n]...), nil
}

// ReadWeights copies the bf16 expert weights (bit patterns); synchronises the stream.
func (pl *Plan) ReadWeights() ([]uint16, error) {
	b, n, err := pl.read(PlanExpertWeights, 2)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return append([]uint16(nil), b.Uint16s()[:n]...), nil
}

// PrepareRouting routes the problem for a config into a host workspace (CPU backend).
func (r *Runner) PrepareRouting(p Problem, config int, args *RoutingArgs, ws *HostBuffer) (*Plan, error) {
	pl := &Plan{raw: new(C.moe_plan), runner: r, ws: ws, wsBytes: ws.Len()}
	return pl, r.prepare(p, config, args, pl)
}

// PrepareRoutingDevice routes into a device workspace on a stream (CUDA backend).
func (r *Runner) PrepareRoutingDevice(p Problem, config int, args *RoutingArgs, ws uintptr, wsBytes int, stream uintptr) (*Plan, error) {
	pl := &Plan{raw: new(C.moe_plan), runner: r, wsPtr: ws, wsBytes: wsBytes, stream: stream}
	return pl, r.prepare(p, config, args, pl)
}

func (r *Runner) prepare(p Problem, config int, args *RoutingArgs, pl *Plan) error {
	var a arena
	defer a.free()
	cp, ca := p.c(), args.c(&a)
	C.moe_plan_init(pl.raw, C.MOE_PLAN_VERSION)
	err := call(func() C.moe_status_t {
		return C.moe_routing_prepare(r.ptr, cp, ca, C.int32_t(config), pl.wsC(),
			C.size_t(pl.wsBytes), pl.raw, C.moe_go_stream(C.uintptr_t(pl.stream)))
	})
	runtime.KeepAlive(r)
	runtime.KeepAlive(args)
	runtime.KeepAlive(pl)
	return err
}

// Run runs GEMM1, GEMM2 and finalize on a prepared plan (on the plan's stream).
func (r *Runner) Run(p Problem, config int, plan *Plan, args *RunArgs) error {
	var a arena
	defer a.free()
	cp, ca := p.c(), args.c(&a)
	err := call(func() C.moe_status_t {
		return C.moe_runner_run(r.ptr, cp, ca, C.int32_t(config), plan.raw, plan.wsC(),
			C.size_t(plan.wsBytes), C.moe_go_stream(C.uintptr_t(plan.stream)))
	})
	runtime.KeepAlive(r)
	runtime.KeepAlive(args)
	runtime.KeepAlive(plan)
	return err
}

// Forward is the one-shot forward with the default config and a host workspace; with
// args.Output nil a host bf16 [T, H] output is allocated. Returns the output tensor.
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
		defer ws.Close()
	}
	run := *args
	if run.Output == nil {
		run.Output = NewHostTensor(BF16, p.NumTokens, p.HiddenSize)
	}
	var a arena
	defer a.free()
	cp, cr, ca := p.c(), routing.c(&a), run.c(&a)
	err := call(func() C.moe_status_t {
		return C.moe_forward(r.ptr, cp, cr, ca, ws.ptr, C.size_t(ws.Len()), nil)
	})
	runtime.KeepAlive(r)
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
		defer ws.Close()
	}
	run := *args
	if run.Output == nil {
		run.Output = NewHostTensor(BF16, p.NumTokens, p.HiddenSize)
	}
	capacity := len(cfgs)
	out := NewHostBuffer(8 * (capacity + 1))
	defer out.Close()
	cfgPtr := (*C.int32_t)(out.ptr)
	timePtr := (*C.float)(unsafe.Add(out.ptr, 4*(capacity+1)))
	var a arena
	defer a.free()
	cp, cr, ca := p.c(), routing.c(&a), run.c(&a)
	var n C.int32_t
	err = call(func() C.moe_status_t {
		return C.moe_runner_autotune(r.ptr, cp, cr, ca, ws.ptr, C.size_t(ws.Len()),
			C.int32_t(iterations), cfgPtr, timePtr, C.int32_t(capacity), &n, nil)
	})
	runtime.KeepAlive(r)
	runtime.KeepAlive(routing)
	runtime.KeepAlive(&run)
	runtime.KeepAlive(ws)
	if err != nil {
		return nil, err
	}
	cv := out.Int32s()
	tv := unsafe.Slice((*float32)(unsafe.Pointer(timePtr)), capacity)
	res := make([]Tuned, 0, int(n))
	for i := 0; i < int(n); i++ {
		res = append(res, Tuned{Config: int(cv[i]), TimeUs: tv[i]})
	}
	return res, nil
}
