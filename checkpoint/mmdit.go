package checkpoint

import (
	"slices"
	"strconv"
	"strings"

	"github.com/diffuse-go/diffuse/nn"
)

// A pattern says where an original (reference-code) checkpoint keeps a
// diffusers module or parameter of a transformer: diffusers' convert
// scripts for SD3 and FLUX written as renaming rules. Patterns are dotted
// paths where "#" stands for a block index, filled into src in order. A
// module pattern ("transformer_blocks.#.attn.to_out.0") keeps the
// parameter's leaf name (weight, bias); a parameter pattern (full) names
// the source tensor itself ("…query_norm.scale" for "…norm_q.weight").
type pattern struct {
	dst, src string
	full     bool
	// group lists the diffusers patterns fused into src, in their order
	// along its first dimension (q, k, v of a qkv projection; FLUX's single
	// blocks also fuse the MLP input); dst is one of them. The row offsets
	// come from the model's own shapes.
	group []string
	// swap marks a source storing the two halves of the parameter's first
	// dimension in the other order: the reference AdaLayerNormContinuous
	// (adaLN_modulation) yields shift, scale; diffusers' scale, shift.
	swap bool
	// last restricts the pattern to the last block of its kind (the first
	// "#"), counted from the model's parameters.
	last bool
}

// moved is a module renamed as a whole.
func moved(dst, src string) pattern { return pattern{dst: dst, src: src} }

// movedParam is one parameter renamed, leaf included.
func movedParam(dst, src string) pattern { return pattern{dst: dst, src: src, full: true} }

// swapped is a module whose source stores its output rows' halves in the
// other order.
func swapped(dst, src string) pattern { return pattern{dst: dst, src: src, swap: true} }

// fused are modules stored stacked in one source tensor, in order.
func fused(src string, dsts ...string) []pattern {
	out := make([]pattern, len(dsts))
	for i, d := range dsts {
		out[i] = pattern{dst: d, src: src, group: dsts}
	}
	return out
}

// sd3Patterns is diffusers' convert_sd3_transformer_checkpoint_to_diffusers
// (v0.31) backwards: Stability AI's MMDiT (joint_blocks.N.x_block and
// .context_block) keeps q, k, v fused, and stores the last block's context
// norm (pre-only, an AdaLayerNormContinuous like norm_out) as shift, scale.
// SD3.5 adds the qk norms (attn.ln_q, attn.ln_k of either stream) and, in
// MMDiT-X blocks, x_block.attn2 (fused qkv, proj, ln_q, ln_k); a dual
// block's x_block.adaLN_modulation.1 holds its nine chunks in diffusers'
// order, so it is renamed like the six of the other blocks.
var sd3Patterns = func() []pattern {
	const tb, jb = "transformer_blocks.#.", "joint_blocks.#."
	ps := []pattern{
		movedParam("pos_embed.pos_embed", "pos_embed"),
		moved("pos_embed.proj", "x_embedder.proj"),
		moved("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0"),
		moved("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2"),
		moved("time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0"),
		moved("time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2"),
		moved("context_embedder", "context_embedder"),
		moved(tb+"norm1.linear", jb+"x_block.adaLN_modulation.1"),
		{dst: tb + "norm1_context.linear", src: jb + "context_block.adaLN_modulation.1", swap: true, last: true},
		moved(tb+"norm1_context.linear", jb+"context_block.adaLN_modulation.1"),
		moved(tb+"attn.to_out.0", jb+"x_block.attn.proj"),
		moved(tb+"attn.to_add_out", jb+"context_block.attn.proj"),
		moved(tb+"ff.net.0.proj", jb+"x_block.mlp.fc1"),
		moved(tb+"ff.net.2", jb+"x_block.mlp.fc2"),
		moved(tb+"ff_context.net.0.proj", jb+"context_block.mlp.fc1"),
		moved(tb+"ff_context.net.2", jb+"context_block.mlp.fc2"),
		moved("proj_out", "final_layer.linear"),
		swapped("norm_out.linear", "final_layer.adaLN_modulation.1"),
	}
	ps = append(ps, fused(jb+"x_block.attn.qkv", tb+"attn.to_q", tb+"attn.to_k", tb+"attn.to_v")...)
	ps = append(ps, fused(jb+"context_block.attn.qkv", tb+"attn.add_q_proj", tb+"attn.add_k_proj", tb+"attn.add_v_proj")...)
	return append(ps, sd35Patterns(tb, jb)...)
}()

