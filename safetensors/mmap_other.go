//go:build !unix

package safetensors

import "os"

func mapFile(path string) ([]byte, func() error, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return b, func() error { return nil }, nil
}

// mappedFiles: Open reads files into memory here.
const mappedFiles = false

func dropPages(b []byte) {}
