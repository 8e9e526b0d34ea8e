package main

import (
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/distributor/fleet"
)

// TestCrashDuringRollout kills shipbot with SIGKILL during staging, during a bake
// and during a rollback; after each restart it announces the rollout again and the
// rollout ends right: every host on the release, or every host back.
func TestCrashDuringRollout(t *testing.T) {
	e := newFleetEnvWith(t, `rollout:
  tick: 200ms
  switch_timeout: 60s
  tiers:
    - {name: a2, hosts: "1", bake: 4s}
    - {name: 100%, hosts: "100%", bake: 1s}
`)
	say := e.fourOnR0("download_rate: 2MiB\n")

	// Killed while staging, and again while a2 bakes.
	e.release("v2", `{}`)
	say("dave: !ship")
	e.waitChannel("v2: staging on 4 hosts", 30*time.Second)
	e.sb.Kill9(t)
	e.waitChannel("resuming the rollout of v2 (staging", 30*time.Second)
	e.waitChannel("v2: tier a2: 1 of 4 hosts switching", 90*time.Second)
	e.sb.Kill9(t)
	e.waitChannel("resuming the rollout of v2 (baking, tier 0", 30*time.Second)
	e.waitChannel("v2 is done on all 4 hosts", 90*time.Second)
	e.waitFor("every host on v2", 30*time.Second, allOn(4, "v2"))

	// Killed right after deciding to roll back.
	e.release("v3", `{"healthy": false}`)
	say("dave: !ship")
	e.waitChannel("ROLLBACK v3", 90*time.Second)
	e.sb.Kill9(t)
	e.waitChannel("v3 rolled back", 60*time.Second)
	e.waitFor("every host back on v2", 30*time.Second, allOn(4, "v2"))
	if n := strings.Count(strings.Join(e.sb.Lines(), "\n"), "resuming the rollout of v3 (rolling_back"); n != 1 {
		t.Errorf("the restart during the rollback was announced %d times", n)
	}
	out, err := e.sb.CLI(t.Context(), "release", "list")
	if err != nil || !strings.Contains(out, "v3           rolled_back") || !strings.Contains(out, "v2           done") {
		t.Errorf("release list:\n%s %v", out, err)
	}
}

// TestRollbackOnRestart: with rollout.rollback_on_restart set, a rollout that
// shipbot finds running when it starts again is rolled back, not resumed.
func TestRollbackOnRestart(t *testing.T) {
	e := newFleetEnvWith(t, `rollout:
  tick: 200ms
  rollback_on_restart: true
  tiers:
    - {name: a2, hosts: "1", bake: 10m}
    - {name: 100%, hosts: "100%"}
`)
	say := e.fourOnR0("")
	e.release("v2", `{}`)
	say("dave: !ship")
	e.waitChannel("v2: tier a2: 1 of 4 hosts switching", 90*time.Second)
	e.waitFor("the canary on v2", 30*time.Second, func(hs map[string]fleet.HostState) bool { return len(onRelease(hs, "v2")) == 1 })
	e.sb.Kill9(t)
	line := e.waitChannel("ROLLBACK v2", 30*time.Second)
	if !strings.Contains(line, "shipbot restarted during the rollout (baking, tier 0) and rollout.rollback_on_restart is set; 1 hosts go back") {
		t.Errorf("rollback line: %q", line)
	}
	e.waitChannel("v2 rolled back", 60*time.Second)
	e.waitFor("every host back on r0", 30*time.Second, allOn(4, "r0"))
	if strings.Contains(strings.Join(e.sb.Lines(), "\n"), "resuming the rollout of v2") {
		t.Error("the rollout was resumed")
	}
}
