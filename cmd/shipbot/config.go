package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/health"
	"github.com/shipbot/shipbot/bot/irc"
	"github.com/shipbot/shipbot/bot/rollout"
	"github.com/shipbot/shipbot/bot/slack"
	"github.com/shipbot/shipbot/cmd/internal/cliutil"
)

// Config is shipbot.yaml. Secrets are never read from it: see the Env* names.
type Config struct {
	Listen           string            `yaml:"listen"`
	DataDir          string            `yaml:"data_dir"`
	Channel          string            `yaml:"channel"`
	Chat             string            `yaml:"chat"`
	ReminderInterval *time.Duration    `yaml:"reminder_interval"` // nil: default; 0: off
	MaxArtifactSize  cliutil.ByteSize  `yaml:"max_artifact_size"`
	People           []PersonConfig    `yaml:"people"`
	Roles            RolesConfig       `yaml:"roles"`
	Log              cliutil.LogConfig `yaml:"log"`
	// PublicURL is how agents reach shipbot (announce and webseed URLs); default
	// http:// plus the bound listen address.
	PublicURL string `yaml:"public_url"`
	// BitTorrentListen is the origin seeder's address; default the listen host, any port.
	BitTorrentListen string `yaml:"bittorrent_listen"`
	// Fleet tunes the agent API.
	Fleet FleetConfig `yaml:"fleet"`
	// Rollout sets the tiers and limits of the rollout engine.
	Rollout RolloutConfig `yaml:"rollout"`
	// IRC configures the IRC adapter (chat: irc).
	IRC *irc.Config `yaml:"irc"`
	// Slack configures the Slack adapter (chat: slack).
	Slack *slack.Config `yaml:"slack"`
}

// FleetConfig is the fleet: section.
type FleetConfig struct {
	StaleAfter  time.Duration `yaml:"stale_after"`  // a host that has not reported for this long is stale; default 30s
	ReportEvery time.Duration `yaml:"report_every"` // heartbeat asked of agents; default 5s
}

// RolloutConfig is the rollout: section.
type RolloutConfig struct {
	Tiers            []TierConfig      `yaml:"tiers"`
	StageTimeout     time.Duration     `yaml:"stage_timeout"`      // default 30m
	MaxStageFailures float64           `yaml:"max_stage_failures"` // share of hosts; default 0.05
	SwitchTimeout    time.Duration     `yaml:"switch_timeout"`     // default 5m
	Tick             time.Duration     `yaml:"tick"`               // how often the engine looks; default 1s
	Gates            []GateConfig      `yaml:"gates"`
	MaxInconclusive  int               `yaml:"max_inconclusive"` // looks without enough data before a tier fails; default 10
	Prometheus       *PrometheusConfig `yaml:"prometheus"`
	// RollbackOnRestart: a rollout found running when shipbot starts is rolled
	// back instead of resumed.
	RollbackOnRestart bool `yaml:"rollback_on_restart"`
}

// GateConfig is a metric gate: a measure of the tier's hosts against the same
// measure of the baseline. Source agent (the default): the ratio errors/total of
// the counters the agents report. Source prometheus: the PromQL template query.
type GateConfig struct {
	Name       string  `yaml:"name"`
	Source     string  `yaml:"source"` // agent or prometheus
	Errors     string  `yaml:"errors"` // agent: a selector, name{label=~"regex"}
	Total      string  `yaml:"total"`
	Query      string  `yaml:"query"`       // prometheus: a PromQL template giving one number
	Samples    string  `yaml:"samples"`     // prometheus: a PromQL template giving the sample count
	Unit       string  `yaml:"unit"`        // prometheus: ratio, ms or none
	MaxRatio   float64 `yaml:"max_ratio"`   // canary at most this times the baseline
	MaxRate    float64 `yaml:"max_rate"`    // agent: and at most this absolute rate
	MaxValue   float64 `yaml:"max_value"`   // prometheus: and at most this value
	MinSamples float64 `yaml:"min_samples"` // canary samples needed for a verdict
}

// PrometheusConfig is where the prometheus gates send their queries.
type PrometheusConfig struct {
	URL     string        `yaml:"url"`
	Timeout time.Duration `yaml:"timeout"` // per query; default 10s
}

