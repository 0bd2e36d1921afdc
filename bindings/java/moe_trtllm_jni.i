/*
 * moe_trtllm_jni.i - SWIG interface of the JNI layer (package io.moetrtllm, package-private
 * classes MoeNative/MoeNativeJNI). The public Java API is hand-written on top (Runner, Tensor,
 * Plan, ...). Host tensors and plans live in direct ByteBuffers (zero-copy, freed by the GC);
 * runner handles, device pointers and streams are Java longs.
 */
%module MoeNative

%pragma(java) moduleclassmodifiers = "final class"
%pragma(java) jniclassclassmodifiers = "final class"
%pragma(java) jniclasscode = %{
  static {
    String lib = System.getProperty("moetrtllm.jni.library");
    if (lib != null) {
      System.load(lib);
    } else {
      System.loadLibrary("moe_trtllm_jni");
    }
  }
%}

%{
#include "moe_bind.h"

static void moe_j_throw(JNIEnv *jenv, int32_t status, const char *message) {
  jclass cls = (*jenv)->FindClass(jenv, "io/moetrtllm/MoeException");
  jmethodID ctor;
  jstring msg;
  jobject exc;
  if (!cls) return; /* NoClassDefFoundError pending */
  ctor = (*jenv)->GetMethodID(jenv, cls, "<init>", "(ILjava/lang/String;)V");
  msg = (*jenv)->NewStringUTF(jenv, message);
  if (!ctor || !msg) return;
  exc = (*jenv)->NewObject(jenv, cls, ctor, (jint)status, msg);
  if (exc) (*jenv)->Throw(jenv, (jthrowable)exc);
}

static void *moe_j_address(JNIEnv *jenv, jobject buf) {
  void *p;
  if (!buf) return NULL;
  p = (*jenv)->GetDirectBufferAddress(jenv, buf);
  if (!p) moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "expected a direct ByteBuffer");
  return p;
}

/* Java-only helpers: tensor descriptors and plans in direct ByteBuffers. */
static inline int32_t moe_b_tensor_desc_bytes(int32_t ndim) {
  return (int32_t)(sizeof(DLTensor) + sizeof(int64_t) * (size_t)(ndim > 0 ? ndim : 0));
}
static inline int32_t moe_b_plan_bytes(void) { return (int32_t)sizeof(moe_plan); }
static inline void moe_b_plan_reset(moe_plan *plan) {
  if (plan) moe_plan_init(plan, MOE_PLAN_VERSION);
}
/* desc: a direct buffer of moe_b_tensor_desc_bytes(ndim); shape is stored after the DLTensor. */
static inline void moe_b_tensor_fill(void *desc, int64_t data, int32_t device_type,
                                     int32_t device_id, int32_t code, int32_t bits,
                                     int32_t lanes, int32_t ndim,
                                     int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  DLTensor *t = (DLTensor *)desc;
  int64_t *shape = (int64_t *)(t + 1);
  int64_t dims[4] = {d0, d1, d2, d3};
  if (!t) return;
  if (ndim < 0 || ndim > 4) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "tensor: expected 0..4 dimensions");
    return;
  }
  memset(t, 0, sizeof *t);
  t->data = (void *)(intptr_t)data;
  t->device.device_type = (DLDeviceType)device_type;
  t->device.device_id = device_id;
  t->ndim = ndim;
  t->dtype.code = (uint8_t)code;
  t->dtype.bits = (uint8_t)bits;
  t->dtype.lanes = (uint16_t)lanes;
  for (int32_t i = 0; i < ndim; ++i) shape[i] = dims[i];
  t->shape = shape;
  t->strides = NULL;
  t->byte_offset = 0;
}
/* Address of a direct ByteBuffer. */
static inline int64_t moe_b_buffer_address(void *buf) { return (int64_t)(intptr_t)buf; }

/* The CUDA runtime, opened with dlopen on request (io.moetrtllm.CudaRuntime): the library links
   cudart statically and exports no allocator, and a JVM has no other way to get device memory.
   Nothing here runs unless CudaRuntime is used; errors come back as CUDA_ERROR. */
#include <dlfcn.h>
#include <pthread.h>
static struct {
  void *handle;
  int (*malloc_)(void **, size_t);
  int (*free_)(void *);
  int (*memcpy_)(void *, const void *, size_t, int);
  int (*memset_)(void *, int, size_t);
  int (*sync_)(void);
  const char *(*errstr_)(int);
} moe_j_cudart;
static pthread_mutex_t moe_j_cudart_mu = PTHREAD_MUTEX_INITIALIZER;

