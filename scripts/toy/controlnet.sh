#!/bin/sh
# A placement ControlNet for the built-in toy model: trained (diffuse train
# --method controlnet, the UNet frozen) on shapes placed anywhere, with
# captions that leave the position out and a mask of the shape as the
# condition; then measured: how far generated shapes land from where their
# masks say, with the ControlNet and without it. Run from the repository
# root; writes into $OUT.
set -eu
OUT=${OUT:-toy-controlnet}
STEPS=${STEPS:-600}
LR=${LR:-1e-3}
go build -o "$OUT/diffuse" ./cmd/diffuse
D="$OUT/diffuse"
$D toy-data -o "$OUT/data" -n 4000 -free -masks -seed 3
$D train --method controlnet --pretrained_model_name_or_path builtin --train_data_dir "$OUT/data" \
  --resolution 32 --train_batch_size 16 --max_train_steps "$STEPS" --learning_rate "$LR" \
  --proportion_empty_prompts 0.1 --seed 1 --checkpointing_steps 300 --output_dir "$OUT/controlnet"
$D eval -attributes=false -controlnet "$OUT/controlnet" -placements 60
