package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
)

// a1111Request is the body of /sdapi/v1/txt2img and img2img, with
// A1111's field names. Pointers tell a field left out from a zero.
type a1111Request struct {
	Prompt               string                     `json:"prompt"`
	NegativePrompt       string                     `json:"negative_prompt"`
	Seed                 *int64                     `json:"seed"`
	SamplerName          string                     `json:"sampler_name"`
	SamplerIndex         string                     `json:"sampler_index"`
	Scheduler            string                     `json:"scheduler"`
	BatchSize            int                        `json:"batch_size"`
	NIter                int                        `json:"n_iter"`
	Steps                int                        `json:"steps"`
	CFGScale             float64                    `json:"cfg_scale"`
	Width                int                        `json:"width"`
	Height               int                        `json:"height"`
	DenoisingStrength    *float64                   `json:"denoising_strength"`
	OverrideSettings     map[string]any             `json:"override_settings"`
	SendImages           *bool                      `json:"send_images"`
	SaveImages           bool                       `json:"save_images"`
	AlwaysonScripts      map[string]json.RawMessage `json:"alwayson_scripts"`
	InitImages           []string                   `json:"init_images"`
	Mask                 string                     `json:"mask"`
	MaskBlur             *int                       `json:"mask_blur"`
	InpaintingMaskInvert int                        `json:"inpainting_mask_invert"`
}

// a1111Sampler combines sampler_name and scheduler ("DPM++ 2M" +
// "Karras") into one sampler name of the scheduler package.
func a1111Sampler(name, sched string) (string, error) {
	sched = strings.ToLower(strings.TrimSpace(sched))
	switch sched {
	case "", "automatic", "uniform":
		return name, nil
	case "karras":
		if name == "" || strings.HasSuffix(strings.ToLower(name), "karras") {
			return name, nil
		}
		if _, ok := scheduler.Lookup(name + " Karras"); ok {
			return name + " Karras", nil
		}
		return "", badRequest("unknown_scheduler", "scheduler", fmt.Sprintf("sampler %q has no Karras schedule", name))
	}
	return "", badRequest("unknown_scheduler", "scheduler", fmt.Sprintf("unknown scheduler %q; GET /sdapi/v1/schedulers lists them", sched))
}

// genRequest converts an A1111 body; img2img decodes its images.
func (s *Server) a1111Gen(q *a1111Request, img2img bool) (genRequest, error) {
	name := q.SamplerName
	if name == "" {
		name = q.SamplerIndex
	}
	sampler, err := a1111Sampler(name, q.Scheduler)
	if err != nil {
		return genRequest{}, err
	}
	g := genRequest{Prompt: q.Prompt, NegativePrompt: q.NegativePrompt, Width: q.Width, Height: q.Height,
		Steps: q.Steps, CFG: q.CFGScale, Sampler: sampler, Seed: -1, Count: max(q.BatchSize, 1) * max(q.NIter, 1)}
	if q.BatchSize < 0 || q.NIter < 0 {
		return g, badRequest("bad_batch", "batch_size", "batch_size and n_iter must be positive")
	}
	if q.Seed != nil {
		g.Seed = *q.Seed
	}
	if err := s.applyOverrides(&g, q.OverrideSettings); err != nil {
		return g, err
	}
	g.FullPreview, g.PreviewEvery = s.previewSettings(q.OverrideSettings)
	if img2img {
		if err := s.a1111Images(&g, q); err != nil {
			return g, err
		}
	}
	if raw, ok := q.AlwaysonScripts["controlnet"]; ok {
		units, err := s.controlUnits(raw, g.Init)
		if err != nil {
			return g, err
		}
		g.ControlNets = units
	}
	return g, nil
}

