package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// shardIndexes are the index files of sharded component weights, as
// save_pretrained writes them for models over its shard size (the T5
// encoders of PixArt, SD3, FLUX and Hunyuan-DiT).
var shardIndexes = []string{"diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json",
	"diffusion_pytorch_model.fp16.safetensors.index.json", "model.fp16.safetensors.index.json"}

// openWeights opens a component's weights in dir: its one safetensors
// file, else the shards its index lists.
func openWeights(dir string) ([]*safetensors.File, error) {
	single, err := weightFile(dir)
	if err == nil {
		f, err := safetensors.Open(single)
		if err != nil {
			return nil, err
		}
		return []*safetensors.File{f}, nil
	}
	for _, n := range shardIndexes {
		p := filepath.Join(dir, n)
		if _, serr := os.Stat(p); serr == nil {
			return openShards(p)
		}
	}
	return nil, err
}

// openShards opens the shards an index lists and checks that each holds
// the tensors the index places in it.
func openShards(index string) ([]*safetensors.File, error) {
	b, err := os.ReadFile(index)
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", index, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: empty weight_map", index)
	}
	byShard := map[string][]string{}
	for name, shard := range idx.WeightMap {
		if shard != filepath.Base(shard) || !strings.HasSuffix(shard, ".safetensors") {
			return nil, fmt.Errorf("%s: shard %q is not a .safetensors file beside the index", index, shard)
		}
		byShard[shard] = append(byShard[shard], name)
	}
	var files []*safetensors.File
	fail := func(err error) ([]*safetensors.File, error) {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	for _, shard := range sortedKeys(byShard) {
		f, err := safetensors.Open(filepath.Join(filepath.Dir(index), shard))
		if err != nil {
			return fail(err)
		}
		files = append(files, f)
		for _, name := range byShard[shard] {
			if !f.Has(name) {
				return fail(fmt.Errorf("%s: %s has no tensor %q, which its index places there", index, shard, name))
			}
		}
	}
	return files, nil
}

// weightSource serves one component's tensors from its files (one, or
// the shards of a sharded checkpoint), hiding buffers that are not
// parameters.
type weightSource struct {
	files []nn.FileSource
	of    map[string]int // tensor name → index in files
}

func newWeightSource(files []*safetensors.File) (*weightSource, error) {
	s := &weightSource{of: map[string]int{}}
	for i, f := range files {
		s.files = append(s.files, nn.FileSource{F: f, InPlace: true})
		for _, n := range f.Names() {
			if j, dup := s.of[n]; dup {
				return nil, fmt.Errorf("tensor %q is in both %s and %s", n, files[j].Path, f.Path)
			}
			s.of[n] = i
		}
	}
	return s, nil
}

func (s *weightSource) Names() []string {
	var out []string
	for n := range s.of {
		if !checkpoint.Ignorable(n) && !transformersBuffers[n] {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (s *weightSource) Shape(name string) ([]int, bool) {
	i, ok := s.of[name]
	if !ok {
		return nil, false
	}
	return s.files[i].Shape(name)
}

func (s *weightSource) Tensor(name string) (*tensor.Tensor, error) {
	i, ok := s.of[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	return s.files[i].Tensor(name)
}

// loadFiles reads m's weights from a component's files.
func loadFiles(m nn.Module, files []*safetensors.File, opt LoadOptions) error {
	if len(files) == 0 {
		return errors.New("no weight files")
	}
	src, err := newWeightSource(files)
	if err == nil {
		err = nn.Load(m, "", src, opt.nnOpts())
	}
	if err != nil {
		where := files[0].Path
		if len(files) > 1 {
			where = fmt.Sprintf("%s (%d shards)", filepath.Dir(where), len(files))
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	opt.convert(m)
	return nil
}
