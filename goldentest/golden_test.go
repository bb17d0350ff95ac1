package goldentest

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
)

// TestGolden runs every case; unimplemented classes show up as skipped.
func TestGolden(t *testing.T) { golden.RunAll(t) }
