// Package seeder is the origin of every push: it turns a stored artifact into a
// private torrent (announce = our tracker, url-list = our webseed), seeds it over
// BitTorrent without hashing it again, and serves it over HTTP with range requests as
// the BEP 19 webseed that hosts fall back on when no peer has a piece.
package seeder

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/btclient"
)

// Torrent is a release's artifact made ready to push.
type Torrent struct {
	Manifest *distributor.Manifest // unsigned; shipbot signs it
	MetaInfo *metainfo.MetaInfo    // the .torrent, for stock clients
	Path     string                // the artifact on disk
}

// MakeTorrent reads the artifact once, computing its piece hashes (sha1) and its
// sha256 in the same pass. The piece length is distributor.PieceLength of the size
// unless PieceLengthOverride is set. If wantSHA256 is set and the file does not match it (the
// stored artifact was damaged), it fails. announce and webseed go into the .torrent;
// webseed should end in "/" (BEP 19: the client appends the file name).
func MakeTorrent(path, release, version, announce, webseed, wantSHA256 string, created time.Time) (*Torrent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("make torrent: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("make torrent: %w", err)
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return nil, fmt.Errorf("make torrent: %s is not a non-empty regular file", path)
	}
	plen := distributor.PieceLength(st.Size())
	if PieceLengthOverride > 0 {
		plen = PieceLengthOverride
	}
	pieces, sum, err := hashPieces(f, plen)
	if err != nil {
		return nil, fmt.Errorf("make torrent: read %s: %w", path, err)
	}
	if wantSHA256 != "" && sum != wantSHA256 {
		return nil, fmt.Errorf("make torrent: %s has sha256 %s, but %s was stored: the artifact on disk is damaged", path, sum, wantSHA256)
	}
	private := true
	info := metainfo.Info{
		Name:        filepath.Base(path),
		Length:      st.Size(),
		PieceLength: plen,
		Pieces:      pieces,
		Private:     &private,
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("make torrent: %w", err)
	}
	mi := &metainfo.MetaInfo{InfoBytes: infoBytes, Announce: announce, CreatedBy: "shipbot", CreationDate: created.Unix()}
	if webseed != "" {
		mi.UrlList = []string{webseed}
	}
	ih := mi.HashInfoBytes()
	return &Torrent{
		Manifest: &distributor.Manifest{
			Release: release, Version: version, Artifact: info.Name, Size: info.Length,
			SHA256: sum, InfoHash: ih.HexString(), PieceLength: plen, Created: created.UTC(), Info: infoBytes,
		},
		MetaInfo: mi,
		Path:     path,
	}, nil
}

// PieceLengthOverride, when positive, replaces the chosen piece length (benchmarks).
var PieceLengthOverride int64

// hashPieces returns the concatenated sha1 of each piece and the sha256 of the whole.
func hashPieces(r io.Reader, plen int64) ([]byte, string, error) {
	whole := sha256.New()
	var pieces []byte
	buf := make([]byte, plen)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			h := sha1.Sum(buf[:n])
			pieces = append(pieces, h[:]...)
			whole.Write(buf[:n])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, "", err
		}
	}
	return pieces, hex.EncodeToString(whole.Sum(nil)), nil
}

// Seeder seeds torrents over BitTorrent and serves their webseed.
type Seeder struct {
	// ListenAddr is the BitTorrent address (host:port; port 0 picks one).
	ListenAddr string
	// UploadRate caps upload in bytes/s; 0 means unlimited.
	UploadRate int64
	Log        *slog.Logger

	client *torrent.Client
	up     *rate.Limiter
	mu     sync.Mutex
	byRel  map[string]*Torrent
}

// Open starts the BitTorrent client.
func (s *Seeder) Open() error {
	s.up = btclient.Limiter(s.UploadRate)
	cl, err := btclient.New(btclient.Options{ListenAddr: s.ListenAddr, UploadLimiter: s.up, Log: s.Log, ConnsPerTorrent: 200})
	if err != nil {
		return err
	}
	s.client = cl
	s.byRel = map[string]*Torrent{}
	return nil
}

