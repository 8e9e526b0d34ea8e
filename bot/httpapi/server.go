// Package httpapi is shipbot's HTTP API for CI and people: registering a release
// (streaming its artifact, or naming a URL to fetch it from) and reading releases and
// the audit log. Every /v1 route needs the bearer token.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/store"
)

// ReleaseMeta is the JSON part of a release registration.
type ReleaseMeta struct {
	Version     string       `json:"version"`
	Range       string       `json:"range"`
	Commits     []bot.Commit `json:"commits"`
	Artifact    string       `json:"artifact"`               // file name
	ArtifactURL string       `json:"artifact_url,omitempty"` // fetch from here instead of a streamed part
	CreatedBy   string       `json:"created_by,omitempty"`   // free text, e.g. the CI job
}

// Server serves the API.
type Server struct {
	Bot       *bot.Bot
	DB        *store.DB
	Artifacts *store.Artifacts
	Token     string
	Log       *zap.Logger
	// Fetch downloads artifact URLs; nil means http.DefaultClient with a timeout.
	Fetch *http.Client

	mu      sync.Mutex
	pending map[string]bool // versions being uploaded right now
}

// MaxMetaBytes bounds the JSON part (a 10000-commit range fits comfortably).
const MaxMetaBytes = 8 << 20

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("POST /v1/releases", s.auth(s.createRelease))
	mux.Handle("GET /v1/releases", s.auth(s.listReleases))
	mux.Handle("GET /v1/releases/{version}", s.auth(s.getRelease))
	mux.Handle("GET /v1/audit", s.auth(s.audit))
	return mux
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, Error{Error: fmt.Sprintf(format, args...)})
}

func (s *Server) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || s.Token == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.Token)) != 1 {
			s.Log.Warn("api: refused request without a valid token", zap.String("method", r.Method),
				zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
			w.Header().Set("WWW-Authenticate", `Bearer realm="shipbot"`)
			fail(w, http.StatusUnauthorized, "missing or wrong bearer token; set SHIPBOT_API_TOKEN to shipbot's API token")
			return
		}
		h(w, r)
	})
}

// createRelease takes multipart/form-data: a "meta" part (ReleaseMeta JSON) first,
// then, unless meta names artifact_url, an "artifact" part with the file. The meta is
// checked before a byte of the artifact is read, so a bad request fails fast.
func (s *Server) createRelease(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		fail(w, http.StatusUnsupportedMediaType, "send multipart/form-data with a meta part and an artifact part (shipbot release create does this)")
		return
	}
	if max := s.Artifacts.MaxSize; max > 0 && r.ContentLength > max+MaxMetaBytes {
		fail(w, http.StatusRequestEntityTooLarge, "artifact is too large: the request is %s and the limit is %s (max_artifact_size)", bot.HumanBytes(r.ContentLength), bot.HumanBytes(max))
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		fail(w, http.StatusBadRequest, "read multipart body: %v", err)
		return
	}
	part, err := mr.NextPart()
	if err != nil || part.FormName() != "meta" {
		fail(w, http.StatusBadRequest, "the first part must be \"meta\" (release JSON)")
		return
	}
	var meta ReleaseMeta
	dec := json.NewDecoder(io.LimitReader(part, MaxMetaBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&meta); err != nil {
		fail(w, http.StatusBadRequest, "meta: %v", err)
		return
	}
	if !bot.ValidVersion(meta.Version) {
		fail(w, http.StatusBadRequest, "version %q: use 1-64 letters, digits, '.', '-', '_' or '+'", meta.Version)
		return
	}
	// Hold the version while we check and store, so two uploads cannot race.
	s.mu.Lock()
	if s.pending == nil {
		s.pending = map[string]bool{}
	}
	if s.pending[meta.Version] {
		s.mu.Unlock()
		fail(w, http.StatusConflict, "release %s is being registered by another request", meta.Version)
		return
	}
	s.pending[meta.Version] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, meta.Version)
		s.mu.Unlock()
	}()

	if code, msg := s.checkMeta(ctx, &meta); msg != "" {
		fail(w, code, "%s", msg)
		return
	}

	var src io.Reader
	source := "upload"
	if meta.ArtifactURL != "" {
		body, err := s.download(ctx, meta.ArtifactURL)
		if err != nil {
			fail(w, http.StatusBadGateway, "fetch artifact: %v", err)
			return
		}
		defer body.Close()
		src, source = body, redact(meta.ArtifactURL)
	} else {
		part, err := mr.NextPart()
		if err != nil || part.FormName() != "artifact" {
			fail(w, http.StatusBadRequest, "the second part must be \"artifact\" (the file), or meta must name artifact_url")
			return
		}
		src = part
	}
	art, err := s.Artifacts.Put(meta.Version, meta.Artifact, src)
	if err != nil {
		s.Artifacts.Remove(meta.Version)
		if errors.Is(err, store.ErrTooLarge) {
			fail(w, http.StatusRequestEntityTooLarge, "%v; raise max_artifact_size or ship a smaller build", err)
			return
		}
		s.Log.Warn("api: storing artifact failed", zap.String("release", meta.Version), zap.Error(err))
		fail(w, http.StatusBadRequest, "store artifact: %v", err)
		return
	}
	art.Source = source
	rel, err := s.Bot.CreateRelease(ctx, bot.NewRelease{
		Version: meta.Version, Range: meta.Range, Commits: meta.Commits, Artifact: art,
		CreatedBy: bot.Clean(meta.CreatedBy, 100),
	})
	if err != nil {
		s.Artifacts.Remove(meta.Version)
		if errors.Is(err, bot.ErrExists) {
			fail(w, http.StatusConflict, "release %s already exists; pick a new version", meta.Version)
			return
		}
		s.Log.Error("api: create release failed", zap.String("release", meta.Version), zap.Error(err))
		fail(w, http.StatusInternalServerError, "create release: %v", err)
		return
	}
	writeJSON(w, http.StatusCreated, rel)
}

