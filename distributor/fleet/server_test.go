package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/fleet"
)

type memStore struct {
	mu      sync.Mutex
	desired map[string]fleet.Desired
	saves   int
}

func (m *memStore) LoadDesired() (map[string]fleet.Desired, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]fleet.Desired{}
	for k, v := range m.desired {
		out[k] = v
	}
	return out, nil
}

func (m *memStore) SaveDesired(d map[string]fleet.Desired) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, v := range d {
		m.desired[k] = v
	}
	m.saves++
	return nil
}

func (m *memStore) Manifest(r string) (*distributor.Signed, error) {
	return &distributor.Signed{Manifest: []byte(`{"release":"` + r + `"}`), Signature: "x"}, nil
}

type publisher struct {
	mu  sync.Mutex
	got []string
}

func (p *publisher) Publish(_ context.Context, r string) (*distributor.Signed, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, r)
	return nil, nil
}

type fixture struct {
	t     *testing.T
	srv   *fleet.Server
	http  *httptest.Server
	store *memStore
	clock *clockwork.FakeClock
	logs  *observer.ObservedLogs
}

func newFixture(t *testing.T) *fixture {
	core, logs := observer.New(zap.InfoLevel)
	f := &fixture{t: t, store: &memStore{desired: map[string]fleet.Desired{}}, clock: clockwork.NewFakeClock(), logs: logs}
	f.srv = &fleet.Server{Store: f.store, Publisher: &publisher{}, Token: "fleet", AdminToken: "admin", StaleAfter: 10 * time.Second,
		Clock: f.clock, Log: zap.New(core), AnnounceURL: func(h string) string { return "http://x/announce?host=" + h }}
	if err := f.srv.Open(); err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(f.srv.Handler())
	t.Cleanup(f.http.Close)
	return f
}

