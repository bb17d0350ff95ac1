package imageio

import (
	"bufio"
	"bytes"
	"fmt"
)

// DecodePNGText returns the text chunks of the PNG held in data, as
// ReadPNGText does for a file (servers receive images as bytes).
func DecodePNGText(data []byte) (map[string]string, error) {
	m, err := readPNGText(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, fmt.Errorf("imageio: read png text: %w", err)
	}
	return m, nil
}
