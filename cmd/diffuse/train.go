package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"image"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/train"
)

// trainFlags are the train options under the flag names of diffusers'
// train_dreambooth_lora.py (train_dreambooth_lora_sdxl.py for SDXL) and
// train_controlnet.py (kebab-case spellings
// are accepted too). Most land directly in cfg; the rest are the data,
// the model and presentation.
type trainFlags struct {
	cfg    train.Config
	method string
	model  string

	instanceDir, classDir, trainDataDir, dataset string
	imageCol, condCol, captionCol                string
	numClassImages                               int

	validationPrompt                  string
	validationImages                  multiFlag
	validationSteps, validationEpochs int
	numValidationImages               int

	controlNetModel string
	loraLayers      string
	teWeightDecay   float64
	plot            string
	threads         int
	quiet           bool

	set map[string]bool
}

// flagNames registers every flag under its diffusers name and, when that
// has underscores, under the kebab-case spelling too.
type flagNames struct{ fs *flag.FlagSet }

func kebab(name string) string { return strings.ReplaceAll(name, "_", "-") }

func (r flagNames) both(name string, reg func(name, usage string), usage string) {
	reg(name, usage)
	if k := kebab(name); k != name {
		reg(k, "same as --"+name)
	}
}

func (r flagNames) str(p *string, name, usage string) {
	r.both(name, func(n, u string) { r.fs.StringVar(p, n, *p, u) }, usage)
}
func (r flagNames) int(p *int, name, usage string) {
	r.both(name, func(n, u string) { r.fs.IntVar(p, n, *p, u) }, usage)
}
func (r flagNames) int64(p *int64, name, usage string) {
	r.both(name, func(n, u string) { r.fs.Int64Var(p, n, *p, u) }, usage)
}
func (r flagNames) float(p *float64, name, usage string) {
	r.both(name, func(n, u string) { r.fs.Float64Var(p, n, *p, u) }, usage)
}
func (r flagNames) bool(p *bool, name, usage string) {
	r.both(name, func(n, u string) { r.fs.BoolVar(p, n, *p, u) }, usage)
}

