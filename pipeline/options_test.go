package pipeline

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/diffuse-go/diffuse/tensor"
	"github.com/diffuse-go/diffuse/tensor/gemm"
)

// TestOptionsApply checks that Apply sets every package setting, that the
// zero Options restore the defaults, and that invalid options are refused
// with an error naming the field, changing nothing.
func TestOptionsApply(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() {
		runtime.GOMAXPROCS(procs)
		if err := (Options{}).Apply(); err != nil {
			t.Error(err)
		}
	})
	o := Options{Threads: 1, PackCacheMB: PackCache(0), Winograd: tensor.WinogradAll,
		BF16: gemm.BF16Round, Stream: gemm.StreamOff, ConvInPlace: true, Int8: true}
	if err := o.Apply(); err != nil {
		t.Fatal(err)
	}
	check := func(what string, threads int, budget int64, w tensor.WinogradMode, bf gemm.BF16Mode, st gemm.StreamMode, inPlace bool) {
		t.Helper()
		gotBudget := tensor.SetPackCacheBudget(0)
		tensor.SetPackCacheBudget(gotBudget)
		gotW := tensor.SetWinograd(tensor.WinogradAuto)
		tensor.SetWinograd(gotW)
		gotIP := tensor.SetConvInPlace(false)
		tensor.SetConvInPlace(gotIP)
		// Int8 goes with ConvInPlace in these cases: both on, or both off.
		gotI8 := tensor.SetInt8(false)
		tensor.SetInt8(gotI8)
		if runtime.GOMAXPROCS(0) != threads || gotBudget != budget || gotW != w || gemm.CurrentBF16Mode() != bf ||
			gemm.CurrentStreamMode() != st || gotIP != inPlace || gotI8 != inPlace {
			t.Errorf("%s: threads %d, budget %d, winograd %v, bf16 %v, stream %v, in place %v, int8 %v; want %d, %d, %v, %v, %v, %v (both)",
				what, runtime.GOMAXPROCS(0), gotBudget, gotW, gemm.CurrentBF16Mode(), gemm.CurrentStreamMode(), gotIP, gotI8,
				threads, budget, w, bf, st, inPlace)
		}
	}
	check("applied", 1, 0, tensor.WinogradAll, gemm.BF16Round, gemm.StreamOff, true)
	for _, c := range []struct {
		o     Options
		field string
	}{
		{Options{Threads: -1}, "Threads"},
		{Options{PackCacheMB: PackCache(-1)}, "PackCacheMB"},
		{Options{Winograd: 7}, "Winograd"},
		{Options{BF16: 9}, "BF16"},
		{Options{Stream: 5}, "Stream"},
	} {
		if err := c.o.Apply(); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%+v: error %v, want one naming %s", c.o, err, c.field)
		}
		check("after refused "+c.field, 1, 0, tensor.WinogradAll, gemm.BF16Round, gemm.StreamOff, true)
	}
	if err := (Options{}).Apply(); err != nil {
		t.Fatal(err)
	}
	check("zero Options", 1, tensor.DefaultPackCacheMB<<20, tensor.WinogradAuto, gemm.BF16Off, gemm.StreamAuto, false)
}

// TestLibraryReadsNoEnvironment checks that no library package reads
// environment variables: settings are Options (and the package setters),
// which only the command (cmd/) maps from DIFFUSE_* variables. Test files
// and internal/golden (the golden harness) may read them.
func TestLibraryReadsNoEnvironment(t *testing.T) {
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case "cmd", "golden", filepath.Join("internal", "golden"), "scripts":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, call := range []string{"os.Getenv(", "os.LookupEnv(", "os.Environ("} {
			if strings.Contains(string(b), call) {
				t.Errorf("%s calls %s", rel, call)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