// applyOverrides takes the override_settings a request may carry: the
// checkpoint, the VAE and the clip skip; the others do not change
// generation here.
func (s *Server) applyOverrides(g *genRequest, o map[string]any) error {
	for key, dst := range map[string]*string{"sd_model_checkpoint": &g.Model, "sd_vae": &g.VAE} {
		if v, ok := o[key]; ok {
			name, ok := v.(string)
			if !ok {
				return badRequest("bad_field", "override_settings."+key, key+" must be a string")
			}
			*dst = name
		}
	}
	if v, ok := o["CLIP_stop_at_last_layers"]; ok {
		f, ok := v.(float64)
		if !ok || f != float64(int(f)) {
			return badRequest("bad_field", "override_settings.CLIP_stop_at_last_layers", "CLIP_stop_at_last_layers must be an integer")
		}
		if f > 1 {
			g.ClipSkip = int(f)
		}
	}
	return nil
}

// previewSettings reads A1111's live preview options, as set through
// POST options or a request's override_settings: show_progress_type
// "Full" decodes previews with the VAE every show_progress_every_n_steps
// steps (-1 or 0: at each image's last step only).
func (s *Server) previewSettings(override map[string]any) (full bool, every int) {
	get := func(k string) any {
		if v, ok := override[k]; ok {
			return v
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.options[k]
	}
	typ, _ := get("show_progress_type").(string)
	if typ != "Full" {
		return false, 0
	}
	every = 1
	if n, ok := get("show_progress_every_n_steps").(float64); ok {
		every = max(int(n), 0)
	}
	return true, every
}

// a1111Images decodes init_images and mask (blurred by mask_blur,
// inverted by inpainting_mask_invert).
func (s *Server) a1111Images(g *genRequest, q *a1111Request) error {
	if len(q.InitImages) == 0 {
		return badRequest("init_images_missing", "init_images", "img2img needs init_images")
	}
	img, err := decodeImage(q.InitImages[0], "init_images", s.lim.MaxPixels)
	if err != nil {
		return err
	}
	g.Init = img
	g.Strength = 0.75
	if q.DenoisingStrength != nil {
		g.Strength = *q.DenoisingStrength
		if g.Strength == 0 {
			return badRequest("bad_strength", "denoising_strength", "denoising_strength 0 would return the init image; give (0, 1]")
		}
	}
	if g.Width == 0 && g.Height == 0 {
		b := img.Bounds()
		g.Width, g.Height = b.Dx()/8*8, b.Dy()/8*8
	}
	if q.Mask == "" {
		return nil
	}
	mask, err := decodeImage(q.Mask, "mask", s.lim.MaxPixels)
	if err != nil {
		return err
	}
	blur := 4
	if q.MaskBlur != nil {
		blur = *q.MaskBlur
	}
	if blur < 0 || blur > 64 {
		return badRequest("bad_mask_blur", "mask_blur", fmt.Sprintf("mask_blur %d outside [0, 64]", blur))
	}
	g.Mask = prepareMask(mask, blur, q.InpaintingMaskInvert == 1)
	return nil
}

// prepareMask makes a gray mask (white = repaint), inverted on request and
// blurred with a box blur of radius blur run three times (close to the
// Gaussian A1111 applies).
func prepareMask(m image.Image, blur int, invert bool) *image.Gray {
	b := m.Bounds()
	g := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			v := color.GrayModel.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.Gray).Y
			if invert {
				v = 255 - v
			}
			g.Pix[y*g.Stride+x] = v
		}
	}
	for range 3 {
		boxBlur(g, blur/2)
	}
	return g
}

// boxBlur blurs g in place with a (2r+1)-wide box, rows then columns.
func boxBlur(g *image.Gray, r int) {
	if r <= 0 {
		return
	}
	w, h := g.Rect.Dx(), g.Rect.Dy()
	tmp := make([]int, max(w, h))
	pass := func(n int, at func(i int) *uint8) {
		for i := 0; i < n; i++ {
			tmp[i] = int(*at(i))
		}
		for i := 0; i < n; i++ {
			sum, cnt := 0, 0
			for k := max(0, i-r); k <= min(n-1, i+r); k++ {
				sum += tmp[k]
				cnt++
			}
			*at(i) = uint8((sum + cnt/2) / cnt)
		}
	}
	for y := 0; y < h; y++ {
		pass(w, func(i int) *uint8 { return &g.Pix[y*g.Stride+i] })
	}
	for x := 0; x < w; x++ {
		pass(h, func(i int) *uint8 { return &g.Pix[i*g.Stride+x] })
	}
}

