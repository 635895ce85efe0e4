"""A student's PDF write-up, once read: its pages' text and the images it carries, in grey.

Students write the PDF by hand from screenshots of their notebook's figures; the grader compares
it with the notebook (``harness.grading.pdf_check``). :func:`read_pdf` reads it with pypdf (pure
Python, no system tools) and never raises for a bad file: what could not be read at all is in
:attr:`HandinPdf.error`, what was skipped in :attr:`HandinPdf.notes`, each in words an instructor
understands.

Reading is bounded: at most ``max_pages`` pages and ``max_images`` images, a file of at most
:data:`MAX_FILE_BYTES`, an image's declared size checked against :data:`MAX_IMAGE_PIXELS` before it
is decoded (a decompression bomb is skipped, not decoded), text capped at :data:`TEXT_CAP`
characters and the read stopped after :data:`TIME_LIMIT_S` seconds (looked at between pages).

A page's images are those its content draws (``Do``, through forms), in drawing order, each image
object once; inline images are not read. They are kept in grey (``uint8``, white = 255), their
longest side at most :data:`GREY_SIDE`: transparency (a soft mask, an alpha channel) is
composited on white; CMYK, palette, 1-bit and 16-bit images are converted. Images under
:data:`MIN_SIDE` pixels a side (logos, bullets) are skipped without a note; an image that cannot
be decoded (JBIG2 and JPEG 2000 need tools pypdf may lack) is skipped with one.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.submission.images import on_white

GREY_SIDE = 512  # longest side of a kept image: a screenshot's thin plot lines survive (at 256 they fade)
MIN_SIDE = 24  # smaller images are decorations, not figures
MAX_IMAGE_PIXELS = 40_000_000  # declared width * height beyond this is not decoded
MAX_FILE_BYTES = 200 * 2**20  # a write-up of screenshots is a few MB; beyond this is not read
TEXT_CAP = 200_000  # characters of text kept, over all pages read
TIME_LIMIT_S = 60.0  # reading stops after this, with a note
MAX_FORM_DEPTH = 8  # form XObjects nested deeper are not searched for images


@dataclass(frozen=True)
class PdfImage:
    """One image drawn on a page of the PDF, in grey."""

    page: int  # 1-based
    index: int  # 0-based among that page's kept images
    grey: np.ndarray = field(repr=False)  # uint8 HxW, white = 255, longest side <= GREY_SIDE


@dataclass(frozen=True)
class HandinPdf:
    """What reading a handed-in PDF found. ``error`` is non-empty when nothing could be read."""

    file: str  # the file's name
    pages: int  # pages in the file (0 when unreadable)
    images: tuple[PdfImage, ...] = ()
    text: str = field(default="", repr=False)  # the pages read, joined by newlines, capped
    page_texts: tuple[str, ...] = field(default=(), repr=False)  # per page read (same cap overall)
    notes: tuple[str, ...] = ()  # what was skipped and why
    error: str = ""


def read_pdf(path: Path, max_pages: int = 40, max_images: int = 80) -> HandinPdf:
    """Read the PDF at ``path``: the text and images of its first ``max_pages`` pages (at most
    ``max_images`` images in all). Never raises for a bad file; see the module docstring."""
    path = Path(path)
    try:
        return _read(path, max_pages, max_images)
    except Exception as e:  # a failure the steps below did not foresee: still an answer, not a crash
        return HandinPdf(file=path.name, pages=0, error=f"the PDF could not be read ({_why(e)})")


def _read(path: Path, max_pages: int, max_images: int) -> HandinPdf:
    name = path.name
    opened = _open(path)
    if isinstance(opened, str):
        return HandinPdf(file=name, pages=0, error=opened)
    reader = opened
    try:
        pages = len(reader.pages)
    except Exception as e:  # a damaged page tree: pypdf raises many kinds
        return HandinPdf(file=name, pages=0, error=f"the PDF is damaged: its pages cannot be listed ({_why(e)})")
    if pages == 0:
        return HandinPdf(file=name, pages=0, error="the PDF has no pages")

    notes: list[str] = []
    if pages > max_pages:
        notes.append(f"only the first {max_pages} of {pages} pages were read")
    started = time.monotonic()
    texts: list[str] = []
    images: list[PdfImage] = []
    budget = TEXT_CAP
    image_cap_noted = text_cut = False
    for number in range(1, min(pages, max_pages) + 1):
        if time.monotonic() - started > TIME_LIMIT_S:
            notes.append(
                f"reading stopped after {TIME_LIMIT_S:.0f} s, at page {number}: pages {number}-{pages} not read"
            )
            break
        try:
            page = reader.pages[number - 1]
        except Exception as e:
            notes.append(f"page {number} could not be read ({_why(e)})")
            texts.append("")
            continue
        text = _page_text(page, number, notes)
        if len(text) > budget and not text_cut:
            notes.append(f"the text was cut at {TEXT_CAP:,} characters, on page {number}")
            text_cut = True
        text = text[:budget]
        budget -= len(text)
        texts.append(text)
        if image_cap_noted:
            continue
        found, left = _page_images(page, number, max_images - len(images), notes)
        images.extend(PdfImage(page=number, index=i, grey=g) for i, g in enumerate(found))
        if left:
            notes.append(
                f"only the first {max_images} images were read: those after them, from page {number} on, were not"
            )
            image_cap_noted = True
    return HandinPdf(
        file=name,
        pages=pages,
        images=tuple(images),
        text="\n".join(texts),
        page_texts=tuple(texts),
        notes=tuple(notes),
    )


def _open(path: Path):
    """A pypdf reader for the file, decrypted when it has an empty password; else why not."""
    from pypdf import PdfReader

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(1024)
    except OSError as e:
        return f"the file cannot be read ({e.strerror or e})"
    if size > MAX_FILE_BYTES:
        return f"the file is too large to read ({size / 2**20:.0f} MB; at most {MAX_FILE_BYTES // 2**20} MB)"
    if b"%PDF-" not in head:
        shown = head[:16].decode("latin-1").encode("unicode_escape").decode("ascii")
        return f"not a PDF (the file starts with {shown!r})" if head else "not a PDF (the file is empty)"
    try:
        with _quiet():
            reader = PdfReader(path, strict=False)
            if reader.is_encrypted:
                try:
                    if not reader.decrypt(""):  # an owner password only: readable without one
                        return "the PDF is encrypted: hand it in without a password"
                except Exception:  # an unsupported cipher
                    return "the PDF is encrypted: hand it in without a password"
    except MemoryError:
        return "the PDF is damaged: reading it ran out of memory"
    except Exception as e:  # pypdf raises many kinds for a damaged file
        return f"the PDF is damaged and cannot be read ({_why(e)})"
    return reader


def _page_text(page, number: int, notes: list[str]) -> str:
    try:
        with _quiet():
            return page.extract_text() or ""
    except MemoryError:
        notes.append(f"page {number}: its text could not be read (out of memory)")
    except Exception as e:
        notes.append(f"page {number}: its text could not be read ({_why(e)})")
    return ""


def _page_images(page, number: int, limit: int, notes: list[str]) -> tuple[list[np.ndarray], bool]:
    """The images the page draws, in grey and in drawing order (forms searched too), each image
    object once, at most ``limit``; and whether more were left unread. Only what the page's
    content draws counts: writers such as WeasyPrint share one resource dictionary among pages."""
    kept: list[np.ndarray] = []
    left: list[bool] = []
    try:
        contents = page.get_contents()
        if contents is not None:
            _collect(contents, page.get("/Resources"), page.pdf, number, limit, notes, kept, left, set(), depth=0)
    except MemoryError:
        notes.append(f"page {number}: its images could not be listed (out of memory)")
    except Exception as e:
        notes.append(f"page {number}: its images could not be listed ({_why(e)})")
    return kept, bool(left)


def _collect(content, resources, pdf, number, limit, notes, kept, left, seen, depth) -> None:
    """Follow the ``Do`` operators of ``content`` (a page's or a form's stream) through
    ``resources``, into forms up to MAX_FORM_DEPTH deep."""
    from pypdf.generic import ContentStream

    if resources is None:
        return
    xobjects = resources.get_object().get("/XObject")
    if xobjects is None:
        return
    xobjects = xobjects.get_object()
    stream = content if isinstance(content, ContentStream) else ContentStream(content, pdf)
    for operands, operator in stream.operations:
        if operator != b"Do" or not operands or operands[0] not in xobjects:
            continue
        ref = xobjects.raw_get(operands[0])
        ident = (ref.idnum, ref.generation) if hasattr(ref, "idnum") else id(ref)
        if ident in seen:
            continue
        seen.add(ident)
        obj = ref.get_object()
        subtype = obj.get("/Subtype")
        if subtype == "/Form" and depth < MAX_FORM_DEPTH:
            inner = obj.get("/Resources") or resources  # a form without its own uses its page's
            _collect(obj, inner, pdf, number, limit, notes, kept, left, seen, depth + 1)
        elif subtype == "/Image":
            if len(kept) >= limit:
                left.append(True)
                return
            grey = _image(obj, f"page {number} image {len(kept) + 1}", notes)
            if grey is not None:
                kept.append(grey)


def _image(obj, label: str, notes: list[str]) -> np.ndarray | None:
    """One image XObject in grey, or None (skipped: tiny silently, else with a note)."""
    try:
        width, height = int(obj.get("/Width", 0)), int(obj.get("/Height", 0))
    except (TypeError, ValueError):
        notes.append(f"{label}: skipped, its size is not stated")
        return None
    if width < MIN_SIDE or height < MIN_SIDE:
        return None
    if width * height > MAX_IMAGE_PIXELS:
        notes.append(f"{label}: skipped, it declares {width} x {height} pixels (more than {MAX_IMAGE_PIXELS:,})")
        return None
    filters = obj.get("/Filter")
    try:
        with _quiet():
            if obj.get("/BitsPerComponent") == 16:  # pypdf reads each byte as a pixel
                return _grey_16(obj, width, height)
            image = obj.decode_as_image()
            if image is None:
                raise ValueError("no image data")
            return to_grey(image)
    except MemoryError:
        notes.append(f"{label}: could not be decoded (out of memory)")
    except Exception as e:  # pypdf and PIL raise many kinds
        kind = "JBIG2" if "JBIG2" in str(filters) else "JPEG 2000" if "JPX" in str(filters) else ""
        what = f"{kind} " if kind else ""
        notes.append(f"{label}: {what}could not be decoded ({_why(e)})")
    return None


def _grey_16(obj, width: int, height: int) -> np.ndarray:
    """A 16-bit grey, RGB or CMYK image XObject (filters undone by pypdf) in grey."""
    from PIL import Image

    space = obj.get("/ColorSpace")
    space = space.get_object() if space is not None else None
    if isinstance(space, list) and space and space[0] == "/ICCBased":
        components = int(space[1].get_object().get("/N", 1))
    else:
        components = {"/DeviceGray": 1, "/CalGray": 1, "/DeviceRGB": 3, "/CalRGB": 3, "/DeviceCMYK": 4}.get(space)
    if components is None:
        raise ValueError(f"16-bit images in {space} are not supported")
    values = np.frombuffer(obj.get_data(), dtype=">u2")[: width * height * components]
    if values.size < width * height * components:
        raise ValueError("not enough image data")
    pixels = (values.reshape(height, width, components) >> 8).astype(np.uint8)
    if components == 1:
        return to_grey(Image.fromarray(pixels[:, :, 0], "L"))
    return to_grey(Image.fromarray(pixels, "RGB" if components == 3 else "CMYK"))


def to_grey(image) -> np.ndarray:
    """A PIL image as grey uint8 (white = 255), transparency composited on white, longest side at
    most GREY_SIDE."""
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit or wider: stretch to 8 bits
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values * 255.0 / top, 0, 255).astype(np.uint8), "L")
    image = on_white(image)
    image = image.convert("RGB").convert("L") if image.mode not in ("L", "RGB") else image.convert("L")
    image.thumbnail((GREY_SIDE, GREY_SIDE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8).copy()


def figure_grey(png: bytes) -> np.ndarray | None:
    """A notebook's stored figure (PNG bytes) in grey as :func:`to_grey` reads a PDF's image, so a
    figure pasted into the PDF unchanged compares as itself (another grey conversion or resampling
    costs a coloured plot's thin lines several hundredths of similarity). None when it cannot be
    decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as image:
            image.load()
            return to_grey(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


class _quiet:
    """Silence pypdf's logged and warned complaints about a damaged file: the notes say what matters."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._logger = logging.getLogger("pypdf")
        self._level = self._logger.level
        self._logger.setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        self._warnings.__exit__(*exc)
        return False


def _why(e: BaseException) -> str:
    """An exception in a few words for a note."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:120]}" if text else type(e).__name__


# --------------------------------------------------------------------------- in a child process


def save(pdf: HandinPdf, path: Path) -> None:
    """``pdf`` as one ``.npz`` of plain arrays (its images, and its other fields as JSON text), so a
    parent reads it back with ``allow_pickle=False``: nothing the child wrote can run code."""
    meta = {
        "file": pdf.file,
        "pages": pdf.pages,
        "text": pdf.text,
        "page_texts": list(pdf.page_texts),
        "notes": list(pdf.notes),
        "error": pdf.error,
        "images": [[im.page, im.index] for im in pdf.images],
    }
    arrays = {f"image_{i}": im.grey for i, im in enumerate(pdf.images)}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def load_saved(path: Path) -> HandinPdf:
    """A :class:`HandinPdf` written by :func:`save`."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        images = tuple(
            PdfImage(page=int(page), index=int(index), grey=data[f"image_{i}"])
            for i, (page, index) in enumerate(meta["images"])
        )
    return HandinPdf(
        file=meta["file"],
        pages=int(meta["pages"]),
        images=images,
        text=meta["text"],
        page_texts=tuple(meta["page_texts"]),
        notes=tuple(meta["notes"]),
        error=meta["error"],
    )


def main(argv: list[str]) -> int:
    """``PDF OUT.npz MEMORY_MB``: read the PDF under an address-space cap of MEMORY_MB and save what
    was read (``harness.grading.handin.read_pdf_isolated`` runs this in a child process)."""
    import resource

    pdf_path, out, memory_mb = Path(argv[0]), Path(argv[1]), int(argv[2])
    limit = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    save(read_pdf(pdf_path), out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
