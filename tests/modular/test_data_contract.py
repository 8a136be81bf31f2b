"""DATA.npz refusals of ``python -m modular fit``: one line, exit 2, nothing allocated first."""

import contextlib
import io
import json
import resource

import numpy as np
import pytest

from modular.cli import main
from modular.data import LOGP_ROUNDING, load_npz, sample_set
from theory.errors import InputError


def _arrays(p=2, m=12, n=4, seed=0):
    rng = np.random.default_rng(seed)
    D = rng.dirichlet(np.ones(n), size=p)
    P = 0.7 * D + 0.3 * rng.dirichlet(np.ones(n), size=p)
    out = {}
    for k in range(p):
        x, y = rng.choice(n, size=m, p=D[k]), rng.choice(n, size=m, p=P[k])
        out.update({f"logp_{k}": np.log(P)[:, x].T, f"feat_{k}": x,
                    f"expert_logp_{k}": np.log(P)[:, y].T, f"expert_feat_{k}": y})
    return out


def _fit(tmp_path, arrays=None, *extra, raw=None):
    path = tmp_path / "data.npz"
    if raw is not None:
        path.write_bytes(raw)
    else:
        np.savez(path, **arrays)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["fit", str(path), "--steps", "5", "--batch-size", "8", "--gate", "tabular", *extra])
    return rc, out.getvalue(), err.getvalue()


def _bad(tmp_path, arrays, message, *extra, raw=None):
    rc, out, err = _fit(tmp_path, arrays, *extra, raw=raw)
    assert rc == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_log_probability_above_zero_refused(tmp_path):
    a = _arrays()
    a["logp_0"][3, 1] = 1e300
    _bad(tmp_path, a, "sample 3, expert 1 has log-probability 1e+300 > 0")
    a["logp_0"][3, 1] = 0.5
    _bad(tmp_path, a, "a probability above one")


def test_rounding_above_zero_reads_as_zero():
    s = sample_set(np.array([[LOGP_ROUNDING / 2, -1.0], [-0.5, -2.0]]))
    assert float(s.logp.max()) == 0.0


def test_negative_id_refused(tmp_path):
    a = _arrays()
    a["feat_1"][2] = -1
    _bad(tmp_path, a, "domain 1: sample 2 has a negative integer feature -1")


def test_huge_id_refused_before_allocating(tmp_path):
    a = _arrays()
    a["feat_0"][0] = 10**9
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    # 2 GiB of address space over what is mapped: a 10^9-row table (about 12 GB) could not be allocated.
    resource.setrlimit(resource.RLIMIT_AS, (2**31 + _mapped(), hard))
    try:
        _bad(tmp_path, a, "would need a table of 1000000001 x 2 entries")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _mapped() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


def test_expert_ids_beyond_the_domains_ids_fit(tmp_path):
    a = _arrays(n=4)
    a["expert_feat_0"][0] = 6  # an outcome only the expert samples reach
    a["expert_logp_0"][0] = [-3.0, -4.0]
    rc, out, err = _fit(tmp_path, a, "--json")
    assert rc in (0, 3), err
    assert abs(sum(json.loads(out)["lam"]) - 1) < 1e-9


@pytest.mark.parametrize("kind, message", [
    ("string", "string dtype"), ("object", "cannot read data file"), ("complex", "complex dtype"),
])
def test_non_numeric_features_refused(tmp_path, kind, message):
    a = _arrays()
    a["feat_0"] = {"string": a["feat_0"].astype(str), "complex": a["feat_0"] + 1j,
                   "object": np.array([a["feat_0"], None], dtype=object)}[kind]
    _bad(tmp_path, a, message)


def test_plain_npy_and_truncated_npz_as_data(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 2)))
    _bad(tmp_path, None, "a single .npy array; expected an .npz archive", raw=buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, **_arrays())
    _bad(tmp_path, None, "cannot read data file", raw=buf.getvalue()[:300])
    _bad(tmp_path, None, "the file is empty", raw=b"")


def test_own_expert_minus_infinity_is_loud_under_excess(tmp_path):
    """Under the excess adversary, -inf in a domain's own-expert column would zero its lambda silently."""
    a = _arrays()
    a["logp_0"][4, 0] = -np.inf
    _bad(tmp_path, a, "domain 0: sample 4 has log-probability -inf under its own expert 0", "--adversary", "excess")
    for adversary in ("nll", "kl"):
        extra = ("--entropy", "1.0,1.0") if adversary == "kl" else ()
        rc, out, err = _fit(tmp_path, a, "--adversary", adversary, "--json", *extra)
        assert rc in (0, 3), err
        lam = json.loads(out)["lam"]
        assert min(lam) > 0


def test_out_is_the_exact_path_and_dev_full_exits_2(tmp_path):
    rc, _, err = _fit(tmp_path, _arrays(), "--out", str(tmp_path / "result"))
    assert rc in (0, 3), err
    assert "history" in json.loads((tmp_path / "result").read_text())
    _bad(tmp_path, _arrays(), "/dev/full", "--out", "/dev/full")
    _bad(tmp_path, _arrays(), "does not exist", "--checkpoint", str(tmp_path / "nowhere" / "ck.pt"))


def test_load_npz_rejects_before_torch_work(tmp_path):
    a = _arrays()
    a["logp_1"] = a["logp_1"][:, :1]
    np.savez(tmp_path / "d.npz", **a)
    with pytest.raises(InputError, match="expert columns"):
        load_npz(tmp_path / "d.npz")
