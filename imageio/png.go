package imageio

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// KV is one ordered key/value pair: a PNG text chunk, or an extra field of
// the A1111 parameters line.
type KV struct {
	Key, Value string
}

var pngSignature = []byte("\x89PNG\r\n\x1a\n")

// WritePNG encodes img as PNG with one text chunk per entry of text, in
// order, placed right after IHDR, and writes it to path atomically: the
// bytes go to a temporary file in the same folder, which is synced and then
// renamed over path, so readers never see a half-written image and a
// failure leaves path untouched.
//
// A value representable in Latin-1 is stored as tEXt, any other as an
// uncompressed iTXt in UTF-8; that is what PIL's PngInfo.add_text does, so
// A1111 and other readers find "parameters" where they expect it.
func WritePNG(path string, img image.Image, text []KV) error {
	data, err := EncodePNG(img, text)
	if err != nil {
		return fmt.Errorf("imageio: write %s: %w", path, err)
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("imageio: write %s: %w", path, err)
	}
	return nil
}

// EncodePNG returns the PNG encoding of img with the text chunks of
// WritePNG spliced in.
func EncodePNG(img image.Image, text []KV) ([]byte, error) {
	if img == nil {
		return nil, errors.New("nil image")
	}
	var chunks [][]byte
	for _, kv := range text {
		c, err := textChunk(kv.Key, kv.Value)
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, c)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	raw := buf.Bytes()
	// image/png always writes the signature then IHDR (4+4+13+4 bytes)
	// first; check rather than trust it, since a wrong splice would make
	// an unreadable file.
	const ihdrEnd = 8 + 4 + 4 + 13 + 4
	if len(raw) < ihdrEnd || !bytes.Equal(raw[:8], pngSignature) || string(raw[12:16]) != "IHDR" {
		return nil, errors.New("encode png: unexpected encoder output")
	}
	n := len(raw)
	for _, c := range chunks {
		n += len(c)
	}
	out := make([]byte, 0, n)
	out = append(out, raw[:ihdrEnd]...)
	for _, c := range chunks {
		out = append(out, c...)
	}
	return append(out, raw[ihdrEnd:]...), nil
}

// textChunk builds a complete tEXt or iTXt chunk (length, type, data, CRC).
func textChunk(key, value string) ([]byte, error) {
	if err := checkKeyword(key); err != nil {
		return nil, err
	}
	if strings.IndexByte(value, 0) >= 0 {
		return nil, fmt.Errorf("png text %q: value contains a NUL byte", key)
	}
	if !utf8.ValidString(value) {
		return nil, fmt.Errorf("png text %q: value is not valid UTF-8", key)
	}
	var data []byte
	var typ string
	if latin1, ok := toLatin1(value); ok {
		typ = "tEXt"
		data = append(append([]byte(key), 0), latin1...)
	} else {
		// keyword, NUL, compression flag 0, method 0, empty language
		// tag, NUL, empty translated keyword, NUL, UTF-8 text.
		typ = "iTXt"
		data = append([]byte(key), 0, 0, 0, 0, 0)
		data = append(data, value...)
	}
	return makeChunk(typ, data), nil
}

func makeChunk(typ string, data []byte) []byte {
	c := make([]byte, 8, 12+len(data))
	binary.BigEndian.PutUint32(c, uint32(len(data)))
	copy(c[4:], typ)
	c = append(c, data...)
	return binary.BigEndian.AppendUint32(c, crc32.ChecksumIEEE(c[4:]))
}

// checkKeyword applies the PNG rules for text keywords: 1 to 79 printable
// Latin-1 characters, no leading, trailing or doubled spaces.
func checkKeyword(key string) error {
	b, ok := toLatin1(key)
	if !ok || len(b) == 0 || len(b) > 79 {
		return fmt.Errorf("png text keyword %q: must be 1 to 79 Latin-1 characters", key)
	}
	if b[0] == ' ' || b[len(b)-1] == ' ' || strings.Contains(key, "  ") {
		return fmt.Errorf("png text keyword %q: leading, trailing or double space", key)
	}
	for _, c := range b {
		if c < 32 || (c > 126 && c < 161) {
			return fmt.Errorf("png text keyword %q: non-printable character", key)
		}
	}
	return nil
}

