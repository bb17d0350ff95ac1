module github.com/diffuse-go/diffuse

go 1.26.0

require (
	github.com/chromedp/chromedp v0.24.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/chromedp/cdproto v0.160.1 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
)
