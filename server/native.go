package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
)

// jobRequest is the native submission. ID, when given, makes the
// submission idempotent: a second one with the same id returns the first
// job.
type jobRequest struct {
	ID             string   `json:"id"`
	Model          string   `json:"model"`
	Prompt         string   `json:"prompt"`
	NegativePrompt string   `json:"negative_prompt"`
	Width          int      `json:"width"`
	Height         int      `json:"height"`
	Steps          int      `json:"steps"`
	CFGScale       float64  `json:"cfg_scale"`
	Sampler        string   `json:"sampler"`
	Seed           *int64   `json:"seed"`
	Count          int      `json:"count"`
	ClipSkip       int      `json:"clip_skip"`
	InitImage      string   `json:"init_image"`
	Mask           string   `json:"mask"`
	Strength       *float64 `json:"strength"`
	LoRAs          []struct {
		Name   string  `json:"name"`
		Weight float64 `json:"weight"`
	} `json:"loras"`
	ControlNets []struct {
		Model     string   `json:"model"`
		Image     string   `json:"image"`
		Weight    *float64 `json:"weight"`
		Start     float64  `json:"start"`
		End       float64  `json:"end"`
		Canny     bool     `json:"canny"`
		CannyLow  float64  `json:"canny_low"`
		CannyHigh float64  `json:"canny_high"`
		GuessMode bool     `json:"guess_mode"`
	} `json:"controlnets"`
}

func (s *Server) nativeGen(q *jobRequest) (genRequest, error) {
	g := genRequest{Model: q.Model, Prompt: q.Prompt, NegativePrompt: q.NegativePrompt, Width: q.Width, Height: q.Height,
		Steps: q.Steps, CFG: q.CFGScale, Sampler: q.Sampler, Seed: -1, Count: q.Count, ClipSkip: q.ClipSkip}
	if len(q.ID) > 64 {
		return g, badRequest("bad_id", "id", "id longer than 64 bytes")
	}
	if q.Seed != nil {
		g.Seed = *q.Seed
	}
	var err error
	if q.InitImage != "" {
		if g.Init, err = decodeImage(q.InitImage, "init_image", s.lim.MaxPixels); err != nil {
			return g, err
		}
		g.Strength = 0.75
		if q.Strength != nil {
			g.Strength = *q.Strength
		}
	}
	if q.Mask != "" {
		m, err := decodeImage(q.Mask, "mask", s.lim.MaxPixels)
		if err != nil {
			return g, err
		}
		g.Mask = prepareMask(m, 0, false)
	}
	for _, l := range q.LoRAs {
		g.LoRAs = append(g.LoRAs, namedWeight{l.Name, l.Weight})
	}
	for i, c := range q.ControlNets {
		u := controlUnit{Model: c.Model, Weight: 1, Start: c.Start, End: c.End, Canny: c.Canny, CannyLow: c.CannyLow,
			CannyHigh: c.CannyHigh, GuessMode: c.GuessMode}
		if c.Weight != nil {
			u.Weight = *c.Weight
		}
		if u.Canny && u.CannyLow == 0 && u.CannyHigh == 0 {
			u.CannyLow, u.CannyHigh = 100, 200
		}
		if c.Image != "" {
			if u.Image, err = decodeImage(c.Image, fmt.Sprintf("controlnets[%d].image", i), s.lim.MaxPixels); err != nil {
				return g, err
			}
		}
		g.ControlNets = append(g.ControlNets, u)
	}
	return g, nil
}

// submitJob queues a native job: 202 with its status, or 200 with the
// existing job for a repeated id.
func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var q jobRequest
	if err := decodeJSON(r, &q); err != nil {
		writeError(w, styleNative, err)
		return
	}
	if q.ID != "" {
		if j, ok := s.job(q.ID); ok {
			writeJSON(w, http.StatusOK, s.status(r, j))
			return
		}
	}
	g, err := s.nativeGen(&q)
	if err != nil {
		writeError(w, styleNative, err)
		return
	}
	j, err := s.enqueue("native", q.ID, g)
	if err != nil {
		writeError(w, styleNative, err)
		return
	}
	code := http.StatusAccepted
	if snap, _ := j.snapshot(); snap.Created.Before(start) {
		code = http.StatusOK // an earlier submission with this id
	}
	w.Header().Set("Location", "/api/v1/jobs/"+j.ID)
	writeJSON(w, code, s.status(r, j))
}

