// Command shipagent runs on every server: it enrols with shipbot, long-polls its
// desired state, downloads and seeds releases over BitTorrent, verifies the signed
// manifest, activates (unpack, switch the current symlink, run the activate hook),
// probes health, and reports. It serves /healthz and /metrics for itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/shipbot/shipbot/cmd/internal/cliutil"
	"github.com/shipbot/shipbot/distributor"
	"github.com/shipbot/shipbot/distributor/agent"
)

// EnvFleetToken carries the fleet's bearer token.
const EnvFleetToken = "SHIPBOT_FLEET_TOKEN"

// Config is shipagent.yaml.
type Config struct {
	Coordinator      string            `yaml:"coordinator"`
	Host             string            `yaml:"host"`
	Rack             string            `yaml:"rack"`
	DC               string            `yaml:"dc"`
	ReleasesDir      string            `yaml:"releases_dir"`
	Keep             int               `yaml:"keep"`
	Listen           string            `yaml:"listen"`
	BitTorrentListen string            `yaml:"bittorrent_listen"`
	UploadRate       cliutil.ByteSize  `yaml:"upload_rate"`
	DownloadRate     cliutil.ByteSize  `yaml:"download_rate"`
	PublicKey        string            `yaml:"public_key"`
	CAFile           string            `yaml:"ca_file"`
	Health           HealthConfig      `yaml:"health"`
	Metrics          MetricsConfig     `yaml:"metrics"`
	ActivateHook     []string          `yaml:"activate_hook"`
	HookTimeout      time.Duration     `yaml:"hook_timeout"`
	PollWait         time.Duration     `yaml:"poll_wait"`
	Log              cliutil.LogConfig `yaml:"log"`
}

// HealthConfig is the health: section.
type HealthConfig struct {
	URL          string        `yaml:"url"`
	ExpectStatus int           `yaml:"expect_status"`
	Command      []string      `yaml:"command"`
	Interval     time.Duration `yaml:"interval"`
	Timeout      time.Duration `yaml:"timeout"`
}

// MetricsConfig is the metrics: section: the service's Prometheus endpoint, scraped
// every health interval and reported for the metric gates.
type MetricsConfig struct {
	URL  string   `yaml:"url"`
	Keep []string `yaml:"keep"` // metric names to report; empty reports all
}

// LoadConfig reads and validates shipagent.yaml.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c := &Config{}
	if err := cliutil.DecodeYAML(path, data, c, "configs/shipagent.yaml"); err != nil {
		return nil, err
	}
	if c.Host == "" {
		c.Host, _ = os.Hostname()
	}
	if c.Keep == 0 {
		c.Keep = 3
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9100"
	}
	if c.BitTorrentListen == "" {
		c.BitTorrentListen = "0.0.0.0:6881"
	}
	c.Log.ApplyDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) validate() error {
	switch {
	case c.Coordinator == "":
		return errors.New("coordinator: required (shipbot's URL, e.g. https://shipbot.internal:8080)")
	case c.Rack == "" || c.DC == "":
		return errors.New("rack and dc: required (where this host sits; the tracker prefers peers on the same rack)")
	case c.ReleasesDir == "":
		return errors.New("releases_dir: required")
	case c.Keep < 2:
		return fmt.Errorf("keep: %d; keep at least 2 so a rollback needs no download", c.Keep)
	case c.PublicKey == "":
		return errors.New("public_key: required (the contents of shipbot.pub from shipbot keygen)")
	case c.Health.URL != "" && len(c.Health.Command) > 0:
		return errors.New("health: set url or command, not both")
	}
	if err := distributor.ValidHostName(c.Host); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	if _, err := distributor.ParsePublicKey(c.PublicKey); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.BitTorrentListen); err != nil {
		return fmt.Errorf("bittorrent_listen: %q is not host:port", c.BitTorrentListen)
	}
	return c.Log.Validate()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "shipagent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("shipagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "configs/shipagent.yaml", "config file")
	check := fs.Bool("check-config", false, "validate the config and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(stderr, "%s: ok (host %s, rack %s, dc %s)\n", *cfgPath, cfg.Host, cfg.Rack, cfg.DC)
		return nil
	}
	token := os.Getenv(EnvFleetToken)
	if token == "" {
		return fmt.Errorf("%s is not set: export the fleet token shipbot was started with", EnvFleetToken)
	}
	log, err := cliutil.NewLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	log = log.With(zap.String("host", cfg.Host))
	pub, _ := distributor.ParsePublicKey(cfg.PublicKey)
	a, err := agent.New(agent.Config{
		Coordinator: cfg.Coordinator, Token: token, CAFile: cfg.CAFile,
		Host:        distributor.Host{Name: cfg.Host, Rack: cfg.Rack, DC: cfg.DC},
		ReleasesDir: cfg.ReleasesDir, Keep: cfg.Keep,
		Health: agent.HealthCheck{URL: cfg.Health.URL, ExpectStatus: cfg.Health.ExpectStatus, Command: cfg.Health.Command,
			Interval: cfg.Health.Interval, Timeout: cfg.Health.Timeout},
		Metrics:      agent.Metrics{URL: cfg.Metrics.URL, Keep: cfg.Metrics.Keep},
		ActivateHook: cfg.ActivateHook, HookTimeout: cfg.HookTimeout,
		UploadRate: int64(cfg.UploadRate), DownloadRate: int64(cfg.DownloadRate),
		PublicKey: pub, BTListen: cfg.BitTorrentListen, PollWait: cfg.PollWait,
	}, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: selfRoutes(a), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	log.Info("shipagent running", zap.String("coordinator", cfg.Coordinator), zap.String("listen", ln.Addr().String()))
	return a.Run(ctx)
}

// selfRoutes serves the agent's own /healthz and /metrics.
func selfRoutes(a *agent.Agent) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, enrolled := a.Status(); !enrolled {
			http.Error(w, "not enrolled with the coordinator", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		st, enrolled := a.Status()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# TYPE shipagent_enrolled gauge")
		fmt.Fprintf(w, "shipagent_enrolled %d\n", b2i(enrolled))
		fmt.Fprintln(w, "# TYPE shipagent_active_release gauge")
		if st.Active != "" {
			fmt.Fprintf(w, "shipagent_active_release{release=%q} 1\n", st.Active)
		}
		fmt.Fprintln(w, "# TYPE shipagent_health_ok gauge")
		if st.Health != nil {
			fmt.Fprintf(w, "shipagent_health_ok %d\n", b2i(st.Health.OK))
		}
		rels := make([]string, 0, len(st.Staged))
		for r := range st.Staged {
			rels = append(rels, r)
		}
		sort.Strings(rels)
		fmt.Fprintln(w, "# TYPE shipagent_staged_bytes gauge")
		for _, r := range rels {
			fmt.Fprintf(w, "shipagent_staged_bytes{release=%q} %d\n", r, st.Staged[r].Bytes)
		}
		fmt.Fprintln(w, "# TYPE shipagent_staged_from_peers_bytes gauge")
		for _, r := range rels {
			fmt.Fprintf(w, "shipagent_staged_from_peers_bytes{release=%q} %d\n", r, st.Staged[r].FromPeers)
		}
	})
	return mux
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
