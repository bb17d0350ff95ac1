package vae

import (
	"fmt"

	"github.com/diffuse-go/diffuse/tensor"
)

// Tiled encoding and decoding, as diffusers' AutoencoderKL.tiled_encode and
// tiled_decode compute them: the input is cut into overlapping square tiles,
// each tile goes through the encoder or decoder on its own, and the tiles
// are blended linearly over their overlap (blend_v with the tile above,
// then blend_h with the tile to the left, both already blended) before each
// is cropped to its share of the result. Memory then depends on the tile
// size, not on the image size. The tiles see only their own neighbourhood
// (GroupNorm statistics and the mid-block attention span one tile), so the
// result differs somewhat from an untiled pass.

// DefaultOverlap is diffusers' tile_overlap_factor.
const DefaultOverlap = 0.25

// AutoTilePixels is the output area (height × width × batch) up to which
// DecodeAuto decodes in one pass.
const AutoTilePixels = 1024 * 1024

// TileOptions sets the tiling of EncodeTiled and DecodeTiled.
type TileOptions struct {
	// TileSize is the tile side in image pixels (diffusers'
	// tile_sample_min_size); the latent tile is TileSize divided by the
	// VAE's spatial factor. 0 takes the config's sample_size, as diffusers
	// does.
	TileSize int
	// Overlap is the fraction of a tile shared with each neighbour, in
	// (0, 1); 0 takes DefaultOverlap.
	Overlap float64
}

// Factor is the VAE's spatial downscaling factor, 2^(blocks-1) (8 for SD).
func (m *Model) Factor() int { return 1 << (len(m.Cfg.BlockOutChannels) - 1) }

// tiling is the geometry of one tiled pass, in input and output units.
type tiling struct {
	inTile, inStride int // tile side and tile step over the input
	blend, keep      int // blend extent and row_limit over the output
}

// geometry checks the options and returns the encode (image → latent) and
// decode (latent → image) tilings. The step of the tiles over the input, in
// output units, must equal the part of each tile that is kept, so that the
// result has the size of an untiled pass.
func (m *Model) geometry(o TileOptions) (enc, dec tiling, err error) {
	f := m.Factor()
	size, ov := o.TileSize, o.Overlap
	if size == 0 {
		size = m.Cfg.SampleSize
	}
	if ov == 0 {
		ov = DefaultOverlap
	}
	if size <= 0 || size%f != 0 {
		return enc, dec, fmt.Errorf("vae: tile size %d is not a positive multiple of the spatial factor %d", size, f)
	}
	if !(ov > 0 && ov < 1) {
		return enc, dec, fmt.Errorf("vae: tile overlap %g is not in (0, 1)", ov)
	}
	lat := size / f
	// diffusers: overlap_size = int(tile * (1 - factor)),
	// blend_extent = int(other tile * factor), row_limit = other tile - blend_extent.
	enc = tiling{inTile: size, inStride: int(float64(size) * (1 - ov)), blend: int(float64(lat) * ov)}
	enc.keep = lat - enc.blend
	dec = tiling{inTile: lat, inStride: int(float64(lat) * (1 - ov)), blend: int(float64(size) * ov)}
	dec.keep = size - dec.blend
	if enc.inStride < 1 || dec.inStride < 1 || enc.inStride != enc.keep*f || dec.inStride*f != dec.keep {
		return enc, dec, fmt.Errorf("vae: tile size %d with overlap %g does not step by whole latent pixels (latent tile %d)", size, ov, lat)
	}
	return enc, dec, nil
}

// DecodeTiled is Decode done tile by tile (diffusers' tiled_decode). A
// latent that fits in one tile is decoded by Decode itself. The result is
// float32.
func (m *Model) DecodeTiled(z *tensor.Tensor, o TileOptions) (*tensor.Tensor, error) {
	if z.Rank() != 4 || z.Dim(1) != m.Cfg.LatentChannels {
		return nil, fmt.Errorf("vae: latents shape %v, want [B, %d, h, w]", z.Shape(), m.Cfg.LatentChannels)
	}
	_, g, err := m.geometry(o)
	if err != nil {
		return nil, err
	}
	if z.Dim(2) <= g.inTile && z.Dim(3) <= g.inTile {
		return m.Decode(z)
	}
	return runTiled(z, g, m.Decode)
}

// EncodeTiled is Encode done tile by tile (diffusers' tiled_encode): the
// encoder moments are blended, then turned into the posterior. An image that
// fits in one tile is encoded by Encode itself. Unlike diffusers, image
// sides must be multiples of the spatial factor when tiling (otherwise the
// tiles would not add up to the latent size of an untiled pass).
func (m *Model) EncodeTiled(x *tensor.Tensor, o TileOptions) (*Posterior, error) {
	if x.Rank() != 4 || x.Dim(1) != m.Cfg.InChannels {
		return nil, fmt.Errorf("vae: image shape %v, want [B, %d, H, W]", x.Shape(), m.Cfg.InChannels)
	}
	g, _, err := m.geometry(o)
	if err != nil {
		return nil, err
	}
	if x.Dim(2) <= g.inTile && x.Dim(3) <= g.inTile {
		return m.Encode(x)
	}
	if f := m.Factor(); x.Dim(2)%f != 0 || x.Dim(3)%f != 0 {
		return nil, fmt.Errorf("vae: tiled encoding of a %d×%d image: sides must be multiples of %d", x.Dim(2), x.Dim(3), f)
	}
	h, err := runTiled(x, g, func(t *tensor.Tensor) (*tensor.Tensor, error) { return m.moments(t), nil })
	if err != nil {
		return nil, err
	}
	return posterior(h), nil
}

