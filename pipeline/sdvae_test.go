package pipeline

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/internal/testmodel"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// randomVAE writes a diffusers VAE folder with the config of the tiny
// golden VAE (latent channels changed when latent > 0) and random weights
// drawn from seed, and loads it.
func randomVAE(t *testing.T, seed uint64, latent int) (string, *vae.Model) {
	t.Helper()
	var cfg map[string]any
	if err := json.Unmarshal(findGolden(t, "vae").Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if latent > 0 {
		cfg["latent_channels"] = latent
	}
	dir := filepath.Join(t.TempDir(), "other-vae")
	c := RandomComponent{Name: "vae", Library: "diffusers", Class: "AutoencoderKL", Config: cfg}
	if err := writeRandomComponent(dir, c, seed, tensor.F32); err != nil {
		t.Fatal(err)
	}
	m, fs, err := loadVAE(compSource{name: "vae", dir: dir}, vae.Defaults(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fs.close)
	return dir, m
}

// bareLDMVAE writes the tiny SD 1.x with vae in its place as an LDM single
// file, and that file's VAE alone (first_stage_model. taken off, with a
// loss.logvar as raw VAE files have): it returns both paths.
func bareLDMVAE(t *testing.T, v *vae.Model) (full, bare string) {
	t.Helper()
	c, m := tinyModels(t)
	c.VAE = v
	full = filepath.Join(t.TempDir(), "with-vae.safetensors")
	if err := WriteLDM(full, m, c, tensor.F32); err != nil {
		t.Fatal(err)
	}
	bare = rewrite(t, full, func(ts []safetensors.Tensor) []safetensors.Tensor {
		var out []safetensors.Tensor
		for _, x := range ts {
			if name, ok := strings.CutPrefix(x.Name, ldmVAEPrefixes[0]); ok {
				x.Name = name
				out = append(out, x)
			}
		}
		return append(out, safetensors.F32Tensor("loss.logvar", nil, []float32{0}))
	})
	return full, bare
}

// openedVAE is the VAE an opened SD or SDXL model decodes with.
func openedVAE(t *testing.T, m Model) *vae.Model {
	t.Helper()
	switch v := m.(*unetModel).v.(type) {
	case *sdVariant:
		return v.c.VAE
	case *sdxlVariant:
		return v.c.VAE
	}
	t.Fatalf("%T is not an SD or SDXL model", m)
	return nil
}

// decodeWith opens path with opt and decodes fixed latents with its VAE.
func decodeWith(t *testing.T, path string, opt Options) []float32 {
	t.Helper()
	m, err := Open(context.Background(), path, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lat := make([]float32, 4*8*8)
	for i := range lat {
		lat[i] = float32(i%13)/13 - 0.5
	}
	img, err := DecodeLatents(openedVAE(t, m), tensor.FromSlice(lat, 1, 4, 8, 8))
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(img.Float32().Data())
}

// TestSDGivenVAE: an SD model opened with Options.Components.VAE (a
// diffusers VAE folder, a diffusers model folder, a full LDM checkpoint,
// a bare LDM VAE file) decodes as the model whose own VAE that is.
func TestSDGivenVAE(t *testing.T) {
	dir := t.TempDir()
	a, err := testmodel.Write(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := testmodel.Write(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	vdir, v := randomVAE(t, 7, 0)
	if err := os.RemoveAll(filepath.Join(b.SD, "vae")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(vdir, filepath.Join(b.SD, "vae")); err != nil {
		t.Fatal(err)
	}
	full, bare := bareLDMVAE(t, v)
	own, want := decodeWith(t, a.SD, Options{}), decodeWith(t, b.SD, Options{})
	if slices.Equal(own, want) {
		t.Fatal("the two VAEs decode alike: the test cannot tell them apart")
	}
	for _, path := range []string{filepath.Join(b.SD, "vae"), b.SD, full, bare} {
		opt := Options{Components: ComponentPaths{VAE: path}}
		if got := decodeWith(t, a.SD, opt); !slices.Equal(got, want) {
			t.Errorf("VAE %s: decoded output is not that VAE's", path)
		}
	}
}

// TestSDXLGivenVAE: an SDXL folder opened with a given VAE folder decodes
// as the folder whose own VAE that is; Close releases the VAE's files.
func TestSDXLGivenVAE(t *testing.T) {
	c, _, raw := tinySDXL(t, false)
	a := writeFolder(t, c, raw, baseIndex)
	vdir, v := randomVAE(t, 11, 0)
	c.VAE = v
	b := writeFolder(t, c, raw, baseIndex)
	want := decodeWith(t, b, Options{})
	if got := decodeWith(t, a, Options{Components: ComponentPaths{VAE: vdir}}); !slices.Equal(got, want) {
		t.Error("decoded output is not the given VAE's")
	}
	m, err := Open(context.Background(), a, Options{Components: ComponentPaths{VAE: vdir}})
	if err != nil {
		t.Fatal(err)
	}
	xc := m.(*unetModel).v.(*sdxlVariant).c
	if len(xc.vaeFiles) == 0 {
		t.Error("the given VAE's files are not kept")
	}
	m.Close()
	if len(xc.vaeFiles) != 0 {
		t.Error("Close left the given VAE's files open")
	}
}

// TestGivenVAEErrors: a missing path, a VAE of other latent channels and
// a single file in diffusers names fail at open, saying so.
func TestGivenVAEErrors(t *testing.T) {
	sd := filepath.Join(t.TempDir(), "a")
	f, err := testmodel.Write(sd)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "no-such-vae.safetensors")
	wide, _ := randomVAE(t, 3, 8)
	plain, _ := randomVAE(t, 5, 0)
	named := filepath.Join(plain, "diffusion_pytorch_model.safetensors")
	for _, c := range []struct{ path, want string }{{missing, missing}, {wide, "8 latent channels"}, {named, "diffusers names"}} {
		_, err := Open(context.Background(), f.SD, Options{Components: ComponentPaths{VAE: c.path}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("VAE %s: error %v, want one naming %q", c.path, err, c.want)
		}
	}
}