// checkMeta returns a status and a message for the client, or "" when meta is fine.
func (s *Server) checkMeta(ctx context.Context, m *ReleaseMeta) (int, string) {
	bad := http.StatusBadRequest
	switch {
	case m.Range == "" || len(m.Range) > 200:
		return bad, "range is missing (e.g. v41..v42)"
	case len(m.Commits) == 0:
		return bad, fmt.Sprintf("range %s has no commits", m.Range)
	}
	for i, c := range m.Commits {
		if c.SHA == "" || c.Author == "" {
			return bad, fmt.Sprintf("commits[%d]: sha and author are required", i)
		}
	}
	if err := store.ValidArtifactName(m.Artifact); err != nil {
		return bad, err.Error()
	}
	if m.ArtifactURL != "" {
		u, err := url.Parse(m.ArtifactURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad, "artifact_url must be an http or https URL"
		}
	}
	err := s.DB.View(ctx, func(tx bot.Tx) error {
		_, err := tx.Release(m.Version)
		return err
	})
	switch {
	case err == nil:
		return http.StatusConflict, fmt.Sprintf("release %s already exists; pick a new version", m.Version)
	case !errors.Is(err, bot.ErrNotFound):
		s.Log.Error("api: read store", zap.Error(err))
		return http.StatusInternalServerError, "cannot read the store; see shipbot's log"
	}
	return 0, ""
}

func (s *Server) download(ctx context.Context, u string) (io.ReadCloser, error) {
	c := s.Fetch
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", redact(u), err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", redact(u), resp.Status)
	}
	if max := s.Artifacts.MaxSize; max > 0 && resp.ContentLength > max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s is %s (limit %s)", store.ErrTooLarge, redact(u), bot.HumanBytes(resp.ContentLength), bot.HumanBytes(max))
	}
	return resp.Body, nil
}

// redact drops credentials and query strings (often signed tokens) from a URL.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	p.User, p.RawQuery, p.Fragment = nil, "", ""
	return p.String()
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) {
	var rels []*bot.Release
	err := s.DB.View(r.Context(), func(tx bot.Tx) error {
		var err error
		rels, err = tx.RecentReleases(100)
		return err
	})
	if err != nil {
		fail(w, http.StatusInternalServerError, "read releases: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, rels)
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) {
	var rel *bot.Release
	err := s.DB.View(r.Context(), func(tx bot.Tx) error {
		var err error
		rel, err = tx.Release(r.PathValue("version"))
		return err
	})
	switch {
	case errors.Is(err, bot.ErrNotFound):
		fail(w, http.StatusNotFound, "no release %s", r.PathValue("version"))
	case err != nil:
		fail(w, http.StatusInternalServerError, "read release: %v", err)
	default:
		writeJSON(w, http.StatusOK, rel)
	}
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if a := r.URL.Query().Get("after"); a != "" {
		if _, err := fmt.Sscan(a, &after); err != nil {
			fail(w, http.StatusBadRequest, "after must be an event sequence number")
			return
		}
	}
	evs, err := s.DB.Events(after, 1000)
	if err != nil {
		fail(w, http.StatusInternalServerError, "read audit log: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, evs)
}
