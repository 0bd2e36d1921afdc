package moe

// Misuse a serving process commits (issue 23, items 8 and 9): closing a runner while other
// goroutines call it, closing it twice at once, reading an output after a GC, and memory of
// outputs nobody closes. And drift of the constants against the C header (issue 22).

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// forwardRef runs one forward on its own runner: the reference output of the setup.
func forwardRef(t *testing.T, s apiSetup) []uint16 {
	r := cpuRunner(t)
	defer r.Close()
	ra := s.routing()
	out, err := r.Forward(apiP, ra, s.runArgs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return append([]uint16(nil), out.Buffer().Uint16s()...)
}

func sameU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Goroutines call a shared runner while another closes it: every call either succeeds with the
// reference output or returns the library's error; Close waits for the calls in flight.
func TestCloseDuringCalls(t *testing.T) {
	for round := 0; round < 4; round++ {
		r := cpuRunner(t)
		s := setup(t, r)
		want := forwardRef(t, s)
		var ok, failed int64
		var wg sync.WaitGroup
		started := make(chan struct{}, 8)
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ra := s.routing()
				for i := 0; i < 40; i++ {
					if i == 2 {
						started <- struct{}{}
					}
					out, err := r.Forward(apiP, ra, s.runArgs(), nil)
					if err != nil {
						var e *Error
						if !errors.As(err, &e) || e.Status != StatusInvalidArgument || e.Message == "" {
							t.Errorf("after close: %v", err)
						}
						atomic.AddInt64(&failed, 1)
						continue
					}
					if !sameU16(out.Buffer().Uint16s(), want) {
						t.Error("forward during close gave a wrong output")
					}
					atomic.AddInt64(&ok, 1)
				}
			}()
		}
		for g := 0; g < 3; g++ {
			<-started
		}
		// Several closers at once (double close must be safe too).
		var cw sync.WaitGroup
		for c := 0; c < 3; c++ {
			cw.Add(1)
			go func() { defer cw.Done(); r.Close() }()
		}
		cw.Wait()
		wg.Wait()
		if ok == 0 || failed == 0 {
			t.Logf("round %d: %d calls succeeded, %d failed after close", round, ok, failed)
		}
		if _, err := r.NumConfigs(); err == nil {
			t.Fatal("call after Close succeeded")
		}
		// Plans of a closed runner fail cleanly too.
		if _, err := (&Plan{runner: r, ws: NewHostBuffer(64), wsBytes: 64}).ReadCount(PlanNumCtas); err == nil {
			t.Fatal("plan read after Close succeeded")
		}
	}
}

