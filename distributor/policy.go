package distributor

import (
	"math/rand/v2"
	"net/netip"
)

// Peer is one member of a swarm as the tracker sees it.
type Peer struct {
	Host     Host
	Addr     netip.AddrPort // where it accepts BitTorrent connections
	Complete bool           // has the whole artifact (a seed)
	Origin   bool           // shipbot's own seeder
}

// PeerPolicy chooses which peers the tracker hands to an announcing host. It is the
// tracker's whole peer-selection logic, kept small so it can be swapped and tested.
type PeerPolicy interface {
	// Choose returns at most n of candidates for self. candidates never holds self.
	Choose(self Host, candidates []Peer, n int, rnd *rand.Rand) []Peer
}

// LocalityPolicy prefers peers close to the announcer without ever filtering by
// topology: a pure locality filter starves whole racks when their members all start
// empty (uber/kraken issue 244). Each handout holds:
//
//   - the origin, always (it is the fallback when no peer has a piece);
//   - at least Remote peers from other racks (more when the rack has too few peers),
//     so every rack keeps a path to data it does not have yet; by default a quarter
//     of the handout, and at least one;
//   - up to SameDC peers from other racks of the same dc;
//   - the rest from the announcer's own rack.
//
// Inside each group, complete peers (seeds) come first, then the rest in random order.
// Any room left over is filled from whatever candidates remain.
type LocalityPolicy struct {
	Remote int // peers from other racks in every handout; default max(1, n/4)
	SameDC int // cap on same-dc, other-rack peers; default n/4
}

// Choose implements PeerPolicy.
func (p LocalityPolicy) Choose(self Host, candidates []Peer, n int, rnd *rand.Rand) []Peer {
	if n <= 0 || len(candidates) == 0 {
		return nil
	}
	remoteMin := p.Remote
	if remoteMin <= 0 {
		remoteMin = max(1, n/4)
	}
	sameDCMax := p.SameDC
	if sameDCMax <= 0 {
		sameDCMax = max(1, n/4)
	}
	var origin, rack, dc, remote []Peer
	for _, c := range candidates {
		switch {
		case c.Origin:
			origin = append(origin, c)
		case c.Host.Rack == self.Rack && c.Host.DC == self.DC:
			rack = append(rack, c)
		case c.Host.DC == self.DC:
			dc = append(dc, c)
		default:
			remote = append(remote, c)
		}
	}
	for _, g := range [][]Peer{origin, rack, dc, remote} {
		seedsFirst(g, rnd)
	}
	// Other racks, near (same dc) before far, form the cross-rack pool.
	cross := append(append([]Peer{}, dc...), remote...)

	out := make([]Peer, 0, n)
	take := func(g []Peer, k int) []Peer {
		k = min(k, len(g), n-len(out))
		out = append(out, g[:k]...)
		return g[k:]
	}
	origin = take(origin, 1)
	// Reserve the cross-rack share first so the own rack can never crowd it out.
	crossShare := min(len(cross), max(remoteMin, n-len(out)-len(rack)))
	var crossPicked []Peer
	{
		// Mix same-dc and remote: far peers get at least a third of the share.
		far := min(len(remote), max(1, crossShare/3))
		near := min(len(dc), sameDCMax, crossShare-far)
		far = min(len(remote), crossShare-near)
		crossPicked = append(crossPicked, dc[:near]...)
		crossPicked = append(crossPicked, remote[:far]...)
		dc, remote = dc[near:], remote[far:]
	}
	rack = take(rack, n-len(out)-len(crossPicked))
	take(crossPicked, len(crossPicked))
	// Fill what is left: own rack, then same dc, then remote, then more origins.
	for _, g := range [][]Peer{rack, dc, remote, origin} {
		take(g, n-len(out))
	}
	return out
}

// seedsFirst shuffles g, then moves complete peers to the front.
func seedsFirst(g []Peer, rnd *rand.Rand) {
	rnd.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
	k := 0
	for i := range g {
		if g[i].Complete {
			g[i], g[k] = g[k], g[i]
			k++
		}
	}
}

// RandomPolicy hands out a uniform random sample, with no regard to topology. It is
// what a stock tracker does, and the benchmark's baseline.
type RandomPolicy struct{}

// Choose implements PeerPolicy.
func (RandomPolicy) Choose(_ Host, candidates []Peer, n int, rnd *rand.Rand) []Peer {
	g := append([]Peer(nil), candidates...)
	rnd.Shuffle(len(g), func(i, j int) { g[i], g[j] = g[j], g[i] })
	return g[:min(n, len(g))]
}
