package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/health"
	"github.com/shipbot/shipbot/bot/rollout"
)

// fakeFleet switches hosts as soon as it is told; releases named "bad*" fail the
// health check, and hosts listed in noStage never finish staging.
type fakeFleet struct {
	mu      sync.Mutex
	active  map[string]string
	staged  map[string]map[string]bool
	noStage map[string]bool
	calls   int
	// noMetrics makes every host report no counters (the gates are inconclusive).
	noMetrics bool
	// looks counts Hosts calls: the counters grow by 1000 requests per look.
	looks float64
	// failQuietly: hosts in noStage stay in progress instead of reporting a failure.
	failQuietly bool
}

func newFleet(n int) *fakeFleet {
	f := &fakeFleet{active: map[string]string{}, staged: map[string]map[string]bool{}, noStage: map[string]bool{}}
	for i := 0; i < n; i++ {
		h := fmt.Sprintf("h%02d", i)
		f.active[h] = "v1"
		f.staged[h] = map[string]bool{"v1": true}
	}
	return f
}

func (f *fakeFleet) Hosts(release string) []rollout.HostView {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []rollout.HostView
	f.looks++
	for h, a := range f.active {
		v := rollout.HostView{Name: h, Active: a, Staged: f.staged[h][release]}
		if f.noStage[h] && !f.failQuietly {
			v.StageFailed = "disk full"
		}
		if f.noStage[h] {
			v.Bytes, v.Total, v.Rate = 2<<20, 5<<20, 1<<20
		}
		healthy := !strings.HasPrefix(a, "bad")
		v.Healthy = &healthy
		if !f.noMetrics {
			bad, history := 5.0, 0.0 // errors per 1000; good requests served before
			switch {
			case strings.HasPrefix(a, "err"):
				bad = 100
			case strings.HasPrefix(a, "hist"): // a long good past, bad now: only the bake window shows it
				bad, history = 100, 1e9
			}
			v.Metrics = map[string]float64{`req{code="200"}`: history + f.looks*(1000-bad), `req{code="500"}`: f.looks * bad}
		}
		out = append(out, v)
	}
	return out
}

func (f *fakeFleet) Stage(_ context.Context, hosts []string, rel string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for _, h := range hosts {
		if !f.noStage[h] {
			f.staged[h][rel] = true
		}
	}
	return nil
}

func (f *fakeFleet) Activate(_ context.Context, hosts []string, rel string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for _, h := range hosts {
		if f.staged[h][rel] {
			f.active[h] = rel
		}
	}
	return nil
}

func (f *fakeFleet) on(rel string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.active {
		if a == rel {
			n++
		}
	}
	return n
}

// memStore keeps every saved state, and what the fleet looked like at that moment,
// so tests can crash right after any save.
type memStore struct {
	fleet  *fakeFleet
	saved  []rollout.State
	fleets []*fakeFleet
}

func (m *memStore) SaveRollout(_ context.Context, s *rollout.State) error {
	b, _ := json.Marshal(s)
	var c rollout.State
	json.Unmarshal(b, &c)
	m.saved = append(m.saved, c)
	m.fleets = append(m.fleets, m.fleet.copy())
	return nil
}

func (f *fakeFleet) copy() *fakeFleet {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &fakeFleet{active: map[string]string{}, staged: map[string]map[string]bool{}, noStage: f.noStage}
	for h, a := range f.active {
		c.active[h] = a
		c.staged[h] = map[string]bool{}
		for r, ok := range f.staged[h] {
			c.staged[h][r] = ok
		}
	}
	return c
}

var tiers = []rollout.Tier{
	{Name: "a2", Size: "2", Bake: 10 * time.Minute},
	{Name: "50%", Size: "50%", Bake: 5 * time.Minute},
	{Name: "100%", Size: "100%", Bake: time.Minute},
}

type fixture struct {
	eng   *rollout.Engine
	fleet *fakeFleet
	store *memStore
	clock *clockwork.FakeClock
	said  []string
	posts []bot.Post
}

