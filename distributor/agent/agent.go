// Package agent is the host's side of the fleet protocol (shipagent): it enrols,
// long-polls its desired state, stages every release it is told to with the fetcher
// (verifying the signed manifest first), activates releases (unpack, switch the
// current symlink atomically, run the activate hook, probe health), keeps the newest
// N releases, keeps seeding, and reports.
package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot/health"
	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/fetcher"
	"github.com/shipbot/shipbot/distributor/fleet"
)

// HealthCheck is how the agent probes the service it runs: an HTTP GET expecting a
// status, or a command expecting exit 0.
type HealthCheck struct {
	URL          string
	ExpectStatus int
	Command      []string
	Interval     time.Duration
	Timeout      time.Duration
}

// Metrics is how the agent scrapes its service's Prometheus endpoint; the counters
// go into every status report for the coordinator's metric gates.
type Metrics struct {
	URL  string
	Keep []string // metric names to report; empty reports every sample
}

// Config configures an agent.
type Config struct {
	Coordinator  string // shipbot's URL
	Token        string // the fleet token
	CAFile       string // extra CA for the coordinator's TLS
	Host         distributor.Host
	ReleasesDir  string
	Keep         int // releases to keep (at least 2)
	Health       HealthCheck
	Metrics      Metrics
	ActivateHook []string
	HookTimeout  time.Duration
	UploadRate   int64
	DownloadRate int64
	PublicKey    ed25519.PublicKey
	BTListen     string        // host:port for BitTorrent
	PollWait     time.Duration // long-poll length; default 30s
}

// Agent runs one host.
type Agent struct {
	cfg  Config
	log  *zap.Logger
	http *http.Client
	f    *fetcher.Fetcher

	instance string

	keyMu    sync.Mutex
	key      string               // host key from enrolment; "" means enrol again
	enrolled fleet.EnrollResponse // guarded by keyMu

	mu         sync.Mutex
	manifests  map[string]*distributor.Manifest // verified, by release
	signed     map[string]distributor.Signed
	staged     map[string]fleet.StageStatus
	fetching   map[string]bool
	wantActive string
	failed     map[string]bool // activations that failed for the current desired state
	active     string
	previous   string
	health     *fleet.Health
	metrics    map[string]float64
	metricsFor string // the release active through the scrape that gave metrics
	// gen counts activations; a probe or scrape that spans one is dropped, so a
	// reading of the old process never speaks for the new release.
	gen        uint64
	lastErr    string
	dirty      chan struct{}
	activating sync.Mutex
}

// New prepares an agent; Run starts it.
func New(cfg Config, log *zap.Logger) (*Agent, error) {
	if cfg.Keep < 2 {
		cfg.Keep = 2
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 30 * time.Second
	}
	if cfg.HookTimeout <= 0 {
		cfg.HookTimeout = 30 * time.Second
	}
	if cfg.Health.Interval <= 0 {
		cfg.Health.Interval = 10 * time.Second
	}
	if cfg.Health.Timeout <= 0 {
		cfg.Health.Timeout = 5 * time.Second
	}
	if cfg.Health.ExpectStatus == 0 {
		cfg.Health.ExpectStatus = 200
	}
	if log == nil {
		log = zap.NewNop()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	a := &Agent{cfg: cfg, log: log, http: &http.Client{Transport: tr},
		manifests: map[string]*distributor.Manifest{}, signed: map[string]distributor.Signed{},
		staged: map[string]fleet.StageStatus{}, fetching: map[string]bool{}, failed: map[string]bool{},
		dirty: make(chan struct{}, 1)}
	return a, nil
}

// Run works until ctx is done.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.ReleasesDir, 0o755); err != nil {
		return fmt.Errorf("releases dir: %w", err)
	}
	if err := a.loadInstance(); err != nil {
		return err
	}
	a.f = &fetcher.Fetcher{Dir: a.cfg.ReleasesDir, ListenAddr: a.cfg.BTListen, UploadRate: a.cfg.UploadRate,
		DownloadRate: a.cfg.DownloadRate, Log: a.log.Named("fetch")}
	if err := a.f.Open(); err != nil {
		return err
	}
	defer a.f.Close()
	a.active, a.previous = readCurrent(a.cfg.ReleasesDir), readPrevious(a.cfg.ReleasesDir)
	a.loadManifests()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.reportLoop(ctx) }()
	go func() { defer wg.Done(); a.healthLoop(ctx) }()
	a.pollLoop(ctx)
	wg.Wait()
	return nil
}

