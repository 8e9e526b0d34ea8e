package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/httpapi"
	"github.com/shipbot/shipbot/distributor/fleet"
)

// BenchmarkRollout measures, with the real binaries (make bench-rollout):
//   - the time from !ship to "done" for 8 hosts in 4 racks, with zero bake and the
//     default engine tick (1s);
//   - the time from a failing verdict (the 100% tier, so all 8 hosts are on the bad
//     release) until every host reports the previous release again.
//
// It is run once (-benchtime 1x); the figures go to the log and the metrics line.
func BenchmarkRollout(b *testing.B) {
	e := newFleetEnvWith(b, `rollout:
  tiers:
    - {name: a2, hosts: "1", bake: 0s, max_unhealthy: 1}
    - {name: 10%, hosts: "10%", bake: 0s, max_unhealthy: 1}
    - {name: 50%, hosts: "50%", bake: 0s, max_unhealthy: 1}
    - {name: 100%, hosts: "100%", bake: 0s}
`)
	e.release("r0", `{}`)
	for i := 0; i < 8; i++ {
		e.startAgent(fmt.Sprintf("host%d", i), fmt.Sprintf("rack%d", i%4), "")
	}
	e.waitFor("8 hosts enrol", 30*time.Second, func(hs map[string]fleet.HostState) bool { return len(hs) == 8 })
	e.set("--stage", "r0", "--active", "r0")
	e.waitFor("every host on r0", 60*time.Second, allOn(8, "r0"))
	say := func(line string) { fmt.Fprintln(e.sb.Stdin, line) }
	say("dave: !cancel r0")

	e.release("v2", `{}`)
	start := time.Now()
	say("dave: !ship")
	e.waitChannel("v2 is done on all 8 hosts", 120*time.Second)
	shipToDone := time.Since(start)
	e.waitFor("every host on v2", 30*time.Second, allOn(8, "v2"))

	// Bad at the last tier: every host runs it when the verdict falls.
	e.release("v3", `{"healthy": false}`)
	say("dave: !ship")
	e.waitChannel("ROLLBACK v3", 120*time.Second)
	verdict := time.Now()
	e.waitFor("every host back on v2", 60*time.Second, allOn(8, "v2"))
	allBack := time.Since(verdict)
	e.waitChannel("v3 rolled back", 30*time.Second)
	announced := time.Since(verdict)

	rb := ""
	for _, l := range e.sb.Lines() {
		if strings.Contains(l, "ROLLBACK v3") {
			rb = l
		}
	}
	c := &httpapi.Client{BaseURL: e.sb.URL, Token: e.sb.Token}
	evs, _ := c.Audit(b.Context(), 0)
	for _, ev := range evs {
		if ev.Kind == "rollout" && ev.Release == "v2" || ev.Kind == "command" && ev.Text == "!ship" {
			b.Logf("  %s %s %s %s", ev.At.Format("15:04:05.000"), ev.Release, ev.Kind, ev.Text)
		}
	}
	b.Logf("8 hosts, 4 racks, 5.1 MiB artifact, zero bake, tick 1s")
	b.Logf("!ship to done (staging included): %.2fs", shipToDone.Seconds())
	b.Logf("%s", rb)
	b.Logf("failing verdict to every host back on v2: %.2fs (\"rolled back\" announced after %.2fs)", allBack.Seconds(), announced.Seconds())
	b.ReportMetric(shipToDone.Seconds(), "s-ship-to-done")
	b.ReportMetric(allBack.Seconds(), "s-verdict-to-all-back")
}
