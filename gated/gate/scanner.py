"""QR decoding: grayscale frames in, QR texts out; and the debouncer that turns a stream of
per-frame readings into scans.

Theory of operation. A gate camera delivers ~15-30 frames a second and most of them show no
code at all, so the cost that matters most is the idle frame, and the decoder's first try must
be cheap. `Scanner.read()` runs a short list of passes and stops at the first that yields a code:

  zxing backend (zxing-cpp, primary); every call is restricted to QR and uses text mode Plain
  (the symbol's bytes as text: the default HRI mode prints control characters as "<GS>")
    "coarse"  frames above 800x600 only: the frame at half resolution (INTER_AREA, which also
              averages away sensor noise), both polarities (dark-mode codes). A ticket held up
              to a 720p camera has modules of 4+ pixels, so this cheap call finds most codes.
    "texture" (its first, plain reads) the regions that look like a code (texture_boxes, found
              on the half-resolution frame: see below), each cut out and read as it is with the
              GlobalHistogram and then the LocalAverage binarizer (PLAIN_TRIES): 0.2-0.3 ms a
              region at 720p, where reading the full frame costs 1.2-1.5 ms, and it reads as many
              codes as the full frame does or more (GlobalHistogram over a region holding little
              but the code: uneven light across the frame does not matter there). Made the
              harder stills' median CPU time 1.4-2.0x plain zxing-cpp's instead of 4.9-7.5x
              (issue 27). Up to PLAIN_REGIONS regions are tried (three codes in view, or a code
              beside a patterned poster), and the frame is done when any of them was read. So a
              second code is read with the first only when a plain read of a region of its own
              decodes it (the region at least TEXTURE_MIN_SIDE wide: a GT1 ticket at 2+ px a
              module); one that needs the full frame's or a dearer read waits for a frame without
              the first. At 720p the coarse pass always left such a code so; on frames up to
              800x600 the full frame read both before (kept for the cost: reading the full frame
              too whenever a region stayed unread, as a phone's lines of text under its code do,
              put the harder stills' median at 2.2-2.7x plain zxing-cpp). A code that stays in
              view and is read for SIGN_AFTER frames in a row, and then read at its place alone (a
              QR sign on the wall in the camera's view) is a sign (`Scanner.signs`): from then on each frame first
              reads the sign's place alone (PLAIN_TRIES, ~0.2-0.5 ms), paints it over and reads the
              rest of the frame with every pass, as if the sign were not there; its text is still
              reported with the frame's (`Reading.signs`). Formerly the sign's read ended every
              frame's reading, so a ticket beside it got only the plain read of its region (at
              720p: 32 of 60 of bench/clips.py's harder stills the scanner reads alone were never
              read with a sign in view). A sign not read at its place alone (taken down, covered
              by a phone) is forgotten and the frame read whole. A code the gate has judged and
              holds off while it stays in view (`judged_in_view`, from the scan loop: a phone
              whose visitor is walking through with it still up, a forgery held up) is a sign from
              its next read on, so the next visitor's phone beside it gets every pass two frames
              after the first was read, not only once the first has gone. Not signs, so still ending the
              frame's reading: a code its place alone does not read with the plain read (one the
              coarse pass reads at half resolution only), a fifth one (MAX_SIGNS); and the pyzbar
              backend learns none.
    "fine"    the full frame. Above 800x600 it is smoothed 3x3 first (sensor noise makes the
              local binarizer chase speckle: the smoothing halves the idle cost at 720p and
              loses nothing when a module spans 3+ pixels) and zxing-cpp's own downscaling is
              off (the coarse pass did it). Smaller frames get zxing-cpp's defaults
              (try_invert, try_downscale, try_rotate): this is "plain zxing-cpp".
    "region"  only when the fine pass *saw* a QR symbol but could not decode it (zxing-cpp
              returns such symbols with return_errors=True, with their corners): that region,
              cut out with a margin, upscaled 2x, read with the LocalAverage and then the
              GlobalHistogram binarizer. Costs nothing on idle frames, where nothing is seen.
    "smooth"  frames up to 800x600 where nothing was seen: smoothed 5x5 and read with the
              GlobalHistogram binarizer (wins unevenly lit and noisy photos whose finder
              patterns the local binarizer breaks up). Not run on larger frames: there it won
              nothing in the benchmark and would cost every idle frame.
    "texture" (the rest) every frame where nothing was read so far: the regions that look like
              a code (texture_boxes: dense edges both ways over a square area, found on the
              half-resolution frame in ~1 ms at 720p; an empty scene has none, so idle frames
              pay only the search), each cut out, upscaled 2x and 3x and sharpened (unsharp
              masking; modules of 2.5-3 pixels, defocused, noisy): TEXTURE_TRIES. zxing-cpp's own
              locator does not even see most of these codes, so the "region" pass cannot help
              them. Measured on bench/scan.py's hard set (issue 15), where it lifts the share
              read from ~89 % to ~98 %. With its plain reads first, the texture pass reads 100 of
              the 145 real photos at rotation 0 (bench/scan.py; the full frame read them before).
              A textured region that stays put and unread for SCENERY_AFTER frames (a poster
              with a pattern) is taken for scenery and no longer read (`Scanner.scenery`), so
              a static scene does not cost every idle frame the reads. This and its signs are the
              state a Scanner keeps: use one per camera.
    "deblur"  a textured region the texture tries did not read (issue 27: a phone moved by the
              hand, smeared 3-7 px along its path; gated/gate/deblur.py): a first guess of the
              smear's direction from the structure tensor (the way the region changes least),
              then its direction and length together from the region's cepstrum, searched 20
              degrees either side of the guess to a quarter pixel (a linear smear of length L
              puts a negative peak at distance L along its direction); undone by a regularized
              (Tikhonov, Laplacian penalty) deconvolution with an anti-aliased line kernel in one
              FFT step, read upscaled 2x and 3x (DEBLUR_SCALES) with two binarizers; an
              over-exposed region (a fifth of it clipped) is deconvolved again with its clipped
              pixels raised (DEBLUR_GAINS) if that reads nothing. Costs nothing on idle frames
              without a textured region and is skipped on scenery; ~5 ms on a textured region of
              a phone showing no code, ~10-20 ms on a code's region at 720p. On bench/clips.py's
              harder stills it reads about half the frames the other passes miss (66 of 133 in
              400 stills; the Wiener deconvolution it replaced: 34), which lifts the stills read
              by 4-9 points; it wins little on the clips' p95 (issue 27b: the slowest clips have
              ~1.8 px modules smeared 3-6 px, beyond any single frame's deconvolution).
    "resample" where the fine pass saw a symbol and read its version and format but the
              Reed-Solomon check failed, and no other pass read anything (nor confirmed a doubt): a code
              printed on fabric or a crumpled page, whose module grid is bent, so that zxing-cpp's
              straight grid (a homography from the four corners) drifts off the modules. The
              modules are sampled along a bent grid instead (gated.gate.resample: a displacement
              field fitted by optical flow between a rendering of the current guess and the
              rectified photo, resting first on the function patterns), and each round's bit
              matrix, rendered clean, is decoded. Up to RESAMPLE_SYMBOLS symbol a frame, up to
              resample.ROUNDS rounds each at ~3-4 ms for a version 3 symbol, ~8 ms for a version 8
              ticket (so 30-65 ms at most a symbol): the dearest pass, so the last; nothing on
              idle frames, where nothing is seen, and a symbol resampled in vain in the same place
              for SCENERY_AFTER frames is scenery, like the texture pass's. Wins the real photos'
              T-shirt codes (qr-blackbox qrcode-4: the 8 photos no other pass reads, at every
              rotation).
  pyzbar backend (ZBar; needs libzbar0). ZBar cannot read light-on-dark codes by itself and
  suffers more from sensor noise, and each call costs ~10x zxing-cpp's.
    "coarse"    frames above 800x600: half resolution (INTER_AREA), then its negative. At 720p
                this both decodes more codes than the full frame and costs half as much.
    "fine"      the full frame (above 800x600 smoothed 3x3, normal polarity only)
    "inverted"  frames up to 800x600: the negative of the frame (dark-mode codes).

Which passes run is a constructor argument (`passes=`), so the benchmark can measure each.

No misreads (issue 27). A read is what the symbol's own error correction confirms, nothing less:
  * only QR Model 2 symbols are read (zxing-cpp's BarcodeFormat.QRCode also means Model 1, Micro
    QR and rMQR: a Micro QR symbol has one finder pattern and as few as two check codewords, and
    one turns up by chance in the texture of a large QR code or of the scene, with a short
    garbage text; every ticket is a Model 2 symbol, segno.make_qr);
  * a text is read only when a decode of it left some error correction to spare (zxing-cpp's
    "UEC", the share of the Reed-Solomon capacity unused in the block that used the most, is
    above 0): with no check symbol to spare, nothing tells a corrected block from a miscorrected
    one. A text decoded with a block's capacity used up is `Reading.unconfirmed`; second reads of
    the same place, binarized differently (CONFIRM_TRIES), make it a read if one of them decodes
    it with capacity to spare (in a later frame the code is simply read again).
The GT1/GT2 signature downstream still rejects any forgery; this is about never turning a valid
ticket into a red light.

Debouncing. A code held in front of the camera is seen in many consecutive frames; the gate must
act once. `Debouncer.feed(texts, now)` passes a text on the first time it is seen and then at
most once per `hold_off_s`; a different text goes through at once. A code that was admitted
(`Debouncer.admitted(text, now)`, from the thread that judged it) is not judged again while it
stays in view until its visitor has passed (`Debouncer.passed(now)`: the gate has no admission
waiting for its passage; the daemon never calls it on a board without a passage or door sensor,
which cannot tell) or it has been out of sight for `hold_off_s`: a visitor who keeps the phone up
while the arm turns gets no red `already_used` after the green. After the passage, or
after `hold_off_s` out of sight, the code is judged again (a friend handed the phone over the
turnstile gets the red). A code refused for good (`Debouncer.refused(text, now)`, for the reasons
in gated.core.reasons.FINAL_REFUSALS, which the code's own bytes decide: a QR code that is no
ticket, such as a sign in the camera's view, a forgery, a printed copy of a phone ticket) is not
judged again while it stays in view, nor until it has been out of sight for the hold-off: one red,
not one every hold-off. Another denied code held up is judged again after the hold-off (a
`capacity` denial may turn green when somebody leaves, an `already_used` one when an admission
whose visitor never passed is rolled back). When judging falls behind the camera by more than
the hold-off (a slow store), the camera queues the code again meanwhile; a copy captured before
its text's last judgement (`Debouncer.judged(text, now)`, `Debouncer.stale(text, captured_at)`)
is that presentation again and is not judged: one red, not one per hold-off of the wait.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from gated.core.errors import GatedError
from gated.gate.frames import as_gray

BACKENDS = ("zxing", "pyzbar")
ZXING_PASSES = ("fine", "coarse", "region", "smooth", "texture", "deblur", "resample")
RESAMPLE_SYMBOLS = 1  # symbols seen but not decoded that the "resample" pass follows, at most, per frame
# How long the Debouncer remembers when a text was last judged (far longer than judging ever lags
# the camera: the store's busy timeout is 10 s), and for at most this many texts (oldest first)
JUDGED_MEMORY_S = 120.0
JUDGED_MEMORY = 1000
LARGE_FRAME_PIXELS = 800 * 600  # above this a frame is first read at half resolution
PYZBAR_PASSES = ("fine", "coarse", "inverted")
TEXTURE_MIN_SIDE = 100  # pixels: a GT1 code narrower than this has modules under 2 pixels
TEXTURE_FACTOR = 1.8
PLAIN_REGIONS = 4  # the texture pass's plain reads try the largest this many regions a frame (scenery aside)
TEXTURE_REGIONS = 2  # ... and its dearer reads the largest this many
SCENERY_AFTER = 30  # frames (1-2 s): a textured region unread and unmoved this long is part of the scene
SCENERY_SLACK = 4  # pixels each box edge may move and still be "the same place"
SIGN_AFTER = 30  # frames (1-2 s): a code read this many frames in a row, its place then read alone, is a sign
MAX_SIGNS = 4


class Try(NamedTuple):
    """One read of a region cut out of the frame: upscaled `scale` times, sharpened by unsharp
    masking (`sharpen`: the mask's sigma and weight and a smoothing sigma before it, 0: 3x3, None:
    no smoothing; sigmas in the pixels of the image sharpened; no `sharpen`: read as it is), read
    with each of `binarizers` in turn. `sharpen_first`: sharpened at the region's own size, then
    upscaled (linear: the edges are steep already): the try costs half as much as one sharpening
    the upscaled image and reads as many of bench/clips.py's harder stills."""

    scale: float
    binarizers: tuple[str, ...]
    sharpen: tuple[float, float, float | None] | None = None
    sharpen_first: bool = False


