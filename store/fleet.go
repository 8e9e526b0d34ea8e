package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/fleet"
)

var _ fleet.Store = (*DB)(nil)

// LoadDesired returns every host's desired state.
func (s *DB) LoadDesired() (map[string]fleet.Desired, error) {
	out := map[string]fleet.Desired{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDesired).ForEach(func(k, v []byte) error {
			var d fleet.Desired
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("desired state of %s: %w", k, err)
			}
			out[string(k)] = d
			return nil
		})
	})
	return out, err
}

// SaveDesired writes the desired state of several hosts in one transaction.
func (s *DB) SaveDesired(ds map[string]fleet.Desired) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDesired)
		for host, d := range ds {
			v, err := json.Marshal(d)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(host), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// SaveManifest stores a release's signed manifest.
func (s *DB) SaveManifest(release string, m *distributor.Signed) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketManifests).Put([]byte(release), v) })
}

// Manifest returns a release's signed manifest, or nil if there is none.
func (s *DB) Manifest(release string) (*distributor.Signed, error) {
	var out *distributor.Signed
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketManifests).Get([]byte(release))
		if v == nil {
			return nil
		}
		out = &distributor.Signed{}
		return json.Unmarshal(v, out)
	})
	return out, err
}
