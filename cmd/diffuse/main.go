// Command diffuse generates images with diffusion models and measures the
// engine's speed. Run "diffuse help" for the subcommands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
)

const usage = `diffuse: diffusion models in Go

Usage:
  diffuse generate [flags]   generate images (diffuse generate -h for flags); without -m,
                             the built-in toy model: diffuse generate -p "a red circle on the left"
  diffuse eval [flags]       score a toy model's images per attribute (colour, position, shape, size)
  diffuse train-toy [flags]  train the built-in toy model from scratch (diffuse train-toy -h)
  diffuse toy-data -o DIR    write captioned toy-world images (DreamBooth instances, ControlNet sets)
  diffuse train [flags]      fine-tune SD/SDXL: DreamBooth LoRA, LoRA (+ text encoders) or ControlNet (diffusers' flags)
  diffuse plot LOG -o PNG    draw the loss curve of a training log
  diffuse serve [flags]      serve the A1111 and OpenAI image APIs and a web page (diffuse serve -h)
  diffuse worker [flags]     take jobs from a server's NATS queue (diffuse worker -h)
  diffuse bench [flags]      time the models with random full-size weights
  diffuse random-checkpoint  write a full-size SD 1.5 checkpoint with random weights
  diffuse convert -i IN.safetensors -o OUT.gguf|OUT.safetensors --type q8_0|q6_k|q5_k|…|fp8
                             write a checkpoint as GGUF (q8_0 q6_k q5_k q5_1 q5_0 q4_k q4_1
                             q4_0 f16 bf16 f32) or fp8 safetensors (fp8, fp8-scaled)
  diffuse version            print the version
`

// version is set by the build (or stays "dev").
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err := configureMemory(); err != nil {
		fmt.Fprintln(os.Stderr, "diffuse:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch os.Args[1] {
	case "generate", "gen":
		err = runGenerate(ctx, os.Args[2:])
	case "eval":
		err = runEval(ctx, os.Args[2:])
	case "toy-data":
		err = runToyData(os.Args[2:], os.Stderr)
	case "train-toy":
		err = runTrainToy(ctx, os.Args[2:])
	case "train":
		err = runTrain(ctx, os.Args[2:])
	case "plot":
		err = runPlot(os.Args[2:])
	case "serve":
		err = runServe(ctx, os.Args[2:])
	case "worker":
		err = runWorker(ctx, os.Args[2:])
	case "bench":
		err = runBench(ctx, os.Args[2:])
	case "random-checkpoint":
		err = runRandomCheckpoint(ctx, os.Args[2:])
	case "convert":
		err = runConvert(os.Args[2:])
	case "version":
		fmt.Println("diffuse", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "diffuse: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "diffuse:", err)
		os.Exit(1)
	}
}
