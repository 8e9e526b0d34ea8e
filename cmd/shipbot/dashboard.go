package main

import (
	"context"
	"encoding/json"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/dashboard"
	"github.com/shipbot/shipbot/bot/rollout"
	"github.com/shipbot/shipbot/store"
)

// stateTap passes rollout saves to the store and keeps a copy of the latest
// state for the dashboard, which must never wait for the engine's lock.
type stateTap struct {
	db *store.DB
	mu sync.Mutex
	st *rollout.State
}

func (t *stateTap) SaveRollout(ctx context.Context, s *rollout.State) error {
	if err := t.db.SaveRollout(ctx, s); err != nil {
		return err
	}
	t.set(s)
	return nil
}

func (t *stateTap) set(s *rollout.State) {
	var cp *rollout.State
	if s != nil {
		b, _ := json.Marshal(s)
		cp = new(rollout.State)
		json.Unmarshal(b, cp)
	}
	t.mu.Lock()
	t.st = cp
	t.mu.Unlock()
}

func (t *stateTap) get() *rollout.State {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.st
}

// dashSource builds the dashboard's snapshots from the store, the fleet registry
// and the rollout, and records the gates' readings while a tier bakes.
type dashSource struct {
	s     *server
	clock clockwork.Clock

	mu     sync.Mutex
	series map[string][]dashboard.Gate // by release
	rate   struct {
		release string
		at      time.Time
		bytes   int64
		value   float64
	}
}

// sampleGates runs until ctx is done, reading the gates every interval while a
// tier bakes.
func (d *dashSource) sampleGates(ctx context.Context, every time.Duration) {
	if d.s.rollouts == nil || len(d.s.rollouts.eng.Config.Gates) == 0 {
		return
	}
	t := d.clock.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		st := d.s.rollouts.tap.get()
		if st == nil || st.Phase != rollout.PhaseBaking {
			continue
		}
		tier := ""
		if st.Tier < len(d.s.cfg.Rollout.Tiers) {
			tier = d.s.cfg.Rollout.Tiers[st.Tier].Name
		}
		rs := d.s.rollouts.eng.Readings(ctx, st)
		now := d.clock.Now()
		d.mu.Lock()
		if d.series == nil {
			d.series = map[string][]dashboard.Gate{}
		}
		gs := d.series[st.Release]
		for i, r := range rs {
			if i >= len(gs) {
				gs = append(gs, dashboard.Gate{Name: r.Gate, Unit: string(r.Unit)})
			}
			p := dashboard.Point{T: now, Tier: tier}
			if !r.NoData && r.Err == "" && !math.IsNaN(r.Canary) {
				v := r.Canary
				p.Canary = &v
			}
			if r.HaveBaseline {
				v := r.Baseline
				p.Baseline = &v
			}
			gs[i].Points = append(gs[i].Points, p)
			if n := len(gs[i].Points); n > 600 {
				gs[i].Points = gs[i].Points[n-600:]
			}
		}
		d.series[st.Release] = gs
		if len(d.series) > 5 { // keep the charts of the last few releases
			for rel := range d.series {
				if rel != st.Release {
					delete(d.series, rel)
					break
				}
			}
		}
		d.mu.Unlock()
	}
}

// Snapshot implements dashboard.Source.
func (d *dashSource) Snapshot(ctx context.Context, rack string) (*dashboard.Snapshot, error) {
	now := d.clock.Now()
	snap := &dashboard.Snapshot{At: now, Racks: []dashboard.Rack{}, Events: []dashboard.Event{}, History: []dashboard.ReleaseSummary{}}
	var recent []*bot.Release
	if err := d.s.db.View(ctx, func(tx bot.Tx) error {
		var err error
		recent, err = tx.RecentReleases(10)
		return err
	}); err != nil {
		return nil, err
	}
	var st *rollout.State
	if d.s.rollouts != nil {
		st = d.s.rollouts.tap.get()
	}
	var cur *bot.Release
	if st != nil && !st.Phase.Terminal() {
		for _, r := range recent {
			if r.Version == st.Release {
				cur = r
			}
		}
	}
	if cur == nil && len(recent) > 0 {
		cur = recent[0]
	}
	for _, r := range recent {
		rs := dashboard.ReleaseSummary{Version: r.Version, State: string(r.State), Head: r.Head, CreatedAt: r.CreatedAt, Outcome: r.Outcome}
		if !r.FinishedAt.IsZero() {
			t := r.FinishedAt
			rs.FinishedAt = &t
		}
		snap.History = append(snap.History, rs)
	}
	if cur != nil {
		rv := &dashboard.Release{Version: cur.Version, State: string(cur.State), Range: cur.Range, Commits: cur.Commits,
			Head: cur.Head, CreatedAt: cur.CreatedAt, Outcome: cur.Outcome, Committers: []dashboard.Committer{}}
		if !cur.ShippedAt.IsZero() {
			t := cur.ShippedAt
			rv.ShippedAt = &t
		}
		for _, c := range cur.Committers {
			rv.Committers = append(rv.Committers, dashboard.Committer{Person: c.Person, Ready: c.Ready})
		}
		snap.Release = rv
		if st != nil && st.Release == cur.Version {
			snap.Rollout = d.rolloutView(st, now)
		}
	}
	evs, err := d.s.db.RecentEvents(40)
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		text := e.Text
		switch {
		case e.Kind == "rollout" && e.Reply != "":
			text += ": " + e.Reply // the phase, and why
		case e.Reply != "" && (e.Kind != "command" || text == ""):
			text = e.Reply
		}
		snap.Events = append(snap.Events, dashboard.Event{At: e.At, Actor: e.Actor, Release: e.Release, Kind: e.Kind,
			Text: bot.Truncate(text, 300), Decision: e.Decision})
	}
	if d.s.push != nil {
		release := "" // racks and hosts show without a release, the push does not
		if cur != nil {
			release = cur.Version
		}
		d.fleetView(snap, release, rack, now)
	}
	return snap, nil
}

