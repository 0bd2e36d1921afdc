/*
 * test_tensor_checks.c - tensor metadata the library can check, and the size arithmetic
 * behind it (issue 23, items 1, 3, 5, 7 and the tensor-check list), on the CPU backend:
 *  - a shape whose element count overflows int64 (it used to wrap to 0 and skip every check);
 *  - lanes != 1, negative dims, negative strides (also in a dim of size 1), NULL shape,
 *    every unsupported device type, NULL data on non-empty tensors;
 *  - data + byte_offset not aligned to the element size, for every kind of argument;
 *  - undefined behaviour a sanitizer build of a caller aborts on: NULL data with a byte_offset
 *    on an empty tensor (valid at T = 0), num_tokens * top_k overflowing in a message, an
 *    "at least N bytes" shape for a prepared size of 2^63 - 2;
 *  - in-place moe_weights_prepare (refused; it corrupted gated W1).
 * Each case must return INVALID_ARGUMENT (or the stated status) naming the argument, never
 * crash. The sanitizer build (scripts/test.sh) turns any UB here into a failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"

static fx F; /* CPU, T = 4, tile 8, C 1 */

/* A DLTensor copy whose shape and strides can be changed. */
typedef struct view {
  DLTensor t;
  int64_t shape[4], strides[4];
} view;
static void view_init(view *v, const ttensor *src) {
  memset(v, 0, sizeof *v);
  v->t = src->t;
  for (int i = 0; i < src->t.ndim; ++i) v->shape[i] = src->shape[i];
  v->t.shape = v->shape;
}

static moe_status_t run_with(moe_run_args *a) {
  return moe_runner_run(F.r, &F.p, a, F.cfg, &F.plan, F.ws.ptr, F.ws.bytes, NULL);
}

/* Item 1: [2^62, 64] bf16 has 2^68 elements; the product used to wrap to 0, which skipped the
 * NULL-data and stride checks, and the CPU GEMM2 then wrote through NULL. */
static void test_overflowing_shape(void) {
  moe_run_args a = fx_runargs(&F);
  a.do_finalize = 0;
  a.output = NULL;
  view po;
  view_init(&po, F.out);
  po.shape[0] = (int64_t)1 << 62;
  po.t.data = NULL;
  a.permuted_output = &po.t;
  EXPECT(run_with(&a), IA, "permuted_output");
  po.t.data = F.out->t.data; /* a real pointer, a declared size no memory has */
  EXPECT(run_with(&a), IA, "permuted_output");
  po.shape[0] = INT64_MAX;
  EXPECT(run_with(&a), IA, "permuted_output");
  /* hidden [T, H] with strides that would need a huge extent: exact shapes, so a stride lie */
  view h;
  view_init(&h, F.hidden);
  h.strides[0] = (int64_t)1 << 62;
  h.strides[1] = 1;
  h.t.strides = h.strides;
  a = fx_runargs(&F);
  a.hidden_states = &h.t;
  EXPECT(run_with(&a), IA, "hidden_states");
}

