/*
 * ep_loopback.c - the in-process transport of moe_ep (MOE_EP_TRANSPORT_LOOPBACK): R ranks are
 * threads of one process sharing a moe_ep_loopback group; data moves by memcpy between host
 * buffers. Used by the tests (tests/test_ep.c) and for single-process simulation.
 *
 * Every collective is two barriers: each rank publishes its send pointers in the group, waits
 * for all ranks, copies what it receives, and waits again (so no sender reuses a buffer that a
 * receiver still reads). A mismatch between a recv's size and the matching send's is an
 * internal error (the sizes come from the same exchanged counts on both sides).
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ep_internal.h"

#define LB_MAX_WORLD 4096

typedef struct lb_msg {
  const void *buf;
  size_t bytes;
} lb_msg;

struct moe_ep_loopback {
  int32_t world;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int32_t arrived;
  uint64_t generation;
  lb_msg *post; /* [world * world]: post[src * world + dst] = what src sends to dst */
};

typedef struct lb_pending {
  void *buf;
  size_t bytes;
} lb_pending;

typedef struct lb_transport {
  moe_ep_transport base;
  moe_ep_loopback *g;
  int32_t in_group;
  lb_pending *recvs; /* [world]: this rank's pending recv per source */
  int32_t *recv_posted;
} lb_transport;

MOE_API moe_status_t moe_ep_loopback_create(int32_t world_size, moe_ep_loopback **out) {
  moe_clear_error();
  if (!out) return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "out: expected a non-NULL pointer");
  *out = NULL;
  if (world_size < 1 || world_size > LB_MAX_WORLD)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT, "world_size: expected 1..%d, given %d",
                    LB_MAX_WORLD, world_size);
  moe_ep_loopback *g = (moe_ep_loopback *)calloc(1, sizeof *g);
  lb_msg *post = (lb_msg *)calloc((size_t)world_size * (size_t)world_size, sizeof *post);
  if (!g || !post) {
    free(g);
    free(post);
    return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "moe_ep_loopback_create: out of host memory");
  }
  g->world = world_size;
  g->post = post;
  pthread_mutex_init(&g->mu, NULL);
  pthread_cond_init(&g->cv, NULL);
  *out = g;
  return MOE_STATUS_SUCCESS;
}

MOE_API void moe_ep_loopback_destroy(moe_ep_loopback *g) {
  if (!g) return;
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
  free(g->post);
  free(g);
}

static void barrier(moe_ep_loopback *g) {
  pthread_mutex_lock(&g->mu);
  const uint64_t gen = g->generation;
  if (++g->arrived == g->world) {
    g->arrived = 0;
    g->generation++;
    pthread_cond_broadcast(&g->cv);
  } else {
    while (gen == g->generation) pthread_cond_wait(&g->cv, &g->mu);
  }
  pthread_mutex_unlock(&g->mu);
}

static moe_status_t lb_allgather(moe_ep_transport *t, const void *send, void *recv, size_t bytes,
                                 moe_cuda_stream_t stream) {
  lb_transport *l = (lb_transport *)t;
  moe_ep_loopback *g = l->g;
  const int32_t me = t->rank, R = t->world;
  g->post[(size_t)me * R + me] = (lb_msg){send, bytes};
  barrier(g);
  moe_status_t s = MOE_STATUS_SUCCESS;
  for (int32_t src = 0; src < R; ++src) {
    const lb_msg m = g->post[(size_t)src * R + src];
    if (m.bytes != bytes)
      s = moe_fail(MOE_STATUS_INTERNAL,
                   "loopback allgather: rank %d gave %zu bytes, rank %d expected %zu", src, m.bytes,
                   me, bytes);
    else if (bytes)
      memcpy((char *)recv + (size_t)src * bytes, m.buf, bytes);
  }
  barrier(g);
  return s;
}