# The texture pass's reads of one region, cheapest first, until one decodes. PLAIN_TRIES run
# before the full frame is read: a region read as it is, at its own size, costs 0.2-0.3 ms at 720p
# where the full frame costs 1.2-1.5 ms, and reads about as many of bench/clips.py's harder stills
# (GlobalHistogram: also the low contrast ones, dark 90 on light 160). TEXTURE_TRIES run after the
# other passes read nothing: upscaled (modules of 2.5-3 pixels, defocused) and sharpened; the last
# also smoothed first (noisy) and read with both binarizers.
PLAIN_TRIES = (Try(1, ("GlobalHistogram", "LocalAverage")),)
TEXTURE_TRIES = (
    Try(2, ("LocalAverage",), (1.5, 2.0, None), sharpen_first=True),
    Try(2, ("LocalAverage",), (3.0, 1.0, 0.0)),
    Try(2, ("LocalAverage",), (3.0, 2.0, 0.0)),
    Try(3, ("LocalAverage", "GlobalHistogram"), (4.5, 3.0, 1.5)),
)
PLACE_TRIES = PLAIN_TRIES + TEXTURE_TRIES  # a place read in one go (gated.gate.tracker)


class ScannerError(GatedError, RuntimeError):
    """The decoder library is missing or unusable; the message says what to install."""