/* The tensor-check list of the issue, on a run argument and a routing argument. */
static void test_metadata(void) {
  moe_run_args a;
  moe_routing_args ra;
  view h;
  /* lanes != 1 */
  view_init(&h, F.hidden);
  h.t.dtype.lanes = 2;
  a = fx_runargs(&F);
  a.hidden_states = &h.t;
  EXPECT(run_with(&a), IA, "hidden_states");
  h.t.dtype.lanes = 0;
  EXPECT(run_with(&a), IA, "hidden_states");
  /* negative dims */
  view_init(&h, F.hidden);
  h.shape[0] = -F.p.num_tokens;
  a.hidden_states = &h.t;
  EXPECT(run_with(&a), IA, "hidden_states");
  view po;
  view_init(&po, F.out); /* an "at least" dim */
  po.shape[0] = -1;
  a = fx_runargs(&F);
  a.do_finalize = 0;
  a.output = NULL;
  a.permuted_output = &po.t;
  EXPECT(run_with(&a), IA, "permuted_output");
  /* negative strides, in a real dim and in a dim of size 1 (whose stride is otherwise free) */
  view_init(&h, F.hidden);
  h.strides[0] = -64;
  h.strides[1] = 1;
  h.t.strides = h.strides;
  a = fx_runargs(&F);
  a.hidden_states = &h.t;
  EXPECT(run_with(&a), IA, "hidden_states");
  {
    fx one;
    if (!fx_init(&one, MOE_BACKEND_CPU, 1, 8, 1, 7) &&
        !CHECK_OK(fx_prepare(&one, NULL, &one.plan))) {
      view h1;
      view_init(&h1, one.hidden);
      h1.strides[0] = -5; /* shape [1, 64] */
      h1.strides[1] = 1;
      h1.t.strides = h1.strides;
      moe_run_args a1 = fx_runargs(&one);
      a1.hidden_states = &h1.t;
      EXPECT(moe_runner_run(one.r, &one.p, &a1, one.cfg, &one.plan, one.ws.ptr, one.ws.bytes, NULL),
             IA, "hidden_states");
      h1.strides[0] = 99; /* a positive stride of a size-1 dim is meaningless and accepted */
      CHECK_OK(
          moe_runner_run(one.r, &one.p, &a1, one.cfg, &one.plan, one.ws.ptr, one.ws.bytes, NULL));
    }
    fx_free(&one);
  }
  /* NULL shape with ndim > 0 */
  view_init(&h, F.hidden);
  h.t.shape = NULL;
  a = fx_runargs(&F);
  a.hidden_states = &h.t;
  EXPECT(run_with(&a), IA, "hidden_states");
  /* every device type but the CPU backend's two (kDLCPU, kDLCUDAHost), and junk values */
  const int devices[] = {0,         kDLCUDA,   kDLOpenCL,  5,           6,         kDLVulkan,
                         kDLMetal,  kDLVPI,    kDLROCM,    kDLROCMHost, kDLExtDev, kDLCUDAManaged,
                         kDLOneAPI, kDLWebGPU, kDLHexagon, kDLMAIA,     18,        99,
                         -1};
  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; ++i) {
    view_init(&h, F.hidden);
    h.t.device.device_type = (DLDeviceType)devices[i];
    a = fx_runargs(&F);
    a.hidden_states = &h.t;
    EXPECT(run_with(&a), IA, "hidden_states");
    view lg;
    view_init(&lg, F.logits);
    lg.t.device.device_type = (DLDeviceType)devices[i];
    ra = fx_rargs(&F);
    ra.logits = &lg.t;
    moe_plan pl;
    moe_plan_init(&pl, MOE_PLAN_VERSION);
    EXPECT(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, F.ws.ptr, F.ws.bytes, &pl, NULL), IA,
           "logits");
  }
  /* NULL data on non-empty tensors */
  view_init(&h, F.hidden);
  h.t.data = NULL;
  a = fx_runargs(&F);
  a.hidden_states = &h.t;
  EXPECT(run_with(&a), IA, "hidden_states");
  /* data + byte_offset wrapping around the address space */
  view_init(&h, F.hidden);
  h.t.byte_offset = UINT64_MAX - 1;
  EXPECT(run_with(&a), IA, "hidden_states");
}

/* Item 3: data + byte_offset must be aligned to the element size (the CPU backend did
 * misaligned loads and stores; the GPU faults). Whole-element offsets stay valid. */
