package goldentest

import (
	"testing"

	"github.com/diffuse-go/diffuse/internal/golden"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
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
	dec, err := m.Decode(caseTensor(t, c, "latents"))
	if err != nil {
		t.Fatal(err)
	}
	c.Check(t, "dec_sample", dec.Data(), dec.Shape())
}
