package seeder_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/shipbot/shipbot/bot/chattest"
	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/disttest"
	"github.com/shipbot/shipbot/distributor/seeder"
)

func TestMakeTorrentMatchesMktorrent(t *testing.T) {
	if _, err := exec.LookPath("mktorrent"); err != nil {
		t.Fatal("mktorrent is not installed: run make deps")
	}
	dir := t.TempDir()
	for _, size := range []int{1, 256<<10 + 1, 5<<20 + 7} {
		art := disttest.Artifact(t, dir, fmt.Sprintf("app-%d.tar.gz", size), size)
		tor, err := seeder.MakeTorrent(art, "r1", "v1", "http://127.0.0.1:1/announce", "", "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		log2 := 0
		for 1<<log2 < tor.Manifest.PieceLength {
			log2++
		}
		out := filepath.Join(dir, fmt.Sprintf("mk-%d.torrent", size))
		cmd := exec.Command("mktorrent", "-p", "-l", fmt.Sprint(log2), "-a", "http://127.0.0.1:1/announce", "-o", out, art)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mktorrent: %v\n%s", err, b)
		}
		mi, err := metainfo.LoadFromFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if got := mi.HashInfoBytes().HexString(); got != tor.Manifest.InfoHash {
			t.Errorf("size %d: mktorrent infohash %s, ours %s", size, got, tor.Manifest.InfoHash)
		}
		sum := sha256.Sum256(must(os.ReadFile(art)))
		if tor.Manifest.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("sha256 %s", tor.Manifest.SHA256)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestMakeTorrentDetectsDamage(t *testing.T) {
	art := disttest.Artifact(t, t.TempDir(), "app", 1000)
	_, err := seeder.MakeTorrent(art, "r1", "v1", "", "", strings.Repeat("0", 64), time.Now())
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged artifact: %v", err)
	}
	if _, err := seeder.MakeTorrent(filepath.Join(t.TempDir(), "missing"), "r1", "v1", "", "", "", time.Now()); err == nil {
		t.Error("missing artifact accepted")
	}
}

func TestWebseedRanges(t *testing.T) {
	art := disttest.Artifact(t, t.TempDir(), "app.tar.gz", 100000)
	want := must(os.ReadFile(art))
	o := disttest.StartOrigin(t, art, "r1", nil)
	get := func(path, rng string) (int, []byte) {
		req, _ := http.NewRequest("GET", o.Server.URL+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := get("/webseed/r1/app.tar.gz", ""); code != 200 || string(b) != string(want) {
		t.Errorf("whole file: %d, %d bytes", code, len(b))
	}
	if code, b := get("/webseed/r1/app.tar.gz", "bytes=1000-1999"); code != 206 || string(b) != string(want[1000:2000]) {
		t.Errorf("range: %d, %d bytes", code, len(b))
	}
	if code, b := get("/webseed/r1/app.tar.gz", "bytes=99990-200000"); code != 206 || string(b) != string(want[99990:]) {
		t.Errorf("range over the end is cut: %d, %d bytes", code, len(b))
	}
	if code, b := get("/webseed/r1/app.tar.gz", "bytes=100000-100010"); code != 416 {
		t.Errorf("range past the end: %d %q", code, b)
	}
	if code, _ := get("/webseed/r2/app.tar.gz", ""); code != 404 {
		t.Errorf("unknown release: %d", code)
	}
	if code, _ := get("/webseed/r1/other", ""); code != 404 {
		t.Errorf("wrong name: %d", code)
	}
}

// Seeding does not read the artifact again: it is complete the moment it is added.
func TestSeedDoesNotRehash(t *testing.T) {
	art := disttest.Artifact(t, t.TempDir(), "app", 8<<20)
	o := disttest.StartOrigin(t, art, "r1", nil)
	tor, ok := o.Seeder.Torrent("r1")
	if !ok || tor.Manifest.Size != 8<<20 {
		t.Fatal("not seeding")
	}
	// A file of the wrong size is refused rather than served.
	bad := disttest.Artifact(t, t.TempDir(), "app", 8<<20)
	tor2, _ := seeder.MakeTorrent(bad, "r2", "v2", "", "", "", time.Now())
	os.Truncate(bad, 100)
	if err := o.Seeder.Seed(tor2); err == nil {
		t.Error("seeded a truncated file")
	}
}

// TestAria2cDownloadsFromOurSeeder: a stock client, told only our tracker, gets the
// artifact from our seeder over BitTorrent.
func TestAria2cDownloadsFromOurSeeder(t *testing.T) {
	if _, err := exec.LookPath("aria2c"); err != nil {
		t.Fatal("aria2c is not installed: run make deps")
	}
	art := disttest.Artifact(t, t.TempDir(), "app.tar.gz", 6<<20+3)
	o := disttest.StartOrigin(t, art, "r1", nil)
	dir := t.TempDir()
	mi := *o.Torrent.MetaInfo
	mi.Announce = o.AnnounceURL(distributor.Host{Name: "aria2", Rack: "r9", DC: "dc1"})
	mi.UrlList = nil // BitTorrent only: no webseed to fall back on
	tf := filepath.Join(dir, "r1.torrent")
	fh, _ := os.Create(tf)
	if err := mi.Write(fh); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out := filepath.Join(dir, "out")
	cmd := exec.CommandContext(ctx, "aria2c", "--enable-dht=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--seed-time=0", fmt.Sprintf("--listen-port=%d", chattest.FreePort(t)), "--dir="+out, "--console-log-level=warn", "--summary-interval=0", tf)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("aria2c: %v\n%s", err, b)
	}
	got := must(os.ReadFile(filepath.Join(out, "app.tar.gz")))
	if sum := sha256.Sum256(got); hex.EncodeToString(sum[:]) != o.Torrent.Manifest.SHA256 {
		t.Errorf("aria2c's copy has the wrong sha256")
	}
	if up := o.Seeder.UploadedBytes(); up < 6<<20 {
		t.Errorf("our seeder uploaded %d bytes; aria2c got the data elsewhere?", up)
	}
	if len(o.Handouts()) == 0 {
		t.Error("aria2c never announced to our tracker")
	}
}
