// Package rollout is the rollout engine: a persistent state machine that takes a
// shipped release through staging and tiers to done, or back to the previous
// release. It drives hosts only through the fleet's desired state.
//
//	staging -> [activating -> baking]... -> done
//	any of them -> rolling_back -> rolled_back
//
// Every transition is saved before its effects, and the effects (desired state) are
// idempotent, so after a crash Step simply continues from the saved state.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/health"
)

// Tier is one step of activation.
type Tier struct {
	Name string
	// Size is how many hosts run the release once this tier is active, counted from
	// the start: a number ("2") or a share of the fleet ("10%").
	Size string
	Bake time.Duration
	// MaxUnhealthy is the share of activated hosts that may fail their health check.
	MaxUnhealthy float64
}

// Config tunes the engine.
type Config struct {
	Tiers []Tier
	// StageTimeout bounds staging; hosts not staged by then count as failed.
	StageTimeout time.Duration
	// MaxStageFailures is the share of hosts that may fail to stage; they are excluded.
	MaxStageFailures float64
	// SwitchTimeout bounds how long hosts may take to report a switched release.
	SwitchTimeout time.Duration
	// Gates compare each tier's hosts with the baseline at the end of its bake.
	Gates []health.Gate
	// MaxInconclusive is how many looks without enough data a tier gets before it
	// fails; default 10.
	MaxInconclusive int
	// ProgressEvery is how often staging progress goes to the channel; default 10s.
	ProgressEvery time.Duration
}

// Phase of a rollout.
type Phase string

// Phases.
const (
	PhaseStaging     Phase = "staging"
	PhaseActivating  Phase = "activating"
	PhaseBaking      Phase = "baking"
	PhaseRollingBack Phase = "rolling_back"
	PhaseDone        Phase = "done"
	PhaseRolledBack  Phase = "rolled_back"
)

// Terminal reports whether p ends a rollout.
func (p Phase) Terminal() bool { return p == PhaseDone || p == PhaseRolledBack }

// State is a rollout as saved in the store.
type State struct {
	Release   string            `json:"release"`
	Phase     Phase             `json:"phase"`
	Tier      int               `json:"tier"`
	Since     time.Time         `json:"since"`     // when the phase began
	Hosts     []string          `json:"hosts"`     // in canary order: the first ones go first
	Baseline  map[string]string `json:"baseline"`  // each host's release at ship time
	Excluded  []string          `json:"excluded"`  // failed to stage
	Activated []string          `json:"activated"` // told to run the release
	Paused    bool              `json:"paused"`    // hold at the next tier boundary
	Promote   bool              `json:"promote"`   // skip the rest of this tier's bake
	// Inconclusive counts looks at this tier\'s gates that lacked data.
	Inconclusive int `json:"inconclusive"`
	// ProgressAt is when staging progress was last posted (not saved).
	ProgressAt time.Time `json:"-"`
	// ProgressBytes is how much the hosts held then, for the aggregate rate.
	ProgressBytes int64  `json:"-"`
	Reason        string `json:"reason"` // why it rolled back
}

// HostView is what the engine needs to know about a host.
type HostView struct {
	Name        string
	Staged      bool   // holds the release, verified
	StageFailed string // why staging failed, if it did
	Active      string
	Healthy     *bool // nil: not probed yet
	Stale       bool
	Metrics     map[string]float64 // counters the agent scraped from its service
	Bytes       int64              // staging progress on the release
	Total       int64
	Rate        float64 // bytes/s
}

// Fleet is the engine's handle on the hosts.
type Fleet interface {
	Hosts(release string) []HostView
	// Stage adds release to the hosts' stage lists; Activate sets what they run.
	// Both must be idempotent.
	Stage(ctx context.Context, hosts []string, release string) error
	Activate(ctx context.Context, hosts []string, release string) error
}

// Store saves rollouts.
type Store interface {
	SaveRollout(ctx context.Context, s *State) error
}

