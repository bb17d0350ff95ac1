package server

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed web
var webFS embed.FS

// routes registers every endpoint.
func (s *Server) routes() {
	m := http.NewServeMux()
	// AUTOMATIC1111 API.
	m.HandleFunc("POST /sdapi/v1/txt2img", s.txt2img)
	m.HandleFunc("POST /sdapi/v1/img2img", s.img2img)
	m.HandleFunc("GET /sdapi/v1/progress", s.progress)
	m.HandleFunc("POST /sdapi/v1/interrupt", s.interrupt)
	m.HandleFunc("POST /sdapi/v1/skip", s.skip)
	m.HandleFunc("POST /sdapi/v1/png-info", s.pngInfo)
	m.HandleFunc("GET /sdapi/v1/sd-models", s.sdModels)
	m.HandleFunc("POST /sdapi/v1/refresh-checkpoints", s.refreshLoRAs)
	m.HandleFunc("GET /sdapi/v1/samplers", s.samplers)
	m.HandleFunc("GET /sdapi/v1/schedulers", s.schedulers)
	m.HandleFunc("GET /sdapi/v1/loras", s.loraList)
	m.HandleFunc("POST /sdapi/v1/refresh-loras", s.refreshLoRAs)
	m.HandleFunc("GET /sdapi/v1/upscalers", s.upscalers)
	m.HandleFunc("GET /sdapi/v1/latent-upscale-modes", s.latentUpscaleModes)
	m.HandleFunc("GET /sdapi/v1/sd-vae", s.sdVAE)
	m.HandleFunc("GET /sdapi/v1/prompt-styles", s.emptyList)
	m.HandleFunc("GET /sdapi/v1/embeddings", s.embeddings)
	m.HandleFunc("GET /sdapi/v1/options", s.getOptions)
	m.HandleFunc("POST /sdapi/v1/options", s.setOptions)
	m.HandleFunc("GET /internal/ping", s.ping)
	m.HandleFunc("GET /controlnet/model_list", s.controlnetModels)
	m.HandleFunc("GET /controlnet/module_list", s.controlnetModules)
	// OpenAI images API.
	m.HandleFunc("POST /v1/images/generations", s.openAIGenerations)
	m.HandleFunc("POST /v1/images/edits", s.openAIEdits)
	m.HandleFunc("GET /v1/models", s.openAIModels)
	m.HandleFunc("GET /v1/files/images/{name}", s.files.serve)
	// Native jobs API.
	m.HandleFunc("POST /api/v1/jobs", s.submitJob)
	m.HandleFunc("GET /api/v1/jobs/{id}", s.getJob)
	m.HandleFunc("DELETE /api/v1/jobs/{id}", s.cancelJob)
	m.HandleFunc("POST /api/v1/jobs/{id}/cancel", s.cancelJob)
	m.HandleFunc("GET /api/v1/jobs/{id}/events", s.jobEvents)
	m.HandleFunc("GET /api/v1/jobs/{id}/images/{n}", s.jobImage)
	m.HandleFunc("GET /api/v1/health", s.health)
	m.HandleFunc("GET /metrics", s.metrics.serve)
	// The web page.
	sub, _ := fs.Sub(webFS, "web")
	static := http.FileServerFS(sub)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead || styleOf(r.URL.Path) != styleNative || strings.HasPrefix(r.URL.Path, "/api/") {
			s.notFound(w, r) // a named 404 in the API's shape
			return
		}
		static.ServeHTTP(w, r)
	})
	s.mux = m
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, styleOf(r.URL.Path), &apiError{Status: http.StatusNotFound, Code: "not_found", Message: r.Method + " " + r.URL.Path + " is not an endpoint"})
}

func (s *Server) ping(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{})
}

// embeddings lists textual inversions: none are loaded.
func (s *Server) embeddings(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"loaded": map[string]any{}, "skipped": map[string]any{}})
}
