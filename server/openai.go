package server

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/diffuse-go/diffuse/imageio"
)

// openAIImageRequest is the body of /v1/images/generations and the form
// of /v1/images/edits, with OpenAI's field names.
type openAIImageRequest struct {
	Prompt         string `json:"prompt"`
	Model          string `json:"model"`
	N              *int   `json:"n"`
	Size           string `json:"size"`
	ResponseFormat string `json:"response_format"`
	OutputFormat   string `json:"output_format"`
	Quality        string `json:"quality"`
	// Extensions other local servers accept too.
	NegativePrompt string `json:"negative_prompt"`
	Seed           *int64 `json:"seed"`
	Steps          int    `json:"steps"`
}

// openAIModelNames are the hosted model names clients send by default;
// they select the server's default model.
var openAIModelNames = map[string]bool{"": true, "dall-e-2": true, "dall-e-3": true, "gpt-image-1": true, "gpt-image-1-mini": true}

// genRequest checks the fields shared by generations and edits.
func (s *Server) openAIGen(q *openAIImageRequest) (genRequest, error) {
	g := genRequest{Prompt: q.Prompt, NegativePrompt: q.NegativePrompt, Seed: -1, Count: 1, Steps: q.Steps}
	if strings.TrimSpace(q.Prompt) == "" {
		return g, badRequest("missing_prompt", "prompt", "prompt is required")
	}
	if !openAIModelNames[q.Model] {
		g.Model = q.Model
	}
	if q.N != nil {
		if *q.N < 1 || *q.N > s.lim.MaxImages {
			return g, badRequest("too_many_images", "n", fmt.Sprintf("n %d outside [1, %d]", *q.N, s.lim.MaxImages))
		}
		g.Count = *q.N
	}
	if q.Seed != nil {
		g.Seed = *q.Seed
	}
	if q.Size != "" && q.Size != "auto" {
		w, h, ok := strings.Cut(q.Size, "x")
		wi, err1 := strconv.Atoi(w)
		hi, err2 := strconv.Atoi(h)
		if !ok || err1 != nil || err2 != nil || wi <= 0 || hi <= 0 {
			return g, badRequest("invalid_size", "size", fmt.Sprintf("size %q is not WIDTHxHEIGHT", q.Size))
		}
		g.Width, g.Height = wi, hi
	}
	switch q.ResponseFormat {
	case "", "url", "b64_json":
	default:
		return g, badRequest("invalid_response_format", "response_format", fmt.Sprintf("response_format %q: want url or b64_json", q.ResponseFormat))
	}
	switch q.OutputFormat {
	case "", "png", "jpeg":
	default:
		return g, badRequest("invalid_output_format", "output_format", fmt.Sprintf("output_format %q: png and jpeg are available", q.OutputFormat))
	}
	if g.Steps == 0 {
		switch q.Quality {
		case "low":
			g.Steps = 12
		case "high", "hd":
			g.Steps = min(40, s.lim.MaxSteps)
		case "", "auto", "medium", "standard":
		default:
			return g, badRequest("invalid_quality", "quality", fmt.Sprintf("quality %q: want low, medium, high or auto", q.Quality))
		}
	}
	return g, nil
}

func (s *Server) openAIGenerations(w http.ResponseWriter, r *http.Request) {
	var q openAIImageRequest
	if err := decodeJSON(r, &q); err != nil {
		writeError(w, styleOpenAI, err)
		return
	}
	g, err := s.openAIGen(&q)
	if err != nil {
		writeError(w, styleOpenAI, err)
		return
	}
	s.openAIRun(w, r, &q, g, "openai.generations")
}

