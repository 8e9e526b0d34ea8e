package health_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/health"
	"github.com/shipbot/shipbot/bot/health/promtest"
)

// serve exposes fixed counters for one host.
func serve(t *testing.T, version string, ok, bad int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "req_total{code=\"200\",version=%q} %d\nreq_total{code=\"500\",version=%q} %d\n", version, ok, version, bad)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestPrometheusGate runs gate queries against a real Prometheus that scrapes a
// canary host (v2, 25% errors) and two baseline hosts (v1, 1%).
func TestPrometheusGate(t *testing.T) {
	url := promtest.Start(t, []promtest.Target{
		{Addr: serve(t, "v2", 300, 100), Labels: map[string]string{"host": "web-1"}},
		{Addr: serve(t, "v1", 990, 10), Labels: map[string]string{"host": "web-2"}},
		{Addr: serve(t, "v1", 495, 5), Labels: map[string]string{"host": "web.3"}},
	})
	p := &health.Prometheus{URL: url, Client: &http.Client{Timeout: 5 * time.Second}}
	ctx := context.Background()

	// The first scrape takes a few seconds.
	deadline := time.Now().Add(60 * time.Second)
	for {
		v, ok, err := p.Query(ctx, `count(req_total)`)
		if err == nil && ok && v == 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus never had the 6 series: %v %v %v", v, ok, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	query, err := health.ParseQuery("5xx", `sum(req_total{code=~"5..",version="{{.Version}}",host=~"{{.Hosts}}"}) / sum(req_total{version="{{.Version}}",host=~"{{.Hosts}}"})`)
	if err != nil {
		t.Fatal(err)
	}
	samples, err := health.ParseQuery("5xx samples", `sum(req_total{version="{{.Version}}",host=~"{{.Hosts}}"})`)
	if err != nil {
		t.Fatal(err)
	}
	g := health.Gate{Name: "5xx", Query: query, SamplesQuery: samples, Unit: health.UnitRatio, MaxRatio: 3, MinSamples: 100}
	canary := health.NewVars("v2", "v2", "v1", []string{"web-1"})
	// "web.3" is quoted in the regex: it must not match "web-3" or "webx3".
	base := health.NewVars("v1", "v2", "v1", []string{"web-2", "web.3"})
	r := g.Judge(p.Measure(ctx, g, canary), p.Measure(ctx, g, base))
	if r.Verdict != health.Fail || r.String() != "5xx 25.0% (baseline 1.0%)" {
		t.Errorf("bad canary: %v %q", r.Verdict, r)
	}
	if m := p.Measure(ctx, g, base); m.Samples != 1500 {
		t.Errorf("baseline samples %v, want 1500", m.Samples)
	}
	// The baseline judged as a canary against itself passes.
	if r := g.Judge(p.Measure(ctx, g, base), p.Measure(ctx, g, base)); r.Verdict != health.Pass {
		t.Errorf("baseline against itself: %v %q", r.Verdict, r)
	}
	// Too few samples.
	g.MinSamples = 1000
	if r := g.Judge(p.Measure(ctx, g, canary), p.Measure(ctx, g, base)); r.Verdict != health.Inconclusive || !strings.Contains(r.String(), "only 400 samples") {
		t.Errorf("few samples: %v %q", r.Verdict, r)
	}
	// A version nobody runs: no data.
	g.MinSamples = 0
	g.SamplesQuery = nil
	none := health.NewVars("v9", "v9", "v1", []string{"web-1"})
	if r := g.Judge(p.Measure(ctx, g, none), p.Measure(ctx, g, base)); r.Verdict != health.Inconclusive || !strings.Contains(r.String(), "no data yet") {
		t.Errorf("no data: %v %q", r.Verdict, r)
	}
	// An absolute cap in milliseconds, from a scalar.
	ms, _ := health.ParseQuery("p99", `scalar(sum(req_total{host=~"{{.Hosts}}"})) / 10`)
	lat := health.Gate{Name: "p99", Query: ms, Unit: health.UnitMS, MaxValue: 100}
	if r := lat.Judge(p.Measure(ctx, lat, canary), p.Measure(ctx, lat, base)); r.Verdict != health.Pass || r.String() != "p99 40 ms (baseline 150 ms)" {
		t.Errorf("scalar: %v %q", r.Verdict, r)
	}

	// Errors name the fix.
	for text, want := range map[string]string{
		`req_total`:     "gives 6 series; aggregate it",
		`sum(req_total`: "bad_data",
		`req_total[1m]`: "gives a matrix",
	} {
		_, _, err := p.Query(ctx, text)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("query %q: %v, want %q", text, err, want)
		}
	}
	if _, err := health.ParseQuery("x", `{{.Versoin}}`); err == nil {
		t.Error("a misspelt template field was accepted")
	}
	down := &health.Prometheus{URL: "http://127.0.0.1:1"}
	if m := down.Measure(ctx, g, canary); m.OK || !strings.Contains(m.Err, "prometheus") {
		t.Errorf("prometheus down: %+v", m)
	}
}
