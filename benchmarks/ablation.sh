#!/usr/bin/env bash
# The ablation table of the shipped model on CoNLL-2003 valid: the shipped
# configuration (fastner train's defaults), then each part removed or one idea
# added, each a full `fastner train` run per seed. Scores are dev (valid) entity F1
# of the best epoch, and the same model's valid F1 with every token lower-cased and
# upper-cased (`fastner evaluate --case`); mean ± sd over the seeds. Test is never read.
#
#   SEEDS="0 1 2 3 4" benchmarks/ablation.sh [NAME ...]   # all rows, or the named ones
# SEEDS defaults to "0". Models and logs go to runs/ablation/NAME.sSEED.*; the table
# to runs/ablation/table.md (rows with at least one finished run).
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
  [no_case]="--case-lower 0 --case-upper 0"
  [case_mix]="--case-lower 0.25 --case-upper 0.1"
  [case_lower_40]="--case-lower 0.4 --case-upper 0.1"
  [gazetteers]="--features caps:5,gazetteers:5"
  [gazetteers_drop20]="--features caps:5,gazetteers:5 --gazetteer-dropout 0.2"
  [gazetteers_drop40]="--features caps:5,gazetteers:5 --gazetteer-dropout 0.4"
  [gaz_places_only]="--features caps:5,gaz_loc:5,gaz_misc:5 --gazetteer-dropout 0.2"
  [gaz_names_only]="--features caps:5,gaz_first:5,gaz_last:5 --gazetteer-dropout 0.2"
  [gaz_misc_only]="--features caps:5,gaz_misc:5 --gazetteer-dropout 0.2"
  [gazetteers_v2_drop40]="--features caps:5,gazetteers:5 --gazetteer-dropout 0.4"
  [gaz_misc_names]="--features caps:5,gaz_misc:5,gaz_first:5,gaz_last:5 --gazetteer-dropout 0.2"
  [chars_30]="--features caps:5,chars:30"
  [chars_50]="--features caps:5,chars:50"
  [chars_30_gaz]="--features caps:5,gazetteers:5,chars:30 --gazetteer-dropout 0.4"
  [chars_30_dropout]="--features caps:5,chars:30 --dropout 0.2"
  [docvote]="--features caps:5,docvote:5 --first-stage fast"
)
ORDER=(shipped no_crf no_caps no_word_dropout no_lr_decay no_glove glove_100k plus_affix_shape
       plus_doccase plus_dropout hardtanh lr_2e-3 lr_decay_0.9 emb_lr_half word_dropout_0.2
       batch_16 window_7 seed_1 seed_2 no_case case_mix case_lower_40 gazetteers
       gazetteers_drop20 gazetteers_drop40 gaz_places_only gaz_names_only gaz_misc_only
       gaz_misc_names gazetteers_v2_drop40 chars_30 chars_50 chars_30_gaz chars_30_dropout
       docvote)
SEEDS=${SEEDS:-0}
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=("${ORDER[@]}")
for name in "${NAMES[@]}"; do
  for seed in $SEEDS; do
    run="$OUT/$name.s$seed"
    # shellcheck disable=SC2086
    OPENBLAS_NUM_THREADS=1 .venv/bin/fastner train --train "$DATA/train.txt" \
        --dev "$DATA/valid.txt" --out "$run.npz" --quiet --seed "$seed" ${ARGS[$name]} \
        2> "$run.log"
    for case in lower upper; do
      .venv/bin/fastner evaluate --model "$run.npz" --data "$DATA/valid.txt" --case "$case" \
          --json > "$run.$case.json"
    done
  done
done
{
  echo "| configuration | arguments | seeds | dev F1 | lower-case | upper-case | best epochs |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | --- |"
  for name in "${ORDER[@]}"; do
    ls "$OUT/$name".s*.json >/dev/null 2>&1 || continue
    .venv/bin/python - "$OUT" "$name" "${ARGS[$name]}" <<'PY'
import glob, json, statistics, sys
out, name, args = sys.argv[1:]
cards = sorted(glob.glob(f"{out}/{name}.s*.json"))
cards = [c for c in cards if not c.endswith((".lower.json", ".upper.json"))]
def stat(values):
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"
dev, low, up, epochs = [], [], [], []
for card in cards:
    c = json.load(open(card))
    dev.append(c["dev"]["f1"])
    epochs.append(str(c["best_epoch"]))
    low.append(json.load(open(card[:-5] + ".lower.json"))["f1"])
    up.append(json.load(open(card[:-5] + ".upper.json"))["f1"])
print(f"| {name} | `{args}` | {len(cards)} | {stat(dev)} | {stat(low)} | {stat(up)} | "
      f"{', '.join(epochs)} |")
PY
  done
} | tee "$OUT/table.md"