// Close from one goroutine while another is inside a long forward returns only after the
// forward has (the forward's result is the reference one); later calls fail. Up to three
// attempts, so that a loaded machine (the forward not yet under way when Close comes, or the
// goroutine descheduled right after it) cannot fail it; without the wait every attempt shows
// Close returning most of a forward too early.
func TestCloseWaitsForCallInFlight(t *testing.T) {
	p := Problem{NumExperts: 8, NumTokens: 1024, TopK: 2, HiddenSize: 512, IntermediateSize: 512}
	w1c, w2c := genBF16(21, 4, 8, 8, 1024, 512), genBF16(21, 5, 8, 8, 512, 512)
	ra := NewRoutingArgs()
	ra.Logits = genF32(21, 1, 21, 1024, 8)
	hidden := genBF16(21, 3, 6, 1024, 512)
	last := ""
	for attempt := 0; attempt < 3; attempt++ {
		o := DefaultOptions()
		o.Backend, o.NumThreads = BackendCPU, 1
		r, err := NewRunner(o)
		if err != nil {
			t.Fatal(err)
		}
		w1, w2 := prepareWeights(t, r, p, w1c, w2c)
		args := &RunArgs{HiddenStates: hidden, Gemm1Weights: w1, Gemm2Weights: w2}
		t0 := time.Now()
		ref, err := r.Forward(p, ra, args, nil)
		if err != nil {
			t.Fatal(err)
		}
		d := time.Since(t0)
		entering := make(chan struct{})
		done := make(chan struct{})
		var out *Tensor
		var ferr error
		var started, ended time.Time
		go func() {
			defer close(done)
			close(entering)
			started = time.Now()
			out, ferr = r.Forward(p, ra, args, nil)
			ended = time.Now()
		}()
		<-entering
		time.Sleep(d / 8) // the forward is under way
		r.Close()
		closed := time.Now()
		<-done
		if _, err := r.Forward(p, ra, args, nil); err == nil {
			t.Fatal("forward after Close succeeded")
		}
		if ferr != nil {
			var e *Error
			if errors.As(ferr, &e) && e.Status == StatusInvalidArgument {
				last = "Close came before the forward started: " + ferr.Error()
				continue // inconclusive: try again
			}
			t.Fatalf("the call in flight failed: %v", ferr)
		}
		if !sameU16(out.Buffer().Uint16s(), ref.Buffer().Uint16s()) {
			t.Fatal("the call in flight gave a wrong output")
		}
		// ended is taken just after the call releases the runner, so it may trail Close's
		// return a little; without the wait it trails by most of the call.
		call, slack := ended.Sub(started), ended.Sub(closed)
		if slack < call/2 {
			return
		}
		last = fmt.Sprintf("Close returned %v before the call in flight ended (the call took %v)",
			slack, call)
		t.Logf("attempt %d: %s", attempt, last)
	}
	t.Fatal(last)
}

// A tensor whose HostBuffer was closed is an argument error, never a NULL pointer for C.
func TestClosedHostBuffer(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	s := setup(t, r)
	ra := s.routing()
	hidden := genBF16(7, 3, 6, 5, 64)
	hidden.Buffer().Close()
	hidden.Buffer().Close() // idempotent
	_, err := r.Forward(apiP, ra, &RunArgs{HiddenStates: hidden, Gemm1Weights: s.w1,
		Gemm2Weights: s.w2}, nil)
	wantStatus(t, err, StatusInvalidArgument)
	ws := NewHostBuffer(1 << 20)
	ws.Close()
	_, err = r.Forward(apiP, ra, s.runArgs(), ws)
	wantStatus(t, err, StatusInvalidArgument)
}

// Two goroutines closing one runner at the same moment: one destroys it, the other returns.
func TestConcurrentDoubleClose(t *testing.T) {
	for i := 0; i < 200; i++ {
		r := cpuRunner(t)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 2; g++ {
			wg.Add(1)
			go func() { defer wg.Done(); <-start; r.Close() }()
		}
		close(start)
		wg.Wait()
	}
}