func newFixture(n int) *fixture {
	f := &fixture{fleet: newFleet(n), clock: clockwork.NewFakeClock()}
	f.store = &memStore{fleet: f.fleet}
	f.eng = &rollout.Engine{Config: rollout.Config{Tiers: tiers, StageTimeout: time.Hour, MaxStageFailures: 0.2, SwitchTimeout: time.Minute},
		Fleet: f.fleet, Store: f.store, Clock: f.clock,
		Committers: func(_ context.Context, rel string) string { return "@alice @bob" },
		Say: func(_ context.Context, p bot.Post) {
			f.said = append(f.said, p.Text)
			f.posts = append(f.posts, p)
		}}
	return f
}

// run steps s until it ends, a minute of fake time per step.
func (f *fixture) run(t *testing.T, s *rollout.State) {
	t.Helper()
	for i := 0; i < 200 && !s.Phase.Terminal(); i++ {
		if err := f.eng.Step(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute)
	}
	if !s.Phase.Terminal() {
		t.Fatalf("rollout stuck in %s", s.Phase)
	}
}

func TestGoodReleaseGoesThroughEveryTier(t *testing.T) {
	f := newFixture(10)
	s, err := f.eng.Start(context.Background(), nil, "v2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Start(context.Background(), s, "v3"); err == nil {
		t.Error("a second rollout started while one runs")
	}
	f.run(t, s)
	if s.Phase != rollout.PhaseDone || f.fleet.on("v2") != 10 {
		t.Errorf("phase %s, %d hosts on v2\n%s", s.Phase, f.fleet.on("v2"), strings.Join(f.said, "\n"))
	}
	var phases []string
	for _, st := range f.store.saved {
		phases = append(phases, fmt.Sprintf("%s/%d", st.Phase, st.Tier))
	}
	want := "staging/0 activating/0 baking/0 activating/1 baking/1 activating/2 baking/2 done/2"
	if strings.Join(phases, " ") != want {
		t.Errorf("transitions:\n%s\nwant\n%s", strings.Join(phases, " "), want)
	}
	if !strings.Contains(strings.Join(f.said, "\n"), "tier a2 healthy") {
		t.Errorf("no verdict posted:\n%s", strings.Join(f.said, "\n"))
	}
}

func TestBadReleaseRollsBackFromTheCanary(t *testing.T) {
	f := newFixture(10)
	s, _ := f.eng.Start(context.Background(), nil, "bad2")
	f.run(t, s)
	if s.Phase != rollout.PhaseRolledBack || f.fleet.on("v1") != 10 {
		t.Errorf("phase %s, %d hosts on v1", s.Phase, f.fleet.on("v1"))
	}
	if len(s.Activated) != 2 || !strings.Contains(s.Reason, "tier a2 unhealthy: 2 of 2") {
		t.Errorf("activated %v, reason %q", s.Activated, s.Reason)
	}
	if !strings.Contains(strings.Join(f.said, "\n"), "ROLLBACK bad2") || !strings.Contains(strings.Join(f.said, "\n"), "@alice @bob: please look") {
		t.Errorf("rollback not announced:\n%s", strings.Join(f.said, "\n"))
	}
}

func TestStagingFailures(t *testing.T) {
	f := newFixture(10)
	f.fleet.noStage["h03"] = true
	s, _ := f.eng.Start(context.Background(), nil, "v2")
	f.run(t, s)
	if s.Phase != rollout.PhaseDone || len(s.Excluded) != 1 || s.Excluded[0] != "h03" || f.fleet.on("v2") != 9 {
		t.Errorf("one failure within the limit: phase %s, excluded %v, on v2 %d", s.Phase, s.Excluded, f.fleet.on("v2"))
	}
	f = newFixture(10)
	for _, h := range []string{"h01", "h02", "h03"} {
		f.fleet.noStage[h] = true
	}
	s, _ = f.eng.Start(context.Background(), nil, "v2")
	f.run(t, s)
	if s.Phase != rollout.PhaseRolledBack || !strings.Contains(s.Reason, "staging failed on 3 of 10") || f.fleet.on("v2") != 0 {
		t.Errorf("three failures: phase %s, reason %q", s.Phase, s.Reason)
	}
}