// controlUnits reads alwayson_scripts.controlnet as the ControlNet
// extension takes it: {"args": [unit, ...]}.
func (s *Server) controlUnits(raw json.RawMessage, init image.Image) ([]controlUnit, error) {
	var cn struct {
		Args []struct {
			Enabled       *bool           `json:"enabled"`
			Image         json.RawMessage `json:"image"`
			InputImage    string          `json:"input_image"`
			Module        string          `json:"module"`
			Model         string          `json:"model"`
			Weight        *float64        `json:"weight"`
			GuidanceStart float64         `json:"guidance_start"`
			GuidanceEnd   *float64        `json:"guidance_end"`
			ThresholdA    *float64        `json:"threshold_a"`
			ThresholdB    *float64        `json:"threshold_b"`
			ControlMode   any             `json:"control_mode"`
			GuessMode     bool            `json:"guess_mode"`
		} `json:"args"`
	}
	if err := json.Unmarshal(raw, &cn); err != nil {
		return nil, badRequest("bad_controlnet", "alwayson_scripts.controlnet", "alwayson_scripts.controlnet: "+err.Error())
	}
	var out []controlUnit
	for i, a := range cn.Args {
		if a.Enabled != nil && !*a.Enabled || a.Model == "" || strings.EqualFold(a.Model, "none") {
			continue
		}
		u := controlUnit{Model: a.Model, Weight: 1, Start: a.GuidanceStart, End: 1, CannyLow: 100, CannyHigh: 200, GuessMode: a.GuessMode}
		if a.Weight != nil {
			u.Weight = *a.Weight
		}
		if a.GuidanceEnd != nil {
			u.End = *a.GuidanceEnd
		}
		switch m := strings.ToLower(a.Module); m {
		case "", "none":
		case "canny":
			u.Canny = true
			if a.ThresholdA != nil {
				u.CannyLow = *a.ThresholdA
			}
			if a.ThresholdB != nil {
				u.CannyHigh = *a.ThresholdB
			}
		default:
			return nil, badRequest("unknown_controlnet_module", "module", fmt.Sprintf("ControlNet unit %d: preprocessor %q not available (none, canny)", i, a.Module))
		}
		switch v := a.ControlMode.(type) {
		case float64:
			u.GuessMode = u.GuessMode || v == 2
		case string:
			u.GuessMode = u.GuessMode || v == "ControlNet is more important"
		}
		b64 := a.InputImage
		if len(a.Image) > 0 && string(a.Image) != "null" {
			var str string
			var obj struct {
				Image string `json:"image"`
			}
			if json.Unmarshal(a.Image, &str) == nil {
				b64 = str
			} else if json.Unmarshal(a.Image, &obj) == nil {
				b64 = obj.Image
			}
		}
		if b64 != "" {
			img, err := decodeImage(b64, fmt.Sprintf("controlnet unit %d image", i), s.lim.MaxPixels)
			if err != nil {
				return nil, err
			}
			u.Image = img
		} else {
			u.Image = init // img2img: the unit follows the init image
		}
		out = append(out, u)
	}
	return out, nil
}

func (s *Server) txt2img(w http.ResponseWriter, r *http.Request) { s.a1111Generate(w, r, false) }
func (s *Server) img2img(w http.ResponseWriter, r *http.Request) { s.a1111Generate(w, r, true) }

