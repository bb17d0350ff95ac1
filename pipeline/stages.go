package pipeline

import (
	"fmt"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/tensor"
)

// Tokenizer turns a prompt into a fixed-length row of token ids.
type Tokenizer interface {
	Encode(text string) []int64
}

// EncodePrompts tokenizes and encodes prompts with a CLIP text encoder and
// returns the per-token states [B, L, D]. clipSkip follows A1111 and
// stable-diffusion.cpp: 0 or 1 takes the last layer, 2 the penultimate
// (diffusers' clip_skip=1), and so on; the final layer norm is applied to
// whichever layer is taken, as diffusers does.
func EncodePrompts(enc *clip.Model, tok Tokenizer, prompts []string, clipSkip int) (*tensor.Tensor, []int64, error) {
	var ids []int64
	length := 0
	for _, p := range prompts {
		row := tok.Encode(p)
		if length == 0 {
			length = len(row)
		} else if len(row) != length {
			return nil, nil, fmt.Errorf("pipeline: tokenizer gave rows of %d and %d ids", length, len(row))
		}
		ids = append(ids, row...)
	}
	out, err := enc.Forward(ids, len(prompts), length)
	if err != nil {
		return nil, nil, err
	}
	if clipSkip <= 1 {
		return out.LastHiddenState, ids, nil
	}
	idx := len(out.HiddenStates) - clipSkip
	if idx < 1 {
		return nil, nil, fmt.Errorf("pipeline: clip skip %d exceeds the encoder's %d layers", clipSkip, len(out.HiddenStates)-1)
	}
	return enc.FinalNorm(out.HiddenStates[idx]), ids, nil
}

// DecodeLatents turns scaled latents into images [B, H, W, 3] in [0, 1]
// (diffusers' output_type "np" before any uint8 rounding).
func DecodeLatents(v *vae.Model, latents *tensor.Tensor) (*tensor.Tensor, error) {
	z := tensor.Scale(latents, 1/v.Cfg.ScalingFactor)
	if v.Cfg.ShiftFactor != nil {
		z = tensor.AddScalar(z, *v.Cfg.ShiftFactor)
	}
	img, err := v.Decode(z)
	if err != nil {
		return nil, err
	}
	img = tensor.Clamp(tensor.AddScalar(tensor.Scale(img, 0.5), 0.5), 0, 1)
	return img.Permute(0, 2, 3, 1).Contiguous(), nil
}

// EncodeImage maps images [B, H, W, 3] in [0, 1] to scaled latents, sampling
// the posterior with noise (shaped like the latents; nil takes the mean).
func EncodeImage(v *vae.Model, image *tensor.Tensor, noise *tensor.Tensor) (*tensor.Tensor, error) {
	if image.Rank() != 4 || image.Dim(3) != 3 {
		return nil, fmt.Errorf("pipeline: image shape %v, want [B, H, W, 3]", image.Shape())
	}
	x := tensor.AddScalar(tensor.Scale(image.Permute(0, 3, 1, 2).Contiguous(), 2), -1)
	post, err := v.Encode(x)
	if err != nil {
		return nil, err
	}
	z := post.Mean
	if noise != nil {
		if !tensor.SameShape(noise.Shape(), post.Mean.Shape()) {
			return nil, fmt.Errorf("pipeline: VAE noise shape %v, latents %v", noise.Shape(), post.Mean.Shape())
		}
		z = post.Sample(noise)
	}
	if v.Cfg.ShiftFactor != nil {
		z = tensor.AddScalar(z, -*v.Cfg.ShiftFactor)
	}
	return tensor.Scale(z, v.Cfg.ScalingFactor), nil
}

// PrepareMask binarises a mask [B, H, W, 1] in [0, 1] (>= 0.5 repaints),
// returns it at latent resolution (nearest: latent pixel (i, j) takes
// mask pixel (f·i, f·j)) as [B, 1, H/f, W/f], and the masked image
// [B, H, W, 3] with repainted pixels set to 0.5 (0 in [-1, 1]).
func PrepareMask(mask, image *tensor.Tensor, factor int) (latentMask, masked *tensor.Tensor, err error) {
	if mask.Rank() != 4 || mask.Dim(3) != 1 {
		return nil, nil, fmt.Errorf("pipeline: mask shape %v, want [B, H, W, 1]", mask.Shape())
	}
	B, H, W := mask.Dim(0), mask.Dim(1), mask.Dim(2)
	if image != nil && (image.Dim(0) != B || image.Dim(1) != H || image.Dim(2) != W) {
		return nil, nil, fmt.Errorf("pipeline: mask %v does not match image %v", mask.Shape(), image.Shape())
	}
	if H%factor != 0 || W%factor != 0 {
		return nil, nil, fmt.Errorf("pipeline: mask size %dx%d is not a multiple of %d", W, H, factor)
	}
	md := mask.Data()
	bin := make([]float32, len(md))
	for i, v := range md {
		if v >= 0.5 {
			bin[i] = 1
		}
	}
	h, w := H/factor, W/factor
	lm := tensor.Zeros(B, 1, h, w)
	ld := lm.Data()
	for b := 0; b < B; b++ {
		for i := 0; i < h; i++ {
			for j := 0; j < w; j++ {
				ld[(b*h+i)*w+j] = bin[(b*H+i*factor)*W+j*factor]
			}
		}
	}
	if image != nil {
		id := image.Data()
		md := make([]float32, len(id))
		for p := 0; p < B*H*W; p++ {
			for ch := 0; ch < 3; ch++ {
				if bin[p] < 0.5 {
					md[p*3+ch] = id[p*3+ch]
				} else {
					md[p*3+ch] = 0.5
				}
			}
		}
		masked = tensor.FromSlice(md, B, H, W, 3)
	}
	return lm, masked, nil
}

// SD15SchedulerConfig is Stable Diffusion 1.5's scheduler_config.json, used
// for single-file checkpoints (which carry none).
const SD15SchedulerConfig = `{"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
 "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000, "set_alpha_to_one": false,
 "skip_prk_steps": true, "steps_offset": 1, "trained_betas": null}`
