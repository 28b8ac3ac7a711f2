#!/usr/bin/env bash
# The ablation table of the shipped model on CoNLL-2003 valid: the shipped
# configuration, then each part removed (or one idea added) in turn, each a
# full `fastner train` run with seed 0. Scores are dev (valid) entity F1 of the
# best epoch; test is never read.
#
#   benchmarks/ablation.sh [NAME ...]      # all rows, or only the named ones
# Models and logs go to runs/ablation/; the table to runs/ablation/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/conll2003}
OUT=runs/ablation
mkdir -p "$OUT"
AFFIX=caps:5,suffix3:10,prefix3:10,shape:5
declare -A ARGS=(
  [shipped]="--features $AFFIX --word-dropout 0.1"
  [no_crf]="--features $AFFIX --word-dropout 0.1 --loss softmax"
  [no_affix_shape]="--features caps:5 --word-dropout 0.1"
  [no_caps]="--features suffix3:10,prefix3:10,shape:5 --word-dropout 0.1"
  [no_word_dropout]="--features $AFFIX"
  [no_lr_decay]="--features $AFFIX --word-dropout 0.1 --lr-decay 1.0"
  [no_glove]="--features $AFFIX --word-dropout 0.1 --glove-words 0"
  [glove_100k]="--features $AFFIX --word-dropout 0.1 --glove-words 100000"
  [plus_doccase]="--features $AFFIX,doccase:5 --word-dropout 0.1"
  [plus_dropout]="--features $AFFIX --word-dropout 0.1 --dropout 0.2"
  [hardtanh]="--features $AFFIX --word-dropout 0.1 --activation hardtanh"
)
ORDER=(shipped no_crf no_affix_shape no_caps no_word_dropout no_lr_decay no_glove glove_100k
       plus_doccase plus_dropout hardtanh)
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=("${ORDER[@]}")
for name in "${NAMES[@]}"; do
  # shellcheck disable=SC2086
  OPENBLAS_NUM_THREADS=1 .venv/bin/fastner train --train "$DATA/train.txt" --dev "$DATA/valid.txt" \
      --out "$OUT/$name.npz" --quiet ${ARGS[$name]} 2> "$OUT/$name.log"
done
{
  echo "| configuration | arguments | dev F1 | best epoch |"
  echo "| --- | --- | ---: | ---: |"
  for name in "${ORDER[@]}"; do
    [ -f "$OUT/$name.json" ] || continue
    python3 -c "import json,sys; c=json.load(open('$OUT/$name.json')); print(f\"| $name | \`${ARGS[$name]}\` | {c['dev']['f1']:.2f} | {c['best_epoch']} |\")"
  done
} | tee "$OUT/table.md"
