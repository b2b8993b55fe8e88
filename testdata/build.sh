#!/usr/bin/env bash
# Rebuilds every job module under testdata/ from its source.
#
#   testdata/build.sh           rebuild in place
#   testdata/build.sh --check   rebuild into a temp dir and compare with the
#                               checked-in .wasm files; exit 1 on any difference
#
# Runs from any working directory. Needs Go (GOOS=wasip1 GOARCH=wasm) and
# wat2wasm from wabt; installs wabt with apt-get if wat2wasm is missing.
#
# Output is deterministic for a given Go toolchain and wabt version: WAT is
# built with --debug-names (so traps show function names), Go with -trimpath,
# -buildvcs=false (no commit hash in the binary) and -ldflags="-s -w".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

check=false
case "${1:-}" in
"") ;;
--check) check=true ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

need_wat2wasm() {
	command -v wat2wasm >/dev/null 2>&1 && return 0
	echo "build.sh: wat2wasm not found; installing wabt with apt-get" >&2
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	if ! { $sudo apt-get update -qq && $sudo apt-get install -y -qq wabt; } >&2; then
		echo "build.sh: could not install wabt. Install it yourself (Debian/Ubuntu: apt-get install wabt;" >&2
		echo "          macOS: brew install wabt; or https://github.com/WebAssembly/wabt/releases) and rerun." >&2
		exit 1
	fi
	command -v wat2wasm >/dev/null 2>&1 || { echo "build.sh: wabt installed but wat2wasm still not on PATH" >&2; exit 1; }
}

# build OUT: writes every module to OUT/<same relative path as in testdata>.
build() {
	local out="$1" src rel dir name
	need_wat2wasm
	while IFS= read -r src; do
		rel="${src#"$here"/}"
		mkdir -p "$out/$(dirname "$rel")"
		wat2wasm --debug-names "$src" -o "$out/${rel%.wat}.wasm"
	done < <(find "$here" -name '*.wat' | LC_ALL=C sort)

	# A Component Model preamble (layer 1, version 0x0d): not a core module.
	mkdir -p "$out/hostile"
	printf '\000asm\015\000\001\000' >"$out/hostile/component.wasm"

	# Go modules: testdata/<name>/main.go -> testdata/<name>/<name>.wasm.
	# Built by explicit path from the repository's own module, so they can
	# import github.com/gridnode/gridnode/sdk/guest without a nested go.mod.
	while IFS= read -r src; do
		dir="$(dirname "$src")"
		name="$(basename "$dir")"
		rel="${dir#"$here"/}"
		mkdir -p "$out/$rel"
		(cd "$root" && GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOFLAGS= \
			go build -trimpath -buildvcs=false -ldflags="-s -w" \
			-o "$out/$rel/$name.wasm" "./testdata/$rel")
	done < <(find "$here" -mindepth 2 -maxdepth 2 -name main.go | LC_ALL=C sort)
}

if ! $check; then
	build "$here"
	echo "build.sh: rebuilt $(find "$here" -name '*.wasm' | wc -l) modules in $here"
	exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
build "$tmp"
status=0
while IFS= read -r f; do
	rel="${f#"$tmp"/}"
	if [ ! -f "$here/$rel" ]; then
		echo "missing: $rel (source exists, binary not checked in)"
		status=1
	elif ! cmp -s "$f" "$here/$rel"; then
		echo "differs: $rel"
		status=1
	fi
done < <(find "$tmp" -name '*.wasm' | LC_ALL=C sort)
while IFS= read -r f; do
	rel="${f#"$here"/}"
	if [ ! -f "$tmp/$rel" ]; then
		echo "stale:   $rel (no source builds it)"
		status=1
	fi
done < <(find "$here" -name '*.wasm' | LC_ALL=C sort)
if [ "$status" -eq 0 ]; then
	echo "build.sh --check: all modules match their sources"
else
	echo "build.sh --check: rebuild with testdata/build.sh (same Go and wabt versions) and commit the result" >&2
fi
exit "$status"
