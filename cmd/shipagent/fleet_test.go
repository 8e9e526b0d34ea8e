package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/chattest"
	"github.com/shipbot/shipbot/distributor/fleet"
)

// fleetEnv is a real shipbot with its fleet API on, and real shipagents.
type fleetEnv struct {
	t        testing.TB
	sb       *chattest.Shipbot
	shipbot  string
	agentBin string
	demoapp  string
	pub      string
	token    string
	agents   map[string]*agentProc
	// appPorts fixes the demoapp port of named agents (others get a free one).
	appPorts map[string]int
}

type agentProc struct {
	name, rack string
	dir        string
	appPort    int
	config     string
	cmd        *exec.Cmd
	log        *chattest.Buffer
	done       chan struct{}
}

func newFleetEnv(t testing.TB) *fleetEnv { return newFleetEnvWith(t, "") }

// newFleetEnvWith adds extra to shipbot's config.
func newFleetEnvWith(t testing.TB, extra string) *fleetEnv {
	build := chattest.Build
	if _, bench := t.(*testing.B); bench {
		build = chattest.BuildPlain // figures of race-detector builds would mislead
	}
	e := &fleetEnv{t: t, shipbot: build(t, "./cmd/shipbot"), agentBin: build(t, "./cmd/shipagent"),
		demoapp: chattest.BuildPlain(t, "./cmd/demoapp"), token: "fleet-secret-token", agents: map[string]*agentProc{}}
	keys := t.TempDir()
	if out, err := exec.Command(e.shipbot, "keygen", "--dir", keys).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	pub, _ := os.ReadFile(filepath.Join(keys, "shipbot.pub"))
	e.pub = strings.TrimSpace(string(pub))
	data := t.TempDir()
	cfg := fmt.Sprintf("data_dir: %s\nchannel: \"#deploy\"\nchat: console\nlog: {format: json, level: info}\n"+
		"fleet: {stale_after: 6s, report_every: 1s}\npeople:\n  - name: dave\n    emails: [dave@example.com]\nroles: {release_heads: [dave]}\n%s", data, extra)
	e.sb = chattest.StartShipbot(t, e.shipbot, cfg, data,
		"SHIPBOT_FLEET_TOKEN="+e.token, "SHIPBOT_SIGNING_KEY_FILE="+filepath.Join(keys, "shipbot.key"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shipbot log:\n%s", tail(e.sb.Stderr(), 60))
		}
	})
	return e
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// release registers a release whose artifact is a tar.gz holding demoapp, its
// behaviour.json and VERSION.
func (e *fleetEnv) release(version string, behaviour string) {
	e.t.Helper()
	e.releaseWith(version, behaviour, nil)
}