static int moe_j_cuda_ok(int err, const char *what) {
  char msg[256];
  if (err == 0) return 1;
  snprintf(msg, sizeof msg, "%s failed: %s (cudaError %d)", what,
           moe_j_cudart.errstr_ ? moe_j_cudart.errstr_(err) : "?", err);
  moe_b_fail(MOE_STATUS_CUDA_ERROR, msg);
  return 0;
}
static int moe_j_cuda_loaded(void) {
  if (moe_j_cudart.handle) return 1;
  moe_b_fail(MOE_STATUS_CUDA_ERROR, "CudaRuntime: the CUDA runtime is not loaded (load() first)");
  return 0;
}
/* Opens libcudart at path (idempotent once one is open). */
static inline void moe_b_cudart_load(const char *path) {
  void *h;
  char msg[512];
  pthread_mutex_lock(&moe_j_cudart_mu);
  if (moe_j_cudart.handle) {
    pthread_mutex_unlock(&moe_j_cudart_mu);
    return;
  }
  if (!path) path = "libcudart.so";
  h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(msg, sizeof msg, "CudaRuntime: cannot open %s: %s", path, e ? e : "?");
    moe_b_fail(MOE_STATUS_CUDA_ERROR, msg);
    pthread_mutex_unlock(&moe_j_cudart_mu);
    return;
  }
  *(void **)&moe_j_cudart.malloc_ = dlsym(h, "cudaMalloc");
  *(void **)&moe_j_cudart.free_ = dlsym(h, "cudaFree");
  *(void **)&moe_j_cudart.memcpy_ = dlsym(h, "cudaMemcpy");
  *(void **)&moe_j_cudart.memset_ = dlsym(h, "cudaMemset");
  *(void **)&moe_j_cudart.sync_ = dlsym(h, "cudaDeviceSynchronize");
  *(void **)&moe_j_cudart.errstr_ = dlsym(h, "cudaGetErrorString");
  if (!moe_j_cudart.malloc_ || !moe_j_cudart.free_ || !moe_j_cudart.memcpy_ ||
      !moe_j_cudart.memset_ || !moe_j_cudart.sync_ || !moe_j_cudart.errstr_) {
    snprintf(msg, sizeof msg, "CudaRuntime: %s lacks the cudaMalloc family", path);
    moe_b_fail(MOE_STATUS_CUDA_ERROR, msg);
    dlclose(h);
    pthread_mutex_unlock(&moe_j_cudart_mu);
    return;
  }
  moe_j_cudart.handle = h;
  pthread_mutex_unlock(&moe_j_cudart_mu);
}
static inline int64_t moe_b_cudart_malloc(int64_t bytes) {
  void *p = NULL;
  if (!moe_j_cuda_loaded()) return 0;
  if (bytes < 0) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "CudaRuntime.malloc: negative size");
    return 0;
  }
  if (!moe_j_cuda_ok(moe_j_cudart.malloc_(&p, (size_t)(bytes ? bytes : 1)), "cudaMalloc"))
    return 0;
  return (int64_t)(intptr_t)p;
}
static inline void moe_b_cudart_free(int64_t ptr) {
  if (!moe_j_cuda_loaded()) return;
  moe_j_cuda_ok(moe_j_cudart.free_((void *)(intptr_t)ptr), "cudaFree");
}
static inline void moe_b_cudart_memset(int64_t ptr, int32_t value, int64_t bytes) {
  if (!moe_j_cuda_loaded()) return;
  moe_j_cuda_ok(moe_j_cudart.memset_((void *)(intptr_t)ptr, value, (size_t)bytes), "cudaMemset");
}
/* Host (direct buffer) -> device, and device -> host after a device synchronize. The Java side
   checks the sizes against the buffer. */
static inline void moe_b_cudart_h2d(int64_t dst, void *src, int64_t bytes) {
  if (!moe_j_cuda_loaded()) return;
  moe_j_cuda_ok(moe_j_cudart.memcpy_((void *)(intptr_t)dst, src, (size_t)bytes, 1),
                "cudaMemcpy (host to device)");
}
static inline void moe_b_cudart_d2h(void *dst, int64_t src, int64_t bytes) {
  if (!moe_j_cuda_loaded()) return;
  if (!moe_j_cuda_ok(moe_j_cudart.sync_(), "cudaDeviceSynchronize")) return;
  moe_j_cuda_ok(moe_j_cudart.memcpy_(dst, (const void *)(intptr_t)src, (size_t)bytes, 2),
                "cudaMemcpy (device to host)");
}
static inline void moe_b_cudart_synchronize(void) {
  if (!moe_j_cuda_loaded()) return;
  moe_j_cuda_ok(moe_j_cudart.sync_(), "cudaDeviceSynchronize");
}
%}

