package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunnerForUnknownClass checks that a case whose class has no runner
// is an error naming the case and the class (RunAll fails it).
func TestRunnerForUnknownClass(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mystery")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "case.json"), []byte(`{"class": "nobody.Knows"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = runnerFor(c)
	if err == nil || !strings.Contains(err.Error(), "mystery") || !strings.Contains(err.Error(), "nobody.Knows") {
		t.Fatalf("runnerFor = %v, want an error naming the case and its class", err)
	}
	Register("nobody.Knows", func(*testing.T, *Case) {})
	defer delete(runners, "nobody.Knows")
	if _, err := runnerFor(c); err != nil {
		t.Fatalf("registered class: %v", err)
	}
}
