package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// demoHook restarts demoapp from the activated release, on the host's own port:
// what a real activate hook does with systemctl restart.
const demoHook = `#!/bin/sh
set -e
pidf="$AGENT_DIR/demoapp.pid"
if [ -f "$pidf" ]; then
  old=$(cat "$pidf"); rm -f "$pidf"
  kill "$old" 2>/dev/null || true
  i=0; while kill -0 "$old" 2>/dev/null && ! grep -qs '^State:.*Z' /proc/$old/status && [ $i -lt 100 ]; do sleep 0.02; i=$((i+1)); done
fi
"$SHIPBOT_RELEASE_DIR/bin/demoapp" --listen "127.0.0.1:$APP_PORT" --dir "$SHIPBOT_RELEASE_DIR" --pidfile "$pidf" --load 25 >>"$AGENT_DIR/demoapp.log" 2>&1 &
i=0; while [ ! -f "$pidf" ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done
[ -f "$pidf" ]
`

// demoAgent is one simulated server: a real shipagent process in its own
// directory and process group (so its demoapp goes down with it).
type demoAgent struct {
	name, rack string
	dir        string
	appPort    int
	cmd        *exec.Cmd
	done       chan struct{}
}

// startDemoAgent writes the host's config and hook and starts shipagent.
func startDemoAgent(bin, root, name, rack, coordinator, pub, fleetToken, downloadRate string) (*demoAgent, error) {
	a := &demoAgent{name: name, rack: rack, dir: filepath.Join(root, name)}
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	a.appPort = port
	hook := filepath.Join(a.dir, "hook.sh")
	if err := os.WriteFile(hook, []byte(demoHook), 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`coordinator: %s
host: %s
rack: %s
dc: demo
releases_dir: %s
keep: 3
listen: 127.0.0.1:0
bittorrent_listen: 127.0.0.1:0
download_rate: %s
public_key: %q
health: {url: "http://127.0.0.1:%d/healthz", interval: 1s, timeout: 2s}
metrics: {url: "http://127.0.0.1:%d/metrics", keep: [demoapp_requests_total]}
activate_hook: [%q]
hook_timeout: 10s
poll_wait: 10s
log: {format: json, level: info}
`, coordinator, name, rack, filepath.Join(a.dir, "releases"), downloadRate, pub, port, port, hook)
	cfgPath := filepath.Join(a.dir, "shipagent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(a.dir, "shipagent.log"))
	if err != nil {
		return nil, err
	}
	a.cmd = exec.Command(bin, "--config", cfgPath)
	a.cmd.Env = append(os.Environ(), EnvFleetToken+"="+fleetToken, "AGENT_DIR="+a.dir, fmt.Sprintf("APP_PORT=%d", port))
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	a.done = make(chan struct{})
	go func() { a.cmd.Wait(); logf.Close(); close(a.done) }()
	return a, nil
}

// stop ends the agent and everything in its process group (the hook's demoapp):
// SIGTERM, then SIGKILL after a grace period.
func (a *demoAgent) stop(grace time.Duration) {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	pgid := a.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(grace):
	}
	// The agent may be gone while its demoapp lingers: the group gets SIGKILL.
	syscall.Kill(-pgid, syscall.SIGKILL)
	<-a.done
}

// freeLoopbackPort returns a loopback port that is free now and below the
// kernel's ephemeral range, so no ":0" listener (an agent's BitTorrent port, a
// client's socket) can take it before demoapp binds it.
func freeLoopbackPort() (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &low)
	}
	if low > 12000 {
		for i := 0; i < 200; i++ {
			port := low - 10000 + mrand.IntN(10000)
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				l.Close()
				return port, nil
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// demoArtifact writes the release tarball: demoapp, its behaviour and VERSION,
// and padMiB of incompressible assets so the push has something to move.
func demoArtifact(path, demoapp, version, behaviour string, padMiB int) error {
	bin, err := os.ReadFile(demoapp)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	add := func(name string, mode int64, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, Typeflag: tar.TypeReg, ModTime: time.Now()}); err != nil {
			return err
		}
		_, err := io.CopyN(tw, r, size)
		return err
	}
	err = errors.Join(
		add("bin/demoapp", 0o755, int64(len(bin)), bytes.NewReader(bin)),
		add("behaviour.json", 0o644, int64(len(behaviour)), bytes.NewReader([]byte(behaviour))),
		add("VERSION", 0o644, int64(len(version)+1), bytes.NewReader([]byte(version+"\n"))),
		add("assets/bundle.bin", 0o644, int64(padMiB)<<20, rand.Reader),
		tw.Close(), zw.Close(), f.Close())
	if err != nil {
		return fmt.Errorf("write the %s artifact: %w", version, err)
	}
	return nil
}
