package hunyuan

import (
	"math"
	"testing"
)

// TestRotaryPosEmbed2D checks the table against the formula written out
// plainly in float64: token (r, c) of a grid spread over the crop, channel
// j rotating with the column position in the first half and the row
// position in the second, frequency 10000^(-2k/(headDim/2)) for k =
// (j mod headDim/2) / 2.
func TestRotaryPosEmbed2D(t *testing.T) {
	const headDim, gh, gw = 8, 3, 5
	crop := Crop{Top: 2, Left: 1, Bottom: 20, Right: 11}
	cos, sin, err := RotaryPosEmbed2D(headDim, crop, gh, gw)
	if err != nil {
		t.Fatal(err)
	}
	if s := cos.Shape(); len(s) != 2 || s[0] != gh*gw || s[1] != headDim {
		t.Fatalf("shape %v", s)
	}
	cd, sd := cos.Data(), sin.Data()
	half := headDim / 2
	worst := 0.0
	for r := 0; r < gh; r++ {
		for c := 0; c < gw; c++ {
			y := crop.Top + float64(r)*(crop.Bottom-crop.Top)/gh
			x := crop.Left + float64(c)*(crop.Right-crop.Left)/gw
			for j := 0; j < headDim; j++ {
				pos := x
				if j >= half {
					pos = y
				}
				k := (j % half) / 2
				a := pos * math.Pow(10000, -2*float64(k)/float64(half))
				i := (r*gw+c)*headDim + j
				// float32 rounding of the position, frequency and angle:
				// a few units in the last place of the angle.
				tol := 4 * math.Max(1, math.Abs(a)) * 0x1p-24
				worst = math.Max(worst, math.Max(math.Abs(float64(cd[i])-math.Cos(a)), math.Abs(float64(sd[i])-math.Sin(a))))
				if math.Abs(float64(cd[i])-math.Cos(a)) > tol || math.Abs(float64(sd[i])-math.Sin(a)) > tol {
					t.Fatalf("token (%d,%d) channel %d: cos %g sin %g, want %g %g", r, c, j, cd[i], sd[i], math.Cos(a), math.Sin(a))
				}
			}
		}
	}
	t.Logf("max |err| %.3g", worst)
	if _, _, err := RotaryPosEmbed2D(6, crop, gh, gw); err == nil {
		t.Error("head dim 6 accepted")
	}
}

func TestResizeCropRegionForGrid(t *testing.T) {
	for _, c := range []struct {
		h, w, base int
		want       Crop
	}{
		{8, 8, 32, Crop{0, 0, 32, 32}},
		{8, 16, 32, Crop{8, 0, 24, 32}},
		{16, 8, 32, Crop{0, 8, 32, 24}},
		// 32/3·2 = 21.33 -> 21; (32-21)/2 = 5.5 rounds to even 6.
		{3, 2, 32, Crop{0, 6, 32, 27}},
		// 5/2·1 = 2.5 rounds to even 2; (5-2)/2 = 1.5 -> 2.
		{2, 1, 5, Crop{0, 2, 5, 4}},
	} {
		if got := ResizeCropRegionForGrid(c.h, c.w, c.base); got != c.want {
			t.Errorf("ResizeCropRegionForGrid(%d, %d, %d) = %+v, want %+v", c.h, c.w, c.base, got, c.want)
		}
	}
}