static void test_misaligned(void) {
  moe_run_args a;
  view v;
#define RUN_SHIFTED(field, tensor, bytes_)     \
  do {                                         \
    view_init(&v, tensor);                     \
    v.t.byte_offset = (bytes_);                \
    a = fx_runargs(&F);                        \
    a.field = &v.t;                            \
    EXPECT(run_with(&a), IA, "args->" #field); \
  } while (0)
  RUN_SHIFTED(hidden_states, F.hidden, 1);
  RUN_SHIFTED(output, F.out, 1);
  /* prepared weights: uint8 tensors holding bf16, 16-byte aligned as moe_weights_prepare
   * writes them (the fuzzer found the CPU GEMMs reading them misaligned) */
  RUN_SHIFTED(gemm1_weights, F.w1, 1);
  RUN_SHIFTED(gemm2_weights, F.w2, 2);
  RUN_SHIFTED(gemm2_weights, F.w2, 8);
  {
    ttensor *b2 = tt_new(MOE_BACKEND_CPU, DT_F32, 2, (int64_t[]){8, 64});
    memset(b2->t.data, 0, b2->bytes);
    RUN_SHIFTED(gemm2_bias, b2, 2);
    v.t.byte_offset = 0;
    CHECK_OK(run_with(&a));
    tt_free(b2);
  }
  /* routing inputs: bf16 logits by one byte, int32 ids by two, fp32 weights by two */
  moe_routing_args ra = fx_rargs(&F);
  moe_plan pl;
  moe_plan_init(&pl, MOE_PLAN_VERSION);
  view_init(&v, F.logits);
  v.t.byte_offset = 1;
  ra.logits = &v.t;
  EXPECT(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, F.ws.ptr, F.ws.bytes, &pl, NULL), IA, "logits");
  int32_t ids[4 * 2 + 1] = {0, 1, 2, 3, 4, 5, 6, 7, 0};
  float w[4 * 2 + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  ttensor *ti = tt_from_host(MOE_BACKEND_CPU, DT_I32, 1, (int64_t[]){9}, ids);
  ttensor *tw = tt_from_host(MOE_BACKEND_CPU, DT_F32, 1, (int64_t[]){9}, w);
  view vi, vw;
  view_init(&vi, ti);
  view_init(&vw, tw);
  vi.t.ndim = vw.t.ndim = 2;
  vi.shape[0] = vw.shape[0] = 4;
  vi.shape[1] = vw.shape[1] = 2;
  ra = fx_rargs(&F);
  ra.logits = NULL;
  ra.topk_ids = &vi.t;
  ra.topk_weights = &vw.t;
  CHECK_OK(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, F.ws.ptr, F.ws.bytes, &pl, NULL));
  vi.t.byte_offset = 4; /* one whole element: fine */
  CHECK_OK(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, F.ws.ptr, F.ws.bytes, &pl, NULL));
  vi.t.byte_offset = 2;
  EXPECT(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, F.ws.ptr, F.ws.bytes, &pl, NULL), IA,
         "topk_ids");
  vi.t.byte_offset = 0;
  vw.t.byte_offset = 2;
  EXPECT(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, F.ws.ptr, F.ws.bytes, &pl, NULL), IA,
         "topk_weights");
  vw.t.byte_offset = 0;
  vi.t.data = (char *)vi.t.data + 1; /* misaligned through data itself */
  EXPECT(moe_routing_prepare(F.r, &F.p, &ra, F.cfg, F.ws.ptr, F.ws.bytes, &pl, NULL), IA,
         "topk_ids");
  tt_free(ti);
  tt_free(tw);
  /* canonical weights by one byte in moe_weights_prepare */
  {
    size_t bytes = 0;
    CHECK_OK(moe_weights_prepared_size(F.r, &F.p, MOE_WEIGHTS_GEMM2, &bytes));
    ttensor *c = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)bytes + 16});
    memset(c->t.data, 0, c->bytes);
    view vc;
    view_init(&vc, c);
    vc.t.dtype = DT_BF16;
    vc.t.ndim = 3;
    vc.shape[0] = 8;
    vc.shape[1] = 64;
    vc.shape[2] = 64;
    vc.t.byte_offset = 1;
    EXPECT(moe_weights_prepare(F.r, &F.p, MOE_WEIGHTS_GEMM2, &vc.t, &F.w2->t, NULL), IA,
           "canonical");
    tt_free(c);
  }
  /* the CPU backend keeps accepting whole-element (not 16-byte) offsets of the GEMM inputs
   * (the prepares above replaced F.plan in its workspace: prepare it again) */
  CHECK_OK(fx_prepare(&F, NULL, &F.plan));
  {
    const int64_t T = F.p.num_tokens, H = F.p.hidden_size;
    uint16_t *host = t_xmalloc((size_t)(T * H) * 2);
    memcpy(host, F.hidden->t.data, (size_t)(T * H) * 2);
    ttensor *hs = tt_from_host_shifted(MOE_BACKEND_CPU, DT_BF16, 2, (int64_t[]){T, H}, host, 1);
    a = fx_runargs(&F);
    a.hidden_states = &hs->t;
    CHECK_OK(run_with(&a));
    tt_free(hs);
    free(host);
  }
}

