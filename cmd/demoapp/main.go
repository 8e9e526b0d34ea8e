// Command demoapp is "the product" that the deploy tests and the demo ship: a tiny
// HTTP service with /healthz and Prometheus /metrics (requests by status code, with a
// version label, and a latency histogram). Its behaviour comes from behaviour.json in
// its release directory, so a bad build is a real artifact:
//
//	{"error_rate": 0.08, "latency_ms": 120, "healthy": true}
//
// With --load it sends itself that many requests per second, so the counters move
// without outside traffic.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Behaviour is behaviour.json.
type Behaviour struct {
	ErrorRate float64 `json:"error_rate"` // share of requests answered 500
	LatencyMS float64 `json:"latency_ms"` // added to every request
	Healthy   *bool   `json:"healthy"`    // /healthz answers 503 when false
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "demoapp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demoapp", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve on")
	dir := fs.String("dir", ".", "release directory (holds behaviour.json and VERSION)")
	load := fs.Float64("load", 0, "requests per second to send itself")
	pidFile := fs.String("pidfile", "", "write the process ID here")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, version, err := readRelease(*dir)
	if err != nil {
		return err
	}
	app := &app{b: b, version: version, codes: map[int]int64{}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *pidFile != "" { // written once listening, so a starter can wait for it
		if err := os.WriteFile(*pidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: app.routes(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	if *load > 0 {
		go app.loadLoop(ctx, "http://"+ln.Addr().String()+"/", *load)
	}
	fmt.Printf("demoapp %s serving on %s (error rate %.1f%%, latency %.0f ms)\n", version, ln.Addr(), 100*b.ErrorRate, b.LatencyMS)
	<-ctx.Done()
	// A restart should be quick: give in-flight requests a moment, then close.
	sctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

func readRelease(dir string) (Behaviour, string, error) {
	var b Behaviour
	if data, err := os.ReadFile(filepath.Join(dir, "behaviour.json")); err == nil {
		if err := json.Unmarshal(data, &b); err != nil {
			return b, "", fmt.Errorf("behaviour.json: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return b, "", err
	}
	if b.ErrorRate < 0 || b.ErrorRate > 1 {
		return b, "", fmt.Errorf("behaviour.json: error_rate %v is not between 0 and 1", b.ErrorRate)
	}
	version := "dev"
	if v, err := os.ReadFile(filepath.Join(dir, "VERSION")); err == nil {
		version = strings.TrimSpace(string(v))
	}
	return b, version, nil
}

// buckets of the latency histogram, in seconds.
var buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

type app struct {
	b       Behaviour
	version string

	mu     sync.Mutex
	codes  map[int]int64
	hist   [10]int64 // len(buckets)+1
	sum    float64
	served int64
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if a.b.Healthy != nil && !*a.b.Healthy {
			http.Error(w, "unhealthy (behaviour.json)", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok %s\n", a.version)
	})
	mux.HandleFunc("GET /metrics", a.metrics)
	mux.HandleFunc("GET /", a.serve)
	return mux
}

func (a *app) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if a.b.LatencyMS > 0 {
		time.Sleep(time.Duration(a.b.LatencyMS * float64(time.Millisecond) * (0.8 + 0.4*rand.Float64())))
	}
	code := http.StatusOK
	if rand.Float64() < a.b.ErrorRate {
		code = http.StatusInternalServerError
	}
	w.WriteHeader(code)
	fmt.Fprintf(w, "demoapp %s\n", a.version)
	el := time.Since(start).Seconds()
	a.mu.Lock()
	a.codes[code]++
	i := sort.SearchFloat64s(buckets, el)
	a.hist[i]++
	a.sum += el
	a.served++
	a.mu.Unlock()
}

func (a *app) metrics(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprintln(w, "# HELP demoapp_requests_total Requests served, by status code.")
	fmt.Fprintln(w, "# TYPE demoapp_requests_total counter")
	codes := make([]int, 0, len(a.codes))
	for c := range a.codes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		fmt.Fprintf(w, "demoapp_requests_total{code=\"%d\",version=%q} %d\n", c, a.version, a.codes[c])
	}
	fmt.Fprintln(w, "# HELP demoapp_request_duration_seconds Request latency.")
	fmt.Fprintln(w, "# TYPE demoapp_request_duration_seconds histogram")
	var cum int64
	for i, le := range buckets {
		cum += a.hist[i]
		fmt.Fprintf(w, "demoapp_request_duration_seconds_bucket{version=%q,le=\"%g\"} %d\n", a.version, le, cum)
	}
	cum += a.hist[len(buckets)]
	fmt.Fprintf(w, "demoapp_request_duration_seconds_bucket{version=%q,le=\"+Inf\"} %d\n", a.version, cum)
	fmt.Fprintf(w, "demoapp_request_duration_seconds_sum{version=%q} %g\n", a.version, a.sum)
	fmt.Fprintf(w, "demoapp_request_duration_seconds_count{version=%q} %d\n", a.version, cum)
}

func (a *app) loadLoop(ctx context.Context, url string, rps float64) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rps))
	defer t.Stop()
	c := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			go func() {
				if resp, err := c.Get(url); err == nil {
					resp.Body.Close()
				}
			}()
		}
	}
}
