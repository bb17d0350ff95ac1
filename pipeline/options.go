package pipeline

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// Options configure how a model is opened and the engine's process-wide
// compute settings. The zero value is the default everywhere: weights as
// stored, no memory limit, all cores, the default pack cache, Winograd
// convolutions where they gain, float32 products, streaming stores on Intel
// CPUs only, convolution inputs unfolded.
type Options struct {
	// DType converts the weights to this dtype in memory (nil: as stored).
	DType *tensor.DType
	// MemoryLimit refuses requests whose estimated working memory exceeds
	// it, in bytes, before allocating anything (0: no check).
	MemoryLimit int64
	// Components says where to take components from instead of the
	// checkpoint, as ComfyUI's separate loaders do (see ComponentPaths). A
	// FLUX transformer-only file (BFL's flux1-dev.safetensors) needs its
	// text encoders, T5 tokenizer and VAE given this way. SD3 and FLUX
	// read every field; SD 1.x/2.x and SDXL read VAE (A1111's sd_vae: an
	// LDM-layout .safetensors file, a diffusers VAE folder or a diffusers
	// model folder, in place of the checkpoint's own VAE, with the
	// family's latent scaling kept). The other families ignore it.
	Components ComponentPaths
	// KeepTextEncoders keeps SD3's and FLUX's text encoders loaded between
	// requests. By default they are released once the prompts are encoded
	// (FLUX's T5-XXL alone is 9.5 GB in f16) and loaded again by the next
	// request.
	KeepTextEncoders bool

	// Threads is the number of cores to compute on (runtime.GOMAXPROCS); 0
	// leaves GOMAXPROCS as it is (Go's default: every core the process
	// may use).
	Threads int
	// PackCacheMB bounds the cache of packed weight panels, in MiB (see
	// tensor.SetPackCacheBudget): nil for tensor.DefaultPackCacheMB, a
	// pointer to 0 to turn the cache off (PackCache builds the pointer).
	PackCacheMB *int
	// Winograd selects when 3×3 convolutions use the Winograd algorithm.
	Winograd tensor.WinogradMode
	// BF16 selects bfloat16 products. gemm.BF16Native has no effect on a
	// CPU without AVX512_BF16 (gemm.CurrentBF16Mode then reports
	// gemm.BF16Off after Apply).
	BF16 gemm.BF16Mode
	// Int8 multiplies Q8_0 weights (GGUF files) by their input quantised
	// to Q8_0, with integer products, as ggml and stable-diffusion.cpp do
	// (tensor.SetInt8): faster where the CPU has AVX2, and slightly
	// different from the default float32 product of the dequantised
	// weight, which diffusers computes. Other dtypes are unaffected.
	Int8 bool
	// Stream selects when huge GEMM outputs are written with non-temporal
	// stores.
	Stream gemm.StreamMode
	// ConvInPlace makes convolutions read their input in place instead of
	// unfolding it (see tensor.SetConvInPlace).
	ConvInPlace bool
}

// PackCache returns a PackCacheMB value of mb MiB (0: off).
func PackCache(mb int) *int { return &mb }

// Validate reports the first setting outside its range, naming it.
func (o Options) Validate() error {
	var errs []error
	if o.MemoryLimit < 0 {
		errs = append(errs, fmt.Errorf("MemoryLimit %d: want 0 (no limit) or more bytes", o.MemoryLimit))
	}
	if o.Threads < 0 {
		errs = append(errs, fmt.Errorf("Threads %d: want 0 (all cores) or more", o.Threads))
	}
	if o.PackCacheMB != nil && (*o.PackCacheMB < 0 || *o.PackCacheMB > 1<<30) {
		errs = append(errs, fmt.Errorf("PackCacheMB %d: want 0 (off) to 2^30", *o.PackCacheMB))
	}
	switch o.Winograd {
	case tensor.WinogradAuto, tensor.WinogradOff, tensor.WinogradAll:
	default:
		errs = append(errs, fmt.Errorf("Winograd: unknown %v", o.Winograd))
	}
	switch o.BF16 {
	case gemm.BF16Off, gemm.BF16Native, gemm.BF16Exact, gemm.BF16Round:
	default:
		errs = append(errs, fmt.Errorf("BF16: unknown %v", o.BF16))
	}
	switch o.Stream {
	case gemm.StreamAuto, gemm.StreamOn, gemm.StreamOff:
	default:
		errs = append(errs, fmt.Errorf("Stream: unknown %v", o.Stream))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pipeline options: %w", err)
	}
	return nil
}

// Apply validates o and, only if it is valid, sets every setting it holds
// in packages runtime, tensor and gemm. The settings are process-wide:
// products already running finish as they started, and Apply is not meant
// to race with another Apply.
func (o Options) Apply() error {
	if err := o.Validate(); err != nil {
		return err
	}
	if o.Threads > 0 {
		runtime.GOMAXPROCS(o.Threads)
	}
	mb := tensor.DefaultPackCacheMB
	if o.PackCacheMB != nil {
		mb = *o.PackCacheMB
	}
	tensor.SetPackCacheBudget(int64(mb) << 20)
	tensor.SetWinograd(o.Winograd)
	gemm.SetBF16Mode(o.BF16)
	tensor.SetInt8(o.Int8)
	gemm.SetStreamMode(o.Stream)
	tensor.SetConvInPlace(o.ConvInPlace)
	return nil
}
