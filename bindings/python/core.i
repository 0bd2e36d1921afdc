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

/* Fills *out from obj.__dlpack__(); *cap keeps the capsule (and so the data) alive. */
static int moe_py_tensor(PyObject *obj, PyObject **cap, DLTensor *out) {
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
  /* Strides: an empty tensor has no layout (numpy 2 exports zero strides for it), so drop them;
     compact strides (size-1 dims may carry any stride) are dropped too, as DLPack allows. */
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
%typemap(in) const DLTensor * (PyObject *cap_ = NULL, DLTensor tmp_) {
  if ($input == Py_None) {
    $1 = NULL;
  } else {
    if (moe_py_tensor($input, &cap_, &tmp_) != 0) SWIG_fail;
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
%thread moe_b_routing_prepare;
%thread moe_b_run;
%thread moe_b_forward;
%thread moe_b_autotune;
%thread moe_b_plan_read;
%thread moe_b_plan_read_count;

%include "moe_bind_decls.i"
