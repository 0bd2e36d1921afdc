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
                                     int32_t device_id, int32_t code, int32_t bits, int32_t ndim,
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
  t->dtype.lanes = 1;
  for (int32_t i = 0; i < ndim; ++i) shape[i] = dims[i];
  t->shape = shape;
  t->strides = NULL;
  t->byte_offset = 0;
}
/* Address of a direct ByteBuffer. */
static inline int64_t moe_b_buffer_address(void *buf) { return (int64_t)(intptr_t)buf; }
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
                       int32_t code, int32_t bits, int32_t ndim, int64_t d0, int64_t d1,
                       int64_t d2, int64_t d3);
int64_t moe_b_buffer_address(void *BUFFER);

%include "../swig/moe_bind_decls.i"
