package toy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"time"

	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/tensor"
	tokclip "github.com/diffuse-go/diffuse/tokenizer/clip"
	"github.com/diffuse-go/diffuse/train"
)

// TrainConfig are the settings of a toy training stage.
type TrainConfig struct {
	Seed      uint64
	BatchSize int
	Steps     int
	LR        float64
	Warmup    int
	// CaptionDropout is the fraction of captions replaced by the empty
	// prompt, so that classifier-free guidance has an unconditional model.
	CaptionDropout float64
	// OutDir receives checkpoints (diffusion stage) and the loss log.
	OutDir string
	// TimestepBias weights the diffusion stage's timestep draws (zero:
	// uniform).
	TimestepBias train.TimestepBias
	// EMA, when set, averages the diffusion stage's weights (diffusers'
	// EMAModel); checkpoints' model folders and the result hold the
	// average.
	EMA *train.EMAConfig
	// CheckpointEvery saves a resumable checkpoint every so many steps
	// (diffusion stage; 0: never).
	CheckpointEvery int
	// Log receives one JSON line per step (may be nil): step, loss, lr,
	// grad_norm (diffusion) or rec (VAE reconstruction), time; the fields
	// of diffuse train's loss.jsonl, so that diffuse plot draws either.
	Log io.Writer
}

func (c TrainConfig) validate() error {
	if c.BatchSize <= 0 || c.Steps <= 0 || c.LR <= 0 {
		return fmt.Errorf("toy: batch size %d, steps %d and learning rate %g must be positive", c.BatchSize, c.Steps, c.LR)
	}
	return nil
}

// batch draws n training examples starting at index first: images
// [n, 3, R, R] in [-1, 1] and captions.
func batch(g Generator, first uint64, n int) (*tensor.Tensor, []Attrs, error) {
	res := g.Resolution
	pix := make([]float32, 0, n*3*res*res)
	attrs := make([]Attrs, n)
	for i := range n {
		ex, err := g.Example(first + uint64(i))
		if err != nil {
			return nil, nil, err
		}
		pix = append(pix, CHW(ex.Image)...)
		attrs[i] = ex.Attrs
	}
	return tensor.FromSlice(pix, n, 3, res, res), attrs, nil
}

// logEntry is one line of a training log.
type logEntry struct {
	Step     int     `json:"step"`
	Loss     float64 `json:"loss"`
	Rec      float64 `json:"rec,omitempty"`
	LR       float64 `json:"lr"`
	GradNorm float64 `json:"grad_norm,omitempty"`
	Time     string  `json:"time"`
}

// logStep writes e as a JSON line to w (nil: nowhere), stamped with the
// time so that a log shows how long its steps took.
func logStep(w io.Writer, e logEntry) error {
	if w == nil {
		return nil
	}
	e.Time = time.Now().UTC().Format(time.RFC3339)
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// vaeKLWeight weighs the posterior's KL divergence against reconstruction
// (per element), small enough to keep reconstructions sharp while
// keeping the posterior's variance from collapsing to zero.
const vaeKLWeight = 1e-4

// TrainVAE trains the toy AutoencoderKL (init, or a fresh one when nil) to
// reconstruct generated images
// (MSE of the decoded posterior sample plus a small KL term) and sets its
// scaling factor to one over the latents' standard deviation, as Stable
// Diffusion's 0.18215 was chosen.
func TrainVAE(ctx context.Context, c TrainConfig, init *vae.Model) (*vae.Model, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	m := init
	if m == nil {
		var err error
		if m, err = NewVAE(c.Seed, 1); err != nil {
			return nil, err
		}
		// Start the posterior narrow (log-variance -6) so that early
		// samples are close to the mean.
		startLogVar(m, -6)
	}
	params := train.ModuleParams(m)
	opt, err := train.NewAdamW(params, train.AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0})
	if err != nil {
		return nil, err
	}
	g := Generator{Seed: c.Seed, Resolution: Resolution}
	draws := rng.New(c.Seed)
	sched := train.Schedule{Name: "constant_with_warmup", Warmup: c.Warmup, Total: c.Steps}
	for step := 0; step < c.Steps; step++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		x, _, err := batch(g, uint64(step*c.BatchSize), c.BatchSize)
		if err != nil {
			return nil, err
		}
		post, err := m.Encode(x)
		if err != nil {
			return nil, err
		}
		z := post.Sample(tensor.FromSlice(draws.Randn(post.Mean.Shape()), post.Mean.Shape()...))
		y, err := m.Decode(z)
		if err != nil {
			return nil, err
		}
		rec := train.MSE(y, x)
		// KL(N(μ, σ²) ‖ N(0, 1)) per element: (μ² + σ² - 1 - log σ²) / 2.
		kl := tensor.Scale(tensor.Mean(tensor.Sub(tensor.Add(tensor.Square(post.Mean), tensor.Exp(post.LogVar)),
			tensor.AddScalar(post.LogVar, 1))), 0.5)
		loss := tensor.Add(rec, tensor.Scale(kl, vaeKLWeight))
		loss.Backward()
		train.ClipGradNorm(params, 1)
		lr := sched.LR(c.LR, step)
		opt.Step(lr)
		opt.ZeroGrad()
		if err := logStep(c.Log, logEntry{Step: step + 1, Loss: float64(loss.Item()), Rec: float64(rec.Item()), LR: lr}); err != nil {
			return nil, err
		}
	}
	for _, p := range params {
		p.T.SetRequiresGrad(false)
	}
	s, err := latentStd(m, g, uint64(c.Steps*c.BatchSize), 128)
	if err != nil {
		return nil, err
	}
	m.Cfg.ScalingFactor = float32(1 / s)
	return m, nil
}

