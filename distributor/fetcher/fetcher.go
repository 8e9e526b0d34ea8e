// Package fetcher is a host's side of the push: it downloads a manifest's artifact
// over BitTorrent (peers handed out by our tracker, and the origin's webseed), resumes
// from disk after a restart, verifies the whole artifact's sha256 before it says done,
// and keeps seeding what it holds.
//
// Layout under Dir: .artifacts/<release>/<artifact> is the data, and
// .artifacts/<release>/.verified holds the sha256 once the whole file checked out. A
// file without that marker is never taken as complete.
package fetcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	generics "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/btclient"
)

// Progress is a download's state, reported while it runs and once when done.
type Progress struct {
	Release     string
	Bytes       int64 // verified bytes on disk
	Total       int64
	Pieces      int
	PiecesTotal int
	Peers       int     // connected BitTorrent peers
	Rate        float64 // bytes/s since the last report
	FromPeers   int64   // useful bytes received from BitTorrent peers
	FromWebseed int64   // useful bytes received from the origin's webseed
	BadPieces   int64   // pieces that failed their hash check
	Done        bool
}

// Source says where to look for a release's data.
type Source struct {
	Announce string           // this host's announce URL at our tracker
	Webseeds []string         // BEP 19 url-list entries (ending in "/")
	Peers    []netip.AddrPort // extra peers to try directly (tests, stock seeders)
}

// Fetcher downloads and seeds releases.
type Fetcher struct {
	Dir        string
	ListenAddr string
	// UploadRate and DownloadRate cap bytes/s; 0 means unlimited.
	UploadRate, DownloadRate int64
	// ProgressEvery is the progress callback period; default 1s.
	ProgressEvery time.Duration
	Log           *zap.Logger

	client *torrent.Client
	pc     storage.PieceCompletion
	mu     sync.Mutex
	held   map[string]*torrent.Torrent // release -> torrent
}

// ErrVerify means the downloaded artifact did not match the manifest's sha256.
var ErrVerify = errors.New("artifact does not match the manifest's sha256")

// Open prepares the directory, the piece-completion record and the client.
func (f *Fetcher) Open() error {
	if f.Log == nil {
		f.Log = zap.NewNop()
	}
	if f.ProgressEvery <= 0 {
		f.ProgressEvery = time.Second
	}
	base := filepath.Join(f.Dir, ".artifacts")
	if err := os.MkdirAll(base, 0o755); err != nil {
		return fmt.Errorf("fetcher: %w", err)
	}
	pc, err := storage.NewBoltPieceCompletion(base)
	if err != nil {
		return fmt.Errorf("fetcher: open piece completion in %s: %w", base, err)
	}
	f.pc = pc
	log := f.Log
	cl, err := btclient.New(btclient.Options{
		ListenAddr: f.ListenAddr, UploadRate: f.UploadRate, DownloadRate: f.DownloadRate,
		// The library logs "piece failed hash. banning peer" with the peer's address.
		Log: btclient.Slog(log.Named("bt")),
		Callbacks: torrent.Callbacks{StatusUpdated: []func(torrent.StatusUpdatedEvent){func(e torrent.StatusUpdatedEvent) {
			if e.Event == torrent.TrackerAnnounceError {
				log.Warn("tracker announce failed", zap.String("tracker", redactKey(e.Url)), zap.Error(e.Error))
			}
		}}},
	})
	if err != nil {
		pc.Close()
		return err
	}
	f.client = cl
	f.held = map[string]*torrent.Torrent{}
	return nil
}

// redactKey drops the query (which carries this host's tracker key) from a URL.
func redactKey(u string) string {
	base, _, _ := strings.Cut(u, "?")
	return base
}

// Close stops every download and all seeding.
func (f *Fetcher) Close() error {
	if f.client == nil {
		return nil
	}
	errs := f.client.Close()
	errs = append(errs, f.pc.Close())
	return errors.Join(errs...)
}

// Addr is where this host accepts BitTorrent connections.
func (f *Fetcher) Addr() netip.AddrPort {
	for _, a := range f.client.ListenAddrs() {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap
		}
	}
	return netip.AddrPort{}
}

func (f *Fetcher) dir(m *distributor.Manifest) string {
	return filepath.Join(f.Dir, ".artifacts", m.Release)
}

