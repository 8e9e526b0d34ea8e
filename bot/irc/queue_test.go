package irc

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/shipbot/shipbot/bot"
)

func TestQueuePriorityAndBatching(t *testing.T) {
	q := newQueue(1000, 1000)
	q.push(bot.PriorityProgress, "stage", []string{"staged 1/8"})
	q.push(bot.PriorityNormal, "", []string{"alice: checked in"})
	q.push(bot.PriorityProgress, "stage", []string{"staged 5/8"}) // replaces 1/8
	q.push(bot.PriorityProgress, "rate", []string{"41 MB/s"})
	q.push(bot.PriorityUrgent, "", []string{"a2 FAILED: 5xx 7.9%", "rolling back"})
	var got []string
	connected := func() bool { return true }
	for q.len() > 0 {
		l, ok := q.next(context.Background(), connected)
		if !ok {
			t.Fatal("next failed")
		}
		got = append(got, l)
	}
	want := []string{"a2 FAILED: 5xx 7.9%", "rolling back", "alice: checked in", "staged 5/8 | 41 MB/s"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("order:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestQueueWaitsWhileDisconnected(t *testing.T) {
	q := newQueue(1000, 1000)
	q.push(bot.PriorityNormal, "", []string{"queued while down"})
	up := make(chan struct{})
	connected := func() bool {
		select {
		case <-up:
			return true
		default:
			return false
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got := make(chan string)
	go func() {
		l, _ := q.next(ctx, connected)
		got <- l
	}()
	select {
	case l := <-got:
		t.Fatalf("sent %q while disconnected", l)
	case <-time.After(300 * time.Millisecond):
	}
	close(up)
	q.wake()
	if l := <-got; l != "queued while down" {
		t.Errorf("got %q", l)
	}
}

// The pace holds: with 5 lines/s and a burst of 2, 7 lines take about a second.
func TestQueuePace(t *testing.T) {
	q := newQueue(5, 2)
	for i := 0; i < 7; i++ {
		q.push(bot.PriorityNormal, "", []string{"x"})
	}
	start := time.Now()
	for i := 0; i < 7; i++ {
		q.next(context.Background(), func() bool { return true })
	}
	if el := time.Since(start); el < 800*time.Millisecond {
		t.Errorf("7 lines at 5/s after a burst of 2 took %s", el)
	}
}

func TestSplit(t *testing.T) {
	s := strings.Repeat("word ", 100) + strings.Repeat("é", 300)
	parts := Split(s, 100)
	if strings.Join(parts, "") != strings.ReplaceAll(strings.TrimSpace(s), " ", "") && len(parts) < 2 {
		t.Fatal("lost text")
	}
	total := 0
	for _, p := range parts {
		if len(p) > 100 || !utf8.ValidString(p) || p == "" {
			t.Errorf("part %q (%d bytes)", p, len(p))
		}
		total += len(strings.ReplaceAll(p, " ", ""))
	}
	if want := len(strings.ReplaceAll(s, " ", "")); total != want {
		t.Errorf("split kept %d non-space bytes of %d", total, want)
	}
	if got := Split("short", 100); len(got) != 1 || got[0] != "short" {
		t.Errorf("short: %q", got)
	}
}

func TestSendNeverCarriesCRLF(t *testing.T) {
	cfg := Config{Server: "x"}
	cfg.Validate()
	a, err := New(cfg, "#deploy", nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Send(context.Background(), bot.Post{Text: "one\r\nPRIVMSG #evil :two\x00three\nfour", Priority: bot.PriorityUrgent})
	for q := a.q; q.len() > 0; {
		l, _ := q.pop()
		if strings.ContainsAny(l, "\r\n\x00") {
			t.Errorf("line %q", l)
		}
		if !strings.HasPrefix(l, "\x02") {
			t.Errorf("urgent line not bold: %q", l)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "irc.server"},
		{Config{Server: "x", SASL: "scram"}, "irc.sasl"},
		{Config{Server: "x", SASL: "external", TLS: true}, "cert_file"},
		{Config{Server: "x", Channels: []string{"deploy"}}, "irc.channels[0]"},
		{Config{Server: "x", MaxLineBytes: 600}, "max_line_bytes"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	c := Config{Server: "x", TLS: true}
	if err := c.Validate(); err != nil || c.Port != 6697 || c.Nick != "shipbot" || !*c.Colors {
		t.Errorf("defaults: %+v %v", c, err)
	}
}
