package bot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
)

// Bot routes chat commands to the release ledger. It is safe for concurrent use:
// every command is one store transaction.
type Bot struct {
	Dir   *Directory
	Store Store
	Chat  Chat
	Clock clockwork.Clock
	Log   *zap.Logger

	// ReminderInterval is how often missing committers are reminded; 0 disables.
	ReminderInterval time.Duration

	// OnShip runs after a !ship has committed. The rollout engine hooks in here.
	OnShip func(ctx context.Context, r *Release)

	// Rollouts, when set, enables !pause, !resume, !promote, !abort and !rollback.
	Rollouts RolloutControl

	commands []*command
	byName   map[string]*command
}

// command is one entry of the router table; !help is generated from it.
type command struct {
	name  string
	usage string
	help  string
	role  Role // "" means any configured person
	run   func(b *Bot, c *call) error
}

// call is one command being handled inside its transaction.
type call struct {
	ctx     context.Context
	tx      Tx
	person  *Person
	sender  Sender
	cmd     Command
	now     time.Time
	lines   []string
	refused bool
	release string
	after   []func(context.Context)
}

func (c *call) say(format string, args ...any) {
	c.lines = append(c.lines, fmt.Sprintf(format, args...))
}

func (c *call) refuse(format string, args ...any) {
	c.refused = true
	c.say(format, args...)
}

// New returns a bot with the check-in commands registered.
func New(dir *Directory, st Store, chat Chat, clock clockwork.Clock, log *zap.Logger) *Bot {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = zap.NewNop()
	}
	b := &Bot{Dir: dir, Store: st, Chat: chat, Clock: clock, Log: log, byName: map[string]*command{}}
	b.register(&command{name: "help", usage: "!help", help: "list the commands", run: (*Bot).cmdHelp})
	b.register(&command{name: "status", usage: "!status [version]", help: "show the open release and its check-ins", run: (*Bot).cmdStatus})
	b.register(&command{name: "who", usage: "!who [version]", help: "list who has not checked in yet", run: (*Bot).cmdWho})
	b.register(&command{name: "ready", usage: "!ready [version]", help: "check in: you are around to support your change", run: (*Bot).cmdReady})
	b.register(&command{name: "unready", usage: "!unready [version]", help: "take your check-in back", run: (*Bot).cmdUnready})
	b.register(&command{name: "ship", usage: "!ship [version] [--force reason]", help: "ship the release once everyone has checked in", role: RoleHead, run: (*Bot).cmdShip})
	b.register(&command{name: "cancel", usage: "!cancel [version]", help: "drop a release that is still in check-in", role: RoleHead, run: (*Bot).cmdCancel})
	b.register(&command{name: "lock", usage: "!lock <reason>", help: "refuse every !ship until !unlock", role: RoleHead, run: (*Bot).cmdLock})
	b.register(&command{name: "unlock", usage: "!unlock", help: "lift the lock", role: RoleHead, run: (*Bot).cmdUnlock})
	b.register(&command{name: "history", usage: "!history", help: "show the last releases with outcome, head and times", run: (*Bot).cmdHistory})
	return b
}

// RolloutControl is what the rollout commands need from the engine. Each call
// answers with a line for the channel. Running is called inside a store
// transaction and must not wait for the store; the others are called after it.
type RolloutControl interface {
	// Running returns the release being rolled out, if any.
	Running() (string, bool)
	// Status describes the running rollout in a few lines for !status.
	Status(ctx context.Context) []string
	Pause(ctx context.Context, by string) (string, error)
	Resume(ctx context.Context, by string) (string, error)
	Promote(ctx context.Context, by string) (string, error)
	Rollback(ctx context.Context, by, reason string) (string, error)
}

// CommitterMentions renders mentions of a release's committers ("" if none).
func (b *Bot) CommitterMentions(ctx context.Context, release string) string {
	var r *Release
	err := b.Store.View(ctx, func(tx Tx) error {
		var err error
		r, err = tx.Release(release)
		return err
	})
	if err != nil {
		return ""
	}
	return b.mentions(names(r))
}

// EnableRollouts registers the rollout commands.
func (b *Bot) EnableRollouts(rc RolloutControl) {
	b.Rollouts = rc
	b.register(&command{name: "pause", usage: "!pause", help: "hold the rollout at the next tier boundary", role: RoleHead, run: (*Bot).cmdRollout})
	b.register(&command{name: "resume", usage: "!resume", help: "continue a paused rollout", role: RoleHead, run: (*Bot).cmdRollout})
	b.register(&command{name: "promote", usage: "!promote", help: "skip the rest of the current tier's bake", role: RoleHead, run: (*Bot).cmdRollout})
	b.register(&command{name: "abort", usage: "!abort [reason]", help: "stop the rollout and send every host back", role: RoleHead, run: (*Bot).cmdRollout})
	b.register(&command{name: "rollback", usage: "!rollback [reason]", help: "roll the release back (release heads and its committers)", run: (*Bot).cmdRollout})
}

