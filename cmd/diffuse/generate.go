package main

import (
	"context"
	"fmt"
)

func runGenerate(ctx context.Context, args []string) error {
	return fmt.Errorf("generate: not wired yet")
}
