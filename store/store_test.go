package store_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/store"
)

func mustOpen(tb testing.TB, path string) *store.DB {
	tb.Helper()
	db, err := store.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

func TestReleasesSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shipbot.db")
	ctx := context.Background()
	db := mustOpen(t, path)
	at := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	err := db.Update(ctx, func(tx bot.Tx) error {
		for _, v := range []string{"v1", "v2", "v3"} {
			r := &bot.Release{Version: v, State: bot.StateCheckin, CreatedAt: at, Committers: []bot.Committer{{Person: "alice"}}}
			if err := tx.CreateRelease(r); err != nil {
				return err
			}
		}
		r, err := tx.Release("v1")
		if err != nil {
			return err
		}
		r.State = bot.StateDone
		if err := tx.PutRelease(r); err != nil {
			return err
		}
		if err := tx.SetLock(&bot.Lock{By: "dave", Reason: "freeze", At: at}); err != nil {
			return err
		}
		return tx.Append(&bot.Event{At: at, Actor: "dave", Kind: "command", Text: "!lock freeze", Decision: bot.Accepted})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = mustOpen(t, path)
	defer db.Close()
	err = db.View(ctx, func(tx bot.Tx) error {
		open, err := tx.OpenReleases()
		if err != nil {
			return err
		}
		if len(open) != 2 || open[0].Version != "v2" || open[1].Version != "v3" {
			t.Errorf("open releases after reopen: %v", open)
		}
		recent, err := tx.RecentReleases(2)
		if err != nil {
			return err
		}
		if len(recent) != 2 || recent[0].Version != "v3" || recent[0].Seq != 3 {
			t.Errorf("recent: %+v", recent)
		}
		l, err := tx.Lock()
		if err != nil || l == nil || l.By != "dave" || !l.At.Equal(at) {
			t.Errorf("lock after reopen: %+v %v", l, err)
		}
		if _, err := tx.Release("v9"); !errors.Is(err, bot.ErrNotFound) {
			t.Errorf("missing release: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := db.Events(0, 0)
	if err != nil || len(evs) != 1 || evs[0].Seq != 1 || evs[0].Text != "!lock freeze" {
		t.Errorf("events after reopen: %+v %v", evs, err)
	}
}

func TestCreateReleaseRefusesDuplicate(t *testing.T) {
	db := mustOpen(t, filepath.Join(t.TempDir(), "shipbot.db"))
	defer db.Close()
	ctx := context.Background()
	create := func() error {
		return db.Update(ctx, func(tx bot.Tx) error { return tx.CreateRelease(&bot.Release{Version: "v1"}) })
	}
	if err := create(); err != nil {
		t.Fatal(err)
	}
	if err := create(); !errors.Is(err, bot.ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	err := db.Update(ctx, func(tx bot.Tx) error { return tx.PutRelease(&bot.Release{Version: "v2"}) })
	if !errors.Is(err, bot.ErrNotFound) {
		t.Errorf("PutRelease of an unknown release: %v", err)
	}
}

// A failing function rolls back everything the transaction did, audit events too.
func TestUpdateIsAtomic(t *testing.T) {
	db := mustOpen(t, filepath.Join(t.TempDir(), "shipbot.db"))
	defer db.Close()
	ctx := context.Background()
	boom := errors.New("boom")
	err := db.Update(ctx, func(tx bot.Tx) error {
		tx.CreateRelease(&bot.Release{Version: "v1"})
		tx.Append(&bot.Event{Kind: "x"})
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	evs, _ := db.Events(0, 0)
	db.View(ctx, func(tx bot.Tx) error {
		if _, err := tx.Release("v1"); !errors.Is(err, bot.ErrNotFound) || len(evs) != 0 {
			t.Errorf("rolled-back transaction left state: %v, %d events", err, len(evs))
		}
		return nil
	})
}

func TestInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shipbot.db")
	db := mustOpen(t, path)
	defer db.Close()
	_, err := store.Open(path)
	if !errors.Is(err, store.ErrInUse) || !strings.Contains(err.Error(), "store "+path+" is in use") {
		t.Errorf("second open: %v", err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shipbot.db")
	mustOpen(t, path).Close()
	raw, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), []byte{0, 0, 0, 0, 0, 0, 0, 99})
	})
	raw.Close()
	if _, err := store.Open(path); err == nil || !strings.Contains(err.Error(), "schema v99 is newer") {
		t.Errorf("open of a newer schema: %v", err)
	}
}

func TestEventsPaging(t *testing.T) {
	db := mustOpen(t, filepath.Join(t.TempDir(), "shipbot.db"))
	defer db.Close()
	for i := 0; i < 10; i++ {
		db.Update(context.Background(), func(tx bot.Tx) error { return tx.Append(&bot.Event{Kind: "k"}) })
	}
	evs, err := db.Events(4, 3)
	if err != nil || len(evs) != 3 || evs[0].Seq != 5 || evs[2].Seq != 7 {
		t.Errorf("Events(4, 3) = %+v, %v", evs, err)
	}
}

func TestArtifactsPut(t *testing.T) {
	dir := t.TempDir()
	a := &store.Artifacts{Dir: dir, MaxSize: 1000}
	art, err := a.Put("v1", "app.tar.gz", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if art.Size != 5 || art.SHA256 != "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" {
		t.Errorf("artifact: %+v", art)
	}
	if b, _ := os.ReadFile(a.File(art)); string(b) != "hello" {
		t.Errorf("stored bytes %q", b)
	}

	_, err = a.Put("v2", "app.tar.gz", bytes.NewReader(make([]byte, 1001)))
	if !errors.Is(err, store.ErrTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "v2"))
	if len(ents) != 0 {
		t.Errorf("a refused upload left %v behind", ents)
	}
	for _, name := range []string{"", "../x", "a/b", ".hidden", "x\ny"} {
		if _, err := a.Put("v3", name, strings.NewReader("x")); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	if _, err := a.Put("v4", "app", strings.NewReader("")); err == nil {
		t.Error("empty artifact accepted")
	}
	// A reader that fails half-way leaves no file that looks complete.
	_, err = a.Put("v5", "app", &failingReader{n: 100})
	if err == nil {
		t.Fatal("failing upload accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "v5", "app")); !os.IsNotExist(err) {
		t.Errorf("failed upload left the final file: %v", err)
	}
}

type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}
