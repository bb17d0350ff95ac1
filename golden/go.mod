// Package golden holds reference cases (data only). It is its own module so
// that its data stays out of the diffuse module zip.
module github.com/diffuse-go/diffuse/golden

go 1.26
