package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"time"

	"github.com/diffuse-go/diffuse/model/clip"
	"github.com/diffuse-go/diffuse/model/controlnet"
	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/model/unet"
	"github.com/diffuse-go/diffuse/model/vae"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/rng"
	"github.com/diffuse-go/diffuse/scheduler"
	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/tensor/gemm"
	"github.com/diffuse-go/diffuse/train"
)

// trainBench are the options of "diffuse bench --train".
type trainBench struct {
	method string // lora or controlnet
	// model, when set, is an SD 1.x checkpoint to load (as stored, mapped)
	// instead of random weights of dtype.
	model string
	dtype tensor.DType
	px    int
	steps int
	// modes are the gradient-checkpointing settings to time, in order.
	modes []bool
	// cpuprofile, when set, is where the steps' CPU profile goes.
	cpuprofile string
}

// parseCheckpointModes reads --gradient-checkpointing: both (on first, so
// that the peak RSS printed after it is its own), on or off.
func parseCheckpointModes(s string) ([]bool, error) {
	switch s {
	case "both":
		return []bool{true, false}, nil
	case "on", "true":
		return []bool{true}, nil
	case "off", "false":
		return []bool{false}, nil
	}
	return nil, fmt.Errorf("bench: --gradient-checkpointing %q: want both, on or off", s)
}

// runTrainBench times training steps on random full-size SD 1.5 weights
// (the frozen ones stored as o.dtype; the trained tensors, their
// gradients and optimizer state are float32) at batch 1:
// seconds per optimizer step (VAE encoding, text encoding, forward,
// backward, clipping and AdamW), the UNet's (and ControlNet's) GFLOP/s
// and the fraction of the CPU's fp32 peak that gemm measures, the peak of
// the Go heap during the steps above what it held before them (the
// activations, gradients and optimizer state) and the process's peak RSS.
func runTrainBench(ctx context.Context, o trainBench) error {
	if o.method != "lora" && o.method != "controlnet" {
		return fmt.Errorf("bench: --train %q: want lora or controlnet", o.method)
	}
	if o.px <= 0 || o.px%64 != 0 || o.steps < 1 {
		return fmt.Errorf("bench: --train needs a size that is a positive multiple of 64 and --steps >= 1")
	}
	t0 := time.Now()
	m, what, err := trainBenchModels(o)
	if err != nil {
		return err
	}
	if m.Close != nil {
		defer m.Close()
	}
	peak := gemm.PeakGFLOPS() * float64(runtime.GOMAXPROCS(0))
	fmt.Printf("diffuse bench --train %s: %s (ready in %.1fs), %dpx, batch 1, %d threads, fp32 peak %.0f GFLOP/s\n",
		o.method, what, time.Since(t0).Seconds(), o.px, runtime.GOMAXPROCS(0), peak)
	flops := trainStepFLOPs(m.Models.UNet.Cfg, o.method, o.px)
	fmt.Printf("counted work per step: %.0f GFLOP (%s)\n", flops/1e9, flopNote(o.method))
	return withCPUProfile(o.cpuprofile, func() error {
		for _, ckpt := range o.modes {
			st, err := timeTrainSteps(ctx, m.Models, o, ckpt)
			if err != nil {
				return err
			}
			rate := flops / st.wall.Seconds() / 1e9
			frac := ""
			if peak > 0 {
				frac = fmt.Sprintf(", %.1f%% of peak", 100*rate/peak)
			}
			fmt.Printf("%-36s %8.2f s/step  %7.1f GFLOP/s%s  step memory %.2f GiB  peak RSS %.2f GiB\n",
				fmt.Sprintf("%s, gradient checkpointing %s:", o.method, onOff(ckpt)), st.wall.Seconds(), rate, frac,
				float64(st.heap)/(1<<30), float64(peakRSS())/(1<<30))
			fmt.Println(cpuRateLine(flops, st.cpu, gemm.PeakGFLOPS()))
		}
		return nil
	})
}