// Engine runs one rollout at a time.
type Engine struct {
	Config Config
	Fleet  Fleet
	Store  Store
	Say    func(ctx context.Context, p bot.Post)
	// Committers renders mentions of a release's committers for the rollback line;
	// optional.
	Committers func(ctx context.Context, release string) string
	// Prometheus runs the gates whose source is prometheus; optional.
	Prometheus *health.Prometheus
	// win holds each host's counters when the current bake began, so agent gates
	// judge the bake window and not a process's lifetime. Not saved: after a
	// restart the window starts again.
	win struct {
		mu    sync.Mutex
		key   string // release, tier and phase start: one bake
		start map[string]map[string]float64
	}
	Clock clockwork.Clock
	Log   *zap.Logger
}

// ErrBusy means a rollout is already running.
var ErrBusy = errors.New("a rollout is already running")

// Start begins a rollout of release on every live host, in a canary order that is
// random but reproducible from the release ID.
func (e *Engine) Start(ctx context.Context, cur *State, release string) (*State, error) {
	if cur != nil && !cur.Phase.Terminal() {
		return nil, fmt.Errorf("%w: %s is %s", ErrBusy, cur.Release, cur.Phase)
	}
	s := &State{Release: release, Phase: PhaseStaging, Since: e.Clock.Now(), Baseline: map[string]string{}}
	for _, h := range e.Fleet.Hosts(release) {
		if h.Stale {
			continue
		}
		s.Hosts = append(s.Hosts, h.Name)
		s.Baseline[h.Name] = h.Active
	}
	if len(s.Hosts) == 0 {
		return nil, errors.New("no live hosts to ship to")
	}
	sort.Strings(s.Hosts)
	seed := fnv.New64a()
	seed.Write([]byte(release))
	r := rand.New(rand.NewPCG(seed.Sum64(), 0x5eed))
	r.Shuffle(len(s.Hosts), func(i, j int) { s.Hosts[i], s.Hosts[j] = s.Hosts[j], s.Hosts[i] })
	if err := e.Store.SaveRollout(ctx, s); err != nil {
		return nil, err
	}
	if err := e.Fleet.Stage(ctx, s.Hosts, release); err != nil {
		return s, err
	}
	e.Say(ctx, bot.Post{Text: fmt.Sprintf("%s: staging on %d hosts", release, len(s.Hosts)), Priority: bot.PriorityNormal})
	return s, nil
}

// TierSize resolves a tier's size against a fleet of n hosts (at least 1).
func TierSize(size string, n int) (int, error) {
	if p, ok := strings.CutSuffix(size, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 {
			return 0, fmt.Errorf("tier size %q: want a share from 0%% to 100%%", size)
		}
		return max(1, min(n, int(math.Ceil(f*float64(n)/100)))), nil
	}
	k, err := strconv.Atoi(size)
	if err != nil || k <= 0 {
		return 0, fmt.Errorf("tier size %q: want a host count or a share such as 10%%", size)
	}
	return min(k, n), nil
}

// save persists s before any effect of its new phase.
func (e *Engine) save(ctx context.Context, s *State, p Phase) error {
	s.Phase, s.Since = p, e.Clock.Now()
	return e.Store.SaveRollout(ctx, s)
}

// Resume re-applies the effects of s's saved phase, for a restart: a crash may have
// come after the save and before the effects. Effects are idempotent.
func (e *Engine) Resume(ctx context.Context, s *State) error {
	switch s.Phase {
	case PhaseStaging:
		return e.Fleet.Stage(ctx, s.Hosts, s.Release)
	case PhaseBaking:
		return e.Fleet.Activate(ctx, s.Activated, s.Release)
	case PhaseRollingBack:
		return e.stepRollingBack(ctx, s, nil, e.Clock.Now())
	}
	return nil // activating re-runs as a step; terminal phases have nothing to redo
}

// Step looks at the fleet once and moves s on. It is safe to call again after a
// crash at any point: it re-applies the saved phase's effects.
func (e *Engine) Step(ctx context.Context, s *State) error {
	now := e.Clock.Now()
	hosts := map[string]HostView{}
	for _, h := range e.Fleet.Hosts(s.Release) {
		hosts[h.Name] = h
	}
	switch s.Phase {
	case PhaseStaging:
		return e.stepStaging(ctx, s, hosts, now)
	case PhaseActivating:
		return e.stepActivating(ctx, s)
	case PhaseBaking:
		return e.stepBaking(ctx, s, hosts, now)
	case PhaseRollingBack:
		return e.stepRollingBack(ctx, s, hosts, now)
	}
	return nil
}

