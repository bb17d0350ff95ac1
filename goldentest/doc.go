// Package goldentest runs every golden reference case (golden/, or the folder
// named by DIFFUSE_GOLDEN_DIR) through the runner registered for its class.
// Each model family registers its runner in a _test.go file of this package.
package goldentest