// sd35Patterns are the SD3.5 modules of sd3Patterns (block paths tb in
// diffusers, jb in the original).
func sd35Patterns(tb, jb string) []pattern {
	ps := []pattern{
		moved(tb+"attn.norm_q", jb+"x_block.attn.ln_q"),
		moved(tb+"attn.norm_k", jb+"x_block.attn.ln_k"),
		moved(tb+"attn.norm_added_q", jb+"context_block.attn.ln_q"),
		moved(tb+"attn.norm_added_k", jb+"context_block.attn.ln_k"),
		moved(tb+"attn2.to_out.0", jb+"x_block.attn2.proj"),
		moved(tb+"attn2.norm_q", jb+"x_block.attn2.ln_q"),
		moved(tb+"attn2.norm_k", jb+"x_block.attn2.ln_k"),
	}
	return append(ps, fused(jb+"x_block.attn2.qkv", tb+"attn2.to_q", tb+"attn2.to_k", tb+"attn2.to_v")...)
}

// fluxPatterns is diffusers' convert_flux_transformer_checkpoint_to_diffusers
// backwards: Black Forest Labs' FLUX (double_blocks, single_blocks) keeps
// q, k, v fused (the single blocks' linear1 also holds the MLP input after
// them), names the qk norms' weights scale and stores the output norm as
// shift, scale.
var fluxPatterns = func() []pattern {
	const db, sb, tb, stb = "double_blocks.#.", "single_blocks.#.", "transformer_blocks.#.", "single_transformer_blocks.#."
	ps := []pattern{
		moved("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
		moved("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
		moved("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
		moved("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
		moved("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
		moved("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
		moved("context_embedder", "txt_in"),
		moved("x_embedder", "img_in"),
		moved(tb+"norm1.linear", db+"img_mod.lin"),
		moved(tb+"norm1_context.linear", db+"txt_mod.lin"),
		movedParam(tb+"attn.norm_q.weight", db+"img_attn.norm.query_norm.scale"),
		movedParam(tb+"attn.norm_k.weight", db+"img_attn.norm.key_norm.scale"),
		movedParam(tb+"attn.norm_added_q.weight", db+"txt_attn.norm.query_norm.scale"),
		movedParam(tb+"attn.norm_added_k.weight", db+"txt_attn.norm.key_norm.scale"),
		moved(tb+"ff.net.0.proj", db+"img_mlp.0"),
		moved(tb+"ff.net.2", db+"img_mlp.2"),
		moved(tb+"ff_context.net.0.proj", db+"txt_mlp.0"),
		moved(tb+"ff_context.net.2", db+"txt_mlp.2"),
		moved(tb+"attn.to_out.0", db+"img_attn.proj"),
		moved(tb+"attn.to_add_out", db+"txt_attn.proj"),
		moved(stb+"norm.linear", sb+"modulation.lin"),
		movedParam(stb+"attn.norm_q.weight", sb+"norm.query_norm.scale"),
		movedParam(stb+"attn.norm_k.weight", sb+"norm.key_norm.scale"),
		moved(stb+"proj_out", sb+"linear2"),
		moved("proj_out", "final_layer.linear"),
		swapped("norm_out.linear", "final_layer.adaLN_modulation.1"),
	}
	ps = append(ps, fused(db+"img_attn.qkv", tb+"attn.to_q", tb+"attn.to_k", tb+"attn.to_v")...)
	ps = append(ps, fused(db+"txt_attn.qkv", tb+"attn.add_q_proj", tb+"attn.add_k_proj", tb+"attn.add_v_proj")...)
	return append(ps, fused(sb+"linear1", stb+"attn.to_q", stb+"attn.to_k", stb+"attn.to_v", stb+"proj_mlp")...)
}()

// patternNamer renames a model's parameters by a pattern table; fused
// row offsets and the last block come from the parameter list.
type patternNamer struct {
	patterns []pattern
	shapes   map[string][]int
	blocks   map[string]int // blocks per path before a "#" ("transformer_blocks.")
}

func newPatternNamer(patterns []pattern, list []nn.Param) *patternNamer {
	n := &patternNamer{patterns: patterns, shapes: make(map[string][]int, len(list)), blocks: map[string]int{}}
	for _, p := range list {
		n.shapes[p.Name] = p.Shape
		f := strings.Split(p.Name, ".")
		for k := 1; k < len(f); k++ {
			if i, ok := index(f, k); ok {
				path := strings.Join(f[:k], ".") + "."
				n.blocks[path] = max(n.blocks[path], i+1)
				break
			}
		}
	}
	return n
}

// match matches name against pat: the block indices, and the leaf for a
// module pattern.
func match(pat, name string, full bool) (idx []int, leaf string, ok bool) {
	ps, ns := strings.Split(pat, "."), strings.Split(name, ".")
	if !full {
		if len(ns) == 0 {
			return nil, "", false
		}
		leaf, ns = "."+ns[len(ns)-1], ns[:len(ns)-1]
	}
	if len(ps) != len(ns) {
		return nil, "", false
	}
	for i, s := range ps {
		if s != "#" {
			if s != ns[i] {
				return nil, "", false
			}
			continue
		}
		k, ok := index(ns, i)
		if !ok {
			return nil, "", false
		}
		idx = append(idx, k)
	}
	return idx, leaf, true
}

// fill replaces the "#"s of pat with idx, in order.
func fill(pat string, idx []int) string {
	var b strings.Builder
	k := 0
	for _, r := range pat {
		if r == '#' && k < len(idx) {
			b.WriteString(strconv.Itoa(idx[k]))
			k++
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (n *patternNamer) param(p nn.Param) (Param, bool) {
	for _, pat := range n.patterns {
		idx, leaf, ok := match(pat.dst, p.Name, pat.full)
		if !ok || pat.last && !n.lastBlock(pat.dst, idx) {
			continue
		}
		q := same(p, fill(pat.src, idx)+leaf)
		switch {
		case pat.swap:
			q.Swap = len(p.Shape) > 0 && p.Shape[0]%2 == 0
			return q, q.Swap
		case pat.group != nil:
			return n.fusedRows(q, pat, idx, leaf)
		}
		return q, true
	}
	return Param{}, false
}

// lastBlock reports whether idx[0] is the last block of the path before
// the first "#" of pat.
func (n *patternNamer) lastBlock(pat string, idx []int) bool {
	path, _, ok := strings.Cut(pat, "#")
	return ok && len(idx) > 0 && idx[0] == n.blocks[path]-1
}

// fusedRows places q within its fused source: after the rows of the
// group's members before it.
func (n *patternNamer) fusedRows(q Param, pat pattern, idx []int, leaf string) (Param, bool) {
	if len(q.Shape) == 0 {
		return Param{}, false
	}
	off, total := -1, 0
	for _, g := range pat.group {
		s, ok := n.shapes[fill(g, idx)+leaf]
		if !ok || len(s) != len(q.Shape) || !slices.Equal(s[1:], q.Shape[1:]) {
			return Param{}, false
		}
		if g == pat.dst {
			off = total
		}
		total += s[0]
	}
	q.SourceShape = slices.Clone(q.Shape)
	q.SourceShape[0] = total
	q.Rows = [2]int{off, off + q.Shape[0]}
	return q, off >= 0
}
