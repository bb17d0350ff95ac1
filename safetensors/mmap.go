package safetensors

import "github.com/diffuse-go/diffuse/internal/mmap"

// The mapping helpers live in internal/mmap, shared with gguf.
var (
	mapFile   = mmap.Map
	dropPages = mmap.DropPages
)

// mappedFiles: Open maps files (non-empty ones) rather than reading them.
const mappedFiles = mmap.Mapped
