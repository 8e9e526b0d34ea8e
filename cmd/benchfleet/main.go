// Command benchfleet measures the fleet API under many agents: it starts a real
// shipbot, simulates N agents as goroutines with real HTTP connections (enrol, a
// long-poll for desired state, a status report every 5 s), changes every host's
// desired state once, and prints how long the change took to reach the agents
// (p50, p99, max), shipbot's CPU seconds and its peak RSS. `make bench-fleet` runs
// it for 1k and 10k agents.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/httpapi"
	"github.com/shipbot/shipbot/distributor/fleet"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "benchfleet:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	agents := flag.String("agents", "1000,10000", "fleet sizes to measure")
	shipbotBin := flag.String("shipbot", "bin/shipbot", "the shipbot binary")
	flag.Parse()
	raiseFileLimit()
	for _, s := range strings.Split(*agents, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("--agents: %w", err)
		}
		if err := measure(ctx, *shipbotBin, n); err != nil {
			return fmt.Errorf("%d agents: %w", n, err)
		}
	}
	return nil
}

func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func measure(ctx context.Context, bin string, n int) error {
	dir, err := os.MkdirTemp("", "benchfleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if out, err := exec.Command(bin, "keygen", "--dir", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("keygen: %v %s", err, out)
	}
	cfg := filepath.Join(dir, "shipbot.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s/data\nchannel: \"#deploy\"\nchat: console\nlog: {format: json, level: warn}\n"+
		"fleet: {stale_after: 60s, report_every: 5s}\npeople:\n  - name: dave\n    emails: [dave@example.com]\nroles: {release_heads: [dave]}\n", dir)), 0o644)
	addrFile := filepath.Join(dir, "addr")
	cmd := exec.CommandContext(ctx, bin, "serve", "--config", cfg, "--listen", "127.0.0.1:0", "--addr-file", addrFile)
	cmd.Env = append(os.Environ(), "SHIPBOT_API_TOKEN=admin", "SHIPBOT_FLEET_TOKEN=fleet", "SHIPBOT_SIGNING_KEY_FILE="+filepath.Join(dir, "shipbot.key"))
	stdin, _ := cmd.StdinPipe()
	cmd.Stdout = io.Discard
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { stdin.Close(); cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	var base string
	for i := 0; ; i++ {
		if b, err := os.ReadFile(addrFile); err == nil && len(b) > 0 {
			base = "http://" + strings.TrimSpace(string(b))
			break
		}
		if i > 400 {
			return fmt.Errorf("shipbot did not start: %s", stderr.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	art := make([]byte, 1<<20)
	rand.Read(art)
	api := &httpapi.Client{BaseURL: base, Token: "admin"}
	if _, err := api.CreateRelease(ctx, httpapi.ReleaseMeta{Version: "r1", Range: "a..b", Artifact: "app.bin",
		Commits: []bot.Commit{{SHA: "1", Author: "dave@example.com"}}}, bytes.NewReader(art)); err != nil {
		return err
	}

	tr := &http.Transport{MaxIdleConns: 0, MaxIdleConnsPerHost: n + 100, MaxConnsPerHost: 0, IdleConnTimeout: 2 * time.Minute,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}
	client := &http.Client{Transport: tr}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var enrolled, polling atomic.Int64
	var mu sync.Mutex
	var changeAt time.Time
	got := make([]time.Duration, 0, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			simAgent(actx, client, base, fmt.Sprintf("sim%05d", i), i, &enrolled, &polling, func(at time.Time) {
				mu.Lock()
				got = append(got, at.Sub(changeAt))
				mu.Unlock()
			})
		}()
		if i%200 == 199 {
			time.Sleep(20 * time.Millisecond) // enrol at a realistic pace, not all in one instant
		}
	}
	for polling.Load() < int64(n) {
		if time.Since(start) > 3*time.Minute {
			return fmt.Errorf("only %d of %d agents enrolled and polling", polling.Load(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	enrolTime := time.Since(start)
	time.Sleep(2 * time.Second) // let the polls settle into their wait
	cpu0 := cpuSeconds(cmd.Process.Pid)

	body, _ := json.Marshal(fleet.DesiredChange{Stage: []string{"r1"}})
	req, _ := http.NewRequestWithContext(ctx, "PUT", base+"/v1/fleet/desired", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin")
	mu.Lock()
	changeAt = time.Now()
	mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("set desired: %s", resp.Status)
	}
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k == n {
			break
		}
		if time.Since(changeAt) > 2*time.Minute {
			return fmt.Errorf("only %d of %d agents saw the change", k, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	spread := time.Since(changeAt)
	time.Sleep(10 * time.Second) // a steady state of polls and reports
	cpu1 := cpuSeconds(cmd.Process.Pid)
	cancel()
	wg.Wait()
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	fmt.Printf("%6d agents: change reached all in %.2f s; p50 %.0f ms, p99 %.0f ms, max %.0f ms; shipbot CPU %.1f s over the change and 10 s of steady polling (%.1f s since start); peak RSS %d MiB; enrolment of all took %.1f s\n",
		n, spread.Seconds(), ms(got[len(got)/2]), ms(got[len(got)*99/100]), ms(got[len(got)-1]), cpu1-cpu0, cpu1, peakRSS(cmd.Process.Pid)>>10, enrolTime.Seconds())
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func simAgent(ctx context.Context, c *http.Client, base, host string, i int, enrolled, polling *atomic.Int64, saw func(time.Time)) {
	call := func(method, path, key string, in, out any) error {
		var body io.Reader
		if in != nil {
			b, _ := json.Marshal(in)
			body = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, base+path, body)
		req.Header.Set("Authorization", "Bearer fleet")
		if key != "" {
			req.Header.Set(fleet.HeaderHostKey, key)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s", resp.Status)
		}
		if out != nil {
			return json.NewDecoder(bufio.NewReader(resp.Body)).Decode(out)
		}
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	var e fleet.EnrollResponse
	for call("POST", "/v1/agents/"+host+"/enroll", "", fleet.EnrollRequest{Instance: "instance-" + host, Rack: fmt.Sprintf("r%d", i%40), DC: "dc1", BTAddr: "127.0.0.1:6881"}, &e) != nil {
		if ctx.Err() != nil {
			return
		}
		time.Sleep(time.Second)
	}
	enrolled.Add(1)
	go func() { // status reports every 5 s, spread out
		time.Sleep(time.Duration(i%5000) * time.Millisecond)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			call("POST", "/v1/agents/"+host+"/status", e.HostKey, fleet.StatusReport{Active: "r0"}, nil)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	var gen uint64
	first := true
	for ctx.Err() == nil {
		if first {
			polling.Add(1)
			first = false
		}
		var d fleet.DesiredResponse
		if err := call("GET", fmt.Sprintf("/v1/agents/%s/desired?after=%d&wait=60s", host, gen), e.HostKey, nil, &d); err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if d.Generation > gen {
			gen = d.Generation
			saw(time.Now())
		}
	}
}

func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // clock ticks (USER_HZ is 100 on Linux)
}

// peakRSS is VmHWM in KiB.
func peakRSS(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}
