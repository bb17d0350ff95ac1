package goldentest

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

func init() { golden.Register("diffusers.AutoencoderKL", runVAE) }

func buildVAE(t *testing.T, cfgJSON []byte, w *safetensors.File) *vae.Model {
	t.Helper()
	cfg, err := vae.ParseConfig(cfgJSON)
	if err != nil {
		t.Fatal(err)
	}
	m, err := vae.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nn.Load(m, "", nn.FileSource{F: w}, nn.LoadOptions{}); err != nil {
		t.Fatal(err)
	}
	return m
}

func runVAE(t *testing.T, c *golden.Case) {
	w, err := c.Weights("")
	if err != nil {
		t.Fatal(err)
	}
	m := buildVAE(t, c.Config, w)
	k := newOutputChecker(c)
	// Cases with normalised latents (enc_latents: SD3/Flux style) check the
	// posterior draw and decode latents / scaling_factor + shift_factor;
	// the others decode raw latents.
	normalised := hasOutput(c, "enc_latents")
	if hasInput(c, "image") {
		post, err := m.Encode(caseTensor(t, c, "image"))
		if err != nil {
			t.Fatal(err)
		}
		for name, got := range map[string]*tensor.Tensor{"enc_mean": post.Mean, "enc_logvar": post.LogVar, "enc_std": post.Std} {
			if hasOutput(c, name) {
				k.check(t, name, got.Data(), got.Shape())
			}
		}
		if normalised {
			z := post.Sample(caseTensor(t, c, "sample_noise"))
			k.check(t, "enc_sample", z.Data(), z.Shape())
			n := m.Normalize(z)
			k.check(t, "enc_latents", n.Data(), n.Shape())
		}
	}
	if hasInput(c, "latents") {
		z := caseTensor(t, c, "latents")
		if normalised {
			z = m.Denormalize(z)
		}
		dec, err := m.Decode(z)
		if err != nil {
			t.Fatal(err)
		}
		k.check(t, "dec_sample", dec.Data(), dec.Shape())
		if hasOutput(c, "dec_image") {
			img := tensor.Clamp(tensor.AddScalar(tensor.Scale(dec, 0.5), 0.5), 0, 1).Permute(0, 2, 3, 1).Contiguous()
			k.check(t, "dec_image", img.Data(), img.Shape())
		}
	}
	k.allChecked(t, "")
}
