package lora

import (
	"fmt"
	"strconv"
	"strings"
)

// resnetSGM maps a diffusers ResnetBlock2D layer to its SGM/LDM ResBlock name.
var resnetSGM = map[string]string{
	"conv1":         "in_layers.2",
	"conv2":         "out_layers.3",
	"time_emb_proj": "emb_layers.1",
	"conv_shortcut": "skip_connection",
}

// fixedSGM are the SGM/LDM names of the UNet's stem and head layers.
var fixedSGM = map[string]string{
	"conv_in":                 "input_blocks.0.0",
	"time_embedding.linear_1": "time_embed.0",
	"time_embedding.linear_2": "time_embed.2",
	"add_embedding.linear_1":  "label_emb.0.0",
	"add_embedding.linear_2":  "label_emb.0.2",
	"conv_out":                "out.2",
}

// sgmBlock is what the SGM numbering needs to know of one down or up block.
type sgmBlock struct {
	resnets        int
	attn, resample bool
}

// sgmLayout holds a UNet's block structure and where each block starts in
// the input_blocks / output_blocks numbering.
type sgmLayout struct {
	down, up          []sgmBlock
	inStart, outStart []int
}

// newSGMLayout reads the block structure from the module paths.
func newSGMLayout(paths []string) *sgmLayout {
	l := &sgmLayout{}
	for _, p := range paths {
		s := strings.Split(p, ".")
		if len(s) < 4 || (s[0] != "down_blocks" && s[0] != "up_blocks") {
			continue
		}
		b, err1 := strconv.Atoi(s[1])
		j, err2 := strconv.Atoi(s[3])
		if err1 != nil || err2 != nil || b < 0 || j < 0 || b > 1000 {
			continue
		}
		blocks := &l.down
		if s[0] == "up_blocks" {
			blocks = &l.up
		}
		for len(*blocks) <= b {
			*blocks = append(*blocks, sgmBlock{})
		}
		blk := &(*blocks)[b]
		switch s[2] {
		case "resnets":
			blk.resnets = max(blk.resnets, j+1)
		case "attentions":
			blk.attn = true
		case "downsamplers", "upsamplers":
			blk.resample = true
		}
	}
	l.inStart = []int{1} // input_blocks.0 is conv_in
	for _, d := range l.down {
		next := l.inStart[len(l.inStart)-1] + d.resnets
		if d.resample {
			next++
		}
		l.inStart = append(l.inStart, next)
	}
	l.outStart = []int{0}
	for _, u := range l.up {
		l.outStart = append(l.outStart, l.outStart[len(l.outStart)-1]+u.resnets)
	}
	return l
}

// sgmNames gives the SGM/LDM (Stability's generative-models and original
// LDM) name of every UNet module path that has one, mapped to the path:
// input_blocks.i.j, middle_block.j, output_blocks.i.j, time_embed,
// label_emb, out. Block indices are counted from the model's own layout
// (resnets per block, which blocks resample), so SD 1.x, SD 2.x and SDXL
// layouts come out right. Transformer internals keep their names.
func sgmNames(paths []string) map[string]string {
	l := newSGMLayout(paths)
	out := map[string]string{}
	for _, p := range paths {
		if name, ok := l.name(p); ok {
			out[name] = p
		}
	}
	return out
}

// name converts one diffusers UNet module path to its SGM name.
func (l *sgmLayout) name(p string) (string, bool) {
	if n, ok := fixedSGM[p]; ok {
		return n, true
	}
	s := strings.Split(p, ".")
	// inner names the layer inside a resnet or attention block.
	inner := func(kind string, rest []string) (string, bool) {
		if kind == "resnets" {
			if len(rest) != 1 || resnetSGM[rest[0]] == "" {
				return "", false
			}
			return resnetSGM[rest[0]], true
		}
		return strings.Join(rest, "."), len(rest) > 0
	}
	sub := map[string]int{"resnets": 0, "attentions": 1}
	switch {
	case len(s) >= 4 && s[0] == "mid_block":
		j, err := strconv.Atoi(s[2])
		k, ok := sub[s[1]]
		if err != nil || !ok {
			return "", false
		}
		in, ok := inner(s[1], s[3:])
		return fmt.Sprintf("middle_block.%d.%s", 2*j+k, in), ok
	case len(s) >= 5 && s[0] == "down_blocks":
		b, err1 := strconv.Atoi(s[1])
		j, err2 := strconv.Atoi(s[3])
		if err1 != nil || err2 != nil || b < 0 || b >= len(l.down) {
			return "", false
		}
		if k, ok := sub[s[2]]; ok {
			in, ok := inner(s[2], s[4:])
			return fmt.Sprintf("input_blocks.%d.%d.%s", l.inStart[b]+j, k, in), ok
		}
		if s[2] == "downsamplers" && len(s) == 5 && s[4] == "conv" {
			return fmt.Sprintf("input_blocks.%d.0.op", l.inStart[b]+l.down[b].resnets), true
		}
	case len(s) >= 5 && s[0] == "up_blocks":
		b, err1 := strconv.Atoi(s[1])
		j, err2 := strconv.Atoi(s[3])
		if err1 != nil || err2 != nil || b < 0 || b >= len(l.up) {
			return "", false
		}
		if k, ok := sub[s[2]]; ok {
			in, ok := inner(s[2], s[4:])
			return fmt.Sprintf("output_blocks.%d.%d.%s", l.outStart[b]+j, k, in), ok
		}
		if s[2] == "upsamplers" && len(s) == 5 && s[4] == "conv" {
			k := 1
			if l.up[b].attn {
				k = 2
			}
			return fmt.Sprintf("output_blocks.%d.%d.conv", l.outStart[b]+l.up[b].resnets-1, k), true
		}
	}
	return "", false
}