// Close stops seeding.
func (s *Seeder) Close() error {
	if s.client == nil {
		return nil
	}
	errs := s.client.Close()
	return errors.Join(errs...)
}

// SetUploadRate changes the upload cap (bytes/s; 0 means unlimited) while seeding.
func (s *Seeder) SetUploadRate(r int64) {
	if r <= 0 {
		s.up.SetLimit(rate.Inf)
		return
	}
	s.up.SetBurst(btclient.Burst(r))
	s.up.SetLimit(rate.Limit(r))
}

// Addr is where the seeder accepts BitTorrent connections.
func (s *Seeder) Addr() netip.AddrPort {
	for _, a := range s.client.ListenAddrs() {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap
		}
	}
	return netip.AddrPort{}
}

// Seed starts seeding t. The file was hashed by MakeTorrent, so it is marked
// complete without being read again.
func (s *Seeder) Seed(t *Torrent) error {
	spec, err := torrent.TorrentSpecFromMetaInfoErr(t.MetaInfo)
	if err != nil {
		return fmt.Errorf("seed %s: %w", t.Manifest.Release, err)
	}
	spec.Trackers = nil // the tracker knows the origin; it does not announce
	spec.Webseeds = nil
	pc := storage.NewMapPieceCompletion()
	spec.Storage = storage.NewFileOpts(storage.NewFileClientOpts{
		ClientBaseDir:   filepath.Dir(t.Path),
		PieceCompletion: pc,
		Logger:          s.Log,
	})
	tt, _, err := s.client.AddTorrentSpec(spec)
	if err != nil {
		return fmt.Errorf("seed %s: %w", t.Manifest.Release, err)
	}
	<-tt.GotInfo()
	if got := tt.BytesCompleted(); got != t.Manifest.Size {
		tt.Drop()
		return fmt.Errorf("seed %s: storage reports %d of %d bytes complete; is %s intact?", t.Manifest.Release, got, t.Manifest.Size, t.Path)
	}
	s.mu.Lock()
	s.byRel[t.Manifest.Release] = t
	s.mu.Unlock()
	return nil
}

// Stop stops seeding a release.
func (s *Seeder) Stop(release string) {
	s.mu.Lock()
	t := s.byRel[release]
	delete(s.byRel, release)
	s.mu.Unlock()
	if t == nil {
		return
	}
	if tt, ok := s.client.Torrent(t.MetaInfo.HashInfoBytes()); ok {
		tt.Drop()
	}
}

// Torrent returns a seeded release's torrent.
func (s *Seeder) Torrent(release string) (*Torrent, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byRel[release]
	return t, ok
}

// UploadedBytesOf is how much of a release's artifact the seeder has sent over
// BitTorrent (0 when it does not seed it).
func (s *Seeder) UploadedBytesOf(release string) int64 {
	t, ok := s.Torrent(release)
	if !ok {
		return 0
	}
	tt, ok := s.client.Torrent(t.MetaInfo.HashInfoBytes())
	if !ok {
		return 0
	}
	st := tt.Stats()
	return st.BytesWrittenData.Int64()
}

// UploadedBytes is how much artifact data the seeder has sent over BitTorrent.
func (s *Seeder) UploadedBytes() int64 {
	st := s.client.Stats()
	return st.BytesWrittenData.Int64()
}

// WebseedHandler serves GET/HEAD /{release}/{name} from the seeded artifacts, with
// range requests. Mount it under the prefix the torrents' url-list names.
func (s *Seeder) WebseedHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{release}/{name}", func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.Torrent(r.PathValue("release"))
		if !ok || t.Manifest.Artifact != r.PathValue("name") {
			http.Error(w, "no such release artifact is being seeded", http.StatusNotFound)
			return
		}
		f, err := os.Open(t.Path)
		if err != nil {
			http.Error(w, "artifact unavailable", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		// ServeContent answers a range past the end with 416 and the valid size.
		http.ServeContent(w, r, t.Manifest.Artifact, t.Manifest.Created, f)
	})
	return mux
}
