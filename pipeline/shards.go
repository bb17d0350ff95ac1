package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/diffuse-go/diffuse/checkpoint"
	"github.com/diffuse-go/diffuse/nn"
	"github.com/diffuse-go/diffuse/safetensors"
	"github.com/diffuse-go/diffuse/tensor"
)

// shardIndexes are the index files of sharded weights, as transformers
// and diffusers save large models (T5-XXL comes in shards).
var shardIndexes = []string{"model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json",
	"model.safetensors.index.fp16.json", "diffusion_pytorch_model.safetensors.index.fp16.json"}

// shardIndex is the path of dir's shard index, or "" when it has none.
func shardIndex(dir string) string {
	for _, n := range shardIndexes {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// readShardIndex reads an index's weight_map (tensor name → shard file),
// refusing shards outside the index's folder.
func readShardIndex(index string) (map[string]string, error) {
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
	for _, file := range idx.WeightMap {
		if file != filepath.Base(file) || file == "." || file == ".." {
			return nil, fmt.Errorf("%s: shard %q is not a file of the folder", index, file)
		}
	}
	return idx.WeightMap, nil
}

// shardFiles lists the distinct shard files an index names, sorted.
func shardFiles(index string) ([]string, error) {
	weightMap, err := readShardIndex(index)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range weightMap {
		if !seen[f] {
			seen[f] = true
			out = append(out, filepath.Join(filepath.Dir(index), f))
		}
	}
	sort.Strings(out)
	return out, nil
}

// openShards opens the shard files an index names; the files are
// returned (to be closed by the caller) even on error.
func openShards(index string) (*shardSource, []*safetensors.File, error) {
	weightMap, err := readShardIndex(index)
	if err != nil {
		return nil, nil, err
	}
	src := &shardSource{byName: map[string]*safetensors.File{}}
	opened := map[string]*safetensors.File{}
	var files []*safetensors.File
	for name, file := range weightMap {
		f := opened[file]
		if f == nil {
			if f, err = safetensors.Open(filepath.Join(filepath.Dir(index), file)); err != nil {
				return nil, files, err
			}
			opened[file] = f
			files = append(files, f)
		}
		if !f.Has(name) {
			return nil, files, fmt.Errorf("%s: %s has no tensor %q, which the index puts there", index, f.Path, name)
		}
		src.byName[name] = f
	}
	return src, files, nil
}

// shardSource reads tensors from the shards they are in, in place.
type shardSource struct{ byName map[string]*safetensors.File }

// Names lists the tensors, without the buffers that are no parameters.
func (s *shardSource) Names() []string {
	var out []string
	for n := range s.byName {
		if !checkpoint.Ignorable(n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func (s *shardSource) Shape(name string) ([]int, bool) {
	f, ok := s.byName[name]
	if !ok {
		return nil, false
	}
	info, _ := f.Info(name)
	return info.Shape, true
}

func (s *shardSource) Tensor(name string) (*tensor.Tensor, error) {
	f, ok := s.byName[name]
	if !ok {
		return nil, errors.New("no tensor " + name)
	}
	return nn.ViewTensor(f, name)
}

// loadShards reads m's weights from the shards index names.
func (f *folder) loadShards(index string, m nn.Module) error {
	src, files, err := openShards(index)
	f.files = append(f.files, files...)
	if err != nil {
		return err
	}
	if err := nn.Load(m, "", src, f.opt.nnOpts()); err != nil {
		return fmt.Errorf("%s: %w", index, err)
	}
	f.opt.convert(m)
	return nil
}
