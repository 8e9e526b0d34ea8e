package bot

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxMessageBytes is the longest command the bot accepts. Longer lines are refused
// without being echoed.
const MaxMessageBytes = 400

// Clean makes untrusted text safe to echo into any channel: invalid UTF-8 and every
// control character (CR and LF included, so no line can be injected) become a space,
// runs of spaces collapse, and the result is cut to at most max bytes on a rune
// boundary, with "…" marking the cut.
func Clean(s string, max int) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.IsSpace(r) ||
			r == '\u2028' || r == '\u2029' || (r >= 0x200b && r <= 0x200f) || r == 0xfeff {
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		}
		space = false
		b.WriteRune(r)
	}
	out := strings.TrimRight(b.String(), " ")
	return Truncate(out, max)
}

// Truncate cuts s to at most max bytes on a rune boundary, ending in "…" when cut.
func Truncate(s string, max int) string {
	if max <= 0 || len(s) <= max {
		return s
	}
	const ell = "…"
	cut := max - len(ell)
	if cut < 0 {
		return ""
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}