// newTrainFlagSet registers the train flags, with the scripts' defaults.
func newTrainFlagSet(f *trainFlags, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.SetOutput(out)
	f.cfg = train.Defaults("dreambooth_lora")
	f.method, f.numClassImages, f.numValidationImages = "dreambooth-lora", 100, 4
	f.imageCol, f.condCol, f.captionCol = "image", "conditioning_image", "text"
	c, r := &f.cfg, flagNames{fs}
	r.str(&f.method, "method", "what to train: dreambooth-lora, lora (captioned images) or controlnet (SD 1.x/2.x)")
	r.str(&f.model, "pretrained_model_name_or_path", "base model: SD 1.x/2.x or SDXL diffusers folder or .safetensors checkpoint, or \"builtin\" for the built-in toy model")
	r.str(&f.instanceDir, "instance_data_dir", "DreamBooth instance images (a .txt beside an image is its caption)")
	r.str(&c.InstancePrompt, "instance_prompt", "caption of the instance images, e.g. \"a photo of sks dog\"")
	r.str(&f.classDir, "class_data_dir", "prior-preservation class images (missing ones are generated)")
	r.str(&c.ClassPrompt, "class_prompt", "caption of the class images, e.g. \"a photo of dog\"")
	r.bool(&c.WithPriorPreservation, "with_prior_preservation", "add the class images' loss (DreamBooth prior preservation)")
	r.float(&c.PriorLossWeight, "prior_loss_weight", "weight of the prior-preservation loss")
	r.int(&f.numClassImages, "num_class_images", "class images wanted; fewer in --class_data_dir are topped up by generation")
	r.str(&f.trainDataDir, "train_data_dir", "training folder: metadata.jsonl/.csv manifest inside, or captioned images (--method lora)")
	r.str(&f.dataset, "dataset", "training manifest file (JSONL or CSV) with image, conditioning_image and text columns")
	r.str(&f.imageCol, "image_column", "manifest column of the target image")
	r.str(&f.condCol, "conditioning_image_column", "manifest column of the ControlNet condition image")
	r.str(&f.captionCol, "caption_column", "manifest column of the caption")
	r.float(&c.ProportionEmptyPrompts, "proportion_empty_prompts", "share of captions replaced by \"\" (ControlNet)")
	r.str(&c.OutputDir, "output_dir", "where checkpoints, logs, validation images and the trained weights go")
	r.int(&c.Resolution, "resolution", "training size in pixels (multiple of 8; SDXL default 1024)")
	r.bool(&c.CenterCrop, "center_crop", "center-crop instead of random crops")
	r.bool(&c.RandomFlip, "random_flip", "flip images horizontally at random")
	r.int(&c.TrainBatchSize, "train_batch_size", "images per batch (per half with prior preservation)")
	r.int(&c.MaxTrainSteps, "max_train_steps", "optimizer steps (overrides --num_train_epochs)")
	r.int(&c.NumTrainEpochs, "num_train_epochs", "passes over the data when --max_train_steps is not set")
	r.int(&c.GradientAccumulationSteps, "gradient_accumulation_steps", "batches per optimizer step")
	r.bool(&c.GradientCheckpointing, "gradient_checkpointing", "recompute block activations in the backward pass (less memory)")
	r.float(&c.LearningRate, "learning_rate", "learning rate (default 5e-4; controlnet 5e-6)")
	r.bool(&c.ScaleLR, "scale_lr", "multiply the learning rate by batch size × accumulation")
	r.str(&c.LRScheduler, "lr_scheduler", "constant, constant_with_warmup, linear, cosine, cosine_with_restarts or polynomial")
	r.int(&c.LRWarmupSteps, "lr_warmup_steps", "warmup steps of the schedule")
	r.float(&c.LRNumCycles, "lr_num_cycles", "cosine_with_restarts cycles")
	r.float(&c.LRPower, "lr_power", "polynomial power")
	r.float(&c.AdamBeta1, "adam_beta1", "AdamW beta1")
	r.float(&c.AdamBeta2, "adam_beta2", "AdamW beta2")
	r.float(&c.AdamWeightDecay, "adam_weight_decay", "AdamW weight decay")
	r.float(&c.AdamEpsilon, "adam_epsilon", "AdamW epsilon")
	r.float(&c.MaxGradNorm, "max_grad_norm", "gradient clipping norm")
	r.float(&c.SNRGamma, "snr_gamma", "Min-SNR weighting gamma (0 = off; 5 is recommended)")
	r.float(&c.NoiseOffset, "noise_offset", "noise offset")
	r.str(&c.TimestepBiasStrategy, "timestep_bias_strategy", "draw timesteps with a bias: none, later (noisier), earlier or range")
	r.float(&c.TimestepBiasMultiplier, "timestep_bias_multiplier", "weight of the biased timesteps")
	r.float(&c.TimestepBiasPortion, "timestep_bias_portion", "share of the timesteps biased (later, earlier)")
	r.int(&c.TimestepBiasBegin, "timestep_bias_begin", "first biased timestep (range)")
	r.int(&c.TimestepBiasEnd, "timestep_bias_end", "end of the biased timesteps, exclusive (range)")
	r.str(&c.PredictionType, "prediction_type", "epsilon or v_prediction (default: the scheduler's)")
	r.int(&c.Rank, "rank", "LoRA rank (alpha = rank, as the script)")
	r.str(&f.loraLayers, "lora_layers", "UNet modules that get LoRAs, comma-separated (default to_k,to_q,to_v,to_out.0,add_k_proj,add_v_proj; e.g. add conv1,conv2 for the resnets)")
	r.int(&c.CheckpointingSteps, "checkpointing_steps", "save a resumable checkpoint every N steps (0 = never)")
	r.int(&c.CheckpointsTotalLimit, "checkpoints_total_limit", "keep at most N checkpoints (0 = all)")
	r.str(&c.ResumeFromCheckpoint, "resume_from_checkpoint", "checkpoint folder, or \"latest\"")
	r.int64(&c.Seed, "seed", "seed of the initialisation and the training draws")
	r.str(&f.validationPrompt, "validation_prompt", "prompt of the validation images")
	fs.Var(&f.validationImages, "validation_image", "ControlNet condition image of the validation (repeatable)")
	fs.Var(&f.validationImages, "validation-image", "same as --validation_image")
	r.int(&f.validationSteps, "validation_steps", "validate every N steps (0 = off; controlnet default 100)")
	r.int(&f.validationEpochs, "validation_epochs", "validate every N epochs (0 = off; dreambooth default 50)")
	r.int(&f.numValidationImages, "num_validation_images", "images per validation")
	r.bool(&c.TrainTextEncoder, "train_text_encoder", "also train LoRAs on the text encoder(s)' attention projections")
	r.float(&c.TextEncoderLR, "text_encoder_lr", "text encoders' learning rate (default: --learning_rate; SDXL 5e-6)")
	r.float(&f.teWeightDecay, "adam_weight_decay_text_encoder", "text encoders' AdamW weight decay (default: --adam_weight_decay; SDXL 1e-3)")
	r.str(&f.controlNetModel, "controlnet_model_name_or_path", "ControlNet to continue training (default: one made from the UNet)")
	r.bool(&c.KohyaOutput, "kohya", "also write the LoRA in the kohya/A1111 layout")
	r.str(&f.plot, "plot", "draw the loss curve into this PNG at the end")
	r.int(&f.threads, "threads", "threads (0 = all cores)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress output")
	fs.Usage = func() { trainUsage(fs) }
	return fs
}