// cpuRateLine reports a step's work per CPU-second of the process (user +
// sys) against one core's fp32 peak: on a machine shared with other jobs
// the wall-clock rate measures the neighbours too, this one much less.
func cpuRateLine(flops float64, cpu time.Duration, corePeak float64) string {
	if cpu <= 0 {
		return "  CPU time per step unknown on this system"
	}
	rate := flops / cpu.Seconds() / 1e9
	line := fmt.Sprintf("  CPU %.2f s/step (user+sys, all threads), %.1f GFLOP per CPU-second", cpu.Seconds(), rate)
	if corePeak > 0 {
		line += fmt.Sprintf(", %.1f%% of one core's peak", 100*rate/corePeak)
	}
	return line
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func flopNote(method string) string {
	if method == "lora" {
		return "UNet forward + activation gradients, 2× the forward: the frozen weights get no gradients; VAE and text encoder not counted"
	}
	return "ControlNet 3× its forward (it trains), UNet 2× (activation gradients only); VAE and text encoder not counted"
}

// benchTrainModels are the bench's models and what releases them.
type benchTrainModels struct {
	train.Models
	Close func()
}

// trainBenchModels loads o.model or builds random weights; what says which.
func trainBenchModels(o trainBench) (benchTrainModels, string, error) {
	if o.model == "" {
		m, err := randomTrainModels(o.dtype)
		return benchTrainModels{Models: m}, fmt.Sprintf("random SD 1.5 %s weights", o.dtype), err
	}
	c, err := pipeline.Load(o.model, pipeline.LoadOptions{})
	if err != nil {
		return benchTrainModels{}, "", fmt.Errorf("bench: -m: %w", err)
	}
	m := train.Models{UNet: c.UNet, VAE: c.VAE, TextEncoder: c.TextEncoder}
	if err := setSD15Noise(&m); err != nil {
		c.Close()
		return benchTrainModels{}, "", err
	}
	return benchTrainModels{Models: m, Close: c.Close}, o.model + " (weights as stored, mapped)", nil
}

// randomTrainModels builds SD 1.5's UNet, VAE and text encoder with random
// weights stored as dt and its DDPM training schedule.
func randomTrainModels(dt tensor.DType) (train.Models, error) {
	var m train.Models
	var err error
	if m.UNet, err = unet.New(unet.SD15(4)); err != nil {
		return m, err
	}
	nn.Init(m.UNet, 1, dt)
	if m.VAE, err = vae.New(vae.SD()); err != nil {
		return m, err
	}
	nn.Init(m.VAE, 2, dt)
	if m.TextEncoder, err = clip.New(clip.SD15()); err != nil {
		return m, err
	}
	nn.Init(m.TextEncoder, 3, dt)
	return m, setSD15Noise(&m)
}

// setSD15Noise gives m SD 1.5's DDPM training schedule (epsilon).
func setSD15Noise(m *train.Models) error {
	sc, err := scheduler.ParseConfig([]byte(pipeline.SD15SchedulerConfig))
	if err != nil {
		return err
	}
	m.Noise, err = scheduler.NewDDPM(sc)
	m.PredictionType = "epsilon"
	return err
}

// trainStepTimes are timeTrainSteps' medians and heap peak.
type trainStepTimes struct {
	wall, cpu time.Duration // cpu: the process's user + sys time; 0 if unknown
	heap      uint64
}

// timeTrainSteps sets a fresh LoRA or ControlNet up and returns the median
// wall and CPU durations of o.steps optimizer steps after one untimed
// warm-up step, and the peak heap of all the steps above the heap before
// them.
func timeTrainSteps(ctx context.Context, m train.Models, o trainBench, ckpt bool) (trainStepTimes, error) {
	g := rng.New(1)
	var params []train.Param
	if o.method == "lora" {
		net, err := train.AddLoRA(m.UNet, lora.UNet, train.LoRAConfig{Rank: 4, Alpha: 4, TargetModules: train.DreamBoothTargets, InitWeights: "gaussian"}, g)
		if err != nil {
			return trainStepTimes{}, err
		}
		defer net.Remove()
		params = net.Params()
	} else {
		cn, err := train.ControlNetFromUNet(m.UNet, controlnet.FromUNet(m.UNet.Cfg), g)
		if err != nil {
			return trainStepTimes{}, err
		}
		cn.Encoder.GradientCheckpointing = ckpt
		m.ControlNet, params = cn, train.ModuleParams(cn)
	}
	m.UNet.GradientCheckpointing = ckpt
	defer func() { m.UNet.GradientCheckpointing = false }()
	tr, err := train.NewTrainer(m, train.Options{MaxGradNorm: 1}, params,
		train.AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1e-2},
		&train.LRScheduler{Base: 1e-5, Schedule: train.Schedule{Name: "constant", Total: o.steps + 1}},
		&train.GeneratorDraws{G: rng.New(2)})
	if err != nil {
		return trainStepTimes{}, err
	}
	b := benchBatch(o.px, o.method == "controlnet")
	runtime.GC()
	stop := watchHeap()
	var ds, cs []time.Duration
	for i := 0; i <= o.steps; i++ {
		if err := ctx.Err(); err != nil {
			return trainStepTimes{}, err
		}
		t, c := time.Now(), cpuTime()
		if _, err := tr.Step(b); err != nil {
			return trainStepTimes{}, err
		}
		if i > 0 {
			ds, cs = append(ds, time.Since(t)), append(cs, cpuTime()-c)
		}
	}
	return trainStepTimes{wall: median(ds), cpu: median(cs), heap: stop()}, nil
}

