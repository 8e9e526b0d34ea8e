// Package cliutil holds what the shipbot and shipagent commands share: strict YAML
// decoding with errors that name the file, line and key; byte sizes; the logger.
package cliutil

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/yaml.v3"
)

var unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// DecodeYAML decodes data strictly into v: an unknown key or a bad value is an error
// that starts with name and gives the line. example names the reference config.
func DecodeYAML(name string, data []byte, v any, example string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs := make([]string, len(te.Errors))
			for i, m := range te.Errors {
				msgs[i] = unknownField.ReplaceAllString(m, `unknown key "$1" (check the spelling against `+example+`)`)
			}
			return fmt.Errorf("%s: %s", name, strings.Join(msgs, "; "))
		}
		if err == io.EOF {
			return fmt.Errorf("%s: the file is empty", name)
		}
		return fmt.Errorf("%s: %s", name, err.Error())
	}
	return nil
}

// LogConfig sets the operator log.
type LogConfig struct {
	Format string `yaml:"format"` // auto (console on a terminal, else json), console, json
	Level  string `yaml:"level"`  // debug, info, warn, error
}

// ApplyDefaults fills auto and info.
func (l *LogConfig) ApplyDefaults() {
	if l.Format == "" {
		l.Format = "auto"
	}
	if l.Level == "" {
		l.Level = "info"
	}
}

// Validate names a bad field.
func (l *LogConfig) Validate() error {
	switch l.Format {
	case "auto", "console", "json":
	default:
		return fmt.Errorf("log.format: %q; use auto, console or json", l.Format)
	}
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q; use debug, info, warn or error", l.Level)
	}
	return nil
}

// NewLogger builds the operator log on w: readable on a terminal, JSON otherwise.
func NewLogger(lc LogConfig, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(lc.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	format := lc.Format
	if format == "auto" || format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if format == "console" {
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), nil
}

// ByteSize is a size in bytes that reads "512MiB", "4GiB", "100MB" or a plain number.
type ByteSize int64

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1000, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1000 * 1000, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1000 * 1000 * 1000, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000, "tib": 1 << 40,
}

var sizeRe = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$`)

// ParseByteSize parses a size such as "4GiB".
func ParseByteSize(s string) (ByteSize, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size; write e.g. 512MiB or 4GiB", s)
	}
	unit, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q; use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)", s, m[2])
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil || f*float64(unit) > float64(1<<62) {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return ByteSize(f * float64(unit)), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}
