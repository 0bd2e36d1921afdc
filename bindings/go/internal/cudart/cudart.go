// Package cudart loads the CUDA runtime with dlopen so that the tests can place tensors on a GPU
// (the moe_trtllm library links cudart statically and exports no allocator). Test support only.
package cudart

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

typedef int (*malloc_fn)(void **, size_t);
typedef int (*free_fn)(void *);
typedef int (*memcpy_fn)(void *, const void *, size_t, int);
typedef int (*memset_fn)(void *, int, size_t);
typedef int (*sync_fn)(void);

static malloc_fn p_malloc;
static free_fn p_free;
static memcpy_fn p_memcpy;
static memset_fn p_memset;
static sync_fn p_sync;

static int cr_load(const char *name) {
  void *h = dlopen(name, RTLD_NOW);
  if (!h) return 1;
  p_malloc = (malloc_fn)dlsym(h, "cudaMalloc");
  p_free = (free_fn)dlsym(h, "cudaFree");
  p_memcpy = (memcpy_fn)dlsym(h, "cudaMemcpy");
  p_memset = (memset_fn)dlsym(h, "cudaMemset");
  p_sync = (sync_fn)dlsym(h, "cudaDeviceSynchronize");
  return (p_malloc && p_free && p_memcpy && p_memset && p_sync) ? 0 : 2;
}
static int cr_malloc(uintptr_t *out, size_t n) {
  void *p = NULL;
  int st = p_malloc(&p, n);
  *out = (uintptr_t)p;
  return st;
}
static int cr_free(uintptr_t p) { return p_free((void *)p); }
static int cr_memset(uintptr_t p, size_t n) { return p_memset((void *)p, 0, n); }
static int cr_h2d(uintptr_t dst, const void *src, size_t n) {
  return p_memcpy((void *)dst, src, n, 1);
}
static int cr_d2h(void *dst, uintptr_t src, size_t n) {
  int st = p_sync();
  return st ? st : p_memcpy(dst, (const void *)src, n, 2);
}
*/
import "C"

import (
	"fmt"
	"os"
	"unsafe"
)

// Load opens libcudart ($MOE_CUDART first, then the usual names).
func Load() error {
	names := []string{"libcudart.so", "libcudart.so.13", "libcudart.so.12",
		"/usr/local/cuda/lib64/libcudart.so",
		"/usr/local/cuda/targets/x86_64-linux/lib/libcudart.so"}
	if env := os.Getenv("MOE_CUDART"); env != "" {
		names = append([]string{env}, names...)
	}
	for _, n := range names {
		cn := C.CString(n)
		st := C.cr_load(cn)
		C.free(unsafe.Pointer(cn))
		if st == 0 {
			return nil
		}
	}
	return fmt.Errorf("no CUDA runtime library found (tried %v)", names)
}

// Malloc allocates n zeroed device bytes.
func Malloc(n int) (uintptr, error) {
	if n < 256 {
		n = 256
	}
	var p C.uintptr_t
	if st := C.cr_malloc(&p, C.size_t(n)); st != 0 {
		return 0, fmt.Errorf("cudaMalloc(%d) = %d", n, int(st))
	}
	if st := C.cr_memset(p, C.size_t(n)); st != 0 {
		return 0, fmt.Errorf("cudaMemset = %d", int(st))
	}
	return uintptr(p), nil
}

// Free frees device memory.
func Free(p uintptr) { C.cr_free(C.uintptr_t(p)) }

// CopyToDevice copies n bytes of host memory at src (C memory) to dst.
func CopyToDevice(dst uintptr, src unsafe.Pointer, n int) error {
	if st := C.cr_h2d(C.uintptr_t(dst), src, C.size_t(n)); st != 0 {
		return fmt.Errorf("cudaMemcpy H2D = %d", int(st))
	}
	return nil
}

// CopyToHost synchronises the device and copies n bytes from src to host memory dst.
func CopyToHost(dst unsafe.Pointer, src uintptr, n int) error {
	if st := C.cr_d2h(dst, C.uintptr_t(src), C.size_t(n)); st != 0 {
		return fmt.Errorf("cudaMemcpy D2H = %d", int(st))
	}
	return nil
}
