// Package slack is the chat adapter for Slack, over Socket Mode (no public URL).
// People are identified by their Slack user ID. A release's announcement is a Block
// Kit card with the check-in list and a Ready button; staging progress and the card
// are edited in place (chat.update); verdicts and rollbacks are new messages.
//
// Outgoing messages go through a queue: urgent posts first, a newer progress post
// replaces an older one with the same key, and HTTP 429 answers are waited out
// (Retry-After) without blocking the bot.
package slack

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slackevents"
	"github.com/slack-go/slack/socketmode"
	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
)

// Environment variables that carry the tokens.
const (
	EnvBotToken = "SHIPBOT_SLACK_BOT_TOKEN" // xoxb-…
	EnvAppToken = "SHIPBOT_SLACK_APP_TOKEN" // xapp-…, for Socket Mode
)

// ReadyAction is the action ID of the card's Ready button.
const ReadyAction = "shipbot_ready"

// Config is the slack: section of shipbot.yaml.
type Config struct {
	ChannelID    string        `yaml:"channel_id"`    // the release channel, C…
	SlashCommand string        `yaml:"slash_command"` // default /ship
	APIURL       string        `yaml:"api_url"`       // default Slack's; for tests and proxies
	ReconnectMax time.Duration `yaml:"reconnect_max"` // backoff cap; default 1m
}

// Validate checks the section and fills defaults.
func (c *Config) Validate() error {
	if !strings.HasPrefix(c.ChannelID, "C") && !strings.HasPrefix(c.ChannelID, "G") {
		return fmt.Errorf("slack.channel_id: %q is not a channel ID (C…); copy it from the channel's details in Slack", c.ChannelID)
	}
	if c.SlashCommand == "" {
		c.SlashCommand = "/ship"
	}
	if !strings.HasPrefix(c.SlashCommand, "/") {
		return fmt.Errorf("slack.slash_command: %q must start with /", c.SlashCommand)
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = time.Minute
	}
	return nil
}

// Adapter is a bot.Adapter on Slack.
type Adapter struct {
	cfg Config
	api *slack.Client
	log *zap.Logger

	mu       sync.Mutex
	queue    []bot.Post
	wake     chan struct{}
	keyed    map[string]string // post key -> ts of the message to update
	botUser  string
	connects int // Socket Mode connections so far, for the log
}

// New makes an adapter; the tokens come from the environment (see Env*).
func New(cfg Config, botToken, appToken string, log *zap.Logger) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(botToken, "xoxb-") {
		return nil, fmt.Errorf("%s must hold the bot token (xoxb-…)", EnvBotToken)
	}
	if !strings.HasPrefix(appToken, "xapp-") {
		return nil, fmt.Errorf("%s must hold an app-level token with connections:write (xapp-…)", EnvAppToken)
	}
	opts := []slack.Option{slack.OptionAppLevelToken(appToken)}
	if cfg.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(strings.TrimRight(cfg.APIURL, "/")+"/"))
	}
	return &Adapter{cfg: cfg, api: slack.New(botToken, opts...), log: log, wake: make(chan struct{}, 1), keyed: map[string]string{}}, nil
}

// Mention renders <@U…>, which notifies the person.
func (a *Adapter) Mention(p *bot.Person) string {
	if p.Slack != "" {
		return "<@" + p.Slack + ">"
	}
	return p.Name
}

// Send queues a post; the queue's worker (run by Run) delivers it.
func (a *Adapter) Send(_ context.Context, p bot.Post) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p.Key != "" {
		// A newer version of a keyed message that is still waiting replaces its
		// content: one API call instead of two.
		for i, q := range a.queue {
			if q.Key != p.Key {
				continue
			}
			if q.UpdateOnly {
				a.queue[i] = p
			} else { // still to be posted: post the newest content
				q.Text, q.Card = p.Text, p.Card
				q.Priority = max(q.Priority, p.Priority)
				a.queue[i] = q
			}
			a.signal()
			return nil
		}
	}
	if len(a.queue) >= 1000 {
		return errors.New("slack: send queue full; is Slack reachable?")
	}
	if p.Priority == bot.PriorityUrgent { // before every non-urgent post
		i := 0
		for i < len(a.queue) && a.queue[i].Priority == bot.PriorityUrgent {
			i++
		}
		a.queue = append(a.queue[:i], append([]bot.Post{p}, a.queue[i:]...)...)
	} else {
		a.queue = append(a.queue, p)
	}
	a.signal()
	return nil
}

