package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/shipbot/shipbot/bot"
)

// Client talks to a running shipbot's API.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	Token   string
	HTTP    *http.Client
}

// CreateRelease registers a release. When artifact is non-nil it is streamed as the
// request body's artifact part (never buffered whole); otherwise meta.ArtifactURL must
// name where shipbot fetches it.
func (c *Client) CreateRelease(ctx context.Context, meta ReleaseMeta, artifact io.Reader) (*bot.Release, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(writeParts(mw, meta, artifact))
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.BaseURL, "/")+"/v1/releases", pr)
	if err != nil {
		pr.Close()
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	var rel bot.Release
	if err := c.do(req, http.StatusCreated, &rel); err != nil {
		pr.CloseWithError(err)
		return nil, err
	}
	return &rel, nil
}

func writeParts(mw *multipart.Writer, meta ReleaseMeta, artifact io.Reader) error {
	mp, err := mw.CreateFormField("meta")
	if err != nil {
		return err
	}
	if err := json.NewEncoder(mp).Encode(meta); err != nil {
		return err
	}
	if artifact != nil {
		fp, err := mw.CreateFormFile("artifact", meta.Artifact)
		if err != nil {
			return err
		}
		if _, err := io.Copy(fp, artifact); err != nil {
			return fmt.Errorf("read artifact: %w", err)
		}
	}
	return mw.Close()
}

// Releases lists recent releases, newest first.
func (c *Client) Releases(ctx context.Context) ([]*bot.Release, error) {
	var out []*bot.Release
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+"/v1/releases", nil)
	if err != nil {
		return nil, err
	}
	return out, c.do(req, http.StatusOK, &out)
}

// Audit returns audit events after seq.
func (c *Client) Audit(ctx context.Context, after uint64) ([]bot.Event, error) {
	var out []bot.Event
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/audit?after=%d", strings.TrimRight(c.BaseURL, "/"), after), nil)
	if err != nil {
		return nil, err
	}
	return out, c.do(req, http.StatusOK, &out)
}

func (c *Client) do(req *http.Request, want int, out any) error {
	req.Header.Set("Authorization", "Bearer "+c.Token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("shipbot at %s: %w", c.BaseURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var e Error
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("shipbot refused (%s): %s", resp.Status, e.Error)
		}
		return fmt.Errorf("shipbot answered %s: %s", resp.Status, bot.Clean(string(body), 300))
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode shipbot's answer: %w", err)
	}
	return nil
}
