package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/rollout"
	"github.com/shipbot/shipbot/distributor/fleet"
	"github.com/shipbot/shipbot/store"
)

// fleetView adapts the fleet API's registry and desired state to the engine.
type fleetView struct{ f *fleet.Server }

var _ rollout.Fleet = fleetView{}

func (v fleetView) Hosts(release string) []rollout.HostView {
	var out []rollout.HostView
	for _, h := range v.f.Hosts() {
		st := h.Staged[release]
		hv := rollout.HostView{Name: h.Host.Name, Staged: st.Done, StageFailed: st.Error, Active: h.Active, Stale: h.Stale,
			Bytes: st.Bytes, Total: st.Total, Rate: st.Rate}
		if h.MetricsRelease == h.Active {
			hv.Metrics = h.Metrics // counters of an earlier release would speak for this one
		}
		if h.Health != nil {
			ok := h.Health.OK
			hv.Healthy = &ok
		}
		out = append(out, hv)
	}
	return out
}

func (v fleetView) Stage(ctx context.Context, hosts []string, release string) error {
	return v.f.SetDesired(ctx, hosts, func(_ string, d *fleet.Desired) {
		if !contains(d.Stage, release) {
			d.Stage = append(d.Stage, release)
		}
	})
}

func (v fleetView) Activate(ctx context.Context, hosts []string, release string) error {
	return v.f.SetDesired(ctx, hosts, func(_ string, d *fleet.Desired) {
		if !contains(d.Stage, release) {
			d.Stage = append(d.Stage, release)
		}
		d.Active = release
	})
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// rollouts runs the engine: one rollout at a time, stepped every Tick, resumed after
// a restart.
type rollouts struct {
	eng   *rollout.Engine
	db    *store.DB
	bot   *bot.Bot
	clock clockwork.Clock
	log   *zap.Logger
	tick  time.Duration
	// rollbackOnRestart rolls back, instead of resuming, a rollout found running
	// at start.
	rollbackOnRestart bool
	// tap holds a copy of the latest saved state, for the dashboard.
	tap *stateTap

	mu  sync.Mutex
	cur *rollout.State
	// running is the release being rolled out, readable without mu: the chat
	// commands ask from inside a store transaction, while a step may hold mu and wait
	// for the store.
	running atomic.Value // string
}

// publish records the running release for Running. Called with mu held.
func (r *rollouts) publish() {
	rel := ""
	if r.cur != nil && !r.cur.Phase.Terminal() {
		rel = r.cur.Release
	}
	r.running.Store(rel)
}

// onShip starts the rollout of a release that !ship accepted.
func (r *rollouts) onShip(ctx context.Context, rel *bot.Release) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.eng.Start(ctx, r.cur, rel.Version)
	if err != nil {
		r.log.Error("rollout did not start", zap.String("release", rel.Version), zap.Error(err))
		r.bot.Say(ctx, bot.Post{Text: fmt.Sprintf("%s: the rollout did not start: %v", rel.Version, err), Priority: bot.PriorityUrgent})
		if s == nil {
			return
		}
	}
	r.cur = s
	r.publish()
}

// Run resumes a rollout left by an earlier run, then steps until ctx is done.
func (r *rollouts) Run(ctx context.Context) error {
	cur, err := r.db.ActiveRollout()
	if err != nil {
		return fmt.Errorf("load rollout: %w", err)
	}
	if cur != nil {
		r.tap.set(cur)
		r.mu.Lock()
		r.cur = cur
		r.publish()
		r.mu.Unlock()
		switch {
		case r.rollbackOnRestart && cur.Phase != rollout.PhaseRollingBack:
			r.mu.Lock()
			err := r.eng.Rollback(ctx, cur, fmt.Sprintf("shipbot restarted during the rollout (%s, tier %d) and rollout.rollback_on_restart is set", cur.Phase, cur.Tier))
			r.publish()
			r.mu.Unlock()
			if err != nil {
				r.log.Error("roll back on restart", zap.Error(err))
			}
		default:
			r.bot.Say(ctx, bot.Post{Text: fmt.Sprintf("shipbot restarted: resuming the rollout of %s (%s, tier %d, %d of %d hosts activated)",
				cur.Release, cur.Phase, cur.Tier, len(cur.Activated), len(cur.Hosts)), Priority: bot.PriorityNormal})
			if err := r.eng.Resume(ctx, cur); err != nil {
				r.log.Error("resume rollout", zap.Error(err))
			}
		}
	}
	t := r.clock.NewTicker(r.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.Chan():
		}
		r.mu.Lock()
		if r.cur != nil && !r.cur.Phase.Terminal() {
			if err := r.eng.Step(ctx, r.cur); err != nil && ctx.Err() == nil {
				r.log.Error("rollout step", zap.String("release", r.cur.Release), zap.Error(err))
			}
			r.publish()
		}
		r.mu.Unlock()
	}
}

