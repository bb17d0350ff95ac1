package goldentest

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/tensor"
)

// TestGolden runs every case; a case whose class has no runner fails.
func TestGolden(t *testing.T) { golden.RunAll(t) }

// TestGoldenWinograd runs every case again with every 3×3 convolution that
// the Winograd algorithm supports computed by it: the tiny models' sizes
// are below the threshold at which Conv2d picks it by itself.
func TestGoldenWinograd(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	defer tensor.SetWinograd(tensor.SetWinograd(tensor.WinogradAll))
	golden.RunAll(t)
}
