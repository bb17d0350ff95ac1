package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/tensor"
)

// fromUNetPrefixes are the parts ControlNetModel.from_unet copies from the
// UNet (load_weights_from_unet=True).
var fromUNetPrefixes = []string{"conv_in.", "time_embedding.", "class_embedding.", "add_embedding.", "down_blocks.", "mid_block."}

// zeroPrefixes are the zero-initialised convolutions (zero_module).
var zeroPrefixes = []string{"controlnet_down_blocks.", "controlnet_mid_block.", "controlnet_cond_embedding.conv_out."}

// ControlNetFromUNet is ControlNetModel.from_unet: a ControlNet of config
// cfg (controlnet.FromUNet(u.Cfg) gives diffusers' defaults) whose encoder
// weights are float32 copies of the UNet's, whose zero convolutions are
// zero, and whose condition embedding (conv_in and blocks) gets torch's
// default Conv2d init drawn from g (kaiming-uniform weights with a = √5,
// uniform biases of bound 1/√fan_in). torch draws these while constructing
// the whole model, so the values match torch only in distribution.
func ControlNetFromUNet(u *unet.Model, cfg controlnet.Config, g *rng.Generator) (*controlnet.Model, error) {
	cn, err := controlnet.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	src := paramMap(u)
	var ps nn.Params
	cn.Params("", &ps)
	for _, p := range ps.List() {
		switch {
		case hasPrefix(p.Name, fromUNetPrefixes):
			t, ok := src[p.Name]
			if !ok || !tensor.SameShape(t.Shape(), p.Shape) {
				return nil, fmt.Errorf("train: ControlNet parameter %s %v has no counterpart of that shape in the UNet", p.Name, p.Shape)
			}
			*p.Ptr = t.Float32().Clone()
		case hasPrefix(p.Name, zeroPrefixes):
			*p.Ptr = tensor.Zeros(p.Shape...)
		default:
			t := tensor.Zeros(p.Shape...)
			if strings.HasSuffix(p.Name, ".bias") {
				w, ok := shapeOf(ps, strings.TrimSuffix(p.Name, "bias")+"weight")
				if !ok {
					return nil, fmt.Errorf("train: ControlNet bias %s has no weight", p.Name)
				}
				bound := 1 / math.Sqrt(float64(fanIn(w)))
				g.Uniform(t.Data(), float32(-bound), float32(bound))
			} else {
				kaimingUniform(g, t.Data(), fanIn(p.Shape))
			}
			*p.Ptr = t
		}
	}
	return cn, nil
}

func hasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// fanIn is torch's fan-in of a weight shape: in · receptive field.
func fanIn(shape []int) int {
	f := 1
	for _, d := range shape[1:] {
		f *= d
	}
	return f
}

func shapeOf(ps nn.Params, name string) ([]int, bool) {
	for _, p := range ps.List() {
		if p.Name == name {
			return p.Shape, true
		}
	}
	return nil, false
}

// paramMap maps a module's parameter names to their loaded tensors.
func paramMap(m nn.Module) map[string]*tensor.Tensor {
	var ps nn.Params
	m.Params("", &ps)
	out := map[string]*tensor.Tensor{}
	for _, p := range ps.List() {
		if *p.Ptr != nil {
			out[p.Name] = *p.Ptr
		}
	}
	return out
}

// ModuleParams returns every loaded parameter of m under its name, in
// m's parameter order, marked as requiring gradients.
func ModuleParams(m nn.Module) []Param {
	var ps nn.Params
	m.Params("", &ps)
	var out []Param
	for _, p := range ps.List() {
		if *p.Ptr == nil {
			continue
		}
		if (*p.Ptr).DType() != tensor.F32 || !(*p.Ptr).IsContiguous() {
			*p.Ptr = (*p.Ptr).Float32().Clone()
		}
		out = append(out, Param{p.Name, (*p.Ptr).SetRequiresGrad(true)})
	}
	return out
}