func (a *Adapter) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run delivers the channel's messages, slash commands and button clicks to h,
// and sends the queued posts, until ctx is done. Socket Mode reconnects with
// backoff when its connection fails.
func (a *Adapter) Run(ctx context.Context, h bot.Handler) error {
	if auth, err := a.api.AuthTestContext(ctx); err == nil {
		a.mu.Lock()
		a.botUser = auth.UserID
		a.mu.Unlock()
	} else {
		a.log.Warn("slack auth.test failed; is the bot token right?", zap.Error(err))
	}
	go a.sender(ctx)
	backoff := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		err := a.runSocket(ctx, h)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > time.Minute {
			backoff = time.Second
		}
		a.log.Warn("slack socket mode ended; reconnecting", zap.Error(err), zap.Duration("in", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, a.cfg.ReconnectMax)
	}
	return nil
}

// runSocket runs one Socket Mode client until it fails.
func (a *Adapter) runSocket(ctx context.Context, h bot.Handler) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sm := socketmode.New(a.api, socketmode.OptionLog(zap.NewStdLog(a.log.Named("socketmode"))))
	done := make(chan error, 1)
	go func() { done <- sm.RunContext(ctx) }()
	for {
		select {
		case err := <-done:
			return err
		case evt := <-sm.Events:
			a.handle(ctx, sm, evt, h)
		}
	}
}

func (a *Adapter) handle(ctx context.Context, sm *socketmode.Client, evt socketmode.Event, h bot.Handler) {
	switch evt.Type {
	case socketmode.EventTypeConnected:
		a.mu.Lock()
		a.connects++
		n := a.connects
		a.mu.Unlock()
		a.log.Info("slack connected (socket mode)", zap.Int("connection", n))
	case socketmode.EventTypeEventsAPI:
		sm.Ack(*evt.Request)
		ev, ok := evt.Data.(slackevents.EventsAPIEvent)
		if !ok {
			return
		}
		msg, ok := ev.InnerEvent.Data.(*slackevents.MessageEvent)
		a.mu.Lock()
		self := a.botUser
		a.mu.Unlock()
		if !ok || msg.Channel != a.cfg.ChannelID || msg.User == "" || msg.User == self || msg.BotID != "" || msg.SubType != "" {
			return
		}
		text := strings.TrimSpace(msg.Text)
		if !strings.HasPrefix(text, "!") {
			return
		}
		h.Handle(ctx, bot.Message{Sender: bot.Sender{Network: bot.NetSlack, ID: msg.User, Nick: msg.User}, Channel: msg.Channel, Text: text})
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || cmd.Command != a.cfg.SlashCommand {
			sm.Ack(*evt.Request)
			return
		}
		sub := strings.TrimSpace(cmd.Text)
		if sub == "" {
			sub = "help"
		}
		sm.Ack(*evt.Request, map[string]any{"response_type": "ephemeral", "text": fmt.Sprintf("%s %s: the answer is in <#%s>", cmd.Command, sub, a.cfg.ChannelID)})
		h.Handle(ctx, bot.Message{Sender: bot.Sender{Network: bot.NetSlack, ID: cmd.UserID, Nick: cmd.UserName}, Channel: a.cfg.ChannelID, Text: "!" + sub})
	case socketmode.EventTypeInteractive:
		sm.Ack(*evt.Request)
		cb, ok := evt.Data.(slack.InteractionCallback)
		if !ok || cb.Type != slack.InteractionTypeBlockActions {
			return
		}
		for _, act := range cb.ActionCallback.BlockActions {
			if act.ActionID == ReadyAction && bot.ValidVersion(act.Value) {
				// A click is !ready from the clicker; the bot checks that they are a
				// committer of that release.
				h.Handle(ctx, bot.Message{Sender: bot.Sender{Network: bot.NetSlack, ID: cb.User.ID, Nick: cb.User.Name}, Channel: a.cfg.ChannelID, Text: "!ready " + act.Value})
			}
		}
	case socketmode.EventTypeInvalidAuth:
		a.log.Error("slack refused the app token (invalid_auth); check " + EnvAppToken)
	}
}

