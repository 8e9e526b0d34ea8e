package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/console"
	"github.com/shipbot/shipbot/bot/dashboard"
	"github.com/shipbot/shipbot/bot/health"
	"github.com/shipbot/shipbot/bot/httpapi"
	"github.com/shipbot/shipbot/bot/irc"
	"github.com/shipbot/shipbot/bot/rollout"
	"github.com/shipbot/shipbot/bot/slack"
	"github.com/shipbot/shipbot/cmd/internal/cliutil"
	"github.com/shipbot/shipbot/distributor/btclient"
	"github.com/shipbot/shipbot/distributor/fleet"
	"github.com/shipbot/shipbot/distributor/seeder"
	"github.com/shipbot/shipbot/distributor/tracker"
	"github.com/shipbot/shipbot/store"
)

func cmdServe(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "configs/shipbot.yaml", "config file")
	listen := fs.String("listen", "", "override the config's listen address (e.g. 127.0.0.1:0)")
	addrFile := fs.String("addr-file", "", "write the API's bound address to this file once listening")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	token := os.Getenv(EnvAPIToken)
	if token == "" {
		return fmt.Errorf("%s is not set: the HTTP API needs a bearer token (e.g. export %s=$(openssl rand -hex 24))", EnvAPIToken, EnvAPIToken)
	}
	log, err := cliutil.NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer log.Sync()

	var chat bot.Adapter
	switch cfg.Chat {
	case "console":
		chat = &console.Adapter{In: stdin, Out: stdout, Channel: cfg.Channel}
	case "irc":
		if chat, err = irc.New(*cfg.IRC, cfg.Channel, log.Named("irc")); err != nil {
			return err
		}
	case "slack":
		if chat, err = slack.New(*cfg.Slack, os.Getenv(slack.EnvBotToken), os.Getenv(slack.EnvAppToken), log.Named("slack")); err != nil {
			return err
		}
	}
	sec := secrets{APIToken: token, FleetToken: os.Getenv(EnvFleetToken)}
	if sec.FleetToken != "" {
		if sec.SigningKey, err = loadSigningKey(); err != nil {
			return err
		}
	}
	s, err := openServer(cfg, sec, chat, clockwork.NewRealClock(), log)
	if err != nil {
		return err
	}
	defer s.Close()
	if *addrFile != "" {
		if err := writeFileAtomic(*addrFile, []byte(s.Addr()+"\n")); err != nil {
			return fmt.Errorf("addr-file: %w", err)
		}
	}
	log.Info("shipbot serving", zap.String("api", "http://"+s.Addr()), zap.String("dashboard", "http://"+s.Addr()+"/"), zap.String("chat", cfg.Chat),
		zap.String("channel", cfg.Channel), zap.String("store", s.db.Path()))
	return s.Run(ctx)
}

// server is one running shipbot: store, bot, chat adapter and HTTP API.
type server struct {
	cfg       *Config
	log       *zap.Logger
	db        *store.DB
	artifacts *store.Artifacts
	bot       *bot.Bot
	chat      bot.Adapter
	ln        net.Listener
	http      *http.Server
	push      *push     // nil when the fleet API is off
	rollouts  *rollouts // nil when the fleet API is off
	dash      *dashboard.Server
	dashSrc   *dashSource
	// stopWhenChatEnds stops the server when the chat input ends (the scripted demo).
	stopWhenChatEnds bool
}

var errChatEnded = errors.New("chat input ended")

// secrets come from the environment (serve) or are made up (demo); never from the
// config file.
type secrets struct {
	APIToken   string
	FleetToken string             // turns the fleet API on
	SigningKey ed25519.PrivateKey // signs manifests; required with FleetToken
}

// openServer opens the store and binds the listen address first, so a store in use
// or a port conflict is reported before anything starts.
func openServer(cfg *Config, sec secrets, chat bot.Adapter, clock clockwork.Clock, log *zap.Logger) (*server, error) {
	token := sec.APIToken
	dir, err := cfg.Directory()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, "shipbot.db"))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &server{cfg: cfg, log: log, db: db, chat: chat, ln: ln,
		artifacts: &store.Artifacts{Dir: filepath.Join(cfg.DataDir, "artifacts"), MaxSize: int64(cfg.MaxArtifactSize)}}
	s.bot = bot.New(dir, db, chat, clock, log.Named("bot"))
	s.bot.ReminderInterval = *cfg.ReminderInterval
	api := &httpapi.Server{Bot: s.bot, DB: db, Artifacts: s.artifacts, Token: token, Log: log.Named("api")}
	top := http.NewServeMux()
	top.Handle("/", api.Handler())
	// The dashboard: read-only, no token (it shows no secrets).
	s.dashSrc = &dashSource{s: s, clock: clock}
	s.dash = &dashboard.Server{Source: s.dashSrc, Log: log.Named("dashboard")}
	dh := s.dash.Handler()
	top.Handle("GET /{$}", dh)
	top.Handle("GET /assets/", dh)
	top.Handle("GET /api/", dh)
	if sec.FleetToken != "" {
		if err := s.openPush(top, sec, clock); err != nil {
			ln.Close()
			db.Close()
			return nil, err
		}
	} else {
		log.Info("fleet API off: set " + EnvFleetToken + " and " + EnvSigningKeyFile + " to push releases to agents")
	}
	if err := s.dash.Open(); err != nil {
		s.Close()
		ln.Close()
		return nil, err
	}
	s.http = &http.Server{Handler: top, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: zap.NewStdLog(log.Named("http"))}
	return s, nil
}

