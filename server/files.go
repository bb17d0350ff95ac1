package server

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// fileStore serves encoded images under random names for a limited time
// (OpenAI's response_format=url).
type fileStore struct {
	ttl   time.Duration
	mu    sync.Mutex
	files map[string]storedFile
}

type storedFile struct {
	data    []byte
	typ     string
	expires time.Time
}

func newFileStore(ttl time.Duration) *fileStore {
	return &fileStore{ttl: ttl, files: map[string]storedFile{}}
}

// put stores data and returns its name (with the extension of typ).
func (f *fileStore) put(data []byte, typ string) string {
	name := newID() + "." + strings.TrimPrefix(typ, "image/")
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	for k, v := range f.files {
		if now.After(v.expires) {
			delete(f.files, k)
		}
	}
	f.files[name] = storedFile{data: data, typ: typ, expires: now.Add(f.ttl)}
	return name
}

func (f *fileStore) serve(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	f.mu.Lock()
	sf, ok := f.files[name]
	f.mu.Unlock()
	if !ok || time.Now().After(sf.expires) {
		writeError(w, styleOpenAI, &apiError{Status: http.StatusNotFound, Code: "file_not_found", Message: "no such image, or its URL expired"})
		return
	}
	w.Header().Set("Content-Type", sf.typ)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	w.Write(sf.data)
}
