package fetcher_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/disttest"
	"github.com/shipbot/shipbot/distributor/fetcher"
)

func openFetcher(t testing.TB, dir string, capRate int64) *fetcher.Fetcher {
	t.Helper()
	f := &fetcher.Fetcher{Dir: dir, ListenAddr: "127.0.0.1:0", ProgressEvery: 100 * time.Millisecond,
		DownloadRate: capRate, UploadRate: capRate,
		Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
	if err := f.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSwarm: one origin and 12 fetchers on 3 racks all end with verified copies, and
// the tracker's handouts follow the locality policy.
func TestSwarm(t *testing.T) {
	art := disttest.Artifact(t, t.TempDir(), "app.tar.gz", 24<<20+12345)
	o := disttest.StartOrigin(t, art, "r1", nil)
	o.Tracker.Handout = 4 // small, so the policy has choices to make
	// Caps make it a swarm rather than 12 downloads from an unlimited origin: the
	// origin alone would need 12*24 MiB / 8 MiB/s = 36 s.
	o.Seeder.SetUploadRate(8 << 20)
	racks := []distributor.Host{{Rack: "r1", DC: "dc1"}, {Rack: "r2", DC: "dc1"}, {Rack: "r3", DC: "dc2"}}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	var mu sync.Mutex
	final := map[string]fetcher.Progress{}
	for i := 0; i < 12; i++ {
		h := racks[i%3]
		h.Name = fmt.Sprintf("host%02d", i)
		f := openFetcher(t, t.TempDir(), 4<<20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, err := f.Fetch(ctx, o.Torrent.Manifest, fetcher.Source{Announce: o.AnnounceURL(h), Webseeds: []string{o.WebseedURL("r1")}},
				func(p fetcher.Progress) {
					if p.Done {
						mu.Lock()
						final[h.Name] = p
						mu.Unlock()
					}
				})
			if err != nil {
				errs <- fmt.Errorf("%s: %w", h.Name, err)
				return
			}
			if !f.Verified(o.Torrent.Manifest) || filepath.Base(path) != "app.tar.gz" {
				errs <- fmt.Errorf("%s: not verified at %s", h.Name, path)
			}
			got, _ := os.ReadFile(path)
			want, _ := os.ReadFile(art)
			if string(got) != string(want) {
				errs <- fmt.Errorf("%s: bytes differ", h.Name)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(final) != 12 {
		t.Errorf("%d fetchers reported done, want 12", len(final))
	}
	var fromPeers, fromWeb int64
	for _, p := range final {
		fromPeers += p.FromPeers
		fromWeb += p.FromWebseed
	}
	up := o.Seeder.UploadedBytes()
	t.Logf("bytes received %d (BitTorrent %d, webseed %d); the origin uploaded %d over BitTorrent", fromPeers+fromWeb, fromPeers, fromWeb, up)
	if total := fromPeers + fromWeb; float64(up+fromWeb) > 0.6*float64(total) {
		t.Errorf("the origin served %d of %d bytes: hosts are not sharing", up+fromWeb, total)
	}

	// The policy, as the tracker applied it.
	var same, other, handouts int
	crossPerRack := map[string]int{}
	for _, h := range o.Handouts() {
		rackPeers := 0
		for _, c := range h.Candidates {
			if !c.Origin && c.Host.Rack == h.Host.Rack {
				rackPeers++
			}
		}
		if rackPeers < 2 {
			continue // nothing to prefer yet; the policy fills from other racks
		}
		hasOrigin := false
		for _, p := range h.Peers {
			switch {
			case p.Origin:
				hasOrigin = true
			case p.Host.Rack == h.Host.Rack:
				same++
			default:
				other++
				crossPerRack[h.Host.Rack]++
			}
		}
		if !hasOrigin {
			t.Errorf("handout to %s has no origin: %+v", h.Host.Name, h.Peers)
		}
		handouts++
	}
	share := float64(same) / float64(same+other)
	t.Logf("%d handouts with a choice: %d same-rack, %d cross-rack peers (same-rack share %.0f%%)", handouts, same, other, 100*share)
	if share < 0.5 {
		t.Errorf("same-rack share %.2f, want at least half of the handed-out peers", share)
	}
	for _, r := range racks {
		if crossPerRack[r.Rack] == 0 {
			t.Errorf("rack %s never got a cross-rack peer", r.Rack)
		}
	}
}
