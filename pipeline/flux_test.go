package pipeline

import (
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
)

// TestFluxPackLayout checks _pack_latents' layout on a small latent: token
// (i, j) holds channel c's 2×2 patch at features 4c + 2dy + dx, and
// unpacking restores the latent.
func TestFluxPackLayout(t *testing.T) {
	const b, c, h, w = 2, 3, 4, 6
	x := tensor.Zeros(b, c, h, w)
	d := x.Data()
	for i := range d {
		d[i] = float32(i)
	}
	p, err := PackLatents(x)
	if err != nil {
		t.Fatal(err)
	}
	if !tensor.SameShape(p.Shape(), []int{b, (h / 2) * (w / 2), 4 * c}) {
		t.Fatalf("packed shape %v", p.Shape())
	}
	// Batch 1, token (1, 2), channel 2, dy 1, dx 0.
	got := p.At(1, 1*(w/2)+2, 4*2+2*1+0)
	want := x.At(1, 2, 2*1+1, 2*2+0)
	if got != want {
		t.Fatalf("packed value %v, want %v", got, want)
	}
	u, err := UnpackLatents(p, h, w)
	if err != nil {
		t.Fatal(err)
	}
	if tensor.MaxAbsDiff(u, x) != 0 {
		t.Fatal("unpack does not invert pack")
	}
	if _, err := UnpackLatents(p, h, w+2); err == nil {
		t.Fatal("wrong latent size accepted")
	}
}

func TestFluxLatentImageIDs(t *testing.T) {
	ids := LatentImageIDs(2, 4, 6)
	if !tensor.SameShape(ids.Shape(), []int{2, 6, 3}) {
		t.Fatalf("shape %v", ids.Shape())
	}
	// Token 4 of batch 1 is (row 1, column 1).
	if ids.At(1, 4, 0) != 0 || ids.At(1, 4, 1) != 1 || ids.At(1, 4, 2) != 1 {
		t.Fatalf("token 4: %v %v %v", ids.At(1, 4, 0), ids.At(1, 4, 1), ids.At(1, 4, 2))
	}
}