func (a *Agent) loadInstance() error {
	p := filepath.Join(a.cfg.ReleasesDir, ".instance")
	if b, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(b)) >= 8 {
		a.instance = string(bytes.TrimSpace(b))
		return nil
	}
	var b [12]byte
	rand.Read(b[:])
	a.instance = hex.EncodeToString(b[:])
	if err := os.WriteFile(p, []byte(a.instance+"\n"), 0o644); err != nil {
		return fmt.Errorf("releases dir is not writable: %w", err)
	}
	return nil
}

// loadManifests restores what this host holds from the signed manifests it kept.
func (a *Agent) loadManifests() {
	dir := filepath.Join(a.cfg.ReleasesDir, ".manifests")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var s distributor.Signed
		if json.Unmarshal(b, &s) != nil {
			continue
		}
		m, err := s.Verify(a.cfg.PublicKey)
		if err != nil {
			a.log.Warn("ignoring a kept manifest that does not verify", zap.String("file", e.Name()), zap.Error(err))
			continue
		}
		a.manifests[m.Release], a.signed[m.Release] = m, s
		if a.f.Verified(m) {
			a.staged[m.Release] = fleet.StageStatus{Bytes: m.Size, Total: m.Size, Done: true}
		}
	}
}

func (a *Agent) markDirty() {
	select {
	case a.dirty <- struct{}{}:
	default:
	}
}