// trainUsage prints the flags under their diffusers names only (the
// kebab-case aliases are listed once, in the header).
func trainUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, "usage: diffuse train --pretrained_model_name_or_path MODEL [flags]\n"+
		"Flags are those of diffusers' train_dreambooth_lora.py (train_dreambooth_lora_sdxl.py for SDXL models) and\n"+
		"train_controlnet.py; --flag-name works as well as --flag_name.\n\n")
	fs.VisitAll(func(fl *flag.Flag) {
		if strings.HasPrefix(fl.Usage, "same as --") {
			return
		}
		def := ""
		if fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "false" {
			def = fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		fmt.Fprintf(w, "  --%s\n    \t%s%s\n", fl.Name, fl.Usage, def)
	})
}

// parseTrainFlags parses and checks the train command line.
func parseTrainFlags(args []string, out io.Writer) (*trainFlags, error) {
	f := &trainFlags{}
	fs := newTrainFlagSet(f, out)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("train: unexpected arguments %q", fs.Args())
	}
	f.set = map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { f.set[strings.ReplaceAll(fl.Name, "-", "_")] = true })
	return f, f.validate()
}

// validate resolves the method and checks what the library cannot: which
// flags go together.
func (f *trainFlags) validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	switch f.method {
	case "dreambooth-lora", "dreambooth_lora", "lora":
		f.cfg.Method = "dreambooth_lora"
	case "controlnet":
		f.cfg.Method = "controlnet"
		if !f.set["learning_rate"] {
			f.cfg.LearningRate = train.Defaults("controlnet").LearningRate
		}
		if !f.set["validation_steps"] {
			f.validationSteps = 100
		}
	default:
		bad("--method %q: want dreambooth-lora, lora or controlnet", f.method)
	}
	if f.cfg.Method == "dreambooth_lora" && !f.set["validation_epochs"] {
		f.validationEpochs = 50
	}
	if f.model == "" {
		bad("--pretrained_model_name_or_path is required")
	}
	controlNet := f.cfg.Method == "controlnet"
	switch {
	case f.method == "dreambooth-lora" || f.method == "dreambooth_lora":
		if f.instanceDir == "" {
			bad("--instance_data_dir is required for --method %s", f.method)
		}
		if f.cfg.InstancePrompt == "" {
			bad("--instance_prompt is required for --method %s", f.method)
		}
	case f.method == "lora":
		if f.instanceDir == "" && f.trainDataDir == "" && f.dataset == "" {
			bad("--method lora needs --train_data_dir, --dataset or --instance_data_dir")
		}
	case controlNet:
		if f.trainDataDir == "" && f.dataset == "" {
			bad("--method controlnet needs --train_data_dir or --dataset")
		}
		if f.validationPrompt != "" && len(f.validationImages) == 0 {
			bad("--validation_prompt needs --validation_image for --method controlnet")
		}
	}
	if f.cfg.WithPriorPreservation {
		if controlNet {
			bad("--with_prior_preservation is for the LoRA methods")
		}
		if f.classDir == "" {
			bad("--with_prior_preservation needs --class_data_dir")
		}
		if f.cfg.ClassPrompt == "" {
			bad("--with_prior_preservation needs --class_prompt")
		}
		if f.numClassImages <= 0 {
			bad("--num_class_images must be positive, got %d", f.numClassImages)
		}
	}
	if f.controlNetModel != "" && !controlNet {
		bad("--controlnet_model_name_or_path needs --method controlnet")
	}
	if f.cfg.KohyaOutput && controlNet {
		bad("--kohya writes LoRA files; --method controlnet trains a ControlNet")
	}
	if f.cfg.TrainTextEncoder && controlNet {
		bad("--train_text_encoder is for the LoRA methods")
	}
	if f.set["adam_weight_decay_text_encoder"] {
		f.cfg.AdamWeightDecayTextEncoder = &f.teWeightDecay
	}
	if f.loraLayers != "" {
		if controlNet {
			bad("--lora_layers is for the LoRA methods")
		}
		for _, l := range strings.Split(f.loraLayers, ",") {
			if l = strings.TrimSpace(l); l == "" {
				bad("--lora_layers %q has an empty name", f.loraLayers)
			} else {
				f.cfg.LoRALayers = append(f.cfg.LoRALayers, l)
			}
		}
	}
	if f.validationSteps < 0 || f.validationEpochs < 0 || f.numValidationImages < 0 {
		bad("--validation_steps, --validation_epochs and --num_validation_images must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("train: %s", strings.Join(errs, "; "))
	}
	c := f.cfg
	if f.method == "lora" && c.InstancePrompt == "" {
		c.InstancePrompt = "-" // every image needs its own caption then; data checks
	}
	return c.Validate()
}

