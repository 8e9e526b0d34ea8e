package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/tracker"
)

var webBytes atomic.Int64

type benchConfig struct {
	size       int64
	hosts      int
	racks      int
	hostMbit   float64
	uplinkMbit float64
	methods    []string
	netns      bool
	handout    int
	pieceKiB   int64
	timeout    time.Duration
}

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("benchpush", flag.ContinueOnError)
	sizeMiB := fs.Int64("size-mib", 64, "artifact size in MiB")
	hosts := fs.Int("hosts", 24, "number of hosts")
	racks := fs.Int("racks", 4, "number of racks")
	hostMbit := fs.Float64("host-mbit", 100, "host link rate, Mbit/s (each direction)")
	uplinkMbit := fs.Float64("uplink-mbit", 100, "rack uplink rate, Mbit/s (each direction)")
	methods := fs.String("methods", "locality,random,http,aria2", "methods to run, in order")
	mode := fs.String("netns", "auto", "auto: shaped namespaces when root with ip netns, else loopback; on; off")
	handout := fs.Int("handout", tracker.DefaultHandout, "peers per tracker answer (our tracker)")
	pieceKiB := fs.Int64("piece-kib", 0, "piece length in KiB (0: shipbot's choice by size)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on a method after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := benchConfig{size: *sizeMiB << 20, hosts: *hosts, racks: *racks, hostMbit: *hostMbit, uplinkMbit: *uplinkMbit,
		methods: strings.Split(*methods, ","), handout: *handout, timeout: *timeout, pieceKiB: *pieceKiB}
	switch *mode {
	case "on":
		c.netns = true
	case "off":
	default:
		c.netns = netnsAvailable()
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "benchpush-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	var topo *topology
	if c.netns {
		topo = &topology{hosts: c.hosts, racks: c.racks, hostMbit: c.hostMbit, uplinkMbit: c.uplinkMbit}
		topo.cleanup()
		defer topo.cleanup()
		if err := topo.build(); err != nil {
			return fmt.Errorf("build the shaped topology: %w", err)
		}
	}
	fmt.Printf("benchpush: %d MiB to %d hosts on %d racks; host links %.0f Mbit/s, rack uplinks %.0f Mbit/s, origin link %.0f Mbit/s\n",
		c.size>>20, c.hosts, c.racks, c.hostMbit, c.uplinkMbit, c.hostMbit)
	if c.netns {
		fmt.Println("network: real shaped links (a network namespace per host, veth + bridges, tc tbf on both ends of every link)")
	} else {
		fmt.Println("network: loopback with the caps inside the clients (not root, or no ip netns): rack uplinks are NOT modelled")
	}
	fmt.Printf("machine: %d CPUs (%s/%s)\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)

	art := filepath.Join(work, "app.tar.gz")
	if err := writeRandom(art, c.size); err != nil {
		return err
	}
	sBits := float64(c.size) * 8
	bw := c.hostMbit * 1e6
	bound := max(sBits/bw, sBits/bw, float64(c.hosts)*sBits/(bw+float64(c.hosts)*bw))
	fmt.Printf("Kumar–Ross lower bound: max(S/u_seed, S/d_min, N·S/(u_seed+Σu_i)) = %.2f s\n\n", bound)

	var results []result
	for _, m := range c.methods {
		r, err := runMethod(ctx, c, topo, self, work, art, strings.TrimSpace(m))
		if err != nil {
			fmt.Printf("%-9s failed: %v\n", m, err)
			continue
		}
		r.ratio = r.wall / bound
		results = append(results, r)
		fmt.Printf("%-9s %7.2f s  %5.2f× bound  p50 host %6.2f s  CPU %6.1f s (%.2f cores)  origin sent %5.1f%% of the bytes\n",
			r.method, r.wall, r.ratio, r.p50, r.cpu, r.cpu/r.wall, 100*r.originShare)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Println()
	fmt.Println("| method | wall time | × bound | median host | CPU s (cores) | origin share |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, r := range results {
		share := fmt.Sprintf("%.1f%%", 100*r.originShare)
		if r.method == "aria2" {
			share = "n/a"
		}
		fmt.Printf("| %s | %.2f s | %.2f | %.2f s | %.1f (%.2f) | %s |\n", r.method, r.wall, r.ratio, r.p50, r.cpu, r.cpu/r.wall, share)
	}
	return nil
}

type result struct {
	method      string
	wall, p50   float64
	ratio       float64
	cpu         float64
	originShare float64
}

func writeRandom(path string, size int64) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	_, err = io.CopyN(fh, rand.Reader, size)
	return err
}

// proc is a child process with a line reader on its stdout.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func start(ctx context.Context, ns string, self string, args ...string) (*proc, error) {
	var cmd *exec.Cmd
	if ns != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, self}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, self, args...)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p, nil
}