# Second reads of a place where a text was decoded with no error correction to spare, until one
# decodes the same text with some to spare: (upscale, smoothing sigma (0: none), binarizer).
CONFIRM_TRIES = (
    (1, 0.0, "GlobalHistogram"),
    (1, 0.0, "LocalAverage"),
    (1.5, 0.0, "LocalAverage"),
    (1, 1.0, "LocalAverage"),
    (1.5, 0.0, "GlobalHistogram"),
)
Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels
DEBLUR_SCALES = (2, 3)  # a deconvolved region is read upscaled (modules of ~2 px)


@dataclass(frozen=True)
class Reading:
    """What one frame yielded: the texts (in reading order, no duplicates) and the pass that found
    them; `unconfirmed`: texts decoded with a block's error correction used up and not confirmed
    by a second read (not reads); `places`: where a code was read or seen, or a region looked like
    one (for gated.gate.tracker); `signs`: those of the texts read at a sign's place (a code read in
    one place frame after frame; `Scanner.signs`), the rest of the frame read as if it were not there."""

    texts: list[str]
    via: str | None  # None: nothing found
    unconfirmed: list[str] = field(default_factory=list)
    places: list[Box] = field(default_factory=list)
    signs: list[str] = field(default_factory=list)

    @property
    def news(self) -> list[str]:
        """The texts read but the signs'."""
        return [t for t in self.texts if t not in self.signs]

    def with_signs(self, signs: list[str]) -> Reading:
        """This reading of the rest of a frame, with the texts of the signs read at their places."""
        if not signs:
            return self
        texts = _unique(signs + self.texts)
        return Reading(texts, self.via or "sign", self.unconfirmed, self.places, list(signs))


