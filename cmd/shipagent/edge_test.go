package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/fleet"
)

// failingHook fails for a release whose VERSION is rfail and hangs for rhang.
const failingHook = `#!/bin/sh
case "$(cat "$SHIPBOT_RELEASE_DIR/VERSION")" in
  rfail) echo "service refused to start" >&2; exit 1 ;;
  rhang) sleep 30 ;;
esac
exec "$(dirname "$0")/hook.sh"
`

// TestActivationFailures: a failing or hanging activate hook is reported, the
// current symlink is switched back, and the previous release keeps running. An
// agent whose key does not match refuses every manifest and says why.
func TestActivationFailures(t *testing.T) {
	e := newFleetEnv(t)
	e.release("r0", `{}`)
	e.release("rfail", `{}`)
	e.release("rhang", `{}`)
	a := e.startAgent("host0", "rack0", "")
	wrap := filepath.Join(a.dir, "wrap.sh")
	os.WriteFile(wrap, []byte(failingHook), 0o755)
	e.stopAgent(a, syscall.SIGTERM)
	cfg, _ := os.ReadFile(a.config)
	cfg = []byte(strings.Replace(string(cfg), "hook_timeout: 10s", "hook_timeout: 2s", 1))
	cfg = []byte(strings.Replace(string(cfg), filepath.Join(a.dir, "hook.sh"), wrap, 1))
	os.WriteFile(a.config, cfg, 0o644)
	e.run(a)

	otherPub, _, _ := distributor.GenerateKey()
	other := distributor.EncodePublicKey(otherPub)
	b := e.startAgent("host1", "rack0", "")
	e.stopAgent(b, syscall.SIGTERM)
	cfg, _ = os.ReadFile(b.config)
	os.WriteFile(b.config, []byte(strings.Replace(string(cfg), e.pub, other, 1)), 0o644)
	e.run(b)
	e.waitFor("2 hosts enrol", 30*time.Second, func(hs map[string]fleet.HostState) bool { return len(hs) == 2 })

	e.set("--hosts", "host0", "--stage", "r0,rfail,rhang", "--active", "r0")
	e.waitFor("host0 runs r0", 60*time.Second, func(hs map[string]fleet.HostState) bool {
		h := hs["host0"]
		return healthyOn(h, "r0") && h.Staged["rfail"].Done && h.Staged["rhang"].Done
	})

	for _, c := range []struct{ release, want string }{{"rfail", "service refused to start"}, {"rhang", "timed out after 2s"}} {
		e.set("--hosts", "host0", "--active", c.release)
		e.waitFor(c.release+" fails and is reported", 30*time.Second, func(hs map[string]fleet.HostState) bool {
			h := hs["host0"]
			return strings.Contains(h.Error, c.want) && strings.Contains(h.Error, "r0 stays active") && h.Active == "r0"
		})
		if link, _ := os.Readlink(filepath.Join(a.dir, "releases", "current")); link != "r0" {
			t.Errorf("after the failed activation of %s, current -> %q", c.release, link)
		}
		if got := appVersion(a.appPort); got != "ok r0" {
			t.Errorf("after the failed activation of %s, demoapp says %q", c.release, got)
		}
	}

	e.set("--hosts", "host1", "--stage", "r0", "--active", "r0")
	e.waitFor("host1 refuses the manifest", 30*time.Second, func(hs map[string]fleet.HostState) bool {
		return strings.Contains(hs["host1"].Staged["r0"].Error, "signed by another key")
	})
	time.Sleep(500 * time.Millisecond) // nothing may follow the refusal
	if h := e.hosts()["host1"]; h.Active != "" {
		t.Errorf("host1 activated %q from a manifest it could not verify", h.Active)
	}
	if _, err := os.Stat(filepath.Join(b.dir, "releases", "r0")); !os.IsNotExist(err) {
		t.Errorf("host1 unpacked r0: %v", err)
	}
}

// TestAgentRestartMidDownload: an agent killed half-way through a capped download
// resumes from what is on disk.
func TestAgentRestartMidDownload(t *testing.T) {
	e := newFleetEnv(t)
	big := make([]byte, 6<<20)
	rand.Read(big)
	e.releaseWith("rbig", `{}`, map[string][]byte{"data.bin": big})
	a := e.startAgent("host0", "rack0", "download_rate: 1MiB\n")
	e.waitFor("enrol", 30*time.Second, func(hs map[string]fleet.HostState) bool { return len(hs) == 1 })
	e.set("--stage", "rbig")
	var had int64
	e.waitFor("a third of rbig", 60*time.Second, func(hs map[string]fleet.HostState) bool {
		st := hs["host0"].Staged["rbig"]
		had = st.Bytes
		return st.Total > 0 && st.Bytes > st.Total/3
	})
	e.stopAgent(a, syscall.SIGKILL)
	start := time.Now()
	e.run(a)
	var fetched int64
	e.waitFor("rbig staged after the restart", 60*time.Second, func(hs map[string]fleet.HostState) bool {
		st := hs["host0"].Staged["rbig"]
		fetched = st.FromPeers + st.FromWebseed
		return st.Done && !hs["host0"].Stale && hs["host0"].LastSeen.After(start)
	})
	total := e.hosts()["host0"].Staged["rbig"].Total
	t.Logf("had %d of %d bytes when killed; fetched %d after the restart", had, total, fetched)
	if fetched > total-had+1<<20 {
		t.Errorf("after the restart the agent fetched %d bytes; only about %d were missing", fetched, total-had)
	}
}

// TestFullDisk: when the releases dir runs out of space, the agent reports the
// failure and the active release keeps running.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a small tmpfs and needs root (CI runs as root)")
	}
	e := newFleetEnv(t)
	e.release("r0", `{}`)
	big := make([]byte, 8<<20)
	rand.Read(big)
	e.releaseWith("rbig", `{}`, map[string][]byte{"data.bin": big})
	a := e.startAgent("host0", "rack0", "")
	e.stopAgent(a, syscall.SIGTERM)
	rel := filepath.Join(a.dir, "releases")
	os.MkdirAll(rel, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", rel).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", rel).Run() })
	e.run(a)
	e.waitFor("enrol", 30*time.Second, func(hs map[string]fleet.HostState) bool { return len(hs) == 1 && !hs["host0"].Stale })
	e.set("--stage", "r0", "--active", "r0")
	e.waitFor("host0 runs r0", 60*time.Second, func(hs map[string]fleet.HostState) bool { return healthyOn(hs["host0"], "r0") })
	// Leave about 1 MiB free, then ask for 8 MiB more.
	var st syscall.Statfs_t
	syscall.Statfs(rel, &st)
	used := int64(st.Blocks-st.Bfree) * int64(st.Bsize)
	if out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", used+1<<20), rel).CombinedOutput(); err != nil {
		t.Fatalf("shrink tmpfs: %v %s", err, out)
	}
	e.set("--add-stage", "rbig", "--active", "rbig")
	e.waitFor("the failure is reported", 60*time.Second, func(hs map[string]fleet.HostState) bool {
		return strings.Contains(hs["host0"].Staged["rbig"].Error, "no space left on device")
	})
	h := e.hosts()["host0"]
	if !healthyOn(h, "r0") || appVersion(a.appPort) != "ok r0" {
		t.Errorf("r0 stopped running: %+v, demoapp %q", h, appVersion(a.appPort))
	}
}