// a1111Generate runs a txt2img or img2img request to the end and answers
// {images, parameters, info}.
func (s *Server) a1111Generate(w http.ResponseWriter, r *http.Request, img2img bool) {
	var raw map[string]any
	var q a1111Request
	if err := decodeJSON(r, &q); err != nil {
		writeError(w, styleA1111, err)
		return
	}
	g, err := s.a1111Gen(&q, img2img)
	if err != nil {
		writeError(w, styleA1111, err)
		return
	}
	api := "a1111.txt2img"
	if img2img {
		api = "a1111.img2img"
	}
	j, err := s.enqueue(api, "", g)
	if err != nil {
		writeError(w, styleA1111, err)
		return
	}
	s.wait(r, j)
	imgs, err := j.result()
	if err != nil {
		writeError(w, styleA1111, err)
		return
	}
	// The request echo, without the (large) images, as A1111 sends it.
	raw = map[string]any{}
	b, _ := json.Marshal(q)
	json.Unmarshal(b, &raw)
	raw["init_images"], raw["mask"] = nil, nil
	send := q.SendImages == nil || *q.SendImages
	out := []string{}
	for _, im := range imgs {
		png, err := imageio.EncodePNG(im.Image, im.Text())
		if err != nil {
			writeError(w, styleA1111, err)
			return
		}
		if q.SaveImages && s.cfg.OutputDir != "" {
			s.save(im, j.ID)
		}
		if send {
			out = append(out, base64.StdEncoding.EncodeToString(png))
		}
	}
	info, _ := json.Marshal(a1111Info(j, imgs))
	writeJSON(w, http.StatusOK, map[string]any{"images": out, "parameters": raw, "info": string(info)})
}

// save writes a finished image into the output folder, atomically (a
// reader of the folder never sees half an image).
func (s *Server) save(im pipeline.Image, id string) {
	name := filepath.Join(s.cfg.OutputDir, fmt.Sprintf("%s-%s-%d.png", time.Now().Format("20060102-150405"), id[:8], im.Seed))
	if err := imageio.WritePNG(name, im.Image, im.Text()); err != nil {
		s.log.Error("save image", "path", name, "err", err)
	}
}

// a1111Info is the "info" object A1111 returns (as a JSON string).
func a1111Info(j *Job, imgs []pipeline.Image) map[string]any {
	p := j.Params
	info := map[string]any{"prompt": p.Prompt, "negative_prompt": p.NegativePrompt, "seed": p.Seed, "subseed": -1,
		"subseed_strength": 0, "width": p.Width, "height": p.Height, "sampler_name": "", "cfg_scale": p.Guidance,
		"steps": p.Steps, "batch_size": p.Count, "restore_faces": false, "face_restoration_model": nil,
		"sd_model_name": j.Model, "sd_model_hash": nil, "sd_vae_name": nil, "sd_vae_hash": nil,
		"seed_resize_from_w": -1, "seed_resize_from_h": -1, "denoising_strength": nil, "extra_generation_params": map[string]any{},
		"index_of_first_image": 0, "styles": []string{}, "job_timestamp": j.Created.Format("20060102150405"),
		"clip_skip": max(p.ClipSkip, 1), "is_using_inpainting_conditioning": false, "version": "diffuse " + pipeline.Version}
	prompts, negs, seeds, texts := []string{}, []string{}, []int64{}, []string{}
	for _, im := range imgs {
		prompts = append(prompts, im.Params.Prompt)
		negs = append(negs, im.Params.NegativePrompt)
		seeds = append(seeds, im.Seed)
		texts = append(texts, im.Params.String())
	}
	if j.VAE != "" {
		info["sd_vae_name"] = j.VAE
	}
	if len(imgs) > 0 {
		ip := imgs[0].Params
		info["seed"], info["width"], info["height"], info["steps"], info["cfg_scale"] = ip.Seed, ip.Width, ip.Height, ip.Steps, ip.CFGScale
		info["sampler_name"], info["sd_model_hash"] = ip.Sampler, ip.ModelHash
		if ip.DenoisingStrength > 0 {
			info["denoising_strength"] = ip.DenoisingStrength
		}
		extra := map[string]any{}
		for _, kv := range ip.Extra {
			extra[kv.Key] = kv.Value
		}
		if ip.Scheduler != "" {
			extra["Schedule type"] = ip.Scheduler
		}
		info["extra_generation_params"] = extra
	}
	info["all_prompts"], info["all_negative_prompts"], info["all_seeds"] = prompts, negs, seeds
	info["all_subseeds"], info["infotexts"] = seeds, texts
	return info
}