%include <stdint.i>

%typemap(javafinalize) SWIGTYPE ""

%exception {
  moe_b_clear();
  $action
  if (moe_b_pending()) {
    moe_j_throw(jenv, moe_b_pending(), moe_b_pending_message());
    return $null;
  }
}

/* Direct ByteBuffers: tensor descriptors, plans and raw buffers (null = NULL). */
%define MOE_J_BUFFER(TYPE)
%typemap(jni) TYPE "jobject"
%typemap(jtype) TYPE "java.nio.ByteBuffer"
%typemap(jstype) TYPE "java.nio.ByteBuffer"
%typemap(javain) TYPE "$javainput"
%typemap(in) TYPE {
  $1 = ($1_ltype)moe_j_address(jenv, $input);
  if ($input && !$1) {
    moe_j_throw(jenv, MOE_STATUS_INVALID_ARGUMENT, "expected a direct ByteBuffer");
    return $null;
  }
}
%enddef
MOE_J_BUFFER(const DLTensor *)
MOE_J_BUFFER(moe_plan *)
MOE_J_BUFFER(const moe_plan *)
MOE_J_BUFFER(void *BUFFER)

/* Runner handles and streams: Java longs. */
%define MOE_J_LONG(TYPE)
%typemap(jni) TYPE "jlong"
%typemap(jtype) TYPE "long"
%typemap(jstype) TYPE "long"
%typemap(javain) TYPE "$javainput"
%typemap(javaout) TYPE { return $jnicall; }
%typemap(in) TYPE { $1 = ($1_ltype)(intptr_t)$input; }
%typemap(out) TYPE { $result = (jlong)(intptr_t)$1; }
%enddef
MOE_J_LONG(moe_runner *)
MOE_J_LONG(const moe_runner *)
MOE_J_LONG(moe_cuda_stream_t)

int32_t moe_b_tensor_desc_bytes(int32_t ndim);
int32_t moe_b_plan_bytes(void);
void moe_b_plan_reset(moe_plan *plan);
void moe_b_tensor_fill(void *BUFFER, int64_t data, int32_t device_type, int32_t device_id,
                       int32_t code, int32_t bits, int32_t lanes, int32_t ndim, int64_t d0,
                       int64_t d1, int64_t d2, int64_t d3);
int64_t moe_b_buffer_address(void *BUFFER);
void moe_b_cudart_load(const char *path);
int64_t moe_b_cudart_malloc(int64_t bytes);
void moe_b_cudart_free(int64_t ptr);
void moe_b_cudart_memset(int64_t ptr, int32_t value, int64_t bytes);
void moe_b_cudart_h2d(int64_t dst, void *BUFFER, int64_t bytes);
void moe_b_cudart_d2h(void *BUFFER, int64_t src, int64_t bytes);
void moe_b_cudart_synchronize(void);

%include "../swig/moe_bind_decls.i"

/* Constants of the public header as compile-time Java constants (MoeNativeConstants, made
   package-private by compile.sh; io.moetrtllm.Moe re-exports them). The values are the header's macros, read by SWIG's
   preprocessor through %import; none is typed here. ApiTest.constantsMatchHeader fails when the
   header gains a value this list lacks. */
#define __attribute__(x)
%import "moe_trtllm.h"
%javaconst(1);
%include "../swig/moe_constants.i"
%constant int VERSION_MAJOR = MOE_VERSION_MAJOR;
%constant int VERSION_MINOR = MOE_VERSION_MINOR;
%constant int VERSION_PATCH = MOE_VERSION_PATCH;
%javaconst(0);
/* DLPack codes (C enums, not macros): read from the compiled header when the class loads. */
%constant int DL_CPU = kDLCPU;
%constant int DL_CUDA = kDLCUDA;
%constant int DL_INT = kDLInt;
%constant int DL_UINT = kDLUInt;
%constant int DL_FLOAT = kDLFloat;
%constant int DL_BFLOAT = kDLBfloat;
%constant int DL_FLOAT8_E4M3FN = kDLFloat8_e4m3fn;
%constant int DL_FLOAT8_E8M0FNU = kDLFloat8_e8m0fnu;
%constant int DL_FLOAT4_E2M1FN = kDLFloat4_e2m1fn;
