package hunyuan

import (
	"fmt"
	"math"

	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/tensor"
)

// Crop is a region of the base position grid: Top/Left is the first
// corner, Bottom/Right the end (exclusive), as (row, column) coordinates.
type Crop struct {
	Top, Left, Bottom, Right float64
}

// ResizeCropRegionForGrid is HunyuanDiTPipeline's
// get_resize_crop_region_for_grid: the region of a base×base grid that a
// gridH×gridW token grid covers once its longer side is resized to base
// and the result centred (halves round to even, as Python's round).
func ResizeCropRegionForGrid(gridH, gridW, base int) Crop {
	h, w, t := float64(gridH), float64(gridW), float64(base)
	rh, rw := t, t
	if h > w {
		rw = math.RoundToEven(t / h * w)
	} else {
		rh = math.RoundToEven(t / w * h)
	}
	top := math.RoundToEven((t - rh) / 2)
	left := math.RoundToEven((t - rw) / 2)
	return Crop{Top: top, Left: left, Bottom: top + rh, Right: left + rw}
}

// linspace32 is numpy's linspace(start, stop, n, endpoint=False) computed
// in float64 and stored as float32.
func linspace32(start, stop float64, n int) []float32 {
	out := make([]float32, n)
	step := (stop - start) / float64(n)
	for i := range out {
		out[i] = float32(float64(i)*step + start)
	}
	return out
}

// rotaryFreqs1D returns the dim/2 rotary frequencies of one axis,
// 1 / theta^(2k/dim), computed in float32 as torch does.
func rotaryFreqs1D(dim int, theta float64) []float32 {
	out := make([]float32, dim/2)
	for k := range out {
		e := float32(2*k) / float32(dim)
		out[k] = 1 / float32(math.Pow(theta, float64(e)))
	}
	return out
}

// RotaryPosEmbed2D is diffusers' get_2d_rotary_pos_embed(headDim, crop,
// (gridH, gridW), use_real=True): cos and sin tables [gridH·gridW, headDim]
// for the row-major token grid whose positions are spread evenly over the
// crop. The first headDim/2 channels rotate with the column position, the
// rest with the row position; each frequency covers two adjacent channels
// (the interleaved layout).
func RotaryPosEmbed2D(headDim int, crop Crop, gridH, gridW int) (cos, sin *tensor.Tensor, err error) {
	if headDim <= 0 || headDim%4 != 0 {
		return nil, nil, fmt.Errorf("hunyuan: rotary head dim %d must be a positive multiple of 4", headDim)
	}
	if gridH <= 0 || gridW <= 0 {
		return nil, nil, fmt.Errorf("hunyuan: rotary grid %d×%d", gridH, gridW)
	}
	rows := linspace32(crop.Top, crop.Bottom, gridH)
	cols := linspace32(crop.Left, crop.Right, gridW)
	half := headDim / 2
	freqs := rotaryFreqs1D(half, 10000)
	cos, sin = tensor.Zeros(gridH*gridW, headDim), tensor.Zeros(gridH*gridW, headDim)
	cd, sd := cos.Data(), sin.Data()
	fill := func(c, s []float32, pos float32) {
		for k, f := range freqs {
			a := float64(pos * f)
			c[2*k], s[2*k] = float32(math.Cos(a)), float32(math.Sin(a))
			c[2*k+1], s[2*k+1] = c[2*k], s[2*k]
		}
	}
	for r, y := range rows {
		for c, x := range cols {
			o := (r*gridW + c) * headDim
			fill(cd[o:o+half], sd[o:o+half], x)
			fill(cd[o+half:o+headDim], sd[o+half:o+headDim], y)
		}
	}
	return cos, sin, nil
}

// PipelineBaseSize is the side of the base token grid HunyuanDiTPipeline
// crops rotary positions from: a 512-pixel image through the 8× VAE, in
// patches.
func PipelineBaseSize(patchSize int) int { return 512 / 8 / patchSize }

// PipelineRotary builds the rotary table HunyuanDiTPipeline passes for a
// gridH×gridW token grid (latent size / patch size).
func (m *Model) PipelineRotary(gridH, gridW int) (*nn.Rotary, error) {
	c := m.Cfg
	crop := ResizeCropRegionForGrid(gridH, gridW, PipelineBaseSize(c.PatchSize))
	cos, sin, err := RotaryPosEmbed2D(c.AttentionHeadDim, crop, gridH, gridW)
	if err != nil {
		return nil, err
	}
	return &nn.Rotary{Cos: cos, Sin: sin, Interleaved: true}, nil
}