// Path is where a release's artifact lives once fetched.
func (f *Fetcher) Path(m *distributor.Manifest) string { return filepath.Join(f.dir(m), m.Artifact) }

// Verified reports whether the release's artifact is on disk and checked.
func (f *Fetcher) Verified(m *distributor.Manifest) bool {
	b, err := os.ReadFile(filepath.Join(f.dir(m), ".verified"))
	if err != nil || strings.TrimSpace(string(b)) != m.SHA256 {
		return false
	}
	st, err := os.Stat(f.Path(m))
	return err == nil && st.Size() == m.Size
}

// checkInfo makes sure the manifest's info dictionary describes the artifact it names.
func checkInfo(m *distributor.Manifest) error {
	var info metainfo.Info
	if err := bencode.Unmarshal(m.Info, &info); err != nil {
		return fmt.Errorf("%w: info dictionary: %v", distributor.ErrBadManifest, err)
	}
	switch {
	case info.Name != m.Artifact || info.Length != m.Size || info.PieceLength != m.PieceLength || len(info.Files) != 0:
		return fmt.Errorf("%w: info dictionary describes %q (%d bytes, pieces of %d), not %q (%d bytes, pieces of %d)",
			distributor.ErrBadManifest, info.Name, info.Length, info.PieceLength, m.Artifact, m.Size, m.PieceLength)
	case info.Private == nil || !*info.Private:
		return fmt.Errorf("%w: torrent is not private", distributor.ErrBadManifest)
	}
	return nil
}

// Fetch downloads the release's artifact, or resumes it, and returns its path once
// the whole file's sha256 matches the manifest. The caller must have verified the
// manifest's signature. The torrent keeps seeding after Fetch returns, until Remove
// or Close. progress (may be nil) is called every ProgressEvery and once when done.
func (f *Fetcher) Fetch(ctx context.Context, m *distributor.Manifest, src Source, progress func(Progress)) (string, error) {
	if err := checkInfo(m); err != nil {
		return "", err
	}
	log := f.Log.With(zap.String("release", m.Release))
	if err := os.MkdirAll(f.dir(m), 0o755); err != nil {
		return "", fmt.Errorf("fetch %s: %w", m.Release, err)
	}
	if err := f.reserve(m); err != nil {
		return "", err
	}
	t, err := f.add(m, src)
	if err != nil {
		return "", err
	}
	if f.Verified(m) {
		<-t.GotInfo()
		if progress != nil {
			progress(f.progress(m, t, 0, 0))
		}
		return f.Path(m), nil
	}
	// A write error (a full disk, a read-only directory) ends the fetch with that
	// error rather than leaving it stalled.
	writeErr := make(chan error, 1)
	t.SetOnWriteChunkError(func(err error) {
		select {
		case writeErr <- err:
		default:
		}
	})
	t.DownloadAll()
	tick := time.NewTicker(f.ProgressEvery)
	defer tick.Stop()
	last, lastAt := int64(0), time.Now()
	var bad int64
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case err := <-writeErr:
			f.mu.Lock()
			delete(f.held, m.Release)
			f.mu.Unlock()
			t.Drop()
			return "", fmt.Errorf("fetch %s: writing to disk: %w", m.Release, err)
		case <-t.Complete().On():
			done = true
		case now := <-tick.C:
			p := f.progress(m, t, last, now.Sub(lastAt))
			last, lastAt = p.Bytes, now
			if p.BadPieces > bad {
				log.Warn("pieces failed their hash check; the peers that sent them are dropped and the pieces fetched again",
					zap.Int64("bad_pieces", p.BadPieces))
				bad = p.BadPieces
			}
			if progress != nil {
				progress(p)
			}
		}
	}
	sum, err := fileSHA256(ctx, f.Path(m))
	if err != nil {
		return "", fmt.Errorf("fetch %s: verify: %w", m.Release, err)
	}
	if sum != m.SHA256 {
		// Every piece passed sha1 but the whole does not match: the manifest and the
		// torrent disagree. Throw the data away rather than seed it.
		f.Remove(m)
		return "", fmt.Errorf("fetch %s: %w: got %s, want %s", m.Release, ErrVerify, sum, m.SHA256)
	}
	if err := writeFileSync(filepath.Join(f.dir(m), ".verified"), []byte(sum+"\n")); err != nil {
		return "", fmt.Errorf("fetch %s: %w", m.Release, err)
	}
	p := f.progress(m, t, last, time.Since(lastAt))
	log.Info("fetched and verified", zap.Int64("bytes", m.Size), zap.Int64("from_peers", p.FromPeers),
		zap.Int64("from_webseed", p.FromWebseed), zap.Int64("bad_pieces", p.BadPieces))
	if progress != nil {
		progress(p)
	}
	return f.Path(m), nil
}