// status is a job's state as JSON.
func (s *Server) status(r *http.Request, j *Job) map[string]any {
	snap, _ := j.snapshot()
	out := map[string]any{"id": snap.ID, "status": snap.State, "model": snap.Model, "created": snap.Created.Format(time.RFC3339Nano),
		"progress": snap.Progress, "image": snap.Image, "images": snap.Images, "step": snap.Step, "steps": snap.Steps,
		"eta_seconds": snap.ETA.Seconds(), "images_done": snap.Done, "events": "/api/v1/jobs/" + snap.ID + "/events"}
	if !snap.Started.IsZero() {
		out["started"] = snap.Started.Format(time.RFC3339Nano)
	}
	if !snap.Finished.IsZero() {
		out["finished"] = snap.Finished.Format(time.RFC3339Nano)
	}
	if snap.Err != nil {
		ae := asAPIError(snap.Err)
		out["error"] = map[string]any{"code": ae.Code, "message": ae.Message}
	}
	imgs, _ := j.result()
	res := []map[string]any{}
	for i, im := range imgs {
		res = append(res, map[string]any{"url": fmt.Sprintf("/api/v1/jobs/%s/images/%d", j.ID, i), "seed": im.Seed,
			"width": im.Image.Bounds().Dx(), "height": im.Image.Bounds().Dy(), "parameters": im.Params.String()})
	}
	out["result"] = res
	return out
}

func (s *Server) jobOr404(w http.ResponseWriter, r *http.Request) (*Job, bool) {
	j, ok := s.job(r.PathValue("id"))
	if !ok {
		writeError(w, styleNative, &apiError{Status: http.StatusNotFound, Code: "job_not_found", Message: "no job " + strconv.Quote(r.PathValue("id"))})
	}
	return j, ok
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	if j, ok := s.jobOr404(w, r); ok {
		writeJSON(w, http.StatusOK, s.status(r, j))
	}
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobOr404(w, r)
	if !ok {
		return
	}
	j.abort()
	<-j.done
	writeJSON(w, http.StatusOK, s.status(r, j))
}

// jobImage serves image n of a job as PNG with its parameters.
func (s *Server) jobImage(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobOr404(w, r)
	if !ok {
		return
	}
	imgs, _ := j.result()
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 || n >= len(imgs) {
		writeError(w, styleNative, &apiError{Status: http.StatusNotFound, Code: "image_not_found", Message: fmt.Sprintf("job %s has %d images", j.ID, len(imgs))})
		return
	}
	png, err := imageio.EncodePNG(imgs[n].Image, imgs[n].Text())
	if err != nil {
		writeError(w, styleNative, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Write(png)
}

// jobEvents streams server-sent events: "progress" after every step
// (step, ETA and a cheap preview as a data URL), then one "done" (or
// "failed", "cancelled") with the job's status. With
// ?cancel_on_disconnect=1 a client that goes away cancels the job.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) {
	j, ok := s.jobOr404(w, r)
	if !ok {
		return
	}
	cancelOnGone, _ := strconv.ParseBool(r.URL.Query().Get("cancel_on_disconnect"))
	noPreview, _ := strconv.ParseBool(r.URL.Query().Get("no_preview"))
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(event string, v any) error {
		b, _ := json.Marshal(v)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	lastStep := -1
	for {
		snap, changed := j.snapshot()
		switch snap.State {
		case stateDone, stateFailed, stateCancelled:
			send(snap.State, s.status(r, j))
			return
		}
		if key := snap.Image*100000 + snap.Step; snap.State == stateRunning && key != lastStep && snap.Steps > 0 {
			lastStep = key
			ev := map[string]any{"id": j.ID, "image": snap.Image, "images": snap.Images, "step": snap.Step, "steps": snap.Steps,
				"progress": snap.Progress, "eta_seconds": snap.ETA.Seconds()}
			if !noPreview {
				if img := j.previewImage(); img != nil {
					if png, err := imageio.EncodePNG(img, nil); err == nil {
						ev["preview"] = "data:image/png;base64," + base64.StdEncoding.EncodeToString(png)
					}
				}
			}
			if send("progress", ev) != nil {
				s.gone(j, cancelOnGone)
				return
			}
		} else if snap.State == stateQueued && lastStep == -1 {
			lastStep = -2
			if send("queued", map[string]any{"id": j.ID, "queue_depth": s.metrics.queued.Load()}) != nil {
				s.gone(j, cancelOnGone)
				return
			}
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			s.gone(j, cancelOnGone)
			return
		case <-time.After(15 * time.Second):
			// A comment keeps proxies from closing an idle stream.
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				s.gone(j, cancelOnGone)
				return
			}
		}
	}
}

// gone handles an event client that went away.
func (s *Server) gone(j *Job, cancel bool) {
	if cancel {
		s.log.Info("client gone, job cancelled", "job", j.ID)
		j.abort()
	}
}

// health reports liveness and the loaded model.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	out := map[string]any{"status": "ok", "queue_depth": s.metrics.queued.Load(), "default_model": s.defaultModel()}
	if in, ok := s.loadedInfo(); ok {
		out["loaded_model"] = in.Name
	}
	writeJSON(w, http.StatusOK, out)
}
