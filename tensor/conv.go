package tensor

import (
	"fmt"
	"sync/atomic"

	"github.com/diffuse-go/diffuse/tensor/gemm"
	"github.com/diffuse-go/diffuse/tensor/vec"
)

// Conv2dOpts are a 2-D convolution's geometry.
type Conv2dOpts struct {
	Stride, Padding, Dilation [2]int // (h, w); zero Stride/Dilation mean 1
	Groups                    int    // zero means 1
}

func (o Conv2dOpts) norm() Conv2dOpts {
	for i := 0; i < 2; i++ {
		if o.Stride[i] == 0 {
			o.Stride[i] = 1
		}
		if o.Dilation[i] == 0 {
			o.Dilation[i] = 1
		}
	}
	if o.Groups == 0 {
		o.Groups = 1
	}
	return o
}

type convGeom struct {
	n, cin, h, w, cout, kh, kw, oh, ow, groups int
	o                                          Conv2dOpts
}

func (g convGeom) kc() int { return g.cin / g.groups * g.kh * g.kw }

// unfold writes positions p0, p0+1, … (len(dst) of them) of row r of the
// unfolded input of image img, group grp: the input value that kernel tap
// r = (channel, ky, kx) sees at each output position, or 0 in the padding.
// Positions from oh·ow on continue into the following images, so that
// several images can form one product. It is the B operand of the
// convolution's GEMM, produced one row piece at a time while the GEMM packs
// it, so the full unfolded matrix (kh·kw times the input) is never written
// out.
func (g convGeom) unfold(x []float32, img, grp, r, p0 int, dst []float32) {
	cg := g.cin / g.groups
	c := r / (g.kh * g.kw)
	ky := r / g.kw % g.kh
	kx := r % g.kw
	dy := ky*g.o.Dilation[0] - g.o.Padding[0]
	dx := kx*g.o.Dilation[1] - g.o.Padding[1]
	sx := g.o.Stride[1]
	p1 := p0 + len(dst)
	for p := p0; p < p1; {
		orow := p / g.ow // output row counted across images
		im, oy, ox := img+orow/g.oh, orow%g.oh, p%g.ow
		src := x[((im*g.cin)+grp*cg+c)*g.h*g.w:]
		if sx == 1 && g.o.Stride[0] == 1 && ox == 0 && p+g.ow <= p1 {
			// Whole output rows of one image: input rows oy+dy, … shifted
			// by dx, written in one call. Rows whose input row lies in the
			// padding are zero.
			rows := min((p1-p)/g.ow, g.oh-oy)
			d := dst[p-p0 : p-p0+rows*g.ow]
			p += rows * g.ow
			lo, hi := max(oy, -dy), min(oy+rows, g.h-dy) // output rows with an input row
			if hi <= lo {
				clear(d)
				continue
			}
			clear(d[:(lo-oy)*g.ow])
			clear(d[(hi-oy)*g.ow:])
			lead := min(max(-dx, 0), g.ow)
			end := max(min(g.w-dx, g.ow), lead)
			var s []float32
			if end > lead {
				s = src[(lo+dy)*g.w+lead+dx:]
			}
			vec.CopyRowsPad(d[(lo-oy)*g.ow:], g.ow, s, g.w, hi-lo, lead, end-lead, g.ow-end)
			continue
		}
		iy := oy*g.o.Stride[0] + dy
		end := min(p1, (orow+1)*g.ow) // rest of this output row
		d := dst[p-p0 : end-p0]
		p = end
		if iy < 0 || iy >= g.h {
			clear(d)
			continue
		}
		row := src[iy*g.w : (iy+1)*g.w]
		if sx == 1 {
			// Output columns ox.. read input columns ox+dx..: one copy
			// between the zeroed left and right padding.
			lo := min(max(-dx-ox, 0), len(d))     // ix < 0
			hi := max(min(g.w-dx-ox, len(d)), lo) // ix < w
			clear(d[:lo])
			copy(d[lo:hi], row[ox+lo+dx:])
			clear(d[hi:])
			continue
		}
		for i := range d {
			ix := (ox+i)*sx + dx
			if ix < 0 || ix >= g.w {
				d[i] = 0
			} else {
				d[i] = row[ix]
			}
		}
	}
}

