package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// Vars fill a gate's PromQL templates for one side (the canary or the baseline).
type Vars struct {
	// Version is the release this side runs: the new one for the canary, the
	// previous one for the baseline.
	Version string
	// Release and Baseline are the new and the previous release, on both sides.
	Release, Baseline string
	// Hosts is a regular expression that matches this side's host names exactly,
	// escaped for a PromQL string: host=~"{{.Hosts}}".
	Hosts string
	// HostList is the same hosts as a list.
	HostList []string
}

// NewVars makes the template variables for hosts running version.
func NewVars(version, release, baseline string, hosts []string) Vars {
	q := make([]string, len(hosts))
	for i, h := range hosts {
		// QuoteMeta's backslashes must survive the PromQL string literal.
		q[i] = strings.ReplaceAll(regexp.QuoteMeta(h), `\`, `\\`)
	}
	return Vars{Version: version, Release: release, Baseline: baseline, Hosts: strings.Join(q, "|"), HostList: hosts}
}

// ParseQuery parses a PromQL template; missing keys are errors.
func ParseQuery(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	// Catch a misspelt field now rather than in the middle of a rollout.
	if _, err := render(t, NewVars("v2", "v2", "v1", []string{"host1"})); err != nil {
		return nil, err
	}
	return t, nil
}

func render(t *template.Template, v Vars) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Prometheus runs gate queries against a Prometheus server's HTTP API.
type Prometheus struct {
	URL    string // for example http://127.0.0.1:9090
	Client *http.Client
}

// Measure runs a prometheus gate for one side. A query that fails or returns
// nothing gives a reading without data (the gate is inconclusive), with the reason.
func (p *Prometheus) Measure(ctx context.Context, g Gate, v Vars) Measure {
	if len(v.HostList) == 0 {
		return Measure{Samples: math.NaN(), Err: ""}
	}
	q, err := render(g.Query, v)
	if err != nil {
		return Measure{Samples: math.NaN(), Err: err.Error()}
	}
	val, ok, err := p.Query(ctx, q)
	if err != nil {
		return Measure{Samples: math.NaN(), Err: err.Error()}
	}
	m := Measure{Value: val, OK: ok && !math.IsNaN(val), Samples: math.NaN()}
	if g.SamplesQuery != nil {
		q, err := render(g.SamplesQuery, v)
		if err != nil {
			return Measure{Samples: math.NaN(), Err: err.Error()}
		}
		n, ok, err := p.Query(ctx, q)
		if err != nil {
			return Measure{Samples: math.NaN(), Err: "samples: " + err.Error()}
		}
		m.Samples = 0
		if ok && !math.IsNaN(n) {
			m.Samples = n
		}
	}
	return m
}

// Query runs an instant query that must give one number: a scalar, or a vector of
// at most one series. An empty vector is ok=false (no data).
func (p *Prometheus) Query(ctx context.Context, q string) (v float64, ok bool, err error) {
	c := p.Client
	if c == nil {
		c = http.DefaultClient
	}
	u := strings.TrimSuffix(p.URL, "/") + "/api/v1/query?" + url.Values{"query": {q}}.Encode()
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return 0, false, fmt.Errorf("prometheus: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, false, fmt.Errorf("prometheus: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, false, fmt.Errorf("prometheus: %w", err)
	}
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, false, fmt.Errorf("prometheus: %s: not an API answer (%.80q)", resp.Status, body)
	}
	if r.Status != "success" {
		return 0, false, fmt.Errorf("prometheus: %s: %s", r.ErrorType, r.Error)
	}
	var pair []any
	switch r.Data.ResultType {
	case "scalar":
		if err := json.Unmarshal(r.Data.Result, &pair); err != nil {
			return 0, false, fmt.Errorf("prometheus: scalar: %w", err)
		}
	case "vector":
		var vec []struct {
			Value []any `json:"value"`
		}
		if err := json.Unmarshal(r.Data.Result, &vec); err != nil {
			return 0, false, fmt.Errorf("prometheus: vector: %w", err)
		}
		switch len(vec) {
		case 0:
			return 0, false, nil
		case 1:
			pair = vec[0].Value
		default:
			return 0, false, fmt.Errorf("prometheus: the query gives %d series; aggregate it to one, e.g. with sum()", len(vec))
		}
	default:
		return 0, false, fmt.Errorf("prometheus: the query gives a %s; it must give one number", r.Data.ResultType)
	}
	if len(pair) != 2 {
		return 0, false, errors.New("prometheus: malformed sample")
	}
	s, _ := pair[1].(string)
	v, err = strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false, fmt.Errorf("prometheus: sample %q: %w", s, err)
	}
	return v, true, nil
}
