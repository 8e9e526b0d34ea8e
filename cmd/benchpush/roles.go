package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/fetcher"
	"github.com/shipbot/shipbot/distributor/seeder"
	"github.com/shipbot/shipbot/distributor/tracker"
)

// runOrigin serves the tracker, the seeder and the webseed (methods locality,
// random, http), or runs opentracker and an aria2c seed (method aria2). It writes
// the manifest to --manifest, prints READY, and serves until stdin closes, then
// prints the bytes it uploaded.
func runOrigin(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("origin", flag.ContinueOnError)
	method := fs.String("method", "locality", "locality, random, http or aria2")
	artifact := fs.String("artifact", "", "the file to push")
	ip := fs.String("ip", "127.0.0.1", "address to serve on")
	hostsFile := fs.String("hosts", "", "JSON list of enrolled hosts")
	secret := fs.String("secret", "", "tracker secret")
	manifestOut := fs.String("manifest", "", "where to write the manifest")
	rateCap := fs.Int64("rate", 0, "upload cap in bytes/s inside the client (loopback mode)")
	handout := fs.Int("handout", tracker.DefaultHandout, "peers per tracker answer")
	pieceKiB := fs.Int64("piece-kib", 0, "piece length in KiB (0: shipbot's choice)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	seeder.PieceLengthOverride = *pieceKiB << 10
	var hosts []distributor.Host
	b, err := os.ReadFile(*hostsFile)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &hosts); err != nil {
		return err
	}
	reg := distributor.StaticRegistry{}
	for _, h := range hosts {
		reg[h.Name] = h
	}
	if *method == "aria2" {
		return originAria2(ctx, *artifact, *ip, *manifestOut)
	}
	var policy distributor.PeerPolicy = distributor.LocalityPolicy{}
	if *method == "random" {
		policy = distributor.RandomPolicy{}
	}
	tr := &tracker.Tracker{Registry: reg, Policy: policy, Secret: []byte(*secret), Interval: 5 * time.Second, Handout: *handout}
	sd := &seeder.Seeder{ListenAddr: *ip + ":6881", UploadRate: *rateCap}
	if err := sd.Open(); err != nil {
		return err
	}
	defer sd.Close()
	mux := http.NewServeMux()
	mux.Handle("/announce", tr.Handler())
	var lim *rate.Limiter // shared by every webseed response: the origin's one link
	if *rateCap > 0 {
		lim = rate.NewLimiter(rate.Limit(*rateCap), int(max(64<<10, *rateCap/10)))
	}
	mux.Handle("/webseed/", countHandler(http.StripPrefix("/webseed", sd.WebseedHandler()), lim))
	ln, err := net.Listen("tcp", *ip+":8080")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + *ip + ":8080"
	tor, err := seeder.MakeTorrent(*artifact, "bench", "bench", base+"/announce", base+"/webseed/bench/", "", time.Now())
	if err != nil {
		return err
	}
	if err := sd.Seed(tor); err != nil {
		return err
	}
	tr.AddOrigin(tor.MetaInfo.HashInfoBytes(), sd.Addr())
	mb, _ := json.Marshal(tor.Manifest)
	if err := os.WriteFile(*manifestOut, mb, 0o644); err != nil {
		return err
	}
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin) // until the bench closes our stdin
	fmt.Printf("UPLOADED %d\n", sd.UploadedBytes()+webBytes.Load())
	return nil
}

// originAria2 seeds with a stock aria2c announcing to a stock opentracker.
func originAria2(ctx context.Context, artifact, ip, manifestOut string) error {
	dir := filepath.Dir(manifestOut)
	tor, err := seeder.MakeTorrent(artifact, "bench", "bench", "http://"+ip+":6969/announce", "", "", time.Now())
	if err != nil {
		return err
	}
	tf := filepath.Join(dir, "bench.torrent")
	fh, err := os.Create(tf)
	if err != nil {
		return err
	}
	if err := tor.MetaInfo.Write(fh); err != nil {
		return err
	}
	fh.Close()
	otDir := filepath.Join(dir, "opentracker")
	os.MkdirAll(otDir, 0o755)
	os.WriteFile(filepath.Join(otDir, "whitelist.txt"), []byte(tor.Manifest.InfoHash+"\n"), 0o644)
	ot := exec.CommandContext(ctx, "opentracker", "-i", ip, "-p", "6969", "-P", "6969", "-d", otDir, "-w", "whitelist.txt")
	ot.Stdout, ot.Stderr = os.Stderr, os.Stderr
	if err := ot.Start(); err != nil {
		return fmt.Errorf("opentracker: %w", err)
	}
	defer func() { ot.Process.Kill(); ot.Wait() }()
	seed := exec.CommandContext(ctx, "aria2c", "--enable-dht=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--seed-ratio=0.0", "--bt-seed-unverified=true", "--listen-port=6881", "--dir="+filepath.Dir(artifact),
		"--console-log-level=error", "--summary-interval=0", "--bt-max-peers=55", tf)
	seed.Stdout, seed.Stderr = os.Stderr, os.Stderr
	if err := seed.Start(); err != nil {
		return fmt.Errorf("aria2c seed: %w", err)
	}
	defer func() { seed.Process.Kill(); seed.Wait() }()
	mb, _ := json.Marshal(tor.Manifest)
	if err := os.WriteFile(manifestOut, mb, 0o644); err != nil {
		return err
	}
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
	fmt.Println("UPLOADED 0")
	return nil
}

