package store

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/rollout"
)

var _ rollout.Store = (*DB)(nil)

// SaveRollout saves a rollout's state, audits the transition, and when the rollout
// ends marks its release done or rolled back, all in one transaction. A save that
// changes neither the phase, the tier nor the reason (an inconclusive look, a
// pause) is not a transition and adds no audit event.
func (s *DB) SaveRollout(ctx context.Context, st *rollout.State) error {
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.Update(ctx, func(btx bot.Tx) error {
		tx := btx.(*txn).tx
		b := tx.Bucket(bucketRollouts)
		var prev rollout.State
		if old := b.Get([]byte(st.Release)); old != nil && json.Unmarshal(old, &prev) == nil &&
			prev.Phase == st.Phase && prev.Tier == st.Tier && prev.Reason == st.Reason {
			return b.Put([]byte(st.Release), v)
		}
		if err := b.Put([]byte(st.Release), v); err != nil {
			return err
		}
		text := fmt.Sprintf("%s tier %d", st.Phase, st.Tier)
		if err := btx.Append(&bot.Event{At: st.Since, Actor: "shipbot", Release: st.Release, Kind: "rollout",
			Text: text, Decision: bot.Info, Reply: st.Reason}); err != nil {
			return err
		}
		if !st.Phase.Terminal() {
			return nil
		}
		r, err := btx.Release(st.Release)
		if err != nil {
			return nil // a rollout of a release the ledger does not hold (tests)
		}
		r.FinishedAt = st.Since
		if st.Phase == rollout.PhaseDone {
			r.State, r.Outcome = bot.StateDone, fmt.Sprintf("done on %d hosts", len(st.Hosts))
		} else {
			r.State, r.Outcome = bot.StateRolledBack, "rolled back: "+st.Reason
		}
		return btx.PutRelease(r)
	})
}

// ActiveRollout returns the rollout that has not ended, or nil.
func (s *DB) ActiveRollout() (*rollout.State, error) {
	var out *rollout.State
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRollouts).ForEach(func(k, v []byte) error {
			var st rollout.State
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("rollout %s: %w", k, err)
			}
			if !st.Phase.Terminal() {
				out = &st
			}
			return nil
		})
	})
	return out, err
}
