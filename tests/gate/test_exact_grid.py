"""bench/exact_grid.py's two parts that its figures rest on: where a QR version's codewords are
(checked against zxing-cpp, the decoder that really corrects them), and the renderer's geometry
(the module grid through the recorded corners and smear lands on the modules)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gated.core import ticket
from gated.core.ticket import qr_symbol
from gated.gate.rehearsal import phone
from gated.gate.rehearsal.synthetic import qr_modules

BENCH = Path(__file__).resolve().parents[2] / "bench/exact_grid.py"


@pytest.fixture(scope="module")
def grid():
    spec = importlib.util.spec_from_file_location("exact_grid", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def code() -> str:
    """A GT1 ticket, the same every run (Ed25519 signatures are deterministic)."""
    issuer = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    claims = ticket.Claims(cti=bytes(16), aud="FINAL-2026", nbf=1_790_000_000, exp=1_790_086_400)
    return ticket.STATIC_PREFIX + ticket.base45.encode(ticket.encode_cose(claims, issuer))


def spoil(modules: np.ndarray, index: np.ndarray, codewords) -> tuple[np.ndarray, np.ndarray]:
    """The symbol (quiet zone included) with one module of each of `codewords` flipped, and the
    wrong-module map (quiet zone excluded)."""
    out = modules.astype(bool).copy()
    wrong = np.zeros(index.shape, bool)
    for c in codewords:
        row, col = np.argwhere(index == c)[3]
        wrong[row, col] = True
        out[row + 4, col + 4] ^= True
    return out, wrong


def test_the_codeword_layout_counts_what_zxing_cpp_corrects(grid, code):
    symbol = qr_symbol(code)
    lay = grid.layout(symbol.version, symbol.error)
    modules = qr_modules(code)
    assert grid.read_clean(modules) == [code]
    for block, checks in list(enumerate(lay.checks))[:: max(len(lay.checks) - 1, 1)]:  # the first block and the last
        mine = np.flatnonzero(lay.block == block)
        rng = np.random.default_rng(block)
        for errors in (checks // 2, checks // 2 + 1):
            # codewords drawn at random, and the block's last ones (placed in the leftmost columns)
            for chosen in (rng.choice(mine, errors, replace=False), mine[-errors:]):
                spoilt, wrong = spoil(modules, lay.index, chosen)
                can = grid.correctable(wrong, np.ones(wrong.shape), code)
                assert can["hard"] == (2 * errors <= checks) and can["genie"]
                assert (grid.read_clean(spoilt) == [code]) == can["hard"], f"block {block}: codewords {chosen} wrong"
    # the same number of wrong codewords spread over all blocks: each within its share
    spread = [c for b, checks in enumerate(lay.checks) for c in np.flatnonzero(lay.block == b)[: checks // 2]]
    spoilt, wrong = spoil(modules, lay.index, spread)
    assert grid.correctable(wrong, np.ones(wrong.shape), code)["hard"] and grid.read_clean(spoilt) == [code]


def test_gmd_erases_the_least_reliable_codewords_first(grid, code):
    symbol = qr_symbol(code)
    lay = grid.layout(symbol.version, symbol.error)
    checks = lay.checks[0]
    mine = np.flatnonzero(lay.block == 0)
    _, wrong = spoil(qr_modules(code), lay.index, mine[: checks // 2 + 2])  # beyond a hard decoder
    sure = np.where(np.isin(lay.index, mine[checks // 2 + 2 :]), 0.5, 1.0)  # the right codewords look doubtful
    assert codeword_level(grid.correctable(wrong, sure, code)) == {"hard": False, "GMD": False, "genie": True}
    sure[wrong] = 0.01  # the wrong modules are the doubtful ones: erased, they are corrected
    assert codeword_level(grid.correctable(wrong, sure, code)) == {"hard": False, "GMD": True, "genie": True}


def codeword_level(can: dict[str, bool]) -> dict[str, bool]:
    """The verdicts of the decoders that take each codeword whole (Chase's weigh each module)."""
    return {name: verdict for name, verdict in can.items() if not name.startswith("Chase")}


def test_chase_flips_the_least_reliable_modules_of_a_block_and_no_others(grid, code):
    symbol = qr_symbol(code)
    lay = grid.layout(symbol.version, symbol.error)
    checks = lay.checks[0]
    mine = np.flatnonzero(lay.block == 0)
    _, wrong = spoil(qr_modules(code), lay.index, mine[: checks // 2 + 1])  # one codeword beyond a hard decoder
    assert wrong.sum() == checks // 2 + 1 <= 16  # one wrong module a codeword
    doubtful = np.where(wrong, 0.1, 1.0)  # the wrong modules are the least reliable: 16 test bits flip them all
    can = grid.correctable(wrong, doubtful, code)
    assert not can["hard"] and can["Chase-16"] and can["Chase-64"]
    sure = np.where(wrong, 2.0, 1.0)  # the wrong modules look surest: flipping the least reliable fixes none
    can = grid.correctable(wrong, sure, code)
    assert not can["hard"] and not can["Chase-8"] and not can["Chase-64"]
    # one wrong module among the eight least reliable: that codeword fixed, so hard's share again
    one = np.where(wrong & (lay.index == mine[0]), 0.1, np.where(wrong, 2.0, 1.0))
    assert grid.correctable(wrong, one, code)["Chase-8"]


def test_the_recorded_geometry_puts_the_grid_on_the_modules(grid, code):
    """A still and a clip's frames, smeared 5-6 px: the module values solved for through the
    recorded corners and smear decide (almost) every module right; without the smear, or with the
    grid moved, many more go wrong."""
    n = qr_modules(code).shape[0]

    def wrong(frame, corners, smear, heading) -> float:
        values = grid.module_values(frame, corners, smear, heading, n)
        return grid.judge(*grid.decide(grid.soft(values)), code)[0]

    doses = phone.Doses(module_px=3.0, tilt=25.0, blur=6.0, jpeg=60, shutter=0.5, noise=2.0)
    shot = phone.still_shot(code, (640, 480), np.random.default_rng(3), doses=doses)
    assert wrong(shot.frame, shot.code_corners, shot.smear, shot.heading) < 0.01
    assert wrong(shot.frame, shot.code_corners, 0.0, shot.heading) > 0.03
    moved = shot.code_corners + np.float32(5.0)  # a module and a half down and right
    assert wrong(shot.frame, moved, shot.smear, shot.heading) > 0.2
    clip = phone.phone_clip(code, (640, 480), np.random.default_rng(4), doses=doses)
    fast = max(range(clip.in_view, len(clip.frames)), key=lambda j: clip.drawn_smears[j][0])
    assert clip.drawn_smears[fast][0] > 4.0
    at = (clip.frames[fast], clip.code_corners[fast])
    assert wrong(*at, *clip.drawn_smears[fast]) < wrong(*at, 0.0, 0.0) / 2
    settled = len(clip.frames) - 1
    assert wrong(clip.frames[settled], clip.code_corners[settled], *clip.drawn_smears[settled]) < 0.01
