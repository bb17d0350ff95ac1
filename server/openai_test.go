package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
)

type openAIResp struct {
	Created int64 `json:"created"`
	Data    []struct {
		B64  string `json:"b64_json"`
		URL  string `json:"url"`
		Text string `json:"revised_prompt"`
	} `json:"data"`
	Error *struct {
		Message, Type, Code string
		Param               *string
	} `json:"error"`
}

func TestOpenAIGenerations(t *testing.T) {
	_, ts := newTestServer(t, nil)
	var r openAIResp
	code := call(t, "POST", ts.URL+"/v1/images/generations", map[string]any{"prompt": "a fox", "model": "dall-e-3", "n": 2, "size": "64x64", "response_format": "b64_json", "quality": "low", "steps": 1}, &r)
	if code != 200 || len(r.Data) != 2 || r.Created == 0 || r.Data[0].B64 == "" {
		t.Fatalf("b64_json: %d %+v", code, r)
	}
	if b := decodePNG(t, r.Data[1].B64).Bounds(); b.Dx() != 64 {
		t.Errorf("size %v", b)
	}
	// url: served by the server, as PNG or JPEG.
	for _, format := range []string{"png", "jpeg"} {
		var u openAIResp
		call(t, "POST", ts.URL+"/v1/images/generations", map[string]any{"prompt": "a fox", "model": "tiny-sd", "size": "64x64", "response_format": "url", "output_format": format, "steps": 1}, &u)
		if len(u.Data) != 1 || u.Data[0].URL == "" {
			t.Fatalf("url: %+v", u)
		}
		resp, err := http.Get(u.Data[0].URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/"+format || len(body) < 100 {
			t.Errorf("%s url: %d %s %d bytes", format, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	var models struct {
		Object string
		Data   []struct{ ID, Object string }
	}
	call(t, "GET", ts.URL+"/v1/models", nil, &models)
	if models.Object != "list" || len(models.Data) != 1 || models.Data[0].ID != "tiny-sd" || models.Data[0].Object != "model" {
		t.Errorf("models %+v", models)
	}
}

func TestOpenAIErrors(t *testing.T) {
	_, ts := newTestServer(t, nil)
	for _, c := range []struct {
		name string
		body any
		code int
		err  string
	}{
		{"no prompt", map[string]any{"size": "64x64"}, 400, "missing_prompt"},
		{"n", map[string]any{"prompt": "x", "n": 100}, 400, "too_many_images"},
		{"size", map[string]any{"prompt": "x", "size": "big"}, 400, "invalid_size"},
		{"format", map[string]any{"prompt": "x", "response_format": "gif"}, 400, "invalid_response_format"},
		{"webp", map[string]any{"prompt": "x", "output_format": "webp"}, 400, "invalid_output_format"},
		{"quality", map[string]any{"prompt": "x", "quality": "ultra"}, 400, "invalid_quality"},
		{"model", map[string]any{"prompt": "x", "model": "../tiny-sd"}, 404, "model_not_found"},
		{"json", "[", 400, "bad_json"},
	} {
		var r openAIResp
		code := call(t, "POST", ts.URL+"/v1/images/generations", c.body, &r)
		if code != c.code || r.Error == nil || r.Error.Code != c.err || r.Error.Message == "" || r.Error.Type != "invalid_request_error" {
			t.Errorf("%s: %d %+v, want %d %s", c.name, code, r.Error, c.code, c.err)
		}
	}
}

// multipartEdit builds an edits request: files by field name, then fields.
func multipartEdit(t *testing.T, url string, files map[string][]byte, fields map[string]string) (int, openAIResp) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for k, v := range files {
		fw, _ := mw.CreateFormFile(k, k+".png")
		fw.Write(v)
	}
	mw.Close()
	resp, err := http.Post(url, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r openAIResp
	json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

func pngBytes(w, h int, alpha bool) []byte {
	b, _ := base64.StdEncoding.DecodeString(pngB64(w, h, alpha))
	return b
}

func TestOpenAIEdits(t *testing.T) {
	_, ts := newTestServer(t, nil)
	url := ts.URL + "/v1/images/edits"
	fields := map[string]string{"prompt": "a hat", "response_format": "b64_json", "size": "64x64"}
	for _, c := range []struct {
		name  string
		files map[string][]byte
		code  int
		err   string
	}{
		{"mask", map[string][]byte{"image": pngBytes(64, 64, false), "mask": pngBytes(64, 64, true)}, 200, ""},
		{"no mask", map[string][]byte{"image[]": pngBytes(64, 64, false)}, 200, ""},
		{"transparent image", map[string][]byte{"image": pngBytes(64, 64, true)}, 200, ""},
		{"no image", map[string][]byte{}, 400, "missing_image"},
		{"mask size", map[string][]byte{"image": pngBytes(64, 64, false), "mask": pngBytes(32, 32, true)}, 400, "invalid_mask"},
		{"not an image", map[string][]byte{"image": []byte("hello")}, 400, "bad_image"},
	} {
		code, r := multipartEdit(t, url, c.files, fields)
		if code != c.code || c.code == 200 && (len(r.Data) != 1 || r.Data[0].B64 == "") || c.code != 200 && (r.Error == nil || r.Error.Code != c.err) {
			t.Errorf("%s: %d %+v", c.name, code, r)
			continue
		}
		if c.code == 200 {
			if _, err := png.Decode(bytes.NewReader(must64(r.Data[0].B64))); err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	}
	// A JSON body is not a form.
	var r openAIResp
	if code := call(t, "POST", url, map[string]any{"prompt": "x"}, &r); code != 400 || r.Error == nil || r.Error.Code != "invalid_multipart" {
		t.Errorf("json edits: %d %+v", code, r.Error)
	}
}

func must64(s string) []byte {
	b, _ := base64.StdEncoding.DecodeString(s)
	return b
}