// im2col writes columns [p0, p1) of the unfolded input for image img, group
// grp into col (kc rows × (p1-p0) columns).
func (g convGeom) im2col(x []float32, img, grp, p0, p1 int, col []float32) {
	pc := p1 - p0
	parallelFor(g.kc(), 16, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			g.unfold(x, img, grp, r, p0, col[r*pc:(r+1)*pc])
		}
	})
}

// col2im accumulates columns back into the input gradient (inverse of im2col).
func (g convGeom) col2im(dx []float32, img, grp, p0, p1 int, col []float32) {
	cg := g.cin / g.groups
	pc := p1 - p0
	// Parallel over channels so no two goroutines write the same input plane.
	parallelFor(cg, 1, func(lo, hi int) {
		for c := lo; c < hi; c++ {
			dst := dx[((img*g.cin)+grp*cg+c)*g.h*g.w:]
			for ky := 0; ky < g.kh; ky++ {
				for kx := 0; kx < g.kw; kx++ {
					r := (c*g.kh+ky)*g.kw + kx
					g.addTap(dst, col[r*pc:(r+1)*pc], ky, kx, p0, p1)
				}
			}
		}
	})
}

// addTap adds one kernel tap's column values (output positions p0..p1) to
// the input plane dst, an output row at a time: within a row the input
// column advances by the stride, so for stride 1 the row is one vector add
// (Axpy with a = 1 rounds exactly as the plain sum does).
func (g convGeom) addTap(dst, src []float32, ky, kx, p0, p1 int) {
	sx, off := g.o.Stride[1], kx*g.o.Dilation[1]-g.o.Padding[1]
	for p := p0; p < p1; {
		oy, ox0 := p/g.ow, p%g.ow
		end := min(p1, p-ox0+g.ow)
		iy := oy*g.o.Stride[0] + ky*g.o.Dilation[0] - g.o.Padding[0]
		if iy >= 0 && iy < g.h {
			row, s := dst[iy*g.w:(iy+1)*g.w], src[p-p0:end-p0]
			if sx == 1 {
				lo, hi := max(ox0, -off), min(ox0+len(s), g.w-off)
				if lo < hi {
					vec.Axpy(1, s[lo-ox0:hi-ox0], row[lo+off:hi+off])
				}
			} else {
				for i, v := range s {
					if ix := (ox0+i)*sx + off; ix >= 0 && ix < g.w {
						row[ix] += v
					}
				}
			}
		}
		p = end
	}
}

// inPlace returns, for a stride-1 convolution whose output rows fill whole
// B slivers, a function giving the GEMM's B operand for image img (and the
// images after it) and group grp in a form the micro-kernel reads in place
// (gemm.InPlace): sliver row r of output positions oy, ox.. is the run of
// input values that tap r sees, contiguous once the input is zero-padded.
// The padded copy costs one pass over the input; the unfolded matrix and its
// packed copy, nine times the input for a 3×3 kernel, are never written.
// It returns nil where that does not apply.
func (g convGeom) inPlace(xs []float32) func(img, grp int) *gemm.InPlace {
	if !convInPlace.Load() || g.o.Stride != [2]int{1, 1} || g.ow%gemm.NR() != 0 {
		return nil
	}
	ph, pw := g.o.Padding[0], g.o.Padding[1]
	hp, wp := g.h+2*ph, g.w+2*pw
	xp := xs
	if ph != 0 || pw != 0 {
		xp = make([]float32, g.n*g.cin*hp*wp)
		parallelFor(g.n*g.cin, max(1, 65536/(hp*wp)), func(lo, hi int) {
			for pl := lo; pl < hi; pl++ {
				for y := 0; y < g.h; y++ {
					copy(xp[(pl*hp+y+ph)*wp+pw:][:g.w], xs[(pl*g.h+y)*g.w:][:g.w])
				}
			}
		})
	}
	cg := g.cin / g.groups
	kc := g.kc()
	return func(img, grp int) *gemm.InPlace {
		off := make([]int, kc)
		for r := range off {
			c, ky, kx := r/(g.kh*g.kw), r/g.kw%g.kh, r%g.kw
			off[r] = ((grp*cg+c)*hp+ky*g.o.Dilation[0])*wp + kx*g.o.Dilation[1]
		}
		P := g.oh * g.ow
		return &gemm.InPlace{Data: xp, Off: off, Run: g.ow, Col: func(j int) int {
			im, pos := img+j/P, j%P
			return im*g.cin*hp*wp + pos/g.ow*wp + pos%g.ow
		}}
	}
}

