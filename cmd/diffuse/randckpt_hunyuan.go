package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/tensor"
)

// hunyuanConfigs are the component configs of a random Hunyuan-DiT folder.
type hunyuanConfigs struct {
	TextEncoder, TextEncoder2, Transformer, VAE map[string]any
}

// hunyuanV12 is Tencent-Hunyuan/HunyuanDiT-v1.2-Diffusers at its real
// sizes: the multilingual CLIP-BERT (chinese-roberta-wwm-ext-large
// shapes), the mT5-XL encoder, the 40-layer DiT-g/2 transformer without
// style and size conditioning (v1.2), and the SDXL VAE.
func hunyuanV12() hunyuanConfigs {
	return hunyuanConfigs{
		TextEncoder: map[string]any{"model_type": "bert", "vocab_size": 47020, "hidden_size": 1024, "num_hidden_layers": 24,
			"num_attention_heads": 16, "intermediate_size": 4096, "hidden_act": "gelu", "max_position_embeddings": 512,
			"type_vocab_size": 2, "layer_norm_eps": 1e-12, "position_embedding_type": "absolute", "pad_token_id": 0,
			"pooler_type": "first_token_transform"},
		TextEncoder2: map[string]any{"model_type": "mt5", "vocab_size": 250112, "d_model": 2048, "d_kv": 64, "d_ff": 5120,
			"num_layers": 24, "num_heads": 32, "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32,
			"relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6, "tie_word_embeddings": false,
			"is_encoder_decoder": true, "pad_token_id": 0, "eos_token_id": 1},
		Transformer: map[string]any{"activation_fn": "gelu-approximate", "attention_head_dim": 88, "cross_attention_dim": 1024,
			"cross_attention_dim_t5": 2048, "hidden_size": 1408, "in_channels": 4, "learn_sigma": true, "mlp_ratio": 4.3637,
			"norm_type": "layer_norm", "num_attention_heads": 16, "num_layers": 40, "patch_size": 2, "pooled_projection_dim": 1024,
			"sample_size": 128, "text_len": 77, "text_len_t5": 256, "use_style_cond_and_image_meta_size": false},
		VAE: map[string]any{"act_fn": "silu", "block_out_channels": []int{128, 256, 512, 512},
			"down_block_types": []string{"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"},
			"up_block_types":   []string{"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"},
			"in_channels":      3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
			"sample_size": 512, "scaling_factor": 0.13025, "force_upcast": false},
	}
}

// hunyuanTokenizerNote says what the folder's tokenizers are.
const hunyuanTokenizerNote = "tokenizers are stand-ins (a small WordPiece vocab.txt and a small SentencePiece model written here), " +
	"not the real 47k/250k vocabularies: prompts tokenize, but not as the real model's do"

// writeRandomHunyuan writes a HunyuanDiTPipeline folder with configs c and
// random weights (matrices as dt), tensor by tensor.
func writeRandomHunyuan(dir string, c hunyuanConfigs, seed uint64, dt tensor.DType) error {
	var sched map[string]any
	if err := json.Unmarshal([]byte(pipeline.HunyuanSchedulerConfig), &sched); err != nil {
		return fmt.Errorf("random Hunyuan-DiT: scheduler config: %w", err)
	}
	delete(sched, "_class_name") // the folder writer names the class
	f := pipeline.HunyuanFolder(c.TextEncoder, c.TextEncoder2, c.Transformer, c.VAE, sched, standInVocab(), standInSentencePiece())
	return pipeline.WriteRandomFolder(dir, f, seed, dt)
}

// standInWords are whole words of the stand-in vocabularies, so that
// common prompts do not fall apart into letters.
var standInWords = strings.Fields(`an the of in on at with and cat dog photo portrait painting of city night sky
	sea mountain tree flower house car street light dark red green blue white black`)

// standInVocab is a small uncased WordPiece vocabulary in vocab.txt form:
// BERT's special tokens, the printable ASCII characters, their "##"
// continuations and a few words.
func standInVocab() []byte {
	lines := []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
	var cont []string
	for c := byte('!'); c <= '~'; c++ {
		if c >= 'A' && c <= 'Z' {
			continue // uncased
		}
		lines = append(lines, string(c))
		cont = append(cont, "##"+string(c))
	}
	lines = append(append(lines, cont...), standInWords...)
	return []byte(strings.Join(lines, "\n") + "\n")
}

// SentencePiece piece types (sentencepiece_model.proto).
const (
	spNormal  = 1
	spUnknown = 2
	spControl = 3
)

// standInSentencePiece is a small unigram SentencePiece model, encoded
// as the ModelProto of an spiece.model file: mT5's <pad>, </s> and <unk>
// at ids 0, 1 and 2, the printable ASCII characters with and without the
// word-start marker "▁", and a few words scored above their letters.
func standInSentencePiece() []byte {
	var b []byte
	add := func(text string, score float32, typ int) {
		var p []byte
		p = binary.AppendUvarint(append(p, 1<<3|2), uint64(len(text))) // field 1: piece
		p = append(p, text...)
		p = binary.LittleEndian.AppendUint32(append(p, 2<<3|5), math.Float32bits(score)) // field 2: score
		p = binary.AppendUvarint(append(p, 3<<3|0), uint64(typ))                         // field 3: type
		b = binary.AppendUvarint(append(b, 1<<3|2), uint64(len(p)))                      // ModelProto field 1: pieces
		b = append(b, p...)
	}
	add("<pad>", 0, spControl)
	add("</s>", 0, spControl)
	add("<unk>", 0, spUnknown)
	add("▁", -2, spNormal)
	for c := byte('!'); c <= '~'; c++ {
		add("▁"+string(c), -6, spNormal)
		add(string(c), -5, spNormal)
	}
	for _, w := range standInWords {
		add("▁"+w, -3, spNormal)
	}
	return b
}

// runRandomHunyuan is random-checkpoint --kind hunyuan: a
// HunyuanDiT-v1.2-Diffusers-like folder at *out ("hunyuan-random" when
// the flag was left at its file default).
func runRandomHunyuan(out *string, seed uint64, dt tensor.DType) error {
	if *out == "hunyuan-random.safetensors" {
		*out = "hunyuan-random"
	}
	fmt.Println("random-checkpoint: " + hunyuanTokenizerNote)
	return writeRandomHunyuan(*out, hunyuanV12(), seed, dt)
}
