package fleet

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/distributor"
)

// Store persists desired state and signed manifests.
type Store interface {
	LoadDesired() (map[string]Desired, error)
	SaveDesired(map[string]Desired) error
	Manifest(release string) (*distributor.Signed, error)
}

// Publisher makes a release ready to push (manifest signed, seeding) and returns its
// signed manifest. It must be idempotent.
type Publisher interface {
	Publish(ctx context.Context, release string) (*distributor.Signed, error)
}

// Server is the coordinator's fleet API and registry.
type Server struct {
	Store     Store
	Publisher Publisher
	// Token authenticates agents (the fleet's bearer token).
	Token string
	// AdminToken authenticates the desired-state and registry routes.
	AdminToken string
	// StaleAfter marks hosts that stopped reporting; default 30s.
	StaleAfter time.Duration
	// ReportEvery is the heartbeat agents are asked for; default 5s.
	ReportEvery time.Duration
	// AnnounceURL and WebseedBase say how a host reaches the tracker and webseed.
	AnnounceURL func(host string) string
	WebseedBase string
	Clock       clockwork.Clock
	Log         *zap.Logger
	// OnReport, if set, is called after every status report (the rollout engine's
	// and the dashboard's feed).
	OnReport func(HostState)

	mu      sync.Mutex
	secret  []byte
	hosts   map[string]*HostState
	desired map[string]Desired
	gen     uint64
	notify  map[string]chan struct{}
	closing chan struct{}
	// answers caches encoded desired-state answers: most hosts share one desired
	// state, and 10k agents asking at once should not mean 10k encodings.
	answers map[string][]byte
}

// MaxWait bounds a long-poll.
const MaxWait = 60 * time.Second

// Open loads the desired state.
func (s *Server) Open() error {
	if s.Clock == nil {
		s.Clock = clockwork.NewRealClock()
	}
	if s.Log == nil {
		s.Log = zap.NewNop()
	}
	if s.StaleAfter <= 0 {
		s.StaleAfter = 30 * time.Second
	}
	if s.ReportEvery <= 0 {
		s.ReportEvery = 5 * time.Second
	}
	s.secret = make([]byte, 32)
	if _, err := rand.Read(s.secret); err != nil {
		return err
	}
	d, err := s.Store.LoadDesired()
	if err != nil {
		return fmt.Errorf("fleet: load desired state: %w", err)
	}
	s.desired, s.hosts, s.notify = d, map[string]*HostState{}, map[string]chan struct{}{}
	s.closing = make(chan struct{})
	s.answers = map[string][]byte{}
	for _, x := range d {
		s.gen = max(s.gen, x.Generation)
	}
	return nil
}

// Close ends every waiting long-poll (agents poll again, elsewhere or later), so an
// HTTP shutdown does not wait for them.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
}

func (s *Server) hostKey(host, instance string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(host + "\n" + instance))
	return hex.EncodeToString(m.Sum(nil))
}

// Host implements distributor.Registry for the tracker: enrolled, live hosts only.
func (s *Server) Host(name string) (distributor.Host, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.hosts[name]
	if !ok || s.Clock.Since(h.LastSeen) > s.StaleAfter {
		return distributor.Host{}, false
	}
	return h.Host, true
}

// Hosts returns a snapshot of the registry, by name.
func (s *Server) Hosts() []HostState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]HostState, 0, len(s.hosts))
	for _, h := range s.hosts {
		out = append(out, s.snapshot(h))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host.Name < out[j].Host.Name })
	return out
}

// snapshot copies h with Stale computed. Called with mu held.
func (s *Server) snapshot(h *HostState) HostState {
	c := *h
	c.Stale = s.Clock.Since(h.LastSeen) > s.StaleAfter
	c.Staged = make(map[string]StageStatus, len(h.Staged))
	for k, v := range h.Staged {
		c.Staged[k] = v
	}
	c.Desired = s.desired[h.Host.Name]
	return c
}

// AllDesired returns every host's desired state.
func (s *Server) AllDesired() map[string]Desired {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Desired, len(s.desired))
	for h, d := range s.desired {
		out[h] = d
	}
	return out
}

// Desired returns a host's desired state.
func (s *Server) Desired(host string) Desired {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desired[host]
}

