package cliutil

import "testing"

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"100": 100, "1KiB": 1024, "1.5MiB": 3 << 19, "2GB": 2e9, "4GiB": 4 << 30, "1 mib": 1 << 20} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "lots", "1.2.3MB", "99999999TiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}