// runTrain is "diffuse train".
func runTrain(ctx context.Context, args []string) error {
	f, err := parseTrainFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if f.threads > 0 {
		runtime.GOMAXPROCS(f.threads)
	}
	if f.model == "builtin" {
		if f.model, err = defaultModelPath(); err != nil {
			return fmt.Errorf("train: %w", err)
		}
	}
	// The DIFFUSE_* settings, which Open applies (its zero Options would
	// reset them to the defaults).
	opt, err := trainOptions(os.Getenv, systemMemory())
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	if f.threads > 0 {
		opt.Threads = f.threads
	}
	m, err := pipeline.Open(ctx, f.model, opt)
	if err != nil {
		return fmt.Errorf("train: --pretrained_model_name_or_path: %w", err)
	}
	defer m.Close()
	s, err := newSession(f, m)
	if err != nil {
		return err
	}
	defer s.close()
	data, err := s.data(ctx)
	if err != nil {
		return err
	}
	res, err := s.run(ctx, data)
	if err != nil {
		return err
	}
	for _, o := range res.Outputs {
		logf(f.quiet, "wrote %s\n", o)
	}
	if f.plot != "" {
		if err := plotFile(s.log.path, f.plot); err != nil {
			return fmt.Errorf("train: --plot: %w", err)
		}
		logf(f.quiet, "wrote %s\n", f.plot)
	}
	return nil
}

