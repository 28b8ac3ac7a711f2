#!/usr/bin/env bash
# The ablation table of the shipped model on CoNLL-2003 valid: the shipped
# configuration (fastner train's defaults), then each part removed or one idea
# added, each a full `fastner train` run with seed 0. Scores are dev (valid) entity F1 of the
# best epoch; test is never read.
#
#   benchmarks/ablation.sh [NAME ...]      # all rows, or only the named ones
# Models and logs go to runs/ablation/; the table to runs/ablation/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/conll2003}
OUT=runs/ablation
mkdir -p "$OUT"
AFFIX=suffix3:10,prefix3:10,shape:5
declare -A ARGS=(
  [shipped]=""
  [no_crf]="--loss softmax"
  [no_caps]="--features none"
  [no_word_dropout]="--word-dropout 0"
  [no_lr_decay]="--lr-decay 1.0"
  [no_glove]="--glove-words 0"
  [glove_100k]="--glove-words 100000"
  [plus_affix_shape]="--features caps:5,$AFFIX"
  [plus_doccase]="--features caps:5,doccase:5"
  [plus_dropout]="--dropout 0.2"
  [hardtanh]="--activation hardtanh"
  [lr_2e-3]="--lr 0.002"
  [lr_decay_0.9]="--lr-decay 0.9"
  [emb_lr_half]="--emb-lr-scale 0.5"
  [word_dropout_0.2]="--word-dropout 0.2"
  [batch_16]="--batch-size 16"
  [window_7]="--half-window 3"
  [seed_1]="--seed 1"
  [seed_2]="--seed 2"
)
ORDER=(shipped no_crf no_caps no_word_dropout no_lr_decay no_glove glove_100k plus_affix_shape
       plus_doccase plus_dropout hardtanh lr_2e-3 lr_decay_0.9 emb_lr_half word_dropout_0.2
       batch_16 window_7 seed_1 seed_2)
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
