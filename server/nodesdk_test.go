package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestOpenAINodeSDK runs the official OpenAI Node SDK against the server
// (testdata/openai-node/sdk.mjs): generations as b64_json and as URLs,
// an edit with a mask, and an error the SDK must raise with its status.
// It needs node and the SDK installed in testdata/openai-node (npm
// install; .ci/run does it); without them it skips, unless
// DIFFUSE_REQUIRE_NODE_SDK=1.
func TestOpenAINodeSDK(t *testing.T) {
	dir := filepath.Join("testdata", "openai-node")
	node, err := exec.LookPath("node")
	if _, serr := os.Stat(filepath.Join(dir, "node_modules", "openai")); err != nil || serr != nil {
		if os.Getenv("DIFFUSE_REQUIRE_NODE_SDK") == "1" {
			t.Fatal("node or the openai package missing and DIFFUSE_REQUIRE_NODE_SDK=1")
		}
		t.Skip("needs node and `npm install` in server/testdata/openai-node")
	}
	fm := &fakeModel{delay: time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm); c.APIKey = "sk-node" })
	tmp := t.TempDir()
	img, mask := filepath.Join(tmp, "image.png"), filepath.Join(tmp, "mask.png")
	os.WriteFile(img, pngBytes(64, 64, false), 0o644)
	os.WriteFile(mask, pngBytes(64, 64, true), 0o644)
	cmd := exec.Command(node, "sdk.mjs", ts.URL+"/v1", "sk-node", img, mask)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s\n%s", err, out, stderr.String())
	}
	got := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got[line["call"].(string)] = line
	}
	if g := got["generate"]; g == nil || g["n"] != 2.0 || g["b64"] != true {
		t.Errorf("generate: %v", g)
	}
	if u := got["url"]; u == nil || u["status"] != 200.0 || u["type"] != "image/png" {
		t.Errorf("url: %v", u)
	}
	if e := got["edit"]; e == nil || e["n"] != 1.0 || e["b64"] != true {
		t.Errorf("edit: %v", e)
	}
	if e := got["error"]; e == nil || e["caught"] != true || e["status"] != 400.0 || e["code"] != "too_many_images" || e["type"] != "invalid_request_error" {
		t.Errorf("error: %v", e)
	}
}
