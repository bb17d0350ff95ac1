package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/diffuse-go/diffuse/pipeline"
	"github.com/diffuse-go/diffuse/scheduler"
)

// sdModels lists the checkpoints as A1111 does.
func (s *Server) sdModels(w http.ResponseWriter, _ *http.Request) {
	out := []map[string]any{}
	for _, e := range s.models() {
		out = append(out, map[string]any{"title": e.Title, "model_name": e.Name, "hash": nil, "sha256": nil,
			"filename": e.Path, "config": nil})
	}
	writeJSON(w, http.StatusOK, out)
}

// samplers lists every sampler under its A1111 name, with the other
// spellings as aliases.
func (s *Server) samplers(w http.ResponseWriter, _ *http.Request) {
	out := []map[string]any{}
	for _, in := range scheduler.Samplers() {
		name := pipeline.A1111Sampler(in)
		if strings.Contains(strings.ToLower(in.Name), "karras") {
			name += " Karras"
		}
		aliases := []string{in.Name}
		for _, a := range in.Aliases {
			if a != name {
				aliases = append(aliases, a)
			}
		}
		out = append(out, map[string]any{"name": name, "aliases": aliases, "options": map[string]any{}})
	}
	writeJSON(w, http.StatusOK, out)
}

// schedulers lists the schedule types a sampler may be combined with.
func (s *Server) schedulers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []map[string]any{
		{"name": "automatic", "label": "Automatic", "aliases": nil, "default_rho": -1, "need_inner_model": false},
		{"name": "karras", "label": "Karras", "aliases": []string{"Karras"}, "default_rho": 7.0, "need_inner_model": false},
	})
}

func (s *Server) loraList(w http.ResponseWriter, _ *http.Request) {
	out := []map[string]any{}
	for _, e := range s.loras() {
		out = append(out, map[string]any{"name": pathBase(e.Name), "alias": pathBase(e.Name), "path": e.Path, "metadata": map[string]any{}})
	}
	writeJSON(w, http.StatusOK, out)
}

// refreshLoRAs has nothing to do: the folder is read on every request.
func (s *Server) refreshLoRAs(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, nil)
}

// upscalers lists A1111's built-in entries; no upscaler runs here, so
// hires fix is not offered beyond "None".
func (s *Server) upscalers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []map[string]any{
		{"name": "None", "model_name": nil, "model_path": nil, "model_url": nil, "scale": 4},
	})
}

func (s *Server) latentUpscaleModes(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []map[string]any{})
}

// sdVAE lists the VAEs of the VAE folder as A1111 does: model_name is
// what sd_vae takes, filename the absolute path.
func (s *Server) sdVAE(w http.ResponseWriter, _ *http.Request) {
	out := []map[string]any{}
	for _, e := range s.vaes() {
		path, err := filepath.Abs(e.Path)
		if err != nil {
			path = e.Path
		}
		out = append(out, map[string]any{"model_name": e.Title, "filename": path})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) emptyList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, []any{})
}

// controlnetModels is the ControlNet extension's model list.
func (s *Server) controlnetModels(w http.ResponseWriter, _ *http.Request) {
	names := []string{}
	for _, e := range s.controlnets() {
		names = append(names, e.Name)
	}
	writeJSON(w, http.StatusOK, map[string]any{"model_list": names})
}

func (s *Server) controlnetModules(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"module_list": []string{"none", "canny"}})
}

// titleOf is the A1111 title of a catalog name.
func (s *Server) titleOf(name string) string {
	for _, e := range s.models() {
		if e.Name == name {
			return e.Title
		}
	}
	return name
}

// getOptions returns the settings clients read; sd_model_checkpoint is
// the default model.
func (s *Server) getOptions(w http.ResponseWriter, _ *http.Request) {
	opts := map[string]any{"sd_vae": "Automatic", "CLIP_stop_at_last_layers": 1, "samples_format": "png",
		"live_previews_enable": true, "show_progress_every_n_steps": 1, "show_progress_type": "Approx cheap",
		"eta_noise_seed_delta": 0, "sd_checkpoint_hash": nil}
	s.mu.Lock()
	for k, v := range s.options {
		opts[k] = v
	}
	s.mu.Unlock()
	opts["sd_model_checkpoint"] = s.titleOf(s.defaultModel())
	writeJSON(w, http.StatusOK, opts)
}

// setOptions stores settings; sd_vae must name a VAE of the VAE folder
// (or "Automatic", "None"); sd_model_checkpoint switches the default
// model and, as A1111 does, answers once the model (with that VAE) is
// loaded. A VAE change alone takes effect with the next job.
func (s *Server) setOptions(w http.ResponseWriter, r *http.Request) {
	var q map[string]any
	if err := decodeJSON(r, &q); err != nil {
		writeError(w, styleA1111, err)
		return
	}
	vae, err := s.optionVAE(q)
	if err != nil {
		writeError(w, styleA1111, err)
		return
	}
	if _, ok := q["sd_vae"]; ok && vae != "" {
		q["sd_vae"] = vae // stored as sd-vae lists it
	}
	if v, ok := q["sd_model_checkpoint"]; ok {
		name, ok := v.(string)
		if !ok {
			writeError(w, styleA1111, badRequest("bad_field", "sd_model_checkpoint", "sd_model_checkpoint must be a string"))
			return
		}
		if err := s.switchModel(r, name, vae); err != nil {
			writeError(w, styleA1111, err)
			return
		}
		delete(q, "sd_model_checkpoint")
	}
	s.mu.Lock()
	for k, v := range q {
		s.options[k] = v
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, nil)
}

// optionVAE checks the sd_vae of a POST options body and returns the VAE
// the options name once stored (jobVAE's form).
func (s *Server) optionVAE(q map[string]any) (string, error) {
	v, ok := q["sd_vae"]
	if !ok {
		name, err := s.vaeName(s.vaeOption(), "sd_vae")
		return jobVAE(name), err
	}
	name, ok := v.(string)
	if !ok {
		return "", badRequest("bad_field", "sd_vae", "sd_vae must be a string")
	}
	name, err := s.vaeName(name, "sd_vae")
	return jobVAE(name), err
}

// switchModel loads a model (with the VAE vae, "" for its own) through
// the queue (so it never races a running job) and makes it the default
// once loaded.
func (s *Server) switchModel(r *http.Request, name, vae string) error {
	e, err := find(s.models(), name, "model")
	if err != nil {
		return err
	}
	if s.broker != nil {
		// Workers load models as their jobs name them.
		s.mu.Lock()
		s.defModel = e.Name
		s.mu.Unlock()
		return nil
	}
	j := newJob(s.ctx, "", "a1111.options", e.Name, pipeline.Params{})
	j.loadOnly, j.VAE = true, vae
	j, err = s.submit(j)
	if err != nil {
		return err
	}
	s.wait(r, j)
	if _, err := j.result(); err != nil {
		if err == context.Canceled {
			return fmt.Errorf("loading %s was cancelled", e.Name)
		}
		return err
	}
	s.mu.Lock()
	s.defModel = e.Name
	s.mu.Unlock()
	s.log.Info("default model", "model", e.Name)
	return nil
}
