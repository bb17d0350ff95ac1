package toy

import (
	"strings"
	"testing"
)

func TestPlotLoss(t *testing.T) {
	pts, err := ReadLossLog(strings.NewReader("1\t1.0\t0.5\n2\t0.5\n\n3 0.25 x\n4 0.2\n"))
	if err != nil || len(pts) != 4 {
		t.Fatalf("read %v, %v", pts, err)
	}
	img, err := PlotLoss(pts, 200, 100, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	if img.Bounds().Dx() != 200 || img.Bounds().Dy() != 100 {
		t.Errorf("size %v", img.Bounds())
	}
	red := 0
	for i := 0; i < len(img.Pix); i += 4 {
		if img.Pix[i] == 200 && img.Pix[i+1] == 40 {
			red++
		}
	}
	if red < 50 {
		t.Errorf("curve has %d pixels, want a line across the plot", red)
	}
	if _, err := ReadLossLog(strings.NewReader("1 x\n")); err == nil {
		t.Error("bad line accepted")
	}
	if _, err := PlotLoss(pts[:1], 200, 100, 0.5); err == nil {
		t.Error("one point plotted")
	}
}
