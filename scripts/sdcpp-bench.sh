#!/usr/bin/env bash
# Side-by-side CPU timing: diffuse (pure Go) vs stable-diffusion.cpp (ggml).
# Same checkpoint file, same size/steps/sampler/CFG/threads/seed.
#
# SDCPP_DIR is a folder with bin/sd-cli (and optionally bin/sd-cli-llamafile,
# a build with -DGGML_LLAMAFILE=ON), bin/diffuse and the model file; results
# go to $SDCPP_DIR/results. Build sd.cpp with
#   cmake -S src -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON && cmake --build build --target sd-cli
# and write the model with `diffuse random-checkpoint -kind sd15 -o $SDCPP_DIR/sd15-random.safetensors`.
#
# Run on a QUIET machine:   SDCPP_DIR=/work/sdcpp scripts/sdcpp-bench.sh
# Quick functional check:   SIZE=64 STEPS=2 SDCPP_DIR=/work/sdcpp scripts/sdcpp-bench.sh
#
# Knobs (env):
#   SIZE=512 STEPS=3 CFG=7 SAMPLER=euler THREADS=2 SEED=42 REPEAT=1
#   MODEL=$SDCPP_DIR/sd15-random.safetensors
#   SD_VARIANTS="default llamafile llamafile-fa"   which sd.cpp runs to do:
#       default      sd-cli as sd.cpp builds it (GGML_LLAMAFILE=OFF, no flash attention)
#       llamafile    sd-cli-llamafile (ggml built with GGML_LLAMAFILE=ON: tinyBLAS f16 GEMM)
#       fa / llamafile-fa   the same plus --diffusion-fa (flash attention in the UNet)
#   DIFFUSE_RUNS="generate bench"   which diffuse runs to do
#   SD_MODEL_ARGS="-m $MODEL"        how sd-cli is given the model (FLUX: --diffusion-model F.gguf
#                                    --clip_l C --t5xxl T --vae V); words split on spaces
#   DIFFUSE_MODEL_ARGS="-m $MODEL"   the same for diffuse generate (FLUX: -m F.gguf --component ...)
#   SCHEDULER=discrete   sd.cpp's --scheduler
#   NICE=0   set e.g. NICE=19 to run everything under nice (functional checks)
#   REBUILD_DIFFUSE=1   rebuild bin/diffuse from this repository first (records HEAD + dirty state)
#   SDCPP_VERSION="..."  what to record as the sd.cpp/ggml commits
# NOTE: with -t 2 on this 2-core box, ggml's OpenMP threads spin on barriers and
# collapse (5-10x slower) if ANY other process is running: timings are only
# meaningful on an idle machine (see the loadavg warning).
set -euo pipefail

D=${SDCPP_DIR:?set SDCPP_DIR to the folder holding bin/sd-cli, bin/diffuse and the model}
REPO=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${SIZE:-512}
STEPS=${STEPS:-3}
CFG=${CFG:-7}
SAMPLER=${SAMPLER:-euler}
THREADS=${THREADS:-2}
SEED=${SEED:-42}
REPEAT=${REPEAT:-1}
MODEL=${MODEL:-$D/sd15-random.safetensors}
PROMPT=${PROMPT:-"a lighthouse at dusk"}
SD_VARIANTS=${SD_VARIANTS-"default llamafile llamafile-fa"} # empty: diffuse only
SD_MODEL_ARGS=${SD_MODEL_ARGS:-"-m $MODEL"}
DIFFUSE_MODEL_ARGS=${DIFFUSE_MODEL_ARGS:-"-m $MODEL"}
SCHEDULER=${SCHEDULER:-discrete}
DIFFUSE_RUNS=${DIFFUSE_RUNS:-"generate bench"}
NICE=${NICE:-0}
SD_BIN=$D/bin/sd-cli
SD_BIN_LF=$D/bin/sd-cli-llamafile
DIFFUSE=$D/bin/diffuse
TIME=/usr/bin/time

# REBUILD_DIFFUSE=1: rebuild bin/diffuse from this repository's current tree first.
if [ "${REBUILD_DIFFUSE:-0}" = 1 ]; then
  (cd "$REPO" && nice -n 19 go build -o "$DIFFUSE" ./cmd/diffuse)
  { echo "built $(date -Is) from $REPO HEAD $(git -C "$REPO" rev-parse HEAD)";
    if git -C "$REPO" diff --quiet HEAD; then echo "clean tree";
    else echo "dirty tree: diff sha1 $(git -C "$REPO" diff HEAD | sha1sum | cut -c1-12), $(git -C "$REPO" diff --shortstat HEAD)"; fi; } > "$DIFFUSE.version"