/* Item 5: UB in size math and messages (a sanitizer build aborts here when it is back). */
static void test_undefined_behaviour(void) {
  /* NULL data + byte_offset on an empty tensor at T = 0 is valid input */
  {
    fx z;
    if (!fx_init(&z, MOE_BACKEND_CPU, 0, 8, 1, 11)) {
      view lg, hs, out;
      view_init(&lg, z.logits);
      view_init(&hs, z.hidden);
      view_init(&out, z.out);
      lg.t.data = hs.t.data = out.t.data = NULL;
      lg.t.byte_offset = 64;
      hs.t.byte_offset = 128;
      out.t.byte_offset = 2;
      moe_routing_args ra = fx_rargs(&z);
      ra.logits = &lg.t;
      moe_plan pl;
      moe_plan_init(&pl, MOE_PLAN_VERSION);
      if (!CHECK_OK(moe_routing_prepare(z.r, &z.p, &ra, z.cfg, z.ws.ptr, z.ws.bytes, &pl, NULL))) {
        moe_run_args a = fx_runargs(&z);
        a.hidden_states = &hs.t;
        a.output = &out.t;
        CHECK_OK(moe_runner_run(z.r, &z.p, &a, z.cfg, &pl, z.ws.ptr, z.ws.bytes, NULL));
      }
    }
    fx_free(&z);
  }
  /* num_tokens * top_k past int64 in the "exceeds int32" message */
  {
    moe_problem p = F.p;
    p.num_tokens = INT64_MAX / 2;
    p.top_k = 4;
    int32_t n = 0, c[64];
    EXPECT(moe_runner_get_valid_configs(F.r, &p, c, 64, &n), NS, "num_tokens");
    size_t b = 0;
    EXPECT(moe_runner_get_workspace_size(F.r, &p, F.cfg, &b), NS, "num_tokens");
  }
  /* A prepared W1 of 2^63 - 2 bytes: E_l = 3, non-gated, I = 2^31 - 1, H = 715827883
   * (3 x (2^31 - 1) x 715827883 x 2 = 2 (2^62 - 1)). Its "at least" shape code is INT64_MIN,
   * which the check and the message used to negate. Nothing is read: a wrong-sized prepared
   * tensor is refused first. */
  {
    moe_runner *rr = t_runner(MOE_BACKEND_CPU, MOE_ACTIVATION_RELU2);
    moe_problem p;
    t_problem(&p, 3, 0, 1, 0, 3, 715827883, 2147483647);
    size_t bytes = 0;
    if (rr && !CHECK_OK(moe_weights_prepared_size(rr, &p, MOE_WEIGHTS_GEMM1, &bytes))) {
      CHECK(bytes == (size_t)INT64_MAX - 1, "prepared size %zu", bytes);
      static uint16_t dummy[64];
      DLTensor canon = {dummy, {kDLCPU, 0}, 3, DT_BF16, (int64_t[]){3, 2147483647, 715827883}, NULL,
                        0};
      DLTensor prep = {dummy, {kDLCPU, 0}, 1, DT_U8, (int64_t[]){64}, NULL, 0};
      EXPECT(moe_weights_prepare(rr, &p, MOE_WEIGHTS_GEMM1, &canon, &prep, NULL), IA, "prepared");
      CHECK(strstr(moe_get_last_error(), "9223372036854775806") != NULL,
            "message names the size: %s", moe_get_last_error());
      /* the same shape code through run (T = 0, so routing and the plan are empty) */
      moe_routing_args ra;
      moe_routing_args_init(&ra, MOE_ROUTING_ARGS_VERSION);
      DLTensor lg = {NULL, {kDLCPU, 0}, 2, DT_BF16, (int64_t[]){0, 3}, NULL, 0};
      ra.logits = &lg;
      int32_t cfg = -1;
      size_t wsb = 0;
      moe_plan pl;
      moe_plan_init(&pl, MOE_PLAN_VERSION);
      if (!CHECK_OK(moe_runner_get_default_config(rr, &p, &cfg)) &&
          !CHECK_OK(moe_runner_get_workspace_size(rr, &p, cfg, &wsb))) {
        void *ws = tmem_alloc(MOE_BACKEND_CPU, wsb);
        if (!CHECK_OK(moe_routing_prepare(rr, &p, &ra, cfg, ws, wsb, &pl, NULL))) {
          moe_run_args a;
          moe_run_args_init(&a, MOE_RUN_ARGS_VERSION);
          DLTensor hs = {NULL, {kDLCPU, 0}, 2, DT_BF16, (int64_t[]){0, 715827883}, NULL, 0};
          DLTensor out = hs;
          DLTensor w2 = {dummy, {kDLCPU, 0}, 1, DT_U8, (int64_t[]){64}, NULL, 0};
          a.hidden_states = &hs;
          a.output = &out;
          a.gemm1_weights = &prep;
          a.gemm2_weights = &w2;
          EXPECT(moe_runner_run(rr, &p, &a, cfg, &pl, ws, wsb, NULL), IA, "gemm1_weights");
        }
        tmem_free(MOE_BACKEND_CPU, ws);
      }
    }
    moe_runner_destroy(rr);
  }
}