// SetDesired changes the desired state of hosts (nil: every enrolled host) with fn,
// publishes every release that is to be staged, persists the change in one
// transaction, and only then wakes the hosts' long-polls.
func (s *Server) SetDesired(ctx context.Context, hosts []string, fn func(host string, d *Desired)) error {
	s.mu.Lock()
	if hosts == nil {
		for h := range s.hosts {
			hosts = append(hosts, h)
		}
	}
	next := map[string]Desired{}
	for _, h := range hosts {
		old := s.desired[h]
		d := old
		d.Stage = append([]string(nil), d.Stage...)
		fn(h, &d)
		if d.Active != old.Active || strings.Join(d.Stage, ",") != strings.Join(old.Stage, ",") {
			next[h] = d // hosts whose state does not change are not woken
		}
	}
	s.mu.Unlock()
	if len(next) == 0 {
		return nil
	}

	need := map[string]bool{}
	for _, d := range next {
		for _, r := range d.Stage {
			need[r] = true
		}
		if d.Active != "" {
			need[d.Active] = true
		}
	}
	for r := range need {
		if _, err := s.Publisher.Publish(ctx, r); err != nil {
			return fmt.Errorf("publish %s: %w", r, err)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	for h, d := range next {
		d.Generation = s.gen
		next[h] = d
	}
	if err := s.Store.SaveDesired(next); err != nil {
		s.gen--
		return fmt.Errorf("save desired state: %w", err)
	}
	s.answers = map[string][]byte{}
	for h, d := range next {
		s.desired[h] = d
		if ch := s.notify[h]; ch != nil {
			close(ch)
			delete(s.notify, h)
		}
	}
	return nil
}

// Handler serves the agent routes and the admin routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/agents/{host}/enroll", s.agentAuth(false, s.enroll))
	mux.HandleFunc("GET /v1/agents/{host}/desired", s.agentAuth(true, s.desiredPoll))
	mux.HandleFunc("POST /v1/agents/{host}/status", s.agentAuth(true, s.status))
	mux.HandleFunc("GET /v1/fleet/hosts", s.adminAuth(s.listHosts))
	mux.HandleFunc("PUT /v1/fleet/desired", s.adminAuth(s.putDesired))
	return mux
}

type apiError struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, apiError{fmt.Sprintf(format, a...)})
}