fi

for f in "$MODEL" "$SD_BIN" "$DIFFUSE" "$TIME"; do
  [ -e "$f" ] || { echo "missing $f" >&2; exit 1; }
done

OUT=$D/results/$(date +%Y%m%d-%H%M%S)-${SIZE}px-${STEPS}steps
mkdir -p "$OUT"
run() { if [ "$NICE" != 0 ]; then nice -n "$NICE" "$@"; else "$@"; fi; }

{
  echo "date: $(date -Is)"
  echo "host: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "settings: SIZE=$SIZE STEPS=$STEPS CFG=$CFG SAMPLER=$SAMPLER THREADS=$THREADS SEED=$SEED REPEAT=$REPEAT NICE=$NICE"
  echo "model: $MODEL ($(stat -c %s "$MODEL") bytes)"
  echo "sd.cpp model args: $SD_MODEL_ARGS"
  echo "diffuse model args: $DIFFUSE_MODEL_ARGS"
  echo "sd.cpp: ${SDCPP_VERSION:-unrecorded (set SDCPP_VERSION)}"
  echo "diffuse binary: $(tr '\n' ';' < "$DIFFUSE.version" 2>/dev/null || echo "built $(stat -c %y "$DIFFUSE"), source unrecorded")"
} | tee "$OUT/env.txt"
load1=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="$load1" 'BEGIN{exit !(l > 0.5)}'; then
  echo "WARNING: load average $load1 > 0.5 — machine is not quiet, timings will be noisy" | tee -a "$OUT/env.txt"
fi

# Page-cache the model once so neither engine pays for disk reads.
cat "$MODEL" > /dev/null

for r in $(seq 1 "$REPEAT"); do
  for v in $SD_VARIANTS; do
    bin=$SD_BIN; extra=()
    case $v in
      default) ;;
      fa) extra=(--diffusion-fa) ;;
      llamafile) bin=$SD_BIN_LF ;;
      llamafile-fa) bin=$SD_BIN_LF; extra=(--diffusion-fa) ;;
      *) echo "unknown sd.cpp variant $v" >&2; exit 1 ;;
    esac
    [ -x "$bin" ] || { echo "skip sd.cpp/$v: $bin missing" >&2; continue; }
    echo ">> sd.cpp/$v (run $r)" >&2
    run "$TIME" -v -o "$OUT/sdcpp-$v-$r.time" "$bin" $SD_MODEL_ARGS -p "$PROMPT" -n "" \
      -W "$SIZE" -H "$SIZE" --steps "$STEPS" --cfg-scale "$CFG" --sampling-method "$SAMPLER" \
      --scheduler "$SCHEDULER" -t "$THREADS" -s "$SEED" -v "${extra[@]}" \
      -o "$OUT/sdcpp-$v-$r.png" > "$OUT/sdcpp-$v-$r.log" 2>&1
  done
  for dr in $DIFFUSE_RUNS; do
    echo ">> diffuse $dr (run $r)" >&2
    case $dr in
      generate)
        GOMAXPROCS=$THREADS run "$TIME" -v -o "$OUT/diffuse-generate-$r.time" "$DIFFUSE" generate \
          $DIFFUSE_MODEL_ARGS -p "$PROMPT" -n "" -W "$SIZE" -H "$SIZE" --steps "$STEPS" --cfg-scale "$CFG" \
          --sampler "$SAMPLER" -t "$THREADS" -s "$SEED" -o "$OUT/diffuse-generate-$r.png" \
          > "$OUT/diffuse-generate-$r.log" 2>&1 ;;
      bench)
        GOMAXPROCS=$THREADS run "$TIME" -v -o "$OUT/diffuse-bench-$r.time" "$DIFFUSE" bench \
          -m "$MODEL" -size "$SIZE" -steps "$STEPS" -threads "$THREADS" \
          > "$OUT/diffuse-bench-$r.log" 2>&1 ;;
      *) echo "unknown diffuse run $dr" >&2; exit 1 ;;
    esac
  done
done

python3 - "$OUT" "$STEPS" <<'EOF' | tee "$OUT/table.txt"
import glob, os, re, sys
out, nsteps = sys.argv[1], int(sys.argv[2])

def timev(path):
    t = open(path).read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t)
    parts = [float(p) for p in m.group(1).split(":")]
    wall = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 2**20
    ok = re.search(r"Exit status: (\d+)", t)
    return wall, rss, (ok.group(1) if ok else "?")

def fnum(x, w=7):
    return f"{x:{w}.2f}" if isinstance(x, (int, float)) else f"{x or '-':>{w}}"

