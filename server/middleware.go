package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authorized checks Basic auth or the bearer key; with neither configured
// every request passes. Both comparisons run in constant time over hashes,
// so neither the secret's content nor its length leaks through timing.
func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.BasicAuth == "" && s.cfg.APIKey == "" {
		return true
	}
	if strings.HasPrefix(r.URL.Path, "/v1/files/images/") {
		// OpenAI image URLs are fetched without the key (by browsers and
		// chat front ends): their random 96-bit names are the capability,
		// as OpenAI's signed URLs are, and they expire.
		return true
	}
	if r.Method == http.MethodOptions && len(s.cfg.CORSOrigins) > 0 {
		return true // CORS preflights carry no credentials
	}
	if s.cfg.BasicAuth != "" {
		if u, p, ok := r.BasicAuth(); ok && equalSecret(u+":"+p, s.cfg.BasicAuth) {
			return true
		}
	}
	if s.cfg.APIKey != "" {
		h := r.Header.Get("Authorization")
		if tok, ok := strings.CutPrefix(h, "Bearer "); ok && equalSecret(strings.TrimSpace(tok), s.cfg.APIKey) {
			return true
		}
		// EventSource cannot set headers: the page passes the key as a
		// query parameter on its event streams.
		if k := r.URL.Query().Get("api_key"); k != "" && equalSecret(k, s.cfg.APIKey) {
			return true
		}
	}
	return false
}

func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// cors sets the CORS headers for an allowed origin and answers
// preflights; it reports whether the request goes on.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if len(s.cfg.CORSOrigins) == 0 || origin == "" {
		return true
	}
	allowed := false
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			allowed = true
		}
	}
	if !allowed {
		return true // no headers: the browser refuses the response
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	return true
}
