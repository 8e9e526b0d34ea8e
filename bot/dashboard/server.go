package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

//go:embed assets
var assets embed.FS

// Source builds snapshots; rack names the rack to list hosts of ("" for none).
type Source interface {
	Snapshot(ctx context.Context, rack string) (*Snapshot, error)
}

// Server serves the page, the snapshot API and the live stream. Open starts the
// loop that builds a snapshot every Interval while someone watches, and sends it
// to each viewer when it changed; Close stops it.
type Server struct {
	Source   Source
	Interval time.Duration // default 500ms
	Log      *zap.Logger

	mu     sync.Mutex
	subs   map[*viewer]bool
	cancel context.CancelFunc
	done   chan struct{}
}

type viewer struct {
	rack string
	ch   chan []byte // the newest snapshot not yet sent; capacity 1
	last []byte
}

// maxViewers bounds the open streams.
const maxViewers = 256

// Open starts the broadcast loop.
func (s *Server) Open() error {
	if s.Source == nil {
		return errors.New("dashboard: no source")
	}
	if s.Interval <= 0 {
		s.Interval = 500 * time.Millisecond
	}
	if s.Log == nil {
		s.Log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.subs = map[*viewer]bool{}
	s.cancel, s.done = cancel, make(chan struct{})
	s.mu.Unlock()
	go s.loop(ctx)
	return nil
}

// Close stops the loop and ends every stream.
func (s *Server) Close() error {
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

func (s *Server) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for v := range s.subs {
				close(v.ch)
				delete(s.subs, v)
			}
			s.mu.Unlock()
			return
		case <-t.C:
		}
		s.broadcast(ctx)
	}
}

// broadcast builds one snapshot per rack being watched and offers it to the
// viewers whose view changed.
func (s *Server) broadcast(ctx context.Context) {
	s.mu.Lock()
	racks := map[string][]*viewer{}
	for v := range s.subs {
		racks[v.rack] = append(racks[v.rack], v)
	}
	s.mu.Unlock()
	for rack, vs := range racks {
		b, err := s.encode(ctx, rack)
		if err != nil {
			s.Log.Warn("dashboard snapshot failed", zap.Error(err))
			continue
		}
		for _, v := range vs {
			if bytes.Equal(b, v.last) {
				continue
			}
			v.last = b
			select { // replace a snapshot the viewer has not taken yet
			case <-v.ch:
			default:
			}
			select {
			case v.ch <- b:
			default:
			}
		}
	}
}

func (s *Server) encode(ctx context.Context, rack string) ([]byte, error) {
	snap, err := s.Source.Snapshot(ctx, rack)
	if err != nil {
		return nil, err
	}
	snap.At = time.Time{} // the comparison must not see the clock; the page has its own
	return json.Marshal(snap)
}

// Handler serves:
//
//	GET /                  the page
//	GET /assets/{file}     its script and style
//	GET /api/snapshot      the current snapshot as JSON (?rack= lists a rack's hosts)
//	GET /api/events        the snapshot as server-sent events, on every change (?rack=)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(assets, "assets")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := assets.ReadFile("assets/index.html")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b)
	})
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(sub)))
	mux.HandleFunc("GET /api/snapshot", func(w http.ResponseWriter, r *http.Request) {
		b, err := s.encode(r.Context(), r.URL.Query().Get("rack"))
		if err != nil {
			http.Error(w, "snapshot: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	mux.HandleFunc("GET /api/events", s.events)
	return mux
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	v := &viewer{rack: r.URL.Query().Get("rack"), ch: make(chan []byte, 1)}
	first, err := s.encode(r.Context(), v.rack)
	if err != nil {
		http.Error(w, "snapshot: "+err.Error(), http.StatusInternalServerError)
		return
	}
	v.last = first
	s.mu.Lock()
	if s.subs == nil {
		s.mu.Unlock()
		http.Error(w, "the dashboard is not running", http.StatusServiceUnavailable)
		return
	}
	if len(s.subs) >= maxViewers {
		s.mu.Unlock()
		http.Error(w, fmt.Sprintf("too many dashboard viewers (%d); try again later", maxViewers), http.StatusServiceUnavailable)
		return
	}
	s.subs[v] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.subs, v)
		s.mu.Unlock()
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	fmt.Fprintf(w, "retry: 2000\n\nevent: snapshot\ndata: %s\n\n", first)
	fl.Flush()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case b, ok := <-v.ch:
			if !ok {
				return // shutting down
			}
			if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b); err != nil {
				return
			}
		case <-heartbeat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
		}
		fl.Flush()
	}
}