static moe_status_t lb_group_start(moe_ep_transport *t) {
  lb_transport *l = (lb_transport *)t;
  const int32_t R = t->world;
  for (int32_t p = 0; p < R; ++p) {
    l->g->post[(size_t)t->rank * R + p] = (lb_msg){NULL, 0};
    l->recv_posted[p] = 0;
  }
  l->in_group = 1;
  return MOE_STATUS_SUCCESS;
}

static moe_status_t lb_send(moe_ep_transport *t, const void *buf, size_t bytes, int32_t peer,
                            moe_cuda_stream_t stream) {
  lb_transport *l = (lb_transport *)t;
  if (!l->in_group || peer < 0 || peer >= t->world)
    return moe_fail(MOE_STATUS_INTERNAL, "loopback send outside a group or to peer %d", peer);
  l->g->post[(size_t)t->rank * t->world + peer] = (lb_msg){buf, bytes};
  return MOE_STATUS_SUCCESS;
}

static moe_status_t lb_recv(moe_ep_transport *t, void *buf, size_t bytes, int32_t peer,
                            moe_cuda_stream_t stream) {
  lb_transport *l = (lb_transport *)t;
  if (!l->in_group || peer < 0 || peer >= t->world)
    return moe_fail(MOE_STATUS_INTERNAL, "loopback recv outside a group or from peer %d", peer);
  l->recvs[peer] = (lb_pending){buf, bytes};
  l->recv_posted[peer] = 1;
  return MOE_STATUS_SUCCESS;
}

static moe_status_t lb_group_end(moe_ep_transport *t, moe_cuda_stream_t stream) {
  lb_transport *l = (lb_transport *)t;
  moe_ep_loopback *g = l->g;
  const int32_t me = t->rank, R = t->world;
  barrier(g); /* every send of the group is posted */
  moe_status_t s = MOE_STATUS_SUCCESS;
  for (int32_t src = 0; src < R; ++src) {
    const lb_msg m = g->post[(size_t)src * R + me];
    const size_t want = l->recv_posted[src] ? l->recvs[src].bytes : 0;
    if (m.bytes != want)
      s = moe_fail(MOE_STATUS_INTERNAL,
                   "loopback exchange: rank %d sends %zu bytes to rank %d, which receives %zu", src,
                   m.bytes, me, want);
    else if (want)
      memcpy(l->recvs[src].buf, m.buf, want);
  }
  barrier(g); /* every receive is done: the senders may reuse their buffers */
  l->in_group = 0;
  return s;
}

static void lb_destroy(moe_ep_transport *t) {
  lb_transport *l = (lb_transport *)t;
  if (!l) return;
  free(l->recvs);
  free(l->recv_posted);
  free(l);
}

static const moe_ep_transport_ops lb_ops = {lb_allgather, lb_group_start, lb_send,
                                            lb_recv,      lb_group_end,   lb_destroy};

moe_status_t moe_ep_loopback_open(moe_ep_loopback *g, int32_t rank, moe_ep_transport **out) {
  *out = NULL;
  if (!g)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->comm: expected a moe_ep_loopback group (moe_ep_loopback_create) "
                    "with MOE_EP_TRANSPORT_LOOPBACK, given NULL");
  if (rank < 0 || rank >= g->world)
    return moe_fail(MOE_STATUS_INVALID_ARGUMENT,
                    "options->rank: expected 0..%d (the loopback group has %d ranks), given %d",
                    g->world - 1, g->world, rank);
  lb_transport *l = (lb_transport *)calloc(1, sizeof *l);
  if (l) {
    l->recvs = (lb_pending *)calloc((size_t)g->world, sizeof *l->recvs);
    l->recv_posted = (int32_t *)calloc((size_t)g->world, sizeof *l->recv_posted);
  }
  if (!l || !l->recvs || !l->recv_posted) {
    if (l) lb_destroy(&l->base);
    return moe_fail(MOE_STATUS_OUT_OF_MEMORY, "moe_ep_create: out of host memory");
  }
  l->g = g;
  l->base.ops = &lb_ops;
  l->base.rank = rank;
  l->base.world = g->world;
  l->base.device = -1;
  *out = &l->base;
  return MOE_STATUS_SUCCESS;
}
