package slack_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/slack-go/slack/slacktest"
)

// fakeSlack is slack-go's slacktest server with what the adapter uses and it lacks:
// chat.postMessage and chat.update that keep every message (and can answer 429),
// and a Socket Mode endpoint that the test can push envelopes through, read acks
// from, and drop.
type fakeSlack struct {
	t   *testing.T
	srv *slacktest.Server

	mu       sync.Mutex
	conns    []*websocket.Conn
	connects int
	acks     map[string]json.RawMessage
	posts    []*message
	limited  int // answer this many of the next posts with 429
	seq      int
	envSeq   int
}

type message struct {
	TS      string
	Text    string // as first posted
	Latest  string // after updates
	Blocks  string // latest blocks JSON
	Updates int
	At      time.Time
}

func newFakeSlack(t *testing.T) *fakeSlack {
	f := &fakeSlack{t: t, acks: map[string]json.RawMessage{}}
	f.srv = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/apps.connections.open", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"ok":true,"url":"ws://%s/socket"}`, r.Host)
		})
		c.Handle("/socket", f.socket)
		c.Handle("/chat.postMessage", f.post)
		c.Handle("/chat.update", f.update)
		c.Handle("/auth.test", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, `{"ok":true,"user":"shipbot","user_id":"UBOT","team_id":"T1","bot_id":"BBOT"}`)
		})
	})
	f.srv.Start()
	go func() { // slacktest's feed is unbuffered
		for range f.srv.SeenFeed {
		}
	}()
	t.Cleanup(func() {
		f.drop()
		f.srv.Stop()
	})
	return f
}

// URL is the API URL for slack.New's OptionAPIURL (or shipbot's slack.api_url).
func (f *fakeSlack) URL() string { return f.srv.GetAPIURL() }

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (f *fakeSlack) socket(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	f.mu.Lock() // writes to a connection happen under mu
	c.WriteJSON(map[string]any{"type": "hello", "num_connections": 1,
		"connection_info": map[string]any{"app_id": "A1"}, "debug_info": map[string]any{"host": "fake"}})
	f.conns = append(f.conns, c)
	f.connects++
	f.mu.Unlock()
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(b, &ack) == nil && ack.EnvelopeID != "" {
			f.mu.Lock()
			f.acks[ack.EnvelopeID] = ack.Payload
			f.mu.Unlock()
		}
	}
}

// drop closes every Socket Mode connection, as Slack does when it refreshes one.
func (f *fakeSlack) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

// Connects counts Socket Mode connections so far.
func (f *fakeSlack) Connects() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.connects
}

// push sends an envelope of the given type and payload to the connected client,
// waiting for a connection, and returns its envelope ID.
func (f *fakeSlack) push(typ string, payload any) string {
	f.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		f.mu.Lock()
		var c *websocket.Conn
		if len(f.conns) > 0 {
			c = f.conns[len(f.conns)-1]
		}
		f.envSeq++
		id := "env-" + strconv.Itoa(f.envSeq)
		if c != nil {
			err := c.WriteJSON(map[string]any{"envelope_id": id, "type": typ, "payload": payload, "accepts_response_payload": typ != "events_api"})
			f.mu.Unlock()
			if err == nil {
				return id
			}
		} else {
			f.mu.Unlock()
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("no Socket Mode connection to push a %s to", typ)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// message pushes a channel message from user.
func (f *fakeSlack) message(channel, user, text string) string {
	return f.push("events_api", map[string]any{"type": "event_callback", "team_id": "T1", "api_app_id": "A1",
		"event": map[string]any{"type": "message", "channel": channel, "user": user, "text": text, "ts": fmt.Sprintf("%d.000100", time.Now().UnixNano())}})
}

// slash pushes a slash command.
func (f *fakeSlack) slash(channel, user, command, text string) string {
	return f.push("slash_commands", map[string]any{"command": command, "text": text, "user_id": user, "user_name": user,
		"channel_id": channel, "team_id": "T1", "response_url": "http://unused", "trigger_id": "t1"})
}

// click pushes a block_actions click on a button.
func (f *fakeSlack) click(channel, user, actionID, value string) string {
	return f.push("interactive", map[string]any{"type": "block_actions", "user": map[string]any{"id": user, "name": user},
		"channel": map[string]any{"id": channel}, "team": map[string]any{"id": "T1"}, "trigger_id": "t2",
		"actions": []map[string]any{{"type": "button", "action_id": actionID, "value": value, "block_id": "b1", "action_ts": "1.1"}}})
}

// ack returns the client's ack of an envelope, waiting for it.
func (f *fakeSlack) ack(id string) json.RawMessage {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		a, ok := f.acks[id]
		f.mu.Unlock()
		if ok {
			return a
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("envelope %s was never acknowledged", id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fakeSlack) post(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.limited > 0 {
		f.limited--
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprint(w, `{"ok":false,"error":"ratelimited"}`)
		return
	}
	f.seq++
	ts := fmt.Sprintf("1700000000.%06d", f.seq)
	text := r.Form.Get("text")
	f.posts = append(f.posts, &message{TS: ts, Text: text, Latest: text, Blocks: unescape(r.Form.Get("blocks")), At: time.Now()})
	fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q,"message":{"text":%q}}`, r.Form.Get("channel"), ts, text)
}

func (f *fakeSlack) update(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	ts := r.Form.Get("ts")
	for _, m := range f.posts {
		if m.TS == ts {
			m.Latest, m.Blocks = r.Form.Get("text"), unescape(r.Form.Get("blocks"))
			m.Updates++
			fmt.Fprintf(w, `{"ok":true,"channel":%q,"ts":%q,"text":%q}`, r.Form.Get("channel"), ts, m.Latest)
			return
		}
	}
	fmt.Fprint(w, `{"ok":false,"error":"message_not_found"}`)
}

// unescape undoes encoding/json's HTML escaping of <, > and &, so tests can look
// for mentions as Slack shows them.
func unescape(s string) string {
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(s)
}

// messages returns copies of the messages posted so far.
func (f *fakeSlack) messages() []message {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]message, len(f.posts))
	for i, m := range f.posts {
		out[i] = *m
	}
	return out
}