func (d *dashSource) rolloutView(st *rollout.State, now time.Time) *dashboard.Rollout {
	ro := &dashboard.Rollout{Phase: string(st.Phase), Tier: st.Tier, Paused: st.Paused, Reason: st.Reason, Tiers: []dashboard.Tier{}, Gates: []dashboard.Gate{}}
	for i, t := range d.s.cfg.Rollout.Tiers {
		tv := dashboard.Tier{Name: t.Name, Size: t.Hosts, State: dashboard.TierPending, Bake: t.Bake.Seconds()}
		switch {
		case st.Phase == rollout.PhaseDone || (st.Phase != rollout.PhaseStaging && i < st.Tier):
			tv.State = dashboard.TierPassed
		case i == st.Tier && (st.Phase == rollout.PhaseRollingBack || st.Phase == rollout.PhaseRolledBack):
			tv.State = dashboard.TierFailed
		case i == st.Tier && st.Phase == rollout.PhaseBaking:
			tv.State = dashboard.TierBaking
			tv.BakeLeft = max(0, (t.Bake - now.Sub(st.Since)).Seconds())
		}
		ro.Tiers = append(ro.Tiers, tv)
	}
	d.mu.Lock()
	for _, g := range d.series[st.Release] {
		g.Points = append([]dashboard.Point(nil), g.Points...)
		ro.Gates = append(ro.Gates, g)
	}
	d.mu.Unlock()
	return ro
}

// fleetView fills the push, the racks and the drilled-into rack's hosts.
func (d *dashSource) fleetView(snap *dashboard.Snapshot, release, rack string, now time.Time) {
	push := &dashboard.Push{Release: release, FromSeeder: d.s.push.seeder.UploadedBytesOf(release)}
	racks := map[string]*dashboard.Rack{}
	for _, h := range d.s.push.fleet.Hosts() {
		st := h.Staged[release]
		total := st.Total
		if total == 0 {
			if art, ok := d.s.push.seeder.Torrent(release); ok {
				total = art.Manifest.Size
			}
		}
		r := racks[h.Host.Rack]
		if r == nil {
			r = &dashboard.Rack{Name: h.Host.Rack, Active: map[string]int{}}
			racks[h.Host.Rack] = r
		}
		r.Hosts++
		r.Bytes += st.Bytes
		r.Total += total
		if st.Done {
			r.Staged++
			push.Staged++
		}
		if h.Active != "" {
			r.Active[h.Active]++
		}
		if h.Stale {
			r.Stale++
		} else if h.Health != nil && !h.Health.OK {
			r.Unhealthy++
		}
		push.Hosts++
		push.Bytes += st.Bytes
		push.Total += total
		push.FromPeers += st.FromPeers
		push.FromWebseed += st.FromWebseed
		if h.Host.Rack == rack {
			hv := dashboard.Host{Name: h.Host.Name, Active: h.Active, Stale: h.Stale}
			if total > 0 {
				hv.Staged = float64(st.Bytes) / float64(total)
			}
			if h.Health != nil {
				ok := h.Health.OK
				hv.Healthy = &ok
			}
			snap.Hosts = append(snap.Hosts, hv)
		}
	}
	// The aggregate rate: bytes held now against a sample a second or more ago.
	d.mu.Lock()
	if d.rate.release != release || push.Bytes < d.rate.bytes {
		d.rate.release, d.rate.at, d.rate.bytes, d.rate.value = release, now, push.Bytes, 0
	} else if dt := now.Sub(d.rate.at); dt >= time.Second {
		d.rate.value = float64(push.Bytes-d.rate.bytes) / dt.Seconds()
		d.rate.at, d.rate.bytes = now, push.Bytes
	}
	push.Rate = d.rate.value
	d.mu.Unlock()
	if release != "" {
		snap.Push = push
	}
	names := make([]string, 0, len(racks))
	for n := range racks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		snap.Racks = append(snap.Racks, *racks[n])
	}
	if rack != "" {
		snap.Rack = rack
		sort.Slice(snap.Hosts, func(i, j int) bool { return snap.Hosts[i].Name < snap.Hosts[j].Name })
	}
}
