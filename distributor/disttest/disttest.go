// Package disttest runs a real origin for distributor tests: a seeder with its
// webseed and a tracker behind one loopback HTTP server.
package disttest

import (
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/seeder"
	"github.com/shipbot/shipbot/distributor/tracker"
)

// Origin is a running seeder + webseed + tracker.
type Origin struct {
	Seeder   *seeder.Seeder
	Tracker  *tracker.Tracker
	Registry *Registry
	Server   *httptest.Server
	Torrent  *seeder.Torrent

	mu       sync.Mutex
	handouts []tracker.Handout
}

// Registry is a mutable in-memory registry.
type Registry struct {
	mu    sync.Mutex
	hosts map[string]distributor.Host
}

// Add enrols a host.
func (r *Registry) Add(h distributor.Host) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts[h.Name] = h
}

// Host implements distributor.Registry.
func (r *Registry) Host(name string) (distributor.Host, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := r.hosts[name]
	return h, ok
}

// Artifact writes size random bytes to dir/name and returns the path.
func Artifact(t testing.TB, dir, name string, size int) string {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// StartOrigin makes a torrent of artifact for release, seeds it, and serves the
// tracker (/announce, /scrape) and webseed (/webseed/) on a loopback server.
// policy nil means the locality policy.
func StartOrigin(t testing.TB, artifact, release string, policy distributor.PeerPolicy) *Origin {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	o := &Origin{Registry: &Registry{hosts: map[string]distributor.Host{}}}
	o.Tracker = &tracker.Tracker{Registry: o.Registry, Policy: policy, Secret: []byte("test secret"),
		Interval: 2 * time.Second, Log: log.Named("tracker"),
		OnHandout: func(h tracker.Handout) {
			o.mu.Lock()
			o.handouts = append(o.handouts, h)
			o.mu.Unlock()
		}}
	mux := http.NewServeMux()
	th := o.Tracker.Handler()
	mux.Handle("/announce", th)
	mux.Handle("/scrape", th)
	o.Seeder = &seeder.Seeder{ListenAddr: "127.0.0.1:0", Log: nil}
	if err := o.Seeder.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Seeder.Close() })
	mux.Handle("/webseed/", http.StripPrefix("/webseed", o.Seeder.WebseedHandler()))
	o.Server = httptest.NewServer(mux)
	t.Cleanup(o.Server.Close)

	tor, err := seeder.MakeTorrent(artifact, release, release, o.Server.URL+"/announce", o.WebseedURL(release), "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	o.Torrent = tor
	if err := o.Seeder.Seed(tor); err != nil {
		t.Fatal(err)
	}
	o.Tracker.AddOrigin(tor.MetaInfo.HashInfoBytes(), o.Seeder.Addr())
	return o
}

// WebseedURL is the url-list entry of a release.
func (o *Origin) WebseedURL(release string) string { return o.Server.URL + "/webseed/" + release + "/" }

// AnnounceURL enrols host (if not yet) and returns its announce URL.
func (o *Origin) AnnounceURL(h distributor.Host) string {
	o.Registry.Add(h)
	return o.Tracker.AnnounceURL(o.Server.URL+"/announce", h.Name)
}

// Handouts returns every answer the tracker gave so far.
func (o *Origin) Handouts() []tracker.Handout {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]tracker.Handout(nil), o.handouts...)
}

// FreePort returns a loopback TCP port that is free now and below the kernel's
// ephemeral range, so no ":0" listener or outgoing connection (of this test or
// of another package's test running at the same time) takes it before the
// caller binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &low)
	}
	if low > 12000 {
		for i := 0; i < 200; i++ {
			port := low - 10000 + mrand.IntN(10000)
			if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				l.Close()
				return port
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
