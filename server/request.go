package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // init images arrive as PNG or JPEG
	_ "image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"

	"github.com/diffuse-go/diffuse/model/lora"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
)

// genRequest is what the three APIs ask for, in one form.
type genRequest struct {
	Model                  string // catalog name ("": the default)
	Prompt, NegativePrompt string
	Width, Height, Steps   int
	CFG                    float64
	Sampler                string
	Seed                   int64 // negative: random
	Count                  int
	ClipSkip               int
	Init, Mask             image.Image
	Strength               float64
	LoRAs                  []namedWeight
	ControlNets            []controlUnit
	// VAE is A1111's sd_vae: a name inside the VAE folder, "Automatic" or
	// "None" ("": the sd_vae option). params leaves the resolved name.
	VAE string
	// FullPreview asks for previews decoded by the VAE every PreviewEvery
	// steps (and at each image's last step; PreviewEvery <= 0: only
	// there) instead of the cheap latent map.
	FullPreview  bool
	PreviewEvery int
}

type namedWeight struct {
	Name   string
	Weight float64
}

// controlUnit is one ControlNet unit, its model named inside the
// ControlNet folder.
type controlUnit struct {
	Model               string
	Image               image.Image
	Canny               bool
	CannyLow, CannyHigh float64
	Weight, Start, End  float64
	GuessMode           bool
}

// enqueue checks g, builds its job and queues it; a known id returns the
// existing job.
func (s *Server) enqueue(api, id string, g genRequest) (*Job, error) {
	model, p, err := s.params(&g)
	if err != nil {
		return nil, err
	}
	j := newJob(s.ctx, id, api, model, p)
	j.gen, j.VAE = g, jobVAE(g.VAE)
	return s.submit(j)
}

// params checks g against the limits, resolves its names inside the
// configured folders and returns the job's model name and parameters.
// It fills g's random seed, model and VAE names in place, so that g describes
// the job exactly (a remote worker rebuilds the parameters from it).
func (s *Server) params(g *genRequest) (string, pipeline.Params, error) {
	var zero pipeline.Params
	lim := s.lim
	switch {
	case len(g.Prompt) > lim.MaxPromptBytes || len(g.NegativePrompt) > lim.MaxPromptBytes:
		return "", zero, badRequest("prompt_too_long", "prompt", fmt.Sprintf("prompt over %d bytes", lim.MaxPromptBytes))
	case g.Steps < 0 || g.Steps > lim.MaxSteps:
		return "", zero, badRequest("too_many_steps", "steps", fmt.Sprintf("steps %d outside [1, %d]", g.Steps, lim.MaxSteps))
	case g.Count < 0 || g.Count > lim.MaxImages:
		return "", zero, badRequest("too_many_images", "n", fmt.Sprintf("%d images asked; at most %d a request", g.Count, lim.MaxImages))
	case g.Width < 0 || g.Height < 0 || g.Width > 1<<15 || g.Height > 1<<15 || g.Width*g.Height > lim.MaxPixels:
		return "", zero, badRequest("image_too_large", "size", fmt.Sprintf("size %dx%d over %d pixels", g.Width, g.Height, lim.MaxPixels))
	case g.Width%8 != 0 || g.Height%8 != 0:
		return "", zero, badRequest("bad_size", "size", fmt.Sprintf("size %dx%d: width and height must be multiples of 8", g.Width, g.Height))
	case g.CFG < 0 || g.CFG > 100 || g.CFG != g.CFG:
		return "", zero, badRequest("bad_cfg_scale", "cfg_scale", fmt.Sprintf("cfg_scale %v outside [0, 100]", g.CFG))
	case g.Strength < 0 || g.Strength > 1 || g.Strength != g.Strength:
		return "", zero, badRequest("bad_strength", "denoising_strength", fmt.Sprintf("denoising strength %v outside [0, 1]", g.Strength))
	case g.ClipSkip < 0 || g.ClipSkip > 12:
		return "", zero, badRequest("bad_clip_skip", "CLIP_stop_at_last_layers", fmt.Sprintf("clip skip %d outside [1, 12]", g.ClipSkip))
	}
	if g.Sampler != "" {
		if _, ok := scheduler.Lookup(g.Sampler); !ok {
			return "", zero, badRequest("unknown_sampler", "sampler_name", fmt.Sprintf("unknown sampler %q; GET /sdapi/v1/samplers lists them", g.Sampler))
		}
	}
	model := g.Model
	if model == "" {
		model = s.defaultModel()
	}
	e, err := find(s.models(), model, "model")
	if err != nil {
		return "", zero, err
	}
	if err := s.resolveVAE(g); err != nil {
		return "", zero, err
	}
	if g.Seed < 0 {
		g.Seed = rand.Int64N(1 << 32)
	}
	g.Model = e.Name
	p := pipeline.Params{Prompt: g.Prompt, NegativePrompt: g.NegativePrompt, Width: g.Width, Height: g.Height,
		Steps: g.Steps, Guidance: g.CFG, Sampler: g.Sampler, Seed: g.Seed, Count: max(g.Count, 1), ClipSkip: g.ClipSkip,
		InitImage: g.Init, Mask: g.Mask, Strength: g.Strength, LoRADir: s.cfg.LoRADir}
	if err := s.checkLoRATags(g.Prompt); err != nil {
		return "", zero, err
	}
	for _, l := range g.LoRAs {
		le, err := find(s.loras(), l.Name, "lora")
		if err != nil {
			return "", zero, err
		}
		p.LoRAs = append(p.LoRAs, pipeline.LoRA{Path: le.Path, Weight: l.Weight})
	}
	for i, c := range g.ControlNets {
		ce, err := find(s.controlnets(), c.Model, "controlnet")
		if err != nil {
			return "", zero, err
		}
		if c.Image == nil {
			return "", zero, badRequest("controlnet_image_missing", "controlnet", fmt.Sprintf("ControlNet unit %d has no image", i))
		}
		p.ControlNets = append(p.ControlNets, pipeline.ControlNet{Path: ce.Path, Image: c.Image, Canny: c.Canny,
			CannyLow: c.CannyLow, CannyHigh: c.CannyHigh, Scale: c.Weight, Start: c.Start, End: c.End, GuessMode: c.GuessMode})
	}
	return e.Name, p, nil
}

