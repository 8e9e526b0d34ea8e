package chattest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/shipbot/shipbot/distributor/disttest"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu   sync.Mutex
	buildDir  string
	buildDone = map[string]string{}
)

// Build compiles a main package of this module (e.g. "./cmd/shipbot", relative to the
// module root) with the race detector, once per test process, and returns the
// binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, pkg, true)
}

// BuildPlain is Build without the race detector, for helpers whose start-up time
// matters to a test (the demo service restarted by activate hooks).
func BuildPlain(t testing.TB, pkg string) string {
	t.Helper()
	return build(t, pkg, false)
}

func build(t testing.TB, pkg string, race bool) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	id := fmt.Sprintf("%s race=%v", pkg, race)
	if p, ok := buildDone[id]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "shipbot-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	args := []string{"build", "-o", out, pkg}
	if race {
		args = []string{"build", "-race", "-o", out, pkg}
	} else {
		out += "-plain"
		args[2] = out
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	buildDone[id] = out
	return out
}

func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		d = p
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int { return disttest.FreePort(t) }

// Shipbot is a running `shipbot serve` process.
type Shipbot struct {
	Bin     string
	Config  string // path of the config file
	DataDir string
	Token   string
	URL     string // http://host:port of the API
	Stdin   io.WriteCloser
	// Env is added to the process environment (e.g. the fleet token).
	Env []string

	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout []string
	stderr bytes.Buffer
	done   chan struct{}
}

// StartShipbot writes config (YAML) into a temp dir and runs `shipbot serve` with the
// API on a free loopback port. The config's data_dir should be dataDir.
func StartShipbot(t testing.TB, bin, config, dataDir string, env ...string) *Shipbot {
	t.Helper()
	dir := t.TempDir()
	s := &Shipbot{Bin: bin, Config: filepath.Join(dir, "shipbot.yaml"), DataDir: dataDir, Token: "test-token-" + filepath.Base(dir), Env: env}
	if err := os.WriteFile(s.Config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (s *Shipbot) start(t testing.TB) {
	t.Helper()
	addrFile := filepath.Join(filepath.Dir(s.Config), "addr")
	os.Remove(addrFile)
	listen := "127.0.0.1:0"
	if s.URL != "" { // a restart keeps the address the clients know
		listen = strings.TrimPrefix(s.URL, "http://")
	}
	s.cmd = exec.Command(s.Bin, "serve", "--config", s.Config, "--listen", listen, "--addr-file", addrFile)
	s.cmd.Env = append(append(os.Environ(), "SHIPBOT_API_TOKEN="+s.Token), s.Env...)
	stdin, err := s.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.Stdin = stdin
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = &lockedWriter{mu: &s.mu, w: &s.stderr}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.done = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.mu.Lock()
			s.stdout = append(s.stdout, sc.Text())
			s.mu.Unlock()
		}
		s.cmd.Wait()
		close(s.done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			s.URL = "http://" + strings.TrimSpace(string(b))
			return
		}
		select {
		case <-s.done:
			t.Fatalf("shipbot serve exited early: %v\n%s", s.cmd.ProcessState, s.Stderr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("shipbot serve did not listen within 20s\n%s", s.Stderr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Restart stops (SIGTERM) and starts the process again on the same config and data.
func (s *Shipbot) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.start(t)
}

// Kill9 kills the process with SIGKILL, as a crash would, and starts it again on the
// same address and data.
func (s *Shipbot) Kill9(t testing.TB) {
	t.Helper()
	s.cmd.Process.Kill()
	<-s.done
	s.start(t)
}

// Stop sends SIGTERM and waits for the process to exit.
func (s *Shipbot) Stop(t testing.TB) {
	t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.Stdin.Close()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("shipbot did not exit within 15s of SIGTERM\n%s", s.Stderr())
	}
}

// Lines returns what shipbot has written to stdout (the console channel).
func (s *Shipbot) Lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.stdout...)
}

// Stderr returns the operator log so far.
func (s *Shipbot) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// CLI runs the shipbot binary as a client of this server and returns its combined
// output.
func (s *Shipbot) CLI(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.Bin, args...)
	cmd.Env = append(append(os.Environ(), s.Env...), "SHIPBOT_API_TOKEN="+s.Token, "SHIPBOT_URL="+s.URL)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Buffer is a bytes.Buffer that a process's output and a test may use at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