rows = []
for tf in sorted(glob.glob(os.path.join(out, "*.time"))):
    name = os.path.basename(tf)[:-5]
    log = open(tf[:-5] + ".log", errors="replace").read().replace("\r", "\n")
    wall, rss, rc = timev(tf)
    r = dict(name=name, wall=wall, rss=rss, rc=rc)
    if name.startswith("sdcpp"):
        r["load"] = sum(float(x) for x in re.findall(r"loading tensors completed, taking ([\d.]+)s", log))
        te = [int(x) for x in re.findall(r"computing condition graph completed, taking (\d+) ms", log)]
        r["text"] = sum(te) / 1000 if te else None
        r["text_note"] = "+".join(f"{x/1000:.2f}" for x in te)
        steps = []
        for k, n, val, unit in re.findall(r"\|\s*(\d+)/(\d+) - ([\d.]+)(s/it|it/s)", log):
            if int(n) == nsteps:
                steps.append((int(k), float(val) if unit == "s/it" else 1 / float(val)))
        st = [s for _, s in sorted(dict(steps).items())]
        m = re.search(r"sampling completed, taking ([\d.]+)s", log)
        r["sampling"] = float(m.group(1)) if m else None
        r["step1"] = st[0] if st else None
        r["step"] = (sum(st[1:]) / len(st[1:])) if len(st) > 1 else (st[0] if st else None)
        m = re.search(r"computing vae decode graph completed, taking ([\d.]+)s", log)
        r["vae"] = float(m.group(1)) if m else None
        m = re.search(r"generate_image completed in ([\d.]+)s", log)
        r["note"] = f"generate_image {m.group(1)}s; CLIP passes {r['text_note']}s" if m else "FAILED? see log"
    elif name.startswith("diffuse-generate"):
        m = re.search(r"loaded .* in ([\d.]+)s", log)
        r["load"] = float(m.group(1)) if m else None
        cum = {}
        for k, n, per in re.findall(r"(\d+)/(\d+) \[[#.]+\] ([\d.]+)s/it", log):
            if int(n) == nsteps:
                cum[int(k)] = float(per) * int(k)
        ks = sorted(cum)
        st = [cum[k] - cum.get(k - 1, 0.0) for k in ks]
        r["sampling"] = cum[ks[-1]] if ks else None
        r["step1"] = st[0] if st else None
        r["step"] = (sum(st[1:]) / len(st[1:])) if len(st) > 1 else (st[0] if st else None)
        if r["load"] is not None and r["sampling"] is not None:
            r["note"] = f"text+VAE+PNG+exit {wall - r['load'] - r['sampling']:.2f}s (not split by the CLI)"
    elif name.startswith("diffuse-bench"):
        def g(pat):
            m = re.search(pat + r"\s+([\d.]+) s", log)
            return float(m.group(1)) if m else None
        m = re.search(r"loaded in ([\d.]+)s", log)
        r["load"] = float(m.group(1)) if m else None
        r["text"] = g(r"text encoder 1 \(2×77 tokens\)")
        r["step1"] = g(r"unet first step \d+px \(packs weights\)")
        r["step"] = g(r"unet step \d+px \(CFG batch 2, median of \d+\)")
        r["vae"] = g(r"vae decode \d+px")
        r["note"] = "stage microbench: 1 + STEPS UNet steps; step = median"
    rows.append(r)

hdr = f"{'run':<26} {'wall':>7} {'load':>7} {'text':>7} {'step1':>7} {'step':>7} {'sampl':>7} {'vae':>7} {'RSS GiB':>7}  rc  notes"
print(hdr)
print("-" * len(hdr))
for r in rows:
    print(f"{r['name']:<26} {fnum(r['wall'])} {fnum(r.get('load'))} {fnum(r.get('text'))} {fnum(r.get('step1'))} "
          f"{fnum(r.get('step'))} {fnum(r.get('sampling'))} {fnum(r.get('vae'))} {fnum(r['rss'])}  {r['rc']:>2}  {r.get('note', '')}")
print()
print("seconds. wall = whole process (/usr/bin/time -v); load = weight loading; text = text-encoder compute for cond+uncond")
print("(sd.cpp: two batch-1 CLIP passes; diffuse bench: one 2x77 batch); step1 = first sampling step (diffuse packs")
print("the weights into its GEMM panel cache here); step = mean (sd.cpp, diffuse generate) or median (diffuse bench) of")
print(f"the later steps, each one CFG step = cond+uncond UNet evals (sd.cpp: two batch-1 passes; diffuse: one batch-2 pass);")
print("sampl = whole sampling loop; vae = VAE decode; RSS = peak resident set size.")
EOF
echo "logs: $OUT"