// convInPlace enables reading the input in place (see inPlace). It is off
// by default: on Zen 3 with AVX2 the in-place kernel, whose B rows are
// unaligned loads from many input rows, ran 5–10% slower on the UNet shapes
// than unfolding and packing B, and no faster on the VAE shapes
// (BenchmarkConv2d times both). SetConvInPlace turns it on, to measure it
// on other CPUs (AVX-512's 32-wide rows are whole cache lines).
var convInPlace atomic.Bool

// SetConvInPlace sets whether later Conv2d calls read their input in place
// through gemm.InPlace instead of unfolding it (off by default; see
// BenchmarkConv2d) and returns the previous setting. The results are the
// same either way up to float rounding order.
func SetConvInPlace(on bool) bool { return convInPlace.Swap(on) }

// convBatchBelow is the number of output positions per image below which a
// convolution multiplies all images at once: with few positions the product
// is bound by streaming the weight, which batching reads only once.
var convBatchBelow = 1024

func (g convGeom) direct() bool {
	return g.kh == 1 && g.kw == 1 && g.o.Stride == [2]int{1, 1} && g.o.Padding == [2]int{0, 0}
}

// Conv2d convolves x [N, Cin, H, W] with weight [Cout, Cin/groups, kh, kw]
// (any float storage dtype) and adds bias [Cout] when given.
func Conv2d(x, weight, bias *Tensor, o Conv2dOpts) *Tensor {
	o = o.norm()
	if x.Rank() != 4 || weight.Rank() != 4 {
		panic(fmt.Sprintf("tensor: Conv2d input %v weight %v", x.shape, weight.shape))
	}
	g := convGeom{n: x.Dim(0), cin: x.Dim(1), h: x.Dim(2), w: x.Dim(3), cout: weight.Dim(0), kh: weight.Dim(2), kw: weight.Dim(3), groups: o.Groups, o: o}
	if g.cin%g.groups != 0 || g.cout%g.groups != 0 || weight.Dim(1) != g.cin/g.groups {
		panic(fmt.Sprintf("tensor: Conv2d input %v weight %v groups %d", x.shape, weight.shape, g.groups))
	}
	g.oh = (g.h+2*o.Padding[0]-o.Dilation[0]*(g.kh-1)-1)/o.Stride[0] + 1
	g.ow = (g.w+2*o.Padding[1]-o.Dilation[1]*(g.kw-1)-1)/o.Stride[1] + 1
	if g.oh <= 0 || g.ow <= 0 {
		panic(fmt.Sprintf("tensor: Conv2d output would be empty for input %v weight %v", x.shape, weight.shape))
	}
	xc := x.Float32().Contiguous()
	xs := xc.f32[xc.offset : xc.offset+xc.Numel()]
	wc := weight.Contiguous()
	out := Zeros(g.n, g.cout, g.oh, g.ow)
	var bd []float32
	if bias != nil {
		bd = bias.Data()
		if len(bd) != g.cout {
			panic(fmt.Sprintf("tensor: Conv2d bias %v for %d channels", bias.shape, g.cout))
		}
	}
	if g.winograd() {
		conv2dWinograd(g, xs, wc, bd, out.f32)
	} else {
		conv2dGEMM(g, xs, wc, bd, out.f32)
	}
	record(out, []*Tensor{x, weight, bias}, func(gout *Tensor) []*Tensor {
		return conv2dBackward(g, xs, x, weight, bias, gout)
	})
	return out
}