func bearerOK(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func (s *Server) agentAuth(needKey bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		host := r.PathValue("host")
		if !bearerOK(r, s.Token) {
			s.Log.Warn("fleet: refused a request without a valid fleet token", zap.String("host", host),
				zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
			fail(w, http.StatusUnauthorized, "missing or wrong fleet token (SHIPBOT_FLEET_TOKEN)")
			return
		}
		if err := distributor.ValidHostName(host); err != nil {
			fail(w, http.StatusBadRequest, "%v", err)
			return
		}
		if needKey {
			s.mu.Lock()
			st := s.hosts[host]
			s.mu.Unlock()
			if st == nil {
				fail(w, http.StatusNotFound, "host %s is not enrolled; enroll first", host)
				return
			}
			if !hmac.Equal([]byte(r.Header.Get(HeaderHostKey)), []byte(s.hostKey(host, st.Instance))) {
				s.Log.Warn("fleet: refused a request with another host's key", zap.String("host", host), zap.String("remote", r.RemoteAddr))
				fail(w, http.StatusForbidden, "the host key does not belong to host %s; an agent may only speak for the host it enrolled as", host)
				return
			}
		}
		h(w, r)
	}
}

func (s *Server) adminAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !bearerOK(r, s.AdminToken) {
			s.Log.Warn("fleet: refused an admin request without a valid token", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
			fail(w, http.StatusUnauthorized, "missing or wrong bearer token (SHIPBOT_API_TOKEN)")
			return
		}
		h(w, r)
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "bad request body: %v", err)
		return false
	}
	return true
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	var req EnrollRequest
	if !decode(w, r, &req) {
		return
	}
	switch {
	case len(req.Instance) < 8 || len(req.Instance) > 128:
		fail(w, http.StatusBadRequest, "instance must be 8-128 characters")
		return
	case req.Rack == "" || req.DC == "":
		fail(w, http.StatusBadRequest, "rack and dc are required")
		return
	}
	now := s.Clock.Now()
	s.mu.Lock()
	st := s.hosts[host]
	if st != nil && st.Instance != req.Instance && now.Sub(st.LastSeen) <= s.StaleAfter {
		s.mu.Unlock()
		s.Log.Warn("fleet: refused a second agent for a live host", zap.String("host", host), zap.String("remote", r.RemoteAddr))
		fail(w, http.StatusConflict, "host %s is enrolled by another agent that is still reporting", host)
		return
	}
	if st == nil {
		st = &HostState{Enrolled: now, Staged: map[string]StageStatus{}}
		s.hosts[host] = st
	}
	st.Host = distributor.Host{Name: host, Rack: req.Rack, DC: req.DC}
	st.Instance, st.BTAddr, st.LastSeen = req.Instance, req.BTAddr, now
	st.Active, st.Previous = req.Active, req.Previous
	for _, rel := range req.Staged {
		if _, ok := st.Staged[rel]; !ok {
			st.Staged[rel] = StageStatus{Done: true}
		}
	}
	key := s.hostKey(host, req.Instance)
	s.mu.Unlock()
	s.Log.Info("fleet: host enrolled", zap.String("host", host), zap.String("rack", req.Rack), zap.String("dc", req.DC))
	resp := EnrollResponse{HostKey: key, WebseedBase: s.WebseedBase, ReportEvery: int(s.ReportEvery / time.Second)}
	if s.AnnounceURL != nil {
		resp.Announce = s.AnnounceURL(host)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) desiredPoll(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	wait := time.Duration(0)
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 {
			fail(w, http.StatusBadRequest, "wait %q: want a duration such as 30s", ws)
			return
		}
		wait = min(d, MaxWait)
	}
	s.mu.Lock()
	s.touch(host)
	d := s.desired[host]
	var ch chan struct{}
	if d.Generation <= after && wait > 0 {
		ch = s.notify[host]
		if ch == nil {
			ch = make(chan struct{})
			s.notify[host] = ch
		}
	}
	s.mu.Unlock()
	if ch != nil {
		t := s.Clock.NewTimer(wait)
		select {
		case <-ch:
		case <-t.Chan():
		case <-s.closing:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		t.Stop()
		s.mu.Lock()
		d = s.desired[host]
		s.mu.Unlock()
	}
	b, err := s.answer(d)
	if err != nil {
		s.Log.Error("fleet: cannot answer a desired-state poll", zap.String("host", host), zap.Error(err))
		fail(w, http.StatusInternalServerError, "%v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// answer encodes a desired state with its manifests, once per distinct state.
func (s *Server) answer(d Desired) ([]byte, error) {
	key := fmt.Sprintf("%d|%s|%s", d.Generation, d.Active, strings.Join(d.Stage, ","))
	s.mu.Lock()
	b, ok := s.answers[key]
	s.mu.Unlock()
	if ok {
		return b, nil
	}
	resp := DesiredResponse{Generation: d.Generation, Active: d.Active, Stage: []distributor.Signed{}}
	for _, rel := range d.Stage {
		m, err := s.Store.Manifest(rel)
		if err != nil || m == nil {
			return nil, fmt.Errorf("no manifest for release %s: %v", rel, err)
		}
		resp.Stage = append(resp.Stage, *m)
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.answers[key] = b
	s.mu.Unlock()
	return b, nil
}

// touch marks a host as seen. Called with mu held.
func (s *Server) touch(host string) {
	if st := s.hosts[host]; st != nil {
		st.LastSeen = s.Clock.Now()
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	var rep StatusReport
	if !decode(w, r, &rep) {
		return
	}
	s.mu.Lock()
	st := s.hosts[host]
	st.LastSeen = s.Clock.Now()
	if rep.Staged != nil {
		st.Staged = rep.Staged
	}
	st.Active, st.Previous, st.Error = rep.Active, rep.Previous, rep.Error
	if rep.Health != nil {
		st.Health = rep.Health
	}
	st.Metrics, st.MetricsRelease = rep.Metrics, rep.MetricsRelease
	snap := s.snapshot(st)
	s.mu.Unlock()
	if s.OnReport != nil {
		s.OnReport(snap)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Hosts())
}

// DesiredChange is the admin request body: which hosts, and what to set. Stage
// replaces the hosts' stage list when present; AddStage appends to it.
type DesiredChange struct {
	Hosts    []string `json:"hosts"` // empty: every enrolled host
	Stage    []string `json:"stage,omitempty"`
	AddStage []string `json:"add_stage,omitempty"`
	Active   *string  `json:"active,omitempty"`
}

func (s *Server) putDesired(w http.ResponseWriter, r *http.Request) {
	var c DesiredChange
	if !decode(w, r, &c) {
		return
	}
	for _, h := range c.Hosts {
		if err := distributor.ValidHostName(h); err != nil {
			fail(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	hosts := c.Hosts
	if len(hosts) == 0 {
		hosts = nil
	}
	err := s.SetDesired(r.Context(), hosts, func(_ string, d *Desired) {
		if c.Stage != nil {
			d.Stage = append([]string(nil), c.Stage...)
		}
		for _, rel := range c.AddStage {
			if !contains(d.Stage, rel) {
				d.Stage = append(d.Stage, rel)
			}
		}
		if c.Active != nil {
			d.Active = *c.Active
			if d.Active != "" && !contains(d.Stage, d.Active) {
				d.Stage = append(d.Stage, d.Active)
			}
		}
	})
	if err != nil {
		var nf interface{ NotFound() bool }
		if errors.As(err, &nf) && nf.NotFound() {
			fail(w, http.StatusNotFound, "%v", err)
			return
		}
		fail(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"generation": s.currentGen()})
}

func (s *Server) currentGen() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
