// Package irc is the chat adapter for IRC, on github.com/lrstanley/girc.
//
// It reconnects with backoff and rejoins; it keeps its own send queue, because girc
// drops lines sent while disconnected; it paces that queue itself (girc's flood
// control is off) so that a failure or a rollback jumps ahead of progress chatter,
// and progress lines are batched; it splits long lines on UTF-8 boundaries, and no
// text can smuggle CR or LF into the stream.
//
// Identity: the IRCv3 account (account-tag, or account tracking through
// account-notify and extended-join) where the server gives one, else the full
// nick!user@host; see bot.Directory.Identify.
package irc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lrstanley/girc"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
)

// Config is the irc: section of shipbot.yaml. The SASL password comes from the
// environment (SHIPBOT_IRC_PASSWORD), never from the file.
type Config struct {
	Server   string   `yaml:"server"`
	Port     int      `yaml:"port"`
	TLS      bool     `yaml:"tls"`
	CAFile   string   `yaml:"ca_file"`   // extra CA to trust (an internal server)
	Nick     string   `yaml:"nick"`      // default shipbot
	User     string   `yaml:"user"`      // default the nick
	RealName string   `yaml:"realname"`  // default "shipbot release bot"
	SASL     string   `yaml:"sasl"`      // "", plain or external
	Account  string   `yaml:"account"`   // SASL PLAIN user; default the nick
	CertFile string   `yaml:"cert_file"` // client certificate for SASL EXTERNAL
	KeyFile  string   `yaml:"key_file"`
	Channels []string `yaml:"channels"` // extra channels to sit in; the release channel is always joined
	Colors   *bool    `yaml:"colors"`   // bold for failures and rollbacks; default true
	// LinesPerSecond paces the send queue (after a burst of Burst lines); default 1.
	LinesPerSecond float64 `yaml:"lines_per_second"`
	Burst          int     `yaml:"burst"`
	// MaxLineBytes is the longest PRIVMSG text sent; longer lines are split. Default 400.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// ReconnectMax caps the reconnect backoff; default 1m.
	ReconnectMax time.Duration `yaml:"reconnect_max"`
}

// EnvPassword carries the SASL PLAIN password.
const EnvPassword = "SHIPBOT_IRC_PASSWORD"

// Validate checks the section and fills defaults.
func (c *Config) Validate() error {
	switch {
	case c.Server == "":
		return errors.New("irc.server: required")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("irc.port: %d is not a port", c.Port)
	}
	if c.Port == 0 {
		c.Port = 6667
		if c.TLS {
			c.Port = 6697
		}
	}
	if c.Nick == "" {
		c.Nick = "shipbot"
	}
	if c.User == "" {
		c.User = c.Nick
	}
	if c.RealName == "" {
		c.RealName = "shipbot release bot"
	}
	if c.Account == "" {
		c.Account = c.Nick
	}
	switch c.SASL {
	case "", "plain":
	case "external":
		if c.CertFile == "" || c.KeyFile == "" {
			return errors.New("irc.sasl external needs irc.cert_file and irc.key_file (the client certificate)")
		}
		if !c.TLS {
			return errors.New("irc.sasl external needs irc.tls: true")
		}
	default:
		return fmt.Errorf("irc.sasl: %q; use plain or external", c.SASL)
	}
	for i, ch := range c.Channels {
		if !strings.HasPrefix(ch, "#") || strings.ContainsAny(ch, " ,\a") {
			return fmt.Errorf("irc.channels[%d]: %q is not a channel name", i, ch)
		}
	}
	if c.LinesPerSecond == 0 {
		c.LinesPerSecond = 1
	}
	if c.LinesPerSecond < 0 {
		return errors.New("irc.lines_per_second: must be positive")
	}
	if c.Burst <= 0 {
		c.Burst = 4
	}
	if c.MaxLineBytes == 0 {
		c.MaxLineBytes = 400
	}
	if c.MaxLineBytes < 64 || c.MaxLineBytes > 450 {
		return fmt.Errorf("irc.max_line_bytes: %d; use 64 to 450", c.MaxLineBytes)
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = time.Minute
	}
	if c.Colors == nil {
		t := true
		c.Colors = &t
	}
	return nil
}