class Scanner:
    """Decode QR codes in grayscale uint8 frames with zxing-cpp (default) or pyzbar."""

    def __init__(self, backend: str = "zxing", passes: tuple[str, ...] | None = None, *, region_scale: float = 2.0):
        if backend not in BACKENDS:
            raise ValueError(f"unknown scanner backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        known = ZXING_PASSES if backend == "zxing" else PYZBAR_PASSES
        self.backend = backend
        self.passes = tuple(passes) if passes is not None else known
        bad = [p for p in self.passes if p not in known]
        if bad or known[0] not in self.passes:
            raise ValueError(f"passes for {backend} must include {known[0]!r} and be among {known}, got {self.passes}")
        self.region_scale = region_scale
        self._lib = _load(backend)
        # OpenCV's worker threads cost more CPU than they save on a frame's small images (the
        # texture search on bench/clips.py's 720p stills: 2.8-2.9 ms of CPU a frame on two threads,
        # 1.5-1.6 ms on one, in the same 1.5-1.6 ms of wall-clock time), and the Tracker's budget
        # (thread_time) did not see their work. The setting is the process's: the gate scans with
        # one thread per camera, and the benchmarks measure what the gate runs. (The wall-clock
        # time of the dearer passes on a 4-core Pi with more threads is not measured.)
        import cv2

        cv2.setNumThreads(1)
        self._unread: list[tuple[tuple[int, int, int, int], int]] = []  # textured boxes not read: (box, frames)
        self._unbent: list[tuple[Box, int]] = []  # symbols resampled in vain: (box, frames)
        self._streaks: dict[str, int] = {}  # text -> frames in a row it was read (signs aside)
        self._signs: list[tuple[str, Box, Box]] = []  # (text, place, the area painted over: place and margin)
        self._judged: frozenset[str] = frozenset()  # judged_in_view: signs from their next read on
        self._unplaced: set[str] = set()  # texts read on in a row whose place did not read them alone

    @property
    def scenery(self) -> list[tuple[int, int, int, int]]:
        """Textured regions the texture pass no longer reads, and symbols the resample pass no
        longer resamples: they stayed in place, unread, for SCENERY_AFTER frames in a row (a
        poster, a keyboard, a damaged code on the wall), which would otherwise cost every
        idle frame its reads. A code held up by hand moves by more than SCENERY_SLACK pixels."""
        return [box for box, frames in self._unread + self._unbent if frames >= SCENERY_AFTER]

    @property
    def signs(self) -> list[tuple[str, Box]]:
        """Codes read for SIGN_AFTER frames in a row, or judged by the gate (`judged_in_view`), that
        a plain read of their place alone reads (a QR sign on the wall in the camera's view, a ticket
        left lying in front of it, a phone judged and still held up), as (text, place): each frame reads the
        place alone first and the rest of the frame without it, so that the sign's read does not
        end the frame's reading before the dearer passes reach a visitor's code beside it."""
        return [(text, place) for text, place, _ in self._signs]

    @property
    def sign_areas(self) -> list[Box]:
        """What each frame has painted over for the signs: their places with the cut's margin."""
        return [area for _, _, area in self._signs]

    def judged_in_view(self, texts) -> None:
        """The texts the gate has taken (passed on to be judged, or judged) and holds off while they
        stay in view (Debouncer.holding_off): the next frame that reads one takes it for a sign at
        once, not after SIGN_AFTER frames, so that a phone already judged and still held up (its visitor walking
        through, or a forgery held up) does not end each frame's reading before the dearer passes
        reach the next visitor's code beside it. Replaces the last call's texts."""
        self._judged = frozenset(texts)

    def decode(self, gray: np.ndarray) -> list[str]:
        """The QR texts in one frame (empty list: none)."""
        return self.read(gray).texts

    def read(self, gray: np.ndarray) -> Reading:
        gray = as_gray(gray)
        if self.backend == "zxing":
            return self._read_zxing(gray)
        return self._read_pyzbar(gray)

    # zxing-cpp ------------------------------------------------------------------------------
    def _zx(self, image: np.ndarray, **options):
        zx = self._lib
        return zx.read_barcodes(image, formats=zx.BarcodeFormat.QRCodeModel2, text_mode=zx.TextMode.Plain, **options)

    def _read_zxing(self, gray: np.ndarray) -> Reading:
        signs, rest = self._read_signs(gray)
        reading = self._read_zxing_frame(rest)
        self._follow(gray, reading)  # what the rest of the frame read: a second copy of a sign too
        return reading.with_signs(signs)

    def _read_signs(self, gray: np.ndarray) -> tuple[list[str], np.ndarray]:
        """The texts of the signs read at their places alone (PLAIN_TRIES), and the frame with those
        places painted over (each with its cut's median) for the passes to read the rest. A sign
        whose place reads anything else (nothing: taken down, or covered by a phone; another code
        too) is forgotten, and the frame is read whole."""
        if not self._signs:
            return [], gray
        self._signs = [sign for sign in self._signs if self.read_place(gray, sign[1], [], PLAIN_TRIES) == [sign[0]]]
        if not self._signs:
            return [], gray
        rest = gray.copy()
        for _, _, (x0, y0, x1, y1) in self._signs:
            rest[y0:y1, x0:x1] = int(_median(rest[y0:y1, x0:x1]))
        return _unique(text for text, _, _ in self._signs), rest

    def _follow(self, gray: np.ndarray, reading: Reading) -> None:
        """Count the frames in a row each text was read in (`reading`: of the frame with the signs
        painted over, so that a second copy of a sign, a poster hung twice, counts too); one read
        SIGN_AFTER frames in a row whose place in this frame (among the reading's places) a plain
        read alone reads is a sign from the next frame on; a text the gate has judged
        (`judged_in_view`) as soon as it is read. One read so long that no place reads it alone (a
        dearer pass reads it) is counted anew, a judged one too (not looked for every frame)."""
        self._streaks = {text: self._streaks.get(text, 0) + 1 for text in reading.texts}
        self._unplaced &= self._streaks.keys()
        for text, frames in list(self._streaks.items()):
            due = frames >= SIGN_AFTER or (text in self._judged and text not in self._unplaced)
            if not due or len(self._signs) >= MAX_SIGNS:
                continue
            place = next((b for b in reading.places if self.read_place(gray, b, [], PLAIN_TRIES) == [text]), None)
            if place is not None:
                self._signs.append((text, place, _cut_box(place, gray.shape)))
                del self._streaks[text]
            else:
                self._streaks[text] = 0
                self._unplaced.add(text)

    def _read_zxing_frame(self, gray: np.ndarray) -> Reading:
        import cv2

        zx = self._lib
        doubts: list[_Doubt] = []
        places: list[Box] = []
        half = None
        if gray.size > LARGE_FRAME_PIXELS and "coarse" in self.passes:
            half = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
            found = self._zx(half, try_downscale=False)
            places += [_box_around(b.position, 2.0, (0, 0)) for b in found]
            texts = _sift(found, half, "coarse", doubts)
            if texts:
                return Reading(texts, "coarse", places=places)
        textured: list[tuple[Box, int]] = []  # the regions that look like a code, and for how many frames unread
        if "texture" in self.passes:  # first its cheapest reads: cheaper than the full frame's
            fresh, scenery = self._textured(gray, half)
            places += [box for box, _ in fresh]
            reads = [self.read_place(gray, box, doubts, PLAIN_TRIES) for box, _ in fresh]
            texts = _unique(t for got in reads for t in got)
            if texts:  # every region that looks like a code was tried: the frame is done
                read = [box for (box, _), got in zip(fresh, reads) if got]
                self._unread = [(b, n) for b, n in self._unread if not any(_same_place(b, r) for r in read)]
                return Reading(texts, "texture", places=places)
            textured = fresh[:TEXTURE_REGIONS] + scenery
        if gray.size > LARGE_FRAME_PIXELS:
            found = self._zx(cv2.GaussianBlur(gray, (3, 3), 0), try_downscale=False, return_errors=True)
        else:
            found = self._zx(gray, return_errors=True)
        places += [_box_around(b.position, 1.0, (0, 0)) for b in found]
        texts = _sift(found, gray, "fine", doubts)
        if texts:
            return Reading(texts, "fine", places=places)
        failed = [b for b in found if not b.valid]
        seen = [b.position for b in failed]
        if seen and "region" in self.passes:
            texts = self._read_regions(gray, seen, doubts)
            if texts:
                return Reading(texts, "region", places=places)
        if not seen and "smooth" in self.passes and gray.size <= LARGE_FRAME_PIXELS:
            smooth = cv2.GaussianBlur(gray, (5, 5), 0)
            texts = _sift(self._zx(smooth, binarizer=zx.Binarizer.GlobalHistogram), smooth, "smooth", doubts)
            if texts:
                return Reading(texts, "smooth", places=places)
        if "texture" in self.passes:
            texts, via = self._read_textured(gray, textured, doubts)
            if texts:
                return Reading(texts, via, places=places)
        texts, via = self._confirm(doubts)
        if not texts and failed and "resample" in self.passes:  # the dearest, so the last
            texts = self.read_bent(gray, failed)
            via = "resample" if texts else None
        unconfirmed = _unique(d.text for d in doubts if d.text not in texts)
        return Reading(texts, via, unconfirmed, places)

    def _confirm(self, doubts: list[_Doubt]) -> tuple[list[str], str | None]:
        """The doubtful texts (decoded with a block's error correction used up) that a second,
        differently binarized read of the same place (CONFIRM_TRIES) decodes with capacity to
        spare; and the pass that first decoded them."""
        import cv2

        zx = self._lib
        texts, via = [], None
        for doubt in doubts:
            if doubt.text in texts:
                continue
            x0, y0, x1, y1 = _box_of(doubt.position, doubt.image.shape)
            crop = doubt.image[y0:y1, x0:x1]
            for scale, smooth, binarizer in CONFIRM_TRIES:
                image = (
                    crop if scale == 1 else cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
                )
                if smooth:
                    image = cv2.GaussianBlur(image, (0, 0), smooth)
                again = self._zx(image, binarizer=getattr(zx.Binarizer, binarizer), try_downscale=False)
                if any(b.valid and b.text == doubt.text and spare_correction(b) > 0 for b in again):
                    texts.append(doubt.text)
                    via = via or doubt.via
                    break
        return texts, via

    def _textured(
        self, gray: np.ndarray, half: np.ndarray | None
    ) -> tuple[list[tuple[Box, int]], list[tuple[Box, int]]]:
        """The regions that look like a code (texture_boxes), each with for how many frames in a row
        it was unread: the PLAIN_REGIONS largest not taken for scenery, and those taken for it."""
        regions = [(box, _frames_unread(self._unread, box)) for box in texture_boxes(gray, limit=None, half=half)]
        fresh = [r for r in regions if r[1] < SCENERY_AFTER]
        return fresh[:PLAIN_REGIONS], [r for r in regions if r[1] >= SCENERY_AFTER]

    def _read_textured(
        self, gray: np.ndarray, textured: list[tuple[Box, int]], doubts: list[_Doubt]
    ) -> tuple[list[str], str]:
        """Read the regions that look like a code (`textured`: texture_boxes, and for how many
        frames each was unread), whose PLAIN_TRIES read nothing, upscaled and sharpened
        (TEXTURE_TRIES); then unsmeared ("deblur"). Regions taken for scenery are skipped. The
        texts, and the pass that read the first of them."""
        texts: list[str] = []
        via = "texture"
        unread = []
        for box, frames in textured:
            if frames >= SCENERY_AFTER:
                unread.append((box, frames + 1))
                continue
            got = self.read_place(gray, box, doubts, TEXTURE_TRIES)
            if not got and "deblur" in self.passes:
                got = self.read_smeared(gray, box, doubts)
                if got and not texts:
                    via = "deblur"
            if got:
                texts.extend(got)
            else:
                unread.append((box, frames + 1))
        self._unread = unread
        return _unique(texts), via

    def read_place(
        self, gray: np.ndarray, box: Box, doubts: list[_Doubt] | None = None, tries: tuple[Try, ...] = PLACE_TRIES
    ) -> list[str]:
        """The texts read in one region of the frame (a box around a code, or where one was seen),
        cut out with a margin and read as `tries` say (`Try`), cheapest first, until one decodes.
        Texts decoded with no error correction to spare go to `doubts`, not into the result."""
        import cv2

        zx = self._lib
        doubts = doubts if doubts is not None else []
        crop = _cut(gray, box)
        if crop.size == 0:
            return []
        scaled = {1: crop}
        for t in tries:
            if t.sharpen is None:
                image = scaled.get(t.scale)
                if image is None:
                    image = scaled[t.scale] = cv2.resize(
                        crop, None, fx=t.scale, fy=t.scale, interpolation=cv2.INTER_CUBIC
                    )
            elif t.sharpen_first:
                image = cv2.resize(
                    sharpen(crop, *t.sharpen), None, fx=t.scale, fy=t.scale, interpolation=cv2.INTER_LINEAR
                )
            else:
                if t.scale not in scaled:
                    scaled[t.scale] = cv2.resize(crop, None, fx=t.scale, fy=t.scale, interpolation=cv2.INTER_CUBIC)
                image = sharpen(scaled[t.scale], *t.sharpen)
            for binarizer in t.binarizers:
                got = _sift(
                    self._zx(image, binarizer=getattr(zx.Binarizer, binarizer), try_downscale=False),
                    image,
                    "texture",
                    doubts,
                )
                if got:
                    return got
        return []

    def read_smeared(self, gray: np.ndarray, box: Box, doubts: list[_Doubt] | None = None) -> list[str]:
        """The texts read in a region after undoing a linear motion smear (the "deblur" pass): the
        smear's direction from the structure tensor, refined with its length in the cepstrum
        (deblur.smear_near), undone by regularized deconvolution (deblur.unsmear), read upscaled
        (DEBLUR_SCALES) with two binarizers; under the same rule as every read (`_sift`)."""
        import cv2

        from gated.gate.deblur import (
            DEBLUR_GAINS,
            DEBLUR_REG,
            DEBLUR_SATURATED_SHARE,
            saturated_share,
            smear_direction,
            smear_near,
            unsmear,
        )

        zx = self._lib
        doubts = doubts if doubts is not None else []
        crop = _cut(gray, box)
        if min(crop.shape) < 32 or int(crop.max()) - int(crop.min()) < 8:
            return []
        smear = smear_near(crop, smear_direction(crop))
        if smear is None:  # too small to tell, or no smear in the cepstrum
            return []
        # An over-exposed region is deconvolved again with its clipped pixels raised (DEBLUR_GAINS)
        # when the first try reads nothing.
        over = saturated_share(crop) >= DEBLUR_SATURATED_SHARE
        for gain in (1.0, *(DEBLUR_GAINS if over else ())):
            sharp = unsmear(crop, *smear, reg=DEBLUR_REG * gain * gain, gain=gain)
            for scale in DEBLUR_SCALES:
                image = cv2.resize(sharp, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
                for binarizer in (zx.Binarizer.LocalAverage, zx.Binarizer.GlobalHistogram):
                    got = _sift(self._zx(image, binarizer=binarizer, try_downscale=False), image, "deblur", doubts)
                    if got:
                        return got
        return []

    def read_bent(self, gray: np.ndarray, failed) -> list[str]:
        """The texts of symbols zxing-cpp found in `gray` but could not decode (`failed`: its
        results with return_errors=True), resampled along a bent module grid (the "resample"
        pass, gated.gate.resample): each round's bit matrix, rendered clean, is decoded, and a
        text counts only when the symbol's error correction confirms it with capacity to spare.
        Texts decoded with none to spare are dropped here: a second read of a rendering would
        only repeat its bits. At most RESAMPLE_SYMBOLS symbols (the largest), one text each; a
        symbol resampled in vain in the same place SCENERY_AFTER times is scenery (`scenery`)
        and no longer resampled, so that a damaged code on the wall does not cost every frame."""
        from gated.gate.resample import bent_grid_renderings

        zx = self._lib
        texts: list[str] = []
        symbols = []
        for b in failed:
            corners = _corners(b.position)
            form = _symbol_form(b)
            if form is None or any(_overlaps(corners, other) for other, _, _ in symbols):
                continue
            symbols.append((corners, form, _box_around(b.position, 1.0, (0, 0))))
        symbols.sort(key=lambda s: -_quad_area(s[0]))
        unbent = []
        for corners, (version, ec_level, mask), box in symbols[:RESAMPLE_SYMBOLS]:
            frames = _frames_unread(self._unbent, box)
            if frames >= SCENERY_AFTER:  # resampled in vain, in place, for 1-2 s: scenery
                unbent.append((box, frames + 1))
                continue
            got = []
            for image in bent_grid_renderings(gray, corners, version, ec_level, mask):
                found = self._zx(
                    image,
                    binarizer=zx.Binarizer.GlobalHistogram,
                    try_rotate=False,
                    try_downscale=False,
                    try_invert=False,
                )
                got = _sift(found, image, "resample", [])
                if got:
                    break
            if got:
                texts.extend(got)
            else:
                unbent.append((box, frames + 1))
        self._unbent = unbent
        return _unique(texts)

    def _read_regions(self, gray: np.ndarray, positions, doubts: list[_Doubt]) -> list[str]:
        import cv2

        zx = self._lib
        texts: list[str] = []
        for box in _merge_boxes([_box_of(p, gray.shape) for p in positions])[:3]:
            x0, y0, x1, y1 = box
            crop = gray[y0:y1, x0:x1]
            up = cv2.resize(crop, None, fx=self.region_scale, fy=self.region_scale, interpolation=cv2.INTER_LINEAR)
            for binarizer in (zx.Binarizer.LocalAverage, zx.Binarizer.GlobalHistogram):
                got = _sift(self._zx(up, binarizer=binarizer, try_downscale=False), up, "region", doubts)
                if got:
                    texts.extend(got)
                    break
        return _unique(texts)

    # pyzbar ----------------------------------------------------------------------------------
    def _read_pyzbar(self, gray: np.ndarray) -> Reading:
        import cv2

        if gray.size > LARGE_FRAME_PIXELS:
            if "coarse" in self.passes:
                half = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
                texts = self._zbar(half) or (self._zbar(255 - half) if "inverted" in self.passes else [])
                if texts:
                    return Reading(texts, "coarse")
            texts = self._zbar(cv2.GaussianBlur(gray, (3, 3), 0))
            return Reading(texts, "fine" if texts else None)
        texts = self._zbar(gray)
        if texts:
            return Reading(texts, "fine")
        if "inverted" in self.passes:
            texts = self._zbar(255 - gray)
            if texts:
                return Reading(texts, "inverted")
        return Reading([], None)

    def _zbar(self, gray: np.ndarray) -> list[str]:
        pyzbar = self._lib
        symbols = pyzbar.decode(gray, symbols=[pyzbar.ZBarSymbol.QRCODE])
        return _unique(s.data.decode("utf-8", errors="replace") for s in symbols)


class Debouncer:
    """One scan per presented code: a text goes on at most once per `hold_off_s`, others at once;
    an admitted text not again while it stays in view, until its visitor has passed; a text refused
    for good not again while it stays in view. `feed` runs on the camera thread, `admitted`,
    `refused` and `passed` on the thread that judges: all under one lock."""

    def __init__(self, hold_off_s: float = 2.0):
        if hold_off_s < 0:
            raise ValueError("hold_off_s must be >= 0")
        self.hold_off_s = hold_off_s
        self._passed_at: dict[str, float] = {}
        self._held: dict[str, float] = {}  # admitted texts whose visitor has not passed yet: last seen
        self._refused: dict[str, float] = {}  # texts refused for good, still in view: last seen
        self._judged_at: dict[str, float] = {}  # text -> when its last judgement was out
        self._lock = threading.Lock()

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def holding_off(self) -> set[str]:
        """The texts seen lately that would not go on if seen now: admitted or refused for good and
        still held, or passed on within the last hold-off (as of the last `feed`)."""
        with self._lock:
            return set(self._held) | set(self._refused) | set(self._passed_at)

    def feed(self, texts, now: float) -> list[str]:
        """The texts of this frame that should go on to validation now."""
        fresh = []
        with self._lock:
            for held in (self._held, self._refused):
                for text in [t for t, seen in held.items() if now - seen >= self.hold_off_s]:
                    del held[text]  # out of sight for the hold-off: a new presentation when shown
            for text in dict.fromkeys(texts):
                held = next((h for h in (self._held, self._refused) if text in h), None)
                if held is not None:
                    held[text] = now  # the same presentation, still held up
                    continue
                last = self._passed_at.get(text)
                if last is None or now - last >= self.hold_off_s:
                    fresh.append(text)
                    self._passed_at[text] = now
            for text in [t for t, at in self._passed_at.items() if now - at >= self.hold_off_s]:
                if text not in fresh:
                    del self._passed_at[text]
        return fresh

    def judged(self, text: str, now: float) -> None:
        """`text` was judged (admitted or denied) and its decision was out at `now`: a copy of it
        captured before then is stale. Remembered JUDGED_MEMORY_S, at most JUDGED_MEMORY texts."""
        with self._lock:
            if self.hold_off_s <= 0:  # every sighting is judged
                return
            self._judged_at.pop(text, None)
            self._judged_at[text] = now  # the dict stays in the order of the judgements
            while self._judged_at:
                oldest, at = next(iter(self._judged_at.items()))
                if now - at <= JUDGED_MEMORY_S and len(self._judged_at) <= JUDGED_MEMORY:
                    break
                del self._judged_at[oldest]

    def stale(self, text: str, captured_at: float) -> str | None:
        """Why a queued copy of `text` from a frame captured at `captured_at` is not to be judged
        (None: it is): its text was admitted, or refused for good, and is still held, or the frame
        was taken before the text's last judgement was out (the presentation already judged, seen again while its
        judging waited: a slow store)."""
        with self._lock:
            if text in self._held:
                return "already admitted, still in view"
            if text in self._refused:  # queued while its refusal was being recorded
                return "already refused, still in view"
            at = self._judged_at.get(text)
            return "judged after this frame was taken" if at is not None and captured_at < at else None

    def admitted(self, text: str, now: float) -> None:
        """`text` was admitted: not judged again while it stays in view (or until `passed`)."""
        with self._lock:
            if self.hold_off_s > 0:
                self._held[text] = max(now, self._held.get(text, now))

    def refused(self, text: str, now: float) -> None:
        """`text` was refused for a reason it keeps (FINAL_REFUSALS): not judged again while it stays
        in view, however long, nor until it has been out of sight for the hold-off. Visitors passing
        do not end that (a sign in the camera's view would be judged again after each of them)."""
        with self._lock:
            if self.hold_off_s > 0:
                self._refused[text] = max(now, self._refused.get(text, now))

    def passed(self, now: float) -> None:
        """The admitted visitors have passed (or their time to pass ran out): a text of theirs
        still in view is judged again after `hold_off_s` from now, like a denied one."""
        with self._lock:
            for text in self._held:
                self._passed_at[text] = now
            self._held.clear()


def _load(backend: str):
    if backend == "zxing":
        try:
            import zxingcpp
        except ImportError as exc:
            raise ScannerError(
                f"zxing-cpp is not installed ({exc}): pip install zxing-cpp, or use the pyzbar backend"
            ) from exc
        if not hasattr(zxingcpp.BarcodeFormat, "QRCodeModel2"):  # in 3.1, QRCode names the whole QR family
            raise ScannerError(
                "zxing-cpp is too old (the scanner asks for QR Model 2 symbols only and for the "
                "error correction a decode left unused): pip install 'zxing-cpp>=3.1'"
            )
        return zxingcpp
    try:
        from pyzbar import pyzbar
    except ImportError as exc:  # the module imports, but libzbar0 is missing: pyzbar raises ImportError
        raise ScannerError(
            f"pyzbar cannot load ZBar ({exc}): apt install libzbar0 and pip install pyzbar, or use the zxing backend"
        ) from exc
    return pyzbar


def sharpen(gray: np.ndarray, sigma: float, amount: float, smooth: float | None = 0.0) -> np.ndarray:
    """Unsharp masking (mask: Gaussian of `sigma`, weight `amount`) after smoothing, which keeps
    the sensor noise from being sharpened too (Gaussian of `smooth`; 0: 3x3; None: no smoothing):
    restores module edges that defocus rounded off, and stretches a low contrast."""
    import cv2

    if smooth is None:
        smoothed = gray
    else:
        smoothed = cv2.GaussianBlur(gray, (0, 0), smooth) if smooth else cv2.GaussianBlur(gray, (3, 3), 0)
    return cv2.addWeighted(smoothed, 1.0 + amount, cv2.GaussianBlur(smoothed, (0, 0), sigma), -amount, 0)


def texture_boxes(
    gray: np.ndarray, limit: int | None = 2, half: np.ndarray | None = None
) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1) around regions that look like a QR code: dense edges in both
    directions over a square area at least TEXTURE_MIN_SIDE pixels wide, largest first.

    Found on the half-resolution frame: the edge strength across and along (Sobel), each
    averaged over a 9x9 window, the weaker of the two (a straight edge or stripe is strong one
    way only), above TEXTURE_FACTOR times the frame's median (the sensor noise and the scene's
    flat parts) plus a little; then opened with a 21x21 square, which removes the thin bands
    along edges, lines and corners of the scene and keeps blocks of code-like size.
    Costs ~1 ms at 1280x720. `limit`: the largest this many (None: all); `half`: the frame at
    half resolution (INTER_AREA), if the caller has it."""
    import cv2

    if min(gray.shape) < 2 * TEXTURE_MIN_SIDE:
        return []
    if half is not None and half.shape != (gray.shape[0] // 2, gray.shape[1] // 2):
        raise ValueError(f"half is {half.shape}, not half of the frame's {gray.shape}")
    if half is None:
        half = cv2.resize(gray, (gray.shape[1] // 2, gray.shape[0] // 2), interpolation=cv2.INTER_AREA)
    across = cv2.blur(cv2.convertScaleAbs(cv2.Sobel(half, cv2.CV_16S, 1, 0)), (9, 9))
    along = cv2.blur(cv2.convertScaleAbs(cv2.Sobel(half, cv2.CV_16S, 0, 1)), (9, 9))
    edges = cv2.min(across, along)
    threshold = _median(edges[::4, ::4]) * TEXTURE_FACTOR + 4
    # edges > threshold, as 0/1 (an 8-bit threshold compares with its floor: the same for integers)
    _, over = cv2.threshold(edges, threshold, 1, cv2.THRESH_BINARY)
    mask = cv2.morphologyEx(over, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (21, 21)))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        area = cv2.contourArea(contour)
        if 2 * min(w, h) >= TEXTURE_MIN_SIDE and max(w, h) <= 2.2 * min(w, h) and area >= 0.5 * w * h:
            boxes.append((area, (2 * x, 2 * y, 2 * (x + w), 2 * (y + h))))
    return [box for _, box in sorted(boxes, reverse=True)[:limit]]


def _median(values: np.ndarray) -> float:
    """np.median of uint8 values, from their histogram (a fifth of the cost of sorting them)."""
    counts = np.cumsum(np.bincount(values.ravel(), minlength=256))
    n = int(counts[-1])
    low, high = (
        int(np.searchsorted(counts, (n - 1) // 2, side="right")),
        int(np.searchsorted(counts, n // 2, side="right")),
    )
    return (low + high) / 2


def _unique(texts) -> list[str]:
    return list(dict.fromkeys(t for t in texts if t))


def _box_of(position, shape) -> tuple[int, int, int, int]:
    """The axis-aligned box around a symbol's four corners, grown by half its size on each side."""
    xs = [position.top_left.x, position.top_right.x, position.bottom_right.x, position.bottom_left.x]
    ys = [position.top_left.y, position.top_right.y, position.bottom_right.y, position.bottom_left.y]
    w, h = max(xs) - min(xs), max(ys) - min(ys)
    grow = max(w, h) // 2 + 8
    height, width = shape
    return (max(min(xs) - grow, 0), max(min(ys) - grow, 0), min(max(xs) + grow, width), min(max(ys) + grow, height))


