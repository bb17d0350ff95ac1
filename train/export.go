package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
)

// controlNetConfigKeys are ControlNetModel.__init__'s arguments (diffusers
// v0.30), the keys of a ControlNet config.json.
var controlNetConfigKeys = []string{"in_channels", "conditioning_channels", "flip_sin_to_cos", "freq_shift",
	"down_block_types", "mid_block_type", "only_cross_attention", "block_out_channels", "layers_per_block",
	"downsample_padding", "mid_block_scale_factor", "act_fn", "norm_num_groups", "norm_eps", "cross_attention_dim",
	"transformer_layers_per_block", "encoder_hid_dim", "encoder_hid_dim_type", "attention_head_dim",
	"num_attention_heads", "use_linear_projection", "class_embed_type", "addition_embed_type",
	"addition_time_embed_dim", "num_class_embeds", "upcast_attention", "resnet_time_scale_shift",
	"projection_class_embeddings_input_dim", "controlnet_conditioning_channel_order",
	"conditioning_embedding_out_channels", "global_pool_conditions", "addition_embed_type_num_heads"}

// noneIfZero are config keys whose unset value diffusers spells None (a 0
// or "" would switch features on there).
var noneIfZero = map[string]bool{"encoder_hid_dim": true, "encoder_hid_dim_type": true, "class_embed_type": true,
	"addition_embed_type": true, "addition_time_embed_dim": true, "num_class_embeds": true,
	"projection_class_embeddings_input_dim": true, "num_attention_heads": true, "mid_block_type": true}

// scalarIfSingle are config keys diffusers accepts as one value for every
// block, which this package's configs hold as one-element lists.
var scalarIfSingle = map[string]bool{"layers_per_block": true, "cross_attention_dim": true, "attention_head_dim": true,
	"num_attention_heads": true, "transformer_layers_per_block": true, "only_cross_attention": true}

// ControlNetConfigJSON renders cfg as a diffusers ControlNet config.json.
func ControlNetConfigJSON(cfg controlnet.Config) ([]byte, error) {
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var all map[string]any
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	out := map[string]any{"_class_name": "ControlNetModel", "_diffusers_version": "0.30.3"}
	for _, k := range controlNetConfigKeys {
		v := all[k]
		if l, ok := v.([]any); ok && scalarIfSingle[k] && len(l) == 1 {
			v = l[0]
		}
		if noneIfZero[k] && (v == "" || v == float64(0)) {
			v = nil
		}
		out[k] = v
	}
	return json.MarshalIndent(out, "", "  ")
}

// SaveControlNet writes m as a diffusers ControlNet folder: config.json and
// diffusion_pytorch_model.safetensors (float32), each written atomically.
func SaveControlNet(dir string, m *controlnet.Model) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	cfg, err := ControlNetConfigJSON(m.Cfg)
	if err != nil {
		return err
	}
	var ps nn.Params
	m.Params("", &ps)
	var ts []safetensors.Tensor
	for _, p := range ps.List() {
		if *p.Ptr == nil {
			return fmt.Errorf("train: ControlNet parameter %s is not loaded", p.Name)
		}
		ts = append(ts, f32(p.Name, (*p.Ptr).Float32()))
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "diffusion_pytorch_model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, "config.json"), append(cfg, '\n'))
}
