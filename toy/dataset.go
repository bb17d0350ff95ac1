package toy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"path/filepath"
)

// DatasetOptions say what WriteDataset writes besides the images.
type DatasetOptions struct {
	// NoCaptions leaves out the .txt captions: DreamBooth instance images,
	// which take the instance prompt instead.
	NoCaptions bool
	// Masks adds placement masks and a manifest (see WriteDataset).
	Masks bool
}

// WriteDataset writes examples first … first+n-1 of g into dir as files
// diffuse train (and diffusers' training scripts) read: NNNNNN.png with
// its caption in NNNNNN.txt beside it. With o.Masks it also writes each
// example's placement mask (Example.Mask) as conditioning/NNNNNN.png and a
// metadata.jsonl manifest with diffusers' columns image,
// conditioning_image and text: a ControlNet training set. Every file is
// written whole or not at all.
func WriteDataset(dir string, g Generator, first, n uint64, o DatasetOptions) error {
	var manifest bytes.Buffer
	for i := first; i < first+n; i++ {
		ex, err := g.Example(i)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("%06d", i)
		if err := writePNG(filepath.Join(dir, name+".png"), ex); err != nil {
			return err
		}
		if !o.NoCaptions {
			if err := writeFile(filepath.Join(dir, name+".txt"), []byte(ex.Caption()+"\n")); err != nil {
				return err
			}
		}
		if !o.Masks {
			continue
		}
		m, err := ex.Mask()
		if err != nil {
			return err
		}
		if err := writePNG(filepath.Join(dir, "conditioning", name+".png"), Example{Image: m}); err != nil {
			return err
		}
		line, _ := json.Marshal(map[string]string{"image": name + ".png",
			"conditioning_image": "conditioning/" + name + ".png", "text": ex.Caption()})
		manifest.Write(append(line, '\n'))
	}
	if o.Masks {
		return writeFile(filepath.Join(dir, "metadata.jsonl"), manifest.Bytes())
	}
	return nil
}

func writePNG(path string, ex Example) error {
	var b bytes.Buffer
	if err := png.Encode(&b, ex.Image); err != nil {
		return fmt.Errorf("toy: %w", err)
	}
	return writeFile(path, b.Bytes())
}
