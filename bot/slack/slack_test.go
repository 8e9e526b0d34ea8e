package slack_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
	shipslack "github.com/shipbot/shipbot/bot/slack"
)

const channel = "C0DEPLOY"

type handler struct {
	mu   sync.Mutex
	msgs []bot.Message
}

func (h *handler) Handle(_ context.Context, m bot.Message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, m)
}

func (h *handler) wait(t *testing.T, n int) []bot.Message {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		h.mu.Lock()
		got := append([]bot.Message(nil), h.msgs...)
		h.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("handled %d messages, want %d: %+v", len(got), n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startAdapter(t *testing.T, f *fakeSlack) (*shipslack.Adapter, *handler) {
	a, err := shipslack.New(shipslack.Config{ChannelID: channel, APIURL: f.URL(), ReconnectMax: time.Second}, "xoxb-test", "xapp-test", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	h := &handler{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, h) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, h
}

func waitMessages(t *testing.T, f *fakeSlack, ok func([]message) bool) []message {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ms := f.messages()
		if ok(ms) {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("slack never got the expected messages: %+v", ms)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMessagesIdentityAndReconnect: channel messages starting with ! reach the bot
// with the user ID as identity; others (another channel, the bot itself, plain
// chat) do not; after Slack drops the socket the adapter reconnects and goes on.
func TestMessagesIdentityAndReconnect(t *testing.T) {
	f := newFakeSlack(t)
	_, h := startAdapter(t, f)
	f.message("C0OTHER", "UALICE", "!ready")
	f.message(channel, "UBOT", "!ready")
	f.message(channel, "UALICE", "lunch?")
	id := f.message(channel, "UALICE", "!ready")
	f.ack(id)
	got := h.wait(t, 1)
	if len(got) != 1 || got[0].Sender.Network != bot.NetSlack || got[0].Sender.ID != "UALICE" || got[0].Text != "!ready" {
		t.Fatalf("handled %+v", got)
	}

	f.drop()
	deadline := time.Now().Add(20 * time.Second)
	for f.Connects() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the adapter did not reconnect after the socket was dropped")
		}
		time.Sleep(50 * time.Millisecond)
	}
	f.message(channel, "UBOB", "!who")
	if got := h.wait(t, 2); got[1].Sender.ID != "UBOB" || got[1].Text != "!who" {
		t.Fatalf("after the reconnect: %+v", got[1])
	}
}

// TestSlashCommandAndButton: /ship ready is !ready from the caller (acknowledged
// with an ephemeral pointer to the channel); a Ready click is !ready <release>
// from the clicker.
func TestSlashCommandAndButton(t *testing.T) {
	f := newFakeSlack(t)
	_, h := startAdapter(t, f)
	id := f.slash("C0ELSE", "UALICE", "/ship", "ready")
	var ack struct {
		ResponseType string `json:"response_type"`
		Text         string `json:"text"`
	}
	json.Unmarshal(f.ack(id), &ack)
	if ack.ResponseType != "ephemeral" || !strings.Contains(ack.Text, "<#"+channel+">") {
		t.Errorf("slash command ack: %+v", ack)
	}
	f.slash(channel, "UBOB", "/ship", "")
	f.click(channel, "UCAROL", shipslack.ReadyAction, "v42")
	f.click(channel, "UCAROL", shipslack.ReadyAction, "v42; rm -rf") // not a version: dropped
	got := h.wait(t, 3)
	want := []struct{ id, text string }{{"UALICE", "!ready"}, {"UBOB", "!help"}, {"UCAROL", "!ready v42"}}
	for i, w := range want {
		if got[i].Sender.ID != w.id || got[i].Text != w.text {
			t.Errorf("message %d: %s %q, want %s %q", i, got[i].Sender.ID, got[i].Text, w.id, w.text)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(h.wait(t, 3)); n != 3 {
		t.Errorf("%d messages handled; the malformed click got through", n)
	}
}

// TestProgressInPlaceAndRateLimits: posts with a key are one message edited in
// place; a 429 is waited out (Retry-After) and meanwhile an urgent post goes
// ahead of a normal one.
func TestProgressInPlaceAndRateLimits(t *testing.T) {
	f := newFakeSlack(t)
	a, _ := startAdapter(t, f)
	ctx := context.Background()
	a.Send(ctx, bot.Post{Text: "v2 staging: 1/4 hosts", Priority: bot.PriorityProgress, Key: "stage:v2"})
	waitMessages(t, f, func(ms []message) bool { return len(ms) == 1 })
	a.Send(ctx, bot.Post{Text: "v2 staging: 3/4 hosts", Priority: bot.PriorityProgress, Key: "stage:v2"})
	a.Send(ctx, bot.Post{Text: "v2 staging: 4/4 hosts", Priority: bot.PriorityProgress, Key: "stage:v2"})
	ms := waitMessages(t, f, func(ms []message) bool { return len(ms) == 1 && ms[0].Latest == "v2 staging: 4/4 hosts" })
	if ms[0].Text != "v2 staging: 1/4 hosts" || ms[0].Updates < 1 {
		t.Errorf("progress: %+v", ms[0])
	}
	// An update-only post for a message we never posted is dropped.
	a.Send(ctx, bot.Post{Text: "card", Key: "checkin:v9", UpdateOnly: true})

	f.mu.Lock()
	f.limited = 1
	f.mu.Unlock()
	start := time.Now()
	a.Send(ctx, bot.Post{Text: "first", Priority: bot.PriorityNormal})
	time.Sleep(200 * time.Millisecond) // the worker has it, and waits out the 429
	a.Send(ctx, bot.Post{Text: "a reply", Priority: bot.PriorityNormal})
	a.Send(ctx, bot.Post{Text: "ROLLBACK v2", Priority: bot.PriorityUrgent})
	ms = waitMessages(t, f, func(ms []message) bool { return len(ms) == 4 })
	if got := []string{ms[1].Text, ms[2].Text, ms[3].Text}; got[0] != "first" || got[1] != "ROLLBACK v2" || got[2] != "a reply" {
		t.Errorf("order after the 429: %q", got)
	}
	if d := ms[1].At.Sub(start); d < 900*time.Millisecond {
		t.Errorf("the 429's Retry-After (1s) was not honoured: posted after %s", d)
	}
}