func (b *Bot) register(c *command) {
	b.commands = append(b.commands, c)
	b.byName[c.name] = c
}

// Handle answers one chat message. Ordinary chat is ignored; commands from people
// not in the config are refused without touching the store.
func (b *Bot) Handle(ctx context.Context, m Message) {
	if !strings.HasPrefix(strings.TrimLeft(m.Text, " \t"), "!") {
		return
	}
	log := b.Log.With(zap.Stringer("sender", m.Sender))
	person, known := b.Dir.Identify(m.Sender)
	who := b.senderMention(person, m.Sender)
	if len(m.Text) > MaxMessageBytes {
		log.Info("refused long message", zap.Int("bytes", len(m.Text)))
		b.post(ctx, who+": that message is "+fmt.Sprint(len(m.Text))+" bytes; commands are at most "+fmt.Sprint(MaxMessageBytes)+". Try !help", PriorityNormal)
		return
	}
	text := Clean(m.Text, MaxMessageBytes)
	cmd, perr := ParseCommand(text)
	if errors.Is(perr, ErrNotCommand) {
		return
	}
	if !known {
		log.Info("refused command from unknown sender", zap.String("text", text))
		b.post(ctx, who+": I do not know you, so I cannot take commands from you. Ask an admin to add your identity ("+Clean(m.Sender.String(), 120)+") to people in shipbot's config", PriorityNormal)
		return
	}

	c := &call{ctx: ctx, person: person, sender: m.Sender, cmd: cmd, now: b.Clock.Now()}
	err := b.Store.Update(ctx, func(tx Tx) error {
		c.tx, c.lines, c.refused, c.after = tx, nil, false, nil
		if err := b.dispatch(c, perr); err != nil {
			return err
		}
		return tx.Append(&Event{
			At: c.now, Actor: person.Name, Sender: m.Sender.String(), Release: c.release,
			Kind: "command", Text: text, Decision: decision(c), Reply: strings.Join(c.lines, "\n"),
		})
	})
	if err != nil {
		log.Error("command failed", zap.String("text", text), zap.Error(err))
		b.post(ctx, who+": sorry, that failed on my side and nothing changed; the operator log has the details", PriorityNormal)
		return
	}
	log.Info("command", zap.String("person", person.Name), zap.String("text", text), zap.String("decision", decision(c)))
	if len(c.lines) > 0 {
		b.post(ctx, who+": "+strings.Join(c.lines, "\n"), PriorityNormal)
	}
	for _, f := range c.after {
		f(ctx)
	}
}

func decision(c *call) string {
	if c.refused {
		return Refused
	}
	return Accepted
}

// dispatch runs the command; an error is a store failure that aborts the transaction.
func (b *Bot) dispatch(c *call, perr error) error {
	cmd, ok := b.byName[c.cmd.Name]
	switch {
	case !ok:
		c.refuse("I do not know !%s. Try !help", Clean(c.cmd.Name, 32))
	case perr != nil:
		c.refuse("%s", perr.Error())
	case cmd.role != "" && !b.Dir.Can(c.person.Name, cmd.role):
		c.refuse("!%s is for release heads, and you are not one. Release heads: %s", cmd.name, strings.Join(b.Dir.WithRole(cmd.role), ", "))
	default:
		return cmd.run(b, c)
	}
	return nil
}

// post sends a line to the channel; failures are logged, never fatal.
func (b *Bot) post(ctx context.Context, text string, prio Priority) {
	if err := b.Chat.Send(ctx, Post{Text: text, Priority: prio}); err != nil {
		b.Log.Warn("send to channel failed", zap.Error(err))
	}
}

// Say posts a line to the channel on behalf of the bot (announcements, progress).
func (b *Bot) Say(ctx context.Context, p Post) {
	if err := b.Chat.Send(ctx, p); err != nil {
		b.Log.Warn("send to channel failed", zap.Error(err))
	}
}

func (b *Bot) senderMention(p *Person, s Sender) string {
	if p != nil {
		return b.Chat.Mention(p)
	}
	if n := Clean(s.Nick, 32); n != "" {
		return n
	}
	return Clean(s.ID, 32)
}

// mention renders a configured person's mention; unknown names are cleaned text.
func (b *Bot) mention(name string) string {
	if p := b.Dir.Person(name); p != nil {
		return b.Chat.Mention(p)
	}
	return Clean(name, 64)
}

func (b *Bot) mentions(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = b.mention(n)
	}
	return strings.Join(out, " ")
}
