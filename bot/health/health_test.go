package health_test

import (
	"testing"

	"github.com/shipbot/shipbot/bot/health"
)

const expo = `# TYPE demoapp_requests_total counter
demoapp_requests_total{code="200",version="v2"} 950
demoapp_requests_total{code="500",version="v2"} 40
demoapp_requests_total{code="503",version="v2"} 10
demoapp_request_duration_seconds_bucket{version="v2",le="0.1"} 1000
other_total 5 1700000000000
`

func TestSelectorsOnExposition(t *testing.T) {
	m := health.ParseExposition(expo, []string{"demoapp_requests_total", "other_total"})
	if len(m) != 4 || m["other_total"] != 5 {
		t.Fatalf("parsed %v", m)
	}
	for sel, want := range map[string]float64{
		`demoapp_requests_total`:                           1000,
		`demoapp_requests_total{code=~"5.."}`:              50,
		`demoapp_requests_total{code="500"}`:               40,
		`demoapp_requests_total{code=~"5..",version="v2"}`: 50,
		`demoapp_requests_total{version="v1"}`:             0,
	} {
		s, err := health.ParseSelector(sel)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Sum(m); got != want {
			t.Errorf("%s = %v, want %v", sel, got, want)
		}
	}
	for _, bad := range []string{"", "9x", `a{b}`, `a{b="c}`, `a{b=~"("}`} {
		if _, err := health.ParseSelector(bad); err == nil {
			t.Errorf("selector %q accepted", bad)
		}
	}
}

func TestGate(t *testing.T) {
	errs, _ := health.ParseSelector(`req{code=~"5.."}`)
	total, _ := health.ParseSelector(`req`)
	g := health.Gate{Name: "5xx", Errors: errs, Total: total, MaxRatio: 2, MaxValue: 0.2, MinSamples: 100, Unit: health.UnitRatio}
	host := func(ok, bad float64) map[string]float64 {
		return map[string]float64{`req{code="200"}`: ok, `req{code="500"}`: bad}
	}
	base := []map[string]float64{host(990, 10), host(995, 5)}
	cases := []struct {
		canary []map[string]float64
		want   health.Verdict
	}{
		{[]map[string]float64{host(199, 1)}, health.Pass},         // 0.5% vs 0.75%
		{[]map[string]float64{host(190, 10)}, health.Fail},        // 5% > 2 × 0.75%
		{[]map[string]float64{host(40, 10)}, health.Inconclusive}, // 50 samples
		{nil, health.Inconclusive},
		// 6 errors in 200 (3%) is 4x the baseline, but at this size it may be
		// noise: the 95% interval starts at 1.4%, under 2 x 0.75%.
		{[]map[string]float64{host(194, 6)}, health.Pass},
		// 60 in 2000 is the same rate, and not noise (the interval starts at 2.3%).
		{[]map[string]float64{host(1940, 60)}, health.Fail},
	}
	for i, c := range cases {
		if r := g.Evaluate(c.canary, base); r.Verdict != c.want {
			t.Errorf("case %d: %v (%s)", i, r.Verdict, r)
		}
	}
	// No baseline (the last tier): only the absolute cap applies.
	if r := g.Evaluate([]map[string]float64{host(150, 50)}, nil); r.Verdict != health.Fail || r.String() != "5xx 25.0%" {
		t.Errorf("no baseline: %v %s", r.Verdict, r)
	}
	if r := g.Evaluate([]map[string]float64{host(199, 1)}, base); r.String() != "5xx 0.5% (baseline 0.8%)" {
		t.Errorf("string %q", r)
	}
}
