package console_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/console"
)

type collect struct {
	mu   sync.Mutex
	msgs []bot.Message
}

func (c *collect) Handle(_ context.Context, m bot.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, m)
}

func TestConsole(t *testing.T) {
	in := "alice: !ready\nno colon here\n\nbob:!who\n" + "carol: " + strings.Repeat("y", 100<<10) + "\nmallory : !ship"
	var out strings.Builder
	a := &console.Adapter{In: strings.NewReader(in), Out: &out, Channel: "#deploy"}
	h := &collect{}
	if err := a.Run(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if len(h.msgs) != 4 {
		t.Fatalf("got %d messages: %+v", len(h.msgs), h.msgs)
	}
	if m := h.msgs[0]; m.Sender.ID != "alice" || m.Sender.Network != bot.NetConsole || m.Text != "!ready" || m.Channel != "#deploy" {
		t.Errorf("first message: %+v", m)
	}
	if h.msgs[1].Sender.ID != "bob" || h.msgs[1].Text != "!who" {
		t.Errorf("second: %+v", h.msgs[1])
	}
	if n := len(h.msgs[2].Text); n < 60<<10 || n > 64<<10 {
		t.Errorf("a 100 KiB line came through as %d bytes", n)
	}
	if h.msgs[3].Sender.ID != "mallory" {
		t.Errorf("last line without newline: %+v", h.msgs[3])
	}
	if !strings.Contains(out.String(), `type "name: message"`) {
		t.Errorf("no hint for a line without a name: %q", out.String())
	}
	a.Send(context.Background(), bot.Post{Text: "one\ntwo\r\x1b[2Jthree"})
	if !strings.Contains(out.String(), "shipbot: one\nshipbot: two [2Jthree\n") {
		t.Errorf("Send output: %q", out.String())
	}
}