// session is one training run: the opened model, its parts (SD's or
// SDXL's), the log.
type session struct {
	f     *trainFlags
	model pipeline.Model
	parts *pipeline.SDParts
	xl    *pipeline.SDXLParts
	cn    *controlnet.Model
	log   *lossLog
}

func newSession(f *trainFlags, m pipeline.Model) (*session, error) {
	s := &session{f: f, model: m}
	if xl, ok := pipeline.XLComponents(m); ok {
		if f.cfg.Method == "controlnet" {
			return nil, fmt.Errorf("train: --method controlnet takes SD 1.x/2.x models; %s is SDXL", m.Info().Name)
		}
		s.xl = xl
		f.sdxlDefaults()
		return s, nil
	}
	parts, ok := pipeline.UNetComponents(m)
	if !ok {
		in := m.Info()
		return nil, fmt.Errorf("train: --pretrained_model_name_or_path: %s is a %s model; training takes SD 1.x/2.x and SDXL base models", in.Name, in.Kind)
	}
	if m.Info().Kind == "SD 2.x" {
		f.cfg.BaseModelVersion = "sd_v2"
	}
	s.parts = parts
	if f.cfg.Method == "controlnet" {
		if err := s.controlNet(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// sdxlDefaults are train_dreambooth_lora_sdxl.py's defaults where they
// differ from the SD script's: resolution 1024, text_encoder_lr 5e-6 and
// adam_weight_decay_text_encoder 1e-3 (flags given keep their values).
func (f *trainFlags) sdxlDefaults() {
	c := &f.cfg
	c.BaseModelVersion = "sdxl_base_v1-0"
	if !f.set["resolution"] {
		c.Resolution = 1024
	}
	if !f.set["text_encoder_lr"] {
		c.TextEncoderLR = 5e-6
	}
	if !f.set["adam_weight_decay_text_encoder"] {
		f.teWeightDecay = 1e-3
		c.AdamWeightDecayTextEncoder = &f.teWeightDecay
	}
}

func (s *session) close() {
	if s.log != nil {
		s.log.close()
	}
}

// controlNet loads --controlnet_model_name_or_path into memory of its own
// (training updates it), or makes one from the UNet as
// ControlNetModel.from_unet does, its condition-embedding init drawn from
// a generator seeded with --seed.
func (s *session) controlNet() error {
	u := s.parts.UNet
	if s.f.controlNetModel == "" {
		cfg := controlnet.FromUNet(u.Cfg)
		// The condition image is embedded down to the latents' size: as
		// many stride-2 steps as the VAE has (three for SD's).
		ch, err := controlnet.EmbeddingChannels(s.parts.VAE.Factor())
		if err != nil {
			return fmt.Errorf("train: %w", err)
		}
		cfg.ConditioningEmbeddingOutChannels = ch
		cn, err := train.ControlNetFromUNet(u, cfg, rng.New(uint64(s.f.cfg.Seed)))
		s.cn = cn
		return err
	}
	cn, release, err := pipeline.LoadControlNet(s.f.controlNetModel, u.Cfg, pipeline.LoadOptions{})
	if err != nil {
		return fmt.Errorf("train: --controlnet_model_name_or_path: %w", err)
	}
	defer release()
	var ps nn.Params
	cn.Params("", &ps)
	for _, p := range ps.List() {
		if *p.Ptr != nil {
			// Copies: the loaded tensors may be views of the mapped file.
			*p.Ptr = (*p.Ptr).Float32().Clone()
		}
	}
	s.cn = cn
	return nil
}

// models are the trainer's components, shared with the opened model.
func (s *session) models() (train.Models, error) {
	var m train.Models
	var sched scheduler.Config
	if x := s.xl; x != nil {
		m = train.Models{UNet: x.UNet, VAE: x.VAE, TextEncoder: x.TextEncoder, TextEncoder2: x.TextEncoder2,
			Tokenizer: x.Tokenizer, Tokenizer2: x.Tokenizer2}
		sched = x.Scheduler
	} else {
		p := s.parts
		m = train.Models{UNet: p.UNet, VAE: p.VAE, TextEncoder: p.TextEncoder, ControlNet: s.cn, Tokenizer: p.Tokenizer}
		sched = p.Scheduler
	}
	noise, err := scheduler.NewDDPM(sched)
	if err != nil {
		return train.Models{}, fmt.Errorf("train: noise scheduler: %w", err)
	}
	m.Noise, m.PredictionType = noise, "epsilon"
	if sched.PredictionType != nil {
		m.PredictionType = *sched.PredictionType
	}
	return m, nil
}

// run trains, logging every optimizer step and validating on schedule.
func (s *session) run(ctx context.Context, data train.Data) (*train.Result, error) {
	f := s.f
	m, err := s.models()
	if err != nil {
		return nil, err
	}
	if s.log, err = openLossLog(f.cfg.OutputDir, f.cfg.ResumeFromCheckpoint != ""); err != nil {
		return nil, err
	}
	total, perEpoch := trainSteps(f.cfg, data)
	bar := newTrainProgress(f.cfg, total)
	bar.quiet = f.quiet
	var valErr error
	res, err := train.Run(ctx, f.cfg, m, data, func(r *train.StepResult) {
		step, ok := bar.batch(r)
		if !ok {
			return
		}
		if err := s.log.write(step, r, bar.mean()); err != nil && valErr == nil {
			valErr = err
		}
		bar.show(step)
		if f.validationPrompt != "" && s.validateAt(step, perEpoch) && valErr == nil {
			valErr = s.validate(ctx, step)
		}
	})
	bar.done()
	if err == nil {
		err = valErr
	}
	return res, err
}

// trainSteps are the run's optimizer steps and the steps of one epoch, as
// train.Run counts them.
func trainSteps(c train.Config, d train.Data) (total, perEpoch int) {
	n := d.Train.Len()
	if c.Method == "dreambooth_lora" && c.WithPriorPreservation {
		n = max(n, d.Class.Len())
	}
	batches := (n + c.TrainBatchSize - 1) / c.TrainBatchSize
	perEpoch = max(1, (batches+c.GradientAccumulationSteps-1)/c.GradientAccumulationSteps)
	total = c.MaxTrainSteps
	if total <= 0 {
		total = c.NumTrainEpochs * perEpoch
	}
	return total, perEpoch
}

func (s *session) validateAt(step, perEpoch int) bool {
	f := s.f
	return f.validationSteps > 0 && step%f.validationSteps == 0 ||
		f.validationEpochs > 0 && step%(f.validationEpochs*perEpoch) == 0
}

// validate writes --num_validation_images images of --validation_prompt
// into output_dir/validation with the weights of this step: the LoRA acts
// through the shared UNet; the ControlNet is written to a scratch folder
// the front door loads it from. Inference settings are the scripts'
// log_validation ones (25 steps for DreamBooth, 20 for ControlNet).
func (s *session) validate(ctx context.Context, step int) error {
	f := s.f
	dir := filepath.Join(f.cfg.OutputDir, "validation")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: validation: %w", err)
	}
	p := pipeline.Params{Prompt: f.validationPrompt, Width: f.cfg.Resolution, Height: f.cfg.Resolution,
		Steps: 25, Seed: f.cfg.Seed, Count: max(1, f.numValidationImages)}
	var conds []string
	if s.cn != nil {
		scratch := filepath.Join(dir, ".controlnet")
		if err := train.SaveControlNet(scratch, s.cn); err != nil {
			return err
		}
		defer os.RemoveAll(scratch)
		p.Steps, conds = 20, f.validationImages
		p.ControlNets = []pipeline.ControlNet{{Path: scratch}}
	}
	for ci := 0; ci < max(1, len(conds)); ci++ {
		name := fmt.Sprintf("step-%06d", step)
		if len(conds) > 0 {
			img, err := loadImage(conds[ci])
			if err != nil {
				return fmt.Errorf("train: --validation_image: %w", err)
			}
			p.ControlNets[0].Image = img
			name += fmt.Sprintf("-cond%d", ci)
		}
		var out *pipeline.Output
		var err error
		tensor.NoGrad(func() { out, err = s.model.Generate(ctx, p) })
		if err != nil {
			return fmt.Errorf("train: validation: %w", err)
		}
		for i, im := range out.Images {
			if err := writePNG(filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, i)), im); err != nil {
				return err
			}
		}
	}
	return nil
}

