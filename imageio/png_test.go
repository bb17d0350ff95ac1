package imageio

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWritePNGRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.png")
	src := pattern(7, 5)
	params := "a photo of a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 7x5"
	text := []KV{{ParametersKey, params}, {"Comment", "café"}, {"utf8", "猫 ✓"}, {"empty", ""}}
	if err := WritePNG(p, src, text); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPNGText(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range text {
		if got[kv.Key] != kv.Value {
			t.Errorf("%s = %q, want %q", kv.Key, got[kv.Key], kv.Value)
		}
	}
	if len(got) != len(text) {
		t.Errorf("got %d chunks, want %d", len(got), len(text))
	}

	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// image/png checks every CRC, including the spliced chunks'.
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("image/png cannot decode the file: %v", err)
	}
	if r, _ := Resize(img, 7, 5); !bytes.Equal(r.Pix, src.Pix) {
		t.Error("pixels changed")
	}
	// Chunk order: IHDR, then the text chunks in the given order (tEXt
	// for Latin-1, iTXt otherwise), then the image data.
	var types []string
	for off := 8; off < len(data); {
		n := int(binary.BigEndian.Uint32(data[off:]))
		typ := string(data[off+4 : off+8])
		if crc32.ChecksumIEEE(data[off+4:off+8+n]) != binary.BigEndian.Uint32(data[off+8+n:]) {
			t.Errorf("chunk %s: bad CRC", typ)
		}
		types = append(types, typ)
		off += 12 + n
	}
	if s := strings.Join(types, " "); !strings.HasPrefix(s, "IHDR tEXt tEXt iTXt tEXt IDAT") || !strings.HasSuffix(s, "IEND") {
		t.Errorf("chunks %s", s)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only the image", len(entries))
	}
	// Overwriting replaces the file whole.
	if err := WritePNG(p, pattern(3, 3), nil); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadPNGText(p); err != nil || len(m) != 0 {
		t.Errorf("after overwrite: %v, %v", m, err)
	}
}

func TestReadPNGTextFromPIL(t *testing.T) {
	m, err := ReadPNGText("testdata/pil_text.png")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"parameters":  "a cat, (masterpiece:1.2)\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 2x2",
		"utf8":        "日本語 é",
		"zipped-itxt": strings.Repeat("squeeze ", 40),
		"ztxt":        strings.Repeat("compressed latin-1 é ", 10),
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	p, err := ParseParams(m[ParametersKey])
	if err != nil || p.Seed != 42 || p.Width != 2 || p.NegativePrompt != "blurry" {
		t.Errorf("parsed %+v, %v", p, err)
	}
}

func TestWritePNGFailuresLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	src := pattern(4, 4)
	// Missing folder.
	if err := WritePNG(filepath.Join(dir, "no", "such", "x.png"), src, nil); err == nil {
		t.Error("write into a missing folder succeeded")
	}
	// The rename fails because the target is a non-empty folder: the
	// temporary file must be gone and the folder untouched.
	target := filepath.Join(dir, "taken.png")
	os.Mkdir(target, 0o755)
	os.WriteFile(filepath.Join(target, "keep"), []byte("x"), 0o644)
	err := WritePNG(target, src, nil)
	if err == nil || !strings.Contains(err.Error(), target) {
		t.Errorf("write over a folder: %v", err)
	}
	// Bad text fails before anything touches the disk.
	for _, kv := range []KV{{"", "v"}, {" lead", "v"}, {"k", "nul\x00"}, {strings.Repeat("k", 80), "v"}, {"tab\tkey", "v"}} {
		if err := WritePNG(filepath.Join(dir, "bad.png"), src, []KV{kv}); err == nil {
			t.Errorf("text %q accepted", kv)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "taken.png" {
			t.Errorf("left behind %s", e.Name())
		}
	}
	// An unwritable folder; root writes anywhere, so only as a user.
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o555)
		defer os.Chmod(ro, 0o755)
		if err := WritePNG(filepath.Join(ro, "x.png"), src, nil); err == nil {
			t.Error("write into a read-only folder succeeded")
		}
		if e, _ := os.ReadDir(ro); len(e) != 0 {
			t.Errorf("read-only folder holds %d entries", len(e))
		}
	}
}

func TestReadPNGTextErrors(t *testing.T) {
	dir := t.TempDir()
	good, err := EncodePNG(pattern(2, 2), []KV{{"k", "v"}})
	if err != nil {
		t.Fatal(err)
	}
	badCRC := append([]byte{}, good...)
	i := bytes.Index(badCRC, []byte("tEXt"))
	badCRC[i+4] ^= 1 // the keyword
	cases := map[string][]byte{
		"notpng.png": []byte("GIF89a......"),
		"trunc.png":  good[:len(good)-20],
		"crc.png":    badCRC,
	}
	for name, data := range cases {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		if _, err := ReadPNGText(p); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v should name the file", name, err)
		}
	}
	if _, err := ReadPNGText(filepath.Join(dir, "missing.png")); err == nil || !strings.Contains(err.Error(), "missing.png") {
		t.Errorf("missing file: %v", err)
	}
}
