package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/server"
)

// serveFlags are the options of diffuse serve, named as A1111's.
type serveFlags struct {
	model, modelsDir, loraDir, controlDir, outputDir string
	vaeDir                                           string
	host                                             string
	port                                             int
	apiAuth, apiKey, cors, logLevel, logFormat       string
	queue                                            int
	maxSteps, maxImages, maxPixels                   int
	components                                       multiFlag
	nats                                             natsFlags
}

func parseServeFlags(args []string, stderr io.Writer) (*serveFlags, error) {
	f := &serveFlags{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.model, "m", "", "model loaded for requests that name none (path, or a name in --models-dir)")
	fs.StringVar(&f.model, "model", "", "same as -m")
	fs.StringVar(&f.modelsDir, "models-dir", "", "folder of checkpoints and diffusers folders clients may pick")
	fs.StringVar(&f.loraDir, "lora-dir", "", "folder of LoRAs for <lora:name:w> tags")
	fs.StringVar(&f.controlDir, "controlnet-dir", "", "folder of ControlNet models")
	fs.StringVar(&f.vaeDir, "vae-dir", "", "folder of VAEs A1111's sd_vae may name (.safetensors files, diffusers VAE folders)")
	fs.StringVar(&f.outputDir, "output-dir", "", "where A1111 requests with save_images write their images")
	fs.StringVar(&f.host, "host", "127.0.0.1", "address to listen on (other than loopback needs --api-auth or --api-key)")
	fs.IntVar(&f.port, "port", 7860, "port to listen on (A1111's)")
	fs.StringVar(&f.apiAuth, "api-auth", "", "user:password for HTTP Basic auth (A1111's --api-auth)")
	fs.StringVar(&f.apiKey, "api-key", "", "bearer token clients must send (OpenAI clients' API key)")
	fs.StringVar(&f.cors, "cors-allow-origins", "", "comma-separated origins allowed to call from browsers (* for any)")
	fs.IntVar(&f.queue, "queue", 16, "jobs waiting at most; more are refused with 429")
	fs.IntVar(&f.maxSteps, "max-steps", 0, "most steps a request may ask (0: 150)")
	fs.IntVar(&f.maxImages, "max-images", 0, "most images a request may ask (0: 16)")
	fs.IntVar(&f.maxPixels, "max-pixels", 0, "most pixels of one image (0: 2048×2048)")
	fs.Var(&f.components, "component", "NAME=PATH: a component SD3/FLUX files lack (a transformer-only .safetensors or .gguf), as generate takes it; applies to every model (repeatable)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	f.nats.register(fs, true)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if f.model == "" && f.modelsDir == "" {
		return nil, errors.New("serve: give a model (-m) or a folder of models (--models-dir)")
	}
	if f.port < 0 || f.port > 65535 {
		return nil, fmt.Errorf("serve: port %d outside [0, 65535]", f.port)
	}
	if !isLoopback(f.host) && f.apiAuth == "" && f.apiKey == "" {
		return nil, fmt.Errorf("serve: listening on %s exposes the server beyond this machine; give --api-auth user:pass or --api-key KEY", f.host)
	}
	return f, nil
}

// isLoopback reports whether host only reaches this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (f *serveFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("serve: --log-level %q: want debug, info, warn or error", f.logLevel)
	}
	opt := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opt)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opt)), nil
	}
	return nil, fmt.Errorf("serve: --log-format %q: want text or json", f.logFormat)
}

func (f *serveFlags) config(log *slog.Logger) (server.Config, error) {
	opt, err := envOptions(os.Getenv, systemMemory())
	if err != nil {
		return server.Config{}, err
	}
	if err := componentOptions(&opt, f.components); err != nil {
		return server.Config{}, fmt.Errorf("serve: %w", err)
	}
	var origins []string
	for _, o := range strings.Split(f.cors, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	return server.Config{Model: f.model, ModelsDir: f.modelsDir, LoRADir: f.loraDir, ControlNetDir: f.controlDir, VAEDir: f.vaeDir,
		OutputDir: f.outputDir, BasicAuth: f.apiAuth, APIKey: f.apiKey, CORSOrigins: origins, QueueSize: f.queue,
		Limits: server.Limits{MaxSteps: f.maxSteps, MaxImages: f.maxImages, MaxPixels: f.maxPixels},
		Logger: log, Options: opt}, nil
}

// runServe serves until ctx ends, then finishes the running job's HTTP
// answers (30 s at most) before stopping the worker.
func runServe(ctx context.Context, args []string) error {
	f, err := parseServeFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	log, err := f.logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg, err := f.config(log)
	if err != nil {
		return err
	}
	if f.nats.url != "" {
		nc, closeAll, err := f.nats.connect()
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		defer closeAll()
		cfg.NATS, cfg.LocalWorker = nc, true
		log.Info("jobs queued on NATS JetStream", "nats", nc.ConnectedUrl())
	}
	s, err := server.New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	addr := net.JoinHostPort(f.host, strconv.Itoa(f.port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("serving", "url", "http://"+ln.Addr().String(), "model", f.model, "models_dir", f.modelsDir)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}