// runHost fetches the artifact by one method, prints "DONE <seconds>" once the copy
// is verified, and keeps seeding until stdin closes.
func runHost(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	method := fs.String("method", "locality", "locality, random, http or aria2")
	manifestPath := fs.String("manifest", "", "manifest JSON")
	dir := fs.String("dir", "", "work directory")
	ip := fs.String("ip", "127.0.0.1", "this host's address")
	announce := fs.String("announce", "", "announce URL")
	webseed := fs.String("webseed", "", "webseed URL (url-list entry)")
	torrentFile := fs.String("torrent", "", ".torrent for aria2c")
	rateCap := fs.Int64("rate", 0, "up and down cap in bytes/s inside the client (loopback mode)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*manifestPath)
	if err != nil {
		return err
	}
	var m distributor.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if d := os.Getenv("BENCHPUSH_CPUPROFILE"); d != "" {
		pf, err := os.Create(filepath.Join(d, filepath.Base(*dir)+".pprof"))
		if err == nil {
			pprof.StartCPUProfile(pf)
			defer pprof.StopCPUProfile()
		}
	}
	start := time.Now()
	switch *method {
	case "http":
		if err := httpFetch(ctx, *webseed+m.Artifact, filepath.Join(*dir, m.Artifact), m.SHA256, *rateCap); err != nil {
			return err
		}
		fmt.Printf("DONE %.3f 0 %d\n", time.Since(start).Seconds(), m.Size)
		io.Copy(io.Discard, os.Stdin)
		return nil
	case "aria2":
		return aria2Host(ctx, &m, *dir, *torrentFile, *rateCap, start)
	}
	f := &fetcher.Fetcher{Dir: *dir, ListenAddr: *ip + ":6881", UploadRate: *rateCap, DownloadRate: *rateCap, Log: zap.NewNop()}
	if *rateCap > 0 {
		f.ListenAddr = *ip + ":0"
	}
	if err := f.Open(); err != nil {
		return err
	}
	defer f.Close()
	var last fetcher.Progress
	if _, err := f.Fetch(ctx, &m, fetcher.Source{Announce: *announce, Webseeds: []string{*webseed}}, func(p fetcher.Progress) { last = p }); err != nil {
		return err
	}
	fmt.Printf("DONE %.3f %d %d\n", time.Since(start).Seconds(), last.FromPeers, last.FromWebseed)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

func aria2Host(ctx context.Context, m *distributor.Manifest, dir, tf string, rateCap int64, start time.Time) error {
	doneFile := filepath.Join(dir, "DONE")
	hook := filepath.Join(dir, "hook.sh")
	os.WriteFile(hook, []byte("#!/bin/sh\ntouch "+doneFile+"\n"), 0o755)
	args := []string{"--enable-dht=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--seed-ratio=0.0", "--listen-port=6881", "--dir=" + dir, "--console-log-level=error", "--summary-interval=0",
		"--on-bt-download-complete=" + hook, "--file-allocation=none"}
	if rateCap > 0 {
		args = append(args, fmt.Sprintf("--max-overall-download-limit=%d", rateCap), fmt.Sprintf("--max-overall-upload-limit=%d", rateCap),
			fmt.Sprintf("--listen-port=%d", 20000+os.Getpid()%20000))
	}
	cmd := exec.CommandContext(ctx, "aria2c", append(args, tf)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("aria2c: %w", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for {
		if _, err := os.Stat(doneFile); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	sum, err := fileSHA(filepath.Join(dir, m.Artifact))
	if err != nil || sum != m.SHA256 {
		return fmt.Errorf("aria2c copy does not verify: %v", err)
	}
	fmt.Printf("DONE %.3f 0 0\n", time.Since(start).Seconds())
	io.Copy(io.Discard, os.Stdin)
	return nil
}

func httpFetch(ctx context.Context, url, out, want string, rateCap int64) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var body io.Reader = resp.Body
	if rateCap > 0 {
		body = &limitedReader{r: resp.Body, lim: rate.NewLimiter(rate.Limit(rateCap), int(max(64<<10, rateCap/10))), ctx: ctx}
	}
	fh, err := os.Create(out)
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(fh, h), body); err != nil {
		fh.Close()
		return err
	}
	fh.Close()
	if hex.EncodeToString(h.Sum(nil)) != want {
		return fmt.Errorf("http copy does not verify")
	}
	return nil
}

func fileSHA(p string) (string, error) {
	fh, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReaderSize(fh, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type limitedReader struct {
	r   io.Reader
	lim *rate.Limiter
	ctx context.Context
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if len(p) > l.lim.Burst() {
		p = p[:l.lim.Burst()]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.lim.WaitN(l.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// countHandler counts the webseed's bytes and, when lim is set (loopback mode),
// caps its total upload.
func countHandler(h http.Handler, lim *rate.Limiter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&limitedWriter{ResponseWriter: w, lim: lim, ctx: r.Context()}, r)
	})
}

type limitedWriter struct {
	http.ResponseWriter
	lim *rate.Limiter
	ctx context.Context
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := len(p)
		if l.lim != nil {
			n = min(n, l.lim.Burst())
			if err := l.lim.WaitN(l.ctx, n); err != nil {
				return written, err
			}
		}
		m, err := l.ResponseWriter.Write(p[:n])
		written += m
		webBytes.Add(int64(m))
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}