func (e *Engine) stepStaging(ctx context.Context, s *State, hosts map[string]HostView, now time.Time) error {
	if err := e.Fleet.Stage(ctx, s.Hosts, s.Release); err != nil {
		return err
	}
	var staged, failed, waiting []string
	for _, n := range s.Hosts {
		h, ok := hosts[n]
		switch {
		case ok && h.Staged:
			staged = append(staged, n)
		case ok && (h.Stale || h.StageFailed != ""):
			failed = append(failed, n)
		default:
			// Not reported yet: after a restart of shipbot the registry fills up
			// again as the agents re-enrol. The stage timeout bounds the wait.
			waiting = append(waiting, n)
		}
	}
	timedOut := e.Config.StageTimeout > 0 && now.Sub(s.Since) > e.Config.StageTimeout
	if len(waiting) > 0 && !timedOut {
		e.stagingProgress(ctx, s, hosts, staged, waiting, now)
		return nil
	}
	failed = append(failed, waiting...)
	if float64(len(failed)) > e.Config.MaxStageFailures*float64(len(s.Hosts)) || len(staged) == 0 {
		return e.rollback(ctx, s, fmt.Sprintf("staging failed on %d of %d hosts (%s); the limit is %.0f%%",
			len(failed), len(s.Hosts), strings.Join(failed, ", "), 100*e.Config.MaxStageFailures))
	}
	if len(failed) > 0 {
		s.Excluded = failed
		s.Hosts = without(s.Hosts, failed)
		e.Say(ctx, bot.Post{Text: fmt.Sprintf("%s: staged on %d hosts; excluded %d that failed to stage: %s",
			s.Release, len(staged), len(failed), strings.Join(failed, ", ")), Priority: bot.PriorityNormal})
	} else {
		e.Say(ctx, bot.Post{Text: fmt.Sprintf("%s: staged on all %d hosts", s.Release, len(staged)), Priority: bot.PriorityNormal})
	}
	s.Tier = 0
	if err := e.save(ctx, s, PhaseActivating); err != nil {
		return err
	}
	return e.stepActivating(ctx, s)
}

// stagingProgress posts, at most every ProgressEvery, the hosts staged, the
// aggregate rate, an ETA and the stragglers, as one line updated in place where the
// network can.
func (e *Engine) stagingProgress(ctx context.Context, s *State, hosts map[string]HostView, staged, waiting []string, now time.Time) {
	every := e.Config.ProgressEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	if now.Sub(s.ProgressAt) < every {
		return
	}
	var rate float64
	var left, held int64
	for _, n := range s.Hosts {
		held += hosts[n].Bytes
	}
	type slow struct {
		name string
		pct  float64
	}
	var behind []slow
	for _, n := range waiting {
		h := hosts[n]
		rate += h.Rate
		left += max(0, h.Total-h.Bytes)
		pct := 0.0
		if h.Total > 0 {
			pct = float64(h.Bytes) / float64(h.Total)
		}
		behind = append(behind, slow{n, pct})
	}
	// The rate since the last line beats the hosts' own momentary rates.
	if dt := now.Sub(s.ProgressAt); !s.ProgressAt.IsZero() && dt > 0 && held >= s.ProgressBytes {
		rate = float64(held-s.ProgressBytes) / dt.Seconds()
	}
	s.ProgressAt, s.ProgressBytes = now, held
	sort.Slice(behind, func(i, j int) bool { return behind[i].pct < behind[j].pct })
	line := fmt.Sprintf("%s staging: %d/%d hosts, %s/s", s.Release, len(staged), len(s.Hosts), bot.HumanBytes(int64(rate)))
	if rate > 0 && left > 0 {
		line += fmt.Sprintf(", ETA %s", (time.Duration(float64(left) / rate * float64(time.Second))).Round(time.Second))
	}
	var names []string
	for i, b := range behind {
		if i == 5 {
			names = append(names, fmt.Sprintf("and %d more", len(behind)-5))
			break
		}
		names = append(names, fmt.Sprintf("%s %.0f%%", b.name, 100*b.pct))
	}
	line += "; waiting for " + strings.Join(names, ", ")
	e.Say(ctx, bot.Post{Text: line, Priority: bot.PriorityProgress, Key: ProgressKey(s.Release)})
}