func toLatin1(s string) ([]byte, bool) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xff {
			return nil, false
		}
		b = append(b, byte(r))
	}
	return b, true
}

func fromLatin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path. On any error the temporary file is removed.
func writeFileAtomic(path string, data []byte) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	// CreateTemp makes the file 0600; images are meant to be shared.
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	// Sync the folder so the rename itself survives a crash; some
	// filesystems cannot sync folders, which is not worth failing for.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// maxTextChunk bounds the text chunks ReadPNGText will hold in memory (and
// what a zTXt may inflate to); real parameters are a few kilobytes.
const maxTextChunk = 64 << 20

// ReadPNGText returns the text chunks (tEXt, zTXt and iTXt) of the PNG file
// at path, keyed by keyword; a keyword that occurs twice keeps its last
// value, as PIL's Image.info does. Image data is skipped, not decoded.
func ReadPNGText(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("imageio: read png text: %w", err)
	}
	defer f.Close()
	m, err := readPNGText(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("imageio: read png text %s: %w", path, err)
	}
	return m, nil
}

func readPNGText(r *bufio.Reader) (map[string]string, error) {
	sig := make([]byte, 8)
	if _, err := io.ReadFull(r, sig); err != nil || !bytes.Equal(sig, pngSignature) {
		return nil, errors.New("not a PNG file")
	}
	out := map[string]string{}
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, errors.New("truncated file: no IEND chunk")
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		typ := string(hdr[4:8])
		if n > 1<<31-1 {
			return nil, fmt.Errorf("chunk %q: bad length %d", typ, n)
		}
		if typ != "tEXt" && typ != "zTXt" && typ != "iTXt" {
			if _, err := r.Discard(int(n) + 4); err != nil {
				return nil, fmt.Errorf("chunk %q: truncated", typ)
			}
			if typ == "IEND" {
				return out, nil
			}
			continue
		}
		if n > maxTextChunk {
			return nil, fmt.Errorf("chunk %q: too large (%d bytes)", typ, n)
		}
		buf := make([]byte, 4+n+4)
		copy(buf, hdr[4:])
		if _, err := io.ReadFull(r, buf[4:]); err != nil {
			return nil, fmt.Errorf("chunk %q: truncated", typ)
		}
		if crc32.ChecksumIEEE(buf[:4+n]) != binary.BigEndian.Uint32(buf[4+n:]) {
			return nil, fmt.Errorf("chunk %q: CRC mismatch", typ)
		}
		k, v, err := parseTextChunk(typ, buf[4:4+n])
		if err != nil {
			return nil, fmt.Errorf("chunk %q: %w", typ, err)
		}
		out[k] = v
	}
}

func parseTextChunk(typ string, data []byte) (key, value string, err error) {
	i := bytes.IndexByte(data, 0)
	if i < 1 {
		return "", "", errors.New("missing keyword")
	}
	key, rest := fromLatin1(data[:i]), data[i+1:]
	switch typ {
	case "tEXt":
		return key, fromLatin1(rest), nil
	case "zTXt":
		if len(rest) < 1 || rest[0] != 0 {
			return "", "", errors.New("unknown compression method")
		}
		b, err := inflate(rest[1:])
		if err != nil {
			return "", "", err
		}
		return key, fromLatin1(b), nil
	default: // iTXt
		if len(rest) < 2 {
			return "", "", errors.New("truncated header")
		}
		compressed, method := rest[0], rest[1]
		rest = rest[2:]
		for range 2 { // language tag, translated keyword
			j := bytes.IndexByte(rest, 0)
			if j < 0 {
				return "", "", errors.New("truncated header")
			}
			rest = rest[j+1:]
		}
		if compressed != 0 {
			if method != 0 {
				return "", "", errors.New("unknown compression method")
			}
			if rest, err = inflate(rest); err != nil {
				return "", "", err
			}
		}
		if !utf8.Valid(rest) {
			return "", "", errors.New("text is not valid UTF-8")
		}
		return key, string(rest), nil
	}
}

func inflate(b []byte) ([]byte, error) {
	zr, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	defer zr.Close()
	out, err := io.ReadAll(io.LimitReader(zr, maxTextChunk+1))
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if len(out) > maxTextChunk {
		return nil, errors.New("decompressed text too large")
	}
	return out, nil
}