// benchBatch is one random image (and condition image) with a 77-token
// caption.
func benchBatch(px int, cond bool) train.Batch {
	g := rng.New(3)
	pix := g.Rand(3 * px * px)
	for i := range pix {
		pix[i] = 2*pix[i] - 1
	}
	ids, _ := g.RandInt(1, 49000, 77)
	b := train.Batch{Pixels: tensor.FromSlice(pix, 1, 3, px, px), InputIDs: ids, IDLength: 77}
	if cond {
		b.Conditioning = tensor.FromSlice(g.Rand(3*px*px), 1, 3, px, px)
	}
	return b
}

// trainStepFLOPs is the counted work of one batch-1 training step at px
// pixels: the UNet's forward and its activation gradients (2× the
// forward: the frozen weights get no weight gradients and the LoRA's are
// negligible), plus for ControlNet training the ControlNet's forward,
// activation and weight gradients (3×).
func trainStepFLOPs(c unet.Config, method string, px int) float64 {
	enc, dec := unetForwardFLOPs(c, px/8, px/8, 77)
	total := 2 * (enc + dec)
	if method == "controlnet" {
		total += 3 * (enc + condEmbeddingFLOPs(c, px))
	}
	return total
}

// unetForwardFLOPs counts the multiply-adds (2 FLOPs each) of the
// convolutions, linear layers and attention products of one
// UNet2DConditionModel forward at batch 1 on an h×w latent with ctx text
// tokens, split into the encoder (conv_in, down and mid blocks: what a
// ControlNet copies) and the decoder (up blocks, conv_out). Norms,
// activations and the time embedding are left out (a few percent).
func unetForwardFLOPs(c unet.Config, h, w, ctx int) (enc, dec float64) {
	ch := c.BlockOutChannels
	n := len(ch)
	layers := c.LayersPerBlock.For(n)
	tl := c.TransformerLayersPerBlock.For(n)
	cross := c.CrossAttentionDim.For(n)
	hw := func(level int) float64 { return float64((h >> level) * (w >> level)) }
	conv := func(cin, cout, k int, pixels float64) float64 { return 2 * float64(cin*cout*k*k) * pixels }
	resnet := func(cin, cout int, pixels float64) float64 {
		f := conv(cin, cout, 3, pixels) + conv(cout, cout, 3, pixels)
		if cin != cout {
			f += conv(cin, cout, 1, pixels)
		}
		return f
	}
	transformer := func(cdim, nl, crossDim int, pixels float64) float64 {
		d, l, t := float64(cdim), pixels, float64(ctx)
		per := 2*4*d*d*l + 2*2*l*l*d // self-attention: q, k, v, out; scores and values
		per += 2*2*d*d*l + 2*2*float64(crossDim)*d*t + 2*2*l*t*d
		per += 2*d*8*d*l + 2*4*d*d*l       // GEGLU feed-forward (4× inner width, gated)
		return 2*2*d*d*l + float64(nl)*per // proj_in, proj_out
	}
	attn := func(bt string) bool { return strings.Contains(bt, "CrossAttn") }
	enc = conv(c.InChannels, ch[0], 3, hw(0))
	prev := ch[0]
	for i, bt := range c.DownBlockTypes {
		for j := 0; j < layers[i]; j++ {
			enc += resnet(prev, ch[i], hw(i))
			prev = ch[i]
			if attn(bt) {
				enc += transformer(ch[i], tl[i], cross[i], hw(i))
			}
		}
		if i < n-1 {
			enc += conv(ch[i], ch[i], 3, hw(i+1))
		}
	}
	if last := ch[n-1]; c.MidBlockType != nil { // nil: no mid block
		enc += 2 * resnet(last, last, hw(n-1))
		if attn(*c.MidBlockType) {
			enc += transformer(last, tl[n-1], cross[n-1], hw(n-1))
		}
	}
	rev := reverse(ch)
	revLayers, revTL, revCross := reverse(layers), reverse(tl), reverse(cross)
	prevOut := rev[0]
	for i, bt := range c.UpBlockTypes {
		level := n - 1 - i
		out, in := rev[i], rev[min(i+1, n-1)]
		for j := 0; j <= revLayers[i]; j++ {
			skip := out
			if j == revLayers[i] {
				skip = in
			}
			rin := out
			if j == 0 {
				rin = prevOut
			}
			dec += resnet(rin+skip, out, hw(level))
			if attn(bt) {
				dec += transformer(out, revTL[i], revCross[i], hw(level))
			}
		}
		if i < n-1 {
			dec += conv(out, out, 3, hw(level-1))
		}
		prevOut = out
	}
	dec += conv(ch[0], c.OutChannels, 3, hw(0))
	return enc, dec
}

