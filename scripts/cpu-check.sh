#!/usr/bin/env bash
# Check diffuse on another x86-64 machine (an AVX-512 CPU, say) that has no
# Go toolchain: build every package's test binary here, copy one folder
# there, run it there.
#
#   scripts/cpu-check.sh build DIR    # here: test binaries, diffuse, the
#                                     # OpenBLAS libraries and run.sh into DIR
#   DIR/run.sh REPO OUT [quick]       # there: REPO is a checkout of this
#                                     # repository (tests read their package
#                                     # folders), OUT receives the logs
#
# run.sh runs every package's tests (with the golden cases under
# $DIFFUSE_GOLDEN_DIR or REPO/golden), then, unless quick, the kernel
# benchmarks (micro-kernels alone, GEMM against OpenBLAS at 1 and 2 threads,
# bf16 against float32, convolutions at 1 and 2 threads) and an SD 1.5
# timing. OpenBLAS 0.3.21 may not recognise newer CPUs and fall back to a
# generic kernel: set OPENBLAS_CORETYPE (SkylakeX for AVX-512) there.
set -euo pipefail

cmd=${1:?usage: $0 build DIR}
[ "$cmd" = build ] || { echo "usage: $0 build DIR" >&2; exit 2; }
D=${2:?usage: $0 build DIR}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$D/lib"
cd "$REPO"
tags=""
if [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ]; then
	tags="-tags openblas"
	cp -L /usr/lib/x86_64-linux-gnu/libopenblas.so.0 /usr/lib/x86_64-linux-gnu/libgfortran.so.5 \
		/usr/lib/x86_64-linux-gnu/libquadmath.so.0 "$D/lib/"
fi
for p in $(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do
	rel=${p#github.com/diffuse-go/diffuse}
	rel=${rel#/}
	n=$(echo "${rel:-root}" | tr / _)
	t=""
	[ "$rel" = tensor/gemm ] && t=$tags
	go test -c $t -ldflags='-s -w' -o "$D/$n.test" "./$rel"
done
go build -ldflags='-s -w' -o "$D/diffuse" ./cmd/diffuse
cat > "$D/run.sh" <<'RUN'
#!/usr/bin/env bash
# See scripts/cpu-check.sh in the diffuse repository.
B=$(cd "$(dirname "$0")" && pwd)
R=${1:?usage: run.sh REPO OUT [quick]}
O=${2:?usage: run.sh REPO OUT [quick]}
mkdir -p "$O"
export LD_LIBRARY_PATH=$B/lib DIFFUSE_GOLDEN_DIR=${DIFFUSE_GOLDEN_DIR:-$R/golden}
{
	lscpu | grep -E 'Model name|Core|Thread|L2|L3'
	grep -m1 ^flags /proc/cpuinfo | tr ' ' '\n' | grep -E 'avx|fma|amx' | tr '\n' ' '
	echo
	for t in "$B"/*.test; do
		n=$(basename "$t" .test)
		(cd "$R/$(echo "$n" | tr _ /)" && timeout 300 "$t" -test.count=1 -test.v >"$O/test-$n.log" 2>&1)
		echo "$n rc=$? pass=$(grep -c -- '--- PASS' "$O/test-$n.log") skip=$(grep -c -- '--- SKIP' "$O/test-$n.log") fail=$(grep -c -- '--- FAIL' "$O/test-$n.log")"
	done
	[ "${3:-}" = quick ] && exit 0
	cd "$R/tensor/gemm"
	"$B/tensor_gemm.test" -test.run '^$' -test.bench 'Peak|Kernel|GemmBF16|VsOpenBLAS' -test.benchtime 1x
	cd "$R/tensor"
	for c in 1 2; do
		GOMAXPROCS=$c "$B/tensor.test" -test.run '^$' -test.bench 'Conv2d' -test.benchtime 3x
	done
	timeout 300 "$B/diffuse" bench -threads 2 -steps 1
} 2>&1 | tee "$O/run.log"
RUN
chmod +x "$D/run.sh"
echo "built into $D: copy it, with a checkout of this repository, to the other machine"