// stepActivating tells the current tier's new hosts to run the release. The hosts
// are recorded as activated before they are told, so a crash never leaves a host on
// a release the state (and the channel) does not know about.
func (e *Engine) stepActivating(ctx context.Context, s *State) error {
	t := e.Config.Tiers[s.Tier]
	k, err := TierSize(t.Size, len(s.Hosts))
	if err != nil {
		return err
	}
	target := s.Hosts[:max(k, len(s.Activated))]
	s.Activated = append([]string(nil), target...)
	s.Promote = false
	if err := e.save(ctx, s, PhaseBaking); err != nil {
		return err
	}
	if err := e.Fleet.Activate(ctx, target, s.Release); err != nil {
		return err
	}
	e.Say(ctx, bot.Post{Text: fmt.Sprintf("%s: tier %s: %d of %d hosts switching (bake %s)",
		s.Release, t.Name, len(target), len(s.Hosts), t.Bake), Priority: bot.PriorityNormal, Key: ProgressKey(s.Release)})
	return nil
}

func (e *Engine) stepBaking(ctx context.Context, s *State, hosts map[string]HostView, now time.Time) error {
	t := e.Config.Tiers[s.Tier]
	var switched, unhealthy []string
	for _, n := range s.Activated {
		h := hosts[n]
		if h.Active == s.Release {
			switched = append(switched, n)
			if h.Healthy != nil && !*h.Healthy {
				unhealthy = append(unhealthy, n)
			}
		}
	}
	limit := t.MaxUnhealthy * float64(len(s.Activated))
	if float64(len(unhealthy)) > limit {
		return e.rollback(ctx, s, fmt.Sprintf("tier %s unhealthy: %d of %d hosts fail their health check (%s); the limit is %.0f%%",
			t.Name, len(unhealthy), len(s.Activated), strings.Join(unhealthy, ", "), 100*t.MaxUnhealthy))
	}
	if len(switched) < len(s.Activated) {
		if e.Config.SwitchTimeout > 0 && now.Sub(s.Since) > e.Config.SwitchTimeout {
			return e.rollback(ctx, s, fmt.Sprintf("tier %s: only %d of %d hosts switched to %s within %s",
				t.Name, len(switched), len(s.Activated), s.Release, e.Config.SwitchTimeout))
		}
		return nil
	}
	e.noteWindow(s, hosts)
	if now.Sub(s.Since) < t.Bake && !s.Promote {
		e.bakeProgress(ctx, s, t, hosts, now)
		return nil
	}
	numbers, failed, waiting := e.gates(ctx, s, hosts)
	if failed != "" {
		return e.rollback(ctx, s, fmt.Sprintf("tier %s failed its gates: %s", t.Name, failed))
	}
	if waiting != "" {
		s.Inconclusive++
		limit := e.Config.MaxInconclusive
		if limit <= 0 {
			limit = 10
		}
		if s.Inconclusive > limit {
			return e.rollback(ctx, s, fmt.Sprintf("tier %s inconclusive after %d looks: %s", t.Name, s.Inconclusive, waiting))
		}
		return e.Store.SaveRollout(ctx, s)
	}
	verdict := fmt.Sprintf("%s: tier %s healthy: %d of %d hosts unhealthy (limit %.0f%%)", s.Release, t.Name, len(unhealthy), len(s.Activated), 100*t.MaxUnhealthy)
	if numbers != "" {
		verdict = fmt.Sprintf("%s: tier %s healthy: %s, %d of %d hosts unhealthy", s.Release, t.Name, numbers, len(unhealthy), len(s.Activated))
	}
	if s.Tier == len(e.Config.Tiers)-1 {
		if err := e.save(ctx, s, PhaseDone); err != nil {
			return err
		}
		e.Say(ctx, bot.Post{Text: verdict + "; " + s.Release + " is done on all " + strconv.Itoa(len(s.Hosts)) + " hosts", Priority: bot.PriorityNormal})
		return nil
	}
	if s.Paused {
		return nil // hold at the tier boundary
	}
	s.Tier++
	s.Inconclusive = 0
	if err := e.save(ctx, s, PhaseActivating); err != nil {
		return err
	}
	e.Say(ctx, bot.Post{Text: verdict + "; promoting to " + e.Config.Tiers[s.Tier].Name, Priority: bot.PriorityNormal})
	return e.stepActivating(ctx, s)
}