// Adapter is a bot.Adapter on one IRC server, speaking in one release channel.
type Adapter struct {
	cfg     Config
	channel string
	log     *zap.Logger

	client *girc.Client
	q      *queue

	mu      sync.Mutex
	handler bot.Handler
	ctx     context.Context
	joined  bool  // in the release channel on the current connection
	fatal   error // a reason not to reconnect
}

var _ bot.Adapter = (*Adapter)(nil)

// New prepares an adapter; Run connects. cfg must have passed Validate.
func New(cfg Config, channel string, log *zap.Logger) (*Adapter, error) {
	if !strings.HasPrefix(channel, "#") {
		return nil, fmt.Errorf("channel %q: an IRC channel starts with #", channel)
	}
	if log == nil {
		log = zap.NewNop()
	}
	gc := girc.Config{
		Server: cfg.Server, Port: cfg.Port, Nick: cfg.Nick, User: cfg.User, Name: cfg.RealName,
		SSL:        cfg.TLS,
		AllowFlood: true, // we pace the queue ourselves, by priority
		PingDelay:  30 * time.Second,
	}
	if cfg.TLS {
		tc := &tls.Config{ServerName: cfg.Server, MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("irc.ca_file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("irc.ca_file %s holds no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		if cfg.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("irc client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		gc.TLSConfig = tc
	}
	switch cfg.SASL {
	case "plain":
		pass := os.Getenv(EnvPassword)
		if pass == "" {
			return nil, fmt.Errorf("irc.sasl is plain but %s is not set", EnvPassword)
		}
		gc.SASL = &girc.SASLPlain{User: cfg.Account, Pass: pass}
	case "external":
		gc.SASL = &girc.SASLExternal{}
	}
	a := &Adapter{cfg: cfg, channel: channel, log: log, client: girc.New(gc)}
	a.q = newQueue(cfg.LinesPerSecond, cfg.Burst)
	a.client.Handlers.AddBg(girc.CONNECTED, a.onConnected)
	a.client.Handlers.AddBg(girc.PRIVMSG, a.onPrivmsg)
	a.client.Handlers.AddBg(girc.JOIN, a.onJoin)
	a.client.Handlers.AddBg(girc.KICK, a.onKick)
	a.client.Handlers.AddBg(girc.DISCONNECTED, func(*girc.Client, girc.Event) { a.setJoined(false) })
	return a, nil
}

// Mention renders the person's IRC nick.
func (a *Adapter) Mention(p *bot.Person) string { return p.MentionNick() }

// Send queues the post. Lines wait in the queue while the bot is disconnected and
// are delivered after it reconnects.
func (a *Adapter) Send(_ context.Context, p bot.Post) error {
	if p.UpdateOnly {
		return nil // this network cannot edit a message in place
	}
	var lines []string
	for _, raw := range strings.Split(p.Text, "\n") {
		line := bot.Clean(raw, 4*a.cfg.MaxLineBytes)
		if line == "" {
			continue
		}
		for _, part := range Split(line, a.cfg.MaxLineBytes) {
			if p.Priority == bot.PriorityUrgent && *a.cfg.Colors {
				part = "\x02" + part + "\x02"
			}
			lines = append(lines, part)
		}
	}
	a.q.push(p.Priority, p.Key, lines)
	return nil
}

// Run connects, and reconnects with backoff, until ctx is done.
func (a *Adapter) Run(ctx context.Context, h bot.Handler) error {
	a.mu.Lock()
	a.handler, a.ctx = h, ctx
	a.mu.Unlock()

	sendCtx, stopSend := context.WithCancel(ctx)
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		a.sendLoop(sendCtx)
	}()
	stop := context.AfterFunc(ctx, func() { a.client.Quit("shipbot stopping") })
	defer stop()

	backoff := time.Second
	var err error
	for ctx.Err() == nil {
		started := time.Now()
		a.log.Info("irc: connecting", zap.String("server", a.cfg.Server), zap.Int("port", a.cfg.Port))
		err = a.client.Connect()
		if ctx.Err() != nil {
			break
		}
		a.mu.Lock()
		fatal := a.fatal
		a.mu.Unlock()
		if fatal != nil {
			err = fatal
			break
		}
		if time.Since(started) > 2*a.cfg.ReconnectMax {
			backoff = time.Second
		}
		a.log.Warn("irc: disconnected; reconnecting", zap.Error(err), zap.Duration("in", backoff),
			zap.Int("queued_lines", a.q.len()))
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, a.cfg.ReconnectMax)
	}
	a.client.Close()
	stopSend()
	<-sendDone
	if errors.Is(err, errNoSASL) {
		return err
	}
	return nil
}

var errNoSASL = errors.New("irc: SASL is configured but the server does not offer it; refusing to run unauthenticated")

func (a *Adapter) onConnected(c *girc.Client, e girc.Event) {
	if a.cfg.SASL != "" && !c.HasCapability("sasl") {
		a.log.Error(errNoSASL.Error())
		a.mu.Lock()
		a.fatal = errNoSASL
		a.mu.Unlock()
		c.Close()
		return
	}
	chans := append([]string{a.channel}, a.cfg.Channels...)
	c.Cmd.Join(chans...)
	a.log.Info("irc: connected; joining", zap.Strings("channels", chans), zap.String("nick", c.GetNick()))
}

func (a *Adapter) setJoined(v bool) {
	a.mu.Lock()
	a.joined = v
	a.mu.Unlock()
	if v {
		a.q.wake()
	}
}

// ready reports whether lines can reach the channel: connected and joined. A line
// sent before the JOIN completes is refused by most servers (+n) and lost.
func (a *Adapter) ready() bool {
	a.mu.Lock()
	j := a.joined
	a.mu.Unlock()
	return j && a.client.IsConnected()
}

func (a *Adapter) onJoin(c *girc.Client, e girc.Event) {
	if e.Source != nil && e.Source.ID() == c.GetID() && len(e.Params) > 0 && strings.EqualFold(e.Params[0], a.channel) {
		a.log.Info("irc: joined", zap.String("channel", a.channel))
		a.setJoined(true)
	}
}

func (a *Adapter) onKick(c *girc.Client, e girc.Event) {
	if len(e.Params) > 1 && strings.EqualFold(e.Params[0], a.channel) && e.Params[1] == c.GetNick() {
		a.log.Warn("irc: kicked from the channel; rejoining", zap.String("by", e.Source.Name), zap.String("reason", e.Last()))
		a.setJoined(false)
		time.AfterFunc(5*time.Second, func() { c.Cmd.Join(a.channel) })
	}
}

func (a *Adapter) onPrivmsg(c *girc.Client, e girc.Event) {
	if e.Source == nil || len(e.Params) == 0 || !strings.EqualFold(e.Params[0], a.channel) {
		return
	}
	text := e.Last()
	if e.IsAction() {
		return
	}
	s := bot.Sender{Network: bot.NetIRC, Nick: e.Source.Name,
		Mask: e.Source.Name + "!" + e.Source.Ident + "@" + e.Source.Host}
	if acct, ok := e.Tags.Get("account"); ok && acct != "" && acct != "*" {
		s.ID = acct
	} else if u := c.LookupUser(e.Source.Name); u != nil && u.Extras.Account != "" && u.Extras.Account != "*" {
		s.ID = u.Extras.Account
	}
	a.mu.Lock()
	h, ctx := a.handler, a.ctx
	a.mu.Unlock()
	if h != nil {
		h.Handle(ctx, bot.Message{Sender: s, Channel: a.channel, Text: text})
	}
}

// sendLoop delivers queued lines while connected, paced by the queue.
func (a *Adapter) sendLoop(ctx context.Context) {
	for {
		line, ok := a.q.next(ctx, a.ready)
		if !ok {
			return
		}
		a.client.Cmd.Message(a.channel, line)
	}
}

// Split cuts s into pieces of at most max bytes, at spaces where it can and never
// inside a UTF-8 sequence.
func Split(s string, max int) []string {
	var out []string
	for len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		if sp := strings.LastIndexByte(s[:cut], ' '); sp > max/2 {
			cut = sp
		}
		out = append(out, strings.TrimRight(s[:cut], " "))
		s = strings.TrimLeft(s[cut:], " ")
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}
