"""Makers of handed-in PDFs for the tests and benchmarks/pdf_similarity.py.

Handout-style figures (matplotlib, Agg) from digit images, as a notebook stores them and as a
student screenshots them; write-ups made of them through WeasyPrint the way a student makes a
PDF from an HTML or word-processor page; and bad PDFs (not a PDF, encrypted, no pages, many
pages, a CMYK image, a soft-masked image, a decompression-bomb-sized image).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

FIGURE_DPI = 72  # a notebook's stored PNG
SCREEN_DPI = 144  # a retina screenshot of it


# ---------------------------------------------------------------------------------------------
# figures


def make_grid(images: np.ndarray, nrow: int, pad_value: float = 0.0, padding: int = 2) -> np.ndarray:
    """torchvision.utils.make_grid for [N, 28, 28] images in [0, 1], as one grey array."""
    n, h, w = images.shape
    rows = -(-n // nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=np.float64)
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + c * (w + padding)
        grid[y : y + h, x : x + w] = image
    return grid


def _figure(draw, dpi: int = FIGURE_DPI, figsize: tuple[float, float] = (4.0, 4.0)) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # matplotlib's default style, as in Colab: the harness's figures module restyles plots in
    # any process that drew a document before
    with matplotlib.rc_context(matplotlib.rcParamsDefault):
        fig = plt.figure(figsize=figsize)
        try:
            draw(fig)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")  # as Colab's inline backend
        finally:
            plt.close(fig)
    return buffer.getvalue()


def samples_png(images: np.ndarray, title: str = "Samples", axes: bool = True, dpi: int = FIGURE_DPI) -> bytes:
    """A 4x4 sample grid: make_grid(nrow=4, pad_value=1) shown with imshow(cmap='gray')."""

    def draw(fig):
        ax = fig.add_subplot()
        ax.imshow(make_grid(images[:16], 4, pad_value=1.0), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        if not axes:
            ax.axis("off")

    return _figure(draw, dpi)


def reconstruction_png(inputs: np.ndarray, outputs: np.ndarray, dpi: int = FIGURE_DPI) -> bytes:
    """2 rows x 5 digits: inputs above their reconstructions, no padding."""

    def draw(fig):
        ax = fig.add_subplot()
        ax.imshow(np.concatenate([np.hstack(inputs[:5]), np.hstack(outputs[:5])]), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")

    return _figure(draw, dpi, figsize=(5.0, 2.2))


def interpolation_png(a: np.ndarray, b: np.ndarray, title: str, dpi: int = FIGURE_DPI) -> bytes:
    """1 row x 7 digits from ``a`` to ``b`` (a linear blend), make_grid(pad_value=1), a title."""
    steps = np.stack([(1 - t) * a + t * b for t in np.linspace(0, 1, 7)])

    def draw(fig):
        ax = fig.add_subplot()
        ax.imshow(make_grid(steps, 7, pad_value=1.0), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")

    return _figure(draw, dpi, figsize=(7.0, 1.6))


def curves_png(seed: int, epochs: int = 20, dpi: int = FIGURE_DPI) -> bytes:
    """VAE training curves: "Reconstruction Loss" and "KL Loss" per step, one run (``seed``)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(epochs * 30)
    recon = 60 + 140 * np.exp(-steps / rng.uniform(20, 120)) + rng.normal(0, rng.uniform(1, 6), steps.size)
    kl = 25 - 20 * np.exp(-steps / rng.uniform(20, 120)) + rng.normal(0, rng.uniform(0.3, 2), steps.size)

    def draw(fig):
        for i, (values, name) in enumerate([(recon, "Reconstruction Loss"), (kl, "KL Loss")]):
            ax = fig.add_subplot(1, 2, i + 1)
            ax.plot(steps, values)
            ax.set_title(name)
            ax.set_xlabel("step")

    return _figure(draw, dpi, figsize=(9.0, 3.2))


def blurred(images: np.ndarray, seed: int) -> np.ndarray:
    """Stand-in reconstructions: the digits smoothed and a little noisy."""
    rng = np.random.default_rng(seed)
    k = np.array([1.0, 2.0, 1.0]) / 4
    out = images.copy()
    for axis in (1, 2):
        out = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), axis, out)
    return np.clip(out + rng.normal(0, 0.05, out.shape), 0, 1)


# ---------------------------------------------------------------------------------------------
# screenshots of a figure


def grey_of(png: bytes) -> np.ndarray:
    """A PNG (or JPEG) in grey as the grader compares a notebook's stored figure (figure_grey:
    the PDF reader's own conversion, the longest side at most GREY_SIDE)."""
    from harness.submission.handin_pdf import figure_grey

    grey = figure_grey(png)
    if grey is None:
        raise ValueError("not an image PIL can decode")
    return grey