// releaseWith adds extra files to the artifact.
func (e *fleetEnv) releaseWith(version string, behaviour string, extra map[string][]byte) {
	t := e.t
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.tar.gz")
	f, _ := os.Create(p)
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	add := func(name string, mode int64, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	bin, err := os.ReadFile(e.demoapp)
	if err != nil {
		t.Fatal(err)
	}
	add("bin/demoapp", 0o755, bin)
	add("behaviour.json", 0o644, []byte(behaviour))
	add("VERSION", 0o644, []byte(version+"\n"))
	for name, data := range extra {
		add(name, 0o644, data)
	}
	tw.Close()
	zw.Close()
	f.Close()
	repo := chattest.Repo(t)
	if out, err := e.sb.CLI(context.Background(), "release", "create", "--version", version, "--artifact", p, "--commits", "v1..v2", "--repo", repo); err != nil {
		t.Fatalf("release create %s: %v %s", version, err, out)
	}
}

// hookScript restarts demoapp from the activated release on the agent's port.
const hookScript = `#!/bin/sh
set -e
pidf="$AGENT_DIR/demoapp.pid"
if [ -f "$pidf" ]; then
  old=$(cat "$pidf"); rm -f "$pidf"
  kill "$old" 2>/dev/null || true
  # Wait for it to exit (a zombie counts: nobody may reap it here).
  i=0; while kill -0 "$old" 2>/dev/null && ! grep -qs '^State:.*Z' /proc/$old/status && [ $i -lt 100 ]; do sleep 0.02; i=$((i+1)); done
fi
"$SHIPBOT_RELEASE_DIR/bin/demoapp" --listen "127.0.0.1:$APP_PORT" --dir "$SHIPBOT_RELEASE_DIR" --pidfile "$pidf" --load 50 >/dev/null 2>&1 &
i=0; while [ ! -f "$pidf" ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done
[ -f "$pidf" ]
`

func (e *fleetEnv) startAgent(name, rack string, extra string) *agentProc {
	t := e.t
	t.Helper()
	a := &agentProc{name: name, rack: rack, dir: t.TempDir(), appPort: e.appPorts[name]}
	if a.appPort == 0 {
		a.appPort = chattest.FreePort(t)
	}
	hook := filepath.Join(a.dir, "hook.sh")
	os.WriteFile(hook, []byte(hookScript), 0o755)
	a.config = filepath.Join(a.dir, "shipagent.yaml")
	cfg := fmt.Sprintf(`coordinator: %s
host: %s
rack: %s
dc: dc1
releases_dir: %s/releases
keep: 3
listen: 127.0.0.1:0
bittorrent_listen: 127.0.0.1:0
public_key: %q
health: {url: "http://127.0.0.1:%d/healthz", interval: 1s, timeout: 2s}
metrics: {url: "http://127.0.0.1:%d/metrics", keep: [demoapp_requests_total]}
activate_hook: [%q]
hook_timeout: 10s
poll_wait: 10s
log: {format: json, level: info}
%s`, e.sb.URL, name, rack, a.dir, e.pub, a.appPort, a.appPort, hook, extra)
	os.WriteFile(a.config, []byte(cfg), 0o644)
	e.agents[name] = a
	e.run(a)
	t.Cleanup(func() {
		e.stopAgent(a, syscall.SIGTERM)
		if b, err := os.ReadFile(filepath.Join(a.dir, "demoapp.pid")); err == nil {
			var pid int
			fmt.Sscan(string(b), &pid)
			if pid > 0 {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
		if t.Failed() {
			t.Logf("agent %s log:\n%s", a.name, tail(a.log.String(), 15))
		}
		if d := os.Getenv("SHIPAGENT_TEST_LOGDIR"); d != "" {
			os.WriteFile(filepath.Join(d, a.name+".log"), []byte(a.log.String()), 0o644)
		}
	})
	return a
}

func (e *fleetEnv) run(a *agentProc) {
	a.cmd = exec.Command(e.agentBin, "--config", a.config)
	a.cmd.Env = append(os.Environ(), "SHIPBOT_FLEET_TOKEN="+e.token, "AGENT_DIR="+a.dir, fmt.Sprintf("APP_PORT=%d", a.appPort))
	if a.log == nil {
		a.log = &chattest.Buffer{}
	}
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	a.done = make(chan struct{})
	go func() { a.cmd.Wait(); close(a.done) }()
}

func (e *fleetEnv) stopAgent(a *agentProc, sig syscall.Signal) {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	select {
	case <-a.done:
		return
	default:
	}
	a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
		a.cmd.Process.Kill()
		<-a.done
	}
}

func (e *fleetEnv) hosts() map[string]fleet.HostState {
	req, _ := http.NewRequest("GET", e.sb.URL+"/v1/fleet/hosts", nil)
	req.Header.Set("Authorization", "Bearer "+e.sb.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var hs []fleet.HostState
	json.NewDecoder(resp.Body).Decode(&hs)
	out := map[string]fleet.HostState{}
	for _, h := range hs {
		out[h.Host.Name] = h
	}
	return out
}

func (e *fleetEnv) set(args ...string) {
	e.t.Helper()
	if out, err := e.sb.CLI(context.Background(), append([]string{"fleet", "set"}, args...)...); err != nil {
		e.t.Fatalf("fleet set %v: %v %s", args, err, out)
	}
}

// waitFor polls the registry until ok holds, or fails after d.
func (e *fleetEnv) waitFor(what string, d time.Duration, ok func(map[string]fleet.HostState) bool) time.Duration {
	e.t.Helper()
	start := time.Now()
	for {
		hs := e.hosts()
		if ok(hs) {
			return time.Since(start)
		}
		if time.Since(start) > d {
			var b strings.Builder
			for n, h := range hs {
				fmt.Fprintf(&b, "  %s active=%s staged=%v health=%v err=%q stale=%v\n", n, h.Active, h.Staged, h.Health, h.Error, h.Stale)
			}
			e.t.Fatalf("%s: not within %s\n%s", what, d, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func healthyOn(h fleet.HostState, version string) bool {
	return h.Active == version && h.Health != nil && h.Health.OK && !h.Stale
}

func appVersion(port int) string {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(bufio.NewReader(resp.Body))
	return strings.TrimSpace(string(b))
}

// TestConvergence: 8 agents on 2 racks converge on "stage R1 everywhere, activate it
// on 3"; the 3 run demoapp from R1; switching them back to R0 downloads nothing and
// takes under 2 s; a restart of shipbot does not disturb them.
func TestConvergence(t *testing.T) {
	e := newFleetEnv(t)
	e.release("r0", `{"error_rate": 0}`)
	e.release("r1", `{"error_rate": 0}`)
	var names []string
	for i := 0; i < 8; i++ {
		n := fmt.Sprintf("host%d", i)
		names = append(names, n)
		e.startAgent(n, fmt.Sprintf("rack%d", i%2), "")
	}
	e.waitFor("8 hosts enrol", 30*time.Second, func(hs map[string]fleet.HostState) bool { return len(hs) == 8 })

	e.set("--stage", "r0", "--active", "r0")
	e.waitFor("every host runs r0", 60*time.Second, func(hs map[string]fleet.HostState) bool {
		for _, n := range names {
			if !healthyOn(hs[n], "r0") {
				return false
			}
		}
		return true
	})

	canary := names[:3]
	e.set("--add-stage", "r1")
	e.set("--hosts", strings.Join(canary, ","), "--active", "r1")
	e.waitFor("r1 staged everywhere, active on 3", 60*time.Second, func(hs map[string]fleet.HostState) bool {
		for i, n := range names {
			h := hs[n]
			if !h.Staged["r1"].Done {
				return false
			}
			want := "r0"
			if i < 3 {
				want = "r1"
			}
			if !healthyOn(h, want) {
				return false
			}
		}
		return true
	})
	for i, n := range names {
		want := "ok r0"
		if i < 3 {
			want = "ok r1"
		}
		if got := appVersion(e.agents[n].appPort); got != want {
			t.Errorf("%s's demoapp says %q, want %q", n, got, want)
		}
	}
	// Most of r1's bytes came from peers, not the origin.
	var peers, web int64
	for _, h := range e.hosts() {
		peers += h.Staged["r1"].FromPeers
		web += h.Staged["r1"].FromWebseed
	}
	t.Logf("r1: %d bytes from BitTorrent peers (the origin seeder among them), %d from the webseed", peers, web)

	// Back to r0: a local switch, no download.
	before := map[string]os.FileInfo{}
	for _, n := range canary {
		st, err := os.Stat(filepath.Join(e.agents[n].dir, "releases", ".artifacts", "r0", ".verified"))
		if err != nil {
			t.Fatal(err)
		}
		before[n] = st
	}
	start := time.Now()
	t.Logf("switching back at %s", start.UTC().Format("15:04:05.000"))
	e.set("--hosts", strings.Join(canary, ","), "--active", "r0")
	e.waitFor("the 3 back on r0", 10*time.Second, func(hs map[string]fleet.HostState) bool {
		for _, n := range canary {
			if !healthyOn(hs[n], "r0") {
				return false
			}
		}
		return true
	})
	took := time.Since(start)
	t.Logf("switching 3 hosts back to r0 took %s", took)
	if took > 2*time.Second {
		t.Errorf("switch back took %s, want under 2s", took)
	}
	for _, n := range canary {
		st, _ := os.Stat(filepath.Join(e.agents[n].dir, "releases", ".artifacts", "r0", ".verified"))
		if !st.ModTime().Equal(before[n].ModTime()) {
			t.Errorf("%s fetched r0 again", n)
		}
		if got := appVersion(e.agents[n].appPort); got != "ok r0" {
			t.Errorf("%s's demoapp says %q after the switch back", n, got)
		}
		if link, _ := os.Readlink(filepath.Join(e.agents[n].dir, "releases", "current")); link != "r0" {
			t.Errorf("%s current -> %q", n, link)
		}
	}

	// shipbot restarts: the agents keep running their releases, report again, and
	// the registry is rebuilt.
	e.sb.Restart(t)
	for _, n := range names {
		if got := appVersion(e.agents[n].appPort); got != "ok r0" {
			t.Errorf("during the coordinator restart %s's demoapp says %q", n, got)
		}
	}
	e.waitFor("the registry is rebuilt", 30*time.Second, func(hs map[string]fleet.HostState) bool {
		if len(hs) != 8 {
			return false
		}
		for _, n := range names {
			if !healthyOn(hs[n], "r0") || !hs[n].Staged["r1"].Done {
				return false
			}
		}
		return true
	})
}

// allOn reports whether every one of n hosts runs v and is healthy.
func allOn(n int, v string) func(map[string]fleet.HostState) bool {
	return func(hs map[string]fleet.HostState) bool {
		for _, h := range hs {
			if !healthyOn(h, v) {
				return false
			}
		}
		return len(hs) == n
	}
}

// fourOnR0 starts 4 agents on 2 racks, has every one run release r0, and cancels
// r0's check-in so that !ship takes the next release. It returns a way to type in
// the channel as a person ("dave: !ship").
func (e *fleetEnv) fourOnR0(agentExtra string) (say func(line string)) {
	e.t.Helper()
	e.release("r0", `{}`)
	for i := 0; i < 4; i++ {
		e.startAgent(fmt.Sprintf("host%d", i), fmt.Sprintf("rack%d", i%2), agentExtra)
	}
	e.waitFor("4 hosts enrol", 30*time.Second, func(hs map[string]fleet.HostState) bool { return len(hs) == 4 })
	e.set("--stage", "r0", "--active", "r0")
	e.waitFor("every host on r0", 60*time.Second, allOn(4, "r0"))
	say = func(line string) {
		if _, err := fmt.Fprintln(e.sb.Stdin, line); err != nil {
			e.t.Fatal(err)
		}
	}
	say("dave: !cancel r0")
	return say
}