// progress answers A1111's /sdapi/v1/progress for the running job.
func (s *Server) progress(w http.ResponseWriter, r *http.Request) {
	state := map[string]any{"skipped": false, "interrupted": false, "job": "", "job_count": 0,
		"job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
	resp := map[string]any{"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": nil, "textinfo": nil}
	j := s.running()
	queued := int(s.queueDepth())
	state["job_count"] = queued
	if j != nil {
		snap, _ := j.snapshot()
		state["job_count"] = queued + 1
		state["job"] = "job(" + j.ID + ")"
		state["job_timestamp"] = j.Created.Format("20060102150405")
		state["job_no"] = snap.Image
		state["sampling_step"], state["sampling_steps"] = snap.Step, snap.Steps
		state["skipped"], state["interrupted"] = snap.Skipped, snap.Interrup
		resp["progress"] = snap.Progress
		resp["eta_relative"] = snap.ETA.Seconds()
		resp["textinfo"] = fmt.Sprintf("Image %d/%d, step %d/%d", snap.Image+1, snap.Images, snap.Step, snap.Steps)
		if skip, _ := strconv.ParseBool(r.URL.Query().Get("skip_current_image")); !skip {
			if img := j.previewImage(); img != nil {
				if png, err := imageio.EncodePNG(img, nil); err == nil {
					resp["current_image"] = base64.StdEncoding.EncodeToString(png)
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) interrupt(w http.ResponseWriter, _ *http.Request) {
	if j := s.running(); j != nil {
		j.interrupt()
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (s *Server) skip(w http.ResponseWriter, _ *http.Request) {
	if j := s.running(); j != nil {
		j.skip()
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// pngInfo reads the parameters of a PNG: {info, items, parameters}.
func (s *Server) pngInfo(w http.ResponseWriter, r *http.Request) {
	var q struct {
		Image string `json:"image"`
	}
	if err := decodeJSON(r, &q); err != nil {
		writeError(w, styleA1111, err)
		return
	}
	if q.Image == "" {
		writeError(w, styleA1111, badRequest("image_missing", "image", "image is required"))
		return
	}
	b64 := q.Image
	if i := strings.Index(b64, ";base64,"); i >= 0 && strings.HasPrefix(b64, "data:") {
		b64 = b64[i+len(";base64,"):]
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		writeError(w, styleA1111, badRequest("bad_image", "image", "image: not base64: "+err.Error()))
		return
	}
	items, err := imageio.DecodePNGText(data)
	if err != nil {
		// A JPEG or a PNG without text has no parameters, as in A1111.
		items = map[string]string{}
	}
	text := items[imageio.ParametersKey]
	params := map[string]any{}
	if text != "" {
		if p, err := imageio.ParseParams(text); err == nil {
			params = infotextFields(p)
		}
	}
	delete(items, imageio.ParametersKey)
	writeJSON(w, http.StatusOK, map[string]any{"info": text, "items": items, "parameters": params})
}

// infotextFields is A1111's parse_generation_parameters dictionary.
func infotextFields(p imageio.Params) map[string]any {
	m := map[string]any{"Prompt": p.Prompt, "Negative prompt": p.NegativePrompt, "Steps": strconv.Itoa(p.Steps),
		"Sampler": p.Sampler, "CFG scale": strconv.FormatFloat(p.CFGScale, 'f', -1, 64), "Seed": strconv.FormatInt(p.Seed, 10),
		"Size-1": strconv.Itoa(p.Width), "Size-2": strconv.Itoa(p.Height)}
	if p.Scheduler != "" {
		m["Schedule type"] = p.Scheduler
	}
	if p.ModelHash != "" {
		m["Model hash"] = p.ModelHash
	}
	if p.Model != "" {
		m["Model"] = p.Model
	}
	if p.DenoisingStrength > 0 {
		m["Denoising strength"] = strconv.FormatFloat(p.DenoisingStrength, 'f', -1, 64)
	}
	m["Clip skip"] = strconv.Itoa(max(p.ClipSkip, 1))
	for _, kv := range p.Extra {
		m[kv.Key] = kv.Value
	}
	return m
}
