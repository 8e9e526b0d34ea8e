package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/fleet"
	"github.com/shipbot/shipbot/distributor/seeder"
	"github.com/shipbot/shipbot/distributor/tracker"
	"github.com/shipbot/shipbot/store"
)

// Environment variables of the push.
const (
	EnvFleetToken     = "SHIPBOT_FLEET_TOKEN"
	EnvSigningKeyFile = "SHIPBOT_SIGNING_KEY_FILE"
)

// push wires the distributor into shipbot: it publishes releases (signed manifest,
// seeding, tracker origin) for the fleet API.
type push struct {
	db        *store.DB
	artifacts *store.Artifacts
	key       ed25519.PrivateKey
	seeder    *seeder.Seeder
	tracker   *tracker.Tracker
	fleet     *fleet.Server
	baseURL   string // how agents reach shipbot
	originIP  netip.Addr
	log       *zap.Logger

	mu sync.Mutex
}

var _ fleet.Publisher = (*push)(nil)

// derive makes a stable secret for one purpose from the signing key, so announce
// keys survive a restart of shipbot.
func derive(key ed25519.PrivateKey, purpose string) []byte {
	h := sha256.Sum256(append([]byte("shipbot "+purpose+"\n"), key.Seed()...))
	return h[:]
}

func loadSigningKey() (ed25519.PrivateKey, error) {
	p := os.Getenv(EnvSigningKeyFile)
	if p == "" {
		return nil, fmt.Errorf("%s is not set: point it at the shipbot.key that shipbot keygen wrote", EnvSigningKeyFile)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", EnvSigningKeyFile, err)
	}
	return distributor.ParsePrivateKey(b)
}

// advertisedIP picks the address peers dial for the origin seeder: the
// bittorrent_listen host when it names one, else the public URL's host when it is an
// IP address, else loopback.
func advertisedIP(listen, publicURL string) netip.Addr {
	host, _, _ := net.SplitHostPort(listen)
	if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		return a
	}
	if u, err := url.Parse(publicURL); err == nil {
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && !a.IsUnspecified() {
			return a
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}

// Publish implements fleet.Publisher. It is idempotent: a release published before
// (even by an earlier run of shipbot) is seeded again from its stored manifest,
// without hashing the artifact again.
func (p *push) Publish(ctx context.Context, release string) (*distributor.Signed, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rel *bot.Release
	err := p.db.View(ctx, func(tx bot.Tx) error {
		var err error
		rel, err = tx.Release(release)
		return err
	})
	if errors.Is(err, bot.ErrNotFound) {
		return nil, fmt.Errorf("no release %s: register it with shipbot release create", release)
	}
	if err != nil {
		return nil, err
	}
	path := p.artifacts.File(rel.Artifact)
	if s, err := p.db.Manifest(release); err != nil {
		return nil, err
	} else if s != nil {
		if _, ok := p.seeder.Torrent(release); ok {
			return s, nil
		}
		m, err := s.Verify(p.key.Public().(ed25519.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("stored manifest of %s: %w", release, err)
		}
		mi := &metainfo.MetaInfo{InfoBytes: m.Info, Announce: p.baseURL + "/announce", UrlList: []string{p.baseURL + "/webseed/" + release + "/"}}
		if err := p.seed(&seeder.Torrent{Manifest: m, MetaInfo: mi, Path: path}); err != nil {
			return nil, err
		}
		return s, nil
	}
	start := time.Now()
	t, err := seeder.MakeTorrent(path, release, rel.Version, p.baseURL+"/announce", p.baseURL+"/webseed/"+release+"/", rel.Artifact.SHA256, time.Now())
	if err != nil {
		return nil, err
	}
	s, err := distributor.Sign(t.Manifest, p.key)
	if err != nil {
		return nil, err
	}
	if err := p.db.SaveManifest(release, s); err != nil {
		return nil, fmt.Errorf("save manifest: %w", err)
	}
	if err := p.seed(t); err != nil {
		return nil, err
	}
	p.log.Info("release published", zap.String("release", release), zap.String("infohash", t.Manifest.InfoHash),
		zap.Int64("piece_length", t.Manifest.PieceLength), zap.Duration("hashing", time.Since(start)))
	return s, nil
}

func (p *push) seed(t *seeder.Torrent) error {
	if err := p.seeder.Seed(t); err != nil {
		return err
	}
	addr := netip.AddrPortFrom(p.originIP, p.seeder.Addr().Port())
	p.tracker.AddOrigin(t.MetaInfo.HashInfoBytes(), addr)
	return nil
}