// The documented out.Buffer().Uint16s() view stays valid however many GCs run after the
// output tensor itself becomes unreachable, and while other forwards reuse memory.
func TestOutputViewSurvivesGC(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	s := setup(t, r)
	ra := NewRoutingArgs()
	p := Problem{NumExperts: 8, NumTokens: 64, TopK: 2, HiddenSize: 64, IntermediateSize: 32}
	logits := genF32(11, 1, 21, 64, 8)
	hidden := genBF16(11, 3, 6, 64, 64)
	ra.Logits = logits
	view := func() []uint16 {
		out, err := r.Forward(p, ra, &RunArgs{HiddenStates: hidden, Gemm1Weights: s.w1,
			Gemm2Weights: s.w2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out.Buffer().Uint16s() // out is unreachable after this
	}
	v := view()
	want := append([]uint16(nil), v...)
	other := genBF16(12, 3, 4, 64, 64)
	for i := 0; i < 20; i++ {
		runtime.GC()
		runtime.GC()
		// Forwards with other inputs allocate outputs of the same size.
		if _, err := r.Forward(p, ra, &RunArgs{HiddenStates: other, Gemm1Weights: s.w1,
			Gemm2Weights: s.w2}, nil); err != nil {
			t.Fatal(err)
		}
		if !sameU16(v, want) {
			t.Fatalf("output view changed after GC (iteration %d)", i)
		}
	}
}

func rssBytes(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Skip("no /proc/self/statm:", err)
	}
	f := strings.Fields(string(b))
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// Outputs nobody closes are ordinary Go memory: the GC reclaims them on its own schedule, so
// the resident size stays bounded over many forwards (C-allocated outputs freed only by
// finalizers grew without bound: the GC saw only the tiny Go headers).
func TestForwardOutputsDoNotAccumulate(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	p := Problem{NumExperts: 2, NumTokens: 64, TopK: 1, HiddenSize: 2048, IntermediateSize: 16}
	w1, w2 := prepareWeights(t, r, p, genBF16(3, 4, 8, 2, 32, 2048), genBF16(3, 5, 8, 2, 2048, 16))
	ra := NewRoutingArgs()
	ra.Logits = genF32(3, 1, 21, 64, 2)
	args := &RunArgs{HiddenStates: genBF16(3, 3, 6, 64, 2048), Gemm1Weights: w1, Gemm2Weights: w2}
	cfg, _ := r.DefaultConfig(p)
	n, _ := r.WorkspaceSize(p, cfg)
	ws := NewHostBuffer(n)
	runtime.GC()
	before := rssBytes(t)
	const iters = 1500 // 256 KiB of output each: 375 MiB if none were reclaimed
	for i := 0; i < iters; i++ {
		if _, err := r.Forward(p, ra, args, ws); err != nil {
			t.Fatal(err)
		}
	}
	grown := rssBytes(t) - before
	t.Logf("RSS grew %d KiB over %d forwards", grown/1024, iters)
	if grown > 96<<20 {
		t.Fatalf("RSS grew %d MiB over %d forwards: outputs are not reclaimed", grown>>20, iters)
	}
}

// A RunArgs given to Forward is not modified (its Output stays nil), so one RunArgs can serve
// several goroutines.
func TestForwardSharedRunArgs(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	s := setup(t, r)
	want := forwardRef(t, s)
	ra := s.routing()
	args := s.runArgs()
	var wg sync.WaitGroup
	outs := make([][]uint16, 8)
	for g := range outs {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			out, err := r.Forward(apiP, ra, args, nil)
			if err != nil {
				t.Error(err)
				return
			}
			outs[g] = out.Buffer().Uint16s()
		}(g)
	}
	wg.Wait()
	if args.Output != nil {
		t.Fatal("Forward stored its output in the caller's RunArgs")
	}
	for g := range outs {
		if !sameU16(outs[g], want) {
			t.Fatalf("goroutine %d: wrong output", g)
		}
	}
}

// headerDefines reads the integer #defines MOE_<family>_* of include/moe_trtllm.h.
func headerDefines(t *testing.T) map[string]int {
	_, file, _, _ := runtime.Caller(0)
	f, err := os.Open(filepath.Join(filepath.Dir(file), "..", "..", "include", "moe_trtllm.h"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	cont := ""
	for sc.Scan() {
		l := sc.Text()
		if strings.HasSuffix(l, "\\") {
			cont += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		lines = append(lines, cont+l)
		cont = ""
	}
	re := regexp.MustCompile(`^#define\s+(MOE_[A-Z0-9_]+)\s+\(?(-?\d+)\)?`)
	out := map[string]int{}
	for _, l := range lines {
		if m := re.FindStringSubmatch(l); m != nil {
			v, _ := strconv.Atoi(m[2])
			out[m[1]] = v
		}
	}
	return out
}

// Every status of the header has its name in the binding's table (and no other), and every
// backend, routing method, activation, dtype, weight kind and plan table is exported: a value
// added to the header fails here until the binding exports it.
func TestConstantsMatchHeader(t *testing.T) {
	defs := headerDefines(t)
	exported := map[string]int{
		"MOE_BACKEND_AUTO": BackendAuto, "MOE_BACKEND_CPU": BackendCPU,
		"MOE_BACKEND_CUDA":    BackendCUDA,
		"MOE_ROUTING_DEFAULT": RoutingDefault, "MOE_ROUTING_RENORMALIZE": RoutingRenormalize,
		"MOE_ROUTING_DEEPSEEK_V3": RoutingDeepSeekV3, "MOE_ROUTING_LLAMA4": RoutingLlama4,
		"MOE_ROUTING_RENORMALIZE_NAIVE": RoutingRenormalizeNaive,
		"MOE_ROUTING_TOPK":              RoutingTopK,
		"MOE_ACTIVATION_SWIGLU":         ActivationSwiGLU, "MOE_ACTIVATION_GEGLU": ActivationGeGLU,
		"MOE_ACTIVATION_RELU2": ActivationReLU2, "MOE_ACTIVATION_IDENTITY": ActivationIdentity,
		"MOE_DTYPE_BF16": DtypeBF16, "MOE_DTYPE_FP8_E4M3": DtypeFP8E4M3,
		"MOE_DTYPE_MXFP4":  DtypeMXFP4,
		"MOE_SCALING_NONE": ScalingNone, "MOE_SCALING_PER_TENSOR": ScalingPerTensor,
		"MOE_SCALING_BLOCK": ScalingBlock, "MOE_SCALING_MX": ScalingMX,
		"MOE_LAYOUT_CONTIGUOUS": LayoutContiguous, "MOE_LAYOUT_MASKED": LayoutMasked,
		"MOE_WEIGHTS_GEMM1": WeightsGemm1, "MOE_WEIGHTS_GEMM2": WeightsGemm2,
		"MOE_WEIGHTS_GEMM1_GATE_UP_INTERLEAVED": WeightsGemm1GateUpInterleaved,
		"MOE_PLAN_TOPK_IDS":                     PlanTopkIDs, "MOE_PLAN_EXPERT_WEIGHTS": PlanExpertWeights,
		"MOE_PLAN_EXPANDED_TO_PERMUTED": PlanExpandedToPermuted,
		"MOE_PLAN_PERMUTED_TO_TOKEN":    PlanPermutedToToken,
		"MOE_PLAN_PERMUTED_TO_EXPANDED": PlanPermutedToExpanded,
		"MOE_PLAN_CTA_TO_BATCH":         PlanCtaToBatch, "MOE_PLAN_CTA_TO_MN_LIMIT": PlanCtaToMnLimit,
		"MOE_PLAN_NUM_CTAS": PlanNumCtas, "MOE_PLAN_PERMUTED_SIZE": PlanPermutedSize,
		"MOE_PLAN_EXPERT_COUNTS": PlanExpertCounts,
	}
	statuses := 0
	for name, v := range defs {
		if strings.HasSuffix(name, "_VERSION") || strings.HasPrefix(name, "MOE_VERSION_") {
			continue
		}
		if strings.HasPrefix(name, "MOE_STATUS_") {
			s := strings.TrimPrefix(name, "MOE_STATUS_")
			statuses++
			if StatusName(v) != s {
				t.Errorf("%s = %d: the binding names it %q", name, v, StatusName(v))
			}
			continue
		}
		for _, fam := range []string{"MOE_BACKEND_", "MOE_ROUTING_", "MOE_ACTIVATION_",
			"MOE_DTYPE_", "MOE_SCALING_", "MOE_LAYOUT_", "MOE_WEIGHTS_", "MOE_PLAN_"} {
			if strings.HasPrefix(name, fam) {
				if got, ok := exported[name]; !ok {
					t.Errorf("%s (= %d) is not exported by the Go binding", name, v)
				} else if got != v {
					t.Errorf("%s = %d in the header, %d in the binding", name, v, got)
				}
			}
		}
	}
	if statuses == 0 || statuses != len(statusNames) {
		t.Errorf("header has %d statuses, the binding's table %d", statuses, len(statusNames))
	}
	for name := range exported {
		if _, ok := defs[name]; !ok {
			t.Errorf("%s is exported but not in the header", name)
		}
	}
}