// call does one JSON request to the coordinator.
func (a *Agent) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(a.cfg.Coordinator, "/")+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	if key, _ := a.session(); key != "" {
		req.Header.Set(fleet.HeaderHostKey, key)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out != nil {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode, nil
}

func (a *Agent) enroll(ctx context.Context) error {
	a.mu.Lock()
	req := fleet.EnrollRequest{Instance: a.instance, Rack: a.cfg.Host.Rack, DC: a.cfg.Host.DC, Version: "shipagent",
		BTAddr: a.f.Addr().String(), Active: a.active, Previous: a.previous}
	for r, s := range a.staged {
		if s.Done {
			req.Staged = append(req.Staged, r)
		}
	}
	a.mu.Unlock()
	sort.Strings(req.Staged)
	a.setSession("", fleet.EnrollResponse{})
	var resp fleet.EnrollResponse
	if _, err := a.call(ctx, "POST", "/v1/agents/"+url.PathEscape(a.cfg.Host.Name)+"/enroll", req, &resp); err != nil {
		return err
	}
	a.setSession(resp.HostKey, resp)
	a.log.Info("enrolled", zap.String("coordinator", a.cfg.Coordinator))
	// Keep seeding what we hold, now that we know the tracker.
	a.mu.Lock()
	for r, m := range a.manifests {
		if a.staged[r].Done {
			a.startFetch(ctx, m)
		}
	}
	a.mu.Unlock()
	a.markDirty()
	return nil
}

func (a *Agent) session() (string, fleet.EnrollResponse) {
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	return a.key, a.enrolled
}

func (a *Agent) setSession(key string, e fleet.EnrollResponse) {
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	a.key, a.enrolled = key, e
}

// forget drops the session so the poll loop enrols again.
func (a *Agent) forget() {
	a.keyMu.Lock()
	defer a.keyMu.Unlock()
	a.key = ""
}

// pollLoop enrols, then long-polls the desired state; it re-enrols when the
// coordinator has forgotten this host (a restart) and backs off on errors.
func (a *Agent) pollLoop(ctx context.Context) {
	var gen uint64
	backoff := 200 * time.Millisecond
	sleep := func() {
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	for ctx.Err() == nil {
		if key, _ := a.session(); key == "" {
			if err := a.enroll(ctx); err != nil {
				if ctx.Err() == nil {
					a.log.Warn("enrol failed; retrying", zap.Error(err), zap.Duration("in", backoff))
				}
				sleep()
				continue
			}
			gen = 0 // a restarted coordinator's generations are still ours: ask afresh
		}
		var resp fleet.DesiredResponse
		path := fmt.Sprintf("/v1/agents/%s/desired?after=%d&wait=%s", url.PathEscape(a.cfg.Host.Name), gen, a.cfg.PollWait)
		code, err := a.call(ctx, "GET", path, nil, &resp)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if code == http.StatusNotFound || code == http.StatusForbidden || code == http.StatusUnauthorized {
				a.forget()
			}
			a.log.Warn("desired-state poll failed", zap.Error(err))
			sleep()
			continue
		}
		backoff = 200 * time.Millisecond
		if resp.Generation > gen {
			gen = resp.Generation
			a.apply(ctx, resp)
		}
	}
}

// apply acts on a new desired state.
func (a *Agent) apply(ctx context.Context, d fleet.DesiredResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failed = map[string]bool{}
	for _, s := range d.Stage {
		m, err := s.Verify(a.cfg.PublicKey)
		if err != nil {
			rel := releaseOf(s)
			a.log.Error("refusing a manifest that does not verify", zap.String("release", rel), zap.Error(err))
			a.staged[rel] = fleet.StageStatus{Error: "manifest refused: " + err.Error()}
			continue
		}
		if _, ok := a.manifests[m.Release]; !ok {
			if err := a.keepManifest(m.Release, s); err != nil {
				a.staged[m.Release] = fleet.StageStatus{Error: err.Error()}
				continue
			}
		}
		a.manifests[m.Release], a.signed[m.Release] = m, s
		a.startFetch(ctx, m)
	}
	if d.Active != a.wantActive {
		a.log.Info("told to activate", zap.String("release", d.Active), zap.Uint64("generation", d.Generation))
	}
	a.wantActive = d.Active
	a.markDirty()
	go a.maybeActivate(ctx)
}

// releaseOf reads the release name of a manifest that did not verify, for the report.
func releaseOf(s distributor.Signed) string {
	var m struct{ Release string }
	json.Unmarshal(s.Manifest, &m)
	if m.Release == "" || distributor.ValidHostName(m.Release) != nil {
		return "unknown"
	}
	return m.Release
}

func (a *Agent) keepManifest(release string, s distributor.Signed) error {
	dir := filepath.Join(a.cfg.ReleasesDir, ".manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("keep manifest: %w", err)
	}
	b, _ := json.Marshal(s)
	tmp := filepath.Join(dir, release+".json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("keep manifest: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, release+".json"))
}

// startFetch downloads (or resumes, or re-seeds) a release. Called with mu held.
func (a *Agent) startFetch(ctx context.Context, m *distributor.Manifest) {
	if a.fetching[m.Release] {
		return
	}
	a.fetching[m.Release] = true
	_, sess := a.session()
	src := fetcher.Source{Announce: sess.Announce}
	if sess.WebseedBase != "" {
		src.Webseeds = []string{sess.WebseedBase + m.Release + "/"}
	}
	go func() {
		last := time.Time{}
		_, err := a.f.Fetch(ctx, m, src, func(p fetcher.Progress) {
			a.mu.Lock()
			a.staged[m.Release] = fleet.StageStatus{Bytes: p.Bytes, Total: p.Total, Done: p.Done, Rate: p.Rate,
				FromPeers: p.FromPeers, FromWebseed: p.FromWebseed}
			a.mu.Unlock()
			if p.Done || time.Since(last) >= time.Second {
				last = time.Now()
				a.markDirty()
			}
		})
		a.mu.Lock()
		a.fetching[m.Release] = false
		if err != nil && ctx.Err() == nil {
			a.log.Error("staging failed", zap.String("release", m.Release), zap.Error(err))
			st := a.staged[m.Release]
			st.Error, st.Done = err.Error(), false
			a.staged[m.Release] = st
		}
		a.mu.Unlock()
		a.markDirty()
		if err == nil {
			a.maybeActivate(ctx)
		}
	}()
}