def _corners(position) -> list[tuple[float, float]]:
    """A symbol's four corners, top left, top right, bottom right, bottom left (the symbol's own)."""
    points = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    return [(float(p.x), float(p.y)) for p in points]


def _symbol_form(barcode) -> tuple[int, str, int] | None:
    """(version, error correction level, data mask) of a QR symbol zxing-cpp located and read the
    format of; None when it did not say."""
    extra = barcode.extra if isinstance(barcode.extra, dict) else {}
    try:
        return int(extra["Version"]), str(extra["ECLevel"]), int(extra["DataMask"])
    except (KeyError, TypeError, ValueError):
        return None


def _quad_area(corners) -> float:
    xs, ys = np.array(corners, dtype=float).T
    return 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))


def _overlaps(a, b) -> bool:
    """Whether two symbols' corner quadrilaterals' centres lie within each other's boxes (one
    symbol reported twice)."""
    (ax, ay), (bx, by) = np.mean(a, axis=0), np.mean(b, axis=0)
    xa, ya = np.array(a).T
    xb, yb = np.array(b).T
    return bool(
        (xb.min() <= ax <= xb.max() and yb.min() <= ay <= yb.max())
        or (xa.min() <= bx <= xa.max() and ya.min() <= by <= ya.max())
    )


def _same_place(a, b) -> bool:
    return all(abs(p - q) <= SCENERY_SLACK for p, q in zip(a, b))