// startLogVar sets the bias of the encoder output's log-variance half.
func startLogVar(m *vae.Model, v float32) {
	for _, p := range train.ModuleParams(m) {
		if p.Name == "quant_conv.bias" {
			d := p.T.Data()
			for i := len(d) / 2; i < len(d); i++ {
				d[i] = v
			}
		}
	}
}

// latentStd is the standard deviation of the posterior means of n images.
func latentStd(m *vae.Model, g Generator, first uint64, n int) (float64, error) {
	x, _, err := batch(g, first, n)
	if err != nil {
		return 0, err
	}
	post, err := m.Encode(x)
	if err != nil {
		return 0, err
	}
	var sum, sq float64
	d := post.Mean.Contiguous().Data()
	for _, v := range d {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean := sum / float64(len(d))
	return math.Sqrt(sq/float64(len(d)) - mean*mean), nil
}

// Diffusion are the models the diffusion stage trains (text encoder and
// UNet, from scratch) and uses frozen (the trained VAE).
type Diffusion struct {
	Models train.Models
}

// NewDiffusion builds a fresh text encoder and UNet around a trained VAE.
func NewDiffusion(seed uint64, v *vae.Model) (*Diffusion, error) {
	te, err := NewTextEncoder(seed)
	if err != nil {
		return nil, err
	}
	u, err := NewUNet(seed + 1)
	if err != nil {
		return nil, err
	}
	noise, err := NewNoiseScheduler()
	if err != nil {
		return nil, err
	}
	tok, err := tokclip.New(tokclip.Options{})
	if err != nil {
		return nil, err
	}
	return &Diffusion{Models: train.Models{UNet: u, VAE: v, TextEncoder: te, Noise: noise,
		PredictionType: noise.PredictionType(), Tokenizer: tok}}, nil
}

// dataPosition is where the diffusion stage stands in its data, saved
// with checkpoints.
type dataPosition struct {
	NextExample uint64 `json:"next_example"`
}

// TrainDiffusion trains the UNet and the text encoder together from
// scratch (full training: AdamW over every parameter of both) with
// train.Trainer's loop: Stable Diffusion's epsilon objective with Min-SNR
// weighting, on an unbounded stream of generated examples (held-out
// combinations excluded). It resumes from the latest checkpoint in OutDir.
func TrainDiffusion(ctx context.Context, c TrainConfig, d *Diffusion) (*train.Trainer, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	m := d.Models
	params := append(train.ModuleParams(m.UNet), train.ModuleParams(m.TextEncoder)...)
	sched := &train.LRScheduler{Base: c.LR, Schedule: train.Schedule{Name: "constant_with_warmup", Warmup: c.Warmup, Total: c.Steps}}
	// Plain v-prediction MSE, without Min-SNR weighting: that weighting
	// gives the noisiest timesteps, where the caption alone decides the
	// layout, almost no weight (zero at the zero-SNR last one).
	weights, err := c.TimestepBias.Weights(len(m.Noise.AlphasCumprod()))
	if err != nil {
		return nil, err
	}
	tr, err := train.NewTrainer(m, train.Options{MaxGradNorm: 1}, params,
		train.AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2}, sched,
		&train.GeneratorDraws{G: rng.New(c.Seed), TimestepWeights: weights})
	if err != nil {
		return nil, err
	}
	if c.EMA != nil {
		if err := tr.EnableEMA(*c.EMA); err != nil {
			return nil, err
		}
	}
	var pos dataPosition
	if c.OutDir != "" {
		dir, err := train.ResolveCheckpoint(c.OutDir, "latest")
		if err != nil {
			return nil, err
		}
		if dir != "" {
			if err := tr.LoadState(dir, &pos); err != nil {
				return nil, err
			}
		}
	}
	g := Generator{Seed: c.Seed + 100, Resolution: Resolution}
	for tr.GlobalStep < c.Steps {
		if err := ctx.Err(); err != nil {
			return tr, err
		}
		x, attrs, err := batch(g, pos.NextExample, c.BatchSize)
		if err != nil {
			return tr, err
		}
		caps := make([]string, len(attrs))
		for i, a := range attrs {
			if uniform(c.Seed+200, pos.NextExample+uint64(i)) >= c.CaptionDropout {
				caps[i] = a.Caption()
			}
		}
		pos.NextExample += uint64(c.BatchSize)
		r, err := tr.Step(train.Batch{Pixels: x, InputIDs: m.Tokenizer.EncodeBatch(caps), IDLength: m.Tokenizer.MaxLength()})
		if err != nil {
			return tr, err
		}
		if err := logStep(c.Log, logEntry{Step: tr.GlobalStep, Loss: float64(r.Loss), LR: r.LR, GradNorm: float64(r.GradNorm)}); err != nil {
			return tr, err
		}
		if c.OutDir != "" && c.CheckpointEvery > 0 && tr.GlobalStep%c.CheckpointEvery == 0 {
			if _, err := tr.SaveCheckpoint(c.OutDir, 2, pos, func(dir string) error {
				return tr.WithEMAWeights(func() error { return d.Save(filepath.Join(dir, "model"), "") })
			}); err != nil {
				return tr, err
			}
		}
	}
	return tr, nil
}

// uniform is a number in [0, 1) fixed by seed and i (SplitMix64 of their
// combination): caption dropout decided per example index, so that a
// resumed run drops the captions an uninterrupted one would.
func uniform(seed, i uint64) float64 {
	z := seed*0x9e3779b97f4a7c15 + i + 0x632be59bd9b4e019
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}

// Save writes the trained pipeline as a diffusers folder (see SaveFolder).
func (d *Diffusion) Save(dir, vocabDir string) error {
	return SaveFolder(dir, d.Models.TextEncoder, d.Models.UNet, d.Models.VAE, vocabDir)
}
