package moe

import (
	"errors"
	"strings"
	"testing"
)

var apiP = Problem{NumExperts: 8, NumTokens: 5, TopK: 2, HiddenSize: 64, IntermediateSize: 32}

type apiSetup struct {
	logits, hidden, w1, w2 *Tensor
}

func cpuRunner(t *testing.T) *Runner {
	o := DefaultOptions()
	o.Backend = BackendCPU
	r, err := NewRunner(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// prepareWeights prepares canonical host weights of p for GEMM1 and GEMM2 on r, failing t on
// an error.
func prepareWeights(t *testing.T, r *Runner, p Problem, w1, w2 *Tensor) (*Tensor, *Tensor) {
	t.Helper()
	pw1, err := r.PrepareWeightsHost(p, WeightsGemm1, w1)
	if err != nil {
		t.Fatal(err)
	}
	pw2, err := r.PrepareWeightsHost(p, WeightsGemm2, w2)
	if err != nil {
		t.Fatal(err)
	}
	return pw1, pw2
}

func setup(t *testing.T, r *Runner) apiSetup {
	w1, w2 := prepareWeights(t, r, apiP, genBF16(7, 4, 8, 8, 64, 64), genBF16(7, 5, 8, 8, 64, 32))
	return apiSetup{genF32(7, 1, 21, 5, 8), genBF16(7, 3, 6, 5, 64), w1, w2}
}

// routing returns routing args over the setup's logits.
func (s apiSetup) routing() *RoutingArgs {
	ra := NewRoutingArgs()
	ra.Logits = s.logits
	return ra
}

// runArgs returns the setup's hidden states and weights, with no output (Forward allocates it).
func (s apiSetup) runArgs() *RunArgs {
	return &RunArgs{HiddenStates: s.hidden, Gemm1Weights: s.w1, Gemm2Weights: s.w2}
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("expected *Error with status %d, got %v", status, err)
	}
	if e.Status != status || e.Message == "" {
		t.Fatalf("expected status %s with a message, got %v", StatusName(status), e)
	}
}

func TestQueries(t *testing.T) {
	if a, _, _ := Version(); a != 0 {
		t.Fatalf("major version %d", a)
	}
	if StatusString(StatusInvalidArgument) == "" {
		t.Fatal("empty status string")
	}
	r := cpuRunner(t)
	defer r.Close()
	if b, err := r.Backend(); err != nil || b != BackendCPU {
		t.Fatal(b, err)
	}
	cfgs, err := r.ValidConfigs(apiP)
	if err != nil || len(cfgs) == 0 {
		t.Fatal(cfgs, err)
	}
	if d, _ := r.DefaultConfig(apiP); d != cfgs[0] {
		t.Fatal("default config is not the first valid one")
	}
	for _, c := range cfgs {
		i, err := r.DescribeConfig(c)
		if err != nil || i.Index != c || i.Name == "" || i.Tile != i.CtaTile*i.ClusterSize {
			t.Fatal(i, err)
		}
		if cs, _ := r.ClusterSize(c); cs != i.ClusterSize {
			t.Fatal("cluster size")
		}
		if n, err := r.WorkspaceSize(apiP, c); err != nil || n <= 0 {
			t.Fatal(n, err)
		}
	}
	if n, _ := r.WeightsPreparedSize(apiP, WeightsGemm1); n != 8*64*64*2 {
		t.Fatal("prepared size", n)
	}
}

func TestPrepareRunMatchesForward(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	s := setup(t, r)
	cfg, _ := r.DefaultConfig(apiP)
	n, _ := r.WorkspaceSize(apiP, cfg)
	ws := NewHostBuffer(n)
	defer ws.Close()
	ra := s.routing()
	plan, err := r.PrepareRouting(apiP, cfg, ra, ws)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := plan.ReadInt32(PlanTopkIDs)
	if err != nil || len(ids) != 10 {
		t.Fatal(ids, err)
	}
	out := NewHostTensor(BF16, 5, 64)
	if err := r.Run(apiP, cfg, plan, &RunArgs{HiddenStates: s.hidden, Gemm1Weights: s.w1,
		Gemm2Weights: s.w2, Output: out}); err != nil {
		t.Fatal(err)
	}
	out2, err := r.Forward(apiP, ra, s.runArgs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := out.Buffer().Uint16s(), out2.Buffer().Uint16s()
	nonzero := false
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("forward differs from prepare+run at %d", i)
		}
		nonzero = nonzero || a[i] != 0
	}
	if !nonzero {
		t.Fatal("all-zero output")
	}
}

func TestBadShape(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	s := setup(t, r)
	ra := s.routing()
	_, err := r.Forward(apiP, ra, &RunArgs{HiddenStates: NewHostTensor(BF16, 5, 32),
		Gemm1Weights: s.w1, Gemm2Weights: s.w2}, nil)
	wantStatus(t, err, StatusInvalidArgument)
}

func TestBadEnumValue(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	s := setup(t, r)
	ra := NewRoutingArgs()
	ra.Logits, ra.Method = s.logits, 42
	_, err := r.Forward(apiP, ra, s.runArgs(), nil)
	wantStatus(t, err, StatusInvalidArgument)
	o := DefaultOptions()
	o.Backend, o.Activation = BackendCPU, 5
	_, err = NewRunner(o)
	wantStatus(t, err, StatusInvalidArgument)
}

