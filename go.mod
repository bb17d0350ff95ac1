module github.com/diffuse-go/diffuse

go 1.26
