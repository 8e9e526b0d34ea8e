// Package tracker is shipbot's BitTorrent HTTP tracker (BEP 3 announce and scrape,
// BEP 23 compact peers). It serves enrolled hosts only and hands out peers by a
// distributor.PeerPolicy, so most bytes stay inside a rack.
//
// A host announces to /announce?host=NAME&key=KEY, where KEY is the tracker's HMAC
// of the host name (see Tracker.AnnounceURL): the key proves which enrolled host is
// asking, and the registry says where that host is.
package tracker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/distributor"
)

// Handout is one answer the tracker gave, for tests and the benchmark.
type Handout struct {
	InfoHash   string
	Host       distributor.Host
	Peers      []distributor.Peer // what the policy chose
	Candidates []distributor.Peer // what it chose from
}

// Tracker is the HTTP tracker. Set the fields, then serve Handler().
type Tracker struct {
	Registry distributor.Registry
	Policy   distributor.PeerPolicy
	// Secret keys the per-host announce keys.
	Secret []byte
	// Interval is the announce interval given to clients; peers that miss three expire.
	Interval time.Duration
	// Handout is the most peers one answer holds (a client's numwant can only lower it).
	Handout int
	Clock   clockwork.Clock
	Log     *zap.Logger
	// OnHandout, if set, sees every answer.
	OnHandout func(Handout)

	mu      sync.Mutex
	swarms  map[[20]byte]map[string]*entry // infohash -> host -> entry
	origins map[[20]byte]netip.AddrPort
	tracked map[[20]byte]bool // swarms kept even while empty
	rnd     *rand.Rand
}

type entry struct {
	peer distributor.Peer
	seen time.Time
	done bool // completed at least once (scrape's "downloaded")
}

// Defaults.
const (
	DefaultInterval = 30 * time.Second
	DefaultHandout  = 10
)

func (t *Tracker) init() {
	if t.swarms == nil {
		t.swarms = map[[20]byte]map[string]*entry{}
		t.origins = map[[20]byte]netip.AddrPort{}
		t.tracked = map[[20]byte]bool{}
		t.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		if t.Clock == nil {
			t.Clock = clockwork.NewRealClock()
		}
		if t.Log == nil {
			t.Log = zap.NewNop()
		}
		if t.Policy == nil {
			t.Policy = distributor.LocalityPolicy{}
		}
		if t.Interval <= 0 {
			t.Interval = DefaultInterval
		}
		if t.Handout <= 0 {
			t.Handout = DefaultHandout
		}
	}
}

