package imageio

import "testing"

func BenchmarkToNCHWDownscale(b *testing.B) {
	src := pattern(1536, 1536)
	for b.Loop() {
		if _, err := ToNCHW(src, 512, 512); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCanny512(b *testing.B) {
	src := shapes(512, 512)
	for b.Loop() {
		Canny(src, 100, 200)
	}
}