def _frames_unread(history: list[tuple[Box, int]], box: Box) -> int:
    """For how many frames in a row a pass has read nothing at `box` (its place in `history`)."""
    return next((n for seen, n in history if _same_place(seen, box)), 0)


def _merge_boxes(boxes):
    """Overlapping boxes merged (one failed symbol is often reported more than once), largest first."""
    merged: list[list[int]] = []
    for box in sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True):
        for m in merged:
            if box[0] < m[2] and m[0] < box[2] and box[1] < m[3] and m[1] < box[3]:
                m[:] = [min(m[0], box[0]), min(m[1], box[1]), max(m[2], box[2]), max(m[3], box[3])]
                break
        else:
            merged.append(list(box))
    return [tuple(m) for m in merged]


@dataclass(frozen=True)
class _Doubt:
    """A text decoded with a block's error correction used up: where (the image the decoder was
    given and the symbol's corners in it) and by which pass."""

    text: str
    image: np.ndarray
    position: object
    via: str


def spare_correction(barcode) -> float:
    """The share of a block's Reed-Solomon capacity a decode left unused, in the block that used
    the most (zxing-cpp's "UEC": 1.0 no error, 0.0 capacity used up). Unknown counts as none."""
    extra = barcode.extra if isinstance(barcode.extra, dict) else {}
    try:
        return float(extra.get("UEC", 0.0))
    except (TypeError, ValueError):
        return 0.0