// maybeActivate switches to the wanted release once it is staged.
func (a *Agent) maybeActivate(ctx context.Context) {
	a.activating.Lock()
	defer a.activating.Unlock()
	a.mu.Lock()
	want, active := a.wantActive, a.active
	m := a.manifests[want]
	staged := m != nil && a.staged[want].Done
	failed := a.failed[want]
	a.mu.Unlock()
	if want == "" || want == active || !staged || failed || ctx.Err() != nil {
		return
	}
	err := a.activate(ctx, m)
	a.mu.Lock()
	if err != nil {
		a.failed[want] = true
		a.lastErr = err.Error()
		a.log.Error("activation failed", zap.String("release", want), zap.Error(err))
	} else {
		a.lastErr = ""
	}
	a.mu.Unlock()
	a.markDirty()
	a.probe(ctx)
	if err == nil {
		a.retain()
	}
}

// activate unpacks, switches current, and runs the hook; on a hook failure it
// switches back and re-runs the hook for the previous release.
func (a *Agent) activate(ctx context.Context, m *distributor.Manifest) error {
	dir := a.cfg.ReleasesDir
	start := time.Now()
	if !a.f.Verified(m) {
		return fmt.Errorf("release %s is not verified on disk", m.Release)
	}
	rdir, err := unpack(dir, m, a.f.Path(m))
	if err != nil {
		return err
	}
	prev := readCurrent(dir)
	a.mu.Lock()
	a.gen++
	a.metrics, a.metricsFor = nil, ""
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.gen++
		a.mu.Unlock()
	}()
	if err := switchCurrent(dir, m.Version); err != nil {
		return err
	}
	if _, err := runHook(ctx, a.cfg.ActivateHook, a.cfg.HookTimeout, rdir, m.Version); err != nil {
		if prev != "" {
			if serr := switchCurrent(dir, prev); serr != nil {
				return fmt.Errorf("%v; and switching back to %s failed: %v", err, prev, serr)
			}
			if _, herr := runHook(ctx, a.cfg.ActivateHook, a.cfg.HookTimeout, filepath.Join(dir, prev), prev); herr != nil {
				a.log.Error("activate hook for the previous release failed too", zap.String("release", prev), zap.Error(herr))
			}
		}
		return fmt.Errorf("activate %s: %w; %s stays active", m.Version, err, orNone(prev))
	}
	a.mu.Lock()
	if prev != m.Version {
		a.previous = prev
		writePrevious(dir, prev)
	}
	a.active = m.Version
	a.mu.Unlock()
	a.log.Info("activated", zap.String("release", m.Release), zap.String("previous", prev), zap.Duration("took", time.Since(start)))
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

func readPrevious(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, ".previous"))
	return strings.TrimSpace(string(b))
}

func writePrevious(dir, v string) {
	os.WriteFile(filepath.Join(dir, ".previous"), []byte(v+"\n"), 0o644)
}

// retain keeps the newest Keep releases, never the active one or the one before it.
func (a *Agent) retain() {
	a.mu.Lock()
	var ms []*distributor.Manifest
	for _, m := range a.manifests {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Created.After(ms[j].Created) })
	var drop []*distributor.Manifest
	for i, m := range ms {
		if i < a.cfg.Keep || m.Version == a.active || m.Version == a.previous || m.Release == a.wantActive {
			continue
		}
		drop = append(drop, m)
		delete(a.manifests, m.Release)
		delete(a.signed, m.Release)
		delete(a.staged, m.Release)
	}
	a.mu.Unlock()
	for _, m := range drop {
		a.log.Info("removing an old release", zap.String("release", m.Release))
		a.f.Remove(m)
		os.RemoveAll(filepath.Join(a.cfg.ReleasesDir, m.Version))
		os.Remove(filepath.Join(a.cfg.ReleasesDir, ".manifests", m.Release+".json"))
	}
	if len(drop) > 0 {
		a.markDirty()
	}
}