// checkLoRATags refuses a prompt whose <lora:name> tags are malformed or
// name a LoRA outside the LoRA folder, before the job is queued.
func (s *Server) checkLoRATags(prompt string) error {
	_, refs, err := lora.ParsePrompt(prompt)
	if err != nil {
		return badRequest("bad_lora_tag", "prompt", err.Error())
	}
	if len(refs) == 0 {
		return nil
	}
	if s.cfg.LoRADir == "" {
		return badRequest("lora_not_found", "prompt", "the prompt uses <lora:"+refs[0].Name+"> but the server has no LoRA folder")
	}
	for _, r := range refs {
		if _, err := find(s.loras(), r.Name, "lora"); err != nil {
			return err
		}
	}
	return nil
}

// decodeJSON reads a JSON body into v; errors name the problem.
func decodeJSON(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return asAPIError(err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("empty_body", "", "the request has no JSON body")
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &apiError{Status: http.StatusUnprocessableEntity, Code: "bad_field", Param: te.Field,
				Message: fmt.Sprintf("field %s: got JSON %s, want %s", te.Field, te.Value, te.Type)}
		}
		return badRequest("bad_json", "", "body is not valid JSON: "+err.Error())
	}
	return nil
}

// decodeImage reads a base64 image, bare or as a data URL, refusing
// images whose header declares more than maxPixels (decompression bombs).
func decodeImage(s string, field string, maxPixels int) (image.Image, error) {
	if i := strings.Index(s, ";base64,"); i >= 0 && strings.HasPrefix(s, "data:") {
		s = s[i+len(";base64,"):]
	}
	s = strings.TrimSpace(s)
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if data, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
			return nil, badRequest("bad_image", field, field+": not base64: "+err.Error())
		}
	}
	return decodeImageBytes(data, field, maxPixels)
}

func decodeImageBytes(data []byte, field string, maxPixels int) (image.Image, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, badRequest("bad_image", field, field+": not a PNG or JPEG image: "+err.Error())
	}
	if cfg.Width*cfg.Height > maxPixels*4 || cfg.Width > 1<<15 || cfg.Height > 1<<15 {
		return nil, badRequest("image_too_large", field, fmt.Sprintf("%s: %dx%d image too large", field, cfg.Width, cfg.Height))
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, badRequest("bad_image", field, field+": "+err.Error())
	}
	return img, nil
}
