package server

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds a Chromium or Chrome binary; without one the page test
// is skipped, unless DIFFUSE_REQUIRE_CHROMIUM=1 (set by .ci/run after it
// installs Chromium) makes that a failure.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("DIFFUSE_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("no Chromium found and DIFFUSE_REQUIRE_CHROMIUM=1")
	}
	t.Skip("no Chromium: apt-get install chromium")
	return ""
}

// TestWebPage drives the page in headless Chromium: it fills the form,
// generates, sees the progress and the preview, finds the image and its
// parameters in the gallery, then drops that PNG on the page and reads
// its parameters back.
func TestWebPage(t *testing.T) {
	bin := chromium(t)
	fm := &fakeModel{delay: 60 * time.Millisecond}
	_, ts := newTestServer(t, func(c *Config) { c.Open = fakeOpen(fm) })
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.Headless,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	do := func(name string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if _, err := chromedp.Run(ctx, a); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	poll := func(name, expr string, timeout time.Duration) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(10*time.Millisecond))); err != nil {
			t.Fatalf("waiting for %s: %v", name, err)
		}
	}
	do("navigate", chromedp.Navigate(ts.URL+"/"))
	do("page", chromedp.WaitVisible("#generate"))
	poll("the pickers", `document.getElementById("status").textContent === "ready"`, 10*time.Second)
	for sel, v := range map[string]string{"#prompt": "a red fox in snow", "#steps": "8", "#width": "64", "#height": "64", "#seed": "42"} {
		do("set "+sel, chromedp.SetValue(sel, v))
	}
	do("generate", chromedp.Click("#generate"))
	// Progress: the bar moves and the preview shows before the end.
	poll("progress", `document.getElementById("progress").value > 0 && document.getElementById("progress").value < 1 && !document.getElementById("preview").hidden`, 20*time.Second)
	progressText := text("#progresstext")
	do("gallery", chromedp.WaitVisible("#gallery .item img"))
	poll("the image", `document.querySelector("#gallery .item img").naturalWidth > 0`, 10*time.Second)
	natural, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelector("#gallery .item img").naturalWidth`))
	if err != nil {
		t.Fatal(err)
	}
	params := text("#gallery .item .params")
	status := text("#status")
	// Drop the generated PNG back on the page.
	_, err = chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](`(async () => {
		const img = document.querySelector("#gallery .item img");
		const blob = await (await fetch(img.src)).blob();
		const dt = new DataTransfer();
		dt.items.add(new File([blob], "image.png", {type: "image/png"}));
		document.getElementById("prompt").value = "";
		document.getElementById("dropzone").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	poll("png-info", `document.getElementById("pnginfo").textContent.length > 0`, 10*time.Second)
	info := text("#pnginfo")
	if !strings.Contains(progressText, "step") || natural != 64 || status != "done" {
		t.Errorf("progress %q, image width %d, status %q", progressText, natural, status)
	}
	if !strings.Contains(params, "a red fox in snow") || !strings.Contains(params, "Seed: 42") {
		t.Errorf("gallery parameters %q", params)
	}
	prompt, err := chromedp.Run(ctx, chromedp.Value("#prompt"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(info, "Seed: 42") || prompt != "a red fox in snow" {
		t.Errorf("dropped PNG: info %q, prompt filled %q", info, prompt)
	}
}
