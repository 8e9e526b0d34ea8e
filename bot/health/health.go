// Package health holds the metric gates that compare a tier's hosts (the canary)
// with the hosts still on the previous release (the baseline): a ratio of two
// counters the agents scrape from their service and report, such as 5xx responses
// over all responses, or a PromQL query run against Prometheus for each side.
package health

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"text/template"
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

// Gate compares a measure of the canary (the hosts of the tier) with the same
// measure of the baseline (the hosts still on their previous release). The
// measure comes from one of two sources:
//
//   - agent: the ratio Errors/Total over the counters the agents scrape from
//     their service and report (Errors and Total are set);
//   - prometheus: a PromQL template run against Prometheus once for each side
//     (Query is set; see Prometheus).
type Gate struct {
	Name         string
	Errors       Selector
	Total        Selector
	Query        *template.Template // prometheus: the value
	SamplesQuery *template.Template // prometheus: the sample count (optional)
	Unit         Unit
	MaxRatio     float64 // canary at most MaxRatio × the baseline (0: no check)
	MaxValue     float64 // and at most this absolute value (0: no check)
	MinSamples   float64 // canary samples needed for a verdict
}

// Prometheus reports whether the gate runs PromQL.
func (g Gate) Prometheus() bool { return g.Query != nil }

// Unit says how a gate's values read.
type Unit string

// Units.
const (
	UnitRatio Unit = "ratio" // shown as a percentage
	UnitMS    Unit = "ms"
	UnitNone  Unit = ""
)

// Format renders v in the unit: "0.4%", "118 ms", "3.2".
func (u Unit) Format(v float64) string {
	switch u {
	case UnitRatio:
		return fmt.Sprintf("%.1f%%", 100*v)
	case UnitMS:
		return fmt.Sprintf("%.0f ms", v)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// Measure is one side's reading.
type Measure struct {
	Value   float64
	Samples float64 // how many observations Value rests on; NaN when unknown
	OK      bool    // there was data
	Err     string  // why there is no reading (a query failed)
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
	Unit             Unit
	Verdict          Verdict
	Canary, Baseline float64
	Samples          float64 // canary samples
	HaveBaseline     bool
	NoData           bool // the canary's measure gave nothing
	Err              string
}

// String renders "5xx 0.4% (baseline 0.5%)" or "p99 118 ms (baseline 121 ms)".
func (r Result) String() string {
	switch {
	case r.Err != "":
		return fmt.Sprintf("%s: %s", r.Gate, r.Err)
	case r.NoData && r.Samples > 0:
		// The classic: errors/total where no error series exists yet.
		return fmt.Sprintf("%s: no data from the query although there are %.0f samples (a ratio whose numerator has no series gives nothing: add `or vector(0)`)", r.Gate, r.Samples)
	case r.NoData:
		return r.Gate + ": no data yet"
	}
	s := r.Gate + " " + r.Unit.Format(r.Canary)
	if r.HaveBaseline {
		s += " (baseline " + r.Unit.Format(r.Baseline) + ")"
	}
	if r.Verdict == Inconclusive {
		s += fmt.Sprintf(", only %.0f samples", r.Samples)
	}
	return s
}

// canaryLow is what the comparison with the baseline uses for the canary: for a
// ratio over a known number of samples, the lower end of its 95% Wilson score
// interval, so that a few unlucky errors in a small canary do not count as
// worse than the baseline; otherwise the value itself.
func canaryLow(u Unit, p, n float64) float64 {
	if u != UnitRatio || math.IsNaN(n) || n <= 0 || p < 0 || p > 1 {
		return p
	}
	const z = 1.96
	return (p + z*z/(2*n) - z*math.Sqrt(p*(1-p)/n+z*z/(4*n*n))) / (1 + z*z/n)
}

// Counters measures hosts' reported counters: Errors/Total, with Total as samples.
func (g Gate) Counters(hosts []map[string]float64) Measure {
	var e, t float64
	for _, m := range hosts {
		e += g.Errors.Sum(m)
		t += g.Total.Sum(m)
	}
	if t <= 0 {
		return Measure{Samples: t}
	}
	return Measure{Value: e / t, Samples: t, OK: true}
}

// Evaluate runs an agent-source gate on the canary's and the baseline's counters.
func (g Gate) Evaluate(canary, baseline []map[string]float64) Result {
	return g.Judge(g.Counters(canary), g.Counters(baseline))
}

// Judge compares the two readings. Without enough canary data the verdict is
// Inconclusive; without a baseline only the absolute cap applies.
func (g Gate) Judge(canary, baseline Measure) Result {
	r := Result{Gate: g.Name, Unit: g.Unit, Canary: canary.Value, Samples: canary.Samples, Err: canary.Err, NoData: !canary.OK}
	if r.Err == "" && baseline.Err != "" {
		r.Err = "baseline: " + baseline.Err
	}
	if baseline.OK {
		r.Baseline, r.HaveBaseline = baseline.Value, true
	}
	// A ratio of a few errors per thousand is noise whatever the baseline says.
	floor := 0.0
	if g.Unit == UnitRatio {
		floor = 0.001
	}
	enough := r.Err == "" && canary.OK && (math.IsNaN(canary.Samples) || canary.Samples >= max(1, g.MinSamples))
	switch {
	case !enough:
		r.Verdict = Inconclusive
	case g.MaxValue > 0 && r.Canary > g.MaxValue:
		r.Verdict = Fail
	case g.MaxRatio > 0 && r.HaveBaseline && canaryLow(g.Unit, r.Canary, canary.Samples) > g.MaxRatio*r.Baseline && r.Canary > floor:
		r.Verdict = Fail
	default:
		r.Verdict = Pass
	}
	return r
}
