package pipeline

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/gguf"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// weightsFile is an open file of tensors that components load from: a
// safetensors file, or a GGUF file (the quantised SD3 and FLUX
// checkpoints stable-diffusion.cpp and ComfyUI-GGUF write), whose
// quantised tensors stay quantised in memory.
type weightsFile interface {
	checkpoint.Source // Names, Info (shapes as the model sees them)
	// view returns a tensor in its stored dtype, in place where the file
	// allows (nn.ViewTensor, nn.GGUFTensor).
	view(name string) (*tensor.Tensor, error)
	// keep lets the pages loading touched go and reports whether the file
	// must stay open because the loaded tensors use its mapping.
	keep() bool
	Close() error
	String() string
}

// openWeights opens a single weights file by its extension: .gguf as
// GGUF, .safetensors as safetensors; pickles are refused.
func openWeights(path string) (weightsFile, error) {
	if isGGUF(path) {
		f, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		return ggufFile{f}, nil
	}
	if err := refusePickle(path); err != nil {
		return nil, err
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	return newSTFile(f), nil
}

// isGGUF reports a path with the .gguf extension.
func isGGUF(path string) bool { return strings.EqualFold(filepath.Ext(path), ".gguf") }

// stFile is a safetensors file. Its names leave out the scales of fp8
// weights (the weights take them in) and ComfyUI's "scaled_fp8" marker,
// so that layout checks do not report them as unexpected.
type stFile struct {
	*safetensors.File
	hidden map[string]bool
}

func newSTFile(f *safetensors.File) stFile {
	hidden := nn.FP8ScaleNames(f)
	if f.Has(comfyScaledFP8) {
		hidden[comfyScaledFP8] = true
	}
	return stFile{f, hidden}
}

// comfyScaledFP8 is the empty tensor by which ComfyUI marks a checkpoint
// whose fp8 weights have scale_weight tensors.
const comfyScaledFP8 = "scaled_fp8"

func (s stFile) Names() []string {
	var out []string
	for _, n := range s.File.Names() {
		if !s.hidden[n] {
			out = append(out, n)
		}
	}
	return out
}

func (s stFile) view(name string) (*tensor.Tensor, error) { return nn.ViewTensor(s.File, name) }
func (s stFile) String() string                           { return s.Path }

func (s stFile) keep() bool {
	if s.Mapped() {
		s.DropPages()
		return true
	}
	return false
}

// ggufFile is a GGUF file. Shapes are the logical ones
// (gguf.File.LogicalShape).
type ggufFile struct{ f *gguf.File }

func (g ggufFile) Names() []string { return g.f.Names() }

func (g ggufFile) Info(name string) (safetensors.TensorInfo, bool) {
	if !g.f.Has(name) {
		return safetensors.TensorInfo{}, false
	}
	shape, err := g.f.LogicalShape(name)
	if err != nil {
		return safetensors.TensorInfo{}, false
	}
	return safetensors.TensorInfo{Name: name, Shape: shape}, true
}

func (g ggufFile) view(name string) (*tensor.Tensor, error) { return nn.GGUFTensor(g.f, name) }

// keep keeps the file open (quantised weights are decoded from its
// mapping on every product) and lets the pages loading touched go: the
// fused tensors cut into copies and the vectors widened are not read
// again, and the weights used in place come back on the first step.
func (g ggufFile) keep() bool {
	for _, n := range g.f.Names() {
		g.f.DropPages(n)
	}
	return true
}

func (g ggufFile) Close() error   { return g.f.Close() }
func (g ggufFile) String() string { return g.f.Path }

// architecture is a GGUF file's general.architecture ("flux", "sd3"), or
// "" for other files.
func architecture(f weightsFile) string {
	if g, ok := f.(ggufFile); ok {
		return g.f.Architecture()
	}
	return ""
}

// keepOpen keeps the files the loaded tensors use and closes the others.
func keepOpen(fs openFiles) openFiles {
	var kept openFiles
	for _, f := range fs {
		if f.keep() {
			kept = append(kept, f)
		} else {
			f.Close()
		}
	}
	return kept
}

// errGGUFFamily refuses a GGUF file no family reads.
func errGGUFFamily(path string) error {
	return fmt.Errorf("pipeline: %s: GGUF files open as SD3 or FLUX transformers (ComfyUI-GGUF or stable-diffusion.cpp names); this one's tensors are neither: %w", path, ErrUnsupported)
}
