// Package goldentest runs every golden reference case (golden/, or the folder
// named by DIFFUSE_GOLDEN_DIR) through the runner registered for its class;
// a case whose class has no runner fails. Each model family registers its
// runner in a _test.go file of this package.
//
// Runners are generic: prompts (a string or a list, empty ones, any batch),
// sizes, step counts, scheduler variants, sub-case prefixes, components and
// sibling cases all come from the case's case.json and io.safetensors, so
// that the same runners check case folders made with other arguments.
// TestGoldenVariants derives such folders from the cases here (renamed
// sub-cases and components, subsets of variants) to keep them honest.
package goldentest