// Key is the announce key of a host.
func (t *Tracker) Key(host string) string {
	m := hmac.New(sha256.New, t.Secret)
	m.Write([]byte("shipbot tracker host\n" + host))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// AnnounceURL is the announce URL a host must use, given the tracker's base URL
// (e.g. http://shipbot:8080/announce).
func (t *Tracker) AnnounceURL(base, host string) string {
	return base + "?" + url.Values{"host": {host}, "key": {t.Key(host)}}.Encode()
}

// AddOrigin makes addr (the origin seeder) part of the swarm of infohash: every
// handout includes it.
func (t *Tracker) AddOrigin(infohash [20]byte, addr netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.init()
	t.origins[infohash] = addr
}

// Track accepts announces for infohash even without an origin (a swarm seeded by
// hosts only). Announces for torrents the tracker does not know are refused.
func (t *Tracker) Track(infohash [20]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.init()
	if t.swarms[infohash] == nil {
		t.swarms[infohash] = map[string]*entry{}
	}
	t.tracked[infohash] = true
}

// RemoveOrigin forgets a swarm's origin.
func (t *Tracker) RemoveOrigin(infohash [20]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.init()
	delete(t.origins, infohash)
}

// Handler serves /announce and /scrape.
func (t *Tracker) Handler() http.Handler {
	t.mu.Lock()
	t.init()
	t.mu.Unlock()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /announce", t.announce)
	mux.HandleFunc("GET /scrape", t.scrape)
	return mux
}

// failure answers with a bencoded failure reason, as BEP 3 clients expect.
func failure(w http.ResponseWriter, reason string) {
	w.Header().Set("Content-Type", "text/plain")
	b, _ := bencode.Marshal(map[string]string{"failure reason": reason})
	w.Write(b)
}

// authHost checks host and key and returns the enrolled host.
func (t *Tracker) authHost(q url.Values) (distributor.Host, error) {
	name, key := q.Get("host"), q.Get("key")
	if name == "" || key == "" {
		return distributor.Host{}, errors.New("announce URL lacks host and key: use the announce URL shipbot gave this host")
	}
	if !hmac.Equal([]byte(key), []byte(t.Key(name))) {
		return distributor.Host{}, fmt.Errorf("wrong key for host %q", name)
	}
	h, ok := t.Registry.Host(name)
	if !ok {
		return distributor.Host{}, fmt.Errorf("host %q is not enrolled", name)
	}
	return h, nil
}

func infoHashes(q url.Values) ([][20]byte, error) {
	var out [][20]byte
	for _, s := range q["info_hash"] {
		if len(s) != 20 {
			return nil, fmt.Errorf("info_hash must be 20 bytes, got %d", len(s))
		}
		out = append(out, [20]byte([]byte(s)))
	}
	return out, nil
}

func (t *Tracker) announce(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	host, err := t.authHost(q)
	if err != nil {
		t.Log.Warn("tracker: refused announce", zap.String("remote", r.RemoteAddr), zap.Error(err))
		failure(w, err.Error())
		return
	}
	ihs, err := infoHashes(q)
	if err != nil || len(ihs) != 1 {
		failure(w, "announce needs exactly one 20-byte info_hash")
		return
	}
	ih := ihs[0]
	port, err := strconv.ParseUint(q.Get("port"), 10, 16)
	if err != nil || port == 0 {
		failure(w, fmt.Sprintf("bad port %q: want 1-65535", q.Get("port")))
		return
	}
	left, err := strconv.ParseInt(q.Get("left"), 10, 64)
	if q.Get("left") != "" && (err != nil || left < 0) {
		failure(w, fmt.Sprintf("bad left %q", q.Get("left")))
		return
	}
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		failure(w, "cannot tell your address")
		return
	}
	addr := netip.AddrPortFrom(remote.Addr().Unmap(), uint16(port))
	numwant := t.Handout
	if n, err := strconv.Atoi(q.Get("numwant")); err == nil && n >= 0 && n < numwant {
		numwant = n
	}
	event := q.Get("event")
	now := t.Clock.Now()

	t.mu.Lock()
	t.expire(ih, now)
	sw := t.swarms[ih]
	_, origin := t.origins[ih]
	if sw == nil && !origin {
		t.mu.Unlock()
		failure(w, "unknown info_hash: shipbot is not pushing this torrent")
		return
	}
	if sw == nil {
		sw = map[string]*entry{}
		t.swarms[ih] = sw
	}
	if event == "stopped" {
		delete(sw, host.Name)
		t.mu.Unlock()
		t.writePeers(w, q, nil, 0, 0)
		return
	}
	e := sw[host.Name]
	if e == nil {
		e = &entry{}
		sw[host.Name] = e
	}
	e.peer = distributor.Peer{Host: host, Addr: addr, Complete: left == 0 && q.Get("left") != ""}
	e.seen = now
	e.done = e.done || e.peer.Complete || event == "completed"
	var cands []distributor.Peer
	for name, o := range sw {
		if name != host.Name {
			cands = append(cands, o.peer)
		}
	}
	if oa, ok := t.origins[ih]; ok {
		cands = append(cands, distributor.Peer{Host: distributor.Host{Name: distributor.OriginHost}, Addr: oa, Complete: true, Origin: true})
	}
	// Sort first so the policy's randomness is the only source of order.
	sort.Slice(cands, func(i, j int) bool { return cands[i].Host.Name < cands[j].Host.Name })
	var hook []distributor.Peer
	if t.OnHandout != nil {
		hook = append(hook, cands...) // the policy may reorder cands
	}
	peers := t.Policy.Choose(host, cands, numwant, t.rnd)
	complete, incomplete := counts(sw, origin)
	t.mu.Unlock()

	if t.OnHandout != nil {
		t.OnHandout(Handout{InfoHash: hex.EncodeToString(ih[:]), Host: host, Peers: peers, Candidates: hook})
	}
	t.writePeers(w, q, peers, complete, incomplete)
}

