package train

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/imageio"
	"github.com/diffuse-go/diffuse/rng"
)

// Example is one training example: an image file, its caption and, for
// ControlNet training, its condition image file.
type Example struct {
	Image        string `json:"image"`
	Conditioning string `json:"conditioning_image,omitempty"`
	Caption      string `json:"text"`
}

// Dataset is a list of examples.
type Dataset struct {
	Examples []Example
}

// Len is the number of examples.
func (d *Dataset) Len() int {
	if d == nil {
		return 0
	}
	return len(d.Examples)
}

// imageExts are the image files ImageFolder picks up.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true}

// ImageFolder lists the PNG and JPEG images of dir (sorted by name). An
// image's caption is the text of the .txt file of the same name beside it
// when there is one, else caption (the DreamBooth instance or class prompt).
func ImageFolder(dir, caption string) (*Dataset, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("train: image folder: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("train: image folder %s holds no .png or .jpg images", dir)
	}
	d := &Dataset{}
	for _, n := range names {
		ex := Example{Image: filepath.Join(dir, n), Caption: caption}
		txt := filepath.Join(dir, strings.TrimSuffix(n, filepath.Ext(n))+".txt")
		b, err := os.ReadFile(txt)
		switch {
		case err == nil:
			ex.Caption = strings.TrimSpace(string(b))
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("train: caption: %w", err)
		}
		d.Examples = append(d.Examples, ex)
	}
	return d, nil
}

// Manifest reads a JSONL (one object per line) or CSV (header row) file
// with the columns image, conditioning_image and text (the names of
// diffusers' ControlNet example dataset); other column names can be given
// in cols as image, conditioning_image, text. Relative paths are taken
// from the manifest's folder.
func Manifest(path string, cols ...string) (*Dataset, error) {
	names := [3]string{"image", "conditioning_image", "text"}
	for i, c := range cols {
		if i < 3 && c != "" {
			names[i] = c
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("train: manifest: %w", err)
	}
	defer f.Close()
	var rows []map[string]string
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		rows, err = csvRows(f)
	} else {
		rows, err = jsonlRows(f)
	}
	if err != nil {
		return nil, fmt.Errorf("train: manifest %s: %w", path, err)
	}
	base := filepath.Dir(path)
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(base, p)
	}
	d := &Dataset{}
	for i, r := range rows {
		ex := Example{Image: abs(r[names[0]]), Conditioning: abs(r[names[1]]), Caption: r[names[2]]}
		if ex.Image == "" {
			return nil, fmt.Errorf("train: manifest %s: row %d has no %q column", path, i+1, names[0])
		}
		d.Examples = append(d.Examples, ex)
	}
	if len(d.Examples) == 0 {
		return nil, fmt.Errorf("train: manifest %s lists no examples", path)
	}
	return d, nil
}

func csvRows(r io.Reader) ([]map[string]string, error) {
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, errors.New("empty CSV (a header row is needed)")
	}
	var out []map[string]string
	for _, rec := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			if i < len(rec) {
				m[strings.TrimSpace(h)] = rec[i]
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func jsonlRows(r io.Reader) ([]map[string]string, error) {
	var out []map[string]string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		row := map[string]string{}
		for k, v := range m {
			if s, ok := v.(string); ok {
				row[k] = s
			}
		}
		out = append(out, row)
	}
	return out, sc.Err()
}

// Preprocess are the scripts' image transforms: Resize(resolution) of the
// shorter side, then a center crop (--center_crop) or a random one, and an
// optional horizontal flip (--random_flip).
type Preprocess struct {
	Resolution int
	CenterCrop bool
	RandomFlip bool
}

// Crop is where Preprocess took an image from, as
// train_dreambooth_lora_sdxl.py records it for the time ids: the image's
// size before resizing (original_size, height then width) and the crop's
// top-left corner in the resized (and flipped) image
// (crops_coords_top_left).
type Crop struct {
	OriginalHeight, OriginalWidth int
	Top, Left                     int
}

// TimeIDs are SDXL's micro-conditioning for a training image, as the
// script's compute_time_ids makes them: original_size +
// crops_coords_top_left + (resolution, resolution).
func (c Crop) TimeIDs(resolution int) []float32 {
	return []float32{float32(c.OriginalHeight), float32(c.OriginalWidth), float32(c.Top), float32(c.Left),
		float32(resolution), float32(resolution)}
}

// Load reads an image file as [3, res, res] floats in [0, 1], drawing the
// random crop and flip from g. Resizing uses imageio.Resize's Lanczos
// filter (torchvision's default is bilinear; the crop arithmetic is
// torchvision's).
func (p Preprocess) Load(path string, g *rng.Generator) ([]float32, error) {
	out, _, err := p.LoadCrop(path, g)
	return out, err
}

// LoadCrop is Load that also says where the crop was taken.
func (p Preprocess) LoadCrop(path string, g *rng.Generator) ([]float32, Crop, error) {
	img, err := imageio.Load(path)
	if err != nil {
		return nil, Crop{}, fmt.Errorf("train: %w", err)
	}
	res := p.Resolution
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	nw, nh := res, res
	if w < h {
		nh = int(float64(res) * float64(h) / float64(w))
	} else {
		nw = int(float64(res) * float64(w) / float64(h))
	}
	chw, err := imageio.ToNCHW(img, nw, nh)
	if err != nil {
		return nil, Crop{}, fmt.Errorf("train: %s: %w", path, err)
	}
	var top, left int
	if p.CenterCrop {
		top = int(math.RoundToEven(float64(nh-res) / 2))
		left = int(math.RoundToEven(float64(nw-res) / 2))
	} else {
		t, _ := g.RandInt(0, int64(nh-res+1), 1)
		l, _ := g.RandInt(0, int64(nw-res+1), 1)
		top, left = int(t[0]), int(l[0])
	}
	flip := p.RandomFlip && g.Rand(1)[0] < 0.5
	crop := Crop{OriginalHeight: h, OriginalWidth: w, Top: top, Left: left}
	if flip {
		crop.Left = nw - res - left // the same pixels, cut from the flipped image
	}
	return cropCHW(chw, nw, nh, res, top, left, flip), crop, nil
}

// cropCHW cuts the res×res square at (top, left) out of a [3, nh, nw]
// image, mirrored horizontally when flip is set.
func cropCHW(chw []float32, nw, nh, res, top, left int, flip bool) []float32 {
	out := make([]float32, 3*res*res)
	for c := 0; c < 3; c++ {
		for y := 0; y < res; y++ {
			for x := 0; x < res; x++ {
				sx := left + x
				if flip {
					sx = left + res - 1 - x
				}
				out[(c*res+y)*res+x] = chw[(c*nh+top+y)*nw+sx]
			}
		}
	}
	return out
}
