package bytesize

import "testing"

func TestParseAndFormat(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "1M": 1 << 20, "1MiB": 1 << 20, "16G": 16 << 30, "512k": 512 << 10, "1.5G": 3 << 29, "2T": 2 << 40, "100GB": 100 << 30} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1M", "12X", "abc", "99999999999P"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if Format(16<<30) != "16G" || Format(1536<<20) != "1536M" || Format(1000) != "1000" {
		t.Error("Format")
	}
}