func TestTooSmallWorkspace(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	s := setup(t, r)
	cfg, _ := r.DefaultConfig(apiP)
	n, _ := r.WorkspaceSize(apiP, cfg)
	ws := NewHostBuffer(n - 256)
	defer ws.Close()
	ra := s.routing()
	_, err := r.PrepareRouting(apiP, cfg, ra, ws)
	wantStatus(t, err, StatusInsufficientWorkspace)
}

func TestUseAfterClose(t *testing.T) {
	r := cpuRunner(t)
	r.Close()
	r.Close() // idempotent
	_, err := r.ValidConfigs(apiP)
	wantStatus(t, err, StatusInvalidArgument)
}

func TestBufferTooSmallForShape(t *testing.T) {
	b := NewHostBuffer(16)
	defer b.Close()
	_, err := HostTensor(b, F32, 5)
	wantStatus(t, err, StatusInvalidArgument)
}

func TestAutotune(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	s := setup(t, r)
	ra := s.routing()
	res, err := r.Autotune(apiP, ra, s.runArgs(), nil, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfgs, _ := r.ValidConfigs(apiP)
	if len(res) != len(cfgs) {
		t.Fatalf("%d timed, %d valid", len(res), len(cfgs))
	}
	for i := 1; i < len(res); i++ {
		if res[i-1].TimeUs > res[i].TimeUs {
			t.Fatal("not fastest first")
		}
	}
}

// ---- grouped run (moe_runner_run_grouped) -----------------------------------------------------

var groupedP = Problem{NumExperts: 8, NumTokens: 12, TopK: 1, HiddenSize: 64,
	IntermediateSize: 32, LocalExpertOffset: 4, LocalNumExperts: 4}

// groupedArgs are contiguous grouped args over 12 hidden rows with the given counts.
func groupedArgs(t *testing.T, r *Runner, counts ...int32) *GroupedArgs {
	w1, w2 := prepareWeights(t, r, groupedP, genBF16(11, 4, 8, 4, 64, 64),
		genBF16(11, 5, 8, 4, 64, 32))
	cnt := NewHostTensor(I32, int64(len(counts)))
	copy(cnt.Buffer().Int32s(), counts)
	return &GroupedArgs{Layout: LayoutContiguous, HiddenStates: genBF16(11, 3, 6, 12, 64),
		ExpertCounts: cnt, Gemm1Weights: w1, Gemm2Weights: w2}
}

func TestRunGroupedBothLayouts(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	cfg, err := r.DefaultConfig(groupedP)
	if err != nil {
		t.Fatal(err)
	}
	a := groupedArgs(t, r, 3, 0, 5, 2)
	out, err := r.RunGrouped(groupedP, cfg, a, nil)
	if err != nil {
		t.Fatal(err)
	}
	contig := out.Buffer().Uint16s()
	for _, v := range contig[10*64:] {
		if v != 0 {
			t.Fatal("a row past the sum of the counts was written")
		}
	}
	m := *a
	m.Layout, m.Capacity = LayoutMasked, 3
	m.HiddenStates, _ = HostTensor(a.HiddenStates.Buffer(), BF16, 4, 3, 64)
	m.ExpertCounts = NewHostTensor(I32, 4)
	copy(m.ExpertCounts.Buffer().Int32s(), []int32{3, 0, 1, 2})
	out, err = r.RunGrouped(groupedP, cfg, &m, nil)
	if err != nil {
		t.Fatal(err)
	}
	masked := out.Buffer().Uint16s()
	for i := 0; i < 3*64; i++ {
		if masked[i] != contig[i] {
			t.Fatalf("masked row %d differs from the contiguous one", i/64)
		}
	}
}

func TestRunGroupedMisuseIsTheLibraryError(t *testing.T) {
	r := cpuRunner(t)
	defer r.Close()
	cfg, err := r.DefaultConfig(groupedP)
	if err != nil {
		t.Fatal(err)
	}
	good := groupedArgs(t, r, 3, 0, 5, 2)
	cases := []struct {
		name   string
		edit   func(a *GroupedArgs)
		needle string
	}{
		{"layout", func(a *GroupedArgs) { a.Layout = 7 }, "args->layout"},
		{"counts dtype", func(a *GroupedArgs) { a.ExpertCounts = NewHostTensor(F32, 4) }, "args->expert_counts"},
		{"counts length", func(a *GroupedArgs) { a.ExpertCounts = NewHostTensor(I32, 3) }, "args->expert_counts"},
		{"masked capacity", func(a *GroupedArgs) {
			a.Layout, a.Capacity = LayoutMasked, 4
			a.HiddenStates, _ = HostTensor(good.HiddenStates.Buffer(), BF16, 4, 3, 64)
		}, "args->capacity"},
		{"contiguous capacity", func(a *GroupedArgs) { a.Capacity = 3 }, "args->capacity"},
		{"count past the rows", func(a *GroupedArgs) {
			a.ExpertCounts = NewHostTensor(I32, 4)
			a.ExpertCounts.Buffer().Int32s()[0] = 13
		}, "args->expert_counts"},
	}
	for _, c := range cases {
		a := *good
		c.edit(&a)
		_, err := r.RunGrouped(groupedP, cfg, &a, nil)
		var e *Error
		if !errors.As(err, &e) || e.Status != StatusInvalidArgument ||
			!strings.Contains(e.Message, c.needle) {
			t.Errorf("%s: expected INVALID_ARGUMENT naming %s, got %v", c.name, c.needle, err)
		}
	}
}
