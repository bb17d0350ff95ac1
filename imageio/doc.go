// Package imageio handles images on disk and their conversion to and from
// the float slices the pipelines use: PNG files with text metadata (the
// A1111 "parameters" chunk), loading PNG and JPEG inputs, PIL-compatible
// Lanczos resizing, and the Canny edge map used to condition ControlNet.
// It uses the standard library only.
//
// Where diffusers or A1111 define the arithmetic (PIL's resize and "L"
// conversion, NumPy's rounding, OpenCV's Canny, A1111's infotext), this
// package reproduces it byte for byte; testdata/gen_ref.py regenerates the
// reference outputs the tests compare against.
package imageio