// A host the registry does not know yet (shipbot just restarted) is waited for, up
// to the stage timeout; then it counts as failed.
func TestStagingWaitsForTheRegistry(t *testing.T) {
	f := newFixture(10)
	s, _ := f.eng.Start(context.Background(), nil, "v2")
	f.fleet.mu.Lock()
	delete(f.fleet.active, "h04") // gone from the registry
	f.fleet.mu.Unlock()
	f.eng.Step(context.Background(), s)
	if s.Phase != rollout.PhaseStaging {
		t.Fatalf("a host missing from the registry failed staging at once: %s %q", s.Phase, s.Reason)
	}
	f.clock.Advance(2 * time.Hour)
	f.eng.Step(context.Background(), s)
	if s.Phase == rollout.PhaseStaging || len(s.Excluded) != 1 || s.Excluded[0] != "h04" {
		t.Errorf("after the stage timeout: %s, excluded %v", s.Phase, s.Excluded)
	}
}

func TestStagingProgress(t *testing.T) {
	f := newFixture(6)
	f.fleet.noStage["h02"] = true // never finishes; reported as failed only at the end
	f.fleet.failQuietly = true
	s, _ := f.eng.Start(context.Background(), nil, "v2")
	for i := 0; i < 3; i++ {
		f.eng.Step(context.Background(), s)
		f.clock.Advance(5 * time.Second)
	}
	var progress []string
	for _, l := range f.said {
		if strings.Contains(l, "staging: ") {
			progress = append(progress, l)
		}
	}
	if len(progress) != 2 || !strings.Contains(progress[0], "v2 staging: 5/6 hosts, 1.0 MiB/s, ETA 3s; waiting for h02 40%") {
		t.Errorf("progress lines (every 10s): %q", progress)
	}
}

func TestCanaryOrderIsReproducible(t *testing.T) {
	a, _ := newFixture(20).eng.Start(context.Background(), nil, "v7")
	b, _ := newFixture(20).eng.Start(context.Background(), nil, "v7")
	c, _ := newFixture(20).eng.Start(context.Background(), nil, "v8")
	if strings.Join(a.Hosts, ",") != strings.Join(b.Hosts, ",") {
		t.Error("the same release gave two canary orders")
	}
	if strings.Join(a.Hosts[:2], ",") == strings.Join(c.Hosts[:2], ",") && strings.Join(a.Hosts, ",") == strings.Join(c.Hosts, ",") {
		t.Error("two releases gave the same order")
	}
}

func TestPauseAndPromote(t *testing.T) {
	f := newFixture(10)
	s, _ := f.eng.Start(context.Background(), nil, "v2")
	s.Paused = true
	for i := 0; i < 60; i++ {
		f.eng.Step(context.Background(), s)
		f.clock.Advance(time.Minute)
	}
	if s.Phase != rollout.PhaseBaking || s.Tier != 0 || f.fleet.on("v2") != 2 {
		t.Fatalf("paused rollout moved on: %s tier %d, %d on v2", s.Phase, s.Tier, f.fleet.on("v2"))
	}
	s.Paused, s.Promote = false, true
	f.eng.Step(context.Background(), s) // next tier
	s.Promote = true
	f.eng.Step(context.Background(), s) // the 50% tier switched; promote skips its bake
	if s.Tier != 2 {
		t.Errorf("promote did not skip the bake: tier %d, %s", s.Tier, s.Phase)
	}
}

// TestRestartFromEverySavedState: shipbot dies right after any save, before that
// phase's effects; a new engine resumes from the saved state and the fleet as it was,
// and the rollout still ends right.
func TestRestartFromEverySavedState(t *testing.T) {
	for _, rel := range []string{"v2", "bad2"} {
		ref := newFixture(10)
		s, _ := ref.eng.Start(context.Background(), nil, rel)
		ref.run(t, s)
		for i := range ref.store.saved {
			f := newFixture(10)
			f.fleet = ref.store.fleets[i].copy()
			f.store.fleet = f.fleet
			f.eng.Fleet = f.fleet
			saved := ref.store.saved[i]
			if err := f.eng.Resume(context.Background(), &saved); err != nil {
				t.Fatal(err)
			}
			f.run(t, &saved)
			want := rollout.PhaseDone
			if rel == "bad2" {
				want = rollout.PhaseRolledBack
			}
			if saved.Phase != want {
				t.Errorf("%s: restart from save %d (%s): ended %s", rel, i, f.store.saved[i].Phase, saved.Phase)
			}
			if rel == "bad2" && f.fleet.on("v1") != 10 {
				t.Errorf("%s: restart from save %d: %d hosts on v1", rel, i, f.fleet.on("v1"))
			}
		}
	}
}

