package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/chattest"
	"github.com/shipbot/shipbot/bot/health/promtest"
)

// TestPrometheusGates ships through gates whose source is a real Prometheus that
// scrapes every host's demoapp: a good release passes with its numbers, and one
// that answers half its requests with 500 is rolled back from the canary.
func TestPrometheusGates(t *testing.T) {
	ports := map[string]int{}
	var targets []promtest.Target
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("host%d", i)
		ports[name] = chattest.FreePort(t)
		targets = append(targets, promtest.Target{Addr: fmt.Sprintf("127.0.0.1:%d", ports[name]), Labels: map[string]string{"host": name}})
	}
	prom := promtest.Start(t, targets)
	e := newFleetEnvWith(t, fmt.Sprintf(`rollout:
  tick: 200ms
  switch_timeout: 30s
  max_inconclusive: 150
  prometheus: {url: %q, timeout: 5s}
  tiers:
    - {name: a2, hosts: "1", bake: 3s}
    - {name: 100%%, hosts: "100%%", bake: 1s}
  gates:
    - name: 5xx
      source: prometheus
      query: '(sum(rate(demoapp_requests_total{code=~"5..",version="{{.Version}}",host=~"{{.Hosts}}"}[5s])) or vector(0)) / sum(rate(demoapp_requests_total{version="{{.Version}}",host=~"{{.Hosts}}"}[5s]))'
      samples: 'sum(increase(demoapp_requests_total{version="{{.Version}}",host=~"{{.Hosts}}"}[5s]))'
      unit: ratio
      max_ratio: 3
      max_value: 0.2
      min_samples: 30
    - name: p99
      source: prometheus
      query: 'histogram_quantile(0.99, sum by (le) (rate(demoapp_request_duration_seconds_bucket{version="{{.Version}}",host=~"{{.Hosts}}"}[5s]))) * 1000'
      unit: ms
      max_value: 250
`, prom))
	e.appPorts = ports
	say := e.fourOnR0("")

	e.release("v2", `{}`)
	say("dave: !ship")
	line := e.waitChannel("v2: tier a2 healthy:", 120*time.Second)
	if !strings.Contains(line, "5xx 0.0% (baseline 0.0%), p99 ") || !strings.Contains(line, " ms (baseline ") {
		t.Errorf("verdict: %q", line)
	}
	e.waitChannel("v2 is done on all 4 hosts", 90*time.Second)
	e.waitFor("every host on v2", 30*time.Second, allOn(4, "v2"))

	e.release("v3", `{"error_rate": 0.5}`)
	say("dave: !ship")
	line = e.waitChannel("ROLLBACK v3", 120*time.Second)
	if !strings.Contains(line, "tier a2 failed its gates: 5xx ") || !strings.Contains(line, "(baseline 0.0%)") {
		t.Errorf("rollback line: %q", line)
	}
	var pct float64
	if _, err := fmt.Sscanf(line[strings.Index(line, "5xx ")+4:], "%f%%", &pct); err != nil || pct < 30 || pct > 70 {
		t.Errorf("the canary's 5xx share should be near 50%%: %q", line)
	}
	e.waitChannel("v3 rolled back", 60*time.Second)
	e.waitFor("every host back on v2", 30*time.Second, allOn(4, "v2"))

	// The store recorded each transition, and why v3 ended.
	phases, _ := e.rolloutEvents("v2")
	if got := strings.Join(phases, ", "); got != "staging tier 0, activating tier 0, baking tier 0, activating tier 1, baking tier 1, done tier 1" {
		t.Errorf("v2 transitions: %s", got)
	}
	phases, reason := e.rolloutEvents("v3")
	if got := strings.Join(phases, ", "); got != "staging tier 0, activating tier 0, baking tier 0, rolling_back tier 0, rolled_back tier 0" || !strings.HasPrefix(reason, "tier a2 failed its gates: 5xx ") {
		t.Errorf("v3 transitions: %s; reason %q", got, reason)
	}
	t.Logf("channel:\n%s", strings.Join(e.sb.Lines(), "\n"))
}
