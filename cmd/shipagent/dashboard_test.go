package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shipbot/shipbot/bot/dashboard/browsertest"
)

// TestDashboardDuringRollout loads the dashboard in headless Chromium and watches a
// real rollout: the check-ins, a host turning active, the canary tier passing with
// its gate chart, the release done on every host, then a bad release's rollback.
// Screenshots go to the test's temp dir (or $SHIPBOT_SCREENSHOT_DIR).
func TestDashboardDuringRollout(t *testing.T) {
	e := newFleetEnvWith(t, `rollout:
  tick: 200ms
  switch_timeout: 30s
  max_inconclusive: 100
  tiers:
    - {name: a2, hosts: "1", bake: 5s}
    - {name: 100%, hosts: "100%", bake: 1s}
  gates:
    - {name: 5xx, errors: 'demoapp_requests_total{code=~"5.."}', total: demoapp_requests_total, max_ratio: 3, max_rate: 0.2, min_samples: 30}
`)
	say := e.fourOnR0("")
	b := browsertest.New(t)
	if err := b.Do(30*time.Second, chromedp.Navigate(e.sb.URL+"/")); err != nil {
		t.Fatal(err)
	}
	b.WaitJS("the live stream", `document.getElementById("conn").dataset.state === "live"`, 20*time.Second)
	b.WaitJS("two racks of two hosts on r0", `document.querySelectorAll(".rack").length === 2 &&
		[...document.querySelectorAll(".rack .line[data-active]")].every(l => l.dataset.active === "r0×2")`, 20*time.Second)

	e.release("v2", `{}`)
	b.WaitJS("v2 as the current release", `document.getElementById("release-version").textContent === "v2" &&
		document.getElementById("release-state").textContent === "checkin"`, 20*time.Second)
	if err := b.Do(10*time.Second, chromedp.Click(`button[data-rack="rack0"]`)); err != nil {
		t.Fatal(err)
	}
	b.WaitJS("rack0's hosts after the click", `document.querySelectorAll("#hosts tbody tr").length === 2 &&
		document.getElementById("rack-name").textContent === "rack0"`, 20*time.Second)
	b.Screenshot("1-checkin")

	say("dave: !ship")
	b.WaitJS("a host turning active on v2", `[...document.querySelectorAll(".rack .line[data-active]")].some(l => l.dataset.active.includes("v2×1"))`, 90*time.Second)
	b.WaitJS("a2 baking with a countdown", `(() => { const a2 = document.querySelector('#tiers li[data-tier="a2"]');
		return a2 && a2.dataset.state === "baking" && /s left/.test(a2.innerText) })()`, 60*time.Second)
	b.WaitJS("tier a2 passed", `document.querySelector('#tiers li[data-tier="a2"]').dataset.state === "passed"`, 90*time.Second)
	b.WaitJS("the 5xx chart with canary and baseline", `(() => { const g = document.querySelector('.gate[data-gate="5xx"]');
		return g && g.querySelector('polyline[data-side="canary"]').getAttribute("points") !== "" &&
			g.querySelector('polyline[data-side="baseline"]').getAttribute("points") !== "" })()`, 30*time.Second)
	b.Screenshot("2-a2-passed")
	b.WaitJS("v2 done, rack0's hosts on v2", `document.getElementById("release-state").textContent === "done" &&
		[...document.querySelectorAll("#hosts tbody tr")].every(r => r.dataset.active === "v2") &&
		document.querySelector('#tiers li[data-tier="100%"]').dataset.state === "passed"`, 90*time.Second)
	if s := b.Text("#push-summary"); !strings.HasPrefix(s, "4/4 hosts staged") {
		t.Errorf("push summary: %q", s)
	}
	if s := b.Text("#push-p2p"); !strings.Contains(s, "peer-to-peer") || !strings.Contains(s, "from the origin") {
		t.Errorf("bytes by source: %q", s)
	}
	b.Screenshot("3-done")

	e.release("v3", `{"error_rate": 0.5}`)
	say("dave: !ship")
	b.WaitJS("the rollback", `(() => { const r = document.getElementById("rollout-reason");
		return !r.hidden && r.textContent.startsWith("Rolled back: tier a2 failed its gates: 5xx") &&
			document.querySelector('#tiers li[data-tier="a2"]').dataset.state === "failed" })()`, 120*time.Second)
	b.WaitJS("v3 rolled back, every host of rack0 on v2", `document.getElementById("release-state").textContent === "rolled_back" &&
		[...document.querySelectorAll("#hosts tbody tr")].every(r => r.dataset.active === "v2") &&
		document.querySelector('#history tr[data-release="v3"]').dataset.state === "rolled_back" &&
		document.querySelector('#history tr[data-release="v2"]').dataset.state === "done"`, 90*time.Second)
	b.WaitJS("the rollback in the event log", `[...document.querySelectorAll("#events li")].some(l => l.innerText.includes("rolled_back tier 0"))`, 10*time.Second)
	p := b.Screenshot("4-rolled-back")
	t.Logf("screenshots in %s", p[:strings.LastIndex(p, "/")])
}
