/*
 * core.i - SWIG interface of moe_trtllm.core (low level: core.py over the extension _core).
 * The public, Pythonic API is the pure-Python package moe_trtllm (Runner, Problem, Plan, ...).
 *
 * Tensors: any object with __dlpack__ (numpy, torch, cupy, ...) is accepted where the C API takes
 * a `const DLTensor *`. The capsule ("dltensor" or "dltensor_versioned") is held for the call and
 * released after it (the producer's capsule destructor frees the managed tensor), so the tensor is
 * borrowed zero-copy. moe_trtllm.View(obj, code, bits) reinterprets the element type (numpy has no
 * bfloat16: a uint16 array viewed as bf16).
 */
%module(package="moe_trtllm") core

%{
#include <Python.h>
#include "moe_bind.h"

/* DLPack managed tensors (legacy and versioned), as the capsules carry them. */
typedef struct {
  DLTensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(void *);
} moe_py_managed;
typedef struct {
  uint32_t major, minor;
} moe_py_dlpack_version;
typedef struct {
  moe_py_dlpack_version version;
  void *manager_ctx;
  void (*deleter)(void *);
  uint64_t flags;
  DLTensor dl_tensor;
} moe_py_managed_versioned;

#define MOE_PY_MAX_DIMS 16

/* Fills *out from a described tensor: the tuple (data, device_type, device_id, code, bits,
   shape, strides or None[, lanes], owner) of moe_trtllm._dl_arg (lanes: 1 when absent; 2 for
   torch.float4_e2m1fn_x2). dims holds 2 * MOE_PY_MAX_DIMS. */
static int moe_py_described(PyObject *d, DLTensor *out, int64_t *dims) {
  PyObject *shape, *strides;
  Py_ssize_t nd;
  if (PyTuple_GET_SIZE(d) != 8 && PyTuple_GET_SIZE(d) != 9) {
    PyErr_SetString(PyExc_TypeError, "moe_trtllm: malformed tensor description");
    return -1;
  }
  memset(out, 0, sizeof *out);
  out->data = (void *)(uintptr_t)PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(d, 0));
  out->device.device_type = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(d, 1));
  out->device.device_id = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(d, 2));
  out->dtype.code = (uint8_t)PyLong_AsLong(PyTuple_GET_ITEM(d, 3));
  out->dtype.bits = (uint8_t)PyLong_AsLong(PyTuple_GET_ITEM(d, 4));
  out->dtype.lanes =
      PyTuple_GET_SIZE(d) == 9 ? (uint16_t)PyLong_AsLong(PyTuple_GET_ITEM(d, 7)) : 1;
  if (PyErr_Occurred()) return -1;
  shape = PyTuple_GET_ITEM(d, 5);
  strides = PyTuple_GET_ITEM(d, 6);
  if (!PyTuple_Check(shape) || (strides != Py_None && !PyTuple_Check(strides))) {
    PyErr_SetString(PyExc_TypeError, "moe_trtllm: malformed tensor description");
    return -1;
  }
  nd = PyTuple_GET_SIZE(shape);
  if (nd > MOE_PY_MAX_DIMS || (strides != Py_None && PyTuple_GET_SIZE(strides) != nd)) {
    PyErr_Format(PyExc_ValueError, "moe_trtllm: tensors of up to %d dimensions, given %zd",
                 MOE_PY_MAX_DIMS, nd);
    return -1;
  }
  for (Py_ssize_t i = 0; i < nd; ++i) {
    dims[i] = (int64_t)PyLong_AsLongLong(PyTuple_GET_ITEM(shape, i));
    if (strides != Py_None)
      dims[MOE_PY_MAX_DIMS + i] = (int64_t)PyLong_AsLongLong(PyTuple_GET_ITEM(strides, i));
  }
  if (PyErr_Occurred()) return -1;
  out->ndim = (int32_t)nd;
  out->shape = dims;
  out->strides = strides == Py_None ? NULL : dims + MOE_PY_MAX_DIMS;
  return 0;
}

/* Strides: an empty tensor has no layout (numpy 2 exports zero strides for it), so drop them;
   compact strides (size-1 dims may carry any stride) are dropped too, as DLPack allows. */