// ProgressKey keys a rollout's progress message: staging, the tier switches and
// the bake readings are one message where the network can edit in place.
func ProgressKey(release string) string { return "progress:" + release }

// bakeProgress refreshes the progress message with the bake's time left and the
// gates' current readings, at most every ProgressEvery. Networks that cannot edit
// in place drop it: the verdict says it all at the end.
func (e *Engine) bakeProgress(ctx context.Context, s *State, t Tier, hosts map[string]HostView, now time.Time) {
	every := e.Config.ProgressEvery
	if every <= 0 {
		every = 10 * time.Second
	}
	if now.Sub(s.ProgressAt) < every {
		return
	}
	s.ProgressAt = now
	line := fmt.Sprintf("%s: tier %s (%d of %d) baking, %s left; %d of %d hosts switched", s.Release, t.Name, s.Tier+1, len(e.Config.Tiers),
		(t.Bake - now.Sub(s.Since)).Round(time.Second), len(s.Activated), len(s.Hosts))
	if numbers, _, _ := e.gates(ctx, s, hosts); numbers != "" {
		line += "; " + numbers
	}
	e.Say(ctx, bot.Post{Text: line, Priority: bot.PriorityProgress, Key: ProgressKey(s.Release), UpdateOnly: true})
}

// gates evaluates every gate on the tier's hosts against the baseline (the hosts
// still on their previous release). It returns the numbers of all gates, the
// failing ones, and the ones without enough data.
func (e *Engine) gates(ctx context.Context, s *State, hosts map[string]HostView) (numbers, failed, waiting string) {
	var all, bad, wait []string
	for _, r := range e.readings(ctx, s, hosts) {
		all = append(all, r.String())
		switch r.Verdict {
		case health.Fail:
			bad = append(bad, r.String())
		case health.Inconclusive:
			wait = append(wait, r.String())
		}
	}
	return strings.Join(all, ", "), strings.Join(bad, ", "), strings.Join(wait, ", ")
}

// Readings evaluates the gates now, for a look during a bake (the dashboard's
// charts); it changes nothing.
func (e *Engine) Readings(ctx context.Context, s *State) []health.Result {
	hosts := map[string]HostView{}
	for _, h := range e.Fleet.Hosts(s.Release) {
		hosts[h.Name] = h
	}
	return e.readings(ctx, s, hosts)
}

func (e *Engine) readings(ctx context.Context, s *State, hosts map[string]HostView) []health.Result {
	if len(e.Config.Gates) == 0 {
		return nil
	}
	on := map[string]bool{}
	var canary, baseline []map[string]float64
	var canaryHosts, baseHosts []string
	baseVersions := map[string]int{}
	for _, n := range s.Activated {
		on[n] = true
		if h := hosts[n]; h.Active == s.Release {
			canaryHosts = append(canaryHosts, n)
			if h.Metrics != nil {
				canary = append(canary, e.sinceWindow(s, n, h.Metrics))
			}
		}
	}
	for _, n := range s.Hosts {
		if h := hosts[n]; !on[n] && h.Active != "" && h.Active == s.Baseline[n] {
			baseHosts = append(baseHosts, n)
			baseVersions[h.Active]++
			if h.Metrics != nil {
				baseline = append(baseline, e.sinceWindow(s, n, h.Metrics))
			}
		}
	}
	// The baseline's version for the PromQL templates: what most of them run.
	var baseVersion string
	for v, c := range baseVersions {
		if c > baseVersions[baseVersion] || (c == baseVersions[baseVersion] && v < baseVersion) {
			baseVersion = v
		}
	}
	var results []health.Result
	for _, g := range e.Config.Gates {
		if g.Prometheus() {
			results = append(results, e.promGate(ctx, g, s.Release, baseVersion, canaryHosts, baseHosts))
		} else {
			results = append(results, g.Evaluate(canary, baseline))
		}
	}
	return results
}

