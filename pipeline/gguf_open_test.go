package pipeline

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/model/sd3"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/quant"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// ggufOf writes the tensors of an original-layout safetensors file to a
// GGUF file under prefix: matrices whose rows are whole blocks as typ (as
// the GGUF files people download), other tensors of two or more
// dimensions F16, vectors F32.
func ggufOf(t *testing.T, in, out, prefix string, typ gguf.Type, meta []gguf.KV) {
	t.Helper()
	f, err := safetensors.Open(in)
	flowMust(t, err)
	defer f.Close()
	var ts []gguf.Tensor
	for _, info := range f.Tensors() {
		v, shape, err := f.Float32(info.Name)
		flowMust(t, err)
		gt := gguf.F32
		switch {
		case len(shape) == 2 && shape[1]%typ.BlockSize() == 0:
			gt = typ
		case len(shape) >= 2:
			gt = gguf.F16
		}
		b, err := gguf.Quantize(gt, shape, v)
		flowMust(t, err)
		ts = append(ts, gguf.Tensor{Name: prefix + info.Name, Type: gt, Shape: shape, Data: b})
	}
	flowMust(t, gguf.WriteFile(out, meta, ts))
}

// dequantizedOf writes a GGUF file's tensors, dequantised, to an F32
// safetensors file with the prefix taken off their names.
func dequantizedOf(t *testing.T, in, out, prefix string) {
	t.Helper()
	f, err := gguf.Open(in)
	flowMust(t, err)
	defer f.Close()
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		v, shape, err := f.Float32(n)
		flowMust(t, err)
		ts = append(ts, safetensors.F32Tensor(strings.TrimPrefix(n, prefix), shape, v))
	}
	flowMust(t, safetensors.WriteFile(out, ts, nil))
}

// finalLatents generates with m and returns the last step's latents.
func finalLatents(t *testing.T, m Model) []float32 {
	t.Helper()
	var last *tensor.Tensor
	p := flowRequest
	p.Steps, p.Guidance = 2, 0
	if m.Info().Family == "sd3" {
		p.Guidance = 4
	}
	p.OnProgress = func(e Event) { last = e.Latents }
	_, err := m.Generate(context.Background(), p)
	flowMust(t, err)
	return slices.Clone(last.Float32().Data())
}

// relErr is ‖a−b‖/‖b‖.
func relErr(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		d += float64(a[i]-b[i]) * float64(a[i]-b[i])
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / n)
}

// transformerDTypes counts the dtypes of a loaded transformer's matrices.
func transformerDTypes(m Model) map[tensor.DType]int {
	var mod nn.Module
	switch x := m.(type) {
	case *fluxModel:
		mod = x.pipe.Transformer
	case *sd3Model:
		mod = x.pipe.Transformer
	}
	var ps nn.Params
	mod.Params("", &ps)
	out := map[tensor.DType]int{}
	for _, p := range ps.List() {
		if t := *p.Ptr; t.Rank() >= 2 {
			out[t.DType()]++
		}
	}
	return out
}

// flowFileCase is a tiny transformer file of one family with the
// components it needs.
type flowFileCase struct {
	name, family, prefix string
	meta                 []gguf.KV
	specs                func() ([]TensorSpec, error)
	components           func(t *testing.T) ComponentPaths
}

// flowFileCases are the tiny FLUX.1-dev, SD3 and SD3.5 Medium
// transformers in their original layouts, the FLUX one under
// stable-diffusion.cpp's prefix in GGUF, the SD3 ones as ComfyUI-GGUF
// writes them.
func flowFileCases() []flowFileCase {
	return []flowFileCase{
		{"flux", "flux", gguf.DiffusionModelPrefix, nil, func() ([]TensorSpec, error) { return FluxFileLayout(flowTinyFlux(true)) },
			func(t *testing.T) ComponentPaths {
				dir := fluxFolder(t, true)
				return ComponentPaths{TextEncoder: dir, TextEncoder2: dir, Tokenizer2: dir, VAE: dir}
			}},
		sd3FileCase("sd3", flowTinySD3()),
		sd3FileCase("sd3.5", flowTinySD35()),
	}
}

// sd3FileCase is an SD3 transformer of config c as ComfyUI-GGUF writes it
// (original names, no prefix, general.architecture sd3).
func sd3FileCase(name string, c sd3.Config) flowFileCase {
	return flowFileCase{name, "sd3", "", []gguf.KV{{Key: "general.architecture", Value: gguf.MustValue("sd3")}}, func() ([]TensorSpec, error) {
		m, err := sd3.New(c)
		if err != nil {
			return nil, err
		}
		return originalTensors(m, checkpoint.SD3, "")
	}, func(t *testing.T) ComponentPaths {
		dir := sd3Folder(t, false, c)
		return ComponentPaths{TextEncoder: dir, TextEncoder2: dir, VAE: dir}
	}}
}