def _full_grey(png: bytes) -> np.ndarray:
    """A PNG decoded to grey at its full size, transparency on white: a screenshot's pixels."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, image).convert("L"), dtype=np.uint8).copy()


def rescaled(png: bytes, factor: float) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        return _png(image.convert("RGB").resize(size, Image.Resampling.BICUBIC))


def as_jpeg(png: bytes, quality: int = 50) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "JPEG", quality=quality)
        return buffer.getvalue()


def cropped_tight(png: bytes, inset: float = 0.01) -> bytes:
    """The screenshot cut to its darkest block (the axes' image) and ``inset`` of it further in."""
    from PIL import Image

    grey = _full_grey(png)
    dark = grey < 200
    rows = np.flatnonzero(dark.sum(axis=1) >= 0.5 * dark.sum(axis=1).max())
    cols = np.flatnonzero(dark.sum(axis=0) >= 0.5 * dark.sum(axis=0).max())
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dy, dx = int((bottom - top) * inset), int((right - left) * inset)
    with Image.open(io.BytesIO(png)) as image:
        return _png(image.convert("RGB").crop((left + dx, top + dy, right - dx, bottom - dy)))


def with_margin(png: bytes, margin: int = 40, caption: str = "Epoch 20: loss 101.3") -> bytes:
    """The screenshot with white margins and a line of notebook output text above it."""
    from PIL import Image, ImageDraw

    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("RGB")
        canvas = Image.new("RGB", (image.width + 2 * margin, image.height + 2 * margin + 20), "white")
        canvas.paste(image, (margin, margin + 20))
        ImageDraw.Draw(canvas).text((margin, margin // 2), caption, fill=(60, 60, 60))
        return _png(canvas)


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# write-ups


def figures_pdf(
    path: Path, figures: list[tuple[bytes, str]], text_blocks: list[str], widths: list[int] | None = None
) -> Path:
    """A write-up through WeasyPrint: the text blocks (paragraphs; a block "PAGE" breaks the page),
    then each figure (PNG or JPEG bytes) with its caption, at ``widths`` percent of the line
    (cycled over the figures' places; default 60); a figure captioned "PAGE" breaks the page."""
    widths = widths or [60]
    parts = []
    for block in text_blocks:
        if block == "PAGE":
            parts.append('<div style="page-break-after: always"></div>')
        else:
            parts.append(f"<p>{html.escape(block)}</p>")
    for i, (data, caption) in enumerate(figures):
        if caption == "PAGE":
            parts.append('<div style="page-break-after: always"></div>')
            continue
        kind = "jpeg" if data[:2] == b"\xff\xd8" else "png"
        src = f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"
        parts.append(
            f'<figure><img src="{src}" style="width: {widths[i % len(widths)]}%">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return write_html_pdf(path, "\n".join(parts))


def write_html_pdf(path: Path, body: str) -> Path:
    from weasyprint import HTML

    HTML(string=f'<html><head><meta charset="utf-8"></head><body>{body}</body></html>').write_pdf(str(path))
    return Path(path)


def not_a_pdf(path: Path) -> Path:
    """A text file named .pdf."""
    path.write_text("My write-up: see the notebook.\n")
    return path


def encrypted_pdf(path: Path, password: str = "secret") -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password=password, owner_password=password)
    with path.open("wb") as f:
        writer.write(f)
    return path


def empty_pdf(path: Path) -> Path:
    """A well-formed PDF with no pages."""
    from pypdf import PdfWriter

    with path.open("wb") as f:
        PdfWriter().write(f)
    return path


def many_pages_pdf(path: Path, pages: int = 200) -> Path:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=300, height=400)
    with path.open("wb") as f:
        writer.write(f)
    return path


def cmyk_pdf(path: Path, grey: np.ndarray) -> Path:
    """One page holding ``grey`` as a DeviceCMYK JPEG (PIL's PDF writer embeds CMYK as DCT)."""
    from PIL import Image

    Image.fromarray(grey, "L").convert("RGB").convert("CMYK").save(path, "PDF", resolution=72.0)
    return path


def soft_mask_pdf(path: Path, grey: np.ndarray) -> Path:
    """``grey`` as a black RGBA PNG whose alpha carries the ink (white = transparent): WeasyPrint
    embeds it with a soft mask, so only compositing on white shows the figure."""
    from PIL import Image

    alpha = 255 - grey
    rgba = np.stack([np.zeros_like(grey)] * 3 + [alpha], axis=-1)
    return figures_pdf(path, [(_png(Image.fromarray(rgba, "RGBA")), "soft mask")], [])


def bomb_pdf(path: Path, side: int = 100_000) -> Path:
    """A page whose image declares ``side`` x ``side`` pixels over a tiny stream."""
    return raw_image_pdf(path, side, side, b"\x00" * 64)


def raw_image_pdf(
    path: Path,
    width: int,
    height: int,
    data: bytes,
    colour_space: str = "/DeviceGray",
    bits: int = 8,
    filter_name: str | None = None,
) -> Path:
    """A page drawing one image XObject built by hand: ``data`` as its stream, unchecked, so it
    may declare any size, depth or filter (16-bit grey, a JBIG2 stream nothing can decode)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject, NumberObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=300, height=300)
    image = DecodedStreamObject()
    image.set_data(data)
    image.update(
        {
            NameObject("/Type"): NameObject("/XObject"),
            NameObject("/Subtype"): NameObject("/Image"),
            NameObject("/Width"): NumberObject(width),
            NameObject("/Height"): NumberObject(height),
            NameObject("/ColorSpace"): NameObject(colour_space),
            NameObject("/BitsPerComponent"): NumberObject(bits),
        }
    )
    if filter_name:
        image[NameObject("/Filter")] = NameObject(filter_name)
    ref = writer._add_object(image)  # pypdf has no public way to add a bare object
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/XObject"): DictionaryObject({NameObject("/Im0"): ref})}
    )
    content = DecodedStreamObject()
    content.set_data(b"q 300 0 0 300 0 0 cm /Im0 Do Q")
    page[NameObject("/Contents")] = writer._add_object(content)
    with path.open("wb") as f:
        writer.write(f)
    return path


def pil_pdf(path: Path, grey: np.ndarray, mode: str) -> Path:
    """One page holding ``grey`` converted to a PIL ``mode`` ("1", "P", "RGB", ...) by PIL's own
    PDF writer."""
    from PIL import Image

    Image.fromarray(grey, "L").convert(mode).save(path, "PDF", resolution=72.0)
    return path


def student_pdf(
    path: Path, figures: dict[str, bytes], answers: dict[str, str], beta: str, pair: str, pages: int = 0
) -> Path:
    """A write-up as a student makes one from a notebook of the 2020 handout (``figures``: write-up
    slot -> PNG): the seed's sections, screenshots at various widths with captions, the stated
    tuned beta (``"My tuned β = <beta>"``), the interpolation digits (``"from <pair>"``) and the
    answers (question id -> text). ``pages``: padded with pages of notes to about that many."""

    def fig(slot: str, caption: str, width: int = 60) -> str:
        src = "data:image/png;base64," + base64.b64encode(figures[slot]).decode("ascii")
        return (
            f'<figure><img src="{src}" style="width: {width}%"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )

    def answer(qid: str) -> str:
        return "".join(f"<p>{html.escape(p)}</p>" for p in answers[qid].split("\n\n"))

    page = '<div style="page-break-after: always"></div>'
    body = [
        "<h1>Problem 1 solution</h1><h2>1. Auto-encoder samples</h2>",
        fig("ae/samples", "AE samples", 45),
        answer("ae-samples"),
        page,
        f"<h2>2. VAE, tuned beta</h2><p>My tuned β = {beta}</p>",
        fig("tuned/curves", "Training curves", 80),
        fig("tuned/reconstructions", "Reconstructions", 70),
        page,
        fig("tuned/samples", "Samples of the tuned VAE", 40),
        page,
        "<h2>3. Answers</h2>",
        *(answer(q) for q in ("beta-0", "beta-10", "well-tuned")),
        page,
        f"<h2>4. Interpolation</h2><p>Interpolation from {pair}.</p>",
        fig("interpolation/1/ae", "AE", 60),
        fig("interpolation/1/vae", "VAE", 60),
        page,
        "<h2>5. Interpolation answer</h2>",
        answer("interpolation"),
    ]
    filler = "<p>Notes on the experiments: training took a few minutes per run on Colab's GPU.</p>" * 12
    body += [page + "<h2>Notes</h2>" + filler for _ in range(max(0, pages - 8))]
    return write_html_pdf(path, "\n".join(body))


def inflating_pdf(path: Path, megabytes: int = 1024) -> Path:
    """One page whose content stream is a few MB of Flate data that inflates to ``megabytes`` of
    spaces: reading its text decompresses all of it."""
    import zlib

    from pypdf import PdfWriter
    from pypdf.generic import EncodedStreamObject, NameObject

    packer = zlib.compressobj(9)
    chunk = b" " * (16 * 2**20)
    packed = b"".join(packer.compress(chunk) for _ in range(megabytes // 16)) + packer.flush()
    writer = PdfWriter()
    page = writer.add_blank_page(width=300, height=300)
    content = EncodedStreamObject()
    content._data = packed  # already Flate-encoded: pypdf would otherwise encode it again
    content[NameObject("/Filter")] = NameObject("/FlateDecode")
    page[NameObject("/Contents")] = writer._add_object(content)  # pypdf has no public way to add a bare object
    with open(path, "wb") as f:
        writer.write(f)
    return Path(path)
