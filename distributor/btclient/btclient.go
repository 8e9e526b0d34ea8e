// Package btclient configures anacrolix/torrent for a closed fleet network, for both
// the origin seeder and the hosts' fetchers: no DHT, PEX, uTP or port mapping, no
// dial rate limit, and the upload allocation raised past the stall trap.
package btclient

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"

	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Options for a client.
type Options struct {
	// ListenAddr is host:port for BitTorrent connections (port 0 picks one).
	ListenAddr string
	// UploadRate and DownloadRate cap bytes/s; 0 means unlimited.
	UploadRate, DownloadRate int64
	// UploadLimiter, if set, is used instead of UploadRate, so the owner can change
	// the cap while the client runs.
	UploadLimiter *rate.Limiter
	// ConnsPerTorrent bounds established connections per torrent; 0 means 50.
	ConnsPerTorrent int
	// Log receives the library's own log lines (hash failures, bans); nil discards.
	Log *slog.Logger
	// Callbacks are passed through to the library.
	Callbacks torrent.Callbacks
}

// maxAllocPeerRequestData must stay well above the default 1 MiB: at 1 MiB a seeder
// stalls for good after a few MiB, blocked in alloclim.(*Reservation).Wait.
const maxAllocPeerRequestData = 64 << 20

// New starts a client. Close it with Client.Close.
func New(o Options) (*torrent.Client, error) {
	cfg := torrent.NewDefaultClientConfig()
	cfg.NoDHT = true
	cfg.DisablePEX = true
	cfg.DisableUTP = true
	cfg.DisableIPv6 = true
	cfg.NoDefaultPortForwarding = true
	cfg.DisableWebtorrent = true
	cfg.Seed = true
	// Every peer is ours: skip the MSE key exchange and its CPU.
	cfg.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{}
	cfg.DataDir = "" // every torrent names its own storage
	host, port, err := net.SplitHostPort(o.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("bittorrent listen address %q: %w", o.ListenAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("bittorrent listen port %q: %w", port, err)
	}
	cfg.ListenHost = func(string) string { return host }
	cfg.ListenPort = p
	cfg.DialRateLimiter = rate.NewLimiter(rate.Inf, 0)
	cfg.DisableAcceptRateLimiting = true
	cfg.MaxAllocPeerRequestDataPerConn = maxAllocPeerRequestData
	cfg.EstablishedConnsPerTorrent = 50
	if o.ConnsPerTorrent > 0 {
		cfg.EstablishedConnsPerTorrent = o.ConnsPerTorrent
	}
	if o.UploadRate > 0 {
		cfg.UploadRateLimiter = Limiter(o.UploadRate)
	}
	if o.UploadLimiter != nil {
		cfg.UploadRateLimiter = o.UploadLimiter
	}
	if o.DownloadRate > 0 {
		cfg.DownloadRateLimiter = Limiter(o.DownloadRate)
	}
	if o.Log != nil {
		cfg.Slogger = o.Log
	} else {
		cfg.Slogger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg.Logger = cfg.Logger.WithFilterLevel(alog.Disabled) // the legacy logger; Slogger carries what matters
	cfg.Callbacks = o.Callbacks
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("start bittorrent client on %s: %w", o.ListenAddr, err)
	}
	return cl, nil
}

// Limiter returns a limiter of bytes/s (0: unlimited). Its bucket holds at least one
// 16 KiB chunk and otherwise a tenth of a second of traffic, so caps hold over short
// windows.
func Limiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(bytesPerSec), Burst(bytesPerSec))
}

// Burst is the bucket size Limiter uses for a rate.
func Burst(bytesPerSec int64) int { return int(max(16<<10, bytesPerSec/10)) }

// Slog routes the library's slog records at Info and above into a zap logger.
func Slog(log *zap.Logger) *slog.Logger { return slog.New(zapHandler{log: log}) }

type zapHandler struct {
	log   *zap.Logger
	attrs []zap.Field
}

func (h zapHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h zapHandler) Handle(_ context.Context, r slog.Record) error {
	fields := append([]zap.Field{}, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(a.Key, a.Value.Any()))
		return true
	})
	switch {
	case r.Level >= slog.LevelError:
		h.log.Error(r.Message, fields...)
	case r.Level >= slog.LevelWarn:
		h.log.Warn(r.Message, fields...)
	default:
		h.log.Info(r.Message, fields...)
	}
	return nil
}

func (h zapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := zapHandler{log: h.log, attrs: append([]zap.Field{}, h.attrs...)}
	for _, a := range as {
		n.attrs = append(n.attrs, zap.Any(a.Key, a.Value.Any()))
	}
	return n
}

func (h zapHandler) WithGroup(name string) slog.Handler {
	return zapHandler{log: h.log.Named(name), attrs: h.attrs}
}
