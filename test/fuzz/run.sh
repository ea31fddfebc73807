#!/usr/bin/env bash
# make fuzz: builds the libFuzzer targets of the pure C parts with clang
# (AddressSanitizer and UndefinedBehaviorSanitizer on) and runs each for
# SECONDS (default 60), starting from the corpus in test/fuzz/corpus/NAME
# (kept between runs, not in git).  A crash leaves its input as
# test/fuzz/out/crash-* and fails the target.
#
#   test/fuzz/run.sh [SECONDS] [TARGET ...]     targets: detect png chart jwt sketch
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tree="$(cd "$here/../.." && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(detect png chart jwt sketch)

bash "$tree/test/setup.sh" clang libclang-rt-dev
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
CC="${FUZZ_CC:-clang}"
FLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
	-fno-sanitize-recover=undefined -I"$tree/src")
GD=($(pkg-config --cflags --libs gdlib fontconfig))

out="$here/out"
mkdir -p "$out"
build() {
	local name="$1"
	shift
	"$CC" "${FLAGS[@]}" "$here/fuzz_$name.c" "$@" -lm -o "$out/fuzz_$name" \
		>"$out/$name.build.log" 2>&1 || { cat "$out/$name.build.log"; exit 1; }
}

status=0
for t in "${targets[@]}"; do
	case "$t" in
		detect)
			build detect -I"$("$PG_CONFIG" --includedir-server)" "$tree/src/detect.c" "$tree/src/detect_robust.c" "$tree/src/order_stat.c" "$here/pg_stubs.c" ;;
		png)
			build png "$tree/src/chart_png.c" "$tree/src/chart_png_palette.c" "$tree/src/chart_png_rgb.c" "${GD[@]}" ;;
		chart)
			build chart "$tree/src/chart.c" "$tree/src/chart_text.c" "$tree/src/chart_line.c" \
				"$tree/src/chart_scale.c" "$tree/src/chart_png.c" "$tree/src/chart_png_palette.c" \
				"$tree/src/chart_png_rgb.c" "${GD[@]}" ;;
		jwt)
			build jwt "$tree/src/jwt.c" "$tree/src/sha2.c" ;;
		sketch)
			build sketch -I"$("$PG_CONFIG" --includedir-server)" "$tree/src/sketch.c" "$here/pg_stubs.c" ;;
		*)
			echo "fuzz: unknown target $t" >&2
			exit 2 ;;
	esac
	mkdir -p "$here/corpus/$t"
	echo "fuzz: $t for ${seconds}s"
	if (cd "$out" && LSAN_OPTIONS="suppressions=$here/lsan.supp" ./fuzz_"$t" -max_total_time="$seconds" -max_len=8192 \
		-print_final_stats=1 "$here/corpus/$t" >"$out/$t.log" 2>&1); then
		echo "fuzz: $t ok: $(grep -E '^stat::number_of_executed_units' "$out/$t.log" | awk '{print $2}') runs, no crash"
	else
		echo "fuzz: $t FAILED"
		grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x' "$out/$t.log" | head -n 20
		status=1
	fi
done
exit $status