// openPush starts the seeder, the tracker and the fleet API, and seeds again every
// release that some host is to hold.
func (s *server) openPush(mux *http.ServeMux, sec secrets, clock clockwork.Clock) error {
	key := sec.SigningKey
	if key == nil {
		return errors.New("the fleet API needs a signing key: set " + EnvSigningKeyFile)
	}
	base := strings.TrimRight(s.cfg.PublicURL, "/")
	if base == "" {
		base = "http://" + s.ln.Addr().String()
	}
	p := &push{db: s.db, artifacts: s.artifacts, key: key, baseURL: base, log: s.log.Named("push"),
		originIP: advertisedIP(s.cfg.BitTorrentListen, base)}
	p.seeder = &seeder.Seeder{ListenAddr: s.cfg.BitTorrentListen, Log: btclient.Slog(s.log.Named("seeder"))}
	if err := p.seeder.Open(); err != nil {
		return err
	}
	p.fleet = &fleet.Server{Store: s.db, Publisher: p, Token: sec.FleetToken, AdminToken: sec.APIToken,
		StaleAfter: s.cfg.Fleet.StaleAfter, ReportEvery: s.cfg.Fleet.ReportEvery, WebseedBase: base + "/webseed/",
		Clock: clock, Log: s.log.Named("fleet")}
	p.tracker = &tracker.Tracker{Registry: p.fleet, Secret: derive(key, "tracker"), Clock: clock, Log: s.log.Named("tracker")}
	p.fleet.AnnounceURL = func(host string) string { return p.tracker.AnnounceURL(base+"/announce", host) }
	if err := p.fleet.Open(); err != nil {
		p.seeder.Close()
		return err
	}
	fh := p.fleet.Handler()
	mux.Handle("/v1/agents/", fh)
	mux.Handle("/v1/fleet/", fh)
	th := p.tracker.Handler()
	mux.Handle("/announce", th)
	mux.Handle("/scrape", th)
	mux.Handle("/webseed/", http.StripPrefix("/webseed", p.seeder.WebseedHandler()))
	s.push = p
	tap := &stateTap{db: s.db}
	eng := &rollout.Engine{Config: s.cfg.Rollout.engine(), Fleet: fleetView{p.fleet}, Store: tap, Say: s.bot.Say,
		Committers: s.bot.CommitterMentions, Clock: clock, Log: s.log.Named("rollout")}
	if pc := s.cfg.Rollout.Prometheus; pc != nil {
		timeout := pc.Timeout
		if timeout == 0 {
			timeout = 10 * time.Second
		}
		eng.Prometheus = &health.Prometheus{URL: pc.URL, Client: &http.Client{Timeout: timeout}}
	}
	s.rollouts = &rollouts{db: s.db, bot: s.bot, clock: clock, log: s.log.Named("rollout"), tick: s.cfg.Rollout.Tick,
		rollbackOnRestart: s.cfg.Rollout.RollbackOnRestart, eng: eng, tap: tap}
	s.bot.OnShip = s.rollouts.onShip
	s.bot.EnableRollouts(s.rollouts)
	// Seed again what hosts are to hold, so a restart does not strand a push.
	held := map[string]bool{}
	for _, h := range p.fleet.AllDesired() {
		for _, r := range h.Stage {
			held[r] = true
		}
	}
	for r := range held {
		if _, err := p.Publish(context.Background(), r); err != nil {
			s.log.Error("could not seed a release that hosts are to hold", zap.String("release", r), zap.Error(err))
		}
	}
	s.log.Info("fleet API on", zap.String("public_url", base), zap.Stringer("origin", netip.AddrPortFrom(p.originIP, p.seeder.Addr().Port())))
	return nil
}

// Addr is the API's bound address.
func (s *server) Addr() string { return s.ln.Addr().String() }

// Run serves until ctx is done, then shuts the HTTP server down gracefully.
func (s *server) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		if s.push != nil {
			s.push.fleet.Close() // answer the long-polls now
		}
		s.dash.Close() // end the dashboard's streams
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.http.Shutdown(sctx); err != nil {
			s.log.Warn("http shutdown: closing the connections still open", zap.Error(err))
			s.http.Close()
		}
		return nil
	})
	g.Go(func() error { return s.bot.Run(ctx) })
	g.Go(func() error { s.dashSrc.sampleGates(ctx, 2*time.Second); return nil })
	if s.rollouts != nil {
		g.Go(func() error { return s.rollouts.Run(ctx) })
	}
	g.Go(func() error {
		if err := s.chat.Run(ctx, s.bot); err != nil {
			return fmt.Errorf("chat: %w", err)
		}
		if ctx.Err() == nil && s.stopWhenChatEnds {
			return errChatEnded
		}
		if ctx.Err() == nil {
			s.log.Info("chat input ended; still serving the API")
		}
		return nil
	})
	if err := g.Wait(); !errors.Is(err, errChatEnded) {
		return err
	}
	return nil
}

// Close stops seeding and releases the store.
func (s *server) Close() error {
	if s.dash != nil {
		s.dash.Close()
	}
	if s.push != nil {
		s.push.seeder.Close()
	}
	return s.db.Close()
}

// writeFileAtomic writes via a temp file and rename, so readers never see half a file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