// A FLUX transformer in a GGUF file (stable-diffusion.cpp's names, no
// architecture) and an SD3 one (ComfyUI-GGUF's: no prefix,
// general.architecture sd3) open through Open with the other components
// given, keep their matrices Q8_0, and generate:
//   - exactly the latents of the same weights dequantised into an F32
//     file (the GEMM decodes Q8_0 blocks to the values DequantizeRow
//     gives, fused and swapped rows included);
//   - within 2% (relative L2) of the unquantised file's latents, also
//     with Options.Int8 (activations rounded to 8 bits too). Q8_0
//     rounds each weight to 1/254 of its block's largest magnitude, an RMS
//     error of about 0.3% of these uniform weights; two steps through the
//     tiny transformers keep the latents' error at that order (measured
//     0.18% SD3, 0.37% SD3.5, 0.23% FLUX), so 2% fails a wrong scale or a misplaced
//     row: swapping the adaLN halves the wrong way moves them 7–11%.
func TestOpenGGUF(t *testing.T) {
	for _, c := range flowFileCases() {
		t.Run(c.name, func(t *testing.T) {
			specs, err := c.specs()
			flowMust(t, err)
			dir := t.TempDir()
			orig, q8, deq := filepath.Join(dir, "orig.safetensors"), filepath.Join(dir, "model-Q8_0.gguf"), filepath.Join(dir, "deq.safetensors")
			writeLayout(t, orig, specs)
			ggufOf(t, orig, q8, c.prefix, gguf.Q8_0, c.meta)
			dequantizedOf(t, q8, deq, c.prefix)
			opt := Options{Components: c.components(t)}
			latents := map[string][]float32{}
			for _, path := range []string{orig, q8, deq} {
				m, err := Open(context.Background(), path, opt)
				flowMust(t, err)
				if m.Info().Family != c.family {
					t.Fatalf("%s opened as %s", path, m.Info().Family)
				}
				dt := transformerDTypes(m)
				if path == q8 && (dt[tensor.Q8_0] == 0 || dt[tensor.F32] > 0) {
					t.Errorf("GGUF matrices loaded as %v, want Q8_0 kept (F16 where rows are not whole blocks)", dt)
				}
				latents[path] = finalLatents(t, m)
				flowMust(t, m.Close())
			}
			if !slices.Equal(latents[q8], latents[deq]) {
				t.Errorf("Q8_0 latents differ from the dequantised weights' (rel. error %.2e)", relErr(latents[q8], latents[deq]))
			}
			if e := relErr(latents[q8], latents[orig]); e > 0.02 || e == 0 {
				t.Errorf("Q8_0 latents are %.4f (relative L2) from the unquantised ones, want (0, 0.02]", e)
			} else {
				t.Logf("Q8_0 vs unquantised latents: relative L2 %.4f", e)
			}
			// Integer products (Options.Int8): different latents, as near
			// the unquantised ones as the float32 product's.
			i8 := opt
			i8.Int8 = true
			t.Cleanup(func() { tensor.SetInt8(false) })
			m8, err := Open(context.Background(), q8, i8)
			flowMust(t, err)
			l8 := finalLatents(t, m8)
			flowMust(t, m8.Close())
			if slices.Equal(l8, latents[q8]) {
				t.Error("Int8: the latents equal the float32 product's: integer products not taken")
			}
			if e := relErr(l8, latents[orig]); e > 0.02 {
				t.Errorf("Int8 latents are %.4f (relative L2) from the unquantised ones, want ≤ 0.02", e)
			} else {
				t.Logf("Int8 vs unquantised latents: relative L2 %.4f", e)
			}
			// The same file given as the transformer of a diffusers folder
			// (whose scheduler config differs from a single file's default).
			m, err := Open(context.Background(), opt.Components.VAE, Options{Components: ComponentPaths{Transformer: q8}})
			flowMust(t, err)
			if dt := transformerDTypes(m); dt[tensor.Q8_0] == 0 || dt[tensor.F32] > 0 {
				t.Errorf("a folder's GGUF transformer loaded as %v", dt)
			}
			for _, v := range finalLatents(t, m) {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatal("a folder's GGUF transformer generates non-finite latents")
				}
			}
			flowMust(t, m.Close())
			missing := opt
			missing.Components.VAE = ""
			if _, err := Open(context.Background(), q8, missing); !errors.Is(err, ErrMissingComponent) || !strings.Contains(err.Error(), "has no vae:") {
				t.Errorf("without a VAE: err = %v, want ErrMissingComponent naming vae", err)
			}
			// Nothing given: every missing component is named at once.
			_, err = Open(context.Background(), q8, Options{})
			want := "has no vae, text_encoder, text_encoder_2"
			if c.family == "flux" {
				want += ", tokenizer_2 (T5's spiece.model)"
			}
			if !errors.Is(err, ErrMissingComponent) || !strings.Contains(err.Error(), want+":") {
				t.Errorf("without components: err = %v, want ErrMissingComponent naming %q", err, want)
			}
		})
	}
}