func counts(sw map[string]*entry, origin bool) (complete, incomplete int) {
	for _, e := range sw {
		if e.peer.Complete {
			complete++
		} else {
			incomplete++
		}
	}
	if origin {
		complete++
	}
	return
}

func (t *Tracker) writePeers(w http.ResponseWriter, q url.Values, peers []distributor.Peer, complete, incomplete int) {
	resp := map[string]any{
		"interval":     int(t.Interval / time.Second),
		"min interval": int(t.Interval / time.Second / 2),
		"complete":     complete,
		"incomplete":   incomplete,
	}
	if q.Get("compact") == "0" {
		var list []map[string]any
		for _, p := range peers {
			list = append(list, map[string]any{"ip": p.Addr.Addr().String(), "port": int(p.Addr.Port())})
		}
		if list == nil {
			list = []map[string]any{}
		}
		resp["peers"] = list
	} else {
		b := make([]byte, 0, 6*len(peers))
		for _, p := range peers {
			if !p.Addr.Addr().Is4() {
				continue
			}
			a := p.Addr.Addr().As4()
			b = append(b, a[:]...)
			b = append(b, byte(p.Addr.Port()>>8), byte(p.Addr.Port()))
		}
		resp["peers"] = string(b)
	}
	out, err := bencode.Marshal(resp)
	if err != nil {
		failure(w, "internal error")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write(out)
}

func (t *Tracker) scrape(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if _, err := t.authHost(q); err != nil {
		failure(w, err.Error())
		return
	}
	ihs, err := infoHashes(q)
	if err != nil {
		failure(w, err.Error())
		return
	}
	files := map[string]map[string]int{}
	t.mu.Lock()
	for _, ih := range ihs {
		t.expire(ih, t.Clock.Now())
		sw := t.swarms[ih]
		_, origin := t.origins[ih]
		if sw == nil && !origin {
			continue
		}
		c, i := counts(sw, origin)
		d := 0
		for _, e := range sw {
			if e.done {
				d++
			}
		}
		files[string(ih[:])] = map[string]int{"complete": c, "incomplete": i, "downloaded": d}
	}
	t.mu.Unlock()
	out, _ := bencode.Marshal(map[string]any{"files": files})
	w.Header().Set("Content-Type", "text/plain")
	w.Write(out)
}

// expire drops a swarm's peers that have missed three announce intervals, and the
// swarm itself once it is empty and has no origin. Called with mu held.
func (t *Tracker) expire(ih [20]byte, now time.Time) {
	sw := t.swarms[ih]
	for name, e := range sw {
		if now.Sub(e.seen) > 3*t.Interval {
			delete(sw, name)
		}
	}
	if _, ok := t.origins[ih]; !ok && !t.tracked[ih] && sw != nil && len(sw) == 0 {
		delete(t.swarms, ih)
	}
}

// Peers returns a snapshot of a swarm, for status pages and tests.
func (t *Tracker) Peers(infohash [20]byte) []distributor.Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.init()
	t.expire(infohash, t.Clock.Now())
	var out []distributor.Peer
	for _, e := range t.swarms[infohash] {
		out = append(out, e.peer)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host.Name < out[j].Host.Name })
	return out
}
