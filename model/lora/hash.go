package lora

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
)

// AddnetHash is the short hash A1111 writes in "Lora hashes": the first
// 12 hex digits of the SHA-256 of a safetensors file's data, after its
// header (kohya's "addnet" hash, which ignores metadata edits).
func AddnetHash(path string) (string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	var n uint64
	if err := binary.Read(fh, binary.LittleEndian, &n); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	st, err := fh.Stat()
	if err != nil {
		return "", err
	}
	if st.Size() < 8 || n > uint64(st.Size())-8 {
		return "", errors.New(path + ": bad safetensors header length")
	}
	if _, err := fh.Seek(int64(8+n), io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.CopyBuffer(h, fh, make([]byte, 1<<20)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}