static void moe_py_drop_compact_strides(DLTensor *out) {
  if (out->strides) {
    int64_t numel = 1, expect = 1;
    int compact = 1;
    for (int32_t i = 0; i < out->ndim; ++i) numel *= out->shape[i];
    for (int32_t i = out->ndim - 1; i >= 0; --i) {
      if (out->shape[i] != 1 && out->strides[i] != expect) compact = 0;
      expect *= out->shape[i];
    }
    if (numel == 0 || compact) out->strides = NULL;
  }
}

static int moe_py_dlpack(PyObject *obj, PyObject **cap, DLTensor *out);

/* Fills *out for a tensor argument; *cap keeps what owns the data alive for the call.
   moe_trtllm._dl_arg(obj) either describes the tensor (torch tensors: data_ptr, no capsule and
   no stream synchronisation, so CUDA-graph capture works; numpy arrays of ml_dtypes types,
   which numpy cannot export through DLPack) or returns an object to read through __dlpack__. */
static int moe_py_tensor(PyObject *obj, PyObject **cap, DLTensor *out, int64_t *dims) {
  PyObject *mod = PyImport_ImportModule("moe_trtllm");
  PyObject *d;
  int rc;
  if (!mod) return -1;
  d = PyObject_CallMethod(mod, "_dl_arg", "O", obj);
  Py_DECREF(mod);
  if (!d) return -1;
  if (PyTuple_Check(d)) {
    if (moe_py_described(d, out, dims) != 0) {
      Py_DECREF(d);
      return -1;
    }
    moe_py_drop_compact_strides(out);
    *cap = d; /* holds the owner (last item) */
    return 0;
  }
  rc = moe_py_dlpack(d, cap, out);
  Py_DECREF(d);
  return rc;
}

/* Fills *out from obj.__dlpack__(); *cap keeps the capsule (and so the data) alive. */
static int moe_py_dlpack(PyObject *obj, PyObject **cap, DLTensor *out) {
  PyObject *target = obj, *fn = NULL, *c = NULL, *kw = NULL, *args = NULL;
  int override = 0;
  long code = 0, bits = 0;
  PyObject *base = PyObject_GetAttrString(obj, "_moe_view_base");
  if (base) {
    PyObject *pc = PyObject_GetAttrString(obj, "_moe_view_code");
    PyObject *pb = PyObject_GetAttrString(obj, "_moe_view_bits");
    if (!pc || !pb) {
      Py_XDECREF(pc);
      Py_XDECREF(pb);
      Py_DECREF(base);
      return -1;
    }
    code = PyLong_AsLong(pc);
    bits = PyLong_AsLong(pb);
    Py_DECREF(pc);
    Py_DECREF(pb);
    override = 1;
    target = base;
  } else {
    PyErr_Clear();
  }
  fn = PyObject_GetAttrString(target, "__dlpack__");
  if (!fn) {
    PyErr_Format(PyExc_TypeError,
                 "expected a tensor with __dlpack__ (numpy array, torch tensor, cupy array), "
                 "got %.200s",
                 Py_TYPE(target)->tp_name);
    Py_XDECREF(base);
    return -1;
  }
  /* Ask for a versioned capsule; producers that predate DLPack 1.0 (numpy 1.24) reject
     max_version with TypeError and get the legacy call. */
  args = PyTuple_New(0);
  kw = Py_BuildValue("{s:(ii)}", "max_version", 1, 1);
  c = (args && kw) ? PyObject_Call(fn, args, kw) : NULL;
  Py_XDECREF(args);
  Py_XDECREF(kw);
  if (!c && PyErr_ExceptionMatches(PyExc_TypeError)) {
    PyErr_Clear();
    c = PyObject_CallObject(fn, NULL);
  }
  Py_DECREF(fn);
  Py_XDECREF(base);
  if (!c) return -1;
  if (PyCapsule_IsValid(c, "dltensor_versioned")) {
    moe_py_managed_versioned *m =
        (moe_py_managed_versioned *)PyCapsule_GetPointer(c, "dltensor_versioned");
    if (m->version.major != 1) {
      PyErr_Format(PyExc_BufferError, "DLPack major version %u is not supported (expected 1)",
                   (unsigned)m->version.major);
      Py_DECREF(c);
      return -1;
    }
    *out = m->dl_tensor;
  } else if (PyCapsule_IsValid(c, "dltensor")) {
    moe_py_managed *m = (moe_py_managed *)PyCapsule_GetPointer(c, "dltensor");
    *out = m->dl_tensor;
  } else {
    PyErr_SetString(PyExc_TypeError,
                    "__dlpack__ did not return an unused 'dltensor'/'dltensor_versioned' capsule");
    Py_DECREF(c);
    return -1;
  }
  if (override) {
    if ((long)out->dtype.bits * (out->dtype.lanes ? out->dtype.lanes : 1) != bits) {
      PyErr_Format(PyExc_TypeError, "View: element of %d bits cannot be viewed as %ld bits",
                   (int)out->dtype.bits, bits);
      Py_DECREF(c);
      return -1;
    }
    out->dtype.code = (uint8_t)code;
    out->dtype.bits = (uint8_t)bits;
    out->dtype.lanes = 1;
  }
  moe_py_drop_compact_strides(out);
  *cap = c;
  return 0;
}