// openAIEdits takes multipart image (or image[]) and mask; the mask's
// transparent pixels are repainted. Without a mask, an image with
// transparent pixels is repainted there, an opaque one is redrawn
// (image-to-image).
func (s *Server) openAIEdits(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		writeError(w, styleOpenAI, badRequest("invalid_multipart", "", "edits take multipart/form-data: "+asAPIError(err).Message))
		return
	}
	q := openAIImageRequest{Prompt: r.FormValue("prompt"), Model: r.FormValue("model"), Size: r.FormValue("size"),
		ResponseFormat: r.FormValue("response_format"), OutputFormat: r.FormValue("output_format"),
		Quality: r.FormValue("quality"), NegativePrompt: r.FormValue("negative_prompt")}
	if v := r.FormValue("n"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, styleOpenAI, badRequest("invalid_n", "n", "n is not an integer"))
			return
		}
		q.N = &n
	}
	g, err := s.openAIGen(&q)
	if err != nil {
		writeError(w, styleOpenAI, err)
		return
	}
	img, err := s.formImage(r, "image", "image[]")
	if err != nil {
		writeError(w, styleOpenAI, err)
		return
	}
	if img == nil {
		writeError(w, styleOpenAI, badRequest("missing_image", "image", "image is required"))
		return
	}
	mask, err := s.formImage(r, "mask")
	if err != nil {
		writeError(w, styleOpenAI, err)
		return
	}
	g.Init, g.Strength = img, 0.75
	switch {
	case mask != nil:
		if mask.Bounds().Size() != img.Bounds().Size() {
			writeError(w, styleOpenAI, badRequest("invalid_mask", "mask", "mask and image must have the same size"))
			return
		}
		g.Mask, g.Strength = alphaMask(mask), 1
	case hasTransparency(img):
		g.Mask, g.Strength = alphaMask(img), 1
	}
	if g.Width == 0 && g.Height == 0 {
		b := img.Bounds()
		if b.Dx()*b.Dy() <= s.lim.MaxPixels {
			g.Width, g.Height = b.Dx()/8*8, b.Dy()/8*8
		}
	}
	s.openAIRun(w, r, &q, g, "openai.edits")
}

// formImage decodes the first file under one of names (nil when absent).
func (s *Server) formImage(r *http.Request, names ...string) (image.Image, error) {
	for _, n := range names {
		fhs := r.MultipartForm.File[n]
		if len(fhs) == 0 {
			continue
		}
		f, err := fhs[0].Open()
		if err != nil {
			return nil, badRequest("invalid_image", n, n+": "+err.Error())
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, badRequest("invalid_image", n, n+": "+err.Error())
		}
		return decodeImageBytes(data, n, s.lim.MaxPixels)
	}
	return nil, nil
}

// alphaMask is white where m is fully transparent (repaint), black
// elsewhere.
func alphaMask(m image.Image) *image.Gray {
	b := m.Bounds()
	g := image.NewGray(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			if _, _, _, a := m.At(b.Min.X+x, b.Min.Y+y).RGBA(); a == 0 {
				g.SetGray(x, y, color.Gray{255})
			}
		}
	}
	return g
}

func hasTransparency(m image.Image) bool {
	if o, ok := m.(interface{ Opaque() bool }); ok && o.Opaque() {
		return false
	}
	b := m.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if _, _, _, a := m.At(x, y).RGBA(); a == 0 {
				return true
			}
		}
	}
	return false
}

// openAIRun queues the request, waits and answers {created, data}.
func (s *Server) openAIRun(w http.ResponseWriter, r *http.Request, q *openAIImageRequest, g genRequest, api string) {
	j, err := s.enqueue(api, "", g)
	if err != nil {
		writeError(w, styleOpenAI, err)
		return
	}
	s.wait(r, j)
	imgs, err := j.result()
	if err != nil {
		writeError(w, styleOpenAI, err)
		return
	}
	format := q.OutputFormat
	if format == "" {
		format = "png"
	}
	asURL := q.ResponseFormat == "url" || q.ResponseFormat == "" && q.Model != "gpt-image-1" && q.Model != "gpt-image-1-mini"
	data := []map[string]any{}
	for _, im := range imgs {
		var enc []byte
		if format == "jpeg" {
			var buf bytes.Buffer
			err = jpeg.Encode(&buf, im.Image, &jpeg.Options{Quality: 90})
			enc = buf.Bytes()
		} else {
			enc, err = imageio.EncodePNG(im.Image, im.Text())
		}
		if err != nil {
			writeError(w, styleOpenAI, err)
			return
		}
		d := map[string]any{"revised_prompt": im.Params.Prompt}
		if asURL {
			d["url"] = s.baseURL(r) + "/v1/files/images/" + s.files.put(enc, "image/"+format)
		} else {
			d["b64_json"] = base64.StdEncoding.EncodeToString(enc)
		}
		data = append(data, d)
	}
	resp := map[string]any{"created": time.Now().Unix(), "data": data, "output_format": format}
	if len(imgs) > 0 {
		b := imgs[0].Image.Bounds()
		resp["size"] = fmt.Sprintf("%dx%d", b.Dx(), b.Dy())
	}
	writeJSON(w, http.StatusOK, resp)
}

// baseURL is where the client reached the server.
func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.PublicURL != "" {
		return strings.TrimSuffix(s.cfg.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// openAIModels lists the checkpoints as OpenAI models.
func (s *Server) openAIModels(w http.ResponseWriter, _ *http.Request) {
	data := []map[string]any{}
	for _, e := range s.models() {
		data = append(data, map[string]any{"id": e.Name, "object": "model", "created": 0, "owned_by": "diffuse"})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}
