"""The ``fastner`` command: train, evaluate, tag, serve."""
import argparse
import json
import os
import shlex
import sys
from dataclasses import fields

from fastner import io
from fastner.threads import pin_blas_threads


def _die(message, code=1):
    print(f"fastner: error: {message}", file=sys.stderr)
    return code


def _add_model_arg(p):
    p.add_argument("--model", help="model name (fast, accurate) or file (.npz); default: "
                                   "$FASTNER_MODEL, else fast, the model shipped with fastner")


def version_text():
    """`fastner --version`: the package's version, then the model a command would load
    by default ($FASTNER_MODEL, else the shipped one): its name, its version (the
    fastner release that trained it, unless its card names its own) and its file."""
    from fastner import __version__
    from fastner.tagger import default_model_path
    path = default_model_path()
    try:
        card = io.read_meta(path, io.MODEL_FORMAT).get("metadata", {})
    except io.ModelFileError as err:
        return f"fastner {__version__}\nmodel: none loadable ({err})"
    name = card.get("name") or os.path.basename(path).removesuffix(".npz")
    model_version = card.get("version") or card.get("fastner_version", "unknown")
    return f"fastner {__version__}\nmodel {name} {model_version} ({path})"


class _VersionAction(argparse.Action):
    """--version, computed only when asked for (it reads the model file's header)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print fastner's version and "
                         "the default model's name and version, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser():
    from fastner.train import TrainConfig
    parser = argparse.ArgumentParser(prog="fastner", description=__doc__)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on CoNLL files",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--train", required=True, nargs="+", metavar="TRAIN",
                   help="training data (CoNLL); several files are read as one corpus (e.g. "
                        "train and dev for a final fit with --patience 0)")
    t.add_argument("--dev", required=True, help="development data for early stopping (CoNLL)")
    t.add_argument("--test", help="test data, scored once at the end for the model card only")
    t.add_argument("--out", required=True, help="model file to write (.npz); the card, log, "
                                                "plot and checkpoint go beside it")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint beside --out")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        t.add_argument(flag, type=type(getattr(defaults, f.name)), default=getattr(defaults, f.name),
                       dest=f.name, help=f.metadata["help"])

    e = sub.add_parser("evaluate", help="entity-level P/R/F1 of a model on a CoNLL file")
    _add_model_arg(e)
    e.add_argument("--data", required=True, help="CoNLL file with gold tags")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--output", help="also write token gold predicted lines (CoNLL) here")
    e.add_argument("--case", choices=("as-is", "lower", "upper"), default="as-is",
                   help="rewrite every token in this case first (a robustness check)")

    g = sub.add_parser("tag", help="tag text or CoNLL files (or stdin)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_model_arg(g)
    g.add_argument("files", nargs="*", metavar="FILE", help="input files; none or '-': stdin")
    g.add_argument("-o", "--output", help="write here instead of stdout")
    g.add_argument("--format", choices=("text", "conll"), default="text",
                   help="text: one document per line in, one JSON object per line out; "
                        "conll: token-per-line in (token in the first column), each line out "
                        "unchanged with the predicted tag appended")
    g.add_argument("--include-tokens", action="store_true", help="text format: add tokens")
    g.add_argument("--quiet", action="store_true", help="no progress bar (shown only on a "
                                                        "terminal)")

    c = sub.add_parser("tag-corpus", help="tag many documents on a Dask cluster (resumable)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_model_arg(c)
    c.add_argument("--input", required=True, help="glob of input files (quote it)")
    c.add_argument("--output", required=True, help="directory for part-NNNNN.jsonl files")
    c.add_argument("--format", choices=("lines", "jsonl", "files"), default="lines",
                   help="lines: one document per line; jsonl: one JSON object per line; "
                        "files: one document per file")
    c.add_argument("--text-field", default="text", help="jsonl: field holding the text")
    c.add_argument("--id-field", default="id", help="jsonl: field holding the document id")
    c.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. "
                                       "tcp://host:8786 (default: a local cluster)")
    c.add_argument("--workers", type=int, help="local cluster: worker processes (default: "
                                               "one per core)")
    c.add_argument("--partition-size", type=int, default=10_000,
                   help="documents (lines, or files) per partition")
    c.add_argument("--max-chars", type=int, default=100_000,
                   help="longer documents are reported, not tagged")
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    n = sub.add_parser("ensemble", help="average several models trained alike from different "
                                        "seeds into one model file")
    n.add_argument("models", nargs="+", metavar="MODEL", help="model files (.npz), at least 2")
    n.add_argument("--out", required=True, help="model file to write (.npz)")
    n.add_argument("--dev", help="CoNLL file to score the ensemble on for its card")
    n.add_argument("--test", help="test data, scored once for the card only")

    from fastner.settings import describe
    settings_help = "settings (environment variables):\n" + describe()
    s = sub.add_parser("serve", help="run the HTTP service under gunicorn",
                       epilog=settings_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_arg(s)
    s.add_argument("--bind", help="address to bind (default $FASTNER_BIND or 127.0.0.1:8000)")
    s.add_argument("--workers", type=int, help="worker processes (default $FASTNER_WORKERS or 2)")

    p = sub.add_parser("serve-proxy", help="the service behind the nginx front (the supported "
                                           "way to expose it to a network)",
                       epilog=settings_help, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_arg(p)
    p.add_argument("--public-bind", help="address nginx listens on (default "
                                         "$FASTNER_PUBLIC_BIND or 127.0.0.1:8080)")
    p.add_argument("--workers", type=int, help="gunicorn worker processes (default "
                                               "$FASTNER_WORKERS or 2)")
    return parser


def cmd_train(args):
    from fastner.conll import read_conll
    from fastner.gcpause import kept_to_the_end
    from fastner.io import file_sha256
    from fastner.train import TrainConfig, Trainer
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    if not args.out.endswith(".npz"):
        return _die(f"--out must end in .npz; got {args.out!r}", 2)
    if os.path.isdir(args.out):
        return _die(f"--out {args.out} is a directory: give the model file's path", 2)
    for path in (*args.train, args.dev, args.test):
        if path and _same_file(path, args.out):
            return _die(f"--out {args.out} is also an input: write the model to another file", 2)
    try:
        trainer = Trainer(cfg, args.out, quiet=args.quiet)      # checks the settings
    except ValueError as err:
        return _die(str(err), 2)
    with kept_to_the_end():            # the corpora live as long as the command
        train = _read_corpora(args.train)
        dev = read_conll(args.dev)
        test = read_conll(args.test) if args.test else None
    # before the first epoch, not after the last: early stopping and the card need both
    for flag, path, sentences in (("--train", " ".join(args.train), train),
                                  ("--dev", args.dev, dev)):
        if not any(s.tokens for s in sentences):
            return _die(f"{flag} {path} has no sentences")
    provenance = {"command": "fastner " + " ".join(shlex.quote(a) for a in args.argv),
                  "data": {os.path.basename(p): file_sha256(p)
                           for p in (*args.train, args.dev, args.test) if p}}
    dev_trained_on = any(_same_file(args.dev, p) for p in args.train)
    if dev_trained_on:
        # a final fit on train + dev: its dev score measures nothing, and says so
        provenance["dev_in_training_data"] = True
    model, state = trainer.run(train, dev, resume=args.resume)
    card = trainer.finish(model, state, test, provenance)
    summary = f"best epoch {card['best_epoch']}: dev F1 {card['dev']['f1']:.2f}"
    if dev_trained_on:
        summary = (f"last epoch {card['best_epoch']}: dev F1 {card['dev']['f1']:.2f} (dev is "
                   f"in the training data)")
    if test is not None:
        summary += f", test F1 {card['test']['f1']:.2f}"
    print(f"{summary}; wrote {args.out} ({card['training_seconds']:.0f}s of training)",
          file=sys.stderr)
    return 0


def _read_corpora(paths):
    """The sentences of CoNLL files read as one corpus: each file's documents numbered
    after the previous file's, so no two files' documents merge."""
    from fastner.conll import read_conll
    sentences, offset = [], 0
    for path in paths:
        found = read_conll(path)
        for sent in found:
            sent.doc += offset
        sentences += found
        offset = (sentences[-1].doc + 1) if sentences else offset
    return sentences


# fastner evaluate tags this many sentences at a time (whole documents)
EVALUATE_BATCH_SENTENCES = 2000


def _whole_documents(sentences, size):
    """Consecutive runs of at least ``size`` sentences (the last may be shorter), cut
    only between documents, so document-level features see whole documents."""
    batch = []
    for sent in sentences:
        if len(batch) >= size and sent.doc != batch[-1].doc:
            yield batch
            batch = []
        batch.append(sent)
    if batch:
        yield batch


def cmd_evaluate(args):
    from tqdm import tqdm

    from fastner.conll import read_conll, write_conll
    from fastner.evaluate import entity_scores, format_scores
    from fastner.io import write_text_atomically
    from fastner.tagger import Tagger
    if args.output and _same_file(args.data, args.output):
        return _die(f"--output {args.output} is also --data: write the predictions to "
                    f"another file", 2)
    tagger = Tagger.load(args.model)
    sentences = read_conll(args.data)
    if not any(s.tags and any(t != "O" for t in s.tags) for s in sentences):
        what = "no sentences" if not sentences else "no gold entities"
        return _die(f"{args.data}: {what} to score")
    if args.case != "as-is":
        for sent in sentences:
            sent.tokens = [getattr(t, args.case)() for t in sent.tokens]
    predicted = []
    # the bar's looks (units, scale, label, leave) are not behaviour; where it goes is
    with tqdm(total=sum(len(s.tokens) for s in sentences), unit="tok",  # pragma: no mutate
              unit_scale=True, desc="tagging", leave=False,  # pragma: no mutate
              file=sys.stderr, disable=None) as bar:
        for batch in _whole_documents(sentences, EVALUATE_BATCH_SENTENCES):
            predicted += tagger.tags([s.tokens for s in batch], [s.doc for s in batch])
            bar.update(sum(len(s.tokens) for s in batch))  # pragma: no mutate (display)
    scores = entity_scores([s.tags for s in sentences], predicted)
    if args.output:
        write_text_atomically(args.output, lambda f: write_conll(f, sentences, predicted))
    if args.json:
        print(json.dumps(scores))
    else:
        print(format_scores(scores))
    return 0


def _tag_conll(tagger, blocks, write):
    """Each input line back unchanged with the predicted tag appended as a new last
    column (O on -DOCSTART- lines, so every non-blank line has the same number of
    fields, as conlleval wants); blank lines kept. Works a block of lines at a time,
    cut at sentence ends, so memory is one block whatever the input's length.
    A model with document-level features sees whole documents instead: blocks are cut
    before their last -DOCSTART- line, so memory is one document."""
    carry = []                 # lines of a sentence (or document) that a block cut
    doc = 0                    # document number: -DOCSTART- lines seen
    whole_documents = tagger.model.uses_documents
    for _, block in blocks:
        lines = carry + block
        if whole_documents:    # tag up to the last document start; carry it over
            cut = next((i for i in range(len(lines) - 1, -1, -1)
                        if lines[i].split(None, 1)[:1] == ["-DOCSTART-"]), 0)
            carry, lines = lines[cut:], lines[:cut]
        else:                  # tag up to the last blank line; carry the rest over
            cut = len(lines)
            while cut and lines[cut - 1].strip():
                cut -= 1
            carry, lines = (lines[cut:], lines[:cut]) if cut else ([], lines)
        if lines:
            doc = _tag_conll_lines(tagger, lines, doc, write)
    if carry:
        _tag_conll_lines(tagger, carry, doc, write)


def _tag_conll_lines(tagger, lines, doc, write):
    """Tag whole sentences of CoNLL lines; returns the document number at the end."""
    firsts = [line.split(None, 1)[0] if line and not line.isspace() else "" for line in lines]
    sentences, docs, current = [], [], []
    for first in firsts:
        if first == "" or first == "-DOCSTART-":
            if current:
                sentences.append(current)
                docs.append(doc)
                current = []
            doc += first == "-DOCSTART-"
        else:
            current.append(first)
    if current:
        sentences.append(current)
        docs.append(doc)
    tags = iter(tagger.flat_tags(sentences, docs))
    write("".join([f"{line} {next(tags)}\n" if first and first != "-DOCSTART-" else
                   f"{line} O\n" if first else f"{line}\n"
                   for line, first in zip(lines, firsts)]))
    return doc


def _inputs(paths):
    """(name, binary file) of each input: stdin for none or '-'."""
    for path in paths or ["-"]:
        if path == "-":
            yield "<stdin>", sys.stdin.buffer
        else:
            with open(path, "rb") as f:
                yield path, f


def cmd_tag(args):
    import orjson
    from tqdm import tqdm

    from fastner.conll import read_blocks
    from fastner.io import write_text_atomically
    from fastner.tagger import Tagger
    if args.output:
        for path in args.files or []:
            if path != "-" and _same_file(path, args.output):
                return _die(f"--output {args.output} is also an input: write the tags to "
                            f"another file", 2)
    tagger = Tagger.load(args.model)

    def tag_all(out):
        for name, f in _inputs(args.files):
            size = os.fstat(f.fileno()).st_size if name != "<stdin>" else None
            # the bar's looks (units, scale, label, leave) are not behaviour; where it goes is
            with tqdm(total=size or None, unit="B", unit_scale=True,  # pragma: no mutate
                      desc=name, leave=False,  # pragma: no mutate
                      file=sys.stderr, disable=True if args.quiet else None) as bar:
                blocks = _counted(read_blocks(f, name), bar)
                if args.format == "conll":
                    _tag_conll(tagger, blocks, out.write)
                else:
                    texts = (line for _, lines in blocks for line in lines)
                    for doc in tagger.pipe(texts, batch_size=1024,
                                           include_tokens=args.include_tokens):
                        out.write(orjson.dumps(doc.to_dict(),
                                               option=orjson.OPT_APPEND_NEWLINE).decode())

    if args.output:
        # appears complete or not at all: an interrupted run leaves the old file as it was
        write_text_atomically(args.output, tag_all)
    else:
        tag_all(sys.stdout)
    return 0


def _same_file(a, b):
    """Whether paths ``a`` and ``b`` name one existing file (links and ./ included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _counted(blocks, bar):
    """Pass blocks of lines through, advancing a progress bar (characters read, or
    lines when the size is unknown)."""
    for first, lines in blocks:
        bar.update(sum(map(len, lines)) + len(lines) if bar.total  # pragma: no mutate
                   else len(lines))                                 # (display only)
        yield first, lines


def cmd_ensemble(args):
    from fastner import __version__
    from fastner.conll import read_conll
    from fastner.ensemble import stack, trained_rows
    from fastner.io import file_sha256, write_json_atomically
    from fastner.modelfile import save_model
    from fastner.tagger import Tagger
    from fastner.train import EncodedSentences, evaluate
    if not args.out.endswith(".npz"):
        return _die(f"--out must end in .npz; got {args.out!r}", 2)
    if len(args.models) < 2:
        return _die(f"an ensemble needs at least 2 models; got {len(args.models)}", 2)
    for path in args.models + [p for p in (args.dev, args.test) if p]:
        if _same_file(path, args.out):
            return _die(f"--out {args.out} is also an input: write the ensemble to another "
                        f"file", 2)
    members = [Tagger.load(path, cache_mb=0).model for path in args.models]   # + first stages
    try:
        model = stack(members)
    except ValueError as err:
        return _die(str(err), 2)
    card = {"name": os.path.basename(args.out)[:-4], "fastner_version": __version__,
            "model_config": model.config(),
            "ensemble_of": [{"file": os.path.basename(path), "sha256": file_sha256(path),
                             "name": m.metadata.get("name"),
                             "seed": m.metadata.get("train_config", {}).get("seed"),
                             "dev_f1": m.metadata.get("dev", {}).get("f1")}
                            for path, m in zip(args.models, members)],
            "train_config": members[0].metadata.get("train_config"),
            "command": "fastner " + " ".join(shlex.quote(a) for a in args.argv)}
    for split in ("dev", "test"):
        if getattr(args, split):
            card[split] = evaluate(model, EncodedSentences(model, read_conll(getattr(args, split))))
    reference = model.first_stage_file
    if reference and "file" in reference:        # second stages: their first beside them
        from fastner.io import copy_atomically
        from fastner.tagger import first_stage_path
        beside = os.path.join(os.path.dirname(os.path.abspath(args.out)), reference["file"])
        if not os.path.exists(beside):
            copy_atomically(first_stage_path(args.models[0], reference), beside)
    save_model(model, args.out, card, precise_rows=trained_rows(args.models))
    write_json_atomically(args.out[:-4] + ".json", card)
    summary = f"ensemble of {len(members)} models"
    scored = [f"{split} F1 {card[split]['f1']:.2f}" for split in ("dev", "test") if split in card]
    if scored:
        summary += ": " + ", ".join(scored)
    print(f"{summary}; wrote {args.out}", file=sys.stderr)
    return 0


def cmd_tag_corpus(args):
    from fastner.corpus import tag_corpus
    from fastner.tagger import model_path
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    totals = tag_corpus(args.input, args.output, model_path(args.model),
                        fmt=args.format, scheduler=args.scheduler, workers=args.workers,
                        partition_size=args.partition_size, text_field=args.text_field,
                        id_field=args.id_field, max_chars=args.max_chars,
                        progress=not args.quiet, log=log)
    print(json.dumps(totals))
    return 0


def _serve_environment(args, **options):
    """The service's settings from the command line, over the environment."""
    if args.model:
        from fastner.tagger import model_path
        os.environ["FASTNER_MODEL"] = os.path.abspath(model_path(args.model))
    if args.workers:
        os.environ["FASTNER_WORKERS"] = str(args.workers)
    for name, value in options.items():
        if value:
            os.environ[name] = value


def cmd_serve(args):
    from fastner.service import gunicorn_argv
    _serve_environment(args, FASTNER_BIND=args.bind)
    argv = gunicorn_argv()
    os.execv(argv[0], argv)


def cmd_serve_proxy(args):
    from fastner.service.proxy import serve_proxy
    _serve_environment(args, FASTNER_PUBLIC_BIND=args.public_bind)
    return serve_proxy(log=lambda msg: print(msg, file=sys.stderr, flush=True))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    pin_blas_threads()            # before the first product: see fastner.threads
    handlers = {"train": cmd_train, "evaluate": cmd_evaluate, "tag": cmd_tag,
                "tag-corpus": cmd_tag_corpus, "ensemble": cmd_ensemble, "serve": cmd_serve,
                "serve-proxy": cmd_serve_proxy}
    try:
        return handlers[args.command](args)
    except BrokenPipeError:
        # the reader went away (fastner tag | head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (io.ModelFileError, ValueError, OSError, RuntimeError) as err:
        return _die(str(err))
    except KeyboardInterrupt:
        return _die("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
