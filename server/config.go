// Package server serves diffusion models over HTTP: AUTOMATIC1111's
// /sdapi/v1 API, OpenAI's images API, a native jobs API with server-sent
// progress events, and a web page. It reaches models only through
// pipeline.Open. One worker runs the queued jobs in order, loading the
// model each job names (one model in memory at a time, as A1111 keeps).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/nats-io/nats.go"
)

// Config configures a Server. Folders bound what names resolve to: a
// model, LoRA, ControlNet or VAE name from a request is looked up only among
// the files listed inside its folder.
type Config struct {
	// Model is the checkpoint loaded for requests that name none: a path,
	// or a name inside ModelsDir ("": the first model of ModelsDir).
	Model         string
	ModelsDir     string
	LoRADir       string
	ControlNetDir string
	// VAEDir holds the VAEs A1111's sd_vae may name (.safetensors files
	// and diffusers VAE folders); "": only the checkpoints' own.
	VAEDir string
	// OutputDir, when set, receives the images of A1111 requests with
	// save_images true.
	OutputDir string

	// BasicAuth is "user:pass" (A1111's --api-auth); APIKey a bearer
	// token. With either set every request must carry one of them.
	BasicAuth string
	APIKey    string
	// CORSOrigins are the origins allowed to call the API from a browser
	// ("*" for any); empty: no CORS headers at all.
	CORSOrigins []string

	Limits Limits
	// QueueSize bounds the jobs waiting to run (0: 16); a submission past
	// it is refused with 429 and Retry-After.
	QueueSize int
	// URLTTL is how long an OpenAI response_format=url image is served
	// (0: one hour); finished jobs are kept as long.
	URLTTL time.Duration
	// PublicURL is the scheme and host put in image URLs ("": taken from
	// the request's Host).
	PublicURL string

	// NATS, when set, queues jobs on a JetStream work-queue stream at
	// this connection instead of in process: workers (RunWorker, here
	// with LocalWorker or on other machines) take them, progress comes
	// back on subjects and images through an object store.
	NATS *nats.Conn
	// LocalWorker runs a worker in this process (with NATS).
	LocalWorker bool
	// NATSAckWait is how long a job may go without a sign of life from
	// its worker before JetStream gives it to another (0: 30 s).
	NATSAckWait time.Duration

	Logger  *slog.Logger     // nil: slog.Default()
	Options pipeline.Options // how models are opened
	// Open opens a model (nil: pipeline.Open); tests stand in their own.
	Open func(ctx context.Context, path string, opt pipeline.Options) (pipeline.Model, error)
}

// Limits bound what one request may ask for. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	MaxBodyBytes   int64 // request body (images arrive base64-encoded)
	MaxPixels      int   // width × height of one image
	MaxSteps       int
	MaxImages      int // images per request (batch_size × n_iter, n)
	MaxPromptBytes int
}

// DefaultLimits are the limits of a zero Limits.
var DefaultLimits = Limits{MaxBodyBytes: 50 << 20, MaxPixels: 2048 * 2048, MaxSteps: 150, MaxImages: 16, MaxPromptBytes: 16 << 10}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.MaxBodyBytes > 0 {
		d.MaxBodyBytes = l.MaxBodyBytes
	}
	if l.MaxPixels > 0 {
		d.MaxPixels = l.MaxPixels
	}
	if l.MaxSteps > 0 {
		d.MaxSteps = l.MaxSteps
	}
	if l.MaxImages > 0 {
		d.MaxImages = l.MaxImages
	}
	if l.MaxPromptBytes > 0 {
		d.MaxPromptBytes = l.MaxPromptBytes
	}
	return d
}

// validate checks the config before anything starts.
func (c *Config) validate() error {
	var errs []error
	if c.Model == "" && c.ModelsDir == "" {
		errs = append(errs, errors.New("no model: give Model or ModelsDir"))
	}
	if c.BasicAuth != "" {
		if u, p, ok := cutColon(c.BasicAuth); !ok || u == "" || p == "" {
			errs = append(errs, errors.New(`BasicAuth must be "user:password"`))
		}
	}
	if c.QueueSize < 0 {
		errs = append(errs, fmt.Errorf("QueueSize %d is negative", c.QueueSize))
	}
	if c.URLTTL < 0 {
		errs = append(errs, fmt.Errorf("URLTTL %v is negative", c.URLTTL))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

func cutColon(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
