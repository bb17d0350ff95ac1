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
	post, err := m.Encode(caseTensor(t, c, "image"))
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "enc_mean", post.Mean.Data(), post.Mean.Shape())
	c.Check(t, "enc_logvar", post.LogVar.Data(), post.LogVar.Shape())
	c.Check(t, "enc_std", post.Std.Data(), post.Std.Shape())
	// Cases with normalised latents (enc_latents: SD3/Flux style) decode
	// latents / scaling_factor + shift_factor; the others raw latents.
	_, normalised := c.Outputs["enc_latents"]
	if normalised {
		vaeCheckLatents(t, c, m, post)
	}
	z := caseTensor(t, c, "latents")
	if normalised {
		z = m.Denormalize(z)
	}
	dec, err := m.Decode(z)
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "dec_sample", dec.Data(), dec.Shape())
	if _, ok := c.Outputs["dec_image"]; ok {
		img := tensor.Clamp(tensor.AddScalar(tensor.Scale(dec, 0.5), 0.5), 0, 1).Permute(0, 2, 3, 1).Contiguous()
		c.Check(t, "dec_image", img.Data(), img.Shape())
	}
}

// vaeCheckLatents checks the posterior draw (mean + std*sample_noise) and
// its normalised latents.
func vaeCheckLatents(t *testing.T, c *golden.Case, m *vae.Model, post *vae.Posterior) {
	t.Helper()
	z := post.Sample(caseTensor(t, c, "sample_noise"))
	c.Check(t, "enc_sample", z.Data(), z.Shape())
	n := m.Normalize(z)
	c.Check(t, "enc_latents", n.Data(), n.Shape())
}