// data reads the training examples and, with prior preservation, tops the
// class images up to --num_class_images by generating them with the base
// model (as the scripts do before training).
func (s *session) data(ctx context.Context) (train.Data, error) {
	f := s.f
	var d train.Data
	var err error
	switch {
	case f.dataset != "":
		d.Train, err = train.Manifest(f.dataset, f.imageCol, f.condCol, f.captionCol)
	case f.trainDataDir != "":
		d.Train, err = folderData(f.trainDataDir, f.imageCol, f.condCol, f.captionCol)
	default:
		d.Train, err = train.ImageFolder(f.instanceDir, "")
	}
	if err != nil {
		return d, err
	}
	if f.method == "lora" && f.cfg.InstancePrompt == "" {
		for _, ex := range d.Train.Examples {
			if ex.Caption == "" {
				return d, fmt.Errorf("train: %s has no caption (a .txt beside it, a manifest column, or --instance_prompt for all)", ex.Image)
			}
		}
		f.cfg.InstancePrompt = d.Train.Examples[0].Caption // never used: every image has its own
	}
	if !f.cfg.WithPriorPreservation {
		return d, nil
	}
	if err := s.classImages(ctx); err != nil {
		return d, err
	}
	d.Class, err = train.ImageFolder(f.classDir, "")
	return d, err
}

