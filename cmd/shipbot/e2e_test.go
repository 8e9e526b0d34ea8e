package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shipbot/shipbot/bot"
	"github.com/shipbot/shipbot/bot/chattest"
	"github.com/shipbot/shipbot/store"
)

// castConfig is a console config for chattest's cast.
func castConfig(dataDir string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nchannel: \"#deploy\"\nchat: console\nreminder_interval: 2s\nlog: {format: json, level: debug}\n%s", dataDir, extra)
	b.WriteString("people:\n")
	for _, p := range []string{chattest.Alice, chattest.Bob, chattest.Carol, chattest.Dave, chattest.Erin} {
		fmt.Fprintf(&b, "  - name: %s\n    emails: [%s]\n", p, chattest.Email(p))
	}
	b.WriteString("roles:\n  release_heads: [dave]\n")
	return b.String()
}

// consoleHarness drives a real `shipbot serve` whose channel is its stdin/stdout.
type consoleHarness struct {
	sb   *chattest.Shipbot
	repo string
	art  string
}

func (h *consoleHarness) Mention(p string) string { return "@" + p }

func (h *consoleHarness) Say(t testing.TB, person, text string) {
	t.Helper()
	if _, err := fmt.Fprintf(h.sb.Stdin, "%s: %s\n", person, text); err != nil {
		t.Fatalf("write to shipbot's console: %v", err)
	}
}

func (h *consoleHarness) BotLines() []string {
	var out []string
	for _, l := range h.sb.Lines() {
		if rest, ok := strings.CutPrefix(l, "shipbot: "); ok {
			out = append(out, rest)
		}
	}
	return out
}

func (h *consoleHarness) CreateRelease(t testing.TB, version string) {
	t.Helper()
	out, err := h.sb.CLI(context.Background(), "release", "create", "--version", version,
		"--artifact", h.art, "--commits", "v1..v2", "--repo", h.repo)
	if err != nil {
		t.Fatalf("shipbot release create: %v\n%s", err, out)
	}
	if !strings.Contains(out, "registered "+version) {
		t.Fatalf("release create said: %s", out)
	}
}