// A GGUF file of a UNet model (stable-diffusion.cpp's SD 1.x names) is
// refused by name, not opened as a safetensors family.
func TestOpenGGUFOtherFamily(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sd15-Q8_0.gguf")
	flowMust(t, gguf.WriteFile(path, nil, []gguf.Tensor{{Name: "model.diffusion_model.input_blocks.0.0.weight",
		Type: gguf.F32, Shape: []int{2}, Data: make([]byte, 8)}}))
	_, err := Open(context.Background(), path, Options{})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "GGUF") {
		t.Errorf("err = %v, want ErrUnsupported naming GGUF", err)
	}
}

// scaledOf writes an fp8 safetensors file's tensors with their scales
// applied (ScaledFloat32) to an F32 file, less the scales and marker.
func scaledOf(t *testing.T, in, out string) {
	t.Helper()
	f, err := safetensors.Open(in)
	flowMust(t, err)
	defer f.Close()
	hidden := nn.FP8ScaleNames(f)
	var ts []safetensors.Tensor
	for _, n := range f.Names() {
		if hidden[n] || n == comfyScaledFP8 {
			continue
		}
		v, shape, err := f.ScaledFloat32(n)
		flowMust(t, err)
		ts = append(ts, safetensors.F32Tensor(n, shape, v))
	}
	flowMust(t, safetensors.WriteFile(out, ts, nil))
}

// FLUX and SD3 transformers converted to fp8 safetensors (quant.Convert:
// plain float8_e4m3fn, and ComfyUI's scaled fp8 with scale_weight tensors
// and the scaled_fp8 marker) open through Open with their components,
// keep their weights F8_E4M3, and generate exactly the latents of the
// same values widened to an F32 file. Both stay within 10% (relative L2)
// of the unquantised latents: e4m3 keeps 3 mantissa bits, a relative
// rounding error of up to 6.25% per weight, about 2% RMS, which the tiny
// models pass on at that order (measured 1.6–1.8%; 3.0–3.2% for SD3.5,
// three blocks, two with dual attention; these weights are large enough
// that the plain cast rarely falls into subnormals).
func TestOpenFP8(t *testing.T) {
	for _, c := range flowFileCases() {
		t.Run(c.name, func(t *testing.T) {
			specs, err := c.specs()
			flowMust(t, err)
			dir := t.TempDir()
			orig := filepath.Join(dir, "orig.safetensors")
			writeLayout(t, orig, prefixed(c.prefix, specs))
			opt := Options{Components: c.components(t)}
			ref := openLatents(t, orig, opt, nil)
			for _, name := range []string{"fp8", "fp8-scaled"} {
				typ, err := quant.ParseType(name)
				flowMust(t, err)
				fp8, deq := filepath.Join(dir, name+".safetensors"), filepath.Join(dir, name+"-f32.safetensors")
				_, err = quant.Convert(orig, fp8, typ)
				flowMust(t, err)
				scaledOf(t, fp8, deq)
				got := openLatents(t, fp8, opt, func(dt map[tensor.DType]int) {
					if dt[tensor.F8E4M3] == 0 || dt[tensor.F32] > 0 {
						t.Errorf("%s matrices loaded as %v, want F8_E4M3 kept", name, dt)
					}
				})
				if want := openLatents(t, deq, opt, nil); !slices.Equal(got, want) {
					t.Errorf("%s latents differ from the widened weights' (rel. error %.2e)", name, relErr(got, want))
				}
				if e := relErr(got, ref); e > 0.1 || e == 0 {
					t.Errorf("%s latents are %.4f (relative L2) from the unquantised ones, want (0, 0.1]", name, e)
				} else {
					t.Logf("%s vs unquantised latents: relative L2 %.4f", name, e)
				}
			}
		})
	}
}

// openLatents opens path, checks its transformer's dtypes with check
// (when given) and returns its final latents.
func openLatents(t *testing.T, path string, opt Options, check func(map[tensor.DType]int)) []float32 {
	t.Helper()
	m, err := Open(context.Background(), path, opt)
	flowMust(t, err)
	defer m.Close()
	if check != nil {
		check(transformerDTypes(m))
	}
	return finalLatents(t, m)
}
