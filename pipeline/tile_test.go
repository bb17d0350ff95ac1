package pipeline

import (
	"slices"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// TestTileRows checks the diffusers broadcast of init images and masks to
// the prompts' batch: the whole batch repeated, never interleaved.
func TestTileRows(t *testing.T) {
	x := tensor.FromSlice([]float32{1, 2, 3, 4}, 2, 2)
	got, err := tileRows(x, 4, "test")
	if err != nil {
		t.Fatal(err)
	}
	if want := []float32{1, 2, 3, 4, 1, 2, 3, 4}; !slices.Equal(got.Data(), want) || got.Dim(0) != 4 {
		t.Errorf("tileRows(2 rows, 4) = %v %v, want %v", got.Shape(), got.Data(), want)
	}
	if same, _ := tileRows(x, 2, "test"); same != x {
		t.Error("tileRows to the same batch should return its input")
	}
	if _, err := tileRows(x, 3, "test"); err == nil {
		t.Error("2 rows tiled to 3 gave no error")
	}
}
