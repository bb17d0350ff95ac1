package pipeline

import (
	"github.com/diffuse-go/diffuse/model/bert"
	"github.com/diffuse-go/diffuse/model/hunyuan"
)

func init() {
	randomModels["HunyuanDiT2DModel"] = build(hunyuan.ParseConfig, hunyuan.New)
	randomModels["BertModel"] = build(bert.ParseConfig, bert.New)
}

// HunyuanFolder is a HunyuanDiTPipeline folder: the BERT text encoder
// with its WordPiece vocabulary (vocab.txt), the mT5 encoder with its
// SentencePiece model (spiece.model), the transformer, the VAE and the
// scheduler. The safety checker and feature extractor are left out, as
// Tencent's Diffusers folders ship them.
func HunyuanFolder(textEncoder, textEncoder2, transformer, vae, sched map[string]any, vocab, spiece []byte) RandomFolder {
	tok2 := t5TokenizerFiles(spiece)
	// MT5Tokenizer's spiece.model holds every id; it adds no sentinels.
	tok2["tokenizer_config.json"] = []byte(`{"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "legacy": true}` + "\n")
	return RandomFolder{Class: "HunyuanDiTPipeline", Index: map[string]any{"safety_checker": absent,
		"feature_extractor": absent, "requires_safety_checker": false}, Components: []RandomComponent{
		{Name: "tokenizer", Library: "transformers", Class: "BertTokenizer", Files: map[string][]byte{
			"vocab.txt":               vocab,
			"special_tokens_map.json": []byte(`{"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]"}` + "\n"),
			"tokenizer_config.json":   []byte(`{"tokenizer_class": "BertTokenizer", "do_lower_case": true, "tokenize_chinese_chars": true, "strip_accents": null, "model_max_length": 77}` + "\n"),
		}},
		{Name: "text_encoder", Library: "transformers", Class: "BertModel", Config: textEncoder},
		{Name: "tokenizer_2", Library: "transformers", Class: "MT5Tokenizer", Files: tok2},
		{Name: "text_encoder_2", Library: "transformers", Class: "T5EncoderModel", Config: textEncoder2, Skip: t5Tied},
		{Name: "transformer", Library: "diffusers", Class: "HunyuanDiT2DModel", Config: transformer},
		{Name: "vae", Library: "diffusers", Class: "AutoencoderKL", Config: vae},
		{Name: "scheduler", Library: "diffusers", Class: "DDPMScheduler", Config: sched},
	}}
}