// expect waits for a line starting with prefix.
func (p *proc) expect(ctx context.Context, prefix string) (string, error) {
	for {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case l, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("process exited before %s", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		}
	}
}

// stop closes stdin (the child's signal to finish) and returns its CPU seconds.
func (p *proc) stop() float64 {
	p.stdin.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	if st := p.cmd.ProcessState; st != nil {
		return (st.UserTime() + st.SystemTime()).Seconds()
	}
	return 0
}

func runMethod(ctx context.Context, c benchConfig, topo *topology, self, work, art, method string) (result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	dir := filepath.Join(work, method)
	os.MkdirAll(dir, 0o755)
	defer os.RemoveAll(dir)

	raw := make([]byte, 16)
	rand.Read(raw)
	secret := []byte(hex.EncodeToString(raw)) // the origin gets the same bytes via --secret
	var hosts []distributor.Host
	for i := 0; i < c.hosts; i++ {
		hosts = append(hosts, distributor.Host{Name: fmt.Sprintf("h%02d", i), Rack: fmt.Sprintf("r%d", i%c.racks), DC: "dc1"})
	}
	hb, _ := json.Marshal(hosts)
	hostsFile := filepath.Join(dir, "hosts.json")
	os.WriteFile(hostsFile, hb, 0o644)
	manifest := filepath.Join(dir, "manifest.json")

	originIP, originNS := "127.0.0.1", ""
	capRate := int64(0)
	if topo != nil {
		originIP, originNS = topo.originIP(), topo.originNS()
	} else {
		capRate = int64(c.hostMbit * 1e6 / 8)
	}
	origin, err := start(ctx, originNS, self, "origin", "--method", method, "--artifact", art, "--ip", originIP,
		"--hosts", hostsFile, "--secret", string(secret), "--manifest", manifest,
		"--rate", strconv.FormatInt(capRate, 10), "--handout", strconv.Itoa(c.handout),
		"--piece-kib", strconv.FormatInt(c.pieceKiB, 10))
	if err != nil {
		return result{}, err
	}
	cpu := 0.0
	defer func() {
		if origin != nil {
			origin.stop()
		}
	}()
	if _, err := origin.expect(ctx, "READY"); err != nil {
		return result{}, fmt.Errorf("origin: %w", err)
	}
	tr := &tracker.Tracker{Secret: secret}
	base := "http://" + originIP + ":8080"
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	t0 := time.Now()
	for i, h := range hosts {
		hdir := filepath.Join(dir, h.Name)
		os.MkdirAll(hdir, 0o755)
		ns, ip := "", "127.0.0.1"
		if topo != nil {
			ns, ip = topo.hostNS(i), topo.hostIP(i)
		}
		p, err := start(ctx, ns, self, "host", "--method", method, "--manifest", manifest, "--dir", hdir, "--ip", ip,
			"--announce", tr.AnnounceURL(base+"/announce", h.Name), "--webseed", base+"/webseed/bench/",
			"--torrent", filepath.Join(dir, "bench.torrent"), "--rate", strconv.FormatInt(capRate, 10))
		if err != nil {
			return result{}, err
		}
		procs = append(procs, p)
	}
	var mu sync.Mutex
	var times []float64
	var fromPeers, fromWeb int64
	var wg sync.WaitGroup
	errs := make(chan error, len(procs))
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := p.expect(ctx, "DONE")
			if err != nil {
				errs <- fmt.Errorf("%s: %w", hosts[i].Name, err)
				return
			}
			if os.Getenv("BENCHPUSH_DEBUG") != "" {
				fmt.Fprintf(os.Stderr, "%s %s\n", hosts[i].Name, l)
			}
			f := strings.Fields(l)
			s, _ := strconv.ParseFloat(f[1], 64)
			a, _ := strconv.ParseInt(f[2], 10, 64)
			b, _ := strconv.ParseInt(f[3], 10, 64)
			mu.Lock()
			times = append(times, s)
			fromPeers += a
			fromWeb += b
			mu.Unlock()
		}()
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	close(errs)
	for err := range errs {
		return result{}, err
	}
	for _, p := range procs {
		cpu += p.stop()
	}
	procs = nil
	origin.stdin.Close()
	up := 0.0
	if l, err := origin.expect(context.Background(), "UPLOADED"); err == nil {
		n, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
		up = n
		if os.Getenv("BENCHPUSH_DEBUG") != "" {
			fmt.Fprintf(os.Stderr, "origin %s; hosts got %d from BitTorrent, %d from the webseed\n", l, fromPeers, fromWeb)
		}
	}
	cpu += origin.stop()
	origin = nil
	sort.Float64s(times)
	total := float64(c.size) * float64(c.hosts)
	return result{method: method, wall: wall, p50: times[len(times)/2], cpu: cpu, originShare: up / total}, nil
}