// TierConfig is one tier.
type TierConfig struct {
	Name         string        `yaml:"name"`
	Hosts        string        `yaml:"hosts"` // a count ("2") or a share ("10%"), counted from the start
	Bake         time.Duration `yaml:"bake"`
	MaxUnhealthy float64       `yaml:"max_unhealthy"` // share of the activated hosts
}

var defaultTiers = []TierConfig{
	{Name: "a2", Hosts: "2", Bake: 5 * time.Minute},
	{Name: "10%", Hosts: "10%", Bake: 5 * time.Minute, MaxUnhealthy: 0.1},
	{Name: "50%", Hosts: "50%", Bake: 5 * time.Minute, MaxUnhealthy: 0.1},
	{Name: "100%", Hosts: "100%", MaxUnhealthy: 0.1},
}

func (r *RolloutConfig) applyDefaults() {
	if len(r.Tiers) == 0 {
		r.Tiers = defaultTiers
	}
	if r.StageTimeout == 0 {
		r.StageTimeout = 30 * time.Minute
	}
	if r.MaxStageFailures == 0 {
		r.MaxStageFailures = 0.05
	}
	if r.SwitchTimeout == 0 {
		r.SwitchTimeout = 5 * time.Minute
	}
	if r.Tick == 0 {
		r.Tick = time.Second
	}
}

func (r *RolloutConfig) validate() error {
	for i, t := range r.Tiers {
		if t.Name == "" {
			return fmt.Errorf("rollout.tiers[%d].name: required", i)
		}
		if _, err := rollout.TierSize(t.Hosts, 100); err != nil {
			return fmt.Errorf("rollout.tiers[%d].hosts: %w", i, err)
		}
		if t.Bake < 0 || t.MaxUnhealthy < 0 || t.MaxUnhealthy > 1 {
			return fmt.Errorf("rollout.tiers[%d]: bake must be positive and max_unhealthy between 0 and 1", i)
		}
	}
	for i, g := range r.Gates {
		gate, err := g.gate()
		if err != nil {
			return fmt.Errorf("rollout.gates[%d]: %w", i, err)
		}
		if gate.Prometheus() && (r.Prometheus == nil || r.Prometheus.URL == "") {
			return fmt.Errorf("rollout.gates[%d]: source prometheus needs rollout.prometheus.url", i)
		}
	}
	if p := r.Prometheus; p != nil {
		if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("rollout.prometheus.url: %q is not an http(s) URL", p.URL)
		}
		if p.Timeout < 0 {
			return errors.New("rollout.prometheus.timeout: must be positive")
		}
	}
	if last := r.Tiers[len(r.Tiers)-1].Hosts; last != "100%" {
		return fmt.Errorf("rollout.tiers: the last tier must be 100%% of the hosts, not %q", last)
	}
	if r.MaxStageFailures < 0 || r.MaxStageFailures >= 1 {
		return errors.New("rollout.max_stage_failures: a share from 0 to below 1")
	}
	return nil
}

func (g GateConfig) gate() (health.Gate, error) {
	if g.Name == "" {
		return health.Gate{}, errors.New("name: required")
	}
	if g.MaxRatio < 0 || g.MaxRate < 0 || g.MaxValue < 0 || g.MinSamples < 0 {
		return health.Gate{}, errors.New("max_ratio, max_rate, max_value and min_samples cannot be negative")
	}
	gate := health.Gate{Name: g.Name, MaxRatio: g.MaxRatio, MinSamples: g.MinSamples}
	switch g.Source {
	case "", "agent":
		if g.Query != "" || g.Samples != "" || g.MaxValue != 0 || g.Unit != "" {
			return health.Gate{}, errors.New("query, samples, unit and max_value are for source: prometheus; an agent gate has errors, total and max_rate")
		}
		var err error
		if gate.Errors, err = health.ParseSelector(g.Errors); err != nil {
			return health.Gate{}, fmt.Errorf("errors: %w", err)
		}
		if gate.Total, err = health.ParseSelector(g.Total); err != nil {
			return health.Gate{}, fmt.Errorf("total: %w", err)
		}
		gate.MaxValue, gate.Unit = g.MaxRate, health.UnitRatio
	case "prometheus":
		if g.Errors != "" || g.Total != "" || g.MaxRate != 0 {
			return health.Gate{}, errors.New("errors, total and max_rate are for source: agent; a prometheus gate has query, samples, unit and max_value")
		}
		if g.Query == "" {
			return health.Gate{}, errors.New("query: required for source: prometheus")
		}
		var err error
		if gate.Query, err = health.ParseQuery(g.Name, g.Query); err != nil {
			return health.Gate{}, fmt.Errorf("query: %w (the template knows .Version .Release .Baseline .Hosts .HostList)", err)
		}
		if g.Samples != "" {
			if gate.SamplesQuery, err = health.ParseQuery(g.Name+" samples", g.Samples); err != nil {
				return health.Gate{}, fmt.Errorf("samples: %w (the template knows .Version .Release .Baseline .Hosts .HostList)", err)
			}
		} else if g.MinSamples > 0 {
			return health.Gate{}, errors.New("min_samples needs a samples query")
		}
		switch health.Unit(g.Unit) {
		case health.UnitRatio, health.UnitMS:
			gate.Unit = health.Unit(g.Unit)
		case "", "none":
		default:
			return health.Gate{}, fmt.Errorf("unit: %q; use ratio, ms or none", g.Unit)
		}
		gate.MaxValue = g.MaxValue
	default:
		return health.Gate{}, fmt.Errorf("source: %q; use agent or prometheus", g.Source)
	}
	if gate.MaxRatio == 0 && gate.MaxValue == 0 {
		return health.Gate{}, errors.New("set max_ratio, an absolute cap (max_rate for agent, max_value for prometheus), or both")
	}
	return gate, nil
}