/* Item 7: in-place preparation is refused (it corrupted gated W1: up and gate rows are
 * interleaved, so rows were overwritten before they were read). */
static void test_in_place_weights(void) {
  size_t bytes = 0;
  if (CHECK_OK(moe_weights_prepared_size(F.r, &F.p, MOE_WEIGHTS_GEMM1, &bytes))) return;
  ttensor *buf = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)bytes + 256});
  memset(buf->t.data, 0, buf->bytes);
  view canon;
  view_init(&canon, buf);
  canon.t.dtype = DT_BF16;
  canon.t.ndim = 3;
  canon.shape[0] = 8;
  canon.shape[1] = 128;
  canon.shape[2] = 64;
  view prep;
  view_init(&prep, buf);
  prep.shape[0] = (int64_t)bytes;
  EXPECT(moe_weights_prepare(F.r, &F.p, MOE_WEIGHTS_GEMM1, &canon.t, &prep.t, NULL), IA,
         "prepared");
  prep.t.byte_offset = 128; /* partly overlapping, either way round */
  EXPECT(moe_weights_prepare(F.r, &F.p, MOE_WEIGHTS_GEMM1, &canon.t, &prep.t, NULL), IA,
         "prepared");
  prep.t.byte_offset = 0;
  canon.t.byte_offset = 64;
  EXPECT(moe_weights_prepare(F.r, &F.p, MOE_WEIGHTS_GEMM1, &canon.t, &prep.t, NULL), IA,
         "prepared");
  /* disjoint buffers are still fine */
  canon.t.byte_offset = 0;
  ttensor *dst = tt_new(MOE_BACKEND_CPU, DT_U8, 1, (int64_t[]){(int64_t)bytes});
  CHECK_OK(moe_weights_prepare(F.r, &F.p, MOE_WEIGHTS_GEMM1, &canon.t, &dst->t, NULL));
  tt_free(dst);
  tt_free(buf);
}

/* With an argument, only the section of that name runs (to check one fix at a time). */
static int want(int argc, char **argv, const char *section) {
  return argc < 2 || strcmp(argv[1], section) == 0;
}

int main(int argc, char **argv) {
  if (fx_init(&F, MOE_BACKEND_CPU, 4, 8, 1, 3) || CHECK_OK(fx_prepare(&F, NULL, &F.plan))) {
    fx_free(&F);
    return tc_summary("test_tensor_checks");
  }
  CHECK_OK(fx_run(&F, &F.plan));
  if (want(argc, argv, "overflowing_shape")) test_overflowing_shape();
  if (want(argc, argv, "metadata")) test_metadata();
  if (want(argc, argv, "misaligned")) test_misaligned();
  if (want(argc, argv, "undefined_behaviour")) test_undefined_behaviour();
  if (want(argc, argv, "in_place_weights")) test_in_place_weights();
  fx_free(&F);
  return tc_summary("test_tensor_checks");
}
