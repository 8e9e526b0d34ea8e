// Package console is a chat adapter on a terminal or a pipe: the input line
// "alice: !ready" speaks as alice, and the bot's lines are written to the output.
// It needs no network, which makes it the demo's channel and the tests' simplest one.
package console

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/shipbot/shipbot/bot"
)

// Adapter reads "name: text" lines from In and writes the channel to Out.
type Adapter struct {
	In      io.Reader
	Out     io.Writer
	Channel string
	// Echo also writes each input line to Out, so Out reads as a whole transcript.
	Echo bool

	mu sync.Mutex
}

var _ bot.Adapter = (*Adapter)(nil)

// Send writes the post, one output line per line of text, prefixed with the bot's name.
func (a *Adapter) Send(_ context.Context, p bot.Post) error {
	if p.UpdateOnly {
		return nil // this network cannot edit a message in place
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, line := range strings.Split(p.Text, "\n") {
		if _, err := fmt.Fprintf(a.Out, "shipbot: %s\n", bot.Clean(line, 4000)); err != nil {
			return err
		}
	}
	return nil
}

// Mention renders "@name".
func (a *Adapter) Mention(p *bot.Person) string { return "@" + p.Name }

// Run reads lines until In ends or ctx is done. A line without "name:" is ignored
// with a hint, since nobody can be said to have typed it.
func (a *Adapter) Run(ctx context.Context, h bot.Handler) error {
	lines := make(chan string)
	errc := make(chan error, 1)
	go func() {
		br := bufio.NewReader(a.In)
		for {
			line, err := readLine(br, maxLine)
			if err == io.EOF {
				errc <- nil
				return
			}
			if err != nil {
				errc <- err
				return
			}
			select {
			case lines <- line:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if err != nil {
				return fmt.Errorf("console input: %w", err)
			}
			return nil
		case line := <-lines:
			a.handle(ctx, h, line)
		}
	}
}

// maxLine is the longest line kept; the rest of a longer line is dropped (the bot
// refuses anything over bot.MaxMessageBytes anyway).
const maxLine = 64 << 10

// readLine reads one line of any length, keeping at most max bytes of it.
func readLine(br *bufio.Reader, max int) (string, error) {
	var b []byte
	for {
		chunk, more, err := br.ReadLine()
		if err != nil {
			if len(b) > 0 && err == io.EOF {
				return string(b), nil
			}
			return "", err
		}
		if room := max - len(b); room > 0 {
			b = append(b, chunk[:min(len(chunk), room)]...)
		}
		if !more {
			return string(b), nil
		}
	}
}

func (a *Adapter) handle(ctx context.Context, h bot.Handler, line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	name, text, ok := strings.Cut(line, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		a.Send(ctx, bot.Post{Text: `console: type "name: message", e.g. "alice: !ready"`})
		return
	}
	if a.Echo {
		a.mu.Lock()
		fmt.Fprintf(a.Out, "%s: %s\n", bot.Clean(name, 32), bot.Clean(text, 500))
		a.mu.Unlock()
	}
	h.Handle(ctx, bot.Message{
		Sender:  bot.Sender{Network: bot.NetConsole, ID: name, Nick: name},
		Channel: a.Channel,
		Text:    strings.TrimSpace(text),
	})
}
