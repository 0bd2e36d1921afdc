/*
 * parallel.c - a small parallel-for over POSIX threads for the CPU reference backend.
 *
 * Items are handed out in chunks through one atomic counter, so the assignment of items to
 * threads varies run to run; every caller makes each item's result depend on the item only
 * (fixed summation orders), which is what keeps the backend independent of the thread count.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "cpu_internal.h"

#define MOE_CPU_MAX_THREADS 256

int32_t moe_cpu_thread_count(int32_t num_threads) {
  int64_t n = num_threads;
  if (n <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    n = cores > 0 ? cores : 1;
  }
  if (n > MOE_CPU_MAX_THREADS) n = MOE_CPU_MAX_THREADS;
  return (int32_t)n;
}

typedef struct pfor_state {
  atomic_llong next; /* first item not handed out yet */
  int64_t n, grain;
  moe_cpu_body_fn body;
  void *ctx;
} pfor_state;

static void pfor_work(pfor_state *s) {
  for (;;) {
    int64_t begin = (int64_t)atomic_fetch_add(&s->next, (long long)s->grain);
    if (begin >= s->n) return;
    int64_t end = begin + s->grain < s->n ? begin + s->grain : s->n;
    s->body(s->ctx, begin, end);
  }
}

static void *pfor_thread(void *arg) {
  pfor_work((pfor_state *)arg);
  return NULL;
}

void moe_cpu_parallel_for(int64_t n, int64_t grain, int32_t num_threads, moe_cpu_body_fn body,
                          void *ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t chunks = (n + grain - 1) / grain;
  int64_t workers = moe_cpu_thread_count(num_threads);
  if (workers > chunks) workers = chunks;
  if (workers <= 1) {
    body(ctx, 0, n);
    return;
  }
  pfor_state s;
  atomic_init(&s.next, 0);
  s.n = n;
  s.grain = grain;
  s.body = body;
  s.ctx = ctx;
  pthread_t tids[MOE_CPU_MAX_THREADS];
  int started[MOE_CPU_MAX_THREADS];
  for (int64_t i = 1; i < workers; ++i)
    started[i] = pthread_create(&tids[i], NULL, pfor_thread, &s) == 0;
  pfor_work(&s); /* the caller is worker 0; it also picks up the share of failed threads */
  for (int64_t i = 1; i < workers; ++i)
    if (started[i]) pthread_join(tids[i], NULL);
}