/* Raises moe_trtllm.errors.<class for status>(status, message). */
static void moe_py_raise(int32_t status, const char *message) {
  PyObject *mod = PyImport_ImportModule("moe_trtllm.errors");
  PyObject *exc = NULL;
  if (mod) {
    exc = PyObject_CallMethod(mod, "error_from_status", "is", (int)status, message);
    Py_DECREF(mod);
  }
  if (exc) {
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
  } else if (!PyErr_Occurred()) {
    PyErr_Format(PyExc_RuntimeError, "moe_trtllm status %d: %s", (int)status, message);
  }
}
%}

%include <stdint.i>

/* Errors: every wrapped helper records a failure; raise it here (the GIL is held again). */
%exception {
  moe_b_clear();
  $action
  if (moe_b_pending()) {
    moe_py_raise(moe_b_pending(), moe_b_pending_message());
    SWIG_fail;
  }
}

/* Tensors: anything with __dlpack__, or None for an absent optional tensor. */
%typemap(in) const DLTensor * (PyObject *cap_ = NULL, DLTensor tmp_,
                               int64_t dims_[2 * MOE_PY_MAX_DIMS]) {
  if ($input == Py_None) {
    $1 = NULL;
  } else {
    if (moe_py_tensor($input, &cap_, &tmp_, dims_) != 0) SWIG_fail;
    $1 = &tmp_;
  }
}
%typemap(freearg) const DLTensor * { Py_XDECREF(cap_$argnum); }

/* Streams: Python ints (torch Stream.cuda_stream, cupy Stream.ptr) or None (= NULL). */
%typemap(in) moe_cuda_stream_t {
  if ($input == Py_None) {
    $1 = NULL;
  } else {
    unsigned long long v = PyLong_AsUnsignedLongLong($input);
    if (PyErr_Occurred()) SWIG_fail;
    $1 = (moe_cuda_stream_t)(uintptr_t)v;
  }
}

/* The plan descriptor: a small owned object (freed with the Python object). */
typedef struct moe_plan {} moe_plan;
%extend moe_plan {
  moe_plan() {
    moe_plan *p = (moe_plan *)calloc(1, sizeof(moe_plan));
    if (p) moe_plan_init(p, MOE_PLAN_VERSION);
    return p;
  }
  ~moe_plan() { free($self); }
}

/* Release the GIL only around the calls that do work. */
%nothread;
%thread moe_b_weights_prepare;
%thread moe_b_weights_prepare_scaled;
%thread moe_b_routing_prepare;
%thread moe_b_run;
%thread moe_b_run_grouped;
%thread moe_b_forward;
%thread moe_b_autotune;
%thread moe_b_plan_read;
%thread moe_b_plan_read_count;

%include "moe_bind_decls.i"

/* DLPack codes of the public header (device types and dtype codes), for View() and the tensor
   descriptions of moe_trtllm._dl_arg. */
