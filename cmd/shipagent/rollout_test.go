package main

import (
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/httpapi"
	"github.com/shipbot/shipbot/distributor/fleet"
)

// TestShipRollsOut: !ship in the channel starts the rollout engine; a good release
// goes through the tiers to every host, a bad one (demoapp failing its health check)
// fails the canary tier and every host ends on the previous release.
func TestShipRollsOut(t *testing.T) {
	e := newFleetEnvWith(t, `rollout:
  tick: 200ms
  switch_timeout: 30s
  max_inconclusive: 100
  tiers:
    - {name: a2, hosts: "1", bake: 2s}
    - {name: 100%, hosts: "100%", bake: 1s}
  gates:
    - {name: 5xx, errors: 'demoapp_requests_total{code=~"5.."}', total: demoapp_requests_total, max_ratio: 3, max_rate: 0.2, min_samples: 30}
`)
	say := e.fourOnR0("")

	e.release("v2", `{}`)
	say("dave: !ship")
	say("dave: !pause")
	e.waitChannel("v2 paused by dave", 30*time.Second)
	e.waitChannel("v2: tier a2: 1 of 4 hosts switching", 60*time.Second)
	say("dave: !status")
	e.waitChannel("rollout of v2: baking, tier a2 (1 of 2), 1 of 4 hosts switched", 30*time.Second)
	e.waitChannel("gates now: 5xx", 10*time.Second)
	time.Sleep(4 * time.Second) // two bakes' worth: a paused rollout must hold
	if n := len(onRelease(e.hosts(), "v2")); n != 1 {
		t.Fatalf("the paused rollout went on: %d hosts on v2", n)
	}
	say("dave: !resume")
	e.waitChannel("v2 is done on all 4 hosts", 90*time.Second)
	e.waitFor("every host on v2", 30*time.Second, allOn(4, "v2"))

	e.release("v3", `{"healthy": false}`)
	say("dave: !ship")
	line := e.waitChannel("ROLLBACK v3", 90*time.Second)
	if !strings.Contains(line, "tier a2 unhealthy: 1 of 1") {
		t.Errorf("rollback line: %q", line)
	}
	e.waitChannel("v3 rolled back", 60*time.Second)
	e.waitFor("every host back on v2", 30*time.Second, allOn(4, "v2"))

	// A release that answers half its requests with 500 passes its health check
	// but fails the 5xx gate against the baseline.
	e.release("v5", `{"error_rate": 0.5}`)
	say("dave: !ship")
	line = e.waitChannel("ROLLBACK v5", 90*time.Second)
	if !strings.Contains(line, "tier a2 failed its gates: 5xx") || !strings.Contains(line, "(baseline 0.0%)") {
		t.Errorf("gate rollback line: %q", line)
	}
	e.waitChannel("v5 rolled back", 60*time.Second)
	e.waitFor("every host back on v2 after v5", 30*time.Second, allOn(4, "v2"))
	if phases, reason := e.rolloutEvents("v5"); len(phases) == 0 || phases[len(phases)-1] != "rolled_back tier 0" || !strings.HasPrefix(reason, "tier a2 failed its gates: 5xx") {
		t.Errorf("v5 in the audit log: %v, %q", phases, reason)
	}
	if l := e.waitChannel("v2: tier a2 healthy: 5xx", 5*time.Second); !strings.Contains(l, "(baseline 0.0%)") {
		t.Errorf("verdict line: %q", l)
	}

	// A head rolls a release back by hand.
	e.release("v4", `{}`)
	say("dave: !ship")
	e.waitChannel("v4: tier a2: 1 of 4 hosts switching", 60*time.Second)
	say("dave: !rollback the graphs look odd")
	e.waitChannel("ROLLBACK v4: rolled back by dave: the graphs look odd", 30*time.Second)
	e.waitChannel("v4 rolled back", 60*time.Second)
	e.waitFor("every host back on v2 again", 30*time.Second, allOn(4, "v2"))
	t.Logf("channel:\n%s", strings.Join(e.sb.Lines(), "\n"))
	out, err := e.sb.CLI(t.Context(), "release", "list")
	if err != nil || !strings.Contains(out, "v3           rolled_back") || !strings.Contains(out, "v2           done") {
		t.Errorf("release list after the rollouts:\n%s %v", out, err)
	}
}

func onRelease(hs map[string]fleet.HostState, v string) []string {
	var out []string
	for n, h := range hs {
		if h.Active == v {
			out = append(out, n)
		}
	}
	return out
}

// waitChannel waits for a line of the channel (shipbot's console) containing sub.
func (e *fleetEnv) waitChannel(sub string, d time.Duration) string {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, l := range e.sb.Lines() {
			if strings.Contains(l, sub) {
				return l
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the channel never said %q:\n%s", sub, strings.Join(e.sb.Lines(), "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rolloutEvents reads the store's audit log through the API and returns the
// rollout transitions of release ("staging tier 0", ..., "rolled_back tier 0")
// and the reason recorded with the last one.
func (e *fleetEnv) rolloutEvents(release string) (phases []string, reason string) {
	e.t.Helper()
	c := &httpapi.Client{BaseURL: e.sb.URL, Token: e.sb.Token}
	evs, err := c.Audit(e.t.Context(), 0)
	if err != nil {
		e.t.Fatalf("audit log: %v", err)
	}
	for _, ev := range evs {
		if ev.Kind == "rollout" && ev.Release == release {
			phases = append(phases, ev.Text)
			reason = ev.Reply
		}
	}
	return phases, reason
}