// Engine config for the rollout engine.
func (r *RolloutConfig) engine() rollout.Config {
	c := rollout.Config{StageTimeout: r.StageTimeout, MaxStageFailures: r.MaxStageFailures, SwitchTimeout: r.SwitchTimeout,
		MaxInconclusive: r.MaxInconclusive}
	for _, g := range r.Gates {
		gg, _ := g.gate() // validated
		c.Gates = append(c.Gates, gg)
	}
	for _, t := range r.Tiers {
		c.Tiers = append(c.Tiers, rollout.Tier{Name: t.Name, Size: t.Hosts, Bake: t.Bake, MaxUnhealthy: t.MaxUnhealthy})
	}
	return c
}

// PersonConfig is one entry of people.
type PersonConfig struct {
	Name   string    `yaml:"name"`
	Emails []string  `yaml:"emails"`
	Slack  string    `yaml:"slack"`
	IRC    IRCPerson `yaml:"irc"`
}

// IRCPerson says how a person is recognised on IRC (see bot.Directory.Identify).
type IRCPerson struct {
	Account string   `yaml:"account"`
	Masks   []string `yaml:"masks"`
	Nick    string   `yaml:"nick"`
}

// RolesConfig names the people who hold each role.
type RolesConfig struct {
	ReleaseHeads []string `yaml:"release_heads"`
	Admins       []string `yaml:"admins"`
}

// Environment variables that carry secrets.
const (
	EnvAPIToken = "SHIPBOT_API_TOKEN"
	EnvURL      = "SHIPBOT_URL"
)

// Defaults.
const (
	defaultListen          = "127.0.0.1:8080"
	defaultMaxArtifactSize = 4 << 30
	defaultReminder        = 10 * time.Minute
)