%constant int DL_CPU = kDLCPU;
%constant int DL_CUDA = kDLCUDA;
%constant int DL_CUDA_HOST = kDLCUDAHost;
%constant int DL_CUDA_MANAGED = kDLCUDAManaged;
%constant int DL_INT = kDLInt;
%constant int DL_UINT = kDLUInt;
%constant int DL_FLOAT = kDLFloat;
%constant int DL_BFLOAT = kDLBfloat;
%constant int DL_COMPLEX = kDLComplex;
%constant int DL_BOOL = kDLBool;
%constant int DL_FLOAT8_E3M4 = kDLFloat8_e3m4;
%constant int DL_FLOAT8_E4M3 = kDLFloat8_e4m3;
%constant int DL_FLOAT8_E4M3B11FNUZ = kDLFloat8_e4m3b11fnuz;
%constant int DL_FLOAT8_E4M3FN = kDLFloat8_e4m3fn;
%constant int DL_FLOAT8_E4M3FNUZ = kDLFloat8_e4m3fnuz;
%constant int DL_FLOAT8_E5M2 = kDLFloat8_e5m2;
%constant int DL_FLOAT8_E5M2FNUZ = kDLFloat8_e5m2fnuz;
%constant int DL_FLOAT8_E8M0FNU = kDLFloat8_e8m0fnu;
%constant int DL_FLOAT6_E2M3FN = kDLFloat6_e2m3fn;
%constant int DL_FLOAT6_E3M2FN = kDLFloat6_e3m2fn;
%constant int DL_FLOAT4_E2M1FN = kDLFloat4_e2m1fn;

%inline %{
/* Where plan table `table` (MOE_PLAN_*) lies in the workspace, from moe_plan_get_view (no
   synchronisation): what = 0 gives its byte offset, what = 1 its capacity in elements. */
static int64_t moe_py_plan_table_extent(const moe_runner *r, const moe_plan *plan,
                                        const DLTensor *workspace, int32_t table, int32_t what) {
  moe_plan_view v;
  const void *p = NULL;
  int64_t n = 0;
  char *base;
  if (!workspace) {
    moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "workspace: expected a tensor, got None/null");
    return -1;
  }
  base = (char *)moe_b_tensor_ptr(workspace);
  memset(&v, 0, sizeof v);
  if (moe_b_check(moe_plan_get_view(r, plan, base, (size_t)moe_b_tensor_bytes(workspace), &v)))
    return -1;
  switch (table) {
    case MOE_PLAN_TOPK_IDS: p = v.topk_ids; n = v.num_tokens * v.top_k; break;
    case MOE_PLAN_EXPERT_WEIGHTS: p = v.expert_weights; n = v.num_tokens * v.top_k; break;
    case MOE_PLAN_EXPANDED_TO_PERMUTED: p = v.expanded_to_permuted; n = v.num_tokens * v.top_k; break;
    case MOE_PLAN_PERMUTED_TO_TOKEN: p = v.permuted_to_token; n = v.max_padded_rows; break;
    case MOE_PLAN_PERMUTED_TO_EXPANDED: p = v.permuted_to_expanded; n = v.max_padded_rows; break;
    case MOE_PLAN_CTA_TO_BATCH: p = v.cta_to_batch; n = v.max_ctas; break;
    case MOE_PLAN_CTA_TO_MN_LIMIT: p = v.cta_to_mn_limit; n = v.max_ctas; break;
    case MOE_PLAN_NUM_CTAS: p = v.num_ctas; n = 1; break;
    case MOE_PLAN_PERMUTED_SIZE: p = v.permuted_size; n = 1; break;
    case MOE_PLAN_EXPERT_COUNTS: p = v.expert_counts; n = v.num_experts; break;
    default:
      moe_b_fail(MOE_STATUS_INVALID_ARGUMENT, "table: not a MOE_PLAN_* value");
      return -1;
  }
  if (!p && n > 0) {
    moe_b_fail(MOE_STATUS_INTERNAL, "plan view: table pointer is NULL");
    return -1;
  }
  return what == 0 ? (p ? (int64_t)((const char *)p - base) : 0) : n;
}
%}
