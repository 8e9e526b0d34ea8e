// Package health holds the metric gates that compare a tier's hosts (the canary)
// with the hosts still on the previous release (the baseline): a ratio of two
// counters, such as 5xx responses over all responses, from counters the agents
// scrape from their service and report.
package health

import (
	"fmt"
	"regexp"
	"strings"
)

// Selector picks counter samples: a metric name and label matchers, written the
// PromQL way: name{label="v",other=~"re"}.
type Selector struct {
	Name     string
	matchers []matcher
}

type matcher struct {
	label string
	re    *regexp.Regexp
}

var selRe = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$`)
var matchRe = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|=)\s*"((?:[^"\\]|\\.)*)"\s*$`)

// ParseSelector parses name{label="value",label=~"regex"}.
func ParseSelector(s string) (Selector, error) {
	m := selRe.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return Selector{}, fmt.Errorf("selector %q: want name{label=\"value\"}", s)
	}
	sel := Selector{Name: m[1]}
	if m[2] != "" {
		for _, part := range strings.Split(m[2], ",") {
			mm := matchRe.FindStringSubmatch(part)
			if mm == nil {
				return Selector{}, fmt.Errorf("selector %q: bad matcher %q", s, part)
			}
			pat := regexp.QuoteMeta(mm[3])
			if mm[2] == "=~" {
				pat = mm[3]
			}
			re, err := regexp.Compile("^(?:" + pat + ")$")
			if err != nil {
				return Selector{}, fmt.Errorf("selector %q: %w", s, err)
			}
			sel.matchers = append(sel.matchers, matcher{mm[1], re})
		}
	}
	return sel, nil
}

// Sum adds up the samples of metrics (keyed as in the exposition format,
// name{label="v",...}) that the selector picks.
func (s Selector) Sum(metrics map[string]float64) float64 {
	var sum float64
	for key, v := range metrics {
		name, labels := splitKey(key)
		if name != s.Name {
			continue
		}
		ok := true
		for _, m := range s.matchers {
			ok = ok && m.re.MatchString(labels[m.label])
		}
		if ok {
			sum += v
		}
	}
	return sum
}

func splitKey(key string) (string, map[string]string) {
	name, rest, found := strings.Cut(key, "{")
	labels := map[string]string{}
	if !found {
		return name, labels
	}
	rest = strings.TrimSuffix(rest, "}")
	for _, part := range splitLabels(rest) {
		k, v, ok := strings.Cut(part, "=")
		if ok {
			labels[k] = strings.Trim(v, `"`)
		}
	}
	return name, labels
}

// splitLabels splits on commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQ, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case s[i] == '"':
			inQ = !inQ
		case s[i] == ',' && !inQ:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// ParseExposition reads Prometheus text exposition into name{labels} -> value,
// keeping only the metrics named in keep (all when keep is empty).
func ParseExposition(text string, keep []string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		key, val := line[:i], line[i+1:]
		if j := strings.LastIndexByte(key, ' '); j >= 0 && !strings.Contains(key[j:], "}") { // a timestamp follows the value
			key, val = key[:j], key[j+1:]
		}
		name, _, _ := strings.Cut(key, "{")
		if len(keep) > 0 && !contains(keep, name) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(val, &v); err == nil {
			out[key] += v
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Gate compares the ratio Errors/Total between canary and baseline.
type Gate struct {
	Name       string
	Errors     Selector
	Total      Selector
	MaxRatio   float64 // canary rate may be at most MaxRatio × the baseline rate (0: no check)
	MaxRate    float64 // and at most this absolute rate (0: no check)
	MinSamples float64 // canary Total needed for a verdict
}

// Verdict of one gate.
type Verdict int

// Verdicts.
const (
	Pass Verdict = iota
	Fail
	Inconclusive
)

// Result is a gate's verdict with its numbers.
type Result struct {
	Gate             string
	Verdict          Verdict
	Canary, Baseline float64 // rates
	Samples          float64 // canary Total
	HaveBaseline     bool
}

// String renders "5xx 0.4% (baseline 0.5%)".
func (r Result) String() string {
	s := fmt.Sprintf("%s %.1f%%", r.Gate, 100*r.Canary)
	if r.HaveBaseline {
		s += fmt.Sprintf(" (baseline %.1f%%)", 100*r.Baseline)
	}
	if r.Verdict == Inconclusive {
		s += fmt.Sprintf(", only %.0f samples", r.Samples)
	}
	return s
}

// Evaluate runs the gate on the canary's and the baseline's reported counters.
func (g Gate) Evaluate(canary, baseline []map[string]float64) Result {
	sum := func(hosts []map[string]float64, s Selector) float64 {
		var t float64
		for _, m := range hosts {
			t += s.Sum(m)
		}
		return t
	}
	r := Result{Gate: g.Name}
	ce, ct := sum(canary, g.Errors), sum(canary, g.Total)
	r.Samples = ct
	if ct > 0 {
		r.Canary = ce / ct
	}
	if be, bt := sum(baseline, g.Errors), sum(baseline, g.Total); bt > 0 {
		r.Baseline, r.HaveBaseline = be/bt, true
	}
	switch {
	case ct < max(1, g.MinSamples):
		r.Verdict = Inconclusive
	case g.MaxRate > 0 && r.Canary > g.MaxRate:
		r.Verdict = Fail
	case g.MaxRatio > 0 && r.HaveBaseline && r.Canary > g.MaxRatio*r.Baseline && r.Canary > 0.001:
		r.Verdict = Fail
	default:
		r.Verdict = Pass
	}
	return r
}
