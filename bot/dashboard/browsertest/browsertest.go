// Package browsertest drives the dashboard in a real headless Chromium (the
// Debian package) with chromedp, for end-to-end tests.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser is one headless Chromium tab.
type Browser struct {
	t   testing.TB
	Ctx context.Context
	Dir string // where screenshots go
}

// New starts Chromium; it is stopped when the test ends.
func New(t testing.TB) *Browser {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Fatal("no chromium installed (make deps installs the Debian package)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 1100),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	dir := t.TempDir()
	if d := os.Getenv("SHIPBOT_SCREENSHOT_DIR"); d != "" {
		dir = d
	}
	return &Browser{t: t, Ctx: ctx, Dir: dir}
}

// Do runs actions with a timeout.
func (b *Browser) Do(d time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.Ctx, d)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Eval evaluates a JavaScript expression.
func Eval[T any](b *Browser, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.Ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// WaitJS polls a JavaScript expression until it is true, or fails the test after
// d with what it last saw and a screenshot.
func (b *Browser) WaitJS(what, expr string, d time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := Eval[bool](b, expr)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := Eval[string](b, `document.querySelector("main").innerText`)
			p := b.Screenshot("timeout-" + strings.ReplaceAll(what, " ", "-"))
			b.t.Fatalf("the page never showed %s (%s): %v\nscreenshot %s\npage text:\n%s", what, expr, err, p, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Screenshot saves a full-page PNG and returns its path.
func (b *Browser) Screenshot(name string) string {
	ctx, cancel := context.WithTimeout(b.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(b.Dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	return p
}

// Text returns the text of the first element matching a CSS selector.
func (b *Browser) Text(sel string) string {
	s, _ := Eval[string](b, fmt.Sprintf(`(document.querySelector(%q)||{}).innerText||""`, sel))
	return s
}