// sender delivers the queue in order until ctx is done.
func (a *Adapter) sender(ctx context.Context) {
	for {
		a.mu.Lock()
		var p bot.Post
		have := len(a.queue) > 0
		if have {
			p = a.queue[0]
			a.queue = a.queue[1:]
		}
		a.mu.Unlock()
		if !have {
			select {
			case <-ctx.Done():
				return
			case <-a.wake:
			}
			continue
		}
		if err := a.deliver(ctx, p); err != nil && ctx.Err() == nil {
			a.log.Warn("slack post failed", zap.Error(err), zap.String("text", bot.Truncate(p.Text, 80)))
		}
	}
}

// deliver posts or updates one message, waiting out rate limits.
func (a *Adapter) deliver(ctx context.Context, p bot.Post) error {
	a.mu.Lock()
	ts := a.keyed[p.Key]
	a.mu.Unlock()
	if p.UpdateOnly && ts == "" {
		return nil // the message to refresh is not ours to edit (posted before a restart)
	}
	lines := strings.Split(p.Text, "\n")
	for i, l := range lines {
		lines[i] = bot.Clean(l, 3000) // no control characters, whatever the text echoes
	}
	opts := []slack.MsgOption{slack.MsgOptionText(bot.Truncate(strings.Join(lines, "\n"), 3900), false)}
	if p.Card != nil {
		opts = append(opts, slack.MsgOptionBlocks(cardBlocks(p.Card)...))
	}
	for attempt := 0; ; attempt++ {
		var err error
		if ts != "" && p.Key != "" {
			_, _, _, err = a.api.UpdateMessageContext(ctx, a.cfg.ChannelID, ts, opts...)
		} else {
			var newTS string
			_, newTS, err = a.api.PostMessageContext(ctx, a.cfg.ChannelID, opts...)
			if err == nil && p.Key != "" {
				a.mu.Lock()
				a.keyed[p.Key] = newTS
				a.mu.Unlock()
			}
		}
		var rl *slack.RateLimitedError
		if errors.As(err, &rl) && attempt < 10 {
			wait := max(rl.RetryAfter, time.Second)
			a.log.Info("slack rate limit: waiting", zap.Duration("retry_after", wait))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			continue
		}
		return err
	}
}

// cardBlocks draws a check-in card: the release, each committer with their state,
// the Ready button while check-in is open, and unmapped emails.
func cardBlocks(c *bot.CheckinCard) []slack.Block {
	ready := 0
	var lines []string
	for _, e := range c.Committers {
		mark := ":hourglass_flowing_sand:"
		if e.Ready {
			mark, ready = ":white_check_mark:", ready+1
		}
		lines = append(lines, mark+" "+e.Mention)
	}
	head := fmt.Sprintf("*Release %s*: %s, %d/%d checked in", c.Release, c.Summary, ready, len(c.Committers))
	if len(c.Committers) == 0 {
		head = fmt.Sprintf("*Release %s*: %s. Nobody needs to check in; a release head can `!ship`", c.Release, c.Summary)
	}
	blocks := []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, head, false, false), nil, nil)}
	if len(lines) > 0 {
		blocks = append(blocks, slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, strings.Join(lines, "\n"), false, false), nil, nil))
	}
	if c.Open && len(c.Committers) > 0 {
		btn := slack.NewButtonBlockElement(ReadyAction, c.Release, slack.NewTextBlockObject(slack.PlainTextType, "Ready", false, false))
		btn.Style = slack.StylePrimary
		blocks = append(blocks, slack.NewActionBlock("checkin_"+c.Release, btn))
	}
	if len(c.Unmapped) > 0 {
		blocks = append(blocks, slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType,
			"unmapped emails (add them to people in the config): "+strings.Join(c.Unmapped, ", "), false, false)))
	}
	return blocks
}