func gate(t *testing.T) health.Gate {
	e, err := health.ParseSelector(`req{code=~"5.."}`)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := health.ParseSelector(`req`)
	return health.Gate{Name: "5xx", Errors: e, Total: all, MaxRatio: 2, MinSamples: 100, Unit: health.UnitRatio}
}

func TestMetricGate(t *testing.T) {
	f := newFixture(10)
	f.eng.Config.Gates = []health.Gate{gate(t)}
	s, _ := f.eng.Start(context.Background(), nil, "v2")
	f.run(t, s)
	said := strings.Join(f.said, "\n")
	if s.Phase != rollout.PhaseDone || !strings.Contains(said, "tier a2 healthy: 5xx 0.5% (baseline 0.5%)") {
		t.Errorf("good release: %s\n%s", s.Phase, said)
	}
	// While a tier bakes, the progress message (edited in place where the network
	// can) shows the time left and the gates' readings.
	baking := 0
	for _, p := range f.posts {
		if p.UpdateOnly && p.Key == rollout.ProgressKey("v2") && strings.Contains(p.Text, "baking") && strings.Contains(p.Text, "left") && strings.Contains(p.Text, "5xx 0.5%") {
			baking++
		}
	}
	if baking == 0 {
		t.Errorf("no bake progress:\n%s", said)
	}

	f = newFixture(10)
	f.eng.Config.Gates = []health.Gate{gate(t)}
	s, _ = f.eng.Start(context.Background(), nil, "err2")
	f.run(t, s)
	if s.Phase != rollout.PhaseRolledBack || !strings.Contains(s.Reason, "tier a2 failed its gates: 5xx 10.0% (baseline 0.5%)") || f.fleet.on("v1") != 10 {
		t.Errorf("erroring release: %s, %q", s.Phase, s.Reason)
	}

	// A service that is not restarted keeps its counters: its long good past must
	// not hide what the bake window shows.
	f = newFixture(10)
	f.eng.Config.Gates = []health.Gate{gate(t)}
	s, _ = f.eng.Start(context.Background(), nil, "hist2")
	f.run(t, s)
	if s.Phase != rollout.PhaseRolledBack || !strings.Contains(s.Reason, "tier a2 failed its gates: 5xx 10.0% (baseline 0.5%)") {
		t.Errorf("release with a long good past: %s, %q", s.Phase, s.Reason)
	}

	f = newFixture(10)
	f.fleet.noMetrics = true
	f.eng.Config.Gates = []health.Gate{gate(t)}
	f.eng.Config.MaxInconclusive = 3
	s, _ = f.eng.Start(context.Background(), nil, "v2")
	f.run(t, s)
	if s.Phase != rollout.PhaseRolledBack || !strings.Contains(s.Reason, "inconclusive after 4 looks: 5xx: no data yet") {
		t.Errorf("no data: %s, %q", s.Phase, s.Reason)
	}
}

func TestTierSize(t *testing.T) {
	for _, c := range []struct {
		size string
		n    int
		want int
	}{{"2", 10, 2}, {"2", 1, 1}, {"10%", 10, 1}, {"10%", 25, 3}, {"50%", 10, 5}, {"100%", 7, 7}, {"1%", 3, 1}} {
		if got, err := rollout.TierSize(c.size, c.n); err != nil || got != c.want {
			t.Errorf("TierSize(%q, %d) = %d, %v; want %d", c.size, c.n, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "150%", "x%", "ten"} {
		if _, err := rollout.TierSize(bad, 10); err == nil {
			t.Errorf("TierSize(%q) accepted", bad)
		}
	}
}