var _ bot.RolloutControl = (*rollouts)(nil)

// Running implements bot.RolloutControl without taking mu.
func (r *rollouts) Running() (string, bool) {
	rel, _ := r.running.Load().(string)
	return rel, rel != ""
}

// change applies fn to the running rollout and saves it.
func (r *rollouts) change(ctx context.Context, fn func(s *rollout.State) (string, error)) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil || r.cur.Phase.Terminal() {
		return "", fmt.Errorf("no rollout is running")
	}
	line, err := fn(r.cur)
	if err != nil {
		return "", err
	}
	return line, r.tap.SaveRollout(ctx, r.cur) // through the tap: the dashboard and !status see it
}

// Pause implements bot.RolloutControl.
func (r *rollouts) Pause(ctx context.Context, by string) (string, error) {
	return r.change(ctx, func(s *rollout.State) (string, error) {
		s.Paused = true
		return fmt.Sprintf("%s paused by %s: it holds at the next tier boundary; !resume continues", s.Release, by), nil
	})
}

// Resume implements bot.RolloutControl.
func (r *rollouts) Resume(ctx context.Context, by string) (string, error) {
	return r.change(ctx, func(s *rollout.State) (string, error) {
		if !s.Paused {
			return "", fmt.Errorf("%s is not paused", s.Release)
		}
		s.Paused = false
		return fmt.Sprintf("%s resumed by %s", s.Release, by), nil
	})
}

// Promote implements bot.RolloutControl.
func (r *rollouts) Promote(ctx context.Context, by string) (string, error) {
	return r.change(ctx, func(s *rollout.State) (string, error) {
		if s.Phase != rollout.PhaseBaking {
			return "", fmt.Errorf("%s is %s, not baking", s.Release, s.Phase)
		}
		s.Promote = true
		return fmt.Sprintf("%s: %s skips the rest of tier %d's bake", s.Release, by, s.Tier), nil
	})
}

// Rollback implements bot.RolloutControl.
func (r *rollouts) Rollback(ctx context.Context, by, reason string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cur == nil || r.cur.Phase.Terminal() {
		return "", fmt.Errorf("no rollout is running")
	}
	err := r.eng.Rollback(ctx, r.cur, reason)
	r.publish()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: rollback requested by %s", r.cur.Release, by), nil
}

// Status implements bot.RolloutControl: the phase, the tier, and the hosts in each
// state.
func (r *rollouts) Status(ctx context.Context) []string {
	s := r.tap.get() // the last saved state; a step may hold mu for a while
	if s == nil || s.Phase.Terminal() {
		return nil
	}
	tier := r.eng.Config.Tiers[s.Tier]
	line := fmt.Sprintf("rollout of %s: %s, tier %s (%d of %d), %d of %d hosts switched", s.Release, s.Phase,
		tier.Name, s.Tier+1, len(r.eng.Config.Tiers), len(s.Activated), len(s.Hosts))
	if s.Phase == rollout.PhaseBaking && tier.Bake > 0 {
		left := tier.Bake - r.clock.Since(s.Since)
		if left > 0 {
			line += fmt.Sprintf(", bake %s left", left.Round(time.Second))
		}
	}
	if s.Paused {
		line += ", PAUSED (!resume)"
	}
	out := []string{line}
	var staged, unhealthy, stale int
	for _, h := range r.eng.Fleet.Hosts(s.Release) {
		if h.Staged {
			staged++
		}
		if h.Healthy != nil && !*h.Healthy {
			unhealthy++
		}
		if h.Stale {
			stale++
		}
	}
	out = append(out, fmt.Sprintf("hosts: %d staged, %d unhealthy, %d stale, %d excluded", staged, unhealthy, stale, len(s.Excluded)))
	if s.Phase == rollout.PhaseBaking && len(r.eng.Config.Gates) > 0 {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var gs []string
		for _, res := range r.eng.Readings(ctx, s) {
			gs = append(gs, res.String())
		}
		out = append(out, "gates now: "+strings.Join(gs, ", "))
	}
	return out
}