func writeArtifact(t testing.TB, size int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "app.tar.gz")
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckInRoundConsole is the end-to-end test of the check-in round: the real
// shipbot binary, a release registered through the real CLI from a real git
// repository, the shared conversation, and then the audit log read from the store.
func TestCheckInRoundConsole(t *testing.T) {
	bin := chattest.Build(t, "./cmd/shipbot")
	data := t.TempDir()
	sb := chattest.StartShipbot(t, bin, castConfig(data, ""), data)
	h := &consoleHarness{sb: sb, repo: chattest.Repo(t), art: writeArtifact(t, 3<<20+17)}
	chattest.Run(t, h)
	if t.Failed() {
		t.Logf("shipbot log:\n%s", sb.Stderr())
		return
	}

	sb.Stop(t)
	db, err := store.Open(filepath.Join(data, "shipbot.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	evs, err := db.Events(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	find := func(actor, text, decision string) *bot.Event {
		for i := range evs {
			e := &evs[i]
			if e.Actor == actor && strings.Contains(e.Text, text) && e.Decision == decision {
				return e
			}
		}
		t.Errorf("audit log has no %s event from %s for %q", decision, actor, text)
		return nil
	}
	created := find("api", "v1..v2", bot.Accepted)
	if created != nil && (created.Kind != "release.created" || created.Release != "v2") {
		t.Errorf("release.created event: %+v", created)
	}
	find("erin", "!ship", bot.Refused)
	find("alice", "!ready", bot.Accepted)
	find("alice", "!frobnicate", bot.Refused)
	if e := find("dave", "!ship", bot.Accepted); e != nil && !strings.Contains(e.Reply, "shipping v2") {
		t.Errorf("accepted !ship event has reply %q", e.Reply)
	}
	reminded := false
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("audit log sequence has a gap at %d: %d", i, e.Seq)
		}
		if e.Actor == "mallory" {
			t.Errorf("a stranger's command reached the audit log: %+v", e)
		}
		if e.Kind == "reminder" && strings.Contains(e.Reply, "@bob") {
			reminded = true
		}
	}
	if !reminded {
		t.Error("no reminder to bob in the audit log")
	}
	var rel *bot.Release
	err = db.View(context.Background(), func(tx bot.Tx) error {
		rel, err = tx.Release("v2")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if rel.State != bot.StateShipping || rel.Head != "dave" || rel.ReadyCount() != 3 || rel.Artifact.Size != 3<<20+17 {
		t.Errorf("stored release: %+v", rel)
	}
	stored := filepath.Join(data, "artifacts", rel.Artifact.Path)
	if st, err := os.Stat(stored); err != nil || st.Size() != rel.Artifact.Size {
		t.Errorf("stored artifact %s: %v", stored, err)
	}
}

// TestReleaseCreateBadInput: each bad registration fails with a clear message and
// leaves neither a release nor an artifact behind.
func TestReleaseCreateBadInput(t *testing.T) {
	bin := chattest.Build(t, "./cmd/shipbot")
	data := t.TempDir()
	sb := chattest.StartShipbot(t, bin, castConfig(data, "max_artifact_size: 1MiB\n"), data)
	repo := chattest.Repo(t)
	small, big := writeArtifact(t, 4096), writeArtifact(t, 2<<20)
	ctx := context.Background()

	files := http.NewServeMux()
	files.HandleFunc("/build/app.tar.gz", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, small) })
	files.HandleFunc("/build/big.tar.gz", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, big) })
	web := httptest.NewServer(files)
	defer web.Close()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing artifact", []string{"--version", "v9", "--artifact", "/nonexistent/app.tar.gz", "--commits", "v1..v2", "--repo", repo}, "no such file"},
		{"bad range", []string{"--version", "v9", "--artifact", small, "--commits", "v1..v99", "--repo", repo}, `"v99" is not a commit`},
		{"not a range", []string{"--version", "v9", "--artifact", small, "--commits", "v2", "--repo", repo}, "want BASE..HEAD"},
		{"empty range", []string{"--version", "v9", "--artifact", small, "--commits", "v2..v2", "--repo", repo}, "has no commits"},
		{"bad version", []string{"--version", "../v9", "--artifact", small, "--commits", "v1..v2", "--repo", repo}, "--version"},
		{"too large", []string{"--version", "v9", "--artifact", big, "--commits", "v1..v2", "--repo", repo}, "limit 1.0 MiB"},
		{"too large by URL", []string{"--version", "v9", "--artifact", web.URL + "/build/big.tar.gz", "--commits", "v1..v2", "--repo", repo}, "limit 1.0 MiB"},
		{"URL not found", []string{"--version", "v9", "--artifact", web.URL + "/build/nothing.tar.gz", "--commits", "v1..v2", "--repo", repo}, "404"},
	}
	for _, c := range cases {
		out, err := sb.CLI(ctx, append([]string{"release", "create"}, c.args...)...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: err=%v, output %q, want it to mention %q", c.name, err, out, c.want)
		}
	}
	out, err := sb.CLI(ctx, "release", "list")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("after bad registrations, release list: %v %q", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(data, "artifacts")); len(ents) != 0 {
		t.Errorf("bad registrations left artifacts behind: %v", ents)
	}

	// A good one by URL, then the same version again.
	out, err = sb.CLI(ctx, "release", "create", "--version", "v9", "--artifact", web.URL+"/build/app.tar.gz", "--commits", "v1..v2", "--repo", repo)
	if err != nil || !strings.Contains(out, "registered v9") || !strings.Contains(out, "4.0 KiB") {
		t.Fatalf("create by URL: %v %s", err, out)
	}
	out, err = sb.CLI(ctx, "release", "create", "--version", "v9", "--artifact", small, "--commits", "v1..v2", "--repo", repo)
	if err == nil || !strings.Contains(out, "already exists") {
		t.Errorf("duplicate version: %v %q", err, out)
	}
	if st, err := os.Stat(filepath.Join(data, "artifacts", "v9", "app.tar.gz")); err != nil || st.Size() != 4096 {
		t.Errorf("the duplicate attempt disturbed v9's artifact: %v", err)
	}

	// A wrong token is refused.
	cmd := []string{"release", "list"}
	good := sb.Token
	sb.Token = "wrong"
	out, err = sb.CLI(ctx, cmd...)
	sb.Token = good
	if err == nil || !strings.Contains(out, "401") {
		t.Errorf("wrong token: %v %q", err, out)
	}
}

// TestStoreInUse: a second shipbot on the same data dir says the store is in use.
func TestStoreInUse(t *testing.T) {
	bin := chattest.Build(t, "./cmd/shipbot")
	data := t.TempDir()
	sb := chattest.StartShipbot(t, bin, castConfig(data, ""), data)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := sb.CLI(ctx, "serve", "--config", sb.Config, "--listen", "127.0.0.1:0")
	if err == nil || !strings.Contains(out, "is in use") {
		t.Errorf("second serve on the same store: %v %q", err, out)
	}
}
