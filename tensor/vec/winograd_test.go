package vec

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The transform matrices of F(2×2, 3×3), for the float64 references.
var (
	winoBT = [4][4]float64{{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}}
	winoAT = [2][4]float64{{1, 1, 1, 0}, {0, 1, -1, -1}}
)

// TestWinogradIn checks WinogradIn8 (assembly where the CPU has it) against
// the one-tile Go version bit for bit, and that against Bᵀ d B in float64.
func TestWinogradIn(t *testing.T) {
	rng := rand.New(rand.NewPCG(40, 41))
	for _, ldx := range []int{18, 19, 37} {
		for _, stride := range []int{8, 11} {
			x := make([]float32, 3*ldx+18)
			for i := range x {
				x[i] = rng.Float32()*2 - 1
			}
			got := make([]float32, 15*stride+8+3)
			want := make([]float32, len(got))
			for i := range got {
				got[i], want[i] = -7, -7
			}
			WinogradIn8(x, ldx, got, stride)
			for l := 0; l < 8; l++ {
				WinogradIn1(x[2*l:], ldx, want[l:], stride)
				for i := 0; i < 4; i++ {
					for c := 0; c < 4; c++ {
						var ref float64
						for r := 0; r < 4; r++ {
							for k := 0; k < 4; k++ {
								ref += winoBT[i][r] * float64(x[r*ldx+2*l+k]) * winoBT[c][k]
							}
						}
						if d := math.Abs(float64(want[(4*i+c)*stride+l]) - ref); d > 1e-6 {
							t.Fatalf("ldx %d tile %d: V[%d][%d] = %v, want %v", ldx, l, i, c, want[(4*i+c)*stride+l], ref)
						}
					}
				}
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("ldx %d stride %d: v[%d] = %v, one tile at a time %v", ldx, stride, i, got[i], want[i])
				}
			}
		}
	}
}

// TestWinogradOut checks WinogradOut8 against the one-tile Go version bit
// for bit, and that against Aᵀ M A in float64.
func TestWinogradOut(t *testing.T) {
	rng := rand.New(rand.NewPCG(42, 43))
	for _, stride := range []int{8, 13} {
		for _, ldo := range []int{16, 21} {
			m := make([]float32, 15*stride+8)
			for i := range m {
				m[i] = rng.Float32()*2 - 1
			}
			bias := rng.Float32()
			got := make([]float32, ldo+16+2)
			want := make([]float32, len(got))
			for i := range got {
				got[i], want[i] = -7, -7
			}
			WinogradOut8(m, stride, got, ldo, bias)
			for l := 0; l < 8; l++ {
				y00, y01, y10, y11 := WinogradOut1(m[l:], stride)
				want[2*l], want[2*l+1], want[ldo+2*l], want[ldo+2*l+1] = y00+bias, y01+bias, y10+bias, y11+bias
				for i := 0; i < 2; i++ {
					for j := 0; j < 2; j++ {
						var ref float64
						for r := 0; r < 4; r++ {
							for c := 0; c < 4; c++ {
								ref += winoAT[i][r] * float64(m[(4*r+c)*stride+l]) * winoAT[j][c]
							}
						}
						ref += float64(bias)
						if g := want[i*ldo+2*l+j]; math.Abs(float64(g)-ref) > 1e-6 {
							t.Fatalf("tile %d: Y[%d][%d] = %v, want %v", l, i, j, g, ref)
						}
					}
				}
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("stride %d ldo %d: out[%d] = %v, one tile at a time %v", stride, ldo, i, got[i], want[i])
				}
			}
		}
	}
}

func TestWinogradBounds(t *testing.T) {
	for name, f := range map[string]func(){
		"in":  func() { WinogradIn8(make([]float32, 3*18+17), 18, make([]float32, 200), 8) },
		"out": func() { WinogradOut8(make([]float32, 15*8+8), 8, make([]float32, 31), 16, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: short slice accepted", name)
				}
			}()
			f()
		}()
	}
}