func (f *fixture) do(method, path, token, key string, body any) (int, string) {
	f.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, f.http.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set(fleet.HeaderHostKey, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (f *fixture) enroll(host, instance string) string {
	f.t.Helper()
	code, body := f.do("POST", "/v1/agents/"+host+"/enroll", "fleet", "", fleet.EnrollRequest{Instance: instance, Rack: "r1", DC: "dc1"})
	if code != 200 {
		f.t.Fatalf("enroll %s: %d %s", host, code, body)
	}
	var r fleet.EnrollResponse
	json.Unmarshal([]byte(body), &r)
	if !strings.Contains(r.Announce, host) {
		f.t.Errorf("announce URL %q", r.Announce)
	}
	return r.HostKey
}

func TestTokenRequired(t *testing.T) {
	f := newFixture(t)
	for _, tok := range []string{"", "wrong", "admin"} {
		code, body := f.do("POST", "/v1/agents/h1/enroll", tok, "", fleet.EnrollRequest{Instance: "instance-1", Rack: "r", DC: "d"})
		if code != 401 || !strings.Contains(body, "fleet token") {
			t.Errorf("token %q: %d %s", tok, code, body)
		}
	}
	if code, _ := f.do("GET", "/v1/fleet/hosts", "fleet", "", nil); code != 401 {
		t.Errorf("admin route with the fleet token: %d", code)
	}
	if len(f.srv.Hosts()) != 0 {
		t.Error("refused requests enrolled a host")
	}
	if f.logs.FilterMessageSnippet("refused").Len() < 4 {
		t.Error("refusals were not logged")
	}
}

func TestHostKeyBindsTheHost(t *testing.T) {
	f := newFixture(t)
	k1 := f.enroll("h1", "instance-1")
	f.enroll("h2", "instance-2")
	if code, _ := f.do("POST", "/v1/agents/h1/status", "fleet", k1, fleet.StatusReport{Active: "r1"}); code != 204 {
		t.Fatalf("own status: %d", code)
	}
	code, body := f.do("POST", "/v1/agents/h2/status", "fleet", k1, fleet.StatusReport{Active: "evil"})
	if code != 403 || !strings.Contains(body, "does not belong to host h2") {
		t.Errorf("reporting for another host: %d %s", code, body)
	}
	if code, _ := f.do("GET", "/v1/agents/h2/desired", "fleet", k1, nil); code != 403 {
		t.Errorf("polling for another host: %d", code)
	}
	// A second agent claiming a live host's name is refused; once the host is stale
	// (the old agent is gone), a new instance may take over.
	if code, body := f.do("POST", "/v1/agents/h1/enroll", "fleet", "", fleet.EnrollRequest{Instance: "instance-9", Rack: "r", DC: "d"}); code != 409 {
		t.Errorf("second agent for a live host: %d %s", code, body)
	}
	for _, h := range f.srv.Hosts() {
		if h.Host.Name == "h2" && h.Active == "evil" {
			t.Error("the impostor's report was recorded")
		}
	}
	f.clock.Advance(11 * time.Second)
	if hs := f.srv.Hosts(); !hs[0].Stale {
		t.Errorf("host not marked stale: %+v", hs[0])
	}
	if _, ok := f.srv.Host("h1"); ok {
		t.Error("a stale host is still offered to the tracker")
	}
	f.enroll("h1", "instance-9")
	for _, bad := range []string{"../etc", "a b"} {
		if code, _ := f.do("POST", "/v1/agents/"+bad+"/enroll", "fleet", "", fleet.EnrollRequest{Instance: "instance-1", Rack: "r", DC: "d"}); code != 400 && code != 404 {
			t.Errorf("host name %q: %d", bad, code)
		}
	}
	if code, _ := f.do("POST", "/v1/agents/h3/enroll", "fleet", "", map[string]any{"instance": "instance-3", "rack": "r", "dc": "d", "surprise": 1}); code != 400 {
		t.Errorf("unknown field: %d", code)
	}
}

func TestLongPoll(t *testing.T) {
	f := newFixture(t)
	key := f.enroll("h1", "instance-1")
	// Nothing desired yet: an immediate answer with generation 0.
	code, body := f.do("GET", "/v1/agents/h1/desired?after=0", "fleet", key, nil)
	if code != 200 || !strings.Contains(body, `"generation":0`) {
		t.Fatalf("first poll: %d %s", code, body)
	}
	got := make(chan string)
	go func() {
		_, b := f.do("GET", "/v1/agents/h1/desired?after=0&wait=30s", "fleet", key, nil)
		got <- b
	}()
	f.clock.BlockUntilContext(context.Background(), 1) // the poll is waiting
	active := "r2"
	code, body = f.do("PUT", "/v1/fleet/desired", "admin", "", fleet.DesiredChange{Hosts: []string{"h1"}, Stage: []string{"r1"}, Active: &active})
	if code != 200 {
		t.Fatalf("set desired: %d %s", code, body)
	}
	select {
	case b := <-got:
		var d fleet.DesiredResponse
		json.Unmarshal([]byte(b), &d)
		if d.Generation != 1 || d.Active != "r2" || len(d.Stage) != 2 {
			t.Errorf("woken poll got %s", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long-poll was not woken by the change")
	}
	if f.store.desired["h1"].Generation != 1 {
		t.Errorf("desired state not persisted: %+v", f.store.desired)
	}
	// A poll that is up to date waits out its time and answers the same generation.
	go func() {
		_, b := f.do("GET", "/v1/agents/h1/desired?after=1&wait=30s", "fleet", key, nil)
		got <- b
	}()
	f.clock.BlockUntilContext(context.Background(), 1)
	f.clock.Advance(31 * time.Second)
	if b := <-got; !strings.Contains(b, `"generation":1`) {
		t.Errorf("timed-out poll: %s", b)
	}
	if code, _ := f.do("GET", "/v1/agents/h1/desired?wait=forever", "fleet", key, nil); code != 400 {
		t.Errorf("bad wait: %d", code)
	}
	// A restart rebuilds nothing but the desired state: agents must enrol again.
	f2 := &fleet.Server{Store: f.store, Publisher: &publisher{}, Token: "fleet", AdminToken: "admin"}
	f2.Open()
	if d := f2.Desired("h1"); d.Generation != 1 || d.Active != "r2" {
		t.Errorf("desired state after a restart: %+v", d)
	}
}
