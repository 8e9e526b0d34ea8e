package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot/dashboard"
)

// source is a Source whose snapshot the test changes.
type source struct {
	mu    sync.Mutex
	snap  dashboard.Snapshot
	racks []string // racks asked for
	err   error
}

func (s *source) Snapshot(ctx context.Context, rack string) (*dashboard.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.racks = append(s.racks, rack)
	if s.err != nil {
		return nil, s.err
	}
	cp := s.snap
	cp.At = time.Now()
	if rack != "" {
		cp.Rack = rack
		cp.Hosts = []dashboard.Host{{Name: rack + "-h1", Active: "v2"}}
	}
	return &cp, nil
}

func (s *source) set(version, state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.Release = &dashboard.Release{Version: version, State: state}
}

func start(t *testing.T) (*source, *dashboard.Server, *httptest.Server) {
	src := &source{}
	src.set("v2", "checkin")
	d := &dashboard.Server{Source: src, Interval: 20 * time.Millisecond}
	if err := d.Open(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(func() { d.Close(); srv.Close() })
	return src, d, srv
}

func TestPageAndAssets(t *testing.T) {
	_, _, srv := start(t)
	for path, want := range map[string]string{
		"/":                 `<script src="/assets/app.js">`,
		"/assets/app.js":    "new EventSource",
		"/assets/style.css": ".rack",
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s: %s, want it to contain %q", path, resp.Status, want)
		}
		if strings.Contains(string(b), "https://") {
			t.Errorf("GET %s refers to an external URL; the page must work offline", path)
		}
	}
	if resp, _ := http.Get(srv.URL + "/nope"); resp.StatusCode != 404 {
		t.Errorf("GET /nope: %s", resp.Status)
	}
}

func TestSnapshotAPI(t *testing.T) {
	src, _, srv := start(t)
	resp, err := http.Get(srv.URL + "/api/snapshot?rack=r7")
	if err != nil {
		t.Fatal(err)
	}
	var snap dashboard.Snapshot
	json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	if snap.Release.Version != "v2" || snap.Rack != "r7" || len(snap.Hosts) != 1 {
		t.Errorf("snapshot: %+v", snap)
	}
	src.mu.Lock()
	src.err = errors.New("store closed")
	src.mu.Unlock()
	resp, _ = http.Get(srv.URL + "/api/snapshot")
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 500 || !strings.Contains(string(b), "store closed") {
		t.Errorf("failing source: %s %s", resp.Status, b)
	}
}

// events parses a server-sent event stream into its data fields; the channel
// closes when the stream ends.
func events(r io.Reader) <-chan string {
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		br := bufio.NewReader(r)
		var data string
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "data: "):
				data = line[len("data: "):]
			case line == "" && data != "":
				ch <- data
				data = ""
			}
		}
	}()
	return ch
}

var errTimeout = errors.New("timeout")

func next(ch <-chan string, d time.Duration) (string, error) {
	select {
	case ev, ok := <-ch:
		if !ok {
			return "", io.EOF
		}
		return ev, nil
	case <-time.After(d):
		return "", errTimeout
	}
}

func TestEventsStreamChanges(t *testing.T) {
	src, d, srv := start(t)
	resp, err := http.Get(srv.URL + "/api/events?rack=r1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := events(resp.Body)
	first, err := next(r, 2*time.Second)
	if err != nil || !strings.Contains(first, `"version":"v2"`) || !strings.Contains(first, `"rack":"r1"`) {
		t.Fatalf("first event: %q %v", first, err)
	}
	// Nothing changes: nothing is sent (the clock is not part of the comparison).
	if ev, err := next(r, 300*time.Millisecond); err == nil {
		t.Errorf("an unchanged snapshot was sent again: %s", ev)
	}
	src.set("v2", "shipping")
	ev, err := next(r, 2*time.Second)
	if err != nil || !strings.Contains(ev, `"state":"shipping"`) {
		t.Fatalf("after the change: %q %v", ev, err)
	}
	// Close ends the stream.
	d.Close()
	if _, err := next(r, 2*time.Second); err != io.EOF {
		t.Errorf("the stream did not end on Close: %v", err)
	}
}
