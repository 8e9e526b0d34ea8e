// Package store keeps shipbot's records in one bbolt file: releases with their
// check-ins, the channel lock, and the append-only audit log. It implements
// bot.Store; nothing else in shipbot imports bbolt.
package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/shipbot/shipbot/bot"
)

// SchemaVersion is the layout this build writes. Open migrates older files.
const SchemaVersion = 3

// migrations[i] moves a store from schema i to i+1. migrations[0] creates the
// buckets of a new file. Append here; never edit a released migration.
var migrations = []func(tx *bolt.Tx) error{
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketReleases, bucketReleaseSeq, bucketAudit, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// v2: the fleet's desired state per host, and signed manifests per release.
	func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketDesired, bucketManifests} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	// v3: rollouts.
	func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketRollouts)
		return err
	},
}

var (
	bucketMeta       = []byte("meta")
	bucketReleases   = []byte("releases")    // version -> JSON bot.Release
	bucketReleaseSeq = []byte("release_seq") // big-endian seq -> version
	bucketAudit      = []byte("audit")       // big-endian seq -> JSON bot.Event
	bucketDesired    = []byte("desired")     // host -> JSON fleet.Desired
	bucketManifests  = []byte("manifests")   // release -> JSON distributor.Signed
	bucketRollouts   = []byte("rollouts")    // release -> JSON rollout.State
	keySchema        = []byte("schema")
	keyLock          = []byte("lock")
)

// DB is an open store.
type DB struct {
	db   *bolt.DB
	path string
}

var _ bot.Store = (*DB)(nil)

// ErrInUse means another process holds the store file.
var ErrInUse = errors.New("in use by another process")

// Open opens or creates the store at path and migrates it to SchemaVersion.
func Open(path string) (*DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store %s is in use by another process (is another shipbot running?): %w", path, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	s := &DB{db: db, path: path}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: %w", path, err)
	}
	return s, nil
}

func (s *DB) migrate() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		have := 0
		if m := tx.Bucket(bucketMeta); m != nil {
			if v := m.Get(keySchema); len(v) == 8 {
				have = int(binary.BigEndian.Uint64(v))
			}
		}
		if have > SchemaVersion {
			return fmt.Errorf("schema v%d is newer than this shipbot understands (v%d); run a newer shipbot", have, SchemaVersion)
		}
		for v := have; v < SchemaVersion; v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("migrate schema v%d to v%d: %w", v, v+1, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, u64(SchemaVersion))
	})
}

// Close closes the file.
func (s *DB) Close() error { return s.db.Close() }

// Path is the file the store lives in.
func (s *DB) Path() string { return s.path }

// Update runs fn in one read-write transaction.
func (s *DB) Update(ctx context.Context, fn func(bot.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error { return fn(&txn{tx: tx}) })
}

// View runs fn in one read-only transaction.
func (s *DB) View(ctx context.Context, fn func(bot.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(&txn{tx: tx}) })
}

// Events returns the audit log from seq after (exclusive), oldest first, at most
// limit events (0 means all).
func (s *DB) Events(after uint64, limit int) ([]bot.Event, error) {
	var out []bot.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil; k, v = c.Next() {
			var e bot.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
			if limit > 0 && len(out) == limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// RecentEvents returns the last n events of the audit log, newest first.
func (s *DB) RecentEvents(n int) ([]bot.Event, error) {
	var out []bot.Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			var e bot.Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

type txn struct{ tx *bolt.Tx }

var _ bot.Tx = (*txn)(nil)

func (t *txn) Release(version string) (*bot.Release, error) {
	v := t.tx.Bucket(bucketReleases).Get([]byte(version))
	if v == nil {
		return nil, fmt.Errorf("release %s: %w", version, bot.ErrNotFound)
	}
	return decodeRelease(v)
}

func (t *txn) CreateRelease(r *bot.Release) error {
	b := t.tx.Bucket(bucketReleases)
	if b.Get([]byte(r.Version)) != nil {
		return fmt.Errorf("release %s: %w", r.Version, bot.ErrExists)
	}
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	r.Seq = seq
	if err := t.tx.Bucket(bucketReleaseSeq).Put(u64(seq), []byte(r.Version)); err != nil {
		return err
	}
	return t.put(r)
}

func (t *txn) PutRelease(r *bot.Release) error {
	if t.tx.Bucket(bucketReleases).Get([]byte(r.Version)) == nil {
		return fmt.Errorf("release %s: %w", r.Version, bot.ErrNotFound)
	}
	return t.put(r)
}

func (t *txn) put(r *bot.Release) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return t.tx.Bucket(bucketReleases).Put([]byte(r.Version), v)
}

func (t *txn) OpenReleases() ([]*bot.Release, error) {
	var out []*bot.Release
	err := t.each(false, func(r *bot.Release) bool {
		if !r.State.Terminal() {
			out = append(out, r)
		}
		return true
	})
	return out, err
}

func (t *txn) RecentReleases(n int) ([]*bot.Release, error) {
	var out []*bot.Release
	err := t.each(true, func(r *bot.Release) bool {
		out = append(out, r)
		return len(out) < n
	})
	return out, err
}

// each walks releases in creation order (or reverse) until fn returns false.
func (t *txn) each(reverse bool, fn func(*bot.Release) bool) error {
	c := t.tx.Bucket(bucketReleaseSeq).Cursor()
	k, v := c.First()
	if reverse {
		k, v = c.Last()
	}
	for ; k != nil; k, v = step(c, reverse) {
		r, err := t.Release(string(v))
		if err != nil {
			return err
		}
		if !fn(r) {
			return nil
		}
	}
	return nil
}

func step(c *bolt.Cursor, reverse bool) ([]byte, []byte) {
	if reverse {
		return c.Prev()
	}
	return c.Next()
}

func (t *txn) Lock() (*bot.Lock, error) {
	v := t.tx.Bucket(bucketMeta).Get(keyLock)
	if v == nil {
		return nil, nil
	}
	var l bot.Lock
	if err := json.Unmarshal(v, &l); err != nil {
		return nil, fmt.Errorf("decode lock: %w", err)
	}
	return &l, nil
}

func (t *txn) SetLock(l *bot.Lock) error {
	m := t.tx.Bucket(bucketMeta)
	if l == nil {
		return m.Delete(keyLock)
	}
	v, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return m.Put(keyLock, v)
}

func (t *txn) Append(e *bot.Event) error {
	b := t.tx.Bucket(bucketAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return b.Put(u64(seq), v)
}

func decodeRelease(v []byte) (*bot.Release, error) {
	var r bot.Release
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode release: %w", err)
	}
	return &r, nil
}

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}
