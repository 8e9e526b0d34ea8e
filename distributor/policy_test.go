package distributor_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/shipbot/shipbot/distributor"
)

// fleet makes hosts h0..h{n-1} spread over racks r0..r{racks-1}, two racks per dc.
func fleet(n, racks int) []distributor.Peer {
	var out []distributor.Peer
	for i := 0; i < n; i++ {
		r := i % racks
		out = append(out, distributor.Peer{
			Host: distributor.Host{Name: fmt.Sprintf("h%d", i), Rack: fmt.Sprintf("r%d", r), DC: fmt.Sprintf("dc%d", r/2)},
			Addr: netip.MustParseAddrPort(fmt.Sprintf("10.0.%d.%d:6881", r, i)),
		})
	}
	return out
}

func without(ps []distributor.Peer, name string) []distributor.Peer {
	var out []distributor.Peer
	for _, p := range ps {
		if p.Host.Name != name {
			out = append(out, p)
		}
	}
	return out
}

func TestLocalityPolicy(t *testing.T) {
	origin := distributor.Peer{Host: distributor.Host{Name: distributor.OriginHost}, Origin: true, Complete: true,
		Addr: netip.MustParseAddrPort("10.9.9.9:6881")}
	rnd := rand.New(rand.NewPCG(1, 2))
	hosts := fleet(96, 8) // 12 per rack, 4 dcs
	for _, n := range []int{4, 10, 30} {
		for _, self := range hosts[:16] {
			cands := append(without(hosts, self.Host.Name), origin)
			got := distributor.LocalityPolicy{}.Choose(self.Host, append([]distributor.Peer(nil), cands...), n, rnd)
			if len(got) != n {
				t.Fatalf("n=%d: handed out %d", n, len(got))
			}
			var hasOrigin bool
			var rack, dc, remote int
			seen := map[string]bool{}
			for _, p := range got {
				if seen[p.Host.Name] {
					t.Fatalf("n=%d: %s handed out twice", n, p.Host.Name)
				}
				seen[p.Host.Name] = true
				switch {
				case p.Origin:
					hasOrigin = true
				case p.Host.Rack == self.Host.Rack:
					rack++
				case p.Host.DC == self.Host.DC:
					dc++
				default:
					remote++
				}
			}
			if !hasOrigin {
				t.Errorf("n=%d: no origin", n)
			}
			if dc+remote < max(1, n/4) {
				t.Errorf("n=%d: only %d cross-rack peers", n, dc+remote)
			}
			if rack < min(11, (n-1)/2) { // 11 others share the rack
				t.Errorf("n=%d: only %d same-rack peers of %d", n, rack, n)
			}
			if n >= 10 && (dc == 0 || remote == 0) {
				t.Errorf("n=%d: same-dc %d, remote %d: want some of each", n, dc, remote)
			}
		}
	}
}

// Seeds come first inside a group, and a rack of empty peers is never the only
// group offered (kraken issue 244).
func TestLocalityPolicyPrefersSeedsAndMixesGroups(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	hosts := fleet(40, 4)
	self := hosts[0].Host
	for i := range hosts {
		if hosts[i].Host.Rack != self.Rack && i%3 == 0 {
			hosts[i].Complete = true
		}
	}
	got := distributor.LocalityPolicy{}.Choose(self, without(hosts, self.Name), 8, rnd)
	var cross []distributor.Peer
	for _, p := range got {
		if p.Host.Rack != self.Rack {
			cross = append(cross, p)
		}
	}
	if len(cross) == 0 {
		t.Fatal("no cross-rack peers")
	}
	if !cross[0].Complete {
		t.Errorf("cross-rack peers do not start with a seed: %+v", cross)
	}
	// A rack with nobody else in it gets other racks only, up to n.
	lonely := distributor.Host{Name: "x", Rack: "alone", DC: "dc9"}
	if got := (distributor.LocalityPolicy{}).Choose(lonely, hosts, 8, rnd); len(got) != 8 {
		t.Errorf("lonely host got %d peers", len(got))
	}
	if got := (distributor.LocalityPolicy{}).Choose(self, nil, 8, rnd); len(got) != 0 {
		t.Errorf("no candidates: %v", got)
	}
}

func TestRandomPolicy(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	hosts := fleet(20, 4)
	got := distributor.RandomPolicy{}.Choose(hosts[0].Host, without(hosts, "h0"), 7, rnd)
	if len(got) != 7 {
		t.Errorf("got %d", len(got))
	}
}

func TestPieceLength(t *testing.T) {
	for size, want := range map[int64]int64{1: 256 << 10, 64 << 20: 256 << 10, 1 << 30: 1 << 20, 1536 << 20: 1 << 20, 100 << 30: 16 << 20} {
		if got := distributor.PieceLength(size); got != want {
			t.Errorf("PieceLength(%d) = %d, want %d", size, got, want)
		}
	}
}
