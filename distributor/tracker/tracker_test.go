package tracker_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/jonboulle/clockwork"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/tracker"
)

var ih = [20]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}

type fixture struct {
	tr    *tracker.Tracker
	srv   *httptest.Server
	clock *clockwork.FakeClock
}

func newFixture(t *testing.T) *fixture {
	reg := distributor.StaticRegistry{}
	for _, h := range []distributor.Host{{Name: "a1", Rack: "r1", DC: "dc1"}, {Name: "a2", Rack: "r1", DC: "dc1"}, {Name: "b1", Rack: "r2", DC: "dc1"}, {Name: "c1", Rack: "r3", DC: "dc2"}} {
		reg[h.Name] = h
	}
	f := &fixture{clock: clockwork.NewFakeClock()}
	f.tr = &tracker.Tracker{Registry: reg, Secret: []byte("s"), Interval: 10 * time.Second, Clock: f.clock}
	f.srv = httptest.NewServer(f.tr.Handler())
	t.Cleanup(f.srv.Close)
	f.tr.AddOrigin(ih, netip.MustParseAddrPort("127.0.0.1:7000"))
	return f
}

type answer struct {
	Failure    string `bencode:"failure reason"`
	Interval   int    `bencode:"interval"`
	Complete   int    `bencode:"complete"`
	Incomplete int    `bencode:"incomplete"`
	Peers      string `bencode:"peers"`
}

func (f *fixture) announce(t *testing.T, host string, extra url.Values) answer {
	t.Helper()
	q := url.Values{"info_hash": {string(ih[:])}, "port": {"6881"}, "left": {"100"}, "compact": {"1"}}
	if host != "" {
		q.Set("host", host)
		q.Set("key", f.tr.Key(host))
	}
	for k, v := range extra {
		q[k] = v
	}
	return get(t, f.srv.URL+"/announce?"+q.Encode())
}

func get(t *testing.T, u string) answer {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a answer
	if err := bencode.Unmarshal(b, &a); err != nil {
		t.Fatalf("not bencode: %q: %v", b, err)
	}
	return a
}

func peers(a answer) []netip.AddrPort {
	var out []netip.AddrPort
	for i := 0; i+6 <= len(a.Peers); i += 6 {
		b := []byte(a.Peers[i : i+6])
		out = append(out, netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5])))
	}
	return out
}

func TestAnnounceRefusals(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name  string
		host  string
		extra url.Values
		want  string
	}{
		{"no host", "", nil, "lacks host and key"},
		{"wrong key", "a1", url.Values{"key": {"00"}}, "wrong key"},
		{"not enrolled", "zz", nil, `"zz" is not enrolled`},
		{"short info_hash", "a1", url.Values{"info_hash": {"abc"}}, "20-byte info_hash"},
		{"two info_hashes", "a1", url.Values{"info_hash": {string(ih[:]), string(ih[:])}}, "exactly one"},
		{"port zero", "a1", url.Values{"port": {"0"}}, "bad port"},
		{"port too big", "a1", url.Values{"port": {"70000"}}, "bad port"},
		{"port text", "a1", url.Values{"port": {"http"}}, "bad port"},
		{"negative left", "a1", url.Values{"left": {"-5"}}, "bad left"},
		{"unknown torrent", "a1", url.Values{"info_hash": {strings.Repeat("x", 20)}}, "unknown info_hash"},
	}
	for _, c := range cases {
		a := f.announce(t, c.host, c.extra)
		if !strings.Contains(a.Failure, c.want) {
			t.Errorf("%s: failure reason %q, want %q", c.name, a.Failure, c.want)
		}
	}
	if got := f.tr.Peers(ih); len(got) != 0 {
		t.Errorf("refused announces joined the swarm: %v", got)
	}
}

func TestAnnounceAndExpiry(t *testing.T) {
	f := newFixture(t)
	a := f.announce(t, "a1", nil)
	if a.Failure != "" || a.Interval != 10 {
		t.Fatalf("first announce: %+v", a)
	}
	if p := peers(a); len(p) != 1 || p[0].Port() != 7000 {
		t.Errorf("first announcer should get the origin only: %v", p)
	}
	f.announce(t, "b1", url.Values{"port": {"6882"}, "left": {"0"}})
	a = f.announce(t, "a2", url.Values{"port": {"6883"}})
	if got := peers(a); len(got) != 3 {
		t.Errorf("a2 got %v, want origin, a1 and b1", got)
	}
	if a.Complete != 2 || a.Incomplete != 2 {
		t.Errorf("complete %d incomplete %d, want 2 and 2 (origin and b1 are seeds)", a.Complete, a.Incomplete)
	}
	// Non-compact answers list dictionaries.
	resp, _ := http.Get(f.srv.URL + "/announce?" + url.Values{"info_hash": {string(ih[:])}, "port": {"6881"}, "left": {"1"}, "compact": {"0"},
		"host": {"c1"}, "key": {f.tr.Key("c1")}}.Encode())
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var nc struct {
		Peers []struct {
			IP   string `bencode:"ip"`
			Port int    `bencode:"port"`
		} `bencode:"peers"`
	}
	if err := bencode.Unmarshal(b, &nc); err != nil || len(nc.Peers) != 4 || nc.Peers[0].IP != "127.0.0.1" {
		t.Errorf("non-compact: %+v %v", nc, err)
	}

	f.announce(t, "b1", url.Values{"event": {"stopped"}})
	if len(f.tr.Peers(ih)) != 3 {
		t.Errorf("stopped peer still listed: %v", f.tr.Peers(ih))
	}
	f.clock.Advance(25 * time.Second)
	f.announce(t, "a1", nil)
	f.clock.Advance(10 * time.Second) // a2 and c1: 35s silent, more than 3 intervals
	if got := f.tr.Peers(ih); len(got) != 1 || got[0].Host.Name != "a1" {
		t.Errorf("after expiry: %v", got)
	}
}

func TestScrape(t *testing.T) {
	f := newFixture(t)
	f.announce(t, "a1", url.Values{"left": {"0"}, "event": {"completed"}})
	f.announce(t, "b1", nil)
	q := url.Values{"info_hash": {string(ih[:])}, "host": {"a1"}, "key": {f.tr.Key("a1")}}
	resp, _ := http.Get(f.srv.URL + "/scrape?" + q.Encode())
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var s struct {
		Files map[string]struct {
			Complete   int `bencode:"complete"`
			Incomplete int `bencode:"incomplete"`
			Downloaded int `bencode:"downloaded"`
		} `bencode:"files"`
	}
	if err := bencode.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	got := s.Files[string(ih[:])]
	if got.Complete != 2 || got.Incomplete != 1 || got.Downloaded != 1 {
		t.Errorf("scrape: %+v", got)
	}
	if a := get(t, f.srv.URL+"/scrape?info_hash=x"); a.Failure == "" {
		t.Error("scrape without a host key answered")
	}
}