// reserve makes sure the artifact's full size is allocated on disk.
func (f *Fetcher) reserve(m *distributor.Manifest) error {
	p := f.Path(m)
	if st, err := os.Stat(p); err == nil && st.Size() == m.Size && f.Verified(m) {
		return nil
	}
	fh, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", m.Release, err)
	}
	defer fh.Close()
	if err := preallocate(fh, m.Size); err != nil {
		var free string
		var st syscall.Statfs_t
		if syscall.Statfs(filepath.Dir(p), &st) == nil {
			free = fmt.Sprintf(" (%d bytes free, %d needed)", int64(st.Bavail)*int64(st.Bsize), m.Size)
		}
		return fmt.Errorf("fetch %s: reserve disk space: %w%s", m.Release, err, free)
	}
	return nil
}

// add registers the torrent with the client (idempotent) so it downloads and seeds.
func (f *Fetcher) add(m *distributor.Manifest, src Source) (*torrent.Torrent, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.held[m.Release]; ok {
		return t, nil
	}
	ih := metainfo.NewHashFromHex(m.InfoHash)
	spec := &torrent.TorrentSpec{
		AddTorrentOpts: torrent.AddTorrentOpts{
			InfoHash:  ih,
			InfoBytes: m.Info,
			Storage: storage.NewFileOpts(storage.NewFileClientOpts{
				ClientBaseDir:   f.dir(m),
				PieceCompletion: f.pc,
				UsePartFiles:    generics.Some(false),
				Logger:          btclient.Slog(f.Log.Named("storage")),
			}),
		},
		Webseeds: src.Webseeds,
	}
	if src.Announce != "" {
		spec.Trackers = [][]string{{src.Announce}}
	}
	t, _, err := f.client.AddTorrentSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: add torrent: %w", m.Release, err)
	}
	var peers []torrent.PeerInfo
	for _, a := range src.Peers {
		peers = append(peers, torrent.PeerInfo{Addr: torrent.StringAddr(a.String()), Source: torrent.PeerSourceDirect, Trusted: false})
	}
	if len(peers) > 0 {
		t.AddPeers(peers)
	}
	f.held[m.Release] = t
	return t, nil
}

func (f *Fetcher) progress(m *distributor.Manifest, t *torrent.Torrent, last int64, dt time.Duration) Progress {
	st := t.Stats()
	var web int64
	for _, w := range t.WebseedPeerConns() {
		ws := w.Stats()
		web += ws.BytesReadUsefulData.Int64()
	}
	p := Progress{
		Release:     m.Release,
		Total:       m.Size,
		PiecesTotal: t.NumPieces(),
		Peers:       st.ActivePeers,
		FromWebseed: web,
		FromPeers:   max(0, st.BytesReadUsefulData.Int64()-web),
		BadPieces:   st.PiecesDirtiedBad.Int64(),
	}
	n := t.NumPieces()
	i := 0
	for _, r := range t.PieceStateRuns() {
		if r.Complete {
			p.Pieces += r.Length
			p.Bytes += int64(r.Length) * m.PieceLength
			if i+r.Length == n { // the last piece is short
				p.Bytes -= int64(n)*m.PieceLength - m.Size
			}
		}
		i += r.Length
	}
	p.Done = p.Bytes == p.Total && f.Verified(m)
	if dt > 0 {
		p.Rate = float64(p.Bytes-last) / dt.Seconds()
	}
	return p
}

// Remove stops seeding a release and deletes its data.
func (f *Fetcher) Remove(m *distributor.Manifest) error {
	f.mu.Lock()
	t := f.held[m.Release]
	delete(f.held, m.Release)
	f.mu.Unlock()
	if t != nil {
		t.Drop()
	}
	return os.RemoveAll(f.dir(m))
}

func fileSHA256(ctx context.Context, path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, fh}); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// writeFileSync writes a small file durably: temp file, fsync, rename.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	fh, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
