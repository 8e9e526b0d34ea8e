package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/httpapi"
	"github.com/shipbot/shipbot/store"
)

type nullChat struct{}

func (nullChat) Send(context.Context, bot.Post) error { return nil }
func (nullChat) Mention(p *bot.Person) string         { return "@" + p.Name }

func newServer(t *testing.T, maxSize int64) (*httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "shipbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	d, err := bot.NewDirectory([]bot.Person{{Name: "alice", Emails: []string{"alice@example.com"}}}, []string{"alice"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	arts := filepath.Join(dir, "artifacts")
	s := &httpapi.Server{Bot: bot.New(d, db, nullChat{}, nil, nil), DB: db, Token: "secret",
		Artifacts: &store.Artifacts{Dir: arts, MaxSize: maxSize}}
	s.Log = zap.NewNop()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv, arts
}

var meta = httpapi.ReleaseMeta{Version: "v1", Range: "v0..v1", Artifact: "app.bin",
	Commits: []bot.Commit{{SHA: "abc", Author: "alice@example.com"}}}

// body builds a multipart body; chunked hides its length from the server.
func post(t *testing.T, url, token string, m httpapi.ReleaseMeta, artifact []byte, chunked bool) (int, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mp, _ := mw.CreateFormField("meta")
	json.NewEncoder(mp).Encode(m)
	if artifact != nil {
		fp, _ := mw.CreateFormFile("artifact", m.Artifact)
		fp.Write(artifact)
	}
	mw.Close()
	var rd io.Reader = &buf
	if chunked {
		rd = io.MultiReader(&buf) // not a *bytes.Buffer: no Content-Length
	}
	req, _ := http.NewRequest("POST", url+"/v1/releases", rd)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestCreateRelease(t *testing.T) {
	srv, arts := newServer(t, 1<<20)
	art := bytes.Repeat([]byte("x"), 1000)

	if code, body := post(t, srv.URL, "", meta, art, false); code != 401 || !strings.Contains(body, "bearer token") {
		t.Errorf("no token: %d %s", code, body)
	}
	if code, _ := post(t, srv.URL, "Secret", meta, art, false); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	bad := meta
	bad.Commits = nil
	if code, body := post(t, srv.URL, "secret", bad, art, false); code != 400 || !strings.Contains(body, "no commits") {
		t.Errorf("no commits: %d %s", code, body)
	}
	bad = meta
	bad.Artifact = "../../etc/passwd"
	if code, body := post(t, srv.URL, "secret", bad, art, false); code != 400 || !strings.Contains(body, "artifact name") {
		t.Errorf("path in name: %d %s", code, body)
	}
	if code, body := post(t, srv.URL, "secret", meta, nil, false); code != 400 || !strings.Contains(body, "artifact") {
		t.Errorf("no artifact part: %d %s", code, body)
	}
	// Over the limit with no Content-Length: the stream is cut at the limit.
	if code, body := post(t, srv.URL, "secret", meta, make([]byte, 2<<20), true); code != 413 || !strings.Contains(body, "limit 1.0 MiB") {
		t.Errorf("too large, chunked: %d %s", code, body)
	}
	if code, _ := post(t, srv.URL, "secret", meta, make([]byte, 2<<20), false); code != 413 {
		t.Errorf("too large with Content-Length: %d", code)
	}
	if ents, _ := os.ReadDir(arts); len(ents) != 0 {
		t.Errorf("refused requests left %v", ents)
	}

	code, body := post(t, srv.URL, "secret", meta, art, true)
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var rel bot.Release
	json.Unmarshal([]byte(body), &rel)
	if rel.Artifact.Size != 1000 || len(rel.Committers) != 1 || rel.State != bot.StateCheckin {
		t.Errorf("created: %+v", rel)
	}
	if code, body := post(t, srv.URL, "secret", meta, []byte("other"), false); code != 409 || !strings.Contains(body, "already exists") {
		t.Errorf("duplicate: %d %s", code, body)
	}
	if b, _ := os.ReadFile(filepath.Join(arts, "v1", "app.bin")); len(b) != 1000 {
		t.Errorf("the duplicate disturbed the stored artifact (%d bytes)", len(b))
	}

	req, _ := http.NewRequest("POST", srv.URL+"/v1/releases", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Set("Content-Type", "application/json")
	resp, _ := http.DefaultClient.Do(req)
	if resp.StatusCode != 415 {
		t.Errorf("JSON body: %d", resp.StatusCode)
	}
	resp.Body.Close()

	c := &httpapi.Client{BaseURL: srv.URL, Token: "secret"}
	rels, err := c.Releases(context.Background())
	if err != nil || len(rels) != 1 {
		t.Errorf("list: %v %v", rels, err)
	}
	evs, err := c.Audit(context.Background(), 0)
	if err != nil || len(evs) != 1 || evs[0].Kind != "release.created" {
		t.Errorf("audit: %+v %v", evs, err)
	}
}
