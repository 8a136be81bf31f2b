"""The cache: windows and split by document hash, resumed caching byte-identical, the file format, bad input."""

import json

import numpy as np
import pytest

from modular.cache import build_cache, describe_data, read_documents, split_of, windows_of
from modular.cli import main
from modular.data import load_npz
from modular.experts import BytesTokenizer, NGramTable
from tests.modular.hf_fixtures import domain_docs, write_domains
from theory.errors import InputError

NAMES = ("scripture", "code", "news")


def _tables(V=256, seeds=(0, 1, 2)):
    out = []
    for s in seeds:
        rng = np.random.default_rng(s)
        out.append(NGramTable(np.log(rng.dirichlet(np.full(V, 0.3), V + 1)), 2, name=NAMES[s % 3]))
    return out


def _domains():
    return {n: domain_docs(n, n_docs=16, words=20) for n in NAMES}


def _cache(out, **kw):
    opts = dict(window=12, expert_samples=40, chunk=16, split=(0.6, 0.2, 0.2), progress=False)
    opts.update(kw)
    return build_cache(_tables(), _domains(), BytesTokenizer(), out=out, **opts)


def test_resumed_cache_equals_uninterrupted_byte_for_byte(tmp_path):
    full = _cache(tmp_path / "full")
    assert full.complete and full.chunks_computed == full.chunks_total
    part = _cache(tmp_path / "part", max_chunks=5)
    assert not part.complete and part.chunks_done == 5
    part = _cache(tmp_path / "part", max_chunks=7)
    assert not part.complete and part.chunks_done == 12
    rest = _cache(tmp_path / "part")
    assert rest.complete and rest.chunks_computed == full.chunks_total - 12
    for name in ("DATA.npz", "VAL.npz", "TEST.npz", "manifest.json"):
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "part" / name).read_bytes(), name
    again = _cache(tmp_path / "part")
    assert again.complete and again.chunks_computed == 0


def test_cache_files_hold_what_the_fit_and_distillation_read(tmp_path):
    res = _cache(tmp_path)
    docs = _domains()
    experts = _tables()
    domains, samples = load_npz(tmp_path / "DATA.npz")
    with np.load(tmp_path / "DATA.npz", allow_pickle=False) as f:
        assert list(f["expert_names"]) == list(NAMES) and int(f["window"]) == 12 and int(f["vocab_size"]) == 256
        for k, name in enumerate(NAMES):
            train = [BytesTokenizer().encode(d) for d in docs[name] if split_of(d, (0.6, 0.2, 0.2)) == "train"]
            assert np.array_equal(f[f"feat_{k}"], windows_of(train, 12))
            tlp = f[f"token_logp_{k}"]
            assert np.allclose(tlp.sum(axis=1), f[f"logp_{k}"])
            for j, e in enumerate(experts):
                assert np.allclose(e.token_log_probs(f[f"feat_{k}"]).numpy(), tlp[:, :, j])
                assert np.allclose(e.token_log_probs(f[f"expert_feat_{k}"]).numpy(), f[f"expert_token_logp_{k}"][:, :, j])
            assert f[f"expert_feat_{k}"].shape == (40, 12)
    assert len(domains) == len(samples) == 3
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["window"] == 12 and man["counts"] == res.manifest["counts"]
    assert describe_data(tmp_path / "TEST.npz")["sha256"] == man["files"]["TEST.npz"]


def test_split_is_by_document_hash_and_windows_drop_remainders():
    docs = domain_docs("news", n_docs=30)
    assert [split_of(d, (0.8, 0.1, 0.1)) for d in docs] == [split_of(d, (0.8, 0.1, 0.1)) for d in docs[::-1]][::-1]
    assert set(split_of(d, (0.8, 0.1, 0.1)) for d in docs) <= {"train", "val", "test"}
    w = windows_of([list(range(10)), list(range(3))], 4)
    assert w.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(InputError, match="no window of 400 tokens"):
        _cache(tmp_path / "a", window=400)
    with pytest.raises(InputError, match="no .*documents"):
        build_cache(_tables(), {"scripture": [], "code": ["x" * 50], "news": ["y" * 50]}, BytesTokenizer(),
                    window=4, out=tmp_path / "b", progress=False)
    small = [NGramTable(np.log(np.full((101, 100), 0.01)), 2, name=n) for n in NAMES]
    with pytest.raises(InputError, match="outside the experts' vocabulary"):
        build_cache(small, {n: ["\u00e9t\u00e9 " * 40] * 12 for n in NAMES}, BytesTokenizer(), window=4,
                    out=tmp_path / "c", split=(0.4, 0.3, 0.3), progress=False)
    _cache(tmp_path / "d", max_chunks=1)
    with pytest.raises(InputError, match="different experts, data or options"):
        _cache(tmp_path / "d", window=8)
    with pytest.raises(InputError, match="no file matches"):
        read_documents(str(tmp_path / "nothing*.txt"))


def test_cli_errors_are_one_line_with_status_2(tmp_path, capsys):
    paths = write_domains(tmp_path / "text", n_docs=16, words=12)
    for k, t in enumerate(_tables()):
        t.save(tmp_path / f"e{k}.npz")
    experts = [a for k, n in enumerate(NAMES) for a in ("--expert", f"{n}=ngram:{tmp_path / f'e{k}.npz'}")]
    domains = [a for n in NAMES for a in ("--domain", f"{n}={paths[n]}")]
    cases = [
        experts + domains[:4] + ["--window", "8", "--out", str(tmp_path / "o")],  # 2 domains for 3 experts
        experts + domains + ["--window", "8", "--split", "1:0:1", "--out", str(tmp_path / "o")],
        experts[:2] + ["--expert", f"code=ngram:{tmp_path}/none.npz"] + domains + ["--window", "8", "--out", "o"],
        experts + domains + ["--window", "0", "--out", str(tmp_path / "o")],
    ]
    for argv in cases:
        assert main(["cache", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    argv = ["cache", *experts, *domains, "--window", "8", "--expert-samples", "8", "--split", "1:1:1",
            "--out", str(tmp_path / "ok"),
            "--quiet", "--max-chunks", "2"]
    assert main(argv) == 3 and "resume" in capsys.readouterr().out
    assert main(argv[:-2]) == 0
    assert (tmp_path / "ok" / "TEST.npz").exists()