func reverse(a []int) []int {
	out := make([]int, len(a))
	for i, v := range a {
		out[len(a)-1-i] = v
	}
	return out
}

// condEmbeddingFLOPs counts a ControlNet's own convolutions: the
// condition embedding (from the px×px image down to the latent) and the
// 1×1 zero convolutions on every skip.
func condEmbeddingFLOPs(c unet.Config, px int) float64 {
	emb := controlnet.FromUNet(c).ConditioningEmbeddingOutChannels
	f := 0.0
	conv := func(cin, cout int, side int) { f += 2 * float64(cin*cout*9) * float64(side*side) }
	side := px
	conv(3, emb[0], side)
	for i := 0; i < len(emb)-1; i++ {
		conv(emb[i], emb[i], side)
		side /= 2
		conv(emb[i], emb[i+1], side)
	}
	conv(emb[len(emb)-1], c.BlockOutChannels[0], side)
	ch := c.BlockOutChannels
	layers := c.LayersPerBlock.For(len(ch))
	for i := range ch {
		n := layers[i]
		if i < len(ch)-1 {
			n++ // the downsampler's skip
		}
		f += 2 * float64(ch[i]*ch[i]) * float64(n*(px/8>>i)*(px/8>>i))
	}
	last := ch[len(ch)-1]
	return f + 2*float64(last*last)*float64((px/8>>(len(ch)-1))*(px/8>>(len(ch)-1)))
}

// benchTrainFlags runs the training bench from bench's flags (--size: one
// size, default 512).
func benchTrainFlags(ctx context.Context, method, model, size, ckpt, dtype, cpuprofile string, steps int) error {
	dt, err := parseDType(dtype)
	if err != nil {
		return err
	}
	o := trainBench{method: method, model: model, dtype: dt, px: 512, steps: steps, cpuprofile: cpuprofile}
	if size != "" {
		if _, err := fmt.Sscan(size, &o.px); err != nil || fmt.Sprint(o.px) != strings.TrimSpace(size) {
			return fmt.Errorf("bench: --train takes one --size, got %q", size)
		}
	}
	if o.modes, err = parseCheckpointModes(ckpt); err != nil {
		return err
	}
	opt, err := trainOptions(os.Getenv, systemMemory())
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := opt.Apply(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return runTrainBench(ctx, o)
}

// watchHeap samples the live heap (as the latest garbage collection
// marked it: garbage not counted) every 10 ms until the returned function
// is called, which returns its peak above the level at the start.
func watchHeap() func() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base, peak := read(), atomic.Uint64{}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(done)
		<-finished
		return max(peak.Load(), base) - base
	}
}
