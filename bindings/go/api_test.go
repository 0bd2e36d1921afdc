package moe

import (
	"errors"
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