// DecodeAuto is DecodeWithin(z, AutoTilePixels, TileOptions{}): diffusers'
// default tiles (config sample_size, overlap 0.25) for large images only.
func (m *Model) DecodeAuto(z *tensor.Tensor) (*tensor.Tensor, error) {
	return m.DecodeWithin(z, AutoTilePixels, TileOptions{})
}

// DecodeWithin decodes in one pass when the images together have at most
// maxPixels output pixels (height × width × batch); otherwise it decodes
// them one at a time (diffusers' slicing), tiling each image that alone has
// more than maxPixels.
func (m *Model) DecodeWithin(z *tensor.Tensor, maxPixels int, o TileOptions) (*tensor.Tensor, error) {
	if z.Rank() != 4 || z.Dim(1) != m.Cfg.LatentChannels {
		return nil, fmt.Errorf("vae: latents shape %v, want [B, %d, h, w]", z.Shape(), m.Cfg.LatentChannels)
	}
	f := m.Factor()
	per := z.Dim(2) * f * z.Dim(3) * f
	if z.Dim(0)*per <= maxPixels {
		return m.Decode(z)
	}
	outs := make([]*tensor.Tensor, z.Dim(0))
	for i := range outs {
		zi := z.Narrow(0, i, 1).Contiguous()
		var err error
		if per <= maxPixels {
			outs[i], err = m.Decode(zi)
		} else {
			outs[i], err = m.DecodeTiled(zi, o)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(outs) == 1 {
		return outs[0], nil
	}
	return tensor.Concat(0, outs...), nil
}

// runTiled cuts x [B, C, H, W] into tiles of g.inTile starting every
// g.inStride pixels (the last ones clipped at the border), maps each with
// fn, blends each mapped tile with its already blended upper and left
// neighbours and keeps its top-left g.keep × g.keep corner. Only two rows of
// tiles are held at a time.
func runTiled(x *tensor.Tensor, g tiling, fn func(*tensor.Tensor) (*tensor.Tensor, error)) (*tensor.Tensor, error) {
	H, W := x.Dim(2), x.Dim(3)
	var prev []*tensor.Tensor
	var rows []*tensor.Tensor
	for i := 0; i < H; i += g.inStride {
		var cur, kept []*tensor.Tensor
		for j := 0; j < W; j += g.inStride {
			h, w := min(g.inTile, H-i), min(g.inTile, W-j)
			in := x.Narrow(2, i, h).Narrow(3, j, w).Contiguous()
			out, err := fn(in)
			if err != nil {
				return nil, err
			}
			tile := out.Detach().Float32().Contiguous()
			if tile.Rank() != 4 {
				return nil, fmt.Errorf("vae: tile output shape %v", tile.Shape())
			}
			if prev != nil {
				blendV(prev[len(cur)], tile, g.blend)
			}
			if len(cur) > 0 {
				blendH(cur[len(cur)-1], tile, g.blend)
			}
			cur = append(cur, tile)
			kept = append(kept, tile.Narrow(2, 0, min(g.keep, tile.Dim(2))).Narrow(3, 0, min(g.keep, tile.Dim(3))))
		}
		rows = append(rows, tensor.Concat(3, kept...))
		prev = cur
	}
	return tensor.Concat(2, rows...), nil
}

// blendV fades the top rows of b in from the bottom rows of a (the tile
// above), in place: b[y] = a[end-e+y]·(1-y/e) + b[y]·(y/e) for y < e, with
// e = min(a height, b height, extent).
func blendV(a, b *tensor.Tensor, extent int) {
	ah, bh, w := a.Dim(2), b.Dim(2), b.Dim(3)
	e := min(ah, bh, extent)
	if e <= 0 || a.Dim(3) != w {
		return
	}
	ad, bd := a.Data(), b.Data()
	planes := b.Dim(0) * b.Dim(1)
	for y := 0; y < e; y++ {
		wb := float64(y) / float64(e)
		fa, fb := float32(1-wb), float32(wb)
		for p := 0; p < planes; p++ {
			ar := ad[(p*ah+ah-e+y)*w:][:w]
			br := bd[(p*bh+y)*w:][:w]
			for k := range br {
				br[k] = float32(ar[k]*fa) + float32(br[k]*fb)
			}
		}
	}
}

// blendH fades the left columns of b in from the right columns of a (the
// tile to the left), in place, like blendV across columns.
func blendH(a, b *tensor.Tensor, extent int) {
	aw, bw, h := a.Dim(3), b.Dim(3), b.Dim(2)
	e := min(aw, bw, extent)
	if e <= 0 || a.Dim(2) != h {
		return
	}
	ad, bd := a.Data(), b.Data()
	rows := b.Dim(0) * b.Dim(1) * h
	for x := 0; x < e; x++ {
		wb := float64(x) / float64(e)
		fa, fb := float32(1-wb), float32(wb)
		for r := 0; r < rows; r++ {
			i := r*bw + x
			bd[i] = float32(ad[r*aw+aw-e+x]*fa) + float32(bd[i]*fb)
		}
	}
}