// LoadConfig reads and validates a config file. Unknown keys and bad values are
// errors that name the file, the line and the key.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes and validates config data; name is used in errors.
func ParseConfig(name string, data []byte) (*Config, error) {
	c := &Config{}
	if err := cliutil.DecodeYAML(name, data, c, "configs/shipbot.yaml"); err != nil {
		return nil, err
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.Chat == "" {
		c.Chat = "console"
	}
	if c.ReminderInterval == nil {
		d := defaultReminder
		c.ReminderInterval = &d
	}
	if c.MaxArtifactSize == 0 {
		c.MaxArtifactSize = defaultMaxArtifactSize
	}
	c.Log.ApplyDefaults()
	c.Rollout.applyDefaults()
	if c.Fleet.StaleAfter == 0 {
		c.Fleet.StaleAfter = 30 * time.Second
	}
	if c.Fleet.ReportEvery == 0 {
		c.Fleet.ReportEvery = 5 * time.Second
	}
	if c.BitTorrentListen == "" {
		host, _, _ := net.SplitHostPort(c.Listen)
		c.BitTorrentListen = net.JoinHostPort(host, "0")
	}
}

var (
	personName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,31}$`)
	slackID    = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)
)

// Validate checks every field and names the first bad one. Call it after
// applyDefaults.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not host:port", c.Listen)
	}
	if err := c.Rollout.validate(); err != nil {
		return err
	}
	if c.Fleet.ReportEvery >= c.Fleet.StaleAfter {
		return fmt.Errorf("fleet.report_every (%s) must be shorter than fleet.stale_after (%s)", c.Fleet.ReportEvery, c.Fleet.StaleAfter)
	}
	if _, _, err := net.SplitHostPort(c.BitTorrentListen); err != nil {
		return fmt.Errorf("bittorrent_listen: %q is not host:port", c.BitTorrentListen)
	}
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("public_url: %q must start with http:// or https://", c.PublicURL)
	}
	if c.DataDir == "" {
		return errors.New("data_dir: required (where the store and artifacts live)")
	}
	if c.Channel == "" {
		return errors.New("channel: required (e.g. \"#deploy\")")
	}
	switch c.Chat {
	case "console":
	case "irc":
		if c.IRC == nil {
			return errors.New("chat is irc but the irc: section is missing (server, port, nick, ...)")
		}
		if !strings.HasPrefix(c.Channel, "#") {
			return fmt.Errorf("channel: %q; an IRC channel starts with #", c.Channel)
		}
	case "slack":
		if c.Slack == nil {
			return errors.New("chat is slack but the slack: section is missing (channel_id)")
		}
	default:
		return fmt.Errorf("chat: %q is not an adapter; use console, irc or slack", c.Chat)
	}
	if c.Slack != nil {
		if err := c.Slack.Validate(); err != nil {
			return err
		}
	}
	if c.IRC != nil {
		if err := c.IRC.Validate(); err != nil {
			return err
		}
	}
	if r := *c.ReminderInterval; r < 0 || (r != 0 && r < time.Second) {
		return fmt.Errorf("reminder_interval: %s is too short; use at least 1s, or 0 to turn reminders off", r)
	}
	if c.MaxArtifactSize < 0 {
		return errors.New("max_artifact_size: must be positive")
	}
	if len(c.People) == 0 {
		return errors.New("people: name at least one person")
	}
	for i, p := range c.People {
		at := fmt.Sprintf("people[%d]", i)
		if !personName.MatchString(p.Name) {
			return fmt.Errorf("%s.name: %q must be 1-32 lower-case letters, digits, '.', '-' or '_'", at, p.Name)
		}
		for j, e := range p.Emails {
			if !strings.Contains(e, "@") || strings.ContainsAny(e, " <>") {
				return fmt.Errorf("%s.emails[%d]: %q is not an email address", at, j, e)
			}
		}
		if p.Slack != "" && !slackID.MatchString(p.Slack) {
			return fmt.Errorf("%s.slack: %q is not a Slack user ID (like U012AB3CD); find it in the person's Slack profile", at, p.Slack)
		}
		for j, m := range p.IRC.Masks {
			n, rest, ok1 := strings.Cut(m, "!")
			_, host, ok2 := strings.Cut(rest, "@")
			if !ok1 || !ok2 || n == "" || host == "" {
				return fmt.Errorf("%s.irc.masks[%d]: %q is not nick!user@host", at, j, m)
			}
			if host == "*" {
				return fmt.Errorf("%s.irc.masks[%d]: %q matches any host, so anyone could take the nick; name the host", at, j, m)
			}
		}
	}
	if len(c.Roles.ReleaseHeads) == 0 && len(c.Roles.Admins) == 0 {
		return errors.New("roles.release_heads: name at least one person, or nobody can !ship")
	}
	if err := c.Log.Validate(); err != nil {
		return err
	}
	if _, err := c.Directory(); err != nil {
		return err
	}
	return nil
}

// Directory builds the bot's people and roles.
func (c *Config) Directory() (*bot.Directory, error) {
	people := make([]bot.Person, len(c.People))
	for i, p := range c.People {
		people[i] = bot.Person{Name: p.Name, Emails: p.Emails, Slack: p.Slack,
			IRC: bot.IRCIdentity{Account: p.IRC.Account, Masks: p.IRC.Masks, Nick: p.IRC.Nick}}
	}
	return bot.NewDirectory(people, c.Roles.ReleaseHeads, c.Roles.Admins)
}