// reportLoop sends a status report when something changed, at most once a second,
// and a heartbeat otherwise.
func (a *Agent) reportLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Time{}
	changed := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.dirty:
			changed = true
		case <-tick.C:
		}
		key, sess := a.session()
		every := time.Duration(sess.ReportEvery) * time.Second
		if every <= 0 {
			every = 5 * time.Second
		}
		if key == "" || (!changed && time.Since(last) < every) {
			continue
		}
		if wait := time.Second - time.Since(last); wait > 0 { // at most one report a second
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		a.mu.Lock()
		rep := fleet.StatusReport{Staged: map[string]fleet.StageStatus{}, Active: a.active, Previous: a.previous, Health: a.health, Error: a.lastErr, Metrics: a.metrics, MetricsRelease: a.metricsFor}
		for k, v := range a.staged {
			rep.Staged[k] = v
		}
		a.mu.Unlock()
		if code, err := a.call(ctx, "POST", "/v1/agents/"+url.PathEscape(a.cfg.Host.Name)+"/status", rep, nil); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("status report failed", zap.Error(err))
			if code == http.StatusNotFound || code == http.StatusForbidden {
				a.forget() // the poll loop re-enrols
			}
			continue
		}
		last, changed = time.Now(), false
	}
}

func (a *Agent) healthLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.Health.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.probe(ctx)
			a.scrape(ctx)
		}
	}
}

// scrape reads the service's counters.
func (a *Agent) scrape(ctx context.Context) {
	if a.cfg.Metrics.URL == "" {
		return
	}
	a.mu.Lock()
	gen, active := a.gen, a.active
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Health.Timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", a.cfg.Metrics.URL, nil)
	resp, err := probeClient.Do(req)
	if err != nil {
		return // the health check reports an unreachable service
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != 200 {
		return
	}
	m := health.ParseExposition(string(b), a.cfg.Metrics.Keep)
	a.mu.Lock()
	if a.gen != gen {
		a.mu.Unlock()
		return // an activation ran meanwhile: these may be the old process's counters
	}
	a.metrics, a.metricsFor = m, active
	a.mu.Unlock()
	a.markDirty()
}

// probe runs the health check once and records the result.
func (a *Agent) probe(ctx context.Context) {
	hc := a.cfg.Health
	if hc.URL == "" && len(hc.Command) == 0 {
		return
	}
	a.mu.Lock()
	active, gen := a.active, a.gen
	a.mu.Unlock()
	if active == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	start := time.Now()
	h := &fleet.Health{OK: true, Detail: "ok"}
	if hc.URL != "" {
		req, _ := http.NewRequestWithContext(ctx, "GET", hc.URL, nil)
		resp, err := probeClient.Do(req)
		switch {
		case err != nil:
			h.OK, h.Detail = false, err.Error()
		case resp.StatusCode != hc.ExpectStatus:
			h.OK, h.Detail = false, fmt.Sprintf("GET %s: %s, want %d", hc.URL, resp.Status, hc.ExpectStatus)
		}
		if resp != nil {
			resp.Body.Close()
		}
	} else if _, err := runHook(ctx, hc.Command, hc.Timeout, filepath.Join(a.cfg.ReleasesDir, currentLink), active); err != nil {
		h.OK, h.Detail = false, err.Error()
	}
	h.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	h.At = time.Now().UTC()
	a.mu.Lock()
	if a.gen != gen {
		a.mu.Unlock()
		return // an activation ran meanwhile: the reading may be of the old process
	}
	changed := a.health == nil || a.health.OK != h.OK
	a.health = h
	a.mu.Unlock()
	if changed {
		a.markDirty()
	}
}

// probeClient opens a fresh connection per probe, so no idle connection of ours
// holds the service up when it restarts.
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// Status returns what the agent would report, for its own /healthz and /metrics.
func (a *Agent) Status() (fleet.StatusReport, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	rep := fleet.StatusReport{Staged: map[string]fleet.StageStatus{}, Active: a.active, Previous: a.previous, Health: a.health, Error: a.lastErr}
	for k, v := range a.staged {
		rep.Staged[k] = v
	}
	key, _ := a.session()
	return rep, key != ""
}