def _sift(found, image: np.ndarray, via: str, doubts: list[_Doubt]) -> list[str]:
    """The texts of the decoded symbols the error correction confirms (some capacity to spare);
    the others go to `doubts`."""
    texts = []
    for b in found:
        if not b.valid or not b.text:
            continue
        if spare_correction(b) > 0:
            texts.append(b.text)
        else:
            doubts.append(_Doubt(b.text, image, b.position, via))
    return _unique(texts)


def _cut(gray: np.ndarray, box: Box) -> np.ndarray:
    """The region `box` of the frame with a margin of a tenth of its size and 4 pixels."""
    x0, y0, x1, y1 = _cut_box(box, gray.shape)
    return gray[y0:y1, x0:x1]


def _cut_box(box: Box, shape) -> Box:
    """`box` grown by a margin of a tenth of its size and 4 pixels, within a frame of `shape`."""
    height, width = shape
    x0, y0, x1, y1 = box
    margin = (max(x1 - x0, y1 - y0)) // 10 + 4
    return max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, width), min(y1 + margin, height)


def _box_around(position, scale: float, offset) -> Box:
    """The axis-aligned box around a symbol's corners, in frame pixels (image pixels times `scale`, plus `offset`)."""
    points = (position.top_left, position.top_right, position.bottom_right, position.bottom_left)
    xs = [p.x * scale + offset[0] for p in points]
    ys = [p.y * scale + offset[1] for p in points]
    return int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1