// conv2dGEMM computes the convolution g of xs (contiguous [n, cin, h, w])
// with the contiguous weight wc into out ([n, cout, oh, ow]) as one GEMM
// per image and group (or one for all images), adding bias bd when not nil.
func conv2dGEMM(g convGeom, xs []float32, wc *Tensor, bd, out []float32) {
	P := g.oh * g.ow
	kc := g.kc()
	cog := g.cout / g.groups
	// The weight is the A operand of every product, packed once (and
	// usually cached across calls); the unfolded input is generated line by
	// line while each GEMM thread packs its own columns of B, and the bias is
	// written into each output tile just before its first product.
	wms := make([]gemm.Mat, g.groups)
	for grp := range wms {
		wms[grp] = packedWeight(wc, wc.offset+grp*cog*kc, cog, kc, false, false)
	}
	inPlace := g.inPlace(xs)
	input := func(img, grp int) gemm.Mat {
		m := gemm.LinesMat(true, func(r, p0 int, d []float32) { g.unfold(xs, img, grp, r, p0, d) })
		if inPlace != nil {
			m.InPlace = inPlace(img, grp)
		}
		return m
	}
	if g.n > 1 && P < convBatchBelow {
		// Few positions per image: one product over all images' positions
		// reads the weight once instead of once per image, then its
		// [cout, n·P] result is spread into the [n, cout, P] output.
		tmp := make([]float32, cog*g.n*P)
		for grp, wm := range wms {
			var rb []float32
			if bd != nil {
				rb = bd[grp*cog : (grp+1)*cog]
			}
			gemm.GemmWith(gemm.Opts{RowBias: rb}, cog, g.n*P, kc, 1, wm, input(0, grp), 0, tmp, g.n*P)
			parallelFor(g.n*cog, max(1, 65536/P), func(lo, hi int) {
				for i := lo; i < hi; i++ {
					img, c := i/cog, i%cog
					copy(out[(img*g.cout+grp*cog+c)*P:(img*g.cout+grp*cog+c+1)*P], tmp[(c*g.n+img)*P:])
				}
			})
		}
	} else {
		for img := 0; img < g.n; img++ {
			for grp, wm := range wms {
				dst := out[(img*g.cout+grp*cog)*P:]
				xm := input(img, grp)
				if g.direct() && inPlace == nil {
					xm = gemm.F32Mat(xs[(img*g.cin+grp*kc)*P:(img*g.cin+(grp+1)*kc)*P], P, false)
				}
				var rb []float32
				if bd != nil {
					rb = bd[grp*cog : (grp+1)*cog]
				}
				gemm.GemmWith(gemm.Opts{RowBias: rb}, cog, P, kc, 1, wm, xm, 0, dst, P)
			}
		}
	}
}

func conv2dBackward(g convGeom, xs []float32, x, weight, bias, gout *Tensor) []*Tensor {
	gc := gout.Contiguous()
	gs := gc.f32[gc.offset : gc.offset+gc.Numel()]
	P := g.oh * g.ow
	kc := g.kc()
	cog := g.cout / g.groups
	// The weight is read in its stored dtype (the GEMM widens 16-bit
	// weights as it packs them), not copied to float32 on every call.
	wc := weight.Contiguous()
	var gx, gw, gb *Tensor
	if x.requiresGrad {
		gx = Zeros(x.shape...)
	}
	if weight.requiresGrad {
		gw = Zeros(weight.shape...)
	}
	if bias != nil && bias.requiresGrad {
		gb = Zeros(g.cout)
		for img := 0; img < g.n; img++ {
			for c := 0; c < g.cout; c++ {
				var s float64
				for _, v := range gs[(img*g.cout+c)*P : (img*g.cout+c+1)*P] {
					s += float64(v)
				}
				gb.f32[c] += float32(s)
			}
		}
	}
	if gx == nil && gw == nil {
		return []*Tensor{nil, nil, gb}
	}
	col := make([]float32, kc*P)
	for img := 0; img < g.n; img++ {
		for grp := 0; grp < g.groups; grp++ {
			gblk := gs[(img*g.cout+grp*cog)*P : (img*g.cout+(grp+1)*cog)*P]
			if gw != nil {
				g.im2col(xs, img, grp, 0, P, col)
				// dW[cog, kc] += gout[cog, P] · colᵀ
				gemm.Gemm(cog, kc, P, 1, gemm.F32Mat(gblk, P, false), gemm.F32Mat(col, P, true), 1, gw.f32[grp*cog*kc:], kc)
			}
			if gx != nil {
				// dcol[kc, P] = Wᵀ[kc, cog] · gout[cog, P]
				gemm.Gemm(kc, P, cog, 1, wc.mat(wc.offset+grp*cog*kc, cog, kc, true), gemm.F32Mat(gblk, P, false), 0, col, P)
				g.col2im(gx.f32, img, grp, 0, P, col)
			}
		}
	}
	return []*Tensor{gx, gw, gb}
}
