package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/chattest"
)

// demoBins puts shipagent and demoapp where shipbot demo --bin finds them.
func demoBins(t *testing.T) (shipbot, dir string) {
	dir = t.TempDir()
	for name, p := range map[string]string{
		"shipagent": chattest.Build(t, "./cmd/shipagent"),
		"demoapp":   chattest.BuildPlain(t, "./cmd/demoapp"),
	} {
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return chattest.Build(t, "./cmd/shipbot"), dir
}

// startDemo runs shipbot demo with args; its output goes to the returned buffer.
func startDemo(t *testing.T, args ...string) (*exec.Cmd, *chattest.Buffer) {
	bin, dir := demoBins(t)
	cmd := exec.Command(bin, append(append([]string{"demo"}, args...), "--bin", dir)...)
	out := &chattest.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// runDemo starts cmd and returns its exit.
func runDemo(t *testing.T, cmd *exec.Cmd) <-chan error {
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return done
}

// finish waits up to d for a demo to exit 0.
func finish(t *testing.T, cmd *exec.Cmd, out *chattest.Buffer, done <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo: %v\n%s", err, out)
		}
	case <-time.After(d):
		cmd.Process.Kill()
		t.Fatalf("the demo did not finish in %s:\n%s", d, out)
	}
}

var demoDirRe = regexp.MustCompile(`logs under (\S+)\)`)

// leftovers lists processes whose command line mentions dir.
func leftovers(dir string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(dir)) {
			out = append(out, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// TestDemo runs a shortened make demo: 4 real agents in 2 racks, v2 to every host,
// v3 rolled back from the canary, the summary, and nothing left behind.
func TestDemo(t *testing.T) {
	cmd, out := startDemo(t, "--hosts", "4", "--racks", "2", "--speed", "3", "--artifact-mib", "2")
	start := time.Now()
	finish(t, cmd, out, runDemo(t, cmd), 5*time.Minute)
	t.Logf("demo took %s", time.Since(start).Round(time.Second))
	text := out.String()
	// The story, in order.
	pos := 0
	for _, want := range []string{
		"release v2 is up for check-in: 3 commits",
		"!ship refused: 1 of 3 committers has not checked in: @bob",
		"reminder: v2 is waiting for @bob",
		"shipping v2: 3 commits, 3/3 checked in",
		"push v2:",
		"v2: staged on all 4 hosts",
		"v2: tier a2 healthy: 5xx 0.0% (baseline 0.0%)",
		"v2 is done on all 4 hosts",
		"shipping v3",
		"ROLLBACK v3: tier a2 failed its gates: 5xx ",
		"@carol @erin: please look",
		"v3 rolled back",
		"== summary",
		"peer-to-peer (",
		"rack1: web-1-01=v2 web-1-02=v2",
		"rack2: web-2-01=v2 web-2-02=v2",
	} {
		i := strings.Index(text[pos:], want)
		if i < 0 {
			t.Fatalf("the demo's output lacks %q after position %d:\n%s", want, pos, text)
		}
		pos += i + len(want)
	}
	m := demoDirRe.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no temp dir in the output:\n%s", text)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the demo left its temp dir %s: %v", m[1], err)
	}
	if l := leftovers(m[1]); len(l) > 0 {
		t.Errorf("processes left running: %q", l)
	}
}

// TestDemoIRC runs the demo with the channel on a local ngircd: the scripted
// people are IRC clients and the bot mentions them by nick.
func TestDemoIRC(t *testing.T) {
	cmd, out := startDemo(t, "--irc", "--hosts", "3", "--racks", "1", "--speed", "3", "--artifact-mib", "1")
	finish(t, cmd, out, runDemo(t, cmd), 5*time.Minute)
	text := out.String()
	for _, want := range []string{
		"== IRC: ngircd on 127.0.0.1:",
		"bob: !ready\nshipbot: bob: checked in for v2. Everyone is in (3/3)",
		"shipbot: v2: tier a2 healthy: 5xx 0.0% (baseline 0.0%)",
		"shipbot: ROLLBACK v3: tier a2 failed its gates: 5xx ",
		"carol erin: please look",
		"rack1: web-1-01=v2 web-1-02=v2 web-1-03=v2",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the IRC demo's output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", text)
	}
	if strings.Count(text, "alice: !ready") != 1 {
		t.Errorf("alice's line shows %d times", strings.Count(text, "alice: !ready"))
	}
}

// TestDemoInterrupted: Ctrl-C in the middle stops every agent and demoapp and
// removes the temp dir.
func TestDemoInterrupted(t *testing.T) {
	cmd, out := startDemo(t, "--hosts", "3", "--racks", "1", "--speed", "3", "--artifact-mib", "1")
	done := runDemo(t, cmd)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "shipping v2") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("the demo never shipped v2:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := demoDirRe.FindStringSubmatch(out.String())
	if m == nil || len(leftovers(m[1])) < 3 {
		t.Fatalf("expected the temp dir and running agents before the interrupt:\n%s", out)
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("an interrupted demo exits 0, got %v:\n%s", err, out)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("the demo did not stop within 30s of SIGINT:\n%s", out)
	}
	if !strings.Contains(out.String(), "== stopped early") {
		t.Errorf("no word about the interrupt:\n%s", out)
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("the demo left its temp dir %s: %v", m[1], err)
	}
	if l := leftovers(m[1]); len(l) > 0 {
		t.Errorf("processes left running: %q", l)
	}
}

// TestDemoInteractive: with --interactive the demo waits for the user, who types
// the lines it asks for; the story still ends with v2 everywhere and v3 rolled back.
func TestDemoInteractive(t *testing.T) {
	cmd, out := startDemo(t, "--interactive", "--hosts", "2", "--racks", "1", "--speed", "3", "--artifact-mib", "1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	done := runDemo(t, cmd)
	turnRe := regexp.MustCompile(`== your turn \([^)]*\): (.*)`)
	answered := 0
	deadline := time.Now().Add(4 * time.Minute)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("demo --interactive: %v\n%s", err, out)
			}
			text := out.String()
			if answered != 2 || !strings.Contains(text, "v2 is done on all 2 hosts") || !strings.Contains(text, "ROLLBACK v3") ||
				!strings.Contains(text, "rack1: web-1-01=v2 web-1-02=v2") {
				t.Fatalf("answered %d turns; output:\n%s", answered, text)
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the interactive demo did not finish:\n%s", out)
		}
		turns := turnRe.FindAllStringSubmatch(out.String(), -1)
		for ; answered < len(turns); answered++ {
			for _, l := range strings.Split(turns[answered][1], ", then ") {
				fmt.Fprintln(stdin, l)
				time.Sleep(100 * time.Millisecond)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}