func (e *Engine) promGate(ctx context.Context, g health.Gate, release, base string, canaryHosts, baseHosts []string) health.Result {
	if e.Prometheus == nil {
		return health.Result{Gate: g.Name, Verdict: health.Inconclusive, Err: "no prometheus is configured"}
	}
	c := e.Prometheus.Measure(ctx, g, health.NewVars(release, release, base, canaryHosts))
	b := e.Prometheus.Measure(ctx, g, health.NewVars(base, release, base, baseHosts))
	return g.Judge(c, b)
}

// noteWindow records the counters of hosts seen for the first time in this bake:
// the tier's hosts once they run the release, the others on their baseline.
func (e *Engine) noteWindow(s *State, hosts map[string]HostView) {
	on := map[string]bool{}
	for _, n := range s.Activated {
		on[n] = true
	}
	for _, n := range s.Hosts {
		h := hosts[n]
		if h.Metrics == nil || (on[n] && h.Active != s.Release) || (!on[n] && h.Active != s.Baseline[n]) {
			continue
		}
		e.sinceWindow(s, n, h.Metrics)
	}
}

// sinceWindow returns how much each counter of host grew since the bake window
// began, recording the window's start the first time it sees the host. A counter
// that went down was reset (the service restarted): it counts from zero.
func (e *Engine) sinceWindow(s *State, host string, now map[string]float64) map[string]float64 {
	w := &e.win
	w.mu.Lock()
	defer w.mu.Unlock()
	if key := fmt.Sprintf("%s/%d/%d", s.Release, s.Tier, s.Since.UnixNano()); w.key != key {
		w.key, w.start = key, map[string]map[string]float64{}
	}
	start, ok := w.start[host]
	if !ok {
		w.start[host] = now
		return map[string]float64{}
	}
	d := make(map[string]float64, len(now))
	for k, v := range now {
		if b := start[k]; v >= b {
			d[k] = v - b
		} else {
			d[k] = v
		}
	}
	return d
}

// Rollback ends a running rollout by sending every activated host back, for !abort
// and !rollback.
func (e *Engine) Rollback(ctx context.Context, s *State, reason string) error {
	if s.Phase.Terminal() || s.Phase == PhaseRollingBack {
		return fmt.Errorf("%s is already %s", s.Release, s.Phase)
	}
	return e.rollback(ctx, s, reason)
}

// rollback records the decision, then sends every activated host back to its
// baseline.
func (e *Engine) rollback(ctx context.Context, s *State, reason string) error {
	s.Reason = reason
	if err := e.save(ctx, s, PhaseRollingBack); err != nil {
		return err
	}
	text := fmt.Sprintf("ROLLBACK %s: %s; %d hosts go back", s.Release, reason, len(s.Activated))
	if e.Committers != nil {
		if m := e.Committers(ctx, s.Release); m != "" {
			text += ". " + m + ": please look"
		}
	}
	e.Say(ctx, bot.Post{Text: text, Priority: bot.PriorityUrgent})
	return e.stepRollingBack(ctx, s, nil, e.Clock.Now())
}

func (e *Engine) stepRollingBack(ctx context.Context, s *State, hosts map[string]HostView, now time.Time) error {
	byBase := map[string][]string{}
	for _, n := range s.Activated {
		if b := s.Baseline[n]; b != "" {
			byBase[b] = append(byBase[b], n)
		}
	}
	for b, hs := range byBase {
		if err := e.Fleet.Activate(ctx, hs, b); err != nil {
			return err
		}
	}
	if hosts == nil {
		return nil // check on the next step
	}
	for _, n := range s.Activated {
		if b := s.Baseline[n]; b != "" && hosts[n].Active != b && !hosts[n].Stale {
			return nil
		}
	}
	if err := e.save(ctx, s, PhaseRolledBack); err != nil {
		return err
	}
	e.Say(ctx, bot.Post{Text: fmt.Sprintf("%s rolled back: %d hosts are on their previous release", s.Release, len(s.Activated)), Priority: bot.PriorityUrgent})
	return nil
}

func without(xs, drop []string) []string {
	d := map[string]bool{}
	for _, x := range drop {
		d[x] = true
	}
	var out []string
	for _, x := range xs {
		if !d[x] {
			out = append(out, x)
		}
	}
	return out
}
