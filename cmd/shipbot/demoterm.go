package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// demoTerm is the demo's terminal: the channel's lines scroll, and while a push
// runs, progress bars (one per rack and a total) stay under them, redrawn in place
// on a terminal and printed as a line every few seconds otherwise. It also keeps
// every channel line so the script can wait for the bot's answers.
type demoTerm struct {
	out io.Writer
	tty bool

	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{} // closed and replaced when a line arrives
	bars    []string      // drawn under the lines (tty only)
}

func newDemoTerm(out io.Writer) *demoTerm {
	t := &demoTerm{out: out, changed: make(chan struct{})}
	if f, ok := out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb" {
			t.tty = true
		}
	}
	return t
}

// Write prints channel output above the bars and records its lines.
func (t *demoTerm) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clearBars()
	_, err := t.out.Write(p)
	t.drawBars()
	t.partial = append(t.partial, p...)
	for {
		i := strings.IndexByte(string(t.partial), '\n')
		if i < 0 {
			break
		}
		t.lines = append(t.lines, string(t.partial[:i]))
		t.partial = t.partial[i+1:]
		close(t.changed)
		t.changed = make(chan struct{})
	}
	return len(p), err
}

// Printf prints a demo narration line (not a channel line).
func (t *demoTerm) Printf(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clearBars()
	fmt.Fprintf(t.out, format, args...)
	t.drawBars()
}

// SetBars replaces the progress bars; nil removes them. Without a terminal the
// bars are printed as they are, once.
func (t *demoTerm) SetBars(bars []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.tty {
		for _, b := range bars {
			fmt.Fprintln(t.out, b)
		}
		return
	}
	t.clearBars()
	t.bars = bars
	t.drawBars()
}

func (t *demoTerm) clearBars() {
	if t.tty && len(t.bars) > 0 {
		// Up to the first bar, then clear to the end of the screen.
		fmt.Fprintf(t.out, "\x1b[%dF\x1b[J", len(t.bars))
	}
}

func (t *demoTerm) drawBars() {
	if t.tty {
		for _, b := range t.bars {
			fmt.Fprintln(t.out, b)
		}
	}
}

// Mark is a position in the channel's lines, for WaitLine.
func (t *demoTerm) Mark() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.lines)
}

// WaitLine waits for a channel line after mark that contains sub, and returns it
// with the position after it.
func (t *demoTerm) WaitLine(ctx context.Context, mark int, sub string) (string, int, error) {
	for {
		t.mu.Lock()
		for i := mark; i < len(t.lines); i++ {
			if strings.Contains(t.lines[i], sub) {
				l := t.lines[i]
				t.mu.Unlock()
				return l, i + 1, nil
			}
		}
		ch := t.changed
		t.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", mark, fmt.Errorf("waiting for %q in the channel: %w", sub, context.Cause(ctx))
		case <-ch:
		}
	}
}

// bar renders "name [#####-----]  52%  tail".
func bar(name string, frac float64, width int, tail string) string {
	frac = min(max(frac, 0), 1)
	n := int(frac*float64(width) + 0.5)
	return fmt.Sprintf("  %-6s [%s%s] %3.0f%%  %s", name, strings.Repeat("#", n), strings.Repeat("-", width-n), 100*frac, tail)
}