// manifestNames are the manifest files a --train_data_dir may hold, in
// the order they are looked for.
var manifestNames = []string{"metadata.jsonl", "train.jsonl", "metadata.csv", "train.csv"}

// folderData reads --train_data_dir: its manifest, else its images with
// their .txt captions.
func folderData(dir string, cols ...string) (*train.Dataset, error) {
	for _, n := range manifestNames {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return train.Manifest(p, cols...)
		}
	}
	return train.ImageFolder(dir, "")
}

// classImages generates the class images --class_data_dir lacks, at the
// training resolution with the model's default sampler and steps, image i
// from seed --seed + i (so an interrupted run continues the same set).
func (s *session) classImages(ctx context.Context) error {
	f := s.f
	if err := os.MkdirAll(f.classDir, 0o755); err != nil {
		return fmt.Errorf("train: --class_data_dir: %w", err)
	}
	have := 0
	if d, err := train.ImageFolder(f.classDir, ""); err == nil {
		have = d.Len()
	}
	if have >= f.numClassImages {
		return nil
	}
	logf(f.quiet, "generating %d class images of %q into %s\n", f.numClassImages-have, f.cfg.ClassPrompt, f.classDir)
	for i := have; i < f.numClassImages; i++ {
		p := pipeline.Params{Prompt: f.cfg.ClassPrompt, Width: f.cfg.Resolution, Height: f.cfg.Resolution, Seed: f.cfg.Seed + int64(i)}
		var out *pipeline.Output
		var err error
		tensor.NoGrad(func() { out, err = s.model.Generate(ctx, p) })
		if err != nil {
			return fmt.Errorf("train: generating class images: %w", err)
		}
		if err := writePNG(filepath.Join(f.classDir, fmt.Sprintf("class-%05d.png", i)), out.Images[0]); err != nil {
			return err
		}
		logf(f.quiet, "\rclass image %d/%d", i+1, f.numClassImages)
	}
	logf(f.quiet, "\n")
	return nil
}

func writePNG(path string, im pipeline.Image) error {
	if err := imageio.WritePNG(path, im.Image, im.Text()); err != nil {
		return fmt.Errorf("train: %w", err)
	}
	return nil
}

func loadImage(path string) (image.Image, error) { return imageio.Load(path) }
