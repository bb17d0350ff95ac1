package tensor

import "testing"

// TestParseWinogradMode checks the spellings the CLI accepts.
func TestParseWinogradMode(t *testing.T) {
	for s, want := range map[string]WinogradMode{"": WinogradAuto, "1": WinogradAuto, "auto": WinogradAuto, "0": WinogradOff, "off": WinogradOff, "all": WinogradAll} {
		if got, err := ParseWinogradMode(s); got != want || err != nil {
			t.Errorf("ParseWinogradMode(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := ParseWinogradMode("some"); err == nil {
		t.Error("ParseWinogradMode(\"some\"): no error")
	}
}
