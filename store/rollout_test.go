package store_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/rollout"
)

// TestRolloutTransitionsAudited: each change of phase, tier or reason is one audit
// event; saves that change none of them (an inconclusive look, a pause) add none;
// the end marks the release, in the same transaction.
func TestRolloutTransitionsAudited(t *testing.T) {
	db := mustOpen(t, filepath.Join(t.TempDir(), "shipbot.db"))
	defer db.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	if err := db.Update(ctx, func(tx bot.Tx) error {
		return tx.CreateRelease(&bot.Release{Version: "v2", State: bot.StateShipping, CreatedAt: at})
	}); err != nil {
		t.Fatal(err)
	}
	st := &rollout.State{Release: "v2", Phase: rollout.PhaseStaging, Since: at, Hosts: []string{"h1", "h2"}}
	save := func() {
		t.Helper()
		if err := db.SaveRollout(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	save()
	st.Phase = rollout.PhaseBaking
	save()
	st.Inconclusive++ // a look without enough data
	save()
	st.Paused = true
	save()
	if cur, err := db.ActiveRollout(); err != nil || cur == nil || cur.Inconclusive != 1 || !cur.Paused {
		t.Fatalf("the quiet saves were not stored: %+v %v", cur, err)
	}
	st.Phase, st.Reason = rollout.PhaseRollingBack, "tier a2 failed its gates"
	save()
	st.Phase = rollout.PhaseRolledBack
	save()

	evs, err := db.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Kind == "rollout" {
			got = append(got, e.Text)
		}
	}
	if want := "staging tier 0, baking tier 0, rolling_back tier 0, rolled_back tier 0"; strings.Join(got, ", ") != want {
		t.Errorf("audited transitions: %q, want %q", strings.Join(got, ", "), want)
	}
	var r *bot.Release
	db.View(ctx, func(tx bot.Tx) error { r, err = tx.Release("v2"); return err })
	if r.State != bot.StateRolledBack || r.Outcome != "rolled back: tier a2 failed its gates" {
		t.Errorf("release after the rollback: %s %q", r.State, r.Outcome)
	}
	if cur, _ := db.ActiveRollout(); cur != nil {
		t.Errorf("an ended rollout is still active: %+v", cur)
	}
}
